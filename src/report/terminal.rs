//! The terminal report: a per-step table, a latency histogram drawn with
//! bars, checks and thresholds, and the verdict. Progress lines too.

use std::fmt::Write as _;
use std::io::IsTerminal;

use tabled::builder::Builder;
use tabled::settings::Style;

use crate::engine::Progress;
use crate::metrics::{LatencySummary, decode_histogram};
use crate::scenario::Plan;
use crate::summary::Summary;

/// `error` in red unless `NO_COLOR` is set or stderr is not a terminal.
pub fn error_label() -> &'static str {
    if std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal() {
        "\x1b[1;31merror\x1b[0m"
    } else {
        "error"
    }
}

pub fn color_for_stdout() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

pub fn color_for_stderr() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

fn paint(color: bool, code: &str, text: &str) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

pub fn run_header(plan: &Plan) -> String {
    let load = match &plan.load.model {
        crate::scenario::Model::Open { rate, max_vus, .. } => {
            format!(
                "open model, up to {} it/s, max {max_vus} VUs",
                fmt_num(rate.peak())
            )
        }
        crate::scenario::Model::Closed { vus, .. } => {
            format!("closed model, {} VUs", vus.peak().ceil())
        }
    };
    let shard = plan
        .shard
        .label()
        .map(|s| format!(", shard {s}"))
        .unwrap_or_default();
    let auth = match plan.auth.kind() {
        crate::auth::AuthKind::None => String::new(),
        kind => format!(", auth {}", kind.name()),
    };
    let warmup = if plan.load.warmup.is_zero() {
        String::new()
    } else {
        format!(
            " after a {} warmup",
            humantime::format_duration(plan.load.warmup)
        )
    };
    format!(
        "stagecheck: {} → stage {} at {} ({load}, {}{warmup}{shard}{auth}, run {})",
        plan.name,
        plan.stage.name,
        plan.target.base_url,
        match plan.load.iterations {
            Some(n) if plan.load.measured().as_secs() >= 3600 =>
                format!("{n} iteration{}", if n == 1 { "" } else { "s" }),
            _ => humantime::format_duration(plan.load.measured()).to_string(),
        },
        plan.run_id
    )
}

pub fn progress_line(p: &Progress) -> String {
    format!(
        "  {:>4}s  {:>7} req/s  p50 {:>8}  p99 {:>8}  requests {}  failed {}  dropped {}{}",
        p.second.t + 1,
        p.second.requests,
        fmt_ms(p.second.p50_ms),
        fmt_ms(p.second.p99_ms),
        p.requests,
        p.failed,
        p.dropped_iterations,
        // The counts are the measured phase's: none yet.
        if p.warming_up { "  (warmup)" } else { "" }
    )
}

pub fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.2}ms")
    }
}

fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub fn render(summary: &Summary, color: bool) -> String {
    let mut out = String::new();
    let t = &summary.totals;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{} requests in {:.1}s ({:.1}/s), {} failed; {} iterations started: {} completed, {} failed, {} interrupted; {} dropped{}",
        t.requests,
        summary.duration_s,
        t.rps,
        t.failed,
        t.iterations,
        t.completed_iterations,
        t.failed_iterations,
        t.interrupted_iterations,
        t.dropped_iterations,
        if t.unstarted_iterations > 0 {
            format!(
                ", {} still waiting in the backlog at the end",
                t.unstarted_iterations
            )
        } else {
            String::new()
        }
    );
    if let Some(warmup) = &summary.warmup {
        let _ = writeln!(out, "{}", warmup.sentence());
    }
    if let Some(skew) = summary.start_skew_s {
        let _ = writeln!(
            out,
            "merged from {} shards, started {skew:.3}s apart",
            summary.merged_from.len()
        );
    }
    if t.errors.total() > 0 {
        let _ = writeln!(
            out,
            "transport errors: {} connect, {} timeout, {} io",
            t.errors.connect, t.errors.timeout, t.errors.io
        );
    }
    if t.throttled > 0 {
        let per_step: Vec<String> = summary
            .steps
            .iter()
            .filter(|s| s.throttled > 0)
            .map(|s| format!("{} {}", s.name, s.throttled))
            .collect();
        let _ = writeln!(
            out,
            "throttled: {} requests answered 429 ({}), counted in failed",
            t.throttled,
            per_step.join(", ")
        );
    }

    let mut table = Builder::default();
    table.push_record([
        "step", "method", "requests", "rps", "failed", "p50", "p90", "p95", "p99", "p99.9", "max",
        "status",
    ]);
    let row = |name: &str,
               method: &str,
               requests: u64,
               rps: f64,
               failed: u64,
               l: &LatencySummary,
               status: String| {
        vec![
            name.to_string(),
            method.to_string(),
            requests.to_string(),
            format!("{rps:.1}"),
            failed.to_string(),
            fmt_ms(l.p50),
            fmt_ms(l.p90),
            fmt_ms(l.p95),
            fmt_ms(l.p99),
            fmt_ms(l.p999),
            fmt_ms(l.max),
            status,
        ]
    };
    for s in &summary.steps {
        let status: Vec<String> = s
            .status
            .iter()
            .map(|(code, n)| format!("{code}×{n}"))
            .collect();
        let mut status = status.join(" ");
        if s.errors.total() > 0 {
            status.push_str(&format!(" errors×{}", s.errors.total()));
        }
        table.push_record(row(
            &s.name,
            &s.method,
            s.requests,
            s.rps,
            s.failed,
            &s.latency_ms,
            status,
        ));
    }
    if summary.steps.len() > 1 {
        table.push_record(row(
            "all",
            "",
            t.requests,
            t.rps,
            t.failed,
            &t.latency_ms,
            String::new(),
        ));
    }
    let mut table = table.build();
    table.with(Style::rounded());
    let _ = writeln!(out, "{table}");

    if let Ok(hist) = decode_histogram(&t.histogram) {
        let bars = histogram_bars(&hist, 10, 40);
        if !bars.is_empty() {
            let _ = writeln!(out, "latency, all steps (from when each request was due):");
            out.push_str(&bars);
        }
    }
    if t.schedule_lag_ms.p99 >= 1.0 {
        let _ = writeln!(
            out,
            "schedule lag p99 {} (the generator started iterations late)",
            fmt_ms(t.schedule_lag_ms.p99)
        );
    }

    if !summary.checks.details.is_empty() {
        let not_run = summary.checks.details.iter().filter(|c| !c.ran()).count();
        let _ = writeln!(
            out,
            "checks: {} passed, {} failed{}",
            summary.checks.passed,
            summary.checks.failed,
            if not_run > 0 {
                format!(", {not_run} not run")
            } else {
                String::new()
            }
        );
        for c in &summary.checks.details {
            if !c.ran() {
                // 0/0 is not a pass: the check never saw an answer.
                let mark = paint(color, "31", "–");
                let _ = writeln!(out, "  {mark} {}: {}  not run", c.step, c.name);
                continue;
            }
            let mark = if c.failed == 0 {
                paint(color, "32", "✓")
            } else {
                paint(color, "31", "✗")
            };
            let total = c.passed + c.failed;
            let _ = write!(
                out,
                "  {mark} {}: {}  {}/{}",
                c.step, c.name, c.passed, total
            );
            if let Some(example) = &c.example_failure {
                let _ = write!(out, "  (e.g. {example})");
            }
            let _ = writeln!(out);
        }
    }
    if let Some(v) = &summary.verify {
        out.push_str(&render_verify(summary, v, color));
    }
    if !summary.thresholds.is_empty() {
        let _ = writeln!(out, "thresholds:");
        for th in &summary.thresholds {
            let mark = if th.ok {
                paint(color, "32", "✓")
            } else {
                paint(color, "31", "✗")
            };
            let actual = th
                .actual
                .map(|a| {
                    format!(
                        " (actual {})",
                        crate::thresholds::format_actual(&th.expr, a)
                    )
                })
                .unwrap_or_default();
            let implicit = if th.implicit { " [default]" } else { "" };
            let _ = writeln!(out, "  {mark} {}{actual}{implicit}", th.expr);
        }
    }
    if let Some(note) = summary.throttling_note() {
        let _ = writeln!(out, "{}", paint(color, "33", &format!("note: {note}")));
    }
    let verdict = if summary.partial {
        paint(color, "1;33", "PARTIAL")
    } else if summary.passed {
        paint(color, "1;32", "PASS")
    } else {
        paint(color, "1;31", "FAIL")
    };
    let why = if summary.reasons.is_empty() {
        summary
            .stopped_by
            .as_deref()
            .map(|s| format!(": {s}"))
            .unwrap_or_default()
    } else {
        format!(": {}", summary.reasons.join("; "))
    };
    let _ = writeln!(out, "{verdict}{why}");
    out
}

fn render_verify(summary: &Summary, v: &crate::summary::VerifySummary, color: bool) -> String {
    let mut out = String::new();
    let mark = |ok: bool| {
        if ok {
            paint(color, "32", "✓")
        } else {
            paint(color, "31", "✗")
        }
    };
    let _ = writeln!(out, "verification of stage {}:", summary.stage);
    if let Some(d) = &v.dynamodb {
        let ok = d.missing == 0 && d.mismatched == 0;
        let sample = if d.sampled {
            format!(
                " (a uniform sample of {} of {} writes)",
                d.recorded, d.written
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {} table {}: {} of {} written items found{}{}{}",
            mark(ok),
            d.table,
            d.found,
            d.checked,
            if d.missing > 0 {
                format!(", {} missing", d.missing)
            } else {
                String::new()
            },
            if d.mismatched > 0 {
                format!(", {} with other attributes", d.mismatched)
            } else {
                String::new()
            },
            sample
        );
        for e in &d.examples {
            let _ = writeln!(out, "      {e}");
        }
    }
    if let Some(l) = &v.logs {
        let by = |channel: &str| l.proven_by.get(channel).copied();
        let channels = l.channels("by ");
        let window = if by("function_logs").is_some() || l.proven_by.is_empty() {
            format!(
                "{} invocations in the window, waited {:.1}s",
                l.invocations, l.waited_s
            )
        } else {
            format!("waited {:.1}s", l.waited_s)
        };
        let _ = writeln!(
            out,
            "  {} log group {}: {} of {} requests found{channels}{} ({window})",
            mark(l.missing == 0),
            l.log_group,
            l.found,
            l.checked,
            if l.missing > 0 {
                format!(", {} missing", l.missing)
            } else {
                String::new()
            },
        );
        if let Some(x) = &l.execution_logs
            && let Some(group) = &x.log_group
        {
            let mut also = String::new();
            if x.other_function > 0 {
                let _ = write!(also, ", {} invoked another function", x.other_function);
            }
            if x.configuration_errors > 0 {
                let _ = write!(also, ", {} configuration errors", x.configuration_errors);
            }
            let _ = writeln!(
                out,
                "      execution log {group} (REST API {}{}): {} requests with lines, {} followed to the function's REPORT{also}",
                x.rest_api.as_deref().unwrap_or("?"),
                x.rest_api_from
                    .as_deref()
                    .map(|f| format!(", from {}", f.replace('_', " ")))
                    .unwrap_or_default(),
                x.with_lines,
                x.proven
            );
        }
        if let Some(a) = &l.access_logs
            && let Some(group) = &a.log_group
        {
            let _ = writeln!(
                out,
                "      access log {group}: {} requests with lines, {} followed to the function's REPORT{}",
                a.with_lines,
                a.proven,
                if a.other_function > 0 {
                    format!(", {} ran another stage's function", a.other_function)
                } else {
                    String::new()
                }
            );
        }
        if let Some(x) = &l.execution_logs {
            out.push_str(&render_time_split(&x.time_split));
        }
        for e in l
            .examples
            .iter()
            .chain(l.execution_logs.iter().flat_map(|x| &x.examples))
        {
            let _ = writeln!(out, "      {e}");
        }
        let notes = l
            .execution_logs
            .as_ref()
            .and_then(|x| x.note.as_deref())
            .into_iter()
            .chain(l.access_logs.as_ref().and_then(|a| a.note.as_deref()));
        for note in notes {
            let _ = writeln!(out, "  {}", paint(color, "33", &format!("note: {note}")));
        }
    }
    if let Some(i) = &v.isolation {
        if i.ok {
            let _ = writeln!(
                out,
                "  {} isolation from {}: nothing reached them",
                mark(true),
                i.stages.join(", ")
            );
        } else {
            for leak in &i.leaks {
                let _ = writeln!(
                    out,
                    "  {} {}",
                    mark(false),
                    paint(
                        color,
                        "1;31",
                        &format!("ISOLATION FAILED: {}", leak.message)
                    )
                );
            }
        }
    }
    if let Some(c) = &v.cleanup {
        let _ = writeln!(
            out,
            "  cleanup of {}: {} items deleted, {} left (changed since written), {} failed",
            c.table, c.deleted, c.skipped, c.failed
        );
    }
    out
}

/// Per step, where the time of the requests followed through API Gateway's
/// log went: p50 / p90 / p99 of each part, in ms.
fn render_time_split(splits: &[crate::summary::StepTimeSplit]) -> String {
    let mut out = String::new();
    if splits.is_empty() {
        return out;
    }
    let cell = |l: &LatencySummary| format!("{:.1} / {:.1} / {:.1}", l.p50, l.p90, l.p99);
    let width = splits
        .iter()
        .map(|s| s.step.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "      where the time went, ms p50 / p90 / p99 (client = API Gateway + integration; the function runs inside the integration):"
    );
    let _ = writeln!(
        out,
        "        {:<width$}  {:>8}  {:<22} {:<22} {:<22} {:<22} cold starts",
        "step", "requests", "client", "API Gateway", "integration", "function"
    );
    for s in splits {
        let _ = writeln!(
            out,
            "        {:<width$}  {:>8}  {:<22} {:<22} {:<22} {:<22} {}",
            s.step,
            s.requests,
            cell(&s.client_ms),
            cell(&s.api_gateway_ms),
            cell(&s.integration_ms),
            cell(&s.function_ms),
            match (s.cold_starts, s.warmup_cold_starts) {
                (0, 0) => "0".to_string(),
                (0, w) => format!("0 (and {w} in the warmup)"),
                (n, 0) => format!("{n} (init p50 {:.1})", s.init_ms.p50),
                (n, w) => format!("{n} (init p50 {:.1}; and {w} in the warmup)", s.init_ms.p50),
            }
        );
    }
    for s in splits {
        if let Some(sentence) = cold_tail_sentence(s) {
            let _ = writeln!(out, "        {}: {sentence}", s.step);
        }
    }
    out
}

/// How much of a step's tail its cold starts explain, in one sentence, e.g.
/// "p99 5.70s: 44 of the 50 slowest requests were cold starts, init p50
/// 4.10s". `None` for a step without cold starts.
pub fn cold_tail_sentence(s: &crate::summary::StepTimeSplit) -> Option<String> {
    let tail = s.tail.as_ref()?;
    if s.cold_starts == 0 {
        return None;
    }
    let head = format!("p99 {}", fmt_ms(s.client_ms.p99));
    let init = format!("init p50 {}", fmt_ms(s.init_ms.p50));
    let all = s.cold_starts;
    Some(match (tail.slowest, tail.cold_starts) {
        (1, 1) => format!("{head}: the slowest request was a cold start, {init}"),
        (1, _) => format!(
            "{head}: the slowest request was not a cold start ({all} cold starts in all, {init})"
        ),
        (n, 0) => format!(
            "{head}: none of the {n} slowest requests were cold starts ({all} cold starts in all, {init})"
        ),
        (n, k) if k == n => format!("{head}: all {n} slowest requests were cold starts, {init}"),
        (n, k) => format!("{head}: {k} of the {n} slowest requests were cold starts, {init}"),
    })
}

/// Log-spaced bins from the fastest to the slowest request, one bar each.
pub fn histogram_bars(hist: &hdrhistogram::Histogram<u64>, bins: usize, width: usize) -> String {
    if hist.is_empty() || bins == 0 {
        return String::new();
    }
    let (lo, hi) = (hist.min().max(1) as f64, hist.max().max(1) as f64);
    let ratio = (hi / lo).max(1.0000001).powf(1.0 / bins as f64);
    let mut edges = Vec::with_capacity(bins + 1);
    let mut edge = lo;
    for _ in 0..=bins {
        edges.push(edge);
        edge *= ratio;
    }
    let mut counts = Vec::with_capacity(bins);
    let mut below = 0u64;
    for i in 0..bins {
        let upper = if i + 1 == bins {
            hist.max()
        } else {
            edges[i + 1] as u64
        };
        let upto = hist.count_between(0, upper);
        counts.push((upper, upto.saturating_sub(below)));
        below = upto;
    }
    let peak = counts.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
    let mut out = String::new();
    for (upper, n) in counts {
        let len = ((n as f64 / peak as f64) * width as f64).round() as usize;
        let _ = writeln!(
            out,
            "  ≤ {:>9} │{:<width$} {n}",
            fmt_ms(upper as f64 / 1000.0),
            "█".repeat(len.max(usize::from(n > 0)))
        );
    }
    out
}

#[cfg(test)]
mod cold_tail_tests {
    use super::cold_tail_sentence;
    use crate::metrics::LatencySummary;
    use crate::summary::{ColdTail, StepTimeSplit};

    fn split(cold_starts: u64, slowest: u64, cold_in_tail: u64) -> StepTimeSplit {
        StepTimeSplit {
            step: "get".into(),
            client_ms: LatencySummary {
                p99: 5_700.0,
                ..LatencySummary::default()
            },
            init_ms: LatencySummary {
                p50: 4_100.0,
                ..LatencySummary::default()
            },
            cold_starts,
            tail: Some(ColdTail {
                slowest,
                cold_starts: cold_in_tail,
                from_ms: 5_000.0,
            }),
            ..StepTimeSplit::default()
        }
    }

    #[test]
    fn says_how_much_of_the_tail_cold_starts_explain() {
        let cases = [
            (
                (60, 50, 44),
                "44 of the 50 slowest requests were cold starts, init p50 4.10s",
            ),
            (
                (4, 4, 4),
                "all 4 slowest requests were cold starts, init p50 4.10s",
            ),
            (
                (1, 1, 1),
                "the slowest request was a cold start, init p50 4.10s",
            ),
            (
                (3, 1, 0),
                "the slowest request was not a cold start (3 cold starts in all, init p50 4.10s)",
            ),
            (
                (3, 2, 0),
                "none of the 2 slowest requests were cold starts (3 cold starts in all, init p50 4.10s)",
            ),
        ];
        for ((all, slowest, cold), said) in cases {
            assert_eq!(
                cold_tail_sentence(&split(all, slowest, cold)).as_deref(),
                Some(format!("p99 5.70s: {said}").as_str())
            );
        }
        assert_eq!(cold_tail_sentence(&split(0, 2, 0)), None);
    }
}
