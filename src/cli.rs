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
Exit codes: 0 pass, 1 a check, threshold, verification or audit finding failed, \
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
    /// Read a REST API's deployment from the control plane and check every link of each
    /// stage's chain (variables → function → table; role; invoke permission; deployment).
    Audit(Box<AuditArgs>),
    /// Write a scenario from a REST API's deployment: its URL, stages, table prefixes and a
    /// smoke step per route.
    Init(Box<InitArgs>),
    /// Promote the deployment a stage serves to another stage: audit both, gate on a
    /// verified run, switch, smoke, and roll back automatically when the smoke fails.
    Promote(Box<PromoteArgs>),
    /// Point a stage back at an earlier deployment, confirm it and smoke it.
    Rollback(Box<RollbackArgs>),
    /// A stage's deployments, the one it serves, its canary, and the journaled changes.
    History(Box<HistoryArgs>),
}

/// How long a stage switch may take to show, and how long to let it settle.
#[derive(Debug, Clone, Args)]
pub struct SwitchOptions {
    /// After GetStage shows the new deployment, wait this long for the data
    /// plane to serve it (AWS propagates in seconds).
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "5s")]
    pub settle: std::time::Duration,

    /// Give up waiting for GetStage to show the switch after this long.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "60s")]
    pub switch_deadline: std::time::Duration,

    /// Where journals are kept (`history` and `rollback` read them).
    #[arg(long, value_name = "DIR", default_value = ".stagecheck/journal")]
    pub journal_dir: PathBuf,

    /// This change's journal file (default: a new file in --journal-dir).
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The scenario that gates the promotion (run on --from unless --evidence)
    /// and, at smoke size, smokes --to.
    #[arg(required_unless_present = "resume")]
    pub scenario: Option<PathBuf>,

    /// The stage whose deployment is promoted.
    #[arg(long, required_unless_present = "resume")]
    pub from: Option<String>,

    /// The stage that gets it.
    #[arg(long, required_unless_present = "resume")]
    pub to: Option<String>,

    /// The scenario that smokes --to after the switch (default: SCENARIO, one iteration).
    #[arg(long, value_name = "FILE")]
    pub smoke: Option<PathBuf>,

    /// A passed summary of --from's current deployment: the gate, instead of running SCENARIO.
    #[arg(long, value_name = "SUMMARY")]
    pub evidence: Option<PathBuf>,

    /// Refuse (rather than warn) when --to's functions run other code than --from's.
    #[arg(long)]
    pub require_same_code: bool,

    /// Finish or roll back the promotion this journal left.
    #[arg(long, value_name = "JOURNAL")]
    pub resume: Option<PathBuf>,

    /// Instead of switching: send this share of --to's traffic (`10%`) to
    /// --from's deployment as a canary, judge it, then promote or remove it.
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    pub canary: Option<f64>,

    /// How long the canary gets guarded traffic.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "5m")]
    pub canary_for: std::time::Duration,

    /// Iterations per second of SCENARIO sent to --to while the canary runs.
    #[arg(long, value_name = "N", default_value_t = 10.0)]
    pub canary_rate: f64,

    /// A rule the canary must meet against the primary (repeatable), e.g.
    /// `canary.p99 < primary.p99 * 1.2` (default: `canary.error_rate <=
    /// primary.error_rate + 1%` and `canary.p99 <= primary.p99 * 1.5 + 20ms`).
    #[arg(long = "canary-rule", value_name = "RULE")]
    pub canary_rules: Vec<String>,

    #[command(flatten)]
    pub switch: SwitchOptions,

    #[command(flatten)]
    pub overrides: Overrides,

    /// Write the promotion as JSON here (`-` for stdout).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub reports: ReportFiles,

    /// No progress lines and no terminal report.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The deployment to return to (default: the last one the stage served
    /// that passed its smoke, from the journal, else the next older one).
    #[arg(long = "to", value_name = "DEPLOYMENT_ID")]
    pub to_deployment: Option<String>,

    /// The scenario that smokes the stage after the rollback (default: the
    /// journaled promotion's smoke).
    #[arg(long, value_name = "FILE")]
    pub smoke: Option<PathBuf>,

    #[command(flatten)]
    pub switch: SwitchOptions,

    /// `--stage` names the stage rolled back; `--rest-api` the API.
    #[command(flatten)]
    pub overrides: Overrides,

    /// Write the rollback as JSON here (`-` for stdout).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub reports: ReportFiles,

    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The stage.
    #[arg(long)]
    pub stage: String,

    /// The REST API, by name or id.
    #[arg(long, value_name = "NAME|ID")]
    pub rest_api: String,

    /// Where journals are kept.
    #[arg(long, value_name = "DIR", default_value = ".stagecheck/journal")]
    pub journal_dir: PathBuf,

    /// Write the history as JSON here (`-` for stdout).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub aws: crate::aws::AwsOptions,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,

    /// Mark this stage `protected` (repeatable); prod, production and live always are.
    #[arg(long, value_name = "STAGE")]
    pub protect: Vec<String>,

    /// Write the scenario here (default and `-`: stdout).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Overwrite the file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Which deployment to read: `audit`'s and `init`'s.
#[derive(Debug, Args)]
pub struct DeploymentArgs {
    /// The REST API, by name or id.
    #[arg(long, value_name = "NAME|ID")]
    pub rest_api: String,

    /// Only this stage (repeat for several; default: every stage).
    /// Cross-stage findings only see the stages read.
    #[arg(long = "stage", value_name = "S")]
    pub stages: Vec<String>,

    /// How a function's table name follows from its environment variables:
    /// `{NAME}` is the variable NAME, `{stage}` and `{function}` the names.
    #[arg(long, value_name = "RULE", default_value = "{Environment}User")]
    pub table_rule: String,

    #[command(flatten)]
    pub aws: crate::aws::AwsOptions,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,

    /// Write the audit as JSON here (`-` for stdout): the source of every other format.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Write an HTML report (each stage's chain as a graph) here (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Write a Markdown report here (`-` for stdout); also appended to $GITHUB_STEP_SUMMARY.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,

    /// Write JUnit XML here: one test case per stage and check (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// No terminal report.
    #[arg(long, short = 'q')]
    pub quiet: bool,
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

/// `10%` or `10`: a share of traffic, above 0 and at most 100.
fn parse_percent(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{text:?}: expected a share of traffic, e.g. 10%"))?;
    if value > 0.0 && value <= 100.0 {
        Ok(value)
    } else {
        Err(format!(
            "{text:?}: a canary's share is above 0% and at most 100%"
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn canary_shares_read_as_written() {
        assert_eq!(super::parse_percent("10%"), Ok(10.0));
        assert_eq!(super::parse_percent("12.5"), Ok(12.5));
        assert!(super::parse_percent("0%").is_err());
        assert!(super::parse_percent("150%").is_err());
        assert!(super::parse_percent("ten").is_err());
    }

    /// clap's own checks of every subcommand (unique names, valid
    /// requirements): a flattened group added twice panics at run time only.
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
