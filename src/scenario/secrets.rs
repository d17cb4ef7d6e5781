//! Secrets never leave the process: the values of credential-carrying
//! headers (`Authorization`, `x-api-key`, `Cookie`, `Set-Cookie`,
//! `X-Amz-Security-Token`, and any listed under the scenario's `redact`) and
//! the API key are shown as `***` in every output. The plan collects what it
//! can know before the run (keys from the environment, header values); values
//! captured at run time and sent in such headers are masked where a check's
//! example is recorded.

use http::HeaderName;

use crate::scenario::CheckKind;
use crate::scenario::template::{Part, Template};

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

    /// No secret value is known: nothing to mask in texts.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
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
