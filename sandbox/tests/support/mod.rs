//! What the sandbox's own tests share: the harness (moto, the sandbox process,
//! SDK clients) and where this crate's binary is.
#![allow(dead_code)]

pub mod harness;

pub use harness as sandbox;

use std::path::PathBuf;
use std::process::Command;

/// The workspace root, where `.venv` (the pinned moto) lives.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The sandbox as this crate builds it; the harness adds the arguments.
pub fn sandbox_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stagecheck-sandbox"))
}
