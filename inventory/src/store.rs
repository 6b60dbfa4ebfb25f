//! The inventory's data: collections of records by key, with ids the service assigns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The collections the service serves, in path order (`/v1/<collection>/<key>`).
pub const COLLECTIONS: [&str; 3] = ["networks", "instances", "ports"];

/// One record: what a client PUT under a key, and the id the service gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The service's id for the record: `<singular>-<12 hex digits>`, a hash of the collection
    /// and the key, so a PUT of the same key (a retry) always yields the same id.
    pub id: String,
    /// The client's key (the last path segment).
    pub key: String,
    /// The fields of the last PUT (a JSON object).
    pub fields: Map<String, Value>,
    /// How many PUTs changed the fields (1 after the create).
    pub revision: u64,
}

/// What a PUT did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    /// A new record.
    Created,
    /// An existing record got new fields.
    Updated,
    /// An existing record already had these fields: nothing changed.
    Unchanged,
}

/// Every collection's records, sorted by key (deterministic listings).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    collections: BTreeMap<String, BTreeMap<String, Record>>,
}

impl Records {
    /// The records of `collection` by key (empty for a collection with none).
    pub fn collection(&self, collection: &str) -> BTreeMap<String, Record> {
        self.collections
            .get(collection)
            .cloned()
            .unwrap_or_default()
    }

    /// One record.
    pub fn get(&self, collection: &str, key: &str) -> Option<&Record> {
        self.collections.get(collection)?.get(key)
    }

    /// Every record, by collection then key.
    pub fn all(&self) -> &BTreeMap<String, BTreeMap<String, Record>> {
        &self.collections
    }

    /// Number of records over all collections.
    pub fn len(&self) -> usize {
        self.collections.values().map(BTreeMap::len).sum()
    }

    /// Whether no collection holds a record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Creates or replaces the record `key` (idempotent: the same fields twice change nothing).
    pub(crate) fn put(
        &mut self,
        collection: &str,
        key: &str,
        fields: Map<String, Value>,
    ) -> (Put, Record) {
        let records = self.collections.entry(collection.to_string()).or_default();
        match records.get_mut(key) {
            Some(record) if record.fields == fields => (Put::Unchanged, record.clone()),
            Some(record) => {
                record.fields = fields;
                record.revision += 1;
                (Put::Updated, record.clone())
            }
            None => {
                let record = Record {
                    id: id(collection, key),
                    key: key.to_string(),
                    fields,
                    revision: 1,
                };
                records.insert(key.to_string(), record.clone());
                (Put::Created, record)
            }
        }
    }

    /// Removes the record `key`; whether it existed.
    pub(crate) fn delete(&mut self, collection: &str, key: &str) -> bool {
        let Some(records) = self.collections.get_mut(collection) else {
            return false;
        };
        let removed = records.remove(key).is_some();
        if records.is_empty() {
            self.collections.remove(collection);
        }
        removed
    }
}

/// The id of `key` in `collection`: the singular of the collection and 48 bits of an FNV-1a
/// hash of `collection/key`.
pub fn id(collection: &str, key: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in collection.bytes().chain([b'/']).chain(key.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let singular = collection.strip_suffix('s').unwrap_or(collection);
    format!("{singular}-{:012x}", hash & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn put_by_key_is_idempotent_and_keeps_the_id() {
        let mut records = Records::default();
        let (put, a) = records.put("networks", "net-a", fields(json!({"name": "a"})));
        assert_eq!(put, Put::Created);
        let (put, again) = records.put("networks", "net-a", fields(json!({"name": "a"})));
        assert_eq!((put, &again), (Put::Unchanged, &a));
        let (put, b) = records.put("networks", "net-a", fields(json!({"name": "b"})));
        assert_eq!((put, &b.id, b.revision), (Put::Updated, &a.id, 2));
        assert_eq!(records.len(), 1);
        assert!(a.id.starts_with("network-"), "{}", a.id);
        assert_ne!(id("networks", "x"), id("ports", "x"));
    }

    #[test]
    fn delete_removes_once() {
        let mut records = Records::default();
        records.put("ports", "p", Map::new());
        assert!(records.delete("ports", "p"));
        assert!(!records.delete("ports", "p"));
        assert!(records.is_empty());
    }
}
