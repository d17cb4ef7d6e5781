//! Backend verification after the traffic: the writes are in the stage's own
//! table with the attributes written, the requests reached the stage's own
//! function (its log group), and none of it reached another stage.

pub mod dynamodb;
pub mod lines;
pub mod logs;
pub mod records;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_dynamodb::types::AttributeValue;

use crate::aws::Clients;
use crate::error::Error;
use crate::scenario::{LogMatch, Plan, Stage};
use crate::summary::{
    CleanupSummary, DynamoVerify, IsolationVerify, Leak, LogsVerify, VerifySummary,
};
use dynamodb::{Item, TableKeys};
use logs::{Pacer, Window};
use records::{InvocationRecord, Reservoir, WriteRecord, Written};

const EXAMPLES: usize = 5;
/// Keys read and judged at a time (100 BatchGetItem calls).
const READ_CHUNK: usize = 10_000;
/// Log timestamps come from other clocks: widen the window on both sides.
const CLOCK_SKEW: Duration = Duration::from_secs(30);

/// Clients and the backends' shapes, checked before any traffic is sent.
pub struct Verifier {
    clients: Clients,
    own_table: Option<TableKeys>,
    other_tables: Vec<(Stage, TableKeys)>,
    pacer: Pacer,
    batch_calls: AtomicU64,
    delete_calls: AtomicU64,
}

/// Everything verification is given from the run.
pub struct Evidence {
    pub writes: Reservoir<WriteRecord>,
    pub invocations: Reservoir<InvocationRecord>,
    pub started_at: SystemTime,
    pub ended_at: SystemTime,
}

/// Checks that every table and log group to be verified exists and is
/// readable with the current credentials, so a wrong name or missing
/// permission is one sentence now, not a failure after minutes of load.
pub async fn preflight(plan: &Plan) -> Result<Verifier, Error> {
    let v = &plan.verify;
    let clients = Clients::new(&v.aws).await?;
    let fail = |stage: &Stage, e: Error| e.for_stage(&stage.name);
    let own_table = if v.dynamodb || !v.isolate_from.is_empty() {
        Some(
            dynamodb::describe_table(&clients.dynamodb, &plan.stage.backends.table)
                .await
                .map_err(|e| fail(&plan.stage, e.into()))?,
        )
    } else {
        None
    };
    if v.logs {
        logs::group_exists(&clients.logs, &plan.stage.backends.log_group)
            .await
            .map_err(|e| fail(&plan.stage, e.into()))?;
    }
    let mut other_tables = Vec::new();
    for other in &v.isolate_from {
        let keys = dynamodb::describe_table(&clients.dynamodb, &other.backends.table)
            .await
            .map_err(|e| fail(other, e.into()))?;
        logs::group_exists(&clients.logs, &other.backends.log_group)
            .await
            .map_err(|e| fail(other, e.into()))?;
        other_tables.push((other.clone(), keys));
    }
    // Keys must be buildable from what the steps declare, or nothing can be checked.
    if let Some(keys) = &own_table {
        for step in &plan.steps {
            if let Some(writes) = &step.writes {
                for name in keys.types.keys() {
                    if !writes.key.iter().any(|(k, _)| k == name) {
                        return Err(Error::Usage(format!(
                            "step `{}` declares writes keyed by {}, but table {}'s key is {}",
                            step.name,
                            writes
                                .key
                                .iter()
                                .map(|(k, _)| k.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            keys.table,
                            keys.types.keys().cloned().collect::<Vec<_>>().join(", ")
                        )));
                    }
                }
            }
        }
    }
    Ok(Verifier {
        clients,
        own_table,
        other_tables,
        pacer: Pacer::new(),
        batch_calls: AtomicU64::new(0),
        delete_calls: AtomicU64::new(0),
    })
}

impl Verifier {
    pub async fn verify(&self, plan: &Plan, evidence: Evidence) -> Result<VerifySummary, Error> {
        let v = &plan.verify;
        let written = evidence.writes.seen();
        let window = window(&evidence);
        let writes: Vec<WriteRecord> = evidence.writes.into_items();
        let invocations: Vec<InvocationRecord> = evidence.invocations.into_items();
        let mut summary = VerifySummary::default();

        if v.dynamodb
            && let Some(keys) = &self.own_table
        {
            summary.dynamodb = Some(
                self.verify_table(plan, keys, &writes, written, v.settle)
                    .await?,
            );
        }
        if v.logs {
            summary.logs = Some(self.verify_logs(plan, &invocations, &window).await?);
        }
        if !v.isolate_from.is_empty() {
            summary.isolation = Some(
                self.verify_isolation(plan, &writes, written, &invocations, &window)
                    .await?,
            );
        }
        if v.cleanup
            && let Some(keys) = &self.own_table
        {
            summary.cleanup = Some(self.cleanup(plan, keys, &writes).await);
        }
        summary.api_calls = BTreeMap::from([
            (
                "BatchGetItem".to_string(),
                self.batch_calls.load(Ordering::Relaxed),
            ),
            (
                "FilterLogEvents".to_string(),
                self.pacer.calls.load(Ordering::Relaxed),
            ),
            (
                "DeleteItem".to_string(),
                self.delete_calls.load(Ordering::Relaxed),
            ),
        ]);
        Ok(summary)
    }

    async fn verify_table(
        &self,
        plan: &Plan,
        keys: &TableKeys,
        writes: &[WriteRecord],
        written: u64,
        settle: Duration,
    ) -> Result<DynamoVerify, Error> {
        // Sorted by key, so the writes to one key (repeats, updates) sit
        // together; a sorted vector costs far less than a map of items.
        let mut keyed = Vec::with_capacity(writes.len());
        for record in writes {
            let key = dynamodb::key_of(&read_write(plan, record), keys).map_err(Error::from)?;
            keyed.push((dynamodb::key_text(&key), record));
        }
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        let groups: Vec<&[(String, &WriteRecord)]> = keyed.chunk_by(|a, b| a.0 == b.0).collect();
        let mut result = DynamoVerify {
            table: keys.table.clone(),
            written,
            recorded: writes.len() as u64,
            sampled: written > writes.len() as u64,
            checked: groups.len() as u64,
            ..DynamoVerify::default()
        };
        // Read and judge a chunk at a time: only one chunk of items is ever
        // held, however many writes were recorded.
        let mut missing = Vec::new();
        for chunk in groups.chunks(READ_CHUNK) {
            missing.extend(self.read_and_judge(plan, keys, chunk, &mut result).await?);
        }
        // Re-check what is still missing until the settle window closes:
        // a write can become visible a little after it was acknowledged.
        let deadline = Instant::now() + settle;
        while !missing.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(
                Duration::from_millis(500).min(deadline.saturating_duration_since(Instant::now())),
            )
            .await;
            let mut still = Vec::new();
            for chunk in missing.chunks(READ_CHUNK) {
                still.extend(self.read_and_judge(plan, keys, chunk, &mut result).await?);
            }
            missing = still;
        }
        for group in missing {
            result.missing += 1;
            if result.examples.len() < EXAMPLES {
                result
                    .examples
                    .push(format!("missing {}{}", group[0].0, via(plan, group[0].1)));
            }
        }
        Ok(result)
    }

    async fn verify_logs(
        &self,
        plan: &Plan,
        invocations: &[InvocationRecord],
        window: &Window,
    ) -> Result<LogsVerify, Error> {
        let group = &plan.stage.backends.log_group;
        let mode = plan.verify.log_match;
        let started = Instant::now();
        let deadline = started + plan.verify.logs_deadline;
        let markers = markers(plan, invocations, mode);
        let pattern = run_pattern(plan);
        let mut seen: HashSet<String> = HashSet::new();
        let mut pause = Duration::from_millis(500);
        loop {
            seen.extend(
                self.markers_found(group, window, pattern.as_deref(), &markers)
                    .await?,
            );
            let all = invocations.iter().all(|i| is_found(plan, i, &seen, mode));
            if all || Instant::now() >= deadline {
                break;
            }
            // Ingestion takes seconds on AWS: poll with backoff until the deadline.
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
        let mut starts = 0;
        logs::scan(
            &self.clients.logs,
            &self.pacer,
            group,
            window,
            Some("\"START RequestId\""),
            |m| starts += u64::from(logs::is_invocation_start(m)),
        )
        .await
        .map_err(Error::from)?;
        let mut result = LogsVerify {
            log_group: group.clone(),
            checked: invocations.len() as u64,
            invocations: starts,
            waited_s: started.elapsed().as_secs_f64(),
            ..LogsVerify::default()
        };
        for invocation in invocations {
            if is_found(plan, invocation, &seen, mode) {
                result.found += 1;
            } else {
                result.missing += 1;
                if result.examples.len() < EXAMPLES {
                    let id = marker_text(plan, invocation).unwrap_or_else(|| "?".into());
                    result.examples.push(format!(
                        "no log line for {id} (step {})",
                        plan.steps
                            .get(invocation.step as usize)
                            .map_or("?", |s| s.name.as_str())
                    ));
                }
            }
        }
        Ok(result)
    }

    async fn verify_isolation(
        &self,
        plan: &Plan,
        writes: &[WriteRecord],
        written: u64,
        invocations: &[InvocationRecord],
        window: &Window,
    ) -> Result<IsolationVerify, Error> {
        let mut leaks = Vec::new();
        let markers = markers(plan, invocations, plan.verify.log_match);
        let pattern = run_pattern(plan);
        let own = &plan.stage.name;
        for (other, keys) in &self.other_tables {
            if !writes.is_empty() {
                // A chunk at a time, as for the stage's own table: only one
                // chunk of keys and items is held at once.
                let mut ours: BTreeSet<String> = BTreeSet::new();
                for chunk in writes.chunks(READ_CHUNK) {
                    let found = self.read_records(plan, keys, chunk.iter()).await?;
                    // Only what this run wrote counts: the item must hold our attributes.
                    for record in chunk {
                        let write = read_write(plan, record);
                        let Ok(key) = dynamodb::key_of(&write, keys) else {
                            continue;
                        };
                        let key = dynamodb::key_text(&key);
                        if let Some(item) = found.get(&key)
                            && dynamodb::mismatch(item, &write.attributes).is_none()
                        {
                            ours.insert(key);
                        }
                    }
                }
                if !ours.is_empty() {
                    let of = writes.len() as u64;
                    let count = ours.len() as u64;
                    leaks.push(Leak {
                        stage: other.name.clone(),
                        resource: format!("table {}", keys.table),
                        count,
                        of,
                        examples: ours.iter().take(EXAMPLES).cloned().collect(),
                        message: format!(
                            "{count} of {of} writes sent to stage {own} are in table {} (stage {}){}",
                            keys.table,
                            other.name,
                            if written > of { format!(" (checked a sample of {of} of {written} writes)") } else { String::new() }
                        ),
                    });
                }
            }
            if !invocations.is_empty() {
                let group = &other.backends.log_group;
                let hits = self
                    .markers_found(group, window, pattern.as_deref(), &markers)
                    .await?;
                let leaked: Vec<&InvocationRecord> = invocations
                    .iter()
                    .filter(|i| is_found(plan, i, &hits, LogMatch::Either))
                    .collect();
                if !leaked.is_empty() {
                    let (count, of) = (leaked.len() as u64, invocations.len() as u64);
                    leaks.push(Leak {
                        stage: other.name.clone(),
                        resource: format!("log group {group}"),
                        count,
                        of,
                        examples: leaked.iter().take(EXAMPLES).filter_map(|i| marker_text(plan, i)).collect(),
                        message: format!("{count} of {of} requests sent to stage {own} were logged by {group} (stage {})", other.name),
                    });
                }
            }
        }
        Ok(IsolationVerify {
            ok: leaks.is_empty(),
            stages: self
                .other_tables
                .iter()
                .map(|(s, _)| s.name.clone())
                .collect(),
            leaks,
        })
    }

    /// Reads one chunk of keys and judges the items found; returns the
    /// groups whose item is not there (yet).
    async fn read_and_judge<'a>(
        &self,
        plan: &Plan,
        keys: &TableKeys,
        chunk: &[&'a [(String, &'a WriteRecord)]],
        result: &mut DynamoVerify,
    ) -> Result<Vec<&'a [(String, &'a WriteRecord)]>, Error> {
        let found = self
            .read_records(plan, keys, chunk.iter().map(|group| group[0].1))
            .await?;
        let mut missing = Vec::new();
        for group in chunk {
            match found.get(&group[0].0) {
                Some(item) => judge(
                    &group[0].0,
                    item,
                    group.iter().map(|(_, r)| read_write(plan, r)),
                    result,
                ),
                None => missing.push(*group),
            }
        }
        Ok(missing)
    }

    /// Reads the items at the keys `records` wrote in `keys`' table, by key text.
    async fn read_records<'a>(
        &self,
        plan: &Plan,
        keys: &TableKeys,
        records: impl ExactSizeIterator<Item = &'a WriteRecord>,
    ) -> Result<HashMap<String, Item>, Error> {
        let mut wanted = Vec::with_capacity(records.len());
        for record in records {
            wanted.push(dynamodb::key_of(&read_write(plan, record), keys).map_err(Error::from)?);
        }
        dynamodb::read_items(
            &self.clients.dynamodb,
            &keys.table,
            &wanted,
            &self.batch_calls,
        )
        .await
        .map_err(Error::from)
    }

    /// The markers that occur in a log group's events over the window.
    async fn markers_found(
        &self,
        group: &str,
        window: &Window,
        pattern: Option<&str>,
        markers: &HashSet<String>,
    ) -> Result<HashSet<String>, Error> {
        let mut found = HashSet::new();
        logs::scan(
            &self.clients.logs,
            &self.pacer,
            group,
            window,
            pattern,
            |m| {
                for marker in logs::markers_in(m, markers) {
                    if !found.contains(marker) {
                        found.insert(marker.to_string());
                    }
                }
            },
        )
        .await
        .map_err(Error::from)?;
        Ok(found)
    }

    /// Deletes exactly the items this run wrote, by key, and only while they
    /// still hold what the run wrote.
    async fn cleanup(
        &self,
        plan: &Plan,
        keys: &TableKeys,
        writes: &[WriteRecord],
    ) -> CleanupSummary {
        let mut summary = CleanupSummary {
            table: keys.table.clone(),
            ..CleanupSummary::default()
        };
        let mut done = HashSet::new();
        for record in writes.iter().rev() {
            let record = read_write(plan, record);
            let Ok(key) = dynamodb::key_of(&record, keys) else {
                summary.failed += 1;
                continue;
            };
            if !done.insert(dynamodb::key_text(&key)) {
                continue;
            }
            let mut request = self
                .clients
                .dynamodb
                .delete_item()
                .table_name(&keys.table)
                .set_key(Some(key.clone()));
            let mut conditions = Vec::new();
            for (i, name) in key.keys().enumerate() {
                request = request.expression_attribute_names(format!("#k{i}"), name);
                conditions.push(format!("attribute_exists(#k{i})"));
            }
            for (i, (name, value)) in record.attributes.iter().enumerate() {
                if let Some(value) = attribute_value(value) {
                    request = request
                        .expression_attribute_names(format!("#a{i}"), *name)
                        .expression_attribute_values(format!(":a{i}"), value);
                    conditions.push(format!("#a{i} = :a{i}"));
                }
            }
            request = request.condition_expression(conditions.join(" AND "));
            self.delete_calls.fetch_add(1, Ordering::Relaxed);
            match request.send().await {
                Ok(_) => summary.deleted += 1,
                Err(e) => {
                    let conditional = e
                        .as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception());
                    if conditional {
                        summary.skipped += 1
                    } else {
                        summary.failed += 1
                    }
                }
            }
        }
        summary
    }
}

/// An item passes if it holds what any of the writes to its key wrote.
fn judge<'a>(
    key: &str,
    item: &Item,
    records: impl Iterator<Item = Written<'a>>,
    result: &mut DynamoVerify,
) {
    let mut first_problem = None;
    let mut any_matches = false;
    for record in records {
        match dynamodb::mismatch(item, &record.attributes) {
            None => any_matches = true,
            Some(problem) => {
                first_problem.get_or_insert(problem);
            }
        }
    }
    // The item exists either way: `found` counts it, `mismatched` says how
    // many of those found hold other attributes than written.
    result.found += 1;
    if let Some(problem) = first_problem.filter(|_| !any_matches) {
        result.mismatched += 1;
        if result.examples.len() < EXAMPLES {
            result.examples.push(format!("{key}: {problem}"));
        }
    }
}

fn attribute_value(value: &serde_json::Value) -> Option<AttributeValue> {
    match value {
        serde_json::Value::String(s) => Some(AttributeValue::S(s.clone())),
        serde_json::Value::Number(n) => Some(AttributeValue::N(n.to_string())),
        serde_json::Value::Bool(b) => Some(AttributeValue::Bool(*b)),
        _ => None,
    }
}

/// A recorded write with its step's names and constants.
fn read_write<'a>(plan: &'a Plan, record: &'a WriteRecord) -> Written<'a> {
    match plan
        .steps
        .get(record.step as usize)
        .and_then(|s| s.writes.as_ref())
    {
        Some(writes) => record.read(writes),
        // Only steps that declare writes record them.
        None => Written::default(),
    }
}

fn via(plan: &Plan, record: &WriteRecord) -> String {
    match (
        plan.correlation_id(record.seq, record.step as usize),
        record.request_id.text(),
    ) {
        (Some(c), _) => format!(" (request {c})"),
        (None, Some(r)) => format!(" (x-amzn-RequestId {r})"),
        _ => String::new(),
    }
}

/// How a request shows in examples: its correlation id, else API Gateway's.
fn marker_text(plan: &Plan, invocation: &InvocationRecord) -> Option<String> {
    plan.correlation_id(invocation.seq, invocation.step as usize)
        .or_else(|| invocation.request_id.text())
}

fn window(evidence: &Evidence) -> Window {
    let ms = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    };
    Window {
        start_ms: ms(evidence.started_at) - CLOCK_SKEW.as_millis() as i64,
        end_ms: ms(evidence.ended_at) + CLOCK_SKEW.as_millis() as i64,
    }
}

/// The run id as one quoted phrase cuts volume when functions log our
/// correlation id; API Gateway's request ids carry no run id, so none then.
fn run_pattern(plan: &Plan) -> Option<String> {
    match plan.verify.log_match {
        LogMatch::CorrelationId => Some(format!("\"{}\"", plan.run_id)),
        LogMatch::RequestId | LogMatch::Either => None,
    }
}

fn markers(plan: &Plan, invocations: &[InvocationRecord], mode: LogMatch) -> HashSet<String> {
    let mut set = HashSet::new();
    for i in invocations {
        if mode != LogMatch::RequestId
            && let Some(c) = plan.correlation_id(i.seq, i.step as usize)
        {
            set.insert(c);
        }
        if mode != LogMatch::CorrelationId
            && let Some(r) = i.request_id.text()
        {
            set.insert(r);
        }
    }
    set
}

fn is_found(
    plan: &Plan,
    invocation: &InvocationRecord,
    seen: &HashSet<String>,
    mode: LogMatch,
) -> bool {
    let by_correlation = || {
        plan.correlation_id(invocation.seq, invocation.step as usize)
            .is_some_and(|c| seen.contains(&c))
    };
    let by_request = || {
        invocation
            .request_id
            .text()
            .is_some_and(|r| seen.contains(&r))
    };
    match mode {
        LogMatch::CorrelationId => by_correlation(),
        LogMatch::RequestId => by_request(),
        LogMatch::Either => by_correlation() || by_request(),
    }
}
