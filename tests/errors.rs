//! Errors a person can read, through the real binary: AWS failures are one or
//! two sentences naming the operation, the resource, the Region and the
//! endpoint (never the SDK's `Debug` dump); missing credentials name the
//! chain and `--no-verify`; a run that fails leaves no file where its summary
//! would go; a key the table cannot take, found after the load, is a failed
//! verification (exit 1), not bad usage.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::sandbox::{ACCESS_KEY_ID, Aws, Moto, REGION, SECRET_ACCESS_KEY};
use support::*;

/// Longest an AWS error may be: two sentences, not a dump.
const MAX_ERROR_CHARS: usize = 450;

/// The binary with only the AWS configuration a test gives it.
fn isolated() -> Command {
    let mut cmd = stagecheck();
    for (var, _) in std::env::vars() {
        if var.starts_with("AWS_") || var.starts_with("STAGECHECK_") {
            cmd.env_remove(var);
        }
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/stagecheck-test/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/stagecheck-test/credentials",
        );
    cmd
}

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
