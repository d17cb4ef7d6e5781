//! What to prove after the traffic: DynamoDB writes, Lambda invocations in
//! the logs (and how log lines are matched to requests), isolation from the
//! other stages, and the correlation header that ties a request to its log
//! line.

use std::time::Duration;

use http::HeaderName;

use super::{Cx, Expected, Overrides, Stage, Step, Target, header_name};
use crate::aws::AwsOptions;
use crate::error::Error;
use crate::scenario::file::ScenarioFile;
use crate::scenario::template::Part;

/// What to prove after the traffic, and against which stages.
#[derive(Debug, Clone)]
pub struct VerifyPlan {
    pub dynamodb: bool,
    pub logs: bool,
    /// Other stages that must have received nothing.
    pub isolate_from: Vec<Stage>,
    pub correlation_header: Option<HeaderName>,
    pub log_match: LogMatch,
    /// Which logs prove where each request went.
    pub routing: Routing,
    /// The stage's REST API id, when known before the run, and where it came from.
    pub rest_api: Option<RestApi>,
    pub settle: Duration,
    pub logs_deadline: Duration,
    pub max_recorded_writes: usize,
    pub max_recorded_invocations: usize,
    pub cleanup: bool,
    pub aws: AwsOptions,
}

impl VerifyPlan {
    pub fn enabled(&self) -> bool {
        self.dynamodb || self.logs || !self.isolate_from.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogMatch {
    /// Our correlation header, as the function logs it.
    CorrelationId,
    /// API Gateway's request id (`x-amzn-RequestId`), as Powertools logs it.
    RequestId,
    Either,
}

/// The channels that prove a request reached the stage's own function:
/// the function's own log lines, and API Gateway's own logs (the execution
/// log, and the access log when its format has `$context.integration.requestId`),
/// each followed to the function's `REPORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Every channel the stage offers (function logs, execution log, access
    /// log); a request proven by any is found.
    Auto,
    /// Only the function's own log lines (our correlation id or API Gateway's request id).
    FunctionLogs,
    /// Only API Gateway's own logs: its execution log and its access log,
    /// either of which proves a request.
    ExecutionLogs,
    /// The function's logs and API Gateway's logs, and a request counts only
    /// when both prove it.
    Both,
}

impl Routing {
    pub fn name(self) -> &'static str {
        match self {
            Routing::Auto => "auto",
            Routing::FunctionLogs => "function-logs",
            Routing::ExecutionLogs => "execution-logs",
            Routing::Both => "both",
        }
    }

    pub fn reads_function_logs(self) -> bool {
        self != Routing::ExecutionLogs
    }

    /// Reads API Gateway's own logs: the execution log and the access log.
    pub fn reads_execution_logs(self) -> bool {
        self != Routing::FunctionLogs
    }

    /// Whether a request proven by these channels counts as found;
    /// `by_api_gateway` is API Gateway's execution log or its access log.
    pub fn proves(self, by_function_logs: bool, by_api_gateway: bool) -> bool {
        match self {
            Routing::Auto => by_function_logs || by_api_gateway,
            Routing::FunctionLogs => by_function_logs,
            Routing::ExecutionLogs => by_api_gateway,
            Routing::Both => by_function_logs && by_api_gateway,
        }
    }
}

/// A REST API id and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestApi {
    pub id: String,
    /// `base_url` (its execute-api host name) or `setting` (`[verify] rest_api`).
    pub from: &'static str,
}

/// The API id of an `{id}.execute-api.{region}.amazonaws.com` host (or
/// `.amazonaws.com.cn`); a custom domain or a local address names none.
pub fn rest_api_of_host(host: &str) -> Option<&str> {
    let (id, rest) = host.split_once(".execute-api.")?;
    let (region, domain) = rest.split_once('.')?;
    let known = matches!(domain, "amazonaws.com" | "amazonaws.com.cn");
    (is_rest_api_id(id) && !region.is_empty() && known).then_some(id)
}

/// API Gateway's ids are 10 lowercase letters and digits; any run of ASCII
/// letters and digits is taken, so an emulator's ids work too.
fn is_rest_api_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric())
}

const DEFAULT_SETTLE: Duration = Duration::from_secs(2);
const DEFAULT_LOGS_DEADLINE: Duration = Duration::from_secs(60);
const DEFAULT_MAX_RECORDED_WRITES: u64 = 100_000;

pub(super) fn build_verify(
    cx: &Cx<'_>,
    file: &ScenarioFile,
    ov: &Overrides,
    stage: &Stage,
    stages: &[Stage],
    steps: &[Step],
    target: &Target,
) -> Result<VerifyPlan, Error> {
    let spec = &file.verify;
    let any_writes = steps.iter().any(|s| s.writes.is_some());
    let off = ov.no_verify;
    let dynamodb = !off && spec.dynamodb.unwrap_or(any_writes);
    let isolate_names: Vec<String> = if !ov.isolate_from.is_empty() {
        ov.isolate_from.clone()
    } else if let Some(list) = &spec.isolate_from {
        list.get_ref().iter().map(|s| s.get_ref().clone()).collect()
    } else if dynamodb || spec.logs == Some(true) {
        stages
            .iter()
            .filter(|s| s.name != stage.name)
            .map(|s| s.name.clone())
            .collect()
    } else {
        Vec::new()
    };
    // Isolation that cannot be checked must say so: a stage cannot be
    // isolated from itself, and a list that names only the stage being run
    // would check nothing while the report said "isolated".
    if ov.isolate_from.contains(&stage.name) {
        return Err(Error::Usage(format!(
            "--isolate-from {0}: {0} is the stage being run; name the stages that must receive nothing from it",
            stage.name
        )));
    }
    if let Some(list) = &spec.isolate_from
        && ov.isolate_from.is_empty()
        && !list.get_ref().is_empty()
        && list.get_ref().iter().all(|s| *s.get_ref() == stage.name)
    {
        return Err(cx.error(
            list.span(),
            format!(
                "isolate_from names only stage `{}`, the stage being run, so there is nothing to check; name the other stages, or write `isolate_from = []` to check no isolation",
                stage.name
            ),
        ));
    }
    let mut isolate_from = Vec::new();
    for name in isolate_names {
        if name == stage.name {
            continue;
        }
        match stages.iter().find(|s| s.name == name) {
            Some(other) => isolate_from.push(other.clone()),
            None => {
                let message = format!("cannot isolate from unknown stage `{name}`");
                return Err(match &spec.isolate_from {
                    Some(list) if ov.isolate_from.is_empty() => cx.error(list.span(), message),
                    _ => Error::Usage(format!("--isolate-from: {message}")),
                });
            }
        }
    }
    if off {
        isolate_from.clear();
    }
    // Naming the channels that prove invocations asks for them to be proven.
    let logs = !off
        && spec
            .logs
            .unwrap_or(dynamodb || !isolate_from.is_empty() || spec.routing.is_some());
    let correlation_header = match &spec.correlation_header {
        Some(h) if h.get_ref().is_empty() => None,
        Some(h) => Some(header_name(h.get_ref()).map_err(|m| cx.error(h.span(), m))?),
        None => Some(HeaderName::from_static("x-correlation-id")),
    };
    let log_match = match &spec.log_match {
        None => LogMatch::Either,
        Some(m) => match m.get_ref().as_str() {
            "correlation_id" => LogMatch::CorrelationId,
            "request_id" => LogMatch::RequestId,
            "either" => LogMatch::Either,
            other => {
                return Err(cx.error(m.span(), format!("unknown log_match {other:?} (expected correlation_id, request_id or either)")));
            }
        },
    };
    if logs && correlation_header.is_none() && log_match == LogMatch::CorrelationId {
        let span = spec.correlation_header.as_ref().map_or(0..0, |h| h.span());
        return Err(cx.error(
            span,
            "log verification by correlation id needs a correlation_header",
        ));
    }
    let routing = match &spec.routing {
        None => Routing::Auto,
        Some(r) => match r.get_ref().as_str() {
            "auto" => Routing::Auto,
            "function-logs" => Routing::FunctionLogs,
            "execution-logs" => Routing::ExecutionLogs,
            "both" => Routing::Both,
            other => {
                return Err(cx.error(
                    r.span(),
                    format!("unknown routing {other:?} (expected auto, function-logs, execution-logs or both)"),
                ));
            }
        },
    };
    if let Some(r) = &spec.routing
        && spec.logs == Some(false)
    {
        return Err(cx.error(
            r.span(),
            "routing chooses the logs that prove each invocation, but `logs = false` turns invocation checks off; remove one of them",
        ));
    }
    let from_host = rest_api_of_host(&target.host);
    let rest_api = match (&spec.rest_api, from_host) {
        (Some(setting), host) => {
            let id = setting.get_ref().trim();
            if !is_rest_api_id(id) {
                return Err(cx.error(
                    setting.span(),
                    format!("rest_api {id:?} is not a REST API id (letters and digits, as in `a1b2c3d4e5`, from `aws apigateway get-rest-apis`)"),
                ));
            }
            if let Some(host_id) = host.filter(|h| *h != id) {
                return Err(cx.error(
                    setting.span(),
                    format!("rest_api {id:?} differs from the API the base URL names ({host_id}.execute-api…); remove one of them"),
                ));
            }
            Some(RestApi {
                id: id.to_string(),
                from: "setting",
            })
        }
        (None, Some(id)) => Some(RestApi {
            id: id.to_string(),
            from: "base_url",
        }),
        (None, None) => None,
    };
    let settle = spec
        .settle
        .as_ref()
        .map(|d| cx.duration(d))
        .transpose()?
        .unwrap_or(DEFAULT_SETTLE);
    let logs_deadline = match (ov.logs_deadline, &spec.logs_deadline) {
        (Some(d), _) => d,
        (None, Some(d)) => cx.duration(d)?,
        (None, None) => DEFAULT_LOGS_DEADLINE,
    };
    let max_recorded_writes = spec
        .max_recorded_writes
        .as_ref()
        .map_or(DEFAULT_MAX_RECORDED_WRITES, |m| *m.get_ref());
    if max_recorded_writes == 0 {
        let span = spec.max_recorded_writes.as_ref().map_or(0..0, |m| m.span());
        return Err(cx.error(span, "max_recorded_writes must be at least 1"));
    }
    // A cap of its own: limiting writes must not also cut log checking.
    let max_recorded_invocations = spec
        .max_recorded_invocations
        .as_ref()
        .map_or(DEFAULT_MAX_RECORDED_WRITES, |m| *m.get_ref());
    if max_recorded_invocations == 0 {
        let span = spec
            .max_recorded_invocations
            .as_ref()
            .map_or(0..0, |m| m.span());
        return Err(cx.error(span, "max_recorded_invocations must be at least 1"));
    }
    if ov.cleanup {
        // Only keys unique to this run may be deleted: a fixed key could name an item that was there before.
        for step in steps {
            if let Some(writes) = &step.writes {
                let fresh = writes.key.iter().all(|(_, v)| match v {
                    Expected::Text(t) => t
                        .parts()
                        .iter()
                        .any(|p| matches!(p, Part::Uuid | Part::RunId | Part::Capture(_))),
                    Expected::Value(_) => false,
                });
                if !fresh {
                    return Err(Error::Usage(format!(
                        "--cleanup: step `{}` writes a key that is not unique to the run (use {{{{uuid}}}}, {{{{run_id}}}} or a captured id in it), so it could delete an item that existed before",
                        step.name
                    )));
                }
            }
        }
    }
    Ok(VerifyPlan {
        dynamodb,
        logs,
        isolate_from,
        correlation_header,
        log_match,
        routing,
        rest_api,
        settle,
        logs_deadline,
        max_recorded_writes: usize::try_from(max_recorded_writes).unwrap_or(usize::MAX),
        max_recorded_invocations: usize::try_from(max_recorded_invocations).unwrap_or(usize::MAX),
        cleanup: ov.cleanup && dynamodb,
        aws: ov.aws.clone(),
    })
}

/// stagecheck sets the correlation header itself, to an id unique per
/// request that log verification looks for; a value the user writes for it
/// would be replaced without a word, so it is refused with what to write.
pub(super) fn reject_correlation_header(
    cx: &Cx<'_>,
    file: &ScenarioFile,
    ov: &Overrides,
    verify: &VerifyPlan,
) -> Result<(), Error> {
    let Some(ours) = &verify.correlation_header else {
        return Ok(());
    };
    let why = format!(
        "stagecheck sets {ours} on every request to an id unique per request (`RUN_ID-SEQ-STEP`, which log verification looks for), so this value would be replaced; remove this header, or set `[verify] correlation_header` to another header name (\"\" sends none)"
    );
    let same =
        |name: &str| HeaderName::from_bytes(name.trim().as_bytes()).is_ok_and(|n| n == *ours);
    let written = file
        .headers
        .keys()
        .chain(file.steps.get_ref().iter().flat_map(|s| s.headers.keys()));
    if let Some(name) = written.into_iter().find(|k| same(k.get_ref())) {
        return Err(cx.error(name.span(), why));
    }
    if let Some(raw) = ov
        .headers
        .iter()
        .find(|raw| raw.split_once(':').is_some_and(|(n, _)| same(n)))
    {
        let name = raw.split_once(':').map_or("", |(n, _)| n.trim());
        return Err(Error::Usage(format!("--header {name}: {why}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_api_id_from_an_execute_api_host_only() {
        assert_eq!(
            rest_api_of_host("abc123defg.execute-api.eu-west-1.amazonaws.com"),
            Some("abc123defg")
        );
        assert_eq!(
            rest_api_of_host("k3x9.execute-api.cn-north-1.amazonaws.com.cn"),
            Some("k3x9")
        );
        assert_eq!(rest_api_of_host("127.0.0.1"), None);
        assert_eq!(rest_api_of_host("api.example.com"), None);
        assert_eq!(
            rest_api_of_host(".execute-api.eu-west-1.amazonaws.com"),
            None
        );
        assert_eq!(
            rest_api_of_host("abc.execute-api.eu-west-1.example.com"),
            None
        );
        assert_eq!(
            rest_api_of_host("a-b.execute-api.eu-west-1.amazonaws.com"),
            None
        );
    }

    #[test]
    fn each_routing_counts_what_it_promises() {
        let all = [(false, false), (true, false), (false, true), (true, true)];
        let proven = |r: Routing| all.iter().filter(|(f, e)| r.proves(*f, *e)).count();
        assert_eq!(proven(Routing::Auto), 3);
        assert_eq!(proven(Routing::Both), 1);
        assert!(Routing::FunctionLogs.proves(true, false));
        assert!(!Routing::FunctionLogs.proves(false, true));
        assert!(Routing::ExecutionLogs.proves(false, true));
        assert!(!Routing::ExecutionLogs.proves(true, false));
        assert!(!Routing::ExecutionLogs.reads_function_logs());
        assert!(!Routing::FunctionLogs.reads_execution_logs());
    }
}
