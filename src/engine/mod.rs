//! The traffic engine: worker threads (one current-thread runtime each) run
//! the VUs; the coordinator on the calling thread owns the clock, stops the
//! run (end, Ctrl-C, SIGTERM, a failed threshold), and folds the workers'
//! once-a-second deltas into totals and the timeline.

pub mod client;
pub mod http1;
pub mod iteration;
mod panics;
pub mod schedule;
pub mod timer;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::error::Error;
use crate::metrics::Metrics;
use crate::scenario::Plan;
use crate::summary::judge::{self, Live};
use crate::summary::timeline::Timeline;
use crate::summary::{RunFacts, TimelinePoint, Warmup};
use crate::verify::records::{InvocationRecord, Records, Reservoir, WriteRecord};
use client::Connector;
use worker::{Phase, WorkerMessage, WorkerSetup};

/// Worker threads are named this and their index, so a panic names its worker.
const WORKER_THREAD_PREFIX: &str = "stagecheck-worker-";

/// How long connecting may take before it counts as a connect error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Once a second, for progress displays; computed from the merged deltas.
#[derive(Debug, Clone)]
pub struct Progress {
    pub elapsed: Duration,
    pub total: Duration,
    /// The second was in the warmup: `second` is the warmup's traffic.
    pub warming_up: bool,
    pub second: TimelinePoint,
    pub requests: u64,
    pub failed: u64,
    pub dropped_iterations: u64,
}

pub struct RunResult {
    /// The measured phase's.
    pub metrics: Metrics,
    pub facts: RunFacts,
    pub writes: Reservoir<WriteRecord>,
    pub invocations: Reservoir<InvocationRecord>,
}

/// Verification records, bounded: exact up to the cap, a uniform sample past it.
struct Collected {
    writes: Reservoir<WriteRecord>,
    invocations: Reservoir<InvocationRecord>,
}

impl Collected {
    fn new(writes: usize, invocations: usize) -> Collected {
        Collected {
            writes: Reservoir::new(writes),
            invocations: Reservoir::new(invocations),
        }
    }

    fn add(&mut self, records: Records) {
        records
            .writes
            .into_iter()
            .for_each(|w| self.writes.offer(w));
        records
            .invocations
            .into_iter()
            .for_each(|i| self.invocations.offer(i));
    }
}

/// Checks the target answers a TCP (and TLS) connection before any traffic,
/// so an unreachable stage is one clear error rather than a run of failures.
pub async fn preflight(plan: &Plan) -> Result<Connector, Error> {
    let connector = Connector::new(
        &plan.target,
        &plan.tls,
        CONNECT_TIMEOUT.min(plan_timeout(plan)),
    )
    .await
    .map_err(|e| Error::Unreachable(format!("{} ({e})", plan.target.base_url)))?;
    connector.connect(0).await.map(drop).map_err(|e| match e {
        client::ConnectError::Tls { .. } => Error::Unreachable(format!(
            "{}: {e} (for a self-signed certificate pass --ca-cert FILE, or --insecure)",
            plan.target.base_url
        )),
        _ => Error::Unreachable(format!("{}: {e}", plan.target.base_url)),
    })?;
    Ok(connector)
}

fn plan_timeout(plan: &Plan) -> Duration {
    plan.steps
        .iter()
        .map(|s| s.timeout)
        .max()
        .unwrap_or(CONNECT_TIMEOUT)
}

/// Runs the plan to its end or until stopped; `progress` is called once a
/// second. With `start_at`, the traffic waits until then (after the target
/// answered), so shards given one time start together.
pub fn run(
    plan: Arc<Plan>,
    start_at: Option<SystemTime>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<RunResult, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(coordinate(plan, start_at, progress))
}

async fn coordinate(
    plan: Arc<Plan>,
    start_at: Option<SystemTime>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<RunResult, Error> {
    let connector = Arc::new(preflight(&plan).await?);
    let mut signals = Signals::new();
    if let Some(wait) = start_at.and_then(|at| at.duration_since(SystemTime::now()).ok()) {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            name = signals.next() => {
                return Err(Error::Runtime(format!(
                    "interrupted by {name} while waiting for --start-at; no traffic was sent"
                )));
            }
        }
        signals.count = 0;
    }
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let (report_tx, mut report_rx) = mpsc::unbounded_channel();
    let started_at = SystemTime::now();
    let start = Instant::now();
    let claimed = Arc::new(AtomicU64::new(0));
    keep_large_allocations_apart();
    let threads = plan.threads;
    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        let setup = WorkerSetup {
            index,
            threads,
            plan: plan.clone(),
            connector: connector.clone(),
            start,
            phase: phase_rx.clone(),
            report: report_tx.clone(),
            claimed: claimed.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("{WORKER_THREAD_PREFIX}{index}"))
            .spawn(move || worker::run(setup))
            .map_err(|e| Error::Runtime(format!("cannot start a worker thread: {e}")))?;
        handles.push(handle);
    }
    drop(report_tx);

    let mut totals = Metrics::new(plan.steps.len(), plan.check_count());
    let mut warmup_totals =
        (!plan.load.warmup.is_zero()).then(|| Metrics::new(plan.steps.len(), plan.check_count()));
    let warmup_ticks = plan.load.warmup.as_secs();
    let mut collected = Collected::new(
        plan.verify.max_recorded_writes,
        plan.verify.max_recorded_invocations,
    );
    let mut seconds: BTreeMap<u64, Second> = BTreeMap::new();
    let mut timeline = Timeline::default();
    let mut done = 0;
    let mut stopped_by: Option<String> = None;
    let mut partial = false;
    let end = start + plan.load.duration;
    let mut stop_deadline: Option<Instant> = None;

    panics::install();
    while done < threads {
        if panics::any() {
            // Stop the others at once: the run can no longer be judged.
            let _ = phase_tx.send(Phase::Abort);
        }
        let grace_over = async {
            match stop_deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let run_over = async {
            if stop_deadline.is_none() {
                tokio::time::sleep_until(end.into()).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            message = report_rx.recv() => match message {
                Some(WorkerMessage::Tick { tick, delta, warmup, records }) => {
                    collected.add(records);
                    totals.merge(&delta);
                    add_warmup(&mut warmup_totals, warmup.as_deref());
                    let complete = add_to_second(&mut seconds, tick, &delta, warmup.as_deref(), threads, &plan);
                    if let Some((second, warm)) = complete {
                        let warming_up = tick < warmup_ticks;
                        let shown = if warming_up { warm.as_ref().unwrap_or(&second) } else { &second };
                        let point = TimelinePoint::from_delta(tick, shown);
                        progress(&Progress {
                            elapsed: start.elapsed(),
                            total: plan.load.duration,
                            warming_up,
                            second: point.clone(),
                            requests: totals.requests(),
                            failed: totals.failed(),
                            dropped_iterations: totals.dropped_iterations,
                        });
                        if !warming_up {
                            push_second(&mut timeline, point);
                        }
                        let measured_for = start.elapsed().saturating_sub(plan.load.warmup);
                        let judge = stop_deadline.is_none() && plan.abort_on_fail && !warming_up && measured_for >= plan.abort_delay;
                        if let Some(rule) = judge.then(|| failing_threshold(&plan, &totals, measured_for)).flatten() {
                            stopped_by = Some(format!("threshold `{rule}` failed during the run"));
                            partial = true;
                            stop_deadline = Some(Instant::now() + plan.load.grace);
                            let _ = phase_tx.send(Phase::Stopping);
                        }
                    }
                }
                Some(WorkerMessage::Done { tick, delta, warmup, records }) => {
                    collected.add(records);
                    totals.merge(&delta);
                    add_warmup(&mut warmup_totals, warmup.as_deref());
                    if let Some((second, _)) = add_to_second(&mut seconds, tick, &delta, warmup.as_deref(), threads, &plan)
                        && tick >= warmup_ticks
                    {
                        push_second(&mut timeline, TimelinePoint::from_delta(tick, &second));
                    }
                    done += 1;
                }
                None => break,
            },
            _ = run_over => {
                stop_deadline = Some(Instant::now() + plan.load.grace);
                let _ = phase_tx.send(Phase::Stopping);
            }
            _ = grace_over => {
                let _ = phase_tx.send(Phase::Abort);
                stop_deadline = Some(Instant::now() + Duration::from_secs(3600));
            }
            name = signals.next() => {
                partial = true;
                if signals.count == 1 {
                    stopped_by = Some(format!("interrupted by {name}"));
                    let graceful = Instant::now() + plan.load.grace;
                    stop_deadline = Some(stop_deadline.map_or(graceful, |at| at.min(graceful)));
                    let _ = phase_tx.send_if_modified(|p| {
                        let running = *p == Phase::Running;
                        if running {
                            *p = Phase::Stopping;
                        }
                        running
                    });
                } else {
                    // A second interrupt: the user does not want to wait for the grace period.
                    let _ = phase_tx.send(Phase::Abort);
                }
            }
        }
    }
    let elapsed = start.elapsed();
    for (index, handle) in handles.into_iter().enumerate() {
        if let Err(payload) = handle.join() {
            panics::record(index, panics::message(payload.as_ref()));
        }
    }
    // A worker that panicked took its share of the load with it: the numbers
    // are a fraction of the run and must not be judged as the whole.
    if let Some(first) = panics::take().into_iter().next() {
        return Err(Error::Runtime(format!(
            "{first}; the run is incomplete, so no summary is judged"
        )));
    }
    // Seconds some worker never completed (the last, partial one) still count.
    for (tick, second) in seconds.range(warmup_ticks..) {
        timeline.push(TimelinePoint::from_delta(*tick, &second.measured));
    }
    Ok(RunResult {
        metrics: totals,
        facts: RunFacts {
            started_at,
            elapsed,
            partial,
            stopped_by,
            timeline: timeline.into_points(),
            warmup: warmup_totals.map(|metrics| Warmup {
                planned: plan.load.warmup,
                metrics,
            }),
        },
        writes: collected.writes,
        invocations: collected.invocations,
    })
}

/// Adds a second to the timeline; when that folded it (every 2^k × 1 024
/// seconds), gives the memory the fold freed back to the system.
fn push_second(timeline: &mut Timeline, point: TimelinePoint) {
    let width = timeline.width();
    timeline.push(point);
    if timeline.width() != width {
        release_freed_memory();
    }
}

/// A fold re-encodes every point's histogram, decoding two for each: glibc
/// keeps the pages those transient histograms freed between the new
/// points, and a soak's RSS rose a step at each fold that it never gave
/// back (+2.7 MB at minute 17, +0.8 MB at minute 34 of an hour at
/// 10 000 requests/s). Trimming once per fold hands them back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free memory to the system; it takes
    // no pointer and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_freed_memory() {}

/// Every second the coordinator decodes, adds and encodes histograms (tens
/// of KB each, a deflate state of about 256 KB), and keeps a small point of
/// the timeline. glibc serves large blocks from its heap once one has been
/// freed (its mmap threshold rises with the largest freed block), so the
/// points kept landed between the transient blocks and pinned their pages:
/// a soak's heap grew 2 MB between minute 10 and minute 45. With a fixed
/// threshold, blocks of 32 KiB and more are mapped and unmapped on their
/// own, and the heap holds only the small things that stay.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_large_allocations_apart() {
    // SAFETY: mallopt only changes the allocator's policy for later
    // allocations; it takes no pointer.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_large_allocations_apart() {}

/// One second of the run as the workers report it: the measured phase's
/// part, and the warmup's (its iterations can end after it).
struct Second {
    reported: usize,
    measured: Metrics,
    warmup: Option<Metrics>,
}

/// Adds a worker's share of second `tick`; returns the second once every
/// worker has reported it.
fn add_to_second(
    seconds: &mut BTreeMap<u64, Second>,
    tick: u64,
    delta: &Metrics,
    warmup: Option<&Metrics>,
    threads: usize,
    plan: &Plan,
) -> Option<(Metrics, Option<Metrics>)> {
    let new = || Metrics::new(plan.steps.len(), plan.check_count());
    let entry = seconds.entry(tick).or_insert_with(|| Second {
        reported: 0,
        measured: new(),
        warmup: None,
    });
    entry.reported += 1;
    entry.measured.merge(delta);
    if let Some(w) = warmup {
        entry.warmup.get_or_insert_with(new).merge(w);
    }
    if entry.reported == threads {
        seconds.remove(&tick).map(|s| (s.measured, s.warmup))
    } else {
        None
    }
}

fn add_warmup(totals: &mut Option<Metrics>, delta: Option<&Metrics>) {
    if let (Some(totals), Some(delta)) = (totals.as_mut(), delta) {
        totals.merge(delta);
    }
}

/// `measured_for`: how long the measured phase has run (rates divide by it).
fn failing_threshold(plan: &Plan, totals: &Metrics, measured_for: Duration) -> Option<String> {
    let live = Live {
        plan,
        metrics: totals,
        elapsed: measured_for,
    };
    judge::failing_during_run(&plan.thresholds, &live).map(|rule| rule.expr.clone())
}

/// Ctrl-C and SIGTERM, counted: the first stops gracefully, the second at once.
/// The streams live for the whole run so no signal falls between two listeners.
struct Signals {
    count: u32,
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(int), Ok(term)) => Some((int, term)),
                _ => None,
            };
            Signals { count: 0, streams }
        }
        #[cfg(not(unix))]
        Signals { count: 0 }
    }

    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        let name = match &mut self.streams {
            Some((int, term)) => tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            None => std::future::pending().await,
        };
        #[cfg(not(unix))]
        let name = {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        };
        self.count += 1;
        name
    }
}
