//! The run loop: plan, execute, complete, repeated; asleep when nothing is due.
//!
//! A [`Runner`] owns an [`Engine`], an [`Executor`] and a [`Clock`]. Each
//! [`Runner::step`] takes the input that arrived (change sets and external reports sent
//! from any thread through [`Runner::sender`]), plans at `clock.now()`, runs the plan's
//! tasks and feeds the outcomes back in plan order at the time the run ended. [`Runner::run`]
//! repeats steps: at once while tasks ran, otherwise it sleeps until the plan's `next_wake`
//! or until new input arrives, whichever is first (never polling), and stops when asked to,
//! when cancelled, or, if [`RunnerConfig::stop_when_converged`], once converged: nothing to
//! run and nothing that will become runnable by itself (no tasks and no wake time).
//!
//! In pretend mode ([`RunnerConfig::pretend`], R13) a step applies its input and reports
//! the waves that would run ([`Engine::pretend`]) without calling any actuator.
//!
//! # Examples
//! ```
//! use std::sync::Arc;
//! use syncore::{Actuator, Actuators, ChangeSet, Config, Engine, ObjectView, Outcome, Runner,
//!               RunnerConfig, Schema, StopReason, Time, VirtualClock};
//! struct Noop;
//! impl Actuator for Noop {
//!     fn sync(&self, _: &ObjectView<'_>) -> Outcome { Outcome::ok() }
//! }
//! let schema = Schema::from_json(r#"{"models": [{"name": "Site"}]}"#)?;
//! let mut runner = Runner::new(Engine::new(schema, Config::default()),
//!     &Actuators::new().with("Site", Noop), Arc::new(VirtualClock::new(Time(0))),
//!     RunnerConfig::default())?;
//! let sender = runner.sender(); // clone it into other threads
//! sender.send(ChangeSet::new().upsert("s1", "Site", [("x", 0i64); 0]))?;
//! let summary = runner.run()?;
//! assert_eq!(summary.reason, StopReason::Converged);
//! assert_eq!(summary.counts.ok, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::sync::Arc;

use crossbeam::channel::{self, Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::change::ChangeSet;
use crate::clock::Clock;
use crate::complete::ExternalReport;
use crate::engine::Engine;
use crate::error::{ChangeError, CompleteError};
use crate::exec::{Actuators, CancelToken, ExecConfig, ExecError, Executor, RunCounts};
use crate::id::Time;
use crate::plan::Plan;
use crate::trace::{Event, Recorded, Recorder, StateHash};

/// Run loop settings. Every option states its default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunnerConfig {
    /// The executor's settings. Default: [`ExecConfig::default`].
    pub exec: ExecConfig,
    /// Pretend mode (R13): report what would run, call no actuator. Default: `false`.
    pub pretend: bool,
    /// Rounds reported per pretend step. Default: 1,000.
    pub pretend_rounds_max: usize,
    /// Whether [`Runner::run`] returns once converged; otherwise it waits for input.
    /// Default: `true`.
    pub stop_when_converged: bool,
    /// Most steps one [`Runner::run`] takes before it returns. Default: `None` (no limit).
    pub steps_max: Option<u64>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            exec: ExecConfig::default(),
            pretend: false,
            pretend_rounds_max: 1000,
            stop_when_converged: true,
            steps_max: None,
        }
    }
}

/// Input to a runner, from any thread.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A change set to apply.
    Changes(ChangeSet),
    /// A report about an external object (R17).
    External {
        /// The object.
        key: String,
        /// The report.
        report: ExternalReport,
    },
    /// Stop after the current step.
    Stop,
}

/// The runner is gone: input can no longer be delivered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the runner is gone")]
pub struct Disconnected;

/// Sends input to a [`Runner`] from any thread. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RunnerSender {
    tx: Sender<Input>,
    cancel: CancelToken,
}

impl RunnerSender {
    /// Sends a change set; it is applied at the start of the runner's next step.
    ///
    /// # Errors
    /// [`Disconnected`] if the runner was dropped.
    pub fn send(&self, changes: ChangeSet) -> Result<(), Disconnected> {
        self.tx
            .send(Input::Changes(changes))
            .map_err(|_| Disconnected)
    }

    /// Sends a report about an external object (R17).
    ///
    /// # Errors
    /// [`Disconnected`] if the runner was dropped.
    pub fn report_external(
        &self,
        key: impl Into<String>,
        report: ExternalReport,
    ) -> Result<(), Disconnected> {
        self.tx
            .send(Input::External {
                key: key.into(),
                report,
            })
            .map_err(|_| Disconnected)
    }

    /// Asks the runner to stop after its current step (the step's run completes).
    pub fn stop(&self) {
        let _ = self.tx.send(Input::Stop);
    }

    /// Cancels the run in progress (tasks not started are not run) and stops the runner.
    pub fn cancel(&self) {
        self.cancel.cancel();
        let _ = self.tx.send(Input::Stop);
    }
}

/// Why [`Runner::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Nothing to run and nothing that becomes runnable by itself.
    Converged,
    /// [`RunnerSender::stop`] was called.
    Requested,
    /// [`RunnerSender::cancel`] was called.
    Cancelled,
    /// [`RunnerConfig::steps_max`] steps were taken.
    StepsMax,
}

/// What one [`Runner::step`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    /// Step number (1-based, counted over the runner's life).
    pub step: u64,
    /// The time planned for.
    pub now: Time,
    /// Change sets applied.
    pub applied: usize,
    /// Change sets refused (the engine is unchanged by each), with their errors.
    pub refused: Vec<ChangeError>,
    /// External reports refused, with their errors.
    pub refused_reports: Vec<CompleteError>,
    /// Tasks in the plan.
    pub tasks: usize,
    /// Objects held by the plan.
    pub holds: usize,
    /// Tallies of the run.
    pub counts: RunCounts,
    /// The plan's next wake time.
    pub next_wake: Option<Time>,
    /// The plan had no task and no wake time: nothing will happen without new input.
    pub converged: bool,
    /// The run was cancelled.
    pub cancelled: bool,
    /// Pretend mode: the rounds of waves that would run (R13).
    pub pretend: Vec<Plan>,
}

/// What [`Runner::run`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSummary {
    /// Steps taken.
    pub steps: u64,
    /// Tasks run or held, over all steps.
    pub tasks: u64,
    /// Tallies over all steps.
    pub counts: RunCounts,
    /// Why it returned.
    pub reason: StopReason,
    /// The clock when it returned.
    pub now: Time,
}

/// The run loop failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// The executor's configuration (R17: missing actuators, listed).
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// An outcome could not be fed back (a bug: the plan came from the same engine).
    #[error("completing a run: {0}")]
    Complete(#[from] CompleteError),
    /// The trace could not be written.
    #[error("writing the trace: {0}")]
    Trace(#[from] std::io::Error),
}

/// The plan-execute-complete loop.
///
/// Each [`Runner::step`] takes the input that arrived (change sets and external reports,
/// from any thread through [`Runner::sender`]), plans at `clock.now()`, runs the plan's
/// tasks and feeds the outcomes back in plan order at the time the run ended.
/// [`Runner::run`] repeats steps: at once while tasks ran, otherwise it sleeps until the
/// plan's `next_wake` or until new input arrives, whichever is first (never polling), and
/// stops when asked to ([`RunnerSender::stop`]), when cancelled ([`RunnerSender::cancel`]),
/// or, if [`RunnerConfig::stop_when_converged`], once converged: no task and no wake time.
/// In pretend mode ([`RunnerConfig::pretend`], R13) a step applies its input and reports the
/// waves that would run ([`Engine::pretend`]) without calling any actuator.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use syncore::{Actuator, Actuators, ChangeSet, Config, Engine, ObjectView, Outcome, Runner,
///               RunnerConfig, Schema, StopReason, Time, VirtualClock};
/// struct Noop;
/// impl Actuator for Noop {
///     fn sync(&self, _: &ObjectView<'_>) -> Outcome { Outcome::ok() }
/// }
/// let schema = Schema::from_json(r#"{"models": [{"name": "Site"}]}"#)?;
/// let mut runner = Runner::new(Engine::new(schema, Config::default()),
///     &Actuators::new().with("Site", Noop), Arc::new(VirtualClock::new(Time(0))),
///     RunnerConfig::default())?;
/// let sender = runner.sender(); // clone it into other threads
/// sender.send(ChangeSet::new().upsert("s1", "Site", [("x", 0i64); 0]))?;
/// let summary = runner.run()?;
/// assert_eq!(summary.reason, StopReason::Converged);
/// assert_eq!(summary.counts.ok, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Runner {
    engine: Engine,
    /// `None` in pretend mode.
    executor: Option<Executor>,
    clock: Arc<dyn Clock>,
    config: RunnerConfig,
    tx: Sender<Input>,
    rx: Receiver<Input>,
    inbox: VecDeque<Input>,
    cancel: CancelToken,
    recorder: Option<Recorder>,
    step: u64,
    stop: bool,
    virtual_clock: bool,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("engine", &self.engine)
            .field("step", &self.step)
            .finish()
    }
}

impl Runner {
    /// A runner over `engine`, with `actuators` and time from `clock`.
    ///
    /// # Errors
    /// [`RunnerError::Exec`]: the executor's configuration errors, among them every
    /// actuated model without an actuator (R17). Pretend mode needs no actuators.
    pub fn new(
        engine: Engine,
        actuators: &Actuators,
        clock: Arc<dyn Clock>,
        config: RunnerConfig,
    ) -> Result<Runner, RunnerError> {
        // R13: pretend mode calls no actuator, so it needs none.
        let executor = if config.pretend {
            None
        } else {
            Some(Executor::new(
                engine.schema(),
                actuators,
                config.exec.clone(),
            )?)
        };
        let (tx, rx) = channel::unbounded();
        let virtual_clock = clock.is_virtual();
        Ok(Runner {
            engine,
            executor,
            clock,
            config,
            tx,
            rx,
            inbox: VecDeque::new(),
            cancel: CancelToken::new(),
            recorder: None,
            step: 0,
            stop: false,
            virtual_clock,
        })
    }

    /// A handle to send input from any thread.
    pub fn sender(&self) -> RunnerSender {
        RunnerSender {
            tx: self.tx.clone(),
            cancel: self.cancel.clone(),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, mutably (between steps).
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// The engine, giving the runner up.
    pub fn into_engine(self) -> Engine {
        self.engine
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Records a trace from now on ([`crate::trace`]): writes its header (the current
    /// state) at once, then every step's events.
    ///
    /// # Errors
    /// The recorder's write error.
    pub fn record(&mut self, mut recorder: Recorder) -> Result<(), RunnerError> {
        let clock = if self.virtual_clock {
            "virtual"
        } else {
            "real"
        };
        recorder.record(&Event::header(&self.engine, clock))?;
        self.recorder = Some(recorder);
        Ok(())
    }

    /// Stops recording and returns the recorder (flushed).
    pub fn take_recorder(&mut self) -> Option<Recorder> {
        let mut r = self.recorder.take()?;
        let _ = r.flush();
        Some(r)
    }

    fn emit(&mut self, event: impl FnOnce(&Engine) -> Event) -> Result<(), RunnerError> {
        if let Some(r) = &mut self.recorder {
            r.record(&event(&self.engine))?;
        }
        Ok(())
    }

    fn hash(&self) -> StateHash {
        StateHash(if self.recorder.is_some() {
            self.engine.state_hash()
        } else {
            0
        })
    }

    fn take_input(&mut self, input: Input, now: Time, out: &mut Step) -> Result<(), RunnerError> {
        let step = self.step;
        match input {
            Input::Changes(changes) => {
                let recorded = self.recorder.is_some().then(|| changes.clone());
                let result = match self.engine.apply(changes) {
                    Ok(report) => {
                        out.applied += 1;
                        Recorded::Ok(report)
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        out.refused.push(e);
                        Recorded::Error(msg)
                    }
                };
                if let Some(changes) = recorded {
                    let state_hash = self.hash();
                    self.emit(|_| Event::DidApply {
                        step,
                        now,
                        changes,
                        result,
                        state_hash,
                    })?;
                }
            }
            Input::External { key, report } => {
                let result = match self.engine.report_external(&key, report.clone()) {
                    Ok(c) => Recorded::Ok(c),
                    Err(e) => {
                        let msg = e.to_string();
                        out.refused_reports.push(e);
                        Recorded::Error(msg)
                    }
                };
                let state_hash = self.hash();
                self.emit(|_| Event::DidReportExternal {
                    step,
                    now,
                    key,
                    report,
                    result,
                    state_hash,
                })?;
            }
            Input::Stop => self.stop = true,
        }
        Ok(())
    }

    /// One step: take the input that arrived, plan at `clock.now()`, run the plan, feed
    /// the outcomes back in plan order at the time the run ended.
    ///
    /// # Errors
    /// [`RunnerError::Trace`] if recording fails; [`RunnerError::Complete`] on a bug.
    pub fn step(&mut self) -> Result<Step, RunnerError> {
        self.step += 1;
        let now = self.clock.now();
        let mut out = Step {
            step: self.step,
            now,
            ..Step::default()
        };
        while let Some(input) = self.inbox.pop_front() {
            self.take_input(input, now, &mut out)?;
        }
        while let Ok(input) = self.rx.try_recv() {
            self.take_input(input, now, &mut out)?;
        }
        let plan = self.engine.plan(now);
        out.tasks = plan.tasks.len();
        out.holds = plan.holds.len();
        out.next_wake = plan.next_wake;
        out.converged = plan.tasks.is_empty() && plan.next_wake.is_none();
        let step = self.step;
        if self.recorder.is_some() {
            self.emit(|_| Event::DidPlan {
                step,
                now,
                plan: plan.clone(),
            })?;
        }
        if self.config.pretend {
            out.pretend = self.engine.pretend(now, self.config.pretend_rounds_max);
        } else if let (false, Some(executor)) = (plan.tasks.is_empty(), &self.executor) {
            let report =
                executor.run_with(&self.engine, &plan, Some(&self.cancel), Some(&*self.clock));
            out.counts = report.counts();
            out.cancelled = report.cancelled;
            if self.recorder.is_some() {
                for e in Event::actuations(step, &self.engine, &plan, &report) {
                    self.emit(|_| e)?;
                }
            }
            // One completion time for the whole run keeps the state independent of how
            // the workers interleaved (R12).
            let end = self.clock.now();
            let completions = self.engine.complete_run(&plan, &report, end)?;
            if self.recorder.is_some() {
                for (i, c) in completions.into_iter().enumerate() {
                    let (Some(c), Some(outcome)) = (c, report.states[i].outcome()) else {
                        continue;
                    };
                    let (object, outcome) = (plan.tasks[i], outcome.clone());
                    self.emit(|_| Event::DidComplete {
                        step,
                        task: i,
                        at: end,
                        object,
                        outcome,
                        completion: Recorded::Ok(c),
                    })?;
                }
            }
        }
        let state_hash = self.hash();
        let counts = out.counts;
        self.emit(|_| Event::DidStep {
            step,
            now,
            counts,
            state_hash,
        })?;
        Ok(out)
    }

    /// Repeats [`Runner::step`] until stopped, cancelled, converged (if
    /// [`RunnerConfig::stop_when_converged`]) or [`RunnerConfig::steps_max`] steps; sleeps
    /// until the next wake time or new input between steps that ran nothing.
    ///
    /// # Errors
    /// As [`Runner::step`].
    pub fn run(&mut self) -> Result<RunSummary, RunnerError> {
        let mut summary = RunSummary {
            steps: 0,
            tasks: 0,
            counts: RunCounts::default(),
            reason: StopReason::Converged,
            now: Time(0),
        };
        summary.reason = self.run_loop(&mut summary)?;
        summary.now = self.clock.now();
        if let Some(r) = &mut self.recorder {
            r.flush()?;
        }
        Ok(summary)
    }

    fn run_loop(&mut self, summary: &mut RunSummary) -> Result<StopReason, RunnerError> {
        self.stop = false;
        loop {
            if self.cancel.is_cancelled() {
                self.cancel.reset();
                return Ok(StopReason::Cancelled);
            }
            if self.stop {
                return Ok(StopReason::Requested);
            }
            if self.config.steps_max.is_some_and(|m| summary.steps >= m) {
                return Ok(StopReason::StepsMax);
            }
            let s = self.step()?;
            summary.steps += 1;
            summary.tasks += s.tasks as u64;
            add(&mut summary.counts, &s.counts);
            if s.cancelled || self.cancel.is_cancelled() {
                self.cancel.reset();
                return Ok(StopReason::Cancelled);
            }
            if self.stop {
                return Ok(StopReason::Requested);
            }
            let ran = s.counts.ok + s.counts.failed + s.counts.deferred > 0;
            let input_waiting = !self.inbox.is_empty() || !self.rx.is_empty();
            if (ran && !self.config.pretend) || input_waiting {
                continue;
            }
            if s.converged && self.config.stop_when_converged {
                return Ok(StopReason::Converged);
            }
            if self.config.pretend && self.config.stop_when_converged {
                return Ok(StopReason::Converged);
            }
            self.wait(s.next_wake);
        }
    }

    /// Sleeps until `deadline` or until input arrives (forever if there is no deadline).
    fn wait(&mut self, deadline: Option<Time>) {
        let input = match deadline {
            Some(t) => {
                let d = self.clock.block_for(t);
                if d.is_zero() {
                    self.rx.try_recv().ok()
                } else {
                    self.rx.recv_timeout(d).ok()
                }
            }
            // The runner holds a sender itself, so this only returns with input.
            None => self.rx.recv().ok(),
        };
        if let Some(i) = input {
            self.inbox.push_back(i);
        }
    }
}

fn add(total: &mut RunCounts, c: &RunCounts) {
    total.ok += c.ok;
    total.failed += c.failed;
    total.deferred += c.deferred;
    total.held += c.held;
    total.not_run += c.not_run;
}
