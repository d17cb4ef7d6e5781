//! Real-AWS readiness, end to end with the real binary: IAM (SigV4) and
//! API-key stages against the sandbox's own verification of both, the Prod
//! guard and --max-rate (nothing sent), secrets in no output, and 429s
//! counted apart — each checked on the server's side too.

use std::path::Path;
use std::time::Duration;

use crate::support::sandbox::{ACCESS_KEY_ID, Aws, Moto, REGION, SECRET_ACCESS_KEY, Sandbox};
use crate::support::*;

struct Ran {
    code: i32,
    summary: serde_json::Value,
    stdout: String,
    stderr: String,
}

fn run(dir: &Path, scenario: &str, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let file = scenario_file(dir, "s.toml", scenario);
    let out = dir.join("summary.json");
    let _ = std::fs::remove_file(&out);
    let mut cmd = isolated();
    cmd.arg("run").arg(&file).arg("-o").arg(&out).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = run_bounded(&mut cmd, Duration::from_secs(90));
    Ran {
        code: output.status.code().unwrap_or(-1),
        summary: if out.exists() {
            read_json(&out)
        } else {
            serde_json::Value::Null
        },
        stdout: text(&output.stdout),
        stderr: text(&output.stderr),
    }
}

fn statuses(summary: &serde_json::Value, step: usize) -> serde_json::Value {
    summary["steps"][step]["status"].clone()
}

/// Items in `table` written by this run (scanned, so nothing is missed).
/// Panics when the table cannot be read.
fn items_of_run(moto: &Moto, table: &str, run_id: &str) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let aws = Aws::new(moto).await;
        let mut count = 0;
        let mut start = None;
        loop {
            // A failed scan is a failed test, never "0 items": an `== 0`
            // assertion must not pass because moto is gone.
            let out = aws
                .dynamodb
                .scan()
                .table_name(table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "scan of {table} failed: {}",
                        aws_smithy_types::error::display::DisplayErrorContext(&e)
                    )
                });
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

fn crud(base: &str, stage_extra: &str, stage: &str, load: &str) -> String {
    format!(
        r#"
name = "auth"
[target]
base_url = "{base}/{{stage}}"
stage = "{stage}"

[[stages]]
name = "{stage}"
{stage_extra}

[load]
{load}

[[steps]]
name = "create_user"
method = "POST"
path = "/user"
body = {{ Id = "{{{{uuid}}}}", Name = "user-{{{{seq}}}}", RunId = "{{{{run_id}}}}" }}
checks = [{{ status = [201] }}]

[[steps]]
name = "get_user"
method = "GET"
path = "/user/{{{{uuid}}}}"
query = {{ fields = "all" }}
checks = [{{ status = [200] }}]
"#
    )
}

#[test]
fn iam_stage_passes_signed_and_refuses_unsigned_or_wrongly_signed_runs() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &["--auth", "test=iam"]);
    let dir = tempfile::tempdir().unwrap();
    let scenario = crud(
        &sandbox.base_url,
        "table_prefix = \"test-\"\nauth = \"iam\"",
        "test",
        "vus = 1\niterations = 3",
    );
    let creds = [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
    ];

    // Signed, with the Region from the credential chain (127.0.0.1 names none).
    let mut env = creds.to_vec();
    env.push(("AWS_REGION", REGION));
    let signed = run(dir.path(), &scenario, &["--no-verify"], &env);
    assert_eq!(signed.code, 0, "{}{}", signed.stdout, signed.stderr);
    assert_eq!(statuses(&signed.summary, 0), serde_json::json!({"201": 3}));
    assert_eq!(statuses(&signed.summary, 1), serde_json::json!({"200": 3}));
    let run_id = signed.summary["run_id"].as_str().unwrap().to_string();
    assert_eq!(items_of_run(&moto, "test-User", &run_id), 3);
    assert!(!format!("{}{}", signed.stdout, signed.stderr).contains(SECRET_ACCESS_KEY));

    // Unsigned: API Gateway's 403 for every request, counted, exit 1.
    let unsigned = run(
        dir.path(),
        &scenario,
        &["--no-verify", "--auth", "none"],
        &env,
    );
    assert_eq!(unsigned.code, 1, "{}", unsigned.stderr);
    assert_eq!(
        statuses(&unsigned.summary, 0),
        serde_json::json!({"403": 3})
    );
    assert_eq!(unsigned.summary["totals"]["failed"], 6);
    let run_id = unsigned.summary["run_id"].as_str().unwrap().to_string();
    assert_eq!(items_of_run(&moto, "test-User", &run_id), 0);

    // Signed with another secret than the stage knows (Region from --region).
    let wrong = run(
        dir.path(),
        &scenario,
        &["--no-verify", "--region", REGION],
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", "not-the-sandbox-secret"),
        ],
    );
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert_eq!(statuses(&wrong.summary, 0), serde_json::json!({"403": 3}));
    assert!(!format!("{}{}", wrong.stdout, wrong.stderr).contains("not-the-sandbox-secret"));

    // No credentials anywhere: exit 3 before any traffic.
    let none = run(
        dir.path(),
        &scenario,
        &["--no-verify", "--region", REGION],
        &[],
    );
    assert_eq!(none.code, 3, "{}{}", none.stdout, none.stderr);
    assert!(
        none.stderr
            .contains("No AWS credentials to sign requests with")
            && none.stderr.contains("tried environment variables")
            && !none.stderr.contains("IMDS"),
        "{}",
        none.stderr
    );
    assert!(none.summary.is_null(), "nothing ran, so no summary");
}

#[test]
fn api_key_stage_uses_the_key_from_the_environment() {
    let moto = Moto::start();
    let key = "k-sandbox-api-key-0123456789";
    let sandbox = Sandbox::launch(
        &moto,
        crate::support::sandbox::Launch {
            faults: &[],
            args: &["--auth", "prod=api-key:SANDBOX_KEY"],
            env: &[("SANDBOX_KEY", key)],
        },
    );
    let dir = tempfile::tempdir().unwrap();
    // A protected stage: without [load] the run is a smoke, which it allows.
    let scenario = crud(
        &sandbox.base_url,
        "protected = true\nauth = \"api-key\"\napi_key_env = \"MY_PROD_KEY\"",
        "prod",
        "",
    );
    let ok = run(
        dir.path(),
        &scenario,
        &["--no-verify", "--markdown", "-"],
        &[("MY_PROD_KEY", key)],
    );
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    assert_eq!(statuses(&ok.summary, 0), serde_json::json!({"201": 1}));
    let run_id = ok.summary["run_id"].as_str().unwrap().to_string();
    assert_eq!(items_of_run(&moto, "User", &run_id), 1);
    assert!(!format!("{}{}", ok.stdout, ok.stderr).contains(key));

    // The variable is not set: a usage error (2) before any traffic — the
    // run is misconfigured, nothing about the target or AWS failed.
    let missing = run(dir.path(), &scenario, &["--no-verify"], &[]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(missing.stderr.contains("MY_PROD_KEY"), "{}", missing.stderr);

    // --api-key-env overrides the stage's variable: a wrong key gets 403s.
    let wrong = run(
        dir.path(),
        &scenario,
        &["--no-verify", "--api-key-env", "OTHER_KEY"],
        &[
            ("OTHER_KEY", "k-wrong-key-9876543210"),
            ("MY_PROD_KEY", key),
        ],
    );
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert_eq!(statuses(&wrong.summary, 0), serde_json::json!({"403": 1}));
    assert!(!format!("{}{}", wrong.stdout, wrong.stderr).contains("k-wrong-key"));
}

#[test]
fn protected_stage_refuses_load_without_allow_prod_and_sends_nothing() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let scenario = format!(
        r#"
[target]
base_url = "{}/{{stage}}"
stage = "prod"
[[stages]]
name = "prod"
protected = true
[load]
rate = 20
duration = "2s"
[[steps]]
name = "ping"
method = "GET"
path = "/ping"
"#,
        server.url()
    );
    let refused = run(dir.path(), &scenario, &["--no-verify"], &[]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("stage `prod` is protected")
            && refused.stderr.contains("--allow-prod"),
        "{}",
        refused.stderr
    );
    assert_eq!(server.seen().len(), 0);

    let capped = run(
        dir.path(),
        &scenario,
        &["--no-verify", "--allow-prod", "--max-rate", "10"],
        &[],
    );
    assert_eq!(capped.code, 2, "{}", capped.stderr);
    assert!(capped.stderr.contains("--max-rate"), "{}", capped.stderr);
    assert_eq!(server.seen().len(), 0);

    let smoke = run(
        dir.path(),
        &scenario,
        &["--no-verify", "--iterations", "1"],
        &[],
    );
    assert_eq!(smoke.code, 0, "{}", smoke.stderr);
    assert_eq!(server.seen().len(), 1);

    let allowed = run(
        dir.path(),
        &scenario,
        &[
            "--no-verify",
            "--allow-prod",
            "-d",
            "1s",
            "--max-rate",
            "20",
        ],
        &[],
    );
    assert_eq!(allowed.code, 0, "{}", allowed.stderr);
    assert!(server.seen().len() > 5, "{}", server.seen().len());
}

#[test]
fn secrets_appear_in_no_output() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let token = "tok-AAAA-secret-1111";
    let my_token = "mytoken-BBBB-secret";
    let api_key = "apikey-CCCC-secret-2222";
    let cookie = "cookie-DDDD-secret";
    let captured = "captured-EEEE-secret";
    let scenario = format!(
        r#"
name = "secrets"
redact = ["X-My-Token"]
[target]
base_url = "{base}/{{stage}}"
stage = "test"
[[stages]]
name = "test"
auth = "api-key"
api_key_env = "SC_KEY"

[headers]
Authorization = "Bearer {{{{env.SC_TOKEN}}}}"
X-My-Token = "{{{{env.SC_MYTOKEN}}}}"

[load]
vus = 1
iterations = 2

[[steps]]
name = "login"
method = "POST"
path = "/user"
body = {{ Id = "{captured}" }}
capture = {{ session = {{ json = "$.Id" }} }}

[[steps]]
name = "profile"
method = "GET"
path = "/user/none"
headers = {{ Authorization = "Bearer {{{{session}}}}" }}
checks = [
  {{ status = [200] }},
  {{ header = "x-amzn-RequestId", equals = "{{{{env.SC_TOKEN}}}}" }},
  {{ json = "$.message", equals = "{{{{session}}}}" }},
  {{ json = "$.message", contains = "{{{{env.SC_MYTOKEN}}}}" }},
  {{ json = "$.message", equals = "key {{{{env.SC_KEY}}}}" }},
]
"#,
        base = server.url()
    );
    let step_summary = dir.path().join("step-summary.md");
    let env = [
        ("SC_TOKEN", token),
        ("SC_MYTOKEN", my_token),
        ("SC_KEY", api_key),
        ("GITHUB_STEP_SUMMARY", step_summary.to_str().unwrap()),
    ];
    let cookie_header = format!("Cookie: session={cookie}");
    let html = dir.path().join("r.html");
    let junit = dir.path().join("r.xml");
    let markdown = dir.path().join("r.md");
    let ran = run(
        dir.path(),
        &scenario,
        &[
            "--no-verify",
            "-H",
            &cookie_header,
            "--html",
            html.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--markdown",
            markdown.to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(ran.code, 1, "the checks fail: {}", ran.stderr);

    // They were really sent.
    let seen = server.seen();
    let profile = seen.iter().find(|s| s.path == "/test/user/none").unwrap();
    assert_eq!(
        profile.headers["authorization"],
        format!("Bearer {captured}")
    );
    assert_eq!(profile.headers["x-api-key"], api_key);
    assert_eq!(profile.headers["x-my-token"], my_token);
    assert_eq!(profile.headers["cookie"], format!("session={cookie}"));

    let examples: Vec<String> = ran.summary["checks"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["example_failure"].as_str().map(str::to_string))
        .collect();
    assert!(examples.len() >= 4, "{examples:?}");
    assert!(examples.iter().any(|e| e.contains("***")), "{examples:?}");

    let mut outputs = vec![
        ("stdout".to_string(), ran.stdout.clone()),
        ("stderr".to_string(), ran.stderr.clone()),
    ];
    for path in [
        dir.path().join("summary.json"),
        html,
        junit,
        markdown,
        step_summary.clone(),
    ] {
        let text = std::fs::read_to_string(&path).unwrap();
        outputs.push((path.display().to_string(), text));
    }
    for (name, text) in &outputs {
        for secret in [token, my_token, api_key, cookie, captured] {
            assert!(!text.contains(secret), "{secret} in {name}:\n{text}");
        }
    }

    // Header errors on the command line name the header, never its value.
    for bad in [
        format!("Authorization Bearer {token}"),
        format!("Bad Header: {token}"),
    ] {
        let e = run(dir.path(), &scenario, &["--no-verify", "-H", &bad], &env);
        assert_eq!(e.code, 2, "{}", e.stderr);
        assert!(!e.stderr.contains(token), "{}", e.stderr);
    }
}

#[test]
fn throttled_requests_are_counted_apart_and_match_the_server() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["throttle=10"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let scenario = format!(
        r#"
[target]
base_url = "{}/{{stage}}"
stage = "test"
[[stages]]
name = "test"
table_prefix = "test-"
[load]
rate = 40
duration = "2s"
[[steps]]
name = "create_user"
method = "POST"
path = "/user"
body = {{ Id = "{{{{uuid}}}}", RunId = "{{{{run_id}}}}" }}
checks = [{{ status = [201] }}]
"#,
        sandbox.base_url
    );
    let ran = run(dir.path(), &scenario, &["--no-verify"], &[]);
    let s = &ran.summary;
    let throttled = s["totals"]["throttled"].as_u64().unwrap();
    let status = &s["steps"][0]["status"];
    let (created, refused) = (
        status["201"].as_u64().unwrap_or(0),
        status["429"].as_u64().unwrap_or(0),
    );
    assert!(throttled > 0, "{status}");
    assert_eq!(throttled, refused);
    assert_eq!(s["steps"][0]["throttled"].as_u64(), Some(refused));
    assert_eq!(created + refused, s["totals"]["requests"].as_u64().unwrap());
    // The other side: only the admitted requests reached the function.
    let run_id = s["run_id"].as_str().unwrap();
    assert_eq!(items_of_run(&moto, "test-User", run_id) as u64, created);
    assert_eq!(ran.code, 1, "429s fail the run");
    assert!(
        ran.stdout
            .contains(&format!("throttled: {throttled} requests answered 429")),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("10 000 requests/s per account and Region"),
        "{}",
        ran.stdout
    );
}

#[test]
#[should_panic(expected = "scan of no-such-table failed")]
fn counting_items_of_a_table_that_cannot_be_read_fails_the_test() {
    let moto = Moto::start();
    items_of_run(&moto, "no-such-table", "scx");
}
