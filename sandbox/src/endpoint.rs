//! The sandbox's AWS endpoint (`--aws-listen`): what the product and the tests
//! point `AWS_ENDPOINT_URL` at. Every call passes through to moto unchanged,
//! routed by the service in its SigV4 credential scope, except the API Gateway
//! and Lambda control-plane operations moto gets wrong, which are answered here
//! as AWS answers them, moto's state completed by the [`Overlay`]:
//!
//! - CreateDeployment freezes the API's draft; naming a stage points that stage
//!   at the new deployment without touching its variables; with
//!   `canarySettings` it starts a canary and leaves the stage's own deployment;
//! - Create/Get/Update/DeleteStage carry `canarySettings` and the patch
//!   operations AWS accepts on them; UpdateStage refuses an unknown deployment;
//! - GetDeployments pages by `position`; DeleteDeployment is refused while a
//!   stage or a canary uses it;
//! - GetExport of a stage exports that stage's snapshot, integrations included;
//! - CreateFunction / UpdateFunctionConfiguration keep `LoggingConfig`, which
//!   Get(Function|FunctionConfiguration) return.
//!
//! The SDK signs what it sends; moto does not check signatures, so a body
//! rewritten here (a stage name taken out) reaches it as any other.

// The early answers (an AWS error, moto unreachable) travel as `Err(Response)`
// to the handler that returns them: built once per call, never stored.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use aws_sdk_apigateway::types::{Op, PatchOperation};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value, json};

use super::aws::{Clients, Endpoints, causes};
use super::deployments::{
    self, ApplyError, Canary, ExportedApi, Overlay, StagePatch, StageView, read_draft,
};

/// Control-plane payloads are small; DynamoDB's largest (BatchWriteItem,
/// 16 MB) passes too.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

pub struct AwsEndpoint {
    overlay: Arc<Overlay>,
    clients: Clients,
    endpoints: Endpoints,
    region: String,
    http: HttpClient<HttpConnector, Full<Bytes>>,
    /// The `empty-log-pages` fault.
    empty_log_pages: bool,
}

/// Marks a `nextToken` the endpoint handed out with an empty page; what
/// follows it is moto's own token, or nothing for the first page.
const EMPTY_PAGE_TOKEN: &str = "sandbox-empty-page:";

impl AwsEndpoint {
    pub fn new(
        overlay: Arc<Overlay>,
        clients: Clients,
        endpoints: Endpoints,
        region: String,
    ) -> AwsEndpoint {
        AwsEndpoint {
            overlay,
            clients,
            endpoints,
            region,
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
            empty_log_pages: false,
        }
    }

    pub fn with_empty_log_pages(mut self, on: bool) -> AwsEndpoint {
        self.empty_log_pages = on;
        self
    }
}

pub fn router(endpoint: AwsEndpoint) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(Arc::new(endpoint))
}

/// One request as received, body read.
struct Call {
    method: Method,
    /// Decoded path segments.
    segments: Vec<String>,
    /// The raw path, without the query: for calls re-read with a GET.
    path: String,
    path_and_query: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
    service: String,
}

impl Call {
    fn json_body(&self) -> Result<Map<String, Value>, Response> {
        if self.body.is_empty() {
            return Ok(Map::new());
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(apigw_error(
                400,
                "BadRequestException",
                "the request body is not a JSON object",
            )),
        }
    }

    /// `X-Amz-Target` of a JSON protocol call (`Logs_20140328.FilterLogEvents`).
    fn target(&self) -> Option<&str> {
        self.headers.get("x-amz-target")?.to_str().ok()
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What moto answered.
struct Upstream {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Upstream {
    fn ok(&self) -> bool {
        self.status.is_success()
    }

    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    fn into_response(self) -> Response {
        let mut builder = Response::builder().status(self.status);
        for (name, value) in &self.headers {
            if !is_hop_by_hop(name.as_str()) {
                builder = builder.header(name, value);
            }
        }
        builder
            .body(Body::from(self.body))
            .unwrap_or_else(|_| plain(500, "cannot build the response"))
    }

    /// moto's answer with its JSON body replaced.
    fn with_json(mut self, body: &Value) -> Response {
        self.body = Bytes::from(body.to_string());
        self.headers.remove(header::CONTENT_LENGTH);
        self.into_response()
    }
}

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-connection"
            | "content-length"
    )
}

async fn handle(State(ep): State<Arc<AwsEndpoint>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return plain(413, "request body too large for the sandbox's AWS endpoint"),
    };
    let path = parts.uri.path();
    let call = Call {
        method: parts.method.clone(),
        segments: path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(super::percent_decode)
            .collect(),
        path: path.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
        query: parts
            .uri
            .query()
            .map(|q| {
                q.split('&')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (super::form_decode(k), super::form_decode(v))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        service: signing_service(&parts.headers).unwrap_or_default(),
        headers: parts.headers,
        body,
    };
    let seg: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    let m = &call.method;
    match (call.service.as_str(), seg.as_slice()) {
        ("apigateway", ["restapis", api, "deployments"]) if m == Method::POST => {
            ep.create_deployment(&call, api).await
        }
        ("apigateway", ["restapis", api, "deployments"]) if m == Method::GET => {
            ep.get_deployments(&call, api).await
        }
        ("apigateway", ["restapis", api, "deployments", id]) if m == Method::DELETE => {
            ep.delete_deployment(&call, api, id).await
        }
        ("apigateway", ["restapis", api, "stages"]) if m == Method::POST => {
            ep.create_stage(&call, api).await
        }
        ("apigateway", ["restapis", api, "stages"]) if m == Method::GET => {
            ep.get_stages(&call, api).await
        }
        ("apigateway", ["restapis", api, "stages", stage]) if m == Method::GET => {
            ep.get_stage(&call, api, stage).await
        }
        ("apigateway", ["restapis", api, "stages", stage]) if m == Method::PATCH => {
            ep.update_stage(&call, api, stage).await
        }
        ("apigateway", ["restapis", api, "stages", stage]) if m == Method::DELETE => {
            let up = ep.forward(&call, None).await;
            if let Ok(up) = &up
                && up.ok()
            {
                ep.overlay.set_canary(api, stage, None);
            }
            respond(up)
        }
        ("apigateway", ["restapis", api, "stages", stage, "exports", kind]) if m == Method::GET => {
            ep.export(&call, api, stage, kind).await
        }
        ("lambda", [_, "functions"]) if m == Method::POST => {
            ep.function_config_write(&call, None).await
        }
        ("lambda", [_, "functions", f, "configuration"]) if m == Method::PUT => {
            ep.function_config_write(&call, Some(f)).await
        }
        ("lambda", [_, "functions", f, "configuration"]) if m == Method::GET => {
            ep.function_read(&call, f, false).await
        }
        ("lambda", [_, "functions", f]) if m == Method::GET => {
            ep.function_read(&call, f, true).await
        }
        ("logs", _)
            if ep.empty_log_pages && call.target() == Some("Logs_20140328.FilterLogEvents") =>
        {
            ep.filter_log_events_with_empty_pages(&call).await
        }
        _ => respond(ep.forward(&call, None).await),
    }
}

fn respond(up: Result<Upstream, Response>) -> Response {
    match up {
        Ok(up) => up.into_response(),
        Err(r) => r,
    }
}

impl AwsEndpoint {
    fn upstream_for(&self, service: &str) -> &str {
        let e = &self.endpoints;
        match service {
            "dynamodb" => &e.dynamodb,
            "logs" => &e.logs,
            "lambda" => &e.lambda,
            "iam" => &e.iam,
            _ => &e.apigateway,
        }
    }

    /// The `empty-log-pages` fault: every page moto would give is preceded
    /// by an empty one whose `nextToken` leads to it.
    async fn filter_log_events_with_empty_pages(&self, call: &Call) -> Response {
        let mut body = match call.json_body() {
            Ok(b) => b,
            Err(r) => return r,
        };
        let token = body
            .get("nextToken")
            .and_then(Value::as_str)
            .map(str::to_string);
        match token
            .as_deref()
            .and_then(|t| t.strip_prefix(EMPTY_PAGE_TOKEN))
        {
            None => {
                let next = format!("{EMPTY_PAGE_TOKEN}{}", token.unwrap_or_default());
                let page = json!({"events": [], "searchedLogStreams": [], "nextToken": next});
                let mut response = Response::new(Body::from(page.to_string()));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-amz-json-1.1"),
                );
                response
            }
            Some(moto_token) => {
                if moto_token.is_empty() {
                    body.remove("nextToken");
                } else {
                    body.insert("nextToken".into(), Value::String(moto_token.to_string()));
                }
                let bytes = Bytes::from(Value::Object(body).to_string());
                respond(self.forward(call, Some(bytes)).await)
            }
        }
    }

    /// Sends the call to moto as received, or with `body` in place of its own.
    async fn forward(&self, call: &Call, body: Option<Bytes>) -> Result<Upstream, Response> {
        self.send(call, &call.method, &call.path_and_query, body)
            .await
    }

    async fn send(
        &self,
        call: &Call,
        method: &Method,
        path_and_query: &str,
        body: Option<Bytes>,
    ) -> Result<Upstream, Response> {
        let base = self.upstream_for(&call.service);
        let uri = format!("{base}{path_and_query}");
        let mut builder = http::Request::builder().method(method.clone()).uri(&uri);
        for (name, value) in &call.headers {
            if !is_hop_by_hop(name.as_str()) {
                builder = builder.header(name, value);
            }
        }
        let body = if method == Method::GET || method == Method::DELETE {
            body.unwrap_or_default()
        } else {
            body.unwrap_or_else(|| call.body.clone())
        };
        let request = builder
            .body(Full::new(body))
            .map_err(|e| plain(500, &format!("cannot forward to {uri}: {e}")))?;
        let unreachable = |e: &dyn std::error::Error| {
            plain(
                502,
                &format!(
                    "the sandbox's AWS endpoint cannot reach {base} (is moto running?): {}",
                    causes_of(e)
                ),
            )
        };
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| unreachable(&e))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| unreachable(&e))?
            .to_bytes();
        Ok(Upstream {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    fn decorate_stage(&self, api: &str, stage: &mut Value) {
        let Some(name) = stage.get("stageName").and_then(Value::as_str) else {
            return;
        };
        if let Some(c) = self.overlay.canary(api, name)
            && let Some(map) = stage.as_object_mut()
        {
            map.insert("canarySettings".into(), c.to_json());
        }
    }

    async fn get_stage(&self, call: &Call, api: &str, _stage: &str) -> Response {
        let up = match self.forward(call, None).await {
            Ok(up) => up,
            Err(r) => return r,
        };
        self.stage_answer(api, up)
    }

    /// moto's answer for one stage, with its canary added when it is one.
    fn stage_answer(&self, api: &str, up: Upstream) -> Response {
        match up.json().filter(|_| up.ok()) {
            Some(mut stage) => {
                self.decorate_stage(api, &mut stage);
                up.with_json(&stage)
            }
            None => up.into_response(),
        }
    }

    async fn get_stages(&self, call: &Call, api: &str) -> Response {
        let up = match self.forward(call, None).await {
            Ok(up) => up,
            Err(r) => return r,
        };
        match up.json().filter(|_| up.ok()) {
            Some(mut doc) => {
                if let Some(items) = doc.get_mut("item").and_then(Value::as_array_mut) {
                    for stage in items {
                        self.decorate_stage(api, stage);
                    }
                }
                up.with_json(&doc)
            }
            None => up.into_response(),
        }
    }

    /// The API's deployments as moto lists them, oldest first.
    async fn deployment_ids(&self, api: &str) -> Result<HashSet<String>, Response> {
        let out = self
            .clients
            .apigateway
            .get_deployments()
            .rest_api_id(api)
            .limit(500)
            .send()
            .await
            .map_err(|e| sdk_failure("listing the API's deployments", &e))?;
        Ok(out
            .items()
            .iter()
            .filter_map(|d| d.id().map(str::to_string))
            .collect())
    }

    async fn stage_view(&self, api: &str, stage: &str) -> Result<Option<StageView>, Response> {
        match self
            .clients
            .apigateway
            .get_stage()
            .rest_api_id(api)
            .stage_name(stage)
            .send()
            .await
        {
            Ok(s) => Ok(Some(StageView {
                deployment_id: s.deployment_id().unwrap_or_default().to_string(),
                variables: s
                    .variables()
                    .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
                canary: self.overlay.canary(api, stage),
            })),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk_failure(format!("reading stage {stage}"), &e)),
        }
    }

    async fn create_deployment(&self, call: &Call, api: &str) -> Response {
        let mut body = match call.json_body() {
            Ok(b) => b,
            Err(r) => return r,
        };
        let stage = body
            .remove("stageName")
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|s| !s.is_empty());
        let canary = body.remove("canarySettings");
        let variables: BTreeMap<String, String> = body
            .remove("variables")
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let stage_description = body
            .remove("stageDescription")
            .and_then(|v| v.as_str().map(str::to_string));

        // The draft as it is now is what this deployment will serve. An API
        // moto does not know: let moto answer.
        let snapshot = match read_draft(&self.clients.apigateway, api).await {
            Ok(s) => s,
            Err(_) => return respond(self.forward(call, None).await),
        };
        if snapshot.methods.is_empty() {
            return apigw_error(
                400,
                "BadRequestException",
                "The REST API doesn't contain any methods",
            );
        }
        let canary = match canary.filter(|c| !c.is_null()) {
            None => None,
            Some(c) => match Canary::from_json(&c, "") {
                Ok(c) => Some(c),
                Err(e) => return apigw_error(400, "BadRequestException", &e),
            },
        };
        let current = match &stage {
            Some(s) => match self.stage_view(api, s).await {
                Ok(v) => v,
                Err(r) => return r,
            },
            None => None,
        };
        if let Some(canary_stage) = canary.as_ref().and(stage.as_ref()) {
            if current.is_none() {
                return apigw_error(
                    404,
                    "NotFoundException",
                    &format!(
                        "Invalid stage identifier specified: a canary needs an existing stage \
                         ({canary_stage})"
                    ),
                );
            }
        } else if canary.is_some() {
            return apigw_error(
                400,
                "BadRequestException",
                "canarySettings need a stageName: a canary runs on an existing stage",
            );
        }
        if canary.is_none()
            && let (Some(s), Some(view)) = (&stage, &current)
            && let Some(c) = &view.canary
        {
            return apigw_error(
                400,
                "BadRequestException",
                &format!(
                    "Stage {s} has a canary on deployment {}: promote or remove it before \
                     deploying to the stage",
                    c.deployment_id
                ),
            );
        }

        // moto would replace a named stage (variables lost): it only makes the
        // deployment, and the stage is pointed at it here.
        let up = match self
            .forward(call, Some(Bytes::from(Value::Object(body).to_string())))
            .await
        {
            Ok(up) => up,
            Err(r) => return r,
        };
        let Some(id) = up
            .json()
            .filter(|_| up.ok())
            .and_then(|d| d.get("id").and_then(Value::as_str).map(str::to_string))
        else {
            return up.into_response();
        };
        self.overlay.freeze(api, &id, snapshot);

        if let Some(stage) = &stage {
            let ag = &self.clients.apigateway;
            let result = if let Some(mut c) = canary {
                c.deployment_id = id.clone();
                self.overlay.set_canary(api, stage, Some(c));
                Ok(())
            } else if current.is_some() {
                let mut ops = vec![patch("/deploymentId", &id)];
                for (k, v) in &variables {
                    ops.push(patch(&format!("/variables/{k}"), v));
                }
                if let Some(d) = &stage_description {
                    ops.push(patch("/description", d));
                }
                ag.update_stage()
                    .rest_api_id(api)
                    .stage_name(stage)
                    .set_patch_operations(Some(ops))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| sdk_failure(format!("pointing stage {stage} at {id}"), &e))
            } else {
                ag.create_stage()
                    .rest_api_id(api)
                    .stage_name(stage)
                    .deployment_id(&id)
                    .set_variables((!variables.is_empty()).then(|| {
                        variables
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    }))
                    .set_description(stage_description.clone())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| sdk_failure(format!("creating stage {stage}"), &e))
            };
            if let Err(r) = result {
                return r;
            }
        }
        up.into_response()
    }

    async fn get_deployments(&self, call: &Call, _api: &str) -> Response {
        let limit = match call.query("limit") {
            None => 25,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=500).contains(&n) => n,
                _ => {
                    return apigw_error(
                        400,
                        "BadRequestException",
                        &format!("Invalid limit {l}: must be between 1 and 500"),
                    );
                }
            },
        };
        let up = match self.send(call, &Method::GET, &call.path, None).await {
            Ok(up) => up,
            Err(r) => return r,
        };
        let Some(doc) = up.json().filter(|_| up.ok()) else {
            return up.into_response();
        };
        let mut items: Vec<Value> = doc
            .get("item")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // Oldest first, ties by id: a stable order for the position token.
        items.sort_by(|a, b| {
            let date = |v: &Value| v.get("createdDate").and_then(Value::as_f64).unwrap_or(0.0);
            let id = |v: &Value| {
                v.get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            date(a).total_cmp(&date(b)).then_with(|| id(a).cmp(&id(b)))
        });
        let start = match call.query("position") {
            None | Some("") => 0,
            Some(p) => match items
                .iter()
                .position(|d| d.get("id").and_then(Value::as_str) == Some(p))
            {
                Some(i) => i,
                None => {
                    return apigw_error(
                        400,
                        "BadRequestException",
                        &format!("Invalid position {p}"),
                    );
                }
            },
        };
        let page: Vec<Value> = items.iter().skip(start).take(limit).cloned().collect();
        let mut out = json!({ "item": page });
        if let Some(next) = items.get(start + limit).and_then(|d| d.get("id"))
            && let Some(map) = out.as_object_mut()
        {
            map.insert("position".into(), next.clone());
        }
        up.with_json(&out)
    }

    async fn delete_deployment(&self, call: &Call, api: &str, id: &str) -> Response {
        let stages = match self
            .clients
            .apigateway
            .get_stages()
            .rest_api_id(api)
            .send()
            .await
        {
            Ok(s) => s,
            Err(e) => return sdk_failure("reading the API's stages", &e),
        };
        let mut users: Vec<String> = stages
            .item()
            .iter()
            .filter(|s| s.deployment_id() == Some(id))
            .filter_map(|s| s.stage_name().map(str::to_string))
            .collect();
        users.extend(
            self.overlay
                .canaries_on(api, id)
                .into_iter()
                .map(|s| format!("{s} (canary)")),
        );
        if !users.is_empty() {
            users.sort();
            return apigw_error(
                400,
                "BadRequestException",
                &format!(
                    "Active stages pointing to this deployment must be moved or deleted: {}",
                    users.join(", ")
                ),
            );
        }
        let up = match self.forward(call, None).await {
            Ok(up) => up,
            Err(r) => return r,
        };
        if up.ok() {
            self.overlay.forget_deployment(api, id);
        }
        up.into_response()
    }

    async fn create_stage(&self, call: &Call, api: &str) -> Response {
        let mut body = match call.json_body() {
            Ok(b) => b,
            Err(r) => return r,
        };
        let canary = body.remove("canarySettings").filter(|c| !c.is_null());
        let stage = body
            .get("stageName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let deployment = body
            .get("deploymentId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let known = match self.deployment_ids(api).await {
            Ok(k) => k,
            Err(r) => return r,
        };
        if !known.contains(&deployment) {
            return apigw_error(
                404,
                "NotFoundException",
                "Invalid Deployment identifier specified",
            );
        }
        let canary = match canary.map(|c| Canary::from_json(&c, &deployment)) {
            None => None,
            Some(Ok(c)) if known.contains(&c.deployment_id) => Some(c),
            Some(Ok(_)) => {
                return apigw_error(
                    404,
                    "NotFoundException",
                    "Invalid Deployment identifier specified for the canary",
                );
            }
            Some(Err(e)) => return apigw_error(400, "BadRequestException", &e),
        };
        let up = match self
            .forward(call, Some(Bytes::from(Value::Object(body).to_string())))
            .await
        {
            Ok(up) => up,
            Err(r) => return r,
        };
        if !up.ok() {
            return up.into_response();
        }
        if canary.is_some() {
            self.overlay.set_canary(api, &stage, canary);
        }
        self.stage_answer(api, up)
    }

    async fn update_stage(&self, call: &Call, api: &str, stage: &str) -> Response {
        let body = match call.json_body() {
            Ok(b) => b,
            Err(r) => return r,
        };
        let ops = body
            .get("patchOperations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut patches = Vec::with_capacity(ops.len());
        for op in &ops {
            match deployments::classify(op) {
                Ok(p) => patches.push(p),
                Err(refused) => return apigw_error(400, "BadRequestException", &refused.0),
            }
        }
        let mut view = match self.stage_view(api, stage).await {
            Ok(Some(v)) => v,
            Ok(None) => {
                return apigw_error(
                    404,
                    "NotFoundException",
                    "Invalid stage identifier specified",
                );
            }
            Err(r) => return r,
        };
        let needs_ids = patches.iter().any(|p| {
            matches!(
                p,
                StagePatch::Deployment(_)
                    | StagePatch::Canary(deployments::CanaryPatch::Deployment(_))
            )
        });
        let known = if needs_ids {
            match self.deployment_ids(api).await {
                Ok(k) => k,
                Err(r) => return r,
            }
        } else {
            HashSet::new()
        };
        let moto_ops = match deployments::apply(&mut view, &patches, &|id| known.contains(id)) {
            Ok(ops) => ops,
            Err(ApplyError::NotFound(m)) => return apigw_error(404, "NotFoundException", &m),
            Err(ApplyError::BadRequest(m)) => return apigw_error(400, "BadRequestException", &m),
        };
        let up = if moto_ops.is_empty() {
            self.send(call, &Method::GET, &call.path, None).await
        } else {
            let body = json!({ "patchOperations": moto_ops }).to_string();
            self.forward(call, Some(Bytes::from(body))).await
        };
        let up = match up {
            Ok(up) => up,
            Err(r) => return r,
        };
        if !up.ok() {
            return up.into_response();
        }
        self.overlay.set_canary(api, stage, view.canary);
        self.stage_answer(api, up)
    }

    async fn export(&self, call: &Call, api: &str, stage: &str, kind: &str) -> Response {
        if !matches!(kind, "oas30" | "swagger") {
            return apigw_error(
                400,
                "BadRequestException",
                &format!("Invalid export type {kind}: must be oas30 or swagger"),
            );
        }
        if call
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("yaml"))
        {
            return apigw_error(
                400,
                "BadRequestException",
                "the sandbox exports JSON only: ask with Accept: application/json",
            );
        }
        let ag = &self.clients.apigateway;
        let view = match self.stage_view(api, stage).await {
            Ok(Some(v)) => v,
            Ok(None) => {
                return apigw_error(
                    404,
                    "NotFoundException",
                    "Invalid stage identifier specified",
                );
            }
            Err(r) => return r,
        };
        let snapshot = match self
            .overlay
            .snapshot_or_freeze(ag, api, &view.deployment_id)
            .await
        {
            Ok(s) => s,
            Err(e) => return plain(502, &e.to_string()),
        };
        let name = match ag.get_rest_api().rest_api_id(api).send().await {
            Ok(a) => a.name().unwrap_or_default().to_string(),
            Err(e) => return sdk_failure(format!("reading API {api}"), &e),
        };
        let version = match ag
            .get_deployment()
            .rest_api_id(api)
            .deployment_id(&view.deployment_id)
            .send()
            .await
        {
            Ok(d) => d
                .created_date()
                .and_then(|t| std::time::SystemTime::try_from(*t).ok())
                .map(super::rfc3339)
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        let with_integrations = call
            .query("extensions")
            .is_some_and(|e| e.split(',').any(|x| x.trim() == "integrations"));
        let exported = ExportedApi {
            id: api,
            name: &name,
            region: &self.region,
            stage,
            version,
        };
        let Some(doc) = deployments::export(kind, &exported, &snapshot, with_integrations) else {
            return apigw_error(400, "BadRequestException", "Invalid export type");
        };
        Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{kind}_{stage}.json\""),
            )
            .body(Body::from(doc.to_string()))
            .unwrap_or_else(|_| plain(500, "cannot build the export"))
    }

    /// CreateFunction (`function` None: the name is in the body) or
    /// UpdateFunctionConfiguration: keeps `LoggingConfig.LogFormat`.
    async fn function_config_write(&self, call: &Call, function: Option<&str>) -> Response {
        let body = match serde_json::from_slice::<Value>(&call.body) {
            Ok(b) => b,
            Err(_) => return respond(self.forward(call, None).await),
        };
        let name = function.map(function_name).or_else(|| {
            body.get("FunctionName")
                .and_then(Value::as_str)
                .map(function_name)
        });
        let format = body
            .pointer("/LoggingConfig/LogFormat")
            .and_then(Value::as_str);
        if let Some(f) = format
            && !matches!(f, "Text" | "JSON")
        {
            return lambda_error(
                400,
                "InvalidParameterValueException",
                &format!(
                    "1 validation error detected: Value '{f}' at 'loggingConfig.logFormat' failed \
                     to satisfy constraint: Member must satisfy enum value set: [Text, JSON]"
                ),
            );
        }
        let up = match self.forward(call, None).await {
            Ok(up) => up,
            Err(r) => return r,
        };
        if up.ok()
            && let (Some(name), Some(format)) = (&name, format)
        {
            self.overlay.set_log_format(name, format);
        }
        match (name, up.json().filter(|_| up.ok())) {
            (Some(name), Some(mut doc)) => {
                self.add_logging_config(&name, &mut doc);
                up.with_json(&doc)
            }
            _ => up.into_response(),
        }
    }

    async fn function_read(&self, call: &Call, function: &str, whole: bool) -> Response {
        let up = match self.forward(call, None).await {
            Ok(up) => up,
            Err(r) => return r,
        };
        let name = function_name(function);
        match up.json().filter(|_| up.ok()) {
            Some(mut doc) => {
                if whole {
                    if let Some(config) = doc.get_mut("Configuration") {
                        self.add_logging_config(&name, config);
                    }
                } else {
                    self.add_logging_config(&name, &mut doc);
                }
                up.with_json(&doc)
            }
            None => up.into_response(),
        }
    }

    fn add_logging_config(&self, function: &str, config: &mut Value) {
        let format = self
            .overlay
            .log_format(function)
            .unwrap_or_else(|| "Text".into());
        let mut logging = json!({
            "LogFormat": format,
            "LogGroup": format!("/aws/lambda/{function}"),
        });
        if format == "JSON"
            && let Some(m) = logging.as_object_mut()
        {
            m.insert("ApplicationLogLevel".into(), json!("INFO"));
            m.insert("SystemLogLevel".into(), json!("INFO"));
        }
        if let Some(map) = config.as_object_mut() {
            map.insert("LoggingConfig".into(), logging);
        }
    }
}

fn patch(path: &str, value: &str) -> PatchOperation {
    PatchOperation::builder()
        .op(Op::Replace)
        .path(path)
        .value(value)
        .build()
}

/// `name`, a partial ARN or a full ARN (`arn:aws:lambda:R:A:function:name[:q]`) → name.
fn function_name(s: &str) -> String {
    match s.split_once(":function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest).to_string(),
        None => s.to_string(),
    }
}

/// The service in the SigV4 credential scope: `Credential=AK/DATE/REGION/SERVICE/aws4_request`.
fn signing_service(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?;
    let scope = credential.split([',', ' ']).next()?;
    scope.split('/').nth(3).map(str::to_string)
}

/// API Gateway's error shape: the type in `x-amzn-ErrorType`, a `message`.
fn apigw_error(status: u16, kind: &str, message: &str) -> Response {
    error_response(status, kind, json!({ "message": message }))
}

/// Lambda's error shape.
fn lambda_error(status: u16, kind: &str, message: &str) -> Response {
    error_response(status, kind, json!({ "Type": "User", "message": message }))
}

fn error_response(status: u16, kind: &str, body: Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(kind) {
        headers.insert("x-amzn-ErrorType", v);
    }
    response
}

/// The sandbox's own failure (moto unreachable, a broken request).
fn plain(status: u16, message: &str) -> Response {
    error_response(
        status,
        "ServiceUnavailableException",
        json!({ "message": message }),
    )
}

fn sdk_failure<E, R>(
    action: impl Into<String>,
    err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> Response
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    plain(
        502,
        &format!(
            "the sandbox's AWS endpoint, {}: {}",
            action.into(),
            causes(err)
        ),
    )
}

fn causes_of(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_service_from_the_credential_scope() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKID/20261202/us-east-1/apigateway/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=abc",
            ),
        );
        assert_eq!(signing_service(&h).as_deref(), Some("apigateway"));
        assert_eq!(signing_service(&HeaderMap::new()), None);
    }

    #[test]
    fn function_names_from_arns() {
        assert_eq!(function_name("f"), "f");
        assert_eq!(function_name("arn:aws:lambda:r:1:function:f:live"), "f");
        assert_eq!(function_name("123:function:f"), "f");
    }
}
