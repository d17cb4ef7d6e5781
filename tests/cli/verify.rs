//! Backend verification and stage isolation against moto + the sandbox: the
//! numbers stagecheck reports must equal what the backends hold.

use std::time::Duration;

use crate::support::sandbox::{ACCESS_KEY_ID, Aws, Moto, REGION, SECRET_ACCESS_KEY, Sandbox};
use crate::support::*;

/// A user-crud run against the sandbox's stage test, verified on moto.
fn run_crud(
    sandbox: &Sandbox,
    dir: &std::path::Path,
    extra_verify: &str,
    load: &str,
    args: &[&str],
) -> (i32, serde_json::Value, String) {
    run_crud_expecting(sandbox, dir, extra_verify, load, args, "user-")
}

/// As `run_crud`, expecting the written items' `Name` to start with
/// `name_prefix` (the function writes `user-…`).
fn run_crud_expecting(
    sandbox: &Sandbox,
    dir: &std::path::Path,
    extra_verify: &str,
    load: &str,
    args: &[&str],
    name_prefix: &str,
) -> (i32, serde_json::Value, String) {
    let scenario = format!(
        r#"
name = "crud-verify"
[target]
base_url = "{base}/{{stage}}"
stage = "test"

[[stages]]
name = "test"
table_prefix = "test-"
[[stages]]
name = "prod"
table_prefix = ""
protected = true

[load]
{load}

[verify]
{extra_verify}

[[steps]]
name = "create_user"
method = "POST"
path = "/user"
body = {{ Id = "{{{{uuid}}}}", Name = "user-{{{{seq}}}}", RunId = "{{{{run_id}}}}" }}
checks = [{{ status = [200, 201] }}]
  [steps.writes]
  key = {{ Id = "{{{{uuid}}}}" }}
  attributes = {{ Name = "{name_prefix}{{{{seq}}}}", RunId = "{{{{run_id}}}}" }}

[[steps]]
name = "get_user"
method = "GET"
path = "/user/{{{{uuid}}}}"
"#,
        base = sandbox.base_url,
        name_prefix = name_prefix,
        extra_verify = if extra_verify.contains("logs_deadline") {
            extra_verify.to_string()
        } else {
            format!("logs_deadline = \"10s\"\n{extra_verify}")
        }
    );
    let file = scenario_file(dir, "crud.toml", &scenario);
    let out = dir.join("summary.json");
    let output = run_bounded(
        stagecheck()
            .arg("run")
            .arg(&file)
            // The sandbox's AWS endpoint, as a user's pipeline would use it.
            .args([
                "--aws-endpoint",
                &sandbox.aws_endpoint,
                "--region",
                REGION,
                "-o",
            ])
            .arg(&out)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL"),
        Duration::from_secs(120),
    );
    let stderr = text(&output.stderr);
    let summary = if out.exists() {
        read_json(&out)
    } else {
        serde_json::Value::Null
    };
    (
        output.status.code().unwrap_or(-1),
        summary,
        format!("{}{stderr}", text(&output.stdout)),
    )
}

fn items_with_run_id(aws: &Aws, rt: &tokio::runtime::Runtime, table: &str, run_id: &str) -> usize {
    rt.block_on(async {
        let mut count = 0;
        let mut start = None;
        loop {
            let out = aws
                .dynamodb
                .scan()
                .table_name(table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            count += out
                .items()
                .iter()
                .filter(|i| {
                    i.get("RunId")
                        .and_then(|v| v.as_s().ok())
                        .is_some_and(|r| r == run_id)
                })
                .count();
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return count;
            }
        }
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn clean_stage_passes_with_every_write_and_invocation_found() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let (code, s, out) = run_crud(
        &sandbox,
        dir.path(),
        "",
        "rate = 20\nduration = \"2s\"",
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let v = &s["verify"];
    let posts = s["steps"][0]["requests"].as_u64().unwrap();
    assert_eq!(posts, 40);
    assert_eq!(v["dynamodb"]["table"], "test-User");
    assert_eq!(v["dynamodb"]["written"], posts);
    assert_eq!(v["dynamodb"]["checked"], posts);
    assert_eq!(v["dynamodb"]["found"], posts);
    assert_eq!(v["dynamodb"]["missing"], 0);
    assert_eq!(v["logs"]["log_group"], "/aws/lambda/test-user-service");
    assert_eq!(v["logs"]["checked"], s["totals"]["requests"]);
    assert_eq!(v["logs"]["found"], s["totals"]["requests"]);
    assert!(v["logs"]["invocations"].as_u64().unwrap() >= 80);
    assert_eq!(v["isolation"]["ok"], true);
    assert_eq!(v["isolation"]["stages"][0], "prod");
    // Verification stays cheap: one BatchGetItem per 100 keys per table.
    assert!(v["api_calls"]["BatchGetItem"].as_u64().unwrap() <= 4);
    // The other side agrees: the sandbox stored exactly these items, in test-User only.
    let aws = runtime().block_on(Aws::new(&moto));
    let rt = runtime();
    let run_id = s["run_id"].as_str().unwrap();
    assert_eq!(items_with_run_id(&aws, &rt, "test-User", run_id), 40);
    assert_eq!(items_with_run_id(&aws, &rt, "User", run_id), 0);
    assert!(
        out.contains("isolation from prod: nothing reached them"),
        "{out}"
    );
}

#[test]
fn shared_table_fault_is_an_isolation_failure() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["shared-table"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let markdown = dir.path().join("summary.md");
    let html = dir.path().join("report.html");
    let (code, s, out) = run_crud(
        &sandbox,
        dir.path(),
        "logs = false",
        "rate = 20\nduration = \"1s\"",
        &[
            "--junit",
            junit.to_str().unwrap(),
            "--markdown",
            markdown.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{out}");
    let leaks = s["verify"]["isolation"]["leaks"].as_array().unwrap();
    assert_eq!(s["verify"]["isolation"]["ok"], false);
    // Every report carries the same sentence where people and CI look.
    let sentence =
        "ISOLATION FAILED: 20 of 20 writes sent to stage test are in table User (stage prod)";
    let junit = std::fs::read_to_string(&junit).unwrap();
    assert!(
        junit.contains("name=\"isolation from stage prod: table User\"")
            && junit.contains(sentence),
        "{junit}"
    );
    assert!(
        std::fs::read_to_string(&markdown)
            .unwrap()
            .contains(sentence)
    );
    assert!(std::fs::read_to_string(&html).unwrap().contains(sentence));
    let table_leak = leaks
        .iter()
        .find(|l| l["resource"] == "table User")
        .expect("a leak into table User");
    assert_eq!(table_leak["stage"], "prod");
    assert_eq!(table_leak["count"], 20);
    assert_eq!(table_leak["of"], 20);
    assert_eq!(s["verify"]["dynamodb"]["missing"], 20);
    assert!(
        out.contains(
            "ISOLATION FAILED: 20 of 20 writes sent to stage test are in table User (stage prod)"
        ),
        "{out}"
    );
    let failed: Vec<&str> = s["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["ok"] == false)
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    assert!(
        failed.contains(&"isolation_leaks == 0") && failed.contains(&"missing_writes == 0"),
        "{failed:?}"
    );
}

#[test]
fn shared_function_fault_leaks_into_prods_table_and_logs() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["shared-function"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let (code, s, out) = run_crud(
        &sandbox,
        dir.path(),
        "logs_deadline = \"2s\"",
        "rate = 20\nduration = \"1s\"",
        &[],
    );
    assert_eq!(code, 1, "{out}");
    let leaks = s["verify"]["isolation"]["leaks"].as_array().unwrap();
    assert!(
        leaks
            .iter()
            .any(|l| l["resource"] == "table User" && l["count"] == 20),
        "{leaks:?}"
    );
    let log_leak = leaks
        .iter()
        .find(|l| l["resource"] == "log group /aws/lambda/user-service")
        .expect("a leak into prod's logs");
    assert_eq!(log_leak["count"], s["totals"]["requests"]);
    assert_eq!(
        s["verify"]["logs"]["found"], 0,
        "nothing reached test-user-service"
    );
}

#[test]
fn dropped_writes_are_missing_in_proportion() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["drop-writes=0.2"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let (code, s, out) = run_crud(
        &sandbox,
        dir.path(),
        "logs = false\nsettle = \"1s\"",
        "rate = 50\nduration = \"4s\"",
        &[],
    );
    assert_eq!(code, 1, "{out}");
    let d = &s["verify"]["dynamodb"];
    let (checked, missing) = (
        d["checked"].as_f64().unwrap(),
        d["missing"].as_f64().unwrap(),
    );
    assert_eq!(checked, 200.0);
    // Binomial(200, 0.2): mean 40, sd ≈ 5.7; ±4 sd.
    assert!(
        (17.0..=63.0).contains(&missing),
        "missing {missing} of {checked}"
    );
    assert_eq!(d["found"].as_f64().unwrap() + missing, checked);
}

#[test]
fn delayed_logs_are_found_by_polling_and_missing_past_the_deadline() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["log-delay=3000"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let (code, s, out) = run_crud(
        &sandbox,
        dir.path(),
        "logs_deadline = \"20s\"",
        "rate = 10\nduration = \"1s\"",
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(s["verify"]["logs"]["missing"], 0);
    assert!(s["verify"]["logs"]["waited_s"].as_f64().unwrap() >= 1.0);

    let dir = tempfile::tempdir().unwrap();
    let (code, s, out) = run_crud(
        &sandbox,
        dir.path(),
        "",
        "rate = 10\nduration = \"1s\"",
        &["--logs-deadline", "500ms"],
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        s["verify"]["logs"]["missing"],
        s["verify"]["logs"]["checked"]
    );
    assert!(s["verify"]["logs"]["checked"].as_u64().unwrap() > 0);
}

#[test]
fn writes_beyond_the_cap_are_sampled_and_the_summary_says_so() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let (code, s, out) = run_crud(
        &sandbox,
        dir.path(),
        "logs = false\nmax_recorded_writes = 25",
        "rate = 40\nduration = \"2s\"",
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let d = &s["verify"]["dynamodb"];
    assert_eq!(d["written"], 80);
    assert_eq!(d["recorded"], 25);
    assert_eq!(d["checked"], 25);
    assert_eq!(d["found"], 25);
    assert_eq!(d["sampled"], true);
    assert!(out.contains("a uniform sample of 25 of 80 writes"), "{out}");
}

#[test]
fn items_with_other_attributes_are_found_and_counted_as_mismatched() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let dir = tempfile::tempdir().unwrap();
    // The function writes `user-SEQ`; the scenario expects `other-SEQ`.
    let (code, s, out) = run_crud_expecting(
        &sandbox,
        dir.path(),
        "logs = false",
        "iterations = 20\nrate = 20",
        &[],
        "other-",
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(s["passed"], false);
    let d = &s["verify"]["dynamodb"];
    assert_eq!(
        (d["checked"].as_u64(), d["found"].as_u64()),
        (Some(20), Some(20))
    );
    assert_eq!(d["mismatched"], 20);
    assert_eq!(d["missing"], 0);
    assert!(
        out.contains("20 of 20 written items found, 20 with other attributes"),
        "{out}"
    );
    assert!(
        out.contains("✗ mismatched_writes == 0 (actual 20) [default]"),
        "{out}"
    );
}

#[test]
fn the_writes_cap_does_not_cut_log_checking() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let (code, s, out) = run_crud(
        &sandbox,
        dir.path(),
        "max_recorded_writes = 5",
        "rate = 20\nduration = \"1s\"",
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(s["verify"]["dynamodb"]["recorded"], 5);
    assert_eq!(s["verify"]["logs"]["checked"], s["totals"]["requests"]);
    assert_eq!(s["totals"]["requests"], 40);
}

#[test]
fn cleanup_deletes_only_what_the_run_wrote() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let aws = runtime().block_on(Aws::new(&moto));
    let rt = runtime();
    // An item that was there before the run.
    rt.block_on(
        aws.dynamodb
            .put_item()
            .table_name("test-User")
            .item(
                "Id",
                aws_sdk_dynamodb::types::AttributeValue::S("pre-existing".into()),
            )
            .item(
                "Name",
                aws_sdk_dynamodb::types::AttributeValue::S("keep me".into()),
            )
            .send(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (code, s, out) = run_crud(
        &sandbox,
        dir.path(),
        "logs = false",
        "rate = 10\nduration = \"1s\"",
        &["--cleanup"],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(s["verify"]["cleanup"]["deleted"], 10);
    let run_id = s["run_id"].as_str().unwrap();
    assert_eq!(items_with_run_id(&aws, &rt, "test-User", run_id), 0);
    assert!(rt.block_on(aws.has_item("test-User", "pre-existing")));
}

#[test]
fn preflight_refuses_a_missing_table_before_any_traffic() {
    let moto = Moto::start();
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[target]\nbase_url = \"{}/{{stage}}\"\nstage = \"test\"\n[[stages]]\nname = \"test\"\ntable_prefix = \"test-\"\n[load]\nrate = 10\nduration = \"1s\"\n[[steps]]\nname = \"w\"\nmethod = \"POST\"\npath = \"/user\"\nbody = {{ Id = \"{{{{uuid}}}}\" }}\nwrites = {{ key = {{ Id = \"{{{{uuid}}}}\" }} }}\n",
        server.url()
    );
    let file = scenario_file(dir.path(), "p.toml", &body);
    let output = run_bounded(
        stagecheck()
            .arg("run")
            .arg(&file)
            .args(["--aws-endpoint", &moto.endpoint, "--region", REGION])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        Duration::from_secs(60),
    );
    assert_eq!(output.status.code(), Some(3));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("test-User") && stderr.contains("preflight"),
        "{stderr}"
    );
    assert_eq!(
        server.seen().len(),
        0,
        "no traffic before the backends are known to be readable"
    );
}
