//! The bulk path of `apply` and `apply_rows`: a change set (or [`Rows`]) that only creates
//! objects, checked and written in a few flat passes instead of through the general
//! staging machinery. Both inputs are read through [`Entries`].
//!
//! It applies when every entry is an upsert of a new key (not in the store, not given
//! twice), of a model with no registered policy, with values of their fields' types once
//! the loose JSON forms are coerced in place, and no watcher is registered. Then nothing can refer back to the new
//! objects from the store, so a cycle (R11) can only run through new objects, unless a
//! new object extends a stored one (a proxy link to it, R16): that case goes the general
//! way too. The passes:
//! 1. entries sorted by key (R12: ids and versions are handed out in key order);
//! 2. each entry checked (key, limits, model, fields by slot, types, value limits) and its
//!    references resolved once, through one key index over the new keys (or the store's);
//! 3. a Kahn pass over the new objects' effective dependencies;
//! 4. the store written in key order, values moved, not copied.
//!
//! Whenever anything is wrong or out of scope, it writes nothing and returns the input
//! to the general path (rows as their change set), which finds the same error (or applies the same change) the
//! ordinary way: the result is the general path's in every case (property-tested: same
//! snapshot bytes and report for any input).

use crate::change::{ApplyReport, Change, ChangeSet, Limits};
use crate::graph::{self, Edge, PROXY};
use crate::id::{ModelId, ObjectId};
use crate::policy::{Policy, Watcher};
use crate::rows::Rows;
use crate::schema::{FieldSlot, Model, ModelKind, Schema};
use crate::store::Store;
use crate::value::{FieldType, Value};

/// What the bulk passes read: entries by position, each an upsert when in scope.
pub(crate) trait Entries {
    /// Number of entries.
    fn count(&self) -> usize;
    /// Entry `i`'s key and model, or `None` when it is not an upsert.
    fn head(&self, i: usize) -> Option<(&str, &str)>;
    /// Calls `f` with each (field name, value) of entry `i` until it returns `false`;
    /// whether every call returned `true`.
    fn all_fields(&self, i: usize, f: impl FnMut(&str, &Value) -> bool) -> bool;
    /// The value entry `i` gives the field `name`.
    fn field(&self, i: usize, name: &str) -> Option<&Value>;
    /// Gives each value of a declarative field its field's type where it coerces.
    fn coerce(&mut self, schema: &Schema);
    /// Moves entry `i`'s values into their declarative slots of `values`; its key.
    fn take(&mut self, i: usize, m: &Model, values: &mut [Value]) -> String;
}

impl Entries for ChangeSet {
    fn count(&self) -> usize {
        self.changes.len()
    }
    fn head(&self, i: usize) -> Option<(&str, &str)> {
        match &self.changes[i] {
            Change::Upsert { key, model, .. } => Some((key, model)),
            Change::Delete { .. } => None,
        }
    }
    fn all_fields(&self, i: usize, mut f: impl FnMut(&str, &Value) -> bool) -> bool {
        match &self.changes[i] {
            Change::Upsert { fields, .. } => fields.iter().all(|(n, v)| f(n, v)),
            Change::Delete { .. } => false,
        }
    }
    fn field(&self, i: usize, name: &str) -> Option<&Value> {
        match &self.changes[i] {
            Change::Upsert { fields, .. } => fields.get(name),
            Change::Delete { .. } => None,
        }
    }
    fn coerce(&mut self, schema: &Schema) {
        for c in &mut self.changes {
            let Change::Upsert { model, fields, .. } = c else {
                continue;
            };
            let Some(mid) = schema.model_id(model) else {
                continue;
            };
            let m = schema.model(mid);
            for (name, value) in fields.iter_mut() {
                coerce_in_place(m, name, value);
            }
        }
    }
    fn take(&mut self, i: usize, m: &Model, values: &mut [Value]) -> String {
        let taken = std::mem::replace(&mut self.changes[i], Change::Delete { key: String::new() });
        let Change::Upsert { key, fields, .. } = taken else {
            return String::new();
        };
        for (name, value) in fields {
            if let Some(FieldSlot::Declarative(s)) = m.slot(&name) {
                values[s as usize] = value;
            }
        }
        key
    }
}

impl Entries for Rows {
    fn count(&self) -> usize {
        self.len()
    }
    fn head(&self, i: usize) -> Option<(&str, &str)> {
        Some((self.key_at(i), self.model()))
    }
    fn all_fields(&self, i: usize, mut f: impl FnMut(&str, &Value) -> bool) -> bool {
        self.columns()
            .iter()
            .zip(self.values_at(i))
            .all(|(n, v)| f(n, v))
    }
    fn field(&self, i: usize, name: &str) -> Option<&Value> {
        let c = self.columns().iter().position(|c| c == name)?;
        Some(&self.values_at(i)[c])
    }
    fn coerce(&mut self, schema: &Schema) {
        let Some(mid) = schema.model_id(self.model()) else {
            return;
        };
        let m = schema.model(mid);
        let columns = self.columns().to_vec();
        for i in 0..self.len() {
            for (name, value) in columns.iter().zip(self.values_mut(i)) {
                coerce_in_place(m, name, value);
            }
        }
    }
    fn take(&mut self, i: usize, m: &Model, values: &mut [Value]) -> String {
        for c in 0..self.columns().len() {
            if let Some(FieldSlot::Declarative(s)) = m.slot(&self.columns()[c]) {
                values[s as usize] = std::mem::take(&mut self.values_mut(i)[c]);
            }
        }
        self.key_at(i).to_string()
    }
}

/// Applies `input` if it is in the bulk path's scope; otherwise gives it back, its values
/// coerced to their fields' types where they could be (which changes no result).
pub(crate) fn try_apply<I: Entries>(
    schema: &Schema,
    store: &mut Store,
    limits: &Limits,
    policies: &[Option<Box<dyn Policy>>],
    watchers: &[Option<Box<dyn Watcher>>],
    input: I,
) -> Result<ApplyReport, I> {
    if input.count() < 2 || watchers.iter().any(Option::is_some) {
        return Err(input);
    }
    let mut input = input;
    input.coerce(schema);
    match check(schema, store, limits, policies, &input) {
        Some(checked) => Ok(commit(schema, store, input, checked)),
        None => Err(input),
    }
}

/// Gives a value of a declarative field of `m` its field's type where [`Value::coerce`] can
/// (the loose forms JSON input brings: a string for a `ref`, an array for `refs`, an integer
/// for a `float`), so such change sets take this path too; a string becomes a reference
/// without a copy. A value that does not coerce is left as it is, for the general path to
/// name. Coercion is idempotent and the general path coerces every value before anything
/// else reads it, so if the set goes there after all, it gives the same result.
fn coerce_in_place(m: &Model, name: &str, value: &mut Value) {
    let Some(FieldSlot::Declarative(i)) = m.slot(name) else {
        return;
    };
    let ty = m.fields[i as usize].ty;
    match value {
        Value::Str(s) if ty == FieldType::Ref => *value = Value::Ref(std::mem::take(s)),
        v if v.has_type(ty) => {}
        v => {
            if let Ok(coerced) = v.clone().coerce(ty) {
                *v = coerced;
            }
        }
    }
}

/// What the checking passes found: the key order and each entry's resolved edges.
struct Checked {
    /// Entry indices in key order.
    order: Vec<u32>,
    /// Model of each entry, in key order.
    models: Vec<ModelId>,
    /// Edges of the i-th entry in key order: `edges[off[i]..off[i + 1]]`, sorted, deduplicated.
    off: Vec<u32>,
    edges: Vec<Edge>,
    /// Bytes of the new keys.
    key_bytes: usize,
    /// Values of the new objects (one per field).
    value_count: usize,
}

fn check<I: Entries>(
    schema: &Schema,
    store: &Store,
    limits: &Limits,
    policies: &[Option<Box<dyn Policy>>],
    input: &I,
) -> Option<Checked> {
    let n = input.count();
    if n > limits.changes_max
        || store.live_count + n > limits.objects_max
        || n >= graph::OBJECTS_MAX - store.capacity()
    {
        return None;
    }
    // Keys, models, fields: anything the general path would refuse or treat specially.
    let mut keys: Vec<&str> = Vec::with_capacity(n);
    let mut models: Vec<ModelId> = Vec::with_capacity(n);
    for i in 0..n {
        let (key, model) = input.head(i)?;
        if key.is_empty() || key.len() > limits.key_len_max {
            return None;
        }
        let mid = schema.model_id(model)?;
        if policies.get(mid.index()).is_some_and(Option::is_some) {
            return None;
        }
        let m = schema.model(mid);
        let fields_ok = input.all_fields(i, |name, value| {
            matches!(m.slot(name), Some(FieldSlot::Declarative(s))
                if value.has_type(m.fields[s as usize].ty)
                    && value.check_limits(&limits.value).is_ok())
        });
        if !fields_ok {
            return None;
        }
        keys.push(key);
        models.push(mid);
    }
    // Key order (R12); a key given twice or already stored is the general path's.
    let order = key_order(&keys);
    if order
        .windows(2)
        .any(|w| keys[w[0] as usize] == keys[w[1] as usize])
    {
        return None;
    }
    if store.live_count > 0 && keys.iter().any(|k| store.id_of(k).is_some()) {
        return None;
    }
    let key_bytes: usize = keys.iter().map(|k| k.len()).sum();
    let value_count: usize = models
        .iter()
        .map(|&m| schema.model(m).fields.len() + schema.model(m).feedback.len())
        .sum();
    if store.d.keys.live_bytes() + key_bytes > crate::keys::KEY_BYTES_LIVE_MAX
        || store.d.values.live_count() + value_count > crate::value_lists::VALUES_LIVE_MAX
    {
        // The general path refuses it, naming the limit.
        return None;
    }
    // New ids, in key order; one index over the new keys (by position in key order).
    let ids: Vec<u32> = (0..n).map(|i| store.peek_new_id(i)).collect();
    let sorted: Vec<&str> = order.iter().map(|&i| keys[i as usize]).collect();
    drop(keys);
    let index = NewKeys::new(&sorted);
    let models: Vec<ModelId> = order.iter().map(|&i| models[i as usize]).collect();
    // References, resolved once each.
    let mut off: Vec<u32> = Vec::with_capacity(n + 1);
    let mut edges: Vec<Edge> = Vec::with_capacity(n * 2);
    let mut proxies = false;
    off.push(0);
    for (pos, &i) in order.iter().enumerate() {
        let m = schema.model(models[pos]);
        let start = edges.len();
        for link in &m.links {
            let name = &m.fields[link.field as usize].name;
            let Some(value) = input.field(i as usize, name) else {
                continue;
            };
            for target in value.refs() {
                let (tid, tmodel) = match index.get(target, &sorted) {
                    Some(p) => (ids[p as usize], models[p as usize]),
                    None => {
                        let id = store.id_of(target)?;
                        if link.proxy || store.deleting(id) {
                            // A new reference to a deleting object is refused (R7), and
                            // one that extends a stored object: its referrers gain effective
                            // dependencies, which the general cycle check follows.
                            return None;
                        }
                        (id.0, store.model(id))
                    }
                };
                if tmodel != link.target {
                    return None;
                }
                proxies |= link.proxy;
                edges.push(tid | if link.proxy { PROXY } else { 0 });
            }
        }
        let list = &mut edges[start..];
        list.sort_unstable();
        let mut kept = start;
        for r in start..edges.len() {
            if kept == start || edges[r] != edges[kept - 1] {
                edges[kept] = edges[r];
                kept += 1;
            }
        }
        edges.truncate(kept);
        if store.edge_count() + edges.len() > crate::edges::EDGES_LIVE_MAX {
            // The general path refuses it, naming the limit.
            return None;
        }
        off.push(edges.len() as u32);
    }
    drop(index);
    if !acyclic(store, &ids, &off, &edges, proxies) {
        return None;
    }
    Some(Checked {
        order,
        models,
        off,
        edges,
        key_bytes,
        value_count,
    })
}

/// Positions of `keys` in byte order of the keys. Sorted by the eight bytes that follow the
/// prefix all keys share (one integer comparison decides most pairs: keys such as
/// `instance-000123` differ after their common prefix), the whole keys compared only on a
/// tie, which keeps the order exactly the keys' order.
fn key_order(keys: &[&str]) -> Vec<u32> {
    let first = keys.first().map_or(&[][..], |k| k.as_bytes());
    let shared = keys.iter().fold(first.len(), |l, k| {
        first[..l]
            .iter()
            .zip(k.as_bytes())
            .take_while(|(a, b)| a == b)
            .count()
    });
    let word = |k: &str| {
        let rest = &k.as_bytes()[shared..];
        let mut w = [0u8; 8];
        let l = rest.len().min(8);
        w[..l].copy_from_slice(&rest[..l]);
        u64::from_be_bytes(w)
    };
    let mut by_word: Vec<(u64, u32)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (word(k), i as u32))
        .collect();
    by_word.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| keys[a.1 as usize].cmp(keys[b.1 as usize]))
    });
    by_word.into_iter().map(|(_, i)| i).collect()
}

/// Whether the new objects' effective dependencies among themselves are acyclic (R11):
/// Kahn's algorithm over positions in key order. `ids` are the new ids by position; new
/// ids are `>= first` of the store's capacity or reused free slots, so a position is found
/// through a map only for reused slots.
fn acyclic(store: &Store, ids: &[u32], off: &[u32], edges: &[Edge], proxies: bool) -> bool {
    let n = ids.len();
    let cap = store.capacity() as u32;
    // Position of a new id: appended slots map arithmetically, reused ones by search.
    let reused: Vec<(u32, u32)> = {
        let mut r: Vec<(u32, u32)> = ids
            .iter()
            .enumerate()
            .filter(|(_, &id)| id < cap)
            .map(|(p, &id)| (id, p as u32))
            .collect();
        r.sort_unstable();
        r
    };
    let first_new = n - (ids.iter().filter(|&&id| id >= cap).count());
    let pos_of = |id: u32| -> Option<u32> {
        if id >= cap {
            Some(first_new as u32 + (id - cap))
        } else if reused.is_empty() {
            None
        } else {
            reused
                .binary_search_by_key(&id, |&(i, _)| i)
                .ok()
                .map(|k| reused[k].1)
        }
    };
    // Extensions among new objects (R16): new base position -> new extension positions.
    let mut ext_off: Vec<u32> = Vec::new();
    let mut ext: Vec<u32> = Vec::new();
    if proxies {
        ext_off = vec![0; n + 1];
        for p in 0..n {
            for &e in &edges[off[p] as usize..off[p + 1] as usize] {
                if graph::is_proxy(e) {
                    if let Some(b) = pos_of(graph::target(e).0) {
                        ext_off[b as usize + 1] += 1;
                    }
                }
            }
        }
        for p in 0..n {
            ext_off[p + 1] += ext_off[p];
        }
        let mut fill = ext_off.clone();
        ext = vec![0; ext_off[n] as usize];
        for p in 0..n {
            for &e in &edges[off[p] as usize..off[p + 1] as usize] {
                if graph::is_proxy(e) {
                    if let Some(b) = pos_of(graph::target(e).0) {
                        ext[fill[b as usize] as usize] = p as u32;
                        fill[b as usize] += 1;
                    }
                }
            }
        }
    }
    // Effective dependencies of position `p` among new objects, duplicates possible.
    let each_dep = |p: usize, f: &mut dyn FnMut(u32)| {
        for &e in &edges[off[p] as usize..off[p + 1] as usize] {
            let Some(b) = pos_of(graph::target(e).0) else {
                continue;
            };
            f(b);
            if proxies && !graph::is_proxy(e) {
                for &x in &ext[ext_off[b as usize] as usize..ext_off[b as usize + 1] as usize] {
                    if x as usize != p {
                        f(x);
                    }
                }
            }
        }
    };
    // Peel objects nothing (left) waits for.
    let mut waiting = vec![0u32; n];
    for p in 0..n {
        each_dep(p, &mut |b| waiting[b as usize] += 1);
    }
    let mut queue: Vec<u32> = (0..n as u32)
        .filter(|&p| waiting[p as usize] == 0)
        .collect();
    let mut seen = 0;
    while let Some(p) = queue.pop() {
        seen += 1;
        each_dep(p as usize, &mut |b| {
            waiting[b as usize] -= 1;
            if waiting[b as usize] == 0 {
                queue.push(b);
            }
        });
    }
    seen == n
}

/// A hash index of the new keys by their position in key order (hashes through the
/// sorted key array, so no key is copied).
struct NewKeys {
    table: hashbrown::HashTable<u32>,
    hasher: crate::id::KeyHasher,
}

impl NewKeys {
    fn new(sorted: &[&str]) -> NewKeys {
        use std::hash::BuildHasher;
        let hasher = crate::id::KeyHasher::default();
        let mut table = hashbrown::HashTable::with_capacity(sorted.len());
        for (p, k) in sorted.iter().enumerate() {
            table.insert_unique(hasher.hash_one(k), p as u32, |&q| {
                hasher.hash_one(sorted[q as usize])
            });
        }
        NewKeys { table, hasher }
    }

    fn get(&self, key: &str, sorted: &[&str]) -> Option<u32> {
        use std::hash::BuildHasher;
        if self.table.is_empty() {
            return None;
        }
        self.table
            .find(self.hasher.hash_one(key), |&p| sorted[p as usize] == key)
            .copied()
    }
}

/// Writes the checked objects: all inserted in key order (so ids match those checking
/// peeked), then linked and versioned in key order, as the general commit does.
fn commit<I: Entries>(
    schema: &Schema,
    store: &mut Store,
    mut input: I,
    checked: Checked,
) -> ApplyReport {
    let Checked {
        order,
        models,
        off,
        edges,
        key_bytes,
        value_count,
    } = checked;
    let n = order.len();
    let mut ids: Vec<ObjectId> = Vec::with_capacity(n);
    let mut changed: Vec<String> = Vec::with_capacity(n);
    store.d.keys.reserve(n, key_bytes);
    store.d.values.reserve(n, value_count);
    // One buffer for every object's values on their way into the store.
    let mut values: Vec<Value> = Vec::new();
    let appended_from = store.capacity();
    for (pos, &i) in order.iter().enumerate() {
        let m = schema.model(models[pos]);
        values.clear();
        values.resize(m.fields.len() + m.feedback.len(), Value::Null);
        let key = input.take(i as usize, m, &mut values);
        let id = store.insert(&key, models[pos], values.drain(..));
        ids.push(id);
        changed.push(key);
    }
    drop(input);
    // Referrer lists of appended objects sized exactly (they start empty, and every
    // referrer they will have is among the new edges): laid out in slot order at the end
    // of the referrer array, no slack.
    let mut referrers = vec![0u32; store.capacity() - appended_from];
    for &e in &edges {
        if let Some(c) = graph::target(e).index().checked_sub(appended_from) {
            referrers[c] += 1;
        }
    }
    for (k, &c) in referrers.iter().enumerate() {
        if c > 0 {
            store.rdeps.reserve(appended_from + k, c as usize);
        }
    }
    drop(referrers);
    let mut touched_edges = 0u64;
    let mut versions: Vec<u64> = Vec::with_capacity(n);
    for (pos, &id) in ids.iter().enumerate() {
        let list = &edges[off[pos] as usize..off[pos + 1] as usize];
        if !list.is_empty() {
            touched_edges += list.len() as u64;
            store.set_deps(id, list);
        }
        store.bump_version(id);
        versions.push(store.version(id));
        if schema.model(models[pos]).kind == ModelKind::Passive {
            let v = store.version(id);
            store.set_enacted(id, v);
        }
        store.refresh_unsettled(id);
    }
    ApplyReport {
        changed,
        versions,
        touched_objects: n as u64,
        touched_edges,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// `key_order` is the keys' byte order (keys with a long shared prefix, short keys,
        /// keys that are prefixes of others, NUL bytes and non-ASCII included).
        #[test]
        fn key_order_is_byte_order(
            prefix in "(inst-ance-0{0,12})?",
            tails in proptest::collection::vec("[a-c\\x00\u{e9}0-2]{0,10}", 0..40),
        ) {
            let keys: Vec<String> = tails.iter().map(|t| format!("{prefix}{t}")).collect();
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let got: Vec<&str> = super::key_order(&refs).iter().map(|&i| refs[i as usize]).collect();
            let mut want = refs.clone();
            want.sort_unstable();
            prop_assert_eq!(got, want);
        }
    }

    use crate::{Change, ChangeSet, Config, Engine, Schema, Value};

    const SCHEMA: &str = r#"{"models": [
      {"name": "Site", "fields": [{"name": "x", "type": "int"}, {"name": "j", "type": "json"}]},
      {"name": "Node", "fields": [{"name": "deps", "type": "refs"}, {"name": "site", "type": "ref"}],
       "links": [{"field": "deps", "target": "Node"}, {"field": "site", "target": "Site"}]},
      {"name": "Tag", "kind": "passive", "fields": [{"name": "on", "type": "ref"}],
       "links": [{"field": "on", "target": "Node", "proxy": true}]}]}"#;

    /// One random entry: mostly creations, sometimes something out of the bulk path's
    /// scope or wrong (a delete, a stored key, a dangling or mistyped reference, loose
    /// JSON, an unknown field).
    fn change() -> impl Strategy<Value = Change> {
        // References typed, or in the loose forms JSON input gives (a string, an array).
        let node = (
            0u8..12,
            proptest::collection::vec(0u8..14, 0..4),
            0u8..4,
            any::<bool>(),
        )
            .prop_map(|(k, deps, site, loose)| {
                let deps: Vec<String> = deps.iter().map(|d| format!("n{d}")).collect();
                let site = format!("s{site}");
                let (deps, site) = if loose {
                    (
                        Value::Json(serde_json::to_string(&deps).unwrap()),
                        Value::Str(site),
                    )
                } else {
                    (Value::Refs(deps), Value::Ref(site))
                };
                Change::upsert(format!("n{k}"), "Node", [("deps", deps), ("site", site)])
            });
        let site = (0u8..4, 0i64..3)
            .prop_map(|(k, x)| Change::upsert(format!("s{k}"), "Site", [("x", Value::Int(x))]));
        let tag = (0u8..4, 0u8..14).prop_map(|(k, on)| {
            Change::upsert(
                format!("t{k}"),
                "Tag",
                [("on", Value::Ref(format!("n{on}")))],
            )
        });
        prop_oneof![
            6 => node,
            3 => site,
            2 => tag,
            1 => (0u8..12).prop_map(|k| Change::delete(format!("n{k}"))),
            1 => Just(Change::upsert("s9", "Site", [("j", Value::Json("{\"b\":1,\"a\":2}".into()))])),
            1 => Just(Change::upsert("s8", "Site", [("nope", Value::Int(1))])),
            1 => Just(Change::upsert("s7", "Site", [("x", Value::Str("1".into()))])),
            1 => Just(Change::upsert("n11", "Node", [("deps", Value::Json("[1]".into()))])),
            1 => Just(Change::upsert("n13", "Site", [("x", Value::Int(1))])),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the bulk path takes, it does exactly what the general path does: the
        /// same result (report or error) and the same snapshot bytes, for any input order.
        #[test]
        fn bulk_apply_matches_the_general_path(
            before in proptest::collection::vec(change(), 0..6),
            set in proptest::collection::vec(change(), 0..16),
            seed in any::<u64>(),
        ) {
            let schema = Schema::from_json(SCHEMA).unwrap();
            let mut bulk = Engine::new(schema.clone(), Config::default());
            let mut general = Engine::new(schema, Config::default());
            // The same starting state, through the general path only.
            for c in &before {
                let a = bulk.apply_general(ChangeSet::from(vec![c.clone()]));
                let b = general.apply_general(ChangeSet::from(vec![c.clone()]));
                prop_assert_eq!(a, b);
            }
            let mut shuffled = set.clone();
            shuffle(&mut shuffled, seed);
            let a = bulk.apply(ChangeSet::from(shuffled));
            let b = general.apply_general(ChangeSet::from(set));
            match (&a, &b) {
                (Ok(x), Ok(y)) => {
                    prop_assert_eq!(&x.changed, &y.changed);
                    prop_assert_eq!(&x.deleted, &y.deleted);
                    prop_assert_eq!(&x.removed, &y.removed);
                    prop_assert_eq!(x.policy_rounds, y.policy_rounds);
                }
                _ => prop_assert_eq!(&a, &b),
            }
            prop_assert_eq!(bulk.snapshot(), general.snapshot());
            prop_assert_eq!(bulk.state_hash(), general.state_hash());
        }
    }

    /// A Fisher-Yates shuffle of `v` driven by an LCG seeded with `seed`.
    fn shuffle<T>(v: &mut [T], seed: u64) {
        let mut s = seed;
        for i in (1..v.len()).rev() {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            v.swap(i, (s >> 33) as usize % (i + 1));
        }
    }

    /// Node rows with the columns `deps` and `site` (typed or loose), keys possibly
    /// repeated, stored, dangling or mistyped references: anything a user may load.
    fn node_rows() -> impl Strategy<Value = crate::Rows> {
        let row = (
            0u8..12,
            proptest::collection::vec(0u8..14, 0..4),
            0u8..5,
            any::<bool>(),
        );
        (proptest::collection::vec(row, 0..16), any::<u64>()).prop_map(|(mut rows, seed)| {
            // In any order: the result may not depend on it (R12).
            shuffle(&mut rows, seed);
            let mut out = crate::Rows::new("Node", ["deps", "site"]).unwrap();
            for (k, deps, site, loose) in rows {
                let deps: Vec<String> = deps.iter().map(|d| format!("n{d}")).collect();
                let site = format!("s{site}");
                let values = if loose {
                    [
                        Value::Json(serde_json::to_string(&deps).unwrap()),
                        Value::Str(site),
                    ]
                } else {
                    [Value::Refs(deps), Value::Ref(site)]
                };
                out.push(&format!("n{k}"), values).unwrap();
            }
            out
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// `apply_rows` does what applying the same upserts as a change set does: the same
        /// result (report or error) and the same snapshot bytes.
        #[test]
        fn rows_apply_as_their_change_set(
            before in proptest::collection::vec(change(), 0..6),
            rows in node_rows(),
        ) {
            let schema = Schema::from_json(SCHEMA).unwrap();
            let mut by_rows = Engine::new(schema.clone(), Config::default());
            let mut by_set = Engine::new(schema, Config::default());
            for c in &before {
                let a = by_rows.apply_general(ChangeSet::from(vec![c.clone()]));
                let b = by_set.apply_general(ChangeSet::from(vec![c.clone()]));
                prop_assert_eq!(a, b);
            }
            // The change set in key order, the rows in the order drawn.
            let mut set = ChangeSet::from(rows.clone());
            set.changes.sort_by(|x, y| x.key().cmp(y.key()));
            let a = by_rows.apply_rows(rows);
            let b = by_set.apply_general(set);
            match (&a, &b) {
                (Ok(x), Ok(y)) => {
                    prop_assert_eq!(&x.changed, &y.changed);
                    prop_assert_eq!(&x.versions, &y.versions);
                }
                _ => prop_assert_eq!(&a, &b),
            }
            prop_assert_eq!(by_rows.snapshot(), by_set.snapshot());
            prop_assert_eq!(by_rows.state_hash(), by_set.state_hash());
        }
    }

    /// Rows of new objects take the bulk path (one touch per object); an unknown column
    /// goes the general way, which names the key and the field, and changes nothing.
    #[test]
    fn rows_take_the_bulk_path_and_bad_rows_are_named() {
        let schema = Schema::from_json(SCHEMA).unwrap();
        let mut e = Engine::new(schema, Config::default());
        let mut rows = crate::Rows::new("Site", ["x"]).unwrap();
        for k in ["s2", "s1", "s3"] {
            rows.push(k, [Value::Int(7)]).unwrap();
        }
        let r = e.apply_rows(rows).unwrap();
        assert_eq!(r.changed, ["s1", "s2", "s3"]);
        assert_eq!(r.touched_objects, 3);
        assert_eq!(e.view_key("s2").unwrap().field("x"), Some(&Value::Int(7)));
        let before = e.snapshot();
        let mut bad = crate::Rows::new("Site", ["x", "nope"]).unwrap();
        bad.push("s4", [Value::Int(1), Value::Int(2)]).unwrap();
        bad.push("s5", [Value::Int(1), Value::Int(2)]).unwrap();
        let err = e.apply_rows(bad).unwrap_err();
        assert_eq!(
            err,
            crate::ChangeError::UnknownField {
                key: "s4".into(),
                model: "Site".into(),
                field: "nope".into()
            }
        );
        assert_eq!(e.snapshot(), before);
    }

    /// A creation-only change set takes the bulk path: its report counts one touch per
    /// object (the general path counts staging, the cycle walk and the write).
    #[test]
    fn creations_take_the_bulk_path() {
        let schema = Schema::from_json(SCHEMA).unwrap();
        let mut e = Engine::new(schema, Config::default());
        let set = ChangeSet::new().upsert("s1", "Site", [("x", 1i64)]).upsert(
            "n1",
            "Node",
            [("site", Value::Ref("s1".into()))],
        );
        let r = e.apply(set).unwrap();
        assert_eq!(r.changed, vec!["n1".to_string(), "s1".to_string()]);
        assert_eq!(r.touched_objects, 2);
        assert_eq!(e.plan(crate::Time(0)).wave_count(), 2);
    }

    /// Loose forms from JSON (a string for a `ref`, an array for `refs`) are coerced and
    /// stay on the bulk path; a value that does not coerce sends the set to the general
    /// path, which names it.
    #[test]
    fn json_forms_of_references_take_the_bulk_path() {
        let schema = Schema::from_json(SCHEMA).unwrap();
        let mut e = Engine::new(schema, Config::default());
        let set = ChangeSet::new()
            .upsert("s1", "Site", [("x", 1i64)])
            .upsert("n1", "Node", [("site", Value::Str("s1".into()))])
            .upsert(
                "n2",
                "Node",
                [
                    ("site", Value::Str("s1".into())),
                    ("deps", Value::Json(r#"["n1"]"#.into())),
                ],
            );
        let taken = e.apply_bulk(set);
        assert!(taken.is_ok(), "refused: {taken:?}");
        let n2 = e.view_key("n2").unwrap();
        assert_eq!(n2.field("site"), Some(&Value::Ref("s1".into())));
        assert_eq!(n2.field("deps"), Some(&Value::Refs(vec!["n1".into()])));
        assert_eq!(e.plan(crate::Time(0)).wave_count(), 3);

        let wrong = ChangeSet::new()
            .upsert("s2", "Site", [("x", Value::Str("one".into()))])
            .upsert("s3", "Site", [("x", 3i64)]);
        let back = e.apply_bulk(wrong);
        let err = e
            .apply(back.expect_err("not coercible: the general path's"))
            .unwrap_err();
        assert!(err.to_string().contains("s2"), "{err}");
    }
}
