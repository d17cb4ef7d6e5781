//! What the Lambda, policy and execution-log tests share beyond the harness:
//! control-plane changes made through the SDK as a user's pipeline makes them,
//! the sandbox's reload, and reading API Gateway's and Lambda's log lines back.
#![allow(dead_code)]

use std::collections::HashMap;

use aws_sdk_apigateway::types::{Op, PatchOperation};

use crate::support::sandbox::{Aws, Sandbox, http};

/// Makes the sandbox read the control plane again now, instead of within its TTL.
pub async fn reload(sandbox: &Sandbox) {
    let r = http()
        .post(sandbox.url("/_sandbox/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
}

pub async fn api_id(aws: &Aws) -> String {
    aws.apigateway
        .get_rest_apis()
        .send()
        .await
        .expect("GetRestApis")
        .items()
        .iter()
        .find(|a| a.name() == Some("users"))
        .and_then(|a| a.id())
        .expect("the users API")
        .to_string()
}

/// The account the seed lives in, read from a function's ARN.
pub async fn account(aws: &Aws) -> String {
    let config = aws
        .lambda
        .get_function_configuration()
        .function_name("user-service")
        .send()
        .await
        .expect("GetFunctionConfiguration");
    config
        .function_arn()
        .and_then(|a| a.split(':').nth(4))
        .expect("function ARN")
        .to_string()
}

/// UpdateStage with `replace` operations, as the console or a pipeline sends them.
pub async fn replace_on_stage(aws: &Aws, api: &str, stage: &str, ops: &[(&str, &str)]) {
    let mut call = aws
        .apigateway
        .update_stage()
        .rest_api_id(api)
        .stage_name(stage);
    for (path, value) in ops {
        call = call.patch_operations(
            PatchOperation::builder()
                .op(Op::Replace)
                .path(*path)
                .value(*value)
                .build(),
        );
    }
    call.send().await.expect("UpdateStage");
}

/// Execution logging at `level` (OFF | ERROR | INFO) on every method of a stage.
pub async fn set_log_level(aws: &Aws, api: &str, stage: &str, level: &str, data_trace: bool) {
    replace_on_stage(
        aws,
        api,
        stage,
        &[
            ("/*/*/logging/loglevel", level),
            (
                "/*/*/logging/dataTrace",
                if data_trace { "true" } else { "false" },
            ),
        ],
    )
    .await;
}

pub use crate::support::sandbox::eventually;

/// Execution-log lines grouped by the `({request id}) ` prefix each carries,
/// in the order they were written.
pub fn by_request(messages: &[String]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for m in messages {
        let Some(rest) = m.strip_prefix('(') else {
            panic!("an execution-log line without its request id: {m:?}");
        };
        let (id, line) = rest.split_once(") ").expect("`(id) ` prefix");
        out.entry(id.to_string())
            .or_default()
            .push(line.to_string());
    }
    out
}

/// The messages of a log group, in timestamp order (FilterLogEvents interleaves
/// streams by time).
pub async fn messages(aws: &Aws, group: &str) -> Vec<String> {
    aws.log_messages(group).await
}

/// The REPORT line of one Lambda request id, in Text format.
pub fn report_of<'a>(messages: &'a [String], lambda_request_id: &str) -> Option<&'a String> {
    let prefix = format!("REPORT RequestId: {lambda_request_id}\t");
    messages.iter().find(|m| m.starts_with(&prefix))
}

/// The names of a group's streams.
pub async fn streams(aws: &Aws, group: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = aws
            .logs
            .describe_log_streams()
            .log_group_name(group)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("DescribeLogStreams");
        out.extend(
            page.log_streams()
                .iter()
                .filter_map(|s| s.log_stream_name().map(str::to_string)),
        );
        match page.next_token() {
            Some(t) if Some(t) != token.as_deref() => token = Some(t.to_string()),
            _ => return out,
        }
    }
}
