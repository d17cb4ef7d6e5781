//! The misconfiguration faults are real mistakes written into the control
//! plane: each is visible by reading the configuration through the SDK (as an
//! audit would) and does at run time what the same mistake does on AWS. A
//! sandbox started again without the fault puts everything back.

use crate::control::api_id;
use crate::support::sandbox::{Aws, Moto, Sandbox, http, marker, send};

async fn post(sandbox: &Sandbox, stage: &str) -> crate::support::sandbox::Answer {
    send(
        &http(),
        "POST",
        &sandbox.url(&format!("/{stage}/user")),
        Some(r#"{"name":"misconfig"}"#),
        &[("X-Correlation-Id", &marker("corr"))],
    )
    .await
}

async fn get(sandbox: &Sandbox, stage: &str) -> u16 {
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

async fn policy(aws: &Aws, function: &str) -> Option<serde_json::Value> {
    match aws.lambda.get_policy().function_name(function).send().await {
        Ok(p) => p.policy().and_then(|p| serde_json::from_str(p).ok()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            None
        }
        Err(e) => panic!("GetPolicy {function}: {e:?}"),
    }
}

fn source_arns(policy: &Option<serde_json::Value>) -> Vec<String> {
    policy
        .as_ref()
        .and_then(|p| p["Statement"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|s| s["Principal"]["Service"] == "apigateway.amazonaws.com")
        .filter_map(|s| {
            s.pointer("/Condition/ArnLike/AWS:SourceArn")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
        .collect()
}

async fn role_tables(aws: &Aws, role: &str) -> Vec<String> {
    let out = aws
        .iam
        .get_role_policy()
        .role_name(role)
        .policy_name("user-table-access")
        .send()
        .await
        .expect("GetRolePolicy");
    let text = out.policy_document();
    // IAM returns the document URL-encoded.
    let decoded = percent_decode(text);
    let doc: serde_json::Value = serde_json::from_str(&decoded).expect("policy JSON");
    let mut tables = Vec::new();
    for s in doc["Statement"].as_array().cloned().unwrap_or_default() {
        let resources = match &s["Resource"] {
            serde_json::Value::String(r) => vec![r.clone()],
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        };
        tables.extend(
            resources
                .iter()
                .filter_map(|r| r.split(":table/").nth(1).map(str::to_string)),
        );
    }
    tables.sort();
    tables
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn missing_permission_is_in_the_policy_and_answers_500() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["missing-permission"], &[]);
    let aws = Aws::of(&sandbox).await;
    assert!(source_arns(&policy(&aws, "test-user-service").await).is_empty());
    assert_eq!(source_arns(&policy(&aws, "user-service").await).len(), 1);
    assert_eq!(post(&sandbox, "test").await.status, 500);
    assert_eq!(post(&sandbox, "prod").await.status, 201);
}

#[tokio::test]
async fn wrong_source_arn_names_prod_and_answers_500_on_test() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["wrong-source-arn"], &[]);
    let aws = Aws::of(&sandbox).await;
    let arns = source_arns(&policy(&aws, "test-user-service").await);
    assert_eq!(arns.len(), 1, "{arns:?}");
    assert!(arns[0].ends_with("/prod/*/*"), "{arns:?}");
    assert_eq!(post(&sandbox, "test").await.status, 500);
    assert_eq!(post(&sandbox, "prod").await.status, 201);
}

#[tokio::test]
async fn role_allows_prod_table_has_no_runtime_symptom() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["role-allows-prod-table"], &[]);
    let aws = Aws::of(&sandbox).await;
    assert_eq!(
        role_tables(&aws, "test-user-service-role").await,
        vec!["User".to_string(), "test-User".to_string()]
    );
    assert_eq!(
        role_tables(&aws, "user-service-role").await,
        vec!["User".to_string()]
    );
    let a = post(&sandbox, "test").await;
    assert_eq!(a.status, 201);
    let id = a.body["Id"].as_str().expect("Id");
    assert!(aws.has_item("test-User", id).await);
}

#[tokio::test]
async fn role_missing_table_answers_502() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["role-missing-table"], &[]);
    let aws = Aws::of(&sandbox).await;
    assert_eq!(
        role_tables(&aws, "test-user-service-role").await,
        vec!["test-Users".to_string()]
    );
    let a = post(&sandbox, "test").await;
    assert_eq!(a.status, 502, "{:?}", a.body);
    assert_eq!(a.message(), "Internal server error");
    assert_eq!(post(&sandbox, "prod").await.status, 201);
}

#[tokio::test]
async fn unset_stage_variable_is_missing_from_the_stage_and_answers_500() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["unset-stage-variable"], &[]);
    let aws = Aws::of(&sandbox).await;
    let api = api_id(&aws).await;
    let stage = aws
        .apigateway
        .get_stage()
        .rest_api_id(&api)
        .stage_name("test")
        .send()
        .await
        .expect("GetStage");
    assert!(stage.variables().and_then(|v| v.get("env")).is_none());
    assert_eq!(post(&sandbox, "test").await.status, 500);
    assert_eq!(post(&sandbox, "prod").await.status, 201);
}

#[tokio::test]
async fn stale_deployment_serves_the_broken_snapshot_while_the_draft_is_fixed() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["stale-deployment"], &[]);
    let aws = Aws::of(&sandbox).await;
    let api = api_id(&aws).await;
    assert_eq!(get(&sandbox, "test").await, 500);
    assert_eq!(get(&sandbox, "prod").await, 404);

    let export = |stage: &'static str| {
        let aws = &aws;
        let api = api.clone();
        async move {
            let out = aws
                .apigateway
                .get_export()
                .rest_api_id(&api)
                .stage_name(stage)
                .export_type("oas30")
                .parameters("extensions", "integrations")
                .send()
                .await
                .expect("GetExport");
            let doc: serde_json::Value =
                serde_json::from_slice(out.body().expect("body").as_ref()).expect("JSON");
            doc["paths"]["/user/{id}"]["x-amazon-apigateway-any-method"]
                ["x-amazon-apigateway-integration"]["uri"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    };
    assert!(export("test").await.contains("user-service-v2"));
    assert!(!export("prod").await.contains("user-service-v2"));
    // The draft is fine: only the stage's deployment shows the mistake.
    let resources = aws
        .apigateway
        .get_resources()
        .rest_api_id(&api)
        .embed("methods")
        .send()
        .await
        .expect("GetResources");
    let draft = resources
        .items()
        .iter()
        .find(|r| r.path() == Some("/user/{id}"))
        .and_then(|r| r.resource_methods())
        .and_then(|m| m.get("ANY"))
        .and_then(|m| m.method_integration())
        .and_then(|i| i.uri())
        .unwrap_or_default()
        .to_string();
    assert!(
        draft.ends_with("${stageVariables.env}user-service/invocations"),
        "{draft}"
    );
}

#[tokio::test]
async fn code_drift_shows_in_code_sha256() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["code-drift"], &[]);
    let aws = Aws::of(&sandbox).await;
    let sha = |f: &'static str| {
        let aws = &aws;
        async move {
            aws.lambda
                .get_function_configuration()
                .function_name(f)
                .send()
                .await
                .expect("GetFunctionConfiguration")
                .code_sha256()
                .unwrap_or_default()
                .to_string()
        }
    };
    assert_ne!(sha("user-service").await, sha("test-user-service").await);
    let config = send(&http(), "GET", &sandbox.url("/_sandbox/config"), None, &[]).await;
    assert_eq!(config.body["faults"], serde_json::json!(["code-drift"]));
}

#[tokio::test]
async fn a_start_without_the_faults_puts_everything_back() {
    let moto = Moto::start();
    let mut first = Sandbox::start(
        &moto,
        &[
            "wrong-source-arn",
            "role-missing-table",
            "unset-stage-variable",
            "stale-deployment",
            "code-drift",
        ],
        &[],
    );
    first.stop();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let aws = Aws::of(&sandbox).await;
    let arns = source_arns(&policy(&aws, "test-user-service").await);
    assert!(arns.len() == 1 && arns[0].ends_with("/*"), "{arns:?}");
    assert!(!arns[0].contains("/prod/"));
    assert_eq!(
        role_tables(&aws, "test-user-service-role").await,
        vec!["test-User".to_string()]
    );
    let stderr = sandbox.stderr_text();
    assert!(stderr.contains("restored"), "{stderr}");
    let a = post(&sandbox, "test").await;
    assert_eq!(a.status, 201, "{:?}\n{stderr}", a.body);
    assert_eq!(get(&sandbox, "test").await, 404);
    let config = send(&http(), "GET", &sandbox.url("/_sandbox/config"), None, &[]).await;
    assert_eq!(config.body["faults"], serde_json::json!([]));
    assert!(config.body["stages"]["test"]["deployment_id"].is_string());
}
