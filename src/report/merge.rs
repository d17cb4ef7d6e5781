//! Merging shards' summaries into one, exactly: histograms are decoded and
//! added bucket by bucket, counts summed, timeline spans aligned by `t`, and the
//! thresholds judged again on the merged numbers. Also the `merge` command.
//!
//! Two figures cannot be merged exactly because the summary keeps only their
//! numbers, not a histogram: `schedule_lag_ms` (the slowest shard's
//! percentiles are kept, an upper bound) and a timeline point's per-step
//! p50/p99 (request-weighted p50, highest p99). A timeline point's overall
//! p50/p99 is exact when every shard saved that second's histogram (summaries
//! from this version on do).
//!
//! Verification merges by summing each shard's counts (every shard checks its
//! own writes); `logs.invocations` counts every `START` line in a shard's
//! window, shared by all shards, so the merge keeps the highest.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::metrics::{
    ErrorCounts, LatencySummary, decode_histogram, encode_histogram, new_histogram,
};
use crate::summary::{
    AccessLogsVerify, ChecksSummary, CleanupSummary, ColdTail, DynamoVerify, ExecutionLogsVerify,
    IsolationVerify, Leak, LogsVerify, StepSummary, StepTimeSplit, Summary, TimeSplitHistograms,
    TimelinePoint, Totals, VerifySummary, WarmupStep, WarmupSummary, rfc3339, timeline,
};
use crate::thresholds::Threshold;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot merge: {0}")]
pub struct MergeError(pub String);

/// Merges summaries of one scenario (normally its shards) into one.
pub fn merge(parts: &[Summary]) -> Result<Summary, MergeError> {
    let Some((first, rest)) = parts.split_first() else {
        return Err(MergeError("no summaries given".to_string()));
    };
    for (i, other) in rest.iter().enumerate() {
        same_scenario(first, other, i + 2)?;
    }
    let missing_shards = check_shards(parts)?;

    let duration_s = parts.iter().map(|p| p.duration_s).fold(0.0, f64::max);
    let secs = duration_s.max(1e-9);
    let steps = (0..first.steps.len())
        .map(|i| merge_step(parts, i, secs))
        .collect::<Result<Vec<_>, _>>()?;
    let overall = add_histograms(parts.iter().map(|p| (&p.totals.histogram, describe(p))))?;
    let sum = |f: fn(&Totals) -> u64| parts.iter().map(|p| f(&p.totals)).sum::<u64>();
    let requests = sum(|t| t.requests);
    let totals = Totals {
        requests,
        failed: sum(|t| t.failed),
        throttled: sum(|t| t.throttled),
        rps: requests as f64 / secs,
        target_rate: first.totals.target_rate,
        iterations: sum(|t| t.iterations),
        completed_iterations: sum(|t| t.completed_iterations),
        failed_iterations: sum(|t| t.failed_iterations),
        dropped_iterations: sum(|t| t.dropped_iterations),
        interrupted_iterations: sum(|t| t.interrupted_iterations),
        unstarted_iterations: sum(|t| t.unstarted_iterations),
        errors: add_errors(parts.iter().map(|p| &p.totals.errors)),
        latency_ms: LatencySummary::from_histogram_us(&overall),
        schedule_lag_ms: slowest(
            parts
                .iter()
                .map(|p| (&p.totals.schedule_lag_ms, p.totals.iterations)),
        ),
        histogram: encode_histogram(&overall),
    };

    let mut checks = first.checks.clone();
    for (i, detail) in checks.details.iter_mut().enumerate() {
        for other in rest {
            let theirs = &other.checks.details[i];
            detail.passed += theirs.passed;
            detail.failed += theirs.failed;
            if detail.example_failure.is_none() {
                detail.example_failure.clone_from(&theirs.example_failure);
            }
        }
    }
    checks = ChecksSummary::new(checks.details);

    let mut stopped_by: Vec<String> = Vec::new();
    for reason in parts.iter().filter_map(|p| p.stopped_by.clone()) {
        if !stopped_by.contains(&reason) {
            stopped_by.push(reason);
        }
    }
    if let Some(missing) = &missing_shards {
        stopped_by.push(missing.clone());
    }
    let mut run_ids: Vec<&str> = Vec::new();
    for p in parts {
        for id in p.run_id.split('+') {
            if !run_ids.contains(&id) {
                run_ids.push(id);
            }
        }
    }

    let mut merged = Summary {
        version: first.version,
        scenario: first.scenario.clone(),
        scenario_file: first.scenario_file.clone(),
        stage: first.stage.clone(),
        base_url: first.base_url.clone(),
        run_id: run_ids.join("+"),
        model: first.model.clone(),
        started_at: earliest(parts.iter().map(|p| p.started_at.as_str())),
        start_skew_s: start_skew_s(parts),
        duration_s,
        partial: parts.iter().any(|p| p.partial) || missing_shards.is_some(),
        stopped_by: (!stopped_by.is_empty()).then(|| stopped_by.join("; ")),
        shard: None,
        merged_from: parts
            .iter()
            .flat_map(|p| {
                if p.merged_from.is_empty() {
                    vec![describe(p)]
                } else {
                    p.merged_from.clone()
                }
            })
            .collect(),
        totals,
        steps,
        checks,
        thresholds: Vec::new(),
        timeline: merge_timeline(parts)?,
        verify: merge_verify(parts)?,
        warmup: merge_warmup(parts)?,
        // Shards that ran against one deployment keep its evidence; shards
        // that did not have none to give.
        deployment: first
            .deployment
            .clone()
            .filter(|d| parts.iter().all(|p| p.deployment.as_ref() == Some(d))),
        passed: true,
        reasons: Vec::new(),
    };
    rejudge(&mut merged, &first.thresholds)?;
    Ok(merged)
}

/// Parses the rules again from their text and evaluates them on `summary`,
/// as the run did at its end.
fn rejudge(
    summary: &mut Summary,
    rules: &[crate::summary::ThresholdResult],
) -> Result<(), MergeError> {
    let step_names: Vec<String> = summary.steps.iter().map(|s| s.name.clone()).collect();
    let rules = rules
        .iter()
        .map(|r| {
            Threshold::parse(&r.expr, &step_names)
                .map(|mut rule| {
                    rule.implicit = r.implicit;
                    rule
                })
                .map_err(|e| MergeError(format!("threshold {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    summary.judge(&rules);
    Ok(())
}

/// `run sc… (shard 1/2)`: how a part is named in messages and `merged_from`.
fn describe(s: &Summary) -> String {
    match &s.shard {
        Some(shard) => format!("{} shard {shard}", s.run_id),
        None => s.run_id.clone(),
    }
}

fn same_scenario(first: &Summary, other: &Summary, n: usize) -> Result<(), MergeError> {
    let differ = |what: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
        Err(MergeError(format!(
            "summary 1 and summary {n} are not shards of one run: {what} {a:?} vs {b:?}"
        )))
    };
    if first.scenario != other.scenario {
        return differ("scenario", &first.scenario, &other.scenario);
    }
    if first.stage != other.stage {
        return differ("stage", &first.stage, &other.stage);
    }
    if first.model != other.model {
        return differ("load model", &first.model, &other.model);
    }
    if first.totals.target_rate != other.totals.target_rate {
        return differ(
            "target rate",
            &first.totals.target_rate,
            &other.totals.target_rate,
        );
    }
    let steps = |s: &Summary| -> Vec<String> {
        s.steps
            .iter()
            .map(|st| format!("{} {} {}", st.name, st.method, st.path))
            .collect()
    };
    if steps(first) != steps(other) {
        return differ("steps", &steps(first), &steps(other));
    }
    let checks = |s: &Summary| -> Vec<String> {
        s.checks
            .details
            .iter()
            .map(|c| format!("{}: {}", c.step, c.name))
            .collect()
    };
    if checks(first) != checks(other) {
        return differ("checks", &checks(first), &checks(other));
    }
    // Verification adds its own default rules: say the cause, not the symptom.
    if first.verify.is_some() != other.verify.is_some() {
        let (with, without) = if first.verify.is_some() {
            (1, n)
        } else {
            (n, 1)
        };
        return Err(MergeError(format!(
            "summary {without} ran without backend verification (--no-verify) and summary {with} with it; run every shard the same way"
        )));
    }
    let rules =
        |s: &Summary| -> Vec<String> { s.thresholds.iter().map(|t| t.expr.clone()).collect() };
    if rules(first) != rules(other) {
        return differ("thresholds", &rules(first), &rules(other));
    }
    Ok(())
}

/// Shards must come from one split (same N, each I once); whole runs may be
/// merged with each other but not with shards. Returns why the merge is
/// incomplete when shards are missing.
fn check_shards(parts: &[Summary]) -> Result<Option<String>, MergeError> {
    let mut seen_runs: Vec<String> = Vec::new();
    for p in parts {
        let id = describe(p);
        if seen_runs.contains(&id) {
            return Err(MergeError(format!("{id} is given twice")));
        }
        seen_runs.push(id);
    }
    let labels: Vec<Option<(u32, u32)>> = parts
        .iter()
        .map(|p| p.shard.as_deref().and_then(parse_shard))
        .collect();
    if labels.iter().all(Option::is_none) {
        // Two whole runs are two measurements of the same load, not parts
        // of one: adding them would report a rate nobody sent.
        if parts.len() > 1 && parts.iter().all(|p| p.merged_from.is_empty()) {
            return Err(MergeError(
                "these summaries are whole runs, not shards of one run: merge adds up the shards of one run started with `run --shard I/N` (compare two runs with `stagecheck compare`)".to_string(),
            ));
        }
        return Ok(None);
    }
    let Some(shards) = labels.iter().copied().collect::<Option<Vec<_>>>() else {
        return Err(MergeError(
            "some summaries are shards (--shard I/N) and some are not".to_string(),
        ));
    };
    let count = shards[0].1;
    if let Some((_, other)) = shards.iter().find(|(_, n)| *n != count) {
        return Err(MergeError(format!(
            "shards of different splits: /{count} and /{other}"
        )));
    }
    let mut indexes: Vec<u32> = shards.iter().map(|(i, _)| *i).collect();
    indexes.sort_unstable();
    if let Some(w) = indexes.windows(2).find(|w| w[0] == w[1]) {
        return Err(MergeError(format!(
            "shard {}/{count} is given twice (from two runs)",
            w[0]
        )));
    }
    let missing: Vec<String> = (1..=count)
        .filter(|i| !indexes.contains(i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    Ok((!missing.is_empty()).then(|| {
        format!(
            "merged {} of {count} shards (missing {})",
            indexes.len(),
            missing.join(", ")
        )
    }))
}

fn parse_shard(label: &str) -> Option<(u32, u32)> {
    let (i, n) = label.split_once('/')?;
    Some((i.trim().parse().ok()?, n.trim().parse().ok()?))
}

fn merge_step(parts: &[Summary], i: usize, secs: f64) -> Result<StepSummary, MergeError> {
    fn step_of(p: &Summary, i: usize) -> &StepSummary {
        &p.steps[i]
    }
    let mine = |p| step_of(p, i);
    let first = mine(&parts[0]);
    let latency = add_histograms(parts.iter().map(|p| (&mine(p).histogram, describe(p))))?;
    let service = add_histograms(
        parts
            .iter()
            .map(|p| (&mine(p).service_histogram, describe(p))),
    )?;
    let mut status = BTreeMap::new();
    for p in parts {
        for (code, n) in &mine(p).status {
            *status.entry(code.clone()).or_insert(0) += n;
        }
    }
    let requests = parts.iter().map(|p| mine(p).requests).sum::<u64>();
    Ok(StepSummary {
        name: first.name.clone(),
        method: first.method.clone(),
        path: first.path.clone(),
        requests,
        failed: parts.iter().map(|p| mine(p).failed).sum(),
        throttled: parts.iter().map(|p| mine(p).throttled).sum(),
        rps: requests as f64 / secs,
        status,
        errors: add_errors(parts.iter().map(|p| &mine(p).errors)),
        latency_ms: LatencySummary::from_histogram_us(&latency),
        service_time_ms: LatencySummary::from_histogram_us(&service),
        histogram: encode_histogram(&latency),
        service_histogram: encode_histogram(&service),
    })
}

/// Adds serialized histograms; `who` names the part in an error.
fn add_histograms<'a>(
    encoded: impl Iterator<Item = (&'a String, String)>,
) -> Result<Histogram<u64>, MergeError> {
    let mut sum = new_histogram();
    for (text, who) in encoded {
        let hist = decode_histogram(text).map_err(|e| {
            MergeError(format!(
                "{who}: {e} (merge needs summaries written by `run --out`)"
            ))
        })?;
        sum.add(hist)
            .map_err(|e| MergeError(format!("{who}: histogram out of range: {e:?}")))?;
    }
    Ok(sum)
}

/// The shards' warmups added: counts summed, histograms added step by step.
fn merge_warmup(parts: &[Summary]) -> Result<Option<WarmupSummary>, MergeError> {
    let warmups: Vec<(&WarmupSummary, String)> = parts
        .iter()
        .filter_map(|p| p.warmup.as_ref().map(|w| (w, describe(p))))
        .collect();
    let Some((first, _)) = warmups.first() else {
        return Ok(None);
    };
    let mut overall = new_histogram();
    let mut steps = Vec::with_capacity(first.steps.len());
    for (i, step) in first.steps.iter().enumerate() {
        let hist = add_histograms(
            warmups
                .iter()
                .filter_map(|(w, who)| w.steps.get(i).map(|s| (&s.histogram, who.clone()))),
        )?;
        overall
            .add(&hist)
            .map_err(|e| MergeError(format!("warmup histogram out of range: {e:?}")))?;
        steps.push(WarmupStep {
            name: step.name.clone(),
            requests: warmups
                .iter()
                .filter_map(|(w, _)| w.steps.get(i))
                .map(|s| s.requests)
                .sum(),
            failed: warmups
                .iter()
                .filter_map(|(w, _)| w.steps.get(i))
                .map(|s| s.failed)
                .sum(),
            latency_ms: LatencySummary::from_histogram_us(&hist),
            histogram: encode_histogram(&hist),
        });
    }
    let sum = |f: fn(&WarmupSummary) -> u64| warmups.iter().map(|(w, _)| f(w)).sum::<u64>();
    Ok(Some(WarmupSummary {
        duration_s: warmups
            .iter()
            .map(|(w, _)| w.duration_s)
            .fold(0.0, f64::max),
        iterations: sum(|w| w.iterations),
        requests: sum(|w| w.requests),
        failed: sum(|w| w.failed),
        checks_failed: sum(|w| w.checks_failed),
        latency_ms: LatencySummary::from_histogram_us(&overall),
        steps,
    }))
}

fn add_errors<'a>(parts: impl Iterator<Item = &'a ErrorCounts>) -> ErrorCounts {
    parts.fold(ErrorCounts::default(), |acc, e| ErrorCounts {
        connect: acc.connect + e.connect,
        timeout: acc.timeout + e.timeout,
        io: acc.io + e.io,
    })
}

/// Without histograms, the slowest part's percentiles: an upper bound.
fn slowest<'a>(parts: impl Iterator<Item = (&'a LatencySummary, u64)>) -> LatencySummary {
    let parts: Vec<_> = parts.filter(|(_, n)| *n > 0).collect();
    let weight: u64 = parts.iter().map(|(_, n)| n).sum();
    let Some(first) = parts.first() else {
        return LatencySummary::default();
    };
    let mut out = *first.0;
    for (l, _) in &parts[1..] {
        out.min = out.min.min(l.min);
        out.p50 = out.p50.max(l.p50);
        out.p90 = out.p90.max(l.p90);
        out.p95 = out.p95.max(l.p95);
        out.p99 = out.p99.max(l.p99);
        out.p999 = out.p999.max(l.p999);
        out.max = out.max.max(l.max);
    }
    out.mean = parts.iter().map(|(l, n)| l.mean * *n as f64).sum::<f64>() / weight as f64;
    out
}

/// Shards' points of the same span added. Timelines folded to different
/// widths (shards of different lengths) are first folded to the coarsest:
/// spans are aligned powers of two, so a coarse span holds whole fine ones.
fn merge_timeline(parts: &[Summary]) -> Result<Vec<TimelinePoint>, MergeError> {
    let width = parts
        .iter()
        .flat_map(|p| p.timeline.iter().map(|point| point.width_s.max(1)))
        .max()
        .unwrap_or(1);
    let mut spans: BTreeMap<u64, Vec<&TimelinePoint>> = BTreeMap::new();
    for p in parts {
        for point in &p.timeline {
            spans
                .entry(point.t / width * width)
                .or_default()
                .push(point);
        }
    }
    spans
        .into_iter()
        .map(|(t, points)| {
            timeline::combine(t, width, &points).map_err(|e| {
                MergeError(format!(
                    "timeline second {t}: {e} (merge needs summaries written by `run --out`)"
                ))
            })
        })
        .collect()
}

/// Examples kept per list in a merged verification, as a single run keeps.
const EXAMPLES: usize = 10;

fn merge_verify(parts: &[Summary]) -> Result<Option<VerifySummary>, MergeError> {
    let verified: Vec<&VerifySummary> = parts.iter().filter_map(|p| p.verify.as_ref()).collect();
    if verified.is_empty() {
        return Ok(None);
    }
    if verified.len() != parts.len() {
        return Err(MergeError(
            "some summaries have backend verification and some do not (--no-verify on some shards?)"
                .to_string(),
        ));
    }
    let examples = |lists: &mut dyn Iterator<Item = &Vec<String>>| -> Vec<String> {
        lists.flatten().take(EXAMPLES).cloned().collect()
    };
    let dynamo: Vec<&DynamoVerify> = verified
        .iter()
        .filter_map(|v| v.dynamodb.as_ref())
        .collect();
    let logs: Vec<&LogsVerify> = verified.iter().filter_map(|v| v.logs.as_ref()).collect();
    let isolation: Vec<&IsolationVerify> = verified
        .iter()
        .filter_map(|v| v.isolation.as_ref())
        .collect();
    let cleanup: Vec<&CleanupSummary> =
        verified.iter().filter_map(|v| v.cleanup.as_ref()).collect();
    let mut api_calls = BTreeMap::new();
    for v in &verified {
        for (op, n) in &v.api_calls {
            *api_calls.entry(op.clone()).or_insert(0) += n;
        }
    }
    let execution_logs = merge_execution_logs(&logs)?;
    Ok(Some(VerifySummary {
        dynamodb: dynamo.first().map(|first| DynamoVerify {
            table: first.table.clone(),
            written: dynamo.iter().map(|d| d.written).sum(),
            recorded: dynamo.iter().map(|d| d.recorded).sum(),
            sampled: dynamo.iter().any(|d| d.sampled),
            checked: dynamo.iter().map(|d| d.checked).sum(),
            found: dynamo.iter().map(|d| d.found).sum(),
            missing: dynamo.iter().map(|d| d.missing).sum(),
            mismatched: dynamo.iter().map(|d| d.mismatched).sum(),
            examples: examples(&mut dynamo.iter().map(|d| &d.examples)),
        }),
        logs: logs.first().map(|first| LogsVerify {
            log_group: first.log_group.clone(),
            checked: logs.iter().map(|l| l.checked).sum(),
            found: logs.iter().map(|l| l.found).sum(),
            missing: logs.iter().map(|l| l.missing).sum(),
            invocations: logs.iter().map(|l| l.invocations).max().unwrap_or(0),
            waited_s: logs.iter().map(|l| l.waited_s).fold(0.0, f64::max),
            examples: examples(&mut logs.iter().map(|l| &l.examples)),
            routing: first.routing.clone(),
            proven_by: {
                let mut by = BTreeMap::new();
                for l in &logs {
                    for (channel, n) in &l.proven_by {
                        *by.entry(channel.clone()).or_insert(0) += n;
                    }
                }
                by
            },
            execution_logs,
            access_logs: merge_access_logs(&logs),
        }),
        isolation: isolation.first().map(|_| {
            let mut stages: Vec<String> = Vec::new();
            let mut leaks: Vec<Leak> = Vec::new();
            for i in &isolation {
                for stage in &i.stages {
                    if !stages.contains(stage) {
                        stages.push(stage.clone());
                    }
                }
                for leak in &i.leaks {
                    match leaks
                        .iter_mut()
                        .find(|l| l.stage == leak.stage && l.resource == leak.resource)
                    {
                        Some(l) => {
                            l.count += leak.count;
                            l.of += leak.of;
                            l.examples.extend(leak.examples.iter().cloned());
                            l.examples.truncate(EXAMPLES);
                        }
                        None => leaks.push(leak.clone()),
                    }
                }
            }
            IsolationVerify {
                ok: isolation.iter().all(|i| i.ok),
                stages,
                leaks,
            }
        }),
        cleanup: cleanup.first().map(|first| CleanupSummary {
            table: first.table.clone(),
            deleted: cleanup.iter().map(|c| c.deleted).sum(),
            skipped: cleanup.iter().map(|c| c.skipped).sum(),
            failed: cleanup.iter().map(|c| c.failed).sum(),
        }),
        api_calls,
    }))
}

/// Shards ran against the same stage: its access log is one; the counts add
/// up, and the note stays only when no shard proved anything through it.
fn merge_access_logs(logs: &[&LogsVerify]) -> Option<AccessLogsVerify> {
    let parts: Vec<&AccessLogsVerify> =
        logs.iter().filter_map(|l| l.access_logs.as_ref()).collect();
    let first = parts.first()?;
    let known = parts
        .iter()
        .find(|p| p.log_group.is_some())
        .unwrap_or(first);
    let proven = parts.iter().map(|p| p.proven).sum();
    Some(AccessLogsVerify {
        log_group: known.log_group.clone(),
        format_has_integration_request_id: parts
            .iter()
            .any(|p| p.format_has_integration_request_id),
        with_lines: parts.iter().map(|p| p.with_lines).sum(),
        proven,
        other_function: parts.iter().map(|p| p.other_function).sum(),
        note: if proven > 0 {
            None
        } else {
            parts.iter().find_map(|p| p.note.clone())
        },
    })
}

/// Shards ran against the same stage: its execution-log group is one; the
/// counts add up, and the note stays only when no shard saw the log on.
fn merge_execution_logs(logs: &[&LogsVerify]) -> Result<Option<ExecutionLogsVerify>, MergeError> {
    let parts: Vec<&ExecutionLogsVerify> = logs
        .iter()
        .filter_map(|l| l.execution_logs.as_ref())
        .collect();
    let Some(first) = parts.first() else {
        return Ok(None);
    };
    let known = parts
        .iter()
        .find(|p| p.log_group.is_some())
        .unwrap_or(first);
    let enabled = parts.iter().any(|p| p.enabled);
    Ok(Some(ExecutionLogsVerify {
        log_group: known.log_group.clone(),
        rest_api: known.rest_api.clone(),
        rest_api_from: known.rest_api_from.clone(),
        enabled,
        with_lines: parts.iter().map(|p| p.with_lines).sum(),
        proven: parts.iter().map(|p| p.proven).sum(),
        other_function: parts.iter().map(|p| p.other_function).sum(),
        configuration_errors: parts.iter().map(|p| p.configuration_errors).sum(),
        examples: parts
            .iter()
            .flat_map(|p| &p.examples)
            .take(EXAMPLES)
            .cloned()
            .collect(),
        note: if enabled {
            None
        } else {
            parts.iter().find_map(|p| p.note.clone())
        },
        time_split: merge_time_splits(&parts)?,
    }))
}

/// Each step's split over every shard, from the histograms: exact, as the
/// steps' latencies are.
fn merge_time_splits(parts: &[&ExecutionLogsVerify]) -> Result<Vec<StepTimeSplit>, MergeError> {
    let mut steps: Vec<&str> = Vec::new();
    for split in parts.iter().flat_map(|p| &p.time_split) {
        if !steps.contains(&split.step.as_str()) {
            steps.push(&split.step);
        }
    }
    steps
        .into_iter()
        .map(|step| {
            let of: Vec<&StepTimeSplit> = parts
                .iter()
                .flat_map(|p| &p.time_split)
                .filter(|s| s.step == step)
                .collect();
            let add = |pick: fn(&TimeSplitHistograms) -> &String, name: &str| {
                add_histograms(
                    of.iter()
                        .map(|s| (pick(&s.histograms), format!("step {step}'s {name} time"))),
                )
            };
            let client = add(|h| &h.client, "client")?;
            let api_gateway = add(|h| &h.api_gateway, "API Gateway")?;
            let integration = add(|h| &h.integration, "integration")?;
            let function = add(|h| &h.function, "function")?;
            // Older summaries carry no init histogram: nothing to add.
            let init = add_histograms(
                of.iter()
                    .filter(|s| !s.histograms.init.is_empty())
                    .map(|s| (&s.histograms.init, format!("step {step}'s init time"))),
            )?;
            Ok(StepTimeSplit {
                step: step.to_string(),
                requests: of.iter().map(|s| s.requests).sum(),
                client_ms: LatencySummary::from_histogram_us(&client),
                api_gateway_ms: LatencySummary::from_histogram_us(&api_gateway),
                integration_ms: LatencySummary::from_histogram_us(&integration),
                function_ms: LatencySummary::from_histogram_us(&function),
                cold_starts: of.iter().map(|s| s.cold_starts).sum(),
                init_ms: LatencySummary::from_histogram_us(&init),
                warmup_cold_starts: of.iter().map(|s| s.warmup_cold_starts).sum(),
                clamped: of.iter().map(|s| s.clamped).sum(),
                tail: merge_tails(&of),
                histograms: TimeSplitHistograms {
                    client: encode_histogram(&client),
                    api_gateway: encode_histogram(&api_gateway),
                    integration: encode_histogram(&integration),
                    function: encode_histogram(&function),
                    init: encode_histogram(&init),
                },
            })
        })
        .collect()
}

/// The shards' tails together (`ColdTail` says why not exactly the merged
/// run's): counts added, the tail begins at the fastest shard's beginning.
fn merge_tails(of: &[&StepTimeSplit]) -> Option<ColdTail> {
    let tails: Vec<&ColdTail> = of.iter().filter_map(|s| s.tail.as_ref()).collect();
    (!tails.is_empty()).then(|| ColdTail {
        slowest: tails.iter().map(|t| t.slowest).sum(),
        cold_starts: tails.iter().map(|t| t.cold_starts).sum(),
        from_ms: tails
            .iter()
            .map(|t| t.from_ms)
            .fold(f64::INFINITY, f64::min),
    })
}

/// The earliest RFC 3339 time; text that does not parse is kept only when
/// nothing parses.
/// Seconds between the first and the last start; a merged part brings its
/// own skew along.
fn start_skew_s(parts: &[Summary]) -> Option<f64> {
    let starts: Vec<time::OffsetDateTime> = parts
        .iter()
        .filter_map(|p| {
            time::OffsetDateTime::parse(
                &p.started_at,
                &time::format_description::well_known::Rfc3339,
            )
            .ok()
        })
        .collect();
    let (first, last) = (starts.iter().min()?, starts.iter().max()?);
    let inner = parts
        .iter()
        .filter_map(|p| p.start_skew_s)
        .fold(0.0, f64::max);
    Some(((*last - *first).as_seconds_f64()).max(inner))
}

fn earliest<'a>(times: impl Iterator<Item = &'a str>) -> String {
    let times: Vec<&str> = times.collect();
    times
        .iter()
        .filter_map(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .min()
        .map(|t| rfc3339(t.into()))
        .unwrap_or_else(|| times.first().map(|t| t.to_string()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::StepPoint;
    use crate::summary::{CheckSummary, ThresholdResult};
    use proptest::prelude::*;

    /// A one-step summary whose histograms hold `latencies_us`.
    fn summary(latencies_us: &[u64], shard: Option<&str>, t0: u64) -> Summary {
        let mut hist = new_histogram();
        for v in latencies_us {
            hist.record(*v).unwrap();
        }
        let latency = LatencySummary::from_histogram_us(&hist);
        let n = latencies_us.len() as u64;
        let point = |t| TimelinePoint {
            t,
            width_s: 1,
            requests: n,
            errors: 0,
            p50_ms: latency.p50,
            p99_ms: latency.p99,
            steps: vec![StepPoint {
                requests: n,
                errors: 0,
                p50_ms: latency.p50,
                p99_ms: latency.p99,
            }],
            histogram: (n > 0).then(|| encode_histogram(&hist)),
        };
        Summary {
            version: 1,
            scenario: "s".into(),
            scenario_file: "s.toml".into(),
            stage: "test".into(),
            base_url: "http://127.0.0.1:1/test".into(),
            run_id: format!("sc{}", shard.unwrap_or("x")),
            model: "open".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            duration_s: 2.0,
            partial: false,
            stopped_by: None,
            shard: shard.map(str::to_string),
            merged_from: Vec::new(),
            start_skew_s: None,
            totals: Totals {
                requests: n,
                failed: 0,
                throttled: 0,
                rps: n as f64 / 2.0,
                target_rate: Some(10.0),
                iterations: n,
                completed_iterations: n,
                failed_iterations: 0,
                dropped_iterations: 0,
                interrupted_iterations: 0,
                unstarted_iterations: 0,
                errors: ErrorCounts::default(),
                latency_ms: latency,
                schedule_lag_ms: LatencySummary::default(),
                histogram: encode_histogram(&hist),
            },
            steps: vec![StepSummary {
                name: "get".into(),
                method: "GET".into(),
                path: "/".into(),
                requests: n,
                failed: 0,
                throttled: 0,
                rps: n as f64 / 2.0,
                status: BTreeMap::from([("200".to_string(), n)]),
                errors: ErrorCounts::default(),
                latency_ms: latency,
                service_time_ms: latency,
                histogram: encode_histogram(&hist),
                service_histogram: encode_histogram(&hist),
            }],
            checks: ChecksSummary {
                passed: n,
                failed: 0,
                not_run: 0,
                details: vec![CheckSummary {
                    step: "get".into(),
                    name: "status in [200]".into(),
                    passed: n,
                    failed: 0,
                    example_failure: None,
                }],
            },
            thresholds: vec![ThresholdResult {
                expr: "p99 < 50ms".into(),
                ok: true,
                actual: Some(latency.p99),
                implicit: false,
            }],
            timeline: vec![point(t0), point(t0 + 1)],
            verify: None,
            warmup: None,
            deployment: None,
            passed: true,
            reasons: Vec::new(),
        }
    }

    proptest! {
        #[test]
        fn merging_any_split_equals_the_summary_of_all_samples(
            values in proptest::collection::vec(1u64..100_000_000, 0..300),
            cut in 0usize..300,
        ) {
            let cut = cut.min(values.len());
            let merged = merge(&[
                summary(&values[..cut], Some("1/2"), 0),
                summary(&values[cut..], Some("2/2"), 0),
            ]).unwrap();
            let all = summary(&values, None, 0);
            prop_assert_eq!(merged.totals.requests, all.totals.requests);
            prop_assert_eq!(merged.totals.latency_ms, all.totals.latency_ms);
            prop_assert_eq!(merged.steps[0].latency_ms, all.steps[0].latency_ms);
            prop_assert_eq!(merged.steps[0].service_time_ms, all.steps[0].service_time_ms);
            let back = decode_histogram(&merged.totals.histogram).unwrap();
            prop_assert_eq!(back.len(), values.len() as u64);
            prop_assert_eq!(merged.timeline[0].p99_ms, all.timeline[0].p99_ms);
            prop_assert_eq!(merged.timeline[0].p50_ms, all.timeline[0].p50_ms);
            prop_assert_eq!(merged.thresholds[0].ok, all.totals.latency_ms.p99 < 50.0);
            // No request at all never passes, whatever the rules say.
            prop_assert_eq!(merged.passed, merged.thresholds[0].ok && !values.is_empty());
            prop_assert!(!merged.partial);
        }
    }

    #[test]
    fn thresholds_are_judged_on_the_merged_numbers() {
        // Each shard alone is under 50 ms at p99; together they are not.
        let fast: Vec<u64> = vec![1_000; 99];
        let slow: Vec<u64> = vec![90_000; 5];
        let a = summary(&fast, Some("1/2"), 0);
        let b = summary(&slow, Some("2/2"), 0);
        let merged = merge(&[a, b]).unwrap();
        assert!(!merged.passed);
        assert_eq!(merged.thresholds[0].expr, "p99 < 50ms");
        assert!(merged.thresholds[0].actual.unwrap() > 50.0);
        assert_eq!(merged.merged_from, ["sc1/2 shard 1/2", "sc2/2 shard 2/2"]);
        assert_eq!(merged.run_id, "sc1/2+sc2/2");
    }

    #[test]
    fn seconds_are_aligned_by_t() {
        let merged = merge(&[
            summary(&[1_000, 2_000], Some("1/2"), 0),
            summary(&[3_000], Some("2/2"), 1),
        ])
        .unwrap();
        let requests: Vec<(u64, u64)> = merged.timeline.iter().map(|p| (p.t, p.requests)).collect();
        assert_eq!(requests, [(0, 2), (1, 3), (2, 1)]);
        assert_eq!(merged.timeline[1].steps[0].requests, 3);
        assert!(merged.timeline[1].histogram.is_some());
    }

    #[test]
    fn refuses_what_is_not_one_run() {
        let a = summary(&[1_000], Some("1/2"), 0);
        let mut other = summary(&[1_000], Some("2/2"), 0);
        other.scenario = "other".into();
        assert!(
            merge(&[a.clone(), other])
                .unwrap_err()
                .0
                .contains("scenario")
        );
        let mut renamed = summary(&[1_000], Some("2/2"), 0);
        renamed.steps[0].name = "got".into();
        assert!(
            merge(&[a.clone(), renamed])
                .unwrap_err()
                .0
                .contains("steps")
        );
        assert!(
            merge(&[a.clone(), a.clone()])
                .unwrap_err()
                .0
                .contains("twice")
        );
        let third = summary(&[1_000], Some("2/3"), 0);
        assert!(
            merge(&[a.clone(), third])
                .unwrap_err()
                .0
                .contains("different splits")
        );
        let whole = summary(&[1_000], None, 0);
        assert!(merge(&[a, whole]).unwrap_err().0.contains("some are not"));
        assert!(merge(&[]).is_err());
    }

    #[test]
    fn missing_shards_make_a_partial_result() {
        let merged = merge(&[
            summary(&[1_000], Some("1/3"), 0),
            summary(&[1_000], Some("3/3"), 0),
        ])
        .unwrap();
        assert!(merged.partial);
        assert_eq!(
            merged.stopped_by.as_deref(),
            Some("merged 2 of 3 shards (missing 2/3)")
        );
    }

    #[test]
    fn older_timelines_without_histograms_are_approximated() {
        let mut a = summary(&[1_000, 1_000, 1_000], Some("1/2"), 0);
        let mut b = summary(&[9_000], Some("2/2"), 0);
        for p in a.timeline.iter_mut().chain(b.timeline.iter_mut()) {
            p.histogram = None;
        }
        let merged = merge(&[a, b]).unwrap();
        // Request-weighted p50 (3 × 1 ms and 1 × 9 ms), the highest p99; HDR
        // buckets round 9 ms up by a few µs.
        assert!((merged.timeline[0].p50_ms - 3.0).abs() < 0.01);
        assert!((merged.timeline[0].p99_ms - 9.0).abs() < 0.01);
        assert!(merged.timeline[0].histogram.is_none());
    }

    #[test]
    fn a_longer_shards_folded_timeline_folds_the_others_to_its_width() {
        // Shard 1 kept its two seconds; shard 2 ran longer and folded its
        // seconds in pairs: the merge is one two-second span, exact.
        let a = summary(&[1_000, 1_000], Some("1/2"), 0);
        let mut b = summary(&[9_000], Some("2/2"), 0);
        let pair: Vec<&TimelinePoint> = b.timeline.iter().collect();
        b.timeline = vec![timeline::combine(0, 2, &pair).unwrap()];
        let merged = merge(&[a, b]).unwrap();
        assert_eq!(merged.timeline.len(), 1);
        let span = &merged.timeline[0];
        assert_eq!((span.t, span.width_s), (0, 2));
        assert_eq!(span.requests, 2 * 2 + 2);
        let hist = decode_histogram(span.histogram.as_ref().unwrap()).unwrap();
        assert_eq!(hist.len(), 6);
        assert!((span.p99_ms - 9.0).abs() < 0.01);
    }

    #[test]
    fn verification_counts_add_up_and_must_be_on_every_shard() {
        let verified = |shard, missing| {
            let mut s = summary(&[1_000], Some(shard), 0);
            s.verify = Some(VerifySummary {
                dynamodb: Some(DynamoVerify {
                    table: "test-User".into(),
                    written: 10,
                    checked: 10,
                    found: 10 - missing,
                    missing,
                    ..DynamoVerify::default()
                }),
                ..VerifySummary::default()
            });
            s
        };
        let merged = merge(&[verified("1/2", 1), verified("2/2", 2)]).unwrap();
        let dynamo = merged.verify.unwrap().dynamodb.unwrap();
        assert_eq!((dynamo.written, dynamo.found, dynamo.missing), (20, 17, 3));
        let err = merge(&[verified("1/2", 0), summary(&[1_000], Some("2/2"), 0)]).unwrap_err();
        assert!(err.0.contains("verification"), "{err}");
    }

    #[test]
    fn both_channels_and_the_time_split_merge_exactly() {
        // Shard 1's requests took 10 ms in API Gateway, shard 2's 30 ms: the
        // merged p50 must come from all of them, not from either shard.
        let shard = |name, api_gateway_us: &[u64], enabled: bool| {
            let mut split = crate::verify::execution::TimeSplit::default();
            for us in api_gateway_us {
                split.record(
                    us + 50_000,
                    Some(50.0),
                    45.0,
                    (*us > 20_000).then_some(300.0),
                );
            }
            let hist = |h: &Histogram<u64>| encode_histogram(h);
            let mut s = summary(&[1_000], Some(name), 0);
            s.verify = Some(VerifySummary {
                logs: Some(LogsVerify {
                    checked: api_gateway_us.len() as u64,
                    found: api_gateway_us.len() as u64,
                    proven_by: BTreeMap::from([
                        ("function_logs".to_string(), 1),
                        ("execution_logs".to_string(), api_gateway_us.len() as u64),
                    ]),
                    execution_logs: Some(ExecutionLogsVerify {
                        enabled,
                        proven: api_gateway_us.len() as u64,
                        note: (!enabled).then(|| "off".to_string()),
                        time_split: vec![StepTimeSplit {
                            step: "get".into(),
                            requests: split.client_us.len(),
                            histograms: TimeSplitHistograms {
                                client: hist(&split.client_us),
                                api_gateway: hist(&split.api_gateway_us),
                                integration: hist(&split.integration_us),
                                function: hist(&split.function_us),
                                init: hist(&split.init_us),
                            },
                            cold_starts: split.init_us.len(),
                            ..StepTimeSplit::default()
                        }],
                        ..ExecutionLogsVerify::default()
                    }),
                    ..LogsVerify::default()
                }),
                ..VerifySummary::default()
            });
            s
        };
        let merged = merge(&[
            shard("1/2", &[10_000; 3], true),
            shard("2/2", &[30_000; 4], false),
        ])
        .unwrap();
        let logs = merged.verify.unwrap().logs.unwrap();
        assert_eq!(logs.proven_by["execution_logs"], 7);
        assert_eq!(logs.proven_by["function_logs"], 2);
        let exec = logs.execution_logs.unwrap();
        assert!(exec.enabled);
        assert_eq!(exec.note, None);
        assert_eq!(exec.proven, 7);
        let split = &exec.time_split[0];
        assert_eq!(split.requests, 7);
        assert!(
            (29.9..30.1).contains(&split.api_gateway_ms.p50),
            "{split:?}"
        );
        assert!((9.9..10.1).contains(&split.api_gateway_ms.min), "{split:?}");
        assert!(
            (49.9..50.1).contains(&split.integration_ms.p50),
            "{split:?}"
        );
        assert!((44.9..45.1).contains(&split.function_ms.p50), "{split:?}");
        assert_eq!(split.cold_starts, 4);
        assert!((299.0..301.0).contains(&split.init_ms.p50), "{split:?}");
    }

    fn warmup(latencies_us: &[u64]) -> WarmupSummary {
        let mut hist = new_histogram();
        for v in latencies_us {
            hist.record(*v).unwrap();
        }
        let n = latencies_us.len() as u64;
        WarmupSummary {
            duration_s: 3.0,
            iterations: n,
            requests: n,
            failed: 1,
            checks_failed: 2,
            latency_ms: LatencySummary::from_histogram_us(&hist),
            steps: vec![WarmupStep {
                name: "get".into(),
                requests: n,
                failed: 1,
                latency_ms: LatencySummary::from_histogram_us(&hist),
                histogram: encode_histogram(&hist),
            }],
        }
    }

    #[test]
    fn warmups_add_up_exactly_and_stay_out_of_the_totals() {
        let mut a = summary(&[1_000, 2_000], Some("1/2"), 0);
        a.warmup = Some(warmup(&[500_000, 4_000]));
        let mut b = summary(&[3_000], Some("2/2"), 0);
        b.warmup = Some(warmup(&[900_000]));
        let merged = merge(&[a, b]).unwrap();
        let w = merged.warmup.expect("a merged warmup");
        assert_eq!((w.requests, w.failed, w.checks_failed), (3, 2, 4));
        assert_eq!(w.steps[0].requests, 3);
        let all = warmup(&[500_000, 4_000, 900_000]);
        assert_eq!(w.latency_ms, all.latency_ms);
        assert_eq!(w.steps[0].latency_ms, all.latency_ms);
        assert_eq!(merged.totals.requests, 3);
        assert!(merged.totals.latency_ms.max < 10.0);
        // Shards without a warmup merge to none.
        let plain = merge(&[
            summary(&[1_000], Some("1/2"), 0),
            summary(&[2_000], Some("2/2"), 0),
        ])
        .unwrap();
        assert!(plain.warmup.is_none());
    }

    #[test]
    fn access_log_counts_add_up_across_shards() {
        let shard = |name, proven: u64, other: u64, group: Option<&str>| {
            let mut s = summary(&[1_000], Some(name), 0);
            s.verify = Some(VerifySummary {
                logs: Some(LogsVerify {
                    checked: proven + other,
                    found: proven,
                    proven_by: BTreeMap::from([("access_logs".to_string(), proven)]),
                    access_logs: Some(AccessLogsVerify {
                        log_group: group.map(str::to_string),
                        format_has_integration_request_id: group.is_some(),
                        with_lines: proven + other,
                        proven,
                        other_function: other,
                        note: (proven == 0).then(|| "no line".to_string()),
                    }),
                    ..LogsVerify::default()
                }),
                ..VerifySummary::default()
            });
            s
        };
        let merged = merge(&[
            shard("1/3", 0, 0, None),
            shard("2/3", 5, 1, Some("access/test")),
            shard("3/3", 4, 2, Some("access/test")),
        ])
        .unwrap();
        let logs = merged.verify.unwrap().logs.unwrap();
        assert_eq!(logs.proven_by["access_logs"], 9);
        let access = logs.access_logs.unwrap();
        assert_eq!(access.log_group.as_deref(), Some("access/test"));
        assert!(access.format_has_integration_request_id);
        assert_eq!(
            (access.with_lines, access.proven, access.other_function),
            (12, 9, 3)
        );
        // A shard that proved nothing does not speak for the merged run.
        assert_eq!(access.note, None);
        // A summary written before the channel existed still reads and merges.
        let old: LogsVerify = serde_json::from_str(
            r#"{"log_group":"g","checked":1,"found":1,"missing":0,"invocations":1,"waited_s":0.1,"examples":[]}"#,
        )
        .unwrap();
        assert!(old.access_logs.is_none());
        assert!(merge_access_logs(&[&old]).is_none());
    }

    #[test]
    fn earliest_start_wins() {
        assert_eq!(
            earliest(["2026-01-01T00:00:01Z", "2026-01-01T00:00:00.5Z"].into_iter()),
            "2026-01-01T00:00:00.5Z"
        );
    }
}
