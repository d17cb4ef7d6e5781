//! The binary's integration tests, one module per area, in one test binary:
//! one compile of the shared helpers and one link instead of one per file.

#[path = "../support/mod.rs"]
mod support;

mod auth;
mod engine;
mod errors;
mod function_logs;
mod http1;
mod inputs;
mod jsonpath;
mod layers;
mod lines;
mod reports;
mod routing;
mod scenarios;
mod verdicts;
mod verify;
