//! The object store: dense arrays indexed by [`ObjectId`].
//!
//! Every object has a key, a model, a declarative version, the version last enacted, its
//! field values (declarative then feedback), its backoff state and its dependency edges.
//! The arrays are struct-of-arrays so that planning touches only what it reads. Setters are
//! `pub(crate)`: only `change` (apply) and `complete` write.

use std::collections::BTreeMap;

use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};

use crate::edges::{EdgeLists, RefLists};
use crate::graph::{self, Edge};
use crate::id::{KeyIndex, ModelId, ObjectId, Time};
use crate::idset::IdSet;
use crate::keys::Keys;
use crate::state_hash::SlotHashes;
use crate::value::Value;
use crate::value_lists::ValueLists;

/// The model id of a free slot.
pub(crate) const DEAD: ModelId = ModelId(u16::MAX);

/// The owner of an object nothing owns.
pub(crate) const NO_OWNER: u32 = u32::MAX;

/// Per-object outcome state: backoff (R5, R6), external reports (R17), deletion (R7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub(crate) struct Backoff {
    /// When the object is eligible again (meaningful while `failures > 0` or `deferred`).
    pub retry_at: Time,
    /// Consecutive failures of the current version (sync or delete); reset on success and on
    /// a new declarative version.
    pub failures: u32,
    /// Flags: [`DELETING`], [`DEFERRED`], [`EXTERNAL_FAILED`].
    pub flags: u8,
}

/// The object is being deleted (R7).
pub(crate) const DELETING: u8 = 1;
/// The last outcome was `Deferred` (R6).
pub(crate) const DEFERRED: u8 = 2;
/// The embedder reported an external object failed (R17).
pub(crate) const EXTERNAL_FAILED: u8 = 4;

impl Backoff {
    pub(crate) fn deleting(&self) -> bool {
        self.flags & DELETING != 0
    }
    pub(crate) fn deferred(&self) -> bool {
        self.flags & DEFERRED != 0
    }
    pub(crate) fn external_failed(&self) -> bool {
        self.flags & EXTERNAL_FAILED != 0
    }
    /// Whether the object waits on its own timer at `now`.
    pub(crate) fn backing_off(&self, now: Time) -> bool {
        (self.failures > 0 || self.deferred()) && self.retry_at > now
    }
}

/// The per-object fields that planning and a completion read together, in one record: a
/// completion touches one cache line of it instead of one in each of four arrays (ids
/// arrive in any order, so each array access is a miss). The model stays an array of its
/// own: it is all a liveness check reads, and small enough to stay in cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Declarative version; drawn from one engine-wide counter, so versions never repeat
    /// and a reused id never matches a stale task (R8).
    pub version: u64,
    /// The first version of the object now in the slot: a task with an older version was
    /// planned for an earlier object in the same slot (R8).
    pub born: u64,
    /// The version last synced; `0`: never.
    pub enacted: u64,
    pub backoff: Backoff,
}

/// The persistent part of the store (what a snapshot carries). Its encoding has one array
/// per field (see [`StoreData`]'s `Encode`), whatever the layout in memory.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct StoreData {
    pub keys: Keys,
    /// [`DEAD`] for a free slot.
    pub model: Vec<ModelId>,
    /// Versions and backoff, per slot.
    pub meta: Vec<Meta>,
    /// The object whose policy created this one and which owns it (R10), or [`NO_OWNER`].
    pub owner: Vec<u32>,
    /// Declarative values then feedback values, as many as the model has.
    pub values: ValueLists,
    /// Dependencies (link targets), sorted, deduplicated, tagged with [`graph::PROXY`]:
    /// one list per slot, all in one array.
    pub deps: EdgeLists,
    /// Messages of objects in error or deferred.
    pub messages: BTreeMap<u32, String>,
    /// Free slots, reused last-freed first.
    pub free: Vec<u32>,
    /// Live objects with work: `enacted != version`, or deleting.
    pub unsettled: IdSet,
    /// The next declarative version to hand out.
    pub next_version: u64,
}

/// One array of `meta`'s field `f`, encoded as a `Vec` of it is.
fn encode_column<E: Encoder, T: Encode>(
    e: &mut E,
    meta: &[Meta],
    f: impl Fn(&Meta) -> T,
) -> Result<(), EncodeError> {
    (meta.len() as u64).encode(e)?;
    meta.iter().try_for_each(|m| f(m).encode(e))
}

/// The snapshot format: the fields in declaration order, with `meta` as four arrays in the
/// places they have always had (versions after the models, `enacted` after the owners,
/// backoff after the values).
impl Encode for StoreData {
    fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        self.keys.encode(e)?;
        self.model.encode(e)?;
        encode_column(e, &self.meta, |m| m.version)?;
        encode_column(e, &self.meta, |m| m.born)?;
        self.owner.encode(e)?;
        encode_column(e, &self.meta, |m| m.enacted)?;
        self.values.encode(e)?;
        encode_column(e, &self.meta, |m| m.backoff)?;
        self.deps.encode(e)?;
        self.messages.encode(e)?;
        self.free.encode(e)?;
        self.unsettled.encode(e)?;
        self.next_version.encode(e)
    }
}

impl<Context> Decode<Context> for StoreData {
    fn decode<D: Decoder<Context = Context>>(d: &mut D) -> Result<StoreData, DecodeError> {
        let keys = Keys::decode(d)?;
        let model = Vec::<ModelId>::decode(d)?;
        let version = Vec::<u64>::decode(d)?;
        let born = Vec::<u64>::decode(d)?;
        let owner = Vec::<u32>::decode(d)?;
        let enacted = Vec::<u64>::decode(d)?;
        let values = ValueLists::decode(d)?;
        let backoff = Vec::<Backoff>::decode(d)?;
        let n = version.len();
        if [born.len(), enacted.len(), backoff.len()]
            .iter()
            .any(|&l| l != n)
        {
            return Err(DecodeError::Other("array lengths differ"));
        }
        let meta = (0..n)
            .map(|i| Meta {
                version: version[i],
                born: born[i],
                enacted: enacted[i],
                backoff: backoff[i],
            })
            .collect();
        Ok(StoreData {
            keys,
            model,
            meta,
            owner,
            values,
            deps: Decode::decode(d)?,
            messages: Decode::decode(d)?,
            free: Decode::decode(d)?,
            unsettled: Decode::decode(d)?,
            next_version: Decode::decode(d)?,
        })
    }
}

bincode::impl_borrow_decode!(StoreData);

/// The store: persistent data plus indexes derived from it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Store {
    pub d: StoreData,
    /// Referrers of each object (who links to it), tagged with [`graph::PROXY`] when the
    /// referrer's link is a proxy (it extends this object). Derived from `deps`.
    pub rdeps: RefLists,
    /// Key -> id. Lookups only: never iterated, so its order cannot leak.
    pub index: KeyIndex,
    /// Base -> its extensions (objects with a proxy link to it, R16). Lookups only; the
    /// order inside each list never reaches an output (planning sorts what it derives).
    pub exts: std::collections::HashMap<u32, Vec<u32>>,
    /// Owner -> the objects it owns (R10). Lookups only; users sort what they read.
    pub owned: std::collections::HashMap<u32, Vec<u32>>,
    /// Live objects.
    pub live_count: usize,
    /// Declarative field count per model (from the schema).
    pub decl_counts: Vec<u16>,
    /// The state hash, kept up to date by every writer below.
    pub hash: SlotHashes,
}

impl Store {
    pub(crate) fn new(decl_counts: Vec<u16>) -> Store {
        Store {
            d: StoreData {
                next_version: 1,
                ..Default::default()
            },
            decl_counts,
            ..Default::default()
        }
    }

    /// Rebuilds derived indexes from persistent data (after restore), refusing data they
    /// cannot be built from: a live object's key given twice, or an edge to a slot outside
    /// the arrays (the rest is [`crate::snapshot`]'s consistency check). The arrays must
    /// have equal lengths. Each key is hashed once; referrer lists are sized exactly.
    pub(crate) fn from_data(d: StoreData, decl_counts: Vec<u16>) -> Result<Store, String> {
        let n = d.keys.len();
        let mut rdeg = vec![0u32; n];
        let mut index = KeyIndex::default();
        index.reserve(n, &d.keys);
        let mut exts: std::collections::HashMap<u32, Vec<u32>> = std::collections::HashMap::new();
        let mut owned: std::collections::HashMap<u32, Vec<u32>> = std::collections::HashMap::new();
        let mut live_count = 0;
        for id in 0..n {
            if d.model[id] == DEAD {
                continue;
            }
            live_count += 1;
            if !index.insert_new(id as u32, &d.keys) {
                return Err(format!("object {id}: duplicate key"));
            }
            for &e in d.deps.get(id) {
                let t = graph::target(e).index();
                if t >= n {
                    return Err(format!("object {id}: edge to slot {t} out of range"));
                }
                rdeg[t] += 1;
            }
        }
        let mut rdeps = RefLists::with_rooms(&rdeg);
        drop(rdeg);
        for id in 0..n {
            if d.model[id] == DEAD {
                continue;
            }
            if d.owner[id] != NO_OWNER {
                owned.entry(d.owner[id]).or_default().push(id as u32);
            }
            for &e in d.deps.get(id) {
                rdeps.push(graph::target(e).index(), graph::retag(id as u32, e));
                if graph::is_proxy(e) {
                    exts.entry(graph::target(e).0).or_default().push(id as u32);
                }
            }
        }
        let hash = SlotHashes::new(&d);
        Ok(Store {
            d,
            rdeps,
            index,
            exts,
            owned,
            live_count,
            decl_counts,
            hash,
        })
    }

    /// Slots in the arrays (live and free).
    pub(crate) fn capacity(&self) -> usize {
        self.d.keys.len()
    }
    pub(crate) fn alive(&self, id: ObjectId) -> bool {
        id.index() < self.d.model.len() && self.d.model[id.index()] != DEAD
    }
    pub(crate) fn id_of(&self, key: &str) -> Option<ObjectId> {
        self.index.get(key, &self.d.keys).map(ObjectId)
    }
    pub(crate) fn key(&self, id: ObjectId) -> &str {
        &self.d.keys[id.index()]
    }
    pub(crate) fn model(&self, id: ObjectId) -> ModelId {
        self.d.model[id.index()]
    }
    pub(crate) fn version(&self, id: ObjectId) -> u64 {
        self.d.meta[id.index()].version
    }
    pub(crate) fn enacted(&self, id: ObjectId) -> u64 {
        self.d.meta[id.index()].enacted
    }
    pub(crate) fn backoff(&self, id: ObjectId) -> &Backoff {
        &self.d.meta[id.index()].backoff
    }
    pub(crate) fn deleting(&self, id: ObjectId) -> bool {
        self.d.meta[id.index()].backoff.deleting()
    }
    /// Declarative values (the first `n_decl` values).
    pub(crate) fn fields(&self, id: ObjectId) -> &[Value] {
        self.d.values[id.index()]
            .get(..self.n_decl(id))
            .unwrap_or(&[])
    }
    /// Feedback values.
    pub(crate) fn feedback(&self, id: ObjectId) -> &[Value] {
        self.d.values[id.index()]
            .get(self.n_decl(id)..)
            .unwrap_or(&[])
    }
    fn n_decl(&self, id: ObjectId) -> usize {
        self.decl_counts
            .get(self.model(id).index())
            .copied()
            .unwrap_or(0) as usize
    }
    pub(crate) fn deps(&self, id: ObjectId) -> &[Edge] {
        self.d.deps.get(id.index())
    }
    /// Edges of every object.
    pub(crate) fn edge_count(&self) -> usize {
        self.d.deps.edge_count()
    }
    pub(crate) fn rdeps(&self, id: ObjectId) -> &[Edge] {
        self.rdeps.get(id.index())
    }
    /// Whether any object extends another (has a proxy link).
    pub(crate) fn has_extensions(&self) -> bool {
        !self.exts.is_empty()
    }
    /// Extensions of `id` (objects with a proxy link to it), in no particular order.
    #[inline]
    pub(crate) fn extensions(&self, id: ObjectId) -> &[u32] {
        if self.exts.is_empty() {
            return &[];
        }
        self.exts.get(&id.0).map_or(&[], Vec::as_slice)
    }
    pub(crate) fn message(&self, id: ObjectId) -> Option<&str> {
        self.d.messages.get(&id.0).map(String::as_str)
    }
    /// Work to do or a reason to wait: a version not enacted, a delete, or an external
    /// report of failure for the current version (R17).
    pub(crate) fn is_unsettled(&self, id: ObjectId) -> bool {
        let m = &self.d.meta[id.index()];
        m.enacted != m.version || m.backoff.deleting() || m.backoff.external_failed()
    }
    /// The first version of the object in slot `id`.
    pub(crate) fn born(&self, id: ObjectId) -> u64 {
        self.d.meta[id.index()].born
    }
    /// The object owning `id` (R10), if any.
    pub(crate) fn owner(&self, id: ObjectId) -> Option<ObjectId> {
        let o = self.d.owner[id.index()];
        (o != NO_OWNER).then_some(ObjectId(o))
    }
    /// The objects `id` owns, in no particular order.
    pub(crate) fn owned(&self, id: ObjectId) -> &[u32] {
        if self.owned.is_empty() {
            return &[];
        }
        self.owned.get(&id.0).map_or(&[], Vec::as_slice)
    }
    /// Makes `owner` the owner of `id` (R10).
    pub(crate) fn set_owner(&mut self, id: ObjectId, owner: ObjectId) {
        self.hash.mark(&self.d, id.index());
        self.clear_owner(id);
        self.d.owner[id.index()] = owner.0;
        self.owned.entry(owner.0).or_default().push(id.0);
    }
    fn clear_owner(&mut self, id: ObjectId) {
        self.hash.mark(&self.d, id.index());
        let o = std::mem::replace(&mut self.d.owner[id.index()], NO_OWNER);
        if o != NO_OWNER {
            if let Some(list) = self.owned.get_mut(&o) {
                list.retain(|&x| x != id.0);
                if list.is_empty() {
                    self.owned.remove(&o);
                }
            }
        }
    }

    // ---- writers (apply / complete) ----

    /// The id the next new object gets, `nth` new objects from now (pure: for staging).
    pub(crate) fn peek_new_id(&self, nth: usize) -> u32 {
        let free = self.d.free.len();
        if nth < free {
            self.d.free[free - 1 - nth]
        } else {
            (self.d.keys.len() + (nth - free)) as u32
        }
    }

    /// Allocates a slot for a new object; matches [`Store::peek_new_id`]`(0)`.
    pub(crate) fn insert<I>(&mut self, key: &str, model: ModelId, values: I) -> ObjectId
    where
        I: IntoIterator<Item = Value>,
        I::IntoIter: ExactSizeIterator,
    {
        let id = match self.d.free.pop() {
            Some(id) => {
                let i = id as usize;
                self.hash.free_popped(self.d.free.len(), id);
                self.hash.mark(&self.d, i);
                self.d.keys.set(i, key);
                self.d.model[i] = model;
                self.d.meta[i] = Meta::default();
                self.d.owner[i] = NO_OWNER;
                self.d.values.set(i, values);
                debug_assert!(self.d.deps.get(i).is_empty());
                debug_assert!(self.rdeps.get(i).is_empty());
                id
            }
            None => {
                let id = self.d.keys.len() as u32;
                self.hash.mark(&self.d, id as usize);
                self.d.keys.push(key);
                self.d.model.push(model);
                self.d.meta.push(Meta::default());
                self.d.owner.push(NO_OWNER);
                self.d.values.push(values);
                self.d.deps.push(&[]);
                self.rdeps.push_slot();
                id
            }
        };
        self.index.insert(id, &self.d.keys);
        self.live_count += 1;
        ObjectId(id)
    }

    /// Replaces an object's dependencies, keeping referrer lists in step (pair assertion:
    /// every edge is present on both sides).
    pub(crate) fn set_deps(&mut self, id: ObjectId, deps: &[Edge]) {
        self.hash.mark(&self.d, id.index());
        for &e in self.d.deps.get(id.index()) {
            let removed = self
                .rdeps
                .swap_remove(graph::target(e).index(), graph::retag(id.0, e));
            debug_assert!(
                removed,
                "edge {id:?} -> {e:#x} missing on the referrer side"
            );
            if graph::is_proxy(e) {
                let base = graph::target(e).0;
                if let Some(list) = self.exts.get_mut(&base) {
                    list.retain(|&x| x != id.0);
                    if list.is_empty() {
                        self.exts.remove(&base);
                    }
                }
            }
        }
        for &e in deps {
            self.rdeps
                .push(graph::target(e).index(), graph::retag(id.0, e));
            if graph::is_proxy(e) {
                self.exts.entry(graph::target(e).0).or_default().push(id.0);
            }
        }
        self.d.deps.set(id.index(), deps);
    }

    /// A fresh declarative version.
    pub(crate) fn bump_version(&mut self, id: ObjectId) {
        self.hash.mark(&self.d, id.index());
        let v = self.d.next_version;
        self.d.next_version += 1;
        let m = &mut self.d.meta[id.index()];
        if m.version == 0 {
            m.born = v;
        }
        m.version = v;
    }

    pub(crate) fn values_mut(&mut self, id: ObjectId) -> &mut [Value] {
        self.hash.mark(&self.d, id.index());
        &mut self.d.values[id.index()]
    }
    pub(crate) fn backoff_mut(&mut self, id: ObjectId) -> &mut Backoff {
        self.hash.mark_status(&self.d, id.index());
        &mut self.d.meta[id.index()].backoff
    }
    pub(crate) fn set_enacted(&mut self, id: ObjectId, v: u64) {
        self.hash.mark_status(&self.d, id.index());
        self.d.meta[id.index()].enacted = v;
    }
    pub(crate) fn set_message(&mut self, id: ObjectId, message: Option<String>) {
        self.hash.mark_status(&self.d, id.index());
        match message {
            Some(m) => {
                self.d.messages.insert(id.0, m);
            }
            None => {
                self.d.messages.remove(&id.0);
            }
        }
    }

    /// A sync of `version` succeeded: it is enacted, the last outcome's failures, deferral
    /// and external failure are cleared with its message, and the object leaves the
    /// unsettled set. The state hash is updated in place (the completion's hot path).
    pub(crate) fn mark_synced(&mut self, id: ObjectId, version: u64) {
        let i = id.index();
        self.hash.rewrite_status(&mut self.d, i, |d| {
            let m = &mut d.meta[i];
            m.enacted = version;
            m.backoff.failures = 0;
            m.backoff.flags &= !(DEFERRED | EXTERNAL_FAILED);
            if !d.messages.is_empty() {
                d.messages.remove(&id.0);
            }
        });
        self.refresh_unsettled(id);
    }

    /// Recomputes membership of the unsettled set after a write.
    pub(crate) fn refresh_unsettled(&mut self, id: ObjectId) {
        if self.alive(id) && self.is_unsettled(id) {
            self.d.unsettled.insert(id.0);
        } else {
            self.d.unsettled.remove(id.0);
        }
    }

    /// Removes an object: unlinks it and frees its slot. Its referrers must be gone.
    pub(crate) fn remove(&mut self, id: ObjectId) {
        debug_assert!(
            self.rdeps.get(id.index()).is_empty(),
            "removing a referenced object"
        );
        self.set_deps(id, &[]);
        self.clear_owner(id);
        // What it owned is owned by nothing now (their deletes were staged with it).
        for x in self.owned.remove(&id.0).unwrap_or_default() {
            self.hash.mark(&self.d, x as usize);
            self.d.owner[x as usize] = NO_OWNER;
        }
        let i = id.index();
        self.index.remove(&self.d.keys[i], &self.d.keys);
        self.d.keys.set(i, "");
        self.d.model[i] = DEAD;
        self.d.meta[i] = Meta::default();
        self.d.values.clear(i);
        self.d.messages.remove(&id.0);
        self.d.unsettled.remove(id.0);
        self.hash.free_pushed(self.d.free.len(), id.0);
        self.d.free.push(id.0);
        self.live_count -= 1;
    }

    /// Folds the writes since the last call into the state hash (O(slots written)).
    pub(crate) fn flush_hash(&mut self) {
        self.hash.flush(&self.d);
    }

    /// The state hash of the store's data (O(1) after [`Store::flush_hash`]).
    pub(crate) fn state_hash(&self) -> u64 {
        self.hash.get(&self.d)
    }

    /// Approximate heap bytes of the store and its indexes.
    pub(crate) fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let d = &self.d;
        let n = d.model.capacity();
        let mut bytes = n * (size_of::<ModelId>() + size_of::<Meta>() + size_of::<u32>());
        bytes += d.keys.memory_bytes()
            + d.values.memory_bytes()
            + d.deps.memory_bytes()
            + self.rdeps.memory_bytes();
        // Hash index: key box, id, and a control byte per bucket (about 8/7 load).
        bytes += self.index.capacity() * (4 + 1);
        // Unsettled set: a B-tree of u32, about 12 bytes per entry with node overhead.
        bytes += d.unsettled.memory_bytes();
        bytes
    }
}

#[cfg(test)]
mod tests {
    use bincode::config::standard;

    use super::*;

    /// A store with live, free and failing slots (every `Meta` field varies).
    fn data() -> StoreData {
        let mut s = Store::new(vec![1]);
        let a = s.insert("a", ModelId(0), vec![Value::Int(1)]);
        let b = s.insert("b", ModelId(0), vec![Value::Int(2)]);
        let c = s.insert("c", ModelId(0), vec![Value::Int(3)]);
        for id in [a, b, c] {
            s.bump_version(id);
        }
        s.bump_version(b);
        s.set_enacted(a, 1);
        let bo = s.backoff_mut(b);
        bo.failures = 2;
        bo.retry_at = Time(40);
        bo.flags = DEFERRED;
        s.remove(c);
        s.d
    }

    /// `d` encoded the way snapshots always were, one array per field, with `versions`
    /// as the version array.
    fn as_arrays(d: &StoreData, versions: &[u64]) -> Vec<u8> {
        let col = |f: fn(&Meta) -> u64| d.meta.iter().map(f).collect::<Vec<u64>>();
        let layout = (
            (
                &d.keys,
                &d.model,
                versions,
                col(|m| m.born),
                &d.owner,
                col(|m| m.enacted),
                &d.values,
            ),
            d.meta.iter().map(|m| m.backoff).collect::<Vec<_>>(),
            &d.deps,
            &d.messages,
            &d.free,
            &d.unsettled,
            d.next_version,
        );
        bincode::encode_to_vec(layout, standard()).unwrap()
    }

    /// The bytes a snapshot has always had: one array per field.
    #[test]
    fn meta_encodes_as_the_four_arrays_it_replaced() {
        let d = data();
        let versions: Vec<u64> = d.meta.iter().map(|m| m.version).collect();
        let new = bincode::encode_to_vec(&d, standard()).unwrap();
        assert_eq!(new, as_arrays(&d, &versions));
        let (back, _): (StoreData, usize) = bincode::decode_from_slice(&new, standard()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn arrays_of_different_lengths_are_refused() {
        let d = data();
        let short: Vec<u64> = d.meta[1..].iter().map(|m| m.version).collect();
        let bytes = as_arrays(&d, &short);
        let err = bincode::decode_from_slice::<StoreData, _>(&bytes, standard()).unwrap_err();
        assert!(err.to_string().contains("array lengths differ"), "{err}");
    }
}
