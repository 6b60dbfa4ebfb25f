//! What the scheduler needs from the engine beyond its public API, as crate-private
//! methods. This file is a child module of `engine` (declared there), so it reads the
//! store directly; it writes only through the store's own setters.

use super::Engine;
use crate::id::{ModelId, ObjectId};
use crate::schema::ModelKind;

impl Engine {
    /// Makes a synced, actuated object due again without a new version (a re-sync: R9).
    /// Returns false (and changes nothing) if it is gone, deleting, already unsettled, or
    /// not actuated.
    pub(crate) fn mark_resync(&mut self, id: ObjectId) -> bool {
        if !self.store.alive(id) || self.store.is_unsettled(id) {
            return false;
        }
        if self.schema.model(self.store.model(id)).kind != ModelKind::Actuated {
            return false;
        }
        // `enacted = 0` reads "not enacted": the planner makes it a task at its current
        // version, and its completion sets `enacted` back (R8 compares versions only).
        self.store.set_enacted(id, 0);
        self.store.refresh_unsettled(id);
        true
    }

    /// Consecutive failures of a live object's current work (0 if gone).
    pub(crate) fn failures_of(&self, id: ObjectId) -> u32 {
        if self.store.alive(id) {
            self.store.backoff(id).failures
        } else {
            0
        }
    }

    /// Whether `id` is a live object.
    pub(crate) fn alive(&self, id: ObjectId) -> bool {
        self.store.alive(id)
    }

    /// The model of a live object.
    pub(crate) fn model_of(&self, id: ObjectId) -> ModelId {
        self.store.model(id)
    }

    /// The objects linking to `id` (its direct referrers), as `f` is called, in store order.
    pub(crate) fn for_each_referrer(&self, id: ObjectId, mut f: impl FnMut(ObjectId)) {
        for &e in self.store.rdeps(id) {
            f(crate::graph::target(e));
        }
    }

    /// The declarative version of a live object.
    pub(crate) fn version_of(&self, id: ObjectId) -> u64 {
        self.store.version(id)
    }

    /// The store's slot count (ids are below it).
    pub(crate) fn id_capacity(&self) -> usize {
        self.store.capacity()
    }
}
