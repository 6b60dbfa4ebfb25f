//! Folding an applied change set into the plan being run.
//!
//! A change set that creates or updates plain objects (actuated, not waited for by anything
//! unsettled, waiting only for tasks of the current plan that have not completed) adds their
//! tasks to the current plan at the cost of their own edges, instead of a new plan of
//! everything unsettled: a stream of small change sets, each applied while earlier work is
//! in flight, costs what it changes (R15). Anything else (deletes, model-level waits, an
//! object the plan already holds or runs, a prerequisite that failed or is held, a long
//! walk) plans again, as before. The result is the plan a new plan would make for those
//! objects: each waits for its nearest unsettled prerequisites (R1) and is queued once they
//! have completed; what differs is only that tasks already queued keep their eligible time.

use super::{Scheduler, Slot};
use crate::actuator::TaskKind;
use crate::change::ApplyReport;
use crate::id::{ObjectId, Time};
use crate::plan::Task;

/// Objects visited at most, per changed object and direction, before planning again.
const WALK_BUDGET: usize = 64;

impl Scheduler {
    /// Adds the tasks of the objects `report` changed to the current plan; `false` (and
    /// nothing changed) when a new plan must be made instead.
    pub(super) fn fold(&mut self, report: &ApplyReport, now: Time) -> bool {
        if self.dirty
            || self.any_model_deps
            || !report.deleted.is_empty()
            || !report.removed.is_empty()
        {
            return false;
        }
        // Decide for every object before changing anything.
        let mut adds: Vec<(Task, Vec<u32>)> = Vec::with_capacity(report.changed.len());
        let mut pre: Vec<ObjectId> = Vec::new();
        for key in &report.changed {
            let Some(id) = self.engine.id(key) else {
                return false;
            };
            if self.lease(id).is_some() || self.cur.index_of(id).is_some() {
                return false;
            }
            pre.clear();
            if !self
                .engine
                .fold_prerequisites(id, now, WALK_BUDGET, &mut pre)
            {
                return false;
            }
            let mut waits = Vec::with_capacity(pre.len());
            for &p in &pre {
                let Some(t) = self.cur.index_of(p) else {
                    return false;
                };
                let task = self.cur.tasks[t as usize];
                let current =
                    task.kind == TaskKind::Sync && task.version == self.engine.version_of(p);
                let open = matches!(
                    self.cur.slot[t as usize],
                    Slot::Waiting | Slot::Queued | Slot::Running
                );
                if !current || !open {
                    return false;
                }
                waits.push(t);
            }
            let task = Task {
                object: id,
                model: self.engine.model_of(id),
                version: self.engine.version_of(id),
                kind: TaskKind::Sync,
            };
            adds.push((task, waits));
        }
        for (task, waits) in adds {
            let i = self.cur.tasks.len() as u32;
            // Without model-level waits a plan has no barrier nodes: task i is node i.
            debug_assert_eq!(self.cur.pending.len(), self.cur.tasks.len());
            self.cur.tasks.push(task);
            self.cur.pending.push(waits.len() as u32);
            self.cur.slot.push(Slot::Waiting);
            self.cur.eligible.push(now);
            let at = task.object.index();
            if self.cur.task_of.len() <= at {
                self.cur
                    .task_of
                    .resize(self.engine.id_capacity().max(at + 1), u32::MAX);
            }
            self.cur.task_of[at] = i;
            if let Some(&p) = self
                .config
                .object_priority
                .get(self.engine.key(task.object))
            {
                self.object_prio.insert(task.object.0, p);
            }
            for w in &waits {
                self.cur.late.entry(*w).or_default().push(i);
            }
            if waits.is_empty() {
                self.queue(i, now);
            }
        }
        true
    }
}
