//! The validated plan the engine runs: stage resolved, URL split, templates
//! compiled, thresholds parsed. Everything a user can get wrong is rejected
//! here, with the file, line, column and key path.
//!
//! This module owns the [`Plan`] itself, the command line's [`Overrides`],
//! the `load`/`parse` entry and `build`, which puts the parts together and
//! adds the implied thresholds. The parts are built by their own modules:
//! `target` (base URL, stages, backends, API key rules), `steps` (requests,
//! checks, captures, writes), `load` (load model, ramps, shards), `verify`
//! (what to prove after the traffic) and `guards` (the protected stage and
//! `--max-rate`). `Cx` and `header_name` live here so that all of them
//! report errors the same way.

mod guards;
mod load;
mod steps;
mod target;
mod verify;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use toml::Spanned;

use super::file::ScenarioFile;
use super::secrets::Secrets;
use super::template::{Escape, Names, Template};
use crate::auth::{Auth, AuthKind};
pub use crate::aws::AwsOptions;
use crate::error::{Error, ScenarioError};
use crate::thresholds::{Metric, Op, Threshold};
use crate::units::parse_duration;

pub use guards::peak_request_rate;
pub use load::{Load, Model, Profile, Segment, Shard};
pub use steps::{
    Capture, CaptureSource, Check, CheckKind, Expected, Predicate, Step, Writes, toml_to_json,
};
pub use target::{Backends, Scheme, Stage, Target, TlsOptions, parse_base_url};
pub use verify::{LogMatch, RestApi, Routing, VerifyPlan, rest_api_of_host};

use guards::{guard_max_rate, guard_protected};
use load::build_load;
use steps::{build_step, step_uses_uuid};
use target::{Naming, NoOverrides, is_env_name, reject_literal_api_key};
use verify::{build_verify, reject_correlation_header};

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
    /// What the run checks against the control plane before its traffic.
    pub control: ControlCheck,
}

/// The deployment check before the traffic: which API to read, how the
/// table follows from a function's environment, and what the user allowed.
#[derive(Debug, Clone)]
pub struct ControlCheck {
    /// A name or an id; `None`: nothing to read (a local target).
    pub rest_api: Option<String>,
    /// The `[backends]` table template as a rule over a function's
    /// environment: `{prefix}` is its `Environment` variable.
    pub table_rule: String,
    /// `[backends] pinned = true`: a disagreement is reported, not refused.
    pub pinned: bool,
    /// `--allow-shared`.
    pub allow_shared: bool,
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
        self.verify.correlation_header.as_ref().map(|_| {
            let mut id = String::new();
            self.write_correlation_id(seq, step, &mut id);
            id
        })
    }

    /// `correlation_id`'s text appended to `out`, whether or not the scenario
    /// sends one.
    pub fn write_correlation_id(&self, seq: u64, step: usize, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(out, "{}-{seq}-{step}", self.run_id);
    }
}

/// What the command line changes in the file. These are `run`'s flags
/// themselves (flattened into its arguments, their doc comments are the
/// help), so the flags and the file meet here and nowhere else.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
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
    pub duration: Option<Duration>,

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
    pub timeout: Option<Duration>,

    /// Extra header for every request, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Worker threads, each with its own runtime and share of the VUs (default: cores).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Run only shard I of N (counted from 1): its share of the rate and a disjoint `seq` space.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,

    /// How long in-flight iterations may finish after the end or an interrupt.
    #[arg(long, value_parser = parse_duration)]
    pub grace: Option<Duration>,

    /// Traffic before the measured phase, e.g. `30s` (whole seconds): sent
    /// and verified, its latency kept apart from what the thresholds judge.
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,

    #[command(flatten)]
    pub tls: TlsOptions,

    // `validate` needs no stage: a scenario may leave it to the command line.
    #[arg(skip)]
    pub validate_only: bool,

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
    pub logs_deadline: Option<Duration>,

    #[command(flatten)]
    pub aws: AwsOptions,

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

    /// The REST API (name or id) whose deployment is read before the traffic
    /// (overrides `target.rest_api`; default: the id in an execute-api host name).
    #[arg(long, value_name = "NAME|ID")]
    pub rest_api: Option<String>,

    /// Allow a load on a stage that shares a function or a table with a protected stage.
    #[arg(long)]
    pub allow_shared: bool,

    /// Refuse to start a run that could send more requests per second than this
    /// (peak iteration rate × requests per iteration, all shards together).
    #[arg(long, value_name = "REQ/S")]
    pub max_rate: Option<f64>,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_ABORT_DELAY: Duration = Duration::from_secs(10);

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
    let verify = build_verify(cx, &file, ov, &stage, &stages, &steps, &target)?;
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
    let control = ControlCheck {
        rest_api: ov
            .rest_api
            .clone()
            .or_else(|| file.target.rest_api.as_ref().map(|r| r.get_ref().clone()))
            // `[verify] rest_api`, or the id in an execute-api host.
            .or_else(|| verify.rest_api.as_ref().map(|r| r.id.clone())),
        table_rule: naming.table_template().replace("{prefix}", "{Environment}"),
        pinned: file.backends.pinned,
        allow_shared: ov.allow_shared,
    };
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
        control,
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

#[cfg(test)]
mod tests {
    use super::*;

    // Shared with the tests of the parts (`super::tests::plan` from there).
    pub(super) fn plan(src: &str) -> Result<Plan, Error> {
        parse(Path::new("t.toml"), src, &Overrides::default())
    }

    pub(super) const MINIMAL: &str = "[target]\nbase_url = \"http://127.0.0.1:9/{stage}\"\nstage = \"test\"\n\n[[steps]]\nname = \"a\"\nmethod = \"GET\"\npath = \"/user\"\n";

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
}
