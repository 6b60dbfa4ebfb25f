//! Target `schema`: schema JSON parse and validation.
//!
//! Input: JSON text when it starts with `{` (after blanks), otherwise bytes that
//! `arbitrary` turns into a [`SchemaDef`] over small name pools, so that links, targets,
//! proxies, `depends_on_models` and `into` filters refer to each other and cycles are
//! common.
//!
//! Oracle: R11 restated naively. An accepted schema has no cycle of two or more models
//! through non-proxy links and model-level dependencies, no model-level dependency on any
//! cycle (proxy-implied edges included), every reference field has exactly one link, and
//! its definition round-trips through JSON and a snapshot. A refused one names a real
//! cycle (`ModelCycle`, `WatchLoop`) or a real fault.

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Unstructured;
use syncore::{Config, Engine, FieldDef, LinkDef, ModelDef, Schema, SchemaDef, SchemaError};

use super::gen::{self, below, Draw};

const MODEL_NAMES: &[&str] = &["A", "B", "C", "D", "E"];
const FIELD_NAMES: &[&str] = &["f", "g", "h", "ip"];

/// Runs one input; `Err` is a finding.
pub fn run(data: &[u8]) -> Result<(), String> {
    let text_mode = data
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{');
    let def = if text_mode {
        let Ok(text) = std::str::from_utf8(data) else {
            return Ok(());
        };
        match serde_json::from_str::<SchemaDef>(text) {
            Ok(def) => {
                // `from_json` is parse-then-`new`: the two paths must agree.
                let direct = Schema::from_json(text).map(|s| s.def().clone());
                let staged = Schema::new(def.clone()).map(|s| s.def().clone());
                if direct != staged {
                    return Err(format!("from_json gave {direct:?}, new gave {staged:?}"));
                }
                def
            }
            Err(_) => {
                return match Schema::from_json(text) {
                    Err(SchemaError::Parse { .. }) => Ok(()),
                    other => Err(format!("unparsable schema text gave {other:?}")),
                }
            }
        }
    } else {
        let Ok(def) = schema_def(&mut Unstructured::new(data)) else {
            return Ok(());
        };
        def
    };
    match Schema::new(def.clone()) {
        Ok(schema) => check_accepted(&schema),
        Err(e) => check_refused(&def, &e),
    }
}

/// A schema definition drawn from `u`.
pub fn schema_def(u: &mut Unstructured<'_>) -> Draw<SchemaDef> {
    let n = 1 + below(u, 5)?;
    let mut models = Vec::with_capacity(n);
    for default_name in &MODEL_NAMES[..n] {
        let name = if u.ratio(1, 12)? {
            gen::name(u, MODEL_NAMES)?
        } else {
            default_name.to_string()
        };
        let field = |u: &mut Unstructured<'_>| -> Draw<FieldDef> {
            Ok(FieldDef {
                name: gen::name(u, FIELD_NAMES)?,
                ty: gen::field_type(u)?,
            })
        };
        let fields = (0..below(u, 4)?).map(|_| field(u)).collect::<Draw<_>>()?;
        let feedback = (0..below(u, 2)?).map(|_| field(u)).collect::<Draw<_>>()?;
        let mut links = Vec::new();
        for _ in 0..below(u, 4)? {
            let into = if u.ratio(1, 4)? {
                Some(
                    (0..below(u, 3)?)
                        .map(|_| gen::name(u, FIELD_NAMES))
                        .collect::<Draw<_>>()?,
                )
            } else {
                None
            };
            links.push(LinkDef {
                field: gen::name(u, FIELD_NAMES)?,
                target: gen::name(u, &MODEL_NAMES[..n])?,
                proxy: u.ratio(1, 3)?,
                into,
            });
        }
        let depends_on_models = (0..below(u, 2)?)
            .map(|_| gen::name(u, &MODEL_NAMES[..n]))
            .collect::<Draw<_>>()?;
        models.push(ModelDef {
            name,
            kind: gen::kind(u)?,
            fields,
            feedback,
            links,
            depends_on_models,
            watch_degree: below(u, 4)? as u32,
        });
    }
    Ok(SchemaDef { models })
}

/// Edges of the model graph, as (from, to) model names.
type Edges = BTreeSet<(String, String)>;

/// Model-graph edges restated from the definition: (strict, all). `strict` has non-proxy
/// links to other models and model-level dependencies; `all` adds proxy links and R16's
/// implied edges (a non-proxy link to B waits for every extension of B).
fn edges(def: &SchemaDef) -> (Edges, Edges) {
    let mut strict = BTreeSet::new();
    let mut all = BTreeSet::new();
    for m in &def.models {
        for l in &m.links {
            if l.target != m.name {
                all.insert((m.name.clone(), l.target.clone()));
                if !l.proxy {
                    strict.insert((m.name.clone(), l.target.clone()));
                }
            }
            if !l.proxy {
                for e in &def.models {
                    let extends = e.links.iter().any(|pl| pl.proxy && pl.target == l.target);
                    if extends && e.name != m.name {
                        all.insert((m.name.clone(), e.name.clone()));
                    }
                }
            }
        }
        for d in &m.depends_on_models {
            strict.insert((m.name.clone(), d.clone()));
            all.insert((m.name.clone(), d.clone()));
        }
    }
    (strict, all)
}

/// Whether `to` is reachable from `from` in one or more steps.
fn reaches(edges: &Edges, from: &str, to: &str) -> bool {
    let mut adj: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        adj.entry(a).or_default().push(b);
    }
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&str> = adj.get(from).cloned().unwrap_or_default();
    while let Some(x) = stack.pop() {
        if x == to {
            return true;
        }
        if seen.insert(x) {
            stack.extend(adj.get(x).cloned().unwrap_or_default());
        }
    }
    false
}

fn check_accepted(schema: &Schema) -> Result<(), String> {
    let def = schema.def();
    let (strict, all) = edges(def);
    for m in &def.models {
        if reaches(&strict, &m.name, &m.name) {
            return Err(format!("R11: accepted a model cycle through {}", m.name));
        }
        for d in &m.depends_on_models {
            if d == &m.name || reaches(&all, d, &m.name) {
                return Err(format!(
                    "R11: accepted a model-level dependency {} -> {d} on a cycle",
                    m.name
                ));
            }
        }
    }
    for model in schema.models() {
        for (i, f) in model.fields.iter().enumerate() {
            let linked = model.links.iter().filter(|l| l.field as usize == i).count();
            if linked != usize::from(f.ty.is_reference()) {
                return Err(format!(
                    "{}: field {} has {linked} links",
                    model.name, f.name
                ));
            }
        }
    }
    let text = serde_json::to_string(def).map_err(|e| e.to_string())?;
    let again =
        Schema::from_json(&text).map_err(|e| format!("accepted schema refused again: {e}"))?;
    if again.def() != def {
        return Err("schema JSON round trip changed the definition".into());
    }
    let engine = Engine::new(schema.clone(), Config::default());
    let restored = Engine::restore(&engine.snapshot())
        .map_err(|e| format!("R14: an empty engine over an accepted schema: {e}"))?;
    if restored.snapshot() != engine.snapshot() {
        return Err("R14: snapshot round trip changed the bytes".into());
    }
    Ok(())
}

fn check_refused(def: &SchemaDef, e: &SchemaError) -> Result<(), String> {
    if e.to_string().is_empty() {
        return Err(format!("{e:?} has an empty message"));
    }
    if let SchemaError::ModelCycle { models } | SchemaError::WatchLoop { models } = e {
        if models.is_empty()
            || models
                .iter()
                .any(|m| !def.models.iter().any(|d| &d.name == m))
        {
            return Err(format!("{e:?} names models the schema lacks"));
        }
    }
    if let SchemaError::ModelCycle { models } = e {
        // Every step of the named cycle is an edge of the model graph.
        let (_, all) = edges(def);
        for i in 0..models.len() {
            let (a, b) = (&models[i], &models[(i + 1) % models.len()]);
            if !all.contains(&(a.clone(), b.clone())) {
                return Err(format!(
                    "R11: named cycle {models:?} has no edge {a} -> {b}"
                ));
            }
        }
    }
    Ok(())
}
