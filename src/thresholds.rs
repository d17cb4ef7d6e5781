//! Threshold rules (`p99 < 800ms`, `create_user.error_rate < 1%`), parsed
//! when the scenario is validated; `summary::judge` evaluates them on a Summary,
//! so a saved summary can be gated again later.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Min,
    Mean,
    P50,
    P90,
    P95,
    P99,
    P999,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Milliseconds, from the coordinated-omission-free latency.
    Latency(Stat),
    /// Percent of requests that failed.
    ErrorRate,
    /// Percent of checks that passed.
    Checks,
    DroppedIterations,
    Requests,
    Failed,
    /// Requests per second.
    Rps,
    /// Recorded writes not found in the stage's table.
    MissingWrites,
    /// Items found with other attributes than written.
    MismatchedWrites,
    /// Requests whose marker never showed in the stage's function logs.
    MissingInvocations,
    /// Writes or log lines found in another stage's backends.
    IsolationLeaks,
}

impl Metric {
    /// Whether `step.metric` means something: verification and dropped
    /// iterations are measured for the whole run only, so a step prefix on
    /// them would read a whole-run figure under a step's name.
    pub fn per_step(self) -> bool {
        matches!(
            self,
            Metric::Latency(_)
                | Metric::ErrorRate
                | Metric::Checks
                | Metric::Requests
                | Metric::Failed
                | Metric::Rps
        )
    }

    /// Read from backend verification, which exists only after the traffic.
    pub fn is_verification(self) -> bool {
        matches!(
            self,
            Metric::MissingWrites
                | Metric::MismatchedWrites
                | Metric::MissingInvocations
                | Metric::IsolationLeaks
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    pub fn token(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    pub fn holds(self, actual: f64, limit: f64) -> bool {
        // Rates and latencies are derived by division: compare with a little
        // tolerance so `checks == 100%` means what it says.
        let eps = 1e-9 * limit.abs().max(1.0);
        match self {
            Op::Lt => actual < limit,
            Op::Le => actual <= limit + eps,
            Op::Gt => actual > limit,
            Op::Ge => actual >= limit - eps,
            Op::Eq => (actual - limit).abs() <= eps,
            Op::Ne => (actual - limit).abs() > eps,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub expr: String,
    /// A step's name, or `None` for the whole run.
    pub step: Option<String>,
    pub metric: Metric,
    pub op: Op,
    /// In the metric's unit: ms, percent, count or per second.
    pub limit: f64,
    pub implicit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ThresholdError(pub String);

const METRICS_HELP: &str = "min, mean, p50, p90, p95, p99, p999, max, error_rate, checks, dropped_iterations, requests, failed, rps, missing_writes, mismatched_writes, missing_invocations, isolation_leaks";

fn parse_metric(name: &str) -> Option<Metric> {
    Some(match name {
        "min" => Metric::Latency(Stat::Min),
        "mean" | "avg" => Metric::Latency(Stat::Mean),
        "p50" | "med" | "median" => Metric::Latency(Stat::P50),
        "p90" => Metric::Latency(Stat::P90),
        "p95" => Metric::Latency(Stat::P95),
        "p99" => Metric::Latency(Stat::P99),
        "p999" | "p99.9" => Metric::Latency(Stat::P999),
        "max" => Metric::Latency(Stat::Max),
        "error_rate" => Metric::ErrorRate,
        "checks" => Metric::Checks,
        "dropped_iterations" | "dropped" => Metric::DroppedIterations,
        "requests" => Metric::Requests,
        "failed" => Metric::Failed,
        "rps" => Metric::Rps,
        "missing_writes" => Metric::MissingWrites,
        "mismatched_writes" => Metric::MismatchedWrites,
        "missing_invocations" => Metric::MissingInvocations,
        "isolation_leaks" => Metric::IsolationLeaks,
        _ => return None,
    })
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

impl Threshold {
    /// Parses `[step.]metric op value`. `steps` are the scenario's step names.
    pub fn parse(expr: &str, steps: &[String]) -> Result<Threshold, ThresholdError> {
        let err = |m: String| ThresholdError(m);
        let (lhs, op, rhs) = split_op(expr).ok_or_else(|| {
            err(format!("`{expr}`: expected `[step.]metric OP value` with OP one of < <= > >= == !=, e.g. `p99 < 800ms`"))
        })?;
        let lhs = lhs.trim();
        let (step, metric_name) = match parse_metric(lhs) {
            Some(_) => (None, lhs),
            None => match lhs.split_once('.') {
                Some((step, metric)) => (Some(step.trim().to_string()), metric.trim()),
                None => (None, lhs),
            },
        };
        let metric = parse_metric(metric_name).ok_or_else(|| {
            err(format!(
                "`{expr}`: unknown metric `{metric_name}` (known: {METRICS_HELP})"
            ))
        })?;
        if let Some(step) = &step
            && !steps.iter().any(|s| s == step)
        {
            return Err(err(format!(
                "`{expr}`: no step named `{step}` (steps: {})",
                steps.join(", ")
            )));
        }
        if step.is_some() && !metric.per_step() {
            return Err(err(format!(
                "`{expr}`: {metric_name} is measured for the whole run, not per step; write `{metric_name} {} {}`",
                op.token(),
                rhs.trim()
            )));
        }
        let limit = parse_limit(metric, rhs.trim()).map_err(|m| err(format!("`{expr}`: {m}")))?;
        Ok(Threshold {
            expr: expr.trim().to_string(),
            step,
            metric,
            op,
            limit,
            implicit: false,
        })
    }
}

fn split_op(expr: &str) -> Option<(&str, Op, &str)> {
    // Two-character operators first, so `<=` is not read as `<`.
    for (token, op) in [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        (">", Op::Gt),
    ] {
        if let Some(at) = expr.find(token) {
            return Some((&expr[..at], op, &expr[at + token.len()..]));
        }
    }
    None
}

fn parse_limit(metric: Metric, text: &str) -> Result<f64, String> {
    let number = |s: &str| -> Result<f64, String> {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{:?} is not a number", s.trim()))
    };
    match metric {
        Metric::Latency(_) => {
            let (value, scale) = if let Some(v) = text.strip_suffix("ms") {
                (v, 1.0)
            } else if let Some(v) = text.strip_suffix("us").or_else(|| text.strip_suffix("µs")) {
                (v, 0.001)
            } else if let Some(v) = text.strip_suffix('s') {
                (v, 1000.0)
            } else if let Some(v) = text.strip_suffix('m') {
                (v, 60_000.0)
            } else {
                return Err(format!(
                    "a latency limit needs a unit: write e.g. `{text}ms` or `{text}s`"
                ));
            };
            Ok(number(value)? * scale)
        }
        Metric::ErrorRate | Metric::Checks => {
            if let Some(v) = text.strip_suffix('%') {
                let v = number(v)?;
                if !(0.0..=100.0).contains(&v) {
                    return Err(format!("{v}% is not between 0% and 100%"));
                }
                Ok(v)
            } else {
                let v = number(text)?;
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!(
                        "a rate is a percentage or a fraction: write `{v}%` or a number from 0 to 1"
                    ));
                }
                Ok(v * 100.0)
            }
        }
        Metric::DroppedIterations
        | Metric::Requests
        | Metric::Failed
        | Metric::MissingWrites
        | Metric::MismatchedWrites
        | Metric::MissingInvocations
        | Metric::IsolationLeaks => {
            let v = number(text)?;
            if v < 0.0 || v.fract() != 0.0 {
                return Err(format!("{text:?} is not a count"));
            }
            Ok(v)
        }
        Metric::Rps => number(text.strip_suffix("/s").unwrap_or(text)),
    }
}

/// A measured value in the unit its rule was written in, as reports print it:
/// `p99 < 1s` measured 5 983 ms reads `5.983s`, `error_rate < 1%` reads `2.5%`.
pub fn format_actual(expr: &str, actual: f64) -> String {
    // As reports print numbers: whole ones bare, others to 3 decimals.
    let number = |v: f64| {
        if v.fract() == 0.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.3}")
        }
    };
    let Some((lhs, _, rhs)) = split_op(expr) else {
        return number(actual);
    };
    let lhs = lhs.trim();
    let name = lhs.rsplit_once('.').map_or(lhs, |(_, m)| m.trim());
    let metric = parse_metric(lhs).or_else(|| parse_metric(name));
    let rhs = rhs.trim();
    match metric {
        Some(Metric::Latency(_)) => {
            if rhs.ends_with("ms") {
                format!("{}ms", number(actual))
            } else if rhs.ends_with("us") || rhs.ends_with("µs") {
                format!("{}us", number(actual * 1000.0))
            } else if rhs.ends_with('s') {
                format!("{}s", number(actual / 1000.0))
            } else if rhs.ends_with('m') {
                format!("{}m", number(actual / 60_000.0))
            } else {
                format!("{}ms", number(actual))
            }
        }
        Some(Metric::ErrorRate | Metric::Checks) => format!("{}%", number(actual)),
        Some(Metric::Rps) => format!("{}/s", number(actual)),
        _ => number(actual),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn steps() -> Vec<String> {
        vec!["create_user".into(), "get user".into()]
    }

    #[test]
    fn parses_the_documented_forms() {
        let t = Threshold::parse("p99 < 800ms", &steps()).unwrap();
        assert_eq!(
            (t.step.as_deref(), t.metric, t.op, t.limit),
            (None, Metric::Latency(Stat::P99), Op::Lt, 800.0)
        );
        let t = Threshold::parse("create_user.p95<=1.5s", &steps()).unwrap();
        assert_eq!(
            (t.step.as_deref(), t.op, t.limit),
            (Some("create_user"), Op::Le, 1500.0)
        );
        let t = Threshold::parse("get user.error_rate < 1%", &steps()).unwrap();
        assert_eq!(
            (t.step.as_deref(), t.metric, t.limit),
            (Some("get user"), Metric::ErrorRate, 1.0)
        );
        assert_eq!(
            Threshold::parse("error_rate < 0.05", &steps())
                .unwrap()
                .limit,
            5.0
        );
        assert_eq!(
            Threshold::parse("checks == 100%", &steps()).unwrap().op,
            Op::Eq
        );
        assert_eq!(
            Threshold::parse("dropped_iterations == 0", &steps())
                .unwrap()
                .limit,
            0.0
        );
        assert_eq!(
            Threshold::parse("rps >= 45/s", &steps()).unwrap().limit,
            45.0
        );
        assert_eq!(
            Threshold::parse("p99.9 < 2s", &steps()).unwrap().metric,
            Metric::Latency(Stat::P999)
        );
    }

    #[test]
    fn rejects_what_is_ambiguous_or_wrong() {
        for bad in [
            "p99 800ms",
            "p99 < 800",
            "p98 < 1s",
            "nope.p99 < 1s",
            "error_rate < 5",
            "checks > 120%",
            "dropped_iterations < 1.5",
            "p99 < fast",
        ] {
            assert!(
                Threshold::parse(bad, &steps()).is_err(),
                "{bad} should be rejected"
            );
        }
    }

    proptest! {
        #[test]
        fn latency_limits_round_trip(ms in 0u32..1_000_000, op in 0usize..6) {
            let ops = ["<", "<=", ">", ">=", "==", "!="];
            let t = Threshold::parse(&format!("p90 {} {ms}ms", ops[op]), &steps()).unwrap();
            prop_assert_eq!(t.limit, f64::from(ms));
            let t = Threshold::parse(&format!("max{}{ms}s", ops[op]), &steps()).unwrap();
            prop_assert!((t.limit - f64::from(ms) * 1000.0).abs() < 1e-6);
        }

        #[test]
        fn comparisons_agree_with_arithmetic(actual in 0.0f64..10_000.0, limit in 0.0f64..10_000.0) {
            prop_assert_eq!(Op::Lt.holds(actual, limit), actual < limit);
            prop_assert_eq!(Op::Gt.holds(actual, limit), actual > limit);
            prop_assert_eq!(Op::Le.holds(actual, limit), !Op::Gt.holds(actual, limit) || (actual - limit).abs() <= 1e-9 * limit.max(1.0));
        }

        #[test]
        fn parse_never_panics(text in any::<String>()) {
            let _ = Threshold::parse(&text, &steps());
        }
    }
}
