//! The traffic engine against a local counting server: what stagecheck
//! reports must equal what the server saw.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::*;
use axum::http::Method;

fn crud_scenario(base: &str, load: &str) -> String {
    format!(
        r#"
name = "crud"
[target]
base_url = "{base}/{{stage}}"
stage = "test"

[[stages]]
name = "test"
table_prefix = "test-"

[load]
{load}

[headers]
X-Team = "platform"

[[steps]]
name = "create_user"
method = "POST"
path = "/user"
body = {{ Id = "{{{{uuid}}}}", Name = "n-{{{{seq}}}}", Seq = "{{{{seq}}}}", Vu = "vu-{{{{vu}}}}" }}
checks = [{{ status = [201] }}, {{ json = "Id", equals = "{{{{uuid}}}}" }}]
capture = {{ user_id = {{ json = "Id" }} }}

[[steps]]
name = "get_user"
method = "GET"
path = "/user/{{{{user_id}}}}"
query = {{ seq = "{{{{seq}}}}" }}
checks = [{{ status = [200] }}, {{ json = "Name", equals = "n-{{{{seq}}}}" }}]
"#
    )
}

/// One GET step named `name` on `path`; `load` is the `[load]` body (empty
/// for a one-iteration smoke) and `extra` follows the step (checks, thresholds).
fn get_scenario(url: &str, name: &str, path: &str, load: &str, extra: &str) -> String {
    let load = if load.is_empty() {
        String::new()
    } else {
        format!("[load]\n{load}\n")
    };
    format!(
        "[target]\nbase_url = \"{url}\"\nstage = \"t\"\n{load}[[steps]]\nname = \"{name}\"\nmethod = \"GET\"\npath = \"{path}\"\n{extra}"
    )
}

#[test]
fn summary_counts_equal_what_the_server_saw() {
    let server = TestServer::start();
    let body = crud_scenario(
        &server.url(),
        "vus = 4\niterations = 200\nduration = \"30s\"",
    );
    let (output, summary) = run_scenario(&body, &[], Duration::from_secs(60));
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}\nstdout: {}",
        text(&output.stderr),
        text(&output.stdout)
    );

    let seen = server.seen();
    let posts: Vec<_> = seen.iter().filter(|s| s.method == Method::POST).collect();
    let gets: Vec<_> = seen.iter().filter(|s| s.method == Method::GET).collect();
    assert_eq!(posts.len(), 200);
    assert_eq!(gets.len(), 200);
    assert_eq!(summary["totals"]["requests"], 400);
    assert_eq!(summary["totals"]["failed"], 0);
    assert_eq!(summary["steps"][0]["name"], "create_user");
    assert_eq!(summary["steps"][0]["requests"], posts.len());
    assert_eq!(summary["steps"][0]["status"]["201"], posts.len());
    assert_eq!(summary["steps"][1]["requests"], gets.len());
    assert_eq!(summary["steps"][1]["status"]["200"], gets.len());
    assert_eq!(summary["checks"]["failed"], 0);
    // 2 checks + 1 capture on the first step, 2 checks on the second, per iteration.
    assert_eq!(summary["checks"]["passed"], 200 * 5);

    // Bodies are JSON with values unique per iteration.
    let mut ids = HashSet::new();
    let mut seqs = HashSet::new();
    for post in &posts {
        assert_eq!(post.path, "/test/user");
        let body: serde_json::Value =
            serde_json::from_slice(&post.body).expect("POST body is JSON");
        let id = body["Id"].as_str().expect("Id is a string").to_string();
        assert_eq!(id.len(), 36, "{id}");
        assert!(
            body["Seq"].is_u64(),
            "numeric templates become JSON numbers: {body}"
        );
        assert_eq!(body["Name"], format!("n-{}", body["Seq"]));
        assert!(body["Vu"].as_str().unwrap().starts_with("vu-"));
        ids.insert(id);
        seqs.insert(body["Seq"].as_u64().unwrap());
        let correlation = post
            .headers
            .get("x-correlation-id")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(
            correlation.starts_with(summary["run_id"].as_str().unwrap()),
            "{correlation}"
        );
    }
    assert_eq!(ids.len(), 200, "every iteration has its own uuid");
    assert_eq!(seqs.len(), 200, "every iteration has its own seq");
    // The capture flows into the next step's path.
    let got: HashSet<String> = gets
        .iter()
        .map(|g| g.path.trim_start_matches("/test/user/").to_string())
        .collect();
    assert_eq!(got, ids);
    assert!(
        gets.iter()
            .all(|g| g.query.as_deref().is_some_and(|q| q.starts_with("seq=")))
    );
}

/// Steps with nothing templated are written from bytes encoded before the
/// run; only the correlation id changes per request.
#[test]
fn fixed_steps_send_the_same_request_with_each_request_s_correlation_id() {
    let server = TestServer::start();
    let body = format!(
        r#"
[target]
base_url = "{}/{{stage}}"
stage = "test"
[load]
vus = 3
iterations = 40
duration = "30s"
[headers]
X-Team = "platform"
[[steps]]
name = "create"
method = "POST"
path = "/user"
query = {{ dry = "no" }}
body = {{ Id = "fixed", Name = "n" }}
checks = [{{ status = [201] }}]
[[steps]]
name = "read"
method = "GET"
path = "/user/fixed"
checks = [{{ json = "Name", equals = "n" }}]
"#,
        server.url()
    );
    let (output, summary) = run_scenario(&body, &[], Duration::from_secs(60));
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        text(&output.stderr)
    );
    let run_id = summary["run_id"].as_str().unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 80);
    assert_eq!(summary["totals"]["requests"], 80);
    assert_eq!(summary["checks"]["passed"], 80);
    let mut ids = HashSet::new();
    for request in &seen {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(header("x-team").as_deref(), Some("platform"));
        assert_eq!(header("host"), Some(server.addr.to_string()));
        assert!(header("user-agent").unwrap().starts_with("stagecheck/"));
        let id = header("x-correlation-id").unwrap();
        let step = if request.method == Method::POST {
            assert_eq!(
                (request.path.as_str(), request.query.as_deref()),
                ("/test/user", Some("dry=no"))
            );
            assert_eq!(header("content-type").as_deref(), Some("application/json"));
            let sent: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
            assert_eq!(sent, serde_json::json!({"Id": "fixed", "Name": "n"}));
            0
        } else {
            assert_eq!(request.path, "/test/user/fixed");
            assert!(request.body.is_empty());
            1
        };
        let seq = id
            .strip_prefix(&format!("{run_id}-"))
            .and_then(|rest| rest.strip_suffix(&format!("-{step}")))
            .unwrap_or_else(|| panic!("{id} is not {run_id}-SEQ-{step}"));
        assert!(seq.parse::<u64>().is_ok(), "{id}");
        ids.insert(id);
    }
    assert_eq!(ids.len(), 80, "every request has its own correlation id");
}

#[test]
fn open_model_holds_the_arrival_rate() {
    let server = TestServer::start();
    let body = get_scenario(
        &server.url(),
        "ping",
        "/ping",
        "rate = 200\nduration = \"3s\"",
        "",
    );
    let (output, summary) = run_scenario(&body, &[], Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let seen = server.seen().len() as f64;
    assert!(
        (seen - 600.0).abs() <= 12.0,
        "server saw {seen}, expected 600 ± 2 %"
    );
    assert_eq!(summary["totals"]["requests"].as_f64().unwrap(), seen);
    assert_eq!(summary["totals"]["dropped_iterations"], 0);
    assert_eq!(summary["model"], "open");
    let rps = summary["totals"]["rps"].as_f64().unwrap();
    assert!((rps - 200.0).abs() < 10.0, "rps {rps}");
    assert!(summary["timeline"].as_array().unwrap().len() >= 3);
}

#[test]
fn a_stall_shows_in_the_percentiles_coordinated_omission_free() {
    // Every answer due between 2 s and 3 s after the first request waits until 3 s.
    let server = TestServer::with_stall(Stall {
        after: Duration::from_secs(2),
        hold: Duration::from_secs(1),
    });
    let body = get_scenario(
        &server.url(),
        "ping",
        "/ping",
        "rate = 200\nduration = \"6s\"\nmax_vus = 400",
        "",
    );
    let (output, summary) = run_scenario(&body, &["-q"], Duration::from_secs(40));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let lat = &summary["steps"][0]["latency_ms"];
    let (p50, p90, p99) = (
        lat["p50"].as_f64().unwrap(),
        lat["p90"].as_f64().unwrap(),
        lat["p99"].as_f64().unwrap(),
    );
    // 200 of 1200 requests fall in the stall, waiting 1000 ms down to 0:
    // p90 ≈ 400 ms and p99 ≈ 940 ms; the median is untouched.
    assert!(p50 < 50.0, "p50 {p50}");
    assert!((300.0..=500.0).contains(&p90), "p90 {p90}");
    assert!((850.0..=1100.0).contains(&p99), "p99 {p99}");
    assert_eq!(summary["totals"]["dropped_iterations"], 0);
    let seen = server.seen().len() as f64;
    assert!((seen - 1200.0).abs() <= 24.0, "server saw {seen}");
}

#[test]
fn sigint_still_writes_a_partial_summary() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let body = get_scenario(
        &server.url(),
        "ping",
        "/ping",
        "rate = 50\nduration = \"60s\"",
        "checks = [{ status = [200] }]\n",
    );
    let file = scenario_file(dir.path(), "long.toml", &body);
    let out = dir.path().join("s.json");
    let (output, stopping) = run_interrupted(&file, &out, Duration::from_millis(2500));
    assert!(
        stopping < Duration::from_secs(15),
        "stopping took {stopping:?}"
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "an interrupted run does not pass: {}",
        text(&output.stderr)
    );
    let summary = read_json(&out);
    assert_eq!(summary["partial"], true);
    assert_eq!(summary["stopped_by"], "interrupted by SIGINT");
    let requests = summary["totals"]["requests"].as_u64().unwrap();
    assert!(requests >= 50, "{requests}");
    assert_eq!(requests as usize, server.seen().len());
    assert!(text(&output.stdout).contains("PARTIAL"));
}

#[test]
fn failed_threshold_exits_1_and_says_which() {
    let server = TestServer::start();
    let body = get_scenario(
        &server.url(),
        "missing",
        "/user/nope",
        "iterations = 5",
        "[thresholds]\nrules = [\"error_rate < 1%\", \"p99 < 10s\"]\n",
    );
    let (output, summary) = run_scenario(&body, &[], Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(summary["thresholds"][0]["expr"], "error_rate < 1%");
    assert_eq!(summary["thresholds"][0]["ok"], false);
    assert_eq!(summary["thresholds"][0]["actual"], 100.0);
    assert_eq!(summary["thresholds"][1]["ok"], true);
    assert_eq!(summary["steps"][0]["status"]["404"], 5);
    assert_eq!(server.seen().len(), 5);
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("✗ error_rate < 1%") && stdout.contains("FAIL"),
        "{stdout}"
    );
}

#[test]
fn failed_check_exits_1_with_an_example() {
    let server = TestServer::start();
    let body = get_scenario(
        &server.url(),
        "get",
        "/user/x",
        "",
        "checks = [{ status = [200] }]\n",
    );
    let (output, summary) = run_scenario(&body, &[], Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(summary["checks"]["failed"], 1);
    assert_eq!(
        summary["checks"]["details"][0]["example_failure"],
        "status 404"
    );
    assert_eq!(server.seen().len(), 1, "no [load] means one iteration");
}

#[test]
fn unreachable_target_is_exit_3_before_any_traffic() {
    // Bind then drop: a loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[target]\nbase_url = \"http://127.0.0.1:{port}/{{stage}}\"\nstage = \"t\"\n[[steps]]\nname = \"get\"\nmethod = \"GET\"\npath = \"/\"\n"
    );
    let file = scenario_file(dir.path(), "u.toml", &body);
    let output = run_bounded(stagecheck().arg("run").arg(&file), Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(3));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("target unreachable") && stderr.contains(&port.to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn json_summary_has_the_documented_keys() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(
        dir.path(),
        "crud.toml",
        &crud_scenario(&server.url(), "iterations = 3"),
    );
    let output = run_bounded(
        stagecheck().arg("run").arg(&file).arg("--out").arg("-"),
        Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    // `--out -` puts the JSON alone on stdout; the report goes to stderr.
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is the JSON summary");
    for key in ["requests", "failed", "rps", "dropped_iterations"] {
        assert!(summary["totals"][key].is_number(), "totals.{key}");
    }
    assert!(summary["partial"].is_boolean());
    let step = &summary["steps"][0];
    for key in [
        "name",
        "requests",
        "failed",
        "status",
        "latency_ms",
        "histogram",
    ] {
        assert!(!step[key].is_null(), "steps[].{key}");
    }
    for key in ["min", "mean", "p50", "p90", "p95", "p99", "p999", "max"] {
        assert!(step["latency_ms"][key].is_number(), "latency_ms.{key}");
    }
    assert!(step["histogram"].as_str().is_some_and(|h| h.len() > 10));
    assert!(summary["checks"]["passed"].is_number() && summary["checks"]["failed"].is_number());
    assert!(
        summary["thresholds"][0]["expr"].is_string() && summary["thresholds"][0]["ok"].is_boolean()
    );
    assert!(text(&output.stderr).contains("PASS"));
}

#[test]
fn flags_override_the_file() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    // The file points at a dead port and a stage the flags replace.
    let body = "[target]\nbase_url = \"http://127.0.0.1:9/{stage}\"\nstage = \"a\"\n[[steps]]\nname = \"get\"\nmethod = \"GET\"\npath = \"/ping\"\n";
    let file = scenario_file(dir.path(), "o.toml", body);
    let base = format!("{}/{{stage}}", server.url());
    let output = run_bounded(
        stagecheck().arg("run").arg(&file).args([
            "--base-url",
            &base,
            "--stage",
            "other",
            "--vus",
            "2",
            "--iterations",
            "7",
            "-H",
            "x-extra: yes",
            "-q",
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let seen = server.seen();
    assert_eq!(seen.len(), 7);
    assert!(
        seen.iter()
            .all(|s| s.path == "/other/ping" && s.headers.get("x-extra").is_some())
    );
}

#[test]
fn https_with_ca_cert_or_insecure_and_a_clear_error_otherwise() {
    let (cert, key) = self_signed();
    let server = TestServer::https(&cert, &key);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert).unwrap();
    let body = format!(
        "[target]\nbase_url = \"https://localhost:{}/{{stage}}\"\nstage = \"test\"\n[load]\niterations = 3\n[[steps]]\nname = \"get\"\nmethod = \"GET\"\npath = \"/ping\"\nchecks = [{{ status = [200] }}]\n",
        server.addr.port()
    );
    let file = scenario_file(dir.path(), "tls.toml", &body);

    let output = run_bounded(
        stagecheck().arg("run").arg(&file).arg("--ca-cert").arg(&ca),
        Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(server.seen().len(), 3);

    let output = run_bounded(
        stagecheck().arg("run").arg(&file).arg("--insecure"),
        Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(server.seen().len(), 6);

    let output = run_bounded(stagecheck().arg("run").arg(&file), Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(3));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("TLS") && stderr.contains("--ca-cert"),
        "{stderr}"
    );
    assert_eq!(
        server.seen().len(),
        6,
        "no request without a trusted certificate"
    );
}

#[test]
fn abort_on_fail_stops_the_run_early() {
    let server = TestServer::start();
    let body = get_scenario(
        &server.url(),
        "missing",
        "/user/nope",
        "rate = 20\nduration = \"60s\"",
        "[thresholds]\nrules = [\"error_rate < 1%\"]\nabort_on_fail = true\nabort_delay = \"1s\"\n",
    );
    let started = std::time::Instant::now();
    let (output, summary) = run_scenario(&body, &["-q"], Duration::from_secs(30));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(summary["partial"], true);
    assert_eq!(
        summary["stopped_by"],
        "threshold `error_rate < 1%` failed during the run"
    );
    assert_eq!(
        summary["totals"]["requests"].as_u64().unwrap() as usize,
        server.seen().len()
    );
}

#[test]
fn open_ramp_follows_the_profile() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    // 0 → 200/s over 2 s (200 iterations), then 200/s for 1 s (200 more).
    let body = get_scenario(
        &server.url(),
        "ping",
        "/ping",
        "ramp = [{ target = 200, duration = \"2s\" }, { target = 200, duration = \"1s\" }]",
        "",
    );
    let file = scenario_file(dir.path(), "r.toml", &body);
    let output = run_bounded(
        stagecheck().arg("run").arg(&file).arg("-q"),
        Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let seen = server.seen();
    assert!(
        (seen.len() as i64 - 400).abs() <= 8,
        "server saw {}",
        seen.len()
    );
    // Arrivals accelerate: the first second of the ramp carries a quarter of its 200.
    let first = seen[0].at;
    let in_first_second = seen
        .iter()
        .filter(|s| s.at.duration_since(first) < Duration::from_secs(1))
        .count();
    assert!(
        (35..=65).contains(&in_first_second),
        "{in_first_second} in the first second"
    );
}

#[test]
fn closed_model_with_think_time_paces_each_vu() {
    let server = TestServer::start();
    let body = get_scenario(
        &server.url(),
        "ping",
        "/ping",
        "model = \"closed\"\nvus = 3\nthink_time = \"100ms\"\nduration = \"2s\"",
        "",
    );
    let (output, summary) = run_scenario(&body, &["-q"], Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    // 3 VUs × ~10 iterations/s × 2 s.
    let n = server.seen().len();
    assert!((48..=63).contains(&n), "server saw {n}");
    assert_eq!(summary["model"], "closed");
}

#[test]
fn a_request_past_its_timeout_is_a_timeout_error_and_the_vu_goes_on() {
    // Answers due between 1 s and 2 s after the first request wait until 2 s;
    // with a 300 ms timeout each VU gives up about three times, reconnects,
    // and succeeds again once the stall is over.
    let server = TestServer::with_stall(Stall {
        after: Duration::from_secs(1),
        hold: Duration::from_secs(1),
    });
    let body = get_scenario(
        &server.url(),
        "ping",
        "/ping",
        "model = \"closed\"\nvus = 4\nduration = \"3500ms\"",
        "timeout = \"300ms\"\n[thresholds]\nrules = [\"error_rate < 100%\"]",
    );
    let (output, summary) = run_scenario(&body, &["-q"], Duration::from_secs(30));
    assert!(output.status.code().is_some(), "{}", text(&output.stderr));
    let step = &summary["steps"][0];
    let timeouts = step["errors"]["timeout"].as_u64().unwrap();
    assert!((8..=20).contains(&timeouts), "timeouts {timeouts}");
    assert_eq!(step["failed"].as_u64().unwrap(), timeouts);
    // Each timed-out request gave up at its own deadline, not a later one.
    let max = step["latency_ms"]["max"].as_f64().unwrap();
    assert!((300.0..450.0).contains(&max), "max latency {max} ms");
    // Requests after the stall were answered: the VUs reconnected.
    let first = server.seen()[0].at;
    let late = server
        .seen()
        .iter()
        .filter(|s| s.at.duration_since(first) > Duration::from_millis(2300))
        .count();
    assert!(late > 20, "{late} requests after the stall");
    assert!(step["requests"].as_u64().unwrap() > timeouts + 20);
}
