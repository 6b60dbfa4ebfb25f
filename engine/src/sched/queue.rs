//! The ready queue: dispatchable tasks in (priority, eligible time, object id) order, with
//! tasks of a model at its concurrency limit parked aside so they hold back no other model.

use std::collections::BinaryHeap;

use crate::id::Time;

/// A queued task. Its `rank` packs the order into one integer, so that the heap's many
/// comparisons are one each: the greatest rank starts first (highest priority, then
/// earliest eligible time, then lowest object id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    rank: u128,
    task: u32,
    model: u16,
}

impl Entry {
    fn new(prio: i32, eligible: Time, object: u32, task: u32, model: u16) -> Entry {
        // The sign bit flipped orders i32 priorities as unsigned; the time and the id are
        // inverted so that the earlier and the lower rank higher.
        let prio = u128::from((prio as u32) ^ 0x8000_0000);
        let rank = prio << 96 | u128::from(!eligible.0) << 32 | u128::from(!object);
        Entry { rank, task, model }
    }
}

/// See the module docs.
#[derive(Debug)]
pub(super) struct Ready {
    heap: BinaryHeap<Entry>,
    parked: Vec<BinaryHeap<Entry>>,
    parked_len: usize,
}

impl Ready {
    pub(super) fn new(models: usize) -> Ready {
        Ready {
            heap: BinaryHeap::new(),
            parked: vec![BinaryHeap::new(); models],
            parked_len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.heap.len() + self.parked_len
    }

    pub(super) fn clear(&mut self) {
        self.heap.clear();
        for p in &mut self.parked {
            p.clear();
        }
        self.parked_len = 0;
    }

    pub(super) fn push(&mut self, prio: i32, eligible: Time, object: u32, task: u32, model: u16) {
        self.heap
            .push(Entry::new(prio, eligible, object, task, model));
    }

    /// The best task whose model `may_start`; tasks of models that may not are parked.
    pub(super) fn pop(&mut self, may_start: impl Fn(u16) -> bool) -> Option<u32> {
        while let Some(e) = self.heap.pop() {
            if may_start(e.model) {
                return Some(e.task);
            }
            self.parked[e.model as usize].push(e);
            self.parked_len += 1;
        }
        None
    }

    /// A slot of `model` came free: its best parked task competes again.
    pub(super) fn unpark(&mut self, model: u16) {
        if self.parked_len == 0 {
            return;
        }
        if let Some(e) = self.parked[model as usize].pop() {
            self.parked_len -= 1;
            self.heap.push(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Tasks leave in (priority highest first, eligible time earliest first, object id
        /// lowest first) order, whatever the order they were queued in.
        #[test]
        fn pops_in_rank_order(tasks in prop::collection::vec(
            (any::<i32>(), any::<u64>(), any::<u32>()), 0..64)) {
            let mut q = Ready::new(1);
            for (k, &(prio, at, object)) in tasks.iter().enumerate() {
                q.push(prio, Time(at), object, k as u32, 0);
            }
            let mut want: Vec<u32> = (0..tasks.len() as u32).collect();
            want.sort_by(|&a, &b| {
                let (pa, ta, oa) = tasks[a as usize];
                let (pb, tb, ob) = tasks[b as usize];
                pb.cmp(&pa).then(ta.cmp(&tb)).then(oa.cmp(&ob))
            });
            let mut got = Vec::new();
            while let Some(t) = q.pop(|_| true) {
                got.push(t);
            }
            // Equal ranks (same priority, time and object) may leave in either order.
            let key = |t: &u32| tasks[*t as usize];
            prop_assert_eq!(got.iter().map(key).collect::<Vec<_>>(), want.iter().map(key).collect::<Vec<_>>());
        }
    }
}
