//! Watch-triggered re-syncs (R9, R18): an object whose model watches a field of a model it
//! links to is re-actuated when that field of an object it links to changes: a feedback
//! field by a completion, a declarative field by a change set.

use std::collections::BTreeMap;

use super::Scheduler;
use crate::actuator::TaskKind;
use crate::change::{ApplyReport, Change, ChangeSet};
use crate::id::{ModelId, ObjectId};
use crate::plan::Task;
use crate::value::Value;

/// Declarative fields of watched objects before a change set, by key.
pub(super) type Before = BTreeMap<String, Vec<(String, Value)>>;

impl Scheduler {
    /// Whether some model watches `model`.
    fn watched(&self, model: ModelId) -> bool {
        self.any_watch
            && self
                .engine
                .schema()
                .models()
                .iter()
                .any(|m| m.watches.iter().any(|(t, _)| *t == model))
    }

    /// The declarative fields, before `changes`, of the watched objects it upserts.
    pub(super) fn watched_before(&self, changes: &ChangeSet) -> Option<Before> {
        if !self.any_watch {
            return None;
        }
        let mut before = Before::new();
        for c in &changes.changes {
            let Change::Upsert { key, .. } = c else {
                continue;
            };
            let Some(view) = self.engine.view_key(key) else {
                continue;
            };
            if !self.watched(self.engine.model_of(view.id())) {
                continue;
            }
            let fields = view
                .fields()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            before.insert(key.clone(), fields);
        }
        Some(before)
    }

    /// Re-syncs the watchers of declarative fields `report` changed.
    pub(super) fn watch_resync_after_apply(&mut self, before: Before, report: &ApplyReport) {
        for key in &report.changed {
            let Some(old) = before.get(key) else { continue };
            let Some(view) = self.engine.view_key(key) else {
                continue;
            };
            let changed: Vec<String> = view
                .fields()
                .zip(old.iter())
                .filter(|((_, new), (_, old))| *new != old)
                .map(|((k, _), _)| k.to_string())
                .collect();
            let id = view.id();
            self.resync_watchers(id, &changed);
        }
    }

    /// The feedback of `task`'s object before its completion, if anything watches it.
    pub(super) fn watched_feedback_before(&self, task: Task) -> Option<Vec<Value>> {
        if !self.any_watch
            || task.kind != TaskKind::Sync
            || !self.engine.alive(task.object)
            || !self.watched(task.model)
        {
            return None;
        }
        Some(
            self.engine
                .view(task.object)
                .feedbacks()
                .map(|(_, v)| v.clone())
                .collect(),
        )
    }

    /// Re-syncs the watchers of feedback fields the completion of `id` changed.
    pub(super) fn watch_resync_after_complete(&mut self, id: ObjectId, before: Vec<Value>) {
        if !self.engine.alive(id) {
            return;
        }
        let changed: Vec<String> = self
            .engine
            .view(id)
            .feedbacks()
            .zip(before.iter())
            .filter(|((_, new), old)| new != old)
            .map(|((k, _), _)| k.to_string())
            .collect();
        self.resync_watchers(id, &changed);
    }

    /// Re-syncs each referrer of `id` whose model watches one of `changed` of its model. A
    /// referrer in flight is re-synced once its actuation completes.
    fn resync_watchers(&mut self, id: ObjectId, changed: &[String]) {
        if changed.is_empty() {
            return;
        }
        let model = self.engine.model_of(id);
        let mut referrers = Vec::new();
        self.engine.for_each_referrer(id, |r| referrers.push(r));
        referrers.sort_unstable();
        referrers.dedup();
        for r in referrers {
            let rm = self.engine.model_of(r);
            let schema = self.engine.schema();
            let Some((_, filter)) = schema.model(rm).watches.iter().find(|(t, _)| *t == model)
            else {
                continue;
            };
            let hit = match filter {
                None => true,
                Some(set) => set.is_empty() || changed.iter().any(|f| set.contains(f)),
            };
            if !hit {
                continue;
            }
            if self.lease(r).is_some() {
                self.rerun.insert(r.0);
            } else if self.engine.mark_resync(r) {
                self.stats.watch_resyncs += 1;
                self.dirty = true;
            }
        }
    }
}
