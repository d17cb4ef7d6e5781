//! API Gateway's execution and access logs, rendered as AWS writes them (a
//! second, independent proof of routing: the function a stage invoked is named
//! in its own log, not only in the function's).
//!
//! Execution logs go to `API-Gateway-Execution-Logs_{api}/{stage}` (canary
//! requests also to `…/{stage}/Canary`), every event prefixed
//! `({request id}) ` and cut at 1 024 bytes with ` [TRUNCATED]`, as in the
//! execution logs AWS writes (its `Endpoint request headers` line, with the
//! security token, always is). At INFO every line below is written; at ERROR
//! only the failure lines; `dataTrace` adds the bodies. Access logs substitute
//! the stage's `format`; an unknown or empty `$context` variable becomes `-`.

use std::time::SystemTime;

use super::logs::epoch_ms;

/// A stage's `*/*/logging/loglevel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verbosity {
    #[default]
    Off,
    Error,
    Info,
}

/// What AWS keeps of one execution-log event, before the marker.
pub const MAX_EVENT_BYTES: usize = 1024;
pub const TRUNCATED: &str = " [TRUNCATED]";

/// The execution-log group of a stage, or of its canary.
pub fn execution_group(api_id: &str, stage: &str, canary: bool) -> String {
    if canary {
        format!("API-Gateway-Execution-Logs_{api_id}/{stage}/Canary")
    } else {
        format!("API-Gateway-Execution-Logs_{api_id}/{stage}")
    }
}

/// The group an access-log `destinationArn`
/// (`arn:aws:logs:{region}:{account}:log-group:{name}[:*]`) names, with the
/// `/Canary` suffix for canary requests.
pub fn access_group(destination_arn: &str, canary: bool) -> Option<String> {
    let name = destination_arn.split_once(":log-group:")?.1;
    let name = name.strip_suffix(":*").unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    Some(if canary {
        format!("{name}/Canary")
    } else {
        name.to_string()
    })
}

/// Cuts a message at [`MAX_EVENT_BYTES`] (on a character boundary) and marks it.
pub fn truncate(message: String) -> String {
    if message.len() <= MAX_EVENT_BYTES {
        return message;
    }
    let mut cut = MAX_EVENT_BYTES;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = String::with_capacity(cut + TRUNCATED.len());
    out.push_str(&message[..cut]);
    out.push_str(TRUNCATED);
    out
}

/// One request's execution log, filled in as the request goes; a line is only
/// formatted when the stage's level keeps it.
pub struct ExecutionLog {
    prefix: String,
    level: Verbosity,
    data_trace: bool,
    events: Vec<(i64, String)>,
}

impl ExecutionLog {
    pub fn new(request_id: &str, level: Verbosity, data_trace: bool) -> ExecutionLog {
        ExecutionLog {
            prefix: format!("({request_id}) "),
            level,
            data_trace,
            events: Vec::new(),
        }
    }

    fn push(&mut self, at: SystemTime, message: String) {
        let mut event = self.prefix.clone();
        event.push_str(&truncate(message));
        self.events.push((epoch_ms(at), event));
    }

    /// A trace line: written at INFO.
    pub fn info(&mut self, at: SystemTime, message: impl FnOnce() -> String) {
        if self.level == Verbosity::Info {
            self.push(at, message());
        }
    }

    /// A failure line: written at ERROR and INFO.
    pub fn error(&mut self, at: SystemTime, message: impl FnOnce() -> String) {
        if self.level != Verbosity::Off {
            self.push(at, message());
        }
    }

    /// A body or parameter dump: written at INFO with `dataTrace` on.
    pub fn data(&mut self, at: SystemTime, message: impl FnOnce() -> String) {
        if self.level == Verbosity::Info && self.data_trace {
            self.push(at, message());
        }
    }

    pub fn into_events(self) -> Vec<(i64, String)> {
        self.events
    }
}

// The lines, in the order API Gateway writes them for a Lambda proxy
// integration (from execution logs and test-invoke logs AWS returned).

pub fn extended_request_id(extended_id: &str) -> String {
    format!("Extended Request Id: {extended_id}")
}

pub fn starting(request_id: &str) -> String {
    format!("Starting execution for request: {request_id}")
}

pub fn http_method(method: &str, resource_path: &str) -> String {
    format!("HTTP Method: {method}, Resource Path: {resource_path}")
}

/// `{k=v, …}`, API Gateway's rendering of a map.
pub fn map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let inner: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", inner.join(", "))
}

pub fn method_request_path(params: &str) -> String {
    format!("Method request path: {params}")
}

pub fn method_request_query_string(params: &str) -> String {
    format!("Method request query string: {params}")
}

pub fn method_request_headers(headers: &str) -> String {
    format!("Method request headers: {headers}")
}

pub fn method_request_body(body: &str) -> String {
    format!("Method request body before transformations: {body}")
}

pub fn lambda_uri(region: &str, function_arn: &str) -> String {
    format!("https://lambda.{region}.amazonaws.com/2015-03-31/functions/{function_arn}/invocations")
}

pub fn endpoint_request_uri(region: &str, function_arn: &str) -> String {
    format!("Endpoint request URI: {}", lambda_uri(region, function_arn))
}

/// What API Gateway sends Lambda: its own SigV4 signature (masked), the source
/// ARN the function's resource policy is checked against, and the session
/// token, which makes AWS's line longer than an event may be.
pub fn endpoint_request_headers(
    request_id: &str,
    api_id: &str,
    source_arn: &str,
    at: SystemTime,
) -> String {
    let mut signature = [0u8; 3];
    fastrand::fill(&mut signature);
    let authorization = format!(
        "{}{}",
        "*".repeat(400),
        signature
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let mut token = vec![0u8; 600];
    fastrand::fill(&mut token);
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(&token);
    let date = amz_date(at);
    let agent = format!("AmazonAPIGateway_{api_id}");
    format!(
        "Endpoint request headers: {}",
        map([
            ("x-amzn-lambda-integration-tag", request_id),
            ("Authorization", authorization.as_str()),
            ("X-Amz-Date", date.as_str()),
            ("x-amzn-apigateway-api-id", api_id),
            ("X-Amz-Source-Arn", source_arn),
            ("Accept", "application/json"),
            ("User-Agent", agent.as_str()),
            ("X-Amz-Security-Token", token.as_str()),
        ])
    )
}

pub fn endpoint_request_body(event: &str) -> String {
    format!("Endpoint request body after transformations: {event}")
}

pub fn sending_request(region: &str, function_arn: &str) -> String {
    format!("Sending request to {}", lambda_uri(region, function_arn))
}

pub fn received_response(status: u16, integration_latency_ms: u64) -> String {
    format!("Received response. Status: {status}, Integration latency: {integration_latency_ms} ms")
}

pub fn endpoint_response_headers(
    at: SystemTime,
    content_length: usize,
    lambda_request_id: &str,
    function_error: bool,
    trace_id: &str,
) -> String {
    let date = http_date(at);
    let length = content_length.to_string();
    let trace = format!("root={trace_id};sampled=0");
    let mut pairs = vec![
        ("Date", date.as_str()),
        ("Content-Type", "application/json"),
        ("Content-Length", length.as_str()),
        ("Connection", "keep-alive"),
        ("x-amzn-RequestId", lambda_request_id),
    ];
    if function_error {
        pairs.push(("X-Amz-Function-Error", "Unhandled"));
    }
    pairs.extend([
        ("x-amzn-Remapped-Content-Length", "0"),
        ("X-Amz-Executed-Version", "$LATEST"),
        ("X-Amzn-Trace-Id", trace.as_str()),
    ]);
    format!("Endpoint response headers: {}", map(pairs))
}

pub fn endpoint_response_body(body: &str) -> String {
    format!("Endpoint response body before transformations: {body}")
}

pub fn method_response_body(body: &str) -> String {
    format!("Method response body after transformations: {body}")
}

pub fn method_response_headers(headers: &str) -> String {
    format!("Method response headers: {headers}")
}

pub fn successfully_completed() -> String {
    "Successfully completed execution".to_string()
}

pub fn method_completed(status: u16) -> String {
    format!("Method completed with status: {status}")
}

pub fn integration_request_id(lambda_request_id: &str) -> String {
    format!("AWS Integration Endpoint RequestId : {lambda_request_id}")
}

/// The prefix of every configuration error (`Invalid permissions on Lambda
/// function`, an unset stage variable, no integration).
pub fn configuration_error(message: &str) -> String {
    format!("Execution failed due to configuration error: {message}")
}

pub const INVALID_PERMISSIONS: &str = "Invalid permissions on Lambda function";
pub const NO_INTEGRATION: &str = "No integration defined for method";

/// What API Gateway writes when a URI's `${stageVariables.x}` has no value: the
/// variable resolves to `null`, which its validation rejects.
pub fn invalid_stage_variable() -> String {
    "Invalid stage variable value: null.  Please use values with alphanumeric characters and \
     the symbols ' ', -', '.', '_', ':', '/', '?', '&', '=', and ','."
        .to_string()
}

pub fn lambda_invocation_failed(status: u16, lambda_request_id: &str) -> String {
    format!(
        "Lambda invocation failed with status: {status}. Lambda request id: {lambda_request_id}"
    )
}

pub fn function_error(message: &str, lambda_request_id: &str) -> String {
    format!(
        "Lambda execution failed with status 200 due to customer function error: {message}. Lambda request id: {lambda_request_id}"
    )
}

/// `X-Amz-Date`'s basic ISO 8601: `20261202T003510Z`.
fn amz_date(at: SystemTime) -> String {
    let t = time::OffsetDateTime::from(at);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Wed, 02 Dec 2026 00:35:10 GMT`.
fn http_date(at: SystemTime) -> String {
    let t = time::OffsetDateTime::from(at);
    let weekday = match t.weekday() {
        time::Weekday::Monday => "Mon",
        time::Weekday::Tuesday => "Tue",
        time::Weekday::Wednesday => "Wed",
        time::Weekday::Thursday => "Thu",
        time::Weekday::Friday => "Fri",
        time::Weekday::Saturday => "Sat",
        time::Weekday::Sunday => "Sun",
    };
    format!(
        "{weekday}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `$context.requestTime`, in CLF: `02/Dec/2026:00:35:10 +0000`.
pub fn clf_time(at: SystemTime) -> String {
    let t = time::OffsetDateTime::from(at);
    format!(
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The stage's access-log `format` with every `$context.name` replaced by
/// `lookup(name)`; a variable without a value is `-`, as in AWS's access logs.
pub fn access_line(format: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    const OPEN: &str = "$context.";
    let mut out = String::with_capacity(format.len() + 64);
    let mut rest = format;
    while let Some(at) = rest.find(OPEN) {
        out.push_str(&rest[..at]);
        let after = &rest[at + OPEN.len()..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(after.len());
        // A dot ends a sentence as often as it joins names.
        let name = after[..len].trim_end_matches('.');
        if name.is_empty() {
            out.push_str(OPEN);
            rest = after;
            continue;
        }
        match lookup(name) {
            Some(v) if !v.is_empty() => out.push_str(&v),
            _ => out.push('-'),
        }
        rest = &after[name.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn groups_are_named_as_aws_names_them() {
        assert_eq!(
            execution_group("abc123", "prod", false),
            "API-Gateway-Execution-Logs_abc123/prod"
        );
        assert_eq!(
            execution_group("abc123", "prod", true),
            "API-Gateway-Execution-Logs_abc123/prod/Canary"
        );
        let arn = "arn:aws:logs:us-east-1:123456789012:log-group:access/users";
        assert_eq!(access_group(arn, false).as_deref(), Some("access/users"));
        assert_eq!(
            access_group(&format!("{arn}:*"), true).as_deref(),
            Some("access/users/Canary")
        );
        assert_eq!(access_group("arn:aws:firehose:x", false), None);
    }

    #[test]
    fn long_events_are_cut_and_marked() {
        let short = "x".repeat(MAX_EVENT_BYTES);
        assert_eq!(truncate(short.clone()), short);
        let long = "é".repeat(MAX_EVENT_BYTES);
        let cut = truncate(long);
        assert!(cut.ends_with(" [TRUNCATED]"));
        assert!(cut.len() - TRUNCATED.len() <= MAX_EVENT_BYTES);
        assert!(cut.len() - TRUNCATED.len() >= MAX_EVENT_BYTES - 1);
    }

    #[test]
    fn levels_keep_their_lines() {
        let at = SystemTime::UNIX_EPOCH;
        let run = |level, data_trace| {
            let mut log = ExecutionLog::new("r1", level, data_trace);
            log.info(at, || starting("r1"));
            log.data(at, || method_request_body("{}"));
            log.error(at, || configuration_error(INVALID_PERMISSIONS));
            log.into_events()
        };
        assert!(run(Verbosity::Off, true).is_empty());
        let error = run(Verbosity::Error, true);
        assert_eq!(error.len(), 1);
        assert_eq!(
            error[0].1,
            "(r1) Execution failed due to configuration error: Invalid permissions on Lambda function"
        );
        assert_eq!(run(Verbosity::Info, false).len(), 2);
        let all = run(Verbosity::Info, true);
        assert_eq!(all[0].1, "(r1) Starting execution for request: r1");
        assert_eq!(
            all[1].1,
            "(r1) Method request body before transformations: {}"
        );
    }

    #[test]
    fn the_request_headers_line_is_always_truncated_after_the_source_arn() {
        let source = "arn:aws:execute-api:us-east-1:123456789012:abc/test/GET/user/{id}";
        let mut log = ExecutionLog::new("r1", Verbosity::Info, false);
        log.info(SystemTime::UNIX_EPOCH, || {
            endpoint_request_headers("r1", "abc", source, SystemTime::UNIX_EPOCH)
        });
        let (_, line) = &log.into_events()[0];
        assert!(line.starts_with(
            "(r1) Endpoint request headers: {x-amzn-lambda-integration-tag=r1, Authorization=****"
        ));
        assert!(line.contains(&format!(", X-Amz-Source-Arn={source}, ")));
        assert!(line.contains("X-Amz-Date=19700101T000000Z"));
        assert!(line.ends_with(" [TRUNCATED]"));
        assert_eq!(
            line.len(),
            "(r1) ".len() + MAX_EVENT_BYTES + TRUNCATED.len()
        );
    }

    #[test]
    fn response_headers_carry_lambdas_request_id() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 * 3);
        let line = endpoint_response_headers(at, 46, "lambda-1", false, "1-abc-def");
        assert_eq!(
            line,
            "Endpoint response headers: {Date=Sun, 04 Jan 1970 00:00:00 GMT, Content-Type=application/json, Content-Length=46, Connection=keep-alive, x-amzn-RequestId=lambda-1, x-amzn-Remapped-Content-Length=0, X-Amz-Executed-Version=$LATEST, X-Amzn-Trace-Id=root=1-abc-def;sampled=0}"
        );
        assert!(
            endpoint_response_headers(at, 1, "l", true, "t")
                .contains("X-Amz-Function-Error=Unhandled")
        );
    }

    #[test]
    fn access_lines_substitute_context_variables() {
        let lookup = |name: &str| match name {
            "requestId" => Some("r1".to_string()),
            "status" => Some("200".to_string()),
            "integration.requestId" => Some("l1".to_string()),
            "identity.caller" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            access_line(
                r#"{"requestId":"$context.requestId","status":"$context.status","lambda":"$context.integration.requestId","caller":"$context.identity.caller","x":"$context.nope"}"#,
                lookup
            ),
            r#"{"requestId":"r1","status":"200","lambda":"l1","caller":"-","x":"-"}"#
        );
        assert_eq!(
            access_line("$context.requestId $context.status. $context. end", lookup),
            "r1 200. $context. end"
        );
    }

    #[test]
    fn times_are_written_as_aws_writes_them() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(clf_time(at), "14/Nov/2023:22:13:20 +0000");
        assert_eq!(amz_date(at), "20231114T221320Z");
        assert_eq!(http_date(at), "Tue, 14 Nov 2023 22:13:20 GMT");
    }
}
