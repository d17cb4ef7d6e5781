//! Each fault does what it claims, checked on the other side (moto's tables and
//! log groups) or on the clock.

use std::time::{Duration, Instant};

use crate::support::sandbox::{Aws, Moto, Sandbox, eventually, http, marker, send};

async fn post(
    sandbox: &Sandbox,
    stage: &str,
    correlation: &str,
) -> crate::support::sandbox::Answer {
    send(
        &http(),
        "POST",
        &sandbox.url(&format!("/{stage}/user")),
        Some(r#"{"name":"fault"}"#),
        &[("X-Correlation-Id", correlation)],
    )
    .await
}

#[tokio::test]
async fn shared_table_sends_tests_writes_into_prods_table() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    let sandbox = Sandbox::start(&moto, &["shared-table"], &[]);
    // The fault widens test's role to `table/*User` too: with the role scoped
    // to test-User, the dropped prefix would be 502s (AccessDenied), not a leak.
    let correlation = marker("corr");
    let a = post(&sandbox, "test", &correlation).await;
    assert_eq!(a.status, 201);
    let id = a.body["Id"].as_str().expect("Id");
    assert!(aws.has_item("User", id).await);
    assert!(!aws.has_item("test-User", id).await);
    // Still test's own function: its logs stay in its group.
    assert!(
        aws.wait_for_log(
            "/aws/lambda/test-user-service",
            &correlation,
            Duration::from_secs(10)
        )
        .await
    );
}

#[tokio::test]
async fn shared_function_sends_test_through_prods_function() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    let sandbox = Sandbox::start(&moto, &["shared-function"], &[]);
    let correlation = marker("corr");
    let a = post(&sandbox, "test", &correlation).await;
    assert_eq!(a.status, 201);
    let id = a.body["Id"].as_str().expect("Id");
    assert!(aws.has_item("User", id).await);
    assert!(!aws.has_item("test-User", id).await);
    assert!(
        aws.wait_for_log(
            "/aws/lambda/user-service",
            &correlation,
            Duration::from_secs(10)
        )
        .await
    );
    let test_logs = aws.log_messages("/aws/lambda/test-user-service").await;
    assert!(!test_logs.iter().any(|m| m.contains(&correlation)));
}

#[tokio::test]
async fn drop_writes_answers_success_but_stores_nothing() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    let sandbox = Sandbox::start(&moto, &["drop-writes=1.0"], &[]);
    for stage in ["prod", "test"] {
        let a = post(&sandbox, stage, &marker("corr")).await;
        assert!((200..300).contains(&a.status));
        let id = a.body["Id"].as_str().expect("Id");
        assert!(!aws.has_item("User", id).await);
        assert!(!aws.has_item("test-User", id).await);
    }
}

#[tokio::test]
async fn error_rate_one_fails_every_request() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    let sandbox = Sandbox::start(&moto, &["error-rate=1"], &[]);
    for _ in 0..10 {
        let a = post(&sandbox, "test", &marker("corr")).await;
        assert!((500..600).contains(&a.status), "{}", a.status);
        assert_eq!(a.message(), "Internal server error");
    }
    let scan = aws
        .dynamodb
        .scan()
        .table_name("test-User")
        .send()
        .await
        .expect("Scan");
    assert_eq!(scan.count(), 0);
}

#[tokio::test]
async fn latency_slows_every_answer() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["latency=400±50"], &[]);
    for _ in 0..3 {
        let a = send(&http(), "GET", &sandbox.url("/prod/user/none"), None, &[]).await;
        assert_eq!(a.status, 404);
        assert!(a.elapsed >= Duration::from_millis(350), "{:?}", a.elapsed);
    }
}

#[tokio::test]
async fn stall_holds_answers_inside_its_window() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["stall=1s:1.5s"], &[]);
    let client = http();
    let url = sandbox.url("/prod/user/none");
    let first_sent = Instant::now();
    let first = send(&client, "GET", &url, None, &[]).await;
    assert!(
        first.elapsed < Duration::from_millis(900),
        "{:?}",
        first.elapsed
    );

    tokio::time::sleep_until((first_sent + Duration::from_millis(1300)).into()).await;
    let held = send(&client, "GET", &url, None, &[]).await;
    assert_eq!(held.status, 404);
    // The window ends 2.5 s after the first request: sent at ~1.3 s, held ~1.2 s.
    assert!(
        held.elapsed >= Duration::from_millis(1000),
        "{:?}",
        held.elapsed
    );
    assert!(first_sent.elapsed() >= Duration::from_millis(2400));

    // Only once: after the window, answers flow again.
    let after = send(&client, "GET", &url, None, &[]).await;
    assert!(
        after.elapsed < Duration::from_millis(900),
        "{:?}",
        after.elapsed
    );
}

#[tokio::test]
async fn log_delay_ships_logs_later() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    let sandbox = Sandbox::start(&moto, &["log-delay=3000"], &[]);
    let correlation = marker("corr");
    let sent = Instant::now();
    assert_eq!(post(&sandbox, "prod", &correlation).await.status, 201);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let early = aws.log_messages("/aws/lambda/user-service").await;
    assert!(
        !early.iter().any(|m| m.contains(&correlation)),
        "shipped too early"
    );
    assert!(
        aws.wait_for_log(
            "/aws/lambda/user-service",
            &correlation,
            Duration::from_secs(10)
        )
        .await
    );
    assert!(sent.elapsed() >= Duration::from_millis(2900));
}

/// `empty-log-pages`: through the AWS endpoint, FilterLogEvents gives an
/// empty page with a `nextToken` before each of moto's pages; a reader that
/// stops at the first empty page sees nothing, one that follows the token
/// sees every event moto holds.
#[tokio::test]
async fn empty_log_pages_come_before_every_page() {
    let moto = Moto::start();
    let direct = Aws::new(&moto).await;
    let sandbox = Sandbox::start(&moto, &["empty-log-pages"], &[]);
    let aws = Aws::of(&sandbox).await;
    let correlation = marker("pages");
    assert_eq!(post(&sandbox, "prod", &correlation).await.status, 201);
    let group = "/aws/lambda/user-service";
    assert!(
        direct
            .wait_for_log(group, &correlation, Duration::from_secs(10))
            .await
    );
    let first = aws
        .logs
        .filter_log_events()
        .log_group_name(group)
        .send()
        .await
        .expect("FilterLogEvents");
    assert!(first.events().is_empty());
    let token = first.next_token().expect("a token on the empty page");
    let second = aws
        .logs
        .filter_log_events()
        .log_group_name(group)
        .next_token(token)
        .send()
        .await
        .expect("FilterLogEvents with the token");
    assert!(!second.events().is_empty());
    // Followed to the end, the pages hold exactly what moto holds (read
    // until the sandbox has shipped the invocation's last lines).
    eventually(Duration::from_secs(10), async || {
        let through_pages = aws.log_messages(group).await;
        (through_pages.len() >= 3 && through_pages == direct.log_messages(group).await)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn throttle_answers_429_beyond_the_rate() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &["throttle=5"], &["--no-backend"]);
    let client = http();
    let url = sandbox.url("/prod/user/x");
    let answers = futures_join(
        (0..30)
            .map(|_| {
                let client = client.clone();
                let url = url.clone();
                tokio::spawn(async move { send(&client, "GET", &url, None, &[]).await })
            })
            .collect(),
    )
    .await;
    let throttled: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    let ok = answers.iter().filter(|a| a.status == 200).count();
    assert!(
        !throttled.is_empty() && ok >= 5,
        "ok {ok}, throttled {}",
        throttled.len()
    );
    for a in throttled {
        assert_eq!(a.message(), "Too Many Requests");
        assert_eq!(
            a.header("x-amzn-ErrorType"),
            Some("TooManyRequestsException")
        );
    }
}

async fn futures_join(
    handles: Vec<tokio::task::JoinHandle<crate::support::sandbox::Answer>>,
) -> Vec<crate::support::sandbox::Answer> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("request task"));
    }
    out
}
