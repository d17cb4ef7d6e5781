//! Command-line definitions (clap). Only the shape of the arguments lives here;
//! turning them into a validated plan is `scenario`'s job.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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

    /// Stage to run against (overrides `target.stage`).
    #[arg(long, short = 's')]
    pub stage: Option<String>,

    /// Base URL; `{stage}` in it is replaced by the stage name (overrides `target.base_url`).
    #[arg(long, env = "STAGECHECK_BASE_URL")]
    pub base_url: Option<String>,

    /// Arrival rate in iterations per second (open model; replaces any ramp).
    #[arg(long)]
    pub rate: Option<f64>,

    /// How long to send traffic, e.g. `30s`, `2m`.
    #[arg(long, short = 'd', value_parser = parse_duration)]
    pub duration: Option<std::time::Duration>,

    /// Virtual users: switches to the closed model with this many looping VUs.
    #[arg(long)]
    pub vus: Option<u32>,

    /// Upper bound on concurrent iterations in the open model.
    #[arg(long)]
    pub max_vus: Option<u32>,

    /// Stop after this many iterations in total.
    #[arg(long)]
    pub iterations: Option<u64>,

    /// Per-request timeout, e.g. `10s`.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,

    /// Extra header for every request, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Write the JSON summary here (`-` for stdout).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Worker threads, each with its own runtime and share of the VUs (default: cores).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Run only shard I of N (counted from 1): its share of the rate and a disjoint `seq` space.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,

    /// Hold the traffic until this time: RFC 3339 (`2026-12-01T22:00:00Z`) or
    /// `+30s` from now. Shards given one time start together.
    #[arg(long, value_name = "TIME", value_parser = parse_start_at)]
    pub start_at: Option<std::time::SystemTime>,

    /// How long in-flight iterations may finish after the end or an interrupt.
    #[arg(long, value_parser = parse_duration)]
    pub grace: Option<std::time::Duration>,

    /// Extra PEM CA certificate(s) to trust for HTTPS targets.
    #[arg(long, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,

    /// Do not verify the target's TLS certificate.
    #[arg(long)]
    pub insecure: bool,

    /// No progress lines and no terminal report (errors still go to stderr).
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Skip backend verification (DynamoDB, logs, isolation) for this run.
    #[arg(long)]
    pub no_verify: bool,

    /// Check that nothing reached this stage's backends (repeatable; default: every other stage).
    #[arg(long, value_name = "STAGE")]
    pub isolate_from: Vec<String>,

    /// After verification, delete exactly the items this run wrote, by key.
    #[arg(long)]
    pub cleanup: bool,

    /// How long to wait for invocations to show in the logs, e.g. `60s`.
    #[arg(long, value_parser = parse_duration)]
    pub logs_deadline: Option<std::time::Duration>,

    /// AWS Region for verification (default: the standard chain).
    #[arg(long)]
    pub region: Option<String>,

    /// AWS profile for verification.
    #[arg(long)]
    pub profile: Option<String>,

    /// Endpoint for every AWS service (e.g. moto); `AWS_ENDPOINT_URL` and its per-service forms work too.
    #[arg(long, value_name = "URL")]
    pub aws_endpoint: Option<String>,

    /// How requests authenticate (overrides the stage's `auth`): `iam` signs
    /// every request with SigV4 for execute-api from the default credential
    /// chain; `api-key` sends the key from --api-key-env in `x-api-key`.
    #[arg(long, value_name = "iam|api-key|none")]
    pub auth: Option<String>,

    /// Environment variable holding the API key (overrides the stage's
    /// `api_key_env`; default STAGECHECK_API_KEY).
    #[arg(long, value_name = "NAME")]
    pub api_key_env: Option<String>,

    /// Allow more than a smoke run (one iteration) on a stage marked `protected`.
    #[arg(long)]
    pub allow_prod: bool,

    /// Refuse to start a run that could send more requests per second than this
    /// (peak iteration rate × requests per iteration, all shards together).
    #[arg(long, value_name = "REQ/S")]
    pub max_rate: Option<f64>,

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
