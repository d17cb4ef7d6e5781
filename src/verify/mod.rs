//! Backend verification after the traffic: the writes are in the stage's own
//! table with the attributes written, the requests reached the stage's own
//! function (its log group), and none of it reached another stage.

pub mod access;
pub mod dynamodb;
pub mod execution;
pub mod lines;
pub mod logs;
pub mod records;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_dynamodb::types::AttributeValue;

use crate::aws::Clients;
use crate::error::Error;
use crate::metrics::{LatencySummary, encode_histogram};
use crate::scenario::plan::Routing;
use crate::scenario::{LogMatch, Plan, Stage};
use crate::summary::{
    CleanupSummary, DynamoVerify, ExecutionLogsVerify, IsolationVerify, Leak, LogsVerify,
    StepTimeSplit, TimeSplitHistograms, VerifySummary,
};
use dynamodb::{Item, TableKeys};
use execution::{Chains, Routed, TimeSplit};
use lines::Report;
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
    describe_calls: AtomicU64,
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
        describe_calls: AtomicU64::new(0),
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
        let mut routing_leaks = Vec::new();
        if v.logs {
            let (logs, leaks) = self.verify_logs(plan, &invocations, &window).await?;
            summary.logs = Some(logs);
            routing_leaks = leaks;
        }
        if !v.isolate_from.is_empty() {
            let mut isolation = self
                .verify_isolation(plan, &writes, written, &invocations, &window)
                .await?;
            isolation.ok &= routing_leaks.is_empty();
            isolation.leaks.extend(routing_leaks);
            summary.isolation = Some(isolation);
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
        let describes = self.describe_calls.load(Ordering::Relaxed);
        if describes > 0 {
            summary
                .api_calls
                .insert("DescribeLogGroups".to_string(), describes);
        }
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

    /// Proves each recorded request reached the stage's own function, by
    /// the channels `[verify] routing` names: the function's own line (our
    /// correlation id or API Gateway's request id), and API Gateway's
    /// execution log followed to the function's `REPORT`. Returns the leaks
    /// the execution log showed (requests that invoked another stage's
    /// function), for the isolation verdict.
    async fn verify_logs(
        &self,
        plan: &Plan,
        invocations: &[InvocationRecord],
        window: &Window,
    ) -> Result<(LogsVerify, Vec<Leak>), Error> {
        let v = &plan.verify;
        let routing = v.routing;
        let group = &plan.stage.backends.log_group;
        let own_function = &plan.stage.backends.function;
        let mode = v.log_match;
        let started = Instant::now();
        let deadline = started + v.logs_deadline;
        let by_function = routing.reads_function_logs();
        let by_execution = routing.reads_execution_logs();
        let markers = if by_function {
            markers(plan, invocations, mode)
        } else {
            HashSet::new()
        };
        let request_ids: HashSet<String> = if by_execution {
            invocations
                .iter()
                .filter_map(|i| i.request_id.text())
                .collect()
        } else {
            HashSet::new()
        };
        let others: Vec<(String, String)> = plan
            .stages
            .iter()
            .filter(|s| s.name != plan.stage.name)
            .map(|s| (s.name.clone(), s.backends.function.clone()))
            .collect();
        let function_pattern = function_pattern(plan, by_function);
        let mut seen: HashSet<String> = HashSet::new();
        let mut reports: HashMap<String, Report> = HashMap::new();
        let mut exec_group: Option<Result<ExecutionGroup, String>> = None;
        let mut exec_unreadable = false;
        let mut chains = Chains::new(&request_ids);
        let mut pause = Duration::from_millis(500);
        loop {
            if !request_ids.is_empty() && !exec_unreadable {
                // A group appears with its first line: look again while absent.
                let looked_up = match &exec_group {
                    Some(Ok(_)) => Ok(()),
                    _ => self.execution_group(plan).await.map(|g| {
                        exec_group = Some(g);
                    }),
                };
                let scanned = match (looked_up, &exec_group) {
                    (Ok(()), Some(Ok(found))) => {
                        // Rebuilt from every line in the window: ingestion
                        // order is not line order, and a re-read line counts once.
                        let mut fresh = Chains::new(&request_ids);
                        let read = logs::scan(
                            &self.clients.logs,
                            &self.pacer,
                            &found.name,
                            window,
                            Some(execution::EXECUTION_PATTERN),
                            |m| fresh.visit(m),
                        )
                        .await
                        .map_err(Error::from);
                        if read.is_ok() {
                            chains = fresh;
                        }
                        read
                    }
                    (looked_up, _) => looked_up,
                };
                match scanned {
                    Ok(()) => {}
                    // Asked for, the channel must work; offered (auto), a
                    // log the credentials cannot read is one sentence, and
                    // the function's logs decide.
                    Err(e) if routing == Routing::Auto => {
                        exec_unreadable = true;
                        chains = Chains::new(&request_ids);
                        exec_group = Some(Err(format!(
                            "API Gateway's execution log of stage {} could not be read ({e}), so only the function's logs proved routing",
                            plan.stage.name
                        )));
                    }
                    Err(e) => return Err(e),
                }
            }
            let wanted_reports: HashSet<String> = chains
                .lambda_ids_of(own_function)
                .into_iter()
                .filter(|id| !reports.contains_key(id))
                .collect();
            if by_function || !wanted_reports.is_empty() {
                let pattern = match (&function_pattern, wanted_reports.is_empty()) {
                    (Some(p), true) => Some(p.clone()),
                    (Some(p), false) => Some(format!("?{p} {}", execution::REPORT_TERMS)),
                    (None, _) if by_function => None,
                    (None, _) => Some(execution::REPORT_TERMS.to_string()),
                };
                let mut found = HashMap::new();
                logs::scan(
                    &self.clients.logs,
                    &self.pacer,
                    group,
                    window,
                    pattern.as_deref(),
                    |m| {
                        if by_function {
                            for marker in logs::markers_in(m, &markers) {
                                if !seen.contains(marker) {
                                    seen.insert(marker.to_string());
                                }
                            }
                        }
                        if !wanted_reports.is_empty() {
                            execution::visit_report(m, &wanted_reports, &mut found);
                        }
                    },
                )
                .await
                .map_err(Error::from)?;
                reports.extend(found);
            }
            // Settled: proven, or shown by API Gateway's log to have gone
            // elsewhere, which no later line can undo.
            let settled = invocations.iter().all(|i| {
                let f = by_function && is_found(plan, i, &seen, mode);
                let verdict = routed(i, &chains, own_function, &others, &reports);
                routing.proves(f, verdict == Routed::Proven) || verdict.is_final()
            });
            // A stage that writes execution logs for the run is waited for
            // too (its lines may lag the function's): what it shows of each
            // request (a leak, the time split) is worth the wait. One that
            // wrote none for the run is not.
            let execution_settled = chains.is_empty()
                || invocations
                    .iter()
                    .all(|i| routed(i, &chains, own_function, &others, &reports).is_final());
            let settled = settled && execution_settled;
            if settled || Instant::now() >= deadline {
                break;
            }
            // Ingestion takes seconds on AWS: poll with backoff until the deadline.
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
        let mut starts = 0;
        if by_function {
            logs::scan(
                &self.clients.logs,
                &self.pacer,
                group,
                window,
                // Both formats' first line: text `START`, JSON `platform.start`.
                Some("?\"START RequestId\" ?\"platform.start\""),
                |m| starts += u64::from(logs::is_invocation_start(m)),
            )
            .await
            .map_err(Error::from)?;
        }
        let mut result = LogsVerify {
            log_group: group.clone(),
            checked: invocations.len() as u64,
            invocations: starts,
            waited_s: started.elapsed().as_secs_f64(),
            routing: Some(routing.name().to_string()),
            ..LogsVerify::default()
        };
        let mut exec = by_execution.then(|| match &exec_group {
            Some(Ok(g)) => ExecutionLogsVerify {
                log_group: Some(g.name.clone()),
                rest_api: Some(g.rest_api.clone()),
                rest_api_from: Some(g.from.to_string()),
                enabled: !chains.is_empty(),
                with_lines: chains.len() as u64,
                ..ExecutionLogsVerify::default()
            },
            Some(Err(note)) => ExecutionLogsVerify {
                note: Some(note.clone()),
                ..ExecutionLogsVerify::default()
            },
            None => ExecutionLogsVerify {
                note: (!invocations.is_empty()).then(|| {
                    "no answer of the run carried x-amzn-RequestId (API Gateway sets it on every answer it sends), so API Gateway's execution log could not be followed".to_string()
                }),
                ..ExecutionLogsVerify::default()
            },
        });
        let mut by_stage: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut splits: Vec<TimeSplit> = plan.steps.iter().map(|_| TimeSplit::default()).collect();
        let (mut proven_by_function, mut proven_by_execution) = (0, 0);
        for invocation in invocations {
            let f = by_function && is_found(plan, invocation, &seen, mode);
            let verdict = routed(invocation, &chains, own_function, &others, &reports);
            let e = verdict == Routed::Proven;
            proven_by_function += u64::from(f);
            proven_by_execution += u64::from(e);
            if e && let Some(id) = invocation.request_id.text()
                && let Some(chain) = chains.get(&id)
                && let Some(report) = chain
                    .lambda_request_id
                    .as_ref()
                    .and_then(|l| reports.get(l))
                && let Some(split) = splits.get_mut(invocation.step as usize)
            {
                split.record(
                    u64::from(invocation.service_us),
                    chain.integration_latency_ms,
                    report.duration_ms,
                    report.init_ms,
                );
            }
            if let Some(x) = exec.as_mut() {
                x.proven += u64::from(e);
                match &verdict {
                    Routed::OtherFunction { stage, line, .. } => {
                        x.other_function += 1;
                        if let Some(stage) = stage
                            && v.isolate_from.iter().any(|s| s.name == *stage)
                        {
                            by_stage.entry(stage).or_default().push(line);
                        }
                    }
                    Routed::ConfigurationError(_) => x.configuration_errors += 1,
                    _ => {}
                }
            }
            if routing.proves(f, e) {
                result.found += 1;
                continue;
            }
            result.missing += 1;
            if result.examples.len() < EXAMPLES {
                let id = marker_text(plan, invocation).unwrap_or_else(|| "?".into());
                let step = plan
                    .steps
                    .get(invocation.step as usize)
                    .map_or("?", |s| s.name.as_str());
                let why = match (&verdict, by_execution) {
                    (_, false) => "no log line".to_string(),
                    (Routed::OtherFunction { arn, line, .. }, _) => format!(
                        "API Gateway invoked {arn}, not the stage's function {own_function}: {line}"
                    ),
                    (Routed::ConfigurationError(e), _) => {
                        format!("API Gateway could not invoke the function: {e}")
                    }
                    (Routed::Incomplete(why), _) => format!("execution log: {why}"),
                    (Routed::NoLines, _) if by_function => {
                        "no log line in the function's logs nor in API Gateway's execution log"
                            .to_string()
                    }
                    (Routed::NoLines, _) => "no line in API Gateway's execution log".to_string(),
                    (Routed::Proven, _) => "proven by API Gateway's execution log only".into(),
                };
                result
                    .examples
                    .push(format!("{why} for {id} (step {step})"));
            }
        }
        if by_function {
            result
                .proven_by
                .insert("function_logs".to_string(), proven_by_function);
        }
        if let Some(mut x) = exec {
            result
                .proven_by
                .insert("execution_logs".to_string(), proven_by_execution);
            x.time_split = plan
                .steps
                .iter()
                .zip(&splits)
                .filter(|(_, split)| !split.client_us.is_empty())
                .map(|(step, split)| time_split(&step.name, split))
                .collect();
            if x.note.is_none() && !x.enabled && !invocations.is_empty() {
                x.note = Some(no_lines_note(
                    plan,
                    x.log_group.as_deref(),
                    x.rest_api.as_deref(),
                ));
            }
            result.execution_logs = Some(x);
        }
        let of = invocations.len() as u64;
        let own = &plan.stage.name;
        let leaks = by_stage
            .into_iter()
            .map(|(stage, lines)| {
                let count = lines.len() as u64;
                let function = others
                    .iter()
                    .find(|(s, _)| s == stage)
                    .map_or("?", |(_, f)| f.as_str());
                let exec_group = result
                    .execution_logs
                    .as_ref()
                    .and_then(|x| x.log_group.clone())
                    .unwrap_or_default();
                Leak {
                    stage: stage.to_string(),
                    resource: format!("function {function}"),
                    count,
                    of,
                    examples: lines.iter().take(EXAMPLES).map(|l| l.to_string()).collect(),
                    message: format!(
                        "{count} of {of} requests sent to stage {own} invoked function {function} (stage {stage}), as API Gateway's execution log {exec_group} shows"
                    ),
                }
            })
            .collect();
        Ok((result, leaks))
    }

    /// The stage's execution-log group, or one sentence on why there is
    /// none and how to turn execution logging on.
    async fn execution_group(&self, plan: &Plan) -> Result<Result<ExecutionGroup, String>, Error> {
        let stage = &plan.stage.name;
        if let Some(api) = &plan.verify.rest_api {
            let name = execution::execution_group(&api.id, stage);
            self.describe_calls.fetch_add(1, Ordering::Relaxed);
            return match logs::group_exists(&self.clients.logs, &name).await {
                Ok(()) => Ok(Ok(ExecutionGroup {
                    name,
                    rest_api: api.id.clone(),
                    from: api.from,
                })),
                Err(logs::LogsError::Missing { .. }) => Ok(Err(format!(
                    "API Gateway's execution logging is off for stage {stage} (no log group {name}): {}",
                    how_to_enable(Some(&api.id), stage)
                ))),
                Err(e) => Err(e.into()),
            };
        }
        // No id from the base URL or the scenario: the stage's group is the
        // only one of a stage of that name, or cannot be told apart.
        self.describe_calls.fetch_add(1, Ordering::Relaxed);
        let names = logs::groups_with_prefix(
            &self.clients.logs,
            execution::EXECUTION_GROUP_PREFIX,
            MAX_LISTED_GROUPS,
        )
        .await
        .map_err(Error::from)?;
        let candidates = execution::groups_of_stage(&names, stage);
        Ok(match candidates.as_slice() {
            [(name, api)] => Ok(ExecutionGroup {
                name: name.to_string(),
                rest_api: api.to_string(),
                from: "log_groups",
            }),
            [] => Err(format!(
                "API Gateway's execution logging is off for stage {stage} (no log group API-Gateway-Execution-Logs_{{rest-api-id}}/{stage}): {}",
                how_to_enable(None, stage)
            )),
            several => Err(format!(
                "{} REST APIs have execution logs for a stage named {stage} ({}), and neither the base URL nor the scenario says which is this one: set `[verify] rest_api` to its id so API Gateway's execution log can prove routing",
                several.len(),
                several
                    .iter()
                    .map(|(_, a)| *a)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        })
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
            if !invocations.is_empty() && plan.verify.routing.reads_function_logs() {
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

/// The stage's execution-log group as found.
struct ExecutionGroup {
    name: String,
    rest_api: String,
    /// `base_url`, `setting` or `log_groups`.
    from: &'static str,
}

/// Execution-log groups listed at most when looking for the stage's own.
const MAX_LISTED_GROUPS: usize = 2_000;

/// One request's verdict from API Gateway's execution log.
fn routed<'a>(
    invocation: &InvocationRecord,
    chains: &'a Chains<'_>,
    own_function: &str,
    others: &'a [(String, String)],
    reports: &HashMap<String, Report>,
) -> Routed<'a> {
    match invocation.request_id.text() {
        Some(id) => execution::judge(chains.get(&id), own_function, others, reports),
        None => Routed::NoLines,
    }
}

fn time_split(step: &str, split: &TimeSplit) -> StepTimeSplit {
    StepTimeSplit {
        step: step.to_string(),
        requests: split.client_us.len(),
        client_ms: LatencySummary::from_histogram_us(&split.client_us),
        api_gateway_ms: LatencySummary::from_histogram_us(&split.api_gateway_us),
        integration_ms: LatencySummary::from_histogram_us(&split.integration_us),
        function_ms: LatencySummary::from_histogram_us(&split.function_us),
        cold_starts: split.init_us.len(),
        init_ms: LatencySummary::from_histogram_us(&split.init_us),
        clamped: split.clamped,
        tail: split.tail(),
        histograms: TimeSplitHistograms {
            client: encode_histogram(&split.client_us),
            api_gateway: encode_histogram(&split.api_gateway_us),
            integration: encode_histogram(&split.integration_us),
            function: encode_histogram(&split.function_us),
            init: encode_histogram(&split.init_us),
        },
    }
}

/// How to turn execution logging on, as the end of one sentence.
fn how_to_enable(rest_api: Option<&str>, stage: &str) -> String {
    format!(
        "turn it on with loggingLevel INFO on the stage (`aws apigateway update-stage --rest-api-id {} --stage-name {stage} --patch-operations op=replace,path=/*/*/logging/loglevel,value=INFO`; the account needs API Gateway's CloudWatch role) and API Gateway's own log proves which function each request invoked",
        rest_api.unwrap_or("ID")
    )
}

fn no_lines_note(plan: &Plan, group: Option<&str>, rest_api: Option<&str>) -> String {
    let stage = &plan.stage.name;
    format!(
        "API Gateway's execution logging wrote nothing for this run's requests to {} (stage {stage} logs at OFF or ERROR): {}",
        group.unwrap_or("the stage's execution-log group"),
        how_to_enable(rest_api, stage)
    )
}

/// The function group's server-side filter when its own lines are read:
/// the run id when only our correlation id is matched (see `run_pattern`).
fn function_pattern(plan: &Plan, by_function: bool) -> Option<String> {
    if !by_function {
        return None;
    }
    run_pattern(plan)
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
