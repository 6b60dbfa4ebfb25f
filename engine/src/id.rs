//! Dense identifiers and logical time.

use std::hash::BuildHasher;

use serde::{Deserialize, Serialize};

use crate::keys::Keys;

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

/// The hasher of the key indexes: foldhash, seeded at random per index (keys come from
/// users, so the seed must not be predictable), several times faster than SipHash on
/// short keys. The indexes are only looked up, so the seed reaches no output.
pub(crate) type KeyHasher = foldhash::fast::RandomState;

/// Key -> id interning: a hash table of ids that hashes through the store's key array, so
/// each key is stored once (about 5 bytes per object instead of a second copy of the key).
///
/// Only looked up, never iterated: its order cannot leak into any output (R12).
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyIndex {
    table: hashbrown::HashTable<u32>,
    hasher: KeyHasher,
}

impl KeyIndex {
    /// The id of `key`, given the key array the ids index.
    #[inline]
    pub(crate) fn get(&self, key: &str, keys: &Keys) -> Option<u32> {
        let h = self.hasher.hash_one(key);
        self.table.find(h, |&id| &keys[id as usize] == key).copied()
    }

    /// Adds `id`, whose key is already in `keys[id]`.
    pub(crate) fn insert(&mut self, id: u32, keys: &Keys) {
        let hasher = &self.hasher;
        let h = hasher.hash_one(&keys[id as usize]);
        self.table
            .insert_unique(h, id, |&i| hasher.hash_one(&keys[i as usize]));
    }

    /// Adds `id` unless its key is already present (then returns false, adding nothing).
    pub(crate) fn insert_new(&mut self, id: u32, keys: &Keys) -> bool {
        let hasher = &self.hasher;
        let key = &keys[id as usize];
        let h = hasher.hash_one(key);
        match self.table.entry(
            h,
            |&i| &keys[i as usize] == key,
            |&i| hasher.hash_one(&keys[i as usize]),
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(id);
                true
            }
        }
    }

    /// Removes `key`, while `keys` still holds it.
    pub(crate) fn remove(&mut self, key: &str, keys: &Keys) {
        let h = self.hasher.hash_one(key);
        if let Ok(entry) = self.table.find_entry(h, |&id| &keys[id as usize] == key) {
            entry.remove();
        }
    }

    /// Reserves room for `n` more keys.
    pub(crate) fn reserve(&mut self, n: usize, keys: &Keys) {
        let hasher = &self.hasher;
        self.table
            .reserve(n, |&i| hasher.hash_one(&keys[i as usize]));
    }

    /// Buckets allocated.
    pub(crate) fn capacity(&self) -> usize {
        self.table.capacity()
    }
}
