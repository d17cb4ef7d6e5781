//! The data plane against moto: each stage reaches its own table and log group,
//! answers carry API Gateway's headers and error bodies, logs look like Lambda's.

use std::time::Duration;

use crate::support::sandbox::{Aws, Moto, Sandbox, http, marker, send};
use serde_json::{Value, json};

const TABLES: [(&str, &str, &str); 2] = [
    ("prod", "User", "/aws/lambda/user-service"),
    ("test", "test-User", "/aws/lambda/test-user-service"),
];

#[tokio::test]
async fn each_stage_writes_its_own_table_and_logs_its_own_group() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let client = http();

    for (i, (stage, table, group)) in TABLES.iter().enumerate() {
        let (_, other_table, other_group) = TABLES[1 - i];
        let correlation = marker("corr");
        let user = json!({
            "name": "Ada", "age": 36, "admin": true, "score": 9.5,
            "address": {"city": "London", "lines": ["1 Main St", 2]}
        });
        let created = send(
            &client,
            "POST",
            &sandbox.url(&format!("/{stage}/user")),
            Some(&user.to_string()),
            &[
                ("X-Correlation-Id", &correlation),
                ("content-type", "application/json"),
            ],
        )
        .await;
        assert_eq!(created.status, 201, "{}", created.body);
        let id = created.body["Id"]
            .as_str()
            .expect("generated Id")
            .to_string();
        assert_eq!(created.body["address"], user["address"]);
        assert_eq!(created.header("content-type"), Some("application/json"));
        let api_request_id = created
            .header("x-amzn-RequestId")
            .expect("x-amzn-RequestId")
            .to_string();
        assert!(uuid::Uuid::parse_str(&api_request_id).is_ok());
        assert!(
            created
                .header("x-amz-apigw-id")
                .is_some_and(|v| !v.is_empty())
        );

        let got = send(
            &client,
            "GET",
            &sandbox.url(&format!("/{stage}/user/{id}")),
            None,
            &[],
        )
        .await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, created.body);
        assert_ne!(
            got.header("x-amzn-RequestId"),
            Some(api_request_id.as_str())
        );

        assert!(aws.has_item(table, &id).await, "{id} missing from {table}");
        assert!(
            !aws.has_item(other_table, &id).await,
            "{id} leaked into {other_table}"
        );

        assert!(
            aws.wait_for_log(group, &correlation, Duration::from_secs(10))
                .await,
            "{correlation} not logged in {group}"
        );
        let messages = aws.log_messages(group).await;
        // Text format: the runtime's `time\trequestId\tlevel\t` prefix, then
        // the function's JSON message.
        let app: Value = messages
            .iter()
            .filter(|m| m.contains(&correlation))
            .find_map(|m| serde_json::from_str(m.splitn(4, '\t').nth(3)?).ok())
            .expect("JSON application line");
        assert_eq!(app["correlation_id"], api_request_id.as_str());
        assert_eq!(app["x_correlation_id"], correlation.as_str());
        assert_eq!(app["table"], *table);
        assert_eq!(app["stage"], *stage);
        assert_eq!(app["level"], "INFO");
        assert_eq!(app["operation"], "CreateUser");
        let lambda_id = app["requestId"].as_str().expect("requestId");
        assert_ne!(lambda_id, api_request_id);
        assert!(messages.contains(&format!("START RequestId: {lambda_id} Version: $LATEST")));
        assert!(messages.contains(&format!("END RequestId: {lambda_id}")));
        let report = messages
            .iter()
            .find(|m| m.starts_with(&format!("REPORT RequestId: {lambda_id}\t")))
            .expect("REPORT line");
        assert!(report.contains("\tDuration: ") && report.contains(" ms\tBilled Duration: "));
        assert!(report.contains("\tMemory Size: 128 MB\tMax Memory Used: "));

        let elsewhere = aws.log_messages(other_group).await;
        assert!(
            !elsewhere.iter().any(|m| m.contains(&correlation)),
            "{correlation} leaked into {other_group}"
        );

        let streams = aws
            .logs
            .describe_log_streams()
            .log_group_name(*group)
            .send()
            .await
            .expect("DescribeLogStreams");
        assert_eq!(streams.log_streams().len(), 1);
        let name = streams.log_streams()[0]
            .log_stream_name()
            .unwrap_or_default();
        let (date, rest) = name.split_at(11);
        assert!(date.chars().filter(|c| *c == '/').count() == 3, "{name}");
        let hex = rest.strip_prefix("[$LATEST]").expect(name);
        assert!(
            hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}"
        );
    }
}

#[tokio::test]
async fn put_list_delete_and_not_found() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let client = http();
    let id = marker("user");
    let url = sandbox.url(&format!("/test/user/{id}"));

    let missing = send(&client, "GET", &url, None, &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body, json!({"message": "User not found"}));

    let created = send(
        &client,
        "POST",
        &sandbox.url("/test/user"),
        Some(&json!({"Id": id, "name": "a"}).to_string()),
        &[],
    )
    .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.body["Id"], id.as_str());

    let updated = send(&client, "PUT", &url, Some(r#"{"name":"b","n":1}"#), &[]).await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.body, json!({"Id": id, "name": "b", "n": 1}));
    let got = send(&client, "GET", &url, None, &[]).await;
    assert_eq!(got.body, updated.body);

    let list = send(&client, "GET", &sandbox.url("/test/user"), None, &[]).await;
    assert_eq!(list.status, 200);
    assert!(
        list.body
            .as_array()
            .expect("array")
            .iter()
            .any(|u| u["Id"] == id.as_str())
    );

    let deleted = send(&client, "DELETE", &url, None, &[]).await;
    assert!(matches!(deleted.status, 200 | 204));
    assert!(!aws.has_item("test-User", &id).await);
    assert_eq!(send(&client, "GET", &url, None, &[]).await.status, 404);
}

#[tokio::test]
async fn unknown_stage_or_route_is_missing_authentication_token() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let client = http();
    for (method, path) in [
        ("GET", "/staging/user"),
        ("POST", "/nope/user"),
        ("GET", "/test/users"),
        ("GET", "/test"),
        ("GET", "/"),
        ("GET", "/test/user/a/b"),
        ("DELETE", "/prod/admin"),
    ] {
        let a = send(&client, method, &sandbox.url(path), None, &[]).await;
        assert_eq!(a.status, 403, "{method} {path}");
        assert_eq!(a.body, json!({"message": "Missing Authentication Token"}));
        assert_eq!(
            a.header("x-amzn-ErrorType"),
            Some("MissingAuthenticationTokenException")
        );
        assert!(a.header("x-amzn-RequestId").is_some());
    }
}

#[tokio::test]
async fn malformed_json_is_400() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let client = http();
    for body in ["{", "not json", "[1,2]", r#"{"Id": 5}"#] {
        let a = send(&client, "POST", &sandbox.url("/prod/user"), Some(body), &[]).await;
        assert_eq!(a.status, 400, "{body}");
        assert!(!a.message().is_empty());
    }
    let a = send(&client, "PUT", &sandbox.url("/prod/user/x"), Some("{"), &[]).await;
    assert_eq!(a.status, 400);
    let scan = aws
        .dynamodb
        .scan()
        .table_name("User")
        .send()
        .await
        .expect("Scan");
    assert_eq!(scan.count(), 0);
}

#[tokio::test]
async fn no_backend_echoes_without_touching_tables() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    let sandbox = Sandbox::start(&moto, &[], &["--no-backend"]);
    let client = http();
    let correlation = marker("corr");
    let a = send(
        &client,
        "POST",
        &sandbox.url("/test/user"),
        Some(r#"{"name":"echo"}"#),
        &[("X-Correlation-Id", &correlation)],
    )
    .await;
    assert!(matches!(a.status, 200 | 201));
    assert_eq!(a.body["name"], "echo");
    let id = a.body["Id"].as_str().expect("Id");
    assert!(!aws.has_item("test-User", id).await);
    let unknown = send(&client, "GET", &sandbox.url("/dev/user"), None, &[]).await;
    assert_eq!(unknown.status, 403);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        aws.log_messages("/aws/lambda/test-user-service")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn stopping_flushes_pending_logs() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    // The shipper would wait a minute: only the shutdown flush can ship it.
    let mut sandbox = Sandbox::start(&moto, &[], &["--log-interval", "60s"]);
    let correlation = marker("corr");
    let a = send(
        &http(),
        "POST",
        &sandbox.url("/prod/user"),
        Some("{}"),
        &[("X-Correlation-Id", &correlation)],
    )
    .await;
    assert_eq!(a.status, 201);
    let status = sandbox.stop().expect("exit status");
    assert!(status.success(), "{status:?}: {}", sandbox.stderr_text());
    let messages = aws.log_messages("/aws/lambda/user-service").await;
    assert!(
        messages.iter().any(|m| m.contains(&correlation)),
        "{messages:?}"
    );
}

#[tokio::test]
async fn a_control_plane_change_reaches_the_data_plane() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    let sandbox = Sandbox::start(&moto, &[], &["--config-ttl", "1h"]);
    let client = http();

    // Someone points stage test at prod's function by hand.
    let apis = aws
        .apigateway
        .get_rest_apis()
        .send()
        .await
        .expect("GetRestApis");
    let api_id = apis.items()[0].id().expect("id").to_string();
    aws.apigateway
        .update_stage()
        .rest_api_id(&api_id)
        .stage_name("test")
        .patch_operations(
            aws_sdk_apigateway::types::PatchOperation::builder()
                .op(aws_sdk_apigateway::types::Op::Replace)
                .path("/variables/env")
                .value("")
                .build(),
        )
        .send()
        .await
        .expect("UpdateStage");
    let reload = send(&client, "POST", &sandbox.url("/_sandbox/reload"), None, &[]).await;
    assert_eq!(reload.status, 200);
    assert_eq!(
        reload.body["stages"]["test"]["routes"]["/user"]["table"],
        "User"
    );

    let a = send(&client, "POST", &sandbox.url("/test/user"), Some("{}"), &[]).await;
    assert_eq!(a.status, 201);
    let id = a.body["Id"].as_str().expect("Id");
    assert!(aws.has_item("User", id).await);
    assert!(!aws.has_item("test-User", id).await);

    // Without API Gateway's permission the function cannot be invoked: 500.
    aws.lambda
        .remove_permission()
        .function_name("user-service")
        .statement_id("apigateway-invoke-users")
        .send()
        .await
        .expect("RemovePermission");
    send(&client, "POST", &sandbox.url("/_sandbox/reload"), None, &[]).await;
    let denied = send(&client, "GET", &sandbox.url("/prod/user/x"), None, &[]).await;
    assert_eq!(denied.status, 500);
    assert_eq!(denied.body, json!({"message": "Internal server error"}));
}

#[tokio::test]
async fn a_full_log_buffer_drops_logs_not_requests() {
    let moto = Moto::start();
    let mut sandbox = Sandbox::start(&moto, &[], &["--log-buffer", "1", "--log-interval", "60s"]);
    let client = http();
    for _ in 0..5 {
        let a = send(&client, "GET", &sandbox.url("/prod/user/x"), None, &[]).await;
        assert_eq!(a.status, 404);
    }
    sandbox.stop();
    let stderr = sandbox.stderr_text();
    assert!(
        stderr.contains("logs were dropped (log buffer full)"),
        "{stderr}"
    );
}
