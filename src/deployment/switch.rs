//! The only changes stagecheck makes to a stage: which deployment it serves
//! (UpdateStage `replace /deploymentId`), asked for by a journaled promotion
//! or rollback; and what it needs to make and check them: what a stage
//! serves now and the API's deployment history.

use std::time::{Duration, Instant};

use aws_sdk_apigateway::types::{Op, PatchOperation};

use crate::aws::ControlPlane;
use crate::error::Error;

/// What a stage serves now.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Served {
    pub deployment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub canary_deployment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub canary_percent: Option<f64>,
}

pub async fn served(aws: &ControlPlane, api: &str, stage: &str) -> Result<Served, Error> {
    let ag = &aws.apigateway;
    let out = ag
        .get_stage()
        .rest_api_id(api)
        .stage_name(stage)
        .send()
        .await
        .map_err(|e| ag.error("GetStage", &format!("stage {stage} of REST API {api}"), &e))?;
    Ok(Served {
        deployment_id: out.deployment_id().map(str::to_string),
        canary_deployment_id: out
            .canary_settings()
            .and_then(|c| c.deployment_id())
            .map(str::to_string),
        canary_percent: out.canary_settings().map(|c| c.percent_traffic()),
    })
}

/// Points `stage` at deployment `id`.
pub async fn switch(aws: &ControlPlane, api: &str, stage: &str, id: &str) -> Result<(), Error> {
    let ag = &aws.apigateway;
    ag.update_stage()
        .rest_api_id(api)
        .stage_name(stage)
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
            ag.error(
                "UpdateStage",
                &format!("stage {stage} of REST API {api} (to deployment {id})"),
                &e,
            )
        })?;
    Ok(())
}

/// Polls GetStage until `stage` serves `id`, then waits `settle` more for
/// the data plane (AWS propagates a change in seconds). How long it took.
pub async fn wait_served(
    aws: &ControlPlane,
    api: &str,
    stage: &str,
    id: &str,
    deadline: Duration,
    settle: Duration,
) -> Result<Duration, Error> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(200);
    loop {
        let now = served(aws, api, stage).await?;
        if now.deployment_id.as_deref() == Some(id) {
            tokio::time::sleep(settle).await;
            return Ok(started.elapsed());
        }
        if started.elapsed() > deadline {
            return Err(Error::Runtime(format!(
                "stage {stage} of REST API {api} still serves {} {}s after it was switched to \
                 {id}: check the stage in the console, then `stagecheck promote --resume`",
                now.deployment_id.as_deref().unwrap_or("no deployment"),
                deadline.as_secs()
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// One deployment of the API's history.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeploymentInfo {
    pub id: String,
    /// RFC 3339, when API Gateway gives it.
    pub created: Option<String>,
    /// For ordering: seconds since the epoch (0 when unknown).
    #[serde(skip)]
    pub created_epoch: f64,
    pub description: Option<String>,
}

/// Every deployment of the API (every page of GetDeployments), newest first.
pub async fn deployments(aws: &ControlPlane, api: &str) -> Result<Vec<DeploymentInfo>, Error> {
    let ag = &aws.apigateway;
    let mut all = Vec::new();
    let mut position: Option<String> = None;
    loop {
        let page = ag
            .get_deployments()
            .rest_api_id(api)
            .limit(500)
            .set_position(position.clone())
            .send()
            .await
            .map_err(|e| ag.error("GetDeployments", &format!("REST API {api}"), &e))?;
        for d in page.items() {
            let Some(id) = d.id() else { continue };
            let created = d.created_date();
            all.push(DeploymentInfo {
                id: id.to_string(),
                created: created
                    .and_then(|c| c.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
                created_epoch: created.map_or(0.0, |c| c.as_secs_f64()),
                description: d.description().map(str::to_string),
            });
        }
        match page.position() {
            Some(p) if !p.is_empty() && Some(p) != position.as_deref() => {
                position = Some(p.to_string())
            }
            _ => break,
        }
    }
    // Newest first; the position in the listing breaks ties (dates to the second).
    let order: Vec<String> = all.iter().map(|d| d.id.clone()).collect();
    all.sort_by(|a, b| {
        b.created_epoch
            .partial_cmp(&a.created_epoch)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| {
                let pa = order.iter().position(|x| *x == a.id);
                let pb = order.iter().position(|x| *x == b.id);
                pb.cmp(&pa)
            })
    });
    Ok(all)
}

fn op(op: Op, path: &str, value: Option<&str>) -> PatchOperation {
    let b = PatchOperation::builder().op(op).path(path);
    match value {
        Some(v) => b.value(v).build(),
        None => b.build(),
    }
}

async fn patch(
    aws: &ControlPlane,
    api: &str,
    stage: &str,
    what: &str,
    ops: Vec<PatchOperation>,
) -> Result<(), Error> {
    let ag = &aws.apigateway;
    ag.update_stage()
        .rest_api_id(api)
        .stage_name(stage)
        .set_patch_operations(Some(ops))
        .send()
        .await
        .map_err(|e| {
            ag.error(
                "UpdateStage",
                &format!("stage {stage} of REST API {api} ({what})"),
                &e,
            )
        })?;
    Ok(())
}

/// Starts a canary on `stage`: `percent` of its traffic to deployment `id`.
pub async fn start_canary(
    aws: &ControlPlane,
    api: &str,
    stage: &str,
    id: &str,
    percent: f64,
) -> Result<(), Error> {
    patch(
        aws,
        api,
        stage,
        &format!("a canary of {id} at {percent}%"),
        vec![
            op(Op::Replace, "/canarySettings/deploymentId", Some(id)),
            op(
                Op::Replace,
                "/canarySettings/percentTraffic",
                Some(&percent.to_string()),
            ),
        ],
    )
    .await
}

/// Promotes the canary as AWS documents it (copy its deployment and its
/// variable overrides onto the stage, its share to 0), then ends it.
pub async fn promote_canary(aws: &ControlPlane, api: &str, stage: &str) -> Result<(), Error> {
    patch(
        aws,
        api,
        stage,
        "promoting its canary",
        vec![
            PatchOperation::builder()
                .op(Op::Copy)
                .from("/canarySettings/deploymentId")
                .path("/deploymentId")
                .build(),
            PatchOperation::builder()
                .op(Op::Copy)
                .from("/canarySettings/stageVariableOverrides")
                .path("/variables")
                .build(),
            op(Op::Replace, "/canarySettings/percentTraffic", Some("0.0")),
        ],
    )
    .await?;
    end_canary(aws, api, stage).await
}

/// Ends the canary; the primary deployment is not touched.
pub async fn end_canary(aws: &ControlPlane, api: &str, stage: &str) -> Result<(), Error> {
    patch(
        aws,
        api,
        stage,
        "removing its canary",
        vec![op(Op::Remove, "/canarySettings", None)],
    )
    .await
}
