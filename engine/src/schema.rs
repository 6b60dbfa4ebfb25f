//! The schema: models, their fields, links and model-level dependencies, checked once and
//! frozen.
//!
//! A [`SchemaDef`] is plain serde data (it loads from JSON, so it can live in a file);
//! [`Schema::new`] validates it into dense tables the rest of the engine indexes by
//! [`ModelId`] and field slot. Validation refuses unknown targets, duplicate names, links on
//! non-reference fields, model dependency cycles (R11, proxies excepted, R16) and watch loops
//! (R11), naming the models and fields involved.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::SchemaError;
use crate::id::ModelId;
use crate::value::FieldType;

/// Most models a schema may hold.
pub const MODELS_MAX: usize = 4096;
/// Most fields (declarative plus feedback) one model may hold.
pub const FIELDS_MAX: usize = 1024;

/// A schema as written by its author (JSON-loadable).
///
/// # Examples
/// ```
/// use syncore::Schema;
/// let schema = Schema::from_json(r#"{"models": [
///   {"name": "Site", "fields": [{"name": "name", "type": "string"}]},
///   {"name": "Slice", "fields": [{"name": "site", "type": "ref"}],
///    "links": [{"field": "site", "target": "Site"}]}
/// ]}"#).unwrap();
/// assert_eq!(schema.models().len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaDef {
    /// The models, in any order.
    pub models: Vec<ModelDef>,
}

/// How a model is brought in sync (R17).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// One actuator syncs and deletes its objects. The default.
    #[default]
    Actuated,
    /// Owned by another synchronizer: the embedder reports when it is synced.
    External,
    /// Pure data: synced when applied, removed once nothing references it.
    Passive,
}

/// One model as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDef {
    /// Unique model name.
    pub name: String,
    /// How it is synced. Default: actuated.
    #[serde(default)]
    pub kind: ModelKind,
    /// Declarative fields: authoritative, written by change sets and policies.
    #[serde(default)]
    pub fields: Vec<FieldDef>,
    /// Feedback fields: written only by the model's actuator (R9).
    #[serde(default)]
    pub feedback: Vec<FieldDef>,
    /// Links: reference fields and the model they point at.
    #[serde(default)]
    pub links: Vec<LinkDef>,
    /// Models every object of this one waits for, without a link field (R1).
    #[serde(default)]
    pub depends_on_models: Vec<String>,
    /// Watch every model within this many link hops (R18). Default: 0 (none).
    #[serde(default)]
    pub watch_degree: u32,
}

/// A field as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    /// Field name, unique within its model (declarative and feedback together).
    pub name: String,
    /// Field type.
    #[serde(rename = "type")]
    pub ty: FieldType,
}

/// A link as written: `field` references objects of `target`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkDef {
    /// The declarative `ref` or `refs` field holding the reference.
    pub field: String,
    /// The model referenced.
    pub target: String,
    /// This object extends the referenced one (R16). Default: `false`.
    #[serde(default)]
    pub proxy: bool,
    /// When present, this model's watcher watches the target's changes to these fields
    /// (an empty list: every field). Default: absent, no watch.
    #[serde(default)]
    pub into: Option<Vec<String>>,
}

/// A validated link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Declarative field slot holding the reference.
    pub field: u16,
    /// The model referenced.
    pub target: ModelId,
    /// Whether the field holds many references (`refs`).
    pub many: bool,
    /// Whether the link is a proxy (R16).
    pub proxy: bool,
}

/// Where a field name lives inside its model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldSlot {
    /// Index into the declarative fields.
    Declarative(u16),
    /// Index into the feedback fields.
    Feedback(u16),
}

/// A validated model.
#[derive(Clone, Debug)]
pub struct Model {
    /// Model name.
    pub name: String,
    /// Kind (R17).
    pub kind: ModelKind,
    /// Declarative fields, by slot.
    pub fields: Vec<FieldDef>,
    /// Feedback fields, by slot.
    pub feedback: Vec<FieldDef>,
    /// Links, in declaration order.
    pub links: Vec<Link>,
    /// Link index per declarative slot, if that field is a link.
    pub link_of_field: Vec<Option<u16>>,
    /// Models every object of this one waits for (R1), sorted.
    pub depends_on: Vec<ModelId>,
    /// Models whose `depends_on_models` name this one, sorted: their deletes run before
    /// this model's (R7).
    pub depended_on_by: Vec<ModelId>,
    /// Watched models with their field filter (`None`: every field), sorted by model.
    pub watches: Vec<(ModelId, Option<BTreeSet<String>>)>,
    slots: BTreeMap<String, FieldSlot>,
}

impl Model {
    /// The slot of field `name`.
    pub fn slot(&self, name: &str) -> Option<FieldSlot> {
        self.slots.get(name).copied()
    }
}

/// A validated, frozen schema.
#[derive(Clone, Debug)]
pub struct Schema {
    def: SchemaDef,
    models: Vec<Model>,
    by_name: BTreeMap<String, ModelId>,
}

impl Schema {
    /// Parses and validates a JSON schema.
    ///
    /// # Errors
    /// [`SchemaError::Parse`] with line and column, or any validation error of [`Schema::new`].
    pub fn from_json(text: &str) -> Result<Schema, SchemaError> {
        let def: SchemaDef = serde_json::from_str(text).map_err(|e| SchemaError::Parse {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        Schema::new(def)
    }

    /// Validates a schema definition.
    ///
    /// # Errors
    /// A [`SchemaError`] naming the model and field at fault: duplicate names, unknown
    /// targets, links on non-reference fields, reference fields without a link, model
    /// dependency cycles (R11), watch loops (R11).
    pub fn new(def: SchemaDef) -> Result<Schema, SchemaError> {
        if def.models.len() > MODELS_MAX {
            return Err(SchemaError::TooLarge {
                what: "models",
                max: MODELS_MAX,
            });
        }
        let mut by_name = BTreeMap::new();
        for (i, m) in def.models.iter().enumerate() {
            if m.name.is_empty() {
                return Err(SchemaError::EmptyName {
                    model: format!("#{i}"),
                });
            }
            if by_name.insert(m.name.clone(), ModelId(i as u16)).is_some() {
                return Err(SchemaError::DuplicateModel {
                    model: m.name.clone(),
                });
            }
        }
        let mut models = Vec::with_capacity(def.models.len());
        for m in &def.models {
            models.push(compile_model(m, &by_name)?);
        }
        check_model_cycles(&def, &models)?;
        for a in 0..models.len() {
            for d in models[a].depends_on.clone() {
                models[d.index()].depended_on_by.push(ModelId(a as u16));
            }
        }
        compute_watches(&def, &mut models, &by_name)?;
        Ok(Schema {
            def,
            models,
            by_name,
        })
    }

    /// The definition this schema was built from.
    pub fn def(&self) -> &SchemaDef {
        &self.def
    }

    /// All models, indexed by [`ModelId`].
    pub fn models(&self) -> &[Model] {
        &self.models
    }

    /// The model with id `id`.
    pub fn model(&self, id: ModelId) -> &Model {
        &self.models[id.index()]
    }

    /// The id of the model named `name`.
    pub fn model_id(&self, name: &str) -> Option<ModelId> {
        self.by_name.get(name).copied()
    }
}

fn compile_model(m: &ModelDef, by_name: &BTreeMap<String, ModelId>) -> Result<Model, SchemaError> {
    if m.fields.len() + m.feedback.len() > FIELDS_MAX {
        return Err(SchemaError::TooLarge {
            what: "fields of one model",
            max: FIELDS_MAX,
        });
    }
    let mut slots = BTreeMap::new();
    for (i, f) in m.fields.iter().enumerate() {
        check_field_name(m, f)?;
        if slots
            .insert(f.name.clone(), FieldSlot::Declarative(i as u16))
            .is_some()
        {
            return Err(dup_field(m, f));
        }
    }
    for (i, f) in m.feedback.iter().enumerate() {
        check_field_name(m, f)?;
        if f.ty.is_reference() {
            return Err(SchemaError::FeedbackReference {
                model: m.name.clone(),
                field: f.name.clone(),
            });
        }
        if slots
            .insert(f.name.clone(), FieldSlot::Feedback(i as u16))
            .is_some()
        {
            return Err(dup_field(m, f));
        }
    }
    let mut links = Vec::new();
    let mut link_of_field = vec![None; m.fields.len()];
    for l in &m.links {
        let slot = match slots.get(&l.field) {
            Some(FieldSlot::Declarative(s)) => *s,
            _ => {
                return Err(SchemaError::UnknownLinkField {
                    model: m.name.clone(),
                    field: l.field.clone(),
                })
            }
        };
        let ty = m.fields[slot as usize].ty;
        if !ty.is_reference() {
            return Err(SchemaError::LinkOnNonReference {
                model: m.name.clone(),
                field: l.field.clone(),
                ty,
            });
        }
        let target = *by_name
            .get(&l.target)
            .ok_or_else(|| SchemaError::UnknownTarget {
                model: m.name.clone(),
                field: l.field.clone(),
                target: l.target.clone(),
            })?;
        if link_of_field[slot as usize].is_some() {
            return Err(SchemaError::DuplicateLink {
                model: m.name.clone(),
                field: l.field.clone(),
            });
        }
        link_of_field[slot as usize] = Some(links.len() as u16);
        links.push(Link {
            field: slot,
            target,
            many: ty == FieldType::Refs,
            proxy: l.proxy,
        });
    }
    for (i, f) in m.fields.iter().enumerate() {
        if f.ty.is_reference() && link_of_field[i].is_none() {
            return Err(SchemaError::ReferenceWithoutLink {
                model: m.name.clone(),
                field: f.name.clone(),
            });
        }
    }
    let mut depends_on = Vec::new();
    for d in &m.depends_on_models {
        let id = *by_name
            .get(d)
            .ok_or_else(|| SchemaError::UnknownDependsOn {
                model: m.name.clone(),
                target: d.clone(),
            })?;
        depends_on.push(id);
    }
    depends_on.sort();
    depends_on.dedup();
    Ok(Model {
        name: m.name.clone(),
        kind: m.kind,
        fields: m.fields.clone(),
        feedback: m.feedback.clone(),
        links,
        link_of_field,
        depends_on,
        depended_on_by: Vec::new(),
        watches: Vec::new(),
        slots,
    })
}

fn check_field_name(m: &ModelDef, f: &FieldDef) -> Result<(), SchemaError> {
    if f.name.is_empty() {
        return Err(SchemaError::EmptyName {
            model: m.name.clone(),
        });
    }
    Ok(())
}

fn dup_field(m: &ModelDef, f: &FieldDef) -> SchemaError {
    SchemaError::DuplicateField {
        model: m.name.clone(),
        field: f.name.clone(),
    }
}

/// R11: a cycle of two or more models through non-proxy links or `depends_on_models` is
/// refused; a model linking to itself is allowed (its objects are checked one by one).
/// A `depends_on_models` edge may not sit on any cycle at all, proxies and the edges they
/// imply included, because model-level waits are not checked object by object.
fn check_model_cycles(def: &SchemaDef, models: &[Model]) -> Result<(), SchemaError> {
    let n = models.len();
    let mut strict: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut all: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (a, m) in models.iter().enumerate() {
        for l in &m.links {
            let b = l.target.index();
            if b == a {
                continue;
            }
            all[a].push(b);
            if !l.proxy {
                strict[a].push(b);
            }
        }
        for d in &m.depends_on {
            strict[a].push(d.index());
            all[a].push(d.index());
        }
    }
    // R16 implies edges too: a non-proxy link A -> B makes A wait for every extension E of B.
    // Extensions are indexed once, so this costs links x extensions, not links x all links
    // (a large schema must not take quadratic time to refuse or accept, issue 7).
    let mut extensions_of: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (e, em) in models.iter().enumerate() {
        for pl in em.links.iter().filter(|l| l.proxy) {
            extensions_of[pl.target.index()].push(e);
        }
    }
    for ext in &mut extensions_of {
        ext.sort_unstable();
        ext.dedup();
    }
    for (a, m) in models.iter().enumerate() {
        let mut targets: Vec<usize> = m
            .links
            .iter()
            .filter(|l| !l.proxy)
            .map(|l| l.target.index())
            .collect();
        targets.sort_unstable();
        targets.dedup();
        for t in targets {
            all[a].extend(extensions_of[t].iter().copied().filter(|&e| e != a));
        }
    }
    if let Some(cycle) = find_cycle(&strict) {
        return Err(SchemaError::ModelCycle {
            models: name_cycle(def, cycle),
        });
    }
    for (a, m) in models.iter().enumerate() {
        for d in &m.depends_on {
            if let Some(mut path) = path_between(&all, d.index(), a) {
                path.insert(0, a);
                path.pop();
                return Err(SchemaError::ModelCycle {
                    models: name_cycle(def, path),
                });
            }
        }
    }
    Ok(())
}

/// The watch graph: explicit `into` links plus every model within `watch_degree` hops.
/// A loop in it (R11) is refused.
fn compute_watches(
    def: &SchemaDef,
    models: &mut [Model],
    by_name: &BTreeMap<String, ModelId>,
) -> Result<(), SchemaError> {
    let n = models.len();
    let adj: Vec<Vec<usize>> = models
        .iter()
        .map(|m| {
            let mut v: Vec<usize> = m
                .links
                .iter()
                .map(|l| l.target.index())
                .chain(m.depends_on.iter().map(|d| d.index()))
                .collect();
            v.sort();
            v.dedup();
            v
        })
        .collect();
    let mut watch_graph: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (a, mdef) in def.models.iter().enumerate() {
        let mut watches: BTreeMap<ModelId, Option<BTreeSet<String>>> = BTreeMap::new();
        for l in &mdef.links {
            let Some(into) = &l.into else { continue };
            let target = by_name[&l.target];
            let tm = &models[target.index()];
            for f in into {
                if tm.slot(f).is_none() {
                    return Err(SchemaError::UnknownIntoField {
                        model: mdef.name.clone(),
                        target: l.target.clone(),
                        field: f.clone(),
                    });
                }
            }
            let filter = if into.is_empty() {
                None
            } else {
                Some(into.iter().cloned().collect())
            };
            merge_watch(&mut watches, target, filter);
        }
        // Breadth-first over the model graph, up to watch_degree hops.
        let mut seen = vec![false; n];
        seen[a] = true;
        let mut frontier = vec![a];
        for _ in 0..mdef.watch_degree.min(n as u32) {
            let mut next = Vec::new();
            for &u in &frontier {
                for &v in &adj[u] {
                    if !seen[v] {
                        seen[v] = true;
                        next.push(v);
                        merge_watch(&mut watches, ModelId(v as u16), None);
                    }
                }
            }
            frontier = next;
        }
        // A model watching itself (a tree watching its parent through its self-link) is no
        // loop: watchers change nothing, and no other model is involved (R11).
        for t in watches.keys().filter(|t| t.index() != a) {
            watch_graph[a].push(t.index());
        }
        models[a].watches = watches.into_iter().collect();
    }
    if let Some(cycle) = find_cycle(&watch_graph) {
        return Err(SchemaError::WatchLoop {
            models: name_cycle(def, cycle),
        });
    }
    Ok(())
}

fn merge_watch(
    watches: &mut BTreeMap<ModelId, Option<BTreeSet<String>>>,
    target: ModelId,
    filter: Option<BTreeSet<String>>,
) {
    match watches.get_mut(&target) {
        None => {
            watches.insert(target, filter);
        }
        Some(existing) => match (existing.as_mut(), filter) {
            (Some(have), Some(more)) => have.extend(more),
            _ => *existing = None,
        },
    }
}

/// Any cycle in a small directed graph (self-loops included), as a list of nodes in order.
pub(crate) fn find_cycle(adj: &[Vec<usize>]) -> Option<Vec<usize>> {
    // 0 = unseen, 1 = on stack, 2 = done. Iterative DFS keeps deep graphs off the call stack.
    let n = adj.len();
    let mut state = vec![0u8; n];
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let mut path: Vec<usize> = Vec::new();
    for root in 0..n {
        if state[root] != 0 {
            continue;
        }
        stack.push((root, 0));
        state[root] = 1;
        path.push(root);
        while let Some(&mut (u, ref mut i)) = stack.last_mut() {
            if *i < adj[u].len() {
                let v = adj[u][*i];
                *i += 1;
                match state[v] {
                    0 => {
                        state[v] = 1;
                        stack.push((v, 0));
                        path.push(v);
                    }
                    1 => {
                        let start = path.iter().position(|&x| x == v).unwrap_or(0);
                        return Some(path[start..].to_vec());
                    }
                    _ => {}
                }
            } else {
                state[u] = 2;
                stack.pop();
                path.pop();
            }
        }
    }
    None
}

/// A path from `from` to `to` (both included), if any.
fn path_between(adj: &[Vec<usize>], from: usize, to: usize) -> Option<Vec<usize>> {
    let mut prev = vec![usize::MAX; adj.len()];
    let mut queue = std::collections::VecDeque::from([from]);
    prev[from] = from;
    while let Some(u) = queue.pop_front() {
        if u == to {
            let mut path = vec![to];
            let mut x = to;
            while x != from {
                x = prev[x];
                path.push(x);
            }
            path.reverse();
            return Some(path);
        }
        for &v in &adj[u] {
            if prev[v] == usize::MAX {
                prev[v] = u;
                queue.push_back(v);
            }
        }
    }
    None
}

/// Names of a cycle's models, rotated to start at the smallest name.
fn name_cycle(def: &SchemaDef, cycle: Vec<usize>) -> Vec<String> {
    let names: Vec<String> = cycle.iter().map(|&i| def.models[i].name.clone()).collect();
    rotate_to_min(names)
}

/// Rotates a cycle so its smallest element comes first (a canonical form for errors).
pub(crate) fn rotate_to_min<T: Ord>(mut cycle: Vec<T>) -> Vec<T> {
    if let Some(pos) = cycle
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.cmp(b.1))
        .map(|(i, _)| i)
    {
        cycle.rotate_left(pos);
    }
    cycle
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> SchemaError {
        Schema::from_json(json).unwrap_err()
    }

    #[test]
    fn unknown_target_names_model_and_field() {
        let e = err(
            r#"{"models":[{"name":"A","fields":[{"name":"b","type":"ref"}],"links":[{"field":"b","target":"B"}]}]}"#,
        );
        assert_eq!(
            e,
            SchemaError::UnknownTarget {
                model: "A".into(),
                field: "b".into(),
                target: "B".into()
            }
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        let e = err(r#"{"models":[{"name":"A"},{"name":"A"}]}"#);
        assert_eq!(e, SchemaError::DuplicateModel { model: "A".into() });
        let e = err(
            r#"{"models":[{"name":"A","fields":[{"name":"x","type":"int"}],"feedback":[{"name":"x","type":"int"}]}]}"#,
        );
        assert_eq!(
            e,
            SchemaError::DuplicateField {
                model: "A".into(),
                field: "x".into()
            }
        );
    }

    #[test]
    fn link_on_non_reference_field_is_refused() {
        let e = err(
            r#"{"models":[{"name":"A","fields":[{"name":"x","type":"int"}],"links":[{"field":"x","target":"A"}]}]}"#,
        );
        assert_eq!(
            e,
            SchemaError::LinkOnNonReference {
                model: "A".into(),
                field: "x".into(),
                ty: FieldType::Int
            }
        );
    }

    #[test]
    fn r11_model_cycle_is_named_but_self_links_and_proxies_pass() {
        let cyc = r#"{"models":[
            {"name":"B","fields":[{"name":"c","type":"ref"}],"links":[{"field":"c","target":"C"}]},
            {"name":"C","fields":[{"name":"a","type":"ref"}],"links":[{"field":"a","target":"A"}]},
            {"name":"A","fields":[{"name":"b","type":"ref"}],"links":[{"field":"b","target":"B"}]}]}"#;
        assert_eq!(
            err(cyc),
            SchemaError::ModelCycle {
                models: vec!["A".into(), "B".into(), "C".into()]
            }
        );
        let tree = r#"{"models":[{"name":"T","fields":[{"name":"parent","type":"ref"}],"links":[{"field":"parent","target":"T"}]}]}"#;
        assert!(Schema::from_json(tree).is_ok());
        let proxy = r#"{"models":[
            {"name":"A","fields":[{"name":"b","type":"ref"}],"links":[{"field":"b","target":"B","proxy":true}]},
            {"name":"B","fields":[{"name":"a","type":"ref"}],"links":[{"field":"a","target":"A"}]}]}"#;
        assert!(Schema::from_json(proxy).is_ok());
        let dep = r#"{"models":[{"name":"A","depends_on_models":["B"]},{"name":"B","depends_on_models":["A"]}]}"#;
        assert_eq!(
            err(dep),
            SchemaError::ModelCycle {
                models: vec!["A".into(), "B".into()]
            }
        );
    }

    #[test]
    fn r11_model_dependency_may_not_close_a_loop_through_a_proxy_extension() {
        // X links P; E extends P, so X waits for E (R16); E waiting for all X would loop.
        let json = r#"{"models":[
            {"name":"P"},
            {"name":"X","fields":[{"name":"p","type":"ref"}],"links":[{"field":"p","target":"P"}]},
            {"name":"E","fields":[{"name":"p","type":"ref"}],"links":[{"field":"p","target":"P","proxy":true}],
             "depends_on_models":["X"]}]}"#;
        assert_eq!(
            err(json),
            SchemaError::ModelCycle {
                models: vec!["E".into(), "X".into()]
            }
        );
    }

    #[test]
    fn r11_watch_loop_is_refused_naming_the_loop() {
        let json = r#"{"models":[
            {"name":"A","fields":[{"name":"b","type":"ref"}],"links":[{"field":"b","target":"B","into":["ip"]}]},
            {"name":"B","feedback":[{"name":"ip","type":"string"}],"watch_degree":0},
            {"name":"C","fields":[{"name":"a","type":"ref"}],"links":[{"field":"a","target":"A"}]}]}"#;
        assert!(Schema::from_json(json).is_ok());
        let looped = r#"{"models":[
            {"name":"A","fields":[{"name":"b","type":"ref"}],"links":[{"field":"b","target":"B","into":[],"proxy":true}]},
            {"name":"B","fields":[{"name":"a","type":"ref"}],"links":[{"field":"a","target":"A","into":[]}]}]}"#;
        assert_eq!(
            err(looped),
            SchemaError::WatchLoop {
                models: vec!["A".into(), "B".into()]
            }
        );
    }

    #[test]
    fn parse_errors_carry_line_and_column() {
        match err("{\n  \"models\": [\n") {
            SchemaError::Parse { line, .. } => assert_eq!(line, 3),
            other => panic!("unexpected {other:?}"),
        }
    }
}
