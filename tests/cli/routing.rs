//! The second proof of routing: API Gateway's execution log, followed from the
//! client's `x-amzn-RequestId` to the function API Gateway invoked and on to
//! that invocation's `REPORT`. Against the sandbox, which writes both logs in
//! AWS's formats; what the verifier says is checked against the logs as the
//! sandbox wrote them.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use aws_sdk_apigateway::types::{Op, PatchOperation};
use aws_sdk_lambda::types::{LogFormat, LoggingConfig};

use crate::support::sandbox::{
    ACCESS_KEY_ID, Aws, Moto, REGION, SECRET_ACCESS_KEY, Sandbox, http, send,
};
use crate::support::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The sandbox's one REST API.
fn rest_api(rt: &tokio::runtime::Runtime, aws: &Aws) -> String {
    rt.block_on(aws.apigateway.get_rest_apis().send())
        .expect("GetRestApis")
        .items()[0]
        .id()
        .expect("id")
        .to_string()
}

fn set_loglevel(
    rt: &tokio::runtime::Runtime,
    aws: &Aws,
    sandbox: &Sandbox,
    api: &str,
    level: &str,
) {
    set_stage(rt, aws, sandbox, api, "/*/*/logging/loglevel", level);
}

/// One `replace` on stage test's settings, then the sandbox reloads them.
fn set_stage(
    rt: &tokio::runtime::Runtime,
    aws: &Aws,
    sandbox: &Sandbox,
    api: &str,
    path: &str,
    value: &str,
) {
    rt.block_on(async {
        aws.apigateway
            .update_stage()
            .rest_api_id(api)
            .stage_name("test")
            .patch_operations(
                PatchOperation::builder()
                    .op(Op::Replace)
                    .path(path)
                    .value(value)
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("UpdateStage {path}: {e:?}"));
        reload(sandbox).await;
    });
}

async fn reload(sandbox: &Sandbox) {
    let answer = send(&http(), "POST", &sandbox.url("/_sandbox/reload"), None, &[]).await;
    assert_eq!(answer.status, 200);
}

/// Stage test's function logs in Lambda's JSON format: only Lambda's own
/// request id, nothing the client saw.
fn json_log_format(rt: &tokio::runtime::Runtime, aws: &Aws, sandbox: &Sandbox) {
    rt.block_on(async {
        aws.lambda
            .update_function_configuration()
            .function_name("test-user-service")
            .logging_config(LoggingConfig::builder().log_format(LogFormat::Json).build())
            .send()
            .await
            .expect("UpdateFunctionConfiguration");
        reload(sandbox).await;
    });
}

/// POST then GET of a user on stage test, `iterations` times, verified by
/// the logs only (no DynamoDB check), with `verify` added to `[verify]`.
fn run(
    sandbox: &Sandbox,
    dir: &Path,
    verify: &str,
    iterations: u32,
) -> (i32, serde_json::Value, String) {
    run_with(sandbox, dir, "", verify, iterations, None)
}

/// As `run`, with more `[load]` settings.
fn run_load(
    sandbox: &Sandbox,
    dir: &Path,
    load: &str,
    verify: &str,
    iterations: u32,
) -> (i32, serde_json::Value, String) {
    run_with(sandbox, dir, load, verify, iterations, None)
}

/// [`run`] with more `[load]` settings, and the AWS endpoints given per
/// service through the environment (`AWS_ENDPOINT_URL` and its per-service
/// forms) instead of `--aws-endpoint`, when `endpoints` is given.
fn run_with(
    sandbox: &Sandbox,
    dir: &Path,
    load: &str,
    verify: &str,
    iterations: u32,
    endpoints: Option<&[(&str, &str)]>,
) -> (i32, serde_json::Value, String) {
    let scenario = format!(
        r#"
name = "routing"
[target]
base_url = "{base}/{{stage}}"
stage = "test"

[[stages]]
name = "test"
table_prefix = "test-"
[[stages]]
name = "prod"
table_prefix = ""

[load]
rate = 20
iterations = {iterations}
{load}

[verify]
dynamodb = false
logs = true
isolate_from = ["prod"]
logs_deadline = "4s"
{verify}

[[steps]]
name = "create_user"
method = "POST"
path = "/user"
body = {{ Id = "{{{{uuid}}}}", Name = "user-{{{{seq}}}}" }}
checks = [{{ status = [200, 201] }}]

[[steps]]
name = "get_user"
method = "GET"
path = "/user/{{{{uuid}}}}"
"#,
        base = sandbox.base_url,
    );
    let file = scenario_file(dir, "routing.toml", &scenario);
    let out = dir.join("summary.json");
    let _ = std::fs::remove_file(&out);
    let mut cmd = stagecheck();
    cmd.arg("run")
        .arg(&file)
        .args(["--region", REGION, "-o"])
        .arg(&out)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL");
    match endpoints {
        None => {
            cmd.args(["--aws-endpoint", &sandbox.aws_endpoint]);
        }
        Some(endpoints) => {
            cmd.envs(endpoints.iter().copied());
        }
    }
    let output = run_bounded(&mut cmd, Duration::from_secs(120));
    let summary = if out.exists() {
        read_json(&out)
    } else {
        serde_json::Value::Null
    };
    (
        output.status.code().unwrap_or(-1),
        summary,
        format!("{}{}", text(&output.stdout), text(&output.stderr)),
    )
}

/// API Gateway request ids whose execution-log lines name `function`, read
/// straight from the group the sandbox wrote.
fn requests_invoking(
    rt: &tokio::runtime::Runtime,
    aws: &Aws,
    group: &str,
    function: &str,
) -> HashSet<String> {
    let needle = format!(":function:{function}/invocations");
    rt.block_on(aws.log_messages(group))
        .iter()
        .filter(|m| m.contains("Endpoint request URI: ") && m.ends_with(&needle))
        .filter_map(|m| Some(m.strip_prefix('(')?.split_once(')')?.0.to_string()))
        .collect()
}

/// Stage test's function logs in Lambda's JSON format and its code logs its
/// message only (`--function-log test=plain`): no id but Lambda's own, so
/// nothing of its logs proves a request, whatever the scenario matches.
#[test]
fn a_json_format_function_is_proven_by_the_execution_log_and_unproven_without_it() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &["--function-log", "test=plain"]);
    let rt = runtime();
    let aws = rt.block_on(Aws::of(&sandbox));
    let api = rest_api(&rt, &aws);
    json_log_format(&rt, &aws, &sandbox);
    let dir = tempfile::tempdir().unwrap();
    let how = "--patch-operations op=replace,path=/*/*/logging/loglevel,value=INFO";

    // Execution logging off (the sandbox's default): no group at all. The
    // function's JSON lines carry nothing the client saw, so nothing is proven.
    let (code, s, out) = run(&sandbox, dir.path(), "", 5);
    assert_eq!(code, 1, "{out}\n{s:#}");
    let logs = &s["verify"]["logs"];
    let requests = s["totals"]["requests"].as_u64().unwrap();
    assert_eq!(requests, 10, "{s:#}");
    assert_eq!(logs["routing"], "auto");
    assert_eq!(logs["checked"], requests, "{s:#}");
    assert_eq!(logs["found"], 0, "{s:#}");
    assert_eq!(logs["missing"], requests, "{s:#}");
    assert_eq!(logs["proven_by"]["function_logs"], 0, "{s:#}");
    assert_eq!(logs["proven_by"]["execution_logs"], 0, "{s:#}");
    assert_eq!(logs["execution_logs"]["enabled"], false, "{s:#}");
    // The function did run: its JSON-format platform.start lines are there.
    assert!(logs["invocations"].as_u64().unwrap() >= 10, "{s:#}");
    let note = logs["execution_logs"]["note"].as_str().unwrap();
    assert!(
        note.contains("loggingLevel INFO") && note.contains(how),
        "{note}"
    );
    // One sentence, said once.
    assert_eq!(note.matches(". ").count(), 0, "{note}");
    assert_eq!(
        out.matches("note: API Gateway's execution logging").count(),
        1,
        "{out}"
    );

    // Logging at INFO: the same run is proven, request by request, through
    // API Gateway's log alone; the group is found without being named.
    set_loglevel(&rt, &aws, &sandbox, &api, "INFO");
    let (code, s, out) = run(&sandbox, dir.path(), "", 5);
    assert_eq!(code, 0, "{out}\n{s:#}");
    let logs = &s["verify"]["logs"];
    let group = format!("API-Gateway-Execution-Logs_{api}/test");
    assert_eq!(logs["found"], 10, "{s:#}");
    assert_eq!(logs["missing"], 0, "{s:#}");
    assert_eq!(logs["proven_by"]["execution_logs"], 10, "{s:#}");
    assert_eq!(logs["proven_by"]["function_logs"], 0, "{s:#}");
    let exec = &logs["execution_logs"];
    assert_eq!(exec["enabled"], true, "{s:#}");
    assert_eq!(exec["log_group"], group.as_str(), "{s:#}");
    assert_eq!(exec["rest_api"], api.as_str(), "{s:#}");
    assert_eq!(exec["rest_api_from"], "log_groups", "{s:#}");
    assert_eq!(exec["with_lines"], 10, "{s:#}");
    assert_eq!(exec["other_function"], 0, "{s:#}");
    assert!(exec.get("note").is_none(), "{s:#}");
    assert!(
        !out.contains("note: API Gateway's execution logging"),
        "{out}"
    );
    assert!(out.contains("10 by API Gateway's execution log"), "{out}");
    // The other side: the group holds at least these requests, each naming
    // the stage's own function.
    assert!(requests_invoking(&rt, &aws, &group, "test-user-service").len() >= 10);
    // Both channels share one pace: well under 5 FilterLogEvents a second.
    let calls = s["verify"]["api_calls"]["FilterLogEvents"]
        .as_u64()
        .unwrap();
    let waited = logs["waited_s"].as_f64().unwrap();
    assert!(calls >= 3, "{s:#}");
    assert!(
        calls as f64 <= 5.0 * waited + 5.0,
        "{calls} calls in {waited}s"
    );

    // Back to OFF: the group is there but holds nothing of this run.
    set_loglevel(&rt, &aws, &sandbox, &api, "OFF");
    let (code, s, out) = run(&sandbox, dir.path(), "", 5);
    assert_eq!(code, 1, "{out}\n{s:#}");
    let logs = &s["verify"]["logs"];
    assert_eq!(logs["found"], 0, "{s:#}");
    assert_eq!(logs["execution_logs"]["with_lines"], 0, "{s:#}");
    let note = logs["execution_logs"]["note"].as_str().unwrap();
    assert!(
        note.contains("wrote nothing for this run") && note.contains(how),
        "{note}"
    );
}

#[test]
fn shared_function_is_caught_by_the_execution_log_alone() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["shared-function"], &[]);
    let rt = runtime();
    let aws = rt.block_on(Aws::of(&sandbox));
    let api = rest_api(&rt, &aws);
    set_loglevel(&rt, &aws, &sandbox, &api, "INFO");
    let prod_arn = rt
        .block_on(
            aws.lambda
                .get_function()
                .function_name("user-service")
                .send(),
        )
        .expect("GetFunction")
        .configuration()
        .and_then(|c| c.function_arn())
        .expect("ARN")
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let (code, s, out) = run(
        &sandbox,
        dir.path(),
        // Pinned: the run's preflight would refuse the shared function
        // before any traffic (exit 2); this test is about the log channel.
        &format!("routing = \"execution-logs\"\nrest_api = \"{api}\"\n[backends]\npinned = true"),
        4,
    );
    assert_eq!(code, 1, "{out}\n{s:#}");
    assert!(
        out.contains("pinned: going on"),
        "the preflight saw it first: {out}"
    );
    let v = &s["verify"];
    let logs = &v["logs"];
    assert_eq!(logs["routing"], "execution-logs");
    // The function's own logs were not read at all.
    assert!(logs["proven_by"].get("function_logs").is_none(), "{s:#}");
    assert_eq!(logs["found"], 0, "{s:#}");
    assert_eq!(logs["execution_logs"]["rest_api_from"], "setting", "{s:#}");
    assert_eq!(logs["execution_logs"]["other_function"], 8, "{s:#}");
    let isolation = &v["isolation"];
    assert_eq!(isolation["ok"], false, "{s:#}");
    let leaks = isolation["leaks"].as_array().unwrap();
    assert_eq!(leaks.len(), 1, "{s:#}");
    let leak = &leaks[0];
    assert_eq!(leak["stage"], "prod");
    assert_eq!(leak["resource"], "function user-service");
    assert_eq!(leak["count"], 8);
    assert_eq!(leak["of"], 8);
    let evidence = leak["examples"][0].as_str().unwrap();
    assert!(
        evidence.contains("Endpoint request URI: ")
            && evidence.contains(&format!("/functions/{prod_arn}/invocations")),
        "{evidence}"
    );
    assert!(out.contains("ISOLATION FAILED"), "{out}");
    assert!(
        out.contains("invoked function user-service (stage prod)"),
        "{out}"
    );
    // The other side: the sandbox's log says the same of these requests.
    let group = format!("API-Gateway-Execution-Logs_{api}/test");
    assert!(requests_invoking(&rt, &aws, &group, "user-service").len() >= 8);
    assert!(requests_invoking(&rt, &aws, &group, "test-user-service").is_empty());
}

/// The control: the same fault and settings on a clean stage pass, so the
/// failure above is the fault's, not the channel's.
#[test]
fn a_clean_stage_passes_through_the_execution_log_alone() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let rt = runtime();
    let aws = rt.block_on(Aws::of(&sandbox));
    let api = rest_api(&rt, &aws);
    set_loglevel(&rt, &aws, &sandbox, &api, "INFO");
    let dir = tempfile::tempdir().unwrap();
    let (code, s, out) = run(
        &sandbox,
        dir.path(),
        &format!("routing = \"both\"\nrest_api = \"{api}\""),
        4,
    );
    assert_eq!(code, 0, "{out}\n{s:#}");
    let logs = &s["verify"]["logs"];
    assert_eq!(logs["found"], 8, "{s:#}");
    assert_eq!(logs["proven_by"]["function_logs"], 8, "{s:#}");
    assert_eq!(logs["proven_by"]["execution_logs"], 8, "{s:#}");
    assert_eq!(s["verify"]["isolation"]["ok"], true, "{s:#}");
}

#[test]
fn a_bad_routing_setting_names_its_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(
        dir.path(),
        "bad.toml",
        "[target]\nbase_url = \"http://127.0.0.1:9/{stage}\"\nstage = \"test\"\n\n[verify]\nrouting = \"sideways\"\n\n[[steps]]\nname = \"a\"\nmethod = \"GET\"\npath = \"/user\"\n",
    );
    let output = run_bounded(
        stagecheck().arg("validate").arg(&file),
        Duration::from_secs(30),
    );
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.toml:6:11"), "{err}");
    assert!(err.contains("unknown routing \"sideways\""), "{err}");
    assert!(err.contains("in verify.routing"), "{err}");

    // An id that contradicts the base URL's host is refused, not guessed between.
    let file = scenario_file(
        dir.path(),
        "conflict.toml",
        "[target]\nbase_url = \"https://abc123defg.execute-api.eu-west-1.amazonaws.com/{stage}\"\nstage = \"test\"\n\n[verify]\nrest_api = \"zzz999\"\n\n[[steps]]\nname = \"a\"\nmethod = \"GET\"\npath = \"/user\"\n",
    );
    let output = run_bounded(
        stagecheck().arg("validate").arg(&file),
        Duration::from_secs(30),
    );
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("conflict.toml:6:12"), "{err}");
    assert!(err.contains("abc123defg"), "{err}");
    assert!(err.contains("in verify.rest_api"), "{err}");
}

/// Where the time went: with 50 ms added inside the function, API Gateway's
/// integration latency and the function's Duration both hold the 50 ms, API
/// Gateway's own part stays small, and the parts add up to the client's time.
#[test]
fn the_time_splits_into_api_gateway_integration_and_function() {
    let moto = Moto::start();
    // Cold starts (init time inside the integration) would be a part of their own.
    let sandbox = Sandbox::start(&moto, &["latency=50"], &["--cold-start", "1ms"]);
    let rt = runtime();
    let aws = rt.block_on(Aws::of(&sandbox));
    let api = rest_api(&rt, &aws);
    set_loglevel(&rt, &aws, &sandbox, &api, "INFO");
    let dir = tempfile::tempdir().unwrap();
    let (code, s, out) = run(&sandbox, dir.path(), "", 10);
    assert_eq!(code, 0, "{out}\n{s:#}");
    let splits = s["verify"]["logs"]["execution_logs"]["time_split"]
        .as_array()
        .unwrap();
    assert_eq!(splits.len(), 2, "{s:#}");
    for (i, split) in splits.iter().enumerate() {
        let step = &s["steps"][i];
        assert_eq!(split["step"], step["name"], "{s:#}");
        assert_eq!(split["requests"], 10, "{s:#}");
        let p50 = |part: &str| split[part]["p50"].as_f64().unwrap();
        let mean = |part: &str| split[part]["mean"].as_f64().unwrap();
        assert!((50.0..90.0).contains(&p50("integration_ms")), "{split:#}");
        assert!((50.0..90.0).contains(&p50("function_ms")), "{split:#}");
        assert!(
            p50("function_ms") <= p50("integration_ms") + 1.0,
            "{split:#}"
        );
        assert!(p50("api_gateway_ms") < 25.0, "{split:#}");
        // API Gateway logs whole ms, floored: never more than the client saw.
        assert_eq!(split["clamped"], 0, "{split:#}");
        let sum = mean("api_gateway_ms") + mean("integration_ms");
        assert!((sum - mean("client_ms")).abs() < 0.5, "{split:#}");
        // The split's client time is the engine's own service time.
        let engine = step["service_time_ms"]["p50"].as_f64().unwrap();
        assert!(
            (p50("client_ms") - engine).abs() < 1.0,
            "{engine} {split:#}"
        );
    }
    assert!(out.contains("where the time went"), "{out}");
    // Cold starts: one per execution environment, and the sandbox gives each
    // environment its own log stream.
    let cold: u64 = splits
        .iter()
        .map(|s| s["cold_starts"].as_u64().unwrap())
        .sum();
    let streams = rt
        .block_on(
            aws.logs
                .describe_log_streams()
                .log_group_name("/aws/lambda/test-user-service")
                .send(),
        )
        .expect("DescribeLogStreams")
        .log_streams()
        .len() as u64;
    assert!(cold >= 1, "{s:#}");
    assert_eq!(cold, streams, "{s:#}");
    // The HTML report draws it: per step and percentile, API Gateway's part,
    // the integration, and the function inside it.
    let html = dir.path().join("report.html");
    let rendered = run_bounded(
        stagecheck()
            .arg("report")
            .arg(dir.path().join("summary.json"))
            .arg("--html")
            .arg(&html),
        Duration::from_secs(30),
    );
    assert_eq!(
        rendered.status.code(),
        Some(0),
        "{}",
        text(&rendered.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("data-chart=\"time-split\""), "{page}");
    for part in ["api_gateway", "integration", "function"] {
        for p in ["p50", "p90", "p99"] {
            let series = format!("data-series=\"get_user {part} {p}\"");
            assert_eq!(page.matches(&series).count(), 1, "{series}");
        }
    }
}

/// How much of the tail cold starts explain: each cold start holds its
/// request 500 ms, so the slowest requests of the step that met them are the
/// cold starts, and the report says so in a sentence.
#[test]
fn the_slowest_requests_are_explained_by_their_cold_starts() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &["--cold-start", "500ms"]);
    let rt = runtime();
    let aws = rt.block_on(Aws::of(&sandbox));
    let api = rest_api(&rt, &aws);
    set_loglevel(&rt, &aws, &sandbox, &api, "INFO");
    let dir = tempfile::tempdir().unwrap();
    // 120 iterations: the slowest 1 % of each step is 2 requests.
    let (code, s, out) = run(&sandbox, dir.path(), "", 120);
    assert_eq!(code, 0, "{out}\n{s:#}");
    let splits = s["verify"]["logs"]["execution_logs"]["time_split"]
        .as_array()
        .unwrap();
    let coldest = splits
        .iter()
        .max_by_key(|t| t["cold_starts"].as_u64().unwrap())
        .unwrap();
    assert!(coldest["cold_starts"].as_u64().unwrap() >= 2, "{coldest:#}");
    let tail = &coldest["tail"];
    assert_eq!(tail["slowest"], 2, "{coldest:#}");
    assert_eq!(tail["cold_starts"], 2, "{coldest:#}");
    assert!(tail["from_ms"].as_f64().unwrap() >= 500.0, "{coldest:#}");
    let step = coldest["step"].as_str().unwrap();
    assert!(
        out.contains(&format!("{step}: p99 "))
            && out.contains("all 2 slowest requests were cold starts, init p50 5"),
        "{out}"
    );
}

/// `[load] warmup`: the first burst meets every cold start (500 ms each),
/// and a warmup takes them out of the measured phase: its p99 and tail hold
/// none, the warmup's own numbers show them, and its requests are still
/// proven. The cold starts of both phases are the sandbox's environments.
#[test]
fn a_warmup_keeps_the_cold_starts_out_of_the_measured_phase() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &["--cold-start", "500ms"]);
    let rt = runtime();
    let aws = rt.block_on(Aws::of(&sandbox));
    let api = rest_api(&rt, &aws);
    set_loglevel(&rt, &aws, &sandbox, &api, "INFO");
    let dir = tempfile::tempdir().unwrap();
    let (code, s, out) = run_load(&sandbox, dir.path(), "warmup = \"3s\"", "", 60);
    assert_eq!(code, 0, "{out}\n{s:#}");
    // The cap counts the measured phase: 60 iterations after the warmup's.
    assert_eq!(s["totals"]["iterations"], 60, "{s:#}");
    assert_eq!(s["totals"]["requests"], 120, "{s:#}");
    let warmup = &s["warmup"];
    let warm_requests = warmup["requests"].as_u64().unwrap();
    // 3 s at 20 iterations/s, two requests each.
    assert_eq!(warm_requests, 120, "{warmup:#}");
    assert_eq!(warmup["duration_s"], 3.0, "{warmup:#}");
    assert!(
        warmup["latency_ms"]["max"].as_f64().unwrap() >= 500.0,
        "{warmup:#}"
    );
    for step in s["steps"].as_array().unwrap() {
        assert!(
            step["latency_ms"]["p99"].as_f64().unwrap() < 500.0,
            "{step:#}"
        );
    }
    // Every request is proven, the warmup's too.
    let logs = &s["verify"]["logs"];
    assert_eq!(
        logs["checked"].as_u64().unwrap(),
        120 + warm_requests,
        "{logs:#}"
    );
    assert_eq!(logs["found"], logs["checked"], "{logs:#}");
    let splits = logs["execution_logs"]["time_split"].as_array().unwrap();
    let sum = |field: &str| -> u64 { splits.iter().map(|t| t[field].as_u64().unwrap_or(0)).sum() };
    assert_eq!(sum("cold_starts"), 0, "{s:#}");
    assert!(sum("warmup_cold_starts") >= 1, "{s:#}");
    for split in splits {
        assert_eq!(split["requests"], 60, "{split:#}");
        assert_eq!(split["tail"]["cold_starts"], 0, "{split:#}");
        assert!(
            split["client_ms"]["max"].as_f64().unwrap() < 500.0,
            "{split:#}"
        );
    }
    let streams = rt
        .block_on(
            aws.logs
                .describe_log_streams()
                .log_group_name("/aws/lambda/test-user-service")
                .send(),
        )
        .expect("DescribeLogStreams")
        .log_streams()
        .len() as u64;
    assert_eq!(sum("warmup_cold_starts"), streams, "{s:#}");
    assert!(out.contains("warmup 3s: 120 requests"), "{out}");
    assert!(out.contains("in the warmup)"), "{out}");
}

/// CloudWatch Logs may answer a page with no event and a `nextToken`; only a
/// missing token ends a scan. With the sandbox's `empty-log-pages` every
/// scan's first page is empty: a reader that stopped there would prove nothing.
#[test]
fn empty_pages_with_a_next_token_are_read_past() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["empty-log-pages"], &[]);
    let rt = runtime();
    let aws = rt.block_on(Aws::of(&sandbox));
    let api = rest_api(&rt, &aws);
    set_loglevel(&rt, &aws, &sandbox, &api, "INFO");
    let dir = tempfile::tempdir().unwrap();
    let (code, s, out) = run(&sandbox, dir.path(), "routing = \"both\"", 3);
    assert_eq!(code, 0, "{out}\n{s:#}");
    let logs = &s["verify"]["logs"];
    assert_eq!(logs["found"], 6, "{s:#}");
    assert_eq!(logs["proven_by"]["function_logs"], 6, "{s:#}");
    assert_eq!(logs["proven_by"]["execution_logs"], 6, "{s:#}");
    // Every scan paid its empty page: at least two calls for each of the
    // function group, the execution log and prod's group.
    let calls = s["verify"]["api_calls"]["FilterLogEvents"]
        .as_u64()
        .unwrap();
    assert!(calls >= 6, "{calls} FilterLogEvents calls: {s:#}");
}

/// Execution-log events over 1 024 bytes are cut (`[TRUNCATED]`). With
/// dataTrace on, a request header that reads like the chain's own lines
/// (another stage's function in `Endpoint request URI`, a made-up Lambda
/// request id), padded past the cut, lands in cut `Method request headers`
/// lines: it must match nothing, so the run is proven and no leak is claimed.
#[test]
fn cut_lines_that_quote_the_chain_match_nothing() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let rt = runtime();
    let aws = rt.block_on(Aws::of(&sandbox));
    let api = rest_api(&rt, &aws);
    set_loglevel(&rt, &aws, &sandbox, &api, "INFO");
    set_stage(&rt, &aws, &sandbox, &api, "/*/*/logging/dataTrace", "true");
    let bait = format!(
        "Endpoint request URI: https://lambda.{REGION}.amazonaws.com/2015-03-31/functions/arn:aws:lambda:{REGION}:123456789012:function:user-service/invocations AWS Integration Endpoint RequestId : 00000000-0000-4000-8000-000000000000 {}",
        "x".repeat(1200)
    );
    let dir = tempfile::tempdir().unwrap();
    let (code, s, out) = run(
        &sandbox,
        dir.path(),
        &format!(
            "routing = \"execution-logs\"\nrest_api = \"{api}\"\n[headers]\nX-Bait = \"{bait}\""
        ),
        3,
    );
    assert_eq!(code, 0, "{out}\n{s:#}");
    let logs = &s["verify"]["logs"];
    assert_eq!(logs["found"], 6, "{s:#}");
    assert_eq!(logs["execution_logs"]["other_function"], 0, "{s:#}");
    assert_eq!(s["verify"]["isolation"]["ok"], true, "{s:#}");
    // The bait is there, in cut lines, as the sandbox wrote them.
    let group = format!("API-Gateway-Execution-Logs_{api}/test");
    let cut: Vec<String> = rt
        .block_on(aws.log_messages(&group))
        .into_iter()
        .filter(|m| m.contains("function:user-service/invocations AWS Integration"))
        .collect();
    assert!(cut.len() >= 6, "{cut:#?}");
    assert!(cut.iter().all(|m| m.ends_with(" [TRUNCATED]")), "{cut:#?}");
}

/// Ingestion takes seconds on AWS: lines that arrive late are polled for,
/// through the execution-log channel as through the function's.
#[test]
fn late_execution_logs_are_polled_for() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["log-delay=1500"], &[]);
    let rt = runtime();
    let aws = rt.block_on(Aws::of(&sandbox));
    let api = rest_api(&rt, &aws);
    set_loglevel(&rt, &aws, &sandbox, &api, "INFO");
    let dir = tempfile::tempdir().unwrap();
    let (code, s, out) = run(
        &sandbox,
        dir.path(),
        &format!("routing = \"execution-logs\"\nrest_api = \"{api}\""),
        3,
    );
    assert_eq!(code, 0, "{out}\n{s:#}");
    let logs = &s["verify"]["logs"];
    assert_eq!(logs["found"], 6, "{s:#}");
    assert_eq!(logs["proven_by"]["execution_logs"], 6, "{s:#}");
    // Found by polling, not at the first look.
    assert!(logs["waited_s"].as_f64().unwrap() >= 1.0, "{s:#}");
    assert!(
        s["verify"]["api_calls"]["FilterLogEvents"]
            .as_u64()
            .unwrap()
            >= 2,
        "{s:#}"
    );
}

/// A JSON access-log format with Lambda's request id, as a user writes one.
const ACCESS_FORMAT: &str = r#"{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","status":"$context.status","lambdaRequestId":"$context.integration.requestId","integrationLatency":"$context.integrationLatency","responseLatency":"$context.responseLatency"}"#;
/// The same without it: lines that cannot say which function ran.
const ACCESS_FORMAT_WITHOUT_LAMBDA_ID: &str = r#"{"requestId":"$context.requestId","status":"$context.status","responseLatency":"$context.responseLatency"}"#;
const ACCESS_GROUP: &str = "users-access/test";

/// Stage test writes its access log to `ACCESS_GROUP` in `format`, turned on
/// through UpdateStage as a user turns it on (the group made first, as AWS
/// wants it to exist).
fn set_access_log(
    rt: &tokio::runtime::Runtime,
    aws: &Aws,
    sandbox: &Sandbox,
    api: &str,
    format: &str,
) {
    rt.block_on(async {
        let account = aws
            .lambda
            .get_function()
            .function_name("test-user-service")
            .send()
            .await
            .expect("GetFunction")
            .configuration()
            .and_then(|c| c.function_arn())
            .and_then(|arn| arn.split(':').nth(4))
            .expect("account")
            .to_string();
        let created = aws
            .logs
            .create_log_group()
            .log_group_name(ACCESS_GROUP)
            .send()
            .await;
        if let Err(e) = created {
            assert!(
                e.as_service_error()
                    .is_some_and(|e| e.is_resource_already_exists_exception()),
                "CreateLogGroup: {e:?}"
            );
        }
        let replace = |path: &str, value: &str| {
            PatchOperation::builder()
                .op(Op::Replace)
                .path(path)
                .value(value)
                .build()
        };
        aws.apigateway
            .update_stage()
            .rest_api_id(api)
            .stage_name("test")
            .patch_operations(replace(
                "/accessLogSettings/destinationArn",
                &format!("arn:aws:logs:{REGION}:{account}:log-group:{ACCESS_GROUP}"),
            ))
            .patch_operations(replace("/accessLogSettings/format", format))
            .send()
            .await
            .expect("UpdateStage accessLogSettings");
        reload(sandbox).await;
    });
}

/// The access-log lines the sandbox wrote, as (API Gateway request id,
/// Lambda request id), read straight from the group.
fn access_lines(rt: &tokio::runtime::Runtime, aws: &Aws) -> Vec<(String, Option<String>)> {
    rt.block_on(aws.log_messages(ACCESS_GROUP))
        .iter()
        .map(|m| {
            let line: serde_json::Value = serde_json::from_str(m).expect("a JSON line");
            let lambda = line["lambdaRequestId"]
                .as_str()
                .filter(|l| *l != "-")
                .map(str::to_string);
            (line["requestId"].as_str().unwrap().to_string(), lambda)
        })
        .collect()
}

/// Lambda request ids with a `REPORT` in `group`, text or JSON (`platform.report`).
fn reported(rt: &tokio::runtime::Runtime, aws: &Aws, group: &str) -> HashSet<String> {
    rt.block_on(aws.log_messages(group))
        .iter()
        .filter_map(|m| {
            if let Some(rest) = m.strip_prefix("REPORT RequestId: ") {
                return Some(rest.split('\t').next()?.to_string());
            }
            let json: serde_json::Value = serde_json::from_str(m).ok()?;
            (json["type"] == "platform.report")
                .then(|| json["record"]["requestId"].as_str().map(str::to_string))?
        })
        .collect()
}

/// Execution logging off, the function logging no id at all (and in
/// Lambda's JSON format): only the access log's
/// `$context.integration.requestId` can tie a request to the function's
/// `platform.report`, and it does; without that variable nothing does.
#[test]
fn the_access_log_alone_proves_routing_when_its_format_has_the_lambda_id() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &["--function-log", "test=plain"]);
    let rt = runtime();
    let aws = rt.block_on(Aws::of(&sandbox));
    let api = rest_api(&rt, &aws);
    json_log_format(&rt, &aws, &sandbox);
    set_access_log(&rt, &aws, &sandbox, &api, ACCESS_FORMAT);
    let dir = tempfile::tempdir().unwrap();
    let (code, s, out) = run(&sandbox, dir.path(), &format!("rest_api = \"{api}\""), 5);
    assert_eq!(code, 0, "{out}\n{s:#}");
    let logs = &s["verify"]["logs"];
    assert_eq!(logs["routing"], "auto");
    assert_eq!(logs["found"], 10, "{s:#}");
    assert_eq!(logs["missing"], 0, "{s:#}");
    assert_eq!(logs["proven_by"]["function_logs"], 0, "{s:#}");
    assert_eq!(logs["proven_by"]["execution_logs"], 0, "{s:#}");
    assert_eq!(logs["proven_by"]["access_logs"], 10, "{s:#}");
    let access = &logs["access_logs"];
    assert_eq!(access["log_group"], ACCESS_GROUP, "{s:#}");
    assert_eq!(access["format_has_integration_request_id"], true, "{s:#}");
    assert_eq!(access["with_lines"], 10, "{s:#}");
    assert_eq!(access["proven"], 10, "{s:#}");
    assert_eq!(access["other_function"], 0, "{s:#}");
    assert!(access.get("note").is_none(), "{s:#}");
    assert!(out.contains("10 by API Gateway's access log"), "{out}");
    assert!(
        out.contains(&format!(
            "access log {ACCESS_GROUP}: 10 requests with lines, 10 followed"
        )),
        "{out}"
    );
    let calls = &s["verify"]["api_calls"];
    assert_eq!(calls["GetStage"], 1, "{s:#}");
    let filter = calls["FilterLogEvents"].as_u64().unwrap();
    let waited = logs["waited_s"].as_f64().unwrap();
    assert!(
        filter as f64 <= 5.0 * waited + 5.0,
        "{filter} calls in {waited}s"
    );
    eprintln!("access log proof: {filter} FilterLogEvents in {waited:.1}s");
    assert!(
        !out.contains("note: API Gateway's execution logging"),
        "{out}"
    );
    // Where the time went, from the access log's integration latency.
    let splits = logs["execution_logs"]["time_split"].as_array().unwrap();
    assert_eq!(splits.len(), 2, "{s:#}");
    assert!(splits.iter().all(|t| t["requests"] == 5), "{s:#}");
    // The other side: the access log holds a line per request, each naming
    // a Lambda request id whose REPORT is in the stage's own function group.
    let lines = access_lines(&rt, &aws);
    assert_eq!(lines.len(), 10, "{lines:?}");
    let own = reported(&rt, &aws, "/aws/lambda/test-user-service");
    for (request, lambda) in &lines {
        let lambda = lambda.as_deref().expect("a Lambda request id");
        assert_ne!(request, lambda);
        assert!(own.contains(lambda), "{lambda} not in {own:?}");
    }

    // The same stage with a format that lacks the Lambda id: nothing proves
    // the requests, and the report says which variable to add.
    set_access_log(&rt, &aws, &sandbox, &api, ACCESS_FORMAT_WITHOUT_LAMBDA_ID);
    let (code, s, out) = run(&sandbox, dir.path(), &format!("rest_api = \"{api}\""), 5);
    assert_eq!(code, 1, "{out}\n{s:#}");
    let logs = &s["verify"]["logs"];
    assert_eq!(logs["found"], 0, "{s:#}");
    assert_eq!(logs["missing"], 10, "{s:#}");
    assert_eq!(logs["proven_by"]["access_logs"], 0, "{s:#}");
    let access = &logs["access_logs"];
    assert_eq!(access["format_has_integration_request_id"], false, "{s:#}");
    assert_eq!(access["log_group"], ACCESS_GROUP, "{s:#}");
    let note = access["note"].as_str().unwrap();
    assert!(
        note.contains("has no `$context.integration.requestId`")
            && note.contains("add `$context.integration.requestId`"),
        "{note}"
    );
    assert_eq!(note.matches(". ").count(), 0, "one sentence: {note}");
    assert_eq!(
        out.matches("note: stage test's access-log format").count(),
        1,
        "{out}"
    );
    // Its lines were not read: they could not have proven anything.
    assert_eq!(access["with_lines"], 0, "{s:#}");
    // The other side: the sandbox did write them, without the Lambda id.
    let messages = rt.block_on(aws.log_messages(ACCESS_GROUP));
    assert_eq!(messages.len(), 20, "{messages:?}");
    assert_eq!(
        messages
            .iter()
            .filter(|m| !m.contains("lambdaRequestId"))
            .count(),
        10
    );

    // No execute-api host, no `rest_api`, no execution-log group: the stage
    // cannot be asked for its access log, and the report says what to set.
    set_access_log(&rt, &aws, &sandbox, &api, ACCESS_FORMAT);
    let (code, s, out) = run(&sandbox, dir.path(), "", 5);
    assert_eq!(code, 1, "{out}\n{s:#}");
    let access = &s["verify"]["logs"]["access_logs"];
    let note = access["note"].as_str().unwrap();
    assert!(note.contains("set `[verify] rest_api`"), "{note}");
    assert!(access.get("log_group").is_none(), "{s:#}");
    assert!(s["verify"]["api_calls"].get("GetStage").is_none(), "{s:#}");
}

/// A stage with both of API Gateway's logs: the execution log proves every
/// request; the access log is located and read only for the requests whose
/// execution-log lines had not arrived when it was read (how many depends
/// on the sandbox's shipping, so only the bound is asserted). The REST API
/// id comes from the execution-log group found by listing.
#[test]
fn the_access_log_is_read_only_for_what_the_execution_log_lacks() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &["--function-log", "test=plain"]);
    let rt = runtime();
    let aws = rt.block_on(Aws::of(&sandbox));
    let api = rest_api(&rt, &aws);
    set_loglevel(&rt, &aws, &sandbox, &api, "INFO");
    set_access_log(&rt, &aws, &sandbox, &api, ACCESS_FORMAT);
    let dir = tempfile::tempdir().unwrap();
    let (code, s, out) = run(&sandbox, dir.path(), "", 5);
    assert_eq!(code, 0, "{out}\n{s:#}");
    let logs = &s["verify"]["logs"];
    assert_eq!(logs["found"], 10, "{s:#}");
    assert_eq!(logs["proven_by"]["execution_logs"], 10, "{s:#}");
    assert_eq!(
        logs["execution_logs"]["rest_api_from"], "log_groups",
        "{s:#}"
    );
    let access = &logs["access_logs"];
    assert_eq!(access["log_group"], ACCESS_GROUP, "{s:#}");
    let read = access["with_lines"].as_u64().unwrap();
    assert!(read <= 10, "{s:#}");
    assert_eq!(logs["proven_by"]["access_logs"], access["proven"], "{s:#}");
    assert!(access["proven"].as_u64().unwrap() <= read, "{s:#}");
    assert!(access.get("note").is_none(), "{s:#}");
    let calls = &s["verify"]["api_calls"];
    assert_eq!(calls["GetStage"], 1, "{s:#}");
    eprintln!(
        "execution log proved all, access log read for {read}: {} FilterLogEvents",
        calls["FilterLogEvents"]
    );
    // The other side: the access log does hold the run's lines.
    assert_eq!(access_lines(&rt, &aws).len(), 10);
}

/// The shared-function fault seen through the access log alone: stage
/// test's lines carry Lambda request ids whose REPORTs are in stage prod's
/// function group, which is a leak with both lines as evidence.
#[test]
fn shared_function_is_caught_by_the_access_log_alone() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["shared-function"], &[]);
    let rt = runtime();
    let aws = rt.block_on(Aws::of(&sandbox));
    let api = rest_api(&rt, &aws);
    set_access_log(&rt, &aws, &sandbox, &api, ACCESS_FORMAT);
    let dir = tempfile::tempdir().unwrap();
    let (code, s, out) = run(
        &sandbox,
        dir.path(),
        // Execution logging stays off: API Gateway's access log is all there is.
        &format!("routing = \"execution-logs\"\nrest_api = \"{api}\"\n[backends]\npinned = true"),
        4,
    );
    assert_eq!(code, 1, "{out}\n{s:#}");
    let v = &s["verify"];
    let logs = &v["logs"];
    assert_eq!(logs["found"], 0, "{s:#}");
    assert_eq!(logs["execution_logs"]["with_lines"], 0, "{s:#}");
    let access = &logs["access_logs"];
    assert_eq!(access["with_lines"], 8, "{s:#}");
    assert_eq!(access["proven"], 0, "{s:#}");
    assert_eq!(access["other_function"], 8, "{s:#}");
    let leaks = v["isolation"]["leaks"].as_array().unwrap();
    assert_eq!(leaks.len(), 1, "{s:#}");
    let leak = &leaks[0];
    assert_eq!(leak["stage"], "prod");
    assert_eq!(leak["resource"], "function user-service");
    assert_eq!(leak["count"], 8);
    assert_eq!(leak["of"], 8);
    let message = leak["message"].as_str().unwrap();
    assert!(
        message.contains(ACCESS_GROUP) && message.contains("/aws/lambda/user-service"),
        "{message}"
    );
    let evidence = leak["examples"][0].as_str().unwrap();
    assert!(
        evidence.contains("\"lambdaRequestId\":")
            && evidence.contains("/aws/lambda/user-service")
            && evidence.contains("REPORT RequestId: "),
        "{evidence}"
    );
    assert!(out.contains("ISOLATION FAILED"), "{out}");
    // The other side: every access-log line's Lambda id has its REPORT in
    // prod's function group and none in test's.
    let lines = access_lines(&rt, &aws);
    assert_eq!(lines.len(), 8, "{lines:?}");
    let prod = reported(&rt, &aws, "/aws/lambda/user-service");
    let test = reported(&rt, &aws, "/aws/lambda/test-user-service");
    for (_, lambda) in &lines {
        let lambda = lambda.as_deref().expect("a Lambda request id");
        assert!(prod.contains(lambda) && !test.contains(lambda), "{lambda}");
        assert!(evidence.contains("REPORT RequestId: "));
    }
    eprintln!(
        "shared function via the access log: {} FilterLogEvents",
        v["api_calls"]["FilterLogEvents"]
    );
}

/// GetStage refused (API Gateway's endpoint is the sandbox's data plane,
/// which answers every control-plane call 403 `MissingAuthenticationToken`,
/// as a wrong endpoint does on AWS): under `auto` one sentence in the
/// summary and the function's logs decide; under `execution-logs`, which
/// asked for API Gateway's logs, an error (exit 3) naming the call.
#[test]
fn a_refused_get_stage_is_a_note_under_auto_and_an_error_when_asked_for() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let rt = runtime();
    let aws = rt.block_on(Aws::of(&sandbox));
    let api = rest_api(&rt, &aws);
    set_access_log(&rt, &aws, &sandbox, &api, ACCESS_FORMAT);
    let data_plane = sandbox.base_url.clone();
    let endpoints = [
        ("AWS_ENDPOINT_URL", sandbox.aws_endpoint.as_str()),
        ("AWS_ENDPOINT_URL_API_GATEWAY", data_plane.as_str()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let setting = format!("rest_api = \"{api}\"");
    let (code, s, out) = run_with(&sandbox, dir.path(), "", &setting, 3, Some(&endpoints));
    assert_eq!(code, 0, "{out}\n{s:#}");
    let logs = &s["verify"]["logs"];
    assert_eq!(logs["proven_by"]["function_logs"], 6, "{s:#}");
    assert_eq!(logs["proven_by"]["access_logs"], 0, "{s:#}");
    let note = logs["access_logs"]["note"].as_str().unwrap();
    assert!(
        note.starts_with(
            "API Gateway's access-log settings of stage test could not be read (GetStage"
        ),
        "{note}"
    );
    assert!(
        !note.contains('\n') && !note.contains("DispatchFailure"),
        "{note}"
    );
    assert_eq!(note.matches(". ").count(), 0, "one sentence: {note}");
    assert!(
        note.ends_with("(it needs apigateway:GET on the stage)"),
        "{note}"
    );
    assert_eq!(s["verify"]["api_calls"]["GetStage"], 1, "{s:#}");
    eprintln!("{} characters: {note}", note.chars().count());

    let setting = format!("routing = \"execution-logs\"\n{setting}");
    let (code, _, out) = run_with(&sandbox, dir.path(), "", &setting, 3, Some(&endpoints));
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("GetStage on stage test of REST API"), "{out}");
    assert!(!out.contains("DispatchFailure"), "{out}");
}
