//! The function's deployment package: CreateFunction needs one even though moto
//! never runs it (the sandbox itself plays the function's code).

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

/// A zip holding one stored file. The timestamp is fixed at the zip epoch
/// (1980-01-01 00:00) so the package, and so the function's CodeSha256, is the same
/// on every start: a changed hash would read as a code change to whoever compares.
pub fn stored_zip(name: &str, contents: &[u8]) -> Result<Vec<u8>, String> {
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644);
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let fail = |e: &dyn std::fmt::Display| format!("cannot build the function's zip package: {e}");
    writer.start_file(name, options).map_err(|e| fail(&e))?;
    writer.write_all(contents).map_err(|e| fail(&e))?;
    let cursor = writer.finish().map_err(|e| fail(&e))?;
    Ok(cursor.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_package_reads_back_and_is_the_same_every_time() {
        let body = b"print('hi')\n";
        let zip = stored_zip("index.py", body).unwrap();
        assert_eq!(&zip[..4], b"PK\x03\x04");
        assert_eq!(zip, stored_zip("index.py", body).unwrap());
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        let mut file = archive.by_name("index.py").unwrap();
        let mut read = Vec::new();
        file.read_to_end(&mut read).unwrap();
        assert_eq!(read, body);
    }
}
