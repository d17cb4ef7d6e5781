//! The scenario file as written (TOML), before validation. Fields that later
//! checks may reject keep their span, so errors point at the right line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub name: Option<String>,
    pub description: Option<String>,
    pub target: TargetSpec,
    #[serde(default)]
    pub stages: Vec<StageSpec>,
    #[serde(default)]
    pub load: LoadSpec,
    /// Headers sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<S<String>, S<String>>,
    pub steps: S<Vec<StepSpec>>,
    #[serde(default)]
    pub thresholds: ThresholdsSpec,
    /// How each stage's backends are named.
    #[serde(default)]
    pub backends: BackendsSpec,
    #[serde(default)]
    pub verify: VerifySpec,
    /// More headers whose values are secrets, shown as `***` in every output
    /// (`Authorization`, `x-api-key`, `Cookie`, `Set-Cookie` and
    /// `X-Amz-Security-Token` always are).
    #[serde(default)]
    pub redact: Vec<S<String>>,
}

/// Name templates: `{prefix}` is the stage's table prefix, `{stage}` its
/// name, `{function}` the rendered function name. The defaults are the
/// seed's convention (`test-User`, `test-user-service`, `/aws/lambda/test-user-service`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendsSpec {
    pub table: Option<S<String>>,
    pub function: Option<S<String>>,
    pub log_group: Option<S<String>>,
    /// These names are meant, whatever the control plane says: the run's
    /// preflight reports a disagreement but does not refuse the run.
    #[serde(default)]
    pub pinned: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// Check recorded writes in the stage's table (default: on when a step declares writes).
    pub dynamodb: Option<bool>,
    /// Check the invocations in the stage's function logs (default: on with any verification).
    pub logs: Option<bool>,
    /// Check that nothing reached these stages (default: every other stage of the scenario).
    pub isolate_from: Option<S<Vec<S<String>>>>,
    /// Header carrying a unique id per request; `""` sends none.
    pub correlation_header: Option<S<String>>,
    /// What the functions log: `correlation_id` (our header), `request_id`
    /// (API Gateway's `x-amzn-RequestId`, as Powertools logs it) or `either`
    /// (the default: most functions log only one of them).
    pub log_match: Option<S<String>>,
    /// Re-check missing items for this long before calling them missing.
    pub settle: Option<S<String>>,
    /// How long to wait for log ingestion (default 60s).
    pub logs_deadline: Option<S<String>>,
    /// Writes recorded exactly; past it a uniform sample (default 100 000).
    pub max_recorded_writes: Option<S<u64>>,
    /// Requests whose log lines are checked exactly; past it a uniform sample (default 100 000).
    pub max_recorded_invocations: Option<S<u64>>,
    /// Which logs prove where each request went: `auto` (the default: every
    /// channel the stage offers), `function-logs`, `execution-logs` (API
    /// Gateway's own logs: its execution log and its access log) or `both`
    /// (each request proven by the function's logs and by API Gateway's).
    pub routing: Option<S<String>>,
    /// The stage's REST API id, for its execution-log group
    /// (`API-Gateway-Execution-Logs_{id}/{stage}`) and its access-log
    /// settings (GetStage); read from an
    /// `{id}.execute-api.{region}.amazonaws.com` base URL when not given.
    pub rest_api: Option<S<String>>,
}

/// What a step writes: the item's key and the attributes it should have.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WritesSpec {
    pub key: S<BTreeMap<String, S<toml::Value>>>,
    #[serde(default)]
    pub attributes: BTreeMap<String, S<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// `{stage}` is replaced by the stage name; a custom domain has none.
    pub base_url: S<String>,
    /// The default stage.
    pub stage: Option<S<String>>,
    /// Per-request timeout.
    pub timeout: Option<S<String>>,
    /// The REST API (name or id) whose deployment the run checks before its
    /// traffic; default: the id in an execute-api host name.
    pub rest_api: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    pub name: S<String>,
    #[serde(default)]
    pub table_prefix: String,
    /// Refuses any run heavier than a smoke (one iteration) without `--allow-prod`.
    #[serde(default)]
    pub protected: bool,
    /// `iam` (SigV4), `api-key` or `none` (the default).
    pub auth: Option<S<String>>,
    /// The environment variable holding the stage's API key.
    pub api_key_env: Option<S<String>>,
    /// Override the `[backends]` templates for this stage.
    pub table: Option<S<String>>,
    pub function: Option<S<String>>,
    pub log_group: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// `open` (arrival rate) or `closed` (looping VUs); inferred when absent.
    pub model: Option<S<String>>,
    /// Open model: iterations per second.
    pub rate: Option<S<f64>>,
    /// Open model: the rate a ramp starts from.
    pub start_rate: Option<S<f64>>,
    /// Open model: upper bound on concurrent iterations.
    pub max_vus: Option<S<u32>>,
    /// Open model: due iterations that may wait for a free VU before one is dropped.
    pub backlog: Option<S<u32>>,
    /// Closed model: looping virtual users.
    pub vus: Option<S<u32>>,
    /// Closed model: the VU count a ramp starts from.
    pub start_vus: Option<S<u32>>,
    /// Closed model: pause between a VU's iterations.
    pub think_time: Option<S<String>>,
    pub duration: Option<S<String>>,
    /// Stop after this many iterations in total.
    pub iterations: Option<S<u64>>,
    /// A list of stages: the rate (open) or VU count (closed) moves linearly to `target` over `duration`.
    pub ramp: Option<S<Vec<RampSpec>>>,
    /// How long in-flight iterations may finish after the end or an interrupt.
    pub grace: Option<S<String>>,
    /// Traffic before the measured phase (whole seconds): sent and verified
    /// like the rest, its latency kept apart, so cold starts and cache fills
    /// do not decide the thresholds.
    pub warmup: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampSpec {
    pub target: S<f64>,
    pub duration: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub name: S<String>,
    pub method: S<String>,
    pub path: S<String>,
    #[serde(default)]
    pub query: BTreeMap<S<String>, S<String>>,
    #[serde(default)]
    pub headers: BTreeMap<S<String>, S<String>>,
    /// A JSON body, written as a TOML table or array; strings are templates.
    pub body: Option<S<toml::Value>>,
    /// Per-request timeout for this step.
    pub timeout: Option<S<String>>,
    #[serde(default)]
    pub checks: Vec<S<CheckSpec>>,
    #[serde(default)]
    pub capture: BTreeMap<S<String>, S<CaptureSpec>>,
    /// The DynamoDB item this step writes, for verification.
    pub writes: Option<S<WritesSpec>>,
}

/// One check: a subject (`status`, `header`, `json`, `body_contains`,
/// `latency_under`) and, for `header`/`json`, a predicate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    pub name: Option<String>,
    pub status: Option<S<Vec<u16>>>,
    pub header: Option<S<String>>,
    pub json: Option<S<String>>,
    pub body_contains: Option<S<String>>,
    pub latency_under: Option<S<String>>,
    pub equals: Option<S<toml::Value>>,
    pub contains: Option<S<String>>,
    pub exists: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSpec {
    pub json: Option<S<String>>,
    pub header: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsSpec {
    /// Expressions like `p99 < 800ms`, `create_user.p95 <= 300ms`, `error_rate < 1%`.
    #[serde(default)]
    pub rules: Vec<S<String>>,
    /// Stop the run as soon as a rule fails (evaluated once a second).
    #[serde(default)]
    pub abort_on_fail: bool,
    /// How long to wait before abort_on_fail starts judging, so early noise does not stop a run.
    pub abort_delay: Option<S<String>>,
}
