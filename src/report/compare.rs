//! `stagecheck compare BASELINE CANDIDATE`: a side-by-side table of two
//! summaries (overall and per step) and a verdict against regression bounds.
//!
//! Bounds say how much worse the candidate may be: latencies by a relative
//! increase (`p99=10%`), the error rate by percentage points
//! (`error_rate=0.1%`: 0.2% → 0.3% is allowed), requests per second by a
//! relative drop (`rps=-5%` or `rps=5%`).

use std::fmt::Write as _;
use std::path::Path;

use tabled::builder::Builder;
use tabled::settings::Style;

use crate::error::{Error, exit};
use crate::metrics::LatencySummary;
use crate::report::terminal::fmt_ms;
use crate::summary::Summary;
use crate::thresholds::Stat;

/// Used when `--max-regression` is not given: the tail and the median may
/// not slow down noticeably, and errors may not appear.
pub const DEFAULT_MAX_REGRESSION: &str = "p50=20%,p99=10%,error_rate=0.1%";

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Measure {
    Latency(Stat),
    /// Percent of requests that failed.
    ErrorRate,
    Rps,
}

/// How much worse one measure may get.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    pub measure: Measure,
    /// Percent (latency increase, rps drop) or percentage points (error rate).
    pub limit: f64,
}

const LATENCIES: [(&str, Stat); 7] = [
    ("mean", Stat::Mean),
    ("p50", Stat::P50),
    ("p90", Stat::P90),
    ("p95", Stat::P95),
    ("p99", Stat::P99),
    ("p999", Stat::P999),
    ("max", Stat::Max),
];

/// Parses `p99=10%,error_rate=0.1%,rps=-5%`.
pub fn parse_bounds(text: &str) -> Result<Vec<Bound>, String> {
    let mut bounds: Vec<Bound> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, value) = item.split_once('=').ok_or_else(|| {
            format!("--max-regression: `{item}` is not METRIC=LIMIT, e.g. `p99=10%`")
        })?;
        let (name, value) = (name.trim(), value.trim());
        let measure = match name {
            "error_rate" => Measure::ErrorRate,
            "rps" => Measure::Rps,
            _ => match LATENCIES.iter().find(|(n, _)| *n == name) {
                Some((_, stat)) => Measure::Latency(*stat),
                None => {
                    return Err(format!(
                        "--max-regression: unknown metric `{name}` (known: mean, p50, p90, p95, p99, p999, max, error_rate, rps)"
                    ));
                }
            },
        };
        let number = value
            .strip_suffix('%')
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .ok_or_else(|| {
                format!("--max-regression: `{item}`: the limit is a percentage, e.g. `{name}=10%`")
            })?;
        // `rps=-5%` reads as "may drop by 5%"; the sign only says which way.
        let limit = if measure == Measure::Rps {
            number.abs()
        } else if number < 0.0 {
            return Err(format!(
                "--max-regression: `{item}`: a negative limit would demand an improvement; write e.g. `{name}=10%`"
            ));
        } else {
            number
        };
        if bounds.iter().any(|b| b.measure == measure) {
            return Err(format!("--max-regression: `{name}` is given twice"));
        }
        bounds.push(Bound { measure, limit });
    }
    if bounds.is_empty() {
        return Err(
            "--max-regression: no bounds given, e.g. `p99=10%,error_rate=0.1%`".to_string(),
        );
    }
    Ok(bounds)
}

/// The numbers compared for one row: the whole run or one step.
#[derive(Debug, Clone, Copy)]
struct Side {
    requests: u64,
    rps: f64,
    error_rate: f64,
    latency: LatencySummary,
}

impl Side {
    fn overall(s: &Summary) -> Side {
        Side {
            requests: s.totals.requests,
            rps: s.totals.rps,
            error_rate: percent(s.totals.failed, s.totals.requests),
            latency: s.totals.latency_ms,
        }
    }

    fn step(s: &Summary, name: &str) -> Option<Side> {
        let step = s.steps.iter().find(|st| st.name == name)?;
        Some(Side {
            requests: step.requests,
            rps: step.rps,
            error_rate: percent(step.failed, step.requests),
            latency: step.latency_ms,
        })
    }

    fn value(&self, m: Measure) -> f64 {
        match m {
            Measure::Latency(stat) => self.latency.stat(stat),
            Measure::ErrorRate => self.error_rate,
            Measure::Rps => self.rps,
        }
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn measure_name(m: Measure) -> &'static str {
    match m {
        Measure::ErrorRate => "error rate",
        Measure::Rps => "rps",
        Measure::Latency(stat) => LATENCIES
            .iter()
            .find(|(_, s)| *s == stat)
            .map_or("latency", |(n, _)| n),
    }
}

/// How much worse the candidate is, in the bound's unit (positive = worse),
/// or `None` when there is nothing to compare.
fn worsening(m: Measure, base: &Side, cand: &Side) -> Option<f64> {
    let (b, c) = (base.value(m), cand.value(m));
    match m {
        // Latencies of a step that sent nothing are zeros, not measurements.
        Measure::Latency(_) if base.requests == 0 || cand.requests == 0 => None,
        Measure::Latency(_) => Some(if b > 0.0 { (c - b) * 100.0 / b } else { 0.0 }),
        Measure::ErrorRate => Some(c - b),
        Measure::Rps if b > 0.0 => Some((b - c) * 100.0 / b),
        Measure::Rps => None,
    }
}

/// One judged figure that went past its bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    /// `all` or a step's name.
    pub scope: String,
    pub measure: Measure,
    pub baseline: f64,
    pub candidate: f64,
    pub worse_by: f64,
    pub limit: f64,
}

pub struct Comparison {
    pub table: String,
    pub regressions: Vec<Regression>,
    pub notes: Vec<String>,
}

/// Compares overall and each step present in both summaries.
pub fn compare_summaries(base: &Summary, cand: &Summary, bounds: &[Bound]) -> Comparison {
    let mut notes = Vec::new();
    if base.scenario != cand.scenario {
        notes.push(format!(
            "the summaries are of different scenarios ({} vs {})",
            base.scenario, cand.scenario
        ));
    }
    for (label, s) in [("baseline", base), ("candidate", cand)] {
        if s.partial {
            notes.push(format!(
                "the {label} run is partial: {}",
                s.stopped_by.as_deref().unwrap_or("stopped early")
            ));
        }
    }
    let mut scopes = vec![("all".to_string(), Side::overall(base), Side::overall(cand))];
    for step in &base.steps {
        match Side::step(cand, &step.name) {
            Some(c) => scopes.push((
                step.name.clone(),
                Side::step(base, &step.name).unwrap_or(c),
                c,
            )),
            None => notes.push(format!("step {} is only in the baseline", step.name)),
        }
    }
    for step in cand
        .steps
        .iter()
        .filter(|s| Side::step(base, &s.name).is_none())
    {
        notes.push(format!("step {} is only in the candidate", step.name));
    }

    let mut shown: Vec<Measure> = vec![
        Measure::Rps,
        Measure::ErrorRate,
        Measure::Latency(Stat::P50),
        Measure::Latency(Stat::P90),
        Measure::Latency(Stat::P99),
        Measure::Latency(Stat::Max),
    ];
    for b in bounds {
        if !shown.contains(&b.measure) {
            shown.push(b.measure);
        }
    }

    let mut table = Builder::default();
    table.push_record([
        "step",
        "metric",
        "baseline",
        "candidate",
        "change",
        "allowed",
        "",
    ]);
    let mut regressions = Vec::new();
    for (scope, b, c) in &scopes {
        table.push_record([
            scope.clone(),
            "requests".to_string(),
            b.requests.to_string(),
            c.requests.to_string(),
            relative(b.requests as f64, c.requests as f64),
            String::new(),
            String::new(),
        ]);
        for &m in &shown {
            let (bv, cv) = (b.value(m), c.value(m));
            let bound = bounds.iter().find(|x| x.measure == m);
            let worse = worsening(m, b, c);
            let (allowed, verdict) = match (bound, worse) {
                (Some(bound), Some(w)) => {
                    let over = w > bound.limit + 1e-9;
                    if over {
                        regressions.push(Regression {
                            scope: scope.clone(),
                            measure: m,
                            baseline: bv,
                            candidate: cv,
                            worse_by: w,
                            limit: bound.limit,
                        });
                    }
                    (
                        allowed_text(m, bound.limit),
                        if over { "REGRESSION" } else { "ok" },
                    )
                }
                (Some(bound), None) => (allowed_text(m, bound.limit), "–"),
                (None, _) => (String::new(), ""),
            };
            let change = match m {
                Measure::ErrorRate => format!("{:+.2} pp", cv - bv),
                _ if worse.is_none() && matches!(m, Measure::Latency(_)) => "–".to_string(),
                _ => relative(bv, cv),
            };
            table.push_record([
                String::new(),
                measure_name(m).to_string(),
                value_text(m, bv),
                value_text(m, cv),
                change,
                allowed,
                verdict.to_string(),
            ]);
        }
    }
    let mut table = table.build();
    table.with(Style::rounded());
    Comparison {
        table: table.to_string(),
        regressions,
        notes,
    }
}

fn relative(b: f64, c: f64) -> String {
    if b == 0.0 {
        if c == 0.0 {
            "±0%".to_string()
        } else {
            "new".to_string()
        }
    } else {
        format!("{:+.1}%", (c - b) * 100.0 / b)
    }
}

fn value_text(m: Measure, v: f64) -> String {
    match m {
        Measure::Latency(_) => fmt_ms(v),
        Measure::ErrorRate => format!("{v:.2}%"),
        Measure::Rps => format!("{v:.1}/s"),
    }
}

fn allowed_text(m: Measure, limit: f64) -> String {
    match m {
        Measure::Latency(_) => format!("+{limit}%"),
        Measure::ErrorRate => format!("+{limit} pp"),
        Measure::Rps => format!("-{limit}%"),
    }
}

/// `stagecheck compare BASELINE CANDIDATE [--max-regression …]`.
pub fn compare_files(
    baseline: &Path,
    candidate: &Path,
    max_regression: Option<&str>,
) -> crate::Result<i32> {
    let bounds_text = max_regression.unwrap_or(DEFAULT_MAX_REGRESSION);
    let bounds = parse_bounds(bounds_text).map_err(Error::Usage)?;
    let base = crate::report::load_summary(baseline)?;
    let cand = crate::report::load_summary(candidate)?;
    let result = compare_summaries(&base, &cand, &bounds);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "baseline  {}: {} on {}, run {} at {}",
        baseline.display(),
        base.scenario,
        base.stage,
        base.run_id,
        base.started_at
    );
    let _ = writeln!(
        out,
        "candidate {}: {} on {}, run {} at {}",
        candidate.display(),
        cand.scenario,
        cand.stage,
        cand.run_id,
        cand.started_at
    );
    let _ = writeln!(out, "{}", result.table);
    for note in &result.notes {
        let _ = writeln!(out, "note: {note}");
    }
    for r in &result.regressions {
        let _ = writeln!(
            out,
            "regression: {} {}: {} → {} ({}, allowed {})",
            r.scope,
            measure_name(r.measure),
            value_text(r.measure, r.baseline),
            value_text(r.measure, r.candidate),
            worse_text(r.measure, r.worse_by),
            allowed_text(r.measure, r.limit),
        );
    }
    if result.regressions.is_empty() {
        let _ = writeln!(out, "PASS: no regression beyond {bounds_text}");
    } else {
        let _ = writeln!(
            out,
            "FAIL: {} regression{} beyond {bounds_text}",
            result.regressions.len(),
            if result.regressions.len() == 1 {
                ""
            } else {
                "s"
            }
        );
    }
    print!("{out}");
    Ok(if result.regressions.is_empty() {
        exit::PASS
    } else {
        exit::FAILED
    })
}

fn worse_text(m: Measure, w: f64) -> String {
    match m {
        Measure::Latency(_) => format!("{w:+.1}% slower"),
        Measure::ErrorRate => format!("{w:+.2} pp more errors"),
        Measure::Rps => format!("{w:.1}% fewer requests per second"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_as_documented() {
        let b = parse_bounds("p99=10%, p50=20%,error_rate=0.1%,rps=-5%").unwrap();
        assert_eq!(
            b,
            [
                Bound {
                    measure: Measure::Latency(Stat::P99),
                    limit: 10.0
                },
                Bound {
                    measure: Measure::Latency(Stat::P50),
                    limit: 20.0
                },
                Bound {
                    measure: Measure::ErrorRate,
                    limit: 0.1
                },
                Bound {
                    measure: Measure::Rps,
                    limit: 5.0
                },
            ]
        );
        assert_eq!(parse_bounds(DEFAULT_MAX_REGRESSION).unwrap().len(), 3);
        for bad in [
            "",
            "p99",
            "p99=10",
            "p98=10%",
            "p99=-1%",
            "p99=1%,p99=2%",
            "p99=fast%",
        ] {
            assert!(parse_bounds(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    fn side(requests: u64, failed: u64, rps: f64, p99: f64) -> Side {
        Side {
            requests,
            rps,
            error_rate: percent(failed, requests),
            latency: LatencySummary {
                p99,
                ..LatencySummary::default()
            },
        }
    }

    #[test]
    fn worsening_in_each_unit() {
        let base = side(1000, 1, 100.0, 10.0);
        let cand = side(1000, 3, 90.0, 12.0);
        assert!(
            (worsening(Measure::Latency(Stat::P99), &base, &cand).unwrap() - 20.0).abs() < 1e-9
        );
        assert!((worsening(Measure::ErrorRate, &base, &cand).unwrap() - 0.2).abs() < 1e-9);
        assert!((worsening(Measure::Rps, &base, &cand).unwrap() - 10.0).abs() < 1e-9);
        // Faster is negative: never a regression.
        assert!(worsening(Measure::Latency(Stat::P99), &cand, &base).unwrap() < 0.0);
        assert_eq!(
            worsening(Measure::Latency(Stat::P99), &side(0, 0, 0.0, 0.0), &cand),
            None
        );
    }
}
