//! Signing credentials that expire during a run are fetched again before
//! they do: a `credential_process` hands out session credentials that live
//! 20 s and logs each call; the server records the session token of every
//! request. No request may carry a token within 5 s of its expiry.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use crate::support::*;

#[test]
fn signing_credentials_are_fetched_again_before_they_expire() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let script = dir.path().join("creds.sh");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
log="{log}"
n=$(( $(cat "$log" 2>/dev/null | wc -l) + 1 ))
exp=$(( $(date +%s) + 20 ))
echo "$n $exp" >> "$log"
printf '{{"Version":1,"AccessKeyId":"AKIDREFRESHTEST","SecretAccessKey":"refresh-test-secret","SessionToken":"tok-%s","Expiration":"%s"}}' "$n" "$(date -u -d "@$exp" +%Y-%m-%dT%H:%M:%SZ)"
"#,
            log = log.display()
        ),
    )
    .unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "[profile soak]\ncredential_process = sh {}\nregion = us-east-1\n",
            script.display()
        ),
    )
    .unwrap();
    let scenario = scenario_file(
        dir.path(),
        "soak.toml",
        &format!(
            r#"
[target]
base_url = "{}/{{stage}}"
stage = "test"
[[stages]]
name = "test"
auth = "iam"
[load]
vus = 1
think_time = "200ms"
duration = "60s"
[[steps]]
name = "ping"
method = "GET"
path = "/ping"
"#,
            server.url()
        ),
    );
    let out = dir.path().join("summary.json");
    let output = run_bounded(
        isolated()
            .env("AWS_CONFIG_FILE", &config)
            .arg("run")
            .arg(&scenario)
            .args([
                "--profile",
                "soak",
                "--region",
                "us-east-1",
                "--no-verify",
                "-q",
                "-o",
            ])
            .arg(&out),
        Duration::from_secs(120),
    );
    // Instants to wall-clock time, from one reading of both.
    let (now_instant, now_wall) = (Instant::now(), SystemTime::now());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(!text(&output.stderr).contains("refresh-test-secret"));

    let expiries: HashMap<String, u64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (n, exp) = l.split_once(' ')?;
            Some((format!("tok-{n}"), exp.parse().ok()?))
        })
        .collect();
    // 60 s of credentials living 20 s, fetched again halfway: about 6 calls.
    assert!(
        expiries.len() >= 4,
        "credential_process called {} times",
        expiries.len()
    );

    let seen = server.seen();
    assert!(seen.len() > 100, "only {} requests", seen.len());
    let mut used = std::collections::BTreeSet::new();
    for request in &seen {
        let token = request
            .headers
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok())
            .expect("every request is signed with a session token")
            .to_string();
        let expiry = *expiries
            .get(&token)
            .unwrap_or_else(|| panic!("unknown token {token}"));
        let sent = now_wall - (now_instant - request.at);
        let sent_s = sent
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            sent_s + 5 <= expiry,
            "a request at {sent_s} carried {token}, which expires at {expiry}"
        );
        assert!(request.headers.contains_key("authorization"));
        used.insert(token);
    }
    assert!(used.len() >= 3, "tokens used: {used:?}");
}
