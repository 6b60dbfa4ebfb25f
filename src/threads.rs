//! `run --executor threads`: the scenario on the engine's own run loop ([`Runner`]) and
//! work-stealing [`syncore::Executor`], with real worker threads and a clock that runs
//! `speed` times faster than the wall clock.
//!
//! Actuations take their scenario duration (divided by `speed`) of real time, so workers
//! really overlap; the engine plans, runs a plan's tasks as their dependencies finish, and
//! completes the outcomes in plan order at the end of each run (a *step*). Unlike the default
//! simulation the output depends on thread timing, but the recorded trace replays exactly.
//!
//! The timeline is rebuilt from the runner's trace: a shadow engine, restored from the
//! trace header and given the same policies and watchers, re-applies every recorded event,
//! which gives the keys and statuses of held objects at each plan.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use syncore::trace::{self, Recorded, Recorder, Settled};
use syncore::{
    Actuator, Actuators, Clock, Completion, Engine, ExecConfig, ExternalReport, HoldReason,
    ObjectId, ObjectView, Outcome, Runner, RunnerConfig, TaskKind, Time,
};

use crate::check::Setup;
use crate::run::{Event, FinalObject, RunResult};

/// Scenario time running `speed` times faster than real time.
#[derive(Debug)]
struct FastClock {
    start: Instant,
    speed: u64,
}

impl Clock for FastClock {
    fn now(&self) -> Time {
        Time((self.start.elapsed().as_millis() as u64).saturating_mul(self.speed))
    }

    fn block_for(&self, deadline: Time) -> Duration {
        Duration::from_millis(deadline.0.saturating_sub(self.now().0) / self.speed)
    }

    fn monotonic_ns(&self) -> u64 {
        (self.start.elapsed().as_nanos() as u64).saturating_mul(self.speed)
    }
}

/// An actuator that takes its scenario duration of (scaled) real time.
struct Timed {
    inner: Arc<dyn Actuator>,
    setup: Arc<Durations>,
}

/// The scenario's duration rule: (key, model, kind) to ms.
type DurationFn = Box<dyn Fn(&str, &str, TaskKind) -> u64 + Send + Sync>;

/// What `Timed` needs to know about durations (a copy, so actuators own it).
struct Durations {
    speed: u64,
    duration: DurationFn,
}

impl Timed {
    fn wait(&self, o: &ObjectView<'_>, kind: TaskKind) {
        let ms = (self.setup.duration)(o.key(), o.model(), kind);
        std::thread::sleep(Duration::from_micros(
            ms.saturating_mul(1000) / self.setup.speed,
        ));
    }
}

impl Actuator for Timed {
    fn sync(&self, o: &ObjectView<'_>) -> Outcome {
        let outcome = self.inner.sync(o);
        self.wait(o, TaskKind::Sync);
        outcome
    }

    fn delete(&self, o: &ObjectView<'_>) -> Outcome {
        let outcome = self.inner.delete(o);
        self.wait(o, TaskKind::Delete);
        outcome
    }
}

/// Runs `setup` on the engine's runner with `workers` threads; see the module docs.
///
/// # Errors
/// A message if the runner cannot be built (a plugin, a missing actuator) or fails.
pub fn execute(
    setup: &Setup,
    speed: u64,
    observe: &mut dyn FnMut(&Event),
) -> Result<RunResult, String> {
    let speed = speed.max(1);
    let engine = setup.engine()?;
    let durations = Arc::new(Durations {
        speed,
        duration: Box::new(setup.duration_fn()),
    });
    let mut actuators = Actuators::new();
    for (i, m) in setup.schema.models().iter().enumerate() {
        if let Some(a) = &setup.actuators[i] {
            actuators.insert(
                m.name.clone(),
                Arc::new(Timed {
                    inner: a.clone(),
                    setup: durations.clone(),
                }),
            );
        }
    }
    let clock = Arc::new(FastClock {
        start: Instant::now(),
        speed,
    });
    let config = RunnerConfig {
        exec: ExecConfig::new()
            .threads(setup.settings.workers)
            .timing(true),
        ..RunnerConfig::default()
    };
    let mut runner =
        Runner::new(engine, &actuators, clock.clone(), config).map_err(|e| e.to_string())?;
    runner
        .record(Recorder::memory())
        .map_err(|e| e.to_string())?;
    let sender = runner.sender();
    let mut next_set = 0usize;
    let actuations_max = setup.settings.actuations_max;
    let mut actuations = 0u64;
    let (converged, reason) = loop {
        let now = clock.now().0;
        while next_set < setup.sets.len() && setup.sets[next_set].at <= now {
            let set = &setup.sets[next_set];
            if !set.changes.is_empty() {
                let _ = sender.send(set.changes.clone());
            }
            for (key, failed) in &set.reports {
                let version = runner.engine().object(key).map_or(0, |o| o.version);
                let report = match failed {
                    None => ExternalReport::Synced { version },
                    Some(m) => ExternalReport::Failed {
                        version,
                        message: m.clone(),
                    },
                };
                let _ = sender.report_external(key.clone(), report);
            }
            next_set += 1;
        }
        let step = runner.step().map_err(|e| e.to_string())?;
        let ran = step.counts.ok + step.counts.failed + step.counts.deferred;
        actuations += ran as u64;
        if actuations >= actuations_max {
            break (
                false,
                format!("stopped after {actuations_max} actuations (settings.actuations_max)"),
            );
        }
        if ran > 0 || step.applied > 0 {
            continue;
        }
        let set_at = setup.sets.get(next_set).map(|s| s.at);
        if runner.engine().unsettled_count() == 0 && set_at.is_none() {
            break (true, "every object is synced".to_string());
        }
        let deadline = match (step.next_wake.map(|t| t.0), set_at) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => break (false, "stuck: nothing can make progress".to_string()),
            },
        };
        if deadline > setup.settings.end_ms {
            break (
                false,
                format!("reached the end time t={}ms", setup.settings.end_ms),
            );
        }
        std::thread::sleep(clock.block_for(Time(deadline)));
    };
    let end = clock.now().0;
    let text = runner
        .take_recorder()
        .map(Recorder::into_text)
        .unwrap_or_default();
    let events = trace::parse(text.as_bytes()).map_err(|e| e.to_string())?;
    setup.drain_watch_lines();
    crate::plugins::take_logs();
    let mut rebuilt = rebuild(setup, &events, observe)?;
    let e = Event::End {
        at: end,
        converged,
        reason,
    };
    observe(&e);
    rebuilt.events.push(e);
    let engine = runner.engine();
    let plan = engine.plan(Time(end));
    let objects = rebuilt
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
        events: rebuilt.events,
        converged,
        end,
        objects,
        workers: setup.settings.workers.max(1),
        state_hash: engine.state_hash(),
        trace: events,
    })
}

struct Rebuilt {
    events: Vec<Event>,
    deps: BTreeMap<String, (String, Vec<String>)>,
}

/// Lowercase or uppercase hex to bytes.
fn unhex(text: &str) -> Option<Vec<u8>> {
    let t = text.as_bytes();
    if !t.len().is_multiple_of(2) {
        return None;
    }
    t.chunks(2)
        .map(|p| {
            let d = |c: u8| (c as char).to_digit(16);
            Some((d(p[0])? * 16 + d(p[1])?) as u8)
        })
        .collect()
}

/// The timeline of a recorded run, by re-applying it to a shadow engine.
fn rebuild(
    setup: &Setup,
    trace: &[trace::Event],
    observe: &mut dyn FnMut(&Event),
) -> Result<Rebuilt, String> {
    let Some(trace::Event::Header { snapshot, .. }) = trace.first() else {
        return Err("the runner's trace has no header".into());
    };
    let bytes = unhex(snapshot).ok_or("the runner's trace header is not hex")?;
    let mut shadow = Engine::restore(&bytes).map_err(|e| e.to_string())?;
    setup.register_hooks(&mut shadow)?;
    let mut out = Rebuilt {
        events: Vec::new(),
        deps: BTreeMap::new(),
    };
    let mut emit = |out: &mut Rebuilt, e: Event| {
        observe(&e);
        out.events.push(e);
    };
    let mut step_now: BTreeMap<u64, u64> = BTreeMap::new();
    let mut held: BTreeMap<ObjectId, HoldReason> = BTreeMap::new();
    // The step's actuations: (task index) -> (start, end, lane, key, model, kind, version, outcome).
    type Actuation = (u64, u64, usize, String, String, TaskKind, u64, Outcome);
    let mut ran: BTreeMap<usize, Actuation> = BTreeMap::new();
    let mut step_events: Vec<Event> = Vec::new();
    let mut label_of = setup
        .sets
        .iter()
        .map(|s| (s.label.clone(), s.changes.clone()));
    for e in trace.iter().skip(1) {
        match e {
            trace::Event::DidApply {
                now,
                changes,
                result,
                ..
            } => {
                let label = label_of
                    .by_ref()
                    .find(|(_, c)| c == changes)
                    .map_or_else(|| "change set".to_string(), |(l, _)| l);
                match (shadow.apply(changes.clone()), result) {
                    (Ok(report), Recorded::Ok(_)) => {
                        let own: BTreeSet<&str> = changes.changes.iter().map(|c| c.key()).collect();
                        for key in &report.changed {
                            if let Some(v) = shadow.view_key(key) {
                                let mut deps: Vec<String> =
                                    v.dependencies().map(|d| d.key().to_string()).collect();
                                deps.sort();
                                deps.dedup();
                                out.deps.insert(key.clone(), (v.model().to_string(), deps));
                            }
                        }
                        let by_policy = report
                            .changed
                            .iter()
                            .filter(|k| !own.contains(k.as_str()))
                            .cloned()
                            .collect();
                        emit(
                            &mut out,
                            Event::Applied {
                                at: now.0,
                                label,
                                changed: report.changed,
                                by_policy,
                                deleted: report.deleted,
                                removed: report.removed,
                            },
                        );
                    }
                    (_, Recorded::Error(error)) => emit(
                        &mut out,
                        Event::Refused {
                            at: now.0,
                            label,
                            error: error.clone(),
                        },
                    ),
                    (Err(e), _) => return Err(format!("the shadow engine diverged: {e}")),
                }
                for line in setup.drain_watch_lines() {
                    emit(&mut out, Event::Watch { at: now.0, line });
                }
            }
            trace::Event::DidReportExternal {
                now, key, report, ..
            } => {
                let _ = shadow.report_external(key, report.clone());
                let failed = match report {
                    ExternalReport::Failed { message, .. } => Some(message.clone()),
                    ExternalReport::Synced { .. } => None,
                };
                emit(
                    &mut out,
                    Event::Reported {
                        at: now.0,
                        key: key.clone(),
                        failed,
                    },
                );
            }
            trace::Event::DidPlan { step, now, plan } => {
                step_now.insert(*step, now.0);
                for h in &plan.holds {
                    if matches!(h.reason, HoldReason::BackingOff { .. }) {
                        continue;
                    }
                    if held.get(&h.object) != Some(&h.reason) {
                        held.insert(h.object, h.reason.clone());
                        let key = shadow.key(h.object).to_string();
                        let status = shadow.status_in(plan, h.object);
                        emit(
                            &mut out,
                            Event::Held {
                                at: now.0,
                                key,
                                status,
                            },
                        );
                    }
                }
                if plan.tasks.is_empty() {
                    if let Some(until) = plan.next_wake {
                        let backing_off = plan
                            .holds
                            .iter()
                            .filter_map(|h| match h.reason {
                                HoldReason::BackingOff { until } => {
                                    Some((shadow.key(h.object).to_string(), until.0))
                                }
                                _ => None,
                            })
                            .collect();
                        emit(
                            &mut out,
                            Event::Waiting {
                                at: now.0,
                                until: until.0,
                                backing_off,
                            },
                        );
                    }
                }
            }
            trace::Event::DidActuate {
                step,
                task,
                key,
                model,
                kind,
                version,
                lane,
                start_ns,
                end_ns,
                state,
                outcome,
                ..
            } => {
                let base = step_now.get(step).copied().unwrap_or(0);
                // Tasks held inside a run show as holds of the next plan.
                if let (Settled::Ran, Some(outcome)) = (state, outcome) {
                    if let Some(id) = shadow.id(key) {
                        held.remove(&id);
                    }
                    ran.insert(
                        *task,
                        (
                            base + start_ns / 1_000_000,
                            base + end_ns / 1_000_000,
                            lane.map_or(0, usize::from),
                            key.clone(),
                            model.clone(),
                            *kind,
                            *version,
                            outcome.clone(),
                        ),
                    );
                }
            }
            trace::Event::DidComplete {
                task,
                at,
                object,
                outcome,
                completion,
                ..
            } => {
                let got = shadow.complete(object, outcome.clone(), *at).ok();
                let recorded = match completion {
                    Recorded::Ok(c) => Some(c.clone()),
                    Recorded::Error(_) => None,
                };
                if got != recorded {
                    return Err("the shadow engine diverged from the runner".into());
                }
                if let Some((start, end, lane, key, model, kind, version, outcome)) =
                    ran.remove(task)
                {
                    step_events.push(Event::Started {
                        at: start,
                        worker: lane,
                        key: key.clone(),
                        model: model.clone(),
                        kind,
                        version,
                        running: 0,
                    });
                    step_events.push(Event::Finished {
                        start,
                        at: end.max(start),
                        worker: lane,
                        key,
                        model,
                        kind,
                        version,
                        outcome,
                        completion: got.clone(),
                    });
                }
                // Watchers were told at the completion.
                for line in setup.drain_watch_lines() {
                    step_events.push(Event::Watch { at: at.0, line });
                }
                if matches!(got, Some(Completion::Deleted { .. })) {
                    // The id may be reused by a new object.
                    held.remove(&object.object);
                }
            }
            trace::Event::DidStep { now, .. } => {
                // The step's actuations in time order, with how many ran at once.
                step_events.sort_by_key(|e| {
                    let rank = match e {
                        Event::Finished { .. } => 0,
                        Event::Watch { .. } => 1,
                        _ => 2,
                    };
                    (e.at(), rank)
                });
                let mut running = 0usize;
                for mut e in step_events.drain(..) {
                    match &mut e {
                        Event::Started { running: r, .. } => {
                            running += 1;
                            *r = running;
                        }
                        Event::Finished { .. } => running = running.saturating_sub(1),
                        _ => {}
                    }
                    emit(&mut out, e);
                }
                for line in setup.drain_watch_lines() {
                    emit(&mut out, Event::Watch { at: now.0, line });
                }
            }
            trace::Event::Header { .. } | trace::Event::DidInput { .. } => {}
        }
    }
    Ok(out)
}
