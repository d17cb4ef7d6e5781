//! The run's deployment check before any traffic: the stage's backends as
//! the control plane has them, against the scenario's; a load refused on a
//! stage that shares a function or a table with a protected stage; and the
//! deployment recorded as the summary's evidence. Without control-plane
//! access it says so once and the run goes on with the scenario's names.

use crate::Result;
use crate::aws::ControlPlane;
use crate::deployment::{self, Deployment, TableRule};
use crate::error::{AwsFailure, Error};
use crate::scenario::Plan;
use crate::summary::{DeploymentEvidence, FunctionEvidence};

/// Reads and checks the deployment; `None` when there is none to read (a
/// local target without `rest_api`) or it could not be read.
pub async fn check(plan: &Plan) -> Result<Option<DeploymentEvidence>> {
    let Some(api) = &plan.control.rest_api else {
        return Ok(None);
    };
    let go_on = |why: &str| {
        // Even with --quiet: the run has less evidence than it could.
        eprintln!(
            "note: the deployment of REST API {api} was not read before the traffic ({why}); \
             going on with the scenario's backends."
        );
        Ok(None)
    };
    let aws = match ControlPlane::new(&plan.verify.aws, "to read the deployment", "").await {
        Ok(aws) => aws,
        Err(e) => return go_on(&e.message),
    };
    let rule = TableRule(plan.control.table_rule.clone());
    let d = match deployment::read(&aws, api, &[], &rule).await {
        Ok(d) => d,
        Err(Error::AwsCall(e)) if !matches!(e.failure, AwsFailure::Unreachable) => {
            return go_on(&e.message);
        }
        Err(e) => return Err(e),
    };
    judge(plan, &d)
}

/// The checks on a deployment read; pure, so the tests can give it any.
pub fn judge(plan: &Plan, d: &Deployment) -> Result<Option<DeploymentEvidence>> {
    let stage = &plan.stage.name;
    let Some(view) = d.stage(stage) else {
        let names: Vec<&str> = d.stages.iter().map(|s| s.name.as_str()).collect();
        return Err(Error::Usage(format!(
            "REST API {} ({}) has no stage {stage}; its stages: {}",
            d.rest_api.name,
            d.rest_api.id,
            names.join(", ")
        )));
    };
    let functions: Vec<&deployment::Function> = view
        .function_arns()
        .into_iter()
        .filter_map(|a| d.function(a))
        .collect();
    let tables: Vec<&str> = functions
        .iter()
        .filter_map(|f| f.table.as_deref())
        .collect();

    // A load on a stage that shares a backend with a protected stage is a
    // load on the protected stage.
    let smoke = plan.load.iterations == Some(1);
    if !smoke && !plan.control.allow_shared {
        for p in plan
            .stages
            .iter()
            .filter(|p| p.protected && &p.name != stage)
        {
            let Some(other) = d.stage(&p.name) else {
                continue;
            };
            let theirs: Vec<&deployment::Function> = other
                .function_arns()
                .into_iter()
                .filter_map(|a| d.function(a))
                .collect();
            let shared_functions: Vec<&str> = functions
                .iter()
                .filter(|f| theirs.iter().any(|t| t.arn == f.arn))
                .map(|f| f.name.as_str())
                .collect();
            let shared_tables: Vec<&str> = tables
                .iter()
                .filter(|t| theirs.iter().any(|f| f.table.as_deref() == Some(**t)))
                .copied()
                .collect();
            if !shared_functions.is_empty() || !shared_tables.is_empty() {
                let what = if shared_functions.is_empty() {
                    format!("table {}", shared_tables.join(", "))
                } else {
                    format!("function {}", shared_functions.join(", "))
                };
                return Err(Error::Usage(format!(
                    "stage {stage} shares {what} with protected stage {}, so this load would \
                     land on {} too: fix the deployment (`stagecheck audit --rest-api {}` shows \
                     the chain), or pass --allow-shared to send it anyway",
                    p.name, p.name, d.rest_api.id
                )));
            }
        }
    }

    // The scenario's names against the deployment's.
    let wanted = &plan.stage.backends;
    if !functions.is_empty() {
        let names: Vec<&str> = functions.iter().map(|f| f.name.as_str()).collect();
        let function_ok = names.contains(&wanted.function.as_str());
        let table_ok = tables.is_empty() || tables.contains(&wanted.table.as_str());
        if !function_ok || !table_ok {
            let message = format!(
                "stage {stage}: the scenario expects function {} and table {}, but REST API \
                 {}'s stage {stage} invokes {} leading to table {}: fix the stage's \
                 table_prefix or [backends] names, fix the deployment (`stagecheck audit`), or \
                 set `[backends] pinned = true` to run with the scenario's names",
                wanted.function,
                wanted.table,
                d.rest_api.name,
                names.join(", "),
                if tables.is_empty() {
                    "(none)".to_string()
                } else {
                    tables.join(", ")
                }
            );
            if plan.control.pinned {
                eprintln!("note: {message} (pinned: going on)");
            } else {
                return Err(Error::Usage(message));
            }
        }
    }
    Ok(Some(DeploymentEvidence {
        rest_api_id: d.rest_api.id.clone(),
        stage: stage.clone(),
        deployment_id: view.deployment_id.clone(),
        functions: functions
            .iter()
            .map(|f| FunctionEvidence {
                name: f.name.clone(),
                version: f.version.clone(),
                code_sha256: f.code_sha256.clone(),
            })
            .collect(),
    }))
}
