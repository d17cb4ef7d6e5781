//! Deployments are snapshots, through the sandbox's AWS endpoint and the real
//! SDK, as a user's pipeline drives them: a stage serves its deployment's frozen
//! API, not the draft; CreateDeployment naming a stage moves it and keeps its
//! variables; UpdateStage switches back; unknown ids are refused; GetDeployments
//! pages; a deployment in use cannot be deleted; GetExport shows what a stage
//! serves.

use std::collections::HashSet;

use crate::control::{api_id, reload};
use crate::support::sandbox::{Aws, Moto, Sandbox, http, send};
use aws_sdk_apigateway::types::{IntegrationType, Op, PatchOperation};

pub fn replace(path: &str, value: &str) -> PatchOperation {
    PatchOperation::builder()
        .op(Op::Replace)
        .path(path)
        .value(value)
        .build()
}

async fn stage_deployment(aws: &Aws, api: &str, stage: &str) -> String {
    aws.apigateway
        .get_stage()
        .rest_api_id(api)
        .stage_name(stage)
        .send()
        .await
        .expect("GetStage")
        .deployment_id()
        .expect("deploymentId")
        .to_string()
}

/// GET of a user that does not exist: 404 from a working chain, 500 from a
/// broken one; it writes nothing.
async fn probe(sandbox: &Sandbox, stage: &str) -> u16 {
    send(
        &http(),
        "GET",
        &sandbox.url(&format!("/{stage}/user/nobody")),
        None,
        &[],
    )
    .await
    .status
}

/// Points `/user/{id}`'s integration in the draft at a function that does not
/// exist, as a bad edit in the console would.
async fn break_the_draft(aws: &Aws, api: &str) -> String {
    let resources = aws
        .apigateway
        .get_resources()
        .rest_api_id(api)
        .send()
        .await
        .expect("GetResources");
    let resource = resources
        .items()
        .iter()
        .find(|r| r.path() == Some("/user/{id}"))
        .and_then(|r| r.id())
        .expect("/user/{id}")
        .to_string();
    let uri = "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:${stageVariables.env}renamed-service/invocations";
    aws.apigateway
        .put_integration()
        .rest_api_id(api)
        .resource_id(&resource)
        .http_method("ANY")
        .r#type(IntegrationType::AwsProxy)
        .integration_http_method("POST")
        .uri(uri)
        .send()
        .await
        .expect("PutIntegration");
    uri.to_string()
}

#[tokio::test]
async fn a_stage_serves_its_deployment_not_the_draft() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let aws = Aws::of(&sandbox).await;
    let api = api_id(&aws).await;
    let before = stage_deployment(&aws, &api, "test").await;
    assert_eq!(probe(&sandbox, "test").await, 404);

    let draft_uri = break_the_draft(&aws, &api).await;
    reload(&sandbox).await;
    assert_eq!(
        probe(&sandbox, "test").await,
        404,
        "a changed integration changes nothing until the next deployment"
    );

    // The draft says one thing, the stage's export another.
    let export = aws
        .apigateway
        .get_export()
        .rest_api_id(&api)
        .stage_name("test")
        .export_type("oas30")
        .parameters("extensions", "integrations")
        .accepts("application/json")
        .send()
        .await
        .expect("GetExport");
    let doc: serde_json::Value =
        serde_json::from_slice(export.body().expect("body").as_ref()).expect("JSON export");
    let exported = doc["paths"]["/user/{id}"]["x-amazon-apigateway-any-method"]
        ["x-amazon-apigateway-integration"]["uri"]
        .as_str()
        .expect("the export carries the integration");
    assert!(
        exported.contains("${stageVariables.env}user-service"),
        "{exported}"
    );
    assert_ne!(exported, draft_uri);

    let deployed = aws
        .apigateway
        .create_deployment()
        .rest_api_id(&api)
        .stage_name("test")
        .description("the broken edit, deployed")
        .send()
        .await
        .expect("CreateDeployment");
    let new_id = deployed.id().expect("id").to_string();
    assert_eq!(stage_deployment(&aws, &api, "test").await, new_id);
    let stage = aws
        .apigateway
        .get_stage()
        .rest_api_id(&api)
        .stage_name("test")
        .send()
        .await
        .expect("GetStage");
    assert_eq!(
        stage
            .variables()
            .and_then(|v| v.get("env"))
            .map(String::as_str),
        Some("test-"),
        "deploying to a stage keeps its variables (moto alone would wipe them)"
    );
    reload(&sandbox).await;
    assert_eq!(
        probe(&sandbox, "test").await,
        500,
        "the new deployment is served"
    );
    assert_eq!(
        probe(&sandbox, "prod").await,
        404,
        "prod still serves its own"
    );

    // Roll back: the old snapshot is served again.
    aws.apigateway
        .update_stage()
        .rest_api_id(&api)
        .stage_name("test")
        .patch_operations(replace("/deploymentId", &before))
        .send()
        .await
        .expect("UpdateStage back");
    reload(&sandbox).await;
    assert_eq!(probe(&sandbox, "test").await, 404);

    // An id that does not exist is refused as AWS refuses it.
    let err = aws
        .apigateway
        .update_stage()
        .rest_api_id(&api)
        .stage_name("test")
        .patch_operations(replace("/deploymentId", "nope00"))
        .send()
        .await
        .expect_err("an unknown deployment id");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_not_found_exception()),
        "{err:?}"
    );
    assert_eq!(stage_deployment(&aws, &api, "test").await, before);
}

#[tokio::test]
async fn deployments_page_and_one_in_use_cannot_be_deleted() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let aws = Aws::of(&sandbox).await;
    let api = api_id(&aws).await;
    let mut made = Vec::new();
    for i in 0..5 {
        let d = aws
            .apigateway
            .create_deployment()
            .rest_api_id(&api)
            .description(format!("release {i}"))
            .send()
            .await
            .expect("CreateDeployment");
        made.push(d.id().expect("id").to_string());
    }

    let mut seen = Vec::new();
    let mut position: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = aws
            .apigateway
            .get_deployments()
            .rest_api_id(&api)
            .limit(2)
            .set_position(position.clone())
            .send()
            .await
            .expect("GetDeployments");
        assert!(page.items().len() <= 2);
        seen.extend(
            page.items()
                .iter()
                .filter_map(|d| d.id().map(str::to_string)),
        );
        pages += 1;
        assert!(pages < 20, "paging does not end");
        match page.position() {
            Some(p) => position = Some(p.to_string()),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "a deployment on two pages: {seen:?}"
    );
    assert!(
        made.iter().all(|id| unique.contains(id)),
        "{made:?} ⊄ {seen:?}"
    );
    assert!(pages >= 3);

    let in_use = stage_deployment(&aws, &api, "prod").await;
    let err = aws
        .apigateway
        .delete_deployment()
        .rest_api_id(&api)
        .deployment_id(&in_use)
        .send()
        .await
        .expect_err("prod's deployment is in use");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_bad_request_exception()),
        "{err:?}"
    );
    aws.apigateway
        .delete_deployment()
        .rest_api_id(&api)
        .deployment_id(&made[0])
        .send()
        .await
        .expect("an unused deployment can be deleted");
}
