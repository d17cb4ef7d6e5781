//! Shared helpers for the integration tests: every test spawns the real
//! binary against real local servers.
#![allow(dead_code)]

pub mod sandbox;

use std::path::PathBuf;

/// The binary under test, as built by cargo for this test run.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stagecheck"))
}

/// The project's root folder.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
