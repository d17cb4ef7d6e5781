//! Lambda-style logs: the lines one invocation writes in the function's log
//! format (`Text`: `START`, the runtime-prefixed application line, `END`,
//! `REPORT`; `JSON`: `platform.start`, the application record, `platform.report`),
//! and the shipper that sends every log the sandbox writes (the functions',
//! API Gateway's execution and access logs) to CloudWatch Logs in batches from a
//! background task, one stream per execution environment, as Lambda's agent
//! does. The request path only does a non-blocking `try_send`; when the buffer
//! is full the logs are dropped and counted.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use tokio::sync::{mpsc, oneshot};

/// PutLogEvents limits: 10 000 events and 1 048 576 bytes per call, counting
/// 26 bytes of overhead per event.
const MAX_EVENTS_PER_CALL: usize = 10_000;
const MAX_BYTES_PER_CALL: usize = 1_048_576;
const EVENT_OVERHEAD_BYTES: usize = 26;
/// A single call may not span more than 24 hours.
const MAX_SPAN_MS: i64 = 24 * 3600 * 1000;

/// The log events of one invocation (or one API Gateway request), for one log
/// group and stream.
#[derive(Debug)]
pub struct InvocationLog {
    pub log_group: Arc<str>,
    /// The execution environment's stream; `None`: one stream per group, named
    /// as API Gateway names its streams (32 hex digits).
    pub stream: Option<Arc<str>>,
    /// `(timestamp in epoch ms, message)`.
    pub events: Vec<(i64, String)>,
}

/// What the request path holds: cheap to clone, never blocks.
#[derive(Clone)]
pub struct LogSink {
    tx: Option<mpsc::Sender<InvocationLog>>,
    dropped: Arc<AtomicU64>,
}

impl LogSink {
    pub fn disabled() -> LogSink {
        LogSink {
            tx: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn send(&self, log: InvocationLog) {
        if let Some(tx) = &self.tx
            && tx.try_send(log).is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `LoggingConfig.LogFormat`: the shape of Lambda's own lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum LogFormat {
    #[default]
    Text,
    #[serde(rename = "JSON")]
    Json,
}

impl LogFormat {
    /// As `GetFunctionConfiguration` spells it (`Text` | `JSON`); anything else
    /// is Lambda's default, `Text`.
    pub fn parse(text: &str) -> LogFormat {
        if text.eq_ignore_ascii_case("json") {
            LogFormat::Json
        } else {
            LogFormat::Text
        }
    }
}

/// What a function's own log line carries, per stage (`--function-log`): a
/// choice AWS has no setting for, since it is the function's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FunctionLog {
    /// The client's `X-Correlation-Id` header (when sent) and API Gateway's
    /// request id, in one JSON message.
    #[default]
    Stagecheck,
    /// What AWS Lambda Powertools' Logger writes with
    /// `correlation_id_path=API_GATEWAY_REST`: `correlation_id` is
    /// `requestContext.requestId` (the `x-amzn-RequestId` the client got), and no
    /// client header at all, as most real functions log.
    Powertools,
    /// A function that logs only its message: its lines carry no id but
    /// Lambda's own request id (which Lambda's JSON format adds to every
    /// record), nothing the client ever saw.
    Plain,
}

impl FunctionLog {
    pub fn parse(text: &str) -> Option<FunctionLog> {
        match text {
            // `full` was this shape's first name.
            "stagecheck" | "full" => Some(FunctionLog::Stagecheck),
            "powertools" => Some(FunctionLog::Powertools),
            "plain" => Some(FunctionLog::Plain),
            _ => None,
        }
    }
}

/// One invocation's facts, turned into Lambda's lines in the function's format.
pub struct Invocation<'a> {
    pub lambda_request_id: &'a str,
    pub function_arn: &'a str,
    pub format: LogFormat,
    pub started: SystemTime,
    pub duration: Duration,
    /// Set on an execution environment's first invocation (a cold start).
    pub init_duration: Option<Duration>,
    /// The function failed (an unhandled exception).
    pub errored: bool,
    /// What the function's code logs: a JSON object (`--function-log`'s shape).
    pub app_message: serde_json::Value,
}

impl Invocation<'_> {
    pub fn lines(&self) -> Vec<(i64, String)> {
        match self.format {
            LogFormat::Text => self.text_lines(),
            LogFormat::Json => self.json_lines(),
        }
    }

    fn text_lines(&self) -> Vec<(i64, String)> {
        let id = self.lambda_request_id;
        let start_ms = epoch_ms(self.started);
        let end_ms = epoch_ms(self.started + self.duration);
        let duration_ms = self.duration.as_secs_f64() * 1000.0;
        let billed_ms = (duration_ms.ceil() as u64).max(1);
        let mut report = format!(
            "REPORT RequestId: {id}\tDuration: {duration_ms:.2} ms\tBilled Duration: {billed_ms} ms\tMemory Size: 128 MB\tMax Memory Used: {} MB",
            68 + fastrand::u32(0..6)
        );
        if let Some(init) = self.init_duration {
            report.push_str(&format!(
                "\tInit Duration: {:.2} ms",
                init.as_secs_f64() * 1000.0
            ));
        }
        // The .NET runtime's prefix (the seed's functions are .NET):
        // timestamp, request id, level (`info`, `fail`), message.
        let level = if self.errored { "fail" } else { "info" };
        vec![
            (start_ms, format!("START RequestId: {id} Version: $LATEST")),
            (
                start_ms,
                format!(
                    "{}\t{id}\t{level}\t{}",
                    iso_ms(self.started),
                    self.app_message
                ),
            ),
            (end_ms, format!("END RequestId: {id}")),
            (end_ms, report),
        ]
    }

    fn json_lines(&self) -> Vec<(i64, String)> {
        let id = self.lambda_request_id;
        let start_ms = epoch_ms(self.started);
        let end = self.started + self.duration;
        let end_ms = epoch_ms(end);
        let duration_ms = (self.duration.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
        let billed_ms = (duration_ms.ceil() as u64).max(1);
        let mut out = Vec::with_capacity(4);
        if let Some(init) = self.init_duration {
            let init_start = self.started.checked_sub(init).unwrap_or(self.started);
            out.push((
                epoch_ms(init_start),
                serde_json::json!({
                    "time": iso_ms(init_start),
                    "type": "platform.initStart",
                    "record": {
                        "initializationType": "on-demand",
                        "phase": "init",
                        "functionName": self.function_arn.rsplit(':').next().unwrap_or_default(),
                        "functionVersion": "$LATEST",
                    }
                })
                .to_string(),
            ));
        }
        out.push((
            start_ms,
            serde_json::json!({
                "time": iso_ms(self.started),
                "type": "platform.start",
                "record": { "requestId": id, "functionArn": self.function_arn, "version": "$LATEST" }
            })
            .to_string(),
        ));
        // Lambda's own keys first; the function's message keys after them, as
        // the runtime's structured logging adds them.
        let mut app = serde_json::Map::new();
        app.insert("timestamp".into(), iso_ms(self.started).into());
        app.insert(
            "level".into(),
            if self.errored { "ERROR" } else { "INFO" }.into(),
        );
        app.insert("requestId".into(), id.into());
        if let serde_json::Value::Object(fields) = &self.app_message {
            for (k, v) in fields {
                if !matches!(k.as_str(), "timestamp" | "level" | "requestId") {
                    app.insert(k.clone(), v.clone());
                }
            }
        }
        out.push((start_ms, serde_json::Value::Object(app).to_string()));
        let mut metrics = serde_json::json!({
            "durationMs": duration_ms,
            "billedDurationMs": billed_ms,
            "memorySizeMB": 128,
            "maxMemoryUsedMB": 68 + fastrand::u32(0..6),
        });
        if let (Some(init), Some(map)) = (self.init_duration, metrics.as_object_mut()) {
            let init_ms = (init.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
            map.insert("initDurationMs".into(), init_ms.into());
        }
        out.push((
            end_ms,
            serde_json::json!({
                "time": iso_ms(end),
                "type": "platform.report",
                "record": {
                    "requestId": id,
                    "metrics": metrics,
                    "status": if self.errored { "error" } else { "success" },
                }
            })
            .to_string(),
        ));
        out
    }
}

/// `2026-12-02T01:02:03.456Z`, as Lambda's lines write time.
pub fn iso_ms(t: SystemTime) -> String {
    let d = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute(),
        d.second(),
        d.millisecond()
    )
}

pub fn channel(
    client: aws_sdk_cloudwatchlogs::Client,
    capacity: usize,
    interval: Duration,
    delay: Duration,
) -> (LogSink, Shipper) {
    let (tx, rx) = mpsc::channel(capacity);
    let dropped = Arc::new(AtomicU64::new(0));
    (
        LogSink {
            tx: Some(tx),
            dropped: dropped.clone(),
        },
        Shipper {
            rx,
            client,
            interval,
            delay,
            capacity,
            dropped,
            streams: HashMap::new(),
            group_streams: HashMap::new(),
            pending: VecDeque::new(),
            lost_events: 0,
            last_loss_report: None,
        },
    )
}

pub struct Shipper {
    rx: mpsc::Receiver<InvocationLog>,
    client: aws_sdk_cloudwatchlogs::Client,
    interval: Duration,
    delay: Duration,
    capacity: usize,
    dropped: Arc<AtomicU64>,
    /// Streams already created, per (group, stream).
    streams: HashMap<(Arc<str>, Arc<str>), ()>,
    /// For logs without an environment: the one stream of their group.
    group_streams: HashMap<Arc<str>, Arc<str>>,
    /// Received logs with the instant they may be shipped (log-delay).
    pending: VecDeque<(Instant, InvocationLog)>,
    /// Events CloudWatch Logs refused or could not be reached for.
    lost_events: u64,
    last_loss_report: Option<Instant>,
}

pub struct ShipperHandle {
    stop: oneshot::Sender<()>,
    join: tokio::task::JoinHandle<()>,
}

impl ShipperHandle {
    /// Ships everything still pending (log-delay or not), within `timeout`.
    pub async fn stop(self, timeout: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(timeout, self.join).await.is_err() {
            eprintln!("sandbox: gave up flushing logs after {timeout:?}");
        }
    }
}

impl Shipper {
    pub fn start(self) -> ShipperHandle {
        let (stop, stop_rx) = oneshot::channel();
        let join = tokio::spawn(self.run(stop_rx));
        ShipperHandle { stop, join }
    }

    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported_drops = 0u64;
        let mut buf = Vec::with_capacity(1024);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                n = self.rx.recv_many(&mut buf, 1024) => {
                    if n == 0 {
                        break;
                    }
                    let ready_at = Instant::now() + self.delay;
                    for log in buf.drain(..) {
                        self.hold(ready_at, log);
                    }
                }
                _ = tick.tick() => {
                    self.ship(Some(Instant::now())).await;
                    let dropped = self.dropped.load(Ordering::Relaxed);
                    if dropped > reported_drops {
                        eprintln!(
                            "sandbox: log buffer full: {dropped} invocations' logs dropped so far"
                        );
                        reported_drops = dropped;
                    }
                }
            }
        }
        while let Ok(log) = self.rx.try_recv() {
            self.hold(Instant::now(), log);
        }
        self.ship(None).await;
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            eprintln!("sandbox: {dropped} invocations' logs were dropped (log buffer full)");
        }
    }

    fn hold(&mut self, ready_at: Instant, log: InvocationLog) {
        // log-delay keeps logs here longer than the channel would: bound it too.
        if self.pending.len() >= self.capacity {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            self.pending.push_back((ready_at, log));
        }
    }

    /// Ships the logs ready at `now` (all of them when `None`).
    async fn ship(&mut self, now: Option<Instant>) {
        type Key = (Arc<str>, Arc<str>);
        let mut by_stream: HashMap<Key, Vec<(i64, String)>> = HashMap::new();
        while let Some((ready_at, _)) = self.pending.front() {
            if now.is_some_and(|now| *ready_at > now) {
                break;
            }
            if let Some((_, log)) = self.pending.pop_front() {
                let stream = match log.stream {
                    Some(s) => s,
                    None => self
                        .group_streams
                        .entry(log.log_group.clone())
                        .or_insert_with(|| {
                            Arc::from(uuid::Uuid::new_v4().simple().to_string().as_str())
                        })
                        .clone(),
                };
                by_stream
                    .entry((log.log_group, stream))
                    .or_default()
                    .extend(log.events);
            }
        }
        for ((group, stream), events) in by_stream {
            for batch in batches(events) {
                self.put(&group, &stream, batch).await;
            }
        }
    }

    async fn put(&mut self, group: &Arc<str>, stream: &Arc<str>, batch: Vec<(i64, String)>) {
        let count = batch.len();
        let mut events = Vec::with_capacity(count);
        for (timestamp, message) in batch {
            if let Ok(e) = InputLogEvent::builder()
                .timestamp(timestamp)
                .message(message)
                .build()
            {
                events.push(e);
            }
        }
        for attempt in 0..2 {
            if let Err(e) = self.ensure_stream(group, stream).await {
                self.lost(count, group, &e);
                return;
            }
            match self
                .client
                .put_log_events()
                .log_group_name(group.as_ref())
                .log_stream_name(stream.as_ref())
                .set_log_events(Some(events.clone()))
                .send()
                .await
            {
                Ok(_) => return,
                // The group or stream was deleted under us (a moto reset): make
                // them again once.
                Err(err)
                    if attempt == 0
                        && err
                            .as_service_error()
                            .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    self.streams.remove(&(group.clone(), stream.clone()));
                }
                Err(err) => {
                    self.lost(count, group, &super::aws::causes(&err));
                    return;
                }
            }
        }
    }

    /// Counts lost events; says so at most every few seconds, so a moto that
    /// went away does not flood stderr at every batch.
    fn lost(&mut self, count: usize, group: &str, error: &str) {
        self.lost_events += count as u64;
        let due = self
            .last_loss_report
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
        if due {
            eprintln!(
                "sandbox: {} log events lost so far (last: {group}: {error})",
                self.lost_events
            );
            self.last_loss_report = Some(Instant::now());
        }
    }

    /// Creates the stream on first use, and its group when missing: API
    /// Gateway creates its execution-log groups itself, and Lambda a function's
    /// group on its first write.
    async fn ensure_stream(&mut self, group: &Arc<str>, stream: &Arc<str>) -> Result<(), String> {
        let key = (group.clone(), stream.clone());
        if self.streams.contains_key(&key) {
            return Ok(());
        }
        for attempt in 0..2 {
            match self
                .client
                .create_log_stream()
                .log_group_name(group.as_ref())
                .log_stream_name(stream.as_ref())
                .send()
                .await
            {
                Ok(_) => break,
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_already_exists_exception()) =>
                {
                    break;
                }
                Err(err)
                    if attempt == 0
                        && err
                            .as_service_error()
                            .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    match self
                        .client
                        .create_log_group()
                        .log_group_name(group.as_ref())
                        .send()
                        .await
                    {
                        Ok(_) => {}
                        Err(err)
                            if err
                                .as_service_error()
                                .is_some_and(|e| e.is_resource_already_exists_exception()) => {}
                        Err(err) => return Err(super::aws::causes(&err)),
                    }
                }
                Err(err) => return Err(super::aws::causes(&err)),
            }
        }
        self.streams.insert(key, ());
        Ok(())
    }
}

/// Splits events into PutLogEvents calls: sorted by timestamp, within the
/// count, size and time-span limits.
pub fn batches(mut events: Vec<(i64, String)>) -> Vec<Vec<(i64, String)>> {
    events.sort_by_key(|(t, _)| *t);
    let mut out = Vec::new();
    let mut current: Vec<(i64, String)> = Vec::new();
    let mut bytes = 0usize;
    for (timestamp, message) in events {
        let size = message.len() + EVENT_OVERHEAD_BYTES;
        let span_exceeded = current
            .first()
            .is_some_and(|(first, _)| timestamp - first > MAX_SPAN_MS);
        if !current.is_empty()
            && (current.len() >= MAX_EVENTS_PER_CALL
                || bytes + size > MAX_BYTES_PER_CALL
                || span_exceeded)
        {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push((timestamp, message));
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_the_put_log_events_limits() {
        let events: Vec<(i64, String)> = (0..25_000).rev().map(|i| (i, "x".repeat(10))).collect();
        let b = batches(events);
        assert_eq!(b.len(), 3);
        assert!(b.iter().all(|b| b.len() <= MAX_EVENTS_PER_CALL));
        assert!(b[0].windows(2).all(|w| w[0].0 <= w[1].0));

        let big: Vec<(i64, String)> = (0..40).map(|i| (i, "y".repeat(100_000))).collect();
        for batch in batches(big) {
            let bytes: usize = batch
                .iter()
                .map(|(_, m)| m.len() + EVENT_OVERHEAD_BYTES)
                .sum();
            assert!(bytes <= MAX_BYTES_PER_CALL);
        }
    }

    fn invocation(format: LogFormat, init: Option<Duration>) -> Invocation<'static> {
        Invocation {
            lambda_request_id: "abc",
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:f",
            format,
            started: SystemTime::UNIX_EPOCH + Duration::from_secs(1),
            duration: Duration::from_micros(1234),
            init_duration: init,
            errored: false,
            app_message: serde_json::json!({"message": "user created", "correlation_id": "c"}),
        }
    }

    #[test]
    fn text_lines_look_like_lambdas() {
        let lines = invocation(LogFormat::Text, None).lines();
        assert_eq!(lines[0].1, "START RequestId: abc Version: $LATEST");
        let parts: Vec<&str> = lines[1].1.splitn(4, '\t').collect();
        assert_eq!(parts[..3], ["1970-01-01T00:00:01.000Z", "abc", "info"]);
        let message: serde_json::Value = serde_json::from_str(parts[3]).unwrap();
        assert_eq!(message["correlation_id"], "c");
        assert_eq!(lines[2].1, "END RequestId: abc");
        assert!(
            lines[3]
                .1
                .starts_with("REPORT RequestId: abc\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: ")
        );
        assert!(!lines[3].1.contains("Init Duration"));
        let cold = invocation(LogFormat::Text, Some(Duration::from_millis(250))).lines();
        assert!(
            cold[3].1.ends_with("\tInit Duration: 250.00 ms"),
            "{}",
            cold[3].1
        );
    }

    #[test]
    fn json_lines_look_like_lambdas() {
        let lines = invocation(LogFormat::Json, Some(Duration::from_millis(250))).lines();
        let parsed: Vec<serde_json::Value> = lines
            .iter()
            .map(|(_, l)| serde_json::from_str(l).unwrap())
            .collect();
        let types: Vec<&str> = parsed.iter().filter_map(|v| v["type"].as_str()).collect();
        assert_eq!(
            types,
            ["platform.initStart", "platform.start", "platform.report"]
        );
        assert_eq!(parsed[1]["record"]["requestId"], "abc");
        assert_eq!(
            parsed[1]["record"]["functionArn"],
            "arn:aws:lambda:us-east-1:123456789012:function:f"
        );
        assert_eq!(parsed[2]["requestId"], "abc");
        assert_eq!(parsed[2]["level"], "INFO");
        assert_eq!(parsed[2]["message"], "user created");
        let report = &parsed[3]["record"];
        assert_eq!(report["status"], "success");
        assert_eq!(report["metrics"]["initDurationMs"], 250.0);
        assert_eq!(report["metrics"]["billedDurationMs"], 2);
        let warm = invocation(LogFormat::Json, None).lines();
        assert_eq!(warm.len(), 3);
        assert!(!warm[2].1.contains("initDurationMs"));
    }

    #[test]
    fn formats_parse_as_lambda_spells_them() {
        assert_eq!(LogFormat::parse("JSON"), LogFormat::Json);
        assert_eq!(LogFormat::parse("Text"), LogFormat::Text);
        assert_eq!(FunctionLog::parse("full"), Some(FunctionLog::Stagecheck));
        assert_eq!(
            FunctionLog::parse("stagecheck"),
            Some(FunctionLog::Stagecheck)
        );
        assert_eq!(
            FunctionLog::parse("powertools"),
            Some(FunctionLog::Powertools)
        );
        assert_eq!(FunctionLog::parse("plain"), Some(FunctionLog::Plain));
        assert_eq!(FunctionLog::parse("Powertools"), None);
    }
}
