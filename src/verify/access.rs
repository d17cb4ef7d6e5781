//! The third proof of routing: API Gateway's access log. Its lines follow a
//! format the stage's owner chose (JSON, CLF, CSV-like, anything), so each
//! line is read back through that format: literal text and `$context.NAME`
//! variables, compiled once. A line carrying `$context.integration.requestId`
//! (Lambda's request id; `$context.awsEndpointRequestId` is its older alias)
//! leads to that invocation's `REPORT`, as the execution log's `AWS
//! Integration Endpoint RequestId` does.
//!
//! This module only reads lines; finding the group (GetStage) and reading it
//! is the verifier's.

use std::collections::{HashMap, HashSet};

/// CloudWatch cuts events over 1 024 bytes and marks the cut.
const TRUNCATED: &str = "[TRUNCATED]";
const OPEN: &str = "$context.";

/// Lambda's request id, under its current name and its older alias.
const INTEGRATION_REQUEST_ID: [&str; 2] = ["integration.requestId", "awsEndpointRequestId"];
const INTEGRATION_LATENCY: [&str; 2] = ["integrationLatency", "integration.latency"];

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Variable(String),
}

/// A stage's access-log format, compiled into literals and variables.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessFormat {
    parts: Vec<Part>,
}

/// What one access-log line says of its request; `None` where the format has
/// no such variable, the line says `-`, or the value was cut off.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccessLine {
    pub request_id: Option<String>,
    /// Lambda's request id: the one its `REPORT` carries.
    pub integration_request_id: Option<String>,
    pub status: Option<u16>,
    pub integration_latency_ms: Option<f64>,
    pub response_latency_ms: Option<f64>,
}

impl AccessFormat {
    /// Splits a format as API Gateway reads it: a name is made of
    /// `[A-Za-z0-9_.]` and a trailing `.` ends a sentence, not the name; a
    /// `$context.` with no name is literal text.
    pub fn compile(format: &str) -> AccessFormat {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = format;
        while let Some(at) = rest.find(OPEN) {
            literal.push_str(&rest[..at]);
            let after = &rest[at + OPEN.len()..];
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(after.len());
            let name = after[..len].trim_end_matches('.');
            if name.is_empty() {
                literal.push_str(OPEN);
                rest = after;
                continue;
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Variable(name.to_string()));
            rest = &after[name.len()..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        AccessFormat { parts }
    }

    fn has(&self, names: &[&str]) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Variable(n) if names.contains(&n.as_str())))
    }

    /// Whether lines carry Lambda's request id, without which they cannot
    /// say which function ran.
    pub fn has_integration_request_id(&self) -> bool {
        self.has(&INTEGRATION_REQUEST_ID)
    }

    /// Whether lines carry API Gateway's request id (`x-amzn-RequestId`),
    /// without which they cannot be tied to the client's requests.
    pub fn has_request_id(&self) -> bool {
        self.has(&["requestId"])
    }

    /// The variables of one line, left to right, each taking the shortest
    /// text up to the next literal (the rest of the line for a last
    /// variable). A cut line yields only the values wholly before the cut;
    /// so does a line that stops following the format.
    pub fn values<'l>(&self, line: &'l str) -> Vec<(&str, &'l str)> {
        // AWS marks a cut with ` [TRUNCATED]`: the space is the marker's, not
        // the line's (taken as the line's, it could end a value early).
        // Without the space the marker is taken alone; a line's own trailing
        // space lost that way only costs a value, never makes a wrong one.
        let (mut rest, cut) = match line
            .strip_suffix(TRUNCATED)
            .map(|kept| kept.strip_suffix(' ').unwrap_or(kept))
        {
            Some(kept) => (kept, true),
            None => (line, false),
        };
        let mut values = Vec::new();
        let mut parts = self.parts.iter().peekable();
        while let Some(part) = parts.next() {
            match part {
                Part::Literal(text) => match rest.strip_prefix(text.as_str()) {
                    Some(after) => rest = after,
                    None => break,
                },
                Part::Variable(name) => match parts.peek() {
                    Some(Part::Literal(next)) => match rest.find(next.as_str()) {
                        Some(end) => {
                            values.push((name.as_str(), &rest[..end]));
                            rest = &rest[end..];
                        }
                        // Cut before its end, or not this format's line.
                        None => break,
                    },
                    // Two variables side by side: where one ends is unknowable.
                    Some(Part::Variable(_)) => break,
                    None => {
                        if !cut {
                            values.push((name.as_str(), rest));
                        }
                        break;
                    }
                },
            }
        }
        values
    }

    /// The facts verification reads from one line.
    pub fn parse(&self, line: &str) -> AccessLine {
        let mut out = AccessLine::default();
        for (name, value) in self.values(line) {
            // `-` is API Gateway's "no value".
            if value == "-" || value.is_empty() {
                continue;
            }
            let ms = || value.trim().parse::<f64>().ok().filter(|v| v.is_finite());
            match name {
                "requestId" => out.request_id = Some(value.to_string()),
                n if INTEGRATION_REQUEST_ID.contains(&n) => {
                    out.integration_request_id = Some(value.to_string())
                }
                "status" => out.status = value.trim().parse().ok(),
                n if INTEGRATION_LATENCY.contains(&n) => out.integration_latency_ms = ms(),
                "responseLatency" => out.response_latency_ms = ms(),
                _ => {}
            }
        }
        out
    }
}

/// The `log-group` an access-log destination ARN
/// (`arn:aws:logs:{region}:{account}:log-group:{name}[:*]`) names; `None`
/// for another kind of destination (Firehose).
pub fn log_group_of_destination(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let (_, after) = rest.split_once(":log-group:")?;
    let mut head = rest.splitn(3, ':');
    let (_partition, service) = (head.next()?, head.next()?);
    if service != "logs" {
        return None;
    }
    let name = after.strip_suffix(":*").unwrap_or(after);
    (!name.is_empty()).then_some(name)
}

/// One request's access-log line, as far as routing goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub line: AccessLine,
    /// The line itself, as evidence.
    pub text: String,
}

/// The access-log lines of the requests asked about, from passes over the
/// group's lines in any order; a line read again replaces itself.
#[derive(Debug)]
pub struct AccessLines {
    format: AccessFormat,
    entries: HashMap<String, Entry>,
}

impl AccessLines {
    pub fn new(format: AccessFormat) -> AccessLines {
        AccessLines {
            format,
            entries: HashMap::new(),
        }
    }

    pub fn format(&self) -> &AccessFormat {
        &self.format
    }

    pub fn visit(&mut self, message: &str, wanted: &HashSet<String>) {
        // Most of a busy stage's lines are other requests': look at the id
        // before building anything.
        let asked = self
            .format
            .values(message)
            .iter()
            .any(|(name, value)| *name == "requestId" && wanted.contains(*value));
        if !asked {
            return;
        }
        let line = self.format.parse(message);
        let Some(id) = line.request_id.clone() else {
            return;
        };
        // A cut copy never replaces a whole one.
        if let Some(old) = self.entries.get(&id)
            && old.line.integration_request_id.is_some()
            && line.integration_request_id.is_none()
        {
            return;
        }
        self.entries.insert(
            id,
            Entry {
                line,
                text: message.to_string(),
            },
        );
    }

    pub fn get(&self, request_id: &str) -> Option<&Entry> {
        self.entries.get(request_id)
    }

    /// Requests with a line.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const JSON: &str = r#"{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","status":"$context.status","lambda":"$context.integration.requestId","integrationLatency":"$context.integrationLatency","responseLatency":"$context.responseLatency"}"#;
    const CLF: &str = r#"$context.identity.sourceIp - - [$context.requestTime] "$context.httpMethod $context.resourcePath $context.protocol" $context.status $context.responseLength $context.requestId $context.awsEndpointRequestId $context.integration.latency"#;
    const CSV: &str = "$context.requestId,$context.status,$context.responseLatency,$context.integration.requestId";

    /// What the sandbox writes (`sandbox/src/apigw_logs.rs::access_line`):
    /// every variable by its value, `-` where there is none.
    fn render(format: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
        let compiled = AccessFormat::compile(format);
        compiled
            .parts
            .iter()
            .map(|p| match p {
                Part::Literal(t) => t.clone(),
                Part::Variable(n) => lookup(n)
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| "-".into()),
            })
            .collect()
    }

    fn lookup(name: &str) -> Option<String> {
        Some(
            match name {
                "requestId" => "5f0c3f3e-1b7e-4c3e-9a57-2b0f2a4f0e11",
                "integration.requestId" | "awsEndpointRequestId" => {
                    "8f5e2c1a-0000-4c3e-9a57-aaaaaaaaaaaa"
                }
                "status" => "201",
                "integrationLatency" | "integration.latency" => "41",
                "responseLatency" => "44",
                "identity.sourceIp" => "127.0.0.1",
                "requestTime" => "14/Nov/2023:22:13:20 +0000",
                "httpMethod" => "POST",
                "resourcePath" => "/user",
                "protocol" => "HTTP/1.1",
                "responseLength" => "77",
                _ => return None,
            }
            .to_string(),
        )
    }

    #[test]
    fn reads_json_clf_and_csv_formats() {
        for format in [JSON, CLF, CSV] {
            let compiled = AccessFormat::compile(format);
            assert!(compiled.has_integration_request_id(), "{format}");
            let line = compiled.parse(&render(format, lookup));
            assert_eq!(
                line.request_id.as_deref(),
                Some("5f0c3f3e-1b7e-4c3e-9a57-2b0f2a4f0e11")
            );
            assert_eq!(
                line.integration_request_id.as_deref(),
                Some("8f5e2c1a-0000-4c3e-9a57-aaaaaaaaaaaa"),
                "{format}"
            );
            assert_eq!(line.status, Some(201));
        }
        let json = AccessFormat::compile(JSON).parse(&render(JSON, lookup));
        assert_eq!(json.integration_latency_ms, Some(41.0));
        assert_eq!(json.response_latency_ms, Some(44.0));
        let clf = AccessFormat::compile(CLF).parse(&render(CLF, lookup));
        assert_eq!(clf.integration_latency_ms, Some(41.0));
    }

    #[test]
    fn a_dash_is_no_value_and_a_format_without_the_lambda_id_is_told() {
        let none = |name: &str| match name {
            "requestId" => Some("r-1".to_string()),
            _ => None,
        };
        let line = AccessFormat::compile(JSON).parse(&render(JSON, none));
        assert_eq!(line.request_id.as_deref(), Some("r-1"));
        assert_eq!(line.integration_request_id, None);
        assert_eq!(line.status, None);
        let plain = AccessFormat::compile(r#"{"requestId":"$context.requestId"}"#);
        assert!(!plain.has_integration_request_id());
        assert!(plain.has_request_id());
        assert!(!AccessFormat::compile("$context.extendedRequestId").has_request_id());
    }

    #[test]
    fn names_end_as_api_gateway_ends_them() {
        let f = AccessFormat::compile("$context.requestId $context.status. $context. end");
        assert_eq!(
            f.parts,
            vec![
                Part::Variable("requestId".into()),
                Part::Literal(" ".into()),
                Part::Variable("status".into()),
                Part::Literal(". $context. end".into()),
            ]
        );
        assert_eq!(
            f.values("r1 200. $context. end"),
            vec![("requestId", "r1"), ("status", "200")]
        );
        // Not a line of this format: nothing past where it stops matching.
        assert_eq!(f.values("r1 200! end"), vec![("requestId", "r1")]);
    }

    #[test]
    fn a_cut_line_yields_only_what_ended_before_the_cut() {
        let f = AccessFormat::compile(CSV);
        let line = "5f0c3f3e,201,44,8f5e2c1a-0000-4c3e-9a57-aaaaaaaaaaaa";
        let whole = f.parse(line);
        assert_eq!(
            whole.integration_request_id.as_deref(),
            Some("8f5e2c1a-0000-4c3e-9a57-aaaaaaaaaaaa")
        );
        // The last variable runs to the end: cut, it is never taken.
        let cut = f.parse("5f0c3f3e,201,44,8f5e2c1a-0000 [TRUNCATED]");
        assert_eq!(cut.integration_request_id, None);
        assert_eq!(cut.request_id.as_deref(), Some("5f0c3f3e"));
        assert_eq!(cut.response_latency_ms, Some(44.0));
    }

    #[test]
    fn destinations_name_their_log_group() {
        let arn = "arn:aws:logs:us-east-1:123456789012:log-group:access/users";
        assert_eq!(log_group_of_destination(arn), Some("access/users"));
        assert_eq!(
            log_group_of_destination(&format!("{arn}:*")),
            Some("access/users")
        );
        assert_eq!(
            log_group_of_destination(
                "arn:aws:firehose:us-east-1:1:deliverystream/amazon-apigateway-x"
            ),
            None
        );
        assert_eq!(log_group_of_destination("my-group"), None);
    }

    #[test]
    fn keeps_only_the_requests_asked_about_and_never_a_cut_copy_over_a_whole_one() {
        let wanted: HashSet<String> = ["r-1".to_string()].into();
        let mut lines = AccessLines::new(AccessFormat::compile(CSV));
        lines.visit("r-1,200,4,l-1", &wanted);
        lines.visit("r-2,200,4,l-2", &wanted);
        lines.visit("r-1,200,4,l- [TRUNCATED]", &wanted);
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines
                .get("r-1")
                .unwrap()
                .line
                .integration_request_id
                .as_deref(),
            Some("l-1")
        );
    }

    /// Names API Gateway has, a few of them the ones read.
    const NAMES: [&str; 10] = [
        "requestId",
        "integration.requestId",
        "awsEndpointRequestId",
        "status",
        "integrationLatency",
        "integration.latency",
        "responseLatency",
        "identity.sourceIp",
        "httpMethod",
        "stage",
    ];

    fn format_and_values() -> impl Strategy<Value = (String, Vec<(String, String)>)> {
        // Literals: JSON, CLF and CSV punctuation and words, never empty
        // between two variables (where one would end is then unknowable),
        // never starting with a name character (it would join the name).
        let literal = prop::sample::select(vec![
            "\",\"", "\":\"", " ", ",", " - - [", "] \"", "\" ", "|", ";", "\t", "\"}", " x=",
        ]);
        let value = "[A-Za-z0-9-]{1,40}";
        (
            prop::sample::select(vec!["", "{\"a\":\"", "[", "x "]),
            prop::collection::vec((prop::sample::select(NAMES.to_vec()), value, literal), 1..8),
            any::<bool>(),
        )
            .prop_map(|(head, vars, last_literal)| {
                let mut format = head.to_string();
                let mut values = Vec::new();
                let n = vars.len();
                for (i, (name, value, lit)) in vars.into_iter().enumerate() {
                    format.push_str(OPEN);
                    format.push_str(name);
                    if i + 1 < n || last_literal {
                        format.push_str(lit);
                    }
                    values.push((name.to_string(), value));
                }
                (format, values)
            })
    }

    proptest! {
        /// Rendered as the sandbox renders it, every value is read back
        /// exactly, whatever the format around it.
        #[test]
        fn lines_read_back_through_their_format((format, values) in format_and_values()) {
            let value_of = |name: &str, i: usize| values.iter().filter(|(n, _)| n == name).nth(i).map(|(_, v)| v.clone());
            let compiled = AccessFormat::compile(&format);
            // Render each occurrence with its own value.
            let mut line = String::new();
            let mut seen: HashMap<String, usize> = HashMap::new();
            for part in &compiled.parts {
                match part {
                    Part::Literal(t) => line.push_str(t),
                    Part::Variable(n) => {
                        let i = seen.entry(n.clone()).or_default();
                        line.push_str(&value_of(n, *i).unwrap_or_else(|| "-".into()));
                        *i += 1;
                    }
                }
            }
            // A value holding the literal after it is outside the premise.
            for (k, part) in compiled.parts.iter().enumerate() {
                if let (Part::Variable(n), Some(Part::Literal(next))) = (part, compiled.parts.get(k + 1)) {
                    prop_assume!(values.iter().filter(|(m, _)| m == n).all(|(_, v)| !v.contains(next.as_str())));
                }
            }
            let read: Vec<(String, String)> = compiled
                .values(&line)
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            prop_assert_eq!(read, values);
        }

        /// Cut at any byte (and marked, as CloudWatch marks it), a line
        /// never yields a wrong id: only the right one or none.
        #[test]
        fn a_cut_at_any_byte_never_yields_a_wrong_id(
            (format, values) in format_and_values(),
            at in any::<prop::sample::Index>(),
            space in any::<bool>(),
        ) {
            // Aliases are one variable to API Gateway: one value for both.
            let canonical = |name: &str| match name {
                "awsEndpointRequestId" => "integration.requestId",
                "integration.latency" => "integrationLatency",
                n => n,
            }
            .to_string();
            let lookup = |name: &str| {
                values
                    .iter()
                    .find(|(n, _)| canonical(n) == canonical(name))
                    .map(|(_, v)| v.clone())
            };
            let compiled = AccessFormat::compile(&format);
            for (k, part) in compiled.parts.iter().enumerate() {
                if let (Part::Variable(n), Some(Part::Literal(next))) = (part, compiled.parts.get(k + 1)) {
                    prop_assume!(lookup(n).is_none_or(|v| !v.contains(next.as_str())));
                }
            }
            let line = render(&format, lookup);
            let whole = compiled.parse(&line);
            let cut_at = at.index(line.len() + 1);
            let cut = format!("{}{}{TRUNCATED}", &line[..cut_at], if space { " " } else { "" });
            let parsed = compiled.parse(&cut);
            for (got, want) in [
                (&parsed.request_id, &whole.request_id),
                (&parsed.integration_request_id, &whole.integration_request_id),
            ] {
                prop_assert!(got.is_none() || got == want, "{:?} from {:?}, whole {:?}", got, cut, want);
            }
        }
    }
}
