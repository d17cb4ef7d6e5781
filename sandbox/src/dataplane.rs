//! API Gateway's data plane for the `users` API: `http://ADDR/{stage}/…` is
//! routed through the cached control-plane resolution, checked (auth,
//! throttling, the function's resource-based policy), handed to the
//! user-service function in one of its execution environments with the faults
//! applied, and answered with API Gateway's headers and error bodies; the
//! stage's execution and access logs record what happened. Also serves the
//! sandbox's own `/_sandbox/reload` and `/_sandbox/config`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine;
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Value, json};

use super::apigw_logs::{self, ExecutionLog, Verbosity};
use super::auth::{self, RequestParts, StageAuth};
use super::aws::SandboxCredentials;
use super::faults::FaultState;
use super::lambda::{Lambda, LambdaSettings};
use super::logs::{FunctionLog, Invocation, InvocationLog, LogSink, epoch_ms};
use super::policy;
use super::routing::{
    LogLevel, Resolver, Resource, RouteError, RouteTable, Served, StageRoutes, Target,
};
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
    /// The functions' execution environments.
    lambda: Lambda,
    /// The shape of the function's own log line, per stage (default: `Stagecheck`).
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
            lambda: Lambda::new(LambdaSettings::default()),
            function_logs: HashMap::new(),
        }
    }

    pub fn with_function_logs(mut self, function_logs: HashMap<String, FunctionLog>) -> Dataplane {
        self.function_logs = function_logs;
        self
    }

    /// Lambda's init time and idle timeout (`--cold-start`, `--idle-timeout`).
    pub fn with_lambda(mut self, settings: LambdaSettings) -> Dataplane {
        self.lambda = Lambda::new(settings);
        self
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
    let received = SystemTime::now();
    let clock = Instant::now();
    let (parts, body) = req.into_parts();
    let Some((stage, rest)) = split_stage(parts.uri.path()) else {
        return missing_token(&ids);
    };
    let table = dp.resolver.current();
    let Some(stage_routes) = table.stages.get(stage) else {
        return missing_token(&ids);
    };
    let served = stage_routes.pick();
    let mut trace = Trace::new(&table, stage, stage_routes, &served, &ids, &parts, received);
    let response = serve(dp, &mut trace, &served, &ids, stage, rest, &parts, body).await;
    trace.response_length = axum::body::HttpBody::size_hint(response.body())
        .exact()
        .unwrap_or(0) as usize;
    trace.finish(dp, response.status().as_u16(), clock.elapsed());
    response
}

/// One stage request as API Gateway handles it, from the resource match to the
/// answer; what it did is written into `trace` for the execution and access logs.
#[allow(clippy::too_many_arguments)]
async fn serve(
    dp: &Dataplane,
    trace: &mut Trace,
    served: &Served<'_>,
    ids: &RequestIds,
    stage: &str,
    rest: &str,
    parts: &http::request::Parts,
    body: Body,
) -> Response {
    let Some((resource, raw_id)) = match_resource(rest) else {
        trace.error_message = Some("Missing Authentication Token");
        return missing_token(ids);
    };
    let Some(resolution) = served.routes.get(&resource) else {
        trace.error_message = Some("Missing Authentication Token");
        return missing_token(ids);
    };
    trace.resource = Some(resource);

    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            trace.error_message = Some("Request Too Long");
            return respond(
                ids,
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
            trace.error_message = Some("Forbidden");
            return respond(
                ids,
                403,
                Some(&json!({ "message": denied.message() })),
                Some(denied.error_type()),
            );
        }
    }

    if !dp.faults.admit() {
        trace.error_message = Some("Too Many Requests");
        return respond(
            ids,
            429,
            Some(&json!({ "message": "Too Many Requests" })),
            Some("TooManyRequestsException"),
        );
    }

    // Path parameters reach the function decoded, as in the proxy event.
    let id = raw_id.map(super::percent_decode);
    let now = SystemTime::now();
    let exec = &mut trace.exec;
    exec.info(now, || apigw_logs::extended_request_id(&ids.extended_id));
    exec.info(now, || apigw_logs::starting(&ids.request_id));
    exec.info(now, || {
        apigw_logs::http_method(parts.method.as_str(), trace_path(rest))
    });
    exec.data(now, || {
        apigw_logs::method_request_path(&match &id {
            Some(id) => apigw_logs::map([("id", id.as_str())]),
            None => "{}".into(),
        })
    });
    exec.data(now, || {
        apigw_logs::method_request_query_string(&apigw_logs::map(query_pairs(&parts.uri)))
    });
    exec.data(now, || {
        apigw_logs::method_request_headers(&apigw_logs::map(
            parts
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))),
        ))
    });
    exec.data(now, || {
        apigw_logs::method_request_body(&String::from_utf8_lossy(&body))
    });

    let target = match resolution {
        Ok(t) => t.clone(),
        Err(e) => return configuration_failure(dp, trace, ids, e),
    };

    // What API Gateway names the request when it asks Lambda: the method the
    // client used and the resource as defined (`/user/{id}`).
    let source_arn = format!(
        "arn:aws:execute-api:{}:{}:{}/{stage}/{}{}",
        dp.region,
        target.account,
        trace.api_id,
        parts.method.as_str(),
        resource.path()
    );
    let exec = &mut trace.exec;
    let now = SystemTime::now();
    exec.info(now, || {
        apigw_logs::endpoint_request_uri(&dp.region, &target.function_arn)
    });
    exec.info(now, || {
        apigw_logs::endpoint_request_headers(&ids.request_id, &trace.api_id, &source_arn, now)
    });
    let invoked = InvokedRequest {
        stage,
        resource,
        id: id.as_deref(),
        method: &parts.method,
        headers: &parts.headers,
        uri: &parts.uri,
        body: &body,
        variables: served.variables,
    };
    exec.data(now, || {
        apigw_logs::endpoint_request_body(&proxy_event(&invoked, ids, &trace.api_id, &target))
    });
    exec.info(now, || {
        apigw_logs::sending_request(&dp.region, &target.function_arn)
    });

    // Lambda checks the function's resource-based policy on every invocation.
    if !policy::allows_invoke(
        target.resource_policy.as_ref(),
        &target.function_arn,
        &source_arn,
        &target.account,
    ) {
        let now = SystemTime::now();
        trace.exec.error(now, || {
            apigw_logs::configuration_error(apigw_logs::INVALID_PERMISSIONS)
        });
        trace.exec.error(now, || apigw_logs::method_completed(500));
        trace.error_message = Some("Internal server error");
        return internal_error(ids, 500);
    }
    invoke(dp, trace, ids, &target, invoked).await
}

/// A route that does not resolve is a configuration error: 500, and the line
/// API Gateway writes for it.
fn configuration_failure(
    dp: &Dataplane,
    trace: &mut Trace,
    ids: &RequestIds,
    error: &RouteError,
) -> Response {
    let now = SystemTime::now();
    let exec = &mut trace.exec;
    match error {
        RouteError::NoIntegration => {
            exec.error(now, || {
                apigw_logs::configuration_error(apigw_logs::NO_INTEGRATION)
            });
        }
        RouteError::UnsetStageVariable { .. } => {
            exec.error(now, || {
                apigw_logs::configuration_error(&apigw_logs::invalid_stage_variable())
            });
        }
        RouteError::NotAFunction { uri } => {
            exec.error(now, || {
                apigw_logs::configuration_error(&format!(
                    "Invalid Lambda function ARN in the integration URI {uri}"
                ))
            });
        }
        RouteError::FunctionMissing { function } => {
            // API Gateway asks Lambda, which answers 404.
            let arn = format!(
                "arn:aws:lambda:{}:{}:function:{function}",
                dp.region, trace.account
            );
            let lambda_request_id = uuid::Uuid::new_v4().to_string();
            exec.info(now, || apigw_logs::endpoint_request_uri(&dp.region, &arn));
            exec.info(now, || apigw_logs::sending_request(&dp.region, &arn));
            exec.info(now, || apigw_logs::received_response(404, 1));
            exec.data(now, || {
                apigw_logs::endpoint_response_body(
                    &json!({ "Message": format!("Function not found: {arn}"), "Type": "User" })
                        .to_string(),
                )
            });
            exec.error(now, || {
                apigw_logs::lambda_invocation_failed(404, &lambda_request_id)
            });
            exec.error(now, || apigw_logs::configuration_error(""));
            trace.integration_status = Some(404);
            trace.integration_request_id = Some(lambda_request_id);
        }
    }
    trace.exec.error(now, || apigw_logs::method_completed(500));
    trace.error_message = Some("Internal server error");
    internal_error(ids, 500)
}

/// The resource path as the execution log's `HTTP Method` line shows it: the
/// request's path below the stage.
fn trace_path(rest: &str) -> &str {
    if rest.is_empty() { "/" } else { rest }
}

fn query_pairs(uri: &http::Uri) -> Vec<(&str, &str)> {
    uri.query()
        .map(|q| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').unwrap_or((p, "")))
                .collect()
        })
        .unwrap_or_default()
}

struct InvokedRequest<'a> {
    stage: &'a str,
    resource: Resource,
    id: Option<&'a str>,
    method: &'a Method,
    headers: &'a HeaderMap,
    uri: &'a http::Uri,
    body: &'a [u8],
    variables: &'a HashMap<String, String>,
}

/// The Lambda proxy event API Gateway sends (for `dataTrace`'s body line).
fn proxy_event(
    req: &InvokedRequest<'_>,
    ids: &RequestIds,
    api_id: &str,
    target: &Target,
) -> String {
    let headers: serde_json::Map<String, Value> = req
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), Value::from(v.to_str().ok()?))))
        .collect();
    let query: serde_json::Map<String, Value> = query_pairs(req.uri)
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::from(v)))
        .collect();
    json!({
        "resource": req.resource.path(),
        "path": req.uri.path().strip_prefix(&format!("/{}", req.stage)).unwrap_or(req.uri.path()),
        "httpMethod": req.method.as_str(),
        "headers": headers,
        "queryStringParameters": if query.is_empty() { Value::Null } else { Value::Object(query) },
        "pathParameters": req.id.map(|id| json!({ "id": id })),
        "stageVariables": if req.variables.is_empty() { Value::Null } else { json!(req.variables) },
        "requestContext": {
            "resourcePath": req.resource.path(),
            "httpMethod": req.method.as_str(),
            "stage": req.stage,
            "requestId": ids.request_id,
            "extendedRequestId": ids.extended_id,
            "accountId": target.account,
            "apiId": api_id,
            "protocol": "HTTP/1.1",
        },
        "body": String::from_utf8_lossy(req.body),
        "isBase64Encoded": false,
    })
    .to_string()
}

/// Plays the Lambda service: one invocation of the resolved function in one of
/// its execution environments, with its own request id, its log lines and the
/// injected faults.
async fn invoke(
    dp: &Dataplane,
    trace: &mut Trace,
    ids: &RequestIds,
    target: &Target,
    req: InvokedRequest<'_>,
) -> Response {
    let lambda_request_id = uuid::Uuid::new_v4().to_string();
    let sent = Instant::now();
    let lease = dp.lambda.acquire(&target.environments).await;
    let started = SystemTime::now();
    let t0 = Instant::now();

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
                table_arn: &target.table_arn,
                role: &target.role,
                skip_write: is_write && dp.faults.drop_write(),
            })
            .await
    };
    let duration = t0.elapsed();

    if dp.logs.is_enabled() {
        let shape = dp.function_logs.get(req.stage).copied().unwrap_or_default();
        let cold = lease.init_duration.is_some();
        let app_message = app_message(
            shape,
            &req,
            ids,
            target,
            &outcome,
            &lambda_request_id,
            cold,
            started,
        );
        let invocation = Invocation {
            lambda_request_id: &lambda_request_id,
            function_arn: &target.function_arn,
            format: target.log_format,
            started,
            duration,
            init_duration: lease.init_duration,
            errored: outcome.crashed,
            app_message,
        };
        dp.logs.send(InvocationLog {
            log_group: Arc::from(target.log_group.as_str()),
            stream: Some(lease.environment.stream.clone()),
            events: invocation.lines(),
        });
    }
    // The environment is free again once the invocation is over.
    drop(lease);

    let latency_ms = sent.elapsed().as_millis() as u64;
    trace.integration_request_id = Some(lambda_request_id.clone());
    trace.integration_status = Some(200);
    trace.integration_latency_ms = Some(latency_ms);

    // What Lambda answered API Gateway: the proxy response, or the error.
    let payload = || {
        if outcome.crashed {
            json!({ "errorType": "AmazonDynamoDBException", "errorMessage": outcome.message })
                .to_string()
        } else {
            json!({
                "statusCode": outcome.status,
                "headers": { "Content-Type": "application/json" },
                "body": outcome.body.as_ref().map(Value::to_string).unwrap_or_default(),
            })
            .to_string()
        }
    };
    let now = SystemTime::now();
    let exec = &mut trace.exec;
    exec.info(now, || apigw_logs::received_response(200, latency_ms));
    exec.info(now, || {
        apigw_logs::endpoint_response_headers(
            now,
            payload().len(),
            &lambda_request_id,
            outcome.crashed,
            &trace_id(started),
        )
    });
    exec.data(now, || apigw_logs::endpoint_response_body(&payload()));

    if outcome.crashed {
        // An unhandled function error reaches the client as API Gateway's 502.
        exec.error(now, || {
            apigw_logs::function_error(&outcome.message, &lambda_request_id)
        });
        exec.error(now, || apigw_logs::method_completed(502));
        exec.info(now, || {
            apigw_logs::integration_request_id(&lambda_request_id)
        });
        trace.integration_error = Some(outcome.message.clone());
        trace.error_message = Some("Internal server error");
        return internal_error(ids, 502);
    }
    let body_text = outcome
        .body
        .as_ref()
        .map(Value::to_string)
        .unwrap_or_default();
    exec.data(now, || apigw_logs::method_response_body(&body_text));
    exec.data(now, || {
        apigw_logs::method_response_headers(&apigw_logs::map([(
            "Content-Type",
            "application/json",
        )]))
    });
    exec.info(now, apigw_logs::successfully_completed);
    exec.info(now, || apigw_logs::method_completed(outcome.status));
    exec.info(now, || {
        apigw_logs::integration_request_id(&lambda_request_id)
    });
    trace.function_status = Some(outcome.status);
    respond(ids, outcome.status, outcome.body.as_ref(), None)
}

/// What the function's code logs about the invocation, in `--function-log`'s
/// shape; Lambda's format (Text or JSON) wraps it.
#[allow(clippy::too_many_arguments)]
fn app_message(
    shape: FunctionLog,
    req: &InvokedRequest<'_>,
    ids: &RequestIds,
    target: &Target,
    outcome: &Outcome,
    lambda_request_id: &str,
    cold: bool,
    started: SystemTime,
) -> Value {
    let level = if outcome.crashed { "ERROR" } else { "INFO" };
    match shape {
        FunctionLog::Stagecheck => {
            let x_correlation_id = req
                .headers
                .get("x-correlation-id")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(MAX_CORRELATION_ID_CHARS).collect::<String>());
            let mut line = json!({
                "timestamp": super::rfc3339(started),
                "level": level,
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
            "level": level,
            "location": "handler:42",
            "message": outcome.message,
            "timestamp": super::rfc3339(started),
            "service": "user-service",
            "cold_start": cold,
            "function_name": target.function,
            "function_memory_size": "128",
            "function_arn": target.function_arn,
            "function_request_id": lambda_request_id,
            "correlation_id": ids.request_id,
            "xray_trace_id": format!("Root={}", trace_id(started)),
        }),
        // What Lambda's JSON format makes of a bare `console.log(message)`.
        FunctionLog::Plain => json!({
            "timestamp": super::rfc3339(started),
            "level": level,
            "requestId": lambda_request_id,
            "message": outcome.message,
        }),
    }
}

/// An X-Ray trace id: `1-{epoch seconds hex}-{24 hex}`.
fn trace_id(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut raw = [0u8; 12];
    fastrand::fill(&mut raw);
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    format!("1-{secs:08x}-{hex}")
}

/// What one request leaves in API Gateway's logs: the execution log as it is
/// written, and the `$context` facts its access-log line is made of (only
/// gathered when the stage has access logging).
struct Trace {
    exec: ExecutionLog,
    exec_groups: Vec<Arc<str>>,
    access: Option<AccessLogging>,
    api_id: String,
    account: String,
    received: SystemTime,
    resource: Option<Resource>,
    integration_request_id: Option<String>,
    integration_status: Option<u16>,
    function_status: Option<u16>,
    integration_latency_ms: Option<u64>,
    integration_error: Option<String>,
    error_message: Option<&'static str>,
    response_length: usize,
}

/// Where a stage's access-log line goes, its format, and the request's facts
/// known before it is served.
struct AccessLogging {
    groups: Vec<Arc<str>>,
    format: String,
    request_id: String,
    extended_id: String,
    stage: String,
    deployment_id: String,
    /// `None` when the stage has no canary (`$context.isCanaryRequest` is then `-`).
    is_canary: Option<bool>,
    method: String,
    path: String,
    user_agent: Option<String>,
    source_ip: String,
    domain: Option<String>,
}

impl Trace {
    fn new(
        table: &RouteTable,
        stage: &str,
        stage_routes: &StageRoutes,
        served: &Served<'_>,
        ids: &RequestIds,
        parts: &http::request::Parts,
        received: SystemTime,
    ) -> Trace {
        let logging = &stage_routes.logging;
        let api_id = table.api_id.clone().unwrap_or_default();
        let level = match logging.level {
            LogLevel::Off => Verbosity::Off,
            LogLevel::Error => Verbosity::Error,
            LogLevel::Info => Verbosity::Info,
        };
        let mut exec_groups = Vec::new();
        if level != Verbosity::Off {
            exec_groups.push(Arc::from(
                apigw_logs::execution_group(&api_id, stage, false).as_str(),
            ));
            // A canary's requests are logged to the stage's group and to its own.
            if served.is_canary {
                exec_groups.push(Arc::from(
                    apigw_logs::execution_group(&api_id, stage, true).as_str(),
                ));
            }
        }
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let access = logging.access_log.as_ref().and_then(|a| {
            let mut groups: Vec<Arc<str>> = vec![Arc::from(
                apigw_logs::access_group(&a.destination_arn, false)?.as_str(),
            )];
            if served.is_canary {
                groups.push(Arc::from(
                    apigw_logs::access_group(&a.destination_arn, true)?.as_str(),
                ));
            }
            Some(AccessLogging {
                groups,
                format: a.format.clone(),
                request_id: ids.request_id.clone(),
                extended_id: ids.extended_id.clone(),
                stage: stage.to_string(),
                deployment_id: served.deployment_id.to_string(),
                is_canary: stage_routes.canary.as_ref().map(|_| served.is_canary),
                method: parts.method.as_str().to_string(),
                path: parts.uri.path().to_string(),
                user_agent: header("user-agent"),
                // "The source IP address of the immediate TCP connection making
                // the request" (AWS's $context reference), not X-Forwarded-For.
                source_ip: parts
                    .extensions
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0.ip().to_string())
                    .unwrap_or_else(|| "-".to_string()),
                domain: header("host"),
            })
        });
        Trace {
            exec: ExecutionLog::new(&ids.request_id, level, logging.data_trace),
            exec_groups,
            access,
            api_id,
            account: table.account.clone(),
            received,
            resource: None,
            integration_request_id: None,
            integration_status: None,
            function_status: None,
            integration_latency_ms: None,
            integration_error: None,
            error_message: None,
            response_length: 0,
        }
    }

    /// Ships the execution log and the access-log line through the log shipper.
    fn finish(self, dp: &Dataplane, status: u16, response_latency: Duration) {
        if !dp.logs.is_enabled() {
            return;
        }
        if let Some(access) = &self.access {
            let line = apigw_logs::access_line(&access.format, |name| {
                self.context(access, name, status, response_latency)
            });
            let at = epoch_ms(self.received);
            for group in &access.groups {
                dp.logs.send(InvocationLog {
                    log_group: group.clone(),
                    stream: None,
                    events: vec![(at, line.clone())],
                });
            }
        }
        let events = self.exec.into_events();
        if events.is_empty() {
            return;
        }
        let Some((last, rest)) = self.exec_groups.split_last() else {
            return;
        };
        for group in rest {
            dp.logs.send(InvocationLog {
                log_group: group.clone(),
                stream: None,
                events: events.clone(),
            });
        }
        dp.logs.send(InvocationLog {
            log_group: last.clone(),
            stream: None,
            events,
        });
    }

    /// `$context.{name}`; `None` where API Gateway would write `-`.
    fn context(
        &self,
        request: &AccessLogging,
        name: &str,
        status: u16,
        response_latency: Duration,
    ) -> Option<String> {
        let some = |s: &str| Some(s.to_string());
        match name {
            "requestId" => some(&request.request_id),
            "extendedRequestId" => some(&request.extended_id),
            "apiId" => some(&self.api_id),
            "accountId" => some(&self.account),
            "stage" => some(&request.stage),
            "deploymentId" => some(&request.deployment_id),
            "status" => Some(status.to_string()),
            "responseLatency" => Some(response_latency.as_millis().to_string()),
            "responseLength" => Some(self.response_length.to_string()),
            "integrationLatency" | "integration.latency" => {
                self.integration_latency_ms.map(|l| l.to_string())
            }
            "integration.requestId" | "awsEndpointRequestId" => self.integration_request_id.clone(),
            // For a Lambda proxy integration: what the function's code
            // answered, and what the Lambda service answered.
            "integration.status" => self.function_status.map(|s| s.to_string()),
            "integrationStatus" => self.integration_status.map(|s| s.to_string()),
            "integration.integrationStatus" => self.integration_status.map(|s| s.to_string()),
            "integration.error" | "integrationErrorMessage" => self.integration_error.clone(),
            "isCanaryRequest" => request.is_canary.map(|c| c.to_string()),
            "httpMethod" => some(&request.method),
            "resourcePath" => self.resource.map(|r| r.path().to_string()),
            "path" => some(&request.path),
            "protocol" => some("HTTP/1.1"),
            "requestTime" => Some(apigw_logs::clf_time(self.received)),
            "requestTimeEpoch" => Some(epoch_ms(self.received).to_string()),
            "identity.sourceIp" => some(&request.source_ip),
            "identity.userAgent" => request.user_agent.clone(),
            "domainName" => request.domain.clone(),
            "error.message" => self.error_message.map(str::to_string),
            _ => None,
        }
    }
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
        assert_eq!(crate::percent_decode("a%20b"), "a b");
        assert_eq!(crate::percent_decode("100%"), "100%");
        assert_eq!(crate::percent_decode("%zz"), "%zz");
        assert_eq!(crate::percent_decode("a+b"), "a+b");
        assert_eq!(crate::form_decode("a+b%2Bc"), "a b+c");
    }
}
