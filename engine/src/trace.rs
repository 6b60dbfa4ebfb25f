//! Record and replay: a run as a trace of JSON lines, and a replayer that checks every
//! intermediate state hash.
//!
//! The [`crate::Runner`] and the [`crate::sim`] harness record the same format, and the
//! `syncore` command reads and writes it (`syncore run --json`, `syncore replay TRACE`).
//!
//! ## Format
//! A trace is UTF-8 text, one JSON object per line ([`Event`]), each with an `"event"` tag.
//! The first line is a `header`; then, for each step of the run loop, in this order:
//!
//! | event | when it fires | fields |
//! |---|---|---|
//! | `header` | once, first | `format` (`"syncore-trace"`), `version` ([`TRACE_VERSION`]), `clock` (`"real"` or `"virtual"`), `state_hash`, `snapshot` (hex of [`crate::Engine::snapshot`]) |
//! | `did_apply` | a change set was applied or refused | `step`, `now`, `changes`, `result` (`{"ok": ApplyReport}` or `{"error": "message"}`), `state_hash` |
//! | `did_report_external` | an external report was recorded (R17) | `step`, `now`, `key`, `report`, `result`, `state_hash` |
//! | `did_plan` | a plan was made | `step`, `now`, `plan` (the whole [`crate::Plan`]) |
//! | `did_actuate` | a task of the plan settled (one per task, plan order) | `step`, `task` (index), `key`, `model`, `kind`, `version`, `lane`, `start_ns`, `end_ns`, `state` (`ran`, `held`, `not_run`), `outcome`, `held_by` |
//! | `did_complete` | an outcome was fed back | `step`, `task` (index), `at`, `object` ([`crate::Task`]), `outcome`, `completion` |
//! | `did_step` | the step ended | `step`, `now`, `counts`, `state_hash` |
//!
//! A *scheduler trace* (what `syncore run` writes) has a header whose snapshot is a
//! [`Scheduler::snapshot`] (it starts with [`SCHED_MAGIC`]), followed by `did_input` lines
//! (`step`, `input` (a [`crate::sched::Input`] with its time), `state_hash`
//! ([`Scheduler::state_hash`] after the step)) and `did_actuate` lines for display; [`replay`]
//! applies each input with [`Scheduler::step`] and compares the hashes.
//!
//! Times (`now`, `at`) are engine [`Time`]s in milliseconds. `start_ns`/`end_ns` are
//! offsets from the start of the step's run, for Gantt charts: virtual (milliseconds of
//! virtual time times 10^6) in the simulator, measured by the monotonic clock with the
//! real executor. They are display data and never enter a state hash. `state_hash` is
//! [`crate::Engine::state_hash`] as 16 hex digits.
//!
//! ## Replay
//! [`replay`] restores the header's snapshot, re-applies every change set and external
//! report, re-plans at every recorded `now` and compares the plan, re-feeds every recorded
//! outcome at its recorded time and compares the completion, and compares every state hash.
//! The first difference is a [`ReplayError::Diverged`] naming the step and line. Policies and
//! watchers are code, not data: give [`replay`] a setup function that registers them, as
//! the recorded engine had them.
//!
//! # Examples
//! ```
//! use syncore::{trace, Actuators, ChangeSet, Config, Engine, Runner, RunnerConfig, Schema,
//!               Time, VirtualClock, Outcome, ObjectView, Actuator};
//! use std::sync::Arc;
//! struct Noop;
//! impl Actuator for Noop {
//!     fn sync(&self, _: &ObjectView<'_>) -> Outcome { Outcome::ok() }
//! }
//! let schema = Schema::from_json(r#"{"models": [{"name": "Site"}]}"#)?;
//! let engine = Engine::new(schema, Config::default());
//! let clock = Arc::new(VirtualClock::new(Time(0)));
//! let mut runner = Runner::new(engine, &Actuators::new().with("Site", Noop), clock,
//!                              RunnerConfig::default())?;
//! runner.record(trace::Recorder::memory())?;
//! runner.sender().send(ChangeSet::new().upsert("s1", "Site", [("x", 1i64); 0]))?;
//! runner.run()?;
//! let text = runner.take_recorder().unwrap().into_text();
//! let events = trace::parse(text.as_bytes())?;
//! let report = trace::replay(&events, |_| {})?;
//! assert_eq!(report.state_hash, runner.engine().state_hash());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::actuator::{Outcome, TaskKind};
use crate::change::{ApplyReport, ChangeSet};
use crate::complete::{Completion, ExternalReport};
use crate::engine::Engine;
use crate::error::SnapshotError;
use crate::exec::{RunCounts, RunReport, Span, TaskState};
use crate::id::Time;
use crate::plan::{Plan, Task};
use crate::sched::{Input, SchedSnapshotError, Scheduler, SCHED_MAGIC};

/// The `format` of a trace header.
pub const TRACE_FORMAT: &str = "syncore-trace";
/// The trace format version this build writes and reads.
pub const TRACE_VERSION: u32 = 1;
/// Longest line [`parse`] accepts, in bytes.
pub const LINE_LEN_MAX: usize = 1 << 30;

/// A state hash ([`Engine::state_hash`]), written as 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateHash(pub u64);

impl std::fmt::Display for StateHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for StateHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StateHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        u64::from_str_radix(&text, 16)
            .map(StateHash)
            .map_err(|_| serde::de::Error::custom(format!("bad state hash {text:?}")))
    }
}

/// What `apply` or `report_external` returned, as recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recorded<T> {
    /// It succeeded with this value.
    Ok(T),
    /// It was refused with this message.
    Error(String),
}

/// How a task of a run settled, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Settled {
    /// The actuator ran.
    Ran,
    /// Held behind a dependency that did not succeed.
    Held,
    /// Not started (the run was cancelled).
    NotRun,
}

/// One line of a trace. See the [module docs](self) for when each fires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The first line: the state the run started from.
    Header {
        /// [`TRACE_FORMAT`].
        format: String,
        /// [`TRACE_VERSION`].
        version: u32,
        /// `"real"` or `"virtual"`: the kind of clock the times come from.
        clock: String,
        /// Hash of the starting state.
        state_hash: StateHash,
        /// The starting state: [`Engine::snapshot`] bytes in lowercase hex.
        snapshot: String,
    },
    /// A change set was applied (or refused, leaving the state unchanged).
    DidApply {
        /// Step number (1-based).
        step: u64,
        /// When.
        now: Time,
        /// The change set as given.
        changes: ChangeSet,
        /// What `apply` returned.
        result: Recorded<ApplyReport>,
        /// The state hash afterwards.
        state_hash: StateHash,
    },
    /// An external report was recorded (R17).
    DidReportExternal {
        /// Step number.
        step: u64,
        /// When.
        now: Time,
        /// The external object.
        key: String,
        /// The report.
        report: ExternalReport,
        /// What `report_external` returned.
        result: Recorded<Completion>,
        /// The state hash afterwards.
        state_hash: StateHash,
    },
    /// A plan was made.
    DidPlan {
        /// Step number.
        step: u64,
        /// The time planned for.
        now: Time,
        /// The plan.
        plan: Plan,
    },
    /// A task of the step's run settled: one per task, in plan order (Gantt data).
    DidActuate {
        /// Step number.
        step: u64,
        /// Task index in the plan.
        task: usize,
        /// Object key.
        key: String,
        /// Model name.
        model: String,
        /// Sync or delete.
        kind: TaskKind,
        /// Declarative version enacted.
        version: u64,
        /// Worker lane, if it ran.
        lane: Option<u16>,
        /// Start, in ns since the run started (0 if unknown).
        start_ns: u64,
        /// End, in ns since the run started (0 if unknown).
        end_ns: u64,
        /// How it settled.
        state: Settled,
        /// The outcome, if it ran.
        outcome: Option<Outcome>,
        /// The root cause's task index, if held.
        held_by: Option<usize>,
    },
    /// An outcome was fed back to the engine.
    DidComplete {
        /// Step number.
        step: u64,
        /// Task index in the plan.
        task: usize,
        /// Completion time.
        at: Time,
        /// The task.
        object: Task,
        /// The outcome fed back.
        outcome: Outcome,
        /// What the engine did with it.
        completion: Recorded<Completion>,
    },
    /// A step ended.
    DidStep {
        /// Step number.
        step: u64,
        /// The step's time.
        now: Time,
        /// Tallies of the step's run.
        counts: RunCounts,
        /// The state hash at the end of the step.
        state_hash: StateHash,
    },
    /// One input of the scheduler ([`crate::sched::Scheduler::step`]) in a scheduler trace.
    DidInput {
        /// Its number (1, 2, ...).
        step: u64,
        /// The input, with its time.
        input: Input,
        /// [`Scheduler::state_hash`] after the step.
        state_hash: StateHash,
    },
}

impl Event {
    /// The header of a scheduler trace starting from `sched`'s state: its snapshot is a
    /// [`Scheduler::snapshot`], and the lines that follow are [`Event::DidInput`]s (plus
    /// `did_actuate` lines for display).
    pub fn sched_header(sched: &Scheduler, clock: &str) -> Event {
        Event::Header {
            format: TRACE_FORMAT.to_string(),
            version: TRACE_VERSION,
            clock: clock.to_string(),
            state_hash: StateHash(sched.state_hash()),
            snapshot: hex(&sched.snapshot()),
        }
    }

    /// The header of a trace starting from `engine`'s state.
    pub fn header(engine: &Engine, clock: &str) -> Event {
        let snapshot = engine.snapshot();
        Event::Header {
            format: TRACE_FORMAT.to_string(),
            version: TRACE_VERSION,
            clock: clock.to_string(),
            state_hash: StateHash(engine.state_hash()),
            snapshot: hex(&snapshot),
        }
    }

    /// The `did_actuate` events of a run, in plan order. `plan` is `engine`'s, and the
    /// outcomes are not completed yet (every task's object is live).
    pub(crate) fn actuations(
        step: u64,
        engine: &Engine,
        plan: &Plan,
        report: &RunReport,
    ) -> Vec<Event> {
        plan.tasks
            .iter()
            .zip(&report.states)
            .enumerate()
            .map(|(i, (task, state))| {
                let span = report.spans.get(i).copied().unwrap_or(Span::default());
                let (lane, settled, outcome, held_by) = match state {
                    TaskState::Ran { outcome, lane } => {
                        (Some(*lane), Settled::Ran, Some(outcome.clone()), None)
                    }
                    TaskState::Held { by } => (None, Settled::Held, None, Some(*by)),
                    TaskState::NotRun => (None, Settled::NotRun, None, None),
                };
                let view = engine.view(task.object);
                let (key, model) = (view.key().to_string(), view.model().to_string());
                Event::DidActuate {
                    step,
                    task: i,
                    key,
                    model,
                    kind: task.kind,
                    version: task.version,
                    lane,
                    start_ns: span.start_ns,
                    end_ns: span.end_ns,
                    state: settled,
                    outcome,
                    held_by,
                }
            })
            .collect()
    }

    /// The step number, `None` for the header.
    pub fn step(&self) -> Option<u64> {
        match self {
            Event::Header { .. } => None,
            Event::DidApply { step, .. }
            | Event::DidReportExternal { step, .. }
            | Event::DidPlan { step, .. }
            | Event::DidActuate { step, .. }
            | Event::DidComplete { step, .. }
            | Event::DidStep { step, .. }
            | Event::DidInput { step, .. } => Some(*step),
        }
    }
}

/// Writes a trace: to any writer, or kept in memory.
pub struct Recorder {
    sink: Sink,
    events: usize,
}

enum Sink {
    Writer(Box<dyn Write + Send>),
    Memory(Vec<u8>),
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("events", &self.events)
            .finish()
    }
}

impl Recorder {
    /// A recorder writing JSON lines to `out` (wrap files in a `BufWriter`).
    pub fn new(out: impl Write + Send + 'static) -> Recorder {
        Recorder {
            sink: Sink::Writer(Box::new(out)),
            events: 0,
        }
    }

    /// A recorder keeping the text in memory ([`Recorder::into_text`]).
    pub fn memory() -> Recorder {
        Recorder {
            sink: Sink::Memory(Vec::new()),
            events: 0,
        }
    }

    /// Writes one event as one line.
    ///
    /// # Errors
    /// The writer's error.
    pub fn record(&mut self, event: &Event) -> std::io::Result<()> {
        let out: &mut dyn Write = match &mut self.sink {
            Sink::Writer(w) => w,
            Sink::Memory(v) => v,
        };
        serde_json::to_writer(&mut *out, event).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
        self.events += 1;
        Ok(())
    }

    /// Flushes the writer.
    ///
    /// # Errors
    /// The writer's error.
    pub fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.sink {
            Sink::Writer(w) => w.flush(),
            Sink::Memory(_) => Ok(()),
        }
    }

    /// Events written so far.
    pub fn len(&self) -> usize {
        self.events
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The text of an in-memory recorder (empty for a writer).
    pub fn into_text(self) -> String {
        match self.sink {
            Sink::Memory(v) => String::from_utf8(v).unwrap_or_default(),
            Sink::Writer(_) => String::new(),
        }
    }
}

/// A trace could not be read, or replaying it did not reproduce it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// A line is not a valid event.
    #[error("trace line {line}: {message}")]
    Parse {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The first line is not a header, or the trace is empty.
    #[error("trace has no header line")]
    NoHeader,
    /// The header names another format or version.
    #[error("trace format {format} version {version}; this build reads {TRACE_FORMAT} version {TRACE_VERSION}")]
    Format {
        /// The format found.
        format: String,
        /// The version found.
        version: u32,
    },
    /// The header's snapshot does not restore.
    #[error("trace header snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    /// The header's scheduler snapshot does not restore.
    #[error("trace header scheduler snapshot: {0}")]
    SchedSnapshot(#[from] SchedSnapshotError),
    /// Replaying gave a different result.
    #[error("replay diverged at step {step} (trace line {line}): {what}: recorded {expected}, replayed {found}")]
    Diverged {
        /// The step.
        step: u64,
        /// 1-based trace line.
        line: usize,
        /// What differed.
        what: String,
        /// What the trace says.
        expected: String,
        /// What replaying gave.
        found: String,
    },
}

/// Reads a trace: one [`Event`] per non-empty line.
///
/// # Errors
/// [`ReplayError::Parse`] naming the line.
pub fn parse(reader: impl BufRead) -> Result<Vec<Event>, ReplayError> {
    let mut events = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| ReplayError::Parse {
            line: i + 1,
            message: e.to_string(),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        if line.len() > LINE_LEN_MAX {
            return Err(ReplayError::Parse {
                line: i + 1,
                message: format!("line longer than {LINE_LEN_MAX} bytes"),
            });
        }
        let event = serde_json::from_str(&line).map_err(|e| ReplayError::Parse {
            line: i + 1,
            message: e.to_string(),
        })?;
        events.push(event);
    }
    Ok(events)
}

/// What a successful replay reproduced.
#[derive(Debug)]
pub struct ReplayReport {
    /// Steps replayed.
    pub steps: u64,
    /// Events replayed.
    pub events: usize,
    /// State hashes compared (header, applies, reports, steps).
    pub hashes_checked: usize,
    /// The final state hash.
    pub state_hash: u64,
    /// The engine at the end of the trace.
    pub engine: Engine,
}

/// Replays `events` (see the [module docs](self)); `setup` registers the policies and
/// watchers the recorded engine had, right after the header's snapshot is restored.
///
/// # Errors
/// [`ReplayError::NoHeader`], [`ReplayError::Format`], [`ReplayError::Snapshot`], or
/// [`ReplayError::Diverged`] at the first difference.
pub fn replay(
    events: &[Event],
    setup: impl FnOnce(&mut Engine),
) -> Result<ReplayReport, ReplayError> {
    let Some(Event::Header {
        format,
        version,
        state_hash,
        snapshot,
        ..
    }) = events.first()
    else {
        return Err(ReplayError::NoHeader);
    };
    if format != TRACE_FORMAT || *version != TRACE_VERSION {
        return Err(ReplayError::Format {
            format: format.clone(),
            version: *version,
        });
    }
    let bytes = unhex(snapshot).ok_or_else(|| ReplayError::Parse {
        line: 1,
        message: "snapshot is not hex".to_string(),
    })?;
    if bytes.starts_with(SCHED_MAGIC) {
        return replay_sched(events, &bytes, *state_hash, setup);
    }
    let mut engine = Engine::restore(&bytes)?;
    setup(&mut engine);
    let mut hashes_checked = 0;
    let mut last_step = 0;
    let check_hash = |engine: &Engine, want: StateHash, step: u64, line: usize, what: &str| {
        let found = StateHash(engine.state_hash());
        if found == want {
            Ok(())
        } else {
            Err(ReplayError::Diverged {
                step,
                line,
                what: what.to_string(),
                expected: want.to_string(),
                found: found.to_string(),
            })
        }
    };
    check_hash(&engine, *state_hash, 0, 1, "state hash of the header")?;
    hashes_checked += 1;
    for (i, event) in events.iter().enumerate().skip(1) {
        let line = i + 1;
        let diverged =
            |step: u64, what: &str, expected: String, found: String| ReplayError::Diverged {
                step,
                line,
                what: what.to_string(),
                expected,
                found,
            };
        match event {
            Event::Header { .. } => {
                return Err(ReplayError::Parse {
                    line,
                    message: "a second header".to_string(),
                })
            }
            Event::DidApply {
                step,
                changes,
                result,
                state_hash,
                ..
            } => {
                let got = match engine.apply(changes.clone()) {
                    Ok(r) => Recorded::Ok(r),
                    Err(e) => Recorded::Error(e.to_string()),
                };
                if without_work(&got) != without_work(result) {
                    return Err(diverged(
                        *step,
                        "apply",
                        format!("{result:?}"),
                        format!("{got:?}"),
                    ));
                }
                check_hash(&engine, *state_hash, *step, line, "state hash after apply")?;
                hashes_checked += 1;
            }
            Event::DidReportExternal {
                step,
                key,
                report,
                result,
                state_hash,
                ..
            } => {
                let got = match engine.report_external(key, report.clone()) {
                    Ok(c) => Recorded::Ok(c),
                    Err(e) => Recorded::Error(e.to_string()),
                };
                if &got != result {
                    return Err(diverged(
                        *step,
                        "external report",
                        format!("{result:?}"),
                        format!("{got:?}"),
                    ));
                }
                check_hash(
                    &engine,
                    *state_hash,
                    *step,
                    line,
                    "state hash after external report",
                )?;
                hashes_checked += 1;
            }
            Event::DidPlan { step, now, plan } => {
                let got = engine.plan(*now);
                if &got != plan {
                    return Err(diverged(
                        *step,
                        "plan",
                        format!("{} tasks, {} holds", plan.tasks.len(), plan.holds.len()),
                        format!("{} tasks, {} holds", got.tasks.len(), got.holds.len()),
                    ));
                }
            }
            Event::DidActuate { .. } => {}
            Event::DidInput { .. } => {
                return Err(ReplayError::Parse {
                    line,
                    message: "a scheduler input in an engine trace".to_string(),
                })
            }
            Event::DidComplete {
                step,
                at,
                object,
                outcome,
                completion,
                ..
            } => {
                let got = match engine.complete(object, outcome.clone(), *at) {
                    Ok(c) => Recorded::Ok(c),
                    Err(e) => Recorded::Error(e.to_string()),
                };
                if &got != completion {
                    return Err(diverged(
                        *step,
                        "completion",
                        format!("{completion:?}"),
                        format!("{got:?}"),
                    ));
                }
            }
            Event::DidStep {
                step, state_hash, ..
            } => {
                check_hash(
                    &engine,
                    *state_hash,
                    *step,
                    line,
                    "state hash at the end of the step",
                )?;
                hashes_checked += 1;
                last_step = *step;
            }
        }
    }
    Ok(ReplayReport {
        steps: last_step,
        events: events.len(),
        hashes_checked,
        state_hash: engine.state_hash(),
        engine,
    })
}

/// Replays a scheduler trace: restores the header's [`Scheduler`] snapshot, then applies
/// every `did_input` with [`Scheduler::step`] and compares the state hash after it.
fn replay_sched(
    events: &[Event],
    snapshot: &[u8],
    header_hash: StateHash,
    setup: impl FnOnce(&mut Engine),
) -> Result<ReplayReport, ReplayError> {
    let mut sched = Scheduler::restore(snapshot)?;
    setup(sched.engine_mut());
    let diverged =
        |step: u64, line: usize, what: &str, want: StateHash, found: u64| ReplayError::Diverged {
            step,
            line,
            what: what.to_string(),
            expected: want.to_string(),
            found: StateHash(found).to_string(),
        };
    if sched.state_hash() != header_hash.0 {
        return Err(diverged(
            0,
            1,
            "state hash of the header",
            header_hash,
            sched.state_hash(),
        ));
    }
    let mut hashes_checked = 1;
    let mut steps = 0;
    let mut out = Vec::new();
    for (i, event) in events.iter().enumerate().skip(1) {
        let line = i + 1;
        match event {
            Event::DidInput {
                step,
                input,
                state_hash,
            } => {
                out.clear();
                sched.step(input.clone(), &mut out);
                let found = sched.state_hash();
                if found != state_hash.0 {
                    return Err(diverged(
                        *step,
                        line,
                        "state hash after the input",
                        *state_hash,
                        found,
                    ));
                }
                hashes_checked += 1;
                steps = *step;
            }
            Event::DidActuate { .. } => {}
            _ => {
                return Err(ReplayError::Parse {
                    line,
                    message: "an engine event in a scheduler trace (only did_input and did_actuate may follow a scheduler header)".to_string(),
                })
            }
        }
    }
    Ok(ReplayReport {
        steps,
        events: events.len(),
        hashes_checked,
        // The engine's hash, as an engine trace reports it (and `syncore run` prints).
        state_hash: sched.engine().state_hash(),
        engine: sched.into_engine(),
    })
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// The bytes of lowercase or uppercase hex text; `None` if it is not hex.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    let t = text.as_bytes();
    if !t.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    t.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// An apply result without its work counters (`touched_objects`, `touched_edges`): they
/// measure the path `apply` took (the bulk path or the general one, which depends on how
/// the values are spelled, and a change set read back from JSON may spell them loosely),
/// not what it did, so replay compares everything else.
fn without_work(r: &Recorded<ApplyReport>) -> Recorded<ApplyReport> {
    match r {
        Recorded::Ok(report) => Recorded::Ok(ApplyReport {
            touched_objects: 0,
            touched_edges: 0,
            ..report.clone()
        }),
        Recorded::Error(e) => Recorded::Error(e.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        let bytes = vec![0u8, 1, 0xab, 0xff];
        assert_eq!(hex(&bytes), "0001abff");
        assert_eq!(unhex("0001ABff"), Some(bytes));
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
    }

    #[test]
    fn state_hash_is_sixteen_hex_digits() {
        let json = serde_json::to_string(&StateHash(0xab)).unwrap();
        assert_eq!(json, "\"00000000000000ab\"");
        let back: StateHash = serde_json::from_str(&json).unwrap();
        assert_eq!(back, StateHash(0xab));
        assert!(serde_json::from_str::<StateHash>("\"xyz\"").is_err());
    }

    #[test]
    fn parse_names_the_bad_line() {
        let text = "{\"event\":\"did_step\",\"step\":1,\"now\":0,\"counts\":{\"ok\":0,\"failed\":0,\"deferred\":0,\"held\":0,\"not_run\":0},\"state_hash\":\"0000000000000000\"}\nnot json\n";
        match parse(text.as_bytes()) {
            Err(ReplayError::Parse { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected a parse error, got {other:?}"),
        }
        assert!(matches!(replay(&[], |_| {}), Err(ReplayError::NoHeader)));
    }
}
