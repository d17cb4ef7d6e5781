//! JSONPath in checks and captures, through the real binary: an RFC 9535
//! filter captures the id a later step uses (the server sees that id), a
//! short form checks beside it, and a filter that selects nothing fails its
//! check on every response.

use std::time::Duration;

use crate::support::*;
use axum::http::Method;

#[test]
fn filters_capture_and_check_and_short_forms_still_work() {
    let server = TestServer::start();
    let scenario = format!(
        r#"
[target]
base_url = "{base}/{{stage}}"
stage = "test"

[load]
iterations = 5

[[steps]]
name = "create"
method = "POST"
path = "/user"
body = {{ Id = "{{{{uuid}}}}", items = [{{ Name = "a", Id = "other" }}, {{ Name = "x", Id = "{{{{uuid}}}}" }}] }}
checks = [
  {{ status = [201] }},
  {{ json = "$.items[?@.Name == 'x'].Id", equals = "{{{{uuid}}}}" }},
  {{ json = "$.items[?@.Name == 'nobody'].Id", exists = true }},
]
capture = {{ picked = {{ json = "$.items[?@.Name == 'x'].Id" }} }}

[[steps]]
name = "get"
method = "GET"
path = "/user/{{{{picked}}}}"
checks = [{{ status = [200] }}, {{ json = "items[1].Name", equals = "x" }}]
"#,
        base = server.url()
    );
    let (output, summary) = run_scenario(&scenario, &[], Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let details = summary["checks"]["details"].as_array().unwrap();
    for check in details {
        let name = check["name"].as_str().unwrap();
        let failed = check["failed"].as_u64().unwrap();
        let passed = check["passed"].as_u64().unwrap();
        if name.contains("nobody") {
            assert_eq!((passed, failed), (0, 5), "{check}");
        } else {
            assert_eq!((passed, failed), (5, 0), "{check}");
        }
    }
    // Three checks and the capture in create, two checks in get.
    assert_eq!(details.len(), 6, "{details:?}");
    // The server's side: each GET asked for the id the filter picked.
    let seen = server.seen();
    let picked: Vec<String> = seen
        .iter()
        .filter(|s| s.method == Method::POST)
        .map(|s| {
            let body: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
            body["items"][1]["Id"].as_str().unwrap().to_string()
        })
        .collect();
    let got: Vec<String> = seen
        .iter()
        .filter(|s| s.method == Method::GET)
        .map(|s| s.path.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(picked.len(), 5);
    let (mut picked, mut got) = (picked, got);
    picked.sort();
    got.sort();
    assert_eq!(picked, got);
}
