//! stagecheck: load-test and verify AWS API Gateway stages.
//!
//! The modules follow one run's data flow: a scenario file is parsed into a
//! validated [`scenario::Plan`]; the [`engine`] drives traffic and records into
//! [`metrics`]; the result is one [`summary::Summary`] that thresholds and every
//! [`report`] format read; [`verify`] proves where the traffic landed. The
//! [`commands`] sit on top, one module per subcommand. The local sandbox (API Gateway's data plane and the
//! Lambda functions on top of moto, for demos and tests) is a crate of its own,
//! `stagecheck-sandbox`, sharing no code with this one.

pub mod audit;
pub mod auth;
pub mod aws;
pub mod cli;
pub mod commands;
pub mod deployment;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod policy;
pub mod promotion;
pub mod report;
pub mod scenario;
pub mod summary;
pub mod thresholds;
pub mod units;
pub mod verify;

pub use error::{Error, Result};
