//! Secrets never leave the process: the values of credential-carrying
//! headers (`Authorization`, `x-api-key`, `Cookie`, `Set-Cookie`,
//! `X-Amz-Security-Token`, and any listed under the scenario's `redact`) and
//! the API key are shown as `***` in every output. The plan collects what it
//! can know before the run (keys from the environment, header values); values
//! captured at run time and sent in such headers are masked where a check's
//! example is recorded.

use http::HeaderName;

use crate::error::Error;
use crate::scenario::CheckKind;
use crate::scenario::template::{Part, Template};
use crate::summary::Summary;

pub const MASK: &str = "***";

/// Headers whose values are credentials, whatever the scenario says.
pub const SENSITIVE_HEADERS: [&str; 5] = [
    "authorization",
    "x-api-key",
    "cookie",
    "set-cookie",
    "x-amz-security-token",
];

/// Shorter values are not masked: they would blank out ordinary words
/// (API Gateway's API keys have at least 20 characters).
const MIN_SECRET_LEN: usize = 4;

#[derive(Clone, Default)]
pub struct Secrets {
    /// Extra header names from `redact = [...]`, lowercase.
    extra: Vec<HeaderName>,
    values: Vec<String>,
    /// Capture slots whose values are sent in a sensitive header.
    capture_slots: Vec<usize>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Secrets({} extra headers, {} values)",
            self.extra.len(),
            self.values.len()
        )
    }
}

impl Secrets {
    pub fn new(extra: Vec<HeaderName>) -> Secrets {
        Secrets {
            extra,
            ..Secrets::default()
        }
    }

    pub fn is_sensitive(&self, name: &HeaderName) -> bool {
        SENSITIVE_HEADERS.contains(&name.as_str()) || self.extra.contains(name)
    }

    pub fn add_value(&mut self, value: &str) {
        let value = value.trim();
        if value.chars().count() >= MIN_SECRET_LEN && !self.values.iter().any(|v| v == value) {
            self.values.push(value.to_string());
        }
    }

    /// A header value sent with a sensitive name: its fixed text (where
    /// `{{env.NAME}}` was folded in), each word of it (`Bearer <token>` → the
    /// token), and the captures it is built from.
    pub fn add_header_value(&mut self, template: &Template) {
        let parts = template.parts();
        let fixed: String = parts
            .iter()
            .filter_map(|p| match p {
                Part::Literal(text) => Some(text.as_str()),
                _ => None,
            })
            .collect();
        if parts.iter().all(|p| matches!(p, Part::Literal(_))) {
            self.add_value(&fixed);
        }
        for part in parts {
            match part {
                Part::Literal(text) => {
                    // Words of two or three letters are auth schemes and
                    // separators, not secrets; longer ones may be.
                    for word in text.split([' ', ',', ';', '=']) {
                        if word.len() >= 8 {
                            self.add_value(word);
                        }
                    }
                }
                Part::Capture(slot) if !self.capture_slots.contains(slot) => {
                    self.capture_slots.push(*slot);
                }
                _ => {}
            }
        }
    }

    /// `text` with every known secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        mask(text, self.values.iter().map(String::as_str))
    }

    /// A check's failure example, as recorded during the run: known secrets
    /// and captured values sent in sensitive headers masked, and nothing of a
    /// sensitive response header's value (e.g. `Set-Cookie`) shown.
    pub fn check_example(
        &self,
        kind: &CheckKind,
        text: String,
        captures: &[Option<String>],
    ) -> String {
        if let CheckKind::Header { name, .. } = kind
            && self.is_sensitive(name)
            && !text.ends_with(": missing")
        {
            return format!("header {name}: {MASK} (the value of a sensitive header is not shown)");
        }
        let captured = self
            .capture_slots
            .iter()
            .filter_map(|slot| captures.get(*slot).and_then(Option::as_deref))
            .map(str::trim)
            .filter(|v| v.chars().count() >= MIN_SECRET_LEN);
        mask(
            &text,
            self.values.iter().map(String::as_str).chain(captured),
        )
    }

    /// Every text in the summary, before any report is written from it.
    /// Histograms are left alone: they are base64 numbers, not text.
    ///
    /// Fails closed: when the summary cannot make the round trip through JSON
    /// (a non-finite number encodes as `null` and does not decode back), the
    /// error says so and the caller writes nothing, rather than the secrets.
    pub fn redact_summary(&self, summary: &mut Summary) -> Result<(), Error> {
        if self.values.is_empty() {
            return Ok(());
        }
        let fail = |why: String| {
            Error::Runtime(format!(
                "cannot mask the secrets in the summary ({why}), so no summary or report is written"
            ))
        };
        let mut json = serde_json::to_value(&*summary).map_err(|e| fail(e.to_string()))?;
        self.redact_json(&mut json, "");
        *summary = serde_json::from_value(json).map_err(|e| fail(e.to_string()))?;
        Ok(())
    }

    fn redact_json(&self, value: &mut serde_json::Value, key: &str) {
        match value {
            serde_json::Value::String(s) if !key.ends_with("histogram") => {
                let masked = self.redact(s);
                if masked != *s {
                    *s = masked;
                }
            }
            serde_json::Value::Array(items) => {
                items.iter_mut().for_each(|v| self.redact_json(v, key));
            }
            serde_json::Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    self.redact_json(v, k);
                }
            }
            _ => {}
        }
    }
}

/// Replaces every occurrence of every secret with `***`. Occurrences are
/// found in the original text first and overlapping ones merged, so masking
/// one secret can never expose part of another.
pub fn mask<'a>(text: &str, secrets: impl Iterator<Item = &'a str>) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for secret in secrets.filter(|s| !s.is_empty()) {
        let mut from = 0;
        while let Some(at) = text[from..].find(secret) {
            let start = from + at;
            ranges.push((start, start + secret.len()));
            // Step one character, not the whole secret: overlapping
            // occurrences (`aaa` in `aaaa`) are all covered.
            from = start + text[start..].chars().next().map_or(1, char::len_utf8);
        }
    }
    if ranges.is_empty() {
        return text.to_string();
    }
    ranges.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut iter = ranges.into_iter().peekable();
    while let Some((start, mut end)) = iter.next() {
        while let Some(&(s, e)) = iter.peek() {
            if s > end {
                break;
            }
            end = end.max(e);
            iter.next();
        }
        out.push_str(&text[at..start]);
        out.push_str(MASK);
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masks_every_occurrence_and_overlaps() {
        assert_eq!(
            mask("a sekret and sekret", ["sekret"].into_iter()),
            "a *** and ***"
        );
        assert_eq!(mask("xabcdey", ["abcd", "cde"].into_iter()), "x***y");
        assert_eq!(mask("nothing here", ["zzzz"].into_iter()), "nothing here");
        assert_eq!(mask("ééséé", ["sé"].into_iter()), "éé***é");
    }

    #[test]
    fn header_words_and_whole_values_are_secrets() {
        let mut s = Secrets::new(Vec::new());
        let names = NoNames;
        let t = Template::compile(
            "Bearer eyJhbGciOi.payload",
            crate::scenario::template::Escape::None,
            &names,
        )
        .unwrap();
        s.add_header_value(&t);
        assert_eq!(s.redact("sent Bearer eyJhbGciOi.payload"), "sent ***");
        assert_eq!(s.redact("token eyJhbGciOi.payload"), "token ***");
        assert_eq!(s.redact("Bearer"), "Bearer");
    }

    #[test]
    fn sensitive_response_headers_are_never_quoted() {
        let s = Secrets::new(vec![HeaderName::from_static("x-my-token")]);
        let kind = CheckKind::Header {
            name: HeaderName::from_static("x-my-token"),
            predicate: crate::scenario::Predicate::Exists(false),
        };
        let text = s.check_example(&kind, "header x-my-token: present (\"abc123\")".into(), &[]);
        assert!(!text.contains("abc123"), "{text}");
        let missing = s.check_example(&kind, "header x-my-token: missing".into(), &[]);
        assert_eq!(missing, "header x-my-token: missing");
    }

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
            passed: false,
            reasons: Vec::new(),
        }
    }

    #[test]
    fn summary_redaction_masks_and_fails_closed() {
        let mut s = Secrets::new(Vec::new());
        s.add_value("k-very-secret-value");
        let mut summary = summary_with("sent k-very-secret-value", 1.0);
        s.redact_summary(&mut summary).unwrap();
        assert_eq!(summary.stopped_by.as_deref(), Some("sent ***"));
        // NaN encodes as JSON null and cannot decode back into the summary:
        // the secret must not survive that quietly.
        let mut summary = summary_with("sent k-very-secret-value", f64::NAN);
        let result = s.redact_summary(&mut summary);
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

    struct NoNames;
    impl crate::scenario::template::Names for NoNames {
        fn capture(&self, _: &str) -> Option<usize> {
            None
        }
        fn env(&self, _: &str) -> Option<String> {
            None
        }
    }

    proptest! {
        #[test]
        fn a_masked_text_never_contains_a_secret(
            secrets in proptest::collection::vec("[a-zA-Z0-9_./+-]{4,16}", 1..4),
            pieces in proptest::collection::vec(("[ -~]{0,12}", 0usize..4), 0..8),
        ) {
            let mut text = String::new();
            for (filler, which) in &pieces {
                text.push_str(filler);
                if let Some(s) = secrets.get(*which) {
                    text.push_str(s);
                }
            }
            let out = mask(&text, secrets.iter().map(String::as_str));
            for s in &secrets {
                // A secret made only of the mask's own character could be
                // formed by the mask; the generator has none.
                prop_assert!(!out.contains(s.as_str()), "{s:?} in {out:?}");
            }
        }

        #[test]
        fn text_without_secrets_is_unchanged(text in "[ -~]{0,60}") {
            prop_assert_eq!(mask(&text, ["\u{1}never\u{1}"].into_iter()), text);
        }
    }
}
