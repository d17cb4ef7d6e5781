//! One module per subcommand, on top of every layer: each turns its arguments
//! into calls of the library and an exit code.

pub mod compare;
pub mod merge;
pub mod report;
pub mod run;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod validate;
