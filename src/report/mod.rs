//! Reports: every format is rendered from one [`Summary`]. This module owns
//! what they share: reading a saved summary, writing output files atomically,
//! the `--html/--junit/--markdown` set, and the `report` command.

pub mod compare;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod merge;
pub mod progress;
pub mod terminal;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::Result;
use crate::cli::ReportFiles;
use crate::error::{Error, exit};
use crate::summary::Summary;

/// A measured value as reports print it: whole numbers bare, others to 3 decimals.
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// GitHub Actions sets this to a file whose Markdown is shown on the run's page.
pub const GITHUB_STEP_SUMMARY: &str = "GITHUB_STEP_SUMMARY";

/// Reads a summary written by `run --out` (or `merge --out`).
pub fn load_summary(path: &Path) -> Result<Summary> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| {
        Error::Usage(format!(
            "{}: not a stagecheck summary (write one with `stagecheck run --out FILE`): {e}",
            path.display()
        ))
    })
}

/// Writes `contents` to `path`, or to stdout when `path` is `-`. A file is
/// written to a temporary file beside it and renamed over it, so a crash or a
/// failed run never leaves half a report, nor an empty file over an old one.
pub fn write_output(path: &Path, contents: &str) -> Result<()> {
    if path == Path::new("-") {
        let mut stdout = std::io::stdout().lock();
        return stdout
            .write_all(contents.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|source| Error::WriteFile {
                path: path.to_path_buf(),
                source,
            });
    }
    let error = |source| Error::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = temp_beside(path).map_err(error)?;
    tmp.write_all(contents.as_bytes())
        .and_then(|()| tmp.flush())
        .map_err(error)?;
    // A dropped temporary file is removed, so a failed rename leaves nothing.
    tmp.persist(path).map_err(|e| error(e.error))?;
    Ok(())
}

/// A temporary file in `path`'s folder: a rename is atomic only within one
/// file system.
fn temp_beside(path: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let prefix = format!(
        ".{}.",
        path.file_name().unwrap_or_default().to_string_lossy()
    );
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // Outputs are read by others (CI, a web server): the usual mode less the
    // umask, not the temporary file's private 0600.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

/// Finds out before minutes of load, not after, that an output cannot be
/// written: creates (and drops, which removes) a temporary file beside it.
/// `path` itself is not touched until the output is whole.
pub fn check_writable(path: &Path) -> Result<()> {
    if path == Path::new("-") {
        return Ok(());
    }
    if path.is_dir() {
        return Err(Error::WriteFile {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a folder"),
        });
    }
    temp_beside(path).map_err(|source| Error::WriteFile {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(())
}

impl ReportFiles {
    fn files(&self) -> impl Iterator<Item = &Path> {
        [&self.html, &self.junit, &self.markdown]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }

    /// Whether one of the reports goes to stdout (the terminal report then
    /// goes to stderr).
    pub fn to_stdout(&self) -> bool {
        self.files().any(|p| p == Path::new("-"))
    }

    /// Rejects two outputs on stdout and unwritable files, before any work.
    /// `json_to_stdout`: the JSON summary is already going to stdout.
    pub fn check(&self, json_to_stdout: bool) -> Result<()> {
        let on_stdout =
            self.files().filter(|p| *p == Path::new("-")).count() + usize::from(json_to_stdout);
        if on_stdout > 1 {
            return Err(Error::Usage(
                "only one output can go to stdout (`-`); give the others file names".to_string(),
            ));
        }
        self.files().try_for_each(check_writable)
    }

    /// Writes every requested report, and appends the Markdown to
    /// `$GITHUB_STEP_SUMMARY` when GitHub Actions set it.
    pub fn write(&self, summary: &Summary) -> Result<()> {
        if let Some(path) = &self.html {
            write_output(path, &html::render(summary))?;
        }
        if let Some(path) = &self.junit {
            write_output(path, &junit::render(summary))?;
        }
        if let Some(path) = &self.markdown {
            write_output(path, &markdown::render(summary))?;
        }
        append_step_summary(&markdown::render(summary))
    }
}

/// Appends `markdown` to `$GITHUB_STEP_SUMMARY` when GitHub Actions set it.
pub fn append_step_summary(markdown: &str) -> Result<()> {
    match std::env::var_os(GITHUB_STEP_SUMMARY).filter(|p| !p.is_empty()) {
        Some(path) => append(Path::new(&path), markdown),
        None => Ok(()),
    }
}

/// Appends rather than replaces: every step of a job adds to the same page.
fn append(path: &Path, text: &str) -> Result<()> {
    let error = |source| Error::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(error)?;
    file.write_all(format!("{text}\n").as_bytes())
        .map_err(error)
}

/// Prints the terminal report to stdout, or to stderr when stdout carries a
/// machine-readable output.
pub fn print_terminal(summary: &Summary, stdout_taken: bool) {
    if stdout_taken {
        eprint!(
            "{}",
            terminal::render(summary, terminal::color_for_stderr())
        );
    } else {
        print!(
            "{}",
            terminal::render(summary, terminal::color_for_stdout())
        );
        let _ = std::io::stdout().flush();
    }
}

/// The exit code of a verdict: `passed` already says no for an interrupted
/// run; `partial` is read too for summaries written before it did.
pub fn outcome(summary: &Summary) -> i32 {
    if summary.passed && !summary.partial {
        exit::PASS
    } else {
        exit::FAILED
    }
}

pub fn write_json(summary: &Summary, out: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(summary)
        .map_err(|e| Error::Runtime(format!("cannot encode the summary: {e}")))?;
    write_output(out, &(text + "\n"))
}
