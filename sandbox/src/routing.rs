//! Control-plane resolution, done the way API Gateway and Lambda do it: stage →
//! stage variables → the resource's integration URI with `${stageVariables.x}`
//! substituted → function name → the function's resource policy and its
//! `Environment` variable → table `{Environment}User`. The result is cached and
//! read again every TTL (and on `POST /_sandbox/reload`), so a change made in
//! moto's control plane reaches the data plane within the TTL.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use super::SandboxError;
use super::aws::{Clients, aws_error};
use super::deployments::{Overlay, Snapshot};
use super::logs::LogFormat;
use super::policy::{self, ExecutionRole, Policy};

/// The stage variable the integration URI reads.
pub const ENV_VARIABLE: &str = "env";
/// The function's environment variable the user service prefixes its table with.
pub const FUNCTION_ENV_VAR: &str = "Environment";

/// The user service's convention, like .NET's `TableNamePrefix`.
pub fn table_for(environment: &str) -> String {
    format!("{environment}User")
}

pub fn log_group_for(function: &str) -> String {
    format!("/aws/lambda/{function}")
}

/// Where one stage's resource sends its requests, and what the function runs
/// with: its role's policies (judging its DynamoDB calls), its resource-based
/// policy (judging each invocation) and its log format.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Target {
    pub function: String,
    pub function_arn: String,
    pub account: String,
    pub table: String,
    pub table_arn: String,
    pub log_group: String,
    pub log_format: LogFormat,
    /// Which execution environments may serve it: the function as last
    /// configured. A configuration change is served by new environments (cold
    /// starts), as on AWS.
    pub environments: String,
    pub role: ExecutionRole,
    /// The function's resource-based policy; `None` when it has none (then
    /// nothing may invoke it through API Gateway).
    #[serde(skip)]
    pub resource_policy: Option<Policy>,
}

/// The two resources the API has; anything else is "Missing Authentication Token".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Resource {
    #[serde(rename = "/user")]
    Users,
    #[serde(rename = "/user/{id}")]
    User,
}

impl Resource {
    pub const ALL: [Resource; 2] = [Resource::Users, Resource::User];

    pub fn path(self) -> &'static str {
        match self {
            Resource::Users => "/user",
            Resource::User => "/user/{id}",
        }
    }
}

/// A link of the chain that is broken; API Gateway answers such requests with
/// 500 "Internal server error" and says why in its execution log.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "error", rename_all = "kebab-case")]
pub enum RouteError {
    /// The method has no integration in the deployment the stage serves.
    NoIntegration,
    /// The integration URI reads `${stageVariables.name}`, which the stage
    /// does not define.
    UnsetStageVariable {
        name: String,
        uri: String,
    },
    /// The (substituted) URI is not a Lambda invocation URI.
    NotAFunction {
        uri: String,
    },
    FunctionMissing {
        function: String,
    },
}

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteError::NoIntegration => write!(f, "no integration on the method"),
            RouteError::UnsetStageVariable { name, uri } => write!(
                f,
                "the integration URI {uri:?} reads stage variable {name:?}, which the stage does not set"
            ),
            RouteError::NotAFunction { uri } => {
                write!(f, "integration URI {uri:?} names no Lambda function")
            }
            RouteError::FunctionMissing { function } => {
                write!(f, "function {function} does not exist")
            }
        }
    }
}

pub type Resolution = Result<Arc<Target>, RouteError>;

/// The stage's `*/*` method settings and access-log settings, as API Gateway
/// acts on them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StageLogging {
    pub level: LogLevel,
    pub data_trace: bool,
    pub access_log: Option<AccessLog>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    #[default]
    Off,
    Error,
    Info,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessLog {
    pub destination_arn: String,
    pub format: String,
}

type Routes = HashMap<Resource, Resolution>;

#[derive(Debug, Clone, Serialize)]
pub struct StageRoutes {
    pub variables: HashMap<String, String>,
    pub deployment_id: String,
    pub logging: StageLogging,
    #[serde(serialize_with = "serialize_routes")]
    pub routes: Routes,
    pub canary: Option<CanaryRoutes>,
}

/// The canary's share of a stage: its deployment, the stage's variables with
/// the canary's overrides applied, and where that sends each resource.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryRoutes {
    pub deployment_id: String,
    pub percent_traffic: f64,
    pub variables: HashMap<String, String>,
    #[serde(serialize_with = "serialize_routes")]
    pub routes: Routes,
}

/// What serves one request: the stage's primary deployment or its canary.
pub struct Served<'a> {
    pub routes: &'a Routes,
    pub variables: &'a HashMap<String, String>,
    pub deployment_id: &'a str,
    pub is_canary: bool,
}

impl StageRoutes {
    /// The canary with probability percentTraffic/100, else the primary.
    pub fn pick(&self) -> Served<'_> {
        match &self.canary {
            Some(c) if fastrand::f64() * 100.0 < c.percent_traffic => Served {
                routes: &c.routes,
                variables: &c.variables,
                deployment_id: &c.deployment_id,
                is_canary: true,
            },
            _ => Served {
                routes: &self.routes,
                variables: &self.variables,
                deployment_id: &self.deployment_id,
                is_canary: false,
            },
        }
    }
}

fn serialize_routes<S: serde::Serializer>(routes: &Routes, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut sorted: Vec<_> = routes.iter().collect();
    sorted.sort_by_key(|(r, _)| r.path());
    let mut map = s.serialize_map(Some(routes.len()))?;
    for (resource, resolution) in sorted {
        match resolution {
            Ok(target) => map.serialize_entry(resource.path(), &**target)?,
            Err(e) => map.serialize_entry(resource.path(), e)?,
        }
    }
    map.end()
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RouteTable {
    pub api_id: Option<String>,
    pub account: String,
    pub region: String,
    pub stages: HashMap<String, StageRoutes>,
}

impl RouteTable {
    /// One line: where each stage's requests go, or why they cannot.
    pub fn describe(&self) -> String {
        if self.stages.is_empty() {
            return "no stages (is the users API deployed?)".into();
        }
        let mut stages: Vec<_> = self.stages.iter().collect();
        stages.sort_by(|a, b| a.0.cmp(b.0));
        let chain = |routes: &Routes| {
            let mut seen: Vec<String> = routes
                .values()
                .map(|r| match r {
                    Ok(t) => format!("{} → table {}", t.function, t.table),
                    Err(e) => format!("error: {e}"),
                })
                .collect();
            seen.sort();
            seen.dedup();
            seen.join(" | ")
        };
        let parts: Vec<String> = stages
            .into_iter()
            .map(|(name, stage)| {
                let mut line = format!("{name} → {}", chain(&stage.routes));
                if let Some(c) = &stage.canary {
                    line.push_str(&format!(
                        " (canary {}% → {})",
                        c.percent_traffic,
                        chain(&c.routes)
                    ));
                }
                line
            })
            .collect();
        parts.join("; ")
    }
}

/// The account moto (and the seed) use when nothing says otherwise.
const DEFAULT_ACCOUNT: &str = "123456789012";

pub struct Resolver {
    clients: Clients,
    api_name: String,
    region: String,
    pub overlay: Arc<Overlay>,
    current: RwLock<Arc<RouteTable>>,
}

impl Resolver {
    pub fn new(
        clients: Clients,
        api_name: String,
        region: String,
        overlay: Arc<Overlay>,
    ) -> Resolver {
        Resolver {
            clients,
            api_name,
            region,
            overlay,
            current: RwLock::new(Arc::new(RouteTable::default())),
        }
    }

    pub fn current(&self) -> Arc<RouteTable> {
        match self.current.read() {
            Ok(table) => table.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub async fn refresh(&self) -> Result<Arc<RouteTable>, SandboxError> {
        let table = Arc::new(self.resolve().await?);
        match self.current.write() {
            Ok(mut current) => *current = table.clone(),
            Err(poisoned) => *poisoned.into_inner() = table.clone(),
        }
        Ok(table)
    }

    async fn resolve(&self) -> Result<RouteTable, SandboxError> {
        let ag = &self.clients.apigateway;
        let Some(api_id) = find_api(ag, &self.api_name).await? else {
            return Ok(RouteTable {
                region: self.region.clone(),
                account: DEFAULT_ACCOUNT.into(),
                ..RouteTable::default()
            });
        };
        let stages = ag
            .get_stages()
            .rest_api_id(&api_id)
            .send()
            .await
            .map_err(|e| aws_error("reading the API's stages", e))?;

        let mut functions = Functions::default();
        let mut table = RouteTable {
            api_id: Some(api_id.clone()),
            account: DEFAULT_ACCOUNT.into(),
            region: self.region.clone(),
            stages: HashMap::new(),
        };
        for stage in stages.item() {
            let (Some(name), Some(deployment_id)) = (stage.stage_name(), stage.deployment_id())
            else {
                continue;
            };
            let variables = stage.variables().cloned().unwrap_or_default();
            let snapshot = self
                .overlay
                .snapshot_or_freeze(ag, &api_id, deployment_id)
                .await?;
            let routes = self.routes(&snapshot, &variables, &mut functions).await?;
            let canary = match self.overlay.canary(&api_id, name) {
                None => None,
                Some(c) => {
                    let snapshot = self
                        .overlay
                        .snapshot_or_freeze(ag, &api_id, &c.deployment_id)
                        .await?;
                    let mut canary_vars = variables.clone();
                    canary_vars.extend(c.stage_variable_overrides.clone());
                    let routes = self.routes(&snapshot, &canary_vars, &mut functions).await?;
                    Some(CanaryRoutes {
                        deployment_id: c.deployment_id,
                        percent_traffic: c.percent_traffic,
                        variables: canary_vars,
                        routes,
                    })
                }
            };
            table.stages.insert(
                name.to_string(),
                StageRoutes {
                    variables,
                    deployment_id: deployment_id.to_string(),
                    logging: stage_logging(stage),
                    routes,
                    canary,
                },
            );
        }
        if let Some(account) = functions.account {
            table.account = account;
        }
        Ok(table)
    }

    /// Where each resource of a frozen API sends requests under these variables.
    async fn routes(
        &self,
        snapshot: &Snapshot,
        variables: &HashMap<String, String>,
        functions: &mut Functions,
    ) -> Result<Routes, SandboxError> {
        let mut routes = HashMap::new();
        for resource in Resource::ALL {
            // A resource that does not exist is not routed at all (403).
            if !snapshot.has_path(resource.path()) {
                continue;
            }
            let uri = snapshot
                .integration(resource.path(), "ANY")
                .and_then(|m| m.integration.as_ref())
                .and_then(|i| i.uri.clone());
            let resolution = match uri {
                None => Err(RouteError::NoIntegration),
                Some(uri) => match substitute_checked(&uri, variables) {
                    Err(name) => Err(RouteError::UnsetStageVariable { name, uri }),
                    Ok(resolved) => match function_of(&resolved) {
                        None => Err(RouteError::NotAFunction { uri: resolved }),
                        Some(function) => {
                            if !functions.resolved.contains_key(&function) {
                                let r = self.resolve_function(&function).await?;
                                if let Some(account) = account_of_uri(&resolved) {
                                    functions.account.get_or_insert(account);
                                }
                                functions.resolved.insert(function.clone(), r);
                            }
                            functions.resolved.get(&function).cloned().unwrap_or(Err(
                                RouteError::FunctionMissing {
                                    function: function.clone(),
                                },
                            ))
                        }
                    },
                },
            };
            routes.insert(resource, resolution);
        }
        Ok(routes)
    }

    /// Unreachable moto is an error (keep the last table); a function that is
    /// missing is a resolution that fails, as on AWS. The function's role and
    /// resource policy are read here, once per refresh, not per request: the
    /// data plane judges each invocation and each DynamoDB call against them.
    async fn resolve_function(&self, function: &str) -> Result<Resolution, SandboxError> {
        let lambda = &self.clients.lambda;
        let config = match lambda
            .get_function_configuration()
            .function_name(function)
            .send()
            .await
        {
            Ok(c) => c,
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Ok(Err(RouteError::FunctionMissing {
                    function: function.to_string(),
                }));
            }
            Err(err) => return Err(aws_error(format!("reading function {function}"), err)),
        };
        let function_arn = config
            .function_arn()
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "arn:aws:lambda:{}:{DEFAULT_ACCOUNT}:function:{function}",
                    self.region
                )
            });
        // arn:aws:lambda:{region}:{account}:function:{name}
        let mut arn_parts = function_arn.split(':').skip(3);
        let region = arn_parts.next().unwrap_or(&self.region).to_string();
        let account = arn_parts.next().unwrap_or(DEFAULT_ACCOUNT).to_string();
        let resource_policy = match super::aws::function_policy(lambda, function).await? {
            None => None,
            Some(text) => {
                match policy::parse(&format!("{function}'s resource policy"), None, &text) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        eprintln!("sandbox: warning: {e}; nothing may invoke {function}");
                        None
                    }
                }
            }
        };
        let role = match config.role() {
            Some(role_arn) => policy::load_role(&self.clients.iam, role_arn, function).await?,
            None => ExecutionRole {
                arn: String::new(),
                name: String::new(),
                session: function.to_string(),
                account: account.clone(),
                policies: Vec::new(),
            },
        };
        // moto drops LoggingConfig: the sandbox's AWS endpoint keeps it.
        let log_format = self
            .overlay
            .log_format(function)
            .or_else(|| {
                config
                    .logging_config()
                    .and_then(|l| l.log_format())
                    .map(|f| f.as_str().to_string())
            })
            .map(|f| LogFormat::parse(&f))
            .unwrap_or_default();
        let environment = config
            .environment()
            .and_then(|e| e.variables())
            .and_then(|v| v.get(FUNCTION_ENV_VAR))
            .cloned()
            .unwrap_or_default();
        let table = table_for(&environment);
        let environments = format!(
            "{function}@{}/{log_format:?}",
            config.last_modified().unwrap_or_default()
        );
        Ok(Ok(Arc::new(Target {
            function: function.to_string(),
            table_arn: format!("arn:aws:dynamodb:{region}:{account}:table/{table}"),
            function_arn,
            account,
            table,
            log_group: log_group_for(function),
            log_format,
            environments,
            role,
            resource_policy,
        })))
    }
}

/// Functions already resolved during one refresh (each is read once), and the
/// account their ARNs name.
#[derive(Default)]
struct Functions {
    resolved: HashMap<String, Resolution>,
    account: Option<String>,
}

/// The id of the REST API called `name`, following every page.
pub async fn find_api(
    ag: &aws_sdk_apigateway::Client,
    name: &str,
) -> Result<Option<String>, SandboxError> {
    let mut position: Option<String> = None;
    loop {
        let out = ag
            .get_rest_apis()
            .limit(500)
            .set_position(position.clone())
            .send()
            .await
            .map_err(|e| aws_error("listing REST APIs", e))?;
        if let Some(api) = out.items().iter().find(|a| a.name() == Some(name)) {
            return Ok(api.id().map(str::to_string));
        }
        match out.position() {
            Some(p) if !p.is_empty() && Some(p) != position.as_deref() => {
                position = Some(p.to_string())
            }
            _ => return Ok(None),
        }
    }
}

/// The stage's `*/*` method settings (logging level, data trace) and its
/// access-log settings.
fn stage_logging(stage: &aws_sdk_apigateway::types::Stage) -> StageLogging {
    let all = stage.method_settings().and_then(|m| m.get("*/*"));
    let level = match all
        .and_then(|s| s.logging_level())
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("INFO") => LogLevel::Info,
        Some("ERROR") => LogLevel::Error,
        _ => LogLevel::Off,
    };
    let access_log = stage.access_log_settings().and_then(|a| {
        Some(AccessLog {
            destination_arn: a.destination_arn()?.to_string(),
            format: a.format()?.to_string(),
        })
    });
    StageLogging {
        level,
        data_trace: all.is_some_and(|s| s.data_trace_enabled()),
        access_log,
    }
}

/// The account in a function ARN inside an integration URI.
fn account_of_uri(uri: &str) -> Option<String> {
    let arn = uri.split("/functions/").nth(1)?;
    let account = arn.strip_prefix("arn:")?.split(':').nth(3)?;
    (!account.is_empty()).then(|| account.to_string())
}

/// `${stageVariables.name}` replaced by the stage's value; a variable the stage
/// does not define is an error naming it, as API Gateway fails such requests.
pub fn substitute_checked(
    template: &str,
    variables: &HashMap<String, String>,
) -> Result<String, String> {
    const OPEN: &str = "${stageVariables.";
    let mut rest = template;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        if !variables.contains_key(name) {
            return Err(name.to_string());
        }
        rest = &after[end + 1..];
    }
    Ok(substitute(template, variables))
}

/// Reads the configuration again every `ttl`; a failed read keeps the last
/// good table and says so once on stderr.
pub async fn refresh_every(resolver: Arc<Resolver>, ttl: Duration) {
    let mut failing = false;
    let mut shown = resolver.current().describe();
    loop {
        tokio::time::sleep(ttl).await;
        match resolver.refresh().await {
            Ok(table) => {
                if failing {
                    eprintln!("sandbox: control plane readable again");
                }
                failing = false;
                // Say when the routing changed under us (a fault, a hand edit).
                let now = table.describe();
                if now != shown {
                    eprintln!("sandbox: routing changed: {now}");
                    shown = now;
                }
            }
            Err(e) => {
                if !failing {
                    eprintln!("sandbox: keeping the last configuration: {e}");
                }
                failing = true;
            }
        }
    }
}

/// `${stageVariables.name}` replaced by the stage's value; an undefined variable
/// becomes empty, as API Gateway does.
pub fn substitute(template: &str, variables: &HashMap<String, String>) -> String {
    const OPEN: &str = "${stageVariables.";
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        match after.find('}') {
            Some(end) => {
                if let Some(v) = variables.get(&after[..end]) {
                    out.push_str(v);
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The function name in a Lambda integration URI
/// (`arn:aws:apigateway:R:lambda:path/2015-03-31/functions/{function ARN or name}/invocations`).
pub fn function_of(uri: &str) -> Option<String> {
    let (_, after) = uri.split_once(":lambda:path/")?;
    let after = after.split_once("/functions/")?.1;
    let target = after.strip_suffix("/invocations")?;
    let name = if target.starts_with("arn:") {
        // arn:aws:lambda:region:account:function:name[:qualifier]
        target.split(':').nth(6)?
    } else {
        target.split(':').next()?
    };
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:${stageVariables.env}user-service/invocations";

    #[test]
    fn resolves_the_function_per_stage_variable() {
        let vars = |v: &str| HashMap::from([("env".to_string(), v.to_string())]);
        assert_eq!(
            function_of(&substitute(URI, &vars("test-"))).as_deref(),
            Some("test-user-service")
        );
        assert_eq!(
            function_of(&substitute(URI, &vars(""))).as_deref(),
            Some("user-service")
        );
        assert_eq!(
            function_of(&substitute(URI, &HashMap::new())).as_deref(),
            Some("user-service")
        );
    }

    #[test]
    fn an_unset_stage_variable_is_named() {
        assert_eq!(
            substitute_checked(URI, &HashMap::new()),
            Err("env".to_string())
        );
        let vars = HashMap::from([("env".to_string(), String::new())]);
        assert!(
            substitute_checked(URI, &vars).is_ok_and(|u| u.contains(":function:user-service/"))
        );
        assert_eq!(
            account_of_uri(&substitute(URI, &vars)).as_deref(),
            Some("123456789012")
        );
    }

    #[test]
    fn accepts_qualified_arns_and_bare_names() {
        let q = "arn:aws:apigateway:r:lambda:path/2015-03-31/functions/arn:aws:lambda:r:1:function:f:live/invocations";
        assert_eq!(function_of(q).as_deref(), Some("f"));
        let bare = "arn:aws:apigateway:r:lambda:path/2015-03-31/functions/f/invocations";
        assert_eq!(function_of(bare).as_deref(), Some("f"));
        assert_eq!(function_of("https://example.com"), None);
    }
}
