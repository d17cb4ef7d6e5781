//! `{{…}}` templates, compiled once when the scenario is validated and
//! rendered per request without re-parsing.
//!
//! Names: `uuid` (one per iteration, so a key written in a body and checked
//! later agree), `seq` (unique across VUs, threads and shards), `run_id`, `vu`,
//! `iteration` (the VU's own count), `now_ms`, `random_int(a,b)` (fresh per
//! use), `env.NAME` (read once at validation) and captures of earlier steps.

use std::fmt::Write as _;

/// How a dynamic value is written into the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// As is (header values, expected values).
    None,
    /// Percent-encoded, for query keys and values: the written text too, so
    /// `a&b=c` stays one value.
    Url,
    /// For URL paths: values percent-encoded as `Url`; the written text keeps
    /// what a path may hold (`/`, `?`, `&`, `=`, `%XX` already encoded) and
    /// encodes the rest (a space becomes `%20`).
    Path,
    /// Escaped for the inside of a JSON string literal.
    JsonString,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Literal(String),
    Uuid,
    Seq,
    RunId,
    Vu,
    Iteration,
    NowMs,
    RandomInt(i64, i64),
    /// A capture slot of the iteration, filled by an earlier step.
    Capture(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
    escape: Escape,
}

/// A template error, with the byte offset inside the template text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

/// What names a template may use besides the built-ins.
pub trait Names {
    /// The slot of a capture visible at this point, if any.
    fn capture(&self, name: &str) -> Option<usize>;
    /// The value of an environment variable.
    fn env(&self, name: &str) -> Option<String>;
}

/// The values one iteration renders with.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub uuid: &'a str,
    pub seq: u64,
    pub run_id: &'a str,
    pub vu: u64,
    pub iteration: u64,
    pub captures: &'a [Option<String>],
}

impl Vars<'static> {
    /// For rendering templates that use no variable (`Template::is_static`).
    pub fn empty() -> Vars<'static> {
        Vars {
            uuid: "",
            seq: 0,
            run_id: "",
            vu: 0,
            iteration: 0,
            captures: &[],
        }
    }
}

pub const BUILTINS: &[&str] = &[
    "uuid",
    "seq",
    "run_id",
    "vu",
    "iteration",
    "now_ms",
    "random_int(a,b)",
    "env.NAME",
];

impl Template {
    pub fn literal(text: &str) -> Template {
        Template {
            parts: vec![Part::Literal(text.to_string())],
            escape: Escape::None,
        }
    }

    pub fn compile(
        text: &str,
        escape: Escape,
        names: &dyn Names,
    ) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            literal.push_str(&escape_written(&rest[..open], escape));
            let inner_start = open + 2;
            let Some(close) = rest[inner_start..].find("}}") else {
                return Err(TemplateError {
                    offset: offset + open,
                    message: "unclosed `{{` (expected `}}`)".into(),
                });
            };
            let expr = rest[inner_start..inner_start + close].trim();
            let part = parse_expr(expr, names).map_err(|message| TemplateError {
                offset: offset + open,
                message,
            })?;
            match part {
                // env values are fixed for the run: fold them into the literal.
                Part::Literal(value) => literal.push_str(&escape_str(&value, escape)),
                part => {
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                }
            }
            let consumed = inner_start + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        literal.push_str(&escape_written(rest, escape));
        if !literal.is_empty() || parts.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts, escape })
    }

    /// True when rendering always gives the same text.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    pub fn uses_uuid(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Uuid))
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Appends the rendered text to `out`. A capture that is missing renders
    /// as empty; the engine stops an iteration before that happens.
    pub fn render_into(&self, vars: &Vars<'_>, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Uuid => out.push_str(vars.uuid),
                Part::Seq => push_display(out, vars.seq),
                Part::RunId => push_escaped(out, vars.run_id, self.escape),
                Part::Vu => push_display(out, vars.vu),
                Part::Iteration => push_display(out, vars.iteration),
                Part::NowMs => push_display(out, now_ms()),
                Part::RandomInt(lo, hi) => push_display(out, fastrand::i64(*lo..=*hi)),
                Part::Capture(slot) => {
                    if let Some(Some(value)) = vars.captures.get(*slot) {
                        push_escaped(out, value, self.escape);
                    }
                }
            }
        }
    }

    pub fn render(&self, vars: &Vars<'_>) -> String {
        let mut out = String::new();
        self.render_into(vars, &mut out);
        out
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn push_display(out: &mut String, value: impl std::fmt::Display) {
    // Writing into a String cannot fail.
    let _ = write!(out, "{value}");
}

fn push_escaped(out: &mut String, value: &str, escape: Escape) {
    match escape {
        Escape::None => out.push_str(value),
        _ => out.push_str(&escape_str(value, escape)),
    }
}

/// Text written in the scenario, outside `{{…}}`: sent as written where that
/// is valid, never changed in meaning (a literal `&` in a query value stays
/// part of the value).
fn escape_written(text: &str, escape: Escape) -> String {
    match escape {
        Escape::None | Escape::JsonString => text.to_string(),
        Escape::Url => percent_encode(text),
        Escape::Path => encode_path(text),
    }
}

/// Encodes what a URL path (with an optional query after `?`) may not hold,
/// keeping RFC 3986's `pchar`s, `/`, `?` and existing `%XX` escapes.
pub fn encode_path(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    for (i, &byte) in bytes.iter().enumerate() {
        let escaped = byte == b'%'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        let keep =
            byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&byte) || escaped;
        if keep {
            out.push(byte as char);
        } else {
            push_display(&mut out, format_args!("%{byte:02X}"));
        }
    }
    out
}

fn escape_str(value: &str, escape: Escape) -> String {
    match escape {
        Escape::None => value.to_string(),
        Escape::Url | Escape::Path => percent_encode(value),
        Escape::JsonString => {
            let quoted = serde_json::Value::String(value.to_string()).to_string();
            quoted[1..quoted.len() - 1].to_string()
        }
    }
}

/// RFC 3986 unreserved characters pass; everything else is %XX.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            push_display(&mut out, format_args!("%{byte:02X}"));
        }
    }
    out
}

fn parse_expr(expr: &str, names: &dyn Names) -> Result<Part, String> {
    let part = match expr {
        "uuid" => Part::Uuid,
        "seq" => Part::Seq,
        "run_id" => Part::RunId,
        "vu" => Part::Vu,
        "iteration" => Part::Iteration,
        "now_ms" => Part::NowMs,
        "" => return Err("empty `{{}}`".into()),
        _ => {
            if let Some(name) = expr.strip_prefix("env.") {
                let value = names.env(name).ok_or_else(|| {
                    format!("environment variable {name} is not set (used as `{{{{env.{name}}}}}`)")
                })?;
                Part::Literal(value)
            } else if let Some(args) = expr
                .strip_prefix("random_int(")
                .and_then(|a| a.strip_suffix(')'))
            {
                let (lo, hi) = args.split_once(',').ok_or_else(|| {
                    format!("`{expr}`: random_int takes two integers, e.g. random_int(1,100)")
                })?;
                let parse = |s: &str| {
                    s.trim()
                        .parse::<i64>()
                        .map_err(|_| format!("`{expr}`: {:?} is not an integer", s.trim()))
                };
                let (lo, hi) = (parse(lo)?, parse(hi)?);
                if lo > hi {
                    return Err(format!(
                        "`{expr}`: the lower bound is above the upper bound"
                    ));
                }
                Part::RandomInt(lo, hi)
            } else if let Some(slot) = names.capture(expr) {
                Part::Capture(slot)
            } else {
                return Err(format!(
                    "unknown template name `{expr}`: not a built-in ({}) nor a capture of an earlier step",
                    BUILTINS.join(", ")
                ));
            }
        }
    };
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct TestNames;
    impl Names for TestNames {
        fn capture(&self, name: &str) -> Option<usize> {
            (name == "id").then_some(0)
        }
        fn env(&self, name: &str) -> Option<String> {
            (name == "HOME_T").then(|| "/h\"ome".to_string())
        }
    }

    fn vars<'a>(captures: &'a [Option<String>]) -> Vars<'a> {
        Vars {
            uuid: "u-u-i-d",
            seq: 42,
            run_id: "r1",
            vu: 3,
            iteration: 7,
            captures,
        }
    }

    #[test]
    fn renders_builtins_and_captures() {
        let caps = [Some("a b".to_string())];
        let t = Template::compile(
            "/user/{{id}}?s={{ seq }}&v={{vu}}-{{iteration}}-{{uuid}}",
            Escape::Path,
            &TestNames,
        )
        .unwrap();
        assert_eq!(t.render(&vars(&caps)), "/user/a%20b?s=42&v=3-7-u-u-i-d");
    }

    #[test]
    fn written_text_is_encoded_where_it_lands() {
        // A query value keeps its `&` and `=` as part of the value.
        let t = Template::compile("a&b=c d", Escape::Url, &TestNames).unwrap();
        assert_eq!(t.render(&vars(&[])), "a%26b%3Dc%20d");
        // A path keeps its structure and earlier escapes; a space is encoded.
        let t = Template::compile("/my files/a%2Fb?x=1&y=2", Escape::Path, &TestNames).unwrap();
        assert_eq!(t.render(&vars(&[])), "/my%20files/a%2Fb?x=1&y=2");
        let t = Template::compile("/ü/{{id}}", Escape::Path, &TestNames).unwrap();
        assert_eq!(t.render(&vars(&[Some("1/2".into())])), "/%C3%BC/1%2F2");
    }

    #[test]
    fn env_is_folded_and_escaped() {
        let t = Template::compile("{{env.HOME_T}}", Escape::JsonString, &TestNames).unwrap();
        assert!(t.is_static());
        assert_eq!(t.render(&vars(&[])), "/h\\\"ome");
    }

    #[test]
    fn errors_point_at_the_expression() {
        let err = Template::compile("ab{{nope}}", Escape::None, &TestNames).unwrap_err();
        assert_eq!(err.offset, 2);
        assert!(err.message.contains("unknown template name `nope`"));
        let err = Template::compile("x{{seq", Escape::None, &TestNames).unwrap_err();
        assert_eq!(err.offset, 1);
        assert!(Template::compile("{{env.NOT_SET_X}}", Escape::None, &TestNames).is_err());
        assert!(Template::compile("{{random_int(5,1)}}", Escape::None, &TestNames).is_err());
    }

    proptest! {
        #[test]
        fn literal_text_renders_unchanged(text in "[^{}]*") {
            let t = Template::compile(&text, Escape::None, &TestNames).unwrap();
            prop_assert_eq!(t.render(&vars(&[])), text);
        }

        #[test]
        fn random_int_stays_in_bounds(lo in -1000i64..1000, span in 0i64..1000) {
            let hi = lo + span;
            let t = Template::compile(&format!("{{{{random_int({lo}, {hi})}}}}"), Escape::None, &TestNames).unwrap();
            let n: i64 = t.render(&vars(&[])).parse().unwrap();
            prop_assert!(n >= lo && n <= hi);
        }

        #[test]
        fn json_escaping_keeps_documents_valid(value in any::<String>()) {
            let caps = [Some(value.clone())];
            let t = Template::compile(r#"{"k":"{{id}}"}"#, Escape::JsonString, &TestNames).unwrap();
            let doc: serde_json::Value = serde_json::from_str(&t.render(&vars(&caps))).unwrap();
            prop_assert_eq!(doc["k"].as_str().unwrap(), value.as_str());
        }

        #[test]
        fn url_escaping_round_trips(value in any::<String>()) {
            let encoded = percent_encode(&value);
            prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
        }

        #[test]
        fn written_paths_are_always_valid_uris(text in "/[^{}]*") {
            let t = Template::compile(&text, Escape::Path, &TestNames).unwrap();
            prop_assert!(http::Uri::try_from(t.render(&vars(&[]))).is_ok());
        }

        #[test]
        fn compile_never_panics(text in any::<String>()) {
            let _ = Template::compile(&text, Escape::Url, &TestNames);
        }
    }
}
