//! Telling a canary's requests from the primary's, from API Gateway's own
//! execution logs: a canary request is logged to the stage's group and to
//! `…/{stage}/Canary`, a primary one to the stage's group only. Each
//! request's status (`Method completed with status`) and integration
//! latency (`Received response. … Integration latency`) give both sides'
//! figures; they include any other traffic the stage had in the window,
//! which is the same population for both.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use crate::Result;
use crate::aws::ControlPlane;
use crate::error::Error;
use crate::metrics::LatencySummary;
use crate::promotion::canary::Side;
use crate::verify::lines::{Execution, parse_execution};
use crate::verify::logs::{self, Pacer, Window};

/// Both sides of a canary, as the logs tell them.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub canary: Side,
    pub primary: Side,
}

#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    status: Option<u16>,
    latency_ms: Option<f64>,
}

fn read_lines(seen: &mut HashMap<String, Seen>, message: &str) {
    let Some((id, event)) = parse_execution(message) else {
        return;
    };
    let entry = seen.entry(id).or_default();
    match event {
        Execution::Completed { status } => entry.status = Some(status),
        Execution::Received {
            integration_latency_ms,
            ..
        } => entry.latency_ms = Some(integration_latency_ms),
        // A request that never reached the integration still completes.
        Execution::ConfigurationError(_) => entry.latency_ms = entry.latency_ms.or(Some(0.0)),
        _ => {}
    }
}

fn side<'a>(requests: impl Iterator<Item = &'a Seen>) -> Side {
    let mut latencies = Vec::new();
    let (mut n, mut failed) = (0u64, 0u64);
    for r in requests {
        let Some(status) = r.status else { continue };
        n += 1;
        failed += u64::from(status >= 400);
        latencies.push(r.latency_ms.unwrap_or(0.0));
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i]
    };
    Side {
        requests: n,
        failed,
        latency_ms: LatencySummary {
            min: latencies.first().copied().unwrap_or(0.0),
            mean: if latencies.is_empty() {
                0.0
            } else {
                latencies.iter().sum::<f64>() / latencies.len() as f64
            },
            p50: at(0.50),
            p90: at(0.90),
            p95: at(0.95),
            p99: at(0.99),
            p999: at(0.999),
            max: latencies.last().copied().unwrap_or(0.0),
        },
    }
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Reads both groups for the window until two reads a few seconds apart
/// agree (logs arrive late) or `deadline` passes.
pub async fn observe(
    aws: &ControlPlane,
    api: &str,
    stage: &str,
    from: SystemTime,
    to: SystemTime,
    deadline: Duration,
) -> Result<Observed> {
    let main = format!("API-Gateway-Execution-Logs_{api}/{stage}");
    let canary_group = format!("{main}/Canary");
    let skew = Duration::from_secs(30);
    let window = Window {
        start_ms: ms(from - skew),
        end_ms: ms(to + skew),
    };
    let pacer = Pacer::new();
    let started = Instant::now();
    let mut last: Option<(u64, u64)> = None;
    loop {
        let mut all = HashMap::new();
        let mut canary = HashMap::new();
        // The status and the integration latency are separate events.
        for (group, pattern, is_canary) in [
            (&main, "\"Method completed with status\"", false),
            (&main, "\"Integration latency\"", false),
            (&canary_group, "\"Method completed with status\"", true),
        ] {
            let into = if is_canary { &mut canary } else { &mut all };
            logs::scan(&aws.logs, &pacer, group, &window, Some(pattern), |m| {
                read_lines(into, m)
            })
            .await
            .map_err(Error::from)?;
        }
        let observed = Observed {
            canary: side(
                all.iter()
                    .filter(|(id, _)| canary.contains_key(*id))
                    .map(|(_, s)| s),
            ),
            primary: side(
                all.iter()
                    .filter(|(id, _)| !canary.contains_key(*id))
                    .map(|(_, s)| s),
            ),
        };
        let now = (observed.canary.requests, observed.primary.requests);
        if last == Some(now) || started.elapsed() > deadline {
            return Ok(observed);
        }
        last = Some(now);
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_make_sides() {
        let mut seen = HashMap::new();
        for line in [
            "(a) Received response. Status: 200, Integration latency: 12 ms",
            "(a) Method completed with status: 200",
            "(b) Received response. Status: 502, Integration latency: 40 ms",
            "(b) Method completed with status: 502",
            "(c) Method request path: {}",
        ] {
            read_lines(&mut seen, line);
        }
        let s = side(seen.values());
        assert_eq!((s.requests, s.failed), (2, 1), "c never completed");
        assert_eq!(s.latency_ms.max, 40.0);
        assert_eq!(s.latency_ms.p50, 12.0);
    }
}
