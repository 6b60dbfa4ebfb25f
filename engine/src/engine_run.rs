//! Feeding a whole run back into the engine: [`Engine::complete_run`].
//!
//! Kept apart from `engine.rs` because it belongs to the executor's contract: outcomes are
//! collected while workers run (in whatever order they finish) and applied afterwards in
//! plan order, so the engine's state after a run is the same for 1 or 64 threads (R12).

use crate::complete::Completion;
use crate::engine::Engine;
use crate::error::CompleteError;
use crate::exec::{RunReport, TaskState};
use crate::id::Time;
use crate::plan::Plan;

impl Engine {
    /// Feeds back every outcome of `report` (a run of `plan`) at `now`, in plan order.
    /// Held and not-run tasks change nothing: they stay pending, and the next plan holds
    /// them behind the failed dependency (R3) or runs them.
    ///
    /// Returns the completion of each task, by task index (`None`: not run).
    ///
    /// # Errors
    /// The first [`CompleteError`] (a task's object is gone: `plan` is not this engine's);
    /// the tasks before it are completed.
    ///
    /// # Complexity
    /// One [`Engine::complete`] per task run.
    pub fn complete_run(
        &mut self,
        plan: &Plan,
        report: &RunReport,
        now: Time,
    ) -> Result<Vec<Option<Completion>>, CompleteError> {
        self.complete_run_at(plan, report, |_| now)
    }

    /// [`Engine::complete_run`] with a completion time per task (`at(task index)`), as the
    /// simulator uses for actuations that take virtual time.
    ///
    /// # Errors
    /// As [`Engine::complete_run`].
    pub fn complete_run_at(
        &mut self,
        plan: &Plan,
        report: &RunReport,
        at: impl Fn(usize) -> Time,
    ) -> Result<Vec<Option<Completion>>, CompleteError> {
        let mut out = Vec::with_capacity(plan.tasks.len());
        for (i, (task, state)) in plan.tasks.iter().zip(&report.states).enumerate() {
            out.push(match state {
                TaskState::Ran { outcome, .. } => {
                    Some(self.complete(task, outcome.clone(), at(i))?)
                }
                TaskState::Held { .. } | TaskState::NotRun => None,
            });
        }
        Ok(out)
    }
}
