//! Judging a canary against its primary: the canary's share of the requests
//! (within a binomial bound of `percentTraffic`), and relative rules written
//! like `canary.p99 < primary.p99 * 1.2` or
//! `canary.error_rate <= primary.error_rate + 0.1%`.

use std::fmt;

use crate::metrics::LatencySummary;
use crate::thresholds::{Op, Stat};

/// What a rule compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Milliseconds.
    Latency(Stat),
    /// Percent of requests that failed.
    ErrorRate,
}

impl Measure {
    fn parse(name: &str) -> Option<Measure> {
        Some(match name {
            "min" => Measure::Latency(Stat::Min),
            "mean" => Measure::Latency(Stat::Mean),
            "p50" | "median" => Measure::Latency(Stat::P50),
            "p90" => Measure::Latency(Stat::P90),
            "p95" => Measure::Latency(Stat::P95),
            "p99" => Measure::Latency(Stat::P99),
            "p999" => Measure::Latency(Stat::P999),
            "max" => Measure::Latency(Stat::Max),
            "error_rate" => Measure::ErrorRate,
            _ => return None,
        })
    }
}

/// `canary.M OP primary.M [* FACTOR] [+ OFFSET]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub expr: String,
    pub measure: Measure,
    pub op: Op,
    pub factor: f64,
    /// In the measure's unit (ms or percentage points).
    pub offset: f64,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

/// The figures of one side (canary or primary).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Side {
    pub requests: u64,
    pub failed: u64,
    /// Milliseconds, by `Stat` as the summary names them.
    pub latency_ms: LatencySummary,
}

impl Side {
    pub fn value(&self, m: Measure) -> f64 {
        match m {
            Measure::ErrorRate if self.requests == 0 => 0.0,
            Measure::ErrorRate => self.failed as f64 * 100.0 / self.requests as f64,
            Measure::Latency(s) => self.latency_ms.stat(s),
        }
    }
}

/// The outcome of one rule.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Judged {
    pub rule: String,
    pub canary: f64,
    pub limit: f64,
    pub ok: bool,
}

impl Rule {
    /// The rules a canary is held to when none are given.
    pub fn defaults() -> Vec<Rule> {
        [
            "canary.error_rate <= primary.error_rate + 1%",
            "canary.p99 <= primary.p99 * 1.5 + 20ms",
        ]
        .iter()
        .filter_map(|r| Rule::parse(r).ok())
        .collect()
    }

    pub fn parse(expr: &str) -> Result<Rule, String> {
        let fail = |why: &str| {
            format!(
                "`{expr}`: {why}; write e.g. `canary.p99 < primary.p99 * 1.2` or \
                 `canary.error_rate <= primary.error_rate + 0.1%`"
            )
        };
        let compact: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
        let (lhs, op, rhs) = ["<=", ">=", "==", "!=", "<", ">"]
            .iter()
            .find_map(|tok| {
                let at = compact.find(tok)?;
                let op = match *tok {
                    "<=" => Op::Le,
                    ">=" => Op::Ge,
                    "==" => Op::Eq,
                    "!=" => Op::Ne,
                    "<" => Op::Lt,
                    _ => Op::Gt,
                };
                Some((&compact[..at], op, &compact[at + tok.len()..]))
            })
            .ok_or_else(|| fail("no comparison"))?;
        let measure = lhs
            .strip_prefix("canary.")
            .and_then(Measure::parse)
            .ok_or_else(|| {
                fail("the left side must be canary.METRIC (p50…p999, mean, max, error_rate)")
            })?;
        let rest = rhs
            .strip_prefix("primary.")
            .ok_or_else(|| fail("the right side must start with primary.METRIC"))?;
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if Measure::parse(&rest[..name_end]) != Some(measure) {
            return Err(fail("both sides must name the same metric"));
        }
        let mut tail = &rest[name_end..];
        let mut factor = 1.0;
        if let Some(after) = tail.strip_prefix('*') {
            let end = after.find(['+', '-']).unwrap_or(after.len());
            factor = after[..end]
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .ok_or_else(|| fail("the factor must be a number"))?;
            tail = &after[end..];
        }
        let mut offset = 0.0;
        if !tail.is_empty() {
            let (sign, amount) = match tail.split_at(1) {
                ("+", a) => (1.0, a),
                ("-", a) => (-1.0, a),
                _ => return Err(fail("expected `* FACTOR` or `+ OFFSET` after the metric")),
            };
            offset = sign
                * amount_in(measure, amount).ok_or_else(|| {
                    fail(match measure {
                        Measure::ErrorRate => "the offset of an error rate is in percent (`0.1%`)",
                        Measure::Latency(_) => "the offset of a latency is a duration (`20ms`)",
                    })
                })?;
        }
        Ok(Rule {
            expr: expr.trim().to_string(),
            measure,
            op,
            factor,
            offset,
        })
    }

    pub fn judge(&self, canary: &Side, primary: &Side) -> Judged {
        let actual = canary.value(self.measure);
        let limit = primary.value(self.measure) * self.factor + self.offset;
        Judged {
            rule: self.expr.clone(),
            canary: actual,
            limit,
            ok: self.op.holds(actual, limit),
        }
    }
}

/// `0.1%` for a rate; `20ms`, `1.5s` or a bare number of ms for a latency.
fn amount_in(measure: Measure, text: &str) -> Option<f64> {
    let value = match measure {
        Measure::ErrorRate => text.strip_suffix('%')?.parse::<f64>().ok()?,
        Measure::Latency(_) => {
            if let Some(ms) = text.strip_suffix("ms") {
                ms.parse::<f64>().ok()?
            } else if let Some(s) = text.strip_suffix('s') {
                s.parse::<f64>().ok()? * 1000.0
            } else {
                text.parse::<f64>().ok()?
            }
        }
    };
    value.is_finite().then_some(value)
}

/// The canary's observed share against `percent` of `total` requests: the
/// bounds of a normal approximation of the binomial at 99.9 % (z = 3.29),
/// widened by one request for small counts. `(ok, low %, high %)`.
pub fn share_within(canary: u64, total: u64, percent: f64) -> (bool, f64, f64) {
    if total == 0 {
        return (false, 0.0, 0.0);
    }
    let n = total as f64;
    let p = (percent / 100.0).clamp(0.0, 1.0);
    let spread = 3.29 * (p * (1.0 - p) / n).sqrt() + 1.0 / n;
    let (low, high) = ((p - spread).max(0.0), (p + spread).min(1.0));
    let share = canary as f64 / n;
    (share >= low && share <= high, low * 100.0, high * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn side(requests: u64, failed: u64, p99: f64) -> Side {
        Side {
            requests,
            failed,
            latency_ms: LatencySummary {
                p99,
                ..LatencySummary::default()
            },
        }
    }

    #[test]
    fn relative_rules_read_as_written() {
        let r = Rule::parse("canary.p99 < primary.p99 * 1.2").unwrap();
        assert_eq!((r.factor, r.offset, r.op), (1.2, 0.0, Op::Lt));
        assert!(r.judge(&side(10, 0, 110.0), &side(10, 0, 100.0)).ok);
        assert!(!r.judge(&side(10, 0, 130.0), &side(10, 0, 100.0)).ok);

        let e = Rule::parse("canary.error_rate <= primary.error_rate + 0.1%").unwrap();
        assert_eq!(e.offset, 0.1);
        // 1 of 1000 = 0.1 % against 0 %: just within.
        assert!(e.judge(&side(1000, 1, 0.0), &side(1000, 0, 0.0)).ok);
        assert!(!e.judge(&side(1000, 2, 0.0), &side(1000, 0, 0.0)).ok);

        let both = Rule::parse("canary.p99 <= primary.p99 * 1.5 + 20ms").unwrap();
        assert_eq!((both.factor, both.offset), (1.5, 20.0));
        assert_eq!(
            Rule::parse("canary.p99 < primary.p99 + 1.5s")
                .unwrap()
                .offset,
            1500.0
        );
    }

    #[test]
    fn rules_that_do_not_compare_like_with_like_are_refused() {
        for bad in [
            "p99 < 100ms",
            "canary.p99 < primary.p50 * 2",
            "canary.p99 < primary.p99 * x",
            "canary.error_rate < primary.error_rate + 5ms",
            "canary.p99 < primary.p99 + 5%",
            "canary.rps < primary.rps",
            "primary.p99 > canary.p99",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(Rule::defaults().len(), 2);
    }

    #[test]
    fn the_share_is_judged_within_a_binomial_bound() {
        assert!(share_within(200, 1000, 20.0).0);
        assert!(
            share_within(170, 1000, 20.0).0,
            "3.29 sd is ±4.2 points at n=1000"
        );
        assert!(!share_within(100, 1000, 20.0).0);
        assert!(!share_within(0, 1000, 20.0).0);
        assert!(!share_within(0, 0, 20.0).0);
        // 0 % must see no canary request at all, give or take one.
        assert!(share_within(0, 500, 0.0).0);
        assert!(!share_within(50, 500, 0.0).0);
    }

    proptest! {
        /// A rule's limit is primary × factor + offset, whatever the numbers.
        #[test]
        fn limits_are_primary_times_factor_plus_offset(
            factor in 0.0f64..10.0, offset in 0.0f64..1000.0, p in 0.0f64..5000.0, c in 0.0f64..5000.0,
        ) {
            let rule = Rule::parse(&format!("canary.p99 <= primary.p99 * {factor} + {offset}ms")).unwrap();
            let j = rule.judge(&side(1, 0, c), &side(1, 0, p));
            let limit = p * factor + offset;
            prop_assert!((j.limit - limit).abs() <= 1e-6 * limit.max(1.0));
            prop_assert_eq!(j.ok, c <= limit + 1e-9 * limit.max(1.0));
        }

        /// A canary drawn at exactly the expected share always passes.
        #[test]
        fn the_expected_share_passes(total in 1u64..100_000, percent in 0.0f64..100.0) {
            let expected = (total as f64 * percent / 100.0).round() as u64;
            prop_assert!(share_within(expected, total, percent).0);
        }
    }
}
