//! The binary's integration tests, one module per area, in one test binary:
//! one compile of the shared helpers and one link instead of one per file.

#[path = "../support/mod.rs"]
mod support;

mod audit;
mod auth;
mod credentials;
mod engine;
mod errors;
mod function_logs;
mod http1;
mod inputs;
mod jsonpath;
mod layers;
mod lines;
mod preflight;
mod promote;
mod reports;
mod routing;
mod scenarios;
mod verdicts;
mod verify;
