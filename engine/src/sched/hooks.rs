//! What the scheduler needs from the engine beyond its public API, as crate-private
//! methods. This file is a child module of `engine` (declared there), so it reads the
//! store directly; it writes only through the store's own setters.

use super::Engine;
use crate::graph;
use crate::id::{ModelId, ObjectId, Time};
use crate::schema::ModelKind;
use crate::store::Store;

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

    /// How `id`, an actuated object that just became unsettled, would enter the plan being
    /// run without a new one (the scheduler's fold): its nearest unsettled prerequisites,
    /// through settled objects as a plan finds them (R1), go into `out`. `false` if it is
    /// not that plain a case: a prerequisite being deleted (a plan would hold it, R7), an
    /// unsettled object that now waits for `id` (a plan would order that one after it),
    /// more than `budget` objects to visit either way, or `id` itself backing off, being
    /// deleted or not actuated.
    pub(crate) fn fold_prerequisites(
        &self,
        id: ObjectId,
        now: Time,
        budget: usize,
        out: &mut Vec<ObjectId>,
    ) -> bool {
        let store = &self.store;
        if !store.alive(id)
            || store.deleting(id)
            || store.backoff(id).backing_off(now)
            || self.schema.model(store.model(id)).kind != ModelKind::Actuated
        {
            return false;
        }
        // Dependents first: any unsettled one, reached through settled objects, refuses.
        let mut seen = vec![id.0];
        let mut stack = vec![id];
        while let Some(x) = stack.pop() {
            let mut refused = false;
            for_each_effective_dependent(store, x, |y| {
                if refused || seen.contains(&y.0) {
                    return;
                }
                seen.push(y.0);
                refused = store.is_unsettled(y) || seen.len() > budget;
                stack.push(y);
            });
            if refused {
                return false;
            }
        }
        seen.clear();
        seen.push(id.0);
        stack.push(id);
        while let Some(x) = stack.pop() {
            let mut refused = false;
            graph::for_each_effective_dep(store, x, |d| {
                if refused || seen.contains(&d.0) {
                    return;
                }
                seen.push(d.0);
                if seen.len() > budget || store.is_unsettled(d) && store.deleting(d) {
                    refused = true;
                } else if store.is_unsettled(d) {
                    out.push(d);
                } else {
                    stack.push(d);
                }
            });
            if refused {
                return false;
            }
        }
        true
    }

    /// The store's slot count (ids are below it).
    pub(crate) fn id_capacity(&self) -> usize {
        self.store.capacity()
    }
}

/// Calls `f` with every object that has `id` among its effective dependencies
/// ([`graph::for_each_effective_dep`]'s inverse; duplicates possible): its referrers, and,
/// when `id` extends a base (and is not being deleted), the base's other plain referrers.
fn for_each_effective_dependent(store: &Store, id: ObjectId, mut f: impl FnMut(ObjectId)) {
    for &r in store.rdeps(id) {
        f(graph::target(r));
    }
    if store.deleting(id) {
        return;
    }
    for &e in store.deps(id) {
        if graph::is_proxy(e) {
            for &r in store.rdeps(graph::target(e)) {
                if !graph::is_proxy(r) && graph::target(r) != id {
                    f(graph::target(r));
                }
            }
        }
    }
}
