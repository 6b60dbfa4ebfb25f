//! Seeded generators: schemas, object graphs and change-set streams.
//!
//! Everything is a pure function of a [`SplitMix64`] stream, so a seed reproduces it. The
//! proptest strategies of [`crate::sim::strategy`] are built on these.

use std::collections::{BTreeMap, BTreeSet};

use super::rng::SplitMix64;
use crate::change::{Change, ChangeSet};
use crate::schema::{FieldDef, LinkDef, ModelDef, ModelKind, Schema, SchemaDef};
use crate::value::{FieldType, Value};

/// The shape of generated schemas. Every option states its default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaShape {
    /// Most models. Default: 4.
    pub models_max: usize,
    /// Most links per model. Default: 2.
    pub links_max: usize,
    /// Chance, in thousandths, of a model-level dependency (`depends_on_models`) per
    /// model. Default: 150.
    pub model_deps_permille: u32,
    /// Chance, in thousandths, that a model is passive (R17). Default: 0.
    pub passive_permille: u32,
    /// Chance, in thousandths, that a model is external (R17): owned by another
    /// synchronizer, reported by the embedder; it has no links of its own. Default: 0.
    pub external_permille: u32,
    /// Chance, in thousandths, that a model (not the first) is an extension: its one link
    /// is a proxy to a lower model (R16). Default: 0.
    pub proxy_permille: u32,
    /// Chance, in thousandths, that the last model watches the models next to it
    /// (`watch_degree` 1, R18). Default: 0 (the simulator: 300).
    pub watch_permille: u32,
}

impl Default for SchemaShape {
    fn default() -> Self {
        SchemaShape {
            models_max: 4,
            links_max: 2,
            model_deps_permille: 150,
            passive_permille: 0,
            external_permille: 0,
            proxy_permille: 0,
            watch_permille: 0,
        }
    }
}

/// A schema: models `M0..Mk`, each with an `int` field `v`, links to models of lower or
/// equal index (a model linking to itself makes trees; some models are extensions, whose
/// one link is a proxy to a lower model, R16), sometimes a model-level dependency on a lower model, and
/// usually an `int` feedback field `seen`. Some models are external (no links) or passive
/// (R17), and the last one may watch its neighbours (R18). Acyclic at the model level by
/// construction (R11), and without watch loops (only one model watches).
///
/// # Examples
/// ```
/// use syncore::sim::{gen, SplitMix64};
/// let def = gen::schema_def(&mut SplitMix64::new(1), &gen::SchemaShape::default());
/// assert!(syncore::Schema::new(def).is_ok());
/// ```
pub fn schema_def(rng: &mut SplitMix64, shape: &SchemaShape) -> SchemaDef {
    let n = rng.range(1, shape.models_max.max(1) as u64) as usize;
    let mut models = Vec::with_capacity(n);
    let mut extended = BTreeSet::new();
    for i in 0..n {
        let mut fields = vec![FieldDef {
            name: "v".into(),
            ty: FieldType::Int,
        }];
        let mut links = Vec::new();
        let mut linked = BTreeSet::new();
        // Never the last model, so that something can depend on it.
        let external = i + 1 < n && rng.chance(shape.external_permille);
        // An extension model (R16) has exactly one link, a proxy to a lower model, and no
        // model-level dependency: then no object cycle can close through proxies.
        // One extension model per base: two extensions of one object are each other's
        // dependents (each comes before everything depending on the base), a cycle.
        let base = if i > 0 {
            rng.below(i as u64) as usize
        } else {
            0
        };
        let extension =
            !external && i > 0 && !extended.contains(&base) && rng.chance(shape.proxy_permille);
        if extension {
            extended.insert(base);
        }
        let link_count = if external {
            0
        } else if extension {
            1
        } else {
            rng.below(shape.links_max as u64 + 1)
        };
        for _ in 0..link_count {
            let j = if extension {
                base
            } else {
                rng.below(i as u64 + 1) as usize
            };
            if !linked.insert(j) {
                continue;
            }
            let field = format!("to_m{j}");
            fields.push(FieldDef {
                name: field.clone(),
                // Single-valued for an extension: one extending two objects, one of which
                // depends on the other, would close a cycle.
                ty: if !extension && rng.chance(400) {
                    FieldType::Refs
                } else {
                    FieldType::Ref
                },
            });
            links.push(LinkDef {
                field,
                target: format!("M{j}"),
                proxy: extension,
                into: None,
            });
        }
        let mut depends_on_models = Vec::new();
        if i > 0 && !external && !extension && rng.chance(shape.model_deps_permille) {
            let j = rng.below(i as u64) as usize;
            if !linked.contains(&j) {
                depends_on_models.push(format!("M{j}"));
            }
        }
        let passive = !external
            && links.is_empty()
            && depends_on_models.is_empty()
            && rng.chance(shape.passive_permille);
        let feedback = if !passive && !external && rng.chance(700) {
            vec![FieldDef {
                name: "seen".into(),
                ty: FieldType::Int,
            }]
        } else {
            Vec::new()
        };
        models.push(ModelDef {
            name: format!("M{i}"),
            kind: if passive {
                ModelKind::Passive
            } else if external {
                ModelKind::External
            } else {
                ModelKind::Actuated
            },
            fields,
            feedback,
            links,
            depends_on_models,
            watch_degree: u32::from(i + 1 == n && n > 1 && rng.chance(shape.watch_permille)),
        });
    }
    SchemaDef { models }
}

/// A watcher for the simulator (R18): counts what it is told and fails every third
/// notification (by key), which the engine must log, count and otherwise ignore.
#[derive(Debug, Default)]
pub struct CountingWatcher {
    seen: std::sync::atomic::AtomicU64,
}

impl CountingWatcher {
    /// Notifications received so far.
    pub fn seen(&self) -> u64 {
        self.seen.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl crate::policy::Watcher for CountingWatcher {
    fn notify(&self, event: &crate::policy::WatchEvent<'_>) -> Result<(), String> {
        self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let text = format!("{event:?}");
        if text.len() % 3 == 0 {
            return Err(format!("watcher refused {text}"));
        }
        Ok(())
    }
}

/// Registers a [`CountingWatcher`] on every model of `engine`'s schema that watches
/// another (R18), so that watchers run, and fail, in every simulation of such a schema.
pub fn register_watchers(engine: &mut crate::engine::Engine) {
    let watching: Vec<String> = engine
        .schema()
        .models()
        .iter()
        .filter(|m| !m.watches.is_empty())
        .map(|m| m.name.clone())
        .collect();
    for m in watching {
        let _ = engine.register_watcher(&m, Box::new(CountingWatcher::default()));
    }
}

/// A link field of a model, as the stream sees it.
#[derive(Clone, Debug)]
struct LinkField {
    field: String,
    target: usize,
    many: bool,
}

#[derive(Clone, Debug)]
struct ModelInfo {
    name: String,
    external: bool,
    scalars: Vec<(String, FieldType)>,
    links: Vec<LinkField>,
}

/// One object of the stream's population.
#[derive(Clone, Debug)]
struct Member {
    model: usize,
    /// Links only ever point at members of lower index: no object cycle (R11).
    index: u64,
    /// Link field -> referenced keys.
    links: BTreeMap<String, Vec<String>>,
}

/// An endless, seeded stream of change sets over any schema: creates objects, changes
/// their fields, re-points their links, deletes them (often together with their referrers,
/// so deletes can complete), and now and then sends a set that must be refused (a link to
/// a missing key), to check atomicity. It keeps its own model of which objects exist, so it
/// never builds a cycle (links point from newer objects to older ones) and never touches a
/// deleted key again. Objects of external models are reported by
/// [`ChangeStream::reports`], as their owner would.
///
/// # Examples
/// ```
/// use syncore::sim::gen::ChangeStream;
/// use syncore::{Config, Engine, Schema};
/// let schema = Schema::from_json(r#"{"models": [{"name": "A", "fields": [
///     {"name": "up", "type": "ref"}], "links": [{"field": "up", "target": "A"}]}]}"#)?;
/// let mut stream = ChangeStream::new(&schema, 7, 10);
/// let mut engine = Engine::new(schema, Config::default());
/// for _ in 0..20 {
///     let set = stream.next_set();
///     let _ = engine.apply(set); // refused sets leave the engine unchanged
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ChangeStream {
    rng: SplitMix64,
    models: Vec<ModelInfo>,
    members: BTreeMap<String, Member>,
    next_index: u64,
    objects_max: usize,
    /// Whether the last set was built to be refused.
    last_invalid: bool,
}

impl ChangeStream {
    /// A stream over `schema`'s models, drawn from `seed`, keeping at most `objects_max`
    /// objects alive.
    pub fn new(schema: &Schema, seed: u64, objects_max: usize) -> ChangeStream {
        let models = schema
            .models()
            .iter()
            .map(|m| ModelInfo {
                name: m.name.clone(),
                external: m.kind == ModelKind::External,
                scalars: m
                    .fields
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| m.link_of_field[*i].is_none())
                    .map(|(_, f)| (f.name.clone(), f.ty))
                    .collect(),
                links: m
                    .links
                    .iter()
                    .map(|l| LinkField {
                        field: m.fields[l.field as usize].name.clone(),
                        target: l.target.index(),
                        many: l.many,
                    })
                    .collect(),
            })
            .collect();
        ChangeStream {
            rng: SplitMix64::new(seed),
            models,
            members: BTreeMap::new(),
            next_index: 0,
            objects_max,
            last_invalid: false,
        }
    }

    /// What the owner of external objects reports now (R17): for a few of `engine`'s
    /// external objects not yet synced at their version, "synced at v" (mostly) or
    /// "failed about v"; with `all`, every such object is reported synced (the owner
    /// catching up once faults stop).
    pub fn reports(
        &mut self,
        engine: &crate::engine::Engine,
        all: bool,
    ) -> Vec<(String, crate::complete::ExternalReport)> {
        let mut out = Vec::new();
        for key in engine.keys() {
            let Some(o) = engine.object(key) else {
                continue;
            };
            let external = self.models.iter().any(|m| m.external && m.name == o.model);
            if !external || o.deleting || o.enacted == o.version {
                continue;
            }
            if all || self.rng.chance(300) {
                let report = if !all && self.rng.chance(200) {
                    crate::complete::ExternalReport::Failed {
                        version: o.version,
                        message: "the owner failed".into(),
                    }
                } else {
                    crate::complete::ExternalReport::Synced { version: o.version }
                };
                out.push((key.to_string(), report));
            }
        }
        out
    }

    /// Whether the last set from [`ChangeStream::next_set`] was built to be refused.
    pub fn last_was_invalid(&self) -> bool {
        self.last_invalid
    }

    /// Keys the stream believes alive, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.members.keys().map(String::as_str)
    }

    /// A change set creating `n` objects (a first graph).
    pub fn populate(&mut self, n: usize) -> ChangeSet {
        let mut changes = Vec::new();
        for _ in 0..n {
            if let Some(c) = self.create() {
                changes.push(c);
            }
        }
        self.last_invalid = false;
        ChangeSet { changes }
    }

    /// The next change set: one to four changes on distinct keys.
    pub fn next_set(&mut self) -> ChangeSet {
        // Decided first, so the population is copied only when it must be restored.
        let invalid = self.rng.chance(50);
        let backup = invalid.then(|| (self.members.clone(), self.next_index));
        let mut changes: Vec<Change> = Vec::new();
        let mut used: BTreeSet<String> = BTreeSet::new();
        let mut deleted: BTreeSet<String> = BTreeSet::new();
        let count = self.rng.range(1, 4);
        for _ in 0..count {
            let roll = self.rng.below(100);
            if roll < 40 || self.members.is_empty() {
                if let Some(c) = self.create() {
                    used.insert(c.key().to_string());
                    changes.push(c);
                }
            } else if roll < 75 {
                let Some(key) = self.pick_member(&used) else {
                    continue;
                };
                // Its existing links are checked again: none may dangle.
                let links_deleted = self.members[&key]
                    .links
                    .values()
                    .flatten()
                    .any(|t| deleted.contains(t));
                if links_deleted {
                    continue;
                }
                if let Some(c) = self.update(&key) {
                    used.insert(key);
                    changes.push(c);
                }
            } else {
                let Some(key) = self.pick_member(&used) else {
                    continue;
                };
                // A change of this set that links to it would dangle.
                let linked_here = self
                    .members
                    .iter()
                    .any(|(k, m)| used.contains(k) && m.links.values().any(|v| v.contains(&key)));
                if linked_here {
                    continue;
                }
                used.insert(key.clone());
                deleted.insert(key.clone());
                self.members.remove(&key);
                changes.push(Change::delete(key.clone()));
                if self.rng.chance(700) {
                    // Let the delete complete: unlink or delete its referrers too (R7).
                    let referrers: Vec<String> = self
                        .members
                        .iter()
                        .filter(|(_, m)| m.links.values().any(|v| v.contains(&key)))
                        .map(|(k, _)| k.clone())
                        .filter(|k| !used.contains(k))
                        .collect();
                    let alive: BTreeSet<String> = self.members.keys().cloned().collect();
                    for r in referrers {
                        used.insert(r.clone());
                        let m = self.members.get_mut(&r).expect("a member");
                        let mut fields: Vec<(String, Value)> = Vec::new();
                        for (field, targets) in m.links.iter_mut() {
                            // Every field holding a deleted key: this one's, and any
                            // deleted earlier in the set (it would dangle).
                            if targets.iter().any(|t| !alive.contains(t)) {
                                // Only live targets: others are deleted, maybe in this set.
                                targets.retain(|t| alive.contains(t));
                                let many = self.models[m.model]
                                    .links
                                    .iter()
                                    .any(|l| l.field == *field && l.many);
                                fields.push((field.clone(), link_value(targets, many)));
                            }
                        }
                        let model = self.models[m.model].name.clone();
                        changes.push(Change::upsert(r, model, fields));
                    }
                }
            }
        }
        self.last_invalid = false;
        if let Some(backup) = backup {
            if let Some((key, model, field)) = self.any_link_field() {
                if !used.contains(&key) {
                    changes.push(Change::upsert(
                        key,
                        model,
                        [(field, Value::Ref("ghost".into()))],
                    ));
                    self.last_invalid = true;
                    (self.members, self.next_index) = backup;
                }
            }
        }
        ChangeSet { changes }
    }

    fn pick_member(&mut self, used: &BTreeSet<String>) -> Option<String> {
        let keys: Vec<&String> = self.members.keys().filter(|k| !used.contains(*k)).collect();
        self.rng.pick(&keys).map(|k| (*k).clone())
    }

    fn any_link_field(&mut self) -> Option<(String, String, String)> {
        let candidates: Vec<(String, String, String)> = self
            .members
            .iter()
            .flat_map(|(k, m)| {
                let info = &self.models[m.model];
                info.links
                    .iter()
                    .filter(|l| !l.many)
                    .map(move |l| (k.clone(), info.name.clone(), l.field.clone()))
            })
            .collect();
        self.rng.pick(&candidates).cloned()
    }

    fn scalar(&mut self, ty: FieldType) -> Value {
        match ty {
            FieldType::Bool => Value::Bool(self.rng.chance(500)),
            FieldType::Int => Value::Int(self.rng.below(4) as i64),
            FieldType::Float => Value::Float(self.rng.below(4) as f64 / 2.0),
            FieldType::String => Value::Str(format!("s{}", self.rng.below(4))),
            FieldType::Bytes => Value::Bytes(vec![self.rng.below(4) as u8]),
            FieldType::Json => Value::Json(format!("{{\"x\":{}}}", self.rng.below(4))),
            FieldType::Ref | FieldType::Refs => Value::Null,
        }
    }

    /// Targets for a link of a member with index `below`: older live members of `target`.
    fn targets(&mut self, target: usize, below: u64, many: bool) -> Vec<String> {
        let pool: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.model == target && m.index < below)
            .map(|(k, _)| k.clone())
            .collect();
        if pool.is_empty() || self.rng.chance(250) {
            return Vec::new();
        }
        let n = if many { self.rng.range(1, 3) } else { 1 };
        let mut out = BTreeSet::new();
        for _ in 0..n {
            if let Some(k) = self.rng.pick(&pool) {
                out.insert(k.clone());
            }
        }
        out.into_iter().collect()
    }

    fn create(&mut self) -> Option<Change> {
        if self.members.len() >= self.objects_max {
            return None;
        }
        let choices: Vec<usize> = (0..self.models.len()).collect();
        let model = *self.rng.pick(&choices)?;
        let index = self.next_index;
        self.next_index += 1;
        let key = format!("o{index:05}");
        let info = self.models[model].clone();
        let mut fields: Vec<(String, Value)> = Vec::new();
        for (name, ty) in &info.scalars {
            let v = self.scalar(*ty);
            fields.push((name.clone(), v));
        }
        let mut links = BTreeMap::new();
        for l in &info.links {
            let t = self.targets(l.target, index, l.many);
            fields.push((l.field.clone(), link_value(&t, l.many)));
            links.insert(l.field.clone(), t);
        }
        self.members.insert(
            key.clone(),
            Member {
                model,
                index,
                links,
            },
        );
        Some(Change::upsert(key, info.name, fields))
    }

    fn update(&mut self, key: &str) -> Option<Change> {
        let m = self.members.get(key)?.clone();
        let info = self.models[m.model].clone();
        let relink = !info.links.is_empty() && (info.scalars.is_empty() || self.rng.chance(500));
        let field = if relink {
            let l = &info.links[self.rng.below(info.links.len() as u64) as usize];
            let t = self.targets(l.target, m.index, l.many);
            let v = link_value(&t, l.many);
            self.members
                .get_mut(key)
                .expect("a member")
                .links
                .insert(l.field.clone(), t);
            (l.field.clone(), v)
        } else if let Some((name, ty)) = info.scalars.first() {
            (name.clone(), self.scalar(*ty))
        } else {
            return None;
        };
        Some(Change::upsert(key, info.name, [field]))
    }
}

fn link_value(targets: &[String], many: bool) -> Value {
    match (many, targets.first()) {
        (true, _) => Value::Refs(targets.to_vec()),
        (false, Some(k)) => Value::Ref(k.clone()),
        (false, None) => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Engine};

    #[test]
    fn generated_schemas_are_valid_and_streams_apply() {
        for seed in 0..40 {
            let mut rng = SplitMix64::new(seed);
            let shape = SchemaShape {
                passive_permille: 200,
                external_permille: 150,
                proxy_permille: 300,
                watch_permille: 300,
                ..SchemaShape::default()
            };
            let schema = Schema::new(schema_def(&mut rng, &shape)).expect("valid schema");
            let mut stream = ChangeStream::new(&schema, seed, 12);
            let mut engine = Engine::new(schema, Config::default());
            engine
                .apply(stream.populate(6))
                .expect("a first graph applies");
            for _ in 0..50 {
                let set = stream.next_set();
                let invalid = stream.last_was_invalid();
                let result = engine.apply(set.clone());
                assert_eq!(
                    result.is_err(),
                    invalid,
                    "seed {seed}: {set:?} -> {result:?}"
                );
            }
        }
    }
}
