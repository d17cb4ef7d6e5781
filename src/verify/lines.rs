//! Reading the log lines AWS writes, as they really come: Lambda's `REPORT`
//! (text, with `Init Duration`, `Status: timeout|error` and a trailing
//! `XRAY TraceId` line; or `platform.report` in Lambda's JSON format), and
//! API Gateway's execution-log lines (`(request-id) …`).
//!
//! Execution-log events are cut at 1 024 bytes and marked ` [TRUNCATED]`: a
//! value is taken only when its end (its delimiter) is inside what was kept,
//! so a cut line yields what it holds and never a shortened ARN or id that
//! would match something else.

use serde_json::Value;

const TRUNCATED: &str = " [TRUNCATED]";

/// How an invocation ended, as its report says.
#[derive(Debug, Clone, PartialEq)]
pub enum InvocationStatus {
    Success,
    Timeout,
    /// `Status: error` with its `Error Type`, when given.
    Error(Option<String>),
}

/// One invocation's `REPORT`, in either of Lambda's log formats.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub request_id: String,
    pub duration_ms: f64,
    pub billed_ms: Option<f64>,
    /// Present on a cold start.
    pub init_ms: Option<f64>,
    pub status: InvocationStatus,
}

/// A Lambda `REPORT` line (text) or `platform.report` record (JSON).
pub fn parse_report(message: &str) -> Option<Report> {
    let trimmed = message.trim_start();
    if trimmed.starts_with('{') {
        return json_report(trimmed);
    }
    let first = trimmed.lines().next()?;
    let rest = first.strip_prefix("REPORT RequestId: ")?;
    let mut fields = rest.split('\t');
    let request_id = fields.next()?.trim().to_string();
    if request_id.is_empty() {
        return None;
    }
    let mut report = Report {
        request_id,
        duration_ms: f64::NAN,
        billed_ms: None,
        init_ms: None,
        status: InvocationStatus::Success,
    };
    let mut error_type = None;
    let mut errored = false;
    for field in fields {
        let Some((name, value)) = field.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let ms = || {
            value
                .strip_suffix("ms")
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        match name.trim() {
            "Duration" => report.duration_ms = ms()?,
            "Billed Duration" => report.billed_ms = ms(),
            "Init Duration" => report.init_ms = ms(),
            "Status" => match value {
                "timeout" => report.status = InvocationStatus::Timeout,
                "error" => errored = true,
                _ => {}
            },
            "Error Type" => error_type = Some(value.to_string()),
            _ => {}
        }
    }
    if errored {
        report.status = InvocationStatus::Error(error_type);
    }
    (!report.duration_ms.is_nan()).then_some(report)
}

fn json_report(text: &str) -> Option<Report> {
    let v: Value = serde_json::from_str(text).ok()?;
    if v.get("type").and_then(Value::as_str) != Some("platform.report") {
        return None;
    }
    let record = v.get("record")?;
    let metrics = record.get("metrics")?;
    let status = match record.get("status").and_then(Value::as_str) {
        Some("timeout") => InvocationStatus::Timeout,
        Some("error" | "failure") => InvocationStatus::Error(
            record
                .get("errorType")
                .and_then(Value::as_str)
                .map(str::to_string),
        ),
        _ => InvocationStatus::Success,
    };
    Some(Report {
        request_id: record.get("requestId")?.as_str()?.to_string(),
        duration_ms: metrics.get("durationMs")?.as_f64()?,
        billed_ms: metrics.get("billedDurationMs").and_then(Value::as_f64),
        init_ms: metrics.get("initDurationMs").and_then(Value::as_f64),
        status,
    })
}

/// What one execution-log line says about its request.
#[derive(Debug, Clone, PartialEq)]
pub enum Execution {
    Started,
    Method {
        method: String,
        resource_path: String,
    },
    /// The function the stage invoked (from `Endpoint request URI`).
    Invoked {
        function_arn: String,
    },
    /// `X-Amz-Source-Arn` of the endpoint request headers.
    SourceArn(String),
    Received {
        status: u16,
        integration_latency_ms: f64,
    },
    Completed {
        status: u16,
    },
    /// `AWS Integration Endpoint RequestId`: the Lambda request id.
    IntegrationRequestId(String),
    /// `Execution failed due to configuration error: …`
    ConfigurationError(String),
    /// A line of the request this module does not read.
    Other,
}

/// One execution-log event: the API Gateway request id it belongs to and
/// what it says. `None` when the line is not an execution-log line.
pub fn parse_execution(message: &str) -> Option<(String, Execution)> {
    let rest = message.strip_prefix('(')?;
    let (request_id, text) = rest.split_once(") ")?;
    if request_id.is_empty() || request_id.contains(' ') {
        return None;
    }
    // What was kept of a cut event; values must end inside it.
    let (text, cut) = match text.strip_suffix(TRUNCATED) {
        Some(kept) => (kept, true),
        None => (text, false),
    };
    let whole = |value: &str| (!cut).then(|| value.to_string());
    let event = if text.starts_with("Starting execution for request") {
        Execution::Started
    } else if let Some(v) = text.strip_prefix("HTTP Method: ") {
        match v.split_once(", Resource Path: ") {
            Some((method, path)) => match whole(path) {
                Some(resource_path) => Execution::Method {
                    method: method.to_string(),
                    resource_path,
                },
                None => Execution::Other,
            },
            None => Execution::Other,
        }
    } else if let Some(uri) = text.strip_prefix("Endpoint request URI: ") {
        // …/2015-03-31/functions/{function ARN}/invocations: the suffix
        // proves the ARN was kept whole.
        match uri
            .split_once("/functions/")
            .and_then(|(_, f)| f.strip_suffix("/invocations"))
        {
            Some(arn) if arn.starts_with("arn:") => Execution::Invoked {
                function_arn: arn.to_string(),
            },
            _ => Execution::Other,
        }
    } else if let Some(headers) = text.strip_prefix("Endpoint request headers: ") {
        match header_value(headers, "X-Amz-Source-Arn", cut) {
            Some(arn) => Execution::SourceArn(arn.to_string()),
            None => Execution::Other,
        }
    } else if let Some(v) = text.strip_prefix("Received response. Status: ") {
        let parsed = v.split_once(", Integration latency: ").and_then(|(s, l)| {
            Some((
                s.trim().parse::<u16>().ok()?,
                l.strip_suffix(" ms")?.trim().parse::<f64>().ok()?,
            ))
        });
        match parsed {
            Some((status, integration_latency_ms)) => Execution::Received {
                status,
                integration_latency_ms,
            },
            None => Execution::Other,
        }
    } else if let Some(v) = text.strip_prefix("Method completed with status: ") {
        match v.trim().parse::<u16>() {
            Ok(status) if !cut => Execution::Completed { status },
            _ => Execution::Other,
        }
    } else if let Some(v) = text.strip_prefix("AWS Integration Endpoint RequestId : ") {
        match whole(v.trim()) {
            Some(id) if !id.is_empty() => Execution::IntegrationRequestId(id),
            _ => Execution::Other,
        }
    } else if let Some(v) = text.strip_prefix("Execution failed due to configuration error: ") {
        Execution::ConfigurationError(v.to_string())
    } else {
        Execution::Other
    };
    Some((request_id.to_string(), event))
}

/// `name=value` inside `{a=b, name=value, …}`, only when the value's end (the
/// next `, `, or the map's closing brace on a line that was not cut) was kept.
/// Values may hold braces themselves (`…/user/{id}`), so only the map's last
/// character closes it.
fn header_value<'a>(headers: &'a str, name: &str, cut: bool) -> Option<&'a str> {
    let inner = headers.strip_prefix('{').unwrap_or(headers);
    let key = format!("{name}=");
    let mut search = inner;
    loop {
        let at = search.find(&key)?;
        // A key starts the map or follows ", ".
        let starts = at == 0 || search[..at].ends_with(", ");
        let after = &search[at + key.len()..];
        if starts {
            return match after.find(", ") {
                Some(end) => Some(&after[..end]),
                None if !cut => after.strip_suffix('}'),
                None => None,
            };
        }
        search = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "8f5e2b1a-0c3d-4e6f-9a7b-1c2d3e4f5a6b";

    #[test]
    fn reads_text_reports_in_every_shape() {
        let warm = format!(
            "REPORT RequestId: {ID}\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB\t"
        );
        let r = parse_report(&warm).unwrap();
        assert_eq!(r.request_id, ID);
        assert_eq!(r.duration_ms, 12.34);
        assert_eq!(r.billed_ms, Some(13.0));
        assert_eq!(r.init_ms, None);
        assert_eq!(r.status, InvocationStatus::Success);

        let cold = format!(
            "REPORT RequestId: {ID}\tDuration: 2.00 ms\tBilled Duration: 3 ms\tMemory Size: 128 MB\tMax Memory Used: 71 MB\tInit Duration: 812.55 ms\t\nXRAY TraceId: 1-5e1b4151-5ac6c58f\tSegmentId: 0c8a\tSampled: true\t"
        );
        let r = parse_report(&cold).unwrap();
        assert_eq!(r.init_ms, Some(812.55));

        let timeout = format!(
            "REPORT RequestId: {ID}\tDuration: 3000.00 ms\tBilled Duration: 3000 ms\tMemory Size: 128 MB\tMax Memory Used: 80 MB\tStatus: timeout"
        );
        assert_eq!(
            parse_report(&timeout).unwrap().status,
            InvocationStatus::Timeout
        );
        let error = format!(
            "REPORT RequestId: {ID}\tDuration: 5.1 ms\tBilled Duration: 6 ms\tMemory Size: 128 MB\tMax Memory Used: 60 MB\tStatus: error\tError Type: Runtime.ExitError"
        );
        assert_eq!(
            parse_report(&error).unwrap().status,
            InvocationStatus::Error(Some("Runtime.ExitError".into()))
        );
        assert!(parse_report(&format!("END RequestId: {ID}")).is_none());
        assert!(parse_report("REPORT RequestId: \tDuration: 1 ms").is_none());
    }

    #[test]
    fn reads_json_platform_reports() {
        let line = format!(
            r#"{{"time":"2026-12-02T00:00:00.000Z","type":"platform.report","record":{{"requestId":"{ID}","metrics":{{"durationMs":4.5,"billedDurationMs":5,"memorySizeMB":128,"maxMemoryUsedMB":70,"initDurationMs":301.2}},"status":"success"}}}}"#
        );
        let r = parse_report(&line).unwrap();
        assert_eq!(r.request_id, ID);
        assert_eq!(r.init_ms, Some(301.2));
        let start = format!(
            r#"{{"time":"…","type":"platform.start","record":{{"requestId":"{ID}","version":"$LATEST"}}}}"#
        );
        assert!(parse_report(&start).is_none());
        let app =
            r#"{"timestamp":"…","level":"INFO","requestId":"x","message":"REPORT RequestId: y"}"#;
        assert!(parse_report(app).is_none());
    }

    #[test]
    fn reads_the_execution_log_chain() {
        let lines = [
            "(abc-1) Starting execution for request: abc-1",
            "(abc-1) HTTP Method: POST, Resource Path: /user",
            "(abc-1) Endpoint request URI: https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:test-user-service/invocations",
            "(abc-1) Endpoint request headers: {x-amzn-lambda-integration-tag=abc-1, Authorization=*****, X-Amz-Source-Arn=arn:aws:execute-api:us-east-1:123456789012:k3/test/POST/user, Accept=application/json}",
            "(abc-1) Received response. Status: 200, Integration latency: 41 ms",
            "(abc-1) Method completed with status: 201",
            "(abc-1) AWS Integration Endpoint RequestId : 7d1c-lambda",
        ];
        let parsed: Vec<Execution> = lines
            .iter()
            .map(|l| {
                let (id, e) = parse_execution(l).unwrap();
                assert_eq!(id, "abc-1");
                e
            })
            .collect();
        assert_eq!(parsed[0], Execution::Started);
        assert_eq!(
            parsed[1],
            Execution::Method {
                method: "POST".into(),
                resource_path: "/user".into()
            }
        );
        assert_eq!(
            parsed[2],
            Execution::Invoked {
                function_arn: "arn:aws:lambda:us-east-1:123456789012:function:test-user-service"
                    .into()
            }
        );
        assert_eq!(
            parsed[3],
            Execution::SourceArn(
                "arn:aws:execute-api:us-east-1:123456789012:k3/test/POST/user".into()
            )
        );
        assert_eq!(
            parsed[4],
            Execution::Received {
                status: 200,
                integration_latency_ms: 41.0
            }
        );
        assert_eq!(parsed[5], Execution::Completed { status: 201 });
        assert_eq!(
            parsed[6],
            Execution::IntegrationRequestId("7d1c-lambda".into())
        );
        let (_, failed) = parse_execution(
            "(abc-2) Execution failed due to configuration error: Invalid permissions on Lambda function",
        )
        .unwrap();
        assert_eq!(
            failed,
            Execution::ConfigurationError("Invalid permissions on Lambda function".into())
        );
        assert!(parse_execution("START RequestId: x Version: $LATEST").is_none());
    }

    #[test]
    fn a_cut_line_never_yields_a_shortened_value() {
        let cut_arn = "(abc-1) Endpoint request headers: {x-amzn-lambda-integration-tag=abc-1, X-Amz-Source-Arn=arn:aws:execute-api:us-east-1:123456789012:k3/te [TRUNCATED]";
        assert_eq!(parse_execution(cut_arn).unwrap().1, Execution::Other);
        let kept = "(abc-1) Endpoint request headers: {X-Amz-Source-Arn=arn:aws:execute-api:us-east-1:1:k3/test/GET/user, X-Amz-Security-Token=IQoJb3JpZ2luX2Vj [TRUNCATED]";
        assert_eq!(
            parse_execution(kept).unwrap().1,
            Execution::SourceArn("arn:aws:execute-api:us-east-1:1:k3/test/GET/user".into())
        );
        let cut_uri = "(abc-1) Endpoint request URI: https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/arn:aws:lambda:us-east-1:1:function:test-user [TRUNCATED]";
        assert_eq!(parse_execution(cut_uri).unwrap().1, Execution::Other);
        let cut_id = "(abc-1) AWS Integration Endpoint RequestId : 7d1c [TRUNCATED]";
        assert_eq!(parse_execution(cut_id).unwrap().1, Execution::Other);
        // A key that merely ends with the name is another header.
        let lookalike = "(abc-1) Endpoint request headers: {Not-X-Amz-Source-Arn=arn:x, a=b}";
        assert_eq!(parse_execution(lookalike).unwrap().1, Execution::Other);
    }

    proptest! {
        /// Any cut of an execution-log line, marked as AWS marks it, yields
        /// either nothing of the value or the whole value.
        #[test]
        fn cutting_a_line_never_invents_a_value(cut in 0usize..400) {
            let full = "(r-9) Endpoint request headers: {x-amzn-lambda-integration-tag=r-9, X-Amz-Source-Arn=arn:aws:execute-api:us-east-1:123456789012:k3/test/POST/user/{id}, X-Amz-Date=20261202T000000Z, Accept=application/json}";
            let cut = cut.min(full.len());
            let boundary = (0..=cut).rev().find(|i| full.is_char_boundary(*i)).unwrap_or(0);
            let line = format!("{}{TRUNCATED}", &full[..boundary]);
            if let Some((_, Execution::SourceArn(arn))) = parse_execution(&line) {
                prop_assert_eq!(arn, "arn:aws:execute-api:us-east-1:123456789012:k3/test/POST/user/{id}");
            }
            let uri = "(r-9) Endpoint request URI: https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:test-user-service/invocations";
            let c = cut.min(uri.len());
            if let Some((_, Execution::Invoked { function_arn })) = parse_execution(&format!("{}{TRUNCATED}", &uri[..c])) {
                prop_assert_eq!(function_arn, "arn:aws:lambda:us-east-1:123456789012:function:test-user-service");
            }
        }

        /// Whatever the numbers, a text REPORT reads back what was written.
        #[test]
        fn reports_read_back(d in 0.0f64..100_000.0, init in proptest::option::of(0.0f64..10_000.0)) {
            let mut line = format!("REPORT RequestId: {ID}\tDuration: {d:.2} ms\tBilled Duration: {} ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB", d.ceil());
            if let Some(i) = init {
                line.push_str(&format!("\tInit Duration: {i:.2} ms"));
            }
            let r = parse_report(&line).unwrap();
            prop_assert!((r.duration_ms - d).abs() < 0.006);
            prop_assert_eq!(r.init_ms.is_some(), init.is_some());
        }
    }
}
