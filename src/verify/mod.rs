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
    AccessLogsVerify, CleanupSummary, DynamoVerify, ExecutionLogsVerify, IsolationVerify, Leak,
    LogsVerify, StepTimeSplit, TimeSplitHistograms, VerifySummary,
};
use access::{AccessFormat, AccessLines};
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
    get_stage_calls: AtomicU64,
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
        get_stage_calls: AtomicU64::new(0),
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
        let get_stages = self.get_stage_calls.load(Ordering::Relaxed);
        if get_stages > 0 {
            summary.api_calls.insert("GetStage".to_string(), get_stages);
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
    /// correlation id or API Gateway's request id), and API Gateway's own
    /// logs: its execution log, and its access log's Lambda request id, each
    /// followed to the function's `REPORT`. Returns the leaks API Gateway's
    /// logs showed (requests that invoked another stage's function), for the
    /// isolation verdict.
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
        // The access log: located once the REST API id is known (GetStage);
        // its lines read only for the requests the execution log has not
        // proven; REPORTs of its Lambda ids looked for in the stage's own
        // function group, then in the other stages'.
        let by_access = by_execution;
        let mut access_source: Option<Result<AccessSource, String>> = None;
        let mut access_lines: Option<AccessLines> = None;
        let mut access_scanned = false;
        let mut other_reports: HashMap<String, OtherReport> = HashMap::new();
        let other_groups = other_function_groups(plan);
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
            if by_access && !request_ids.is_empty() {
                if access_source.is_none() {
                    let api =
                        v.rest_api
                            .as_ref()
                            .map(|a| a.id.clone())
                            .or_else(|| match &exec_group {
                                Some(Ok(g)) => Some(g.rest_api.clone()),
                                _ => None,
                            });
                    if let Some(api) = api {
                        access_source = Some(match self.access_source(plan, &api).await {
                            Ok(found) => found,
                            // Offered (auto), a stage the credentials cannot
                            // read is one sentence; asked for, an error.
                            Err(e) if routing == Routing::Auto => Err(format!(
                                "API Gateway's access-log settings of stage {} could not be read ({}), so its access log did not prove routing (it needs apigateway:GET on the stage)",
                                plan.stage.name,
                                first_sentence(&e.to_string())
                            )),
                            Err(e) => return Err(e),
                        });
                    }
                }
                let usable = match &access_source {
                    Some(Ok(source)) if source.usable() => Some(source),
                    _ => None,
                };
                if let Some(source) = usable {
                    let lines =
                        access_lines.get_or_insert_with(|| AccessLines::new(source.format.clone()));
                    let pending: HashSet<String> = invocations
                        .iter()
                        .filter_map(|i| i.request_id.text())
                        .filter(|id| needs_access(&chains, id, own_function, &others, &reports))
                        .filter(|id| {
                            !access_routed(lines.get(id), &reports, &other_reports).is_final()
                        })
                        .collect();
                    if !pending.is_empty() {
                        access_scanned = true;
                        // No server-side filter: every line of an access log
                        // is one request's, and its words are the owner's.
                        let read = logs::scan(
                            &self.clients.logs,
                            &self.pacer,
                            &source.group,
                            window,
                            None,
                            |m| lines.visit(m, &pending),
                        )
                        .await;
                        match read {
                            Ok(()) => {}
                            // The group appears with its first line.
                            Err(logs::LogsError::Aws(e)) if is_not_found(&e) => {}
                            Err(e) if routing == Routing::Auto => {
                                access_source = Some(Err(format!(
                                    "API Gateway's access log {} of stage {} could not be read ({}), so it did not prove routing",
                                    source.group,
                                    plan.stage.name,
                                    first_sentence(&Error::from(e).to_string())
                                )));
                                access_lines = None;
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
            // Lambda ids the access log gave for requests the execution log
            // has not proven: their REPORTs, wherever they are.
            let access_ids: HashSet<String> = match &access_lines {
                Some(lines) => invocations
                    .iter()
                    .filter_map(|i| i.request_id.text())
                    .filter(|id| needs_access(&chains, id, own_function, &others, &reports))
                    .filter_map(|id| lines.get(&id)?.line.integration_request_id.clone())
                    .filter(|l| !other_reports.contains_key(l))
                    .collect(),
                None => HashSet::new(),
            };
            let wanted_reports: HashSet<String> = chains
                .lambda_ids_of(own_function)
                .into_iter()
                .chain(access_ids.iter().cloned())
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
            // Not in the stage's own group: another stage's function ran them.
            let elsewhere: HashSet<String> = access_ids
                .into_iter()
                .filter(|id| !reports.contains_key(id))
                .collect();
            if !elsewhere.is_empty() {
                for (stage, other_group, isolated) in &other_groups {
                    let mut found = HashMap::new();
                    let read = logs::scan(
                        &self.clients.logs,
                        &self.pacer,
                        other_group,
                        window,
                        Some(execution::REPORT_TERMS),
                        |m| {
                            // Cheap test first, as in `visit_report`: an
                            // emulator ignores the filter and sends every line.
                            if !(m.contains("REPORT RequestId") || m.contains("platform.report")) {
                                return;
                            }
                            if let Some(report) = lines::parse_report(m)
                                && elsewhere.contains(&report.request_id)
                            {
                                found.insert(
                                    report.request_id,
                                    OtherReport {
                                        stage: stage.clone(),
                                        group: other_group.clone(),
                                        line: m.to_string(),
                                    },
                                );
                            }
                        },
                    )
                    .await;
                    match read {
                        Ok(()) => {}
                        // A stage whose function never ran has no group.
                        Err(logs::LogsError::Aws(e)) if is_not_found(&e) => {}
                        // The preflight checked the isolated stages' groups;
                        // another stage's may be out of the credentials'
                        // reach, and only narrows where a REPORT is looked for.
                        Err(_) if !isolated => {}
                        Err(e) => return Err(e.into()),
                    }
                    for (id, report) in found {
                        other_reports.entry(id).or_insert(report);
                    }
                }
            }
            let access_of = |i: &InvocationRecord| {
                access_routed(
                    i.request_id
                        .text()
                        .and_then(|id| access_lines.as_ref()?.get(&id)),
                    &reports,
                    &other_reports,
                )
            };
            // Settled: proven, or shown by API Gateway's logs to have gone
            // elsewhere, which no later line can undo.
            let settled = invocations.iter().all(|i| {
                let f = by_function && is_found(plan, i, &seen, mode);
                let verdict = routed(i, &chains, own_function, &others, &reports);
                let access = access_of(i);
                routing.proves(
                    f,
                    verdict == Routed::Proven || access == AccessRouted::Proven,
                ) || verdict.is_final()
                    || access.is_final()
            });
            // A stage that writes execution logs for the run is waited for
            // too (its lines may lag the function's): what it shows of each
            // request (a leak, the time split) is worth the wait. One that
            // wrote none for the run is not.
            let execution_settled = chains.is_empty()
                || invocations
                    .iter()
                    .all(|i| routed(i, &chains, own_function, &others, &reports).is_final());
            // So is one that writes access-log lines for the run, for the
            // requests its execution log did not prove.
            let access_settled = access_lines.as_ref().is_none_or(|l| l.is_empty())
                || invocations.iter().all(|i| {
                    i.request_id.text().is_none_or(|id| {
                        !needs_access(&chains, &id, own_function, &others, &reports)
                    }) || access_of(i).is_final()
                });
            let settled = settled && execution_settled && access_settled;
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
        let mut access = by_access.then(|| {
            let source = match &access_source {
                Some(Ok(source)) => Some(source),
                _ => None,
            };
            AccessLogsVerify {
                log_group: source.map(|s| s.group.clone()),
                format_has_integration_request_id: source
                    .is_some_and(|s| s.format.has_integration_request_id()),
                with_lines: access_lines.as_ref().map_or(0, |l| l.len() as u64),
                ..AccessLogsVerify::default()
            }
        });
        let mut by_stage: BTreeMap<&str, StageLeak> = BTreeMap::new();
        let mut splits: Vec<TimeSplit> = plan.steps.iter().map(|_| TimeSplit::default()).collect();
        let (mut proven_by_function, mut proven_by_execution, mut proven_by_access) = (0, 0, 0);
        for invocation in invocations {
            let f = by_function && is_found(plan, invocation, &seen, mode);
            let verdict = routed(invocation, &chains, own_function, &others, &reports);
            let e = verdict == Routed::Proven;
            let entry = invocation
                .request_id
                .text()
                .and_then(|id| access_lines.as_ref()?.get(&id));
            let access_verdict = access_routed(entry, &reports, &other_reports);
            let a = access_verdict == AccessRouted::Proven;
            proven_by_function += u64::from(f);
            proven_by_execution += u64::from(e);
            proven_by_access += u64::from(a);
            // The execution log splits the time of the requests it proved;
            // the access log's integration latency those it did not.
            let from_execution = || {
                let chain = chains.get(&invocation.request_id.text()?)?;
                let report = reports.get(chain.lambda_request_id.as_ref()?)?;
                Some((chain.integration_latency_ms, report))
            };
            let from_access = || {
                let line = &entry?.line;
                line.integration_latency_ms?;
                let report = reports.get(line.integration_request_id.as_ref()?)?;
                Some((line.integration_latency_ms, report))
            };
            let timed = if e {
                from_execution()
            } else if a {
                from_access()
            } else {
                None
            };
            if let Some((integration_ms, report)) = timed
                && let Some(split) = splits.get_mut(invocation.step as usize)
            {
                if invocation.warmup {
                    split.record_warmup(report.init_ms);
                } else {
                    split.record(
                        u64::from(invocation.service_us),
                        integration_ms,
                        report.duration_ms,
                        report.init_ms,
                    );
                }
            }
            if let Some(x) = access.as_mut() {
                x.proven += u64::from(a);
                if let AccessRouted::OtherFunction { report, line } = &access_verdict {
                    x.other_function += 1;
                    // A request the execution log already showed going
                    // elsewhere is one leak, with that log's line.
                    let shown = matches!(verdict, Routed::OtherFunction { .. });
                    if !shown && v.isolate_from.iter().any(|s| s.name == report.stage) {
                        let leak = by_stage.entry(report.stage.as_str()).or_default();
                        leak.access = Some(report.group.clone());
                        leak.lines.push(format!(
                            "access log: {line} → Lambda request's REPORT in {} (stage {}): {}",
                            report.group,
                            report.stage,
                            report.line.trim_end()
                        ));
                    }
                }
            }
            if let Some(x) = exec.as_mut() {
                x.proven += u64::from(e);
                match &verdict {
                    Routed::OtherFunction { stage, line, .. } => {
                        x.other_function += 1;
                        if let Some(stage) = stage
                            && v.isolate_from.iter().any(|s| s.name == *stage)
                        {
                            let leak = by_stage.entry(stage).or_default();
                            leak.execution = true;
                            leak.lines.push(line.to_string());
                        }
                    }
                    Routed::ConfigurationError(_) => x.configuration_errors += 1,
                    _ => {}
                }
            }
            if routing.proves(f, e || a) {
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
                    (Routed::NoLines, _) => match (&access_verdict, by_function) {
                        (AccessRouted::OtherFunction { report, .. }, _) => format!(
                            "its access-log line's Lambda request id has its REPORT in {} (stage {}), not in the stage's function group",
                            report.group, report.stage
                        ),
                        (AccessRouted::Incomplete(why), _) => format!("access log: {why}"),
                        (_, true) => "no log line in the function's logs nor in API Gateway's logs"
                            .to_string(),
                        (_, false) => "no line in API Gateway's logs".to_string(),
                    },
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
                .filter(|(_, split)| !split.client_us.is_empty() || split.warmup_cold_starts > 0)
                .map(|(step, split)| time_split(&step.name, split))
                .collect();
            // A stage whose access log proved every request needs no
            // advice on its execution log.
            let access_proved_all = by_access && proven_by_access == invocations.len() as u64;
            if access_proved_all && x.proven == 0 {
                x.note = None;
            } else if x.note.is_none() && !x.enabled && !invocations.is_empty() {
                x.note = Some(no_lines_note(
                    plan,
                    x.log_group.as_deref(),
                    x.rest_api.as_deref(),
                ));
            }
            result.execution_logs = Some(x);
        }
        if let Some(mut a) = access {
            result
                .proven_by
                .insert("access_logs".to_string(), proven_by_access);
            // Said only where the access log was needed: a request the
            // execution log did not prove.
            let needed = proven_by_execution < invocations.len() as u64;
            if a.proven == 0 && needed && !request_ids.is_empty() {
                a.note = access_note(
                    plan,
                    access_source.as_ref(),
                    access_scanned && a.with_lines == 0,
                );
            }
            result.access_logs = Some(a);
        }
        let of = invocations.len() as u64;
        let own = &plan.stage.name;
        let leaks = by_stage
            .into_iter()
            .map(|(stage, leak)| {
                let lines = leak.lines;
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
                let access_group = result
                    .access_logs
                    .as_ref()
                    .and_then(|a| a.log_group.clone())
                    .unwrap_or_default();
                let shows = match (leak.execution, &leak.access) {
                    (true, None) => format!("as API Gateway's execution log {exec_group} shows"),
                    (false, Some(reports)) => format!(
                        "as API Gateway's access log {access_group} and the REPORTs in {reports} show"
                    ),
                    (_, Some(reports)) => format!(
                        "as API Gateway's execution log {exec_group}, its access log {access_group} and the REPORTs in {reports} show"
                    ),
                    (false, None) => "as API Gateway's logs show".to_string(),
                };
                Leak {
                    stage: stage.to_string(),
                    resource: format!("function {function}"),
                    count,
                    of,
                    examples: lines.into_iter().take(EXAMPLES).collect(),
                    message: format!(
                        "{count} of {of} requests sent to stage {own} invoked function {function} (stage {stage}), {shows}"
                    ),
                }
            })
            .collect();
        Ok((result, leaks))
    }

    /// The stage's access log (GetStage's `accessLogSettings`): its group
    /// and compiled format, or one sentence on why there is none.
    async fn access_source(
        &self,
        plan: &Plan,
        rest_api: &str,
    ) -> Result<Result<AccessSource, String>, Error> {
        let stage = &plan.stage.name;
        let api = &self.clients.apigateway;
        self.get_stage_calls.fetch_add(1, Ordering::Relaxed);
        let out = api
            .get_stage()
            .rest_api_id(rest_api)
            .stage_name(stage)
            .send()
            .await
            .map_err(|e| {
                Error::from(api.error(
                    "GetStage",
                    &format!("stage {stage} of REST API {rest_api}"),
                    &e,
                ))
            })?;
        let settings = out.access_log_settings();
        let (Some(format), Some(destination)) = (
            settings.and_then(|s| s.format()).filter(|f| !f.is_empty()),
            settings
                .and_then(|s| s.destination_arn())
                .filter(|d| !d.is_empty()),
        ) else {
            return Ok(Err(format!(
                "stage {stage} writes no access log, so only its execution log and the function's logs could prove routing: {}",
                how_to_enable_access(rest_api, stage)
            )));
        };
        let Some(group) = access::log_group_of_destination(destination) else {
            return Ok(Err(format!(
                "stage {stage}'s access log goes to {destination}, not to a CloudWatch Logs group, so it cannot be read back to prove routing"
            )));
        };
        Ok(Ok(AccessSource {
            group: group.to_string(),
            format: AccessFormat::compile(format),
            rest_api: rest_api.to_string(),
        }))
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

/// The stage's access log as found.
struct AccessSource {
    group: String,
    format: AccessFormat,
    rest_api: String,
}

impl AccessSource {
    /// Lines of this format can prove routing: they carry API Gateway's
    /// request id (to find the run's requests) and Lambda's (to find the REPORT).
    fn usable(&self) -> bool {
        self.format.has_request_id() && self.format.has_integration_request_id()
    }
}

/// A Lambda `REPORT` found in another stage's function group.
#[derive(Debug, Clone, PartialEq)]
struct OtherReport {
    stage: String,
    group: String,
    line: String,
}

/// What one stage's leak through the stage's function was shown by.
#[derive(Default)]
struct StageLeak {
    lines: Vec<String>,
    execution: bool,
    /// The function group whose REPORTs the access log led to.
    access: Option<String>,
}

/// One request's verdict from API Gateway's access log.
#[derive(Debug, PartialEq)]
enum AccessRouted<'a> {
    /// Its Lambda request id's `REPORT` is in the stage's own function group.
    Proven,
    /// No line for the request (yet).
    NoLine,
    /// A line without Lambda's request id (API Gateway invoked nothing, or
    /// the line was cut): no later read changes it.
    NoInvocation,
    /// A line, but the `REPORT` is not found (yet).
    Incomplete(String),
    /// The `REPORT` is in another stage's function group.
    OtherFunction {
        report: &'a OtherReport,
        line: &'a str,
    },
}

impl AccessRouted<'_> {
    fn is_final(&self) -> bool {
        matches!(
            self,
            AccessRouted::Proven | AccessRouted::NoInvocation | AccessRouted::OtherFunction { .. }
        )
    }
}

/// Whether a request's access-log line can add anything to what the
/// execution log holds: not once that log has its Lambda request id (the
/// access line's would be the same) or a final verdict.
fn needs_access(
    chains: &Chains<'_>,
    request_id: &str,
    own_function: &str,
    others: &[(String, String)],
    reports: &HashMap<String, Report>,
) -> bool {
    let chain = chains.get(request_id);
    chain.and_then(|c| c.lambda_request_id.as_ref()).is_none()
        && !execution::judge(chain, own_function, others, reports).is_final()
}

fn access_routed<'a>(
    entry: Option<&'a access::Entry>,
    reports: &HashMap<String, Report>,
    others: &'a HashMap<String, OtherReport>,
) -> AccessRouted<'a> {
    let Some(entry) = entry else {
        return AccessRouted::NoLine;
    };
    let Some(lambda) = &entry.line.integration_request_id else {
        return AccessRouted::NoInvocation;
    };
    if reports.contains_key(lambda) {
        return AccessRouted::Proven;
    }
    match others.get(lambda) {
        Some(report) => AccessRouted::OtherFunction {
            report,
            line: &entry.text,
        },
        None => AccessRouted::Incomplete(format!(
            "no REPORT for Lambda request id {lambda} in the function's log group"
        )),
    }
}

/// The other stages' function groups (the scenario's stages and
/// `isolate_from`), where a REPORT the stage's own group lacks may be, and
/// whether the stage is one isolation is checked from (its group was
/// checked readable before the traffic).
fn other_function_groups(plan: &Plan) -> Vec<(String, String, bool)> {
    let own = &plan.stage.backends.log_group;
    let mut groups: Vec<(String, String, bool)> = Vec::new();
    for stage in plan.verify.isolate_from.iter().chain(&plan.stages) {
        let group = &stage.backends.log_group;
        if stage.name != plan.stage.name
            && group != own
            && !groups.iter().any(|(_, g, _)| g == group)
        {
            let isolated = plan
                .verify
                .isolate_from
                .iter()
                .any(|s| s.name == stage.name);
            groups.push((stage.name.clone(), group.clone(), isolated));
        }
    }
    groups
}

/// An error's first sentence without its full stop, to sit inside another
/// sentence: the fix that follows it is the note's own.
fn first_sentence(text: &str) -> &str {
    let first = text.split(". ").next().unwrap_or(text);
    first.trim_end().trim_end_matches('.')
}

fn is_not_found(e: &crate::error::AwsError) -> bool {
    matches!(&e.failure, crate::error::AwsFailure::Service { code } if code == "ResourceNotFoundException")
}

/// How to give a stage an access log that proves routing, as the end of
/// one sentence.
fn how_to_enable_access(rest_api: &str, stage: &str) -> String {
    format!(
        "add `$context.integration.requestId` (with `$context.requestId`) to its access-log format (`aws apigateway update-stage --rest-api-id {rest_api} --stage-name {stage} --patch-operations op=replace,path=/accessLogSettings/destinationArn,value=arn:aws:logs:REGION:ACCOUNT:log-group:NAME 'op=replace,path=/accessLogSettings/format,value={{\"requestId\":\"$context.requestId\",\"integrationRequestId\":\"$context.integration.requestId\"}}'`) and API Gateway's access log proves which function each request invoked"
    )
}

/// Why the access log proved nothing, in one sentence.
fn access_note(
    plan: &Plan,
    source: Option<&Result<AccessSource, String>>,
    no_lines: bool,
) -> Option<String> {
    let stage = &plan.stage.name;
    match source {
        None => Some(format!(
            "the REST API id of stage {stage} is not known (no execute-api base URL, no `[verify] rest_api`, no execution-log group), so its access log was not read: set `[verify] rest_api` to its id"
        )),
        Some(Err(note)) => Some(note.clone()),
        Some(Ok(s)) if !s.format.has_request_id() => Some(format!(
            "stage {stage}'s access-log format has no `$context.requestId`, so its lines cannot be tied to the client's requests: {}",
            how_to_enable_access(&s.rest_api, stage)
        )),
        Some(Ok(s)) if !s.format.has_integration_request_id() => Some(format!(
            "stage {stage}'s access-log format has no `$context.integration.requestId`, so its lines cannot say which function ran: {}",
            how_to_enable_access(&s.rest_api, stage)
        )),
        Some(Ok(s)) if no_lines => Some(format!(
            "stage {stage}'s access log {} holds no line for this run's requests",
            s.group
        )),
        Some(Ok(_)) => None,
    }
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
        warmup_cold_starts: split.warmup_cold_starts,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str) -> Report {
        lines::parse_report(&format!(
            "REPORT RequestId: {id}\tDuration: 3.10 ms\tBilled Duration: 4 ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB"
        ))
        .unwrap()
    }

    #[test]
    fn an_access_line_is_judged_by_where_its_lambda_ids_report_is() {
        let format = AccessFormat::compile("$context.requestId $context.integration.requestId");
        let wanted: HashSet<String> = ["r-1", "r-2", "r-3", "r-4"].map(String::from).into();
        let mut lines = AccessLines::new(format);
        for line in ["r-1 l-1", "r-2 l-2", "r-3 -", "r-4 l-4"] {
            lines.visit(line, &wanted);
        }
        let reports = HashMap::from([("l-1".to_string(), report("l-1"))]);
        let elsewhere = OtherReport {
            stage: "prod".into(),
            group: "/aws/lambda/user-service".into(),
            line: "REPORT RequestId: l-2\tDuration: 1 ms".into(),
        };
        let others = HashMap::from([("l-2".to_string(), elsewhere.clone())]);
        let verdict = |id: &str| access_routed(lines.get(id), &reports, &others);
        assert_eq!(verdict("r-1"), AccessRouted::Proven);
        assert_eq!(
            verdict("r-2"),
            AccessRouted::OtherFunction {
                report: &elsewhere,
                line: "r-2 l-2"
            }
        );
        // `-`: API Gateway invoked nothing; no later line changes that.
        assert_eq!(verdict("r-3"), AccessRouted::NoInvocation);
        assert!(verdict("r-3").is_final());
        assert!(matches!(verdict("r-4"), AccessRouted::Incomplete(why) if why.contains("l-4")));
        assert!(!verdict("r-4").is_final());
        assert_eq!(verdict("r-5"), AccessRouted::NoLine);
    }

    #[test]
    fn the_access_log_is_asked_only_what_the_execution_log_lacks() {
        let wanted: HashSet<String> = ["r-1", "r-2", "r-3"].map(String::from).into();
        let mut chains = Chains::new(&wanted);
        // r-1: the execution log has its Lambda id (its REPORT not read yet);
        // r-2: only a first line; r-3: nothing.
        chains.visit("(r-1) Endpoint request URI: https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/arn:aws:lambda:us-east-1:1:function:test-user-service/invocations");
        chains.visit("(r-1) AWS Integration Endpoint RequestId : l-1");
        chains.visit("(r-2) HTTP Method: GET, Resource Path: /user/{id}");
        let others = vec![("prod".to_string(), "user-service".to_string())];
        let reports = HashMap::new();
        let needs = |id: &str| needs_access(&chains, id, "test-user-service", &others, &reports);
        assert!(!needs("r-1"));
        assert!(needs("r-2"));
        assert!(needs("r-3"));
    }
}
