//! API Gateway's data plane for the `users` API: `http://ADDR/{stage}/…` is
//! routed through the cached control-plane resolution, checked (auth,
//! throttling), handed to the user-service function with the faults applied,
//! and answered with API Gateway's headers and error bodies. Also serves the
//! sandbox's own `/_sandbox/reload` and `/_sandbox/config`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine;
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Value, json};

use super::auth::{self, RequestParts, StageAuth};
use super::aws::SandboxCredentials;
use super::faults::FaultState;
use super::logs::{FunctionLog, Invocation, InvocationLog, LogSink};
use super::routing::{Resolver, Resource, Target};
use super::user_service::{Call, Outcome, UserService};

/// API Gateway's own payload limit.
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Client-supplied correlation ids are logged, but not without bound.
const MAX_CORRELATION_ID_CHARS: usize = 256;

pub struct Dataplane {
    resolver: Arc<Resolver>,
    service: UserService,
    logs: LogSink,
    faults: FaultState,
    auth: HashMap<String, StageAuth>,
    credentials: SandboxCredentials,
    region: String,
    /// Functions that already had their cold start in this process.
    warm: Mutex<HashSet<String>>,
    /// The shape of the function's own log line, per stage (default: `Full`).
    function_logs: HashMap<String, FunctionLog>,
}

impl Dataplane {
    pub fn new(
        resolver: Arc<Resolver>,
        service: UserService,
        logs: LogSink,
        faults: FaultState,
        auth: HashMap<String, StageAuth>,
        credentials: SandboxCredentials,
        region: String,
    ) -> Dataplane {
        Dataplane {
            resolver,
            service,
            logs,
            faults,
            auth,
            credentials,
            region,
            warm: Mutex::new(HashSet::new()),
            function_logs: HashMap::new(),
        }
    }

    pub fn with_function_logs(mut self, function_logs: HashMap<String, FunctionLog>) -> Dataplane {
        self.function_logs = function_logs;
        self
    }

    fn cold_start(&self, function: &str) -> bool {
        let mut warm = match self.warm.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        if warm.contains(function) {
            return false;
        }
        warm.insert(function.to_string())
    }
}

pub fn router(state: Dataplane) -> Router {
    Router::new()
        .route("/_sandbox/reload", post(reload))
        .route("/_sandbox/config", get(config))
        .fallback(stage_request)
        .with_state(Arc::new(state))
}

async fn reload(State(dp): State<Arc<Dataplane>>) -> Response {
    let ids = RequestIds::new();
    match dp.resolver.refresh().await {
        Ok(table) => respond(&ids, 200, Some(&json!(*table)), None),
        Err(e) => respond(&ids, 502, Some(&json!({ "message": e.to_string() })), None),
    }
}

/// Per stage: the deployment served, its canary, the resolved chain; and the
/// faults the sandbox was started with.
async fn config(State(dp): State<Arc<Dataplane>>) -> Response {
    let ids = RequestIds::new();
    let mut doc = json!(*dp.resolver.current());
    if let Some(map) = doc.as_object_mut() {
        map.insert("faults".into(), json!(dp.faults.faults.names()));
    }
    respond(&ids, 200, Some(&doc), None)
}

/// `$context.requestId` (returned as `x-amzn-RequestId`) and
/// `$context.extendedRequestId` (returned as `x-amz-apigw-id`).
struct RequestIds {
    request_id: String,
    extended_id: String,
}

impl RequestIds {
    fn new() -> RequestIds {
        let mut raw = [0u8; 11];
        fastrand::fill(&mut raw);
        RequestIds {
            request_id: uuid::Uuid::new_v4().to_string(),
            extended_id: base64::engine::general_purpose::STANDARD.encode(raw),
        }
    }
}

/// API Gateway's own text for integration failures, spacing included.
const INTERNAL_ERROR_BODY: &str = r#"{"message": "Internal server error"}"#;

fn respond(
    ids: &RequestIds,
    status: u16,
    body: Option<&Value>,
    error_type: Option<&str>,
) -> Response {
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    respond_text(ids, status, bytes, error_type)
}

fn respond_text(
    ids: &RequestIds,
    status: u16,
    bytes: String,
    error_type: Option<&str>,
) -> Response {
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-amzn-RequestId", &ids.request_id)
        .header("x-amz-apigw-id", &ids.extended_id);
    if let Some(t) = error_type {
        builder = builder.header("x-amzn-ErrorType", t);
    }
    builder.body(Body::from(bytes)).unwrap_or_else(|_| {
        let mut r = Response::new(Body::from(INTERNAL_ERROR_BODY));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

fn missing_token(ids: &RequestIds) -> Response {
    respond(
        ids,
        403,
        Some(&json!({ "message": "Missing Authentication Token" })),
        Some("MissingAuthenticationTokenException"),
    )
}

fn internal_error(ids: &RequestIds, status: u16) -> Response {
    respond_text(
        ids,
        status,
        INTERNAL_ERROR_BODY.to_string(),
        Some("InternalServerErrorException"),
    )
}

async fn stage_request(State(dp): State<Arc<Dataplane>>, req: Request) -> Response {
    dp.faults.note_request();
    let response = route(&dp, req).await;
    // The stall fault holds whatever would leave inside its window.
    if let Some(until) = dp.faults.hold_until(Instant::now()) {
        tokio::time::sleep_until(until.into()).await;
    }
    response
}

async fn route(dp: &Dataplane, req: Request) -> Response {
    let ids = RequestIds::new();
    let (parts, body) = req.into_parts();
    let Some((stage, rest)) = split_stage(parts.uri.path()) else {
        return missing_token(&ids);
    };
    let table = dp.resolver.current();
    let Some(stage_routes) = table.stages.get(stage) else {
        return missing_token(&ids);
    };
    let Some((resource, raw_id)) = match_resource(rest) else {
        return missing_token(&ids);
    };
    let served = stage_routes.pick();
    let Some(resolution) = served.routes.get(&resource) else {
        return missing_token(&ids);
    };

    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return respond(
                &ids,
                413,
                Some(&json!({ "message": "Request Too Long" })),
                Some("RequestTooLongException"),
            );
        }
    };

    if let Some(stage_auth) = dp.auth.get(stage) {
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let request = RequestParts {
            method: parts.method.as_str(),
            path_and_query,
            headers: &parts.headers,
            body: &body,
        };
        if let Err(denied) = auth::check(stage_auth, &request, &dp.credentials, &dp.region) {
            return respond(
                &ids,
                403,
                Some(&json!({ "message": denied.message() })),
                Some(denied.error_type()),
            );
        }
    }

    if !dp.faults.admit() {
        return respond(
            &ids,
            429,
            Some(&json!({ "message": "Too Many Requests" })),
            Some("TooManyRequestsException"),
        );
    }

    let target = match resolution {
        Ok(t) => t.clone(),
        // A broken link (missing function, missing permission) is a
        // configuration error API Gateway answers with 500.
        Err(_) => return internal_error(&ids, 500),
    };
    let id = raw_id.map(percent_decode);
    let invoked = InvokedRequest {
        stage,
        resource,
        id: id.as_deref(),
        method: &parts.method,
        headers: &parts.headers,
        body: &body,
    };
    invoke(dp, &ids, &target, invoked).await
}

struct InvokedRequest<'a> {
    stage: &'a str,
    resource: Resource,
    id: Option<&'a str>,
    method: &'a Method,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

/// Plays the Lambda service: one invocation of the resolved function, with its
/// own request id, its log lines and the injected faults.
async fn invoke(
    dp: &Dataplane,
    ids: &RequestIds,
    target: &Target,
    req: InvokedRequest<'_>,
) -> Response {
    let lambda_request_id = uuid::Uuid::new_v4().to_string();
    let started = SystemTime::now();
    let t0 = Instant::now();
    let cold = dp.logs.is_enabled() && dp.cold_start(&target.function);

    if let Some(extra) = dp.faults.added_latency() {
        tokio::time::sleep(extra).await;
    }
    let is_write = matches!(req.method.as_str(), "POST" | "PUT" | "DELETE");
    let outcome = if dp.faults.inject_error() {
        Outcome {
            status: 502,
            body: Some(json!({ "message": "Internal server error" })),
            operation: "Unknown",
            message: "injected error (error-rate fault)".into(),
            user_id: None,
            crashed: true,
        }
    } else {
        dp.service
            .handle(Call {
                method: req.method,
                resource: req.resource,
                id: req.id,
                body: req.body,
                table: &target.table,
                skip_write: is_write && dp.faults.drop_write(),
            })
            .await
    };
    let duration = t0.elapsed();

    if dp.logs.is_enabled() {
        let shape = dp.function_logs.get(req.stage).copied().unwrap_or_default();
        let line = match shape {
            FunctionLog::Full => {
                let x_correlation_id = req
                    .headers
                    .get("x-correlation-id")
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.chars().take(MAX_CORRELATION_ID_CHARS).collect::<String>());
                let mut line = json!({
                    "timestamp": rfc3339(started),
                    "level": if outcome.crashed { "ERROR" } else { "INFO" },
                    "requestId": lambda_request_id,
                    "function_name": target.function,
                    "cold_start": cold,
                    "correlation_id": ids.request_id,
                    "stage": req.stage,
                    "table": target.table,
                    "operation": outcome.operation,
                    "method": req.method.as_str(),
                    "resource": req.resource.path(),
                    "status": outcome.status,
                    "message": outcome.message,
                });
                if let Some(map) = line.as_object_mut() {
                    if let Some(x) = x_correlation_id {
                        map.insert("x_correlation_id".into(), Value::String(x));
                    }
                    if let Some(id) = &outcome.user_id {
                        map.insert("user_id".into(), Value::String(id.clone()));
                    }
                }
                line
            }
            // Powertools' Logger keys, as its JSON formatter writes them.
            FunctionLog::Powertools => json!({
                "level": if outcome.crashed { "ERROR" } else { "INFO" },
                "location": "handler:42",
                "message": outcome.message,
                "timestamp": rfc3339(started),
                "service": "user-service",
                "cold_start": cold,
                "function_name": target.function,
                "function_memory_size": "128",
                "function_arn": format!(
                    "arn:aws:lambda:{}:123456789012:function:{}",
                    dp.region, target.function
                ),
                "function_request_id": lambda_request_id,
                "correlation_id": ids.request_id,
            }),
        };
        let invocation = Invocation {
            lambda_request_id: &lambda_request_id,
            started,
            duration,
            // Lambda's init phase, as a cold start reports it.
            init_duration: cold.then(|| Duration::from_millis(150 + fastrand::u64(0..100))),
            app_line: line,
        };
        dp.logs.send(InvocationLog {
            log_group: Arc::from(target.log_group.as_str()),
            events: invocation.lines(),
        });
    }

    if outcome.crashed {
        // An unhandled function error reaches the client as API Gateway's 502.
        return internal_error(ids, 502);
    }
    respond(ids, outcome.status, outcome.body.as_ref(), None)
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `/{stage}/rest…` → (stage, `/rest…`).
fn split_stage(path: &str) -> Option<(&str, &str)> {
    let path = path.strip_prefix('/')?;
    let (stage, rest) = match path.find('/') {
        Some(i) => (&path[..i], &path[i..]),
        None => (path, ""),
    };
    (!stage.is_empty()).then_some((stage, rest))
}

fn match_resource(rest: &str) -> Option<(Resource, Option<&str>)> {
    if rest == "/user" {
        return Some((Resource::Users, None));
    }
    let id = rest.strip_prefix("/user/")?;
    (!id.is_empty() && !id.contains('/')).then_some((Resource::User, Some(id)))
}

/// Path parameters reach the function decoded, as in the proxy event.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_stage_off() {
        assert_eq!(split_stage("/prod/user"), Some(("prod", "/user")));
        assert_eq!(split_stage("/prod"), Some(("prod", "")));
        assert_eq!(split_stage("/"), None);
    }

    #[test]
    fn matches_only_the_apis_resources() {
        assert_eq!(match_resource("/user"), Some((Resource::Users, None)));
        assert_eq!(
            match_resource("/user/abc"),
            Some((Resource::User, Some("abc")))
        );
        assert_eq!(match_resource("/user/"), None);
        assert_eq!(match_resource("/user/a/b"), None);
        assert_eq!(match_resource("/users"), None);
    }

    #[test]
    fn decodes_path_parameters() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
