//! Running a scenario in simulated time on the library's scheduler
//! ([`syncore::sched::Scheduler`]) and its virtual-time driver ([`syncore::sched::Lanes`]):
//! this module makes no scheduling decision of its own, it feeds the scenario's timeline in
//! and turns what the scheduler did into [`Event`]s to render. Everything is deterministic:
//! the same scenario gives the same events.
//!
//! Workers are lanes (the scheduler's concurrency), not threads: an actuator is called when
//! its task is dispatched (it sees the state of that moment, its dependencies' feedback
//! included) and its outcome is delivered at `start + duration` (from the scenario). A change
//! set applied in between makes the completion stale (R8) and waits for it (one actuation
//! per object in flight), as in a real deployment.

use std::collections::BTreeMap;

use serde::Serialize;
use syncore::sched::{Delivery, Dispatch, Effect, Input, LaneStop, Lanes, SchedConfig, Scheduler};
use syncore::trace::{self, Settled, StateHash};
use syncore::{Completion, ExternalReport, HoldReason, ObjectId, Outcome, Status, TaskKind, Time};

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

/// An actuation in flight, as the renderer knows it.
struct Running {
    key: String,
    model: String,
    kind: TaskKind,
    version: u64,
    start: u64,
    lane: u32,
}

/// Runs `setup` to convergence, to its end time, or until nothing can progress; `observe`
/// sees every event as it happens (for progress display). With `record`, the run is also
/// kept as a scheduler trace (the format `syncore replay` reads): a header with the
/// scheduler's starting snapshot, then every input with the state hash after it.
///
/// # Errors
/// A message if a plugin cannot be loaded or the scheduler settings do not fit the schema.
pub fn simulate(
    setup: &Setup,
    record: bool,
    observe: &mut dyn FnMut(&Event),
) -> Result<RunResult, String> {
    let mut sched =
        Scheduler::new(setup.engine()?, sched_config(setup)).map_err(|e| e.to_string())?;
    let mut r = Render::new(setup, record, observe);
    r.header(&sched, "virtual");
    let mut lanes = Lanes::new(&mut sched)
        .until(Time(setup.settings.end_ms))
        .max_dispatches(usize::try_from(setup.settings.actuations_max).unwrap_or(usize::MAX));
    for set in &setup.sets {
        let at = Time(set.at);
        if !set.changes.is_empty() || set.reports.is_empty() {
            let changes = set.changes.clone();
            lanes = lanes.at(Input::Apply { changes, now: at });
        }
        for (key, failed) in &set.reports {
            let (key, failed) = (key.clone(), failed.clone());
            // The report names the version the object has when it arrives.
            lanes = lanes.at_fn(at, move |s: &Scheduler| {
                let version = s.engine().object(&key)?.version;
                let report = match failed {
                    None => ExternalReport::Synced { version },
                    Some(message) => ExternalReport::Failed { version, message },
                };
                Some(Input::Report {
                    key,
                    report,
                    now: at,
                })
            });
        }
    }
    // Both callbacks render into `r`; the driver never calls them at the same time.
    let cell = std::cell::RefCell::new(r);
    let mut step = 0u64;
    let run = lanes.run(
        |s, d, lane| cell.borrow_mut().actuate(s, d, lane),
        |s, input, effect, dispatched| {
            step += 1;
            cell.borrow_mut().input(s, step, input, effect, dispatched);
        },
    );
    let r = cell.into_inner();
    let end = match run.stop {
        LaneStop::Horizon => run.end.0.max(setup.settings.end_ms),
        _ => run.end.0,
    };
    let stop = match run.stop {
        LaneStop::Idle => Stop::Idle,
        LaneStop::Horizon => Stop::EndTime,
        LaneStop::MaxDispatches => Stop::Actuations,
    };
    Ok(r.finish(&sched, end, stop))
}

/// The scheduler settings of a scenario: `workers` lanes, per-model and per-object settings.
pub(crate) fn sched_config(setup: &Setup) -> SchedConfig {
    SchedConfig {
        concurrency: u32::try_from(setup.settings.workers.max(1)).unwrap_or(u32::MAX),
        models: setup.settings.models.clone(),
        object_priority: setup.settings.object_priority.clone(),
        seed: setup.settings.seed,
        ..SchedConfig::default()
    }
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Nothing was left to happen.
    Idle,
    /// `settings.end_ms` came.
    EndTime,
    /// `settings.actuations_max` actuations ran.
    Actuations,
}

/// Turns what the scheduler did into events (and the trace).
pub(crate) struct Render<'a> {
    setup: &'a Setup,
    events: Vec<Event>,
    observe: &'a mut dyn FnMut(&Event),
    /// Every key seen: model and last known dependencies.
    deps: BTreeMap<String, (String, Vec<String>)>,
    /// The trace, if recording.
    trace: Vec<trace::Event>,
    record: bool,
    /// The hold last shown per object (forgotten when it starts).
    held: BTreeMap<ObjectId, HoldReason>,
    /// Actuations in flight, by lease sequence number.
    running: BTreeMap<u64, Running>,
    /// The labels of the timeline's change sets, in order.
    labels: Vec<String>,
    next_label: usize,
}

impl<'a> Render<'a> {
    /// A renderer of a run of `setup`; with `record`, it also keeps the trace (give it the
    /// header with [`Render::header`]).
    pub(crate) fn new(setup: &'a Setup, record: bool, observe: &'a mut dyn FnMut(&Event)) -> Self {
        Render {
            setup,
            events: Vec::new(),
            observe,
            deps: BTreeMap::new(),
            trace: Vec::new(),
            record,
            held: BTreeMap::new(),
            running: BTreeMap::new(),
            labels: setup.sets.iter().map(|s| s.label.clone()).collect(),
            next_label: 0,
        }
    }

    /// Starts the trace with `sched`'s state (before any input).
    pub(crate) fn header(&mut self, sched: &Scheduler, clock: &str) {
        if self.record {
            self.trace.push(trace::Event::sched_header(sched, clock));
        }
    }

    /// The lowest lane no running actuation occupies.
    pub(crate) fn free_lane(&self) -> u32 {
        (0..)
            .find(|l| !self.running.values().any(|r| r.lane == *l))
            .unwrap_or(0)
    }

    /// Ends the run at `end`: the `End` event and the result.
    pub(crate) fn finish(mut self, sched: &Scheduler, end: u64, stop: Stop) -> RunResult {
        let engine = sched.engine();
        let plan = engine.plan(Time(end));
        let all_synced = engine
            .keys()
            .all(|k| engine.status(k, Time(end)) == Some(Status::Synced));
        let settings = &self.setup.settings;
        let (converged, reason) = match stop {
            Stop::Idle if all_synced => (true, "every object is synced".to_string()),
            Stop::Idle => (false, "stuck: nothing can make progress".to_string()),
            Stop::EndTime => (
                false,
                format!("reached the end time t={}ms", settings.end_ms),
            ),
            Stop::Actuations => (
                false,
                format!(
                    "stopped after {} actuations (settings.actuations_max)",
                    settings.actuations_max
                ),
            ),
        };
        self.emit(Event::End {
            at: end,
            converged,
            reason,
        });
        let objects = self
            .deps
            .iter()
            .map(|(key, (model, deps))| FinalObject {
                key: key.clone(),
                model: model.clone(),
                deps: deps.clone(),
                status: engine.id(key).map(|id| engine.status_in(&plan, id)),
            })
            .collect();
        RunResult {
            events: self.events,
            converged,
            end,
            objects,
            workers: settings.workers.max(1),
            state_hash: engine.state_hash(),
            trace: self.trace,
        }
    }

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

    /// Calls the actuator of a dispatched task (it sees the state at dispatch) and gives the
    /// scenario's duration for it.
    fn actuate(&mut self, s: &Scheduler, d: &Dispatch, lane: u32) -> (u64, Outcome) {
        let t = &d.task;
        let view = s.engine().view(t.object);
        let (key, model) = (view.key(), view.model());
        self.setup.clock.set(d.now);
        let outcome = match &self.setup.actuators[t.model.index()] {
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
        let ms = self.setup.duration(key, model, t.kind);
        self.start(s, d, lane);
        (ms, outcome)
    }

    /// Renders a dispatch that started on `lane`.
    pub(crate) fn start(&mut self, s: &Scheduler, d: &Dispatch, lane: u32) {
        let t = &d.task;
        let view = s.engine().view(t.object);
        let (key, model) = (view.key().to_string(), view.model().to_string());
        let now = d.now.0;
        self.held.remove(&t.object);
        self.emit(Event::Started {
            at: now,
            worker: lane as usize,
            key: key.clone(),
            model: model.clone(),
            kind: t.kind,
            version: t.version,
            running: self.running.len() + 1,
        });
        self.watch_lines(now);
        self.running.insert(
            d.lease.seq,
            Running {
                key,
                model,
                kind: t.kind,
                version: t.version,
                start: now,
                lane,
            },
        );
    }

    /// Renders one input the scheduler took, and records it.
    pub(crate) fn input(
        &mut self,
        s: &Scheduler,
        step: u64,
        input: &Input,
        effect: &Effect,
        out: &[Dispatch],
    ) {
        let now = input.now().0;
        if self.record {
            self.trace.push(trace::Event::DidInput {
                step,
                input: input.clone(),
                state_hash: StateHash(s.state_hash()),
            });
        }
        let mut show_holds = true;
        match (input, effect) {
            (Input::Apply { changes, .. }, Effect::Applied(report)) => {
                let label = self.label();
                let engine = s.engine();
                let own: std::collections::BTreeSet<&str> =
                    changes.changes.iter().map(|c| c.key()).collect();
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
                    label,
                    changed: report.changed.clone(),
                    by_policy,
                    deleted: report.deleted.clone(),
                    removed: report.removed.clone(),
                });
            }
            (Input::Apply { .. }, Effect::Refused(e)) => {
                let label = self.label();
                self.emit(Event::Refused {
                    at: now,
                    label,
                    error: e.to_string(),
                });
            }
            (Input::Report { key, report, .. }, Effect::Reported(Ok(_))) => {
                let failed = match report {
                    ExternalReport::Failed { message, .. } => Some(message.clone()),
                    _ => None,
                };
                self.emit(Event::Reported {
                    at: now,
                    key: key.clone(),
                    failed,
                });
            }
            (Input::Deliver { lease, outcome, .. }, Effect::Delivered(delivery)) => {
                let completion = match delivery {
                    Delivery::Applied { completion, .. } => Some(completion.clone()),
                    Delivery::Late => None,
                };
                // A success releases dependents without changing any hold.
                show_holds = !matches!(
                    completion,
                    Some(Completion::Synced | Completion::Deleted { .. })
                );
                if let Some(r) = self.running.remove(&lease.seq) {
                    if self.record {
                        self.trace.push(trace::Event::DidActuate {
                            step,
                            task: usize::try_from(lease.seq).unwrap_or(usize::MAX),
                            key: r.key.clone(),
                            model: r.model.clone(),
                            kind: r.kind,
                            version: r.version,
                            lane: u16::try_from(r.lane).ok(),
                            start_ns: r.start.saturating_mul(1_000_000),
                            end_ns: now.saturating_mul(1_000_000),
                            state: Settled::Ran,
                            outcome: Some(outcome.clone()),
                            held_by: None,
                        });
                    }
                    self.emit(Event::Finished {
                        start: r.start,
                        at: now,
                        worker: r.lane as usize,
                        key: r.key,
                        model: r.model,
                        kind: r.kind,
                        version: r.version,
                        outcome: outcome.clone(),
                        completion,
                    });
                }
            }
            _ => {}
        }
        self.watch_lines(now);
        let idle = s.in_flight() == 0 && out.is_empty();
        if show_holds || idle {
            self.holds(s, now, out);
        }
    }

    /// The label of the next timeline change set.
    fn label(&mut self) -> String {
        let label = self
            .labels
            .get(self.next_label)
            .cloned()
            .unwrap_or_default();
        self.next_label += 1;
        label
    }

    /// Holds that are new or have a new reason (R3, R4, R7, R17), and, when nothing runs
    /// and nothing starts, what everything waits for.
    fn holds(&mut self, s: &Scheduler, now: u64, out: &[Dispatch]) {
        let engine = s.engine();
        let plan = engine.plan(Time(now));
        for h in &plan.holds {
            if matches!(h.reason, HoldReason::BackingOff { .. }) {
                continue;
            }
            if s.lease(h.object).is_some() {
                continue;
            }
            if self.held.get(&h.object) != Some(&h.reason) {
                self.held.insert(h.object, h.reason.clone());
                let e = Event::Held {
                    at: now,
                    key: engine.key(h.object).to_string(),
                    status: engine.status_in(&plan, h.object),
                };
                self.emit(e);
            }
        }
        if s.in_flight() > 0 || !out.is_empty() {
            return;
        }
        let backing_off: Vec<(String, u64)> = plan
            .holds
            .iter()
            .filter_map(|h| match h.reason {
                HoldReason::BackingOff { until } => {
                    Some((engine.key(h.object).to_string(), until.0))
                }
                _ => None,
            })
            .collect();
        if let (Some(wake), false) = (s.next_wake(), backing_off.is_empty()) {
            if wake.0 > now {
                self.emit(Event::Waiting {
                    at: now,
                    until: wake.0,
                    backing_off,
                });
            }
        }
    }
}
