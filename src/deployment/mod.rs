//! The deployment as the control plane holds it: per stage, the deployment it
//! serves, its variables and canary, each route's integration with the
//! stage's variables substituted, the function it names, the table that
//! function's environment leads to, what its execution role may do there,
//! and who may invoke it. Read through the real SDK ([`read`]); judged by
//! `audit`.
//!
//! The model keeps no secret: of a function's environment it keeps the values
//! the table rule reads (`Environment`) and only the names of the rest.

pub mod export;
pub mod read;
pub mod switch;
pub mod uri;

use std::collections::BTreeMap;

pub use export::Route;
pub use read::{TableRule, read};
pub use uri::FunctionRef;

/// One REST API's stages and what they lead to.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Deployment {
    pub rest_api: RestApi,
    pub region: String,
    /// The account, from the functions' ARNs (empty when no stage names one).
    pub account: String,
    /// The table rule the tables were derived with (`{Environment}User`).
    pub table_rule: String,
    pub stages: Vec<StageView>,
    /// Every function a stage's route names, once each.
    pub functions: Vec<Function>,
    /// Every table a function leads to, once each.
    pub tables: Vec<Table>,
    /// What was read another way than the best one, and why: a sentence each.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestApi {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StageView {
    pub name: String,
    pub deployment_id: Option<String>,
    pub variables: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    pub logging: Logging,
    /// `export` (what the stage serves) or `draft` (the export lacked
    /// integrations: the notes say so).
    pub routes_from: String,
    pub routes: Vec<StageRoute>,
    /// Routes whose draft differs from what the stage serves (`ANY /user/{id}:
    /// the draft's integration differs`); empty when they agree.
    pub draft_differs: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Canary {
    pub deployment_id: Option<String>,
    pub percent_traffic: f64,
    pub variable_overrides: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Logging {
    /// `OFF`, `ERROR` or `INFO` (the `*/*` method setting).
    pub level: String,
    pub data_trace: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log_destination: Option<String>,
}

impl Logging {
    /// Whether the stage writes the execution-log lines that name the
    /// function each request invoked.
    pub fn execution_logs(&self) -> bool {
        self.level.eq_ignore_ascii_case("INFO")
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StageRoute {
    #[serde(flatten)]
    pub route: Route,
    /// The URI with the stage's variables substituted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_uri: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub unset_variables: Vec<String>,
    /// The function the resolved URI names (Lambda integrations only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionRef>,
}

impl StageRoute {
    /// The methods a client can call this route with, as API Gateway names
    /// them in the SourceArn.
    pub fn methods(&self) -> Vec<&str> {
        if self.route.method == "ANY" {
            vec!["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]
        } else {
            vec![self.route.method.as_str()]
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Function {
    /// The ARN a route names, qualifier included: the key stages share.
    pub arn: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    pub found: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The environment variables the table rule reads, with their values.
    pub environment: BTreeMap<String, String>,
    /// The names of the other environment variables (their values may be secrets).
    pub other_environment: Vec<String>,
    /// The table the rule leads to from this function's environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    pub log_group: String,
    pub log_group_exists: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    /// The resource-based policy's statements that let API Gateway invoke it.
    pub invoke_permissions: Vec<Permission>,
    /// What the execution role may do on each table of the deployment.
    pub access: Vec<TableAccess>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Permission {
    pub sid: String,
    /// `AWS:SourceArn` of an `ArnLike`/`ArnEquals` condition; none: any source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_arn: Option<String>,
    /// Conditions besides the SourceArn, which are not evaluated.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub other_conditions: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TableAccess {
    pub table: String,
    pub table_arn: String,
    /// DynamoDB actions the role may call on the table (`dynamodb:PutItem`).
    pub allowed: Vec<String>,
    /// `SimulatePrincipalPolicy` or `stagecheck` (its own evaluator).
    pub decided_by: String,
    /// Statements whose conditions were not evaluated (evaluator only).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub unevaluated_conditions: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Table {
    pub name: String,
    pub arn: String,
    pub exists: bool,
}

/// The DynamoDB actions audit asks about, and those a function needs on its
/// own table (the seed's service reads and writes items).
pub const TABLE_ACTIONS: [&str; 8] = [
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
];
pub const NEEDED_ACTIONS: [&str; 2] = ["dynamodb:GetItem", "dynamodb:PutItem"];

impl Deployment {
    pub fn function(&self, arn: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.arn == arn)
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    pub fn stage(&self, name: &str) -> Option<&StageView> {
        self.stages.iter().find(|s| s.name == name)
    }
}

impl Function {
    /// `Environment = "test-"`, the variables the table rule read; `(unset)`.
    pub fn environment_text(&self) -> String {
        if self.environment.is_empty() {
            "(unset)".into()
        } else {
            self.environment
                .iter()
                .map(|(k, v)| format!("{k} = {v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

impl StageView {
    /// The functions this stage's routes name, once each, in route order.
    pub fn function_arns(&self) -> Vec<&str> {
        let mut arns: Vec<&str> = Vec::new();
        for r in &self.routes {
            if let Some(f) = &r.function
                && !arns.contains(&f.arn.as_str())
            {
                arns.push(&f.arn);
            }
        }
        arns
    }
}
