//! [`Sim`]: one deterministic simulation, from a seed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::check::{Checker, Violation};
use super::faults::{FaultSwitch, Faults, FaultyActuator};
use super::gen::{self, ChangeStream, SchemaShape};
use super::rng::SplitMix64;
use super::world::{Obj, World};
use crate::actuator::Actuator;
use crate::backoff::BackoffPolicy;
use crate::change::ChangeSet;
use crate::clock::{Clock, VirtualClock};
use crate::complete::Completion;
use crate::engine::{Config, Engine};
use crate::error::{ChangeError, SchemaError};
use crate::exec::{Actuators, ExecConfig, ExecError, Executor, RunReport, Span, TaskState};
use crate::id::Time;
use crate::plan::Plan;
use crate::schema::{ModelKind, Schema};
use crate::trace::{Event, Recorded, Recorder, StateHash};

/// Everything a seed decides about a simulation. [`SimConfig::from_seed`] picks it all;
/// change fields to pin one aspect. Printed (Debug) when a seed fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimConfig {
    /// The seed: schema, graph, changes, faults and timings all derive from it.
    pub seed: u64,
    /// Worker threads of the real executor the simulation drives. Results do not depend
    /// on it (R12).
    pub threads: usize,
    /// Actuations that may overlap in virtual time (the virtual workers).
    pub lanes: usize,
    /// Steps of the fault phase; then faults and changes stop (at virtual time T) and the
    /// system must converge.
    pub steps: u64,
    /// Most steps in all, healing included: exceeding it is a violation.
    pub steps_max: u64,
    /// Most live objects the change stream keeps.
    pub objects_max: usize,
    /// Objects created before the first step.
    pub initial_objects: usize,
    /// The faults of the fault phase.
    pub faults: Faults,
    /// Virtual time one step takes at least, in ms.
    pub step_ms: u64,
    /// Longest gap between two change sets, in ms.
    pub change_gap_ms_max: u64,
    /// The engine's backoff.
    pub backoff: BackoffPolicy,
    /// A concurrency limit applied to every actuated model, if any.
    pub model_limit: Option<u32>,
    /// Most models of the generated schema.
    pub models_max: usize,
}

impl SimConfig {
    /// The configuration `seed` picks: small graphs, a few hundred ms of backoff at most,
    /// faults of every kind at moderate rates.
    pub fn from_seed(seed: u64) -> SimConfig {
        let mut r = SplitMix64::new(seed ^ 0x005E_ED0F_5EED);
        // Mostly one thread: spawning workers every step is what a debug build feels most.
        let threads = match r.below(20) {
            0 => 2,
            1 => 4,
            _ => 1,
        };
        let lanes = r.range(1, 4) as usize;
        let base = r.range(1, 20);
        let duration_ms_max = r.range(0, 8);
        SimConfig {
            seed,
            threads,
            lanes,
            steps: 2000,
            steps_max: 20_000,
            objects_max: r.range(2, 9) as usize,
            initial_objects: r.range(0, 6) as usize,
            faults: Faults {
                fail_permille: r.range(0, 300) as u32,
                defer_permille: r.range(0, 100) as u32,
                panic_permille: r.range(0, 30) as u32,
                fail_first: r.range(0, 2) as u32,
                duration_ms_min: r.range(0, duration_ms_max),
                duration_ms_max,
            },
            step_ms: r.range(1, 5),
            change_gap_ms_max: r.range(0, 200),
            backoff: BackoffPolicy {
                base_ms: base,
                factor: r.range(1, 3) as u32,
                cap_ms: base * r.range(1, 30),
                jitter_permille: r.range(0, 200) as u32,
                seed: r.next_u64(),
                growth: !r.chance(100),
                defer_delay_ms: r.chance(300).then(|| r.range(1, 40)),
            },
            model_limit: r.chance(150).then(|| r.range(1, 2) as u32),
            models_max: r.range(1, 4) as usize,
        }
    }

    /// The longest backoff or deferral delay of [`SimConfig::backoff`], jitter included.
    pub fn backoff_max_ms(&self) -> u64 {
        let b = &self.backoff;
        let cap = b.cap_ms.max(b.base_ms.min(b.cap_ms));
        let jitter = (u128::from(cap) * u128::from(b.jitter_permille) / 1000) as u64;
        cap.saturating_add(jitter).max(b.defer_ms())
    }
}

/// A simulation could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The generated or given schema is invalid.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The executor's configuration.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The first graph was refused.
    #[error("initial graph: {0}")]
    Change(#[from] ChangeError),
}

/// A seed broke an invariant. Its `Display` starts with the seed and how to replay it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("simulation seed {seed} failed (replay with SYNCORE_SEED={seed}) at step {step}, t={now}ms: {violation}\nconfig: {config:?}")]
pub struct SimFailure {
    /// The seed.
    pub seed: u64,
    /// The step where it broke.
    pub step: u64,
    /// The virtual time.
    pub now: u64,
    /// What broke.
    pub violation: Violation,
    /// The whole configuration.
    pub config: Box<SimConfig>,
}

/// What a passing simulation did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Steps taken.
    pub steps: u64,
    /// Steps that ran tasks (the others only moved the clock).
    pub run_steps: u64,
    /// Actuations run.
    pub actuations: u64,
    /// Actuations that failed (panics included).
    pub failed: u64,
    /// Actuations deferred.
    pub deferred: u64,
    /// Actuator panics caught.
    pub panics: u64,
    /// Tasks held in a run behind a failed dependency.
    pub held: u64,
    /// Change sets applied.
    pub applied: u64,
    /// Change sets refused (and checked to change nothing).
    pub refused: u64,
    /// When faults and changes stopped (T).
    pub healed_at: u64,
    /// The convergence deadline.
    pub deadline: u64,
    /// When the system converged.
    pub converged_at: u64,
    /// Objects left at the end.
    pub objects: usize,
    /// The final state hash.
    pub state_hash: u64,
}

/// Steps between two comparisons of the incremental state view with a full read.
const VERIFY_EVERY: u64 = 16;

/// A source of change sets written by the user.
type CustomSource = Box<dyn FnMut(&mut SplitMix64) -> Option<ChangeSet> + Send>;

enum Source {
    Stream(Box<ChangeStream>),
    Custom(CustomSource),
}

/// A deterministic simulation: a generated (or given) schema and graph, a seeded stream of
/// change sets, fault-injecting actuators, the real executor, a virtual clock, and the
/// [`Checker`] after every step. See the [module docs](super).
pub struct Sim {
    config: SimConfig,
    engine: Engine,
    clock: Arc<VirtualClock>,
    switch: Arc<FaultSwitch>,
    faulty: Vec<Option<Arc<FaultyActuator>>>,
    executor: Executor,
    checker: Checker,
    source: Source,
    rng: SplitMix64,
    recorder: Option<Recorder>,
    step: u64,
    next_change: Time,
    healed_at: Option<Time>,
    deadline: Option<Time>,
    report: SimReport,
    /// The state as of the end of the last step, while nothing changed it since.
    world: Option<World>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("config", &self.config)
            .field("step", &self.step)
            .finish()
    }
}

impl Sim {
    /// A simulation of a schema and graph generated from `config.seed`.
    ///
    /// # Errors
    /// A [`SimError`] (a bug in the generators if it ever happens).
    pub fn new(config: SimConfig) -> Result<Sim, SimError> {
        let mut r = SplitMix64::new(config.seed);
        let shape = SchemaShape {
            models_max: config.models_max,
            passive_permille: 250,
            external_permille: 250,
            proxy_permille: 250,
            watch_permille: 300,
            model_deps_permille: 300,
            ..SchemaShape::default()
        };
        let schema = Schema::new(gen::schema_def(&mut r, &shape))?;
        let mut engine = Engine::new(
            schema,
            Config {
                backoff: config.backoff.clone(),
                ..Config::default()
            },
        );
        gen::register_watchers(&mut engine);
        let mut sim = Sim::with_engine(config, engine, &Actuators::new())?;
        if let Source::Stream(stream) = &mut sim.source {
            let first = stream.populate(sim.config.initial_objects);
            sim.engine.apply(first)?;
        }
        Ok(sim)
    }

    /// A simulation of your own engine (schema, policies, objects) and actuators: each
    /// actuator is wrapped in a [`FaultyActuator`]; actuated models without one get a
    /// no-op. The engine's backoff is used as is ([`SimConfig::backoff`] is ignored).
    /// Changes come from a [`ChangeStream`] over the schema unless you call
    /// [`Sim::changes`].
    ///
    /// # Errors
    /// [`SimError::Exec`] for a bad actuator registry (an actuator of an unknown model).
    pub fn with_engine(
        mut config: SimConfig,
        engine: Engine,
        actuators: &Actuators,
    ) -> Result<Sim, SimError> {
        config.backoff = engine.config().backoff.clone();
        let clock = Arc::new(VirtualClock::new(Time(0)));
        let switch = FaultSwitch::new(None);
        let checker = Checker::new(config.backoff.clone());
        let schema = engine.schema();
        let mut wrapped = Actuators::new();
        let mut faulty = Vec::new();
        for m in schema.models() {
            if m.kind != ModelKind::Actuated {
                faulty.push(None);
                continue;
            }
            let inner: Option<Arc<dyn Actuator>> = actuators.get(&m.name).cloned();
            let f = Arc::new(
                FaultyActuator::new(
                    m.name.clone(),
                    inner,
                    config.faults.clone(),
                    config.seed,
                    clock.clone(),
                    switch.clone(),
                )
                .watched(checker.watch()),
            );
            wrapped.insert(m.name.clone(), f.clone());
            faulty.push(Some(f));
        }
        actuators.check(schema).or_else(|e| match e {
            ExecError::MissingActuators { .. } => Ok(()),
            e => Err(e),
        })?;
        let mut exec = ExecConfig::new().threads(config.threads.max(1));
        if let Some(limit) = config.model_limit {
            for m in wrapped.models() {
                exec = exec.model_limit(m, limit);
            }
        }
        let executor = Executor::new(schema, &wrapped, exec)?;
        let mut rng = SplitMix64::new(config.seed ^ 0xC4A9_6E5E);
        let stream = ChangeStream::new(schema, rng.next_u64(), config.objects_max);
        Ok(Sim {
            next_change: Time(0),
            engine,
            clock,
            switch,
            faulty,
            executor,
            checker,
            source: Source::Stream(Box::new(stream)),
            rng,
            recorder: None,
            step: 0,
            healed_at: None,
            deadline: None,
            report: SimReport {
                seed: config.seed,
                ..SimReport::default()
            },
            world: None,
            config,
        })
    }

    /// Takes change sets from `source` instead of the generated stream: called whenever
    /// one is due during the fault phase, with the simulation's generator; `None` means
    /// nothing this time.
    pub fn changes(
        mut self,
        source: impl FnMut(&mut SplitMix64) -> Option<ChangeSet> + Send + 'static,
    ) -> Self {
        self.source = Source::Custom(Box::new(source));
        self
    }

    /// Records the simulation as a trace ([`crate::trace`]), header first.
    ///
    /// # Errors
    /// The recorder's write error.
    pub fn record(&mut self, mut recorder: Recorder) -> std::io::Result<()> {
        recorder.record(&Event::header(&self.engine, "virtual"))?;
        self.recorder = Some(recorder);
        Ok(())
    }

    /// Stops recording and returns the recorder.
    pub fn take_recorder(&mut self) -> Option<Recorder> {
        let mut r = self.recorder.take()?;
        let _ = r.flush();
        Some(r)
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The virtual clock.
    pub fn clock(&self) -> &Arc<VirtualClock> {
        &self.clock
    }

    /// Runs to the end: the fault phase, then healing until converged.
    ///
    /// # Errors
    /// The first [`SimFailure`].
    pub fn run(&mut self) -> Result<SimReport, SimFailure> {
        while !self.step()? {}
        Ok(self.report.clone())
    }

    fn fail(&self, violation: Violation) -> SimFailure {
        SimFailure {
            seed: self.config.seed,
            step: self.step,
            now: self.clock.now().0,
            violation,
            config: Box::new(self.config.clone()),
        }
    }

    fn emit(&mut self, event: Event) -> Result<(), SimFailure> {
        if let Some(r) = &mut self.recorder {
            r.record(&event)
                .map_err(|e| self.fail(Violation::new("trace", e.to_string())))?;
        }
        Ok(())
    }

    fn next_changes(&mut self) -> Option<ChangeSet> {
        match &mut self.source {
            Source::Stream(s) => Some(s.next_set()),
            Source::Custom(f) => f(&mut self.rng),
        }
    }

    /// One step; `Ok(true)` once the simulation is over (converged after healing).
    ///
    /// # Errors
    /// A [`SimFailure`] naming the broken invariant.
    pub fn step(&mut self) -> Result<bool, SimFailure> {
        self.step += 1;
        self.report.steps = self.step;
        let now = self.clock.now();
        if self.step > self.config.steps_max {
            return Err(self.fail(Violation::new(
                "convergence",
                format!("still running after {} steps", self.config.steps_max),
            )));
        }
        if self.healed_at.is_none() && self.step > self.config.steps {
            self.heal(now)?;
        }
        let step = self.step;

        // Input, during the fault phase.
        if self.healed_at.is_none() && now >= self.next_change {
            if let Some(set) = self.next_changes() {
                self.apply(set, now)?;
            }
            self.report_externals(now, false)?;
            self.next_change = now.after(1 + self.rng.below(self.config.change_gap_ms_max + 1));
        }

        let plan = self.engine.plan(now);
        let mut before = match self.world.take() {
            Some(w) => w,
            None => World::capture(&self.engine),
        };
        if self.step.is_multiple_of(VERIFY_EVERY) {
            // The incremental view must match a full read: nothing changed behind a step.
            let full = World::capture(&self.engine);
            if full != before {
                return Err(self.fail(Violation::new(
                    "R8",
                    format!(
                        "objects changed outside any completion or change set: {}",
                        full.diff(&before).join(", ")
                    ),
                )));
            }
        }
        self.checker
            .check_plan_in(&self.engine, &before, &plan)
            .map_err(|v| self.fail(v))?;
        if self.recorder.is_some() {
            self.emit(Event::DidPlan {
                step,
                now,
                plan: plan.clone(),
            })?;
        }

        if plan.tasks.is_empty() {
            let wake = plan.next_wake;
            if let (Some(deadline), true) = (self.deadline, wake.is_none()) {
                // Healed and quiescent: converged, or waiting for the embedder (liveness).
                self.checker
                    .check_live(&self.engine, &plan)
                    .map_err(|v| self.fail(v))?;
                if now > deadline {
                    return Err(self.fail(Violation::new(
                        "convergence",
                        format!("converged at {now}, after the deadline {deadline}"),
                    )));
                }
                self.report.converged_at = now.0;
                self.report.objects = self.engine.len();
                self.report.state_hash = self.engine.state_hash();
                self.emit_step(now, &RunReport::default())?;
                return Ok(true);
            }
            let mut next = wake.unwrap_or(Time(u64::MAX));
            if self.healed_at.is_none() {
                next = next.min(self.next_change);
            }
            let next = if next == Time(u64::MAX) {
                now.after(self.config.step_ms)
            } else {
                next
            };
            self.clock.set(next.max(now.after(1)));
            self.world = Some(before);
            self.emit_step(now, &RunReport::default())?;
            return self.check_deadline();
        }

        // Run the plan on the real executor, then lay it out in virtual time.
        self.report.run_steps += 1;
        self.checker.begin_run(&self.engine, &before, &plan);
        let report = self.executor.run(&self.engine, &plan);
        self.checker.end_run().map_err(|v| self.fail(v))?;
        let spans = self.schedule(&plan, &report, now);
        let c = report.counts();
        self.report.actuations += (c.ok + c.failed + c.deferred) as u64;
        self.report.failed += c.failed as u64;
        self.report.deferred += c.deferred as u64;
        self.report.held += c.held as u64;
        self.report.panics += report.panics as u64;
        if self.recorder.is_some() {
            let timed = RunReport {
                spans: spans
                    .iter()
                    .map(|&(s, e)| Span {
                        start_ns: (s.0 - now.0) * 1_000_000,
                        end_ns: (e.0 - now.0) * 1_000_000,
                    })
                    .collect(),
                ..report.clone()
            };
            for e in Event::actuations(step, &self.engine, &plan, &timed) {
                self.emit(e)?;
            }
        }

        // Feed back in plan order, each at its virtual end time.
        let mut synced = BTreeSet::new();
        let mut removed = BTreeSet::new();
        let mut touched: BTreeSet<String> = BTreeSet::new();
        let mut end = now.after(self.config.step_ms);
        for (i, (task, state)) in plan.tasks.iter().zip(&report.states).enumerate() {
            let TaskState::Ran { outcome, .. } = state else {
                continue;
            };
            let at = spans[i].1;
            end = end.max(at);
            let key = self.engine.key(task.object).to_string();
            touched.insert(key.clone());
            let completion = self
                .engine
                .complete(task, outcome.clone(), at)
                .map_err(|e| self.fail(Violation::new("R8", format!("completing {key}: {e}"))))?;
            self.checker
                .check_completion(&before, &key, task, outcome, at, &completion)
                .map_err(|v| self.fail(v))?;
            match &completion {
                Completion::Synced => {
                    synced.insert(key.clone());
                }
                Completion::Deleted { removed: also } => {
                    removed.insert(key.clone());
                    removed.extend(also.iter().cloned());
                }
                _ => {}
            }
            if self.recorder.is_some() {
                self.emit(Event::DidComplete {
                    step,
                    task: i,
                    at,
                    object: *task,
                    outcome: outcome.clone(),
                    completion: Recorded::Ok(completion),
                })?;
            }
        }
        touched.extend(removed.iter().cloned());
        let old: BTreeMap<String, Obj> = touched
            .iter()
            .filter_map(|k| before.get(k).map(|o| (k.clone(), o.clone())))
            .collect();
        before.refresh(&self.engine, &touched);
        let after = before;
        self.checker
            .check_step(&old, &after, &synced, &removed)
            .map_err(|v| self.fail(v))?;
        self.clock.set(end);
        self.world = Some(after);
        self.emit_step(now, &report)?;
        self.check_deadline()
    }

    fn emit_step(&mut self, now: Time, report: &RunReport) -> Result<(), SimFailure> {
        if self.recorder.is_some() {
            let event = Event::DidStep {
                step: self.step,
                now,
                counts: report.counts(),
                state_hash: StateHash(self.engine.state_hash()),
            };
            self.emit(event)?;
        }
        Ok(())
    }

    fn check_deadline(&self) -> Result<bool, SimFailure> {
        if let Some(deadline) = self.deadline {
            if self.clock.now() > deadline.after(self.config.step_ms) {
                let plan = self.engine.plan(self.clock.now());
                return Err(self.fail(Violation::new(
                    "convergence",
                    format!(
                        "not converged by {deadline} (healed at {}): {} tasks, {} holds, next wake {:?}",
                        self.healed_at.unwrap_or_default(),
                        plan.tasks.len(),
                        plan.holds.len(),
                        plan.next_wake
                    ),
                )));
            }
        }
        Ok(false)
    }

    /// Stops faults and changes at `now` (T) and sets the convergence deadline:
    /// `T + backoff_max + (depth + ceil(objects / lanes)) * (actuation_max + step) + step`,
    /// Graham's list-scheduling bound on top of the issue's `depth x (actuation + step)`.
    fn heal(&mut self, now: Time) -> Result<(), SimFailure> {
        self.switch.stop_at(now);
        // Most seeds: the owner of external objects catches up (R17); the others keep
        // objects waiting for it, which the liveness check must accept.
        if self.rng.chance(700) {
            self.report_externals(now, true)?;
        }
        self.healed_at = Some(now);
        let world = World::capture(&self.engine);
        let depth = world.depth(self.engine.schema());
        let lanes = self.config.lanes.max(1) as u64;
        let width = (world.objs.len() as u64).div_ceil(lanes);
        let per_level = self.config.faults.duration_ms_max + self.config.step_ms;
        let deadline = now
            .after(self.config.backoff_max_ms())
            .after((depth + width).saturating_mul(per_level))
            .after(self.config.step_ms);
        self.deadline = Some(deadline);
        self.report.healed_at = now.0;
        self.report.deadline = deadline.0;
        Ok(())
    }

    /// Reports about external objects from the generated stream's owner (R17).
    fn report_externals(&mut self, now: Time, all: bool) -> Result<(), SimFailure> {
        let Source::Stream(stream) = &mut self.source else {
            return Ok(());
        };
        for (key, report) in stream.reports(&self.engine, all) {
            let result = match self.engine.report_external(&key, report.clone()) {
                Ok(c) => Recorded::Ok(c),
                Err(e) => {
                    return Err(self.fail(Violation::new("R17", format!("report about {key}: {e}"))))
                }
            };
            if let Some(w) = &mut self.world {
                w.refresh(&self.engine, [&key]);
            }
            if self.recorder.is_none() {
                continue;
            }
            let state_hash = StateHash(self.engine.state_hash());
            self.emit(Event::DidReportExternal {
                step: self.step,
                now,
                key,
                report,
                result,
                state_hash,
            })?;
        }
        Ok(())
    }

    fn apply(&mut self, set: ChangeSet, now: Time) -> Result<(), SimFailure> {
        // Hashing costs a snapshot: only when a refusal is expected, or cannot be predicted.
        let predicted = match &self.source {
            Source::Stream(s) => Some(s.last_was_invalid()),
            Source::Custom(_) => None,
        };
        let hash = (predicted != Some(false)).then(|| self.engine.state_hash());
        let recorded = self.recorder.is_some().then(|| set.clone());
        let result = match self.engine.apply(set) {
            Ok(r) => {
                self.report.applied += 1;
                if predicted == Some(true) {
                    return Err(self.fail(Violation::new(
                        "atomicity",
                        "a change set linking to a missing key was applied",
                    )));
                }
                if let Some(w) = &mut self.world {
                    let keys: BTreeSet<String> = r
                        .changed
                        .iter()
                        .chain(&r.deleted)
                        .chain(&r.removed)
                        .cloned()
                        .collect();
                    w.refresh(&self.engine, &keys);
                }
                Recorded::Ok(r)
            }
            Err(e) => {
                self.report.refused += 1;
                let Some(hash) = hash else {
                    return Err(self.fail(Violation::new(
                        "atomicity",
                        format!("a valid change set was refused: {e}"),
                    )));
                };
                if self.engine.state_hash() != hash {
                    return Err(self.fail(Violation::new(
                        "atomicity",
                        format!("a refused change set ({e}) changed the state"),
                    )));
                }
                Recorded::Error(e.to_string())
            }
        };
        if let Some(changes) = recorded {
            let state_hash = StateHash(self.engine.state_hash());
            self.emit(Event::DidApply {
                step: self.step,
                now,
                changes,
                result,
                state_hash,
            })?;
        }
        Ok(())
    }

    /// Virtual start and end of each task: list scheduling on [`SimConfig::lanes`] in plan
    /// order, each task starting once its dependencies ended, taking its actuator's
    /// virtual duration. Tasks not run get `(now, now)`. Independent of the real
    /// executor's thread count, so a seed gives the same run on any number of threads.
    fn schedule(&self, plan: &Plan, report: &RunReport, now: Time) -> Vec<(Time, Time)> {
        let mut lanes = vec![now; self.config.lanes.max(1)];
        let mut spans = vec![(now, now); plan.tasks.len()];
        for (i, task) in plan.tasks.iter().enumerate() {
            if !matches!(report.states[i], TaskState::Ran { .. }) {
                continue;
            }
            let ready = plan
                .deps(i)
                .iter()
                .map(|&d| spans[d as usize].1)
                .max()
                .unwrap_or(now);
            let lane = (0..lanes.len()).min_by_key(|&l| lanes[l]).unwrap_or(0);
            let start = ready.max(lanes[lane]);
            let duration = self
                .faulty
                .get(task.model.index())
                .and_then(Option::as_ref)
                .map_or(0, |f| f.last_duration_ms(self.engine.key(task.object)));
            let end = start.after(duration);
            lanes[lane] = end;
            spans[i] = (start, end);
        }
        spans
    }
}
