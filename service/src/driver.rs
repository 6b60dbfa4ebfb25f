//! The scheduler's driver inside the service: one thread owns the
//! [`syncore::sched::Scheduler`], turns what happens (a change set, an external report, an
//! actuation's end, the passing of time, shutdown) into a [`syncore::sched::Input`] at the
//! service's time, applies it with [`Scheduler::step`], logs it, and starts the
//! actuations the scheduler dispatched.
//!
//! The scheduler decides everything: order, holds, backoff, leases (one actuation per
//! object), limits (global and per model), priorities, re-syncs and timeouts. The driver
//! only runs actuators and keeps the log. Built-in actuators run on the runtime's blocking
//! threads; asynchronous ones (WASM plugins) run as tasks, holding no thread while they
//! wait, with a cancel token set when their lease times out or is abandoned at shutdown.
//!
//! Replay: every input that changed the scheduler's state is in the log, in the order it
//! was applied, ticks included, and a snapshot is taken with [`Scheduler::checkpoint`];
//! so the latest snapshot resumed ([`Scheduler::resume`]) plus the later entries replayed
//! with `step` give exactly the live state. A refused change set or report changes
//! nothing and is not logged; neither is a late delivery (an actuation that ended after
//! its lease timed out): it is dropped before the scheduler sees it.
//!
//! Durability: a change set's answer is sent from the log's acknowledgement, so an
//! answered change set is on disk. `step` dispatches at once, but an actuation starts only
//! once the log has committed the input that dispatched it, so no actuation acts on an
//! input a crash could lose. (An outcome lost in a crash leaves its lease in flight in the
//! replayed state; the actuation runs again, which actuators allow by contract.)

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam::channel::{Receiver, RecvTimeoutError, Sender};
use serde::Serialize;
use serde_json::json;
use syncore::sched::{Delivery, Dispatch, Effect, Input, Lease, LeaseId, Scheduler};
use syncore::{
    ActuationContext, CancelToken, ChangeError, ChangeSet, Completion, ExternalReport, Outcome,
    OwnedView, TaskKind, Time,
};
use tokio::sync::{broadcast, oneshot};

use crate::actuate::{Doc, ModelActuator};
use crate::log::{InputLog, Seq};
use crate::metrics::Metrics;

/// The wall clock, in ms since the Unix epoch: the service's time base.
pub fn now_ms() -> Time {
    Time(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

/// A change set's answer: the versions assigned, or why it was refused.
pub type ApplyAnswer = Result<Accepted, Refused>;

/// An accepted change set.
#[derive(Clone, Debug, Serialize)]
pub struct Accepted {
    /// Its log position.
    pub seq: Seq,
    /// The version each changed key got.
    pub versions: std::collections::BTreeMap<String, u64>,
    /// Keys marked for deletion.
    pub deleted: Vec<String>,
}

/// A refused input.
#[derive(Clone, Debug)]
pub enum Refused {
    /// The engine refused the change set.
    Change(ChangeError),
    /// The engine refused the report.
    Report(syncore::CompleteError),
    /// The log failed.
    Log(String),
    /// The service is shutting down.
    ShuttingDown,
}

/// A read of the state, run on the driver thread.
pub type Query = Box<dyn FnOnce(&State<'_>) + Send>;

/// What a [`Query`] sees.
pub struct State<'a> {
    /// The scheduler (leases, activity, metrics).
    pub sched: &'a Scheduler,
    /// Its engine.
    pub engine: &'a syncore::Engine,
    /// The time of the query.
    pub now: Time,
    /// Recent actuations, oldest first.
    pub recent: &'a VecDeque<Span>,
    /// The position of the last input applied (logged, perhaps not yet durable).
    pub applied: Seq,
}

/// One actuation, for the Gantt chart.
#[derive(Clone, Debug, Serialize)]
pub struct Span {
    /// The object.
    pub key: String,
    /// Its model.
    pub model: String,
    /// `sync` or `delete`.
    pub kind: &'static str,
    /// The attempt.
    pub attempt: u32,
    /// Start (ms since the epoch).
    pub start: u64,
    /// End, when it ended.
    pub end: Option<u64>,
    /// `ok`, `failed`, `deferred`, `stale` or `late` once it ended.
    pub outcome: Option<&'static str>,
}

/// Messages to the driver.
pub enum Msg {
    /// Apply a change set.
    Apply(ChangeSet, Instant, oneshot::Sender<ApplyAnswer>),
    /// Report an external object.
    Report(
        String,
        ExternalReport,
        oneshot::Sender<Result<Seq, Refused>>,
    ),
    /// The actuation of this lease ended.
    Done(LeaseId, Outcome, Instant),
    /// The log committed through this position.
    Durable(Seq),
    /// Run a read.
    Query(Query),
    /// Stop dispatching, let running actuations finish until the deadline, snapshot, stop.
    Shutdown(Instant, oneshot::Sender<()>),
}

/// Most recent actuations kept for the page.
pub const RECENT_MAX: usize = 400;

/// The driver: owns the scheduler.
pub struct Driver {
    sched: Scheduler,
    log: Arc<dyn InputLog>,
    actuators: Vec<Option<ModelActuator>>,
    applied: Seq,
    durable: Seq,
    /// Dispatches whose input the log has not committed yet, with that input's position.
    gated: VecDeque<(Seq, Dispatch)>,
    /// Actuations started and not yet delivered (by lease): when each started, and the
    /// cancel token of an asynchronous one.
    running: HashMap<LeaseId, (Instant, Option<CancelToken>)>,
    last_snapshot: Seq,
    snapshot_every: u64,
    /// The time of the last tick logged (at most one tick per millisecond).
    last_tick: Time,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    events: broadcast::Sender<String>,
    metrics: Arc<Metrics>,
    recent: VecDeque<Span>,
    runtime: tokio::runtime::Handle,
    out: Vec<Dispatch>,
}

/// What the driver needs besides the scheduler.
pub struct DriverParts {
    /// The log, already recovered into the scheduler.
    pub log: Arc<dyn InputLog>,
    /// The last position applied to the scheduler.
    pub applied: Seq,
    /// The position of the latest snapshot.
    pub last_snapshot: Seq,
    /// Entries between snapshots.
    pub snapshot_every: u64,
    /// Actuator per model id.
    pub actuators: Vec<Option<ModelActuator>>,
    /// The trace event stream.
    pub events: broadcast::Sender<String>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Where actuations run.
    pub runtime: tokio::runtime::Handle,
}

impl Driver {
    /// A driver over a recovered scheduler, and the sender of its messages.
    pub fn new(sched: Scheduler, p: DriverParts) -> (Driver, Sender<Msg>) {
        let (tx, rx) = crossbeam::channel::unbounded();
        let d = Driver {
            sched,
            log: p.log,
            actuators: p.actuators,
            applied: p.applied,
            durable: p.applied,
            gated: VecDeque::new(),
            running: HashMap::new(),
            last_snapshot: p.last_snapshot,
            snapshot_every: p.snapshot_every.max(1),
            last_tick: Time(0),
            tx: tx.clone(),
            rx,
            events: p.events,
            metrics: p.metrics,
            recent: VecDeque::new(),
            runtime: p.runtime,
            out: Vec::new(),
        };
        (d, tx)
    }

    /// Runs until a [`Msg::Shutdown`] has been handled (or every sender is gone).
    ///
    /// First the actuations of the leases still in flight in the recovered state start
    /// again (their inputs are committed: they came from the log), then a tick dispatches
    /// what may run now.
    pub fn run(mut self) {
        let leases: Vec<Lease> = self.sched.leases().copied().collect();
        for l in leases {
            let d = Dispatch {
                lease: l.id,
                task: l.task,
                attempt: l.attempt,
                now: l.started,
                deadline: l.deadline,
                eligible_at: now_ms(),
            };
            self.start(d);
        }
        self.tick(now_ms());
        loop {
            let timeout = match self.sched.next_wake() {
                Some(t) => Duration::from_millis(t.0.saturating_sub(now_ms().0).clamp(1, 1000)),
                None => Duration::from_millis(1000),
            };
            let first = match self.rx.recv_timeout(timeout) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut next = first;
            let mut handled = 0;
            while let Some(msg) = next {
                if let Msg::Shutdown(deadline, done) = msg {
                    self.shutdown(deadline);
                    let _ = done.send(());
                    return;
                }
                self.handle(msg);
                handled += 1;
                next = if handled < 4096 {
                    self.rx.try_recv().ok()
                } else {
                    None
                };
            }
            let now = now_ms();
            if self.sched.next_wake().is_some_and(|t| t <= now) {
                self.tick(now);
            }
            self.publish_metrics();
            if self.applied - self.last_snapshot >= self.snapshot_every {
                self.snapshot(false);
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Apply(set, received, reply) => self.apply(set, received, reply),
            Msg::Report(key, report, reply) => self.report(key, report, reply),
            Msg::Done(lease, outcome, started) => self.done(lease, outcome, started),
            Msg::Durable(seq) => self.durable(seq),
            Msg::Query(q) => q(&State {
                sched: &self.sched,
                engine: self.sched.engine(),
                now: now_ms(),
                recent: &self.recent,
                applied: self.applied,
            }),
            Msg::Shutdown(..) => {}
        }
    }

    /// Applies `input` with [`Scheduler::step`]. A refused input changed nothing and is
    /// not logged; any other is appended (`ack` runs once it is durable: give it the
    /// effect through `answer`) and its dispatches wait for that.
    fn step(
        &mut self,
        input: Input,
        answer: impl FnOnce(&Effect, &Scheduler) -> Option<Ack>,
    ) -> Effect {
        let bytes = input.to_bytes();
        let mut out = std::mem::take(&mut self.out);
        let effect = self.sched.step(input, &mut out);
        let ack = answer(&effect, &self.sched);
        if let Some(ack) = ack {
            let seq = self.append(bytes, ack, !out.is_empty());
            for d in out.drain(..) {
                self.gated.push_back((seq, d));
            }
        }
        debug_assert!(out.is_empty(), "a refused input dispatches nothing");
        out.clear();
        self.out = out;
        effect
    }

    /// Appends logged bytes; `ack` runs once they are durable. With `notify` (dispatches
    /// wait for this entry) the driver is told too ([`Msg::Durable`]); an entry nothing
    /// waits for costs the driver no message.
    fn append(&mut self, bytes: Vec<u8>, ack: Ack, notify: bool) -> Seq {
        let tx = notify.then(|| self.tx.clone());
        let seq = self.log.append(
            bytes,
            Box::new(move |r| {
                if let (Ok(s), Some(tx)) = (&r, tx) {
                    let _ = tx.send(Msg::Durable(*s));
                }
                ack(r.map_err(|e| e.to_string()));
            }),
        );
        self.applied = seq;
        seq
    }

    fn apply(&mut self, set: ChangeSet, received: Instant, reply: oneshot::Sender<ApplyAnswer>) {
        let metrics = self.metrics.clone();
        let mut reply = Some(reply);
        let mut report = None;
        let watched = self.events.receiver_count() > 0;
        let effect = self.step(
            Input::Apply {
                changes: set,
                now: now_ms(),
            },
            |effect, sched| {
                let Effect::Applied(r) = effect else {
                    return None;
                };
                let versions = r
                    .changed
                    .iter()
                    .filter_map(|k| sched.engine().object(k).map(|o| (k.clone(), o.version)))
                    .collect();
                let deleted = r.deleted.clone();
                let reply = reply.take()?;
                if watched {
                    report = Some((r.changed.clone(), r.deleted.clone()));
                }
                Some(Box::new(move |res: Result<Seq, String>| {
                    metrics
                        .apply_latency
                        .observe(received.elapsed().as_secs_f64());
                    let _ = reply.send(
                        res.map(|seq| Accepted {
                            seq,
                            versions,
                            deleted,
                        })
                        .map_err(Refused::Log),
                    );
                }))
            },
        );
        match effect {
            Effect::Refused(e) => {
                self.metrics.refused.fetch_add(1, Ordering::Relaxed);
                if let Some(reply) = reply {
                    let _ = reply.send(Err(Refused::Change(e)));
                }
            }
            _ => {
                self.metrics.applies.fetch_add(1, Ordering::Relaxed);
                if let Some((changed, deleted)) = report {
                    self.event(
                        || json!({"event": "did_apply", "changed": changed, "deleted": deleted}),
                    );
                }
            }
        }
    }

    fn report(
        &mut self,
        key: String,
        report: ExternalReport,
        reply: oneshot::Sender<Result<Seq, Refused>>,
    ) {
        let mut reply = Some(reply);
        let effect = self.step(
            Input::Report {
                key: key.clone(),
                report,
                now: now_ms(),
            },
            |effect, _| {
                if matches!(effect, Effect::Reported(Err(_))) {
                    return None;
                }
                let reply = reply.take()?;
                Some(Box::new(move |r: Result<Seq, String>| {
                    let _ = reply.send(r.map_err(Refused::Log));
                }))
            },
        );
        match effect {
            Effect::Reported(Err(e)) => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(Refused::Report(e)));
                }
            }
            _ => self.event(|| json!({"event": "did_report", "key": key})),
        }
    }

    /// The log committed through `seq`: the dispatches of those inputs may start.
    fn durable(&mut self, seq: Seq) {
        if seq <= self.durable {
            return;
        }
        self.durable = seq;
        while self.gated.front().is_some_and(|(s, _)| *s <= seq) {
            let Some((_, d)) = self.gated.pop_front() else {
                break;
            };
            // It may have timed out while it waited for the log.
            if self.sched.lease(d.lease.object).map(|l| l.id) == Some(d.lease) {
                self.start(d);
            }
        }
    }

    fn done(&mut self, lease: LeaseId, outcome: Outcome, started: Instant) {
        let secs = started.elapsed().as_secs_f64();
        self.running.remove(&lease);
        let at = now_ms();
        let key = self.sched.engine().key(lease.object).to_string();
        let current = self.sched.lease(lease.object).filter(|l| l.id == lease);
        let Some(l) = current.copied() else {
            // Late: its lease timed out (and its object may have been retried since).
            // Nothing changes; it is not logged.
            self.metrics.late.fetch_add(1, Ordering::Relaxed);
            self.end_span(&key, at, "late");
            self.event(
                || json!({"event": "late_delivery", "key": key, "lease": lease.seq, "at": at.0}),
            );
            return;
        };
        let model = self
            .sched
            .engine()
            .schema()
            .model(l.task.model)
            .name
            .clone();
        let message = match &outcome {
            Outcome::Failed { message } | Outcome::Deferred { message } => Some(message.clone()),
            Outcome::Ok { .. } => None,
        };
        let effect = self.step(
            Input::Deliver {
                lease,
                outcome,
                now: at,
            },
            |_, _| Some(Box::new(|_| {})),
        );
        let name = match &effect {
            Effect::Delivered(Delivery::Applied { completion, .. }) => completion_name(completion),
            _ => "late",
        };
        self.metrics.actuated(&model, secs);
        self.end_span(&key, at, name);
        self.event(|| {
            json!({"event": "did_actuate", "key": key, "model": model, "version": l.task.version,
            "outcome": name, "message": message, "ms": (secs * 1000.0) as u64, "at": at.0})
        });
    }

    /// Logs a tick at `now` when something is due (a timeout, a re-sync, a backoff
    /// expiry), or unconditionally at start (it dispatches what the recovered state
    /// allows). At most one tick per millisecond.
    fn tick(&mut self, now: Time) {
        if now <= self.last_tick {
            return;
        }
        self.last_tick = now;
        let timed_out = self.sched.stats().timed_out;
        self.step(Input::Tick { now }, |_, _| Some(Box::new(|_| {})));
        if self.sched.stats().timed_out > timed_out {
            // Their actuations are abandoned: a later outcome of theirs is late.
            let live: Vec<LeaseId> = self.running.keys().copied().collect();
            for id in live {
                if self.sched.lease(id.object).map(|l| l.id) != Some(id) {
                    if let Some((_, Some(cancel))) = self.running.remove(&id) {
                        cancel.cancel();
                    }
                    let key = self.sched.engine().key(id.object).to_string();
                    self.end_span(&key, now, "timed_out");
                    self.event(
                        || json!({"event": "timed_out", "key": key, "lease": id.seq, "at": now.0}),
                    );
                }
            }
        }
    }

    fn start(&mut self, d: Dispatch) {
        let Some(actuator) = self.actuators[d.task.model.index()].clone() else {
            // No actuator (the deployment has none for this model): the lease stays in
            // flight until its timeout.
            return;
        };
        let engine = self.sched.engine();
        let view = engine.view(d.task.object);
        let model = engine.schema().model(d.task.model);
        let key = view.key().to_string();
        let model_name = model.name.clone();
        let now = now_ms();
        self.metrics
            .dispatch_wait
            .observe(now.0.saturating_sub(d.eligible_at.0) as f64 / 1000.0);
        let kind = match d.task.kind {
            TaskKind::Sync => "sync",
            TaskKind::Delete => "delete",
        };
        self.event(|| {
            json!({"event": "will_actuate", "key": key, "model": model_name,
            "version": d.task.version, "attempt": d.attempt, "kind": kind, "at": now.0})
        });
        if self.recent.len() == RECENT_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back(Span {
            key: key.clone(),
            model: model_name.clone(),
            kind,
            attempt: d.attempt,
            start: now.0,
            end: None,
            outcome: None,
        });
        let started = Instant::now();
        let tx = self.tx.clone();
        let lease = d.lease;
        match actuator {
            ModelActuator::Blocking(actuator) => {
                let engine = self.sched.engine();
                let doc = Doc {
                    key,
                    model: model_name,
                    version: d.task.version,
                    kind: d.task.kind,
                    attempt: d.attempt,
                    fields: engine
                        .object(view.key())
                        .map(|o| o.fields)
                        .unwrap_or_default(),
                    feedback_names: model.feedback.iter().map(|f| f.name.clone()).collect(),
                };
                self.running.insert(d.lease, (started, None));
                // The scheduler's timeout (a tick) ends an overdue lease; the blocking call
                // is then abandoned and its outcome, if it ever comes, is late.
                self.runtime.spawn(async move {
                    let outcome =
                        match tokio::task::spawn_blocking(move || actuator.run(&doc)).await {
                            Ok(o) => o,
                            Err(e) => Outcome::failed(format!("actuator panicked: {e}")),
                        };
                    let _ = tx.send(Msg::Done(lease, outcome, started));
                });
            }
            ModelActuator::Async(actuator) => {
                let owned = OwnedView::of(&view, d.task.kind);
                let cancel = CancelToken::new();
                let cx = ActuationContext {
                    attempt: d.attempt,
                    now: d.now,
                    deadline: d.deadline,
                    cancel: cancel.clone(),
                };
                let fut = match d.task.kind {
                    TaskKind::Sync => actuator.sync(cx, owned),
                    TaskKind::Delete => actuator.delete(cx, owned),
                };
                self.running.insert(d.lease, (started, Some(cancel)));
                // An overdue actuation is cancelled (its token set) when its lease times
                // out; whatever it answers then is late.
                let runtime = self.runtime.clone();
                self.runtime.spawn(async move {
                    let outcome = match runtime.spawn(fut).await {
                        Ok(o) => o,
                        Err(e) => Outcome::failed(format!("actuator panicked: {e}")),
                    };
                    let _ = tx.send(Msg::Done(lease, outcome, started));
                });
            }
        }
    }

    fn end_span(&mut self, key: &str, at: Time, outcome: &'static str) {
        if let Some(s) = self
            .recent
            .iter_mut()
            .rev()
            .find(|s| s.key == key && s.end.is_none())
        {
            s.end = Some(at.0);
            s.outcome = Some(outcome);
        }
    }

    /// Copies the scheduler's gauges and counters into the service's metrics.
    fn publish_metrics(&self) {
        let m = self.sched.metrics();
        let s = &self.metrics;
        s.queue_depth.store(m.queue_depth as u64, Ordering::Relaxed);
        s.in_flight.store(m.in_flight as u64, Ordering::Relaxed);
        s.retries.store(m.stats.retries, Ordering::Relaxed);
        s.timed_out.store(m.stats.timed_out, Ordering::Relaxed);
        s.objects
            .store(self.sched.engine().len() as u64, Ordering::Relaxed);
        let mut a = s.actuations.lock();
        for (model, mm) in &m.models {
            for (outcome, n) in [
                ("ok", mm.ok),
                ("failed", mm.failed),
                ("deferred", mm.deferred),
                ("stale", mm.stale),
            ] {
                a.insert((model.clone(), outcome), n);
            }
        }
    }

    /// Sends a trace event to the `/v1/events` subscribers; `v` is built only when there
    /// is one.
    fn event(&self, v: impl FnOnce() -> serde_json::Value) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(v().to_string());
        }
    }

    /// Writes a snapshot of the state after the last applied input (waiting for it when
    /// `wait`), taken with [`Scheduler::checkpoint`] so that the entries after it replay
    /// onto it exactly.
    fn snapshot(&mut self, wait: bool) {
        let seq = self.applied;
        let bytes = self.sched.checkpoint();
        self.last_snapshot = seq;
        if wait {
            let _ = self.log.snapshot_wait(seq, bytes);
        } else {
            self.log.snapshot(seq, bytes, Box::new(|_| {}));
        }
    }

    fn shutdown(&mut self, deadline: Instant) {
        // No new dispatch; outcomes of running actuations are still taken until the
        // deadline. Dispatches still waiting for the log are not started: they are leases
        // in the final snapshot, dispatched again after the restart.
        self.step(Input::Shutdown { now: now_ms() }, |_, _| {
            Some(Box::new(|_| {}))
        });
        while !self.running.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.rx.recv_timeout(left.min(Duration::from_millis(50))) {
                Ok(Msg::Shutdown(_, done)) => {
                    let _ = done.send(());
                }
                Ok(Msg::Durable(seq)) => {
                    self.durable = self.durable.max(seq);
                }
                Ok(msg @ (Msg::Done(..) | Msg::Query(_))) => self.handle(msg),
                Ok(Msg::Apply(_, _, reply)) => {
                    let _ = reply.send(Err(Refused::ShuttingDown));
                }
                Ok(Msg::Report(_, _, reply)) => {
                    let _ = reply.send(Err(Refused::ShuttingDown));
                }
                Err(RecvTimeoutError::Timeout) => {
                    let now = now_ms();
                    if self.sched.next_wake().is_some_and(|t| t <= now) {
                        self.tick(now);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // Abandoned actuations re-run after the restart (actuators are idempotent).
        for (_, cancel) in self.running.values() {
            if let Some(cancel) = cancel {
                cancel.cancel();
            }
        }
        self.publish_metrics();
        self.snapshot(true);
    }
}

/// What runs once an input is durable.
type Ack = Box<dyn FnOnce(Result<Seq, String>) + Send>;

fn completion_name(c: &Completion) -> &'static str {
    match c {
        Completion::Synced | Completion::Deleted { .. } => "ok",
        Completion::Failed { .. } => "failed",
        Completion::Deferred { .. } => "deferred",
        Completion::Stale | Completion::ExternalFailed => "stale",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}
