//! Inputs are never changed or dropped in silence: what the scenario and the
//! flags say is what goes out, or the run is refused with a sentence saying
//! why. Through the real binary; the counting server says what arrived.

use std::time::Duration;

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(60);

fn scenario(url: &str, step: &str, top: &str) -> String {
    format!(
        "[target]\nbase_url = \"{url}/{{stage}}\"\nstage = \"t\"\n{top}\n[[steps]]\nname = \"get\"\nmethod = \"GET\"\n{step}\n"
    )
}

#[test]
fn literal_path_and_query_text_is_percent_encoded() {
    let server = TestServer::start();
    let body = scenario(
        &server.url(),
        "path = \"/my files/a%2Fb\"\nquery = { source = \"a&b=c\", note = \"x y\" }",
        "",
    );
    let (output, summary) = run_scenario(&body, &[], LIMIT);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(summary["passed"], true);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/t/my%20files/a%2Fb");
    // One `source` value, not `source=a` and a stray `b=c`.
    assert_eq!(
        seen[0].query.as_deref(),
        Some("note=x%20y&source=a%26b%3Dc")
    );
}

#[test]
fn a_correlation_header_the_user_sets_is_refused_with_what_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let body = scenario(
        "http://127.0.0.1:9",
        "path = \"/ping\"",
        "[headers]\nX-Correlation-Id = \"{{run_id}}-{{seq}}\"",
    );
    let file = scenario_file(dir.path(), "corr.toml", &body);
    let output = run_bounded(stagecheck().arg("validate").arg(&file), LIMIT);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("corr.toml:5:"), "{stderr}");
    assert!(
        stderr.contains("stagecheck sets x-correlation-id on every request")
            && stderr.contains("set `[verify] correlation_header` to another header name"),
        "{stderr}"
    );
}

#[test]
fn a_correlation_header_of_another_name_leaves_the_users_header_as_written() {
    let server = TestServer::start();
    let body = scenario(
        &server.url(),
        "path = \"/ping\"",
        "[headers]\nX-Correlation-Id = \"mine-{{seq}}\"\n[verify]\ncorrelation_header = \"X-Stagecheck-Id\"",
    );
    let (output, summary) = run_scenario(&body, &[], LIMIT);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let seen = server.seen();
    assert_eq!(seen[0].headers["x-correlation-id"], "mine-0");
    let ours = seen[0].headers["x-stagecheck-id"].to_str().unwrap();
    assert!(
        ours.starts_with(summary["run_id"].as_str().unwrap()),
        "{ours}"
    );
}

#[test]
fn rate_with_vus_on_the_command_line_is_a_usage_error() {
    let server = TestServer::start();
    let body = scenario(&server.url(), "path = \"/ping\"", "");
    let (output, _) = run_scenario(&body, &["--rate", "10", "--vus", "2"], LIMIT);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--rate and --vus choose different models"),
        "{stderr}"
    );
    assert!(server.seen().is_empty());
}

#[test]
fn a_missing_ca_cert_file_is_a_usage_error_naming_it() {
    let server = TestServer::start();
    let body = scenario(&server.url(), "path = \"/ping\"", "");
    let (output, _) = run_scenario(&body, &["--ca-cert", "/nonexistent/ca.pem"], LIMIT);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--ca-cert /nonexistent/ca.pem: cannot read the file"),
        "{stderr}"
    );
    assert!(!stderr.contains("unreachable"), "{stderr}");
}

/// A self-signed certificate marked as a CA, as `openssl req -x509` makes.
fn self_signed_ca() -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[test]
fn the_servers_own_self_signed_ca_certificate_given_with_ca_cert_is_accepted() {
    let (cert, key) = self_signed_ca();
    let server = TestServer::https(&cert, &key);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("server.pem");
    std::fs::write(&ca, &cert).unwrap();
    let body = format!(
        "[target]\nbase_url = \"https://localhost:{}/{{stage}}\"\nstage = \"t\"\n[load]\niterations = 3\n[[steps]]\nname = \"get\"\nmethod = \"GET\"\npath = \"/ping\"\n",
        server.addr.port()
    );
    let file = scenario_file(dir.path(), "tls.toml", &body);
    let output = run_bounded(
        stagecheck().arg("run").arg(&file).arg("--ca-cert").arg(&ca),
        LIMIT,
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(server.seen().len(), 3);

    // Another certificate is still refused: trust is for the one given.
    let (other, _) = self_signed_ca();
    std::fs::write(&ca, other).unwrap();
    let output = run_bounded(
        stagecheck().arg("run").arg(&file).arg("--ca-cert").arg(&ca),
        LIMIT,
    );
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert_eq!(server.seen().len(), 3);
}

#[test]
fn profile_wins_over_credentials_in_the_environment() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        "[ci]\naws_access_key_id = AKIDFROMPROFILE\naws_secret_access_key = profile-secret\n",
    )
    .unwrap();
    let config = dir.path().join("config");
    std::fs::write(&config, "[profile ci]\nregion = eu-west-1\n").unwrap();
    let body = scenario(&server.url(), "path = \"/ping\"", "");
    let file = scenario_file(dir.path(), "iam.toml", &body);
    let output = run_bounded(
        stagecheck()
            .arg("run")
            .arg(&file)
            .args(["--auth", "iam", "--profile", "ci", "--region", "eu-west-1"])
            .env("AWS_ACCESS_KEY_ID", "AKIDFROMENVIRONMENT")
            .env("AWS_SECRET_ACCESS_KEY", "env-secret")
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN"),
        LIMIT,
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let seen = server.seen();
    let authorization = seen
        .last()
        .and_then(|s| s.headers.get("authorization"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        authorization.contains("Credential=AKIDFROMPROFILE/"),
        "{authorization}"
    );
}

#[test]
fn merge_refuses_what_is_not_shards_of_one_run() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let body = scenario(
        &server.url(),
        "path = \"/ping\"",
        "[load]\nrate = 20\niterations = 2",
    );
    let file = scenario_file(dir.path(), "m.toml", &body);
    let run = |name: &str, args: &[&str]| {
        let out = dir.path().join(name);
        let output = run_bounded(
            stagecheck()
                .arg("run")
                .arg(&file)
                .args(["-q", "-o"])
                .arg(&out)
                .args(args),
            LIMIT,
        );
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        out
    };
    let merge = |a: &std::path::Path, b: &std::path::Path| {
        run_bounded(
            stagecheck()
                .arg("merge")
                .arg(a)
                .arg(b)
                .args(["--max-start-skew", "1h", "-o"])
                .arg(dir.path().join("merged.json")),
            LIMIT,
        )
    };
    // Two whole runs are not shards of one run.
    let (a, b) = (run("a.json", &[]), run("b.json", &[]));
    let output = merge(&a, &b);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("these summaries are whole runs, not shards of one run"),
        "{stderr}"
    );
    // One shard verified, the other not: the cause, not "thresholds differ".
    let one = run("1.json", &["--shard", "1/2"]);
    let two = run("2.json", &["--shard", "2/2"]);
    let mut verified = read_json(&two);
    verified["verify"] = serde_json::json!({ "api_calls": {} });
    std::fs::write(&two, verified.to_string()).unwrap();
    let output = merge(&one, &two);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "summary 1 ran without backend verification (--no-verify) and summary 2 with it"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("thresholds"), "{stderr}");
    assert!(!dir.path().join("merged.json").exists());
}

#[test]
fn messages_name_a_missing_table_and_carry_no_runs_of_spaces() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(
        dir.path(),
        "no-target.toml",
        "[backends]\ntable = \"{prefix}User\"\n[[steps]]\nname = \"get\"\nmethod = \"GET\"\npath = \"/\"\n",
    );
    let output = run_bounded(stagecheck().arg("validate").arg(&file), LIMIT);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for needle in [
        "the scenario has no `target` table; add [target] with base_url and stage",
        "no-target.toml:1:1",
        "in target",
    ] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }

    let protected = "[target]\nbase_url = \"http://127.0.0.1:9/{stage}\"\nstage = \"prod\"\n[[stages]]\nname = \"prod\"\ntable_prefix = \"\"\nprotected = true\n[load]\nrate = 5\nduration = \"2s\"\n[[steps]]\nname = \"get\"\nmethod = \"GET\"\npath = \"/\"\n";
    let file = scenario_file(dir.path(), "prod.toml", protected);
    for args in [
        vec!["--no-verify"],
        vec!["--no-verify", "--allow-prod", "--max-rate", "1"],
    ] {
        let output = run_bounded(stagecheck().arg("run").arg(&file).args(&args), LIMIT);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.trim_end().contains("  "), "{args:?}: {stderr:?}");
    }
    let key = "[target]\nbase_url = \"http://127.0.0.1:9/{stage}\"\nstage = \"t\"\n[headers]\nx-api-key = \"abc\"\n[[steps]]\nname = \"get\"\nmethod = \"GET\"\npath = \"/\"\n";
    let file = scenario_file(dir.path(), "key.toml", key);
    let output = run_bounded(stagecheck().arg("validate").arg(&file), LIMIT);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    // The message line; the source excerpt under it is indented on purpose.
    let message = stderr.lines().next().unwrap_or_default();
    assert!(
        message.contains("API key") && !message.contains("  "),
        "{stderr:?}"
    );
}
