//! Command-line definitions (clap). Only the shape of the arguments lives here;
//! turning them into a validated plan is `scenario`'s job.
//! The flags that change a scenario file are `scenario::Overrides`, flattened
//! into `run`'s arguments, so the flags and the file meet in the scenario layer.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::scenario::Overrides;
use crate::units::{parse_duration, parse_start_at};

#[derive(Debug, Parser)]
#[command(
    name = "stagecheck",
    version,
    about = "Load-test and verify AWS API Gateway stages",
    long_about = "Load-test and verify AWS API Gateway stages.\n\n\
Exit codes: 0 pass, 1 a check, threshold or verification failed, \
2 usage or scenario error, 3 runtime error (target or AWS unreachable, credentials)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and validate scenario files without sending traffic.
    Validate(ValidateArgs),
    /// Run a scenario against a stage and report.
    Run(Box<RunArgs>),
    /// Serve the local sandbox: API Gateway's data plane and the Lambda functions on moto.
    #[cfg(feature = "sandbox")]
    Sandbox(stagecheck_sandbox::SandboxArgs),
    /// Render a saved JSON summary again (terminal, HTML, JUnit, Markdown); exit code from its verdict.
    Report(ReportArgs),
    /// Compare a candidate summary with a baseline; exit 1 on a regression beyond the bounds.
    Compare(CompareArgs),
    /// Merge shards' JSON summaries exactly into one; thresholds are judged again on the result.
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Scenario files (TOML).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario file (TOML).
    pub file: PathBuf,

    // The flags that change the file: the scenario layer owns them.
    #[command(flatten)]
    pub overrides: Overrides,

    /// Write the JSON summary here (`-` for stdout).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Hold the traffic until this time: RFC 3339 (`2026-12-01T22:00:00Z`) or
    /// `+30s` from now. Shards given one time start together.
    #[arg(long, value_name = "TIME", value_parser = parse_start_at)]
    pub start_at: Option<std::time::SystemTime>,

    /// No progress lines and no terminal report (errors still go to stderr).
    #[arg(long, short = 'q')]
    pub quiet: bool,

    #[command(flatten)]
    pub reports: ReportFiles,
}

/// Report files every command that ends with a summary can write.
#[derive(Debug, Clone, Default, Args)]
pub struct ReportFiles {
    /// Write a self-contained HTML report here (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Write a JUnit XML report here: one test case per check and threshold (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// Write a Markdown summary here (`-` for stdout); also appended to $GITHUB_STEP_SUMMARY when set.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A JSON summary written by `run --out` or `merge --out`.
    pub summary: PathBuf,

    #[command(flatten)]
    pub reports: ReportFiles,

    /// No terminal report.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The JSON summary to compare against.
    pub baseline: PathBuf,

    /// The JSON summary being judged.
    pub candidate: PathBuf,

    /// Allowed worsening per metric, e.g. `p99=10%,p50=20%,error_rate=0.1%,rps=-5%`
    /// (latencies: relative increase; error_rate: percentage points; rps: relative drop).
    /// Default: p50=20%,p99=10%,error_rate=0.1%.
    #[arg(long, value_name = "METRIC=LIMIT,…")]
    pub max_regression: Option<String>,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Shards' JSON summaries of the same scenario.
    #[arg(required = true)]
    pub summaries: Vec<PathBuf>,

    /// Write the merged JSON summary here (`-` for stdout).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,

    #[command(flatten)]
    pub reports: ReportFiles,

    /// No terminal report.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Refuse shards that started further apart than this (they did not send
    /// the scenario's load together); start them with `run --start-at`.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "1s")]
    pub max_start_skew: std::time::Duration,
}
