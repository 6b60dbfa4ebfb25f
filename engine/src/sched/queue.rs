//! The ready queue: dispatchable tasks in (priority, eligible time, object id) order, with
//! tasks of a model at its concurrency limit parked aside so they hold back no other model.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::id::Time;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    prio: i32,
    eligible: Time,
    object: u32,
    task: u32,
    model: u16,
}

impl Ord for Entry {
    /// The greatest entry starts first: highest priority, then earliest, then lowest id.
    fn cmp(&self, other: &Self) -> Ordering {
        self.prio
            .cmp(&other.prio)
            .then_with(|| other.eligible.cmp(&self.eligible))
            .then_with(|| other.object.cmp(&self.object))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
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
        self.heap.push(Entry {
            prio,
            eligible,
            object,
            task,
            model,
        });
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
        if let Some(e) = self.parked[model as usize].pop() {
            self.parked_len -= 1;
            self.heap.push(e);
        }
    }
}
