//! `promote`, `rollback` and `history` against the sandbox: what GetStage
//! says and what the data plane serves after each change are the ground
//! truth, read through the SDK and over HTTP, apart from the product.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_apigateway::types::{IntegrationType, Op, PatchOperation};
use serde_json::Value;

use crate::support::sandbox::{
    ACCESS_KEY_ID, Aws, Moto, REGION, SECRET_ACCESS_KEY, Sandbox, http, send,
};
use crate::support::{isolated, read_json, run_bounded, scenario_file, text};

const LIMIT: Duration = Duration::from_secs(180);

/// Creates a user and reads it back by id: `/user/{id}` must be served.
const CRUD: &str = r#"
name = "promote-crud"
[target]
base_url = "BASE/{stage}"
rest_api = "users"

[[stages]]
name = "test"
table_prefix = "test-"
[[stages]]
name = "prod"
table_prefix = ""
protected = true

[verify]
logs = false
isolate_from = []

[[steps]]
name = "create_user"
method = "POST"
path = "/user"
body = { Id = "{{uuid}}", Name = "promoted-{{seq}}" }
checks = [{ status = [201] }]
  [steps.writes]
  key = { Id = "{{uuid}}" }
  attributes = { Name = "promoted-{{seq}}" }

[[steps]]
name = "get_user"
method = "GET"
path = "/user/{{uuid}}"
checks = [{ status = [200] }]
"#;

struct World {
    _moto: Moto,
    sandbox: Sandbox,
    aws: Aws,
    rt: tokio::runtime::Runtime,
    api: String,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let moto = Moto::start();
        let sandbox = Sandbox::start(&moto, &[], &[]);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let aws = rt.block_on(Aws::of(&sandbox));
        let api = rt.block_on(async {
            aws.apigateway
                .get_rest_apis()
                .send()
                .await
                .unwrap()
                .items()
                .iter()
                .find(|a| a.name() == Some("users"))
                .and_then(|a| a.id())
                .unwrap()
                .to_string()
        });
        World {
            _moto: moto,
            sandbox,
            aws,
            rt,
            api,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn scenario(&self, name: &str, body: &str) -> PathBuf {
        scenario_file(
            self.dir.path(),
            name,
            &body.replace("BASE", &self.sandbox.base_url),
        )
    }

    fn serves(&self, stage: &str) -> String {
        self.rt.block_on(async {
            self.aws
                .apigateway
                .get_stage()
                .rest_api_id(&self.api)
                .stage_name(stage)
                .send()
                .await
                .unwrap()
                .deployment_id()
                .unwrap()
                .to_string()
        })
    }

    fn resource(&self, path: &str) -> String {
        self.rt.block_on(async {
            self.aws
                .apigateway
                .get_resources()
                .rest_api_id(&self.api)
                .send()
                .await
                .unwrap()
                .items()
                .iter()
                .find(|r| r.path() == Some(path))
                .and_then(|r| r.id())
                .unwrap()
                .to_string()
        })
    }

    /// A new deployment of the draft; `stage`, when given, is pointed at it.
    /// API Gateway dates deployments to the second: a second apart, the
    /// history's order is the order they were made in.
    fn deploy(&self, stage: Option<&str>) -> String {
        std::thread::sleep(Duration::from_millis(1100));
        let id = self.rt.block_on(async {
            self.aws
                .apigateway
                .create_deployment()
                .rest_api_id(&self.api)
                .description("from the promote tests")
                .send()
                .await
                .unwrap()
                .id()
                .unwrap()
                .to_string()
        });
        if let Some(stage) = stage {
            self.point(stage, &id);
        }
        id
    }

    fn point(&self, stage: &str, id: &str) {
        self.replace(stage, "/deploymentId", id);
    }

    /// UpdateStage `replace PATH VALUE`, then the data plane reloads.
    fn replace(&self, stage: &str, path: &str, value: &str) {
        self.rt.block_on(async {
            self.aws
                .apigateway
                .update_stage()
                .rest_api_id(&self.api)
                .stage_name(stage)
                .patch_operations(
                    PatchOperation::builder()
                        .op(Op::Replace)
                        .path(path)
                        .value(value)
                        .build(),
                )
                .send()
                .await
                .unwrap();
        });
        self.reload();
    }

    fn reload(&self) {
        let r = self.rt.block_on(send(
            &http(),
            "POST",
            &self.sandbox.url("/_sandbox/reload"),
            None,
            &[],
        ));
        assert_eq!(r.status, 200);
    }

    /// The draft's `/user/{id}` integration.
    fn set_item_integration(&self, uri: &str) {
        let resource = self.resource("/user/{id}");
        self.rt.block_on(async {
            self.aws
                .apigateway
                .put_integration()
                .rest_api_id(&self.api)
                .resource_id(&resource)
                .http_method("ANY")
                .r#type(IntegrationType::AwsProxy)
                .integration_http_method("POST")
                .uri(uri)
                .send()
                .await
                .unwrap();
        });
    }

    fn item_uri(&self, function: &str) -> String {
        let arn = self.rt.block_on(async {
            self.aws
                .lambda
                .get_function_configuration()
                .function_name("user-service")
                .send()
                .await
                .unwrap()
                .function_arn()
                .unwrap()
                .to_string()
        });
        let account = arn.split(':').nth(4).unwrap().to_string();
        format!(
            "arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/arn:aws:lambda:{REGION}:{account}:function:{function}/invocations"
        )
    }

    /// The status stage `stage` answers for GET /user/x.
    fn item_status(&self, stage: &str) -> u16 {
        self.rt
            .block_on(send(
                &http(),
                "GET",
                &self.sandbox.url(&format!("/{stage}/user/x")),
                None,
                &[],
            ))
            .status
    }

    fn promote(&self, scenario: &Path, extra: &[&str]) -> (Output, Value) {
        let out = self.dir.path().join("promotion.json");
        let _ = std::fs::remove_file(&out);
        let output = run_bounded(
            self.command(&["promote"])
                .arg(scenario)
                .args([
                    "--from", "test", "--to", "prod", "--settle", "1500ms", "-q", "-o",
                ])
                .arg(&out)
                .args(extra),
            LIMIT,
        );
        let doc = if out.exists() {
            read_json(&out)
        } else {
            Value::Null
        };
        (output, doc)
    }

    /// `stagecheck SUBCOMMAND` with the AWS flags after it.
    fn command(&self, sub: &[&str]) -> Command {
        let mut cmd = isolated();
        cmd.current_dir(self.dir.path())
            .args(sub)
            .args([
                "--aws-endpoint",
                &self.sandbox.aws_endpoint,
                "--region",
                REGION,
            ])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY);
        cmd
    }
}

/// Prod on a deployment without `/user/{id}`; test on a newer one with it.
fn prod_behind(w: &World) -> (String, String) {
    let resource = w.resource("/user/{id}");
    w.rt.block_on(async {
        w.aws
            .apigateway
            .delete_method()
            .rest_api_id(&w.api)
            .resource_id(&resource)
            .http_method("ANY")
            .send()
            .await
            .unwrap();
    });
    let old = w.deploy(Some("prod"));
    w.rt.block_on(async {
        w.aws
            .apigateway
            .put_method()
            .rest_api_id(&w.api)
            .resource_id(&resource)
            .http_method("ANY")
            .authorization_type("NONE")
            .send()
            .await
            .unwrap();
    });
    let uri = w.item_uri("${stageVariables.env}user-service");
    w.set_item_integration(&uri);
    let new = w.deploy(Some("test"));
    (old, new)
}

#[test]
fn a_clean_promotion_moves_prod_and_history_and_rollback_follow() {
    let w = World::new();
    let (old, new) = prod_behind(&w);
    // The ground truth before: prod does not serve /user/{id}.
    assert_eq!(w.item_status("prod"), 403);
    let scenario = w.scenario("crud.toml", CRUD);
    let (output, doc) = w.promote(&scenario, &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{doc:#}",
        text(&output.stderr)
    );
    assert_eq!(w.serves("prod"), new);
    assert_ne!(w.item_status("prod"), 403, "prod serves the promoted route");
    assert_eq!(doc["outcome"], "promoted");
    // The phases' times, for the record (`--nocapture`).
    eprintln!("clean promotion: {}", doc["timings"]);
    assert_eq!(doc["gate"]["kind"], "run");
    assert_eq!(doc["before"]["prod"], old.as_str());
    assert_eq!(doc["after"]["prod"], new.as_str());
    assert_eq!(doc["smoke"]["deployment"]["deployment_id"], new.as_str());
    // Relative to where promote ran: the default --journal-dir.
    let journal = read_json(&w.dir.path().join(doc["journal_file"].as_str().unwrap()));
    assert!(
        doc["journal_file"]
            .as_str()
            .unwrap()
            .starts_with(".stagecheck/journal/")
    );
    assert_eq!(journal["state"], "passed");
    assert_eq!(journal["previous_deployment_id"], old.as_str());
    let steps: Vec<&str> = journal["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["audit", "gate", "journal", "switch", "smoke"],
        "{journal:#}"
    );

    // history: every deployment, the served one marked, the promotion.
    let out = w.dir.path().join("history.json");
    let h = run_bounded(
        w.command(&["history", "--stage", "prod", "--rest-api", "users"])
            .arg("-o")
            .arg(&out),
        LIMIT,
    );
    assert_eq!(h.status.code(), Some(0), "{}", text(&h.stderr));
    let history = read_json(&out);
    assert_eq!(history["serves"], new.as_str());
    let ids: Vec<&str> = history["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&old.as_str()) && ids.contains(&new.as_str()),
        "{history:#}"
    );
    assert_eq!(ids[0], new.as_str(), "newest first: {ids:?}");
    assert_eq!(history["changes"][0]["kind"], "promotion");

    // rollback: the next older deployment (no journaled one besides the
    // served one passed its smoke), confirmed, smoked.
    let smoke = w.scenario(
        "smoke.toml",
        &CRUD[..CRUD.find("[[steps]]\nname = \"get_user\"").unwrap()],
    );
    let r = run_bounded(
        w.command(&[
            "rollback",
            "--stage",
            "prod",
            "--rest-api",
            "users",
            "--settle",
            "1500ms",
            "-q",
        ])
        .arg("--smoke")
        .arg(&smoke),
        LIMIT,
    );
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert_eq!(w.serves("prod"), old);
    assert_eq!(
        w.item_status("prod"),
        403,
        "prod serves the old snapshot again"
    );
}

#[test]
fn a_promotion_that_breaks_prod_is_rolled_back() {
    let w = World::new();
    let before = w.serves("prod");
    // Test's new deployment sends /user/{id} to test's own function by
    // name: fine on test, wrong on prod (prod's users are not in test-User).
    let uri = w.item_uri("test-user-service");
    w.set_item_integration(&uri);
    let new = w.deploy(Some("test"));
    let scenario = w.scenario("crud.toml", CRUD);
    let (output, doc) = w.promote(&scenario, &[]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}\n{doc:#}",
        text(&output.stderr)
    );
    assert_eq!(w.serves("prod"), before, "GetStage shows the old id");
    assert_eq!(doc["outcome"], "rolled-back");
    assert_eq!(doc["smoke"]["passed"], false);
    assert_eq!(doc["smoke"]["deployment"]["deployment_id"], new.as_str());
    assert_eq!(doc["rollback_smoke"]["passed"], true, "{doc:#}");
    assert_eq!(doc["journal"]["state"], "rolled-back");
}

#[test]
fn evidence_of_another_failed_or_partial_run_is_refused_and_a_match_skips_the_load() {
    let w = World::new();
    let (old, _) = prod_behind(&w);
    let scenario = w.scenario("crud.toml", CRUD);
    let summary = w.dir.path().join("test-run.json");
    let run = run_bounded(
        w.command(&["run"])
            .arg(&scenario)
            .args(["--stage", "test", "-q", "-o"])
            .arg(&summary),
        LIMIT,
    );
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let good = read_json(&summary);
    let variant = |name: &str, edit: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        edit(&mut v);
        let p = w.dir.path().join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p
    };
    let failed = variant("failed.json", &|v| v["passed"] = Value::Bool(false));
    let partial = variant("partial.json", &|v| v["partial"] = Value::Bool(true));
    let other = variant("other.json", &|v| {
        v["deployment"]["deployment_id"] = "zzzzzz".into()
    });
    for (file, sentence) in [
        (&failed, "is of a run that failed"),
        (&partial, "is of a partial run"),
        (
            &other,
            "verified deployment zzzzzz of stage test, but test now serves",
        ),
    ] {
        let (output, doc) = w.promote(&scenario, &["--evidence", file.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
        let reason = doc["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(sentence), "{sentence:?} not in {reason:?}");
        assert_eq!(w.serves("prod"), old, "nothing changed");
    }
    let (output, doc) = w.promote(&scenario, &["--evidence", summary.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(doc["gate"]["kind"], "evidence");
    assert!(doc["gate"].get("run").is_none(), "the load was skipped");
}

#[test]
fn a_promotion_killed_after_the_switch_is_finished_by_resume() {
    let w = World::new();
    let (_, new) = prod_behind(&w);
    let scenario = w.scenario("crud.toml", CRUD);
    let journal = w.dir.path().join("journal.json");
    let mut child = w
        .command(&["promote"])
        .arg(&scenario)
        .args([
            "--from",
            "test",
            "--to",
            "prod",
            "--settle",
            "3s",
            "-q",
            "--journal",
        ])
        .arg(&journal)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the journal says the stage was switched (during the
    // settle wait, before the smoke).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let state = std::fs::read_to_string(&journal)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .map(|j| j["state"].as_str().unwrap_or_default().to_string());
        if state.as_deref() == Some("switched") {
            break;
        }
        assert!(Instant::now() < deadline, "the journal never said switched");
        assert!(
            child.try_wait().unwrap().is_none(),
            "promote ended before the switch"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(w.serves("prod"), new, "killed after the switch");
    let out = w.dir.path().join("resumed.json");
    let resumed = run_bounded(
        w.command(&["promote"])
            .arg("--resume")
            .arg(&journal)
            .args(["-q", "-o"])
            .arg(&out),
        LIMIT,
    );
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stderr));
    let doc = read_json(&out);
    assert_eq!(doc["outcome"], "promoted");
    assert_eq!(read_json(&journal)["state"], "passed");
    assert_eq!(w.serves("prod"), new);
}

#[test]
fn a_rollback_with_nothing_older_is_a_clear_error() {
    let w = World::new();
    // Prod on the oldest deployment of the history: nothing is older.
    let oldest = w.rt.block_on(async {
        let all = w
            .aws
            .apigateway
            .get_deployments()
            .rest_api_id(&w.api)
            .send()
            .await
            .unwrap();
        let mut items: Vec<_> = all.items().to_vec();
        items.sort_by_key(|d| d.created_date().map(|c| c.secs()));
        items[0].id().unwrap().to_string()
    });
    w.point("prod", &oldest);
    let r = run_bounded(
        &mut w.command(&["rollback", "--stage", "prod", "--rest-api", "users"]),
        LIMIT,
    );
    let stderr = text(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no older deployment"), "{stderr}");
    assert_eq!(w.serves("prod"), oldest);
}

#[test]
fn a_smoke_that_prod_would_refuse_stops_the_promotion_before_the_switch() {
    let w = World::new();
    let (old, _) = prod_behind(&w);
    let scenario = w.scenario("crud.toml", CRUD);
    // A load, not a smoke: protected prod refuses it without --allow-prod.
    let heavy = w.scenario(
        "heavy.toml",
        &CRUD.replace(
            "[verify]",
            "[load]\nrate = 5\nduration = \"10s\"\n\n[verify]",
        ),
    );
    let (output, _) = w.promote(&scenario, &["--smoke", heavy.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("protected") && stderr.contains("--allow-prod"),
        "{stderr}"
    );
    assert_eq!(w.serves("prod"), old, "prod was not touched");
}

impl World {
    fn log_level(&self, stage: &str, level: &str) {
        self.replace(stage, "/*/*/logging/loglevel", level);
    }

    fn has_canary(&self, stage: &str) -> bool {
        self.rt.block_on(async {
            self.aws
                .apigateway
                .get_stage()
                .rest_api_id(&self.api)
                .stage_name(stage)
                .send()
                .await
                .unwrap()
                .canary_settings()
                .is_some()
        })
    }
}

const CANARY: [&str; 6] = [
    "--canary",
    "20%",
    "--canary-for",
    "8s",
    "--canary-rate",
    "10",
];

#[test]
fn a_clean_canary_is_promoted_with_its_share_within_bounds() {
    let w = World::new();
    let before = w.serves("prod");
    let new = w.deploy(Some("test"));
    w.log_level("prod", "INFO");
    let scenario = w.scenario("crud.toml", CRUD);
    let (output, doc) = w.promote(&scenario, &CANARY);
    eprintln!("clean canary: {}", doc["timings"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{doc:#}",
        text(&output.stderr)
    );
    let c = &doc["canary"];
    assert_eq!(c["share_ok"], true, "{c:#}");
    let (canary, primary) = (
        c["canary"]["requests"].as_u64().unwrap(),
        c["primary"]["requests"].as_u64().unwrap(),
    );
    assert!(
        canary > 0 && primary > canary,
        "canary {canary}, primary {primary}"
    );
    assert_eq!(doc["outcome"], "promoted");
    assert_ne!(before, new);
    assert_eq!(
        w.serves("prod"),
        new,
        "the canary's deployment is prod's now"
    );
    assert!(!w.has_canary("prod"), "no canary settings left");
}

#[test]
fn a_failing_canary_is_removed_and_the_primary_never_changes() {
    let w = World::new();
    let before = w.serves("prod");
    // The canary's item route reads test's table: its GETs answer 404.
    let uri = w.item_uri("test-user-service");
    w.set_item_integration(&uri);
    w.deploy(Some("test"));
    w.log_level("prod", "INFO");
    let scenario = w.scenario("crud.toml", CRUD);
    let (output, doc) = w.promote(&scenario, &CANARY);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}\n{doc:#}",
        text(&output.stderr)
    );
    assert_eq!(doc["outcome"], "canary-removed");
    let rules = doc["canary"]["rules"].as_array().unwrap();
    assert!(
        rules
            .iter()
            .any(|r| r["ok"] == false && r["rule"].as_str().unwrap().contains("error_rate")),
        "{doc:#}"
    );
    assert!(doc["canary"]["canary"]["failed"].as_u64().unwrap() > 0);
    assert_eq!(w.serves("prod"), before, "the primary never changed");
    assert!(!w.has_canary("prod"));
}

#[test]
fn a_canary_on_a_stage_without_execution_logs_is_refused() {
    let w = World::new();
    let before = w.serves("prod");
    w.deploy(Some("test"));
    let scenario = w.scenario("crud.toml", CRUD);
    let (output, _) = w.promote(&scenario, &CANARY);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("loggingLevel INFO"), "{stderr}");
    assert_eq!(w.serves("prod"), before);
    assert!(!w.has_canary("prod"));
}
