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

/// A problem in a scenario file, located by file, line, column and the key
/// path, with the line's text so it can be shown with a caret under the
/// column ([`ScenarioError::render`]).
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}:{column}: {}{message}", file.display(), if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct ScenarioError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The key path of the offending field, e.g. `steps[1].method`; empty
    /// when no key covers the place (then none is shown).
    pub field: String,
    pub message: String,
    /// Boxed: every `Result` in the crate carries this error's size.
    pub snippet: Box<SourceLine>,
}

/// The line an error points at, for the caret.
#[derive(Debug)]
pub struct SourceLine {
    /// The text of the line, without its line break.
    pub text: String,
    /// The bytes of `text` to underline (at least one character).
    pub underline: std::ops::Range<usize>,
}

impl ScenarioError {
    /// The error as rustc and Hurl show one: the message, ` --> file:line:column`,
    /// the source line and a caret under the column, labelled with the key
    /// path. `color` only when a person reads it on a terminal.
    pub fn render(&self, color: bool) -> String {
        use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};
        let path = self.file.display().to_string();
        let label = if self.field.is_empty() {
            String::new()
        } else {
            format!("in {}", self.field)
        };
        let report = [Level::ERROR.primary_title(&self.message).element(
            Snippet::source(&self.snippet.text)
                .line_start(self.line)
                .path(&path)
                .annotation(
                    AnnotationKind::Primary
                        .span(self.snippet.underline.clone())
                        .label(&label),
                ),
        )];
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        renderer.render(&report).to_string()
    }
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
    /// A failed AWS call or credential lookup, already one or two sentences.
    #[error(transparent)]
    AwsCall(#[from] AwsError),
    /// Verification could not judge what the run recorded. The load was
    /// sent by then, so this is a failed verification, not bad usage.
    #[error("verification: {0}")]
    Verification(String),
    /// Another error, about one stage's backends, found before the load.
    #[error("preflight for stage {stage}: {source}")]
    Preflight { stage: String, source: Box<Error> },
}

/// What went wrong in an AWS call, for the exit code and for tests; the
/// sentence a person reads is [`AwsError::message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsFailure {
    /// The service answered with an error code (`ResourceNotFoundException`).
    Service { code: String },
    /// No connection to the endpoint.
    Unreachable,
    /// No answer in time.
    Timeout,
    /// An answer that is not the service's (a proxy's page, an emulator's 500).
    BadResponse,
    /// No credentials, or the chain failed to load them.
    Credentials,
    /// Missing configuration (no Region) or anything else.
    Other,
}

/// A failed AWS call: the operation, the resource, the Region and endpoint,
/// the service's code and message, and the fix where one is known.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct AwsError {
    pub failure: AwsFailure,
    pub message: String,
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Scenario(_) | Error::Usage(_) | Error::ReadFile { .. } => exit::USAGE,
            Error::Verification(_) => exit::FAILED,
            Error::WriteFile { .. }
            | Error::Unreachable(_)
            | Error::Runtime(_)
            | Error::Aws(_)
            | Error::AwsCall(_) => exit::RUNTIME,
            Error::Preflight { source, .. } => source.exit_code(),
        }
    }

    /// This error, said of stage `stage`'s backends before the load.
    pub fn for_stage(self, stage: &str) -> Error {
        Error::Preflight {
            stage: stage.to_string(),
            source: Box::new(self),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
