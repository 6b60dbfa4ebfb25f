//! The table of actuations in flight: one [`Lease`] per object at most.
//!
//! Leases live in a slab as long as the number in flight (its entries stay in cache, and
//! freed entries are reused), found by object id through a dense `u32` index: a lookup
//! reads 4 bytes of an object-sized array instead of a whole lease per object id, and a
//! replan finds the tasks in flight by walking the slab, not the plan. Each lease also
//! remembers the plan task it was dispatched from, so that its delivery finds that task
//! again without a lookup by object id.

use crate::id::ObjectId;

use super::Lease;

/// No lease for this object.
const NONE: u32 = u32::MAX;

/// The plan task a lease was dispatched from: task `node` of plan number `plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PlanSlot {
    pub(super) plan: u64,
    pub(super) node: u32,
}

/// A lease and where it came from (`None`: restored from a snapshot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Held {
    pub(super) lease: Lease,
    pub(super) from: Option<PlanSlot>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct Leases {
    /// Per object id: the slab entry of its lease, or [`NONE`].
    of: Vec<u32>,
    /// The leases; `None` entries are free, listed in `free`.
    slab: Vec<Option<Held>>,
    free: Vec<u32>,
}

impl Leases {
    /// Leases in flight.
    pub(super) fn len(&self) -> usize {
        self.slab.len() - self.free.len()
    }

    /// The lease of `id`, if any.
    #[inline]
    pub(super) fn get(&self, id: ObjectId) -> Option<&Lease> {
        let k = *self.of.get(id.index())?;
        if k == NONE {
            return None;
        }
        self.slab[k as usize].as_ref().map(|h| &h.lease)
    }

    /// Records `lease`; its object must hold none. `ids` is the engine's id capacity: the
    /// index is sized for every id at once (growing it one id at a time would copy it
    /// again and again as ids arrive in any order).
    pub(super) fn insert(&mut self, held: Held, ids: usize) {
        let i = held.lease.task.object.index();
        if self.of.len() <= i {
            self.of.resize(ids.max(i + 1), NONE);
        }
        debug_assert_eq!(self.of[i], NONE, "one lease per object");
        let k = match self.free.pop() {
            Some(k) => {
                self.slab[k as usize] = Some(held);
                k
            }
            None => {
                self.slab.push(Some(held));
                (self.slab.len() - 1) as u32
            }
        };
        self.of[i] = k;
    }

    /// Ends the lease of `id`, if any.
    #[inline]
    pub(super) fn remove(&mut self, id: ObjectId) -> Option<Held> {
        let slot = self.of.get_mut(id.index())?;
        let k = std::mem::replace(slot, NONE);
        if k == NONE {
            return None;
        }
        let held = self.slab[k as usize].take();
        self.free.push(k);
        held
    }

    /// The leases, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.slab.iter().flatten().map(|h| &h.lease)
    }

    /// The leases in object id order.
    pub(super) fn by_object(&self) -> Vec<&Lease> {
        let mut v: Vec<&Lease> = self.iter().collect();
        v.sort_unstable_by_key(|l| l.task.object);
        v
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::actuator::TaskKind;
    use crate::id::{ModelId, Time};
    use crate::plan::Task;
    use crate::sched::LeaseId;

    fn lease(object: u32, seq: u64) -> Lease {
        Lease {
            id: LeaseId {
                seq,
                object: ObjectId(object),
            },
            task: Task {
                object: ObjectId(object),
                model: ModelId(0),
                version: seq,
                kind: TaskKind::Sync,
            },
            started: Time(seq),
            attempt: 1,
            deadline: None,
        }
    }

    proptest! {
        /// The table agrees with a map from object to lease under any sequence of inserts
        /// and removes, and lists its leases in object id order.
        #[test]
        fn agrees_with_a_map(ops in prop::collection::vec((0u32..40, any::<bool>()), 0..300)) {
            let mut t = Leases::default();
            let mut model = std::collections::BTreeMap::new();
            for (seq, (object, put)) in ops.into_iter().enumerate() {
                let id = ObjectId(object);
                if put && !model.contains_key(&object) {
                    let l = lease(object, seq as u64);
                    t.insert(Held { lease: l, from: None }, 8);
                    model.insert(object, l);
                } else if !put {
                    prop_assert_eq!(t.remove(id).map(|h| h.lease), model.remove(&object));
                }
                prop_assert_eq!(t.get(id), model.get(&object));
                prop_assert_eq!(t.len(), model.len());
            }
            let listed: Vec<Lease> = t.by_object().into_iter().copied().collect();
            prop_assert_eq!(listed, model.into_values().collect::<Vec<_>>());
        }
    }
}
