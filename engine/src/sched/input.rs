//! The recorded input of the scheduler and the one function that applies it.
//!
//! Every driver reduces what happens to it to a sequence of [`Input`]s, each with its
//! time, and applies them with [`Scheduler::step`]; the state after each step is a pure
//! function of the scheduler's starting state and the inputs so far. A durable log of
//! inputs (see [`Input::to_bytes`]) therefore replays to identical state hashes
//! ([`Scheduler::replay`]).

use serde::{Deserialize, Serialize};

use super::{Delivery, Dispatch, LeaseId, Scheduler};
use crate::actuator::Outcome;
use crate::change::{ApplyReport, ChangeSet};
use crate::complete::{Completion, ExternalReport};
use crate::error::{ChangeError, CompleteError};
use crate::id::{ObjectId, Time};

/// One input of the scheduler, with its time. The unit of the recorded trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "input")]
pub enum Input {
    /// A change set arrived ([`Scheduler::apply`]).
    Apply {
        /// The changes.
        changes: ChangeSet,
        /// When.
        now: Time,
    },
    /// An actuation ended ([`Scheduler::deliver`]).
    Deliver {
        /// Its lease.
        lease: LeaseId,
        /// What it returned.
        outcome: Outcome,
        /// When.
        now: Time,
    },
    /// A report about an external object ([`Scheduler::report_external`]).
    Report {
        /// The object.
        key: String,
        /// The report.
        report: ExternalReport,
        /// When.
        now: Time,
    },
    /// Time passed ([`Scheduler::tick`]): timeouts, re-syncs and backoff expiries due.
    Tick {
        /// Now.
        now: Time,
    },
    /// Shutdown began: no further dispatch ([`Scheduler::shutdown`]).
    Shutdown {
        /// When.
        now: Time,
    },
}

impl Input {
    /// The input's time.
    pub fn now(&self) -> Time {
        match self {
            Input::Apply { now, .. }
            | Input::Deliver { now, .. }
            | Input::Report { now, .. }
            | Input::Tick { now }
            | Input::Shutdown { now } => *now,
        }
    }

    /// Encodes the input (bincode, behind a one-byte format version): what a durable log
    /// stores. Change sets and external reports are embedded as their canonical JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        let wire = match self {
            Input::Apply { changes, now } => Wire::Apply {
                changes: serde_json::to_string(changes).expect("change sets serialise"),
                now: now.0,
            },
            Input::Deliver {
                lease,
                outcome,
                now,
            } => Wire::Deliver {
                seq: lease.seq,
                object: lease.object.0,
                outcome: outcome.clone(),
                now: now.0,
            },
            Input::Report { key, report, now } => Wire::Report {
                key: key.clone(),
                report: serde_json::to_string(report).expect("reports serialise"),
                now: now.0,
            },
            Input::Tick { now } => Wire::Tick { now: now.0 },
            Input::Shutdown { now } => Wire::Shutdown { now: now.0 },
        };
        let mut out = vec![INPUT_FORMAT];
        out.extend(
            bincode::encode_to_vec(&wire, bincode::config::standard()).expect("inputs encode"),
        );
        out
    }

    /// Decodes [`Input::to_bytes`].
    ///
    /// # Errors
    /// [`InputDecodeError`] for other versions or malformed bytes; never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Input, InputDecodeError> {
        let (&version, rest) = bytes.split_first().ok_or(InputDecodeError::Empty)?;
        if version != INPUT_FORMAT {
            return Err(InputDecodeError::Version {
                found: version,
                expected: INPUT_FORMAT,
            });
        }
        let config = bincode::config::standard().with_limit::<{ 1 << 30 }>();
        let (wire, used): (Wire, usize) = bincode::decode_from_slice(rest, config)
            .map_err(|e| InputDecodeError::Malformed(e.to_string()))?;
        if used != rest.len() {
            return Err(InputDecodeError::Malformed(format!(
                "{} trailing bytes",
                rest.len() - used
            )));
        }
        let json = |e: serde_json::Error| InputDecodeError::Malformed(e.to_string());
        Ok(match wire {
            Wire::Apply { changes, now } => Input::Apply {
                changes: serde_json::from_str(&changes).map_err(json)?,
                now: Time(now),
            },
            Wire::Deliver {
                seq,
                object,
                outcome,
                now,
            } => Input::Deliver {
                lease: LeaseId {
                    seq,
                    object: ObjectId(object),
                },
                outcome,
                now: Time(now),
            },
            Wire::Report { key, report, now } => Input::Report {
                key,
                report: serde_json::from_str(&report).map_err(json)?,
                now: Time(now),
            },
            Wire::Tick { now } => Input::Tick { now: Time(now) },
            Wire::Shutdown { now } => Input::Shutdown { now: Time(now) },
        })
    }
}

/// The format version byte of [`Input::to_bytes`].
const INPUT_FORMAT: u8 = 1;

#[derive(bincode::Encode, bincode::Decode)]
enum Wire {
    Apply {
        changes: String,
        now: u64,
    },
    Deliver {
        seq: u64,
        object: u32,
        outcome: Outcome,
        now: u64,
    },
    Report {
        key: String,
        report: String,
        now: u64,
    },
    Tick {
        now: u64,
    },
    Shutdown {
        now: u64,
    },
}

/// Input bytes that do not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputDecodeError {
    /// No bytes.
    #[error("empty input record")]
    Empty,
    /// Another format version.
    #[error("input record format {found}, expected {expected}")]
    Version {
        /// Found.
        found: u8,
        /// Expected.
        expected: u8,
    },
    /// Malformed content.
    #[error("malformed input record: {0}")]
    Malformed(String),
}

/// What [`Scheduler::step`] did with an input.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// The change set was applied.
    Applied(ApplyReport),
    /// The change set was refused; nothing changed (hand it back to its sender).
    Refused(ChangeError),
    /// A delivery.
    Delivered(Delivery),
    /// An external report, or why it was refused.
    Reported(Result<Completion, CompleteError>),
    /// A tick.
    Ticked,
    /// Shutdown began.
    ShutDown,
}

impl Scheduler {
    /// Applies one input, then hands out every task that may start at its time (pushed to
    /// `dispatched`, in dispatch order). **The** transition function: drivers call it for
    /// everything they do, record the inputs, and [`Scheduler::replay`] calls it again.
    ///
    /// A refused change set or report changes nothing (not even the clock) and dispatches
    /// nothing, so a durable log need not record it.
    ///
    /// Deterministic: the same starting state and input sequence give the same effects,
    /// dispatches and state hashes, whatever the thread timing that produced the sequence.
    pub fn step(&mut self, input: Input, dispatched: &mut Vec<Dispatch>) -> Effect {
        let now = input.now();
        let effect = match input {
            Input::Apply { changes, now } => match self.apply(changes, now) {
                Ok(r) => Effect::Applied(r),
                Err(e) => Effect::Refused(e),
            },
            Input::Deliver {
                lease,
                outcome,
                now,
            } => Effect::Delivered(self.deliver(lease, outcome, now)),
            Input::Report { key, report, now } => {
                Effect::Reported(self.report_external(&key, report, now))
            }
            Input::Tick { now } => {
                self.tick(now);
                Effect::Ticked
            }
            Input::Shutdown { now } => {
                self.shutdown(now);
                Effect::ShutDown
            }
        };
        if matches!(effect, Effect::Refused(_) | Effect::Reported(Err(_))) {
            // A refused input changes nothing, the clock included.
            return effect;
        }
        while let Some(d) = self.poll_dispatch(now) {
            dispatched.push(d);
        }
        effect
    }

    /// Applies `inputs` with [`Scheduler::step`], returning the state hash after each.
    pub fn replay(&mut self, inputs: impl IntoIterator<Item = Input>) -> Vec<u64> {
        let mut out = Vec::new();
        inputs
            .into_iter()
            .map(|i| {
                out.clear();
                self.step(i, &mut out);
                self.state_hash()
            })
            .collect()
    }
}
