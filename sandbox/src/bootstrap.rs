//! Bootstrap: writes the seed deployment (tables, roles, functions, log groups,
//! the `users` REST API and its stages) into moto through the real SDK, finding
//! what exists before creating anything, so that running it twice changes
//! nothing and a fault left behind by an earlier sandbox is put right. Then it
//! writes the misconfiguration faults asked for.

use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_apigateway::types::{IntegrationType, Op, PatchOperation};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Environment, FunctionCode, Runtime};

use super::SandboxError;
use super::aws::{Clients, aws_error};
use super::deployments::{Overlay, read_draft};
use super::faults::{ConfigFault, Faults};
use super::routing::{ENV_VARIABLE, FUNCTION_ENV_VAR, find_api, log_group_for, table_for};

/// The seed deployment: one API, one stage per environment prefix.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub region: String,
    pub api_name: String,
    pub stages: Vec<StageSeed>,
}

#[derive(Debug, Clone)]
pub struct StageSeed {
    pub stage: &'static str,
    /// The prefix `env` stage variable and the function's `Environment`.
    pub env: &'static str,
}

impl StageSeed {
    pub fn function(&self) -> String {
        format!("{}user-service", self.env)
    }
    fn role(&self) -> String {
        format!("{}user-service-role", self.env)
    }
}

const PERMISSION_SID: &str = "apigateway-invoke-users";
const ROLE_POLICY_NAME: &str = "user-table-access";
const RESOURCE_PATHS: [&str; 2] = ["/user", "/user/{id}"];

impl Deployment {
    pub fn new(region: &str) -> Deployment {
        Deployment {
            region: region.to_string(),
            api_name: "users".into(),
            stages: vec![
                StageSeed {
                    stage: "prod",
                    env: "",
                },
                StageSeed {
                    stage: "test",
                    env: "test-",
                },
            ],
        }
    }

    fn integration_uri(&self, account: &str) -> String {
        let r = &self.region;
        format!(
            "arn:aws:apigateway:{r}:lambda:path/2015-03-31/functions/arn:aws:lambda:{r}:{account}:function:${{stageVariables.{ENV_VARIABLE}}}user-service/invocations"
        )
    }
}

/// What bootstrap had to change, for one line on stderr.
#[derive(Debug, Default)]
pub struct BootstrapReport {
    pub created: Vec<String>,
    pub restored: Vec<String>,
    pub faults: Vec<String>,
}

impl fmt::Display for BootstrapReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.created.is_empty() && self.restored.is_empty() {
            write!(f, "bootstrap: the deployment was already in place")?;
        } else {
            write!(f, "bootstrap:")?;
            if !self.created.is_empty() {
                write!(f, " created {}", self.created.join(", "))?;
            }
            if !self.restored.is_empty() {
                if !self.created.is_empty() {
                    write!(f, ";")?;
                }
                write!(f, " restored {}", self.restored.join(", "))?;
            }
        }
        if !self.faults.is_empty() {
            write!(f, "; faults written: {}", self.faults.join(", "))?;
        }
        Ok(())
    }
}

pub async fn bootstrap(
    clients: &Clients,
    overlay: &Overlay,
    deployment: &Deployment,
    faults: &Faults,
) -> Result<BootstrapReport, SandboxError> {
    let mut report = BootstrapReport::default();
    for seed in &deployment.stages {
        ensure_table(clients, &table_for(seed.env), &mut report).await?;
    }
    let mut account = String::new();
    let mut role_arns = Vec::new();
    for seed in &deployment.stages {
        let arn = ensure_role(clients, seed, &mut report).await?;
        if account.is_empty() {
            account = account_of(&arn).to_string();
        }
        role_arns.push(arn);
    }
    // Role policies name the account, which only the first role told us.
    for seed in &deployment.stages {
        put_role_policy(clients, deployment, seed, &account).await?;
    }
    let mut shas = Vec::new();
    for (seed, role_arn) in deployment.stages.iter().zip(&role_arns) {
        let sha = ensure_function(clients, seed, seed.env, role_arn, &mut report).await?;
        shas.push((seed.function(), sha));
        ensure_log_group(clients, &log_group_for(&seed.function()), &mut report).await?;
    }
    restore_code(clients, shas, &mut report).await?;
    let api_id = ensure_api(clients, overlay, deployment, &account, &mut report).await?;
    for seed in &deployment.stages {
        ensure_permission(clients, deployment, seed, &account, &api_id, &mut report).await?;
    }

    if faults.shared_table
        && let Some(test) = deployment.stages.iter().find(|s| s.stage == "test")
    {
        // The leak needs both halves of the mistake: the prefix dropped, and a
        // role wide enough to reach prod's table (a `*User` resource), since
        // the role is enforced as on AWS (alone, the prefix would be 502s).
        set_function_environment(clients, &test.function(), "").await?;
        write_role_policy(clients, deployment, test, &account, &["*User".to_string()]).await?;
        report.faults.push(format!(
            "shared-table ({} Environment=\"\", {} allows table/*User)",
            test.function(),
            test.role()
        ));
    }
    if faults.shared_function {
        set_stage_env(clients, &api_id, "test", "").await?;
        report
            .faults
            .push("shared-function (stage test env=\"\")".into());
    }
    write_config_faults(
        clients,
        overlay,
        deployment,
        &account,
        &api_id,
        faults,
        &mut report,
    )
    .await?;
    Ok(report)
}

/// Writes each misconfiguration fault the way a person would make it, through
/// the same control-plane calls; nothing in the sandbox knows about it after.
async fn write_config_faults(
    clients: &Clients,
    overlay: &Overlay,
    deployment: &Deployment,
    account: &str,
    api_id: &str,
    faults: &Faults,
    report: &mut BootstrapReport,
) -> Result<(), SandboxError> {
    let (Some(test), Some(prod)) = (
        deployment.stages.iter().find(|s| s.stage == "test"),
        deployment.stages.iter().find(|s| s.stage == "prod"),
    ) else {
        return Ok(());
    };
    let region = &deployment.region;
    let function = test.function();
    for fault in &faults.config {
        let done = match fault {
            ConfigFault::MissingPermission => {
                remove_permission(clients, &function).await?;
                format!(
                    "{} ({function} has no permission for API Gateway)",
                    fault.name()
                )
            }
            ConfigFault::WrongSourceArn => {
                remove_permission(clients, &function).await?;
                let arn = format!("arn:aws:execute-api:{region}:{account}:{api_id}/prod/*/*");
                add_permission(clients, &function, &arn).await?;
                format!("{} ({function} may be invoked from {arn})", fault.name())
            }
            ConfigFault::RoleAllowsProdTable => {
                let tables = [table_for(test.env), table_for(prod.env)];
                write_role_policy(clients, deployment, test, account, &tables).await?;
                format!(
                    "{} ({} allows {})",
                    fault.name(),
                    test.role(),
                    tables.join(" and ")
                )
            }
            ConfigFault::RoleMissingTable => {
                let typo = format!("{}s", table_for(test.env));
                write_role_policy(
                    clients,
                    deployment,
                    test,
                    account,
                    std::slice::from_ref(&typo),
                )
                .await?;
                format!(
                    "{} ({} allows {typo}, not {})",
                    fault.name(),
                    test.role(),
                    table_for(test.env)
                )
            }
            ConfigFault::UnsetStageVariable => {
                clients
                    .apigateway
                    .update_stage()
                    .rest_api_id(api_id)
                    .stage_name(test.stage)
                    .patch_operations(
                        PatchOperation::builder()
                            .op(Op::Remove)
                            .path(format!("/variables/{ENV_VARIABLE}"))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| aws_error("removing stage test's variable", e))?;
                format!(
                    "{} (stage {} has no {ENV_VARIABLE})",
                    fault.name(),
                    test.stage
                )
            }
            ConfigFault::StaleDeployment => {
                stale_deployment(clients, overlay, deployment, account, api_id, test).await?;
                format!(
                    "{} (stage {} serves a deployment of a broken integration; the draft is fixed)",
                    fault.name(),
                    test.stage
                )
            }
            ConfigFault::CodeDrift => {
                let code = super::zip::stored_zip("index.py", DRIFTED_CODE)
                    .map_err(SandboxError::Runtime)?;
                clients
                    .lambda
                    .update_function_code()
                    .function_name(prod.function())
                    .zip_file(Blob::new(code))
                    .send()
                    .await
                    .map_err(|e| aws_error(format!("updating {}'s code", prod.function()), e))?;
                format!(
                    "{} ({}'s code differs from {function}'s)",
                    fault.name(),
                    prod.function()
                )
            }
        };
        report.faults.push(done);
    }
    Ok(())
}

/// Every function runs the same code; one that differs (a code-drift fault
/// left behind) is put back. `shas`: each function's CodeSha256, as
/// `ensure_function` read it.
async fn restore_code(
    clients: &Clients,
    shas: Vec<(String, String)>,
    report: &mut BootstrapReport,
) -> Result<(), SandboxError> {
    if shas.windows(2).all(|w| w[0].1 == w[1].1) {
        return Ok(());
    }
    let code = super::zip::stored_zip("index.py", FUNCTION_CODE).map_err(SandboxError::Runtime)?;
    for (name, _) in shas {
        clients
            .lambda
            .update_function_code()
            .function_name(&name)
            .zip_file(Blob::new(code.clone()))
            .send()
            .await
            .map_err(|e| aws_error(format!("restoring {name}'s code"), e))?;
        report.restored.push(format!("code of {name}"));
    }
    Ok(())
}

/// What every function is deployed with (moto stores it, the sandbox plays it).
const FUNCTION_CODE: &[u8] =
    b"# Served by `stagecheck sandbox`: moto stores this package but never runs it.\n\
      def handler(event, context):\n    raise NotImplementedError\n";
/// The code-drift fault: a hot fix made to one function by hand.
const DRIFTED_CODE: &[u8] =
    b"# Served by `stagecheck sandbox`: moto stores this package but never runs it.\n\
      # hot fix applied by hand in the console\n\
      def handler(event, context):\n    raise NotImplementedError\n";
/// Deployments made by a fault say so, so the next start can put the stage back.
const FAULT_DEPLOYMENT: &str = "stagecheck sandbox fault:";

/// Deploys a broken `/user/{id}` integration to stage test, then fixes the
/// draft without deploying it.
async fn stale_deployment(
    clients: &Clients,
    overlay: &Overlay,
    deployment: &Deployment,
    account: &str,
    api_id: &str,
    test: &StageSeed,
) -> Result<(), SandboxError> {
    let ag = &clients.apigateway;
    let resources = ag
        .get_resources()
        .rest_api_id(api_id)
        .limit(500)
        .send()
        .await
        .map_err(|e| aws_error("reading the API's resources", e))?;
    let resource = resources
        .items()
        .iter()
        .find(|r| r.path() == Some("/user/{id}"))
        .and_then(|r| r.id())
        .map(str::to_string)
        .ok_or_else(|| SandboxError::Runtime("the users API has no /user/{id}".into()))?;
    let good = deployment.integration_uri(account);
    let broken = good.replace("user-service/invocations", "user-service-v2/invocations");
    put_integration(clients, api_id, &resource, &broken).await?;
    let id = deploy(
        clients,
        overlay,
        api_id,
        &format!("{FAULT_DEPLOYMENT} stale-deployment (user-service-v2, never created)"),
    )
    .await?;
    ag.update_stage()
        .rest_api_id(api_id)
        .stage_name(test.stage)
        .patch_operations(
            PatchOperation::builder()
                .op(Op::Replace)
                .path("/deploymentId")
                .value(&id)
                .build(),
        )
        .send()
        .await
        .map_err(|e| aws_error("pointing stage test at the broken deployment", e))?;
    put_integration(clients, api_id, &resource, &good).await
}

async fn put_integration(
    clients: &Clients,
    api_id: &str,
    resource: &str,
    uri: &str,
) -> Result<(), SandboxError> {
    clients
        .apigateway
        .put_integration()
        .rest_api_id(api_id)
        .resource_id(resource)
        .http_method("ANY")
        .r#type(IntegrationType::AwsProxy)
        .integration_http_method("POST")
        .uri(uri)
        .send()
        .await
        .map_err(|e| aws_error("writing an integration", e))?;
    Ok(())
}

async fn remove_permission(clients: &Clients, function: &str) -> Result<(), SandboxError> {
    match clients
        .lambda
        .remove_permission()
        .function_name(function)
        .statement_id(PERMISSION_SID)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(aws_error(format!("removing {function}'s permission"), e)),
    }
}

async fn add_permission(
    clients: &Clients,
    function: &str,
    source_arn: &str,
) -> Result<(), SandboxError> {
    clients
        .lambda
        .add_permission()
        .function_name(function)
        .statement_id(PERMISSION_SID)
        .action("lambda:InvokeFunction")
        .principal("apigateway.amazonaws.com")
        .source_arn(source_arn)
        .send()
        .await
        .map_err(|e| aws_error(format!("granting API Gateway access to {function}"), e))?;
    Ok(())
}

fn account_of(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or("123456789012")
}

async fn ensure_table(
    clients: &Clients,
    table: &str,
    report: &mut BootstrapReport,
) -> Result<(), SandboxError> {
    let db = &clients.dynamodb;
    match db.describe_table().table_name(table).send().await {
        Ok(_) => {}
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            let build =
                |e: aws_sdk_dynamodb::error::BuildError| SandboxError::Runtime(e.to_string());
            db.create_table()
                .table_name(table)
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name("Id")
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(build)?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name("Id")
                        .key_type(KeyType::Hash)
                        .build()
                        .map_err(build)?,
                )
                .billing_mode(BillingMode::PayPerRequest)
                .send()
                .await
                .map_err(|e| aws_error(format!("creating table {table}"), e))?;
            report.created.push(format!("table {table}"));
        }
        Err(err) => return Err(aws_error(format!("reading table {table}"), err)),
    }
    // Real tables start in CREATING; moto's are ACTIVE at once, but the code
    // waits the way it must on AWS.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = db
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| aws_error(format!("reading table {table}"), e))?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(SandboxError::Runtime(format!(
                "table {table} did not become ACTIVE within 60 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn ensure_role(
    clients: &Clients,
    seed: &StageSeed,
    report: &mut BootstrapReport,
) -> Result<String, SandboxError> {
    let name = seed.role();
    match clients.iam.get_role().role_name(&name).send().await {
        Ok(out) => {
            if let Some(role) = out.role() {
                return Ok(role.arn().to_string());
            }
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_no_such_entity_exception()) => {}
        Err(err) => return Err(aws_error(format!("reading role {name}"), err)),
    }
    let trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]
    });
    let out = clients
        .iam
        .create_role()
        .role_name(&name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .map_err(|e| aws_error(format!("creating role {name}"), e))?;
    report.created.push(format!("role {name}"));
    out.role()
        .map(|r| r.arn().to_string())
        .ok_or_else(|| SandboxError::Runtime(format!("CreateRole {name} returned no role")))
}

/// Overwritten on every start: PutRolePolicy is idempotent, and it puts back a
/// policy someone widened by hand.
async fn put_role_policy(
    clients: &Clients,
    deployment: &Deployment,
    seed: &StageSeed,
    account: &str,
) -> Result<(), SandboxError> {
    write_role_policy(clients, deployment, seed, account, &[table_for(seed.env)]).await
}

/// The role's inline policy: DynamoDB on `tables`, its own log group.
async fn write_role_policy(
    clients: &Clients,
    deployment: &Deployment,
    seed: &StageSeed,
    account: &str,
    tables: &[String],
) -> Result<(), SandboxError> {
    let region = &deployment.region;
    let table_arns: Vec<String> = tables
        .iter()
        .map(|t| format!("arn:aws:dynamodb:{region}:{account}:table/{t}"))
        .collect();
    let group = log_group_for(&seed.function());
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                           "dynamodb:DeleteItem", "dynamodb:Scan", "dynamodb:Query"],
                "Resource": table_arns
            },
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": format!("arn:aws:logs:{region}:{account}:log-group:{group}:*")
            }
        ]
    });
    clients
        .iam
        .put_role_policy()
        .role_name(seed.role())
        .policy_name(ROLE_POLICY_NAME)
        .policy_document(policy.to_string())
        .send()
        .await
        .map_err(|e| aws_error(format!("writing the policy of role {}", seed.role()), e))?;
    Ok(())
}

async fn ensure_function(
    clients: &Clients,
    seed: &StageSeed,
    environment: &str,
    role_arn: &str,
    report: &mut BootstrapReport,
) -> Result<String, SandboxError> {
    let name = seed.function();
    match clients
        .lambda
        .get_function_configuration()
        .function_name(&name)
        .send()
        .await
    {
        Ok(config) => {
            let current = config
                .environment()
                .and_then(|e| e.variables())
                .and_then(|v| v.get(FUNCTION_ENV_VAR));
            let role_ok = config.role() == Some(role_arn);
            if current.map(String::as_str) != Some(environment) || !role_ok {
                clients
                    .lambda
                    .update_function_configuration()
                    .function_name(&name)
                    .role(role_arn)
                    .environment(
                        Environment::builder()
                            .variables(FUNCTION_ENV_VAR, environment)
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| aws_error(format!("restoring function {name}"), e))?;
                report.restored.push(format!(
                    "function {name} ({FUNCTION_ENV_VAR}={environment:?})"
                ));
            }
            Ok(config.code_sha256().unwrap_or_default().to_string())
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            let code =
                super::zip::stored_zip("index.py", FUNCTION_CODE).map_err(SandboxError::Runtime)?;
            let created = clients
                .lambda
                .create_function()
                .function_name(&name)
                .runtime(Runtime::Python312)
                .role(role_arn)
                .handler("index.handler")
                .memory_size(128)
                .timeout(29)
                .code(FunctionCode::builder().zip_file(Blob::new(code)).build())
                .environment(
                    Environment::builder()
                        .variables(FUNCTION_ENV_VAR, environment)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| aws_error(format!("creating function {name}"), e))?;
            report.created.push(format!("function {name}"));
            Ok(created.code_sha256().unwrap_or_default().to_string())
        }
        Err(err) => Err(aws_error(format!("reading function {name}"), err)),
    }
}

pub async fn set_function_environment(
    clients: &Clients,
    function: &str,
    environment: &str,
) -> Result<(), SandboxError> {
    clients
        .lambda
        .update_function_configuration()
        .function_name(function)
        .environment(
            Environment::builder()
                .variables(FUNCTION_ENV_VAR, environment)
                .build(),
        )
        .send()
        .await
        .map_err(|e| aws_error(format!("updating function {function}"), e))?;
    Ok(())
}

async fn ensure_log_group(
    clients: &Clients,
    group: &str,
    report: &mut BootstrapReport,
) -> Result<(), SandboxError> {
    match clients
        .logs
        .create_log_group()
        .log_group_name(group)
        .send()
        .await
    {
        Ok(_) => {
            report.created.push(format!("log group {group}"));
            Ok(())
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_already_exists_exception()) =>
        {
            Ok(())
        }
        Err(err) => Err(aws_error(format!("creating log group {group}"), err)),
    }
}

/// Finds (or creates) the API by name, its resources by path, their ANY method
/// and proxy integration, and the stages with their `env` variable.
async fn ensure_api(
    clients: &Clients,
    overlay: &Overlay,
    deployment: &Deployment,
    account: &str,
    report: &mut BootstrapReport,
) -> Result<String, SandboxError> {
    let ag = &clients.apigateway;
    let name = &deployment.api_name;
    let api_id = match find_api(&clients.apigateway, name).await? {
        Some(id) => id,
        None => {
            let out = ag
                .create_rest_api()
                .name(name)
                .description("user-service, one stage per environment (stagecheck sandbox)")
                .send()
                .await
                .map_err(|e| aws_error(format!("creating REST API {name}"), e))?;
            report.created.push(format!("REST API {name}"));
            out.id()
                .map(str::to_string)
                .ok_or_else(|| SandboxError::Runtime("CreateRestApi returned no id".into()))?
        }
    };

    let resources = ag
        .get_resources()
        .rest_api_id(&api_id)
        .limit(500)
        .embed("methods")
        .send()
        .await
        .map_err(|e| aws_error("reading the API's resources", e))?;
    let items = resources.items();
    let find = |path: &str| items.iter().find(|r| r.path() == Some(path));
    let uri = deployment.integration_uri(account);
    let mut api_changed = false;
    let mut parent = find("/")
        .and_then(|r| r.id())
        .map(str::to_string)
        .ok_or_else(|| SandboxError::Runtime(format!("REST API {name} has no root resource")))?;
    for path in RESOURCE_PATHS {
        let existing = find(path);
        let resource_id = match existing.and_then(|r| r.id()) {
            Some(id) => id.to_string(),
            None => {
                let part = path.rsplit('/').next().unwrap_or(path);
                let out = ag
                    .create_resource()
                    .rest_api_id(&api_id)
                    .parent_id(&parent)
                    .path_part(part)
                    .send()
                    .await
                    .map_err(|e| aws_error(format!("creating resource {path}"), e))?;
                report.created.push(format!("resource {path}"));
                api_changed = true;
                out.id()
                    .map(str::to_string)
                    .ok_or_else(|| SandboxError::Runtime("CreateResource returned no id".into()))?
            }
        };
        let method = existing
            .and_then(|r| r.resource_methods())
            .and_then(|m| m.get("ANY"));
        if method.is_none() {
            ag.put_method()
                .rest_api_id(&api_id)
                .resource_id(&resource_id)
                .http_method("ANY")
                .authorization_type("NONE")
                .send()
                .await
                .map_err(|e| aws_error(format!("creating method ANY {path}"), e))?;
            api_changed = true;
        }
        let integration = method.and_then(|m| m.method_integration());
        let integration_ok = integration.is_some_and(|i| {
            i.uri() == Some(uri.as_str()) && i.r#type() == Some(&IntegrationType::AwsProxy)
        });
        if !integration_ok {
            ag.put_integration()
                .rest_api_id(&api_id)
                .resource_id(&resource_id)
                .http_method("ANY")
                .r#type(IntegrationType::AwsProxy)
                .integration_http_method("POST")
                .uri(&uri)
                .send()
                .await
                .map_err(|e| aws_error(format!("writing the integration of {path}"), e))?;
            if method.is_some() {
                report
                    .restored
                    .push(format!("integration ANY {path} (uri)"));
            }
            api_changed = true;
        }
        parent = resource_id;
    }

    ensure_stages(clients, overlay, deployment, &api_id, api_changed, report).await?;
    Ok(api_id)
}

async fn ensure_stages(
    clients: &Clients,
    overlay: &Overlay,
    deployment: &Deployment,
    api_id: &str,
    api_changed: bool,
    report: &mut BootstrapReport,
) -> Result<(), SandboxError> {
    let ag = &clients.apigateway;
    let stages = ag
        .get_stages()
        .rest_api_id(api_id)
        .send()
        .await
        .map_err(|e| aws_error("reading the API's stages", e))?;
    let existing = stages.item();

    // A changed API needs a new deployment for existing stages to serve it. It is
    // created without a stage name and the stages are pointed at it, because in
    // moto a CreateDeployment naming a stage wipes that stage's variables.
    // A stage left on a fault's deployment (stale-deployment) is put back on a
    // fresh one, as an API that changed is.
    let mut on_fault = std::collections::HashSet::new();
    for stage in existing {
        let (Some(name), Some(id)) = (stage.stage_name(), stage.deployment_id()) else {
            continue;
        };
        if let Ok(d) = ag
            .get_deployment()
            .rest_api_id(api_id)
            .deployment_id(id)
            .send()
            .await
            && d.description()
                .is_some_and(|t| t.starts_with(FAULT_DEPLOYMENT))
        {
            on_fault.insert(name.to_string());
        }
    }
    let mut fresh_deployment: Option<String> = None;
    if (api_changed || !on_fault.is_empty()) && !existing.is_empty() {
        fresh_deployment =
            Some(deploy(clients, overlay, api_id, "stagecheck sandbox: API repaired").await?);
    }

    for seed in &deployment.stages {
        let stage = existing.iter().find(|s| s.stage_name() == Some(seed.stage));
        match stage {
            None => {
                // One deployment for every stage created now; the stage is
                // created on it with its variable (as a pipeline would).
                let id = match &fresh_deployment {
                    Some(id) => id.clone(),
                    None => {
                        let id = deploy(clients, overlay, api_id, "stagecheck sandbox").await?;
                        fresh_deployment = Some(id.clone());
                        id
                    }
                };
                ag.create_stage()
                    .rest_api_id(api_id)
                    .stage_name(seed.stage)
                    .deployment_id(&id)
                    .variables(ENV_VARIABLE, seed.env)
                    .send()
                    .await
                    .map_err(|e| aws_error(format!("creating stage {}", seed.stage), e))?;
                report.created.push(format!("stage {}", seed.stage));
            }
            Some(stage) => {
                let current = stage.variables().and_then(|v| v.get(ENV_VARIABLE));
                if current.map(String::as_str) != Some(seed.env) {
                    set_stage_env(clients, api_id, seed.stage, seed.env).await?;
                    report.restored.push(format!(
                        "stage {} ({ENV_VARIABLE}={:?})",
                        seed.stage, seed.env
                    ));
                }
                let repoint = api_changed || on_fault.contains(seed.stage);
                if let Some(id) = fresh_deployment.as_ref().filter(|_| repoint) {
                    if on_fault.contains(seed.stage) {
                        report
                            .restored
                            .push(format!("stage {} (deployment)", seed.stage));
                    }
                    ag.update_stage()
                        .rest_api_id(api_id)
                        .stage_name(seed.stage)
                        .patch_operations(
                            PatchOperation::builder()
                                .op(Op::Replace)
                                .path("/deploymentId")
                                .value(id)
                                .build(),
                        )
                        .send()
                        .await
                        .map_err(|e| {
                            aws_error(
                                format!("pointing stage {} at the deployment", seed.stage),
                                e,
                            )
                        })?;
                }
            }
        }
    }
    Ok(())
}

/// CreateDeployment without a stage (moto would replace a named stage), and
/// the draft frozen as this deployment's snapshot.
async fn deploy(
    clients: &Clients,
    overlay: &Overlay,
    api_id: &str,
    description: &str,
) -> Result<String, SandboxError> {
    let snapshot = read_draft(&clients.apigateway, api_id).await?;
    let out = clients
        .apigateway
        .create_deployment()
        .rest_api_id(api_id)
        .description(description)
        .send()
        .await
        .map_err(|e| aws_error("creating a deployment", e))?;
    let id = out
        .id()
        .map(str::to_string)
        .ok_or_else(|| SandboxError::Runtime("CreateDeployment returned no id".into()))?;
    overlay.freeze(api_id, &id, snapshot);
    Ok(id)
}

pub async fn set_stage_env(
    clients: &Clients,
    api_id: &str,
    stage: &str,
    env: &str,
) -> Result<(), SandboxError> {
    clients
        .apigateway
        .update_stage()
        .rest_api_id(api_id)
        .stage_name(stage)
        .patch_operations(
            PatchOperation::builder()
                .op(Op::Replace)
                .path(format!("/variables/{ENV_VARIABLE}"))
                .value(env)
                .build(),
        )
        .send()
        .await
        .map_err(|e| aws_error(format!("updating stage {stage}'s variables"), e))?;
    Ok(())
}

/// The function's resource-based policy must let API Gateway invoke it from this
/// API; a statement left from an older API (another id) is replaced.
async fn ensure_permission(
    clients: &Clients,
    deployment: &Deployment,
    seed: &StageSeed,
    account: &str,
    api_id: &str,
    report: &mut BootstrapReport,
) -> Result<(), SandboxError> {
    let function = seed.function();
    let source_arn = format!(
        "arn:aws:execute-api:{}:{account}:{api_id}/*",
        deployment.region
    );
    let policy = super::aws::function_policy(&clients.lambda, &function).await?;
    let statement = policy.as_deref().and_then(|p| {
        let doc: serde_json::Value = serde_json::from_str(p).ok()?;
        doc.get("Statement")?
            .as_array()?
            .iter()
            .find(|s| s.get("Sid").and_then(|v| v.as_str()) == Some(PERMISSION_SID))
            .cloned()
    });
    if let Some(statement) = &statement {
        let current_arn = statement
            .pointer("/Condition/ArnLike/AWS:SourceArn")
            .and_then(|v| v.as_str());
        if current_arn == Some(source_arn.as_str()) {
            return Ok(());
        }
        clients
            .lambda
            .remove_permission()
            .function_name(&function)
            .statement_id(PERMISSION_SID)
            .send()
            .await
            .map_err(|e| aws_error(format!("removing {function}'s stale permission"), e))?;
    }
    clients
        .lambda
        .add_permission()
        .function_name(&function)
        .statement_id(PERMISSION_SID)
        .action("lambda:InvokeFunction")
        .principal("apigateway.amazonaws.com")
        .source_arn(&source_arn)
        .send()
        .await
        .map_err(|e| aws_error(format!("granting API Gateway access to {function}"), e))?;
    if statement.is_some() {
        report
            .restored
            .push(format!("permission of {function} (source ARN)"));
    } else {
        report.created.push(format!("permission of {function}"));
    }
    Ok(())
}
