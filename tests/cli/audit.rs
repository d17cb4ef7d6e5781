//! `stagecheck audit` against the sandbox: a clean deployment audits clean,
//! and each misconfiguration the sandbox can write into the control plane
//! is found under its code on the stage it breaks — the sandbox wrote it
//! through the SDK, so it is the ground truth; audit shares none of its code.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::support::sandbox::{ACCESS_KEY_ID, Moto, REGION, SECRET_ACCESS_KEY, Sandbox};
use crate::support::{isolated, read_json, run_bounded, text};

const LIMIT: Duration = Duration::from_secs(60);

/// `stagecheck audit --rest-api users ARGS` on the sandbox's AWS endpoint,
/// with `--out` to a temporary file: the output and the JSON document.
fn audit(sandbox: &Sandbox, args: &[&str]) -> (Output, Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("audit.json");
    let output = run_bounded(
        isolated()
            .args(["audit", "--rest-api", "users", "--region", REGION])
            .args(["--aws-endpoint", &sandbox.aws_endpoint])
            .arg("--out")
            .arg(&out)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        LIMIT,
    );
    let doc = if out.exists() {
        read_json(&out)
    } else {
        Value::Null
    };
    (output, doc)
}

fn codes(doc: &Value, severity: &str, stage: &str) -> Vec<String> {
    doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["severity"] == severity && f["stage"] == stage)
        .map(|f| f["code"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn finding<'a>(doc: &'a Value, code: &str, stage: &str) -> &'a Value {
    doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["code"] == code && f["stage"] == stage)
        .unwrap_or_else(|| panic!("no {code} finding on stage {stage}: {doc:#}"))
}

#[test]
fn a_clean_deployment_audits_clean_and_its_tree_names_the_chain() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let (output, doc) = audit(&sandbox, &[]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    for stage in ["test", "prod"] {
        assert!(codes(&doc, "error", stage).is_empty(), "{doc:#}");
    }
    // The stages' logging is off by default: the routing proof is unavailable.
    assert!(codes(&doc, "warning", "test").contains(&"execution-logging-off".to_string()));
    // The tree: test → its variable → route → test-user-service → test-User.
    let test_tree = &stdout[stdout.find("stage test").expect("stage test tree")..];
    for needle in [
        "env = \"test-\"",
        "ANY /user → test-user-service",
        "function test-user-service",
        "Environment = \"test-\"",
        "table test-User",
        "role test-user-service-role may touch: test-User",
    ] {
        assert!(
            test_tree.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
    assert!(stdout.contains("PASS"), "{stdout}");
    // What the stage serves came from its export, and what its role may do
    // from stagecheck's own evaluator (moto has no SimulatePrincipalPolicy).
    let test = doc["deployment"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "test")
        .unwrap();
    assert_eq!(test["routes_from"], "export");
    let f = doc["deployment"]["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "test-user-service")
        .unwrap();
    assert_eq!(f["table"], "test-User");
    assert_eq!(f["access"][0]["decided_by"], "stagecheck");
    assert!(f["code_sha256"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(
        doc["deployment"]["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("SimulatePrincipalPolicy")),
        "{doc:#}"
    );
}

/// Each fault the sandbox writes, the code audit gives it on stage test.
fn assert_fault_found(fault: &str, code: &str, severity: &str, exit: i32) -> Value {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[fault], &[]);
    let (output, doc) = audit(&sandbox, &[]);
    assert_eq!(
        output.status.code(),
        Some(exit),
        "fault {fault}: {}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(
        codes(&doc, severity, "test").contains(&code.to_string()),
        "fault {fault}: no {severity} {code} on test: {doc:#}"
    );
    let f = finding(&doc, code, "test");
    let message = f["message"].as_str().unwrap();
    assert!(message.ends_with('.'), "{message}");
    assert!(!f["resource"].as_str().unwrap().is_empty());
    doc
}

#[test]
fn a_missing_invoke_permission_is_found() {
    let doc = assert_fault_found(
        "missing-permission",
        "missing-invoke-permission",
        "error",
        1,
    );
    let f = finding(&doc, "missing-invoke-permission", "test");
    assert!(
        f["resource"]
            .as_str()
            .unwrap()
            .ends_with(":function:test-user-service")
    );
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("Invalid permissions on Lambda function")
    );
    // Prod's chain is intact.
    assert!(codes(&doc, "error", "prod").is_empty(), "{doc:#}");
}

#[test]
fn a_permission_for_another_stage_is_a_source_arn_mismatch() {
    let doc = assert_fault_found("wrong-source-arn", "source-arn-mismatch", "error", 1);
    let message = finding(&doc, "source-arn-mismatch", "test")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("/prod/*/*"), "{message}");
    assert!(message.contains("/test/"), "{message}");
}

#[test]
fn a_role_that_reaches_prods_table_is_found() {
    let doc = assert_fault_found(
        "role-allows-prod-table",
        "role-allows-other-stage-table",
        "error",
        1,
    );
    let f = finding(&doc, "role-allows-other-stage-table", "test");
    assert_eq!(f["decided_by"], "stagecheck");
    assert!(
        f["message"].as_str().unwrap().contains("table/User"),
        "{f:#}"
    );
    // Only test's role is wrong.
    assert!(codes(&doc, "error", "prod").is_empty(), "{doc:#}");
}

#[test]
fn a_role_without_its_own_table_is_found() {
    let doc = assert_fault_found("role-missing-table", "role-denies-own-table", "error", 1);
    let f = finding(&doc, "role-denies-own-table", "test");
    assert!(f["message"].as_str().unwrap().contains("dynamodb:PutItem"));
}

#[test]
fn an_unset_stage_variable_is_found_with_where_it_leads() {
    let doc = assert_fault_found("unset-stage-variable", "unset-stage-variable", "error", 1);
    let message = finding(&doc, "unset-stage-variable", "test")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("${stageVariables.env}"), "{message}");
    // Resolved without it, test's integration names prod's function.
    assert!(codes(&doc, "error", "test").contains(&"shared-function".to_string()));
    assert!(codes(&doc, "error", "prod").contains(&"shared-function".to_string()));
}

#[test]
fn a_stage_serving_an_old_deployment_is_found() {
    // The deployed integration names a function that was never created.
    let doc = assert_fault_found("stale-deployment", "stale-deployment", "warning", 1);
    assert!(codes(&doc, "error", "test").contains(&"function-not-found".to_string()));
    let f = finding(&doc, "function-not-found", "test");
    assert!(
        f["resource"]
            .as_str()
            .unwrap()
            .ends_with("test-user-service-v2"),
        "{f:#}"
    );
}

#[test]
fn code_drift_is_a_warning() {
    let doc = assert_fault_found("code-drift", "code-drift", "warning", 0);
    assert!(codes(&doc, "warning", "prod").contains(&"code-drift".to_string()));
}

#[test]
fn stages_sharing_a_table_or_a_function_are_found() {
    assert_fault_found("shared-table", "shared-table", "error", 1);
    let doc = assert_fault_found("shared-function", "shared-function", "error", 1);
    let f = finding(&doc, "shared-function", "test");
    assert!(
        f["resource"]
            .as_str()
            .unwrap()
            .ends_with(":function:user-service")
    );
}

#[test]
fn every_format_comes_from_the_one_document() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["missing-permission"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("audit.html");
    let junit = dir.path().join("audit.xml");
    let markdown = dir.path().join("audit.md");
    let (output, doc) = audit(
        &sandbox,
        &[
            "--stage",
            "test",
            "--stage",
            "prod",
            "--html",
            html.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--markdown",
            markdown.to_str().unwrap(),
            "--quiet",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        output.stdout.is_empty(),
        "--quiet printed {}",
        text(&output.stdout)
    );
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let xml = read(&junit);
    // One case per stage and check; the failing one carries the message.
    let cases = xml.matches("<testcase").count();
    assert_eq!(cases, 2 * 16, "{xml}");
    let at = xml
        .find("name=\"missing-invoke-permission\" classname=\"stagecheck.audit.test\"")
        .or_else(|| {
            xml.find("classname=\"stagecheck.audit.test\" name=\"missing-invoke-permission\"")
        })
        .unwrap_or_else(|| panic!("{xml}"));
    assert!(
        xml[at..]
            .split("</testcase>")
            .next()
            .unwrap()
            .contains("<failure")
    );
    assert_eq!(
        xml.matches("<failure").count(),
        doc["counts"]["error"].as_u64().unwrap() as usize
    );
    let page = read(&html);
    assert!(page.contains("<svg") && page.contains("stage test chain"));
    assert!(page.contains("#cf222e"), "a failing link is drawn red");
    let md = read(&markdown);
    assert!(md.contains("`missing-invoke-permission`") && md.contains("**fail**"));
}

#[test]
fn an_unknown_api_lists_the_apis_and_an_unknown_stage_the_stages() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let output = run_bounded(
        isolated()
            .args(["audit", "--rest-api", "orders", "--region", REGION])
            .args(["--aws-endpoint", &sandbox.aws_endpoint])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        LIMIT,
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("\"orders\"") && stderr.contains("users ("),
        "{stderr}"
    );

    let (output, doc) = audit(&sandbox, &["--stage", "qa"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no stage \"qa\"") && stderr.contains("prod, test"),
        "{stderr}"
    );
    assert!(doc.is_null());

    // A second API of the same name: which one is meant, by id.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let aws = rt.block_on(crate::support::sandbox::Aws::of(&sandbox));
    let twin = rt.block_on(async {
        aws.apigateway
            .create_rest_api()
            .name("users")
            .send()
            .await
            .unwrap()
            .id()
            .unwrap()
            .to_string()
    });
    let (output, _) = audit(&sandbox, &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("2 REST APIs are named \"users\"") && stderr.contains(&twin),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_control_plane_is_one_sentence_and_exit_3() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = run_bounded(
        isolated()
            .args(["audit", "--rest-api", "users", "--region", REGION])
            .args(["--aws-endpoint", &format!("http://127.0.0.1:{port}")])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        LIMIT,
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("GetRestApis") && stderr.contains("cannot reach API Gateway"),
        "{stderr}"
    );
    assert!(!stderr.contains("--no-verify"), "{stderr}");
    assert!(stderr.lines().count() <= 2, "{stderr}");
}

#[test]
fn init_writes_a_scenario_that_validates_and_runs() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.toml");
    let init = |extra: &[&str]| {
        run_bounded(
            isolated()
                .args(["init", "--rest-api", "users", "--region", REGION])
                .args(["--aws-endpoint", &sandbox.aws_endpoint])
                .arg("-o")
                .arg(&file)
                .args(extra)
                .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
                .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
            LIMIT,
        )
    };
    let output = init(&[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let scenario = std::fs::read_to_string(&file).unwrap();
    for needle in [
        ".execute-api.us-east-1.amazonaws.com/{stage}\"",
        "stage = \"test\"",
        "table_prefix = \"test-\"   # test-user-service's environment",
        "protected = true",
        "name = \"post_user\"",
        "path = \"/user/{{id}}\"",
        "capture = { id = { json = \"Id\" } }",
    ] {
        assert!(
            scenario.contains(needle),
            "{needle:?} missing from:\n{scenario}"
        );
    }
    // The defaults hold on the seed: no per-stage names are written.
    assert!(!scenario.contains("function = "), "{scenario}");

    // Nothing a user wrote is lost: no overwrite without --force.
    std::fs::write(&file, "# mine\n").unwrap();
    let refused = init(&[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "# mine\n");
    assert_eq!(init(&["--force"]).status.code(), Some(0));

    let validate = run_bounded(isolated().arg("validate").arg(&file), LIMIT);
    assert_eq!(
        validate.status.code(),
        Some(0),
        "{}",
        text(&validate.stderr)
    );
    let summary = dir.path().join("summary.json");
    let run = run_bounded(
        isolated()
            .arg("run")
            .arg(&file)
            .args(["--base-url", &format!("{}/{{stage}}", sandbox.base_url)])
            .args(["--no-verify", "-q", "-o"])
            .arg(&summary),
        LIMIT,
    );
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let summary = read_json(&summary);
    assert_eq!(summary["stage"], "test");
    assert_eq!(summary["passed"], true, "{summary:#}");
}

#[test]
fn a_canary_a_missing_table_and_a_missing_log_group_are_found() {
    use aws_sdk_apigateway::types::{Op, PatchOperation};
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let aws = rt.block_on(crate::support::sandbox::Aws::of(&sandbox));
    rt.block_on(async {
        let api = aws.apigateway.get_rest_apis().send().await.unwrap().items()[0]
            .id()
            .unwrap()
            .to_string();
        let canary = aws
            .apigateway
            .create_deployment()
            .rest_api_id(&api)
            .send()
            .await
            .unwrap()
            .id()
            .unwrap()
            .to_string();
        let replace = |path: &str, value: &str| {
            PatchOperation::builder()
                .op(Op::Replace)
                .path(path)
                .value(value)
                .build()
        };
        aws.apigateway
            .update_stage()
            .rest_api_id(&api)
            .stage_name("prod")
            .patch_operations(replace("/canarySettings/deploymentId", &canary))
            .patch_operations(replace("/canarySettings/percentTraffic", "20"))
            .send()
            .await
            .unwrap();
        aws.dynamodb
            .delete_table()
            .table_name("test-User")
            .send()
            .await
            .unwrap();
        aws.logs
            .delete_log_group()
            .log_group_name("/aws/lambda/test-user-service")
            .send()
            .await
            .unwrap();
    });
    let (output, doc) = audit(&sandbox, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let message = finding(&doc, "canary-active", "prod")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("20%"), "{message}");
    assert!(codes(&doc, "error", "test").contains(&"table-not-found".to_string()));
    assert!(codes(&doc, "error", "test").contains(&"log-group-not-found".to_string()));
    assert!(codes(&doc, "error", "prod").is_empty(), "{doc:#}");
}
