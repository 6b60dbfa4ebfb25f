//! The executor: runs a [`Plan`]'s tasks on a pool of worker threads.
//!
//! ## What it does
//! [`Executor::run`] takes the engine (shared, read-only) and one of its plans, and calls
//! each task's actuator as soon as every task it depends on *inside the plan* has succeeded
//! (`plan.deps(i)`, and the members of the model-level barriers in `plan.barrier_deps(i)`),
//! not wave by wave (R1, R2). A task whose dependency failed, deferred or
//! panicked is not run: it is reported [`TaskState::Held`] naming the root cause, and so are
//! its own dependents (R3). The outcomes are *returned*, not applied: the caller feeds them
//! back with [`crate::Engine::complete_run`], in plan order, so the engine's state after a
//! run does not depend on the number of threads or on which worker finished first (R12).
//!
//! ## Algorithm
//! **One thread** runs on the caller's thread, in plan order: plan order is a topological
//! order, so each task simply runs unless one of its dependencies did not succeed (then it
//! is held). No counters, no queue, no inverted edges: one pass, each task's state written
//! once, in order.
//!
//! **More threads** are scoped threads (they borrow the engine; nothing is copied), the
//! caller's thread being one of them. Per run, O(tasks + edges) arrays are allocated once:
//! the dependents of each task (the plan stores dependencies; the executor inverts them)
//! and one pending-dependency counter per task and per model-level barrier (a barrier
//! counts its members; when the last settles, it settles its waiters in turn, poisoned if a
//! member did not succeed, so a model-level wait costs O(members + waiters), R15). Tasks without dependencies go to a shared
//! injector queue; each worker owns a FIFO work-stealing deque (crossbeam; FIFO keeps the
//! order near plan order, which is kinder to caches on big plans) and steals from the
//! injector and from the other workers when its own runs dry. Finishing a task decrements
//! the counters of its dependents; the one that reaches zero is pushed on the finishing
//! worker's deque. A counter is a `u32` whose top bit says a dependency did not succeed
//! (set before the decrement, so the decrement that reaches zero sees it): such a task is
//! never run but held, and poisons its own dependents in turn, so every task is settled
//! exactly once and the run ends when the settled count reaches the number of tasks.
//! Outcomes go to a buffer owned by the worker (sized for its share of the plan up front)
//! and are placed by task index after the run. Idle workers spin, yield, then sleep on a
//! condition variable, and are woken when a worker has work to spare.
//!
//! ## Limits
//! * `threads` is the global concurrency limit: at most that many actuations at once.
//! * [`ExecConfig::model_limit`] caps the actuations of one model in flight at once; a task
//!   of a model at its limit waits in that model's queue and is picked up by the worker that
//!   finishes the model's next actuation.
//! * A [`CancelToken`] stops a run in progress: actuations already running finish, tasks not
//!   started are reported [`TaskState::NotRun`].
//! * An actuator that panics is caught: its object gets
//!   `Failed("actuator for <model> panicked: <message>")`, nothing else is affected.
//!
//! # Examples
//! ```
//! use syncore::{Actuator, Actuators, ChangeSet, Config, Engine, ExecConfig, Executor,
//!               ObjectView, Outcome, Schema, Time};
//! struct Noop;
//! impl Actuator for Noop {
//!     fn sync(&self, _: &ObjectView<'_>) -> Outcome { Outcome::ok() }
//! }
//! let schema = Schema::from_json(r#"{"models": [
//!   {"name": "Site"},
//!   {"name": "Slice", "fields": [{"name": "site", "type": "ref"}],
//!    "links": [{"field": "site", "target": "Site"}]}]}"#)?;
//! let mut engine = Engine::new(schema, Config::default());
//! engine.apply(ChangeSet::new()
//!     .upsert("s1", "Site", [("x", 0i64); 0])
//!     .upsert("sl1", "Slice", [("site", "s1")]))?;
//! let actuators = Actuators::new().with("Site", Noop).with("Slice", Noop);
//! let executor = Executor::new(engine.schema(), &actuators, ExecConfig::new().threads(2))?;
//! let plan = engine.plan(Time(0));
//! let report = executor.run(&engine, &plan);
//! assert_eq!(report.counts().ok, 2);
//! engine.complete_run(&plan, &report, Time(1))?;
//! assert!(engine.plan(Time(1)).is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod pool;
mod registry;
pub(crate) mod sync;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

#[cfg(feature = "wasm")]
pub(crate) use pool::on_run_thread;
pub use registry::Actuators;

use crate::actuator::{Actuator, Outcome};
use crate::clock::Clock;
use crate::engine::Engine;
use crate::plan::Plan;
use crate::schema::{ModelKind, Schema};

/// Most worker threads one executor may run.
pub const THREADS_MAX: usize = 1024;

// Lanes are recorded as `u16`.
const _: () = assert!(THREADS_MAX <= u16::MAX as usize);

/// The executor was configured wrongly; raised once, by [`Executor::new`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// Actuated models with no actuator registered (R17), sorted.
    #[error("actuated models without an actuator: {}", .models.join(", "))]
    MissingActuators {
        /// Every such model.
        models: Vec<String>,
    },
    /// An actuator or a limit names a model the schema lacks.
    #[error("{what} for unknown model {model}")]
    UnknownModel {
        /// The name.
        model: String,
        /// What named it: `actuator` or `concurrency limit`.
        what: &'static str,
    },
    /// An actuator was registered for a model that is never actuated (R17).
    #[error("actuator for model {model}, which is {kind:?} and never actuated")]
    NotActuated {
        /// The model.
        model: String,
        /// Its kind.
        kind: ModelKind,
    },
    /// A concurrency limit of zero: the model's tasks could never run.
    #[error("concurrency limit of model {model} is 0")]
    ZeroLimit {
        /// The model.
        model: String,
    },
    /// The thread count is out of range.
    #[error("threads must be between 1 and {max}, got {threads}")]
    Threads {
        /// The value given.
        threads: usize,
        /// [`THREADS_MAX`].
        max: usize,
    },
}

/// Executor settings. Every option states its default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecConfig {
    /// Worker threads, the global concurrency limit (the caller's thread is one of them).
    /// Default: the machine's available parallelism.
    pub threads: usize,
    /// Most actuations of one model in flight at once, by model name. Default: none.
    pub model_limits: BTreeMap<String, u32>,
    /// Whether to record each actuation's start and end ([`RunReport::spans`]), measured by
    /// the clock given to [`Executor::run_with`]. Default: `false`.
    pub timing: bool,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            model_limits: BTreeMap::new(),
            timing: false,
        }
    }
}

impl ExecConfig {
    /// The defaults.
    pub fn new() -> ExecConfig {
        ExecConfig::default()
    }

    /// Sets [`ExecConfig::threads`].
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Caps the actuations of `model` in flight at once (see [`ExecConfig::model_limits`]).
    pub fn model_limit(mut self, model: impl Into<String>, max: u32) -> Self {
        self.model_limits.insert(model.into(), max);
        self
    }

    /// Sets [`ExecConfig::timing`].
    pub fn timing(mut self, on: bool) -> Self {
        self.timing = on;
        self
    }
}

pub use crate::actuation::CancelToken;

/// What became of one task of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum TaskState {
    /// The actuator ran (a panic is reported as `Failed`).
    Ran {
        /// What it returned.
        outcome: Outcome,
        /// The worker that ran it (0-based).
        lane: u16,
    },
    /// Not run: a dependency in this run did not succeed (R3). `by` is the index of the
    /// root cause's task (the one with the smallest key if there are several).
    Held {
        /// Task index of the root cause.
        by: usize,
    },
    /// Not run: the run was cancelled before it started.
    NotRun,
}

impl TaskState {
    /// The outcome, if the actuator ran.
    pub fn outcome(&self) -> Option<&Outcome> {
        match self {
            TaskState::Ran { outcome, .. } => Some(outcome),
            _ => None,
        }
    }
}

/// When one actuation ran, in nanoseconds since the start of its run, as measured by the
/// run's clock. Only for display (Gantt charts): it never enters engine state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Start offset.
    pub start_ns: u64,
    /// End offset.
    pub end_ns: u64,
}

/// Tallies of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    /// Actuations that returned `Ok`.
    pub ok: usize,
    /// Actuations that returned `Failed` or panicked.
    pub failed: usize,
    /// Actuations that returned `Deferred`.
    pub deferred: usize,
    /// Tasks held behind a dependency that did not succeed.
    pub held: usize,
    /// Tasks not started because the run was cancelled.
    pub not_run: usize,
}

/// The result of [`Executor::run`]: one [`TaskState`] per task, in plan order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// One state per task of the plan, by task index.
    pub states: Vec<TaskState>,
    /// One span per task when [`ExecConfig::timing`] is on (zero for tasks not run);
    /// empty otherwise.
    pub spans: Vec<Span>,
    /// Whether the run was cancelled.
    pub cancelled: bool,
    /// Actuator panics caught.
    pub panics: usize,
    /// Worker threads used.
    pub threads: usize,
}

impl RunReport {
    /// Tallies the states.
    pub fn counts(&self) -> RunCounts {
        let mut c = RunCounts::default();
        for s in &self.states {
            match s {
                TaskState::Ran { outcome, .. } => match outcome {
                    Outcome::Ok { .. } => c.ok += 1,
                    Outcome::Failed { .. } => c.failed += 1,
                    Outcome::Deferred { .. } => c.deferred += 1,
                },
                TaskState::Held { .. } => c.held += 1,
                TaskState::NotRun => c.not_run += 1,
            }
        }
        c
    }
}

/// Runs plans on a pool of worker threads. See the [module docs](self).
pub struct Executor {
    config: ExecConfig,
    /// Actuator of each model, by model id (`None`: not actuated).
    actuators: Vec<Option<Arc<dyn Actuator>>>,
    /// Model names, by model id, for messages.
    names: Vec<String>,
    /// Concurrency limit of each model, by model id (`0`: none).
    limits: Vec<u32>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("config", &self.config)
            .finish()
    }
}

// The workers share `&Engine` while a run is in progress.
const _: fn() = || {
    fn sync<T: Sync>() {}
    sync::<Engine>();
};

impl Executor {
    /// An executor for `schema`'s models.
    ///
    /// # Errors
    /// Every configuration error at once is impossible to report in one value, so the
    /// first found: [`ExecError::Threads`], then the registry's errors
    /// ([`Actuators::check`], R17: every actuated model without an actuator, listed), then
    /// limits naming unknown models ([`ExecError::UnknownModel`]) or zero
    /// ([`ExecError::ZeroLimit`]).
    pub fn new(
        schema: &Schema,
        actuators: &Actuators,
        config: ExecConfig,
    ) -> Result<Executor, ExecError> {
        if config.threads == 0 || config.threads > THREADS_MAX {
            return Err(ExecError::Threads {
                threads: config.threads,
                max: THREADS_MAX,
            });
        }
        actuators.check(schema)?;
        let mut limits = vec![0u32; schema.models().len()];
        for (model, &max) in &config.model_limits {
            let id = schema
                .model_id(model)
                .ok_or_else(|| ExecError::UnknownModel {
                    model: model.clone(),
                    what: "concurrency limit",
                })?;
            if max == 0 {
                return Err(ExecError::ZeroLimit {
                    model: model.clone(),
                });
            }
            limits[id.index()] = max;
        }
        Ok(Executor {
            actuators: actuators.resolve(schema),
            names: schema.models().iter().map(|m| m.name.clone()).collect(),
            limits,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ExecConfig {
        &self.config
    }

    /// Runs `plan`'s tasks, calling actuators with views of `engine`; returns what became
    /// of each task. `plan` must be `engine`'s latest plan (same state): a task whose
    /// object is gone gets a `Failed` outcome, it never brings the executor down.
    ///
    /// # Complexity
    /// O(tasks + edges) work and extra space, spread over the worker threads.
    pub fn run(&self, engine: &Engine, plan: &Plan) -> RunReport {
        pool::run(self, engine, plan, None, None)
    }

    /// [`Executor::run`], stoppable by `cancel`, with actuation spans measured by `clock`
    /// when [`ExecConfig::timing`] is on.
    pub fn run_with(
        &self,
        engine: &Engine,
        plan: &Plan,
        cancel: Option<&CancelToken>,
        clock: Option<&dyn Clock>,
    ) -> RunReport {
        pool::run(self, engine, plan, cancel, clock)
    }
}

#[cfg(test)]
mod tests;
