//! The real-time driver of [`Scheduler`] (feature `runtime`): tokio for asynchronous
//! actuators and timers, a bounded pool of threads for blocking ones.
//!
//! One task owns the scheduler. Everything that happens to it becomes an [`Input`] with
//! the runtime's clock reading (milliseconds since start): change sets and external
//! reports from [`Handle`]s (through a bounded channel: senders wait when it is full),
//! outcomes of actuations, and ticks when [`Scheduler::next_wake`] comes. Each input is
//! first passed to the [`Journal`] (if any: make it durable there), then recorded (if
//! asked), then applied with [`Scheduler::step`], and the tasks it dispatches start at
//! once: an [`AsyncActuator`]'s future is spawned on tokio, a [`BlockingActuator`] runs on
//! the pool. Views are owned ([`OwnedView`]), so the scheduler goes on while they run.
//!
//! Determinism: the scheduler's state is a function of the recorded input sequence;
//! [`Scheduler::replay`] of [`Stopped::trace`] from [`Stopped::initial`] reproduces every
//! state hash, whatever the thread timing that produced the sequence.
//!
//! Timeouts: an actuation overdue by its model's `timeout_ms` is failed by the scheduler
//! at the tick; its cancel token is set; a blocking actuation's thread is *abandoned*
//! (counted in [`RuntimeStats::abandoned`] and replaced, never joined) and its late outcome
//! ignored.
//!
//! # Examples
//! ```
//! use syncore::runtime::{Registry, Runtime, RuntimeConfig};
//! use syncore::sched::{Scheduler, SchedConfig};
//! use syncore::{ActuationContext, AsyncActuator, BoxFuture, ChangeSet, Config, Engine,
//!               OwnedView, Outcome, Schema};
//! struct Noop;
//! impl AsyncActuator for Noop {
//!     fn sync(&self, _: ActuationContext, _: OwnedView) -> BoxFuture<Outcome> {
//!         Box::pin(async { Outcome::ok() })
//!     }
//! }
//! let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
//! rt.block_on(async {
//!     let schema = Schema::from_json(r#"{"models": [{"name": "Site"}]}"#)?;
//!     let sched = Scheduler::new(Engine::new(schema, Config::default()), SchedConfig::default())?;
//!     let rt = Runtime::start(sched, Registry::new().with_async("Site", Noop), RuntimeConfig::default())?;
//!     rt.handle().apply(ChangeSet::new().upsert("s1", "Site", [("x", 1i64); 0])).await?;
//!     rt.handle().converged().await;
//!     let stopped = rt.shutdown(std::time::Duration::from_secs(1)).await;
//!     assert_eq!(stopped.scheduler.engine().unsettled_count(), 0);
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod pool;
mod registry;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use crate::actuation::{ActuationContext, CancelToken, OwnedView};
use crate::actuator::{Outcome, TaskKind};
use crate::change::{ApplyReport, ChangeSet};
use crate::complete::{Completion, ExternalReport};
use crate::error::{ChangeError, CompleteError};
use crate::id::Time;
use crate::sched::{Dispatch, Effect, Input, LeaseId, Metrics, Scheduler};

pub use pool::BlockingActuator;
pub use registry::{Registry, RegistryError};

use registry::Kind;

/// Runtime settings. Every option states its default.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Capacity of the input channel (change sets, reports, queries): senders wait when it
    /// is full. Default: 1,024.
    pub channel_capacity: usize,
    /// Threads of the blocking pool (for [`BlockingActuator`]s). Default: 4.
    pub blocking_threads: usize,
    /// Keep the input sequence, for [`Stopped::trace`] and replay. Default: false.
    pub record: bool,
    /// Capacity of the event broadcast ([`Handle::subscribe`]); slow subscribers lose the
    /// oldest events. Default: 4,096.
    pub events_capacity: usize,
    /// The clock's reading when the runtime starts. A restarted service passes a time past
    /// every time its scheduler has seen (for example wall-clock milliseconds since the
    /// Unix epoch), so backoff and re-sync times recorded before a restart stay meaningful.
    /// Default: `Time(0)`.
    pub start_at: Time,
    /// Scheduler milliseconds per real millisecond (a demo running 20 times faster than
    /// the wall clock uses 20). Default: 1.
    pub time_scale: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            channel_capacity: 1024,
            blocking_threads: 4,
            record: false,
            events_capacity: 4096,
            start_at: Time(0),
            time_scale: 1,
        }
    }
}

/// Makes inputs durable before they are applied: called synchronously with each input,
/// in order, before [`Scheduler::step`]. An error stops the runtime (fail-stop): the input
/// is not applied and a change set is handed back as refused.
pub trait Journal: Send + 'static {
    /// Records input number `seq` (1, 2, ...).
    ///
    /// # Errors
    /// Why it could not be made durable.
    fn record(&mut self, seq: u64, input: &Input) -> Result<(), String>;
}

/// What subscribers see, once per input applied.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// The input's number.
    pub seq: u64,
    /// The input.
    pub input: Input,
    /// Tasks it dispatched: (key, version, kind, lease).
    pub dispatched: Vec<(String, u64, TaskKind, LeaseId)>,
    /// Leases in flight after it.
    pub in_flight: usize,
    /// Tasks queued after it.
    pub queue_depth: usize,
}

/// Runtime counters (besides the scheduler's [`Metrics`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RuntimeStats {
    /// Inputs applied.
    pub inputs: u64,
    /// Blocking actuations abandoned after their deadline (threads replaced, not joined).
    pub abandoned: u64,
    /// Actuations that panicked (turned into failures).
    pub panics: u64,
}

/// A change set the scheduler refused, handed back with the reason.
#[derive(Debug, thiserror::Error)]
#[error("change set refused: {error}")]
pub struct Refused {
    /// The change set, as sent.
    pub changes: ChangeSet,
    /// Why (boxed: keeps the `Result` small).
    pub error: Box<RefusedBy>,
}

/// Why a change set was refused.
#[derive(Debug, thiserror::Error)]
pub enum RefusedBy {
    /// The engine refused it (nothing changed).
    #[error(transparent)]
    Change(ChangeError),
    /// The journal could not record it (nothing changed; the runtime stopped).
    #[error("journal: {0}")]
    Journal(String),
    /// The runtime has stopped.
    #[error("the runtime has stopped")]
    Stopped,
}

/// The runtime stopped before answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the runtime has stopped")]
pub struct Gone;

type Query = Box<dyn FnOnce(&Scheduler) + Send>;
type Predicate = Box<dyn Fn(&Scheduler) -> bool + Send>;

enum Msg {
    Apply(ChangeSet, oneshot::Sender<Result<ApplyReport, Refused>>),
    Report(
        String,
        ExternalReport,
        oneshot::Sender<Result<Completion, CompleteError>>,
    ),
    Query(Query),
    WaitUntil(Predicate, oneshot::Sender<()>),
    Shutdown(Duration, oneshot::Sender<Stopped>),
}

/// An outcome coming back from an actuation.
struct Done {
    lease: LeaseId,
    outcome: Outcome,
    panicked: bool,
}

/// What the runtime hands back when it stops.
pub struct Stopped {
    /// The scheduler (engine included), after the last input.
    pub scheduler: Scheduler,
    /// The scheduler's snapshot when the runtime started (replay starts from it).
    pub initial: Vec<u8>,
    /// The inputs applied, in order (empty unless [`RuntimeConfig::record`]).
    pub trace: Vec<Input>,
    /// The state hash after each recorded input (empty unless recording).
    pub hashes: Vec<u64>,
    /// Actuations still in flight when the shutdown deadline passed (cancelled).
    pub unfinished: usize,
    /// Counters.
    pub stats: RuntimeStats,
    /// Why it stopped, if not by a shutdown request (a journal error).
    pub error: Option<String>,
}

impl std::fmt::Debug for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stopped")
            .field("inputs", &self.trace.len())
            .field("unfinished", &self.unfinished)
            .field("stats", &self.stats)
            .field("error", &self.error)
            .finish()
    }
}

/// A cheap, cloneable handle to a running [`Runtime`].
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Msg>,
    events: broadcast::Sender<Arc<Event>>,
}

impl Handle {
    /// Sends a change set; waits while the input channel is full (back-pressure), then for
    /// the scheduler's answer. A refused change set comes back inside [`Refused`].
    ///
    /// # Errors
    /// [`Refused`], with the change set.
    pub async fn apply(&self, changes: ChangeSet) -> Result<ApplyReport, Refused> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(Msg::Apply(changes, _))) =
            self.tx.send(Msg::Apply(changes, reply)).await
        {
            return Err(Refused {
                changes,
                error: Box::new(RefusedBy::Stopped),
            });
        }
        rx.await.unwrap_or_else(|_| {
            Err(Refused {
                changes: ChangeSet::new(),
                error: Box::new(RefusedBy::Stopped),
            })
        })
    }

    /// Like [`Handle::apply`] but never waits for room: a full channel hands the change
    /// set back at once (`Err(changes)`); otherwise returns a receiver of the answer.
    ///
    /// # Errors
    /// The change set, when the channel is full or the runtime stopped.
    pub fn try_apply(
        &self,
        changes: ChangeSet,
    ) -> Result<oneshot::Receiver<Result<ApplyReport, Refused>>, ChangeSet> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Msg::Apply(changes, reply)) {
            Ok(()) => Ok(rx),
            Err(
                mpsc::error::TrySendError::Full(Msg::Apply(c, _))
                | mpsc::error::TrySendError::Closed(Msg::Apply(c, _)),
            ) => Err(c),
            Err(_) => unreachable!("an apply message comes back as sent"),
        }
    }

    /// Reports about an external object (R17).
    ///
    /// # Errors
    /// The engine's [`CompleteError`], or [`Gone`] (as `Ok(Err)` never: a stopped runtime
    /// answers `Err(UnknownKey)`-free [`Gone`] through the outer result).
    pub async fn report_external(
        &self,
        key: impl Into<String>,
        report: ExternalReport,
    ) -> Result<Result<Completion, CompleteError>, Gone> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Report(key.into(), report, reply))
            .await
            .map_err(|_| Gone)?;
        rx.await.map_err(|_| Gone)
    }

    /// Runs `f` on the scheduler between two inputs and returns its result (status,
    /// objects, plans, leases).
    ///
    /// # Errors
    /// [`Gone`] if the runtime stopped.
    pub async fn query<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Scheduler) -> R + Send + 'static,
    ) -> Result<R, Gone> {
        let (reply, rx) = oneshot::channel();
        let q: Query = Box::new(move |s| {
            let _ = reply.send(f(s));
        });
        self.tx.send(Msg::Query(q)).await.map_err(|_| Gone)?;
        rx.await.map_err(|_| Gone)
    }

    /// The scheduler's metrics (queue depth, in flight, outcomes by model, latencies).
    ///
    /// # Errors
    /// [`Gone`] if the runtime stopped.
    pub async fn metrics(&self) -> Result<Metrics, Gone> {
        self.query(Scheduler::metrics).await
    }

    /// Waits until `f` holds of the scheduler (checked after every input). Returns at once
    /// if the runtime stopped.
    pub async fn wait_until(&self, f: impl Fn(&Scheduler) -> bool + Send + 'static) {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Msg::WaitUntil(Box::new(f), reply))
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    /// Waits until every object is synced and nothing is in flight or queued.
    pub async fn converged(&self) {
        self.wait_until(|s| {
            s.in_flight() == 0 && s.queue_depth() == 0 && s.engine().unsettled_count() == 0
        })
        .await;
    }

    /// Subscribes to [`Event`]s (one per input applied, from now on).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }
}

/// A running runtime: its [`Handle`] and the loop task.
pub struct Runtime {
    handle: Handle,
    task: tokio::task::JoinHandle<Stopped>,
}

impl Runtime {
    /// Starts the loop on the current tokio runtime.
    ///
    /// # Errors
    /// [`RegistryError`] if an actuated model has no actuator (R17), or an actuator names
    /// an unknown model.
    pub fn start(
        scheduler: Scheduler,
        registry: Registry,
        config: RuntimeConfig,
    ) -> Result<Runtime, RegistryError> {
        Runtime::start_with_journal(scheduler, registry, config, None)
    }

    /// [`Runtime::start`] with a [`Journal`] that sees every input before it is applied.
    ///
    /// # Errors
    /// As [`Runtime::start`].
    pub fn start_with_journal(
        scheduler: Scheduler,
        registry: Registry,
        config: RuntimeConfig,
        journal: Option<Box<dyn Journal>>,
    ) -> Result<Runtime, RegistryError> {
        let kinds = registry.resolve(scheduler.engine().schema())?;
        let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
        let (events, _) = broadcast::channel(config.events_capacity.max(1));
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Stats::default());
        let pool = pool::Pool::new(config.blocking_threads.max(1), stats.clone());
        let initial = scheduler.snapshot();
        let core = Core {
            sched: scheduler,
            kinds,
            start: Instant::now(),
            start_at: config.start_at,
            time_scale: config.time_scale.max(1),
            journal,
            record: config.record,
            trace: Vec::new(),
            hashes: Vec::new(),
            seq: 0,
            events: events.clone(),
            done_tx,
            cancels: BTreeMap::new(),
            pool,
            stats,
            waiters: Vec::new(),
            out: Vec::new(),
            error: None,
            reap_due: false,
        };
        let task = tokio::spawn(core.run(rx, done_rx, initial));
        Ok(Runtime {
            handle: Handle { tx, events },
            task,
        })
    }

    /// A handle to send inputs and queries.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Graceful shutdown: stop dispatching (an input, recorded), wait up to `deadline` for
    /// the actuations in flight, cancel what is left, and hand back the scheduler.
    pub async fn shutdown(self, deadline: Duration) -> Stopped {
        let (reply, rx) = oneshot::channel();
        let _ = self.handle.tx.send(Msg::Shutdown(deadline, reply)).await;
        drop(self.handle);
        match rx.await {
            Ok(s) => s,
            Err(_) => self.task.await.expect("the runtime loop does not panic"),
        }
    }
}

#[derive(Default)]
struct Stats {
    abandoned: AtomicU64,
    panics: AtomicU64,
}

struct Core {
    sched: Scheduler,
    kinds: Vec<Option<Kind>>,
    start: Instant,
    start_at: Time,
    time_scale: u32,
    journal: Option<Box<dyn Journal>>,
    record: bool,
    trace: Vec<Input>,
    hashes: Vec<u64>,
    seq: u64,
    events: broadcast::Sender<Arc<Event>>,
    done_tx: mpsc::UnboundedSender<Done>,
    cancels: BTreeMap<LeaseId, (CancelToken, Option<Arc<std::sync::atomic::AtomicBool>>)>,
    pool: pool::Pool,
    stats: Arc<Stats>,
    waiters: Vec<(Predicate, Option<oneshot::Sender<()>>)>,
    out: Vec<Dispatch>,
    error: Option<String>,
    /// A tick happened: look for leases it ended.
    reap_due: bool,
}

impl Core {
    fn now(&self) -> Time {
        let micros = self.start.elapsed().as_micros();
        let ms = micros.saturating_mul(u128::from(self.time_scale)) / 1000;
        Time(
            self.start_at
                .0
                .saturating_add(u64::try_from(ms).unwrap_or(u64::MAX)),
        )
    }

    /// The instant at which the clock reads `t` (now, for times already past).
    fn at(&self, t: Time) -> Instant {
        let ms = t.0.saturating_sub(self.start_at.0);
        // Rounded up, so that the clock reads at least `t` at that instant.
        let micros = u128::from(ms)
            .saturating_mul(1000)
            .div_ceil(u128::from(self.time_scale));
        let micros = u64::try_from(micros).unwrap_or(u64::MAX / 2).min(1 << 50);
        self.start + Duration::from_micros(micros)
    }

    /// Journals, records and applies one input, then starts what it dispatched.
    fn input(&mut self, input: Input) -> Result<Effect, String> {
        self.seq += 1;
        if let Some(j) = &mut self.journal {
            if let Err(e) = j.record(self.seq, &input) {
                self.error = Some(format!("journal failed at input {}: {e}", self.seq));
                return Err(e);
            }
        }
        let keep = (self.record || self.events.receiver_count() > 0).then(|| input.clone());
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let effect = self.sched.step(input, &mut out);
        if self.record {
            self.trace.push(keep.clone().expect("kept when recording"));
            self.hashes.push(self.sched.state_hash());
        }
        if let Some(input) = keep.filter(|_| self.events.receiver_count() > 0) {
            let dispatched = out
                .iter()
                .map(|d| {
                    (
                        self.sched.engine().key(d.task.object).to_string(),
                        d.task.version,
                        d.task.kind,
                        d.lease,
                    )
                })
                .collect();
            let _ = self.events.send(Arc::new(Event {
                seq: self.seq,
                input,
                dispatched,
                in_flight: self.sched.in_flight(),
                queue_depth: self.sched.queue_depth(),
            }));
        }
        for d in &out {
            self.start_actuation(d);
        }
        self.out = out;
        Ok(effect)
    }

    fn start_actuation(&mut self, d: &Dispatch) {
        let engine = self.sched.engine();
        let view = OwnedView::of(&engine.view(d.task.object), d.task.kind);
        let cancel = CancelToken::new();
        let cx = ActuationContext {
            attempt: d.attempt,
            now: d.now,
            deadline: d.deadline,
            cancel: cancel.clone(),
        };
        let span = actuation_span(&view, d);
        let lease = d.lease;
        let tx = self.done_tx.clone();
        match &self.kinds[d.task.model.index()] {
            Some(Kind::Async(a)) => {
                let fut = match d.task.kind {
                    TaskKind::Sync => a.sync(cx, view),
                    TaskKind::Delete => a.delete(cx, view),
                };
                // One task per actuation: a panic is caught where the future is polled.
                let run = tracing::Instrument::instrument(CatchPanic(fut), span.clone());
                tokio::spawn(async move {
                    let (outcome, panicked) = match run.await {
                        Ok(o) => (o, false),
                        Err(msg) => (Outcome::failed(format!("actuator panicked: {msg}")), true),
                    };
                    record_outcome(&span, &outcome);
                    let _ = tx.send(Done {
                        lease,
                        outcome,
                        panicked,
                    });
                });
                self.cancels.insert(lease, (cancel, None));
            }
            Some(Kind::Blocking(a)) => {
                let abandoned = self.pool.run(a.clone(), cx, view, lease, span, tx);
                self.cancels.insert(lease, (cancel, Some(abandoned)));
            }
            None => {
                // Resolved at start: every actuated model has an actuator (R17).
                let _ = tx.send(Done {
                    lease,
                    outcome: Outcome::failed("no actuator"),
                    panicked: false,
                });
            }
        }
    }

    /// Leases that ended (delivered or timed out): drop their cancel tokens; cancel and
    /// abandon those the scheduler no longer holds.
    fn reap(&mut self) {
        let sched = &self.sched;
        let stats = &self.stats;
        let pool = &self.pool;
        self.cancels.retain(|lease, (cancel, abandoned)| {
            if sched.lease(lease.object).is_some_and(|l| l.id == *lease) {
                return true;
            }
            if let Some(flag) = abandoned {
                if !flag.swap(true, Ordering::SeqCst) {
                    // Still running on the pool: abandon the thread, start a replacement.
                    cancel.cancel();
                    stats.abandoned.fetch_add(1, Ordering::Relaxed);
                    pool.replace();
                }
            } else {
                cancel.cancel();
            }
            false
        });
    }

    fn notify_waiters(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let sched = &self.sched;
        self.waiters.retain_mut(|(f, reply)| {
            if f(sched) {
                if let Some(r) = reply.take() {
                    let _ = r.send(());
                }
                false
            } else {
                true
            }
        });
    }

    fn deliver(&mut self, done: Done) -> bool {
        if done.panicked {
            self.stats.panics.fetch_add(1, Ordering::Relaxed);
        }
        // Ended: nothing to cancel or abandon any more (a late one was reaped already).
        self.cancels.remove(&done.lease);
        let now = self.now();
        self.input(Input::Deliver {
            lease: done.lease,
            outcome: done.outcome,
            now,
        })
        .is_ok()
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Msg>,
        mut done_rx: mpsc::UnboundedReceiver<Done>,
        initial: Vec<u8>,
    ) -> Stopped {
        // The first input: nothing applied yet, but work restored from a snapshot may be due.
        let now = self.now();
        let _ = self.input(Input::Tick { now });
        let mut shutdown: Option<(Instant, oneshot::Sender<Stopped>)> = None;
        loop {
            if self.reap_due {
                // A tick may have timed leases out.
                self.reap_due = false;
                self.reap();
            }
            self.notify_waiters();
            if let Some((_, _)) = &shutdown {
                if self.sched.in_flight() == 0 {
                    break;
                }
            }
            if self.error.is_some() {
                break;
            }
            let wake = self.sched.next_wake().map(|w| self.at(w));
            let stop_at = shutdown.as_ref().map(|(t, _)| *t);
            tokio::select! {
                biased;
                Some(done) = done_rx.recv() => {
                    if !self.deliver(done) { break; }
                    // Drain what else completed meanwhile, without waiting.
                    while let Ok(done) = done_rx.try_recv() {
                        if !self.deliver(done) { break; }
                    }
                }
                msg = rx.recv(), if shutdown.is_none() => {
                    let Some(msg) = msg else {
                        // Every handle dropped: shut down with no wait.
                        let now = self.now();
                        let _ = self.input(Input::Shutdown { now });
                        let (tx, _) = oneshot::channel();
                        shutdown = Some((Instant::now(), tx));
                        continue;
                    };
                    match msg {
                        Msg::Apply(changes, reply) => {
                            let now = self.now();
                            let kept = changes.clone();
                            let answer = match self.input(Input::Apply { changes, now }) {
                                Ok(Effect::Applied(r)) => Ok(r),
                                Ok(Effect::Refused(e)) => Err(Refused { changes: kept, error: Box::new(RefusedBy::Change(e)) }),
                                Ok(_) => unreachable!("an apply has an apply's effect"),
                                Err(e) => Err(Refused { changes: kept, error: Box::new(RefusedBy::Journal(e)) }),
                            };
                            let _ = reply.send(answer);
                        }
                        Msg::Report(key, report, reply) => {
                            let now = self.now();
                            match self.input(Input::Report { key: key.clone(), report, now }) {
                                Ok(Effect::Reported(r)) => { let _ = reply.send(r); }
                                _ => { let _ = reply.send(Err(CompleteError::UnknownKey { key })); }
                            }
                        }
                        Msg::Query(q) => q(&self.sched),
                        Msg::WaitUntil(f, reply) => self.waiters.push((f, Some(reply))),
                        Msg::Shutdown(wait, reply) => {
                            let now = self.now();
                            let _ = self.input(Input::Shutdown { now });
                            shutdown = Some((Instant::now() + wait, reply));
                        }
                    }
                }
                _ = sleep_until(wake), if wake.is_some() => {
                    let now = self.now();
                    self.reap_due = true;
                    if self.input(Input::Tick { now }).is_err() { break; }
                }
                _ = sleep_until(stop_at), if stop_at.is_some() => break,
            }
        }
        // Cancel what is left; blocking threads still running are abandoned.
        let unfinished = self.sched.in_flight();
        for (_, (cancel, abandoned)) in std::mem::take(&mut self.cancels) {
            cancel.cancel();
            if let Some(flag) = abandoned {
                if !flag.swap(true, Ordering::SeqCst) {
                    self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        for (_, reply) in self.waiters.drain(..) {
            if let Some(r) = reply {
                let _ = r.send(());
            }
        }
        self.pool.close();
        let stopped = Stopped {
            stats: RuntimeStats {
                inputs: self.seq,
                abandoned: self.stats.abandoned.load(Ordering::Relaxed),
                panics: self.stats.panics.load(Ordering::Relaxed),
            },
            scheduler: self.sched,
            initial,
            trace: self.trace,
            hashes: self.hashes,
            unfinished,
            error: self.error,
        };
        match shutdown {
            Some((_, reply)) => match reply.send(stopped) {
                Ok(()) => Stopped::gone(),
                Err(stopped) => stopped,
            },
            None => stopped,
        }
    }
}

impl Stopped {
    /// A placeholder for the loop task's result once the real one went to the shutdown
    /// caller.
    fn gone() -> Stopped {
        Stopped {
            scheduler: Scheduler::new(
                crate::Engine::new(
                    crate::Schema::from_json(r#"{"models": []}"#).expect("empty schema"),
                    crate::Config::default(),
                ),
                crate::sched::SchedConfig::default(),
            )
            .expect("empty configuration"),
            initial: Vec::new(),
            trace: Vec::new(),
            hashes: Vec::new(),
            unfinished: 0,
            stats: RuntimeStats::default(),
            error: None,
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn actuation_span(view: &OwnedView, d: &Dispatch) -> tracing::Span {
    tracing::info_span!(
        "actuation",
        model = view.model(),
        key = view.key(),
        version = d.task.version,
        attempt = d.attempt,
        kind = ?d.task.kind,
        outcome = tracing::field::Empty,
    )
}

fn record_outcome(span: &tracing::Span, outcome: &Outcome) {
    let word = match outcome {
        Outcome::Ok { .. } => "ok",
        Outcome::Failed { .. } => "failed",
        Outcome::Deferred { .. } => "deferred",
    };
    span.record("outcome", word);
}

/// What a caught panic says.
pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

/// An actuation's future whose panic, while polled, becomes `Err(message)` (so it needs no
/// second task to watch it).
struct CatchPanic(crate::actuation::BoxFuture<Outcome>);

impl std::future::Future for CatchPanic {
    type Output = Result<Outcome, String>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let fut = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(o)) => std::task::Poll::Ready(Ok(o)),
            Err(p) => std::task::Poll::Ready(Err(panic_text(p.as_ref()))),
        }
    }
}
