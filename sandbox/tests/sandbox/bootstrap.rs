//! Bootstrap writes the deployment into moto once, repairs faults left behind,
//! and refuses bad arguments with the documented exit codes.

use std::collections::BTreeSet;

use crate::support::sandbox::{Aws, Moto, Sandbox};

async fn deployment_count(aws: &Aws, api_id: &str) -> usize {
    aws.apigateway
        .get_deployments()
        .rest_api_id(api_id)
        .send()
        .await
        .expect("GetDeployments")
        .items()
        .len()
}

async fn users_api_ids(aws: &Aws) -> Vec<String> {
    aws.apigateway
        .get_rest_apis()
        .send()
        .await
        .expect("GetRestApis")
        .items()
        .iter()
        .filter(|a| a.name() == Some("users"))
        .filter_map(|a| a.id().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn bootstrap_twice_changes_nothing() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    drop(Sandbox::start(&moto, &[], &[]));
    let api_id = users_api_ids(&aws).await.pop().expect("API users");
    let deployments_after_first = deployment_count(&aws, &api_id).await;

    let mut second = Sandbox::start(&moto, &[], &[]);
    second.stop();
    assert!(
        second
            .stderr_text()
            .contains("bootstrap: the deployment was already in place"),
        "{}",
        second.stderr_text()
    );

    assert_eq!(users_api_ids(&aws).await, vec![api_id.clone()]);
    assert_eq!(
        deployment_count(&aws, &api_id).await,
        deployments_after_first
    );

    let resources = aws
        .apigateway
        .get_resources()
        .rest_api_id(&api_id)
        .embed("methods")
        .send()
        .await
        .expect("GetResources");
    let paths: BTreeSet<_> = resources.items().iter().filter_map(|r| r.path()).collect();
    assert_eq!(paths, BTreeSet::from(["/", "/user", "/user/{id}"]));
    for r in resources.items().iter().filter(|r| r.path() != Some("/")) {
        let methods = r.resource_methods().expect("methods");
        assert_eq!(methods.len(), 1, "{:?}", r.path());
        let uri = methods["ANY"]
            .method_integration()
            .and_then(|i| i.uri())
            .expect("integration");
        assert_eq!(
            uri,
            "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:${stageVariables.env}user-service/invocations"
        );
    }

    let stages = aws
        .apigateway
        .get_stages()
        .rest_api_id(&api_id)
        .send()
        .await
        .expect("GetStages");
    let vars: BTreeSet<(String, String)> = stages
        .item()
        .iter()
        .map(|s| {
            (
                s.stage_name().unwrap_or_default().to_string(),
                s.variables().expect("variables")["env"].clone(),
            )
        })
        .collect();
    assert_eq!(
        vars,
        BTreeSet::from([
            ("prod".to_string(), String::new()),
            ("test".to_string(), "test-".to_string())
        ])
    );

    let tables = aws.dynamodb.list_tables().send().await.expect("ListTables");
    assert_eq!(tables.table_names(), ["User", "test-User"]);

    let functions = aws
        .lambda
        .list_functions()
        .send()
        .await
        .expect("ListFunctions");
    assert_eq!(functions.functions().len(), 2);
    for (name, env) in [("user-service", ""), ("test-user-service", "test-")] {
        let config = aws
            .lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
            .expect("GetFunctionConfiguration");
        let vars = config
            .environment()
            .and_then(|e| e.variables())
            .expect("env");
        assert_eq!(vars["Environment"], env);
        let policy = aws
            .lambda
            .get_policy()
            .function_name(name)
            .send()
            .await
            .expect("GetPolicy");
        let doc: serde_json::Value =
            serde_json::from_str(policy.policy().expect("policy")).unwrap();
        let statements = doc["Statement"].as_array().expect("statements");
        assert_eq!(statements.len(), 1, "{doc}");
        assert_eq!(
            statements[0]["Principal"]["Service"],
            "apigateway.amazonaws.com"
        );

        let role = config
            .role()
            .expect("role")
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let policies = aws
            .iam
            .list_role_policies()
            .role_name(&role)
            .send()
            .await
            .expect("ListRolePolicies");
        assert_eq!(policies.policy_names().len(), 1);
        let doc = aws
            .iam
            .get_role_policy()
            .role_name(&role)
            .policy_name(&policies.policy_names()[0])
            .send()
            .await
            .expect("GetRolePolicy");
        let text = urlencoding_decode(doc.policy_document());
        let table = format!("table/{env}User\"");
        assert!(text.contains(&table), "{name}: {text}");
        let other = if env.is_empty() {
            "table/test-User"
        } else {
            "table/User\""
        };
        assert!(
            !text.contains(other),
            "{name} may reach another table: {text}"
        );
    }
    let roles = aws.iam.list_roles().send().await.expect("ListRoles");
    assert_eq!(roles.roles().len(), 2);

    let groups = aws
        .logs
        .describe_log_groups()
        .log_group_name_prefix("/aws/lambda/")
        .send()
        .await
        .expect("DescribeLogGroups");
    let names: BTreeSet<_> = groups
        .log_groups()
        .iter()
        .filter_map(|g| g.log_group_name())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["/aws/lambda/test-user-service", "/aws/lambda/user-service"])
    );
}

/// IAM returns policy documents URL-encoded.
fn urlencoding_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_clean_start_restores_what_faults_changed() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    drop(Sandbox::start(
        &moto,
        &["shared-table", "shared-function"],
        &[],
    ));
    let test_env = |aws: &Aws| {
        let lambda = aws.lambda.clone();
        async move {
            lambda
                .get_function_configuration()
                .function_name("test-user-service")
                .send()
                .await
                .expect("GetFunctionConfiguration")
                .environment()
                .and_then(|e| e.variables())
                .map(|v| v["Environment"].clone())
        }
    };
    let stage_env = |aws: &Aws| {
        let ag = aws.apigateway.clone();
        async move {
            let apis = ag.get_rest_apis().send().await.expect("GetRestApis");
            let id = apis.items()[0].id().unwrap().to_string();
            ag.get_stage()
                .rest_api_id(id)
                .stage_name("test")
                .send()
                .await
                .expect("GetStage")
                .variables()
                .map(|v| v["env"].clone())
        }
    };
    assert_eq!(test_env(&aws).await.as_deref(), Some(""));
    assert_eq!(stage_env(&aws).await.as_deref(), Some(""));

    let mut clean = Sandbox::start(&moto, &[], &[]);
    clean.stop();
    assert_eq!(test_env(&aws).await.as_deref(), Some("test-"));
    assert_eq!(stage_env(&aws).await.as_deref(), Some("test-"));
    assert!(
        clean.stderr_text().contains("restored"),
        "{}",
        clean.stderr_text()
    );
}

fn run_sandbox(args: &[&str]) -> (i32, String) {
    let out = crate::support::sandbox_command()
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run stagecheck-sandbox");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unreachable_moto_is_a_runtime_error_not_a_panic() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let (code, stderr) = run_sandbox(&["--aws-endpoint", &endpoint, "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("cannot reach the AWS endpoint"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_arguments_are_usage_errors() {
    let e = "http://127.0.0.1:9";
    for (args, needle) in [
        (
            vec!["--aws-endpoint", e, "--fault", "bogus"],
            "unknown fault",
        ),
        (
            vec!["--aws-endpoint", e, "--fault", "error-rate=2"],
            "probability",
        ),
        (vec!["--aws-endpoint", e, "--fault", "stall=5"], "AT:FOR"),
        (
            vec!["--aws-endpoint", e, "--auth", "test=basic"],
            "STAGE=iam",
        ),
        (
            vec![
                "--aws-endpoint",
                e,
                "--auth",
                "test=api-key:STAGECHECK_UNSET_VAR",
            ],
            "STAGECHECK_UNSET_VAR is not set",
        ),
        (vec!["--aws-endpoint", e, "--listen", "nowhere"], "--listen"),
        (
            vec!["--aws-endpoint", e, "--aws-listen", "nowhere"],
            "--aws-listen",
        ),
        (
            vec!["--aws-endpoint", e, "--fault", "code-drift=yes"],
            "takes no value",
        ),
        (vec!["--listen", "127.0.0.1:0"], "--aws-endpoint"),
    ] {
        let (code, stderr) = run_sandbox(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
