//! The one result type. Every report format, the thresholds and the exit code
//! read a [`Summary`]; a saved JSON summary carries its histograms losslessly,
//! so it can be re-rendered, merged and gated later without a run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metrics::{ErrorCounts, LatencySummary, Metrics, encode_histogram};
use crate::scenario::Plan;

pub mod judge;
mod redact;
pub mod timeline;

pub const SUMMARY_VERSION: u32 = 1;

/// API Gateway's default steady-state limit per account and Region (burst 5 000).
pub const API_GATEWAY_RATE_LIMIT_PER_S: f64 = 10_000.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub version: u32,
    pub scenario: String,
    pub scenario_file: String,
    pub stage: String,
    pub base_url: String,
    pub run_id: String,
    /// `open` or `closed`.
    pub model: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub duration_s: f64,
    /// The run was interrupted (Ctrl-C, SIGTERM) or aborted before its end.
    pub partial: bool,
    /// Why the run stopped early, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// For a merged summary: the runs it was merged from (`run_id` and shard).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    /// For a merged summary: seconds between the first and the last shard's
    /// start. Shards far apart did not send the scenario's load together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_skew_s: Option<f64>,
    pub totals: Totals,
    pub steps: Vec<StepSummary>,
    pub checks: ChecksSummary,
    pub thresholds: Vec<ThresholdResult>,
    /// One point per second of the run.
    #[serde(default)]
    pub timeline: Vec<TimelinePoint>,
    /// Backend verification and stage isolation, when the scenario asks for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySummary>,
    /// `[load] warmup`: the traffic before the measured phase, which every
    /// other figure here (totals, steps, checks, timeline, thresholds) leaves out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<WarmupSummary>,
    /// The deployment the run ran against, read from the control plane
    /// before the traffic: the evidence a promotion checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentEvidence>,
    /// Every check and threshold passed, and the run did what it claims: it
    /// finished, and completed at least one request. Agrees with the exit code.
    pub passed: bool,
    /// Why the run did not pass besides its thresholds (interrupted, shards
    /// missing, no request completed), one sentence each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// What the stage served when the run started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentEvidence {
    pub rest_api_id: String,
    pub stage: String,
    pub deployment_id: Option<String>,
    pub functions: Vec<FunctionEvidence>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionEvidence {
    pub name: String,
    pub version: Option<String>,
    pub code_sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Totals {
    pub requests: u64,
    pub failed: u64,
    /// Answered 429 (throttled by API Gateway or the backend); also counted in `failed`.
    #[serde(default)]
    pub throttled: u64,
    /// Requests per second over the run's duration.
    pub rps: f64,
    /// Iterations per second the profile asked for at its peak (open model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    /// Iterations started: `completed_iterations + failed_iterations +
    /// interrupted_iterations`.
    pub iterations: u64,
    /// Every step answered and accepted.
    #[serde(default)]
    pub completed_iterations: u64,
    /// A request failed, or the iteration ended early (transport error,
    /// missing capture).
    #[serde(default)]
    pub failed_iterations: u64,
    /// Due but not started because the backlog was full.
    pub dropped_iterations: u64,
    /// In flight when the grace period ran out.
    pub interrupted_iterations: u64,
    /// Due but still waiting in the backlog for a free VU when the run ended.
    #[serde(default)]
    pub unstarted_iterations: u64,
    pub errors: ErrorCounts,
    pub latency_ms: LatencySummary,
    /// How late iterations started against their schedule (open model).
    pub schedule_lag_ms: LatencySummary,
    pub histogram: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepSummary {
    pub name: String,
    pub method: String,
    pub path: String,
    pub requests: u64,
    pub failed: u64,
    /// Answered 429; also counted in `failed` and under `status`.
    #[serde(default)]
    pub throttled: u64,
    pub rps: f64,
    /// Status code → count.
    pub status: BTreeMap<String, u64>,
    pub errors: ErrorCounts,
    /// Measured from when the request was due (coordinated-omission free).
    pub latency_ms: LatencySummary,
    /// Measured from the actual send.
    pub service_time_ms: LatencySummary,
    /// `latency_ms`'s HDR histogram in microseconds, V2 + deflate, base64.
    pub histogram: String,
    pub service_histogram: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChecksSummary {
    pub passed: u64,
    pub failed: u64,
    /// Checks that never ran (their step never got an answer): each counts
    /// once against the `checks` rule.
    #[serde(default)]
    pub not_run: u64,
    pub details: Vec<CheckSummary>,
}

impl ChecksSummary {
    pub fn new(details: Vec<CheckSummary>) -> ChecksSummary {
        ChecksSummary {
            passed: details.iter().map(|c| c.passed).sum(),
            failed: details.iter().map(|c| c.failed).sum(),
            not_run: details.iter().filter(|c| !c.ran()).count() as u64,
            details,
        }
    }
}

impl CheckSummary {
    pub fn ran(&self) -> bool {
        self.passed + self.failed > 0
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckSummary {
    pub step: String,
    pub name: String,
    pub passed: u64,
    pub failed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example_failure: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThresholdResult {
    pub expr: String,
    pub ok: bool,
    /// The measured value, in the rule's own unit (ms, %, count, /s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<f64>,
    /// Added by stagecheck rather than written in the scenario.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub implicit: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since the start: where the point's span begins.
    pub t: u64,
    /// The seconds the point covers: 1, until a long run's points are folded
    /// in pairs (`timeline::MAX_POINTS`); counts are for the whole span.
    #[serde(default = "one_second", skip_serializing_if = "is_one_second")]
    pub width_s: u64,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub steps: Vec<StepPoint>,
    /// This second's latency histogram, all steps (µs, as `Totals::histogram`),
    /// so shards' seconds merge exactly; absent in older summaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepPoint {
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

fn one_second() -> u64 {
    1
}

fn is_one_second(width: &u64) -> bool {
    *width == 1
}

impl TimelinePoint {
    pub fn from_delta(t: u64, delta: &Metrics) -> TimelinePoint {
        let overall = delta.overall_latency();
        let all = LatencySummary::from_histogram_us(&overall);
        TimelinePoint {
            t,
            width_s: 1,
            requests: delta.requests(),
            errors: delta.failed(),
            p50_ms: all.p50,
            p99_ms: all.p99,
            steps: delta
                .steps
                .iter()
                .map(|s| {
                    let lat = LatencySummary::from_histogram_us(&s.latency_us);
                    StepPoint {
                        requests: s.requests,
                        errors: s.failed,
                        p50_ms: lat.p50,
                        p99_ms: lat.p99,
                    }
                })
                .collect(),
            histogram: (!overall.is_empty()).then(|| encode_histogram(&overall)),
        }
    }
}

/// What the engine hands over besides the metrics.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub started_at: std::time::SystemTime,
    /// The whole run, warmup included.
    pub elapsed: std::time::Duration,
    pub partial: bool,
    pub stopped_by: Option<String>,
    /// The measured phase's seconds.
    pub timeline: Vec<TimelinePoint>,
    pub warmup: Option<Warmup>,
}

impl RunFacts {
    /// How long the warmup ran: all of it, or up to an early stop.
    fn warmup_elapsed(&self) -> std::time::Duration {
        self.warmup
            .as_ref()
            .map_or(std::time::Duration::ZERO, |w| w.planned.min(self.elapsed))
    }
}

/// What the warmup's iterations recorded (those due before its end,
/// whenever they ended).
#[derive(Debug, Clone)]
pub struct Warmup {
    pub planned: std::time::Duration,
    pub metrics: Metrics,
}

/// The warmup in a summary: enough to see what it met (cold starts show in
/// its latency, failures in its counts) and to merge shards' warmups exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WarmupSummary {
    pub duration_s: f64,
    pub iterations: u64,
    pub requests: u64,
    pub failed: u64,
    /// Check failures in the warmup: reported, not judged (the measured
    /// phase's checks are).
    pub checks_failed: u64,
    pub latency_ms: LatencySummary,
    pub steps: Vec<WarmupStep>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WarmupStep {
    pub name: String,
    pub requests: u64,
    pub failed: u64,
    pub latency_ms: LatencySummary,
    /// As [`StepSummary::histogram`].
    pub histogram: String,
}

impl WarmupSummary {
    fn build(
        plan: &Plan,
        warmup: &Warmup,
        ran: std::time::Duration,
        detail: Detail,
    ) -> WarmupSummary {
        let m = &warmup.metrics;
        WarmupSummary {
            duration_s: ran.as_secs_f64(),
            iterations: m.iterations_started,
            requests: m.requests(),
            failed: m.failed(),
            checks_failed: m.checks.iter().map(|c| c.failed).sum(),
            latency_ms: LatencySummary::from_histogram_us(&m.overall_latency()),
            steps: plan
                .steps
                .iter()
                .zip(&m.steps)
                .map(|(step, s)| WarmupStep {
                    name: step.name.clone(),
                    requests: s.requests,
                    failed: s.failed,
                    latency_ms: LatencySummary::from_histogram_us(&s.latency_us),
                    histogram: match detail {
                        Detail::Full => encode_histogram(&s.latency_us),
                        Detail::Numbers => String::new(),
                    },
                })
                .collect(),
        }
    }

    /// One line for the terminal and the reports.
    pub fn sentence(&self) -> String {
        format!(
            "warmup {:.0}s: {} requests, {} failed, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (left out of every figure below)",
            self.duration_s,
            self.requests,
            self.failed,
            self.latency_ms.p50,
            self.latency_ms.p99,
            self.latency_ms.max
        )
    }
}

/// How much to compute: histograms are encoded only for the final summary,
/// not for the once-a-second threshold checks during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Full,
    Numbers,
}

impl Summary {
    pub fn build(plan: &Plan, metrics: &Metrics, facts: &RunFacts, detail: Detail) -> Summary {
        // Rates are over the measured phase: the warmup's requests are not in them.
        let warmup_ran = facts.warmup_elapsed();
        let measured = facts.elapsed.saturating_sub(warmup_ran);
        let secs = measured.as_secs_f64().max(1e-9);
        let encode = |h: &hdrhistogram::Histogram<u64>| match detail {
            Detail::Full => encode_histogram(h),
            Detail::Numbers => String::new(),
        };
        let steps: Vec<StepSummary> = plan
            .steps
            .iter()
            .zip(&metrics.steps)
            .map(|(step, m)| StepSummary {
                name: step.name.clone(),
                method: step.method.to_string(),
                path: step.path_text.clone(),
                requests: m.requests,
                failed: m.failed,
                throttled: m.status.get(429).copied().unwrap_or(0),
                rps: m.requests as f64 / secs,
                status: m
                    .statuses()
                    .map(|(code, n)| (code.to_string(), n))
                    .collect(),
                errors: m.errors,
                latency_ms: LatencySummary::from_histogram_us(&m.latency_us),
                service_time_ms: LatencySummary::from_histogram_us(&m.service_us),
                histogram: encode(&m.latency_us),
                service_histogram: encode(&m.service_us),
            })
            .collect();
        let overall = metrics.overall_latency();
        let mut errors = ErrorCounts::default();
        for s in &metrics.steps {
            errors.connect += s.errors.connect;
            errors.timeout += s.errors.timeout;
            errors.io += s.errors.io;
        }
        let details: Vec<CheckSummary> = plan
            .checks()
            .zip(&metrics.checks)
            .map(|((step, check), counts)| CheckSummary {
                step: step.name.clone(),
                name: check.name.clone(),
                passed: counts.passed,
                failed: counts.failed,
                example_failure: counts.first_failure.clone(),
            })
            .collect();
        let mut summary = Summary {
            version: SUMMARY_VERSION,
            scenario: plan.name.clone(),
            scenario_file: plan.source.display().to_string(),
            stage: plan.stage.name.clone(),
            base_url: plan.target.base_url.clone(),
            run_id: plan.run_id.clone(),
            model: plan.load.model_name().to_string(),
            started_at: rfc3339(facts.started_at),
            duration_s: measured.as_secs_f64(),
            partial: facts.partial,
            stopped_by: facts.stopped_by.clone(),
            shard: plan.shard.label(),
            merged_from: Vec::new(),
            start_skew_s: None,
            totals: Totals {
                requests: metrics.requests(),
                failed: metrics.failed(),
                throttled: steps.iter().map(|s| s.throttled).sum(),
                rps: metrics.requests() as f64 / secs,
                target_rate: plan.load.peak_rate(),
                iterations: metrics.iterations_started,
                completed_iterations: metrics.iterations_completed,
                failed_iterations: metrics.iterations_failed,
                dropped_iterations: metrics.dropped_iterations,
                interrupted_iterations: metrics.interrupted_iterations,
                unstarted_iterations: metrics.unstarted_iterations,
                errors,
                latency_ms: LatencySummary::from_histogram_us(&overall),
                schedule_lag_ms: LatencySummary::from_histogram_us(&metrics.schedule_lag_us),
                histogram: encode(&overall),
            },
            steps,
            checks: ChecksSummary::new(details),
            thresholds: Vec::new(),
            timeline: facts.timeline.clone(),
            verify: None,
            warmup: facts
                .warmup
                .as_ref()
                .map(|w| WarmupSummary::build(plan, w, warmup_ran, detail)),
            deployment: None,
            passed: true,
            reasons: Vec::new(),
        };
        summary.judge(&plan.thresholds);
        summary
    }

    /// A note on API Gateway's default throttling limits when the run came
    /// near them or was throttled: beyond them every request gets a 429 that
    /// says nothing about the code under test.
    pub fn throttling_note(&self) -> Option<String> {
        let measured_peak = self
            .timeline
            .iter()
            .map(|p| p.requests as f64)
            .fold(self.totals.rps, f64::max);
        let planned = self
            .totals
            .target_rate
            .map_or(0.0, |r| r * self.steps.len() as f64);
        let peak = measured_peak.max(planned);
        let near = peak > API_GATEWAY_RATE_LIMIT_PER_S * 0.5;
        if self.totals.throttled == 0 && !near {
            return None;
        }
        let seen = if self.totals.throttled > 0 {
            format!("{} requests were throttled (429). ", self.totals.throttled)
        } else {
            String::new()
        };
        Some(format!(
            "{seen}This run reached {peak:.0} requests/s; API Gateway's default limits are \
             10 000 requests/s per account and Region with a burst of 5 000, shared by every \
             API and stage in the account (stage and usage-plan limits can be lower)"
        ))
    }

    pub fn failed_thresholds(&self) -> impl Iterator<Item = &ThresholdResult> {
        self.thresholds.iter().filter(|t| !t.ok)
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub fn rfc3339(t: std::time::SystemTime) -> String {
    let t: time::OffsetDateTime = t.into();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".to_string())
}

/// What the backends hold after the run: the proof that the traffic landed
/// where it should and nowhere else.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifySummary {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamodb: Option<DynamoVerify>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogsVerify>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<IsolationVerify>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<CleanupSummary>,
    /// AWS calls verification made, by operation.
    pub api_calls: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DynamoVerify {
    pub table: String,
    /// Writes the stage acknowledged.
    pub written: u64,
    /// Writes kept for checking: all of them up to the cap, a uniform sample past it.
    pub recorded: u64,
    pub sampled: bool,
    /// Distinct keys read back.
    pub checked: u64,
    /// Items that exist, with the written attributes or not.
    pub found: u64,
    pub missing: u64,
    pub mismatched: u64,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogsVerify {
    pub log_group: String,
    /// Requests whose marker was looked for.
    pub checked: u64,
    pub found: u64,
    pub missing: u64,
    /// `START` lines in the run's window (all traffic, not only this run's).
    pub invocations: u64,
    pub waited_s: f64,
    pub examples: Vec<String>,
    /// The channels read (`[verify] routing`): `auto`, `function-logs`,
    /// `execution-logs` or `both`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<String>,
    /// Requests each channel proved: `function_logs` (the function's own
    /// line), `execution_logs` (API Gateway's execution-log chain to the
    /// function's `REPORT`), `access_logs` (API Gateway's access-log line's
    /// `$context.integration.requestId` to that `REPORT`; read only for the
    /// requests whose execution log had no Lambda request id when it was read). A request proven by several
    /// counts in each; `found` says which count under `routing`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub proven_by: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_logs: Option<ExecutionLogsVerify>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_logs: Option<AccessLogsVerify>,
}

impl LogsVerify {
    /// How many requests were proven, by which channel, and the execution
    /// log's note when it proved nothing.
    pub fn sentence(&self) -> String {
        let channels = self.channels("proven by ");
        let notes: String = self
            .execution_logs
            .as_ref()
            .and_then(|e| e.note.as_deref())
            .into_iter()
            .chain(self.access_logs.as_ref().and_then(|a| a.note.as_deref()))
            .map(|n| format!(". {n}"))
            .collect();
        format!(
            "{} of {} requests found{channels}, {} missing{notes}",
            self.found, self.checked, self.missing
        )
    }

    /// Which channels proved how many, as the end of "N of M requests
    /// found…": ` (3 proven by the function's logs, 7 by API Gateway's
    /// execution log)`; `proven` is what goes before the first channel.
    pub fn channels(&self, proven: &str) -> String {
        let by = |channel: &str| self.proven_by.get(channel).copied();
        let named = [
            ("function_logs", "the function's logs"),
            ("execution_logs", "API Gateway's execution log"),
            ("access_logs", "API Gateway's access log"),
        ];
        let read: Vec<(u64, &str)> = named
            .iter()
            .filter_map(|(key, name)| by(key).map(|n| (n, *name)))
            .collect();
        match read.as_slice() {
            [] => " in the function's logs".to_string(),
            [(_, "the function's logs")] => " in the function's logs".to_string(),
            [(_, only)] => format!(" by {only}"),
            several => format!(
                " ({})",
                several
                    .iter()
                    .enumerate()
                    .map(|(i, (n, name))| if i == 0 {
                        format!("{n} {proven}{name}")
                    } else {
                        format!("{n} by {name}")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The access-log channel: what API Gateway's access log said of each request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccessLogsVerify {
    /// The group the stage's `accessLogSettings.destinationArn` names, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_group: Option<String>,
    /// The stage's format has `$context.integration.requestId` (or its alias
    /// `$context.awsEndpointRequestId`), without which a line cannot say
    /// which function ran.
    #[serde(default)]
    pub format_has_integration_request_id: bool,
    /// Requests with a line in the group.
    #[serde(default)]
    pub with_lines: u64,
    /// Requests followed to the stage's own function's `REPORT`.
    #[serde(default)]
    pub proven: u64,
    /// Requests whose Lambda request id's `REPORT` is in another stage's function group.
    #[serde(default)]
    pub other_function: u64,
    /// When the channel proved nothing: why, and what to change (one sentence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The execution-log channel: what API Gateway's own log said of each request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecutionLogsVerify {
    /// `API-Gateway-Execution-Logs_{rest-api-id}/{stage}`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest_api: Option<String>,
    /// Where the REST API id came from: `base_url`, `setting` or
    /// `log_groups` (the only execution-log group of a stage of that name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest_api_from: Option<String>,
    /// The stage wrote execution-log lines for this run's requests.
    pub enabled: bool,
    /// Requests with at least one line in the group.
    pub with_lines: u64,
    /// Requests followed to the stage's own function's `REPORT`.
    pub proven: u64,
    /// Requests whose lines name another function than the stage's own.
    pub other_function: u64,
    /// Requests API Gateway could not route (`Execution failed due to configuration error`).
    pub configuration_errors: u64,
    pub examples: Vec<String>,
    /// When the channel proved nothing: why, and how to turn it on (one sentence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Where each step's time went, from the requests proven by this channel
    /// (and by the access log, for those the execution log did not split).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_split: Vec<StepTimeSplit>,
}

/// Where one step's time went, per request: the client's service time (from
/// the send) = API Gateway's own part (with the network) + API Gateway's
/// `Integration latency`, which holds the function's `Duration`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepTimeSplit {
    pub step: String,
    /// Requests followed to their `REPORT`: what the figures are of.
    pub requests: u64,
    pub client_ms: LatencySummary,
    /// Client minus integration latency.
    pub api_gateway_ms: LatencySummary,
    pub integration_ms: LatencySummary,
    pub function_ms: LatencySummary,
    /// Requests whose `REPORT` has an `Init Duration`: cold starts.
    #[serde(default)]
    pub cold_starts: u64,
    /// Their init durations.
    #[serde(default)]
    pub init_ms: LatencySummary,
    /// Cold starts of the warmup's requests: counted apart, as the warmup's
    /// requests are left out of every figure here.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warmup_cold_starts: u64,
    /// Requests whose integration latency (whole ms, API Gateway's clock)
    /// exceeded the client's time; their API Gateway part counts as 0.
    #[serde(default)]
    pub clamped: u64,
    /// How much of the tail the cold starts explain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<ColdTail>,
    /// The four as HDR histograms of µs (V2 + deflate, base64), for merging.
    pub histograms: TimeSplitHistograms,
}

/// Of a step's slowest requests (the slowest 1 % of those followed to their
/// `REPORT` by the client's time, at least one), how many were cold starts.
/// A merge adds the shards' own tails: the union of each shard's slowest 1 %,
/// close to but not exactly the merged run's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColdTail {
    pub slowest: u64,
    pub cold_starts: u64,
    /// The client time of the fastest of them: where the tail begins.
    pub from_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TimeSplitHistograms {
    pub client: String,
    pub api_gateway: String,
    pub integration: String,
    pub function: String,
    #[serde(default)]
    pub init: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IsolationVerify {
    pub ok: bool,
    /// The stages that must have received nothing.
    pub stages: Vec<String>,
    pub leaks: Vec<Leak>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Leak {
    pub stage: String,
    /// `table User` or `log group /aws/lambda/user-service`.
    pub resource: String,
    pub count: u64,
    /// Out of how many writes or requests.
    pub of: u64,
    pub examples: Vec<String>,
    /// One plain sentence for people.
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CleanupSummary {
    pub table: String,
    pub deleted: u64,
    /// Not deleted because the item had changed since this run wrote it.
    pub skipped: u64,
    pub failed: u64,
}

/// One verification result as every report shows it: a name, a verdict and
/// a sentence.
#[derive(Debug, Clone)]
pub struct Finding {
    pub name: String,
    pub ok: bool,
    pub message: String,
    pub examples: Vec<String>,
}

impl VerifySummary {
    pub fn findings(&self, stage: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        if let Some(d) = &self.dynamodb {
            let sample = if d.sampled {
                format!(
                    "; a uniform sample of {} of {} writes",
                    d.recorded, d.written
                )
            } else {
                String::new()
            };
            out.push(Finding {
                name: format!("writes in table {}", d.table),
                ok: d.missing == 0 && d.mismatched == 0,
                message: format!(
                    "{} of {} written items found, {} missing, {} with other attributes{sample}",
                    d.found, d.checked, d.missing, d.mismatched
                ),
                examples: d.examples.clone(),
            });
        }
        if let Some(l) = &self.logs {
            let mut examples = l.examples.clone();
            if let Some(e) = &l.execution_logs {
                examples.extend(e.examples.iter().cloned());
            }
            out.push(Finding {
                name: format!("invocations in {}", l.log_group),
                ok: l.missing == 0,
                message: l.sentence(),
                examples,
            });
        }
        if let Some(i) = &self.isolation {
            if i.ok {
                out.push(Finding {
                    name: format!("isolation of stage {stage} from {}", i.stages.join(", ")),
                    ok: true,
                    message: "nothing reached the other stages' tables or logs".into(),
                    examples: Vec::new(),
                });
            }
            for leak in &i.leaks {
                out.push(Finding {
                    name: format!("isolation from stage {}: {}", leak.stage, leak.resource),
                    ok: false,
                    message: format!("ISOLATION FAILED: {}", leak.message),
                    examples: leak.examples.clone(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logs_sentence_names_each_channel_read_and_every_note() {
        let logs = |by: &[(&str, u64)]| LogsVerify {
            checked: 10,
            found: 10,
            proven_by: by.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            ..LogsVerify::default()
        };
        assert_eq!(
            logs(&[]).sentence(),
            "10 of 10 requests found in the function's logs, 0 missing"
        );
        assert_eq!(
            logs(&[("access_logs", 10), ("execution_logs", 0)]).sentence(),
            "10 of 10 requests found (0 proven by API Gateway's execution log, 10 by API Gateway's access log), 0 missing"
        );
        let mut all = logs(&[
            ("function_logs", 2),
            ("execution_logs", 7),
            ("access_logs", 3),
        ]);
        assert_eq!(
            all.channels("by "),
            " (2 by the function's logs, 7 by API Gateway's execution log, 3 by API Gateway's access log)"
        );
        all.access_logs = Some(AccessLogsVerify {
            note: Some("add `$context.integration.requestId`".into()),
            ..AccessLogsVerify::default()
        });
        all.execution_logs = Some(ExecutionLogsVerify {
            note: Some("turn it on".into()),
            ..ExecutionLogsVerify::default()
        });
        assert!(
            all.sentence()
                .ends_with("0 missing. turn it on. add `$context.integration.requestId`"),
            "{}",
            all.sentence()
        );
    }
}
