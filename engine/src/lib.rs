//! # syncore: the synchronizer core
//!
//! A pure, in-memory, deterministic engine for goal-oriented synchronization. It takes a
//! [`Schema`] (models, their declarative and feedback fields, links between them), object
//! data, and [`ChangeSet`]s, and produces a [`Plan`]: the actuation tasks that may run now,
//! with their dependency edges and waves, every held object with its reason, and the next
//! time something becomes due. Outcomes come back through [`Engine::complete`], which keeps
//! per-object backoff state.
//!
//! There is no clock, no I/O and no hidden randomness inside: time is an argument, jitter
//! is a pure function of a seed, and the same calls give byte-identical plans and snapshots.
//!
//! ```
//! use syncore::{ChangeSet, Config, Engine, HoldReason, Outcome, Schema, Time};
//! let schema = Schema::from_json(r#"{"models": [
//!   {"name": "Network"},
//!   {"name": "Port", "fields": [{"name": "network", "type": "ref"}],
//!    "feedback": [{"name": "mac", "type": "string"}],
//!    "links": [{"field": "network", "target": "Network"}]}]}"#)?;
//! let mut engine = Engine::new(schema, Config::default());
//! engine.apply(ChangeSet::new()
//!     .upsert("net", "Network", Vec::<(String, syncore::Value)>::new())
//!     .upsert("port", "Port", [("network", "net")]))?;
//!
//! // The network syncs first; it fails, so the port is held behind it.
//! let plan = engine.plan(Time(0));
//! let net = plan.tasks[0];
//! engine.complete(&net, Outcome::failed("backend down"), Time(0))?;
//! let plan = engine.plan(Time(0));
//! let port = engine.id("port").unwrap();
//! assert_eq!(plan.hold(port), Some(&HoldReason::Blocked { by: net.object }));
//! assert!(plan.next_wake.is_some()); // the network's backoff expiry
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The rules the engine honours (R1-R18) are listed in the repository's `DESIGN.md`; each
//! has a test named after it.
//!
//! ## Loading a large graph
//! A [`ChangeSet`] holds a map of field names per upsert: simple for small changes. For
//! many objects of one model, [`Rows`] names the fields once and holds the values by column;
//! [`Engine::apply_rows`] gives the same result as the equivalent change set without a map
//! per object (a million objects load in about half the memory).
//!
//! ## Scheduling: one state machine, two clocks
//! [`sched::Scheduler`] is the pure scheduling state machine over an engine: leases (one
//! actuation per object in flight), completion-driven release of dependents, global and
//! per-model limits, priority classes, re-sync timers and timeouts. Its inputs
//! ([`sched::Input`]: change sets, deliveries, reports, ticks, each with its time) go
//! through one function, [`sched::Scheduler::step`], so a recorded sequence replays to the
//! same state hashes. [`sched::Lanes`] drives it in virtual time (simulated durations on N
//! lanes); the `runtime` feature's `syncore::runtime` drives it in real time on tokio,
//! with [`AsyncActuator`]s (an [`ActuationContext`] and an owned [`OwnedView`] per
//! actuation) and blocking actuators on a bounded pool.
//!
//! ## Running plans (batch)
//! An [`Executor`] runs a plan's tasks on worker threads with your [`Actuators`] (one per
//! actuated model, R17) and returns their outcomes; [`Engine::complete_run`] feeds them back
//! in plan order, so the state never depends on the thread count. A [`Runner`] repeats plan,
//! execute, complete, sleeping on a [`Clock`] until the next wake time or new change sets
//! ([`Runner::sender`]); [`trace`] records its runs as JSON lines and replays them.
//!
//! ## Testing with `sim`
//! [`sim`] drives generated (or your own) schemas, graphs and change streams through the
//! real executor in virtual time, with fault-injecting actuators and an invariant checker
//! after every step; a failing seed prints first and replays with `SYNCORE_SEED=<seed>`.
//!
//! ## Limits
//! Input is bounded: [`Config`]'s `*_max` options cap change-set entries (policy output
//! included), key length, live objects, string, bytes and JSON sizes, JSON depth and
//! references per field, each with a documented default; [`MODELS_MAX`] and [`FIELDS_MAX`]
//! cap a schema. A change over a limit is refused with [`ChangeError::ValueTooLarge`]
//! (naming key and field), [`ChangeError::KeyTooLong`] or [`ChangeError::TooLarge`] (also
//! for what one store holds: about a billion live edges, values, or bytes of keys), and
//! nothing is applied. Snapshot bytes are decoded within a bound proportional to their
//! length (R14). The fuzz targets in the repository's `fuzz/` exercise these boundaries.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod actuation;
mod actuator;
mod backoff;
mod bulk;
mod change;
mod clock;
mod complete;
mod edges;
mod engine;
mod engine_run;
mod error;
pub mod exec;
mod graph;
mod id;
mod idset;
mod keys;
mod migrate;
mod plan;
mod policy;
mod rows;
mod runner;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod sched;
mod schema;
pub mod sim;
mod snapshot;
mod span;
mod state_hash;
mod store;
pub mod trace;
mod value;
mod value_lists;

#[cfg(feature = "wasm")]
pub mod wasm;

pub use actuation::{ActuationContext, AsyncActuator, BoxFuture, CancelToken, OwnedView};
pub use actuator::{Actuator, ObjectView, Outcome, TaskKind};
pub use backoff::BackoffPolicy;
pub use change::{ApplyReport, Change, ChangeSet};
pub use clock::{Clock, RealClock, VirtualClock};
pub use complete::{Completion, ExternalReport};
pub use engine::{Config, Engine, ObjectInfo, Status, UnknownModel, WatchStats, WATCH_LOG_MAX};
pub use error::{ChangeError, CompleteError, SchemaError, SnapshotError, KEY_PREFIX_LEN};
pub use exec::{
    Actuators, ExecConfig, ExecError, Executor, RunCounts, RunReport, Span, TaskState, THREADS_MAX,
};
pub use graph::OBJECTS_MAX;
pub use id::{ModelId, ObjectId, Time};
pub use migrate::MigrateError;
pub use plan::{Barrier, Hold, HoldReason, Plan, PlanStats, Task};
pub use policy::{Policy, PolicyInput, StagedObject, StateView, WatchEvent, WatchKind, Watcher};
pub use rows::Rows;
pub use runner::{
    Disconnected, Input, RunSummary, Runner, RunnerConfig, RunnerError, RunnerSender, Step,
    StopReason,
};
pub use schema::{
    FieldDef, FieldSlot, Link, LinkDef, Model, ModelDef, ModelKind, Schema, SchemaDef, FIELDS_MAX,
    MODELS_MAX,
};
pub use snapshot::{FORMAT_VERSION, MAGIC};
pub use value::{FieldType, TypeMismatch, Value};
#[cfg(feature = "wasm")]
pub use wasm::PluginError;
