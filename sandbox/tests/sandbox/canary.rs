//! Canary releases through the sandbox's AWS endpoint, as AWS runs them:
//! CreateDeployment with canarySettings leaves the stage's own deployment and
//! variables; the data plane sends percentTraffic of the requests to the canary
//! with its variable overrides; the two copies promote it; remove ends it; the
//! operations AWS rejects are rejected.

use crate::control::{api_id, reload};
use crate::support::sandbox::{Aws, Moto, Sandbox, http, send};
use aws_sdk_apigateway::types::{CanarySettings, Op, PatchOperation};

fn op(op: Op, path: &str, value: Option<&str>, from: Option<&str>) -> PatchOperation {
    PatchOperation::builder()
        .op(op)
        .path(path)
        .set_value(value.map(str::to_string))
        .set_from(from.map(str::to_string))
        .build()
}

#[tokio::test]
async fn a_canary_takes_its_share_and_is_promoted_then_removed() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let aws = Aws::of(&sandbox).await;
    let ag = &aws.apigateway;
    let api = api_id(&aws).await;
    let primary = ag
        .get_stage()
        .rest_api_id(&api)
        .stage_name("prod")
        .send()
        .await
        .expect("GetStage")
        .deployment_id()
        .expect("deploymentId")
        .to_string();

    // The canary's override names a function that does not exist: its
    // requests answer 500, the primary's 404 (no such user). Nothing is written.
    let canary = ag
        .create_deployment()
        .rest_api_id(&api)
        .stage_name("prod")
        .canary_settings(
            aws_sdk_apigateway::types::DeploymentCanarySettings::builder()
                .percent_traffic(25.0)
                .stage_variable_overrides("env", "canary-")
                .build(),
        )
        .send()
        .await
        .expect("CreateDeployment with canarySettings");
    let canary_id = canary.id().expect("id").to_string();
    let stage = ag
        .get_stage()
        .rest_api_id(&api)
        .stage_name("prod")
        .send()
        .await
        .expect("GetStage");
    assert_eq!(
        stage.deployment_id(),
        Some(primary.as_str()),
        "the primary stays"
    );
    assert_eq!(
        stage
            .variables()
            .and_then(|v| v.get("env"))
            .map(String::as_str),
        Some("")
    );
    let settings: &CanarySettings = stage.canary_settings().expect("canarySettings");
    assert_eq!(settings.deployment_id(), Some(canary_id.as_str()));
    assert_eq!(settings.percent_traffic(), 25.0);
    assert_eq!(
        settings
            .stage_variable_overrides()
            .and_then(|o| o.get("env"))
            .map(String::as_str),
        Some("canary-")
    );
    reload(&sandbox).await;

    const N: usize = 2_000;
    const WORKERS: usize = 8;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let url = sandbox.url("/prod/user/nobody");
        tasks.spawn(async move {
            let client = http();
            let mut counts = (0usize, 0usize);
            for _ in 0..N / WORKERS {
                match send(&client, "GET", &url, None, &[]).await.status {
                    500 => counts.0 += 1,
                    404 => counts.1 += 1,
                    other => panic!("unexpected status {other}"),
                }
            }
            counts
        });
    }
    let (mut to_canary, mut to_primary) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        let (c, p) = done.expect("worker");
        to_canary += c;
        to_primary += p;
    }
    assert_eq!(to_canary + to_primary, N);
    // Binomial(2000, 0.25): mean 500, σ ≈ 19.4.
    let sigma = (N as f64 * 0.25 * 0.75).sqrt();
    let off = (to_canary as f64 - N as f64 * 0.25).abs();
    assert!(
        off <= 4.0 * sigma,
        "{to_canary} of {N} requests went to the canary (expected 500 ± {:.0})",
        4.0 * sigma
    );

    // Rejected as AWS rejects them; nothing changes.
    for bad in [
        op(Op::Add, "/canarySettings/percentTraffic", Some("50"), None),
        op(
            Op::Replace,
            "/canarySettings/percentTraffic",
            Some("150"),
            None,
        ),
        op(
            Op::Copy,
            "/canarySettings/deploymentId",
            None,
            Some("/deploymentId"),
        ),
    ] {
        let err = ag
            .update_stage()
            .rest_api_id(&api)
            .stage_name("prod")
            .patch_operations(bad.clone())
            .send()
            .await
            .expect_err("a rejected operation");
        assert!(
            err.as_service_error()
                .is_some_and(|e| e.is_bad_request_exception()),
            "{bad:?}: {err:?}"
        );
    }

    // The canary's deployment is in use: it cannot be deleted.
    let err = ag
        .delete_deployment()
        .rest_api_id(&api)
        .deployment_id(&canary_id)
        .send()
        .await
        .expect_err("the canary's deployment is in use");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_bad_request_exception()),
        "{err:?}"
    );

    // Promote: the stage takes the canary's deployment and variables.
    let promoted = ag
        .update_stage()
        .rest_api_id(&api)
        .stage_name("prod")
        .patch_operations(op(
            Op::Copy,
            "/deploymentId",
            None,
            Some("/canarySettings/deploymentId"),
        ))
        .patch_operations(op(
            Op::Copy,
            "/variables",
            None,
            Some("/canarySettings/stageVariableOverrides"),
        ))
        .patch_operations(op(
            Op::Replace,
            "/canarySettings/percentTraffic",
            Some("0.0"),
            None,
        ))
        .send()
        .await
        .expect("promote");
    assert_eq!(promoted.deployment_id(), Some(canary_id.as_str()));
    assert_eq!(
        promoted
            .variables()
            .and_then(|v| v.get("env"))
            .map(String::as_str),
        Some("canary-")
    );
    assert_eq!(
        promoted.canary_settings().map(|c| c.percent_traffic()),
        Some(0.0)
    );

    let ended = ag
        .update_stage()
        .rest_api_id(&api)
        .stage_name("prod")
        .patch_operations(op(Op::Remove, "/canarySettings", None, None))
        .send()
        .await
        .expect("remove /canarySettings");
    assert!(ended.canary_settings().is_none());
    let stage = ag
        .get_stage()
        .rest_api_id(&api)
        .stage_name("prod")
        .send()
        .await
        .expect("GetStage");
    assert!(stage.canary_settings().is_none());
    assert_eq!(stage.deployment_id(), Some(canary_id.as_str()));
}
