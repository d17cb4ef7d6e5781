//! What the engine records: per-step HDR histograms and counters. The same
//! [`Metrics`] type holds a worker's one-second delta and the run's totals, so
//! merging is one function and is exact (histograms add bucket by bucket).

pub mod histogram;

use hdrhistogram::Histogram;

pub use histogram::{
    HistogramDecodeError, LatencySummary, decode_histogram, encode_histogram, new_histogram,
};

/// Transport failures, counted apart from HTTP statuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorCounts {
    /// TCP connect or TLS handshake failed.
    pub connect: u64,
    /// No complete answer within the request timeout.
    pub timeout: u64,
    /// The connection broke while sending or reading.
    pub io: u64,
}

impl ErrorCounts {
    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.io
    }

    fn add(&mut self, other: &ErrorCounts) {
        self.connect += other.connect;
        self.timeout += other.timeout;
        self.io += other.io;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    Connect,
    Timeout,
    Io,
}

/// Statuses are counted in a flat array: cheaper than a map on the hot path.
const STATUS_SLOTS: usize = 600;

#[derive(Debug, Clone)]
pub struct StepMetrics {
    /// From when the request was due (an iteration's intended start for the
    /// first step): includes any wait for a free VU, so stalls are not hidden.
    pub latency_us: Histogram<u64>,
    /// From the actual send: what the server alone took.
    pub service_us: Histogram<u64>,
    pub requests: u64,
    pub failed: u64,
    pub status: Vec<u64>,
    pub errors: ErrorCounts,
}

impl StepMetrics {
    pub fn new() -> StepMetrics {
        StepMetrics {
            latency_us: new_histogram(),
            service_us: new_histogram(),
            requests: 0,
            failed: 0,
            status: vec![0; STATUS_SLOTS],
            errors: ErrorCounts::default(),
        }
    }

    pub fn record_response(&mut self, status: u16, latency_us: u64, service_us: u64, failed: bool) {
        self.requests += 1;
        self.failed += u64::from(failed);
        // Out-of-range statuses (a broken server) land in slot 0.
        let slot = usize::from(status);
        self.status[if slot < STATUS_SLOTS { slot } else { 0 }] += 1;
        self.record_latency(latency_us, service_us);
    }

    pub fn record_error(&mut self, error: TransportError, latency_us: u64, service_us: u64) {
        self.requests += 1;
        self.failed += 1;
        match error {
            TransportError::Connect => self.errors.connect += 1,
            TransportError::Timeout => self.errors.timeout += 1,
            TransportError::Io => self.errors.io += 1,
        }
        self.record_latency(latency_us, service_us);
    }

    fn record_latency(&mut self, latency_us: u64, service_us: u64) {
        // Auto-resizing histograms only fail on values beyond u64's range.
        let _ = self.latency_us.record(latency_us.max(1));
        let _ = self.service_us.record(service_us.max(1));
    }

    /// Status codes seen, with counts.
    pub fn statuses(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.status
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| (code as u16, *n))
    }

    pub fn merge(&mut self, other: &StepMetrics) {
        // Both sides auto-resize, so adding cannot fail for lack of range.
        let _ = self.latency_us.add(&other.latency_us);
        let _ = self.service_us.add(&other.service_us);
        self.requests += other.requests;
        self.failed += other.failed;
        for (a, b) in self.status.iter_mut().zip(&other.status) {
            *a += b;
        }
        self.errors.add(&other.errors);
    }

    pub fn reset(&mut self) {
        self.latency_us.reset();
        self.service_us.reset();
        self.requests = 0;
        self.failed = 0;
        self.status.iter_mut().for_each(|n| *n = 0);
        self.errors = ErrorCounts::default();
    }
}

impl Default for StepMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, Default)]
pub struct CheckCounts {
    pub passed: u64,
    pub failed: u64,
    /// The first failure's explanation, as an example for the report.
    pub first_failure: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Metrics {
    pub steps: Vec<StepMetrics>,
    /// Indexed like the plan's flattened check list.
    pub checks: Vec<CheckCounts>,
    pub iterations_started: u64,
    /// Every step answered and accepted.
    pub iterations_completed: u64,
    /// A request failed, or the iteration ended early (transport error,
    /// missing capture).
    pub iterations_failed: u64,
    /// Overflow past the backlog: due, never started.
    pub dropped_iterations: u64,
    /// Due within the run but still waiting in the backlog for a free VU
    /// when it ended: never started, not dropped.
    pub unstarted_iterations: u64,
    /// In flight when the grace period ran out.
    pub interrupted_iterations: u64,
    /// How late iterations started against their intended time (open model).
    pub schedule_lag_us: Histogram<u64>,
}

impl Metrics {
    pub fn new(steps: usize, checks: usize) -> Metrics {
        Metrics {
            steps: (0..steps).map(|_| StepMetrics::new()).collect(),
            checks: vec![CheckCounts::default(); checks],
            iterations_started: 0,
            iterations_completed: 0,
            iterations_failed: 0,
            dropped_iterations: 0,
            unstarted_iterations: 0,
            interrupted_iterations: 0,
            schedule_lag_us: new_histogram(),
        }
    }

    pub fn record_check(&mut self, check: usize, passed: bool, failure: impl FnOnce() -> String) {
        if let Some(counts) = self.checks.get_mut(check) {
            if passed {
                counts.passed += 1;
            } else {
                counts.failed += 1;
                if counts.first_failure.is_none() {
                    counts.first_failure = Some(failure());
                }
            }
        }
    }

    pub fn merge(&mut self, other: &Metrics) {
        for (a, b) in self.steps.iter_mut().zip(&other.steps) {
            a.merge(b);
        }
        for (a, b) in self.checks.iter_mut().zip(&other.checks) {
            a.passed += b.passed;
            a.failed += b.failed;
            if a.first_failure.is_none() {
                a.first_failure.clone_from(&b.first_failure);
            }
        }
        self.iterations_started += other.iterations_started;
        self.iterations_completed += other.iterations_completed;
        self.iterations_failed += other.iterations_failed;
        self.dropped_iterations += other.dropped_iterations;
        self.unstarted_iterations += other.unstarted_iterations;
        self.interrupted_iterations += other.interrupted_iterations;
        let _ = self.schedule_lag_us.add(&other.schedule_lag_us);
    }

    /// Hands out what was recorded since the last call and starts afresh,
    /// keeping the allocations.
    pub fn take_delta(&mut self) -> Metrics {
        let delta = self.clone();
        for step in &mut self.steps {
            step.reset();
        }
        for check in &mut self.checks {
            *check = CheckCounts::default();
        }
        self.iterations_started = 0;
        self.iterations_completed = 0;
        self.iterations_failed = 0;
        self.dropped_iterations = 0;
        self.unstarted_iterations = 0;
        self.interrupted_iterations = 0;
        self.schedule_lag_us.reset();
        delta
    }

    pub fn requests(&self) -> u64 {
        self.steps.iter().map(|s| s.requests).sum()
    }

    /// Nothing was recorded since the last delta.
    pub fn is_empty(&self) -> bool {
        self.iterations_started == 0
            && self.iterations_completed == 0
            && self.iterations_failed == 0
            && self.dropped_iterations == 0
            && self.unstarted_iterations == 0
            && self.interrupted_iterations == 0
            && self.schedule_lag_us.is_empty()
            && self.requests() == 0
    }

    pub fn failed(&self) -> u64 {
        self.steps.iter().map(|s| s.failed).sum()
    }

    /// All steps' latencies in one histogram.
    pub fn overall_latency(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for step in &self.steps {
            let _ = all.add(&step.latency_us);
        }
        all
    }
}
