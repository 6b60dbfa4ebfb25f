//! The engine's driver inside the service: one thread owns the [`Engine`], takes inputs
//! from the API and outcomes from actuations, logs each accepted input before it is
//! acknowledged, and starts what the engine's plan says may run.
//!
//! Scaffolding: this loop hands out the plan's tasks itself (skipping objects whose
//! actuation is still running) until the scheduler's real-time runtime takes this place.
//! It decides nothing the plan does not: order, holds and backoff are the engine's.
//!
//! Durability: a change set's answer is sent from the log's acknowledgement, so an
//! answered change set is on disk. No object is actuated for a change the log has not
//! committed yet, so an actuation never acts on a change set a crash could lose. (An
//! outcome is logged like any input; one lost in a crash makes its actuation run again,
//! which actuators allow by contract.)

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam::channel::{Receiver, RecvTimeoutError, Sender};
use serde::Serialize;
use serde_json::json;
use syncore::{
    ChangeError, ChangeSet, Engine, ExternalReport, ObjectId, Outcome, Task, TaskKind, Time,
};
use tokio::sync::{broadcast, oneshot};

use crate::actuate::{Actuate, Doc};
use crate::input::{Applied, Input};
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
    pub versions: BTreeMap<String, u64>,
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

/// A read of the engine, run on the driver thread.
pub type Query = Box<dyn FnOnce(&State<'_>) + Send>;

/// What a [`Query`] sees.
pub struct State<'a> {
    /// The engine.
    pub engine: &'a Engine,
    /// Objects with an actuation running: (version, started at).
    pub in_flight: &'a HashMap<ObjectId, (u64, Time)>,
    /// The time of the query.
    pub now: Time,
    /// Recent actuations, oldest first.
    pub recent: &'a VecDeque<Span>,
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
    /// `ok`, `failed`, `deferred` once it ended.
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
    /// An actuation of the object with this key ended.
    Done(Task, String, Outcome, Instant),
    /// The log committed through this position.
    Durable(Seq),
    /// Run a read.
    Query(Query),
    /// Stop dispatching, let running actuations finish until the deadline, snapshot, stop.
    Shutdown(Instant, oneshot::Sender<()>),
}

/// Most recent actuations kept for the page.
pub const RECENT_MAX: usize = 400;

/// The driver: owns the engine.
pub struct Driver {
    engine: Engine,
    log: Arc<dyn InputLog>,
    actuators: Vec<Option<Arc<dyn Actuate>>>,
    timeouts: Vec<Duration>,
    per_model_max: Vec<Option<usize>>,
    in_flight_max: usize,
    in_flight: HashMap<ObjectId, (u64, Time)>,
    per_model: Vec<usize>,
    applied: Seq,
    durable: Seq,
    /// Objects changed by inputs not yet durable, with the last such input.
    touched: HashMap<ObjectId, Seq>,
    /// Inputs not yet durable and the objects each touched, in log order.
    pending: VecDeque<(Seq, Vec<ObjectId>)>,
    last_snapshot: Seq,
    snapshot_every: u64,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    events: broadcast::Sender<String>,
    metrics: Arc<Metrics>,
    recent: VecDeque<Span>,
    runtime: tokio::runtime::Handle,
    dirty: bool,
}

/// What the driver needs besides the engine.
pub struct DriverParts {
    /// The log, already recovered into the engine.
    pub log: Arc<dyn InputLog>,
    /// The last position applied to the engine.
    pub applied: Seq,
    /// The position of the latest snapshot.
    pub last_snapshot: Seq,
    /// Entries between snapshots.
    pub snapshot_every: u64,
    /// Actuator per model id.
    pub actuators: Vec<Option<Arc<dyn Actuate>>>,
    /// Timeout per model id.
    pub timeouts: Vec<Duration>,
    /// In-flight limit per model id.
    pub per_model_max: Vec<Option<usize>>,
    /// Global in-flight limit.
    pub in_flight_max: usize,
    /// The trace event stream.
    pub events: broadcast::Sender<String>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Where actuations run.
    pub runtime: tokio::runtime::Handle,
}

impl Driver {
    /// A driver over a recovered engine, and the sender of its messages.
    pub fn new(engine: Engine, p: DriverParts) -> (Driver, Sender<Msg>) {
        let (tx, rx) = crossbeam::channel::unbounded();
        let n = engine.schema().models().len();
        let d = Driver {
            engine,
            log: p.log,
            actuators: p.actuators,
            timeouts: p.timeouts,
            per_model_max: p.per_model_max,
            in_flight_max: p.in_flight_max.max(1),
            in_flight: HashMap::new(),
            per_model: vec![0; n],
            applied: p.applied,
            durable: p.applied,
            touched: HashMap::new(),
            pending: VecDeque::new(),
            last_snapshot: p.last_snapshot,
            snapshot_every: p.snapshot_every.max(1),
            tx: tx.clone(),
            rx,
            events: p.events,
            metrics: p.metrics,
            recent: VecDeque::new(),
            runtime: p.runtime,
            dirty: true,
        };
        (d, tx)
    }

    /// Runs until a [`Msg::Shutdown`] has been handled (or every sender is gone).
    pub fn run(mut self) {
        let mut wake: Option<Time> = None;
        loop {
            let timeout = match wake {
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
            if wake.is_some_and(|t| t <= now_ms()) {
                self.dirty = true;
            }
            if self.dirty {
                wake = self.dispatch();
            }
            if self.applied - self.last_snapshot >= self.snapshot_every {
                self.snapshot(None);
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Apply(set, received, reply) => self.apply(set, received, reply),
            Msg::Report(key, report, reply) => {
                let input = Input::Report {
                    at: now_ms(),
                    key,
                    report,
                };
                match input.apply_to(&mut self.engine) {
                    Applied::Complete(Err(e)) => {
                        let _ = reply.send(Err(Refused::Report(e)));
                    }
                    _ => {
                        if let Input::Report { key, .. } = &input {
                            self.event(json!({"event": "did_report", "key": key}));
                        }
                        let seq = self.append(&input, move |r| {
                            let _ = reply.send(r.map_err(Refused::Log));
                        });
                        let _ = seq;
                    }
                }
            }
            Msg::Done(task, key, outcome, started) => self.done(task, key, outcome, started),
            Msg::Durable(seq) => self.durable(seq),
            Msg::Query(q) => q(&State {
                engine: &self.engine,
                in_flight: &self.in_flight,
                now: now_ms(),
                recent: &self.recent,
            }),
            Msg::Shutdown(..) => {}
        }
    }

    /// Appends `input`; `ack` runs once it is durable.
    fn append(
        &mut self,
        input: &Input,
        ack: impl FnOnce(Result<Seq, String>) + Send + 'static,
    ) -> Seq {
        let tx = self.tx.clone();
        let seq = self.log.append(
            input.encode(),
            Box::new(move |r| {
                if let Ok(s) = r {
                    let _ = tx.send(Msg::Durable(s));
                }
                ack(r.map_err(|e| e.to_string()));
            }),
        );
        self.applied = seq;
        self.dirty = true;
        seq
    }

    fn apply(&mut self, set: ChangeSet, received: Instant, reply: oneshot::Sender<ApplyAnswer>) {
        let input = Input::Apply {
            at: now_ms(),
            changes: set,
        };
        let report = match input.apply_to(&mut self.engine) {
            Applied::Apply(Ok(r)) => r,
            Applied::Apply(Err(e)) => {
                self.metrics.refused.fetch_add(1, Ordering::Relaxed);
                let _ = reply.send(Err(Refused::Change(e)));
                return;
            }
            Applied::Complete(_) => return,
        };
        let versions: BTreeMap<String, u64> = report
            .changed
            .iter()
            .filter_map(|k| self.engine.object(k).map(|o| (k.clone(), o.version)))
            .collect();
        self.metrics.applies.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .objects
            .store(self.engine.len() as u64, Ordering::Relaxed);
        if self.events.receiver_count() > 0 {
            self.event(
                json!({"event": "did_apply", "changed": report.changed, "deleted": report.deleted}),
            );
        }
        let metrics = self.metrics.clone();
        let ids: Vec<ObjectId> = report
            .changed
            .iter()
            .chain(&report.deleted)
            .filter_map(|k| self.engine.id(k))
            .collect();
        let deleted = report.deleted;
        let seq = self.append(&input, move |r| {
            metrics
                .apply_latency
                .observe(received.elapsed().as_secs_f64());
            let _ = reply.send(
                r.map(|seq| Accepted {
                    seq,
                    versions,
                    deleted,
                })
                .map_err(Refused::Log),
            );
        });
        for &id in &ids {
            self.touched.insert(id, seq);
        }
        self.pending.push_back((seq, ids));
    }

    /// The log committed through `seq`: objects those inputs touched may be actuated.
    fn durable(&mut self, seq: Seq) {
        if seq <= self.durable {
            return;
        }
        self.durable = seq;
        while self.pending.front().is_some_and(|(s, _)| *s <= seq) {
            let Some((s, ids)) = self.pending.pop_front() else {
                break;
            };
            for id in ids {
                if self.touched.get(&id) == Some(&s) {
                    self.touched.remove(&id);
                }
            }
            self.dirty = true;
        }
    }

    fn done(&mut self, task: Task, key: String, outcome: Outcome, started: Instant) {
        let secs = started.elapsed().as_secs_f64();
        if self.in_flight.remove(&task.object).is_some() {
            self.per_model[task.model.index()] -= 1;
        }
        self.metrics
            .in_flight
            .store(self.in_flight.len() as u64, Ordering::Relaxed);
        let name = match &outcome {
            Outcome::Ok { .. } => "ok",
            Outcome::Failed { .. } => "failed",
            Outcome::Deferred { .. } => "deferred",
        };
        let model = self.engine.schema().model(task.model).name.clone();
        self.metrics.actuated(&model, name, secs);
        let at = now_ms();
        if let Some(s) = self
            .recent
            .iter_mut()
            .rev()
            .find(|s| s.key == key && s.end.is_none())
        {
            s.end = Some(at.0);
            s.outcome = Some(name);
        }
        let message = match &outcome {
            Outcome::Failed { message } | Outcome::Deferred { message } => Some(message.clone()),
            Outcome::Ok { .. } => None,
        };
        let input = Input::Deliver { at, task, outcome };
        if let Applied::Complete(Err(_)) = input.apply_to(&mut self.engine) {
            // The object is gone (deleted while it ran): nothing to record.
            self.dirty = true;
            return;
        }
        self.event(
            json!({"event": "did_actuate", "key": key, "model": model, "version": task.version,
            "outcome": name, "message": message, "ms": (secs * 1000.0) as u64, "at": at.0}),
        );
        self.append(&input, |_| {});
        self.metrics
            .objects
            .store(self.engine.len() as u64, Ordering::Relaxed);
    }

    /// Starts what the plan allows; returns the next wake time.
    fn dispatch(&mut self) -> Option<Time> {
        self.dirty = false;
        let now = now_ms();
        let plan = self.engine.plan(now);
        let mut waiting = 0u64;
        for (i, task) in plan.tasks.iter().enumerate() {
            // Only tasks whose prerequisites are all done (R1: the first wave); at most one
            // actuation per object: a newer version waits for the running one; and none on
            // a change the log has not committed yet.
            if !plan.deps(i).is_empty() {
                continue;
            }
            if self.in_flight.contains_key(&task.object) || self.touched.contains_key(&task.object)
            {
                continue;
            }
            let m = task.model.index();
            let model_full = self.per_model_max[m].is_some_and(|max| self.per_model[m] >= max);
            if self.in_flight.len() >= self.in_flight_max || model_full {
                waiting += 1;
                continue;
            }
            let Some(actuator) = self.actuators[m].clone() else {
                continue;
            };
            self.start(*task, actuator, now);
        }
        self.metrics.queue_depth.store(waiting, Ordering::Relaxed);
        self.metrics
            .in_flight
            .store(self.in_flight.len() as u64, Ordering::Relaxed);
        plan.next_wake
    }

    fn start(&mut self, task: Task, actuator: Arc<dyn Actuate>, now: Time) {
        let view = self.engine.view(task.object);
        let schema = self.engine.schema();
        let model = schema.model(task.model);
        let info = self.engine.object(view.key());
        let attempt = info.as_ref().map_or(1, |o| o.failures + 1);
        let doc = Doc {
            key: view.key().to_string(),
            model: model.name.clone(),
            version: task.version,
            kind: task.kind,
            attempt,
            fields: info.map(|o| o.fields).unwrap_or_default(),
            feedback_names: model.feedback.iter().map(|f| f.name.clone()).collect(),
        };
        if attempt > 1 {
            self.metrics.retries.fetch_add(1, Ordering::Relaxed);
        }
        self.in_flight.insert(task.object, (task.version, now));
        self.per_model[task.model.index()] += 1;
        let kind = match task.kind {
            TaskKind::Sync => "sync",
            TaskKind::Delete => "delete",
        };
        self.event(
            json!({"event": "will_actuate", "key": doc.key, "model": doc.model,
            "version": task.version, "attempt": attempt, "kind": kind, "at": now.0}),
        );
        if self.recent.len() == RECENT_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back(Span {
            key: doc.key.clone(),
            model: doc.model.clone(),
            kind,
            attempt,
            start: now.0,
            end: None,
            outcome: None,
        });
        let tx = self.tx.clone();
        let key = doc.key.clone();
        let timeout = self.timeouts[task.model.index()];
        self.runtime.spawn(async move {
            let started = Instant::now();
            let run = tokio::task::spawn_blocking(move || actuator.run(&doc));
            let outcome = match tokio::time::timeout(timeout, run).await {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => Outcome::failed(format!("actuator panicked: {e}")),
                // The blocking thread is abandoned; its result is dropped.
                Err(_) => Outcome::failed(format!("timed out after {} ms", timeout.as_millis())),
            };
            let _ = tx.send(Msg::Done(task, key, outcome, started));
        });
    }

    fn event(&self, v: serde_json::Value) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(v.to_string());
        }
    }

    /// Writes a snapshot of the state after the last applied input (waiting for it when
    /// `wait` is given).
    fn snapshot(&mut self, wait: Option<()>) {
        let seq = self.applied;
        let bytes = self.engine.snapshot();
        self.last_snapshot = seq;
        match wait {
            Some(()) => {
                let _ = self.log.snapshot_wait(seq, bytes);
            }
            None => self.log.snapshot(seq, bytes, Box::new(|_| {})),
        }
    }

    fn shutdown(&mut self, deadline: Instant) {
        // No new actuations; outcomes of running ones are still taken until the deadline.
        while !self.in_flight.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.rx.recv_timeout(left) {
                Ok(Msg::Shutdown(_, done)) => {
                    let _ = done.send(());
                }
                Ok(msg @ (Msg::Done(..) | Msg::Durable(_) | Msg::Query(_))) => self.handle(msg),
                Ok(Msg::Apply(_, _, reply)) => {
                    let _ = reply.send(Err(Refused::ShuttingDown));
                }
                Ok(Msg::Report(_, _, reply)) => {
                    let _ = reply.send(Err(Refused::ShuttingDown));
                }
                Err(_) => break,
            }
        }
        // Abandoned actuations re-run after the restart (actuators are idempotent).
        self.snapshot(Some(()));
    }
}
