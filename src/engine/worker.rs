//! One worker thread: a current-thread tokio runtime that owns its share of
//! the VUs and its own metrics, so the hot path takes no lock. Once a second
//! it hands its delta to the coordinator.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::HeaderValue;
use tokio::sync::{Notify, mpsc, watch};

use super::client::Connector;
use super::iteration::{self, Due, IterationContext, PreparedRequest, Vu};
use super::schedule::ArrivalSchedule;
use super::timer::DueTimer;
use crate::metrics::Metrics;
use crate::scenario::{Model, Plan};
use crate::verify::records::Records;

/// What the coordinator tells workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    /// Start nothing new; let in-flight iterations finish.
    Stopping,
    /// The grace period is over: drop what is in flight.
    Abort,
}

pub enum WorkerMessage {
    /// What one worker recorded during second `tick` of the run.
    Tick {
        tick: u64,
        delta: Box<Metrics>,
        /// The warmup's iterations' part, while any is recorded.
        warmup: Option<Box<Metrics>>,
        records: Records,
    },
    /// The worker has stopped; what it recorded in its last, partial second `tick`.
    Done {
        tick: u64,
        delta: Box<Metrics>,
        warmup: Option<Box<Metrics>>,
        records: Records,
    },
}

pub struct WorkerSetup {
    pub index: usize,
    pub threads: usize,
    pub plan: Arc<Plan>,
    pub connector: Arc<Connector>,
    pub start: Instant,
    pub phase: watch::Receiver<Phase>,
    pub report: mpsc::UnboundedSender<WorkerMessage>,
    /// Shared count of iterations claimed, when the run has an iteration cap.
    pub claimed: Arc<AtomicU64>,
}

impl WorkerSetup {
    /// This worker's place in the run-wide numbering of iterations and VUs:
    /// shards interleave first, then threads within a shard.
    fn offset_and_stride(&self) -> (u64, u64) {
        let shard = self.plan.shard;
        let offset = u64::from(shard.index) + u64::from(shard.count) * self.index as u64;
        (offset, u64::from(shard.count) * self.threads as u64)
    }
}

struct Worker {
    setup: WorkerSetup,
    metrics: RefCell<Metrics>,
    /// What the iterations due before `warmup_end` recorded: a run's first
    /// seconds (cold starts, empty caches) kept out of the measured numbers.
    warmup_metrics: RefCell<Metrics>,
    warmup_end: Instant,
    /// What verification will look for, moved out each second with the metrics
    /// (never merged into totals).
    records: RefCell<Records>,
    check_offsets: Vec<usize>,
    prepared: Vec<PreparedRequest>,
    busy: Cell<u64>,
    idle_changed: Notify,
    /// The second the ticker is in: ticks already sent.
    ticks_sent: Cell<u64>,
}

pub fn run(setup: WorkerSetup) {
    // Sockets and timers only: signals are the coordinator's, and the
    // process driver would look for orphaned children at every turn.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("worker {}: cannot start a runtime: {e}", setup.index);
            return;
        }
    };
    let plan = setup.plan.clone();
    let worker = Rc::new(Worker {
        metrics: RefCell::new(Metrics::new(plan.steps.len(), plan.check_count())),
        warmup_metrics: RefCell::new(Metrics::new(plan.steps.len(), plan.check_count())),
        warmup_end: setup.start + plan.load.warmup,
        records: RefCell::new(Records::default()),
        check_offsets: iteration::check_offsets(&plan),
        prepared: prepared_requests(&plan),
        busy: Cell::new(0),
        idle_changed: Notify::new(),
        ticks_sent: Cell::new(0),
        setup,
    });
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, worker.clone().main());
    // Whatever is still in flight now was cut off by the grace period.
    let mut metrics = worker.metrics.borrow_mut();
    metrics.interrupted_iterations += worker.busy.get();
    let delta = metrics.take_delta();
    let records = worker.records.take();
    let _ = worker.setup.report.send(WorkerMessage::Done {
        tick: worker.ticks_sent.get(),
        delta: Box::new(delta),
        warmup: worker.take_warmup(),
        records,
    });
}

fn prepared_requests(plan: &Plan) -> Vec<PreparedRequest> {
    let user_agent = HeaderValue::from_static(concat!("stagecheck/", env!("CARGO_PKG_VERSION")));
    plan.steps
        .iter()
        .map(|step| PreparedRequest::new(plan, step, &user_agent))
        .collect()
}

impl Worker {
    async fn main(self: Rc<Self>) {
        let ticker = tokio::task::spawn_local(self.clone().tick_loop());
        let load = match &self.setup.plan.load.model {
            Model::Open {
                rate,
                max_vus,
                backlog,
            } => {
                let threads = self.setup.threads as u32;
                let pool = Rc::new(Pool::new(
                    max_vus.div_ceil(threads).max(1),
                    (backlog / threads).max(1),
                ));
                tokio::task::spawn_local(self.clone().open_model(ArrivalSchedule::new(rate), pool))
            }
            Model::Closed { .. } => tokio::task::spawn_local(self.clone().closed_model()),
        };
        let mut phase = self.setup.phase.clone();
        tokio::select! {
            _ = load => {}
            _ = phase.wait_for(|p| *p == Phase::Abort) => {}
        }
        ticker.abort();
    }

    async fn tick_loop(self: Rc<Self>) {
        let mut ticks = tokio::time::interval_at(
            (self.setup.start + Duration::from_secs(1)).into(),
            Duration::from_secs(1),
        );
        for tick in 0.. {
            ticks.tick().await;
            let delta = Box::new(self.metrics.borrow_mut().take_delta());
            let warmup = self.take_warmup();
            // Moved, not copied: they can be large.
            let records = self.records.take();
            if self
                .setup
                .report
                .send(WorkerMessage::Tick {
                    tick,
                    delta,
                    warmup,
                    records,
                })
                .is_err()
            {
                return;
            }
            self.ticks_sent.set(tick + 1);
        }
    }

    /// The warmup's delta, once anything was recorded in it: nothing is
    /// sent for the seconds after its last iteration ended.
    fn take_warmup(&self) -> Option<Box<Metrics>> {
        let mut warmup = self.warmup_metrics.borrow_mut();
        (!warmup.is_empty()).then(|| Box::new(warmup.take_delta()))
    }

    /// Iterations due before the warmup's end are the warmup's, whenever
    /// they end.
    fn metrics_for(&self, due: &Due) -> (&RefCell<Metrics>, bool) {
        if due.at < self.warmup_end {
            (&self.warmup_metrics, true)
        } else {
            (&self.metrics, false)
        }
    }

    fn context(&self, due: &Due) -> IterationContext<'_> {
        let (metrics, warmup) = self.metrics_for(due);
        IterationContext {
            plan: &self.setup.plan,
            connector: &self.setup.connector,
            metrics,
            warmup,
            records: &self.records,
            check_offsets: &self.check_offsets,
            prepared: &self.prepared,
            record: iteration::RecordWhat::for_plan(&self.setup.plan),
        }
    }

    async fn run_iteration(&self, vu: &mut Vu, due: Due) {
        #[cfg(debug_assertions)]
        self.test_panic(vu);
        self.busy.set(self.busy.get() + 1);
        let cx = self.context(&due);
        cx.metrics.borrow_mut().iterations_started += 1;
        iteration::run(&cx, vu, due).await;
        self.busy.set(self.busy.get() - 1);
        // Only the drain at the end waits, and only for "nothing in flight":
        // waking it on every iteration would cost a lock per request.
        if self.busy.get() == 0 {
            self.idle_changed.notify_waiters();
        }
    }

    /// Debug builds only: `STAGECHECK_TEST_PANIC_WORKER=I` makes worker I
    /// panic in a VU's third iteration, so tests can prove a panic ends the run.
    #[cfg(debug_assertions)]
    fn test_panic(&self, vu: &Vu) {
        let target = std::env::var("STAGECHECK_TEST_PANIC_WORKER")
            .ok()
            .and_then(|v| v.parse::<usize>().ok());
        if target == Some(self.setup.index) && vu.iterations == 2 {
            panic!("test panic in a VU of worker {}", self.setup.index);
        }
    }

    fn running(&self) -> bool {
        *self.setup.phase.borrow() == Phase::Running
    }

    /// Claims one iteration against the run's cap, if it has one.
    fn claim(&self) -> bool {
        match self.setup.plan.load.iterations {
            None => true,
            // The claim counter is per process: each shard claims its share.
            Some(cap) => {
                self.setup.claimed.fetch_add(1, Ordering::Relaxed)
                    < self.setup.plan.shard.share(cap)
            }
        }
    }

    async fn open_model(self: Rc<Self>, schedule: ArrivalSchedule, pool: Rc<Pool>) {
        let (offset, stride) = self.setup.offset_and_stride();
        // The cap counts the measured phase's iterations: the warmup's come first.
        let warmup = schedule.due_before(self.setup.plan.load.warmup.as_secs_f64());
        let cap = self.setup.plan.load.iterations.map(|cap| cap + warmup);
        let mut phase = self.setup.phase.clone();
        let timer = DueTimer::new();
        let mut k = offset;
        loop {
            if cap.is_some_and(|cap| k >= cap) {
                break;
            }
            let Some(at_s) = schedule.time_of(k) else {
                break;
            };
            let at = self.setup.start + Duration::from_secs_f64(at_s);
            if at > Instant::now() {
                tokio::select! {
                    _ = timer.sleep_until(at) => {}
                    _ = phase.wait_for(|p| *p != Phase::Running) => break,
                }
            }
            if !self.running() {
                break;
            }
            self.dispatch(&pool, Due { seq: k, at });
            k += stride;
        }
        // The schedule is done: waiting iterations still start while the run
        // lasts; once it is stopping, those that never started are dropped.
        while self.running() && (self.busy.get() > 0 || !pool.queue.borrow().is_empty()) {
            tokio::select! {
                _ = self.idle_changed.notified() => {}
                _ = phase.wait_for(|p| *p != Phase::Running) => {}
            }
        }
        // Dropped means overflow past the backlog (counted as it happens, so
        // progress and total agree); these were due and waited in it.
        let left = pool.close();
        self.metrics.borrow_mut().unstarted_iterations += left;
        self.wait_idle().await;
    }

    async fn wait_idle(&self) {
        while self.busy.get() > 0 {
            self.idle_changed.notified().await;
        }
    }

    fn dispatch(self: &Rc<Self>, pool: &Rc<Pool>, due: Due) {
        let lag = Instant::now().saturating_duration_since(due.at);
        let (metrics, _) = self.metrics_for(&due);
        let _ = metrics
            .borrow_mut()
            .schedule_lag_us
            .record(lag.as_micros() as u64);
        if pool.idle.get() > 0 {
            // Claim the idle VU now: several iterations can fall due before it runs.
            pool.idle.set(pool.idle.get() - 1);
            pool.queue.borrow_mut().push_back(due);
            pool.ready.notify_one();
        } else if pool.vus.get() < pool.max_vus {
            let (offset, stride) = self.setup.offset_and_stride();
            let id = offset + stride * u64::from(pool.vus.get()) + 1;
            pool.vus.set(pool.vus.get() + 1);
            pool.queue.borrow_mut().push_back(due);
            tokio::task::spawn_local(
                self.clone()
                    .open_vu(Vu::new(id, &self.setup.plan), pool.clone()),
            );
        } else if pool.queue.borrow().len() < pool.backlog as usize {
            // Every VU is busy: wait, still timed from when it was due.
            pool.queue.borrow_mut().push_back(due);
        } else {
            metrics.borrow_mut().dropped_iterations += 1;
        }
    }

    async fn open_vu(self: Rc<Self>, mut vu: Vu, pool: Rc<Pool>) {
        loop {
            let next = pool.queue.borrow_mut().pop_front();
            match next {
                Some(due) => self.run_iteration(&mut vu, due).await,
                None if pool.closed.get() => break,
                None => {
                    // The dispatcher takes this back when it hands us work.
                    pool.idle.set(pool.idle.get() + 1);
                    pool.ready.notified().await;
                }
            }
        }
    }

    async fn closed_model(self: Rc<Self>) {
        let Model::Closed { vus, .. } = &self.setup.plan.load.model else {
            return;
        };
        let (offset, stride) = self.setup.offset_and_stride();
        let peak = vus.peak().ceil() as u64;
        let mut tasks = Vec::new();
        let mut global = offset;
        while global < peak {
            tasks.push(tokio::task::spawn_local(self.clone().closed_vu(global)));
            global += stride;
        }
        for task in tasks {
            let _ = task.await;
        }
    }

    async fn closed_vu(self: Rc<Self>, global: u64) {
        let plan = self.setup.plan.clone();
        let Model::Closed { vus, think_time } = &plan.load.model else {
            return;
        };
        let slots = (vus.peak().ceil() as u64).max(1);
        let mut vu = Vu::new(global + 1, &plan);
        let mut phase = self.setup.phase.clone();
        let mut local_count: u64 = 0;
        loop {
            if !self.running() {
                break;
            }
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(self.setup.start);
            if elapsed >= plan.load.duration {
                break;
            }
            // A ramp decides how many VUs are active now; the others wait.
            if (global as f64) >= vus.value_at(elapsed.as_secs_f64()).floor() {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => continue,
                    _ = phase.wait_for(|p| *p != Phase::Running) => break,
                }
            }
            // The warmup's iterations are not counted against the cap.
            if now >= self.warmup_end && !self.claim() {
                break;
            }
            // Unique across threads and shards: VU ids are, and each VU
            // steps by the run-wide VU count.
            let seq = global + slots * local_count;
            local_count += 1;
            self.run_iteration(&mut vu, Due { seq, at: now }).await;
            if !think_time.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(*think_time) => {}
                    _ = phase.wait_for(|p| *p != Phase::Running) => break,
                }
            }
        }
    }
}

/// The open model's VUs of one worker and the iterations waiting for them.
struct Pool {
    queue: RefCell<VecDeque<Due>>,
    ready: Notify,
    idle: Cell<u32>,
    vus: Cell<u32>,
    closed: Cell<bool>,
    max_vus: u32,
    backlog: u32,
}

impl Pool {
    fn new(max_vus: u32, backlog: u32) -> Pool {
        Pool {
            queue: RefCell::new(VecDeque::new()),
            ready: Notify::new(),
            idle: Cell::new(0),
            vus: Cell::new(0),
            closed: Cell::new(false),
            max_vus,
            backlog,
        }
    }

    /// No more iterations: idle VUs exit; returns how many were still waiting.
    fn close(&self) -> u64 {
        self.closed.set(true);
        let left = self.queue.borrow().len() as u64;
        self.queue.borrow_mut().clear();
        self.ready.notify_waiters();
        left
    }
}
