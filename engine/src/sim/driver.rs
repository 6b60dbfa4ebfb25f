//! [`Sim`]: one deterministic simulation, from a seed: the scheduler
//! ([`crate::sched::Scheduler`]) driven in virtual time by [`crate::sched::Lanes`].

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::check::{Checker, Violation};
use super::faults::{FaultSwitch, Faults, FaultyActuator};
use super::gen::{self, ChangeStream, SchemaShape};
use super::rng::SplitMix64;
use super::world::{Obj, World};
use crate::actuator::{Actuator, Outcome, TaskKind};
use crate::backoff::BackoffPolicy;
use crate::change::ChangeSet;
use crate::clock::VirtualClock;
use crate::complete::{Completion, ExternalReport};
use crate::engine::{Config, Engine};
use crate::error::{ChangeError, SchemaError};
use crate::exec::{Actuators, ExecError};
use crate::id::{ObjectId, Time};
use crate::sched::{
    Delivery, Dispatch, Effect, Input, LaneStop, Lanes, ModelSched, SchedConfig, SchedConfigError,
    Scheduler,
};
use crate::schema::{ModelKind, Schema};
use crate::trace::{Event, Recorder, StateHash};

/// Everything a seed decides about a simulation. [`SimConfig::from_seed`] picks it all;
/// change fields to pin one aspect. Printed (Debug) when a seed fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimConfig {
    /// The seed: schema, graph, changes, faults and timings all derive from it.
    pub seed: u64,
    /// Actuations that may overlap in virtual time: the lanes of [`Lanes`], the
    /// scheduler's global concurrency. (There is no thread count: the run is in virtual
    /// time on one thread, reproducible from the seed alone.)
    pub lanes: usize,
    /// Arrivals of the change stream in the fault phase, `1..=change_gap_ms_max + 1` ms
    /// apart, each bringing the next change set and some external reports; after the
    /// last, faults and changes stop (at virtual time T) and the system must converge.
    pub steps: u64,
    /// Most actuations dispatched in all, healing included: exceeding it is a violation.
    pub dispatches_max: u64,
    /// Most live objects the change stream keeps.
    pub objects_max: usize,
    /// Objects created before the first step.
    pub initial_objects: usize,
    /// The faults of the fault phase.
    pub faults: Faults,
    /// Scheduling slack per level of the convergence bound, in ms (its `step`).
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
        let lanes = r.range(1, 4) as usize;
        let base = r.range(1, 20);
        let duration_ms_max = r.range(0, 8);
        SimConfig {
            seed,
            lanes,
            steps: 2000,
            dispatches_max: 200_000,
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
    /// The actuator registry names a model the schema lacks.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The scheduler's configuration (lanes, model limits).
    #[error(transparent)]
    Sched(#[from] SchedConfigError),
    /// The first graph was refused.
    #[error("initial graph: {0}")]
    Change(#[from] ChangeError),
}

/// A seed broke an invariant. Its `Display` starts with the seed and how to replay it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("simulation seed {seed} failed (replay with SYNCORE_SEED={seed}) at input {step}, t={now}ms: {violation}\nconfig: {config:?}")]
pub struct SimFailure {
    /// The seed.
    pub seed: u64,
    /// The scheduler input where it broke (1-based; 0: after the run).
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
    /// Inputs the scheduler took (change sets, reports, deliveries, ticks).
    pub steps: u64,
    /// Inputs after which at least one task was dispatched.
    pub run_steps: u64,
    /// Actuations run (dispatched and delivered).
    pub actuations: u64,
    /// Actuations that failed (panics included).
    pub failed: u64,
    /// Actuations deferred.
    pub deferred: u64,
    /// Actuator panics caught.
    pub panics: u64,
    /// Completions that were stale: the object changed (new version, delete) while its
    /// actuation ran (R8, S1).
    pub stale: u64,
    /// Change sets applied while actuations were in flight.
    pub applied_in_flight: u64,
    /// Deletes requested of objects with a sync in flight.
    pub deleted_in_flight: u64,
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

/// A source of change sets written by the user.
type CustomSource = Box<dyn FnMut(&mut SplitMix64) -> Option<ChangeSet> + Send>;

enum Source {
    Stream(Box<ChangeStream>),
    Custom(CustomSource),
}

/// A deterministic simulation: a generated (or given) schema and graph, a seeded stream of
/// change sets, fault-injecting actuators, the [`Scheduler`] driven in virtual time by
/// [`Lanes`], and the invariant [`Checker`] watching every input. See the
/// [module docs](super).
pub struct Sim {
    config: SimConfig,
    sched: Scheduler,
    clock: Arc<VirtualClock>,
    switch: Arc<FaultSwitch>,
    faulty: Vec<Option<Arc<FaultyActuator>>>,
    checker: Checker,
    source: Source,
    rng: SplitMix64,
    recorder: Option<Recorder>,
    done: Option<Result<SimReport, SimFailure>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("config", &self.config)
            .field("sched", &self.sched)
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
            sim.sched.engine_mut().apply(first)?;
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
        let mut faulty = Vec::new();
        let mut sched = SchedConfig::default()
            .concurrency(u32::try_from(config.lanes.max(1)).unwrap_or(u32::MAX));
        sched.seed = config.seed;
        for m in schema.models() {
            if m.kind != ModelKind::Actuated {
                faulty.push(None);
                continue;
            }
            let inner: Option<Arc<dyn Actuator>> = actuators.get(&m.name).cloned();
            faulty.push(Some(Arc::new(FaultyActuator::new(
                m.name.clone(),
                inner,
                config.faults.clone(),
                config.seed,
                clock.clone(),
                switch.clone(),
            ))));
            if let Some(limit) = config.model_limit {
                let ms = ModelSched {
                    limit: Some(limit),
                    ..ModelSched::default()
                };
                sched = sched.model(m.name.clone(), ms);
            }
        }
        actuators.check(schema).or_else(|e| match e {
            ExecError::MissingActuators { .. } => Ok(()),
            e => Err(e),
        })?;
        let mut rng = SplitMix64::new(config.seed ^ 0xC4A9_6E5E);
        let stream = ChangeStream::new(schema, rng.next_u64(), config.objects_max);
        let sched = Scheduler::new(engine, sched)?;
        Ok(Sim {
            sched,
            clock,
            switch,
            faulty,
            checker,
            source: Source::Stream(Box::new(stream)),
            rng,
            recorder: None,
            done: None,
            config,
        })
    }

    /// Takes change sets from `source` instead of the generated stream: called at each
    /// arrival of the fault phase, with the simulation's generator; `None` means nothing
    /// this time.
    pub fn changes(
        mut self,
        source: impl FnMut(&mut SplitMix64) -> Option<ChangeSet> + Send + 'static,
    ) -> Self {
        self.source = Source::Custom(Box::new(source));
        self
    }

    /// Records the simulation as a scheduler trace ([`crate::trace`]): a header with the
    /// scheduler's starting snapshot ([`Event::sched_header`]), then every input with the
    /// state hash after it ([`Event::DidInput`]). Call it before [`Sim::run`].
    ///
    /// # Errors
    /// The recorder's write error.
    pub fn record(&mut self, mut recorder: Recorder) -> std::io::Result<()> {
        recorder.record(&Event::sched_header(&self.sched, "virtual"))?;
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
        self.sched.engine()
    }

    /// The scheduler (its leases, stats and metrics after the run).
    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The virtual clock: set to each dispatch's time before its actuator is called.
    pub fn clock(&self) -> &Arc<VirtualClock> {
        &self.clock
    }

    /// Runs to the end: the fault phase, then healing until the scheduler is idle. The
    /// simulation runs once; later calls return the same result.
    ///
    /// # Errors
    /// The first [`SimFailure`].
    pub fn run(&mut self) -> Result<SimReport, SimFailure> {
        if let Some(done) = &self.done {
            return done.clone();
        }
        let result = self.run_once();
        self.done = Some(result.clone());
        result
    }

    fn run_once(&mut self) -> Result<SimReport, SimFailure> {
        let Sim {
            config,
            sched,
            clock,
            switch,
            faulty,
            checker,
            source,
            rng,
            recorder,
            ..
        } = self;
        let config = &*config;
        // The timeline, fixed up front: arrivals of the change stream, then T.
        let mut arrivals = Vec::new();
        let mut t = 0u64;
        for _ in 0..config.steps {
            arrivals.push(Time(t));
            t = t.saturating_add(1 + rng.below(config.change_gap_ms_max + 1));
        }
        let healed_at = Time(t);
        switch.stop_at(healed_at);
        // Most seeds: the owner of external objects catches up at T (R17); the others
        // keep objects waiting for it, which the liveness check must accept.
        let owner_catches_up = rng.chance(700);
        let slack = config
            .backoff_max_ms()
            .saturating_add(2 * config.faults.duration_ms_max)
            .saturating_add(config.step_ms)
            .max(1);
        // A safety net only: the deadline (set at T) is what convergence is judged by.
        let horizon = healed_at.after(slack.saturating_mul(10_000));
        // The owner reports at most this many objects per arrival (all of them at T).
        let per_arrival = config.objects_max + config.initial_objects + 1;
        let at_heal = 4 * per_arrival + 16;

        let state = RefCell::new(RunState {
            config,
            checker,
            source,
            rng,
            recorder: recorder.as_mut(),
            world: World::capture(sched.engine()),
            report: SimReport {
                seed: config.seed,
                healed_at: healed_at.0,
                ..SimReport::default()
            },
            failure: None,
            inputs: 0,
            reports: VecDeque::new(),
            reports_at: None,
            pending_apply: None,
            open: BTreeMap::new(),
            dispatched: BTreeMap::new(),
            deadline: None,
        });
        let st = &state;
        let mut lanes = Lanes::new(sched)
            .until(horizon)
            .max_dispatches(usize::try_from(config.dispatches_max).unwrap_or(usize::MAX));
        for &t in &arrivals {
            lanes = lanes.at_fn(t, move |s| st.borrow_mut().next_changes(s, t));
            for _ in 0..per_arrival {
                lanes = lanes.at_fn(t, move |s| st.borrow_mut().next_report(s, t, false));
            }
        }
        lanes = lanes.at_fn(healed_at, move |s| {
            st.borrow_mut().heal(s, healed_at);
            None
        });
        if owner_catches_up {
            for _ in 0..at_heal {
                lanes = lanes.at_fn(healed_at, move |s| {
                    st.borrow_mut().next_report(s, healed_at, true)
                });
            }
        }
        let run = lanes.run(
            |s, d, _lane| {
                clock.set(d.now);
                let Some(f) = faulty.get(d.task.model.index()).and_then(Option::as_ref) else {
                    return (0, Outcome::failed("the model has no actuator"));
                };
                let view = s.engine().view(d.task.object);
                let call = std::panic::AssertUnwindSafe(|| match d.task.kind {
                    TaskKind::Sync => f.sync(&view),
                    TaskKind::Delete => f.delete(&view),
                });
                let outcome = std::panic::catch_unwind(call).unwrap_or_else(|p| {
                    st.borrow_mut().report.panics += 1;
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    Outcome::failed(format!("actuator panicked: {msg}"))
                });
                (f.last_duration_ms(view.key()), outcome)
            },
            |s, input, effect, out| st.borrow_mut().observe(s, input, effect, out),
        );
        let mut st = state.into_inner();
        let fail = |step: u64, now: Time, violation: Violation| SimFailure {
            seed: config.seed,
            step,
            now: now.0,
            violation,
            config: Box::new(config.clone()),
        };
        if let Some((step, now, v)) = st.failure.take() {
            return Err(fail(step, now, v));
        }
        let end = run.end;
        let engine = sched.engine();
        let deadline = st.deadline.unwrap_or(horizon);
        let plan = engine.plan(end);
        let stuck = |why: String| {
            Violation::new(
                "convergence",
                format!(
                    "{why} (healed at {healed_at}, deadline {deadline}): {} in flight, {} tasks, {} holds, next wake {:?}",
                    sched.in_flight(),
                    plan.tasks.len(),
                    plan.holds.len(),
                    plan.next_wake
                ),
            )
        };
        match run.stop {
            LaneStop::Idle => {}
            LaneStop::MaxDispatches => {
                let why = format!("still running after {} dispatches", config.dispatches_max);
                return Err(fail(st.inputs, end, stuck(why)));
            }
            LaneStop::Horizon => {
                let why = format!("not converged by {deadline}, still busy at {horizon}");
                return Err(fail(st.inputs, end, stuck(why)));
            }
        }
        // Quiet: converged, or waiting for the embedder (liveness), by the deadline.
        checker
            .check_live(engine, &plan)
            .map_err(|v| fail(st.inputs, end, v))?;
        if end > deadline {
            let why = format!("converged at {end}, after the deadline {deadline}");
            return Err(fail(st.inputs, end, stuck(why)));
        }
        let report = &mut st.report;
        report.deadline = deadline.0;
        report.converged_at = end.0;
        report.objects = engine.len();
        report.state_hash = engine.state_hash();
        Ok(st.report)
    }
}

/// What a run works with and keeps, shared by the driver's callbacks.
struct RunState<'s> {
    config: &'s SimConfig,
    checker: &'s Checker,
    source: &'s mut Source,
    rng: &'s mut SplitMix64,
    recorder: Option<&'s mut Recorder>,
    /// The state as of the last input, refreshed for what each input touched.
    world: World,
    report: SimReport,
    /// The first violation: (input, time, what).
    failure: Option<(u64, Time, Violation)>,
    inputs: u64,
    /// External reports made at `reports_at`, not yet handed to the scheduler.
    reports: VecDeque<(String, ExternalReport)>,
    reports_at: Option<Time>,
    /// For the change set about to be applied: whether it was built to be refused (if
    /// known) and the state hash before it (when a refusal is possible).
    pending_apply: Option<(Option<bool>, Option<u64>)>,
    /// Object -> the lease of its dispatch not yet delivered (the checker's bookkeeping).
    open: BTreeMap<ObjectId, u64>,
    /// Lease -> its dispatch and the object's key.
    dispatched: BTreeMap<u64, (Dispatch, String)>,
    deadline: Option<Time>,
}

impl RunState<'_> {
    /// The change set of an arrival at `t`.
    fn next_changes(&mut self, s: &Scheduler, t: Time) -> Option<Input> {
        if self.failure.is_some() {
            return None;
        }
        let (set, predicted) = match &mut *self.source {
            Source::Stream(stream) => {
                let set = stream.next_set();
                (set, Some(stream.last_was_invalid()))
            }
            Source::Custom(f) => (f(self.rng)?, None),
        };
        // Hashing costs a snapshot: only when a refusal is expected, or cannot be predicted.
        let hash = (predicted != Some(false)).then(|| s.engine().state_hash());
        self.pending_apply = Some((predicted, hash));
        Some(Input::Apply {
            changes: set,
            now: t,
        })
    }

    /// The next report of the external objects' owner at `t` (R17), made from the state
    /// after the arrival's change set.
    fn next_report(&mut self, s: &Scheduler, t: Time, all: bool) -> Option<Input> {
        if self.failure.is_some() {
            return None;
        }
        if self.reports_at != Some(t) {
            self.reports_at = Some(t);
            self.reports.clear();
            if let Source::Stream(stream) = &mut *self.source {
                self.reports = stream.reports(s.engine(), all).into();
            }
        }
        let (key, report) = self.reports.pop_front()?;
        Some(Input::Report {
            key,
            report,
            now: t,
        })
    }

    /// Faults and changes stop at `now` (T): sets the convergence deadline,
    /// `T + actuation_max + backoff_max + (depth + ceil(objects / lanes)) x (actuation_max
    /// + step) + step`: what is in flight at T ends, the longest backoff passes, then
    /// Graham's list-scheduling bound on top of the issue's `depth x (actuation + step)`.
    fn heal(&mut self, s: &Scheduler, now: Time) {
        let engine = s.engine();
        let world = World::capture(engine);
        let depth = world.depth(engine.schema());
        let lanes = self.config.lanes.max(1) as u64;
        let width = (world.objs.len() as u64).div_ceil(lanes);
        let actuation = self.config.faults.duration_ms_max;
        let per_level = actuation + self.config.step_ms;
        let deadline = now
            .after(actuation)
            .after(self.config.backoff_max_ms())
            .after((depth + width).saturating_mul(per_level))
            .after(self.config.step_ms);
        self.deadline = Some(deadline);
    }

    fn observe(&mut self, s: &Scheduler, input: &Input, effect: &Effect, out: &[Dispatch]) {
        self.inputs += 1;
        self.report.steps = self.inputs;
        let now = input.now();
        if let Some(r) = &mut self.recorder {
            let event = Event::DidInput {
                step: self.inputs,
                input: input.clone(),
                state_hash: StateHash(s.state_hash()),
            };
            if let Err(e) = r.record(&event) {
                if self.failure.is_none() {
                    self.failure = Some((self.inputs, now, Violation::new("trace", e.to_string())));
                }
            }
        }
        if self.failure.is_some() {
            return;
        }
        if let Err(v) = self.check(s, input, effect, out) {
            self.failure = Some((self.inputs, now, v));
        }
    }

    /// Every check of one input: its effect, the plan after it, the dispatches it made.
    fn check(
        &mut self,
        s: &Scheduler,
        input: &Input,
        effect: &Effect,
        out: &[Dispatch],
    ) -> Result<(), Violation> {
        let engine = s.engine();
        let now = input.now();
        match (input, effect) {
            (Input::Apply { .. }, Effect::Applied(r)) => {
                self.report.applied += 1;
                let (predicted, _) = self.pending_apply.take().unwrap_or((None, None));
                if predicted == Some(true) {
                    return Err(Violation::new(
                        "atomicity",
                        "a change set linking to a missing key was applied",
                    ));
                }
                // Leases from before this input (it dispatched `out`).
                if s.in_flight() > out.len() {
                    self.report.applied_in_flight += 1;
                }
                for k in &r.deleted {
                    let sync_in_flight = engine
                        .id(k)
                        .and_then(|id| s.lease(id))
                        .is_some_and(|l| l.task.kind == TaskKind::Sync);
                    if sync_in_flight {
                        self.report.deleted_in_flight += 1;
                    }
                }
                let keys: BTreeSet<String> = r
                    .changed
                    .iter()
                    .chain(&r.deleted)
                    .chain(&r.removed)
                    .cloned()
                    .collect();
                self.world.refresh(engine, &keys);
            }
            (Input::Apply { .. }, Effect::Refused(e)) => {
                self.report.refused += 1;
                let (_, hash) = self.pending_apply.take().unwrap_or((None, None));
                let Some(hash) = hash else {
                    return Err(Violation::new(
                        "atomicity",
                        format!("a valid change set was refused: {e}"),
                    ));
                };
                if engine.state_hash() != hash {
                    return Err(Violation::new(
                        "atomicity",
                        format!("a refused change set ({e}) changed the state"),
                    ));
                }
            }
            (Input::Report { key, .. }, Effect::Reported(r)) => {
                if let Err(e) = r {
                    return Err(Violation::new("R17", format!("report about {key}: {e}")));
                }
                self.world.refresh(engine, [key]);
            }
            (Input::Deliver { lease, outcome, .. }, Effect::Delivered(d)) => {
                self.delivered(s, lease.seq, outcome, d, now)?;
            }
            (Input::Tick { .. }, Effect::Ticked) => {}
            (i, e) => {
                return Err(Violation::new(
                    "determinism",
                    format!("input {i:?} had the effect {e:?}"),
                ))
            }
        }
        // Every other object is as before, but for watch re-syncs (R9 (d)): a settled
        // object of a watching model made unsettled (`enacted` 0) because a field it
        // watches changed.
        let full = World::capture(engine);
        if full != self.world {
            let schema = engine.schema();
            let unexplained: Vec<String> = full
                .diff(&self.world)
                .into_iter()
                .filter(|k| match (self.world.objs.get(k), full.objs.get(k)) {
                    (Some(w), Some(o)) => {
                        let watch_resync = o.enacted == 0
                            && w.enacted == o.version
                            && !schema.models()[o.model].watches.is_empty()
                            && (Obj {
                                enacted: 0,
                                ..w.clone()
                            }) == *o;
                        !watch_resync
                    }
                    _ => true,
                })
                .collect();
            if !unexplained.is_empty() {
                return Err(Violation::new(
                    "R8",
                    format!(
                        "objects changed outside any completion, report, change set or watch re-sync: {}",
                        unexplained.join(", ")
                    ),
                ));
            }
            self.world = full;
        }
        let plan = engine.plan(now);
        self.checker.check_plan_in(engine, &self.world, &plan)?;
        if !out.is_empty() {
            self.report.run_steps += 1;
        }
        for d in out {
            let key = engine.key(d.task.object).to_string();
            if s.lease(d.task.object).map(|l| l.id) != Some(d.lease) {
                return Err(Violation::new(
                    "S1",
                    format!("{key} was dispatched without its lease"),
                ));
            }
            if let Some(prev) = self.open.insert(d.task.object, d.lease.seq) {
                return Err(Violation::new(
                    "S1",
                    format!(
                        "two leases on {key}: dispatch {} while dispatch {prev} is in flight",
                        d.lease.seq
                    ),
                ));
            }
            self.checker
                .check_dispatch(engine, &self.world, &key, &d.task, now)?;
            self.dispatched.insert(d.lease.seq, (*d, key));
        }
        Ok(())
    }

    /// Checks a delivery against the state before it (R5, R6, R8) and after it.
    fn delivered(
        &mut self,
        s: &Scheduler,
        seq: u64,
        outcome: &Outcome,
        delivery: &Delivery,
        now: Time,
    ) -> Result<(), Violation> {
        let engine = s.engine();
        let Some((d, key)) = self.dispatched.remove(&seq) else {
            return Err(Violation::new(
                "S1",
                format!("delivery of dispatch {seq}, which was never dispatched"),
            ));
        };
        if self.open.get(&d.task.object) == Some(&seq) {
            self.open.remove(&d.task.object);
        }
        let Delivery::Applied { completion, .. } = delivery else {
            // No timeouts in the simulation: every lease ends by its delivery.
            return Err(Violation::new(
                "S1",
                format!("the delivery of {key} (dispatch {seq}) found no lease"),
            ));
        };
        self.report.actuations += 1;
        match outcome {
            Outcome::Failed { .. } => self.report.failed += 1,
            Outcome::Deferred { .. } => self.report.deferred += 1,
            _ => {}
        }
        if *completion == Completion::Stale {
            self.report.stale += 1;
        }
        self.checker
            .check_completion(&self.world, &key, &d.task, outcome, now, completion)?;
        let mut synced = BTreeSet::new();
        let mut removed = BTreeSet::new();
        match completion {
            Completion::Synced => {
                synced.insert(key.clone());
            }
            Completion::Deleted { removed: also } => {
                removed.insert(key.clone());
                removed.extend(also.iter().cloned());
            }
            _ => {}
        }
        let mut touched = removed.clone();
        touched.insert(key.clone());
        let old: BTreeMap<String, Obj> = touched
            .iter()
            .filter_map(|k| self.world.get(k).map(|o| (k.clone(), o.clone())))
            .collect();
        self.world.refresh(engine, &touched);
        if let (Some(o), Some(a)) = (old.get(&key), self.world.get(&key)) {
            if *completion == Completion::Stale && a.enacted != o.enacted {
                return Err(Violation::new(
                    "R8",
                    format!(
                        "a stale completion of {key} v{} marked v{} synced",
                        d.task.version, a.enacted
                    ),
                ));
            }
            // Synced, or synced and re-synced at once (a watched field changed while it
            // ran, R9 (d)).
            let resynced = a.enacted == 0 && !engine.schema().models()[a.model].watches.is_empty();
            if *completion == Completion::Synced && a.enacted != d.task.version && !resynced {
                return Err(Violation::new(
                    "R8",
                    format!(
                        "the sync of {key} v{} marked v{} synced",
                        d.task.version, a.enacted
                    ),
                ));
            }
        }
        self.checker
            .check_step(&old, &self.world, &synced, &removed)
    }
}
