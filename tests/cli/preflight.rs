//! `run` reads the deployment before any traffic (`--rest-api`, or the id in
//! an execute-api host): its backends against the scenario's, a load refused
//! on a stage sharing a backend with a protected stage, and the deployment
//! recorded in the summary — against the sandbox's control plane.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::support::sandbox::{ACCESS_KEY_ID, Moto, REGION, SECRET_ACCESS_KEY, Sandbox};
use crate::support::{isolated, read_json, run_bounded, scenario_file, text};

/// A scenario on stage test with `test_prefix` and `extra` TOML, run with `args`.
fn run(sandbox: &Sandbox, test_prefix: &str, extra: &str, args: &[&str]) -> (Output, Value) {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        r#"
name = "preflight"
[target]
base_url = "{base}/{{stage}}"
stage = "test"

[[stages]]
name = "test"
table_prefix = "{test_prefix}"
[[stages]]
name = "prod"
table_prefix = ""
protected = true
{extra}

[[steps]]
name = "create_user"
method = "POST"
path = "/user"
body = {{ Name = "preflight-{{{{seq}}}}" }}
"#,
        base = sandbox.base_url
    );
    let file = scenario_file(dir.path(), "s.toml", &body);
    let out = dir.path().join("summary.json");
    let output = run_bounded(
        isolated()
            .arg("run")
            .arg(&file)
            .args(["--aws-endpoint", &sandbox.aws_endpoint, "--region", REGION])
            .args(["--rest-api", "users", "-q", "-o"])
            .arg(&out)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        Duration::from_secs(90),
    );
    let summary = if out.exists() {
        read_json(&out)
    } else {
        Value::Null
    };
    (output, summary)
}

#[test]
fn the_summary_records_the_deployment_the_run_ran_against() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let (output, summary) = run(&sandbox, "test-", "", &["--no-verify"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let d = &summary["deployment"];
    assert_eq!(d["stage"], "test");
    assert!(
        d["rest_api_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{d:#}"
    );
    assert!(
        d["deployment_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{d:#}"
    );
    assert_eq!(d["functions"][0]["name"], "test-user-service");
    assert!(
        d["functions"][0]["code_sha256"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
}

#[test]
fn scenario_names_that_disagree_with_the_deployment_stop_the_run() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let (output, summary) = run(&sandbox, "qa-", "", &["--no-verify"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("qa-user-service") && stderr.contains("invokes test-user-service"),
        "{stderr}"
    );
    assert!(stderr.contains("pinned = true"), "{stderr}");
    assert!(summary.is_null(), "no traffic, no summary");

    // Pinned names are the user's choice: said, then run.
    let (output, summary) = run(
        &sandbox,
        "qa-",
        "[backends]\npinned = true",
        &["--no-verify"],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("pinned: going on"), "{stderr}");
    assert_eq!(summary["totals"]["requests"], 1);
}

#[test]
fn a_load_on_a_stage_sharing_prods_table_is_refused() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["shared-table"], &[]);
    let (output, summary) = run(&sandbox, "test-", "", &["--no-verify", "--iterations", "5"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("shares table User with protected stage prod"),
        "{stderr}"
    );
    assert!(summary.is_null());
    // --allow-shared sends it; the scenario's table (test-User) is not
    // where the function writes, which the preflight says, so pin it.
    let (output, summary) = run(
        &sandbox,
        "test-",
        "[backends]\npinned = true",
        &["--no-verify", "--iterations", "5", "--allow-shared"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(summary["totals"]["requests"], 5);
}

#[test]
fn without_control_plane_access_the_run_says_so_once_and_goes_on() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(
        dir.path(),
        "s.toml",
        &format!(
            "[target]\nbase_url = \"{}/{{stage}}\"\nstage = \"test\"\nrest_api = \"users\"\n\
             [[steps]]\nname = \"create\"\nmethod = \"POST\"\npath = \"/user\"\n\
             body = {{ Name = \"x\" }}\n",
            sandbox.base_url
        ),
    );
    // No credentials at all.
    let output = run_bounded(
        isolated()
            .arg("run")
            .arg(&file)
            .args(["--region", REGION, "--no-verify", "-q"]),
        Duration::from_secs(60),
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("was not read before the traffic").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("No AWS credentials"), "{stderr}");
}
