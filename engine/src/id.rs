//! Dense identifiers and logical time.

use serde::{Deserialize, Serialize};

/// The dense internal id of an object: an index into the store's arrays.
///
/// Ids are assigned deterministically (new keys of a change set in key order, reusing freed
/// slots last-freed first) and are valid until the object is deleted; a [`crate::Task`]
/// also carries the object's version, so a reused id can never be confused with its
/// previous owner.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    bincode::Encode,
    bincode::Decode,
)]
pub struct ObjectId(pub u32);

impl ObjectId {
    /// The id as an index.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The dense id of a model: its index in the schema.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    bincode::Encode,
    bincode::Decode,
)]
pub struct ModelId(pub u16);

impl ModelId {
    /// The id as an index.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Logical time in milliseconds, passed in by the caller: the engine never reads a clock.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    bincode::Encode,
    bincode::Decode,
)]
pub struct Time(pub u64);

impl Time {
    /// `self + ms`, saturating at the end of time.
    #[inline]
    pub fn after(self, ms: u64) -> Time {
        Time(self.0.saturating_add(ms))
    }
}

impl std::fmt::Display for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "t={}ms", self.0)
    }
}
