//! Lambda as Lambda behaves: execution environments serve one request at a
//! time (a burst starts one per request, each a cold start with its own log
//! stream; a trickle reuses one), and the function's log lines follow its log
//! format and what its code logs (`--function-log`), read back from moto.

use std::time::{Duration, Instant};

use crate::control::{eventually, report_of, streams};
use crate::support::sandbox::{Aws, Moto, Sandbox, http, marker, send};
use serde_json::Value;

const PROD_GROUP: &str = "/aws/lambda/user-service";
const TEST_GROUP: &str = "/aws/lambda/test-user-service";

/// The Lambda request id of the invocation that logged `marker`, from its
/// application line (`ISO\tRequestId\tlevel\tmessage` in Text format).
fn lambda_id_of(messages: &[String], marker: &str) -> Option<String> {
    let line = messages.iter().find(|m| m.contains(marker))?;
    let mut parts = line.splitn(4, '\t');
    let _time = parts.next()?;
    Some(parts.next()?.to_string())
}

#[tokio::test]
async fn a_burst_after_idle_starts_environments_and_a_trickle_reuses_one() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(
        &moto,
        &[],
        &["--cold-start", "800ms", "--idle-timeout", "1s"],
    );
    // Changes go where a user's pipeline sends them: the AWS endpoint.
    let aws = Aws::of(&sandbox).await;
    let client = http();
    let url = sandbox.url("/prod/user/nobody");

    // A steady trickle: one environment, one cold start.
    let mut trickle = Vec::new();
    for i in 0..4 {
        let corr = marker("trickle");
        let t0 = Instant::now();
        let a = send(&client, "GET", &url, None, &[("X-Correlation-Id", &corr)]).await;
        assert_eq!(a.status, 404);
        if i > 0 {
            assert!(
                t0.elapsed() < Duration::from_millis(800),
                "warm request took {:?}",
                t0.elapsed()
            );
        }
        trickle.push(corr);
    }
    let messages = eventually(Duration::from_secs(10), async || {
        let m = aws.log_messages(PROD_GROUP).await;
        trickle
            .iter()
            .all(|c| m.iter().any(|l| l.contains(c)))
            .then_some(m)
    })
    .await;
    let inits: Vec<bool> = trickle
        .iter()
        .map(|c| {
            let id = lambda_id_of(&messages, c).expect("application line");
            report_of(&messages, &id)
                .expect("REPORT line")
                .contains("\tInit Duration: ")
        })
        .collect();
    assert_eq!(inits, [true, false, false, false]);
    assert_eq!(streams(&aws, PROD_GROUP).await.len(), 1);

    // Past the idle timeout, the environment is gone: a burst of N concurrent
    // requests finds none free and starts N, each with its own stream.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    const N: usize = 4;
    let burst: Vec<String> = (0..N).map(|_| marker("burst")).collect();
    let answers = futures_join(burst.iter().map(|corr| {
        let client = client.clone();
        let url = url.clone();
        let corr = corr.clone();
        async move { send(&client, "GET", &url, None, &[("X-Correlation-Id", &corr)]).await }
    }))
    .await;
    for a in &answers {
        assert_eq!(a.status, 404);
        assert!(
            a.elapsed >= Duration::from_millis(800),
            "a cold start took {:?}",
            a.elapsed
        );
    }
    let messages = eventually(Duration::from_secs(10), async || {
        let m = aws.log_messages(PROD_GROUP).await;
        burst
            .iter()
            .all(|c| m.iter().any(|l| l.contains(c)))
            .then_some(m)
    })
    .await;
    for corr in &burst {
        let id = lambda_id_of(&messages, corr).expect("application line");
        let report = report_of(&messages, &id).expect("REPORT line");
        assert!(report.contains("\tInit Duration: "), "{report}");
    }
    let names = streams(&aws, PROD_GROUP).await;
    assert_eq!(names.len(), 1 + N, "{names:?}");
    for name in &names {
        let hex = name
            .split_once("[$LATEST]")
            .map(|(_, h)| h)
            .unwrap_or_default();
        assert!(
            hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}"
        );
    }
}

async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("request task"));
    }
    out
}

#[tokio::test]
async fn text_format_with_the_stagecheck_and_powertools_lines() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &["--function-log", "test=powertools"]);
    // Changes go where a user's pipeline sends them: the AWS endpoint.
    let aws = Aws::of(&sandbox).await;
    let client = http();
    let mut seen = Vec::new();
    for stage in ["prod", "test"] {
        let corr = marker("fmt");
        let a = send(
            &client,
            "POST",
            &sandbox.url(&format!("/{stage}/user")),
            Some(r#"{"name":"fmt"}"#),
            &[("X-Correlation-Id", &corr)],
        )
        .await;
        assert_eq!(a.status, 201);
        let api_request_id = a
            .header("x-amzn-RequestId")
            .expect("request id")
            .to_string();
        seen.push((stage, corr, api_request_id));
    }

    for (stage, corr, api_request_id) in &seen {
        let group = if *stage == "prod" {
            PROD_GROUP
        } else {
            TEST_GROUP
        };
        let messages = eventually(Duration::from_secs(10), async || {
            let m = aws.log_messages(group).await;
            m.iter()
                .any(|l| l.contains(api_request_id.as_str()))
                .then_some(m)
        })
        .await;
        let app = messages
            .iter()
            .find(|l| l.contains(api_request_id.as_str()))
            .expect("application line");
        // The .NET runtime's Text prefix: time, Lambda's request id, level.
        let parts: Vec<&str> = app.splitn(4, '\t').collect();
        assert_eq!(parts.len(), 4, "{app}");
        assert!(parts[0].ends_with('Z') && parts[0].contains('T'), "{app}");
        let lambda_id = parts[1];
        assert_ne!(lambda_id, api_request_id);
        assert_eq!(parts[2], "info");
        let message: Value = serde_json::from_str(parts[3]).expect("JSON message");
        assert_eq!(message["correlation_id"], api_request_id.as_str());
        assert!(messages.contains(&format!("START RequestId: {lambda_id} Version: $LATEST")));
        assert!(messages.contains(&format!("END RequestId: {lambda_id}")));
        assert!(report_of(&messages, lambda_id).is_some());
        if *stage == "prod" {
            assert_eq!(message["x_correlation_id"], corr.as_str());
            assert_eq!(message["requestId"], lambda_id);
        } else {
            // Powertools logs API Gateway's id and Lambda's, never the client's.
            assert_eq!(message["function_request_id"], lambda_id);
            assert_eq!(message["service"], "user-service");
            assert!(message.get("x_correlation_id").is_none());
            assert!(
                !messages.iter().any(|l| l.contains(corr.as_str())),
                "{corr} logged"
            );
        }
    }
}

/// `LoggingConfig.LogFormat = JSON`, set with UpdateFunctionConfiguration on the
/// sandbox's AWS endpoint (moto itself drops it): Lambda's platform records and
/// a JSON application record carrying only Lambda's request id of its own.
#[tokio::test]
async fn json_format_writes_platform_records() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(
        &moto,
        &[],
        &["--function-log", "test=powertools", "--idle-timeout", "1s"],
    );
    let aws = Aws::of(&sandbox).await;
    let client = http();
    // Warm environments in Text format first: a new configuration must not reuse them.
    for stage in ["prod", "test"] {
        let url = sandbox.url(&format!("/{stage}/user/nobody"));
        assert_eq!(send(&client, "GET", &url, None, &[]).await.status, 404);
    }
    for function in ["user-service", "test-user-service"] {
        aws.lambda
            .update_function_configuration()
            .function_name(function)
            .logging_config(
                aws_sdk_lambda::types::LoggingConfig::builder()
                    .log_format(aws_sdk_lambda::types::LogFormat::Json)
                    .build(),
            )
            .send()
            .await
            .expect("UpdateFunctionConfiguration");
    }
    crate::control::reload(&sandbox).await;
    for (stage, group) in [("prod", PROD_GROUP), ("test", TEST_GROUP)] {
        let corr = marker("json");
        let a = send(
            &client,
            "GET",
            &sandbox.url(&format!("/{stage}/user/nobody")),
            None,
            &[("X-Correlation-Id", &corr)],
        )
        .await;
        assert_eq!(a.status, 404);
        let api_request_id = a
            .header("x-amzn-RequestId")
            .expect("request id")
            .to_string();
        let records: Vec<Value> = eventually(Duration::from_secs(10), async || {
            let m = aws.log_messages(group).await;
            // The Text lines of the first request come before the JSON records.
            m.iter().any(|l| l.contains("platform.report")).then(|| {
                m.iter()
                    .filter(|l| l.starts_with('{'))
                    .map(|l| serde_json::from_str(l).expect("JSON record"))
                    .collect()
            })
        })
        .await;
        let types: Vec<&str> = records.iter().filter_map(|r| r["type"].as_str()).collect();
        assert_eq!(
            types,
            ["platform.initStart", "platform.start", "platform.report"],
            "{records:#?}"
        );
        let start = &records[1];
        let lambda_id = start["record"]["requestId"].as_str().expect("requestId");
        assert_eq!(
            start["record"]["functionArn"],
            format!(
                "arn:aws:lambda:us-east-1:123456789012:function:{}",
                &group[12..]
            )
        );
        let app = records
            .iter()
            .find(|r| r.get("type").is_none())
            .expect("application record");
        assert_eq!(app["requestId"], lambda_id);
        assert_eq!(app["level"], "INFO");
        assert!(app["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(app["correlation_id"], api_request_id.as_str());
        let report = records.last().expect("report");
        assert_eq!(report["record"]["requestId"], lambda_id);
        assert_eq!(report["record"]["status"], "success");
        assert!(
            report["record"]["metrics"]["initDurationMs"]
                .as_f64()
                .is_some_and(|d| d >= 150.0)
        );
        assert!(report["record"]["metrics"]["durationMs"].as_f64().is_some());
        // Neither format logs the client's header; only the stagecheck line does.
        let client_header_logged = records.iter().any(|r| r.to_string().contains(&corr));
        assert_eq!(client_header_logged, stage == "prod", "{records:#?}");
    }
}
