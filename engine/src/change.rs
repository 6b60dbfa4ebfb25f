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
use crate::policy::{Policy, PolicyInput, StagedObject, StateView, WatchKind};
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
    /// The version each key of `changed` got, in the same order (R8: versions come from
    /// one engine-wide counter, so an object's first version is rarely 1). An external
    /// object's owner reports against it (R17).
    #[serde(default)]
    pub versions: Vec<u64>,
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

impl ApplyReport {
    /// The version `key` got from this apply, if it changed.
    pub fn version(&self, key: &str) -> Option<u64> {
        let i = self
            .changed
            .binary_search_by(|k| k.as_str().cmp(key))
            .ok()?;
        self.versions.get(i).copied()
    }
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
    /// New objects a policy created, with the trigger that owns them (R10).
    owners: BTreeMap<String, String>,
    /// Target key -> the staged, non-deleted objects whose links reference it.
    staged_refs: HashMap<String, BTreeSet<String>>,
    /// Work done answering policies' [`StateView::referrers`] (edges examined, R15).
    view_edges: std::cell::Cell<u64>,
    /// Keys whose policies must run in the next round although they did not change: owned
    /// objects deleted with their owner, and owners whose owned object was deleted alone.
    extra: BTreeSet<String>,
    /// Changes staged so far, policy output included (against `limits.changes_max`).
    changes_count: usize,
    touched_objects: u64,
    touched_edges: u64,
}

/// What commit needs: staged entries with their resolved dependencies.
pub(crate) struct Checked {
    entries: BTreeMap<String, Staged>,
    owners: BTreeMap<String, String>,
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
            owners: BTreeMap::new(),
            staged_refs: HashMap::new(),
            view_edges: std::cell::Cell::new(0),
            extra: BTreeSet::new(),
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
        self.index_refs(key, false);
        self.entries.insert(key.to_string(), next);
        self.index_refs(key, true);
        Ok(changed)
    }

    fn stage_delete(&mut self, key: &str) -> Result<bool, ChangeError> {
        let id = if let Some(e) = self.entries.get_mut(key) {
            if e.deleted {
                return Ok(false);
            }
            let existing = e.existing;
            self.index_refs(key, false);
            let Some(id) = existing else {
                // Created and deleted in the same change set: nothing happens.
                self.entries.remove(key);
                self.owners.remove(key);
                return Ok(true);
            };
            if let Some(e) = self.entries.get_mut(key) {
                e.deleted = true;
            }
            id
        } else {
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
            id
        };
        self.stage_ownership_of_delete(id)?;
        Ok(true)
    }

    /// Adds (or removes) the references of staged, non-deleted `key` to (from) the staged
    /// reverse index, so [`StateView::referrers`] costs O(its answer), not O(change set).
    fn index_refs(&mut self, key: &str, add: bool) {
        let Some(e) = self.entries.get(key) else {
            return;
        };
        if e.deleted {
            return;
        }
        let m = self.schema.model(e.model);
        for l in &m.links {
            for t in e.values[l.field as usize].refs() {
                self.touched_edges += 1;
                if add {
                    self.staged_refs
                        .entry(t.clone())
                        .or_default()
                        .insert(key.to_string());
                } else if let Some(set) = self.staged_refs.get_mut(t) {
                    set.remove(key);
                    if set.is_empty() {
                        self.staged_refs.remove(t);
                    }
                }
            }
        }
    }

    /// R10 ownership, for the delete of stored object `id`: what it owns is deleted with
    /// it (key order); if it has a live owner, the owner's policy runs again so that it can
    /// keep its invariant.
    fn stage_ownership_of_delete(&mut self, id: ObjectId) -> Result<(), ChangeError> {
        if let Some(owner) = self.store.owner(id) {
            let key = self.store.key(owner);
            let owner_deleted =
                self.store.deleting(owner) || self.entries.get(key).is_some_and(|e| e.deleted);
            if !owner_deleted {
                self.extra.insert(key.to_string());
            }
        }
        let mut owned: Vec<&str> = self
            .store
            .owned(id)
            .iter()
            .map(|&x| self.store.key(ObjectId(x)))
            .collect();
        owned.sort_unstable();
        for key in owned {
            self.touched_objects += 1;
            self.changes_count += 1;
            if self.changes_count > self.limits.changes_max {
                return Err(ChangeError::TooLarge {
                    what: "change set",
                    max: self.limits.changes_max,
                });
            }
            if self.stage_delete(key)? {
                self.extra.insert(key.to_string());
            }
        }
        Ok(())
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
        changed.append(&mut self.extra);
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
        // For each key of the round, the models whose policies led to its change (R10: a
        // loop error names every model that took part in it).
        let mut chains: BTreeMap<String, BTreeSet<ModelId>> = BTreeMap::new();
        loop {
            changed.retain(|k| self.has_policy(policies, k).is_some());
            if changed.is_empty() {
                return Ok(round);
            }
            if round >= rounds_max {
                let mut ids: BTreeSet<ModelId> = BTreeSet::new();
                for k in &changed {
                    ids.extend(self.has_policy(policies, k));
                    ids.extend(chains.get(k).into_iter().flatten().copied());
                }
                let mut models: Vec<String> = ids
                    .into_iter()
                    .map(|m| self.schema.model(m).name.clone())
                    .collect();
                models.sort();
                return Err(ChangeError::PolicyLoop {
                    models,
                    rounds: rounds_max,
                });
            }
            round += 1;
            let mut next = BTreeSet::new();
            let mut next_chains: BTreeMap<String, BTreeSet<ModelId>> = BTreeMap::new();
            for key in &changed {
                // A staged object, or a stored owner asked to restore its invariant.
                let (model, values, deleted) = match self.entries.get(key) {
                    Some(e) => (e.model, &e.values[..], e.deleted),
                    None => match self.store.id_of(key) {
                        Some(id) => (self.store.model(id), self.store.fields(id), false),
                        None => continue,
                    },
                };
                let Some(Some(policy)) = policies.get(model.index()) else {
                    continue;
                };
                let m = self.schema.model(model);
                let fields: BTreeMap<String, Value> = m
                    .fields
                    .iter()
                    .map(|f| f.name.clone())
                    .zip(values.iter().cloned())
                    .collect();
                let input = PolicyInput {
                    key,
                    model: &m.name,
                    fields: &fields,
                    deleted,
                };
                let out =
                    policy
                        .on_change(&input, self)
                        .map_err(|message| ChangeError::Policy {
                            model: m.name.clone(),
                            key: key.clone(),
                            message,
                        })?;
                let mut chain = chains.remove(key).unwrap_or_default();
                chain.insert(model);
                let owns = policy.owns_created();
                for c in &out {
                    let creates = matches!(c, Change::Upsert { .. })
                        && !self.entries.contains_key(c.key())
                        && self.store.id_of(c.key()).is_none();
                    if self.stage(c)? {
                        next.insert(c.key().to_string());
                        next_chains
                            .entry(c.key().to_string())
                            .or_default()
                            .extend(chain.iter().copied());
                    }
                    if creates && owns && self.entries.contains_key(c.key()) {
                        // R10: created by this policy, owned by its trigger.
                        self.owners.insert(c.key().to_string(), key.clone());
                    }
                }
                for k in std::mem::take(&mut self.extra) {
                    next_chains
                        .entry(k.clone())
                        .or_default()
                        .extend(chain.iter().copied());
                    next.insert(k);
                }
            }
            changed = next;
            chains = next_chains;
        }
    }

    /// Resolves references, assigns ids to new objects and checks for cycles.
    fn check(mut self, policy_rounds: u32) -> Result<Checked, ChangeError> {
        // Ids in key order: existing objects keep theirs, new ones get what the store will
        // hand out. One hash index over the staged keys serves every reference lookup.
        let mut ids: Vec<u32> = Vec::with_capacity(self.entries.len());
        let mut new_count = 0;
        let mut new_key_bytes = 0;
        let mut new_values = 0;
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(self.entries.len());
        for (i, (key, e)) in self.entries.iter().enumerate() {
            index.insert(key.as_str(), i);
            ids.push(match e.existing {
                Some(id) => id.0,
                None => {
                    new_count += 1;
                    new_key_bytes += key.len();
                    let m = self.schema.model(e.model);
                    new_values += m.fields.len() + m.feedback.len();
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
        if self.store.d.keys.live_bytes() + new_key_bytes > crate::keys::KEY_BYTES_LIVE_MAX {
            return Err(ChangeError::TooLarge {
                what: "key bytes",
                max: crate::keys::KEY_BYTES_LIVE_MAX,
            });
        }
        if self.store.d.values.live_count() + new_values > crate::value_lists::VALUES_LIVE_MAX {
            return Err(ChangeError::TooLarge {
                what: "value count",
                max: crate::value_lists::VALUES_LIVE_MAX,
            });
        }
        let staged: Vec<&Staged> = self.entries.values().collect();
        // A reference resolves to a staged or stored object, with whether it is deleted by
        // this change set or already being deleted.
        let resolve = |key: &str| -> Option<(u32, ModelId, bool)> {
            match index.get(key) {
                Some(&i) => Some((ids[i], staged[i].model, staged[i].deleted)),
                None => self
                    .store
                    .id_of(key)
                    .map(|id| (id.0, self.store.model(id), self.store.deleting(id))),
            }
        };
        let mut deps: HashMap<u32, Box<[Edge]>> = HashMap::new();
        let mut roots: Vec<u32> = Vec::new();
        let mut touched_edges = 0;
        let mut edges_after = self.store.edge_count();
        for (i, (key, e)) in self.entries.iter().enumerate() {
            if e.deleted {
                continue;
            }
            let id = ids[i];
            let m = self.schema.model(e.model);
            let old: &[Edge] = e.existing.map(|i| self.store.deps(i)).unwrap_or(&[]);
            let mut edges: Vec<Edge> = Vec::new();
            for link in &m.links {
                for target in e.values[link.field as usize].refs() {
                    touched_edges += 1;
                    let field = || m.fields[link.field as usize].name.clone();
                    let (tid, tmodel, deleting) =
                        resolve(target).ok_or_else(|| ChangeError::DanglingReference {
                            key: key.clone(),
                            field: field(),
                            target: target.clone(),
                        })?;
                    let edge = tid | if link.proxy { PROXY } else { 0 };
                    if tmodel != link.target {
                        return Err(ChangeError::WrongTargetModel {
                            key: key.clone(),
                            field: field(),
                            target: target.clone(),
                            expected: self.schema.model(link.target).name.clone(),
                            found: self.schema.model(tmodel).name.clone(),
                        });
                    }
                    if deleting && !old.iter().any(|&o| o & !PROXY == tid) {
                        // R7: the delete would wait for this new referrer, and the
                        // referrer for the delete, forever. A referrer that already
                        // referenced the target (through any link, plain or proxy) is
                        // not new: the delete already waits for it.
                        return Err(ChangeError::ReferenceToDeleting {
                            key: key.clone(),
                            field: field(),
                            target: target.clone(),
                        });
                    }
                    edges.push(edge);
                }
            }
            edges.sort_unstable();
            edges.dedup();
            if edges.iter().any(|x| old.binary_search(x).is_err()) {
                roots.push(id);
            }
            if old != edges.as_slice() {
                edges_after += edges.len();
                edges_after -= old.len();
                deps.insert(id, edges.into_boxed_slice());
            }
        }
        if edges_after > crate::edges::EDGES_LIVE_MAX {
            return Err(ChangeError::TooLarge {
                what: "edge count",
                max: crate::edges::EDGES_LIVE_MAX,
            });
        }
        self.touched_edges += touched_edges;
        if !roots.is_empty() {
            // Stored objects this set deletes: an extension among them orders nothing.
            let mut deleted: Vec<u32> = (self.entries.values())
                .filter(|e| e.deleted)
                .filter_map(|e| e.existing.map(|i| i.0))
                .collect();
            deleted.sort_unstable();
            let overlay = Overlay::new(self.store, &deps, &deleted);
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
        // An owner deleted in the same change set owns nothing new.
        let entries = &self.entries;
        self.owners
            .retain(|_, owner| !entries.get(owner.as_str()).is_some_and(|e| e.deleted));
        self.touched_edges += self.view_edges.get();
        Ok(Checked {
            owners: std::mem::take(&mut self.owners),
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

    /// Stored referrers not restaged, plus the staged reverse index: O(referrers), never
    /// a scan of the change set (R15).
    fn referrers(&self, key: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut examined = 1;
        if let Some(id) = self.store.id_of(key) {
            examined += self.store.rdeps(id).len() as u64;
            for &r in self.store.rdeps(id) {
                let rid = graph::target(r);
                let rkey = self.store.key(rid);
                if !self.entries.contains_key(rkey) && !self.store.deleting(rid) {
                    out.push(rkey.to_string());
                }
            }
        }
        if let Some(staged) = self.staged_refs.get(key) {
            examined += staged.len() as u64;
            out.extend(staged.iter().cloned());
        }
        self.view_edges.set(self.view_edges.get() + examined);
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
    /// Stored objects this change set deletes, sorted.
    deleted: &'a [u32],
}

impl<'a> Overlay<'a> {
    fn new(
        store: &'a Store,
        deps: &'a HashMap<u32, Box<[Edge]>>,
        deleted: &'a [u32],
    ) -> Overlay<'a> {
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
            deleted,
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
                    // A staged object's proxy links are read from the overlay below; an
                    // extension being deleted (or deleted here) orders nothing (R16).
                    if x != id
                        && !self.deps.contains_key(&x)
                        && !self.store.deleting(ObjectId(x))
                        && self.deleted.binary_search(&x).is_err()
                    {
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

/// A watch event (R18): key, model, what happened, and the changed field names.
pub(crate) type Event = (String, ModelId, WatchKind, Vec<String>);

/// Writes a checked change set into the store. Returns the report and the watch events, in
/// key order (a delete requested and completed at once gives two, requested first).
pub(crate) fn commit(
    schema: &Schema,
    store: &mut Store,
    checked: Checked,
) -> (ApplyReport, Vec<Event>) {
    let Checked {
        entries,
        owners,
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
        let id = store.insert(key, e.model, values);
        debug_assert_eq!(id.0, want, "staged id matches the allocated one");
    }
    // Owners (R10): every new object exists now, so owner keys resolve.
    for (key, owner) in &owners {
        if let (Some(id), Some(o)) = (store.id_of(key), store.id_of(owner)) {
            store.set_owner(id, o);
        }
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
            events.push((key.clone(), e.model, WatchKind::DeleteRequested, Vec::new()));
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
            store.set_deps(id, &d);
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
        events.push((key.clone(), e.model, WatchKind::Declarative, changed_fields));
        report.changed.push(key);
        report.versions.push(store.version(id));
    }
    let removed = sweep_unreferenced(schema, store, sweep);
    report.removed = removed.iter().map(|(k, _)| k.clone()).collect();
    events.extend(
        removed
            .into_iter()
            .map(|(k, m)| (k, m, WatchKind::Deleted, Vec::new())),
    );
    // Stable: for one key, the requested delete stays before its completion.
    events.sort_by(|a, b| a.0.cmp(&b.0));
    report.touched_objects = touched_objects;
    report.touched_edges = touched_edges;
    (report, events)
}

/// Removes deleting passive and external objects that nothing references any more
/// (R17), and then whatever that frees in turn. Returns their keys and models, by key.
pub(crate) fn sweep_unreferenced(
    schema: &Schema,
    store: &mut Store,
    mut work: Vec<ObjectId>,
) -> Vec<(String, ModelId)> {
    let mut removed = Vec::new();
    while let Some(id) = work.pop() {
        if !store.alive(id) || !store.deleting(id) || !store.rdeps(id).is_empty() {
            continue;
        }
        if schema.model(store.model(id)).kind == ModelKind::Actuated {
            continue;
        }
        work.extend(store.deps(id).iter().map(|&e| graph::target(e)));
        removed.push((store.key(id).to_string(), store.model(id)));
        store.remove(id);
    }
    removed.sort();
    removed
}
