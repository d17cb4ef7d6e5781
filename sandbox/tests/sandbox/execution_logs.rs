//! API Gateway's execution and access logs, turned on through UpdateStage as a
//! user turns them on, read back from moto: one set of lines per request in
//! AWS's order, naming the function invoked and the source ARN; the Lambda
//! request id links them to the function's REPORT line and to the access log;
//! ERROR writes only failures, OFF nothing.

use std::collections::HashMap;
use std::time::Duration;

use crate::control::{
    account, api_id, by_request, eventually, reload, replace_on_stage, report_of, set_log_level,
};
use crate::support::sandbox::{Aws, Moto, Sandbox, http, marker, send};
use serde_json::{Value, json};

const ACCESS_GROUP: &str = "users-access";
const ACCESS_FORMAT: &str = r#"{"requestId":"$context.requestId","extendedRequestId":"$context.extendedRequestId","stage":"$context.stage","status":"$context.status","responseLatency":"$context.responseLatency","integrationLatency":"$context.integrationLatency","lambdaRequestId":"$context.integration.requestId","integrationStatus":"$context.integration.status","integrationLatency2":"$context.integration.latency","canary":"$context.isCanaryRequest","method":"$context.httpMethod","resourcePath":"$context.resourcePath","path":"$context.path","protocol":"$context.protocol","requestTime":"$context.requestTime","epoch":"$context.requestTimeEpoch","ip":"$context.identity.sourceIp","ua":"$context.identity.userAgent","caller":"$context.identity.caller"}"#;

async fn enable_access_log(aws: &Aws, api: &str, stage: &str, account: &str) {
    aws.logs
        .create_log_group()
        .log_group_name(ACCESS_GROUP)
        .send()
        .await
        .expect("CreateLogGroup");
    replace_on_stage(
        aws,
        api,
        stage,
        &[
            (
                "/accessLogSettings/destinationArn",
                &format!("arn:aws:logs:us-east-1:{account}:log-group:{ACCESS_GROUP}"),
            ),
            ("/accessLogSettings/format", ACCESS_FORMAT),
        ],
    )
    .await;
}

/// Waits until every request id has a line `Method completed …` in `group`.
async fn lines_of(aws: &Aws, group: &str, ids: &[String]) -> HashMap<String, Vec<String>> {
    eventually(Duration::from_secs(10), async || {
        let by = by_request(&aws.log_messages(group).await);
        ids.iter()
            .all(|id| {
                by.get(id).is_some_and(|l| {
                    l.iter()
                        .any(|l| l.starts_with("Method completed with status: "))
                })
            })
            .then_some(by)
    })
    .await
}

#[tokio::test]
async fn info_logs_each_request_with_its_function_source_arn_and_lambda_id() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    // Changes go where a user's pipeline sends them: the AWS endpoint.
    let aws = Aws::of(&sandbox).await;
    let api = api_id(&aws).await;
    let account = account(&aws).await;
    set_log_level(&aws, &api, "test", "INFO", true).await;
    enable_access_log(&aws, &api, "test", &account).await;
    reload(&sandbox).await;

    let client = http();
    let long_name = "n".repeat(3000);
    let created = send(
        &client,
        "POST",
        &sandbox.url("/test/user"),
        Some(&json!({ "name": long_name }).to_string()),
        &[
            ("X-Correlation-Id", &marker("exec")),
            ("User-Agent", "exec-test/1.0"),
            // A client-set header is not the source address API Gateway logs.
            ("X-Forwarded-For", "203.0.113.9"),
        ],
    )
    .await;
    assert_eq!(created.status, 201);
    let id = created.body["Id"].as_str().expect("Id").to_string();
    let got = send(
        &client,
        "GET",
        &sandbox.url(&format!("/test/user/{id}")),
        None,
        &[],
    )
    .await;
    assert_eq!(got.status, 200);
    let missing = send(&client, "GET", &sandbox.url("/test/user/nobody"), None, &[]).await;
    assert_eq!(missing.status, 404);
    // Prod has no logging on: its request is logged nowhere.
    let prod = send(&client, "GET", &sandbox.url("/prod/user/nobody"), None, &[]).await;
    assert_eq!(prod.status, 404);

    let requests = [
        (&created, "POST", "/user", "/user", 201),
        (&got, "GET", "/user/{id}", &format!("/user/{id}")[..], 200),
        (&missing, "GET", "/user/{id}", "/user/nobody", 404),
    ];
    let ids: Vec<String> = requests
        .iter()
        .map(|(a, ..)| {
            a.header("x-amzn-RequestId")
                .expect("request id")
                .to_string()
        })
        .collect();
    let group = format!("API-Gateway-Execution-Logs_{api}/test");
    let by = lines_of(&aws, &group, &ids).await;
    assert_eq!(by.len(), 3, "only test's three requests: {:?}", by.keys());
    let prod_id = prod.header("x-amzn-RequestId").expect("request id");
    assert!(!by.contains_key(prod_id));

    let function_arn = format!("arn:aws:lambda:us-east-1:{account}:function:test-user-service");
    let lambda_messages = aws.log_messages("/aws/lambda/test-user-service").await;
    let mut lambda_ids = Vec::new();
    for ((answer, method, resource, path, status), request_id) in requests.iter().zip(&ids) {
        let lines = &by[request_id];
        // AWS's order, the INFO lines the routing proof reads.
        let order = [
            "Extended Request Id: ".to_string(),
            format!("Starting execution for request: {request_id}"),
            format!("HTTP Method: {method}, Resource Path: {path}"),
            format!(
                "Endpoint request URI: https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/{function_arn}/invocations"
            ),
            "Endpoint request headers: {x-amzn-lambda-integration-tag=".to_string(),
            "Received response. Status: 200, Integration latency: ".to_string(),
            "Endpoint response headers: {".to_string(),
            "Successfully completed execution".to_string(),
            format!("Method completed with status: {status}"),
            "AWS Integration Endpoint RequestId : ".to_string(),
        ];
        let mut at = 0;
        for expected in &order {
            let found = lines[at..]
                .iter()
                .position(|l| l.starts_with(expected.as_str()))
                .unwrap_or_else(|| panic!("{expected:?} missing or out of order in {lines:#?}"));
            at += found + 1;
        }
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("Starting execution"))
                .count(),
            1
        );
        let extended = answer.header("x-amz-apigw-id").expect("x-amz-apigw-id");
        assert!(lines.contains(&format!("Extended Request Id: {extended}")));

        let headers = lines
            .iter()
            .find(|l| l.starts_with("Endpoint request headers: "))
            .expect("request headers");
        let source_arn =
            format!("arn:aws:execute-api:us-east-1:{account}:{api}/test/{method}{resource}");
        assert!(
            headers.contains(&format!(", X-Amz-Source-Arn={source_arn}, ")),
            "{headers}"
        );
        // The session token makes this line longer than an event may be.
        assert!(headers.ends_with(" [TRUNCATED]"), "{headers}");
        assert_eq!(headers.len(), 1024 + " [TRUNCATED]".len());

        let lambda_id = lines
            .iter()
            .find_map(|l| l.strip_prefix("AWS Integration Endpoint RequestId : "))
            .expect("integration request id")
            .to_string();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("Endpoint response headers: ")
                    && l.contains(&format!(", x-amzn-RequestId={lambda_id}, "))),
            "{lines:#?}"
        );
        // The same id is the function's REPORT line, in the function's group.
        assert!(
            report_of(&lambda_messages, &lambda_id).is_some(),
            "no REPORT RequestId: {lambda_id} in /aws/lambda/test-user-service"
        );
        lambda_ids.push(lambda_id);
    }

    // dataTrace: the bodies, cut at 1 024 bytes like every event.
    let post_lines = &by[&ids[0]];
    let body_line = post_lines
        .iter()
        .find(|l| l.starts_with("Method request body before transformations: "))
        .expect("dataTrace body line");
    assert!(body_line.contains("{\"name\":\"nnnn"), "{body_line}");
    assert!(body_line.ends_with(" [TRUNCATED]"));
    assert!(
        post_lines
            .iter()
            .all(|l| l.len() <= 1024 + " [TRUNCATED]".len())
    );
    assert!(
        post_lines
            .iter()
            .any(|l| l.starts_with("Endpoint response body before transformations: "))
    );

    // Access logs: the same ids, the client's and Lambda's.
    let access: Vec<Value> = eventually(Duration::from_secs(10), async || {
        let lines: Vec<Value> = aws
            .log_messages(ACCESS_GROUP)
            .await
            .iter()
            .map(|l| serde_json::from_str(l).expect("JSON access line"))
            .collect();
        (lines.len() >= 3).then_some(lines)
    })
    .await;
    assert_eq!(access.len(), 3, "{access:#?}");
    for (((answer, method, resource, path, status), request_id), lambda_id) in
        requests.iter().zip(&ids).zip(&lambda_ids)
    {
        let line = access
            .iter()
            .find(|l| l["requestId"] == request_id.as_str())
            .unwrap_or_else(|| panic!("no access line for {request_id}: {access:#?}"));
        assert_eq!(
            line["extendedRequestId"],
            answer.header("x-amz-apigw-id").unwrap()
        );
        assert_eq!(line["lambdaRequestId"], lambda_id.as_str());
        assert_eq!(line["status"], status.to_string());
        assert_eq!(line["integrationStatus"], status.to_string());
        assert_eq!(line["stage"], "test");
        assert_eq!(line["method"], *method);
        assert_eq!(line["resourcePath"], *resource);
        assert_eq!(line["path"], format!("/test{path}"));
        assert_eq!(line["protocol"], "HTTP/1.1");
        assert_eq!(line["canary"], "-", "no canary on the stage");
        assert_eq!(line["caller"], "-");
        assert!(
            line["responseLatency"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .is_ok()
        );
        assert!(
            line["integrationLatency"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .is_ok()
        );
        assert_eq!(line["integrationLatency"], line["integrationLatency2"]);
        assert!(line["epoch"].as_str().unwrap().parse::<u64>().is_ok());
        assert!(line["requestTime"].as_str().unwrap().ends_with(" +0000"));
    }
    let post = access
        .iter()
        .find(|l| l["requestId"] == ids[0].as_str())
        .unwrap();
    assert_eq!(post["ua"], "exec-test/1.0");
    assert_eq!(post["ip"], "127.0.0.1", "the TCP peer, not X-Forwarded-For");
}

#[tokio::test]
async fn error_level_writes_only_failures_and_off_writes_nothing() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    // Changes go where a user's pipeline sends them: the AWS endpoint.
    let aws = Aws::of(&sandbox).await;
    let api = api_id(&aws).await;
    set_log_level(&aws, &api, "test", "ERROR", false).await;
    reload(&sandbox).await;
    let client = http();
    let group = format!("API-Gateway-Execution-Logs_{api}/test");

    let ok = send(&client, "GET", &sandbox.url("/test/user/nobody"), None, &[]).await;
    assert_eq!(ok.status, 404);
    // The function fails: its role no longer allows reads.
    aws.iam
        .delete_role_policy()
        .role_name("test-user-service-role")
        .policy_name("user-table-access")
        .send()
        .await
        .expect("DeleteRolePolicy");
    reload(&sandbox).await;
    let failed = send(&client, "GET", &sandbox.url("/test/user/nobody"), None, &[]).await;
    assert_eq!(failed.status, 502);
    let ok_id = ok.header("x-amzn-RequestId").unwrap().to_string();
    let failed_id = failed.header("x-amzn-RequestId").unwrap().to_string();
    let by = lines_of(&aws, &group, std::slice::from_ref(&failed_id)).await;
    assert!(
        !by.contains_key(&ok_id),
        "a success was logged at ERROR: {:?}",
        by.get(&ok_id)
    );
    let lines = &by[&failed_id];
    assert!(
        lines[0].starts_with(
            "Lambda execution failed with status 200 due to customer function error: "
        ) && lines[0].contains("AccessDeniedException")
            && lines[0].contains("dynamodb:GetItem"),
        "{lines:#?}"
    );
    assert_eq!(
        lines[1..],
        ["Method completed with status: 502".to_string()]
    );

    // OFF: nothing at all, failures included.
    set_log_level(&aws, &api, "test", "OFF", false).await;
    reload(&sandbox).await;
    let unlogged = send(&client, "GET", &sandbox.url("/test/user/nobody"), None, &[]).await;
    assert_eq!(unlogged.status, 502);
    let unlogged_id = unlogged.header("x-amzn-RequestId").unwrap().to_string();
    // What the shipper had by then is flushed within a few intervals.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let by = by_request(&aws.log_messages(&group).await);
    assert!(!by.contains_key(&unlogged_id));
    assert_eq!(by.len(), 1);
}

/// A canary's requests are logged to the stage's groups and to the canary's
/// (`…/{stage}/Canary`, the access-log group with `/Canary` appended), as the
/// canary-release guide names them; the primary's only to the stage's.
#[tokio::test]
async fn canary_requests_are_logged_in_the_canary_groups_too() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let aws = Aws::of(&sandbox).await;
    let api = api_id(&aws).await;
    let account = account(&aws).await;
    set_log_level(&aws, &api, "test", "INFO", false).await;
    enable_access_log(&aws, &api, "test", &account).await;
    aws.apigateway
        .create_deployment()
        .rest_api_id(&api)
        .stage_name("test")
        .canary_settings(
            aws_sdk_apigateway::types::DeploymentCanarySettings::builder()
                .percent_traffic(100.0)
                .build(),
        )
        .send()
        .await
        .expect("CreateDeployment with canarySettings");
    reload(&sandbox).await;
    let canary = send(&http(), "GET", &sandbox.url("/test/user/nobody"), None, &[]).await;
    assert_eq!(canary.status, 404);
    let canary_id = canary.header("x-amzn-RequestId").unwrap().to_string();

    replace_on_stage(
        &aws,
        &api,
        "test",
        &[("/canarySettings/percentTraffic", "0.0")],
    )
    .await;
    reload(&sandbox).await;
    let primary = send(&http(), "GET", &sandbox.url("/test/user/nobody"), None, &[]).await;
    assert_eq!(primary.status, 404);
    let primary_id = primary.header("x-amzn-RequestId").unwrap().to_string();

    let stage_group = format!("API-Gateway-Execution-Logs_{api}/test");
    let canary_group = format!("{stage_group}/Canary");
    let both = [canary_id.clone(), primary_id.clone()];
    let in_stage = lines_of(&aws, &stage_group, &both).await;
    assert_eq!(in_stage.len(), 2);
    let in_canary = lines_of(&aws, &canary_group, std::slice::from_ref(&canary_id)).await;
    assert_eq!(in_canary.keys().collect::<Vec<_>>(), [&canary_id]);
    assert_eq!(in_canary[&canary_id], in_stage[&canary_id]);

    let access = |group: &'static str| {
        let aws = &aws;
        async move {
            aws.log_messages(group)
                .await
                .iter()
                .map(|l| serde_json::from_str::<Value>(l).expect("JSON access line"))
                .collect::<Vec<_>>()
        }
    };
    let stage_lines = eventually(Duration::from_secs(10), async || {
        let l = access(ACCESS_GROUP).await;
        (l.len() >= 2).then_some(l)
    })
    .await;
    let canary_lines = access("users-access/Canary").await;
    assert_eq!(canary_lines.len(), 1, "{canary_lines:#?}");
    assert_eq!(canary_lines[0]["requestId"], canary_id.as_str());
    assert_eq!(canary_lines[0]["canary"], "true");
    let primary_line = stage_lines
        .iter()
        .find(|l| l["requestId"] == primary_id.as_str())
        .expect("the primary's access line");
    assert_eq!(primary_line["canary"], "false");
}
