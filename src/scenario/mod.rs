//! Scenario files: the TOML model, validation into a [`Plan`], templates.

pub mod file;
pub mod jsonpath;
pub mod location;
pub mod plan;
pub mod secrets;
pub mod template;

pub use plan::{
    AwsOptions, Backends, Capture, CaptureSource, Check, CheckKind, Expected, Load, LogMatch,
    Model, Overrides, Plan, Predicate, Profile, Scheme, Shard, Stage, Step, Target, TlsOptions,
    VerifyPlan, Writes, load, parse,
};
