//! Most functions log no client header: AWS Lambda Powertools' Logger logs only
//! API Gateway's request id (`correlation_id`). Every shipped scenario, unchanged,
//! must pass against a stage whose function logs that way, its invocations proven
//! from those lines; matching only the client's header must fail there.

use std::path::Path;
use std::time::Duration;

use crate::support::sandbox::{ACCESS_KEY_ID, Moto, REGION, SECRET_ACCESS_KEY, Sandbox};
use crate::support::*;

/// Runs a shipped scenario on stage `test`, cut short by flags only: the file is
/// used as shipped. A ramp cannot be shortened by `--duration`, so the load is
/// given as a small rate (open model) or two VUs (closed).
fn run_shipped(sandbox: &Sandbox, scenario: &Path, out: &Path) -> (i32, serde_json::Value, String) {
    let source = std::fs::read_to_string(scenario).unwrap();
    let load = if source.contains("model = \"closed\"") {
        ["--vus", "2"]
    } else {
        ["--rate", "5"]
    };
    let output = run_bounded(
        stagecheck()
            .arg("run")
            .arg(scenario)
            .args(["--stage", "test", "--base-url"])
            .arg(format!("{}/{{stage}}", sandbox.base_url))
            .args(["--aws-endpoint", &sandbox.aws_endpoint, "--region", REGION])
            .args(load)
            .args(["-d", "2s", "--iterations", "20", "--quiet", "-o"])
            .arg(out)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL"),
        Duration::from_secs(120),
    );
    let stderr = text(&output.stderr);
    let summary = if out.exists() {
        read_json(out)
    } else {
        serde_json::Value::Null
    };
    (output.status.code().unwrap_or(-1), summary, stderr)
}

#[test]
fn every_shipped_scenario_passes_against_a_powertools_function() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &["--function-log", "test=powertools"]);
    let dir = tempfile::tempdir().unwrap();
    let mut scenarios: Vec<_> = std::fs::read_dir(root().join("scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    scenarios.sort();
    assert!(scenarios.len() >= 4, "{scenarios:?}");
    let mut invocations_proven = 0;
    for scenario in &scenarios {
        let name = scenario.file_stem().unwrap().to_string_lossy().into_owned();
        let out = dir.path().join(format!("{name}.json"));
        let (code, summary, stderr) = run_shipped(&sandbox, scenario, &out);
        assert_eq!(code, 0, "{name}: {stderr}\n{summary:#}");
        assert_eq!(summary["passed"], true, "{name}: {summary:#}");
        if let Some(found) = summary
            .pointer("/verify/logs/found")
            .and_then(|v| v.as_u64())
        {
            let checked = summary["verify"]["logs"]["checked"].as_u64().unwrap_or(0);
            assert!(checked > 0 && found == checked, "{name}: {summary:#}");
            invocations_proven += found;
        }
    }
    // At least user-crud checks the function's logs: the pass above is proof,
    // not a skipped check.
    assert!(
        invocations_proven > 0,
        "no scenario checked the function's logs"
    );
}

/// The other side: asked to match only the client's header, which a Powertools
/// function never logs, the same run must fail with every invocation missing.
#[test]
fn matching_only_the_client_header_fails_against_a_powertools_function() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &["--function-log", "test=powertools"]);
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(root().join("scenarios/user-crud.toml")).unwrap();
    let body: String = shipped
        .lines()
        .filter(|l| !l.trim_start().starts_with("log_match"))
        // Every invocation will be missing: waiting 30 s for them proves no more.
        .filter(|l| !l.trim_start().starts_with("logs_deadline"))
        .map(|l| {
            if l.trim() == "[verify]" {
                "[verify]\nlog_match = \"correlation_id\"\nlogs_deadline = \"3s\"\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let scenario = scenario_file(dir.path(), "header-only.toml", &body);
    let out = dir.path().join("summary.json");
    let (code, summary, stderr) = run_shipped(&sandbox, &scenario, &out);
    assert_eq!(code, 1, "{stderr}\n{summary:#}");
    assert_eq!(summary["passed"], false, "{summary:#}");
    let logs = &summary["verify"]["logs"];
    assert!(logs["checked"].as_u64().unwrap_or(0) > 0, "{summary:#}");
    assert_eq!(logs["found"], 0, "{summary:#}");
}
