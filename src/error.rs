//! The library's error type. Every variant knows its exit code, so `main` maps
//! errors to the documented codes in one place.

use std::path::PathBuf;

/// Exit codes, as documented in the README.
pub mod exit {
    /// Every check, threshold and verification passed.
    pub const PASS: i32 = 0;
    /// A check, threshold or verification failed.
    pub const FAILED: i32 = 1;
    /// Bad usage or a bad scenario file.
    pub const USAGE: i32 = 2;
    /// A runtime error: target or AWS unreachable, credentials.
    pub const RUNTIME: i32 = 3;
}

/// A problem in a scenario file, located by file, line, column and the key path.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}:{column}: {field}: {message}", file.display())]
pub struct ScenarioError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The key path of the offending field, e.g. `steps[1].method`.
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("target unreachable: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Runtime(String),
    #[error("AWS: {0}")]
    Aws(String),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Scenario(_) | Error::Usage(_) | Error::ReadFile { .. } => exit::USAGE,
            Error::WriteFile { .. } | Error::Unreachable(_) | Error::Runtime(_) | Error::Aws(_) => {
                exit::RUNTIME
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
