//! Paths into JSON responses: `Id`, `user.name`, `items[0].id`, `$.a.b`.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    pub text: String,
    segments: Vec<Segment>,
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let bad = |why: &str| {
            format!("JSON path {text:?}: {why} (write e.g. `Id`, `user.name`, `items[0].id`)")
        };
        let body = text.trim();
        let body = body
            .strip_prefix("$.")
            .or_else(|| body.strip_prefix('$'))
            .unwrap_or(body);
        let mut segments = Vec::new();
        for piece in body.split('.') {
            let (key, mut rest) = match piece.find('[') {
                Some(at) => (&piece[..at], &piece[at..]),
                None => (piece, ""),
            };
            if !key.is_empty() {
                segments.push(Segment::Key(key.to_string()));
            } else if rest.is_empty() {
                return Err(bad("empty segment"));
            }
            while !rest.is_empty() {
                let close = rest.find(']').ok_or_else(|| bad("unclosed `[`"))?;
                let index = rest[1..close]
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| bad("an index must be a whole number"))?;
                segments.push(Segment::Index(index));
                rest = &rest[close + 1..];
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(bad("unexpected text after `]`"));
                }
            }
        }
        if segments.is_empty() {
            return Err(bad("empty path"));
        }
        Ok(JsonPath {
            text: text.to_string(),
            segments,
        })
    }

    pub fn lookup<'v>(&self, value: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        self.segments.iter().try_fold(value, |v, seg| match seg {
            Segment::Key(k) => v.get(k.as_str()),
            Segment::Index(i) => v.get(*i),
        })
    }
}

/// A JSON value as text, as checks compare it and keys are written: a string
/// is its contents, anything else its JSON.
pub fn text_of(value: &serde_json::Value) -> std::borrow::Cow<'_, str> {
    match value {
        serde_json::Value::String(s) => std::borrow::Cow::Borrowed(s),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn looks_up_nested_values() {
        let doc = serde_json::json!({"Id": "x", "user": {"tags": [{"n": 1}, {"n": 2}]}});
        assert_eq!(
            JsonPath::parse("Id").unwrap().lookup(&doc),
            Some(&serde_json::json!("x"))
        );
        assert_eq!(
            JsonPath::parse("$.user.tags[1].n").unwrap().lookup(&doc),
            Some(&serde_json::json!(2))
        );
        assert_eq!(JsonPath::parse("user.missing").unwrap().lookup(&doc), None);
        assert!(JsonPath::parse("a..b").is_err());
        assert!(JsonPath::parse("a[x]").is_err());
        assert!(JsonPath::parse("").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in any::<String>()) {
            let _ = JsonPath::parse(&text);
        }

        #[test]
        fn dotted_keys_find_what_was_built(keys in proptest::collection::vec("[a-zA-Z_][a-zA-Z0-9_]{0,8}", 1..5)) {
            let mut doc = serde_json::json!(7);
            for k in keys.iter().rev() {
                doc = serde_json::json!({ k.clone(): doc });
            }
            let path = JsonPath::parse(&keys.join(".")).unwrap();
            prop_assert_eq!(path.lookup(&doc), Some(&serde_json::json!(7)));
        }
    }
}
