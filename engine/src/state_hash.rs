//! The state hash, maintained incrementally (O(1) per [`crate::Engine::state_hash`] call).
//!
//! The hash is a function of the state alone: the wrapping sum, over every slot of the
//! store, of two 64-bit hashes of that slot's contents, its *body* (id, key, model, born,
//! owner, values, dependencies) and its *status* (id, version, enacted version, backoff,
//! message), so a completion, which writes only the status, rehashes a few words; a free
//! slot contributes 0. Plus a term per free-list position (`free[p]` at position `p`), a
//! term for the next version to hand out, and the hash of the schema and configuration.
//! Addition commutes, so the order in which objects were written cannot matter; equal
//! states give equal sums.
//!
//! Maintenance: every store writer *marks* the slot (or only its status) it is about to
//! write. The first mark of a slot part subtracts its current hash from the sum and records
//! the slot as dirty; [`SlotHashes::flush`] adds the hash of each dirty part's new contents
//! back. Reading the hash between a mark and a flush is still exact (the dirty parts are
//! hashed on the fly), so a mutation path that forgets to flush costs time, never
//! correctness. A completion's status write, the hot path, instead swaps the slot's status
//! hash in place ([`SlotHashes::rewrite_status`]: the old one out, the new one in), with no
//! dirty-list work. A path that forgets to mark is caught by the debug assertion in
//! [`crate::Engine::state_hash`] and by the property test below, which compare with the
//! full recomputation.

use crate::graph::Edge;
use crate::store::{Backoff, Meta, StoreData, DEAD};
use crate::value::Value;

/// A small deterministic word hasher (no random seed: hashes must agree across processes).
#[derive(Clone, Copy)]
pub(crate) struct WordHasher(u64);

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl WordHasher {
    pub(crate) fn new(seed: u64) -> WordHasher {
        WordHasher(seed ^ 0x243F_6A88_85A3_08D3)
    }
    #[inline]
    pub(crate) fn word(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
    }
    #[inline]
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.word(b.len() as u64);
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(last));
        }
    }
    /// The final, well-mixed hash (murmur3's finaliser).
    #[inline]
    pub(crate) fn finish(self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        z = (z ^ (z >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        z ^ (z >> 33)
    }
}

fn value(h: &mut WordHasher, v: &Value) {
    match v {
        Value::Null => h.word(0),
        Value::Bool(b) => {
            h.word(1);
            h.word(u64::from(*b));
        }
        Value::Int(i) => {
            h.word(2);
            h.word(*i as u64);
        }
        Value::Float(x) => {
            h.word(3);
            h.word(x.to_bits());
        }
        Value::Str(s) => {
            h.word(4);
            h.bytes(s.as_bytes());
        }
        Value::Bytes(b) => {
            h.word(5);
            h.bytes(b);
        }
        Value::Ref(s) => {
            h.word(6);
            h.bytes(s.as_bytes());
        }
        Value::Refs(ks) => {
            h.word(7);
            h.word(ks.len() as u64);
            for k in ks {
                h.bytes(k.as_bytes());
            }
        }
        Value::Json(s) => {
            h.word(8);
            h.bytes(s.as_bytes());
        }
    }
}

/// The hash of slot `i`'s contents; 0 for a free slot: its [`body`] plus its [`status`].
pub(crate) fn slot(d: &StoreData, i: usize) -> u64 {
    body(d, i).wrapping_add(status(d, i))
}

/// The hash of what a change set writes in slot `i` (key, model, born, owner, values,
/// dependencies); 0 for a free slot.
pub(crate) fn body(d: &StoreData, i: usize) -> u64 {
    // Every field of the store is named here or in `status`, so a new one cannot be left
    // out of the hash unnoticed: per-object arrays are hashed by the two; `free` and
    // `next_version` have their own terms; `unsettled` is derived from the rest (restore
    // checks it).
    let StoreData {
        keys: _,
        model: _,
        meta: _,
        owner: _,
        values: _,
        deps: _,
        messages: _,
        free: _,
        unsettled: _,
        next_version: _,
    } = d;
    let model = d.model[i];
    let Meta {
        version: _,
        born,
        enacted: _,
        backoff: _,
    } = d.meta[i];
    if model == DEAD {
        return 0;
    }
    let mut h = WordHasher::new(i as u64);
    h.bytes(d.keys[i].as_bytes());
    h.word(u64::from(model.0));
    h.word(born);
    h.word(u64::from(d.owner[i]));
    h.word(d.values[i].len() as u64);
    for v in d.values[i].iter() {
        value(&mut h, v);
    }
    let deps: &[Edge] = d.deps.get(i);
    h.word(deps.len() as u64);
    for &e in deps {
        h.word(u64::from(e));
    }
    h.finish() | 1
}

/// The hash of what a completion writes in slot `i` (version, enacted version, backoff,
/// message): a few words, so a completion never rehashes an object's values. 0 for a free
/// slot.
pub(crate) fn status(d: &StoreData, i: usize) -> u64 {
    if d.model[i] == DEAD {
        return 0;
    }
    let Meta {
        version,
        born: _,
        enacted,
        backoff,
    } = d.meta[i];
    let mut h = WordHasher::new(!(i as u64));
    h.word(version);
    h.word(enacted);
    let Backoff {
        retry_at,
        failures,
        flags,
    } = backoff;
    h.word(retry_at.0);
    h.word(u64::from(failures) << 8 | u64::from(flags));
    // Most objects have no message: the map is then often empty, and not searched.
    let message = if d.messages.is_empty() {
        None
    } else {
        d.messages.get(&(i as u32))
    };
    match message {
        Some(m) => {
            h.word(1);
            h.bytes(m.as_bytes());
        }
        None => h.word(0),
    }
    h.finish()
}

/// The term of free-list position `pos` holding slot `id`.
#[inline]
pub(crate) fn free_term(pos: usize, id: u32) -> u64 {
    let mut h = WordHasher::new(u64::MAX);
    h.word(pos as u64);
    h.word(u64::from(id));
    h.finish()
}

/// The term of the next version to hand out.
#[inline]
fn version_term(next_version: u64) -> u64 {
    let mut h = WordHasher::new(u64::MAX - 1);
    h.word(next_version);
    h.finish()
}

/// Slots marked since the last flush, for one part of the slot hash.
#[derive(Clone, Debug, Default)]
struct Dirty {
    /// One bit per slot.
    bits: Vec<u64>,
    /// The marked slots.
    list: Vec<u32>,
}

impl Dirty {
    /// Marks slot `i`; false if it already was.
    #[inline]
    fn mark(&mut self, i: usize) -> bool {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        if w >= self.bits.len() {
            self.bits.resize(w + 1, 0);
        }
        if self.bits[w] & b != 0 {
            return false;
        }
        self.bits[w] |= b;
        self.list.push(i as u32);
        true
    }

    /// Whether slot `i` is marked.
    #[inline]
    fn is_marked(&self, i: usize) -> bool {
        self.bits
            .get(i / 64)
            .is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    /// The sum of `part` over the marked slots, which are then unmarked.
    fn drain(&mut self, d: &StoreData, part: fn(&StoreData, usize) -> u64) -> u64 {
        let mut sum = 0u64;
        for &i in &self.list {
            let i = i as usize;
            self.bits[i / 64] &= !(1 << (i % 64));
            sum = sum.wrapping_add(part(d, i));
        }
        if self.list.capacity() > 4096 {
            self.list = Vec::new();
        } else {
            self.list.clear();
        }
        sum
    }

    fn sum(&self, d: &StoreData, part: fn(&StoreData, usize) -> u64) -> u64 {
        self.list
            .iter()
            .fold(0u64, |s, &i| s.wrapping_add(part(d, i as usize)))
    }
}

/// The incrementally maintained sum, with its dirty slots (each slot's hash is kept in two
/// parts, [`body`] and [`status`], marked separately).
#[derive(Clone, Debug, Default)]
pub(crate) struct SlotHashes {
    /// Sum of the hashes of every clean slot part, plus the free-list terms.
    sum: u64,
    body: Dirty,
    status: Dirty,
}

impl SlotHashes {
    /// The full recomputation over `d`.
    pub(crate) fn full(d: &StoreData) -> u64 {
        let mut sum = 0u64;
        for i in 0..d.keys.len() {
            sum = sum.wrapping_add(slot(d, i));
        }
        for (p, &f) in d.free.iter().enumerate() {
            sum = sum.wrapping_add(free_term(p, f));
        }
        sum.wrapping_add(version_term(d.next_version))
    }

    /// The sums of a freshly built store.
    pub(crate) fn new(d: &StoreData) -> SlotHashes {
        let words = d.keys.len().div_ceil(64);
        SlotHashes {
            sum: SlotHashes::full(d).wrapping_sub(version_term(d.next_version)),
            body: Dirty {
                bits: vec![0; words],
                list: Vec::new(),
            },
            status: Dirty {
                bits: vec![0; words],
                list: Vec::new(),
            },
        }
    }

    /// Marks slot `i` before any of it is written (it may be one past the end: a slot
    /// about to be pushed, whose contribution so far is 0).
    #[inline]
    pub(crate) fn mark(&mut self, d: &StoreData, i: usize) {
        if self.body.mark(i) && i < d.keys.len() {
            self.sum = self.sum.wrapping_sub(body(d, i));
        }
        self.mark_status(d, i);
    }

    /// Marks slot `i` before its [`status`] part (version, enacted, backoff, message) is
    /// written, and nothing else of it.
    #[inline]
    pub(crate) fn mark_status(&mut self, d: &StoreData, i: usize) {
        if self.status.mark(i) && i < d.keys.len() {
            self.sum = self.sum.wrapping_sub(status(d, i));
        }
    }

    /// Writes the [`status`] part of live slot `i` with `write` and keeps the sum exact
    /// at once (its old hash out, its new one in) instead of marking the slot for the next
    /// flush: a completion's one status write costs two short hashes and no dirty-list
    /// work. A slot already marked is only written; its flush adds the new hash.
    #[inline]
    pub(crate) fn rewrite_status(
        &mut self,
        d: &mut StoreData,
        i: usize,
        write: impl FnOnce(&mut StoreData),
    ) {
        if self.status.is_marked(i) {
            write(d);
            return;
        }
        let old = status(d, i);
        write(d);
        self.sum = self.sum.wrapping_sub(old).wrapping_add(status(d, i));
    }

    /// A slot pushed onto the free list at position `pos`.
    #[inline]
    pub(crate) fn free_pushed(&mut self, pos: usize, id: u32) {
        self.sum = self.sum.wrapping_add(free_term(pos, id));
    }

    /// The slot popped from free-list position `pos`.
    #[inline]
    pub(crate) fn free_popped(&mut self, pos: usize, id: u32) {
        self.sum = self.sum.wrapping_sub(free_term(pos, id));
    }

    /// Adds the dirty slots' new hashes back.
    pub(crate) fn flush(&mut self, d: &StoreData) {
        if self.body.list.is_empty() && self.status.list.is_empty() {
            return;
        }
        let added = self
            .body
            .drain(d, body)
            .wrapping_add(self.status.drain(d, status));
        self.sum = self.sum.wrapping_add(added);
    }

    /// The current hash of the store's state: O(1) after a flush, O(dirty slots) before.
    pub(crate) fn get(&self, d: &StoreData) -> u64 {
        self.sum
            .wrapping_add(self.body.sum(d, body))
            .wrapping_add(self.status.sum(d, status))
            .wrapping_add(version_term(d.next_version))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::{Change, ChangeSet, Config, Engine, ExternalReport, Outcome, Schema, Time, Value};

    const SCHEMA: &str = r#"{"models": [
      {"name": "Site", "fields": [{"name": "x", "type": "int"}], "feedback": [{"name": "ip", "type": "string"}]},
      {"name": "Ext", "kind": "external"},
      {"name": "Slice", "fields": [{"name": "site", "type": "ref"}, {"name": "ext", "type": "ref"}, {"name": "x", "type": "int"}],
       "links": [{"field": "site", "target": "Site"}, {"field": "ext", "target": "Ext"}]},
      {"name": "Tag", "fields": [{"name": "on", "type": "ref"}], "links": [{"field": "on", "target": "Site", "proxy": true}]}]}"#;

    #[derive(Clone, Debug)]
    enum Op {
        Upsert { model: u8, key: u8, x: i64, to: u8 },
        Delete { key: u8 },
        Complete { nth: u8, outcome: u8 },
        Report { key: u8, ok: bool },
        Restore,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..4, 0u8..6, 0i64..3, 0u8..6)
                .prop_map(|(model, key, x, to)| Op::Upsert { model, key, x, to }),
            1 => (0u8..6).prop_map(|key| Op::Delete { key }),
            4 => (0u8..8, 0u8..4).prop_map(|(nth, outcome)| Op::Complete { nth, outcome }),
            1 => (0u8..6, any::<bool>()).prop_map(|(key, ok)| Op::Report { key, ok }),
            1 => Just(Op::Restore),
        ]
    }

    fn key(model: u8, k: u8) -> String {
        format!("{}{k}", ["site", "ext", "slice", "tag"][model as usize])
    }

    fn run(engine: &mut Engine, op: &Op, now: Time) {
        match *op {
            Op::Upsert {
                model,
                key: k,
                x,
                to,
            } => {
                let fields: Vec<(&str, Value)> = match model {
                    0 => vec![("x", Value::Int(x))],
                    1 => vec![],
                    2 => vec![
                        ("site", Value::Ref(key(0, to))),
                        (
                            "ext",
                            if x == 0 {
                                Value::Null
                            } else {
                                Value::Ref(key(1, to))
                            },
                        ),
                        ("x", Value::Int(x)),
                    ],
                    _ => vec![("on", Value::Ref(key(0, to)))],
                };
                let model_name = ["Site", "Ext", "Slice", "Tag"][model as usize];
                let _ = engine.apply(ChangeSet::from(vec![Change::upsert(
                    key(model, k),
                    model_name,
                    fields,
                )]));
            }
            Op::Delete { key: k } => {
                let _ = engine.apply(ChangeSet::new().delete(key(k % 4, k)));
            }
            Op::Complete { nth, outcome } => {
                let plan = engine.plan(now);
                if plan.tasks.is_empty() {
                    return;
                }
                let task = plan.tasks[nth as usize % plan.tasks.len()];
                let outcome = match outcome {
                    0 => Outcome::failed("boom"),
                    1 => Outcome::deferred("later"),
                    2 => Outcome::ok_with([("ip", format!("10.0.0.{nth}"))]),
                    _ => Outcome::ok(),
                };
                let _ = engine.complete(&task, outcome, now);
            }
            Op::Report { key: k, ok } => {
                let version = engine.object(&key(1, k)).map_or(0, |o| o.version);
                let report = if ok {
                    ExternalReport::Synced { version }
                } else {
                    ExternalReport::Failed {
                        version,
                        message: "down".into(),
                    }
                };
                let _ = engine.report_external(&key(1, k), report);
            }
            Op::Restore => {
                *engine = Engine::restore(&engine.snapshot()).expect("own snapshot restores");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The incremental hash equals the full recomputation after every operation, and
        /// two engines' hashes agree exactly when their snapshots do.
        #[test]
        fn incremental_state_hash_matches_full_recomputation(
            a in proptest::collection::vec(op(), 0..40),
            b in proptest::collection::vec(op(), 0..40),
        ) {
            let schema = Schema::from_json(SCHEMA).unwrap();
            let mut ea = Engine::new(schema.clone(), Config::default());
            let mut eb = Engine::new(schema, Config::default());
            for (i, op) in a.iter().enumerate() {
                run(&mut ea, op, Time(i as u64 * 100));
                prop_assert_eq!(ea.state_hash(), ea.state_hash_full(), "after {:?}", op);
            }
            for (i, op) in b.iter().enumerate() {
                run(&mut eb, op, Time(i as u64 * 100));
                prop_assert_eq!(eb.state_hash(), eb.state_hash_full(), "after {:?}", op);
            }
            let same_bytes = ea.snapshot() == eb.snapshot();
            prop_assert_eq!(same_bytes, ea.state_hash() == eb.state_hash());
        }
    }

    /// Equal states reached by different orders of the same writes hash equal.
    #[test]
    fn state_hash_is_a_function_of_the_state() {
        let schema = Schema::from_json(SCHEMA).unwrap();
        let mut a = Engine::new(schema.clone(), Config::default());
        let mut b = Engine::new(schema, Config::default());
        a.apply(ChangeSet::new().upsert("s1", "Site", [("x", 1i64)]).upsert(
            "s2",
            "Site",
            [("x", 2i64)],
        ))
        .unwrap();
        b.apply(ChangeSet::new().upsert("s2", "Site", [("x", 2i64)]).upsert(
            "s1",
            "Site",
            [("x", 1i64)],
        ))
        .unwrap();
        assert_eq!(a.state_hash(), b.state_hash());
        assert_eq!(a.snapshot(), b.snapshot());
        let restored = Engine::restore(&a.snapshot()).unwrap();
        assert_eq!(restored.state_hash(), a.state_hash());
        a.apply(ChangeSet::new().upsert("s1", "Site", [("x", 3i64)]))
            .unwrap();
        assert_ne!(a.state_hash(), b.state_hash());
    }
}
