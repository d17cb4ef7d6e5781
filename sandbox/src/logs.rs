//! Lambda-style logs: the lines one invocation writes (`START`, the JSON
//! application line, `END`, `REPORT`), and the shipper that sends them to
//! `/aws/lambda/{function}` in CloudWatch Logs in batches from a background task,
//! as Lambda's agent does. The request path only does a non-blocking `try_send`;
//! when the buffer is full the invocation's logs are dropped and counted.

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

/// The log events of one invocation, for one function's log group.
#[derive(Debug)]
pub struct InvocationLog {
    pub log_group: Arc<str>,
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

/// What a function's own log line carries, per stage (`--function-log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FunctionLog {
    /// The client's `X-Correlation-Id` header (when sent) and API Gateway's
    /// request id, in one JSON line.
    #[default]
    Full,
    /// What AWS Lambda Powertools' Logger writes with
    /// `correlation_id_path=API_GATEWAY_REST`: `correlation_id` is
    /// `requestContext.requestId` (the `x-amzn-RequestId` the client got), and no
    /// client header at all, as most real functions log.
    Powertools,
}

impl FunctionLog {
    pub fn parse(text: &str) -> Option<FunctionLog> {
        match text {
            "full" => Some(FunctionLog::Full),
            "powertools" => Some(FunctionLog::Powertools),
            _ => None,
        }
    }
}

/// One invocation's facts, turned into Lambda's text lines.
pub struct Invocation<'a> {
    pub lambda_request_id: &'a str,
    pub started: SystemTime,
    pub duration: Duration,
    /// Set on the first invocation of a function in this process (a cold start).
    pub init_duration: Option<Duration>,
    pub app_line: serde_json::Value,
}

impl Invocation<'_> {
    pub fn lines(&self) -> Vec<(i64, String)> {
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
        vec![
            (start_ms, format!("START RequestId: {id} Version: $LATEST")),
            (start_ms, self.app_line.to_string()),
            (end_ms, format!("END RequestId: {id}")),
            (end_ms, report),
        ]
    }
}

/// `YYYY/MM/DD/[$LATEST]<32 hex>`: one stream per execution environment, which
/// for the sandbox is one per function per process.
pub fn stream_name(now: SystemTime) -> String {
    let t = time::OffsetDateTime::from(now);
    format!(
        "{:04}/{:02}/{:02}/[$LATEST]{}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        uuid::Uuid::new_v4().simple()
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
    /// Log group → its stream, created on first use.
    streams: HashMap<Arc<str>, String>,
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
        let mut by_group: HashMap<Arc<str>, Vec<(i64, String)>> = HashMap::new();
        while let Some((ready_at, _)) = self.pending.front() {
            if now.is_some_and(|now| *ready_at > now) {
                break;
            }
            if let Some((_, log)) = self.pending.pop_front() {
                by_group
                    .entry(log.log_group)
                    .or_default()
                    .extend(log.events);
            }
        }
        for (group, events) in by_group {
            for batch in batches(events) {
                self.put(&group, batch).await;
            }
        }
    }

    async fn put(&mut self, group: &Arc<str>, batch: Vec<(i64, String)>) {
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
            let stream = match self.stream_for(group, attempt > 0).await {
                Ok(s) => s,
                Err(e) => {
                    self.lost(count, group, &e);
                    return;
                }
            };
            match self
                .client
                .put_log_events()
                .log_group_name(group.as_ref())
                .log_stream_name(stream)
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
                    self.streams.remove(group);
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

    async fn stream_for(&mut self, group: &Arc<str>, recreate: bool) -> Result<String, String> {
        if let Some(s) = self.streams.get(group) {
            return Ok(s.clone());
        }
        let stream = stream_name(SystemTime::now());
        if recreate {
            let _ = self
                .client
                .create_log_group()
                .log_group_name(group.as_ref())
                .send()
                .await;
        }
        match self
            .client
            .create_log_stream()
            .log_group_name(group.as_ref())
            .log_stream_name(&stream)
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
        self.streams.insert(group.clone(), stream.clone());
        Ok(stream)
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

    #[test]
    fn lines_look_like_lambdas() {
        let inv = Invocation {
            lambda_request_id: "abc",
            started: SystemTime::UNIX_EPOCH + Duration::from_secs(1),
            duration: Duration::from_micros(1234),
            init_duration: None,
            app_line: serde_json::json!({"level": "INFO"}),
        };
        let lines = inv.lines();
        assert_eq!(lines[0].1, "START RequestId: abc Version: $LATEST");
        assert_eq!(lines[2].1, "END RequestId: abc");
        assert!(
            lines[3]
                .1
                .starts_with("REPORT RequestId: abc\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: ")
        );
    }

    #[test]
    fn stream_names_look_like_lambdas() {
        let name = stream_name(SystemTime::UNIX_EPOCH);
        assert!(name.starts_with("1970/01/01/[$LATEST]"));
        assert_eq!(name.len(), "1970/01/01/[$LATEST]".len() + 32);
    }
}
