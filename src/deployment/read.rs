//! Reading a [`Deployment`] through the real SDK: API Gateway (the API, its
//! stages, each stage's export and the draft), Lambda (each function and its
//! resource-based policy), IAM (the execution roles' policies, simulated
//! where the account allows it), DynamoDB (DescribeTable) and CloudWatch
//! Logs (DescribeLogGroups).
//!
//! A missing function, table or log group is a fact of the model (audit
//! turns it into a finding); a refused or failed call is an error that
//! names the call and the permission.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_apigateway::types::Stage;

use super::export::{self, Route};
use super::uri::{self, FunctionRef};
use super::{
    Canary, Deployment, Function, Logging, Permission, RestApi, StageRoute, StageView,
    TABLE_ACTIONS, Table, TableAccess,
};
use crate::aws::ControlPlane;
use crate::error::Error;
use crate::policy::{self, Decision, Policy};

/// How a function's table name follows from its environment: `{NAME}` is
/// the function's environment variable NAME (unset: empty), `{stage}` the
/// stage's name, `{function}` the function's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRule(pub String);

impl Default for TableRule {
    /// The seed's convention: `Environment = "test-"` → `test-User`.
    fn default() -> TableRule {
        TableRule("{Environment}User".into())
    }
}

impl TableRule {
    /// The environment variables the rule reads.
    pub fn variables(&self) -> Vec<String> {
        placeholders(&self.0)
            .into_iter()
            .filter(|p| p != "stage" && p != "function")
            .collect()
    }

    pub fn table(
        &self,
        environment: &BTreeMap<String, String>,
        stage: &str,
        function: &str,
    ) -> String {
        let mut out = self.0.clone();
        for name in placeholders(&self.0) {
            let value = match name.as_str() {
                "stage" => stage,
                "function" => function,
                other => environment.get(other).map_or("", String::as_str),
            };
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }
}

fn placeholders(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let name = &after[..close];
        if !name.is_empty() && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
        rest = &after[close + 1..];
    }
    names
}

/// Reads the API named `api` (a name or an id), the `stages` asked for
/// (none: every stage), and everything they lead to.
pub async fn read(
    aws: &ControlPlane,
    api: &str,
    stages: &[String],
    rule: &TableRule,
) -> Result<Deployment, Error> {
    let rest_api = find_api(aws, api).await?;
    let mut notes = Vec::new();
    let all = read_stages(aws, &rest_api).await?;
    for wanted in stages {
        if !all.iter().any(|s| s.stage_name() == Some(wanted.as_str())) {
            let names: Vec<&str> = all.iter().filter_map(|s| s.stage_name()).collect();
            return Err(Error::Usage(format!(
                "REST API {} ({}) has no stage {wanted:?}; its stages: {}",
                rest_api.name,
                rest_api.id,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        }
    }
    let draft = read_draft(aws, &rest_api).await?;
    let mut views = Vec::new();
    for stage in &all {
        let Some(name) = stage.stage_name() else {
            continue;
        };
        if !stages.is_empty() && !stages.iter().any(|s| s == name) {
            continue;
        }
        views.push(stage_view(aws, &rest_api, stage, &draft, &mut notes).await?);
    }

    // Each function once, whichever stages name it.
    let mut refs: Vec<(FunctionRef, String)> = Vec::new();
    for view in &views {
        for route in &view.routes {
            if let Some(f) = &route.function
                && !refs.iter().any(|(r, _)| r.arn == f.arn)
            {
                refs.push((f.clone(), view.name.clone()));
            }
        }
    }
    let account = refs
        .first()
        .map(|(f, _)| f.account.clone())
        .unwrap_or_default();
    let mut functions = Vec::new();
    for (f, stage) in &refs {
        functions.push(read_function(aws, f, stage, rule).await?);
    }

    let mut tables = Vec::new();
    let names: BTreeSet<String> = functions.iter().filter_map(|f| f.table.clone()).collect();
    for name in names {
        tables.push(read_table(aws, &name, &account).await?);
    }

    let roles: BTreeSet<String> = functions.iter().filter_map(|f| f.role.clone()).collect();
    let mut simulate = true;
    let mut access_by_role = BTreeMap::new();
    for role in roles {
        let access = role_access(aws, &role, &tables, &mut simulate, &mut notes).await?;
        access_by_role.insert(role, access);
    }
    for f in &mut functions {
        if let Some(role) = &f.role
            && let Some(access) = access_by_role.get(role)
        {
            f.access = access.clone();
        }
    }

    Ok(Deployment {
        rest_api,
        region: aws.region.clone(),
        account,
        table_rule: rule.0.clone(),
        stages: views,
        functions,
        tables,
        notes,
    })
}

/// The API by id or by name. An unknown one lists the APIs; a name two APIs
/// share lists their ids (exit 2 either way: the user must say which).
pub async fn find_api(aws: &ControlPlane, wanted: &str) -> Result<RestApi, Error> {
    let ag = &aws.apigateway;
    let mut apis = Vec::new();
    let mut position: Option<String> = None;
    loop {
        let page = ag
            .get_rest_apis()
            .limit(500)
            .set_position(position.clone())
            .send()
            .await
            .map_err(|e| ag.error("GetRestApis", "the account's REST APIs", &e))?;
        for api in page.items() {
            if let Some(id) = api.id() {
                apis.push(RestApi {
                    id: id.to_string(),
                    name: api.name().unwrap_or_default().to_string(),
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
    if let Some(api) = apis.iter().find(|a| a.id == wanted) {
        return Ok(api.clone());
    }
    let named: Vec<&RestApi> = apis.iter().filter(|a| a.name == wanted).collect();
    match named.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::Usage(format!(
            "no REST API is named or has the id {wanted:?} in {}; the APIs: {}",
            aws.region,
            if apis.is_empty() {
                "none".to_string()
            } else {
                apis.iter()
                    .map(|a| format!("{} ({})", a.name, a.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ))),
        many => Err(Error::Usage(format!(
            "{} REST APIs are named {wanted:?}: pass one of their ids with --rest-api: {}",
            many.len(),
            many.iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

async fn read_stages(aws: &ControlPlane, api: &RestApi) -> Result<Vec<Stage>, Error> {
    let ag = &aws.apigateway;
    let out = ag
        .get_stages()
        .rest_api_id(&api.id)
        .send()
        .await
        .map_err(|e| ag.error("GetStages", &format!("REST API {}", api.id), &e))?;
    let mut stages = out.item().to_vec();
    stages.sort_by(|a, b| a.stage_name().cmp(&b.stage_name()));
    Ok(stages)
}

/// The draft's routes: GetResources with the methods embedded, and
/// GetIntegration where the embedding left the integration out.
async fn read_draft(aws: &ControlPlane, api: &RestApi) -> Result<Vec<Route>, Error> {
    let ag = &aws.apigateway;
    let mut routes = Vec::new();
    let mut position: Option<String> = None;
    loop {
        let page = ag
            .get_resources()
            .rest_api_id(&api.id)
            .limit(500)
            .embed("methods")
            .set_position(position.clone())
            .send()
            .await
            .map_err(|e| ag.error("GetResources", &format!("REST API {}", api.id), &e))?;
        for resource in page.items() {
            let (Some(path), Some(id)) = (resource.path(), resource.id()) else {
                continue;
            };
            let Some(methods) = resource.resource_methods() else {
                continue;
            };
            for (method, m) in methods {
                let mut integration = m.method_integration().map(|i| {
                    (
                        i.r#type().map(|t| t.as_str().to_ascii_lowercase()),
                        i.uri().map(str::to_string),
                    )
                });
                if integration.is_none() {
                    integration = match ag
                        .get_integration()
                        .rest_api_id(&api.id)
                        .resource_id(id)
                        .http_method(method)
                        .send()
                        .await
                    {
                        Ok(i) => Some((
                            i.r#type().map(|t| t.as_str().to_ascii_lowercase()),
                            i.uri().map(str::to_string),
                        )),
                        Err(e)
                            if e.as_service_error()
                                .is_some_and(|e| e.is_not_found_exception()) =>
                        {
                            None
                        }
                        Err(e) => {
                            return Err(ag
                                .error("GetIntegration", &format!("{method} {path}"), &e)
                                .into());
                        }
                    };
                }
                let (integration_type, uri) = integration.unwrap_or((None, None));
                routes.push(Route {
                    method: method.to_ascii_uppercase(),
                    path: path.to_string(),
                    integration_type,
                    uri,
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
    routes.sort_by(|a, b| (&a.path, &a.method).cmp(&(&b.path, &b.method)));
    Ok(routes)
}

/// What the stage serves: its export with integrations, or the draft where
/// the export has none (moto, LocalStack), said in a note.
async fn served_routes(
    aws: &ControlPlane,
    api: &RestApi,
    stage: &str,
) -> Result<Result<Vec<Route>, String>, Error> {
    let ag = &aws.apigateway;
    let answer = ag
        .get_export()
        .rest_api_id(&api.id)
        .stage_name(stage)
        .export_type("oas30")
        .parameters("extensions", "integrations")
        .accepts("application/json")
        .send()
        .await;
    let out = match answer {
        Ok(out) => out,
        Err(e) => {
            let err = ag.error("GetExport", &format!("stage {stage}"), &e);
            // A refusal is the user's to fix; an export the service cannot
            // make (an emulator's) is a reason to read the draft.
            if let crate::error::AwsFailure::Service { code } = &err.failure
                && code.contains("AccessDenied")
            {
                return Err(err.into());
            }
            return Ok(Err(format!("GetExport failed ({})", err.message)));
        }
    };
    let doc: Option<serde_json::Value> = out
        .body()
        .and_then(|b| serde_json::from_slice(b.as_ref()).ok());
    match doc.as_ref().and_then(export::parse) {
        Some(e) if e.has_integrations => Ok(Ok(e.routes)),
        Some(e) if e.routes.is_empty() => Ok(Err("its export lists no routes".into())),
        Some(_) => Ok(Err("its export carries no integrations".into())),
        None => Ok(Err("its export is not OpenAPI JSON".into())),
    }
}

async fn stage_view(
    aws: &ControlPlane,
    api: &RestApi,
    stage: &Stage,
    draft: &[Route],
    notes: &mut Vec<String>,
) -> Result<StageView, Error> {
    let name = stage.stage_name().unwrap_or_default().to_string();
    let variables: BTreeMap<String, String> = stage
        .variables()
        .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let canary = stage.canary_settings().map(|c| Canary {
        deployment_id: c.deployment_id().map(str::to_string),
        percent_traffic: c.percent_traffic(),
        variable_overrides: c
            .stage_variable_overrides()
            .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    });
    let all_methods = stage.method_settings().and_then(|m| m.get("*/*"));
    let logging = Logging {
        level: all_methods
            .and_then(|m| m.logging_level())
            .unwrap_or("OFF")
            .to_ascii_uppercase(),
        data_trace: all_methods.is_some_and(|m| m.data_trace_enabled()),
        access_log_destination: stage
            .access_log_settings()
            .and_then(|a| a.destination_arn())
            .map(str::to_string),
    };
    let (routes, routes_from, draft_differs) = match served_routes(aws, api, &name).await? {
        Ok(served) => {
            let differs = differences(&served, draft);
            (served, "export", differs)
        }
        Err(why) => {
            notes.push(format!(
                "Stage {name}'s routes were read from the draft, not from what it serves: \
                 {why}; a change not yet deployed would go unseen."
            ));
            (draft.to_vec(), "draft", Vec::new())
        }
    };
    let routes = routes
        .into_iter()
        .map(|route| {
            let resolved = route.uri.as_deref().map(|u| uri::substitute(u, &variables));
            let function = resolved.as_ref().and_then(|r| uri::lambda_function(&r.uri));
            StageRoute {
                resolved_uri: resolved.as_ref().map(|r| r.uri.clone()),
                unset_variables: resolved.map(|r| r.unset).unwrap_or_default(),
                function,
                route,
            }
        })
        .collect();
    Ok(StageView {
        name,
        deployment_id: stage.deployment_id().map(str::to_string),
        variables,
        canary,
        logging,
        routes_from: routes_from.into(),
        routes,
        draft_differs,
    })
}

/// Where the draft and what a stage serves disagree, a phrase each.
fn differences(served: &[Route], draft: &[Route]) -> Vec<String> {
    let mut out = Vec::new();
    for d in draft {
        match served
            .iter()
            .find(|s| s.method == d.method && s.path == d.path)
        {
            None => out.push(format!("{}: in the draft, not deployed", d.label())),
            Some(s) if s.uri != d.uri => out.push(format!(
                "{}: the draft's integration ({}) differs from the deployed one ({})",
                d.label(),
                d.uri.as_deref().unwrap_or("none"),
                s.uri.as_deref().unwrap_or("none")
            )),
            Some(_) => {}
        }
    }
    for s in served {
        if !draft
            .iter()
            .any(|d| d.method == s.method && d.path == s.path)
        {
            out.push(format!(
                "{}: deployed, since removed from the draft",
                s.label()
            ));
        }
    }
    out
}

async fn read_function(
    aws: &ControlPlane,
    f: &FunctionRef,
    stage: &str,
    rule: &TableRule,
) -> Result<Function, Error> {
    let lambda = &aws.lambda;
    let lookup = f.lookup_name();
    let mut function = Function {
        arn: f.arn.clone(),
        name: f.name.clone(),
        qualifier: f.qualifier.clone(),
        found: false,
        version: None,
        code_sha256: None,
        role: None,
        environment: BTreeMap::new(),
        other_environment: Vec::new(),
        table: None,
        log_group: format!("/aws/lambda/{}", f.name),
        log_group_exists: false,
        log_format: None,
        invoke_permissions: Vec::new(),
        access: Vec::new(),
    };
    let answer = lambda.get_function().function_name(&lookup).send().await;
    let out = match answer {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            return Ok(function);
        }
        Err(e) => {
            return Err(lambda
                .error("GetFunction", &format!("function {lookup}"), &e)
                .into());
        }
    };
    function.found = true;
    if let Some(c) = out.configuration() {
        function.version = c.version().map(str::to_string);
        function.code_sha256 = c.code_sha256().map(str::to_string);
        function.role = c.role().map(str::to_string);
        let wanted = rule.variables();
        if let Some(vars) = c.environment().and_then(|e| e.variables()) {
            let mut names: Vec<String> = Vec::new();
            for (k, v) in vars {
                if wanted.contains(k) {
                    function.environment.insert(k.clone(), v.clone());
                } else {
                    names.push(k.clone());
                }
            }
            names.sort();
            function.other_environment = names;
        }
        if let Some(l) = c.logging_config() {
            function.log_format = l.log_format().map(|f| f.as_str().to_string());
            if let Some(group) = l.log_group() {
                function.log_group = group.to_string();
            }
        }
    }
    function.table = Some(rule.table(&function.environment, stage, &function.name));
    function.invoke_permissions = invoke_permissions(aws, &lookup).await?;
    function.log_group_exists = log_group_exists(aws, &function.log_group).await?;
    Ok(function)
}

/// The statements of the function's resource-based policy that let API
/// Gateway call `lambda:InvokeFunction`.
async fn invoke_permissions(aws: &ControlPlane, function: &str) -> Result<Vec<Permission>, Error> {
    let lambda = &aws.lambda;
    let policy = match lambda.get_policy().function_name(function).send().await {
        Ok(out) => out.policy().map(str::to_string),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            None
        }
        Err(e) => {
            return Err(lambda
                .error("GetPolicy", &format!("function {function}"), &e)
                .into());
        }
    };
    Ok(policy
        .map(|p| api_gateway_statements(&p))
        .unwrap_or_default())
}

/// Allow statements for `apigateway.amazonaws.com` on `lambda:InvokeFunction`
/// (or `lambda:*`), with their SourceArn.
pub fn api_gateway_statements(policy: &str) -> Vec<Permission> {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(policy) else {
        return Vec::new();
    };
    let statements = match doc.get("Statement") {
        Some(serde_json::Value::Array(a)) => a.clone(),
        Some(one) => vec![one.clone()],
        None => Vec::new(),
    };
    let strings = |v: Option<&serde_json::Value>| -> Vec<String> {
        match v {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut out = Vec::new();
    for (i, s) in statements.iter().enumerate() {
        if s.get("Effect").and_then(|e| e.as_str()) != Some("Allow") {
            continue;
        }
        let principal = s.get("Principal");
        let services = strings(principal.and_then(|p| p.get("Service")));
        let any = principal.and_then(|p| p.as_str()) == Some("*");
        if !any && !services.iter().any(|s| s == "apigateway.amazonaws.com") {
            continue;
        }
        let actions = strings(s.get("Action"));
        if !actions
            .iter()
            .any(|a| policy::action_matches(a, "lambda:InvokeFunction"))
        {
            continue;
        }
        let mut source_arn = None;
        let mut other_conditions = Vec::new();
        if let Some(conditions) = s.get("Condition").and_then(|c| c.as_object()) {
            for (operator, tests) in conditions {
                let Some(tests) = tests.as_object() else {
                    continue;
                };
                for (key, value) in tests {
                    let arn_operator = matches!(
                        operator.as_str(),
                        "ArnLike" | "ArnEquals" | "StringLike" | "StringEquals"
                    );
                    if key.eq_ignore_ascii_case("AWS:SourceArn") && arn_operator {
                        source_arn = strings(Some(value)).into_iter().next();
                    } else {
                        other_conditions.push(format!("{operator} {key}"));
                    }
                }
            }
        }
        out.push(Permission {
            sid: s
                .get("Sid")
                .and_then(|v| v.as_str())
                .map_or_else(|| format!("#{i}"), str::to_string),
            source_arn,
            other_conditions,
        });
    }
    out
}

async fn log_group_exists(aws: &ControlPlane, group: &str) -> Result<bool, Error> {
    let logs = &aws.logs;
    let out = logs
        .describe_log_groups()
        .log_group_name_prefix(group)
        .send()
        .await
        .map_err(|e| logs.error("DescribeLogGroups", &format!("log group {group}"), &e))?;
    Ok(out
        .log_groups()
        .iter()
        .any(|g| g.log_group_name() == Some(group)))
}

async fn read_table(aws: &ControlPlane, name: &str, account: &str) -> Result<Table, Error> {
    let ddb = &aws.dynamodb;
    let made_up = format!("arn:aws:dynamodb:{}:{account}:table/{name}", aws.region);
    match ddb.describe_table().table_name(name).send().await {
        Ok(out) => Ok(Table {
            name: name.to_string(),
            arn: out
                .table()
                .and_then(|t| t.table_arn())
                .map_or(made_up, str::to_string),
            exists: true,
        }),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(Table {
                name: name.to_string(),
                arn: made_up,
                exists: false,
            })
        }
        Err(e) => Err(ddb
            .error("DescribeTable", &format!("table {name}"), &e)
            .into()),
    }
}

/// What `role` may do on each table: SimulatePrincipalPolicy while the
/// account answers it, else the evaluator over the role's policies (once
/// the simulation fails, the rest of the roles skip it).
async fn role_access(
    aws: &ControlPlane,
    role_arn: &str,
    tables: &[Table],
    simulate: &mut bool,
    notes: &mut Vec<String>,
) -> Result<Vec<TableAccess>, Error> {
    if *simulate {
        match simulated(aws, role_arn, tables).await {
            Ok(access) => return Ok(access),
            Err(why) => {
                *simulate = false;
                notes.push(format!(
                    "IAM SimulatePrincipalPolicy is not available ({why}): what the roles may \
                     do was decided by stagecheck's own evaluator over their policies."
                ));
            }
        }
    }
    let policies = role_policies(aws, role_arn).await?;
    Ok(tables
        .iter()
        .map(|t| {
            let mut allowed = Vec::new();
            let mut unevaluated = Vec::new();
            for action in TABLE_ACTIONS {
                let e = policy::evaluate(&policies, action, &t.arn);
                if e.decision == Decision::Allowed {
                    allowed.push(action.to_string());
                }
                for s in e.unevaluated_conditions {
                    if !unevaluated.contains(&s) {
                        unevaluated.push(s);
                    }
                }
            }
            TableAccess {
                table: t.name.clone(),
                table_arn: t.arn.clone(),
                allowed,
                decided_by: "stagecheck".into(),
                unevaluated_conditions: unevaluated,
            }
        })
        .collect())
}

async fn simulated(
    aws: &ControlPlane,
    role_arn: &str,
    tables: &[Table],
) -> Result<Vec<TableAccess>, String> {
    let iam = &aws.iam;
    let mut allowed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut marker: Option<String> = None;
    loop {
        let out = iam
            .simulate_principal_policy()
            .policy_source_arn(role_arn)
            .set_action_names(Some(TABLE_ACTIONS.iter().map(|a| a.to_string()).collect()))
            .set_resource_arns(Some(tables.iter().map(|t| t.arn.clone()).collect()))
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| {
                // The code is enough: an emulator's 500 page is not worth a line.
                let e = iam.error("SimulatePrincipalPolicy", role_arn, &e);
                match e.failure {
                    crate::error::AwsFailure::Service { code } => format!("IAM answered {code}"),
                    _ => e.message,
                }
            })?;
        for r in out.evaluation_results() {
            let decision = r.eval_decision().as_str();
            if decision == "allowed" {
                allowed
                    .entry(r.eval_resource_name().unwrap_or_default().to_string())
                    .or_default()
                    .push(r.eval_action_name().to_string());
            }
        }
        match out.marker() {
            Some(m) if out.is_truncated() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    Ok(tables
        .iter()
        .map(|t| TableAccess {
            table: t.name.clone(),
            table_arn: t.arn.clone(),
            allowed: TABLE_ACTIONS
                .iter()
                .filter(|a| {
                    allowed
                        .get(&t.arn)
                        .is_some_and(|v| v.iter().any(|x| x.eq_ignore_ascii_case(a)))
                })
                .map(|a| a.to_string())
                .collect(),
            decided_by: "SimulatePrincipalPolicy".into(),
            unevaluated_conditions: Vec::new(),
        })
        .collect())
}

/// The role's inline and attached policies, parsed.
async fn role_policies(aws: &ControlPlane, role_arn: &str) -> Result<Vec<Policy>, Error> {
    let iam = &aws.iam;
    // arn:aws:iam::ACCOUNT:role/path/NAME: the name is the last segment.
    let role = role_arn.rsplit('/').next().unwrap_or(role_arn);
    let what = format!("role {role}");
    let mut policies = Vec::new();
    let inline = iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|e| iam.error("ListRolePolicies", &what, &e))?;
    for name in inline.policy_names() {
        let doc = iam
            .get_role_policy()
            .role_name(role)
            .policy_name(name)
            .send()
            .await
            .map_err(|e| iam.error("GetRolePolicy", &format!("{what} policy {name}"), &e))?;
        policies.push(parse_policy(name, doc.policy_document())?);
    }
    let attached = iam
        .list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|e| iam.error("ListAttachedRolePolicies", &what, &e))?;
    for p in attached.attached_policies() {
        let Some(arn) = p.policy_arn() else { continue };
        let meta = iam
            .get_policy()
            .policy_arn(arn)
            .send()
            .await
            .map_err(|e| iam.error("GetPolicy", arn, &e))?;
        let Some(version) = meta.policy().and_then(|p| p.default_version_id()) else {
            continue;
        };
        let doc = iam
            .get_policy_version()
            .policy_arn(arn)
            .version_id(version)
            .send()
            .await
            .map_err(|e| iam.error("GetPolicyVersion", arn, &e))?;
        if let Some(text) = doc.policy_version().and_then(|v| v.document()) {
            policies.push(parse_policy(p.policy_name().unwrap_or(arn), text)?);
        }
    }
    Ok(policies)
}

fn parse_policy(name: &str, text: &str) -> Result<Policy, Error> {
    Policy::parse(name, text).map_err(|e| Error::Runtime(format!("cannot read IAM {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_rule_reads_the_environment() {
        let rule = TableRule::default();
        assert_eq!(rule.variables(), vec!["Environment".to_string()]);
        let env: BTreeMap<String, String> =
            [("Environment".to_string(), "test-".to_string())].into();
        assert_eq!(rule.table(&env, "test", "f"), "test-User");
        assert_eq!(rule.table(&BTreeMap::new(), "prod", "f"), "User");
        let other = TableRule("{stage}-{TABLE}".into());
        assert_eq!(other.variables(), vec!["TABLE".to_string()]);
        assert_eq!(other.table(&BTreeMap::new(), "qa", "f"), "qa-");
    }

    #[test]
    fn api_gateway_statements_are_picked_from_a_policy() {
        let policy = r#"{"Version":"2012-10-17","Statement":[
            {"Sid":"apigw","Effect":"Allow","Principal":{"Service":"apigateway.amazonaws.com"},
             "Action":"lambda:InvokeFunction","Resource":"arn:f",
             "Condition":{"ArnLike":{"AWS:SourceArn":"arn:aws:execute-api:r:1:abc/*"},
                          "StringEquals":{"AWS:SourceAccount":"1"}}},
            {"Sid":"s3","Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":"lambda:InvokeFunction"},
            {"Effect":"Allow","Principal":{"Service":["apigateway.amazonaws.com"]},"Action":["lambda:*"]},
            {"Sid":"deny","Effect":"Deny","Principal":"*","Action":"lambda:InvokeFunction"}
        ]}"#;
        let found = api_gateway_statements(policy);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].sid, "apigw");
        assert_eq!(
            found[0].source_arn.as_deref(),
            Some("arn:aws:execute-api:r:1:abc/*")
        );
        assert_eq!(
            found[0].other_conditions,
            vec!["StringEquals AWS:SourceAccount".to_string()]
        );
        assert_eq!(found[1].sid, "#2");
        assert_eq!(found[1].source_arn, None);
        assert!(api_gateway_statements("not json").is_empty());
    }

    #[test]
    fn drafts_that_moved_on_are_told_apart() {
        let r = |m: &str, p: &str, u: &str| Route {
            method: m.into(),
            path: p.into(),
            integration_type: Some("aws_proxy".into()),
            uri: Some(u.into()),
        };
        let served = vec![r("ANY", "/user", "a"), r("ANY", "/user/{id}", "broken")];
        let draft = vec![
            r("ANY", "/user", "a"),
            r("ANY", "/user/{id}", "good"),
            r("GET", "/health", "h"),
        ];
        let d = differences(&served, &draft);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("ANY /user/{id}: the draft's integration (good)"));
        assert!(d[1].starts_with("GET /health: in the draft"));
        assert!(differences(&served, &served).is_empty());
    }
}
