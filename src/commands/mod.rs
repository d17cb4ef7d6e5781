//! One module per subcommand, on top of every layer: each turns its arguments
//! into calls of the library and an exit code.

pub mod audit;
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
