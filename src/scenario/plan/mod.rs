//! The validated plan the engine runs: stage resolved, URL split, templates
//! compiled, thresholds parsed. Everything a user can get wrong is rejected
//! here, with the file, line, column and key path.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Method};
use toml::Spanned;

use super::file::{CaptureSpec, CheckSpec, LoadSpec, ScenarioFile, StepSpec};
use super::jsonpath::JsonPath;
use super::secrets::Secrets;
use super::template::{Escape, Names, Template};
use crate::auth::{Auth, AuthKind};
pub use crate::aws::AwsOptions;
use crate::error::{Error, ScenarioError};
use crate::thresholds::{Metric, Op, Threshold};

#[derive(Debug, Clone)]
pub struct Plan {
    pub source: PathBuf,
    pub name: String,
    /// Unique per run; in every correlation id and in `{{run_id}}`.
    pub run_id: String,
    pub stage: Stage,
    pub stages: Vec<Stage>,
    pub target: Target,
    pub load: Load,
    pub headers: Vec<(HeaderName, Template)>,
    pub steps: Vec<Step>,
    /// Captures an iteration can hold, across all steps.
    pub capture_slots: usize,
    pub thresholds: Vec<Threshold>,
    pub abort_on_fail: bool,
    pub abort_delay: Duration,
    pub shard: Shard,
    pub threads: usize,
    pub tls: TlsOptions,
    pub uses_uuid: bool,
    pub verify: VerifyPlan,
    /// How requests authenticate; credentials are loaded before traffic.
    pub auth: Auth,
    /// What every output masks.
    pub secrets: Secrets,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub table_prefix: String,
    pub protected: bool,
    pub auth: AuthKind,
    /// The environment variable holding the stage's API key.
    pub api_key_env: Option<String>,
    pub backends: Backends,
}

/// Where a stage's traffic should land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backends {
    pub table: String,
    pub function: String,
    pub log_group: String,
}

/// What to prove after the traffic, and against which stages.
#[derive(Debug, Clone)]
pub struct VerifyPlan {
    pub dynamodb: bool,
    pub logs: bool,
    /// Other stages that must have received nothing.
    pub isolate_from: Vec<Stage>,
    pub correlation_header: Option<HeaderName>,
    pub log_match: LogMatch,
    pub settle: Duration,
    pub logs_deadline: Duration,
    pub max_recorded_writes: usize,
    pub max_recorded_invocations: usize,
    pub cleanup: bool,
    pub aws: AwsOptions,
}

impl VerifyPlan {
    pub fn enabled(&self) -> bool {
        self.dynamodb || self.logs || !self.isolate_from.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogMatch {
    /// Our correlation header, as the function logs it.
    CorrelationId,
    /// API Gateway's request id (`x-amzn-RequestId`), as Powertools logs it.
    RequestId,
    Either,
}

/// The item a step writes: its key and expected attributes, rendered per iteration.
#[derive(Debug, Clone)]
pub struct Writes {
    pub key: Vec<(String, Expected)>,
    pub attributes: Vec<(String, Expected)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

#[derive(Debug, Clone)]
pub struct Target {
    /// The base URL with `{stage}` replaced.
    pub base_url: String,
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// The `Host` header.
    pub authority: String,
    /// `authority` ready to send, validated once.
    pub host_header: http::HeaderValue,
    /// The path every step's path is appended to, without a trailing `/`.
    pub base_path: String,
}

#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub ca_cert: Option<PathBuf>,
    pub insecure: bool,
}

/// Which part of the work this process does when a run is split across
/// processes or machines (`--shard 2/3`, counted from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// From 0.
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {text:?}: expected I/N with 1 ≤ I ≤ N, e.g. 1/3");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (i, n): (u32, u32) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if i == 0 || n == 0 || i > n {
            return Err(bad());
        }
        Ok(Shard {
            index: i - 1,
            count: n,
        })
    }

    /// This shard's part of a run-wide count, so the shards add up to it.
    pub fn share(&self, total: u64) -> u64 {
        let (i, n) = (u64::from(self.index), u64::from(self.count));
        total / n + u64::from(i < total % n)
    }

    pub fn label(&self) -> Option<String> {
        (self.count > 1).then(|| format!("{}/{}", self.index + 1, self.count))
    }
}

/// A piecewise-linear profile over time: iterations per second (open model)
/// or VUs (closed model).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub from: f64,
    pub to: f64,
    pub duration: Duration,
}

impl Profile {
    pub fn constant(value: f64, duration: Duration) -> Profile {
        Profile {
            segments: vec![Segment {
                from: value,
                to: value,
                duration,
            }],
        }
    }

    pub fn duration(&self) -> Duration {
        self.segments.iter().map(|s| s.duration).sum()
    }

    pub fn peak(&self) -> f64 {
        self.segments
            .iter()
            .map(|s| s.from.max(s.to))
            .fold(0.0, f64::max)
    }

    /// The value at `t` seconds from the start (0 past the end).
    pub fn value_at(&self, t: f64) -> f64 {
        let mut start = 0.0;
        for s in &self.segments {
            let d = s.duration.as_secs_f64();
            if t < start + d {
                return s.from + (s.to - s.from) * (t - start) / d;
            }
            start += d;
        }
        0.0
    }
}

#[derive(Debug, Clone)]
pub enum Model {
    /// Iterations start at a rate, whatever the server does.
    Open {
        rate: Profile,
        max_vus: u32,
        backlog: u32,
    },
    /// VUs loop: an iteration starts when the previous one ends.
    Closed { vus: Profile, think_time: Duration },
}

#[derive(Debug, Clone)]
pub struct Load {
    pub model: Model,
    pub duration: Duration,
    pub iterations: Option<u64>,
    pub grace: Duration,
}

impl Load {
    pub fn model_name(&self) -> &'static str {
        match self.model {
            Model::Open { .. } => "open",
            Model::Closed { .. } => "closed",
        }
    }

    pub fn peak_rate(&self) -> Option<f64> {
        match &self.model {
            Model::Open { rate, .. } => Some(rate.peak()),
            Model::Closed { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub method: Method,
    /// As written, for reports.
    pub path_text: String,
    /// The base path joined with the step's path.
    pub path: Template,
    pub query: Vec<(String, Template)>,
    pub headers: Vec<(HeaderName, Template)>,
    pub body: Option<Template>,
    pub timeout: Duration,
    pub checks: Vec<Check>,
    pub captures: Vec<Capture>,
    /// Statuses that count as success; `None` means below 400.
    pub expected_status: Option<Vec<u16>>,
    /// Some check or capture reads the body as JSON.
    pub needs_json: bool,
    pub writes: Option<Writes>,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
}

#[derive(Debug, Clone)]
pub enum CheckKind {
    Status(Vec<u16>),
    Header {
        name: HeaderName,
        predicate: Predicate,
    },
    Json {
        path: JsonPath,
        predicate: Predicate,
    },
    BodyContains(String),
    LatencyUnder(Duration),
    /// Added for every capture: the value was found in the answer.
    Captured(usize),
}

#[derive(Debug, Clone)]
pub enum Predicate {
    Exists(bool),
    Equals(Expected),
    Contains(Template),
}

#[derive(Debug, Clone)]
pub enum Expected {
    /// A string, rendered per iteration.
    Text(Template),
    /// A number, boolean, array or table, compared as JSON.
    Value(serde_json::Value),
}

#[derive(Debug, Clone)]
pub struct Capture {
    pub name: String,
    pub slot: usize,
    pub source: CaptureSource,
}

#[derive(Debug, Clone)]
pub enum CaptureSource {
    Json(JsonPath),
    Header(HeaderName),
}

/// What the command line changes in the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub stage: Option<String>,
    pub base_url: Option<String>,
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub vus: Option<u32>,
    pub max_vus: Option<u32>,
    pub iterations: Option<u64>,
    pub timeout: Option<Duration>,
    pub headers: Vec<String>,
    pub threads: Option<usize>,
    pub shard: Option<String>,
    pub grace: Option<Duration>,
    pub tls: TlsOptions,
    /// `validate` needs no stage: a scenario may leave it to the command line.
    pub validate_only: bool,
    /// `Some(false)` turns every backend verification off.
    pub verify: Option<bool>,
    pub isolate_from: Vec<String>,
    pub cleanup: bool,
    pub logs_deadline: Option<Duration>,
    pub aws: AwsOptions,
    /// `--auth`: replaces the stage's.
    pub auth: Option<String>,
    pub api_key_env: Option<String>,
    /// Lets a protected stage take more than a smoke run.
    pub allow_prod: bool,
    /// Refuse a run that could send more requests per second than this.
    pub max_rate: Option<f64>,
}

impl Plan {
    /// Every check of every step, in the order metrics index them.
    pub fn checks(&self) -> impl Iterator<Item = (&Step, &Check)> {
        self.steps
            .iter()
            .flat_map(|s| s.checks.iter().map(move |c| (s, c)))
    }

    pub fn check_count(&self) -> usize {
        self.steps.iter().map(|s| s.checks.len()).sum()
    }

    /// The correlation id sent with iteration `seq`'s request for `step`,
    /// when the scenario sends one. Unique per request and led by the run id,
    /// so one quoted filter pattern finds all of a run's log lines.
    pub fn correlation_id(&self, seq: u64, step: usize) -> Option<String> {
        self.verify
            .correlation_header
            .as_ref()
            .map(|_| format!("{}-{seq}-{step}", self.run_id))
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_GRACE: Duration = Duration::from_secs(5);
const DEFAULT_MAX_VUS: u32 = 256;
const DEFAULT_BACKLOG: u32 = 10_000;
const DEFAULT_ABORT_DELAY: Duration = Duration::from_secs(10);
/// A run given only an iteration count still needs an end.
const ITERATIONS_ONLY_LIMIT: Duration = Duration::from_secs(3600);

/// The tables a scenario cannot do without.
const TOP_LEVEL_TABLES: [&str; 2] = ["target", "steps"];

/// Reads, parses and validates a scenario file.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Plan, Error> {
    let src = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &src, overrides)
}

/// Parses and validates scenario text; `path` is only used in messages.
pub fn parse(path: &Path, src: &str, overrides: &Overrides) -> Result<Plan, Error> {
    let cx = Cx { file: path, src };
    let file: ScenarioFile = toml::from_str(src).map_err(|e| {
        let message = e.message().trim_end();
        // A required top-level table is missing: the parser reports it at
        // offset 0, which would name whatever key comes first in the file.
        if let Some(table) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
            .filter(|t| TOP_LEVEL_TABLES.contains(t))
            .filter(|_| e.span().is_none_or(|s| s.start == 0))
        {
            let example = if table == "steps" {
                "[[steps]] with name, method and path"
            } else {
                "[target] with base_url and stage"
            };
            let mut error = ScenarioError::at(
                cx.file,
                cx.src,
                0..0,
                format!("the scenario has no `{table}` table; add {example}"),
            );
            error.field = table.to_string();
            return Error::Scenario(error);
        }
        let span = e.span().unwrap_or(0..0);
        cx.error(span, message.to_string())
    })?;
    build(&cx, file, overrides)
}

struct Cx<'a> {
    file: &'a Path,
    src: &'a str,
}

impl Cx<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> Error {
        Error::Scenario(ScenarioError::at(self.file, self.src, span, message.into()))
    }

    fn duration(&self, value: &Spanned<String>) -> Result<Duration, Error> {
        crate::units::parse_duration(value.get_ref()).map_err(|m| self.error(value.span(), m))
    }
}

/// The names visible to a template: the environment, and captures of the
/// steps before the current one.
struct Scope {
    captures: BTreeMap<String, usize>,
}

impl Names for Scope {
    fn capture(&self, name: &str) -> Option<usize> {
        self.captures.get(name).copied()
    }
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

fn build(cx: &Cx<'_>, file: ScenarioFile, ov: &Overrides) -> Result<Plan, Error> {
    let usage = |m: String| Error::Usage(m);
    let naming = Naming::new(&file.backends);
    let mut stages = Vec::new();
    for spec in &file.stages {
        if stages
            .iter()
            .any(|s: &Stage| &s.name == spec.name.get_ref())
        {
            return Err(cx.error(
                spec.name.span(),
                format!("stage `{}` is listed twice", spec.name.get_ref()),
            ));
        }
        let backends = naming.resolve(spec.name.get_ref(), &spec.table_prefix, spec);
        let auth = match &spec.auth {
            Some(a) => AuthKind::parse(a.get_ref()).map_err(|m| cx.error(a.span(), m))?,
            None => AuthKind::None,
        };
        let api_key_env = match &spec.api_key_env {
            Some(v) if !is_env_name(v.get_ref()) => {
                return Err(cx.error(
                    v.span(),
                    "api_key_env names an environment variable (letters, digits and _), not the key itself",
                ));
            }
            Some(v) => Some(v.get_ref().clone()),
            None => None,
        };
        stages.push(Stage {
            name: spec.name.get_ref().clone(),
            table_prefix: spec.table_prefix.clone(),
            protected: spec.protected,
            auth,
            api_key_env,
            backends,
        });
    }
    let stage_name = match (&ov.stage, &file.target.stage) {
        (Some(name), _) => name.clone(),
        (None, Some(name)) => name.get_ref().clone(),
        (None, None) => match stages.first() {
            Some(first) => first.name.clone(),
            None if ov.validate_only => "stage".to_string(),
            None => {
                return Err(usage(
                    "no stage given: pass --stage NAME or set target.stage".into(),
                ));
            }
        },
    };
    let stage = match stages.iter().find(|s| s.name == stage_name) {
        Some(stage) => stage.clone(),
        None if stages.is_empty() => Stage {
            name: stage_name.clone(),
            table_prefix: String::new(),
            protected: false,
            auth: AuthKind::None,
            api_key_env: None,
            backends: naming.resolve(&stage_name, "", &NoOverrides),
        },
        None => {
            let known: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
            let message = format!(
                "unknown stage `{stage_name}` (the scenario knows: {})",
                known.join(", ")
            );
            return Err(match (&ov.stage, &file.target.stage) {
                (None, Some(spanned)) => cx.error(spanned.span(), message),
                _ => usage(message),
            });
        }
    };

    let target = match &ov.base_url {
        Some(url) => {
            parse_base_url(url, &stage.name).map_err(|m| usage(format!("--base-url: {m}")))?
        }
        None => parse_base_url(file.target.base_url.get_ref(), &stage.name)
            .map_err(|m| cx.error(file.target.base_url.span(), m))?,
    };
    let timeout = match (ov.timeout, &file.target.timeout) {
        (Some(t), _) => t,
        (None, Some(t)) => cx.duration(t)?,
        (None, None) => DEFAULT_TIMEOUT,
    };

    let no_captures = Scope {
        captures: BTreeMap::new(),
    };
    let mut headers = Vec::new();
    for (name, value) in &file.headers {
        let name_h = header_name(name.get_ref()).map_err(|m| cx.error(name.span(), m))?;
        reject_literal_api_key(cx, &name_h, value)?;
        let value_t = Template::compile(value.get_ref(), Escape::None, &no_captures)
            .map_err(|e| cx.error(value.span(), e.message))?;
        headers.push((name_h, value_t));
    }
    for raw in &ov.headers {
        // A header can carry a secret: messages name the header, never its value.
        let (name, value) = raw.split_once(':').ok_or_else(|| {
            usage("--header: expected `Name: value` (the text given is not shown: it may be a secret)".into())
        })?;
        let name = header_name(name.trim()).map_err(|m| usage(format!("--header: {m}")))?;
        let value = Template::compile(value.trim(), Escape::None, &no_captures)
            .map_err(|e| usage(format!("--header {name}: {}", e.message)))?;
        headers.retain(|(n, _)| n != name);
        headers.push((name, value));
    }

    let step_specs = file.steps.get_ref();
    if step_specs.is_empty() {
        return Err(cx.error(file.steps.span(), "a scenario needs at least one step"));
    }
    let mut scope = Scope {
        captures: BTreeMap::new(),
    };
    let mut steps = Vec::new();
    for spec in step_specs {
        if steps.iter().any(|s: &Step| &s.name == spec.name.get_ref()) {
            return Err(cx.error(
                spec.name.span(),
                format!("step name `{}` is used twice", spec.name.get_ref()),
            ));
        }
        steps.push(build_step(cx, spec, &target, timeout, &mut scope)?);
    }
    let step_names: Vec<String> = steps.iter().map(|s| s.name.clone()).collect();

    let load = build_load(cx, &file.load, ov)?;
    if !ov.validate_only {
        guard_protected(&stage, &load, ov)?;
        if let Some(cap) = ov.max_rate {
            guard_max_rate(cap, &load, steps.len())?;
        }
    }
    let auth_kind = match &ov.auth {
        Some(text) => AuthKind::parse(text).map_err(|m| usage(format!("--auth: {m}")))?,
        None => stage.auth,
    };
    let auth = match auth_kind {
        AuthKind::None => Auth::None,
        // `validate` checks the file, not the environment it will run in.
        AuthKind::ApiKey if ov.validate_only => Auth::None,
        AuthKind::ApiKey => {
            let var = ov
                .api_key_env
                .clone()
                .or_else(|| stage.api_key_env.clone())
                .unwrap_or_else(|| crate::auth::DEFAULT_API_KEY_ENV.to_string());
            Auth::api_key(&var).map_err(|m| usage(format!("stage {}: {m}", stage.name)))?
        }
        AuthKind::Iam => Auth::iam(
            format!(
                "{}://{}",
                match target.scheme {
                    Scheme::Http => "http",
                    Scheme::Https => "https",
                },
                target.authority
            ),
            &target.host,
            ov.aws.region.clone(),
        ),
    };
    let mut redact = Vec::new();
    for name in &file.redact {
        redact.push(header_name(name.get_ref()).map_err(|m| cx.error(name.span(), m))?);
    }
    let mut secrets = Secrets::new(redact);
    if let Some(key) = auth.secret_value() {
        secrets.add_value(&key);
    }
    for (name, value) in headers
        .iter()
        .chain(steps.iter().flat_map(|s| s.headers.iter()))
    {
        if secrets.is_sensitive(name) {
            secrets.add_header_value(value);
        }
    }
    let mut thresholds = Vec::new();
    for rule in &file.thresholds.rules {
        thresholds.push(
            Threshold::parse(rule.get_ref(), &step_names)
                .map_err(|e| cx.error(rule.span(), e.0))?,
        );
    }
    // A failed request and a failed check fail the run unless the scenario
    // says how many may fail.
    let with_checks: Vec<&str> = steps
        .iter()
        .filter(|s| !s.checks.is_empty())
        .map(|s| s.name.as_str())
        .collect();
    let defaults = default_rules(
        &thresholds,
        &[Metric::Checks],
        &with_checks,
        "checks == 100%",
    )
    .into_iter()
    .chain(default_rules(
        &thresholds,
        &[Metric::ErrorRate, Metric::Failed],
        &step_names.iter().map(String::as_str).collect::<Vec<_>>(),
        "error_rate == 0%",
    ))
    .collect::<Vec<_>>();
    thresholds.extend(defaults);
    let abort_delay = match &file.thresholds.abort_delay {
        Some(d) => cx.duration(d)?,
        None => DEFAULT_ABORT_DELAY,
    };

    let shard = match &ov.shard {
        Some(text) => Shard::parse(text).map_err(usage)?,
        None => Shard::WHOLE,
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let threads = ov.threads.unwrap_or(cores).max(1);
    if ov.threads == Some(0) {
        return Err(usage("--threads must be at least 1".into()));
    }
    let uses_uuid = steps.iter().any(step_uses_uuid) || headers.iter().any(|(_, t)| t.uses_uuid());
    let capture_slots = scope.captures.len();
    let verify = build_verify(cx, &file, ov, &stage, &stages, &steps)?;
    reject_correlation_header(cx, &file, ov, &verify)?;
    // Missing writes, missing invocations and leaks fail the run unless the
    // scenario writes its own rule for them.
    let implied = [
        (
            verify.dynamodb,
            Metric::MissingWrites,
            "missing_writes == 0",
        ),
        (
            verify.dynamodb,
            Metric::MismatchedWrites,
            "mismatched_writes == 0",
        ),
        (
            verify.logs,
            Metric::MissingInvocations,
            "missing_invocations == 0",
        ),
        (
            !verify.isolate_from.is_empty(),
            Metric::IsolationLeaks,
            "isolation_leaks == 0",
        ),
    ];
    for (on, metric, expr) in implied {
        if on
            && !thresholds
                .iter()
                .any(|t| t.metric == metric && t.step.is_none())
        {
            thresholds.push(Threshold {
                expr: expr.into(),
                step: None,
                metric,
                op: Op::Eq,
                limit: 0.0,
                implicit: true,
            });
        }
    }
    Ok(Plan {
        source: cx.file.to_path_buf(),
        name: file.name.clone().unwrap_or_else(|| {
            cx.file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        }),
        run_id: new_run_id(),
        stage,
        stages,
        target,
        load,
        headers,
        steps,
        capture_slots,
        thresholds,
        abort_on_fail: file.thresholds.abort_on_fail,
        abort_delay,
        shard,
        threads,
        tls: ov.tls.clone(),
        uses_uuid,
        verify,
        auth,
        secrets,
    })
}

/// The default rule `expr` (e.g. `error_rate == 0%`) for every step in
/// `steps` that the user's rules on `metrics` do not cover: none when a
/// whole-run rule covers them all, one whole-run rule when no rule names a
/// step, one per uncovered step otherwise, so a rule on one step relaxes that
/// step only.
fn default_rules(
    rules: &[Threshold],
    metrics: &[Metric],
    steps: &[&str],
    expr: &str,
) -> Vec<Threshold> {
    let mine: Vec<&Threshold> = rules
        .iter()
        .filter(|t| metrics.contains(&t.metric))
        .collect();
    if steps.is_empty() || mine.iter().any(|t| t.step.is_none()) {
        return Vec::new();
    }
    let parse = |text: &str| {
        Threshold::parse(
            text,
            &steps.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    };
    let uncovered: Vec<&str> = steps
        .iter()
        .copied()
        .filter(|name| !mine.iter().any(|t| t.step.as_deref() == Some(*name)))
        .collect();
    let texts: Vec<String> = if mine.is_empty() {
        vec![expr.to_string()]
    } else {
        uncovered
            .iter()
            .map(|name| format!("{name}.{expr}"))
            .collect()
    };
    texts
        .iter()
        .filter_map(|text| parse(text).ok())
        .map(|mut rule| {
            rule.implicit = true;
            rule
        })
        .collect()
}

/// stagecheck sets the correlation header itself, to an id unique per
/// request that log verification looks for; a value the user writes for it
/// would be replaced without a word, so it is refused with what to write.
fn reject_correlation_header(
    cx: &Cx<'_>,
    file: &ScenarioFile,
    ov: &Overrides,
    verify: &VerifyPlan,
) -> Result<(), Error> {
    let Some(ours) = &verify.correlation_header else {
        return Ok(());
    };
    let why = format!(
        "stagecheck sets {ours} on every request to an id unique per request (`RUN_ID-SEQ-STEP`, which log verification looks for), so this value would be replaced; remove this header, or set `[verify] correlation_header` to another header name (\"\" sends none)"
    );
    let same =
        |name: &str| HeaderName::from_bytes(name.trim().as_bytes()).is_ok_and(|n| n == *ours);
    let written = file
        .headers
        .keys()
        .chain(file.steps.get_ref().iter().flat_map(|s| s.headers.keys()));
    if let Some(name) = written.into_iter().find(|k| same(k.get_ref())) {
        return Err(cx.error(name.span(), why));
    }
    if let Some(raw) = ov
        .headers
        .iter()
        .find(|raw| raw.split_once(':').is_some_and(|(n, _)| same(n)))
    {
        let name = raw.split_once(':').map_or("", |(n, _)| n.trim());
        return Err(Error::Usage(format!("--header {name}: {why}")));
    }
    Ok(())
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// An API key written in clear in the scenario would end up in version
/// control: it must come from the environment.
fn reject_literal_api_key(
    cx: &Cx<'_>,
    name: &HeaderName,
    value: &Spanned<String>,
) -> Result<(), Error> {
    if name.as_str() == crate::auth::API_KEY_HEADER && !value.get_ref().contains("{{") {
        return Err(cx.error(
            value.span(),
            "an API key is not written in the scenario: set `auth = \"api-key\"` and `api_key_env = \"NAME\"` on the stage, or write `{{env.NAME}}`",
        ));
    }
    Ok(())
}

/// A protected stage (`protected = true`, normally Prod) takes a smoke run —
/// one iteration — unless `--allow-prod` says the load is meant.
fn guard_protected(stage: &Stage, load: &Load, ov: &Overrides) -> Result<(), Error> {
    if !stage.protected || ov.allow_prod || load.iterations == Some(1) {
        return Ok(());
    }
    let what = match (load.iterations, &load.model) {
        (Some(n), _) => format!("{n} iterations"),
        (None, Model::Open { rate, .. }) => format!(
            "traffic for {} at up to {} iterations/s",
            humantime::format_duration(load.duration),
            rate.peak()
        ),
        (None, Model::Closed { vus, .. }) => format!(
            "traffic for {} with up to {} VUs",
            humantime::format_duration(load.duration),
            vus.peak().ceil()
        ),
    };
    Err(Error::Usage(format!(
        "stage `{}` is protected: this run would send {what}, and a protected stage only takes a smoke run (one iteration). Pass --allow-prod to send this load anyway, or --iterations 1 for a smoke run",
        stage.name
    )))
}

/// The most requests per second the run could send: the peak iteration rate
/// times the requests per iteration, and never more than its iterations'
/// requests in total. `None`: no bound (looping VUs without think time).
pub fn peak_request_rate(load: &Load, requests_per_iteration: usize) -> Option<f64> {
    let per = requests_per_iteration as f64;
    let by_rate = match &load.model {
        Model::Open { rate, .. } => Some(rate.peak() * per),
        Model::Closed { vus, think_time } if !think_time.is_zero() => {
            Some(vus.peak() * per / think_time.as_secs_f64())
        }
        Model::Closed { .. } => None,
    };
    let by_count = load.iterations.map(|n| n as f64 * per);
    match (by_rate, by_count) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `--max-rate`: a run that could exceed the cap is refused before it starts,
/// rather than clamped, so what runs is what the scenario says.
fn guard_max_rate(cap: f64, load: &Load, requests_per_iteration: usize) -> Result<(), Error> {
    if !cap.is_finite() || cap <= 0.0 {
        return Err(Error::Usage("--max-rate must be above 0".into()));
    }
    match peak_request_rate(load, requests_per_iteration) {
        Some(peak) if peak <= cap => Ok(()),
        Some(peak) => Err(Error::Usage(format!(
            "--max-rate {cap}: this run could send up to {peak} requests/s ({requests_per_iteration} per iteration); lower the rate or raise --max-rate"
        ))),
        None => Err(Error::Usage(format!(
            "--max-rate {cap}: looping VUs without think_time have no rate bound; use the open model (--rate) or set load.think_time"
        ))),
    }
}

fn step_uses_uuid(step: &Step) -> bool {
    step.path.uses_uuid()
        || step.body.as_ref().is_some_and(Template::uses_uuid)
        || step.query.iter().any(|(_, t)| t.uses_uuid())
        || step.headers.iter().any(|(_, t)| t.uses_uuid())
        || step.checks.iter().any(|c| match &c.kind {
            CheckKind::Header { predicate, .. } | CheckKind::Json { predicate, .. } => {
                match predicate {
                    Predicate::Equals(Expected::Text(t)) | Predicate::Contains(t) => t.uses_uuid(),
                    _ => false,
                }
            }
            _ => false,
        })
}

/// Short and sortable by time: a prefix people can grep logs for.
fn new_run_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("sc{secs:x}{:06x}", fastrand::u32(..0x100_0000))
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))
}

pub fn parse_base_url(template: &str, stage: &str) -> Result<Target, String> {
    let url = template.replace("{stage}", stage);
    if !url.contains("://") {
        return Err(format!("{url:?} needs a scheme, e.g. https://{url}"));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        Some(other) => {
            return Err(format!(
                "{url:?}: unsupported scheme {other:?} (use http or https)"
            ));
        }
        None => return Err(format!("{url:?} needs a scheme, e.g. https://{url}")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "{url:?}: credentials in the URL are not supported; use headers or auth"
        ));
    }
    if uri.query().is_some() {
        return Err(format!(
            "{url:?}: a base URL cannot have a query; put it in the steps"
        ));
    }
    let port = authority.port_u16().unwrap_or(match scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    });
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok(Target {
        base_url: url.clone(),
        scheme,
        host,
        port,
        authority: authority.as_str().to_string(),
        host_header: http::HeaderValue::from_str(authority.as_str())
            .map_err(|_| format!("{url:?}: the host is not a valid Host header"))?,
        base_path: uri.path().trim_end_matches('/').to_string(),
    })
}

fn build_step(
    cx: &Cx<'_>,
    spec: &StepSpec,
    target: &Target,
    timeout: Duration,
    scope: &mut Scope,
) -> Result<Step, Error> {
    let name = spec.name.get_ref().trim().to_string();
    if name.is_empty() || name.contains('.') {
        return Err(cx.error(
            spec.name.span(),
            "a step name must be non-empty and contain no `.` (thresholds use `step.metric`)",
        ));
    }
    let method_text = spec.method.get_ref().to_ascii_uppercase();
    let method = match method_text.as_str() {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        "HEAD" => Method::HEAD,
        "OPTIONS" => Method::OPTIONS,
        _ => {
            return Err(cx.error(
                spec.method.span(),
                format!(
                    "unknown method {:?} (expected GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS)",
                    spec.method.get_ref()
                ),
            ));
        }
    };
    let path_text = spec.path.get_ref().clone();
    if !path_text.starts_with('/') {
        return Err(cx.error(
            spec.path.span(),
            format!("the path {path_text:?} must start with `/`"),
        ));
    }
    let template_err = |span: Range<usize>| {
        move |e: super::template::TemplateError| cx.error(span.clone(), e.message)
    };
    // The base path is fixed text: prefix it to the first literal.
    let full_path = format!("{}{}", target.base_path, path_text);
    let path = Template::compile(&full_path, Escape::Path, scope)
        .map_err(template_err(spec.path.span()))?;
    let mut query = Vec::new();
    for (k, v) in &spec.query {
        let value =
            Template::compile(v.get_ref(), Escape::Url, scope).map_err(template_err(v.span()))?;
        query.push((super::template::percent_encode(k.get_ref()), value));
    }
    let mut headers = Vec::new();
    for (k, v) in &spec.headers {
        let name = header_name(k.get_ref()).map_err(|m| cx.error(k.span(), m))?;
        reject_literal_api_key(cx, &name, v)?;
        let value =
            Template::compile(v.get_ref(), Escape::None, scope).map_err(template_err(v.span()))?;
        headers.push((name, value));
    }
    let body = match &spec.body {
        None => None,
        Some(value) => {
            let json = json_body_text(value.get_ref());
            Some(
                Template::compile(&json, Escape::JsonString, scope)
                    .map_err(template_err(value.span()))?,
            )
        }
    };
    let step_timeout = match &spec.timeout {
        Some(t) => cx.duration(t)?,
        None => timeout,
    };

    let mut checks = Vec::new();
    let mut expected_status: Option<Vec<u16>> = None;
    for check in &spec.checks {
        let built = build_check(cx, check, scope)?;
        if let CheckKind::Status(codes) = &built.kind {
            expected_status.get_or_insert_with(Vec::new).extend(codes);
        }
        checks.push(built);
    }
    // Captures become visible to later steps only.
    let mut captures = Vec::new();
    for (capture_name, capture) in &spec.capture {
        let cname = capture_name.get_ref().clone();
        if !is_identifier(&cname) || super::template::BUILTINS.iter().any(|b| *b == cname) {
            return Err(cx.error(
                capture_name.span(),
                format!("capture name `{cname}` must be an identifier that is not a built-in"),
            ));
        }
        let source = capture_source(cx, capture)?;
        let next = scope.captures.len();
        let slot = *scope.captures.entry(cname.clone()).or_insert(next);
        checks.push(Check {
            name: format!("captured {cname}"),
            kind: CheckKind::Captured(slot),
        });
        captures.push(Capture {
            name: cname,
            slot,
            source,
        });
    }
    let writes = match &spec.writes {
        None => None,
        Some(w) => {
            let w_ref = w.get_ref();
            if w_ref.key.get_ref().is_empty() || w_ref.key.get_ref().len() > 2 {
                return Err(cx.error(
                    w_ref.key.span(),
                    "a key has one attribute (partition key) or two (with the sort key)",
                ));
            }
            let expected = |map: &BTreeMap<String, Spanned<toml::Value>>| -> Result<Vec<(String, Expected)>, Error> {
                map.iter().map(|(name, value)| Ok((name.clone(), expected_value(cx, value, scope)?))).collect()
            };
            Some(Writes {
                key: expected(w_ref.key.get_ref())?,
                attributes: expected(&w_ref.attributes)?,
            })
        }
    };
    let needs_json = checks
        .iter()
        .any(|c| matches!(c.kind, CheckKind::Json { .. }))
        || captures
            .iter()
            .any(|c| matches!(c.source, CaptureSource::Json(_)));
    Ok(Step {
        name,
        method,
        path_text,
        path,
        query,
        headers,
        body,
        timeout: step_timeout,
        checks,
        captures,
        expected_status,
        needs_json,
        writes,
    })
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

fn capture_source(cx: &Cx<'_>, capture: &Spanned<CaptureSpec>) -> Result<CaptureSource, Error> {
    match (&capture.get_ref().json, &capture.get_ref().header) {
        (Some(path), None) => Ok(CaptureSource::Json(
            JsonPath::parse(path.get_ref()).map_err(|m| cx.error(path.span(), m))?,
        )),
        (None, Some(name)) => Ok(CaptureSource::Header(
            header_name(name.get_ref()).map_err(|m| cx.error(name.span(), m))?,
        )),
        _ => Err(cx.error(
            capture.span(),
            "a capture takes exactly one of `json = \"path\"` or `header = \"name\"`",
        )),
    }
}

fn build_check(cx: &Cx<'_>, check: &Spanned<CheckSpec>, scope: &Scope) -> Result<Check, Error> {
    let spec = check.get_ref();
    let subjects = [
        spec.status.is_some(),
        spec.header.is_some(),
        spec.json.is_some(),
        spec.body_contains.is_some(),
        spec.latency_under.is_some(),
    ];
    if subjects.iter().filter(|s| **s).count() != 1 {
        return Err(cx.error(
            check.span(),
            "a check needs exactly one of `status`, `header`, `json`, `body_contains`, `latency_under`",
        ));
    }
    let predicate_given = spec.equals.is_some() || spec.contains.is_some() || spec.exists.is_some();
    let (kind, auto_name) = if let Some(codes) = &spec.status {
        if codes.get_ref().is_empty() || codes.get_ref().iter().any(|c| !(100..=599).contains(c)) {
            return Err(cx.error(
                codes.span(),
                "`status` takes a list of HTTP status codes (100–599), e.g. [200, 201]",
            ));
        }
        reject_predicate(cx, check, predicate_given, "status")?;
        let list: Vec<String> = codes.get_ref().iter().map(u16::to_string).collect();
        (
            CheckKind::Status(codes.get_ref().clone()),
            format!("status in [{}]", list.join(", ")),
        )
    } else if let Some(name) = &spec.header {
        let header = header_name(name.get_ref()).map_err(|m| cx.error(name.span(), m))?;
        let (predicate, text) = build_predicate(cx, spec, scope)?;
        (
            CheckKind::Header {
                name: header,
                predicate,
            },
            format!("header {} {text}", name.get_ref()),
        )
    } else if let Some(path) = &spec.json {
        let parsed = JsonPath::parse(path.get_ref()).map_err(|m| cx.error(path.span(), m))?;
        let (predicate, text) = build_predicate(cx, spec, scope)?;
        (
            CheckKind::Json {
                path: parsed,
                predicate,
            },
            format!("json {} {text}", path.get_ref()),
        )
    } else if let Some(text) = &spec.body_contains {
        reject_predicate(cx, check, predicate_given, "body_contains")?;
        (
            CheckKind::BodyContains(text.get_ref().clone()),
            format!("body contains {:?}", text.get_ref()),
        )
    } else if let Some(limit) = &spec.latency_under {
        reject_predicate(cx, check, predicate_given, "latency_under")?;
        (
            CheckKind::LatencyUnder(cx.duration(limit)?),
            format!("latency < {}", limit.get_ref()),
        )
    } else {
        return Err(cx.error(check.span(), "empty check"));
    };
    Ok(Check {
        name: spec.name.clone().unwrap_or(auto_name),
        kind,
    })
}

fn reject_predicate(
    cx: &Cx<'_>,
    check: &Spanned<CheckSpec>,
    given: bool,
    subject: &str,
) -> Result<(), Error> {
    if given {
        return Err(cx.error(
            check.span(),
            format!(
                "`equals`, `contains` and `exists` go with `header` or `json`, not `{subject}`"
            ),
        ));
    }
    Ok(())
}

fn build_predicate(
    cx: &Cx<'_>,
    spec: &CheckSpec,
    scope: &Scope,
) -> Result<(Predicate, String), Error> {
    let given = usize::from(spec.equals.is_some())
        + usize::from(spec.contains.is_some())
        + usize::from(spec.exists.is_some());
    if given > 1 {
        let span = spec
            .equals
            .as_ref()
            .map(|s| s.span())
            .or(spec.contains.as_ref().map(|s| s.span()))
            .unwrap_or(0..0);
        return Err(cx.error(span, "use one of `equals`, `contains`, `exists` per check"));
    }
    if let Some(value) = &spec.equals {
        let expected = match value.get_ref() {
            toml::Value::String(s) => Expected::Text(
                Template::compile(s, Escape::None, scope)
                    .map_err(|e| cx.error(value.span(), e.message))?,
            ),
            other => Expected::Value(toml_to_json(other)),
        };
        return Ok((
            Predicate::Equals(expected),
            format!("== {}", value.get_ref()),
        ));
    }
    if let Some(text) = &spec.contains {
        let t = Template::compile(text.get_ref(), Escape::None, scope)
            .map_err(|e| cx.error(text.span(), e.message))?;
        return Ok((
            Predicate::Contains(t),
            format!("contains {:?}", text.get_ref()),
        ));
    }
    let exists = spec.exists.as_ref().is_none_or(|e| *e.get_ref());
    Ok((
        Predicate::Exists(exists),
        if exists {
            "exists".into()
        } else {
            "absent".into()
        },
    ))
}

fn expected_value(
    cx: &Cx<'_>,
    value: &Spanned<toml::Value>,
    scope: &Scope,
) -> Result<Expected, Error> {
    Ok(match value.get_ref() {
        toml::Value::String(s) => Expected::Text(
            Template::compile(s, Escape::None, scope)
                .map_err(|e| cx.error(value.span(), e.message))?,
        ),
        other => Expected::Value(toml_to_json(other)),
    })
}

/// The `[backends]` name templates, with the seed's convention as defaults.
struct Naming {
    table: String,
    function: String,
    log_group: String,
}

trait StageNames {
    fn table(&self) -> Option<&str>;
    fn function(&self) -> Option<&str>;
    fn log_group(&self) -> Option<&str>;
}

impl StageNames for super::file::StageSpec {
    fn table(&self) -> Option<&str> {
        self.table.as_ref().map(|s| s.get_ref().as_str())
    }
    fn function(&self) -> Option<&str> {
        self.function.as_ref().map(|s| s.get_ref().as_str())
    }
    fn log_group(&self) -> Option<&str> {
        self.log_group.as_ref().map(|s| s.get_ref().as_str())
    }
}

struct NoOverrides;

impl StageNames for NoOverrides {
    fn table(&self) -> Option<&str> {
        None
    }
    fn function(&self) -> Option<&str> {
        None
    }
    fn log_group(&self) -> Option<&str> {
        None
    }
}

impl Naming {
    fn new(spec: &super::file::BackendsSpec) -> Naming {
        let pick = |v: &Option<Spanned<String>>, default: &str| {
            v.as_ref()
                .map_or(default.to_string(), |s| s.get_ref().clone())
        };
        Naming {
            table: pick(&spec.table, "{prefix}User"),
            function: pick(&spec.function, "{prefix}user-service"),
            log_group: pick(&spec.log_group, "/aws/lambda/{function}"),
        }
    }

    fn resolve(&self, stage: &str, prefix: &str, overrides: &dyn StageNames) -> Backends {
        let fill = |t: &str| t.replace("{prefix}", prefix).replace("{stage}", stage);
        let table = fill(overrides.table().unwrap_or(&self.table));
        let function = fill(overrides.function().unwrap_or(&self.function));
        let log_group =
            fill(overrides.log_group().unwrap_or(&self.log_group)).replace("{function}", &function);
        Backends {
            table,
            function,
            log_group,
        }
    }
}

const DEFAULT_SETTLE: Duration = Duration::from_secs(2);
const DEFAULT_LOGS_DEADLINE: Duration = Duration::from_secs(60);
const DEFAULT_MAX_RECORDED_WRITES: u64 = 100_000;

fn build_verify(
    cx: &Cx<'_>,
    file: &ScenarioFile,
    ov: &Overrides,
    stage: &Stage,
    stages: &[Stage],
    steps: &[Step],
) -> Result<VerifyPlan, Error> {
    let spec = &file.verify;
    let any_writes = steps.iter().any(|s| s.writes.is_some());
    let off = ov.verify == Some(false);
    let dynamodb = !off && spec.dynamodb.unwrap_or(any_writes);
    let isolate_names: Vec<String> = if !ov.isolate_from.is_empty() {
        ov.isolate_from.clone()
    } else if let Some(list) = &spec.isolate_from {
        list.get_ref().iter().map(|s| s.get_ref().clone()).collect()
    } else if dynamodb || spec.logs == Some(true) {
        stages
            .iter()
            .filter(|s| s.name != stage.name)
            .map(|s| s.name.clone())
            .collect()
    } else {
        Vec::new()
    };
    // Isolation that cannot be checked must say so: a stage cannot be
    // isolated from itself, and a list that names only the stage being run
    // would check nothing while the report said "isolated".
    if ov.isolate_from.contains(&stage.name) {
        return Err(Error::Usage(format!(
            "--isolate-from {0}: {0} is the stage being run; name the stages that must receive nothing from it",
            stage.name
        )));
    }
    if let Some(list) = &spec.isolate_from
        && ov.isolate_from.is_empty()
        && !list.get_ref().is_empty()
        && list.get_ref().iter().all(|s| *s.get_ref() == stage.name)
    {
        return Err(cx.error(
            list.span(),
            format!(
                "isolate_from names only stage `{}`, the stage being run, so there is nothing to check; name the other stages, or write `isolate_from = []` to check no isolation",
                stage.name
            ),
        ));
    }
    let mut isolate_from = Vec::new();
    for name in isolate_names {
        if name == stage.name {
            continue;
        }
        match stages.iter().find(|s| s.name == name) {
            Some(other) => isolate_from.push(other.clone()),
            None => {
                let message = format!("cannot isolate from unknown stage `{name}`");
                return Err(match &spec.isolate_from {
                    Some(list) if ov.isolate_from.is_empty() => cx.error(list.span(), message),
                    _ => Error::Usage(format!("--isolate-from: {message}")),
                });
            }
        }
    }
    if off {
        isolate_from.clear();
    }
    let logs = !off && spec.logs.unwrap_or(dynamodb || !isolate_from.is_empty());
    let correlation_header = match &spec.correlation_header {
        Some(h) if h.get_ref().is_empty() => None,
        Some(h) => Some(header_name(h.get_ref()).map_err(|m| cx.error(h.span(), m))?),
        None => Some(HeaderName::from_static("x-correlation-id")),
    };
    let log_match = match &spec.log_match {
        None => LogMatch::Either,
        Some(m) => match m.get_ref().as_str() {
            "correlation_id" => LogMatch::CorrelationId,
            "request_id" => LogMatch::RequestId,
            "either" => LogMatch::Either,
            other => {
                return Err(cx.error(m.span(), format!("unknown log_match {other:?} (expected correlation_id, request_id or either)")));
            }
        },
    };
    if logs && correlation_header.is_none() && log_match == LogMatch::CorrelationId {
        let span = spec.correlation_header.as_ref().map_or(0..0, |h| h.span());
        return Err(cx.error(
            span,
            "log verification by correlation id needs a correlation_header",
        ));
    }
    let settle = spec
        .settle
        .as_ref()
        .map(|d| cx.duration(d))
        .transpose()?
        .unwrap_or(DEFAULT_SETTLE);
    let logs_deadline = match (ov.logs_deadline, &spec.logs_deadline) {
        (Some(d), _) => d,
        (None, Some(d)) => cx.duration(d)?,
        (None, None) => DEFAULT_LOGS_DEADLINE,
    };
    let max_recorded_writes = spec
        .max_recorded_writes
        .as_ref()
        .map_or(DEFAULT_MAX_RECORDED_WRITES, |m| *m.get_ref());
    if max_recorded_writes == 0 {
        let span = spec.max_recorded_writes.as_ref().map_or(0..0, |m| m.span());
        return Err(cx.error(span, "max_recorded_writes must be at least 1"));
    }
    // A cap of its own: limiting writes must not also cut log checking.
    let max_recorded_invocations = spec
        .max_recorded_invocations
        .as_ref()
        .map_or(DEFAULT_MAX_RECORDED_WRITES, |m| *m.get_ref());
    if max_recorded_invocations == 0 {
        let span = spec
            .max_recorded_invocations
            .as_ref()
            .map_or(0..0, |m| m.span());
        return Err(cx.error(span, "max_recorded_invocations must be at least 1"));
    }
    if ov.cleanup {
        // Only keys unique to this run may be deleted: a fixed key could name an item that was there before.
        for step in steps {
            if let Some(writes) = &step.writes {
                let fresh = writes.key.iter().all(|(_, v)| match v {
                    Expected::Text(t) => t.parts().iter().any(|p| {
                        matches!(
                            p,
                            super::template::Part::Uuid
                                | super::template::Part::RunId
                                | super::template::Part::Capture(_)
                        )
                    }),
                    Expected::Value(_) => false,
                });
                if !fresh {
                    return Err(Error::Usage(format!(
                        "--cleanup: step `{}` writes a key that is not unique to the run (use {{{{uuid}}}}, {{{{run_id}}}} or a captured id in it), so it could delete an item that existed before",
                        step.name
                    )));
                }
            }
        }
    }
    Ok(VerifyPlan {
        dynamodb,
        logs,
        isolate_from,
        correlation_header,
        log_match,
        settle,
        logs_deadline,
        max_recorded_writes: usize::try_from(max_recorded_writes).unwrap_or(usize::MAX),
        max_recorded_invocations: usize::try_from(max_recorded_invocations).unwrap_or(usize::MAX),
        cleanup: ov.cleanup && dynamodb,
        aws: ov.aws.clone(),
    })
}

pub fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => J::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// The JSON text of a body. A string that is exactly one numeric template
/// (`"{{seq}}"`, `"{{random_int(1,9)}}"`) becomes a JSON number, so bodies can
/// carry numbers that vary per iteration.
fn json_body_text(value: &toml::Value) -> String {
    const MARK: &str = "\u{1}stagecheck-number\u{1}";
    fn mark_numbers(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                let inner = s
                    .trim()
                    .strip_prefix("{{")
                    .and_then(|r| r.strip_suffix("}}"))
                    .map(str::trim);
                if let Some(expr) = inner
                    && (matches!(expr, "seq" | "vu" | "iteration" | "now_ms")
                        || expr.starts_with("random_int("))
                    && !expr.contains("}}")
                {
                    *s = format!("{MARK}{expr}{MARK}");
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(mark_numbers),
            serde_json::Value::Object(map) => map.values_mut().for_each(mark_numbers),
            _ => {}
        }
    }
    let mut json = toml_to_json(value);
    mark_numbers(&mut json);
    let text = json.to_string();
    let mark = "\\u0001stagecheck-number\\u0001";
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find(&format!("\"{mark}")) {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1 + mark.len()..];
        match after.find(&format!("{mark}\"")) {
            Some(end) => {
                out.push_str("{{");
                out.push_str(&after[..end]);
                out.push_str("}}");
                rest = &after[end + mark.len() + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn build_load(cx: &Cx<'_>, spec: &LoadSpec, ov: &Overrides) -> Result<Load, Error> {
    let usage = |m: &str| Error::Usage(m.to_string());
    let grace = match (ov.grace, &spec.grace) {
        (Some(g), _) => g,
        (None, Some(g)) => cx.duration(g)?,
        (None, None) => DEFAULT_GRACE,
    };
    let iterations = ov
        .iterations
        .or(spec.iterations.as_ref().map(|i| *i.get_ref()));
    if iterations == Some(0) {
        return Err(match &spec.iterations {
            Some(i) if ov.iterations.is_none() => {
                cx.error(i.span(), "iterations must be at least 1")
            }
            _ => usage("--iterations must be at least 1"),
        });
    }
    let file_duration = spec.duration.as_ref().map(|d| cx.duration(d)).transpose()?;
    let duration = ov.duration.or(file_duration);

    // A rate is the open model, VUs the closed one: both at once is a
    // question, as the same pair in a file is.
    if ov.rate.is_some() && ov.vus.is_some() {
        return Err(usage(
            "--rate and --vus choose different models (open: iterations per second; closed: looping VUs); give one of them (--max-vus bounds the open model's VUs)",
        ));
    }
    // The command line picks the model outright when it names a rate or VUs.
    let open = if ov.rate.is_some() {
        true
    } else if ov.vus.is_some() {
        false
    } else {
        match &spec.model {
            Some(m) => match m.get_ref().as_str() {
                "open" => true,
                "closed" => false,
                other => {
                    return Err(cx.error(
                        m.span(),
                        format!("unknown model {other:?} (expected \"open\" or \"closed\")"),
                    ));
                }
            },
            None => {
                spec.rate.is_some()
                    || (spec.ramp.is_some() && spec.vus.is_none() && spec.start_vus.is_none())
            }
        }
    };
    let ramp = if ov.rate.is_some() || ov.vus.is_some() {
        None
    } else {
        spec.ramp.as_ref()
    };
    if let (Some(ramp), Some(_)) = (ramp, ov.duration) {
        return Err(cx.error(
            ramp.span(),
            "--duration cannot shorten a ramp; give --rate or --vus too, or edit the ramp",
        ));
    }
    let mut segments = Vec::new();
    if let Some(ramp) = ramp {
        if ramp.get_ref().is_empty() {
            return Err(cx.error(
                ramp.span(),
                "a ramp needs at least one { target, duration } stage",
            ));
        }
        let mut from = if open {
            spec.start_rate.as_ref().map_or(0.0, |r| *r.get_ref())
        } else {
            spec.start_vus
                .as_ref()
                .map_or(0.0, |v| f64::from(*v.get_ref()))
        };
        for stage in ramp.get_ref() {
            let to = *stage.target.get_ref();
            if !to.is_finite() || to < 0.0 {
                return Err(cx.error(stage.target.span(), "a ramp target must be a number ≥ 0"));
            }
            let d = cx.duration(&stage.duration)?;
            if d.is_zero() {
                return Err(cx.error(
                    stage.duration.span(),
                    "a ramp stage needs a duration above 0",
                ));
            }
            segments.push(Segment {
                from,
                to,
                duration: d,
            });
            from = to;
        }
    }

    let run_for = |segments: &Vec<Segment>| -> Duration {
        if !segments.is_empty() {
            segments.iter().map(|s| s.duration).sum()
        } else {
            duration.unwrap_or(ITERATIONS_ONLY_LIMIT)
        }
    };
    let model = if open {
        if let (Some(vus), false) = (&spec.vus, ov.rate.is_some()) {
            return Err(cx.error(
                vus.span(),
                "`vus` belongs to the closed model; the open model takes `rate` and `max_vus`",
            ));
        }
        let rate_profile = if segments.is_empty() {
            let rate = match (ov.rate, &spec.rate) {
                (Some(r), _) => r,
                (None, Some(r)) => *r.get_ref(),
                (None, None) => {
                    return Err(usage(
                        "the open model needs load.rate or load.ramp (or --rate)",
                    ));
                }
            };
            if !rate.is_finite() || rate <= 0.0 {
                return Err(match (&spec.rate, ov.rate) {
                    (Some(r), None) => cx.error(r.span(), "rate must be above 0"),
                    _ => usage("--rate must be above 0"),
                });
            }
            if duration.is_none() && iterations.is_none() {
                return Err(usage(
                    "the open model needs load.duration (or --duration) or load.iterations",
                ));
            }
            Profile::constant(rate, run_for(&segments))
        } else {
            Profile {
                segments: segments.clone(),
            }
        };
        let max_vus = ov
            .max_vus
            .or(spec.max_vus.as_ref().map(|v| *v.get_ref()))
            .unwrap_or(DEFAULT_MAX_VUS)
            .max(1);
        let backlog = spec
            .backlog
            .as_ref()
            .map_or(DEFAULT_BACKLOG, |b| *b.get_ref());
        Model::Open {
            rate: rate_profile,
            max_vus,
            backlog,
        }
    } else {
        if let (Some(rate), false) = (&spec.rate, ov.vus.is_some()) {
            return Err(cx.error(
                rate.span(),
                "`rate` belongs to the open model; set model = \"open\" or use `vus`",
            ));
        }
        let vus_profile = if segments.is_empty() {
            let vus = ov
                .vus
                .or(spec.vus.as_ref().map(|v| *v.get_ref()))
                .unwrap_or(1);
            if vus == 0 {
                return Err(usage("vus must be at least 1"));
            }
            // With neither a duration nor a count, a scenario is a smoke test: one pass.
            let smoke = duration.is_none() && iterations.is_none();
            let length = if smoke {
                ITERATIONS_ONLY_LIMIT
            } else {
                run_for(&segments)
            };
            Profile::constant(f64::from(vus), length)
        } else {
            Profile {
                segments: segments.clone(),
            }
        };
        let think_time = spec
            .think_time
            .as_ref()
            .map(|t| cx.duration(t))
            .transpose()?
            .unwrap_or_default();
        Model::Closed {
            vus: vus_profile,
            think_time,
        }
    };
    let smoke = !open && duration.is_none() && iterations.is_none() && segments.is_empty();
    let iterations = if smoke { Some(1) } else { iterations };
    let total = match &model {
        Model::Open { rate, .. } => rate.duration(),
        Model::Closed { vus, .. } => vus.duration(),
    };
    Ok(Load {
        model,
        duration: total,
        iterations,
        grace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(src: &str) -> Result<Plan, Error> {
        parse(Path::new("t.toml"), src, &Overrides::default())
    }

    const MINIMAL: &str = "[target]\nbase_url = \"http://127.0.0.1:9/{stage}\"\nstage = \"test\"\n\n[[steps]]\nname = \"a\"\nmethod = \"GET\"\npath = \"/user\"\n";

    #[test]
    fn minimal_scenario_is_a_one_iteration_smoke() {
        let p = plan(MINIMAL).unwrap();
        assert_eq!(p.target.base_path, "/test");
        assert_eq!(p.load.iterations, Some(1));
        assert!(matches!(p.load.model, Model::Closed { .. }));
        assert_eq!(
            p.steps[0]
                .path
                .render(&super::super::template::Vars::empty()),
            "/test/user"
        );
    }

    #[test]
    fn errors_name_line_and_field() {
        let src = MINIMAL.replace("\"GET\"", "\"FETCH\"");
        match plan(&src) {
            Err(Error::Scenario(e)) => {
                assert_eq!((e.line, e.field.as_str()), (7, "steps[0].method"));
                assert!(e.message.contains("unknown method"));
            }
            other => panic!("{other:?}"),
        }
        let src = MINIMAL.replace("path =", "pth =");
        match plan(&src) {
            Err(Error::Scenario(e)) => assert!(e.message.contains("pth"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn numeric_templates_become_json_numbers() {
        let v: toml::Value =
            toml::from_str("n = \"{{seq}}\"\ns = \"id-{{seq}}\"\nr = \"{{random_int(1,2)}}\"")
                .unwrap();
        let text = json_body_text(&v);
        assert_eq!(
            text,
            r#"{"n":{{seq}},"r":{{random_int(1,2)}},"s":"id-{{seq}}"}"#
        );
    }

    #[test]
    fn profiles() {
        let p = Profile {
            segments: vec![Segment {
                from: 0.0,
                to: 100.0,
                duration: Duration::from_secs(10),
            }],
        };
        assert_eq!(p.value_at(5.0), 50.0);
        assert_eq!(p.value_at(11.0), 0.0);
        assert_eq!(p.peak(), 100.0);
    }

    const PROD: &str = "[target]\nbase_url = \"http://127.0.0.1:9/{stage}\"\nstage = \"prod\"\n\n[[stages]]\nname = \"prod\"\nprotected = true\n\n[load]\nrate = 5\nduration = \"10s\"\n\n[[steps]]\nname = \"a\"\nmethod = \"GET\"\npath = \"/user\"\n[[steps]]\nname = \"b\"\nmethod = \"GET\"\npath = \"/user\"\n";

    #[test]
    fn protected_stages_take_a_smoke_run_unless_allowed() {
        let refused = plan(PROD).unwrap_err();
        assert!(matches!(refused, Error::Usage(_)));
        let text = refused.to_string();
        assert!(
            text.contains("protected") && text.contains("--allow-prod"),
            "{text}"
        );
        let allowed = Overrides {
            allow_prod: true,
            ..Overrides::default()
        };
        assert!(parse(Path::new("t.toml"), PROD, &allowed).is_ok());
        let smoke = Overrides {
            iterations: Some(1),
            ..Overrides::default()
        };
        assert!(parse(Path::new("t.toml"), PROD, &smoke).is_ok());
        let validate = Overrides {
            validate_only: true,
            ..Overrides::default()
        };
        assert!(parse(Path::new("t.toml"), PROD, &validate).is_ok());
    }

    #[test]
    fn max_rate_counts_requests_of_every_step() {
        let with_cap = |cap: f64| Overrides {
            allow_prod: true,
            max_rate: Some(cap),
            ..Overrides::default()
        };
        // 5 iterations/s × 2 steps = 10 requests/s.
        assert!(parse(Path::new("t.toml"), PROD, &with_cap(10.0)).is_ok());
        let refused = parse(Path::new("t.toml"), PROD, &with_cap(9.0)).unwrap_err();
        assert!(
            refused.to_string().contains("up to 10 requests/s"),
            "{refused}"
        );
        let closed = MINIMAL.replace(
            "[[steps]]",
            "[load]\nvus = 2\nduration = \"5s\"\n\n[[steps]]",
        );
        let refused = parse(Path::new("t.toml"), &closed, &with_cap(100.0)).unwrap_err();
        assert!(refused.to_string().contains("no rate bound"), "{refused}");
    }

    #[test]
    fn api_keys_are_not_written_in_clear() {
        let src = MINIMAL.replace(
            "[[steps]]",
            "[headers]\nx-api-key = \"abc123abc123\"\n\n[[steps]]",
        );
        match plan(&src) {
            Err(Error::Scenario(e)) => {
                assert_eq!(e.field, "headers.x-api-key");
                assert!(
                    e.message.contains("api_key_env") && !e.message.contains("abc123"),
                    "{e}"
                );
            }
            other => panic!("{other:?}"),
        }
        let bad = MINIMAL.replace(
            "stage = \"test\"\n",
            "stage = \"test\"\n\n[[stages]]\nname = \"test\"\nauth = \"basic\"\n",
        );
        assert!(
            plan(&bad)
                .unwrap_err()
                .to_string()
                .contains("expected \"iam\"")
        );
    }

    #[test]
    fn header_errors_never_echo_the_value() {
        for raw in [
            "Authorization Bearer s3cr3t-token",
            "Bad Name: s3cr3t-token",
        ] {
            let ov = Overrides {
                headers: vec![raw.to_string()],
                ..Overrides::default()
            };
            let e = parse(Path::new("t.toml"), MINIMAL, &ov)
                .unwrap_err()
                .to_string();
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn shards_count_from_one() {
        assert_eq!(Shard::parse("1/3").unwrap(), Shard { index: 0, count: 3 });
        assert!(Shard::parse("0/3").is_err());
        assert!(Shard::parse("4/3").is_err());
        assert!(Shard::parse("x").is_err());
        let shards = [
            Shard { index: 0, count: 3 },
            Shard { index: 1, count: 3 },
            Shard { index: 2, count: 3 },
        ];
        assert_eq!(shards.map(|s| s.share(10)), [4, 3, 3]);
    }
}
