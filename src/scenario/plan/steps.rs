//! The requests of an iteration: each [`Step`]'s method, path, query,
//! headers and body compiled into templates, its checks, the captures later
//! steps may use, and the item it writes (checked after the run).

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use http::{HeaderName, Method};
use toml::Spanned;

use super::target::reject_literal_api_key;
use super::{Cx, Scope, Target, header_name};
use crate::error::Error;
use crate::scenario::file::{CaptureSpec, CheckSpec, StepSpec};
use crate::scenario::jsonpath::JsonPath;
use crate::scenario::template::{self, Escape, Template};

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub method: Method,
    /// As written, for reports.
    pub path_text: String,
    /// The base path joined with the step's path.
    pub path: Template,
    pub query: Vec<(String, Template)>,
    pub headers: Vec<(HeaderName, Template)>,
    pub body: Option<Template>,
    pub timeout: Duration,
    pub checks: Vec<Check>,
    pub captures: Vec<Capture>,
    /// Statuses that count as success; `None` means below 400.
    pub expected_status: Option<Vec<u16>>,
    /// Some check or capture reads the body as JSON.
    pub needs_json: bool,
    pub writes: Option<Writes>,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
}

#[derive(Debug, Clone)]
pub enum CheckKind {
    Status(Vec<u16>),
    Header {
        name: HeaderName,
        predicate: Predicate,
    },
    Json {
        path: JsonPath,
        predicate: Predicate,
    },
    BodyContains(String),
    LatencyUnder(Duration),
    /// Added for every capture: the value was found in the answer.
    Captured(usize),
}

#[derive(Debug, Clone)]
pub enum Predicate {
    Exists(bool),
    Equals(Expected),
    Contains(Template),
}

#[derive(Debug, Clone)]
pub enum Expected {
    /// A string, rendered per iteration.
    Text(Template),
    /// A number, boolean, array or table, compared as JSON.
    Value(serde_json::Value),
}

#[derive(Debug, Clone)]
pub struct Capture {
    pub name: String,
    pub slot: usize,
    pub source: CaptureSource,
}

#[derive(Debug, Clone)]
pub enum CaptureSource {
    Json(JsonPath),
    Header(HeaderName),
}

/// The item a step writes: its key and expected attributes, rendered per iteration.
#[derive(Debug, Clone)]
pub struct Writes {
    pub key: Vec<(String, Expected)>,
    pub attributes: Vec<(String, Expected)>,
}

pub(super) fn build_step(
    cx: &Cx<'_>,
    spec: &StepSpec,
    target: &Target,
    timeout: Duration,
    scope: &mut Scope,
) -> Result<Step, Error> {
    let name = spec.name.get_ref().trim().to_string();
    if name.is_empty() || name.contains('.') {
        return Err(cx.error(
            spec.name.span(),
            "a step name must be non-empty and contain no `.` (thresholds use `step.metric`)",
        ));
    }
    let method_text = spec.method.get_ref().to_ascii_uppercase();
    let method = match method_text.as_str() {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        "HEAD" => Method::HEAD,
        "OPTIONS" => Method::OPTIONS,
        _ => {
            return Err(cx.error(
                spec.method.span(),
                format!(
                    "unknown method {:?} (expected GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS)",
                    spec.method.get_ref()
                ),
            ));
        }
    };
    let path_text = spec.path.get_ref().clone();
    if !path_text.starts_with('/') {
        return Err(cx.error(
            spec.path.span(),
            format!("the path {path_text:?} must start with `/`"),
        ));
    }
    let template_err =
        |span: Range<usize>| move |e: template::TemplateError| cx.error(span.clone(), e.message);
    // The base path is fixed text: prefix it to the first literal.
    let full_path = format!("{}{}", target.base_path, path_text);
    let path = Template::compile(&full_path, Escape::Path, scope)
        .map_err(template_err(spec.path.span()))?;
    let mut query = Vec::new();
    for (k, v) in &spec.query {
        let value =
            Template::compile(v.get_ref(), Escape::Url, scope).map_err(template_err(v.span()))?;
        query.push((template::percent_encode(k.get_ref()), value));
    }
    let mut headers = Vec::new();
    for (k, v) in &spec.headers {
        let name = header_name(k.get_ref()).map_err(|m| cx.error(k.span(), m))?;
        reject_literal_api_key(cx, &name, v)?;
        let value =
            Template::compile(v.get_ref(), Escape::None, scope).map_err(template_err(v.span()))?;
        headers.push((name, value));
    }
    let body = match &spec.body {
        None => None,
        Some(value) => {
            let json = json_body_text(value.get_ref());
            Some(
                Template::compile(&json, Escape::JsonString, scope)
                    .map_err(template_err(value.span()))?,
            )
        }
    };
    let step_timeout = match &spec.timeout {
        Some(t) => cx.duration(t)?,
        None => timeout,
    };

    let mut checks = Vec::new();
    let mut expected_status: Option<Vec<u16>> = None;
    for check in &spec.checks {
        let built = build_check(cx, check, scope)?;
        if let CheckKind::Status(codes) = &built.kind {
            expected_status.get_or_insert_with(Vec::new).extend(codes);
        }
        checks.push(built);
    }
    // Captures become visible to later steps only.
    let mut captures = Vec::new();
    for (capture_name, capture) in &spec.capture {
        let cname = capture_name.get_ref().clone();
        if !is_identifier(&cname) || template::BUILTINS.iter().any(|b| *b == cname) {
            return Err(cx.error(
                capture_name.span(),
                format!("capture name `{cname}` must be an identifier that is not a built-in"),
            ));
        }
        let source = capture_source(cx, capture)?;
        let next = scope.captures.len();
        let slot = *scope.captures.entry(cname.clone()).or_insert(next);
        checks.push(Check {
            name: format!("captured {cname}"),
            kind: CheckKind::Captured(slot),
        });
        captures.push(Capture {
            name: cname,
            slot,
            source,
        });
    }
    let writes = match &spec.writes {
        None => None,
        Some(w) => {
            let w_ref = w.get_ref();
            if w_ref.key.get_ref().is_empty() || w_ref.key.get_ref().len() > 2 {
                return Err(cx.error(
                    w_ref.key.span(),
                    "a key has one attribute (partition key) or two (with the sort key)",
                ));
            }
            let expected = |map: &BTreeMap<String, Spanned<toml::Value>>| -> Result<Vec<(String, Expected)>, Error> {
                map.iter().map(|(name, value)| Ok((name.clone(), expected_value(cx, value, scope)?))).collect()
            };
            Some(Writes {
                key: expected(w_ref.key.get_ref())?,
                attributes: expected(&w_ref.attributes)?,
            })
        }
    };
    let needs_json = checks
        .iter()
        .any(|c| matches!(c.kind, CheckKind::Json { .. }))
        || captures
            .iter()
            .any(|c| matches!(c.source, CaptureSource::Json(_)));
    Ok(Step {
        name,
        method,
        path_text,
        path,
        query,
        headers,
        body,
        timeout: step_timeout,
        checks,
        captures,
        expected_status,
        needs_json,
        writes,
    })
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

fn capture_source(cx: &Cx<'_>, capture: &Spanned<CaptureSpec>) -> Result<CaptureSource, Error> {
    match (&capture.get_ref().json, &capture.get_ref().header) {
        (Some(path), None) => Ok(CaptureSource::Json(
            JsonPath::parse(path.get_ref()).map_err(|m| cx.error(path.span(), m))?,
        )),
        (None, Some(name)) => Ok(CaptureSource::Header(
            header_name(name.get_ref()).map_err(|m| cx.error(name.span(), m))?,
        )),
        _ => Err(cx.error(
            capture.span(),
            "a capture takes exactly one of `json = \"path\"` or `header = \"name\"`",
        )),
    }
}

fn build_check(cx: &Cx<'_>, check: &Spanned<CheckSpec>, scope: &Scope) -> Result<Check, Error> {
    let spec = check.get_ref();
    let subjects = [
        spec.status.is_some(),
        spec.header.is_some(),
        spec.json.is_some(),
        spec.body_contains.is_some(),
        spec.latency_under.is_some(),
    ];
    if subjects.iter().filter(|s| **s).count() != 1 {
        return Err(cx.error(
            check.span(),
            "a check needs exactly one of `status`, `header`, `json`, `body_contains`, `latency_under`",
        ));
    }
    let predicate_given = spec.equals.is_some() || spec.contains.is_some() || spec.exists.is_some();
    let (kind, auto_name) = if let Some(codes) = &spec.status {
        if codes.get_ref().is_empty() || codes.get_ref().iter().any(|c| !(100..=599).contains(c)) {
            return Err(cx.error(
                codes.span(),
                "`status` takes a list of HTTP status codes (100–599), e.g. [200, 201]",
            ));
        }
        reject_predicate(cx, check, predicate_given, "status")?;
        let list: Vec<String> = codes.get_ref().iter().map(u16::to_string).collect();
        (
            CheckKind::Status(codes.get_ref().clone()),
            format!("status in [{}]", list.join(", ")),
        )
    } else if let Some(name) = &spec.header {
        let header = header_name(name.get_ref()).map_err(|m| cx.error(name.span(), m))?;
        let (predicate, text) = build_predicate(cx, spec, scope)?;
        (
            CheckKind::Header {
                name: header,
                predicate,
            },
            format!("header {} {text}", name.get_ref()),
        )
    } else if let Some(path) = &spec.json {
        let parsed = JsonPath::parse(path.get_ref()).map_err(|m| cx.error(path.span(), m))?;
        let (predicate, text) = build_predicate(cx, spec, scope)?;
        (
            CheckKind::Json {
                path: parsed,
                predicate,
            },
            format!("json {} {text}", path.get_ref()),
        )
    } else if let Some(text) = &spec.body_contains {
        reject_predicate(cx, check, predicate_given, "body_contains")?;
        (
            CheckKind::BodyContains(text.get_ref().clone()),
            format!("body contains {:?}", text.get_ref()),
        )
    } else if let Some(limit) = &spec.latency_under {
        reject_predicate(cx, check, predicate_given, "latency_under")?;
        (
            CheckKind::LatencyUnder(cx.duration(limit)?),
            format!("latency < {}", limit.get_ref()),
        )
    } else {
        return Err(cx.error(check.span(), "empty check"));
    };
    Ok(Check {
        name: spec.name.clone().unwrap_or(auto_name),
        kind,
    })
}

fn reject_predicate(
    cx: &Cx<'_>,
    check: &Spanned<CheckSpec>,
    given: bool,
    subject: &str,
) -> Result<(), Error> {
    if given {
        return Err(cx.error(
            check.span(),
            format!(
                "`equals`, `contains` and `exists` go with `header` or `json`, not `{subject}`"
            ),
        ));
    }
    Ok(())
}

fn build_predicate(
    cx: &Cx<'_>,
    spec: &CheckSpec,
    scope: &Scope,
) -> Result<(Predicate, String), Error> {
    let given = usize::from(spec.equals.is_some())
        + usize::from(spec.contains.is_some())
        + usize::from(spec.exists.is_some());
    if given > 1 {
        let span = spec
            .equals
            .as_ref()
            .map(|s| s.span())
            .or(spec.contains.as_ref().map(|s| s.span()))
            .unwrap_or(0..0);
        return Err(cx.error(span, "use one of `equals`, `contains`, `exists` per check"));
    }
    if let Some(value) = &spec.equals {
        let expected = match value.get_ref() {
            toml::Value::String(s) => Expected::Text(
                Template::compile(s, Escape::None, scope)
                    .map_err(|e| cx.error(value.span(), e.message))?,
            ),
            other => Expected::Value(toml_to_json(other)),
        };
        return Ok((
            Predicate::Equals(expected),
            format!("== {}", value.get_ref()),
        ));
    }
    if let Some(text) = &spec.contains {
        let t = Template::compile(text.get_ref(), Escape::None, scope)
            .map_err(|e| cx.error(text.span(), e.message))?;
        return Ok((
            Predicate::Contains(t),
            format!("contains {:?}", text.get_ref()),
        ));
    }
    let exists = spec.exists.as_ref().is_none_or(|e| *e.get_ref());
    Ok((
        Predicate::Exists(exists),
        if exists {
            "exists".into()
        } else {
            "absent".into()
        },
    ))
}

fn expected_value(
    cx: &Cx<'_>,
    value: &Spanned<toml::Value>,
    scope: &Scope,
) -> Result<Expected, Error> {
    Ok(match value.get_ref() {
        toml::Value::String(s) => Expected::Text(
            Template::compile(s, Escape::None, scope)
                .map_err(|e| cx.error(value.span(), e.message))?,
        ),
        other => Expected::Value(toml_to_json(other)),
    })
}

pub(super) fn step_uses_uuid(step: &Step) -> bool {
    step.path.uses_uuid()
        || step.body.as_ref().is_some_and(Template::uses_uuid)
        || step.query.iter().any(|(_, t)| t.uses_uuid())
        || step.headers.iter().any(|(_, t)| t.uses_uuid())
        || step.checks.iter().any(|c| match &c.kind {
            CheckKind::Header { predicate, .. } | CheckKind::Json { predicate, .. } => {
                match predicate {
                    Predicate::Equals(Expected::Text(t)) | Predicate::Contains(t) => t.uses_uuid(),
                    _ => false,
                }
            }
            _ => false,
        })
}

pub fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => J::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// The JSON text of a body. A string that is exactly one numeric template
/// (`"{{seq}}"`, `"{{random_int(1,9)}}"`) becomes a JSON number, so bodies can
/// carry numbers that vary per iteration.
fn json_body_text(value: &toml::Value) -> String {
    const MARK: &str = "\u{1}stagecheck-number\u{1}";
    fn mark_numbers(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                let inner = s
                    .trim()
                    .strip_prefix("{{")
                    .and_then(|r| r.strip_suffix("}}"))
                    .map(str::trim);
                if let Some(expr) = inner
                    && (matches!(expr, "seq" | "vu" | "iteration" | "now_ms")
                        || expr.starts_with("random_int("))
                    && !expr.contains("}}")
                {
                    *s = format!("{MARK}{expr}{MARK}");
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(mark_numbers),
            serde_json::Value::Object(map) => map.values_mut().for_each(mark_numbers),
            _ => {}
        }
    }
    let mut json = toml_to_json(value);
    mark_numbers(&mut json);
    let text = json.to_string();
    let mark = "\\u0001stagecheck-number\\u0001";
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find(&format!("\"{mark}")) {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1 + mark.len()..];
        match after.find(&format!("{mark}\"")) {
            Some(end) => {
                out.push_str("{{");
                out.push_str(&after[..end]);
                out.push_str("}}");
                rest = &after[end + mark.len() + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_templates_become_json_numbers() {
        let v: toml::Value =
            toml::from_str("n = \"{{seq}}\"\ns = \"id-{{seq}}\"\nr = \"{{random_int(1,2)}}\"")
                .unwrap();
        let text = json_body_text(&v);
        assert_eq!(
            text,
            r#"{"n":{{seq}},"r":{{random_int(1,2)}},"s":"id-{{seq}}"}"#
        );
    }
}
