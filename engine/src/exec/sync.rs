//! The synchronisation primitives the executor uses, in one place, so that a model
//! checker (loom, shuttle) can be swapped in here without touching the pool.

pub(crate) use parking_lot::{Condvar, Mutex};
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
