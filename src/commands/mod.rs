//! One module per subcommand, on top of every layer: each turns its arguments
//! into calls of the library and an exit code.

pub mod audit;
pub mod canary;
pub mod compare;
pub mod init;
pub mod merge;
pub mod preflight;
pub mod promote;
pub mod report;
pub mod run;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod validate;

/// A runtime for a command's AWS calls, apart from the engine's.
pub(crate) fn runtime() -> crate::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::Error::Runtime(format!("cannot start the runtime: {e}")))
}
