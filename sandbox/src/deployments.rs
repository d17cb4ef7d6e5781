//! What API Gateway keeps and moto does not: each deployment's frozen copy of
//! the API (its resources, methods and integrations), each stage's canary, and
//! each function's `LoggingConfig`. The AWS endpoint ([`super::endpoint`])
//! writes them as the control-plane calls pass; routing and the data plane read
//! them. Kept in memory: a sandbox started on an existing moto freezes a
//! deployment it never saw being made from the API's draft when it first meets
//! it (and says so), because that is the best it can know.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::SandboxError;
use super::aws::aws_error;

/// One method of one resource, as a deployment froze it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrozenMethod {
    pub path: String,
    pub http_method: String,
    pub integration: Option<FrozenIntegration>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrozenIntegration {
    /// `AWS_PROXY`, `AWS`, `HTTP`, … as the control plane writes it.
    pub r#type: String,
    pub uri: Option<String>,
    pub http_method: Option<String>,
}

/// The API as one deployment serves it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub methods: Vec<FrozenMethod>,
    /// Frozen from the draft when first seen rather than at CreateDeployment.
    pub late: bool,
}

impl Snapshot {
    /// The integration of `method` on the resource `path`; `ANY` answers for
    /// every method it is defined on.
    pub fn integration(&self, path: &str, method: &str) -> Option<&FrozenMethod> {
        let on_path = || self.methods.iter().filter(|m| m.path == path);
        on_path()
            .find(|m| m.http_method.eq_ignore_ascii_case(method))
            .or_else(|| on_path().find(|m| m.http_method == "ANY"))
    }

    pub fn has_path(&self, path: &str) -> bool {
        self.methods.iter().any(|m| m.path == path)
    }
}

/// `canarySettings` of a stage, as GetStage returns them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    pub deployment_id: String,
    pub percent_traffic: f64,
    pub stage_variable_overrides: BTreeMap<String, String>,
    pub use_stage_cache: bool,
}

impl Canary {
    pub fn to_json(&self) -> Value {
        json!(self)
    }

    /// Reads `canarySettings` from a request body (CreateDeployment, CreateStage).
    pub fn from_json(v: &Value, default_deployment: &str) -> Result<Canary, String> {
        let percent = match v.get("percentTraffic") {
            None | Some(Value::Null) => 0.0,
            Some(p) => p
                .as_f64()
                .ok_or_else(|| "canarySettings.percentTraffic must be a number".to_string())?,
        };
        check_percent(percent)?;
        let mut overrides = BTreeMap::new();
        if let Some(map) = v.get("stageVariableOverrides").and_then(Value::as_object) {
            for (k, val) in map {
                let text = val.as_str().ok_or_else(|| {
                    format!("canarySettings.stageVariableOverrides.{k} must be a string")
                })?;
                overrides.insert(k.clone(), text.to_string());
            }
        }
        Ok(Canary {
            deployment_id: v
                .get("deploymentId")
                .and_then(Value::as_str)
                .unwrap_or(default_deployment)
                .to_string(),
            percent_traffic: percent,
            stage_variable_overrides: overrides,
            use_stage_cache: v
                .get("useStageCache")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }
}

pub fn check_percent(p: f64) -> Result<(), String> {
    if p.is_finite() && (0.0..=100.0).contains(&p) {
        Ok(())
    } else {
        Err(format!(
            "Invalid percentTraffic value {p}: must be between 0.0 and 100.0"
        ))
    }
}

#[derive(Default)]
struct State {
    /// (API id, deployment id) → the frozen API.
    snapshots: HashMap<(String, String), Arc<Snapshot>>,
    /// (API id, stage) → its canary.
    canaries: HashMap<(String, String), Canary>,
    /// Function name → `LoggingConfig.LogFormat` (`Text` | `JSON`).
    log_formats: HashMap<String, String>,
}

/// The state API Gateway and Lambda keep beyond moto, shared by the AWS
/// endpoint (writer) and routing (reader).
#[derive(Default)]
pub struct Overlay {
    state: RwLock<State>,
}

impl Overlay {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn freeze(&self, api: &str, deployment: &str, snapshot: Snapshot) {
        self.write()
            .snapshots
            .insert((api.into(), deployment.into()), Arc::new(snapshot));
    }

    pub fn snapshot(&self, api: &str, deployment: &str) -> Option<Arc<Snapshot>> {
        self.read()
            .snapshots
            .get(&(api.to_string(), deployment.to_string()))
            .cloned()
    }

    pub fn forget_deployment(&self, api: &str, deployment: &str) {
        self.write()
            .snapshots
            .remove(&(api.to_string(), deployment.to_string()));
    }

    pub fn canary(&self, api: &str, stage: &str) -> Option<Canary> {
        self.read()
            .canaries
            .get(&(api.to_string(), stage.to_string()))
            .cloned()
    }

    pub fn set_canary(&self, api: &str, stage: &str, canary: Option<Canary>) {
        let key = (api.to_string(), stage.to_string());
        let mut state = self.write();
        match canary {
            Some(c) => state.canaries.insert(key, c),
            None => state.canaries.remove(&key),
        };
    }

    /// Stages whose canary serves `deployment`.
    pub fn canaries_on(&self, api: &str, deployment: &str) -> Vec<String> {
        self.read()
            .canaries
            .iter()
            .filter(|((a, _), c)| a == api && c.deployment_id == deployment)
            .map(|((_, stage), _)| stage.clone())
            .collect()
    }

    pub fn log_format(&self, function: &str) -> Option<String> {
        self.read().log_formats.get(function).cloned()
    }

    pub fn set_log_format(&self, function: &str, format: &str) {
        self.write()
            .log_formats
            .insert(function.to_string(), format.to_string());
    }

    /// The frozen API of `deployment`, freezing the draft now when this sandbox
    /// never saw that deployment being made.
    pub async fn snapshot_or_freeze(
        &self,
        apigateway: &aws_sdk_apigateway::Client,
        api: &str,
        deployment: &str,
    ) -> Result<Arc<Snapshot>, SandboxError> {
        if let Some(s) = self.snapshot(api, deployment) {
            return Ok(s);
        }
        let mut snapshot = read_draft(apigateway, api).await?;
        snapshot.late = true;
        eprintln!(
            "sandbox: deployment {deployment} of API {api} was made before this sandbox started: \
             it serves the API's draft as it is now"
        );
        self.freeze(api, deployment, snapshot);
        self.snapshot(api, deployment)
            .ok_or_else(|| SandboxError::Runtime("snapshot vanished".into()))
    }
}

/// The API's draft (GetResources with methods embedded), as CreateDeployment
/// freezes it.
pub async fn read_draft(
    apigateway: &aws_sdk_apigateway::Client,
    api: &str,
) -> Result<Snapshot, SandboxError> {
    let mut methods = Vec::new();
    let mut position: Option<String> = None;
    loop {
        let page = apigateway
            .get_resources()
            .rest_api_id(api)
            .limit(500)
            .embed("methods")
            .set_position(position.clone())
            .send()
            .await
            .map_err(|e| aws_error(format!("reading the resources of API {api}"), e))?;
        for resource in page.items() {
            let Some(path) = resource.path() else {
                continue;
            };
            let Some(resource_methods) = resource.resource_methods() else {
                continue;
            };
            let mut names: Vec<&String> = resource_methods.keys().collect();
            names.sort();
            for name in names {
                let integration =
                    resource_methods[name]
                        .method_integration()
                        .map(|i| FrozenIntegration {
                            r#type: i
                                .r#type()
                                .map(|t| t.as_str().to_string())
                                .unwrap_or_default(),
                            uri: i.uri().map(str::to_string),
                            http_method: i.http_method().map(str::to_string),
                        });
                methods.push(FrozenMethod {
                    path: path.to_string(),
                    http_method: name.clone(),
                    integration,
                });
            }
        }
        match page.position() {
            Some(p) if !p.is_empty() && Some(p) != position.as_deref() => {
                position = Some(p.to_string())
            }
            _ => break,
        }
    }
    Ok(Snapshot {
        methods,
        late: false,
    })
}

/// What a patch operation on a stage does, once classified.
#[derive(Debug, Clone, PartialEq)]
pub enum StagePatch {
    /// Goes to moto as written (variables, method settings, access logs, …).
    Moto(Value),
    Canary(CanaryPatch),
    /// `copy /canarySettings/deploymentId → /deploymentId`.
    PromoteDeployment,
    /// `copy /canarySettings/stageVariableOverrides → /variables`.
    PromoteVariables,
    /// `replace /deploymentId` (checked: the id must exist).
    Deployment(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum CanaryPatch {
    Percent(f64),
    Deployment(String),
    Override(String, String),
    RemoveOverride(String),
    UseStageCache(bool),
    Remove,
}

/// A patch operation API Gateway refuses, with its message.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused(pub String);

const CANARY_PATHS: &str = "[/canarySettings/percentTraffic, /canarySettings/deploymentId, \
/canarySettings/stageVariableOverrides/{name}, /canarySettings/useStageCache]";

/// Classifies one `patchOperations` entry of UpdateStage as API Gateway reads it.
pub fn classify(op: &Value) -> Result<StagePatch, Refused> {
    let verb = op.get("op").and_then(Value::as_str).unwrap_or_default();
    let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
    let from = op.get("from").and_then(Value::as_str);
    let value = op.get("value").and_then(Value::as_str);
    let invalid = || {
        Refused(format!(
            "Invalid patch path '{path}' specified for op '{verb}'. Must be one of: {CANARY_PATHS}"
        ))
    };
    let need_value = || {
        value
            .map(str::to_string)
            .ok_or_else(|| Refused(format!("Invalid null value for op '{verb}' on '{path}'")))
    };
    if verb == "copy" {
        return match (from, path) {
            (Some("/canarySettings/deploymentId"), "/deploymentId") => {
                Ok(StagePatch::PromoteDeployment)
            }
            (Some("/canarySettings/stageVariableOverrides"), "/variables") => {
                Ok(StagePatch::PromoteVariables)
            }
            _ => Err(Refused(format!(
                "Invalid copy operation from '{}' to '{path}'. Copy is supported only from \
                 /canarySettings/deploymentId to /deploymentId and from \
                 /canarySettings/stageVariableOverrides to /variables",
                from.unwrap_or("")
            ))),
        };
    }
    if path == "/canarySettings" {
        return if verb == "remove" {
            Ok(StagePatch::Canary(CanaryPatch::Remove))
        } else {
            Err(invalid())
        };
    }
    if let Some(field) = path.strip_prefix("/canarySettings/") {
        if let Some(name) = field.strip_prefix("stageVariableOverrides/") {
            if name.is_empty() {
                return Err(invalid());
            }
            return match verb {
                "replace" => Ok(StagePatch::Canary(CanaryPatch::Override(
                    name.to_string(),
                    need_value()?,
                ))),
                "remove" => Ok(StagePatch::Canary(CanaryPatch::RemoveOverride(
                    name.to_string(),
                ))),
                _ => Err(invalid()),
            };
        }
        if verb != "replace" {
            return Err(invalid());
        }
        return match field {
            "percentTraffic" => {
                let text = need_value()?;
                let p: f64 = text.parse().map_err(|_| {
                    Refused(format!(
                        "Invalid percentTraffic value '{text}': not a number"
                    ))
                })?;
                check_percent(p).map_err(Refused)?;
                Ok(StagePatch::Canary(CanaryPatch::Percent(p)))
            }
            "deploymentId" => Ok(StagePatch::Canary(CanaryPatch::Deployment(need_value()?))),
            "useStageCache" => Ok(StagePatch::Canary(CanaryPatch::UseStageCache(
                need_value()?.eq_ignore_ascii_case("true"),
            ))),
            _ => Err(invalid()),
        };
    }
    if path == "/deploymentId" {
        return if verb == "replace" {
            Ok(StagePatch::Deployment(need_value()?))
        } else {
            Err(Refused(format!(
                "Invalid patch path '{path}' specified for op '{verb}'"
            )))
        };
    }
    if path == "/*/*/logging/loglevel" && verb == "replace" {
        let level = need_value()?;
        if !matches!(
            level.to_ascii_uppercase().as_str(),
            "OFF" | "ERROR" | "INFO"
        ) {
            return Err(Refused(format!(
                "Invalid method setting value for logging/loglevel: '{level}'. \
                 Must be one of: [OFF, ERROR, INFO]"
            )));
        }
    }
    if path == "/accessLogSettings/format" && verb == "replace" {
        let format = need_value()?;
        if !(format.contains("$context.requestId") || format.contains("$context.extendedRequestId"))
        {
            return Err(Refused(
                "Access Log format must contain at least one of either context.requestId or \
                 context.extendedRequestId"
                    .into(),
            ));
        }
    }
    if path == "/accessLogSettings/destinationArn" && verb == "replace" {
        let arn = need_value()?;
        if log_group_of_arn(&arn).is_none() {
            return Err(Refused(format!(
                "Invalid ARN specified for access logs destination: {arn} (expected \
                 arn:aws:logs:REGION:ACCOUNT:log-group:NAME)"
            )));
        }
    }
    Ok(StagePatch::Moto(op.clone()))
}

/// `arn:aws:logs:{region}:{account}:log-group:{name}[:*]` → `name`.
pub fn log_group_of_arn(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let mut parts = rest.splitn(6, ':');
    let (_partition, service, _region, _account, kind) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let name = parts.next()?;
    let name = name.strip_suffix(":*").unwrap_or(name);
    (service == "logs" && kind == "log-group" && !name.is_empty()).then_some(name)
}

/// The stage's view while one UpdateStage is applied: its deployment, its
/// variables and its canary.
#[derive(Debug, Clone, PartialEq)]
pub struct StageView {
    pub deployment_id: String,
    pub variables: BTreeMap<String, String>,
    pub canary: Option<Canary>,
}

/// Applies the classified operations in order to `view`; returns the
/// operations moto must apply (in order) to match. `exists` says whether a
/// deployment id is known.
pub fn apply(
    view: &mut StageView,
    patches: &[StagePatch],
    exists: &dyn Fn(&str) -> bool,
) -> Result<Vec<Value>, ApplyError> {
    let mut moto = Vec::new();
    for patch in patches {
        match patch {
            StagePatch::Moto(op) => {
                // Keep our copy of the variables in step, for later copies.
                let verb = op.get("op").and_then(Value::as_str).unwrap_or_default();
                let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
                if let Some(name) = path.strip_prefix("/variables/") {
                    match (verb, op.get("value").and_then(Value::as_str)) {
                        ("replace", Some(v)) => {
                            view.variables.insert(name.to_string(), v.to_string());
                        }
                        ("remove", _) => {
                            view.variables.remove(name);
                        }
                        _ => {}
                    }
                }
                moto.push(op.clone());
            }
            StagePatch::Deployment(id) => {
                if !exists(id) {
                    return Err(ApplyError::NotFound(
                        "Invalid Deployment identifier specified".into(),
                    ));
                }
                if let Some(c) = &view.canary
                    && &c.deployment_id != id
                    && &view.deployment_id != id
                {
                    return Err(ApplyError::BadRequest(format!(
                        "The stage has a canary on deployment {}: promote it (copy \
                         /canarySettings/deploymentId to /deploymentId) or remove \
                         /canarySettings before moving the stage to another deployment",
                        c.deployment_id
                    )));
                }
                view.deployment_id = id.clone();
                moto.push(replace("/deploymentId", id));
            }
            StagePatch::PromoteDeployment => {
                let Some(c) = &view.canary else {
                    return Err(ApplyError::BadRequest(
                        "Cannot copy from /canarySettings/deploymentId: the stage has no canary"
                            .into(),
                    ));
                };
                view.deployment_id = c.deployment_id.clone();
                moto.push(replace("/deploymentId", &c.deployment_id));
            }
            StagePatch::PromoteVariables => {
                let Some(c) = &view.canary else {
                    return Err(ApplyError::BadRequest(
                        "Cannot copy from /canarySettings/stageVariableOverrides: the stage has \
                         no canary"
                            .into(),
                    ));
                };
                for (k, v) in &c.stage_variable_overrides {
                    view.variables.insert(k.clone(), v.clone());
                    moto.push(replace(&format!("/variables/{k}"), v));
                }
            }
            StagePatch::Canary(CanaryPatch::Remove) => {
                view.canary = None;
            }
            StagePatch::Canary(change) => {
                let canary = view.canary.get_or_insert_with(|| Canary {
                    deployment_id: view.deployment_id.clone(),
                    percent_traffic: 0.0,
                    stage_variable_overrides: BTreeMap::new(),
                    use_stage_cache: false,
                });
                match change {
                    CanaryPatch::Percent(p) => canary.percent_traffic = *p,
                    CanaryPatch::Deployment(id) => {
                        if !exists(id) {
                            return Err(ApplyError::NotFound(
                                "Invalid Deployment identifier specified".into(),
                            ));
                        }
                        canary.deployment_id = id.clone();
                    }
                    CanaryPatch::Override(k, v) => {
                        canary.stage_variable_overrides.insert(k.clone(), v.clone());
                    }
                    CanaryPatch::RemoveOverride(k) => {
                        canary.stage_variable_overrides.remove(k);
                    }
                    CanaryPatch::UseStageCache(b) => canary.use_stage_cache = *b,
                    CanaryPatch::Remove => {}
                }
            }
        }
    }
    Ok(moto)
}

#[derive(Debug, Clone, PartialEq)]
pub enum ApplyError {
    NotFound(String),
    BadRequest(String),
}

fn replace(path: &str, value: &str) -> Value {
    json!({ "op": "replace", "path": path, "value": value })
}

/// GetExport of a stage from its deployment's snapshot: OpenAPI 3.0 (`oas30`)
/// or Swagger 2.0 (`swagger`), with `x-amazon-apigateway-integration` per
/// method when `integrations` is among the extensions.
pub fn export(
    kind: &str,
    api: &ExportedApi<'_>,
    snapshot: &Snapshot,
    with_integrations: bool,
) -> Option<Value> {
    let mut paths = Map::new();
    for method in &snapshot.methods {
        let entry = paths
            .entry(method.path.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        let key = if method.http_method == "ANY" {
            "x-amazon-apigateway-any-method".to_string()
        } else {
            method.http_method.to_ascii_lowercase()
        };
        let mut operation = Map::new();
        let params: Vec<Value> = path_parameters(&method.path)
            .into_iter()
            .map(|name| match kind {
                "oas30" => json!({"name": name, "in": "path", "required": true,
                                  "schema": {"type": "string"}}),
                _ => json!({"name": name, "in": "path", "required": true, "type": "string"}),
            })
            .collect();
        if !params.is_empty() {
            operation.insert("parameters".into(), Value::Array(params));
        }
        operation.insert("responses".into(), json!({}));
        if with_integrations && let Some(i) = &method.integration {
            let mut integration = Map::new();
            integration.insert("type".into(), json!(i.r#type.to_ascii_lowercase()));
            if let Some(uri) = &i.uri {
                integration.insert("uri".into(), json!(uri));
            }
            if let Some(m) = &i.http_method {
                integration.insert("httpMethod".into(), json!(m));
            }
            integration.insert("passthroughBehavior".into(), json!("when_no_match"));
            operation.insert(
                "x-amazon-apigateway-integration".into(),
                Value::Object(integration),
            );
        }
        if let Some(map) = entry.as_object_mut() {
            map.insert(key, Value::Object(operation));
        }
    }
    let host = format!("{}.execute-api.{}.amazonaws.com", api.id, api.region);
    let info = json!({ "title": api.name, "version": api.version });
    match kind {
        "oas30" => Some(json!({
            "openapi": "3.0.1",
            "info": info,
            "servers": [{
                "url": format!("https://{host}/{{basePath}}"),
                "variables": { "basePath": { "default": api.stage } }
            }],
            "paths": paths,
            "components": {}
        })),
        "swagger" => Some(json!({
            "swagger": "2.0",
            "info": info,
            "host": host,
            "basePath": format!("/{}", api.stage),
            "schemes": ["https"],
            "paths": paths
        })),
        _ => None,
    }
}

pub struct ExportedApi<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub region: &'a str,
    pub stage: &'a str,
    /// The deployment's date, as AWS puts it in `info.version`.
    pub version: String,
}

fn path_parameters(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|s| s.trim_end_matches('+').to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(v: Value) -> Result<StagePatch, Refused> {
        classify(&v)
    }

    fn view() -> StageView {
        StageView {
            deployment_id: "d1".into(),
            variables: BTreeMap::from([("env".to_string(), "".to_string())]),
            canary: None,
        }
    }

    #[test]
    fn classifies_the_operations_aws_accepts() {
        assert_eq!(
            op(json!({"op":"replace","path":"/canarySettings/percentTraffic","value":"25"})),
            Ok(StagePatch::Canary(CanaryPatch::Percent(25.0)))
        );
        assert_eq!(
            op(json!({"op":"copy","from":"/canarySettings/deploymentId","path":"/deploymentId"})),
            Ok(StagePatch::PromoteDeployment)
        );
        assert_eq!(
            op(
                json!({"op":"copy","from":"/canarySettings/stageVariableOverrides","path":"/variables"})
            ),
            Ok(StagePatch::PromoteVariables)
        );
        assert_eq!(
            op(json!({"op":"remove","path":"/canarySettings"})),
            Ok(StagePatch::Canary(CanaryPatch::Remove))
        );
        assert!(matches!(
            op(json!({"op":"replace","path":"/variables/env","value":"x"})),
            Ok(StagePatch::Moto(_))
        ));
    }

    #[test]
    fn refuses_the_operations_aws_refuses() {
        for bad in [
            json!({"op":"add","path":"/canarySettings/percentTraffic","value":"25"}),
            json!({"op":"replace","path":"/canarySettings/percentTraffic","value":"101"}),
            json!({"op":"replace","path":"/canarySettings/percentTraffic","value":"abc"}),
            json!({"op":"replace","path":"/canarySettings/nope","value":"1"}),
            json!({"op":"copy","from":"/deploymentId","path":"/canarySettings/deploymentId"}),
            json!({"op":"copy","from":"/variables","path":"/canarySettings/stageVariableOverrides"}),
            json!({"op":"replace","path":"/canarySettings","value":"{}"}),
            json!({"op":"replace","path":"/*/*/logging/loglevel","value":"DEBUG"}),
            json!({"op":"replace","path":"/accessLogSettings/format","value":"$context.status"}),
            json!({"op":"replace","path":"/accessLogSettings/destinationArn","value":"my-group"}),
        ] {
            assert!(op(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_canary_is_promoted_by_the_two_copies_and_ended_by_remove() {
        let mut v = view();
        let exists = |id: &str| ["d1", "d2"].contains(&id);
        let start = [
            StagePatch::Canary(CanaryPatch::Deployment("d2".into())),
            StagePatch::Canary(CanaryPatch::Percent(10.0)),
            StagePatch::Canary(CanaryPatch::Override("env".into(), "canary-".into())),
        ];
        assert_eq!(apply(&mut v, &start, &exists), Ok(vec![]));
        assert_eq!(v.deployment_id, "d1");
        assert_eq!(v.canary.as_ref().map(|c| c.percent_traffic), Some(10.0));
        let promote = [
            StagePatch::PromoteDeployment,
            StagePatch::PromoteVariables,
            StagePatch::Canary(CanaryPatch::Percent(0.0)),
        ];
        let moto = apply(&mut v, &promote, &exists).unwrap();
        assert_eq!(
            moto,
            vec![
                replace("/deploymentId", "d2"),
                replace("/variables/env", "canary-")
            ]
        );
        assert_eq!(v.deployment_id, "d2");
        assert_eq!(v.variables["env"], "canary-");
        apply(&mut v, &[StagePatch::Canary(CanaryPatch::Remove)], &exists).unwrap();
        assert_eq!(v.canary, None);
    }

    #[test]
    fn unknown_deployments_and_moves_under_a_canary_are_refused() {
        let exists = |id: &str| ["d1", "d2", "d3"].contains(&id);
        let mut v = view();
        assert!(matches!(
            apply(&mut v, &[StagePatch::Deployment("zz".into())], &exists),
            Err(ApplyError::NotFound(_))
        ));
        v.canary = Some(Canary::from_json(&json!({"deploymentId":"d2"}), "d1").unwrap());
        assert!(matches!(
            apply(&mut v, &[StagePatch::Deployment("d3".into())], &exists),
            Err(ApplyError::BadRequest(_))
        ));
        assert!(apply(&mut v, &[StagePatch::Deployment("d2".into())], &exists).is_ok());
    }

    #[test]
    fn reads_log_group_arns() {
        assert_eq!(
            log_group_of_arn("arn:aws:logs:us-east-1:123456789012:log-group:access/users"),
            Some("access/users")
        );
        assert_eq!(
            log_group_of_arn("arn:aws:logs:us-east-1:1:log-group:g:*"),
            Some("g")
        );
        assert_eq!(log_group_of_arn("arn:aws:s3:::bucket"), None);
    }

    #[test]
    fn exports_integrations_per_method() {
        let snapshot = Snapshot {
            methods: vec![FrozenMethod {
                path: "/user/{id}".into(),
                http_method: "ANY".into(),
                integration: Some(FrozenIntegration {
                    r#type: "AWS_PROXY".into(),
                    uri: Some("arn:x".into()),
                    http_method: Some("POST".into()),
                }),
            }],
            late: false,
        };
        let api = ExportedApi {
            id: "abc",
            name: "users",
            region: "us-east-1",
            stage: "test",
            version: "2026-12-02T00:00:00Z".into(),
        };
        let doc = export("oas30", &api, &snapshot, true).unwrap();
        let op = &doc["paths"]["/user/{id}"]["x-amazon-apigateway-any-method"];
        assert_eq!(op["x-amazon-apigateway-integration"]["uri"], "arn:x");
        assert_eq!(op["x-amazon-apigateway-integration"]["type"], "aws_proxy");
        assert_eq!(op["parameters"][0]["name"], "id");
        let bare = export("swagger", &api, &snapshot, false).unwrap();
        assert_eq!(bare["basePath"], "/test");
        assert!(
            bare["paths"]["/user/{id}"]["x-amazon-apigateway-any-method"]
                .get("x-amazon-apigateway-integration")
                .is_none()
        );
        assert!(export("raml", &api, &snapshot, true).is_none());
    }
}
