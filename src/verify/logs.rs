//! Finding a run's invocations in CloudWatch Logs. FilterLogEvents is read
//! page by page while `nextToken` is present (a page may be empty), and every
//! match is decided here: filter syntaxes differ between AWS and emulators
//! (moto returns every event for most patterns), so the server's filter only
//! cuts volume and is never trusted alone.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::aws::Service;
use crate::error::{AwsError, Error};

pub type Client = Service<aws_sdk_cloudwatchlogs::Client>;

/// FilterLogEvents allows about 5 requests/s per account and Region.
const MIN_INTERVAL: Duration = Duration::from_millis(220);
const MAX_PAGES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(
        "log group {group} does not exist ({region}, {endpoint}). Check the function's name and \
         the Region (a function that never ran has no log group yet), or pass --no-verify to \
         skip verification."
    )]
    Missing {
        group: String,
        region: String,
        endpoint: String,
    },
}

impl From<LogsError> for Error {
    fn from(e: LogsError) -> Error {
        match e {
            LogsError::Aws(e) => Error::AwsCall(e),
            missing @ LogsError::Missing { .. } => Error::AwsCall(AwsError {
                failure: crate::error::AwsFailure::Service {
                    code: "ResourceNotFoundException".into(),
                },
                message: missing.to_string(),
            }),
        }
    }
}

/// Spaces calls so the whole run stays under the account's rate limit.
pub struct Pacer {
    next: tokio::sync::Mutex<Instant>,
    pub calls: AtomicU64,
}

impl Pacer {
    pub fn new() -> Pacer {
        Pacer {
            next: tokio::sync::Mutex::new(Instant::now()),
            calls: AtomicU64::new(0),
        }
    }

    async fn wait(&self) {
        let mut next = self.next.lock().await;
        let now = Instant::now();
        if *next > now {
            tokio::time::sleep_until((*next).into()).await;
        }
        *next = Instant::now().max(*next) + MIN_INTERVAL;
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

impl Default for Pacer {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

pub async fn group_exists(client: &Client, group: &str) -> Result<(), LogsError> {
    let out = client
        .describe_log_groups()
        .log_group_name_prefix(group)
        .send()
        .await
        .map_err(|e| client.error("DescribeLogGroups", &format!("log group {group}"), &e))?;
    if out
        .log_groups()
        .iter()
        .any(|g| g.log_group_name() == Some(group))
    {
        Ok(())
    } else {
        Err(LogsError::Missing {
            group: group.to_string(),
            region: client.region.clone(),
            endpoint: client.endpoint.clone(),
        })
    }
}

/// The names of the log groups starting with `prefix`, up to `max` of them.
pub async fn groups_with_prefix(
    client: &Client,
    prefix: &str,
    max: usize,
) -> Result<Vec<String>, LogsError> {
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = client
            .describe_log_groups()
            .log_group_name_prefix(prefix)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| client.error("DescribeLogGroups", &format!("log groups {prefix}*"), &e))?;
        names.extend(
            out.log_groups()
                .iter()
                .filter_map(|g| g.log_group_name().map(str::to_string)),
        );
        match out.next_token() {
            Some(next) if !next.is_empty() && names.len() < max => token = Some(next.to_string()),
            _ => break,
        }
    }
    names.truncate(max);
    Ok(names)
}

/// Shows `visit` every event's message in the window, following all pages.
/// A page at a time: a long run's log lines are never all held at once.
pub async fn scan(
    client: &Client,
    pacer: &Pacer,
    group: &str,
    window: &Window,
    pattern: Option<&str>,
    mut visit: impl FnMut(&str),
) -> Result<(), LogsError> {
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        pacer.wait().await;
        let page = client
            .filter_log_events()
            .log_group_name(group)
            .start_time(window.start_ms)
            .end_time(window.end_ms)
            .set_filter_pattern(pattern.map(str::to_string))
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| client.error("FilterLogEvents", &format!("log group {group}"), &e))?;
        page.events()
            .iter()
            .filter_map(|e| e.message())
            .for_each(&mut visit);
        match page.next_token() {
            // Only a missing token ends the listing; an empty page does not.
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => break,
        }
    }
    Ok(())
}

/// The markers that occur in a message, as whole tokens (ids are made of
/// letters, digits and hyphens, so `"x":"sc1-2-0"` yields `sc1-2-0`).
pub fn markers_in<'a>(message: &'a str, markers: &HashSet<String>) -> Vec<&'a str> {
    message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|token| token.len() >= 8 && markers.contains(*token))
        .collect()
}

/// A Lambda invocation's first line, in text or JSON log format.
pub fn is_invocation_start(message: &str) -> bool {
    message.starts_with("START RequestId:") || message.contains("\"type\":\"platform.start\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_markers_in_every_log_format() {
        let markers: HashSet<String> = [
            "sc1a2b3c-17-0".to_string(),
            "5f0c3f3e-1b7e-4c3e-9a57-2b0f2a4f0e11".to_string(),
        ]
        .into();
        let json = r#"{"level":"INFO","x_correlation_id":"sc1a2b3c-17-0","message":"created"}"#;
        assert_eq!(markers_in(json, &markers), vec!["sc1a2b3c-17-0"]);
        let node =
            "2026-11-25T10:00:00.000Z\t5f0c3f3e-1b7e-4c3e-9a57-2b0f2a4f0e11\tINFO\tcreated user";
        assert_eq!(markers_in(node, &markers).len(), 1);
        // A longer id that merely starts with a marker is another id.
        assert!(markers_in("sc1a2b3c-17-01", &markers).is_empty());
        assert!(is_invocation_start("START RequestId: 8f5 Version: $LATEST"));
        assert!(is_invocation_start(
            r#"{"time":"…","type":"platform.start","record":{"requestId":"8f5"}}"#
        ));
        assert!(!is_invocation_start("END RequestId: 8f5"));
    }
}
