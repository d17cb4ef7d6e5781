//! The sandbox's integration tests, one module per area, in one test binary:
//! one compile of the harness and one link instead of one per file.

#[path = "../support/mod.rs"]
mod support;

mod control;

mod auth;
mod aws_endpoint;
mod bootstrap;
mod canary;
mod dataplane;
mod deployments;
mod endpoints;
mod execution_logs;
mod faults;
mod lambda;
mod misconfig;
mod policies;
