//! Faults: parsing `--fault NAME[=VALUE]`, and the injected behaviours at run time
//! (errors, dropped writes, latency, one stall window, throttling). The two
//! misconfiguration faults are written into moto's control plane by `bootstrap`.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The faults asked for on the command line, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// test-user-service's `Environment` becomes `""`: Test writes into `User`.
    pub shared_table: bool,
    /// Stage test's variable `env` becomes `""`: Test invokes `user-service`.
    pub shared_function: bool,
    /// The misconfigurations a person makes, written into the control plane
    /// (only reading the configuration reveals them), all on stage test's chain
    /// except `code-drift`.
    pub config: Vec<ConfigFault>,
    /// Probability that a write is answered as successful but skipped.
    pub drop_writes: f64,
    /// Probability that an invocation fails with 502.
    pub error_rate: f64,
    pub latency: Option<Latency>,
    pub stall: Option<Stall>,
    /// Extra time before log events are shipped.
    pub log_delay: Duration,
    /// Token-bucket rate; beyond it, 429.
    pub throttle_rps: Option<f64>,
    /// FilterLogEvents answers an empty page with a `nextToken` before each
    /// real one, as CloudWatch Logs may: only a missing token ends a scan.
    pub empty_log_pages: bool,
}

/// A mistake written into the control plane by bootstrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFault {
    /// test-user-service has no permission for API Gateway (500s).
    MissingPermission,
    /// test-user-service's permission names stage prod in its SourceArn (500s).
    WrongSourceArn,
    /// test's role also allows prod's table `User`: no runtime symptom at all.
    RoleAllowsProdTable,
    /// test's role names `test-Users`, not its table (502s).
    RoleMissingTable,
    /// Stage test has no `env` variable: its integration URI cannot resolve (500s).
    UnsetStageVariable,
    /// Stage test serves a deployment of a broken integration; the draft has
    /// been fixed since, but not deployed (500s).
    StaleDeployment,
    /// prod's function code differs from test's (CodeSha256): what Test
    /// proved is not what Prod runs.
    CodeDrift,
}

impl ConfigFault {
    pub const ALL: [ConfigFault; 7] = [
        ConfigFault::MissingPermission,
        ConfigFault::WrongSourceArn,
        ConfigFault::RoleAllowsProdTable,
        ConfigFault::RoleMissingTable,
        ConfigFault::UnsetStageVariable,
        ConfigFault::StaleDeployment,
        ConfigFault::CodeDrift,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ConfigFault::MissingPermission => "missing-permission",
            ConfigFault::WrongSourceArn => "wrong-source-arn",
            ConfigFault::RoleAllowsProdTable => "role-allows-prod-table",
            ConfigFault::RoleMissingTable => "role-missing-table",
            ConfigFault::UnsetStageVariable => "unset-stage-variable",
            ConfigFault::StaleDeployment => "stale-deployment",
            ConfigFault::CodeDrift => "code-drift",
        }
    }
}

impl Faults {
    pub fn has(&self, fault: ConfigFault) -> bool {
        self.config.contains(&fault)
    }

    /// Every fault asked for, as written on the command line.
    pub fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.shared_table {
            names.push("shared-table".to_string());
        }
        if self.shared_function {
            names.push("shared-function".to_string());
        }
        if self.empty_log_pages {
            names.push("empty-log-pages".to_string());
        }
        names.extend(self.config.iter().map(|f| f.name().to_string()));
        let mut valued = |name: &str, on: bool, value: String| {
            if on {
                names.push(format!("{name}={value}"));
            }
        };
        valued(
            "drop-writes",
            self.drop_writes > 0.0,
            self.drop_writes.to_string(),
        );
        valued(
            "error-rate",
            self.error_rate > 0.0,
            self.error_rate.to_string(),
        );
        if let Some(l) = self.latency {
            valued(
                "latency",
                true,
                format!("{}±{}", l.base.as_millis(), l.jitter.as_millis()),
            );
        }
        if let Some(st) = self.stall {
            valued("stall", true, format!("{:?}:{:?}", st.at, st.duration));
        }
        valued(
            "log-delay",
            !self.log_delay.is_zero(),
            self.log_delay.as_millis().to_string(),
        );
        if let Some(t) = self.throttle_rps {
            valued("throttle", true, t.to_string());
        }
        names
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub base: Duration,
    pub jitter: Duration,
}

/// Every response that would complete inside [at, at+duration) after the first
/// request is held until the window ends; the window happens once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stall {
    pub at: Duration,
    pub duration: Duration,
}

const FAULT_NAMES: &str = "shared-table, shared-function, missing-permission, wrong-source-arn, \
role-allows-prod-table, role-missing-table, unset-stage-variable, stale-deployment, code-drift, \
empty-log-pages, drop-writes=P, error-rate=P, latency=MS[±J], stall=AT:FOR, log-delay=MS, throttle=RPS";

impl Faults {
    pub fn parse(specs: &[String]) -> Result<Faults, String> {
        let mut faults = Faults::default();
        for spec in specs {
            let (name, value) = match spec.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (spec.trim(), None),
            };
            match name {
                "shared-table" | "shared-function" | "empty-log-pages" => {
                    if value.is_some() {
                        return Err(format!("--fault {name} takes no value"));
                    }
                    match name {
                        "shared-table" => faults.shared_table = true,
                        "shared-function" => faults.shared_function = true,
                        _ => faults.empty_log_pages = true,
                    }
                }
                _ if ConfigFault::ALL.iter().any(|f| f.name() == name) => {
                    if value.is_some() {
                        return Err(format!("--fault {name} takes no value"));
                    }
                    if let Some(f) = ConfigFault::ALL.into_iter().find(|f| f.name() == name)
                        && !faults.config.contains(&f)
                    {
                        faults.config.push(f);
                    }
                }
                "drop-writes" => faults.drop_writes = probability(name, need(name, value)?)?,
                "error-rate" => faults.error_rate = probability(name, need(name, value)?)?,
                "latency" => faults.latency = Some(latency(need(name, value)?)?),
                "stall" => faults.stall = Some(stall(need(name, value)?)?),
                "log-delay" => faults.log_delay = millis_or_duration(name, need(name, value)?)?,
                "throttle" => {
                    let v = need(name, value)?;
                    let rps: f64 = v.parse().map_err(|_| {
                        format!(
                            "--fault throttle={v}: expected requests per second, e.g. throttle=50"
                        )
                    })?;
                    if !(rps.is_finite() && rps > 0.0) {
                        return Err(format!("--fault throttle={v}: the rate must be above 0"));
                    }
                    faults.throttle_rps = Some(rps);
                }
                other => {
                    return Err(format!(
                        "unknown fault {other:?}; known faults: {FAULT_NAMES}"
                    ));
                }
            }
        }
        Ok(faults)
    }
}

fn need<'a>(name: &str, value: Option<&'a str>) -> Result<&'a str, String> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("--fault {name} needs a value ({FAULT_NAMES})"))
}

fn probability(name: &str, v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "--fault {name}={v}: expected a probability between 0 and 1, e.g. {name}=0.1"
        )),
    }
}

/// Plain numbers are milliseconds (`250`); units are accepted too (`250ms`, `1s`).
fn millis_or_duration(name: &str, v: &str) -> Result<Duration, String> {
    if let Ok(ms) = v.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    humantime::parse_duration(v)
        .map_err(|_| format!("--fault {name}={v}: expected milliseconds, e.g. {name}=250 or 250ms"))
}

/// Plain numbers are seconds here (`2:1`), as `stall` windows are written in seconds.
fn seconds_or_duration(v: &str) -> Option<Duration> {
    if let Ok(s) = v.parse::<f64>() {
        return (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s));
    }
    humantime::parse_duration(v).ok()
}

fn latency(v: &str) -> Result<Latency, String> {
    let (base, jitter) = if let Some((b, j)) = v.split_once('±') {
        (b, Some(j))
    } else if let Some((b, j)) = v.split_once("+-") {
        (b, Some(j))
    } else {
        (v, None)
    };
    let base = millis_or_duration("latency", base.trim())?;
    let jitter = match jitter {
        Some(j) => millis_or_duration("latency", j.trim())?,
        None => Duration::ZERO,
    };
    Ok(Latency { base, jitter })
}

fn stall(v: &str) -> Result<Stall, String> {
    let bad =
        || format!("--fault stall={v}: expected AT:FOR, e.g. stall=2s:1s or stall=2:1 (seconds)");
    let (at, duration) = v.split_once(':').ok_or_else(bad)?;
    let at = seconds_or_duration(at.trim()).ok_or_else(bad)?;
    let duration = seconds_or_duration(duration.trim()).ok_or_else(bad)?;
    if duration.is_zero() {
        return Err(format!(
            "--fault stall={v}: the stall must last more than 0"
        ));
    }
    Ok(Stall { at, duration })
}

/// The faults' state while serving.
pub struct FaultState {
    pub faults: Faults,
    first_request: OnceLock<Instant>,
    bucket: Option<Mutex<TokenBucket>>,
}

struct TokenBucket {
    tokens: f64,
    capacity: f64,
    rate_per_s: f64,
    last: Instant,
}

impl FaultState {
    pub fn new(faults: Faults) -> FaultState {
        let bucket = faults.throttle_rps.map(|rps| {
            // Burst equal to one second's rate, at least one request: like API
            // Gateway's stage throttling with burst = rate.
            let capacity = rps.max(1.0);
            Mutex::new(TokenBucket {
                tokens: capacity,
                capacity,
                rate_per_s: rps,
                last: Instant::now(),
            })
        });
        FaultState {
            faults,
            first_request: OnceLock::new(),
            bucket,
        }
    }

    /// Starts the stall clock at the first request the sandbox sees.
    pub fn note_request(&self) {
        if self.faults.stall.is_some() {
            self.first_request.get_or_init(Instant::now);
        }
    }

    /// False when the request is beyond the throttle's token bucket.
    pub fn admit(&self) -> bool {
        let Some(bucket) = &self.bucket else {
            return true;
        };
        let mut b = match bucket.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.last = now;
        b.tokens = (b.tokens + elapsed * b.rate_per_s).min(b.capacity);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn inject_error(&self) -> bool {
        chance(self.faults.error_rate)
    }

    pub fn drop_write(&self) -> bool {
        chance(self.faults.drop_writes)
    }

    pub fn added_latency(&self) -> Option<Duration> {
        let l = self.faults.latency?;
        if l.jitter.is_zero() {
            return Some(l.base);
        }
        let jitter_ms = l.jitter.as_secs_f64() * 1000.0;
        let base_ms = l.base.as_secs_f64() * 1000.0;
        let ms = (base_ms + (fastrand::f64() * 2.0 - 1.0) * jitter_ms).max(0.0);
        Some(Duration::from_secs_f64(ms / 1000.0))
    }

    /// When a response ready now falls inside the stall window, the instant it may go.
    pub fn hold_until(&self, now: Instant) -> Option<Instant> {
        let stall = self.faults.stall?;
        let first = *self.first_request.get()?;
        let start = first + stall.at;
        let end = start + stall.duration;
        (now >= start && now < end).then_some(end)
    }
}

fn chance(p: f64) -> bool {
    p > 0.0 && (p >= 1.0 || fastrand::f64() < p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(specs: &[&str]) -> Result<Faults, String> {
        Faults::parse(&specs.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_every_fault() {
        let f = parse(&[
            "shared-table",
            "shared-function",
            "empty-log-pages",
            "drop-writes=0.5",
            "error-rate=1",
            "latency=50±10",
            "stall=2s:1s",
            "log-delay=3000",
            "throttle=20",
        ])
        .unwrap();
        assert!(f.shared_table && f.shared_function && f.empty_log_pages);
        assert!(f.names().contains(&"throttle=20".to_string()));
        assert!(f.names().contains(&"empty-log-pages".to_string()));
        assert_eq!(f.drop_writes, 0.5);
        assert_eq!(f.error_rate, 1.0);
        assert_eq!(
            f.latency,
            Some(Latency {
                base: Duration::from_millis(50),
                jitter: Duration::from_millis(10)
            })
        );
        assert_eq!(
            f.stall,
            Some(Stall {
                at: Duration::from_secs(2),
                duration: Duration::from_secs(1)
            })
        );
        assert_eq!(f.log_delay, Duration::from_secs(3));
        assert_eq!(f.throttle_rps, Some(20.0));
    }

    #[test]
    fn parses_the_misconfigurations() {
        let names: Vec<&str> = ConfigFault::ALL.iter().map(|f| f.name()).collect();
        let f = parse(&names).unwrap();
        assert_eq!(f.config, ConfigFault::ALL.to_vec());
        assert_eq!(f.names(), names);
        assert!(parse(&["code-drift=1"]).is_err());
    }

    #[test]
    fn plain_stall_numbers_are_seconds() {
        let f = parse(&["stall=1.5:2"]).unwrap();
        assert_eq!(f.stall.unwrap().at, Duration::from_millis(1500));
    }

    #[test]
    fn rejects_bad_values_with_a_sentence() {
        for bad in [
            "nope",
            "drop-writes=2",
            "error-rate",
            "latency=abc",
            "stall=3",
            "throttle=0",
            "shared-table=1",
        ] {
            let err = parse(&[bad]).unwrap_err();
            assert!(err.contains("fault"), "{bad}: {err}");
        }
    }

    #[test]
    fn throttle_admits_the_burst_then_refuses() {
        let state = FaultState::new(parse(&["throttle=5"]).unwrap());
        let admitted = (0..20).filter(|_| state.admit()).count();
        assert!((5..=6).contains(&admitted), "{admitted}");
    }
}
