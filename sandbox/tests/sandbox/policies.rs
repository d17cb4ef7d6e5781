//! The policies AWS enforces, enforced: a function's DynamoDB calls only where
//! its execution role allows them (502 otherwise, DynamoDB's AccessDenied text
//! in the function's log), and an invocation only where the function's
//! resource-based policy lets API Gateway in for that stage, method and
//! resource (500 and API Gateway's configuration-error line otherwise). Every
//! change is made through the SDK, as a user's pipeline would make it.

use std::time::Duration;

use crate::control::{account, api_id, eventually, reload, set_log_level};
use crate::support::sandbox::{Aws, Moto, Sandbox, http, marker, send};
use serde_json::json;

const TEST_ROLE: &str = "test-user-service-role";
const TEST_FUNCTION: &str = "test-user-service";
const TEST_GROUP: &str = "/aws/lambda/test-user-service";

async fn post_user(sandbox: &Sandbox, stage: &str) -> crate::support::sandbox::Answer {
    send(
        &http(),
        "POST",
        &sandbox.url(&format!("/{stage}/user")),
        Some(r#"{"name":"policy"}"#),
        &[("X-Correlation-Id", &marker("corr"))],
    )
    .await
}

/// A POST to stage test that API Gateway refuses for a configuration error:
/// 500 with its body, and `reason` on the request's execution-log line.
/// Returns the request id and the stage's execution-log messages.
async fn refused_for(
    sandbox: &Sandbox,
    aws: &Aws,
    api: &str,
    reason: &str,
) -> (String, Vec<String>) {
    let refused = post_user(sandbox, "test").await;
    assert_eq!(refused.status, 500);
    assert_eq!(refused.body, json!({"message": "Internal server error"}));
    let request_id = refused
        .header("x-amzn-RequestId")
        .expect("request id")
        .to_string();
    let group = format!("API-Gateway-Execution-Logs_{api}/test");
    let line = format!("({request_id}) Execution failed due to configuration error: {reason}");
    let messages = eventually(Duration::from_secs(10), async || {
        let m = aws.log_messages(&group).await;
        m.contains(&line).then_some(m)
    })
    .await;
    (request_id, messages)
}

fn table_arn(account: &str, table: &str) -> String {
    format!("arn:aws:dynamodb:us-east-1:{account}:table/{table}")
}

async fn put_role_policy(aws: &Aws, name: &str, document: serde_json::Value) {
    aws.iam
        .put_role_policy()
        .role_name(TEST_ROLE)
        .policy_name(name)
        .policy_document(document.to_string())
        .send()
        .await
        .expect("PutRolePolicy");
}

#[tokio::test]
async fn the_execution_role_decides_what_the_function_may_do() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    // Changes go where a user's pipeline sends them: the AWS endpoint.
    let aws = Aws::of(&sandbox).await;
    let account = account(&aws).await;
    let test_table = table_arn(&account, "test-User");

    // The seed's role allows its own table.
    let allowed = post_user(&sandbox, "test").await;
    assert_eq!(allowed.status, 201, "{}", allowed.body);
    let id = allowed.body["Id"].as_str().expect("Id").to_string();
    assert!(aws.has_item("test-User", &id).await);

    // A role that names prod's table (a copy-paste slip) gives test nothing.
    put_role_policy(
        &aws,
        "user-table-access",
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Scan", "dynamodb:DeleteItem"],
            "Resource": table_arn(&account, "User"),
        }]}),
    )
    .await;
    reload(&sandbox).await;
    let denied = post_user(&sandbox, "test").await;
    assert_eq!(denied.status, 502);
    assert_eq!(denied.body, json!({"message": "Internal server error"}));
    let expected = format!(
        "User: arn:aws:sts::{account}:assumed-role/{TEST_ROLE}/{TEST_FUNCTION} is not authorized to perform: dynamodb:PutItem on resource: {test_table} because no identity-based policy allows the dynamodb:PutItem action"
    );
    eventually(Duration::from_secs(10), async || {
        aws.log_messages(TEST_GROUP)
            .await
            .iter()
            .any(|m| m.contains(&expected))
            .then_some(())
    })
    .await;
    // Prod's own role is untouched.
    assert_eq!(post_user(&sandbox, "prod").await.status, 201);

    // Wildcards and a managed policy attached to the role: reads only.
    put_role_policy(
        &aws,
        "user-table-access",
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Action": "dynamodb:Get*",
            "Resource": format!("arn:aws:dynamodb:*:{account}:table/test-*"),
        }]}),
    )
    .await;
    let deny_delete = aws
        .iam
        .create_policy()
        .policy_name("no-deletes")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["dynamodb:DeleteItem", "dynamodb:PutItem"], "Resource": "*"},
                {"Effect": "Deny", "Action": "DynamoDB:Delete*", "Resource": "*"}
            ]})
            .to_string(),
        )
        .send()
        .await
        .expect("CreatePolicy");
    let deny_arn = deny_delete
        .policy()
        .and_then(|p| p.arn())
        .expect("policy ARN")
        .to_string();
    aws.iam
        .attach_role_policy()
        .role_name(TEST_ROLE)
        .policy_arn(&deny_arn)
        .send()
        .await
        .expect("AttachRolePolicy");
    reload(&sandbox).await;

    let url = sandbox.url(&format!("/test/user/{id}"));
    let got = send(&http(), "GET", &url, None, &[]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    // PutItem comes from the managed policy's Allow.
    assert_eq!(post_user(&sandbox, "test").await.status, 201);
    // The managed policy's explicit Deny wins over its own Allow.
    let deleted = send(&http(), "DELETE", &url, None, &[]).await;
    assert_eq!(deleted.status, 502);
    assert!(
        aws.has_item("test-User", &id).await,
        "a denied delete deleted"
    );
    let explicit = format!(
        "is not authorized to perform: dynamodb:DeleteItem on resource: {test_table} with an explicit deny in an identity-based policy: {deny_arn}"
    );
    eventually(Duration::from_secs(10), async || {
        aws.log_messages(TEST_GROUP)
            .await
            .iter()
            .any(|m| m.contains(&explicit))
            .then_some(())
    })
    .await;
    // Scan is allowed by nothing.
    let listed = send(&http(), "GET", &sandbox.url("/test/user"), None, &[]).await;
    assert_eq!(listed.status, 502);
}

#[tokio::test]
async fn the_resource_policy_decides_which_stage_may_invoke() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    // Changes go where a user's pipeline sends them: the AWS endpoint.
    let aws = Aws::of(&sandbox).await;
    let api = api_id(&aws).await;
    let account = account(&aws).await;
    set_log_level(&aws, &api, "test", "ERROR", false).await;
    assert_eq!(post_user(&sandbox, "test").await.status, 201);

    // The permission removed: API Gateway may not invoke test's function.
    let policy = aws
        .lambda
        .get_policy()
        .function_name(TEST_FUNCTION)
        .send()
        .await
        .expect("GetPolicy");
    let sid = serde_json::from_str::<serde_json::Value>(policy.policy().expect("policy"))
        .expect("JSON policy")["Statement"][0]["Sid"]
        .as_str()
        .expect("Sid")
        .to_string();
    aws.lambda
        .remove_permission()
        .function_name(TEST_FUNCTION)
        .statement_id(&sid)
        .send()
        .await
        .expect("RemovePermission");
    reload(&sandbox).await;
    refused_for(
        &sandbox,
        &aws,
        &api,
        "Invalid permissions on Lambda function",
    )
    .await;
    assert_eq!(post_user(&sandbox, "prod").await.status, 201);

    // A permission that names another stage (prod's) is no permission for test.
    aws.lambda
        .add_permission()
        .function_name(TEST_FUNCTION)
        .statement_id("apigateway-prod-only")
        .action("lambda:InvokeFunction")
        .principal("apigateway.amazonaws.com")
        .source_arn(format!(
            "arn:aws:execute-api:us-east-1:{account}:{api}/prod/*/*"
        ))
        .send()
        .await
        .expect("AddPermission");
    reload(&sandbox).await;
    assert_eq!(post_user(&sandbox, "test").await.status, 500);

    // One method on one resource, as the console grants it: that one passes.
    aws.lambda
        .add_permission()
        .function_name(TEST_FUNCTION)
        .statement_id("apigateway-test-get-user")
        .action("lambda:InvokeFunction")
        .principal("apigateway.amazonaws.com")
        .source_arn(format!(
            "arn:aws:execute-api:us-east-1:{account}:{api}/test/GET/user/{{id}}"
        ))
        .send()
        .await
        .expect("AddPermission");
    reload(&sandbox).await;
    let get = send(&http(), "GET", &sandbox.url("/test/user/nobody"), None, &[]).await;
    assert_eq!(get.status, 404, "{}", get.body);
    assert_eq!(post_user(&sandbox, "test").await.status, 500);
    let list = send(&http(), "GET", &sandbox.url("/test/user"), None, &[]).await;
    assert_eq!(list.status, 500);
}

#[tokio::test]
async fn an_unset_stage_variable_is_a_configuration_error() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    // Changes go where a user's pipeline sends them: the AWS endpoint.
    let aws = Aws::of(&sandbox).await;
    let api = api_id(&aws).await;
    set_log_level(&aws, &api, "test", "ERROR", false).await;
    // Someone deletes test's `env` variable; the integration URI still reads it.
    aws.apigateway
        .update_stage()
        .rest_api_id(&api)
        .stage_name("test")
        .patch_operations(
            aws_sdk_apigateway::types::PatchOperation::builder()
                .op(aws_sdk_apigateway::types::Op::Remove)
                .path("/variables/env")
                .build(),
        )
        .send()
        .await
        .expect("UpdateStage");
    reload(&sandbox).await;
    let (request_id, messages) = refused_for(
        &sandbox,
        &aws,
        &api,
        "Invalid stage variable value: null.  Please use values with alphanumeric characters and the symbols ' ', -', '.', '_', ':', '/', '?', '&', '=', and ','.",
    )
    .await;
    assert!(messages.contains(&format!("({request_id}) Method completed with status: 500")));
    // Not prod's function either: nothing was invoked.
    let prod_logs = aws.log_messages("/aws/lambda/user-service").await;
    assert!(prod_logs.is_empty(), "{prod_logs:?}");
    assert_eq!(post_user(&sandbox, "prod").await.status, 201);
}
