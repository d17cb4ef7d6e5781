//! The verdict over a Summary: every threshold evaluated on what it holds, and
//! whether the run did what it claims. Run, merge and report all judge here, so
//! a saved summary is gated exactly as the run that wrote it.

use std::time::Duration;

use crate::metrics::{LatencySummary, Metrics, StepMetrics};
use crate::scenario::Plan;
use crate::thresholds::{Metric, Threshold};

use super::{Summary, ThresholdResult, VerifySummary};

impl Summary {
    /// The verdict, from what the summary holds now: the rules, and whether
    /// the run did what it claims. Run, merge and report all judge here.
    pub fn judge(&mut self, rules: &[Threshold]) {
        self.thresholds = evaluate(rules, self);
        self.reasons.clear();
        if self.partial {
            self.reasons.push(match &self.stopped_by {
                Some(why) => format!("the run did not finish: {why}"),
                None => "the run did not finish".to_string(),
            });
        }
        if self.totals.requests == 0 {
            // Nothing measured proves nothing, whatever the rules say.
            let interrupted = self.totals.interrupted_iterations;
            self.reasons.push(if interrupted > 0 {
                format!(
                    "no request completed: {interrupted} iteration{} in flight when the grace period ran out",
                    if interrupted == 1 { " was" } else { "s were" }
                )
            } else {
                "no request completed".to_string()
            });
        }
        self.passed = self.reasons.is_empty() && self.thresholds.iter().all(|t| t.ok);
    }
}

/// Evaluates every rule on the summary.
fn evaluate(rules: &[Threshold], summary: &Summary) -> Vec<ThresholdResult> {
    rules
        .iter()
        .map(|rule| {
            let actual = actual(rule, summary);
            ThresholdResult {
                expr: rule.expr.clone(),
                ok: actual.is_some_and(|a| rule.op.holds(a, rule.limit)),
                actual,
                implicit: rule.implicit,
            }
        })
        .collect()
}

/// What a rule reads. Two real sources: a Summary (after the run, or loaded from
/// a file) and the live totals the engine holds during the run, so that
/// `abort_on_fail` judges once a second without building a Summary.
pub trait Measured {
    /// Requests and failed requests, of the run (`None`) or of one step;
    /// `None` when there is no such step.
    fn counts(&self, step: Option<&str>) -> Option<(u64, u64)>;
    fn latency(&self, step: Option<&str>) -> Option<LatencySummary>;
    /// `(passed, failed)` of every check in scope.
    fn checks(&self, step: Option<&str>) -> Vec<(u64, u64)>;
    fn dropped_iterations(&self) -> u64;
    fn rps(&self, step: Option<&str>) -> f64;
    /// Nothing until verification ran.
    fn verify(&self) -> Option<&VerifySummary>;
}

impl Measured for Summary {
    fn counts(&self, step: Option<&str>) -> Option<(u64, u64)> {
        match step {
            None => Some((self.totals.requests, self.totals.failed)),
            Some(name) => {
                let s = self.steps.iter().find(|s| s.name == name)?;
                Some((s.requests, s.failed))
            }
        }
    }

    fn latency(&self, step: Option<&str>) -> Option<LatencySummary> {
        match step {
            None => Some(self.totals.latency_ms),
            Some(name) => Some(self.steps.iter().find(|s| s.name == name)?.latency_ms),
        }
    }

    fn checks(&self, step: Option<&str>) -> Vec<(u64, u64)> {
        self.checks
            .details
            .iter()
            .filter(|c| step.is_none_or(|name| c.step == name))
            .map(|c| (c.passed, c.failed))
            .collect()
    }

    fn dropped_iterations(&self) -> u64 {
        self.totals.dropped_iterations
    }

    fn rps(&self, step: Option<&str>) -> f64 {
        match step {
            None => self.totals.rps,
            Some(name) => self
                .steps
                .iter()
                .find(|s| s.name == name)
                .map_or(0.0, |s| s.rps),
        }
    }

    fn verify(&self) -> Option<&VerifySummary> {
        self.verify.as_ref()
    }
}

/// The engine's running totals, read as a rule reads a Summary.
pub struct Live<'a> {
    pub plan: &'a Plan,
    pub metrics: &'a Metrics,
    pub elapsed: Duration,
}

impl Live<'_> {
    fn step(&self, name: &str) -> Option<&StepMetrics> {
        let index = self.plan.steps.iter().position(|s| s.name == name)?;
        self.metrics.steps.get(index)
    }
}

impl Measured for Live<'_> {
    fn counts(&self, step: Option<&str>) -> Option<(u64, u64)> {
        match step {
            None => Some((self.metrics.requests(), self.metrics.failed())),
            Some(name) => self.step(name).map(|s| (s.requests, s.failed)),
        }
    }

    fn latency(&self, step: Option<&str>) -> Option<LatencySummary> {
        match step {
            None => Some(LatencySummary::from_histogram_us(
                &self.metrics.overall_latency(),
            )),
            Some(name) => Some(LatencySummary::from_histogram_us(
                &self.step(name)?.latency_us,
            )),
        }
    }

    fn checks(&self, step: Option<&str>) -> Vec<(u64, u64)> {
        self.plan
            .checks()
            .zip(&self.metrics.checks)
            .filter(|((s, _), _)| step.is_none_or(|name| s.name == name))
            .map(|(_, c)| (c.passed, c.failed))
            .collect()
    }

    fn dropped_iterations(&self) -> u64 {
        self.metrics.dropped_iterations
    }

    fn rps(&self, step: Option<&str>) -> f64 {
        let requests = self.counts(step).map_or(0, |(r, _)| r);
        requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn verify(&self) -> Option<&VerifySummary> {
        None
    }
}

/// The first rule that can be judged during the run (not verification's) and
/// fails on what was measured so far.
pub fn failing_during_run<'a>(rules: &'a [Threshold], live: &Live<'_>) -> Option<&'a Threshold> {
    rules
        .iter()
        .filter(|rule| !rule.metric.is_verification())
        .find(|rule| !actual(rule, live).is_some_and(|a| rule.op.holds(a, rule.limit)))
}

/// The measured value in the rule's unit, or `None` when the step is unknown.
fn actual(rule: &Threshold, measured: &impl Measured) -> Option<f64> {
    let step = rule.step.as_deref();
    let (requests, failed) = measured.counts(step)?;
    let percent = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 * 100.0 / whole as f64
        }
    };
    Some(match rule.metric {
        Metric::Latency(stat) => measured.latency(step)?.stat(stat),
        Metric::ErrorRate => percent(failed, requests),
        Metric::Checks => {
            // A check that never ran proved nothing: it counts once
            // against the rule, so `checks == 100%` cannot pass on 0/0.
            let counts = measured.checks(step);
            if counts.is_empty() {
                // Nothing to check in this scope: nothing failed.
                100.0
            } else {
                let passed: u64 = counts.iter().map(|(p, _)| p).sum();
                let failed: u64 = counts.iter().map(|&(p, f)| f + u64::from(p + f == 0)).sum();
                percent(passed, passed + failed)
            }
        }
        Metric::DroppedIterations => measured.dropped_iterations() as f64,
        Metric::Requests => requests as f64,
        Metric::Failed => failed as f64,
        Metric::MissingWrites => measured.verify()?.dynamodb.as_ref()?.missing as f64,
        Metric::MismatchedWrites => measured.verify()?.dynamodb.as_ref()?.mismatched as f64,
        Metric::MissingInvocations => measured.verify()?.logs.as_ref()?.missing as f64,
        Metric::IsolationLeaks => measured
            .verify()?
            .isolation
            .as_ref()?
            .leaks
            .iter()
            .map(|l| l.count)
            .sum::<u64>() as f64,
        Metric::Rps => measured.rps(step),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Overrides;
    use crate::summary::{Detail, RunFacts};
    use proptest::prelude::*;

    const SCENARIO: &str = r#"
[target]
base_url = "http://127.0.0.1:9"
stage = "t"
[load]
rate = 5
duration = "2s"
[[steps]]
name = "a"
method = "GET"
path = "/a"
checks = [{ status = [200] }]
[[steps]]
name = "b"
method = "GET"
path = "/b"
checks = [{ status = [200] }, { status = [201] }]
[thresholds]
rules = ["p99 < 50ms", "a.p50 < 10ms", "b.max < 100ms", "error_rate < 10%", "b.error_rate == 0%",
         "checks > 90%", "a.checks == 100%", "requests > 3", "b.failed < 2", "dropped_iterations == 0",
         "rps > 1", "a.rps > 0.5"]
"#;

    proptest! {
        /// The live totals and the Summary built from them are two readings of
        /// one run: every rule must come out the same on both.
        #[test]
        fn live_totals_read_as_the_summary_built_from_them(
            answers in proptest::collection::vec((0usize..2, 1u64..200_000, any::<bool>(), any::<bool>()), 0..40),
            dropped in 0u64..3,
            elapsed_ms in 100u64..10_000,
        ) {
            let plan = crate::scenario::parse(
                std::path::Path::new("judge.toml"),
                SCENARIO,
                &Overrides::default(),
            )
            .unwrap();
            let mut metrics = Metrics::new(plan.steps.len(), plan.check_count());
            for &(step, latency_us, failed, check_passed) in &answers {
                metrics.steps[step].record_response(200, latency_us, latency_us / 2, failed);
                let first_check = if step == 0 { 0 } else { 1 };
                metrics.record_check(first_check, check_passed, || "no".into());
            }
            metrics.dropped_iterations = dropped;
            let elapsed = Duration::from_millis(elapsed_ms);
            let facts = RunFacts {
                started_at: std::time::SystemTime::UNIX_EPOCH,
                elapsed,
                partial: false,
                stopped_by: None,
                timeline: Vec::new(),
                warmup: None,
            };
            let summary = Summary::build(&plan, &metrics, &facts, Detail::Numbers);
            let live = Live { plan: &plan, metrics: &metrics, elapsed };
            for rule in &plan.thresholds {
                prop_assert_eq!(actual(rule, &summary), actual(rule, &live), "{}", rule.expr);
            }
            let on_summary = plan
                .thresholds
                .iter()
                .find(|r| !r.metric.is_verification() && !evaluate(std::slice::from_ref(*r), &summary)[0].ok);
            prop_assert_eq!(
                failing_during_run(&plan.thresholds, &live).map(|r| &r.expr),
                on_summary.map(|r| &r.expr)
            );
        }
    }
}
