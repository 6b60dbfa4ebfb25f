//! The inputs the service logs, each with its time, and the one function that applies an
//! input to an engine: used live and for replay, so a replayed log gives the same state.

use serde::{Deserialize, Serialize};
use syncore::{
    ApplyReport, ChangeError, ChangeSet, CompleteError, Completion, Engine, ExternalReport,
    Outcome, Task, Time,
};

/// One accepted input, as it is logged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// A change set applied at `at`.
    Apply {
        /// When it was applied (ms since the Unix epoch).
        at: Time,
        /// The change set.
        changes: ChangeSet,
    },
    /// A report about an external object (R17).
    Report {
        /// When it was received.
        at: Time,
        /// The object.
        key: String,
        /// The report.
        report: ExternalReport,
    },
    /// The outcome of an actuation, delivered at `at`.
    Deliver {
        /// When it was delivered.
        at: Time,
        /// The task that ran.
        task: Task,
        /// What it ended with.
        outcome: Outcome,
    },
}

/// What applying an input gave.
#[derive(Debug)]
pub enum Applied {
    /// A change set's report.
    Apply(Result<ApplyReport, ChangeError>),
    /// A report's or delivery's completion.
    Complete(Result<Completion, CompleteError>),
}

impl Input {
    /// The input's time.
    pub fn at(&self) -> Time {
        match self {
            Input::Apply { at, .. } | Input::Report { at, .. } | Input::Deliver { at, .. } => *at,
        }
    }

    /// Encodes the input for the log.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a logged input.
    ///
    /// # Errors
    /// The decoder's message.
    pub fn decode(bytes: &[u8]) -> Result<Input, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    /// Applies the input to `engine`: a pure function of the engine state and the input.
    pub fn apply_to(&self, engine: &mut Engine) -> Applied {
        match self {
            Input::Apply { changes, .. } => Applied::Apply(engine.apply(changes.clone())),
            Input::Report { key, report, .. } => {
                Applied::Complete(engine.report_external(key, report.clone()))
            }
            Input::Deliver { at, task, outcome } => {
                Applied::Complete(engine.complete(task, outcome.clone(), *at))
            }
        }
    }
}
