//! Change sets: validation, model policies, and atomic apply.
//!
//! ## Algorithm
//! `apply` never writes before everything is checked ("validate, then mutate"):
//! 1. entries are sorted by key (R12); the same key twice is refused;
//! 2. each entry is *staged* over the store (key, model, fields, types and the size limits
//!    of `Config` checked: `changes_max` counts policy output too);
//! 3. model policies run round by round on the staged objects that changed (R10), their
//!    changes staged the same way;
//! 4. references are resolved (to staged or stored objects of the link's target model) and
//!    new objects get the ids the store will hand out, in key order;
//! 5. the effective graph reachable from objects with new dependencies is checked for
//!    cycles (R11) by peeling sinks: whatever cannot be peeled lies on or leads to a cycle;
//! 6. only then is the store written, in key order.
//!
//! Any error before step 6 leaves the engine exactly as it was.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::ChangeError;
use crate::graph::{self, Edge, PROXY};
use crate::id::{ModelId, ObjectId};
use crate::policy::{Policy, PolicyInput, StagedObject, StateView};
use crate::schema::{FieldSlot, ModelKind, Schema};
use crate::store::{Store, DEFERRED, DELETING, EXTERNAL_FAILED};
use crate::value::{Value, ValueLimits};

/// One entry of a change set.
///
/// JSON: `{"upsert": {"key": "s1", "model": "Site", "fields": {"name": "x"}}}` or
/// `{"delete": {"key": "s1"}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Change {
    /// Create the object, or set the listed declarative fields of an existing one (fields
    /// not listed keep their value; a new object's unlisted fields are null).
    Upsert {
        /// Caller-chosen stable key.
        key: String,
        /// The object's model.
        model: String,
        /// Declarative field values, by name (JSON: a name given twice is an error).
        #[serde(default, deserialize_with = "unique_fields")]
        fields: BTreeMap<String, Value>,
    },
    /// Delete the object (R7): its delete runs once its referrers are gone.
    Delete {
        /// The key.
        key: String,
    },
}

/// Reads an upsert's fields, refusing a name given twice (serde would keep the last one
/// silently, and which value wins should not depend on the text's order).
fn unique_fields<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Value>, D::Error> {
    struct Fields;
    impl<'de> serde::de::Visitor<'de> for Fields {
        type Value = BTreeMap<String, Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of field names to values")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((name, value)) = map.next_entry::<String, Value>()? {
                if out.contains_key(&name) {
                    return Err(serde::de::Error::custom(format!(
                        "field `{name}` is given twice"
                    )));
                }
                out.insert(name, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Fields)
}

impl Change {
    /// An upsert.
    ///
    /// # Examples
    /// ```
    /// use syncore::Change;
    /// let c = Change::upsert("slice-1", "Slice", [("site", "site-1")]);
    /// assert_eq!(c.key(), "slice-1");
    /// ```
    pub fn upsert<K: Into<String>, V: Into<Value>>(
        key: impl Into<String>,
        model: impl Into<String>,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Change {
        Change::Upsert {
            key: key.into(),
            model: model.into(),
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A delete.
    pub fn delete(key: impl Into<String>) -> Change {
        Change::Delete { key: key.into() }
    }

    /// The key this change is about.
    pub fn key(&self) -> &str {
        match self {
            Change::Upsert { key, .. } | Change::Delete { key } => key,
        }
    }
}

/// An ordered batch of changes, applied atomically. The order of entries does not matter
/// (R12): they are canonicalised by key.
///
/// # Examples
/// ```
/// use syncore::{Change, ChangeSet};
/// let set = ChangeSet::from_json(r#"[{"upsert": {"key": "s1", "model": "Site"}}, {"delete": {"key": "old"}}]"#).unwrap();
/// assert_eq!(set.changes[1], Change::delete("old"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChangeSet {
    /// The entries.
    pub changes: Vec<Change>,
}

impl ChangeSet {
    /// An empty change set.
    pub fn new() -> ChangeSet {
        ChangeSet::default()
    }

    /// Adds an upsert (builder style).
    pub fn upsert<K: Into<String>, V: Into<Value>>(
        mut self,
        key: impl Into<String>,
        model: impl Into<String>,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> ChangeSet {
        self.changes.push(Change::upsert(key, model, fields));
        self
    }

    /// Adds a delete (builder style).
    pub fn delete(mut self, key: impl Into<String>) -> ChangeSet {
        self.changes.push(Change::delete(key));
        self
    }

    /// Parses a JSON array of changes.
    ///
    /// # Errors
    /// [`ChangeError::Parse`] with line and column.
    pub fn from_json(text: &str) -> Result<ChangeSet, ChangeError> {
        serde_json::from_str(text).map_err(|e| ChangeError::Parse {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl From<Vec<Change>> for ChangeSet {
    fn from(changes: Vec<Change>) -> Self {
        ChangeSet { changes }
    }
}

/// What `apply` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Keys that got a new declarative version, sorted.
    pub changed: Vec<String>,
    /// Keys marked for deletion, sorted.
    pub deleted: Vec<String>,
    /// Objects that left the store at once (passive or external, unreferenced).
    pub removed: Vec<String>,
    /// Policy rounds that ran (R10).
    pub policy_rounds: u32,
    /// Work done, for R15: objects staged, checked or written.
    pub touched_objects: u64,
    /// Work done, for R15: edges examined.
    pub touched_edges: u64,
}

/// An object as a change set leaves it, before commit.
#[derive(Clone, Debug)]
struct Staged {
    model: ModelId,
    /// Declarative values.
    values: Vec<Value>,
    deleted: bool,
    existing: Option<ObjectId>,
}

/// What one `apply` may stage (issue 7): every caller and policy change is checked
/// against these before anything is written.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Most changes staged, policy output included.
    pub changes_max: usize,
    /// Longest key, in bytes.
    pub key_len_max: usize,
    /// Most live objects after the change set.
    pub objects_max: usize,
    /// Size limits on each declarative value.
    pub value: ValueLimits,
}

/// The staged state of one `apply`.
pub(crate) struct Stage<'a> {
    schema: &'a Schema,
    store: &'a Store,
    limits: Limits,
    entries: BTreeMap<String, Staged>,
    /// Changes staged so far, policy output included (against `limits.changes_max`).
    changes_count: usize,
    touched_objects: u64,
    touched_edges: u64,
}

/// What commit needs: staged entries with their resolved dependencies.
pub(crate) struct Checked {
    entries: BTreeMap<String, Staged>,
    deps: HashMap<u32, Box<[Edge]>>,
    /// The id of each entry, in key order (new objects: the id the store will hand out).
    ids: Vec<u32>,
    policy_rounds: u32,
    touched_objects: u64,
    touched_edges: u64,
}

impl<'a> Stage<'a> {
    pub(crate) fn new(schema: &'a Schema, store: &'a Store, limits: Limits) -> Stage<'a> {
        Stage {
            schema,
            store,
            limits,
            entries: BTreeMap::new(),
            changes_count: 0,
            touched_objects: 0,
            touched_edges: 0,
        }
    }

    /// Stages one change; returns whether it changed the staged state.
    fn stage(&mut self, change: &Change) -> Result<bool, ChangeError> {
        self.touched_objects += 1;
        self.changes_count += 1;
        if self.changes_count > self.limits.changes_max {
            return Err(ChangeError::TooLarge {
                what: "change set",
                max: self.limits.changes_max,
            });
        }
        let key = change.key();
        if key.is_empty() {
            // A snapshot refuses empty keys (R14), so the store never holds one.
            return Err(ChangeError::EmptyKey);
        }
        if key.len() > self.limits.key_len_max {
            return Err(ChangeError::key_too_long(key, self.limits.key_len_max));
        }
        match change {
            Change::Upsert { key, model, fields } => self.stage_upsert(key, model, fields),
            Change::Delete { key } => self.stage_delete(key),
        }
    }

    fn stage_upsert(
        &mut self,
        key: &str,
        model: &str,
        fields: &BTreeMap<String, Value>,
    ) -> Result<bool, ChangeError> {
        let mid = self
            .schema
            .model_id(model)
            .ok_or_else(|| ChangeError::UnknownModel {
                key: key.into(),
                model: model.into(),
            })?;
        let m = self.schema.model(mid);
        let entry = match self.entries.get(key) {
            Some(e) => e.clone(),
            None => match self.store.id_of(key) {
                Some(id) => {
                    if self.store.deleting(id) {
                        return Err(ChangeError::Deleting { key: key.into() });
                    }
                    Staged {
                        model: self.store.model(id),
                        values: self.store.fields(id).to_vec(),
                        deleted: false,
                        existing: Some(id),
                    }
                }
                None => Staged {
                    model: mid,
                    values: vec![Value::Null; m.fields.len()],
                    deleted: false,
                    existing: None,
                },
            },
        };
        if entry.model != mid {
            return Err(ChangeError::ModelMismatch {
                key: key.into(),
                existing: self.schema.model(entry.model).name.clone(),
                model: model.into(),
            });
        }
        if entry.deleted {
            return Err(ChangeError::Deleting { key: key.into() });
        }
        let mut next = entry.clone();
        for (name, value) in fields {
            match m.slot(name) {
                None => {
                    return Err(ChangeError::UnknownField {
                        key: key.into(),
                        model: model.into(),
                        field: name.clone(),
                    })
                }
                Some(FieldSlot::Feedback(_)) => {
                    return Err(ChangeError::FeedbackWrite {
                        key: key.into(),
                        model: model.into(),
                        field: name.clone(),
                    })
                }
                Some(FieldSlot::Declarative(i)) => {
                    let ty = m.fields[i as usize].ty;
                    let v = value
                        .clone()
                        .coerce(ty)
                        .map_err(|e| ChangeError::WrongType {
                            key: key.into(),
                            field: name.clone(),
                            expected: e.expected,
                            found: e.found,
                        })?;
                    v.check_limits(&self.limits.value)
                        .map_err(|e| ChangeError::ValueTooLarge {
                            key: key.into(),
                            field: name.clone(),
                            what: e.what,
                            max: e.max,
                        })?;
                    next.values[i as usize] = v;
                }
            }
        }
        let was_staged = self.entries.contains_key(key);
        let changed = !was_staged && entry.existing.is_none() || next.values != entry.values;
        self.entries.insert(key.to_string(), next);
        Ok(changed)
    }

    fn stage_delete(&mut self, key: &str) -> Result<bool, ChangeError> {
        if let Some(e) = self.entries.get_mut(key) {
            if e.deleted {
                return Ok(false);
            }
            if e.existing.is_none() {
                // Created and deleted in the same change set: nothing happens.
                self.entries.remove(key);
                return Ok(true);
            }
            if let Some(id) = e.existing {
                if self.store.deleting(id) {
                    return Ok(false);
                }
            }
            e.deleted = true;
            return Ok(true);
        }
        let id = self
            .store
            .id_of(key)
            .ok_or_else(|| ChangeError::UnknownKey { key: key.into() })?;
        if self.store.deleting(id) {
            return Ok(false);
        }
        let staged = Staged {
            model: self.store.model(id),
            values: self.store.fields(id).to_vec(),
            deleted: true,
            existing: Some(id),
        };
        self.entries.insert(key.to_string(), staged);
        Ok(true)
    }

    /// Stages the caller's changes, canonicalised by key (R12), then runs policies (R10).
    pub(crate) fn run(
        mut self,
        set: &ChangeSet,
        policies: &[Option<Box<dyn Policy>>],
        rounds_max: u32,
    ) -> Result<Checked, ChangeError> {
        let mut order: Vec<&Change> = set.changes.iter().collect();
        order.sort_by(|a, b| a.key().cmp(b.key()));
        for pair in order.windows(2) {
            if pair[0].key() == pair[1].key() {
                return Err(ChangeError::DuplicateKey {
                    key: pair[0].key().into(),
                });
            }
        }
        let mut changed = BTreeSet::new();
        for c in order {
            if self.stage(c)? {
                changed.insert(c.key().to_string());
            }
        }
        let rounds = self.run_policies(changed, policies, rounds_max)?;
        self.check(rounds)
    }

    fn has_policy(&self, policies: &[Option<Box<dyn Policy>>], key: &str) -> Option<ModelId> {
        let model = match self.entries.get(key) {
            Some(e) => e.model,
            None => self.store.id_of(key).map(|id| self.store.model(id))?,
        };
        policies
            .get(model.index())
            .and_then(|p| p.as_ref())
            .map(|_| model)
    }

    fn run_policies(
        &mut self,
        mut changed: BTreeSet<String>,
        policies: &[Option<Box<dyn Policy>>],
        rounds_max: u32,
    ) -> Result<u32, ChangeError> {
        let mut round = 0;
        loop {
            changed.retain(|k| self.has_policy(policies, k).is_some());
            if changed.is_empty() {
                return Ok(round);
            }
            if round >= rounds_max {
                let mut models: Vec<String> = changed
                    .iter()
                    .filter_map(|k| self.has_policy(policies, k))
                    .map(|m| self.schema.model(m).name.clone())
                    .collect();
                models.sort();
                models.dedup();
                return Err(ChangeError::PolicyLoop {
                    models,
                    rounds: rounds_max,
                });
            }
            round += 1;
            let mut next = BTreeSet::new();
            for key in &changed {
                let Some(entry) = self.entries.get(key) else {
                    continue;
                };
                let Some(Some(policy)) = policies.get(entry.model.index()) else {
                    continue;
                };
                let m = self.schema.model(entry.model);
                let fields: BTreeMap<String, Value> = m
                    .fields
                    .iter()
                    .map(|f| f.name.clone())
                    .zip(entry.values.iter().cloned())
                    .collect();
                let input = PolicyInput {
                    key,
                    model: &m.name,
                    fields: &fields,
                    deleted: entry.deleted,
                };
                let out =
                    policy
                        .on_change(&input, self)
                        .map_err(|message| ChangeError::Policy {
                            model: m.name.clone(),
                            key: key.clone(),
                            message,
                        })?;
                for c in &out {
                    if self.stage(c)? {
                        next.insert(c.key().to_string());
                    }
                }
            }
            changed = next;
        }
    }

    /// Resolves references, assigns ids to new objects and checks for cycles.
    fn check(mut self, policy_rounds: u32) -> Result<Checked, ChangeError> {
        // Ids in key order: existing objects keep theirs, new ones get what the store will
        // hand out. One hash index over the staged keys serves every reference lookup.
        let mut ids: Vec<u32> = Vec::with_capacity(self.entries.len());
        let mut new_count = 0;
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(self.entries.len());
        for (i, (key, e)) in self.entries.iter().enumerate() {
            index.insert(key.as_str(), i);
            ids.push(match e.existing {
                Some(id) => id.0,
                None => {
                    new_count += 1;
                    self.store.peek_new_id(new_count - 1)
                }
            });
        }
        if self.store.live_count + new_count > self.limits.objects_max {
            return Err(ChangeError::TooLarge {
                what: "object count",
                max: self.limits.objects_max,
            });
        }
        let staged: Vec<&Staged> = self.entries.values().collect();
        let resolve = |key: &str| -> Option<(u32, ModelId)> {
            match index.get(key) {
                Some(&i) if staged[i].deleted => None,
                Some(&i) => Some((ids[i], staged[i].model)),
                None => self.store.id_of(key).map(|id| (id.0, self.store.model(id))),
            }
        };
        let mut deps: HashMap<u32, Box<[Edge]>> = HashMap::new();
        let mut roots: Vec<u32> = Vec::new();
        let mut touched_edges = 0;
        for (i, (key, e)) in self.entries.iter().enumerate() {
            if e.deleted {
                continue;
            }
            let id = ids[i];
            let m = self.schema.model(e.model);
            let mut edges: Vec<Edge> = Vec::new();
            for link in &m.links {
                for target in e.values[link.field as usize].refs() {
                    touched_edges += 1;
                    let field = || m.fields[link.field as usize].name.clone();
                    let (tid, tmodel) =
                        resolve(target).ok_or_else(|| ChangeError::DanglingReference {
                            key: key.clone(),
                            field: field(),
                            target: target.clone(),
                        })?;
                    if tmodel != link.target {
                        return Err(ChangeError::WrongTargetModel {
                            key: key.clone(),
                            field: field(),
                            target: target.clone(),
                            expected: self.schema.model(link.target).name.clone(),
                            found: self.schema.model(tmodel).name.clone(),
                        });
                    }
                    edges.push(tid | if link.proxy { PROXY } else { 0 });
                }
            }
            edges.sort_unstable();
            edges.dedup();
            let old: &[Edge] = e.existing.map(|i| self.store.deps(i)).unwrap_or(&[]);
            if edges.iter().any(|x| old.binary_search(x).is_err()) {
                roots.push(id);
            }
            if old != edges.as_slice() {
                deps.insert(id, edges.into_boxed_slice());
            }
        }
        self.touched_edges += touched_edges;
        if !roots.is_empty() {
            let overlay = Overlay::new(self.store, &deps);
            if let Some(cycle) =
                overlay.find_cycle(&roots, &mut self.touched_objects, &mut self.touched_edges)
            {
                let by_id: HashMap<u32, &str> = self
                    .entries
                    .iter()
                    .zip(&ids)
                    .filter(|((_, e), _)| e.existing.is_none())
                    .map(|((k, _), &i)| (i, k.as_str()))
                    .collect();
                let keys: Vec<String> = cycle
                    .iter()
                    .map(|&i| {
                        by_id.get(&i).map_or_else(
                            || self.store.key(ObjectId(i)).to_string(),
                            |k| k.to_string(),
                        )
                    })
                    .collect();
                return Err(ChangeError::Cycle {
                    keys: crate::schema::rotate_to_min(keys),
                });
            }
        }
        drop(index);
        Ok(Checked {
            entries: std::mem::take(&mut self.entries),
            deps,
            ids,
            policy_rounds,
            touched_objects: self.touched_objects,
            touched_edges: self.touched_edges,
        })
    }
}

impl StateView for Stage<'_> {
    fn get(&self, key: &str) -> Option<StagedObject> {
        let (model, values, deleted) = match self.entries.get(key) {
            Some(e) => (e.model, e.values.clone(), e.deleted),
            None => {
                let id = self.store.id_of(key)?;
                (
                    self.store.model(id),
                    self.store.fields(id).to_vec(),
                    self.store.deleting(id),
                )
            }
        };
        let m = self.schema.model(model);
        Some(StagedObject {
            model: m.name.clone(),
            fields: m
                .fields
                .iter()
                .map(|f| f.name.clone())
                .zip(values)
                .collect(),
            deleted,
        })
    }

    fn referrers(&self, key: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Some(id) = self.store.id_of(key) {
            for &r in self.store.rdeps(id) {
                let rid = graph::target(r);
                let rkey = self.store.key(rid);
                if !self.entries.contains_key(rkey) && !self.store.deleting(rid) {
                    out.push(rkey.to_string());
                }
            }
        }
        for (k, e) in &self.entries {
            if e.deleted {
                continue;
            }
            let m = self.schema.model(e.model);
            if m.links
                .iter()
                .any(|l| e.values[l.field as usize].refs().iter().any(|t| t == key))
            {
                out.push(k.clone());
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// The store's graph with staged dependency lists laid over it.
struct Overlay<'a> {
    store: &'a Store,
    deps: &'a HashMap<u32, Box<[Edge]>>,
    /// Base -> staged objects with a new proxy link to it.
    staged_ext: HashMap<u32, Vec<u32>>,
}

impl<'a> Overlay<'a> {
    fn new(store: &'a Store, deps: &'a HashMap<u32, Box<[Edge]>>) -> Overlay<'a> {
        let mut staged_ext: HashMap<u32, Vec<u32>> = HashMap::new();
        for (&id, edges) in deps {
            for &e in edges.iter() {
                if graph::is_proxy(e) {
                    staged_ext.entry(graph::target(e).0).or_default().push(id);
                }
            }
        }
        Overlay {
            store,
            deps,
            staged_ext,
        }
    }

    fn deps_of(&self, id: u32) -> &[Edge] {
        match self.deps.get(&id) {
            Some(d) => d,
            None if (id as usize) < self.store.capacity() => self.store.deps(ObjectId(id)),
            None => &[],
        }
    }

    /// Effective dependencies of `id` under the overlay (R16), deduplicated and sorted.
    fn effective(&self, id: u32, out: &mut Vec<u32>) {
        out.clear();
        for &e in self.deps_of(id) {
            let b = graph::target(e).0;
            out.push(b);
            if graph::is_proxy(e) {
                continue;
            }
            if (b as usize) < self.store.capacity() {
                for &x in self.store.extensions(ObjectId(b)) {
                    // A staged object's proxy links are read from the overlay below.
                    if x != id && !self.deps.contains_key(&x) {
                        out.push(x);
                    }
                }
            }
            if let Some(ext) = self.staged_ext.get(&b) {
                out.extend(ext.iter().copied().filter(|&x| x != id));
            }
        }
        out.sort_unstable();
        out.dedup();
    }

    /// A cycle through the effective graph reachable from `roots`, in dependency order.
    fn find_cycle(&self, roots: &[u32], objects: &mut u64, edges: &mut u64) -> Option<Vec<u32>> {
        // Closure of the roots, as a flat adjacency list over local indices.
        let mut pos: HashMap<u32, u32> = HashMap::with_capacity(roots.len() * 2);
        let mut nodes: Vec<u32> = Vec::with_capacity(roots.len() * 2);
        for &r in roots {
            if let std::collections::hash_map::Entry::Vacant(v) = pos.entry(r) {
                v.insert(nodes.len() as u32);
                nodes.push(r);
            }
        }
        let mut adj_off: Vec<u32> = Vec::with_capacity(nodes.capacity() + 1);
        let mut adj: Vec<u32> = Vec::new();
        let mut buf = Vec::new();
        let mut i = 0;
        adj_off.push(0);
        while i < nodes.len() {
            self.effective(nodes[i], &mut buf);
            *objects += 1;
            *edges += buf.len() as u64;
            for &d in &buf {
                let next = nodes.len() as u32;
                let p = *pos.entry(d).or_insert(next);
                if p == next {
                    nodes.push(d);
                }
                adj.push(p);
            }
            adj_off.push(adj.len() as u32);
            i += 1;
        }
        drop(pos);
        // Peel sinks: a node whose dependencies are all peeled is on no cycle.
        let n = nodes.len();
        let mut outdeg: Vec<u32> = (0..n).map(|u| adj_off[u + 1] - adj_off[u]).collect();
        let mut rev_off = vec![0u32; n + 1];
        for &v in &adj {
            rev_off[v as usize + 1] += 1;
        }
        for u in 0..n {
            rev_off[u + 1] += rev_off[u];
        }
        let mut rev = vec![0u32; adj.len()];
        let mut fill = rev_off.clone();
        for u in 0..n {
            for &v in &adj[adj_off[u] as usize..adj_off[u + 1] as usize] {
                rev[fill[v as usize] as usize] = u as u32;
                fill[v as usize] += 1;
            }
        }
        let mut queue: Vec<u32> = (0..n as u32).filter(|&u| outdeg[u as usize] == 0).collect();
        let mut peeled = vec![false; n];
        while let Some(v) = queue.pop() {
            peeled[v as usize] = true;
            for &u in &rev[rev_off[v as usize] as usize..rev_off[v as usize + 1] as usize] {
                outdeg[u as usize] -= 1;
                if outdeg[u as usize] == 0 {
                    queue.push(u);
                }
            }
        }
        // Every unpeeled node has an unpeeled dependency: walking them must repeat.
        let start = (0..n).filter(|&u| !peeled[u]).min_by_key(|&u| nodes[u])?;
        let mut seen: HashMap<usize, usize> = HashMap::new();
        let mut walk = Vec::new();
        let mut u = start;
        loop {
            if let Some(&at) = seen.get(&u) {
                return Some(walk[at..].iter().map(|&x: &usize| nodes[x]).collect());
            }
            seen.insert(u, walk.len());
            walk.push(u);
            let out = &adj[adj_off[u] as usize..adj_off[u + 1] as usize];
            u = out
                .iter()
                .filter(|&&v| !peeled[v as usize])
                .min_by_key(|&&v| nodes[v as usize])
                .map(|&v| v as usize)?;
        }
    }
}

/// A watch event from `apply`: the key and its changed declarative fields (`None`: deleted).
pub(crate) type ApplyEvent = (String, Option<Vec<String>>);

/// Writes a checked change set into the store. Returns the report and the watch events
/// (key, changed declarative field names; `None` for a delete).
pub(crate) fn commit(
    schema: &Schema,
    store: &mut Store,
    checked: Checked,
) -> (ApplyReport, Vec<ApplyEvent>) {
    let Checked {
        entries,
        mut deps,
        ids,
        policy_rounds,
        mut touched_objects,
        mut touched_edges,
    } = checked;
    let mut report = ApplyReport {
        policy_rounds,
        ..Default::default()
    };
    let mut events = Vec::new();
    // New objects first, in key order, so ids match those staging peeked.
    for ((key, e), &want) in entries.iter().zip(&ids) {
        if e.existing.is_some() {
            continue;
        }
        let m = schema.model(e.model);
        let mut values = e.values.clone();
        values.resize(m.fields.len() + m.feedback.len(), Value::Null);
        let id = store.insert(key, e.model, values.into_boxed_slice());
        debug_assert_eq!(id.0, want, "staged id matches the allocated one");
    }
    let mut sweep: Vec<ObjectId> = Vec::new();
    for ((key, e), id) in entries.into_iter().zip(ids) {
        touched_objects += 1;
        let m = schema.model(e.model);
        let fresh = e.existing.is_none();
        let id = ObjectId(id);
        if e.deleted {
            let b = store.backoff_mut(id);
            b.flags = (b.flags | DELETING) & !(DEFERRED | EXTERNAL_FAILED);
            b.failures = 0;
            store.set_message(id, None);
            if m.kind != ModelKind::Actuated {
                sweep.push(id);
            }
            store.refresh_unsettled(id);
            events.push((key.clone(), None));
            report.deleted.push(key);
            continue;
        }
        let changed_fields: Vec<String> = if fresh {
            m.fields.iter().map(|f| f.name.clone()).collect()
        } else {
            let old = store.fields(id);
            m.fields
                .iter()
                .zip(old.iter().zip(e.values.iter()))
                .filter(|(_, (a, b))| a != b)
                .map(|(f, _)| f.name.clone())
                .collect()
        };
        if !fresh && changed_fields.is_empty() {
            continue;
        }
        let n_decl = e.values.len();
        store.values_mut(id)[..n_decl].clone_from_slice(&e.values);
        if let Some(d) = deps.remove(&id.0) {
            touched_edges += d.len() as u64 + store.deps(id).len() as u64;
            sweep.extend(store.deps(id).iter().map(|&x| graph::target(x)));
            store.set_deps(id, d);
        }
        store.bump_version(id);
        let b = store.backoff_mut(id);
        b.failures = 0;
        b.flags &= !(DEFERRED | EXTERNAL_FAILED);
        store.set_message(id, None);
        if m.kind == ModelKind::Passive {
            let v = store.version(id);
            store.set_enacted(id, v);
        }
        store.refresh_unsettled(id);
        events.push((key.clone(), Some(changed_fields)));
        report.changed.push(key);
    }
    report.removed = sweep_unreferenced(schema, store, sweep);
    report.touched_objects = touched_objects;
    report.touched_edges = touched_edges;
    (report, events)
}

/// Removes deleting passive and external objects that nothing references any more
/// (R17), and then whatever that frees in turn. Returns their keys, sorted.
pub(crate) fn sweep_unreferenced(
    schema: &Schema,
    store: &mut Store,
    mut work: Vec<ObjectId>,
) -> Vec<String> {
    let mut removed = Vec::new();
    while let Some(id) = work.pop() {
        if !store.alive(id) || !store.deleting(id) || !store.rdeps(id).is_empty() {
            continue;
        }
        if schema.model(store.model(id)).kind == ModelKind::Actuated {
            continue;
        }
        work.extend(store.deps(id).iter().map(|&e| graph::target(e)));
        removed.push(store.key(id).to_string());
        store.remove(id);
    }
    removed.sort();
    removed
}
