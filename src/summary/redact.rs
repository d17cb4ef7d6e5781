//! Masking a Summary's texts before any output is written from it: the last
//! step before a summary leaves the process.

use crate::error::Error;
use crate::scenario::secrets::Secrets;

use super::Summary;

impl Summary {
    /// Every text in the summary, before any report is written from it.
    /// Histograms are left alone: they are base64 numbers, not text.
    ///
    /// Fails closed: when the summary cannot make the round trip through JSON
    /// (a non-finite number encodes as `null` and does not decode back), the
    /// error says so and the caller writes nothing, rather than the secrets.
    pub fn redact(&mut self, secrets: &Secrets) -> Result<(), Error> {
        if secrets.is_empty() {
            return Ok(());
        }
        let fail = |why: String| {
            Error::Runtime(format!(
                "cannot mask the secrets in the summary ({why}), so no summary or report is written"
            ))
        };
        let mut json = serde_json::to_value(&*self).map_err(|e| fail(e.to_string()))?;
        redact_json(secrets, &mut json, "");
        *self = serde_json::from_value(json).map_err(|e| fail(e.to_string()))?;
        Ok(())
    }
}

fn redact_json(secrets: &Secrets, value: &mut serde_json::Value, key: &str) {
    match value {
        serde_json::Value::String(s) if !key.ends_with("histogram") => {
            let masked = secrets.redact(s);
            if masked != *s {
                *s = masked;
            }
        }
        serde_json::Value::Array(items) => {
            items.iter_mut().for_each(|v| redact_json(secrets, v, key));
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                redact_json(secrets, v, k);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A summary whose `stopped_by` holds `text`, with `rps` as given.
    fn summary_with(text: &str, rps: f64) -> Summary {
        use crate::metrics::{ErrorCounts, LatencySummary};
        use crate::summary::{ChecksSummary, Totals};
        Summary {
            version: 1,
            scenario: "s".into(),
            scenario_file: "s.toml".into(),
            stage: "test".into(),
            base_url: "http://127.0.0.1:1/test".into(),
            run_id: "scx".into(),
            model: "open".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            duration_s: 1.0,
            partial: true,
            stopped_by: Some(text.into()),
            shard: None,
            merged_from: Vec::new(),
            start_skew_s: None,
            totals: Totals {
                requests: 0,
                failed: 0,
                throttled: 0,
                rps,
                target_rate: None,
                iterations: 0,
                completed_iterations: 0,
                failed_iterations: 0,
                unstarted_iterations: 0,
                dropped_iterations: 0,
                interrupted_iterations: 0,
                errors: ErrorCounts::default(),
                latency_ms: LatencySummary::default(),
                schedule_lag_ms: LatencySummary::default(),
                histogram: String::new(),
            },
            steps: Vec::new(),
            checks: ChecksSummary::default(),
            thresholds: Vec::new(),
            timeline: Vec::new(),
            verify: None,
            warmup: None,
            deployment: None,
            passed: false,
            reasons: Vec::new(),
        }
    }

    #[test]
    fn summary_redaction_masks_and_fails_closed() {
        let mut s = Secrets::new(Vec::new());
        s.add_value("k-very-secret-value");
        let mut summary = summary_with("sent k-very-secret-value", 1.0);
        summary.redact(&s).unwrap();
        assert_eq!(summary.stopped_by.as_deref(), Some("sent ***"));
        // NaN encodes as JSON null and cannot decode back into the summary:
        // the secret must not survive that quietly.
        let mut summary = summary_with("sent k-very-secret-value", f64::NAN);
        let result = summary.redact(&s);
        let still_there = summary
            .stopped_by
            .as_deref()
            .is_some_and(|t| t.contains("k-very-secret-value"));
        assert!(
            result.is_err() || !still_there,
            "the secret stayed and nothing said so"
        );
        assert!(result.is_err());
    }
}
