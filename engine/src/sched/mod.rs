//! The scheduling state machine: leases, the ready queue, limits, priorities, re-sync
//! timers and timeouts, over one [`Engine`].
//!
//! Pure like the engine: no thread, clock or I/O. Every call is given `now`, and the state
//! is a function of the calls made (in quinn-proto's terms):
//! - mutators: [`Scheduler::apply`], [`Scheduler::report_external`];
//! - handlers: [`Scheduler::deliver`], [`Scheduler::tick`];
//! - polls: [`Scheduler::poll_dispatch`] (hands out a task and marks its lease),
//!   [`Scheduler::next_wake`];
//! - getters: [`Scheduler::engine`], [`Scheduler::activity`], [`Scheduler::leases`],
//!   [`Scheduler::queue_depth`], [`Scheduler::stats`], [`Scheduler::metrics`].
//!
//! The drivers (the simulator in virtual time, the runtime in real time, the CLI's `run`)
//! record the same thing: an [`Input`] sequence, applied by [`Scheduler::step`], the one
//! function that turns an input into state and dispatches. Replaying a recorded sequence
//! with `step` gives identical [`Scheduler::state_hash`]es.
//!
//! ## How a completion is applied (completion-driven, O(dependents))
//! A *plan* ([`Engine::plan`]) is computed when the set of work changes: after a change
//! set, an external report, a backoff expiry, a re-sync. Its task DAG is inverted once
//! (each task's dependents) and every task counts its unfinished prerequisites; a
//! model-level barrier (R1, R7) is a node of that DAG that counts its members and, when
//! the last completes, releases its waiters. A delivery
//! feeds its outcome to [`Engine::complete`] at the delivery's own time; only an accepted
//! completion (`Synced`, `Deleted`) decrements its dependents' counts, and those that reach
//! zero are queued at once: the cost of a delivery is O(its dependents), not O(plan). A
//! refused or failed outcome releases nobody (R3, R8, R9).
//!
//! ## Leases (at most one actuation per object)
//! Dispatching a task leases its object (version, kind, start, attempt, deadline). A leased
//! object is never dispatched again until its lease ends by a delivery or a timeout, even
//! when a newer version or a delete arrives meanwhile: that work waits for the running
//! actuation (client-go's "stingy" queue), and the old actuation's completion is stale
//! (R8: it never marks the newer version synced).
//!
//! ## Order
//! Queued tasks start in order of (priority class, highest first; time they became
//! eligible; object id). Priority classes come from [`SchedConfig`]: per object, else per
//! model, else 0. Object ids are dense and assigned in key order within each change set,
//! so among objects created together the order is key order. A task of a model at its
//! concurrency limit waits without holding back tasks of other models.

mod config;
mod fold;
mod input;
mod lanes;
mod leases;
mod queue;
mod snapshot;
#[cfg(test)]
mod tests;
mod watch;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::actuator::Outcome;
use crate::change::{ApplyReport, ChangeSet};
use crate::complete::{Completion, ExternalReport};
use crate::engine::Engine;
use crate::error::{ChangeError, CompleteError};
use crate::id::{ObjectId, Time};
use crate::plan::Task;

pub use config::{ModelSched, SchedConfig, SchedConfigError};
pub use input::{Effect, Input, InputDecodeError};
pub use lanes::{LaneRun, LaneSpan, LaneStop, Lanes};
pub use snapshot::{SchedMigrateError, SchedSnapshotError, SCHED_FORMAT_VERSION, SCHED_MAGIC};

use leases::{Held, Leases, PlanSlot};
use queue::Ready;

/// Identifies one dispatch (lease) for its delivery: a sequence number, handed out in
/// increasing order, and the object (so a delivery finds its lease in O(1)).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    bincode::Encode,
    bincode::Decode,
)]
pub struct LeaseId {
    /// The dispatch's sequence number (1, 2, ...).
    pub seq: u64,
    /// The object leased.
    pub object: ObjectId,
}

/// A task handed out to run: deliver its outcome with [`Scheduler::deliver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatch {
    /// The lease to name in the delivery.
    pub lease: LeaseId,
    /// The task (object, model, version, kind).
    pub task: Task,
    /// 1 for a first try, failures + 1 for a retry.
    pub attempt: u32,
    /// When it was dispatched.
    pub now: Time,
    /// When it becomes overdue (its model's timeout), if ever.
    pub deadline: Option<Time>,
    /// When the task became eligible (queued); `now - eligible_at` is its queueing time.
    pub eligible_at: Time,
}

/// An actuation in flight.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode,
)]
pub struct Lease {
    /// Its id.
    pub id: LeaseId,
    /// The task running.
    pub task: Task,
    /// When it started.
    pub started: Time,
    /// Which attempt.
    pub attempt: u32,
    /// When it becomes overdue, if ever.
    pub deadline: Option<Time>,
}

/// What a delivery did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// The engine applied the outcome; `released` dependents became dispatchable.
    Applied {
        /// What the completion did to the object.
        completion: Completion,
        /// Dependents queued by it.
        released: u32,
    },
    /// No such lease in flight (it timed out, or the delivery came twice): ignored.
    Late,
}

/// What the scheduler is doing with one object, besides its [`crate::Status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// An actuation is running.
    InFlight {
        /// The version it enacts.
        version: u64,
        /// Since when.
        since: Time,
        /// Which attempt.
        attempt: u32,
    },
    /// Dispatchable, waiting for a free slot (global or model limit).
    Queued {
        /// Since when.
        since: Time,
    },
    /// A task of the current plan waiting for its prerequisites to complete.
    Waiting,
    /// Nothing scheduled (synced, held, or backing off: see its status).
    Idle,
}

/// Work counters: what the scheduler did, for cost checks (R15) and metrics.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    bincode::Encode,
    bincode::Decode,
)]
pub struct SchedStats {
    /// Plans computed.
    pub replans: u64,
    /// Objects visited by those plans.
    pub plan_objects: u64,
    /// Dispatches handed out.
    pub dispatched: u64,
    /// Deliveries applied.
    pub delivered: u64,
    /// Deliveries ignored as late.
    pub late: u64,
    /// Dependent edges walked by deliveries (each accepted completion walks its dependents
    /// in the plan once).
    pub release_edges: u64,
    /// Actuations turned into failures by their model's timeout.
    pub timed_out: u64,
    /// Completions the engine reported stale (R8).
    pub stale: u64,
    /// Re-syncs started by timers (`resync_ms`, `requeue_after`).
    pub resyncs: u64,
    /// Re-syncs started because a watched field of a dependency changed.
    pub watch_resyncs: u64,
    /// Retries dispatched (attempt > 1).
    pub retries: u64,
}

/// Per-model counters a metrics exporter reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelMetrics {
    /// Actuations in flight now.
    pub in_flight: u32,
    /// Completed `Ok` (synced or deleted).
    pub ok: u64,
    /// Completed as failures (refused outcomes and timeouts included).
    pub failed: u64,
    /// Completed `Deferred`.
    pub deferred: u64,
    /// Completions that were stale.
    pub stale: u64,
    /// Sum of eligible-to-start times, ms.
    pub wait_ms_total: u64,
    /// Sum of actuation latencies (dispatch to delivery), ms.
    pub latency_ms_total: u64,
    /// Largest actuation latency seen, ms.
    pub latency_ms_max: u64,
}

/// Gauges and counters for a metrics exporter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// Tasks queued (dispatchable, waiting for a slot).
    pub queue_depth: usize,
    /// Actuations in flight.
    pub in_flight: usize,
    /// By model name.
    pub models: BTreeMap<String, ModelMetrics>,
    /// The work counters.
    pub stats: SchedStats,
}

/// Per-task state in the current plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Prerequisites pending.
    Waiting,
    /// In the ready queue (or parked behind its model's limit).
    Queued,
    /// Dispatched under the current plan.
    Running,
    /// Completed (any outcome) under the current plan, or superseded.
    Done,
    /// Dispatchable once the object's running lease (an older version or a sync under a
    /// delete) ends.
    BehindLease,
}

/// The current plan, inverted for completion-driven release.
#[derive(Debug, Default)]
struct Current {
    tasks: Vec<Task>,
    /// Dependents of each node of the plan (CSR): tasks, then barriers (R1, R7).
    rev_off: Vec<u32>,
    rev: Vec<u32>,
    /// Prerequisites not completed yet, per node.
    pending: Vec<u32>,
    slot: Vec<Slot>,
    eligible: Vec<Time>,
    /// Task index by object id (u32::MAX: none), valid for `tasks`' objects only.
    task_of: Vec<u32>,
    /// Dependents of a node added by folding change sets into this plan (`fold`), beside
    /// the plan's own in `rev`.
    late: BTreeMap<u32, Vec<u32>>,
}

impl Current {
    fn index_of(&self, id: ObjectId) -> Option<u32> {
        let t = *self.task_of.get(id.index())?;
        (t != u32::MAX && (t as usize) < self.tasks.len() && self.tasks[t as usize].object == id)
            .then_some(t)
    }
}

/// The scheduling state machine over one [`Engine`]. See the [module docs](self).
///
/// # Examples
/// ```
/// use syncore::sched::{Input, Scheduler, SchedConfig};
/// use syncore::{ChangeSet, Config, Engine, Outcome, Schema, Time};
/// let schema = Schema::from_json(r#"{"models": [{"name": "Site"},
///   {"name": "Slice", "fields": [{"name": "site", "type": "ref"}],
///    "links": [{"field": "site", "target": "Site"}]}]}"#)?;
/// let mut s = Scheduler::new(Engine::new(schema, Config::default()), SchedConfig::default())?;
/// let mut out = Vec::new();
/// s.step(Input::Apply { changes: ChangeSet::new()
///     .upsert("s1", "Site", [("x", 0i64); 0])
///     .upsert("sl1", "Slice", [("site", "s1")]), now: Time(0) }, &mut out);
/// assert_eq!(out.len(), 1); // only the site: the slice waits for it
/// let site = out.pop().unwrap();
/// s.step(Input::Deliver { lease: site.lease, outcome: Outcome::ok(), now: Time(5) }, &mut out);
/// assert_eq!(s.engine().key(out[0].task.object), "sl1"); // released at once, at t=5
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Scheduler {
    engine: Engine,
    config: SchedConfig,
    /// Per model, resolved from the config.
    models: Vec<ModelSched>,
    /// The actuations in flight.
    leases: Leases,
    /// The number of the current plan (one more per replan; never reset, not even when a
    /// checkpoint drops the plan, so that a lease's [`PlanSlot`] never names a later plan).
    plan_seq: u64,
    in_flight: Vec<u32>,
    next_lease: u64,
    cur: Current,
    ready: Ready,
    /// Re-sync timers: (due, object id). One per object at most (`resync_due`).
    timers: BTreeSet<(Time, u32)>,
    resync_due: BTreeMap<u32, Time>,
    /// How many timed re-syncs each object had (jitter input).
    resync_count: BTreeMap<u32, u32>,
    /// The earliest backoff expiry known (from the last plan or a later completion).
    backoff_wake: Option<Time>,
    /// Leases by deadline: (deadline, object id).
    deadlines: BTreeSet<(Time, u32)>,
    /// The plan must be recomputed before the next dispatch.
    dirty: bool,
    /// The time of the last input (inputs must not go back in time; later ones are
    /// clamped to it).
    last_now: Time,
    /// No dispatch after shutdown began.
    draining: bool,
    stats: SchedStats,
    metrics: Vec<ModelMetrics>,
    /// Object priorities resolved to ids at the last plan.
    object_prio: BTreeMap<u32, i32>,
    /// Whether any model watches another's fields (watch-triggered re-syncs).
    any_watch: bool,
    /// Whether any model waits for another's objects (`depends_on_models`): then a change
    /// set is never folded into the current plan (its barriers would change).
    any_model_deps: bool,
    /// Objects whose watched dependency changed while they were in flight: re-synced once
    /// their actuation succeeds.
    rerun: BTreeSet<u32>,
    /// Leases in flight in the snapshot this scheduler was restored from.
    restored: Vec<Lease>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("in_flight", &self.leases.len())
            .field("queued", &self.ready.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Scheduler {
    /// A scheduler over `engine`. Nothing is planned until the first input.
    ///
    /// # Errors
    /// [`SchedConfigError`] if the configuration names a model the schema lacks, or sets a
    /// limit of 0.
    pub fn new(engine: Engine, config: SchedConfig) -> Result<Scheduler, SchedConfigError> {
        let models = config.resolve(engine.schema())?;
        let n = models.len();
        let any_watch = engine
            .schema()
            .models()
            .iter()
            .any(|m| !m.watches.is_empty());
        let any_model_deps = engine
            .schema()
            .models()
            .iter()
            .any(|m| !m.depends_on.is_empty());
        Ok(Scheduler {
            engine,
            config,
            models,
            leases: Leases::default(),
            plan_seq: 0,
            in_flight: vec![0; n],
            next_lease: 1,
            cur: Current::default(),
            ready: Ready::new(n),
            timers: BTreeSet::new(),
            resync_due: BTreeMap::new(),
            resync_count: BTreeMap::new(),
            backoff_wake: None,
            deadlines: BTreeSet::new(),
            dirty: true,
            last_now: Time(0),
            draining: false,
            stats: SchedStats::default(),
            metrics: vec![ModelMetrics::default(); n],
            object_prio: BTreeMap::new(),
            any_watch,
            any_model_deps,
            rerun: BTreeSet::new(),
            restored: Vec::new(),
        })
    }

    // ---------------------------------------------------------------- getters

    /// The engine (status, objects, plans, views).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, to register policies and watchers. Changing its state through it
    /// (apply, complete) bypasses the scheduler: use [`Scheduler::step`] for that.
    pub fn engine_mut(&mut self) -> &mut Engine {
        self.dirty = true;
        &mut self.engine
    }

    /// Gives the engine back (in-flight leases are forgotten; their objects are still
    /// unsettled, so a new scheduler dispatches them again).
    pub fn into_engine(self) -> Engine {
        self.engine
    }

    /// The configuration.
    pub fn config(&self) -> &SchedConfig {
        &self.config
    }

    /// The actuations in flight, in object id order.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.by_object().into_iter()
    }

    /// The lease of `id`, if an actuation of it is in flight.
    pub fn lease(&self, id: ObjectId) -> Option<&Lease> {
        self.leases.get(id)
    }

    /// Actuations in flight.
    pub fn in_flight(&self) -> usize {
        self.leases.len()
    }

    /// Tasks dispatchable now but waiting for a slot.
    pub fn queue_depth(&self) -> usize {
        self.ready.len()
    }

    /// The work counters.
    pub fn stats(&self) -> &SchedStats {
        &self.stats
    }

    /// Whether shutdown began (no further dispatch).
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Counters and gauges for a metrics exporter.
    pub fn metrics(&self) -> Metrics {
        let schema = self.engine.schema();
        let mut models = BTreeMap::new();
        for (i, m) in self.metrics.iter().enumerate() {
            let mut m = m.clone();
            m.in_flight = self.in_flight[i];
            models.insert(schema.models()[i].name.clone(), m);
        }
        Metrics {
            queue_depth: self.ready.len(),
            in_flight: self.leases.len(),
            models,
            stats: self.stats,
        }
    }

    /// What the scheduler is doing with `key` (the engine's [`crate::Status`] says why an
    /// object waits; this says whether it is running or queued). `None` for no such key.
    ///
    /// Both tell one story (R4): an object `InFlight` or `Queued` has status `Pending`
    /// (or, when it is a retry, the `Error`/`Deferred` its last attempt left, until the
    /// retry completes).
    pub fn activity(&self, key: &str) -> Option<Activity> {
        let id = self.engine.id(key)?;
        if let Some(l) = self.lease(id) {
            return Some(Activity::InFlight {
                version: l.task.version,
                since: l.started,
                attempt: l.attempt,
            });
        }
        Some(match self.cur.index_of(id) {
            Some(t) if !self.dirty => match self.cur.slot[t as usize] {
                Slot::Queued => Activity::Queued {
                    since: self.cur.eligible[t as usize],
                },
                Slot::Waiting | Slot::BehindLease => Activity::Waiting,
                Slot::Running | Slot::Done => Activity::Idle,
            },
            _ => Activity::Idle,
        })
    }

    /// The earliest time at which [`Scheduler::tick`] has something to do: a backoff
    /// expiry, a re-sync timer or an actuation's deadline. `None`: only a new input can
    /// make work.
    pub fn next_wake(&self) -> Option<Time> {
        let timer = self.timers.iter().next().map(|&(t, _)| t);
        let deadline = self.deadlines.iter().next().map(|&(t, _)| t);
        [self.backoff_wake, timer, deadline]
            .into_iter()
            .flatten()
            .min()
    }

    // ---------------------------------------------------------------- mutators

    /// Applies a change set at `now` (atomic, as [`Engine::apply`]). Actuations in flight
    /// go on; objects they enact get new work that waits for them (one lease per object).
    ///
    /// # Errors
    /// The engine's [`ChangeError`]; nothing changes.
    pub fn apply(&mut self, changes: ChangeSet, now: Time) -> Result<ApplyReport, ChangeError> {
        let before = self.watched_before(&changes);
        let report = self.engine.apply(changes)?;
        // The clock moves only for an accepted change set: a refused one changes nothing.
        let now = self.clock(now);
        if !self.fold(&report, now) {
            self.dirty = true;
        }
        if let Some(before) = before {
            self.watch_resync_after_apply(before, &report);
        }
        Ok(report)
    }

    /// Records a report about an external object at `now` (R17).
    ///
    /// # Errors
    /// The engine's [`CompleteError`]; nothing changes.
    pub fn report_external(
        &mut self,
        key: &str,
        report: ExternalReport,
        now: Time,
    ) -> Result<Completion, CompleteError> {
        let done = self.engine.report_external(key, report)?;
        self.clock(now);
        self.dirty = true;
        Ok(done)
    }

    /// Stops dispatching: shutdown began. Actuations in flight may still be delivered.
    pub fn shutdown(&mut self, now: Time) {
        self.clock(now);
        self.draining = true;
    }

    // ---------------------------------------------------------------- handlers

    /// Delivers the outcome of a dispatch at `now`: the completion is applied at `now`
    /// (backoff counts from it, R5), and dependents it releases are queued at once.
    pub fn deliver(&mut self, lease: LeaseId, outcome: Outcome, now: Time) -> Delivery {
        let now = self.clock(now);
        let Some(held) = self.take_lease_by_id(lease) else {
            self.stats.late += 1;
            return Delivery::Late;
        };
        self.finish(held, outcome, now)
    }

    /// Handles the passing of time: overdue actuations fail (their model's timeout),
    /// re-sync timers due start re-syncs, and expired backoffs make their objects tasks.
    pub fn tick(&mut self, now: Time) {
        let now = self.clock(now);
        // Overdue actuations, in (deadline, object id) order.
        while let Some(&(d, id)) = self.deadlines.iter().next() {
            if d > now {
                break;
            }
            let held = self
                .take_lease(ObjectId(id))
                .expect("a deadline belongs to a lease");
            let ms = d.0.saturating_sub(held.lease.started.0);
            self.stats.timed_out += 1;
            self.finish(
                held,
                Outcome::failed(format!("timed out after {ms} ms")),
                now,
            );
        }
        // Re-sync timers.
        while let Some(&(t, id)) = self.timers.iter().next() {
            if t > now {
                break;
            }
            self.timers.remove(&(t, id));
            self.resync_due.remove(&id);
            if self.engine.mark_resync(ObjectId(id)) {
                self.stats.resyncs += 1;
                self.dirty = true;
            }
        }
        if self.backoff_wake.is_some_and(|w| w <= now) {
            // The next plan knows the next expiry.
            self.backoff_wake = None;
            self.dirty = true;
        }
    }

    // ---------------------------------------------------------------- polls

    /// The next task to run at `now`, if a slot is free and one is dispatchable; marks its
    /// lease. Returns `None` when nothing may start now (see [`Scheduler::next_wake`]).
    pub fn poll_dispatch(&mut self, now: Time) -> Option<Dispatch> {
        let now = self.clock(now);
        if self.draining || self.leases.len() as u64 >= u64::from(self.config.concurrency) {
            return None;
        }
        if self.dirty {
            self.replan(now);
        }
        let models = &self.models;
        let in_flight = &self.in_flight;
        let t = self.ready.pop(|m| {
            models[m as usize]
                .limit
                .is_none_or(|lim| in_flight[m as usize] < lim)
        })?;
        let task = self.cur.tasks[t as usize];
        self.cur.slot[t as usize] = Slot::Running;
        let attempt = self.engine.failures_of(task.object).saturating_add(1);
        let m = task.model.index();
        let deadline = self.models[m].timeout_ms.map(|ms| now.after(ms));
        let lease = Lease {
            id: LeaseId {
                seq: self.next_lease,
                object: task.object,
            },
            task,
            started: now,
            attempt,
            deadline,
        };
        self.next_lease += 1;
        let from = PlanSlot {
            plan: self.plan_seq,
            node: t,
        };
        self.put_lease(lease, Some(from));
        self.stats.dispatched += 1;
        if attempt > 1 {
            self.stats.retries += 1;
        }
        let eligible_at = self.cur.eligible[t as usize];
        self.metrics[m].wait_ms_total += now.0.saturating_sub(eligible_at.0);
        Some(Dispatch {
            lease: lease.id,
            task,
            attempt,
            now,
            deadline,
            eligible_at,
        })
    }

    // ---------------------------------------------------------------- internals

    /// Inputs never go back in time: an earlier `now` is read as the last one.
    fn clock(&mut self, now: Time) -> Time {
        if now > self.last_now {
            self.last_now = now;
        }
        self.last_now
    }

    /// Records lease `l`, dispatched from plan task `from` (`None`: restored).
    fn put_lease(&mut self, l: Lease, from: Option<PlanSlot>) {
        self.leases
            .insert(Held { lease: l, from }, self.engine.id_capacity());
        self.in_flight[l.task.model.index()] += 1;
        if let Some(d) = l.deadline {
            self.deadlines.insert((d, l.task.object.0));
        }
    }

    fn take_lease(&mut self, id: ObjectId) -> Option<Held> {
        let held = self.leases.remove(id)?;
        let l = held.lease;
        self.in_flight[l.task.model.index()] -= 1;
        if let Some(d) = l.deadline {
            self.deadlines.remove(&(d, id.0));
        }
        // A task of this model parked behind its limit may go now.
        self.ready.unpark(l.task.model.0);
        Some(held)
    }

    fn take_lease_by_id(&mut self, lease: LeaseId) -> Option<Held> {
        let held = self.lease(lease.object)?;
        if held.id != lease {
            return None;
        }
        self.take_lease(lease.object)
    }

    fn priority(&self, t: &Task) -> i32 {
        if let Some(p) = self.object_prio.get(&t.object.0) {
            return *p;
        }
        self.models[t.model.index()].priority
    }

    /// Recomputes the plan and rebuilds the ready queue (O(plan)).
    fn replan(&mut self, now: Time) {
        self.dirty = false;
        let mut plan = self.engine.plan(now);
        self.plan_seq += 1;
        self.stats.replans += 1;
        self.stats.plan_objects += plan.stats.objects;
        self.backoff_wake = plan.next_wake;
        self.resolve_object_priorities();
        let n = plan.tasks.len();
        let cur = &mut self.cur;
        // Free the previous plan's index entries.
        for t in &cur.tasks {
            if let Some(x) = cur.task_of.get_mut(t.object.index()) {
                *x = u32::MAX;
            }
        }
        let cap = self.engine.id_capacity();
        if cur.task_of.len() < cap {
            cur.task_of.resize(cap, u32::MAX);
        }
        cur.late.clear();
        // Every node of the plan's DAG: its tasks, then its model-level barriers (R1, R7),
        // which count their members and release their waiters once all have completed.
        let nodes = plan.node_count();
        cur.pending.clear();
        cur.rev_off.clear();
        cur.rev_off.resize(nodes + 1, 0);
        for k in 0..nodes {
            let deps = plan.node_deps(k);
            cur.pending.push(deps.len() as u32);
            for &d in deps {
                cur.rev_off[d as usize + 1] += 1;
            }
        }
        for k in 0..nodes {
            cur.rev_off[k + 1] += cur.rev_off[k];
        }
        cur.rev.clear();
        cur.rev.resize(plan.edge_count(), 0);
        let mut fill: Vec<u32> = cur.rev_off[..nodes].to_vec();
        for k in 0..nodes {
            for &d in plan.node_deps(k) {
                cur.rev[fill[d as usize] as usize] = k as u32;
                fill[d as usize] += 1;
            }
        }
        cur.slot.clear();
        cur.slot.resize(n, Slot::Waiting);
        cur.eligible.clear();
        cur.eligible.resize(n, now);
        for (i, t) in plan.tasks.iter().enumerate() {
            cur.task_of[t.object.index()] = i as u32;
        }
        // The plan's tasks are the scheduler's now (moved, not copied).
        cur.tasks = std::mem::take(&mut plan.tasks);
        // A task whose object is in flight is that actuation, or waits for it to end: found
        // from the leases (as many as in flight), not by a lease lookup per task.
        for l in self.leases.iter() {
            if let Some(i) = cur.index_of(l.task.object) {
                cur.slot[i as usize] = if cur.tasks[i as usize] == l.task {
                    Slot::Running
                } else {
                    Slot::BehindLease
                };
            }
        }
        self.ready.clear();
        for i in 0..n {
            if self.cur.slot[i] == Slot::Waiting && self.cur.pending[i] == 0 {
                self.queue(i as u32, now);
            }
        }
    }

    fn queue(&mut self, i: u32, now: Time) {
        let t = self.cur.tasks[i as usize];
        self.cur.slot[i as usize] = Slot::Queued;
        self.cur.eligible[i as usize] = now;
        let prio = self.priority(&t);
        self.ready.push(prio, now, t.object.0, i, t.model.0);
    }

    fn resolve_object_priorities(&mut self) {
        self.object_prio.clear();
        for (key, &p) in &self.config.object_priority {
            if let Some(id) = self.engine.id(key) {
                self.object_prio.insert(id.0, p);
            }
        }
    }

    /// Applies an ended lease's outcome.
    fn finish(&mut self, held: Held, outcome: Outcome, now: Time) -> Delivery {
        let l = held.lease;
        self.stats.delivered += 1;
        let m = l.task.model.index();
        let latency = now.0.saturating_sub(l.started.0);
        {
            let mm = &mut self.metrics[m];
            mm.latency_ms_total += latency;
            mm.latency_ms_max = mm.latency_ms_max.max(latency);
        }
        let requeue = outcome.requeue_delay();
        let watched = self.watched_feedback_before(l.task);
        let completion = match self.engine.complete(&l.task, outcome, now) {
            Ok(c) => c,
            // The object left the store meanwhile: as stale as it gets.
            Err(_) => Completion::Stale,
        };
        // The object's task in the current plan: the one it was dispatched from while that
        // plan stands (a fold adds tasks only for objects with no lease), else a lookup.
        let idx = match held.from {
            _ if self.dirty => None,
            Some(f) if f.plan == self.plan_seq => {
                debug_assert_eq!(Some(f.node), self.cur.index_of(l.task.object));
                Some(f.node)
            }
            _ => self.cur.index_of(l.task.object),
        };
        let mut released = 0;
        match &completion {
            Completion::Synced | Completion::Deleted { .. } => {
                self.metrics[m].ok += 1;
                match idx {
                    Some(i)
                        if self.cur.tasks[i as usize] == l.task
                            && self.cur.pending[i as usize] == 0 =>
                    {
                        self.cur.slot[i as usize] = Slot::Done;
                        released = self.release(i, now);
                    }
                    // The plan did not count on this completion: the object was held when
                    // it was made, or it was dispatched under an earlier plan and its own
                    // prerequisites changed while it ran (then its dependents, which now
                    // wait through it for those, must not be released): plan again.
                    _ => self.dirty = true,
                }
                if let Completion::Deleted { removed } = &completion {
                    self.forget_timers(l.task.object);
                    if !removed.is_empty() {
                        self.dirty = true;
                    }
                } else {
                    self.after_synced(l.task, requeue, now);
                    if let Some(before) = watched {
                        self.watch_resync_after_complete(l.task.object, before);
                    }
                }
            }
            Completion::Failed { retry_at, .. } | Completion::Deferred { retry_at } => {
                if matches!(completion, Completion::Failed { .. }) {
                    self.metrics[m].failed += 1;
                } else {
                    self.metrics[m].deferred += 1;
                }
                self.backoff_wake = Some(self.backoff_wake.map_or(*retry_at, |w| w.min(*retry_at)));
                if let Some(i) = idx {
                    self.cur.slot[i as usize] = Slot::Done;
                }
            }
            Completion::Stale | Completion::ExternalFailed => {
                self.metrics[m].stale += 1;
                self.stats.stale += 1;
                if let Some(i) = idx {
                    let s = self.cur.slot[i as usize];
                    if s == Slot::BehindLease {
                        // The newer work waited for this lease: it may go now.
                        if self.cur.pending[i as usize] == 0 {
                            self.queue(i, now);
                        } else {
                            self.cur.slot[i as usize] = Slot::Waiting;
                        }
                    } else if s == Slot::Running {
                        self.cur.slot[i as usize] = Slot::Done;
                        self.dirty = true;
                    }
                } else if self.engine.alive(l.task.object) {
                    // Work for the object may have appeared without a plan slot.
                    self.dirty = true;
                }
            }
        }
        if !self.rerun.is_empty() {
            self.rerun.remove(&l.task.object.0);
        }
        Delivery::Applied {
            completion,
            released,
        }
    }

    /// An accepted completion of task `i`: its dependents each have one prerequisite
    /// fewer; those with none left are queued now. A dependent that is a barrier (node
    /// `>= tasks.len()`) with no member left releases its own waiters in turn, once.
    fn release(&mut self, i: u32, now: Time) -> u32 {
        // A node added by a fold has no dependents in the plan's own lists.
        let (a, b) = match (
            self.cur.rev_off.get(i as usize),
            self.cur.rev_off.get(i as usize + 1),
        ) {
            (Some(&a), Some(&b)) => (a as usize, b as usize),
            _ => (0, 0),
        };
        let late = if self.cur.late.is_empty() {
            Vec::new()
        } else {
            self.cur.late.remove(&i).unwrap_or_default()
        };
        self.stats.release_edges += (b - a + late.len()) as u64;
        let mut released = 0;
        for k in 0..(b - a) + late.len() {
            let d = if k < b - a {
                self.cur.rev[a + k]
            } else {
                late[k - (b - a)]
            };
            let p = &mut self.cur.pending[d as usize];
            *p -= 1;
            if *p != 0 {
                continue;
            }
            if d as usize >= self.cur.tasks.len() {
                // A barrier's waiters are tasks: this recurses once.
                released += self.release(d, now);
            } else if self.cur.slot[d as usize] == Slot::Waiting {
                self.queue(d, now);
                released += 1;
            }
        }
        released
    }

    /// After a sync completed: arm the object's re-sync timer (`requeue_after`, else its
    /// model's `resync_ms` with seeded jitter).
    fn after_synced(&mut self, task: Task, requeue: Option<u64>, now: Time) {
        let id = task.object.0;
        let delay = match requeue {
            Some(ms) => Some(ms),
            None => self.models[task.model.index()].resync_ms.map(|ms| {
                let n = self.resync_count.entry(id).or_insert(0);
                *n = n.wrapping_add(1);
                let key = self.engine.key(task.object);
                ms + config::jitter(
                    self.config.seed,
                    key,
                    *n,
                    ms,
                    self.config.resync_jitter_permille,
                )
            }),
        };
        self.forget_timers(task.object);
        if !self.rerun.is_empty() && self.rerun.remove(&id) && self.engine.mark_resync(task.object)
        {
            self.stats.watch_resyncs += 1;
            self.dirty = true;
        }
        if let Some(ms) = delay {
            let due = now.after(ms);
            self.timers.insert((due, id));
            self.resync_due.insert(id, due);
        }
    }

    fn forget_timers(&mut self, id: ObjectId) {
        if self.resync_due.is_empty() {
            return;
        }
        if let Some(due) = self.resync_due.remove(&id.0) {
            self.timers.remove(&(due, id.0));
        }
    }
}
