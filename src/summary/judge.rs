//! The verdict over a Summary: every threshold evaluated on what it holds, and
//! whether the run did what it claims. Run, merge and report all judge here, so
//! a saved summary is gated exactly as the run that wrote it.

use crate::thresholds::{Metric, Stat, Threshold};

use super::{Summary, ThresholdResult};

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

/// The measured value in the rule's unit, or `None` when the step is unknown.
fn actual(rule: &Threshold, summary: &Summary) -> Option<f64> {
    let (requests, failed, latency) = match &rule.step {
        None => (
            summary.totals.requests,
            summary.totals.failed,
            &summary.totals.latency_ms,
        ),
        Some(name) => {
            let step = summary.steps.iter().find(|s| &s.name == name)?;
            (step.requests, step.failed, &step.latency_ms)
        }
    };
    let percent = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 * 100.0 / whole as f64
        }
    };
    Some(match rule.metric {
        Metric::Latency(stat) => match stat {
            Stat::Min => latency.min,
            Stat::Mean => latency.mean,
            Stat::P50 => latency.p50,
            Stat::P90 => latency.p90,
            Stat::P95 => latency.p95,
            Stat::P99 => latency.p99,
            Stat::P999 => latency.p999,
            Stat::Max => latency.max,
        },
        Metric::ErrorRate => percent(failed, requests),
        Metric::Checks => {
            // A check that never ran proved nothing: it counts once
            // against the rule, so `checks == 100%` cannot pass on 0/0.
            let in_scope = summary
                .checks
                .details
                .iter()
                .filter(|c| rule.step.as_ref().is_none_or(|name| &c.step == name));
            let (mut passed, mut failed, mut checks) = (0, 0, 0);
            for c in in_scope {
                checks += 1;
                passed += c.passed;
                failed += c.failed + u64::from(c.passed + c.failed == 0);
            }
            if checks == 0 {
                // Nothing to check in this scope: nothing failed.
                100.0
            } else {
                percent(passed, passed + failed)
            }
        }
        Metric::DroppedIterations => summary.totals.dropped_iterations as f64,
        Metric::Requests => requests as f64,
        Metric::Failed => failed as f64,
        Metric::MissingWrites => summary.verify.as_ref()?.dynamodb.as_ref()?.missing as f64,
        Metric::MismatchedWrites => summary.verify.as_ref()?.dynamodb.as_ref()?.mismatched as f64,
        Metric::MissingInvocations => summary.verify.as_ref()?.logs.as_ref()?.missing as f64,
        Metric::IsolationLeaks => summary
            .verify
            .as_ref()?
            .isolation
            .as_ref()?
            .leaks
            .iter()
            .map(|l| l.count)
            .sum::<u64>() as f64,
        Metric::Rps => match &rule.step {
            None => summary.totals.rps,
            Some(name) => summary
                .steps
                .iter()
                .find(|s| &s.name == name)
                .map_or(0.0, |s| s.rps),
        },
    })
}
