//! Verdicts that mean what they say, through the real binary against the
//! counting server: a run passes only when it did what it claims, the JSON's
//! `passed` agrees with the exit code, and every "no" comes with a sentence.

use std::time::Duration;

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(60);

/// One GET step; `load` is the `[load]` body, `extra` follows the step.
fn one_step(url: &str, path: &str, load: &str, extra: &str) -> String {
    format!(
        "[target]\nbase_url = \"{url}\"\nstage = \"t\"\n[load]\n{load}\n[[steps]]\nname = \"get\"\nmethod = \"GET\"\npath = \"{path}\"\n{extra}"
    )
}

fn stdout_and_stderr(output: &std::process::Output) -> String {
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}

#[test]
fn every_request_failing_fails_the_run_without_an_error_rule() {
    let server = TestServer::start();
    // No checks, no thresholds: only the answers (404) say it failed.
    let body = one_step(&server.url(), "/user/nobody", "iterations = 7", "");
    let (output, summary) = run_scenario(&body, &[], LIMIT);
    let all = stdout_and_stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert_eq!(server.seen().len(), 7);
    assert_eq!(summary["passed"], false);
    assert_eq!(summary["totals"]["failed"], 7);
    let rule = &summary["thresholds"][0];
    assert_eq!(rule["expr"], "error_rate == 0%");
    assert_eq!(rule["implicit"], true);
    assert_eq!(rule["ok"], false);
    assert!(
        all.contains("✗ error_rate == 0% (actual 100%) [default]"),
        "{all}"
    );
    assert!(all.contains("FAIL"), "{all}");
}

#[test]
fn transport_errors_fail_the_run_and_every_started_iteration_is_counted() {
    let server = TestServer::with_delay(Duration::from_millis(400));
    let body = one_step(&server.url(), "/ping", "iterations = 4", "");
    let (output, summary) = run_scenario(&body, &["--timeout", "100ms"], LIMIT);
    let all = stdout_and_stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert_eq!(summary["passed"], false);
    assert_eq!(summary["totals"]["errors"]["timeout"], 4);
    // Started iterations, split by how they ended.
    assert_eq!(summary["totals"]["iterations"], 4, "{all}");
    assert_eq!(summary["totals"]["failed_iterations"], 4);
    assert_eq!(summary["totals"]["completed_iterations"], 0);
    assert!(
        all.contains("error_rate == 0% (actual 100%) [default]"),
        "{all}"
    );
}

#[test]
fn a_user_error_rule_relaxes_the_default() {
    let server = TestServer::start();
    let body = one_step(
        &server.url(),
        "/user/nobody",
        "iterations = 3",
        "[thresholds]\nrules = [\"error_rate <= 100%\"]\n",
    );
    let (output, summary) = run_scenario(&body, &[], LIMIT);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        stdout_and_stderr(&output)
    );
    assert_eq!(summary["passed"], true);
    assert_eq!(summary["thresholds"].as_array().unwrap().len(), 1);
}

#[test]
fn a_run_that_completed_no_request_never_passes() {
    let server = TestServer::with_delay(Duration::from_secs(2));
    let body = one_step(
        &server.url(),
        "/ping",
        "model = \"closed\"\nvus = 3\nduration = \"300ms\"",
        "",
    );
    let (output, summary) = run_scenario(&body, &["--grace", "300ms"], LIMIT);
    let all = stdout_and_stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert_eq!(summary["totals"]["requests"], 0);
    assert_eq!(summary["passed"], false);
    let reasons = summary["reasons"].to_string();
    assert!(reasons.contains("no request completed"), "{reasons}");
    assert!(
        all.contains("no request completed: 3 iterations were in flight"),
        "{all}"
    );
    assert_eq!(summary["totals"]["interrupted_iterations"], 3);
}

/// Two steps: `first` answers `{}` (200), so its capture finds nothing and
/// the iteration ends there; `second` and its check never run.
fn capture_then_get(url: &str, rules: &str) -> String {
    format!(
        r#"[target]
base_url = "{url}"
stage = "t"
[load]
iterations = 3
[[steps]]
name = "first"
method = "GET"
path = "/ping"
capture = {{ id = {{ json = "Id" }} }}
[[steps]]
name = "second"
method = "GET"
path = "/user/{{{{id}}}}"
checks = [{{ status = [200] }}]
[thresholds]
rules = [{rules}]
"#
    )
}

#[test]
fn a_check_that_never_ran_is_not_run_and_fails_the_default_rule() {
    let server = TestServer::start();
    // The user relaxes `first`'s checks only; `second` keeps the default.
    let body = capture_then_get(&server.url(), "\"first.checks >= 0%\"");
    let (output, summary) = run_scenario(&body, &[], LIMIT);
    let all = stdout_and_stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert_eq!(server.seen().len(), 3, "only the first step ran");
    assert_eq!(summary["passed"], false);
    assert_eq!(summary["checks"]["not_run"], 1);
    assert!(all.contains("second: status in [200]  not run"), "{all}");
    assert!(!all.contains("0/0"), "{all}");
    assert!(
        all.contains("✗ second.checks == 100% (actual 0%) [default]"),
        "{all}"
    );
}

#[test]
fn a_rule_on_one_steps_checks_keeps_the_default_for_the_others() {
    let server = TestServer::start();
    let body = format!(
        r#"[target]
base_url = "{}"
stage = "t"
[load]
iterations = 4
[[steps]]
name = "create_user"
method = "POST"
path = "/user"
body = {{ Id = "{{{{uuid}}}}", Name = "n" }}
checks = [{{ status = [201] }}]
[[steps]]
name = "get_user"
method = "GET"
path = "/ping"
checks = [{{ json = "Name", equals = "someone else" }}]
[thresholds]
rules = ["create_user.checks > 99%"]
"#,
        server.url()
    );
    let (output, summary) = run_scenario(&body, &[], LIMIT);
    let all = stdout_and_stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert_eq!(summary["passed"], false);
    assert!(
        all.contains("✓ create_user.checks > 99% (actual 100%)"),
        "{all}"
    );
    assert!(
        all.contains("✗ get_user.checks == 100% (actual 0%) [default]"),
        "{all}"
    );
}

#[test]
fn validate_refuses_a_step_prefix_on_a_whole_run_metric() {
    let dir = tempfile::tempdir().unwrap();
    let body = one_step(
        "http://127.0.0.1:9",
        "/ping",
        "iterations = 1",
        "[thresholds]\nrules = [\"get.missing_writes == 0\"]\n",
    );
    let file = scenario_file(dir.path(), "prefix.toml", &body);
    let output = run_bounded(stagecheck().arg("validate").arg(&file), LIMIT);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("prefix.toml:11:10"), "{stderr}");
    assert!(stderr.contains("in thresholds.rules[0]"), "{stderr}");
    assert!(
        stderr.contains("missing_writes is measured for the whole run, not per step; write `missing_writes == 0`"),
        "{stderr}"
    );
}

#[test]
fn an_interrupted_run_writes_passed_false_with_the_reason() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let body = one_step(&server.url(), "/ping", "rate = 20\nduration = \"60s\"", "");
    let file = scenario_file(dir.path(), "long.toml", &body);
    let out = dir.path().join("s.json");
    let (output, _) = run_interrupted(&file, &out, Duration::from_millis(1500));
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let summary = read_json(&out);
    assert_eq!(summary["partial"], true);
    assert_eq!(
        summary["passed"], false,
        "the JSON agrees with the exit code"
    );
    assert_eq!(
        summary["reasons"][0],
        "the run did not finish: interrupted by SIGINT"
    );
}

fn run_shard(body: &str, dir: &std::path::Path, shard: &str) -> std::path::PathBuf {
    let file = scenario_file(dir, "sharded.toml", body);
    let out = dir.join(format!("shard-{}.json", shard.replace('/', "of")));
    let output = run_bounded(
        stagecheck()
            .arg("run")
            .arg(&file)
            .args(["-q", "--shard", shard, "-o"])
            .arg(&out),
        LIMIT,
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    out
}

#[test]
fn a_merge_that_misses_shards_writes_passed_false_with_the_reason() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let body = one_step(&server.url(), "/ping", "rate = 20\niterations = 6", "");
    let a = run_shard(&body, dir.path(), "1/3");
    let b = run_shard(&body, dir.path(), "2/3");
    let merged = dir.path().join("merged.json");
    let output = run_bounded(
        stagecheck()
            .arg("merge")
            .arg(&a)
            .arg(&b)
            .args(["--max-start-skew", "1h", "-o"])
            .arg(&merged),
        LIMIT,
    );
    let all = stdout_and_stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    let summary = read_json(&merged);
    assert_eq!(summary["passed"], false);
    let reasons = summary["reasons"].to_string();
    assert!(
        reasons.contains("merged 2 of 3 shards (missing 3/3)"),
        "{reasons}"
    );
}

fn staged(url: &str, isolate: &str) -> String {
    format!(
        "[target]\nbase_url = \"{url}/{{stage}}\"\nstage = \"test\"\n[[stages]]\nname = \"test\"\ntable_prefix = \"test-\"\n[[stages]]\nname = \"prod\"\ntable_prefix = \"prod-\"\n[verify]\nlogs = true\n{isolate}\n[[steps]]\nname = \"get\"\nmethod = \"GET\"\npath = \"/ping\"\n"
    )
}

#[test]
fn isolation_that_cannot_be_checked_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(dir.path(), "iso.toml", &staged("http://127.0.0.1:9", ""));
    let output = run_bounded(
        stagecheck()
            .arg("run")
            .arg(&file)
            .args(["--isolate-from", "test"]),
        LIMIT,
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--isolate-from test: test is the stage being run"),
        "{stderr}"
    );

    let file = scenario_file(
        dir.path(),
        "own.toml",
        &staged("http://127.0.0.1:9", "isolate_from = [\"test\"]"),
    );
    let output = run_bounded(stagecheck().arg("validate").arg(&file), LIMIT);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("own.toml:") && stderr.contains("nothing to check"),
        "{stderr}"
    );
}

#[test]
fn a_worker_that_panics_ends_the_run_with_exit_3_naming_it() {
    let server = TestServer::start();
    let body = one_step(
        &server.url(),
        "/ping",
        "model = \"closed\"\nvus = 4\nduration = \"20s\"",
        "",
    );
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(dir.path(), "panic.toml", &body);
    let output = run_bounded(
        stagecheck()
            .arg("run")
            .arg(&file)
            .args(["-q", "--threads", "2"])
            .env("STAGECHECK_TEST_PANIC_WORKER", "1"),
        LIMIT,
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("error: worker 1 panicked: test panic in a VU of worker 1"),
        "{stderr}"
    );
    assert!(stderr.contains("the run is incomplete"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the other workers were stopped at once, not after 20 s: {:?}",
        started.elapsed()
    );
}

#[test]
fn threshold_results_print_the_actual_in_the_rules_unit() {
    let server = TestServer::with_delay(Duration::from_millis(30));
    let body = one_step(
        &server.url(),
        "/ping",
        "iterations = 2",
        "[thresholds]\nrules = [\"p99 < 0.01s\", \"rps > 1000/s\"]\n",
    );
    let (output, _) = run_scenario(&body, &[], LIMIT);
    let all = stdout_and_stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    let line = all
        .lines()
        .find(|l| l.contains("p99 < 0.01s"))
        .unwrap_or_default();
    assert!(
        line.contains("(actual 0.0") && line.ends_with("s)") && !line.ends_with("ms)"),
        "{line}"
    );
    let line = all
        .lines()
        .find(|l| l.contains("rps > 1000/s"))
        .unwrap_or_default();
    assert!(line.contains("/s)"), "{line}");
}

#[test]
fn shards_held_to_one_start_merge_and_shards_far_apart_are_refused_with_the_figure() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let body = one_step(&server.url(), "/ping", "rate = 20\niterations = 4", "");
    let file = scenario_file(dir.path(), "s.toml", &body);
    let shard = |i: u32, start_at: &str| {
        let out = dir.path().join(format!("s{i}.json"));
        let output = run_bounded(
            stagecheck()
                .arg("run")
                .arg(&file)
                .args([
                    "-q",
                    "--shard",
                    &format!("{i}/2"),
                    "--start-at",
                    start_at,
                    "-o",
                ])
                .arg(&out),
            LIMIT,
        );
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        out
    };
    // One shard starts now; the other is held 1.5 s: too far apart.
    let b = shard(2, "+0s");
    let before = server.seen().len();
    let held = std::time::Instant::now();
    let a = shard(1, "+1500ms");
    assert!(
        held.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        held.elapsed()
    );
    let first_request = server.seen()[before].at;
    assert!(
        first_request.duration_since(held) >= Duration::from_millis(1400),
        "the held shard sent traffic before its start time"
    );
    let merged = dir.path().join("m.json");
    let output = run_bounded(
        stagecheck()
            .arg("merge")
            .arg(&a)
            .arg(&b)
            .arg("-o")
            .arg(&merged),
        LIMIT,
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the shards started 1."), "{stderr}");
    assert!(
        stderr.contains("s apart, more than --max-start-skew 1s"),
        "{stderr}"
    );
    assert!(!merged.exists());
    // A wider bound, said out loud, lets them merge; the figure stays in the JSON.
    let output = run_bounded(
        stagecheck()
            .arg("merge")
            .arg(&a)
            .arg(&b)
            .args(["--max-start-skew", "1m", "-o"])
            .arg(&merged),
        LIMIT,
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let skew = read_json(&merged)["start_skew_s"].as_f64().unwrap();
    assert!((1.0..30.0).contains(&skew), "{skew}");
}

#[test]
fn iterations_waiting_in_the_backlog_at_the_end_are_not_dropped() {
    // One VU, answers take 300 ms, 10 due per second for 2 s: most wait in
    // the backlog and are still there when the run ends.
    let server = TestServer::with_delay(Duration::from_millis(300));
    let body = one_step(
        &server.url(),
        "/ping",
        "rate = 10\nduration = \"2s\"\nmax_vus = 1\ngrace = \"1s\"",
        "",
    );
    let (output, summary) = run_scenario(&body, &["--threads", "1"], LIMIT);
    let all = stdout_and_stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    let t = &summary["totals"];
    let n = |k: &str| t[k].as_u64().unwrap();
    assert_eq!(n("dropped_iterations"), 0, "{t}");
    assert!(n("unstarted_iterations") >= 8, "{t}");
    assert_eq!(
        n("iterations"),
        n("completed_iterations") + n("failed_iterations") + n("interrupted_iterations"),
        "{t}"
    );
    assert_eq!(n("iterations") as usize, server.seen().len());
    assert_eq!(n("iterations") + n("unstarted_iterations"), 20);
    assert!(
        all.contains("still waiting in the backlog at the end"),
        "{all}"
    );
    // Progress said no drops, and so does the total.
    assert!(!all.contains("dropped 1"), "{all}");
}

#[test]
fn overflow_past_the_backlog_is_dropped_and_progress_agrees_with_the_total() {
    let server = TestServer::with_delay(Duration::from_millis(400));
    let body = one_step(
        &server.url(),
        "/ping",
        "rate = 20\nduration = \"2500ms\"\nmax_vus = 1\nbacklog = 2\ngrace = \"1s\"",
        "[thresholds]\nrules = [\"dropped_iterations >= 0\"]\n",
    );
    let (output, summary) = run_scenario(&body, &["--threads", "1"], LIMIT);
    let all = stdout_and_stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    let dropped = summary["totals"]["dropped_iterations"].as_u64().unwrap();
    assert!(dropped >= 20, "{dropped}");
    // The last progress line carries drops counted as they happened.
    let last = all
        .lines()
        .rfind(|l| l.contains(" dropped "))
        .unwrap_or_default()
        .to_string();
    let shown: u64 = last
        .rsplit("dropped ")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(u64::MAX);
    assert!(shown > 0 && shown <= dropped, "{last} vs total {dropped}");
}

#[test]
fn reports_say_why_a_run_did_not_pass() {
    let server = TestServer::with_delay(Duration::from_secs(2));
    let body = one_step(
        &server.url(),
        "/ping",
        "model = \"closed\"\nvus = 1\nduration = \"200ms\"\ngrace = \"200ms\"",
        "checks = [{ status = [200] }]\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("s.md");
    let html = dir.path().join("s.html");
    let (output, summary) = run_scenario(
        &body,
        &[
            "-q",
            "--markdown",
            md.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(summary["passed"], false);
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(
        md.contains("❌ FAIL") && md.contains("Not passed: no request completed"),
        "{md}"
    );
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(html.contains("Not passed: no request completed"));
    assert!(md.contains("❌ get: status in \\[200\\] (not run)"), "{md}");
    assert!(html.contains("not run: the step never got an answer"));
}
