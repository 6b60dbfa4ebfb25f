//! Running a scenario in simulated time: plan, start what may run on free workers, complete
//! at the end of each actuation, apply the timeline's change sets when they are due, jump
//! over idle time to the next backoff expiry. Everything is deterministic: the same scenario
//! gives the same events.
//!
//! Workers are lanes of a discrete-event simulation, not threads: an actuator is called when
//! its task starts (it sees the state of that moment) and its outcome is completed at
//! `start + duration` (from the scenario), so a change set applied in between makes the
//! completion stale (R8), as in a real deployment.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use syncore::trace::{self, Recorded, Settled, StateHash};
use syncore::{
    Completion, Engine, ExternalReport, HoldReason, ObjectId, Outcome, Plan, RunCounts, Status,
    Task, TaskKind, Time,
};

use crate::check::Setup;

/// Something that happened during a run, in time order.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// A change set was applied.
    Applied {
        /// Logical time, ms.
        at: u64,
        /// Which set.
        label: String,
        /// Keys with a new version, the set's own and policies' (sorted).
        changed: Vec<String>,
        /// Of those, keys a model policy created or changed (not in the set itself).
        by_policy: Vec<String>,
        /// Keys marked for deletion.
        deleted: Vec<String>,
        /// Keys removed at once (passive, unreferenced).
        removed: Vec<String>,
    },
    /// A change set was refused by the engine.
    Refused {
        /// Logical time, ms.
        at: u64,
        /// Which set.
        label: String,
        /// The engine's error.
        error: String,
    },
    /// An external object was reported synced or failed.
    Reported {
        /// Logical time, ms.
        at: u64,
        /// The object.
        key: String,
        /// The failure, if it failed.
        failed: Option<String>,
    },
    /// An actuation started on a worker.
    Started {
        /// Logical time, ms.
        at: u64,
        /// The worker lane (0-based).
        worker: usize,
        /// The object.
        key: String,
        /// Its model.
        model: String,
        /// Sync or delete.
        kind: TaskKind,
        /// The version it enacts.
        version: u64,
        /// Actuations running now, this one included.
        running: usize,
    },
    /// An actuation ended and was completed.
    Finished {
        /// When it started, ms.
        start: u64,
        /// When it ended, ms.
        at: u64,
        /// The worker lane.
        worker: usize,
        /// The object.
        key: String,
        /// Its model.
        model: String,
        /// Sync or delete.
        kind: TaskKind,
        /// The version it enacted.
        version: u64,
        /// What the actuator returned.
        outcome: Outcome,
        /// What the engine made of it.
        completion: Option<Completion>,
    },
    /// An object is held (newly, or for a new reason).
    Held {
        /// Logical time, ms.
        at: u64,
        /// The object.
        key: String,
        /// Its status (R4).
        status: Status,
    },
    /// Nothing can run until `until`: every remaining object is backing off.
    Waiting {
        /// Logical time, ms.
        at: u64,
        /// When something becomes due.
        until: u64,
        /// The objects backing off (sorted), with their retry times.
        backing_off: Vec<(String, u64)>,
    },
    /// A plugin's log line.
    Log {
        /// Logical time, ms.
        at: u64,
        /// The plugin, its level, the object, the message.
        line: String,
    },
    /// A watcher's line.
    Watch {
        /// Logical time, ms.
        at: u64,
        /// What the watcher said.
        line: String,
    },
    /// The run ended.
    End {
        /// Logical time, ms.
        at: u64,
        /// Whether every object is synced and the timeline is done.
        converged: bool,
        /// Why it ended, in words.
        reason: String,
    },
}

impl Event {
    /// The event's logical time, ms.
    pub fn at(&self) -> u64 {
        match self {
            Event::Applied { at, .. }
            | Event::Refused { at, .. }
            | Event::Reported { at, .. }
            | Event::Started { at, .. }
            | Event::Finished { at, .. }
            | Event::Held { at, .. }
            | Event::Waiting { at, .. }
            | Event::Watch { at, .. }
            | Event::Log { at, .. }
            | Event::End { at, .. } => *at,
        }
    }
}

/// An object's final state, for the summary and the graph.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FinalObject {
    /// Key.
    pub key: String,
    /// Model.
    pub model: String,
    /// Keys it depends on (last known), sorted.
    pub deps: Vec<String>,
    /// Its status, or `None` once deleted.
    pub status: Option<Status>,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunResult {
    /// Every event, in order.
    pub events: Vec<Event>,
    /// Whether it converged.
    pub converged: bool,
    /// The logical time it ended at, ms.
    pub end: u64,
    /// Every object that existed, in key order.
    pub objects: Vec<FinalObject>,
    /// Worker lanes.
    pub workers: usize,
    /// The engine's final state hash.
    pub state_hash: u64,
    /// The run as a `syncore::trace` (empty unless recording was asked for).
    pub trace: Vec<trace::Event>,
}

impl RunResult {
    /// Objects not synced at the end (deleted ones excluded), in key order.
    pub fn unsettled(&self) -> Vec<&FinalObject> {
        self.objects
            .iter()
            .filter(|o| matches!(&o.status, Some(s) if *s != Status::Synced))
            .collect()
    }
}

/// The latest plan and what has happened to its tasks since.
///
/// Planning costs O(unsettled objects), so the simulation does not plan after every
/// completion: a successful completion only releases the completed task's dependents in the
/// plan, which a fresh plan would also find (R1). Anything else (a change set, a failure, a
/// deferral, a stale result, a backoff expiry) makes the next iteration plan again.
struct Cached {
    plan: Plan,
    /// Prerequisites of each task not yet completed successfully.
    pending: Vec<u32>,
    /// Dependents of each task (the inverse of `plan.deps`).
    dependents: Vec<Vec<u32>>,
    /// Tasks free to start, by object id then task index.
    ready: BTreeSet<(ObjectId, u32)>,
    /// Task index of each object.
    index: BTreeMap<ObjectId, u32>,
}

impl Cached {
    fn new(plan: Plan, running: &[Option<Running>]) -> Cached {
        let n = plan.tasks.len();
        let mut pending = vec![0u32; n];
        let mut dependents = vec![Vec::new(); n];
        for (i, p) in pending.iter_mut().enumerate() {
            let deps = plan.deps(i);
            *p = deps.len() as u32;
            for &d in deps {
                dependents[d as usize].push(i as u32);
            }
        }
        let busy: BTreeSet<ObjectId> = running.iter().flatten().map(|r| r.task.object).collect();
        let index = plan
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.object, i as u32))
            .collect();
        let ready = plan
            .tasks
            .iter()
            .enumerate()
            .filter(|(i, t)| pending[*i] == 0 && !busy.contains(&t.object))
            .map(|(i, t)| (t.object, i as u32))
            .collect();
        Cached {
            plan,
            pending,
            dependents,
            ready,
            index,
        }
    }

    /// `object` completed successfully: its dependents may be ready.
    fn done(&mut self, object: ObjectId) {
        let Some(&i) = self.index.get(&object) else {
            return;
        };
        for &d in &self.dependents[i as usize] {
            let p = &mut self.pending[d as usize];
            *p = p.saturating_sub(1);
            if *p == 0 {
                self.ready.insert((self.plan.tasks[d as usize].object, d));
            }
        }
    }
}

struct Running {
    task: Task,
    /// The step that started it, and its index in that step's plan (for the trace).
    step: u64,
    index: usize,
    key: String,
    model: String,
    start: u64,
    end: u64,
    outcome: Outcome,
}

/// Runs `setup` to convergence, to its end time, or until nothing can progress; `observe`
/// sees every event as it happens (for progress display). With `record`, the run is also
/// kept as a `syncore::trace` (the format `syncore replay` reads): each iteration of the
/// loop below is one trace step.
///
/// # Errors
/// A message if a plugin cannot be loaded.
pub fn simulate(
    setup: &Setup,
    record: bool,
    observe: &mut dyn FnMut(&Event),
) -> Result<RunResult, String> {
    let mut engine = setup.engine()?;
    let workers = setup.settings.workers.max(1);
    let mut sim = Sim {
        setup,
        events: Vec::new(),
        observe,
        deps: BTreeMap::new(),
        trace: Vec::new(),
        record,
        step: 0,
        counts: RunCounts::default(),
    };
    if record {
        sim.trace.push(trace::Event::header(&engine, "virtual"));
    }
    let mut now = 0u64;
    let mut next_set = 0usize;
    let mut running: Vec<Option<Running>> = (0..workers).map(|_| None).collect();
    let mut held: BTreeMap<ObjectId, HoldReason> = BTreeMap::new();
    let mut actuations = 0u64;
    let mut cache: Option<Cached> = None;
    let (converged, reason) = loop {
        if sim.step > 0 {
            sim.end_step(&engine, now);
        }
        sim.step += 1;
        while next_set < setup.sets.len() && setup.sets[next_set].at <= now {
            sim.apply(&mut engine, next_set, now);
            next_set += 1;
            cache = None;
        }
        let running_count = running.iter().flatten().count();
        let replan = match &cache {
            None => true,
            Some(c) => {
                c.plan.next_wake.is_some_and(|w| w.0 <= now)
                    || (c.ready.is_empty() && running_count == 0)
            }
        };
        if replan {
            let plan = engine.plan(Time(now));
            if record {
                sim.trace.push(trace::Event::DidPlan {
                    step: sim.step,
                    now: Time(now),
                    plan: plan.clone(),
                });
            }
            // Holds that are new or have a new reason (R3, R4, R7, R17); an object's own
            // backoff shows in its Finished event. A hold is forgotten when its object
            // starts, so the same hold after a retry of its cause is shown again.
            for h in &plan.holds {
                if matches!(h.reason, HoldReason::BackingOff { .. }) {
                    continue;
                }
                if held.get(&h.object) != Some(&h.reason) {
                    sim.emit(Event::Held {
                        at: now,
                        key: engine.key(h.object).to_string(),
                        status: engine.status_in(&plan, h.object),
                    });
                    held.insert(h.object, h.reason.clone());
                }
            }
            cache = Some(Cached::new(plan, &running));
        }
        let Some(c) = cache.as_mut() else {
            continue;
        };

        // Start what may run: tasks whose prerequisites are all done, on free workers, in
        // object id order (the order of a fresh plan's first wave).
        while let Some(w) = running.iter().position(Option::is_none) {
            if actuations >= setup.settings.actuations_max {
                break;
            }
            let Some((_, i)) = c.ready.pop_first() else {
                break;
            };
            let i = i as usize;
            let t = &c.plan.tasks[i];
            actuations += 1;
            let view = engine.view(t.object);
            let key = view.key().to_string();
            let model = view.model().to_string();
            setup.clock.set(Time(now));
            let outcome = match &setup.actuators[t.model.index()] {
                Some(a) => {
                    let call = std::panic::AssertUnwindSafe(|| match t.kind {
                        TaskKind::Sync => a.sync(&view),
                        TaskKind::Delete => a.delete(&view),
                    });
                    std::panic::catch_unwind(call).unwrap_or_else(|p| {
                        let msg = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "unknown panic".into());
                        Outcome::failed(format!("actuator panicked: {msg}"))
                    })
                }
                None => Outcome::failed(format!("model {model} has no actuator")),
            };
            let end = now.saturating_add(setup.duration(&key, &model, t.kind));
            held.remove(&t.object);
            let count = running.iter().flatten().count() + 1;
            sim.emit(Event::Started {
                at: now,
                worker: w,
                key: key.clone(),
                model: model.clone(),
                kind: t.kind,
                version: t.version,
                running: count,
            });
            sim.watch_lines(now);
            running[w] = Some(Running {
                task: *t,
                step: sim.step,
                index: i,
                key,
                model,
                start: now,
                end,
                outcome,
            });
        }

        let plan = &c.plan;
        let running_count = running.iter().flatten().count();
        if running_count == 0 {
            if plan.is_empty() && next_set == setup.sets.len() {
                break (true, "every object is synced".to_string());
            }
            if actuations >= setup.settings.actuations_max && !plan.tasks.is_empty() {
                break (
                    false,
                    format!(
                        "stopped after {} actuations (settings.actuations_max)",
                        setup.settings.actuations_max
                    ),
                );
            }
            let wake = plan.next_wake.map(|t| t.0).filter(|&t| t > now);
            let set_at = setup.sets.get(next_set).map(|s| s.at);
            let next = match (wake, set_at) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break (false, "stuck: nothing can make progress".to_string()),
                },
            };
            if next > setup.settings.end_ms {
                now = setup.settings.end_ms.max(now);
                break (
                    false,
                    format!("reached the end time t={}ms", setup.settings.end_ms),
                );
            }
            if wake == Some(next) {
                let backing_off = plan
                    .holds
                    .iter()
                    .filter_map(|h| match h.reason {
                        HoldReason::BackingOff { until } => {
                            Some((engine.key(h.object).to_string(), until.0))
                        }
                        _ => None,
                    })
                    .collect::<Vec<_>>();
                sim.emit(Event::Waiting {
                    at: now,
                    until: next,
                    backing_off,
                });
            }
            now = next;
            continue;
        }

        // Advance to the next completion, or earlier to a due change set or a backoff
        // expiry when a worker is free to take it.
        let mut next = running.iter().flatten().map(|r| r.end).min().unwrap_or(now);
        if let Some(s) = setup.sets.get(next_set) {
            next = next.min(s.at.max(now));
        }
        if running_count < workers {
            if let Some(w) = plan.next_wake.filter(|w| w.0 > now) {
                next = next.min(w.0);
            }
        }
        now = next;
        for (w, slot) in running.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|r| r.end == now) {
                if let Some(r) = slot.take() {
                    let object = r.task.object;
                    match sim.finish(&mut engine, r, w, now) {
                        // Success releases the object's dependents in the cached plan.
                        Some(Completion::Synced | Completion::Deleted { .. }) => {
                            if let Some(c) = cache.as_mut() {
                                c.done(object);
                            }
                        }
                        // Anything else changes what may run: plan again.
                        _ => cache = None,
                    }
                }
            }
        }
        if now > setup.settings.end_ms {
            break (
                false,
                format!("reached the end time t={}ms", setup.settings.end_ms),
            );
        }
    };
    sim.end_step(&engine, now);
    sim.emit(Event::End {
        at: now,
        converged,
        reason,
    });
    let plan = engine.plan(Time(now));
    let objects = sim
        .deps
        .iter()
        .map(|(key, (model, deps))| FinalObject {
            key: key.clone(),
            model: model.clone(),
            deps: deps.clone(),
            status: engine.id(key).map(|id| engine.status_in(&plan, id)),
        })
        .collect();
    Ok(RunResult {
        events: sim.events,
        converged,
        end: now,
        objects,
        workers,
        state_hash: engine.state_hash(),
        trace: sim.trace,
    })
}

struct Sim<'a> {
    setup: &'a Setup,
    events: Vec<Event>,
    observe: &'a mut dyn FnMut(&Event),
    /// Every key seen: model and last known dependencies.
    deps: BTreeMap<String, (String, Vec<String>)>,
    /// The trace, if recording.
    trace: Vec<trace::Event>,
    record: bool,
    /// The current trace step (1-based).
    step: u64,
    /// Outcomes completed in the current step.
    counts: RunCounts,
}

impl Sim<'_> {
    fn emit(&mut self, e: Event) {
        (self.observe)(&e);
        self.events.push(e);
    }

    fn watch_lines(&mut self, at: u64) {
        for line in self.setup.drain_watch_lines() {
            self.emit(Event::Watch { at, line });
        }
        for line in crate::plugins::take_logs() {
            self.emit(Event::Log { at, line });
        }
    }

    /// Closes the current trace step with its counts and state hash.
    fn end_step(&mut self, engine: &Engine, now: u64) {
        let counts = std::mem::take(&mut self.counts);
        if self.record {
            self.trace.push(trace::Event::DidStep {
                step: self.step,
                now: Time(now),
                counts,
                state_hash: StateHash(engine.state_hash()),
            });
        }
    }

    fn apply(&mut self, engine: &mut Engine, n: usize, now: u64) {
        let set = &self.setup.sets[n];
        if set.changes.is_empty() && !set.reports.is_empty() {
            self.report(engine, n, now);
            return;
        }
        let result = engine.apply(set.changes.clone());
        if self.record {
            self.trace.push(trace::Event::DidApply {
                step: self.step,
                now: Time(now),
                changes: set.changes.clone(),
                result: match &result {
                    Ok(r) => Recorded::Ok(r.clone()),
                    Err(e) => Recorded::Error(e.to_string()),
                },
                state_hash: StateHash(engine.state_hash()),
            });
        }
        match result {
            Ok(report) => {
                let own: std::collections::BTreeSet<&str> =
                    set.changes.changes.iter().map(|c| c.key()).collect();
                for key in &report.changed {
                    if let Some(v) = engine.view_key(key) {
                        let mut deps: Vec<String> =
                            v.dependencies().map(|d| d.key().to_string()).collect();
                        deps.sort();
                        deps.dedup();
                        self.deps.insert(key.clone(), (v.model().to_string(), deps));
                    }
                }
                let by_policy = report
                    .changed
                    .iter()
                    .filter(|k| !own.contains(k.as_str()))
                    .cloned()
                    .collect();
                self.emit(Event::Applied {
                    at: now,
                    label: set.label.clone(),
                    changed: report.changed,
                    by_policy,
                    deleted: report.deleted,
                    removed: report.removed,
                });
            }
            Err(e) => self.emit(Event::Refused {
                at: now,
                label: set.label.clone(),
                error: e.to_string(),
            }),
        }
        self.watch_lines(now);
        self.report(engine, n, now);
    }

    /// Feeds the external reports of set `n`.
    fn report(&mut self, engine: &mut Engine, n: usize, now: u64) {
        let set = &self.setup.sets[n];
        for (key, failed) in &set.reports {
            let Some(version) = engine.object(key).map(|o| o.version) else {
                continue;
            };
            let report = match failed {
                None => ExternalReport::Synced { version },
                Some(m) => ExternalReport::Failed {
                    version,
                    message: m.clone(),
                },
            };
            let result = engine.report_external(key, report.clone());
            if self.record {
                self.trace.push(trace::Event::DidReportExternal {
                    step: self.step,
                    now: Time(now),
                    key: key.clone(),
                    report,
                    result: match &result {
                        Ok(c) => Recorded::Ok(c.clone()),
                        Err(e) => Recorded::Error(e.to_string()),
                    },
                    state_hash: StateHash(engine.state_hash()),
                });
            }
            if result.is_ok() {
                self.emit(Event::Reported {
                    at: now,
                    key: key.clone(),
                    failed: failed.clone(),
                });
            }
        }
    }

    fn finish(
        &mut self,
        engine: &mut Engine,
        r: Running,
        worker: usize,
        now: u64,
    ) -> Option<Completion> {
        let result = engine.complete(&r.task, r.outcome.clone(), Time(now));
        match &r.outcome {
            Outcome::Ok { .. } => self.counts.ok += 1,
            Outcome::Failed { .. } => self.counts.failed += 1,
            Outcome::Deferred { .. } => self.counts.deferred += 1,
        }
        if self.record {
            self.trace.push(trace::Event::DidActuate {
                step: r.step,
                task: r.index,
                key: r.key.clone(),
                model: r.model.clone(),
                kind: r.task.kind,
                version: r.task.version,
                lane: u16::try_from(worker).ok(),
                start_ns: r.start.saturating_mul(1_000_000),
                end_ns: now.saturating_mul(1_000_000),
                state: Settled::Ran,
                outcome: Some(r.outcome.clone()),
                held_by: None,
            });
            self.trace.push(trace::Event::DidComplete {
                step: self.step,
                task: r.index,
                at: Time(now),
                object: r.task,
                outcome: r.outcome.clone(),
                completion: match &result {
                    Ok(c) => Recorded::Ok(c.clone()),
                    Err(e) => Recorded::Error(e.to_string()),
                },
            });
        }
        let completion = result.ok();
        self.emit(Event::Finished {
            start: r.start,
            at: now,
            worker,
            key: r.key,
            model: r.model,
            kind: r.task.kind,
            version: r.task.version,
            outcome: r.outcome,
            completion: completion.clone(),
        });
        self.watch_lines(now);
        completion
    }
}
