//! Errors a person can read, through the real binary: AWS failures are one or
//! two sentences naming the operation, the resource, the Region and the
//! endpoint (never the SDK's `Debug` dump); missing credentials name the
//! chain and `--no-verify`; AccessDenied names the refused action; a run that fails leaves no file where its summary
//! would go; a key the table cannot take, found after the load, is a failed
//! verification (exit 1), not bad usage.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::sandbox::{ACCESS_KEY_ID, Aws, Moto, REGION, SECRET_ACCESS_KEY};
use crate::support::*;

/// Longest an AWS error may be: two sentences, not a dump.
const MAX_ERROR_CHARS: usize = 450;

fn with_credentials(cmd: &mut Command) -> &mut Command {
    cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
}

/// One step that writes a user keyed by `Id`, verified in stage test's table.
fn writing_scenario(base: &str) -> String {
    format!(
        r#"
[target]
base_url = "{base}/{{stage}}"
stage = "test"

[[stages]]
name = "test"
table_prefix = "test-"

[load]
iterations = 2

[verify]
logs = false

[[steps]]
name = "create_user"
method = "POST"
path = "/user"
body = {{ Id = "{{{{uuid}}}}" }}
writes = {{ key = {{ Id = "{{{{uuid}}}}" }} }}
"#
    )
}

fn run(cmd: &mut Command, file: &Path, out: &Path, args: &[&str]) -> Output {
    run_bounded(
        cmd.arg("run").arg(file).arg("-o").arg(out).args(args),
        Duration::from_secs(90),
    )
}

/// The error line(s) of stderr: everything after `error: `.
fn error_text(output: &Output) -> String {
    let stderr = text(&output.stderr);
    match stderr.find("error: ") {
        Some(at) => stderr[at + "error: ".len()..].trim().to_string(),
        None => panic!("no error in: {stderr}"),
    }
}

fn assert_readable(error: &str) {
    assert!(
        error.chars().count() < MAX_ERROR_CHARS,
        "{} characters: {error}",
        error.chars().count()
    );
    for dump in [
        "ServiceError",
        "raw:",
        "Response {",
        "ErrorMetadata",
        "source:",
    ] {
        assert!(!error.contains(dump), "{dump} in: {error}");
    }
    assert!(
        error.matches(". ").count() <= 1,
        "more than two sentences: {error}"
    );
}

#[test]
fn a_missing_table_is_two_sentences_naming_table_region_and_endpoint() {
    let moto = Moto::start();
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(dir.path(), "s.toml", &writing_scenario(&server.url()));
    let out = dir.path().join("summary.json");
    let output = run(
        with_credentials(&mut isolated()),
        &file,
        &out,
        &["--aws-endpoint", &moto.endpoint, "--region", REGION],
    );
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let error = error_text(&output);
    println!("{} characters: {error}", error.chars().count());
    assert_readable(&error);
    for piece in [
        "DescribeTable",
        "table test-User",
        REGION,
        moto.endpoint.as_str(),
        "ResourceNotFoundException",
        "--no-verify",
    ] {
        assert!(error.contains(piece), "{piece:?} not in: {error}");
    }
    assert_eq!(server.seen().len(), 0, "nothing is sent before preflight");
}

#[test]
fn no_credentials_name_the_chain_and_no_verify() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(dir.path(), "s.toml", &writing_scenario(&server.url()));
    let out = dir.path().join("summary.json");
    let output = run(
        &mut isolated(),
        &file,
        &out,
        &["--aws-endpoint", "http://127.0.0.1:9", "--region", REGION],
    );
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let error = error_text(&output);
    println!("{} characters: {error}", error.chars().count());
    assert!(error.chars().count() < MAX_ERROR_CHARS, "{error}");
    for piece in [
        "No AWS credentials for verification",
        "environment variables (AWS_ACCESS_KEY_ID)",
        "profile `default`",
        "EC2 instance metadata (disabled by AWS_EC2_METADATA_DISABLED)",
        "--no-verify",
    ] {
        assert!(error.contains(piece), "{piece:?} not in: {error}");
    }
    for noise in ["IMDS", "token", "ProviderChain", "CredentialsNotLoaded"] {
        assert!(!error.contains(noise), "{noise} in: {error}");
    }
    assert_eq!(server.seen().len(), 0);
}

#[test]
fn an_unreachable_endpoint_is_one_sentence_and_leaves_no_summary_file() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(dir.path(), "s.toml", &writing_scenario(&server.url()));
    let out = dir.path().join("summary.json");
    let args = ["--aws-endpoint", "http://127.0.0.1:9", "--region", REGION];

    let output = run(with_credentials(&mut isolated()), &file, &out, &args);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let error = error_text(&output);
    println!("{} characters: {error}", error.chars().count());
    assert_readable(&error);
    for piece in [
        "DescribeTable",
        "table test-User",
        "cannot reach DynamoDB",
        "http://127.0.0.1:9",
    ] {
        assert!(error.contains(piece), "{piece:?} not in: {error}");
    }
    // A run that failed before its summary leaves no file where it would go...
    assert!(!out.exists(), "a failed run left {}", out.display());
    // ...and a previous summary there untouched.
    std::fs::write(&out, "{\"previous\": true}\n").unwrap();
    let output = run(with_credentials(&mut isolated()), &file, &out, &args);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "{\"previous\": true}\n"
    );
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "s.toml" && n != "summary.json")
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn a_key_the_table_cannot_take_after_the_load_is_a_failed_verification() {
    let moto = Moto::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        let aws = Aws::new(&moto).await;
        // A numeric key: the run's uuids cannot be one, which only shows
        // once keys are built from what the run recorded.
        aws.dynamodb
            .create_table()
            .table_name("test-User")
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("Id")
                    .attribute_type(ScalarAttributeType::N)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("Id")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    });
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(dir.path(), "s.toml", &writing_scenario(&server.url()));
    let out = dir.path().join("summary.json");
    let output = run(
        with_credentials(&mut isolated()),
        &file,
        &out,
        &["--aws-endpoint", &moto.endpoint, "--region", REGION],
    );
    let error = error_text(&output);
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert!(error.contains("Id") && error.contains("number"), "{error}");
    assert!(server.seen().len() >= 2, "the load was sent");
    assert!(out.exists(), "the traffic's numbers are still written");
}

/// A process killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// moto with IAM enforced after three unauthenticated calls, and the keys of
/// a user allowed only CloudWatch Logs, made with those three calls.
fn moto_with_iam_reader() -> (Killed, String, String, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(crate::support::sandbox::moto_server())
        .args(["-H", "127.0.0.1", "-p", "0"])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start moto");
    let stderr = child.stderr.take().unwrap();
    let child = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("Running on http://127.0.0.1:").nth(1) {
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(port);
                }
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("moto started");
    let endpoint = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (key, secret) = rt.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_credential_types::Credentials::new(
                "AKIDSETUP", "setup", None, None, "tests",
            ))
            .load()
            .await;
        let iam = aws_sdk_iam::Client::new(&config);
        iam.create_user().user_name("reader").send().await.unwrap();
        iam.put_user_policy()
            .user_name("reader")
            .policy_name("logs-only")
            .policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"logs:*","Resource":"*"}]}"#,
            )
            .send()
            .await
            .unwrap();
        let key = iam
            .create_access_key()
            .user_name("reader")
            .send()
            .await
            .unwrap()
            .access_key
            .unwrap();
        (key.access_key_id, key.secret_access_key)
    });
    (child, endpoint, key, secret)
}

#[test]
fn access_denied_names_the_refused_action() {
    let (moto, endpoint, key, secret) = moto_with_iam_reader();
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(dir.path(), "s.toml", &writing_scenario(&server.url()));
    let out = dir.path().join("summary.json");
    let output = run(
        isolated()
            .env("AWS_ACCESS_KEY_ID", &key)
            .env("AWS_SECRET_ACCESS_KEY", &secret),
        &file,
        &out,
        &["--aws-endpoint", &endpoint, "--region", REGION],
    );
    drop(moto);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let error = error_text(&output);
    println!("{} characters: {error}", error.chars().count());
    assert!(error.chars().count() < MAX_ERROR_CHARS, "{error}");
    for piece in [
        "DescribeTable on table test-User",
        "AccessDenied",
        "may not call dynamodb:DescribeTable",
        "--no-verify",
    ] {
        assert!(error.contains(piece), "{piece:?} not in: {error}");
    }
    assert!(!error.contains("<?xml"), "{error}");
}
