//! The verifier's log-line reader against what the sandbox writes in AWS's
//! formats: API Gateway's execution log names the function the stage invoked
//! and Lambda's request id, and that id is the one in the function's `REPORT`
//! (text and JSON formats alike). The sandbox is the ground truth here: the
//! reader shares none of its code.

use std::time::Duration;

use aws_sdk_apigateway::types::{Op, PatchOperation};
use aws_sdk_lambda::types::{LogFormat, LoggingConfig};
use stagecheck::verify::lines::{Execution, parse_execution, parse_report};

use crate::support::sandbox::{Aws, Moto, Sandbox, eventually, http, send};

#[tokio::test]
async fn the_execution_log_chain_leads_to_the_functions_report() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let aws = Aws::of(&sandbox).await;
    let apis = aws
        .apigateway
        .get_rest_apis()
        .send()
        .await
        .expect("GetRestApis");
    let api = apis.items()[0].id().expect("id").to_string();
    aws.apigateway
        .update_stage()
        .rest_api_id(&api)
        .stage_name("test")
        .patch_operations(
            PatchOperation::builder()
                .op(Op::Replace)
                .path("/*/*/logging/loglevel")
                .value("INFO")
                .build(),
        )
        .send()
        .await
        .expect("UpdateStage loglevel");
    // The function logs in Lambda's JSON format: nothing of the client's.
    aws.lambda
        .update_function_configuration()
        .function_name("test-user-service")
        .logging_config(LoggingConfig::builder().log_format(LogFormat::Json).build())
        .send()
        .await
        .expect("UpdateFunctionConfiguration");
    let reload = send(&http(), "POST", &sandbox.url("/_sandbox/reload"), None, &[]).await;
    assert_eq!(reload.status, 200);

    let answer = send(
        &http(),
        "POST",
        &sandbox.url("/test/user"),
        Some(r#"{"name":"chain"}"#),
        &[],
    )
    .await;
    assert_eq!(answer.status, 201);
    let request_id = answer
        .header("x-amzn-RequestId")
        .expect("request id")
        .to_string();

    let group = format!("API-Gateway-Execution-Logs_{api}/test");
    let chain = eventually(Duration::from_secs(15), async || {
        let events: Vec<Execution> = aws
            .log_messages(&group)
            .await
            .iter()
            .filter_map(|m| parse_execution(m))
            .filter(|(id, _)| *id == request_id)
            .map(|(_, e)| e)
            .collect();
        events
            .iter()
            .any(|e| matches!(e, Execution::IntegrationRequestId(_)))
            .then_some(events)
    })
    .await;
    let invoked: Vec<&String> = chain
        .iter()
        .filter_map(|e| match e {
            Execution::Invoked { function_arn } => Some(function_arn),
            _ => None,
        })
        .collect();
    assert_eq!(invoked.len(), 1, "{chain:?}");
    assert!(
        invoked[0].ends_with(":function:test-user-service"),
        "{invoked:?}"
    );
    assert!(
        chain.contains(&Execution::Completed { status: 201 }),
        "{chain:?}"
    );
    assert!(
        chain
            .iter()
            .any(|e| matches!(e, Execution::SourceArn(a) if a.contains("/test/POST/"))),
        "{chain:?}"
    );
    let lambda_id = chain
        .iter()
        .find_map(|e| match e {
            Execution::IntegrationRequestId(id) => Some(id.clone()),
            _ => None,
        })
        .expect("Lambda's request id");
    assert_ne!(lambda_id, request_id);

    let report = eventually(Duration::from_secs(15), async || {
        aws.log_messages("/aws/lambda/test-user-service")
            .await
            .iter()
            .filter_map(|m| parse_report(m))
            .find(|r| r.request_id == lambda_id)
    })
    .await;
    assert!(report.duration_ms >= 0.0);
    // The configuration change started a new environment: a cold start.
    assert!(report.init_ms.is_some(), "{report:?}");
}
