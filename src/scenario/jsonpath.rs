//! Paths into JSON responses, as RFC 9535 JSONPath (`$.items[?@.Name == 'x'].Id`,
//! evaluated by `serde_json_path`), plus the short forms scenarios have always
//! used (`Id`, `user.name`, `items[0].id`), which are translated to the
//! JSONPath they mean (`$['items'][0]['id']`).

use std::fmt::Write as _;

#[derive(Debug, Clone)]
pub struct JsonPath {
    /// As written in the scenario, for messages and reports.
    pub text: String,
    query: serde_json_path::JsonPath,
}

impl PartialEq for JsonPath {
    fn eq(&self, other: &JsonPath) -> bool {
        self.text == other.text
    }
}

impl Eq for JsonPath {}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let body = text.trim();
        let rfc = if body.starts_with('$') {
            body.to_string()
        } else {
            short_form(body).map_err(|why| {
                format!(
                    "JSON path {text:?}: {why} (write e.g. `Id`, `user.name`, `items[0].id`, \
                     or JSONPath such as `$.items[?@.Name == 'x'].Id`)"
                )
            })?
        };
        let query = serde_json_path::JsonPath::parse(&rfc).map_err(|e| {
            format!("JSON path {text:?}: {e} (JSONPath as in RFC 9535, e.g. `$.items[0].id`)")
        })?;
        Ok(JsonPath {
            text: text.to_string(),
            query,
        })
    }

    /// The value the path selects; the first, in document order, when it
    /// selects several (`$.items[*].id`).
    pub fn lookup<'v>(&self, value: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        self.query.query(value).first()
    }
}

/// The JSONPath a short form means: `items[0].id` → `$['items'][0]['id']`.
/// Keys are quoted, so any character but `.` and `[` may be in one.
pub fn short_form(body: &str) -> Result<String, &'static str> {
    if body.is_empty() {
        return Err("empty path");
    }
    let mut out = String::from("$");
    for piece in body.split('.') {
        let (key, mut rest) = match piece.find('[') {
            Some(at) => (&piece[..at], &piece[at..]),
            None => (piece, ""),
        };
        if !key.is_empty() {
            out.push_str("['");
            for c in key.chars() {
                match c {
                    '\'' => out.push_str("\\'"),
                    '\\' => out.push_str("\\\\"),
                    c if (c as u32) < 0x20 => {
                        let _ = write!(out, "\\u{:04X}", c as u32);
                    }
                    c => out.push(c),
                }
            }
            out.push_str("']");
        } else if rest.is_empty() {
            return Err("empty segment");
        }
        while !rest.is_empty() {
            let close = rest.find(']').ok_or("unclosed `[`")?;
            let index = rest[1..close]
                .trim()
                .parse::<usize>()
                .map_err(|_| "an index must be a whole number")?;
            let _ = write!(out, "[{index}]");
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err("unexpected text after `]`");
            }
        }
    }
    Ok(out)
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
    use serde_json::json;

    fn find<'v>(path: &str, doc: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        JsonPath::parse(path).unwrap().lookup(doc)
    }

    #[test]
    fn looks_up_nested_values() {
        let doc = json!({"Id": "x", "user": {"tags": [{"n": 1}, {"n": 2}]}});
        assert_eq!(find("Id", &doc), Some(&json!("x")));
        assert_eq!(find("$.user.tags[1].n", &doc), Some(&json!(2)));
        assert_eq!(find("user.tags[1].n", &doc), Some(&json!(2)));
        assert_eq!(find("user.missing", &doc), None);
        assert!(JsonPath::parse("a..b").is_err());
        assert!(JsonPath::parse("a[x]").is_err());
        assert!(JsonPath::parse("").is_err());
        assert!(JsonPath::parse("$.a[").is_err());
    }

    #[test]
    fn filters_select_by_value() {
        let doc = json!({"items": [
            {"Name": "a", "Id": "1", "n": 5},
            {"Name": "x", "Id": "2", "n": 7},
        ]});
        assert_eq!(find("$.items[?@.Name == 'x'].Id", &doc), Some(&json!("2")));
        assert_eq!(find("$.items[?@.n > 5].Name", &doc), Some(&json!("x")));
        assert_eq!(find("$.items[?@.Name == 'zz'].Id", &doc), None);
        // Several matches: the first in document order.
        assert_eq!(find("$.items[*].Id", &doc), Some(&json!("1")));
        assert_eq!(find("$..Id", &doc), Some(&json!("1")));
    }

    #[test]
    fn short_forms_translate_to_quoted_jsonpath() {
        assert_eq!(short_form("Id").unwrap(), "$['Id']");
        assert_eq!(short_form("items[0].id").unwrap(), "$['items'][0]['id']");
        assert_eq!(short_form("a[1][2]").unwrap(), "$['a'][1][2]");
        assert_eq!(short_form("it's").unwrap(), "$['it\\'s']");
        let doc = json!({"first name": {"it's": {"a\\b": true}}});
        assert_eq!(find("first name.it's.a\\b", &doc), Some(&json!(true)));
    }

    /// The short form's meaning, walked by hand: what the translation must match.
    fn walk<'v>(body: &str, doc: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        let mut at = doc;
        for piece in body.split('.') {
            let (key, rest) = piece.split_at(piece.find('[').unwrap_or(piece.len()));
            if !key.is_empty() {
                at = at.get(key)?;
            }
            for index in rest.split(['[', ']']).filter(|s| !s.is_empty()) {
                at = at.get(index.trim().parse::<usize>().ok()?)?;
            }
        }
        Some(at)
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in any::<String>()) {
            let _ = JsonPath::parse(&text);
        }

        #[test]
        fn dotted_keys_find_what_was_built(keys in proptest::collection::vec("[a-zA-Z_][a-zA-Z0-9_]{0,8}", 1..5)) {
            let mut doc = json!(7);
            for k in keys.iter().rev() {
                doc = json!({ k.clone(): doc });
            }
            let path = JsonPath::parse(&keys.join(".")).unwrap();
            prop_assert_eq!(path.lookup(&doc), Some(&json!(7)));
        }

        /// Any short form (keys of any characters but `.`, `[` and `$` first,
        /// with indexes) selects in its JSONPath translation exactly what the
        /// old walk over keys and indexes selected, in a document built for it
        /// and in one where it leads nowhere.
        #[test]
        fn short_form_translation_means_the_same_walk(
            segments in proptest::collection::vec(
                ("[^.\\[\\]$]{1,6}", proptest::collection::vec(0usize..3, 0..3)),
                1..4,
            ),
            hit in any::<bool>(),
        ) {
            let body: String = segments
                .iter()
                .map(|(key, indexes)| {
                    let mut piece = key.clone();
                    for i in indexes {
                        piece.push_str(&format!("[{i}]"));
                    }
                    piece
                })
                .collect::<Vec<_>>()
                .join(".");
            // Surrounding spaces are trimmed from a path as written.
            prop_assume!(body.trim() == body);
            let mut doc = json!("leaf");
            for (key, indexes) in segments.iter().rev() {
                for i in indexes.iter().rev() {
                    let mut items = vec![json!(null); *i + if hit { 1 } else { 0 }];
                    if hit {
                        items[*i] = doc;
                    }
                    doc = serde_json::Value::Array(items);
                }
                doc = json!({ key.clone(): doc });
            }
            let path = JsonPath::parse(&body);
            prop_assert!(path.is_ok(), "{body:?}: {:?} ({:?})", path.err(), short_form(&body));
            let path = path.unwrap();
            prop_assert_eq!(path.lookup(&doc), walk(&body, &doc), "{}", body);
            if hit {
                prop_assert_eq!(path.lookup(&doc), Some(&json!("leaf")));
            }
        }
    }
}
