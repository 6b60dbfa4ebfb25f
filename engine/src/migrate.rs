//! Schema and settings migration: [`Engine::migrate`] moves an existing state onto a new
//! schema and configuration, or refuses with a [`MigrateError`] naming what cannot move.
//!
//! What is accepted: new models, new fields (declarative or feedback; existing objects get
//! `null`), new links on new fields, new `depends_on_models`, removed models without
//! objects, removed fields that hold no data, a type change of a field that holds no data
//! (or whose values all fit the new type), models and fields in another order, and any
//! settings the state fits. What is refused, naming model, field and an object: a removed
//! model that has objects, a removed field or a type change that would lose data, a field
//! moved between declarative and feedback with data, a link whose target model changed over
//! data, a kind change of a model with objects, a change of links (proxy flags included)
//! that forms an object cycle, and settings the state exceeds.
//!
//! Versions, enacted versions, backoff and messages are kept: a migration alone never
//! makes anything run. The migrated state is checked like restored snapshot bytes (R14).

use crate::engine::{Config, Engine};
use crate::graph::{self, Edge, PROXY};
use crate::id::{ModelId, ObjectId};
use crate::schema::{FieldSlot, Schema};
use crate::snapshot;
use crate::store::{Store, DEAD};
use crate::value::Value;

/// A state could not be moved onto a new schema or configuration; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// The new schema lacks a model that still has objects.
    #[error("model {model} is removed but object {key} (and {count} in all) is one")]
    ModelRemoved {
        /// The model.
        model: String,
        /// One of its objects.
        key: String,
        /// How many it has.
        count: usize,
    },
    /// The new schema lacks a field that holds data.
    #[error("field {field} of {model} is removed but object {key} holds data in it")]
    FieldRemoved {
        /// The model.
        model: String,
        /// The field.
        field: String,
        /// An object with a value in it.
        key: String,
    },
    /// A field's type changed and a value does not fit the new one.
    #[error("field {field} of {model} changes type from {from} to {to} but object {key} holds a {from} value")]
    TypeChanged {
        /// The model.
        model: String,
        /// The field.
        field: String,
        /// The old type.
        from: String,
        /// The new type.
        to: String,
        /// An object whose value does not fit.
        key: String,
    },
    /// A field moved between declarative and feedback while holding data.
    #[error("field {field} of {model} moves between declarative and feedback but object {key} holds data in it")]
    FieldMoved {
        /// The model.
        model: String,
        /// The field.
        field: String,
        /// An object with a value in it.
        key: String,
    },
    /// A link now points at another model than the objects it references.
    #[error("link {field} of {model} now targets {target} but object {key} references {found}")]
    LinkTargetChanged {
        /// The model.
        model: String,
        /// The link field.
        field: String,
        /// The new target model.
        target: String,
        /// An object holding such a reference.
        key: String,
        /// The referenced key and its model: `"n1, a Site"`.
        found: String,
    },
    /// A field that became a link references a key that does not exist.
    #[error("field {field} of {model} becomes a link but object {key} references missing object {target}")]
    DanglingReference {
        /// The model.
        model: String,
        /// The field.
        field: String,
        /// The object holding the reference.
        key: String,
        /// The missing key.
        target: String,
    },
    /// A model's kind (R17) changed while it has objects.
    #[error("model {model} changes kind from {from} to {to} but object {key} is one")]
    KindChanged {
        /// The model.
        model: String,
        /// The old kind.
        from: String,
        /// The new kind.
        to: String,
        /// One of its objects.
        key: String,
    },
    /// The new links form an object cycle (R11).
    #[error("the new schema forms an object cycle: {}", .keys.join(" -> "))]
    Cycle {
        /// The keys on the cycle, in dependency order, starting with the smallest.
        keys: Vec<String>,
    },
    /// The state exceeds a limit of the new configuration.
    #[error("setting {setting} = {max} is below the current state: {found}")]
    Limit {
        /// The `Config` option.
        setting: &'static str,
        /// Its new value.
        max: u64,
        /// What exceeds it.
        found: String,
    },
    /// The migrated state would pass what one store holds: `"value count"` (a value per
    /// field of every live object).
    #[error("the migrated state's {what} would exceed the limit of {max}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// The migrated state failed the consistency check of a restore (a bug if reached).
    #[error("migrated state is inconsistent: {0}")]
    Inconsistent(String),
}

impl Engine {
    /// Moves this engine's state onto `schema` and `config` (see the module
    /// documentation of `migrate` for what is accepted). Policies and watchers are code:
    /// register them again on the result, as after [`Engine::restore`].
    ///
    /// # Errors
    /// A [`MigrateError`] naming the model, field, object or setting that cannot move;
    /// the old engine is dropped either way, so keep its [`Engine::snapshot`] if needed.
    ///
    /// # Examples
    /// ```
    /// use syncore::{ChangeSet, Config, Engine, Schema};
    /// let old = Schema::from_json(r#"{"models": [{"name": "Site"}]}"#)?;
    /// let mut engine = Engine::new(old, Config::default());
    /// engine.apply(ChangeSet::new().upsert("s1", "Site", [("x", 0i64); 0]))?;
    /// let new = Schema::from_json(r#"{"models": [
    ///   {"name": "Site", "fields": [{"name": "city", "type": "string"}]},
    ///   {"name": "Slice", "fields": [{"name": "site", "type": "ref"}],
    ///    "links": [{"field": "site", "target": "Site"}]}]}"#)?;
    /// let engine = engine.migrate(new, Config::default())?;
    /// assert_eq!(engine.object("s1").unwrap().fields[0].0, "city");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn migrate(self, schema: Schema, config: Config) -> Result<Engine, MigrateError> {
        let (old, _, store) = snapshot::decode(&self.snapshot())
            .map_err(|e| MigrateError::Inconsistent(e.to_string()))?;
        let mut d = store.d;
        drop(self);
        check_limits(&d, &config)?;
        let n = d.keys.len();
        // Objects per old model, for the per-model checks.
        let mut by_model: Vec<Vec<usize>> = vec![Vec::new(); old.models().len()];
        for id in 0..n {
            if d.model[id] != DEAD {
                by_model[d.model[id].index()].push(id);
            }
        }
        let mut model_map: Vec<ModelId> = vec![DEAD; old.models().len()];
        // For each old model: new slot index (into values) of each old value, or None.
        let mut value_maps: Vec<Vec<Option<usize>>> = Vec::new();
        for (m, om) in old.models().iter().enumerate() {
            let objects = &by_model[m];
            let key = |i: usize| d.keys[i].to_string();
            let Some(nid) = schema.model_id(&om.name) else {
                if let Some(&first) = objects.first() {
                    return Err(MigrateError::ModelRemoved {
                        model: om.name.clone(),
                        key: key(first),
                        count: objects.len(),
                    });
                }
                value_maps.push(Vec::new());
                continue;
            };
            model_map[m] = nid;
            let nm = schema.model(nid);
            if nm.kind != om.kind {
                if let Some(&first) = objects.first() {
                    return Err(MigrateError::KindChanged {
                        model: om.name.clone(),
                        from: format!("{:?}", om.kind).to_lowercase(),
                        to: format!("{:?}", nm.kind).to_lowercase(),
                        key: key(first),
                    });
                }
            }
            let holder = |slot: usize| {
                objects
                    .iter()
                    .copied()
                    .find(|&i| d.values[i][slot] != Value::Null)
            };
            let old_fields = om.fields.iter().map(|f| (f, true));
            let old_feedback = om.feedback.iter().map(|f| (f, false));
            let mut map = Vec::new();
            for (slot, (f, declarative)) in old_fields.chain(old_feedback).enumerate() {
                let new_slot = match nm.slot(&f.name) {
                    None => None,
                    Some(FieldSlot::Declarative(s)) if declarative => Some(s as usize),
                    Some(FieldSlot::Feedback(s)) if !declarative => {
                        Some(nm.fields.len() + s as usize)
                    }
                    Some(_) => {
                        if let Some(i) = holder(slot) {
                            return Err(MigrateError::FieldMoved {
                                model: om.name.clone(),
                                field: f.name.clone(),
                                key: key(i),
                            });
                        }
                        None
                    }
                };
                let Some(ns) = new_slot else {
                    if let Some(i) = holder(slot) {
                        return Err(MigrateError::FieldRemoved {
                            model: om.name.clone(),
                            field: f.name.clone(),
                            key: key(i),
                        });
                    }
                    map.push(None);
                    continue;
                };
                let nf = if ns < nm.fields.len() {
                    &nm.fields[ns]
                } else {
                    &nm.feedback[ns - nm.fields.len()]
                };
                if nf.ty != f.ty {
                    for &i in objects {
                        let v = &d.values[i][slot];
                        if v.clone().coerce(nf.ty).is_err() {
                            return Err(MigrateError::TypeChanged {
                                model: om.name.clone(),
                                field: f.name.clone(),
                                from: format!("{:?}", f.ty).to_lowercase(),
                                to: format!("{:?}", nf.ty).to_lowercase(),
                                key: key(i),
                            });
                        }
                    }
                }
                map.push(Some(ns));
            }
            value_maps.push(map);
        }
        // A value per field of every live object, on the new schema.
        let value_count: usize = (0..n)
            .filter(|&i| d.model[i] != DEAD)
            .map(|i| {
                let m = schema.model(model_map[d.model[i].index()]);
                m.fields.len() + m.feedback.len()
            })
            .sum();
        if value_count > crate::value_lists::VALUES_LIVE_MAX {
            return Err(MigrateError::TooLarge {
                what: "value count",
                max: crate::value_lists::VALUES_LIVE_MAX,
            });
        }
        // Move the values into the new slots; the edges follow from them.
        let index: std::collections::HashMap<&str, usize> = (0..n)
            .filter(|&i| d.model[i] != DEAD)
            .map(|i| (&d.keys[i], i))
            .collect();
        let old_model = d.model.clone();
        let mut deps = crate::edges::EdgeLists::default();
        deps.reserve(n, d.deps.edge_count());
        for id in 0..n {
            let om = old_model[id];
            if om == DEAD {
                deps.push(&[]);
                continue;
            }
            let nid = model_map[om.index()];
            let nm = schema.model(nid);
            let mut values = vec![Value::Null; nm.fields.len() + nm.feedback.len()];
            for (slot, to) in value_maps[om.index()].iter().enumerate() {
                if let Some(to) = *to {
                    let v = std::mem::replace(&mut d.values[id][slot], Value::Null);
                    let ty = if to < nm.fields.len() {
                        nm.fields[to].ty
                    } else {
                        nm.feedback[to - nm.fields.len()].ty
                    };
                    // Checked above: every value fits its new type.
                    values[to] = v.coerce(ty).unwrap_or(Value::Null);
                }
            }
            let mut edges: Vec<Edge> = Vec::new();
            for l in &nm.links {
                for t in values[l.field as usize].refs() {
                    let tid = index.get(t.as_str()).copied().ok_or_else(|| {
                        MigrateError::DanglingReference {
                            model: nm.name.clone(),
                            field: nm.fields[l.field as usize].name.clone(),
                            key: d.keys[id].to_string(),
                            target: t.clone(),
                        }
                    })?;
                    let tm = model_map[old_model[tid].index()];
                    if tm != l.target {
                        return Err(MigrateError::LinkTargetChanged {
                            model: nm.name.clone(),
                            field: nm.fields[l.field as usize].name.clone(),
                            target: schema.model(l.target).name.clone(),
                            key: d.keys[id].to_string(),
                            found: format!("{t}, a {}", schema.model(tm).name),
                        });
                    }
                    edges.push(tid as u32 | if l.proxy { PROXY } else { 0 });
                }
            }
            edges.sort_unstable();
            edges.dedup();
            deps.push(&edges);
            d.values.set(id, values);
            d.model[id] = nid;
        }
        d.deps = deps;
        let decl = schema
            .models()
            .iter()
            .map(|m| m.fields.len() as u16)
            .collect();
        let store = Store::from_data(d, decl).map_err(MigrateError::Inconsistent)?;
        if let Some(keys) = find_cycle(&store) {
            return Err(MigrateError::Cycle { keys });
        }
        let bytes = snapshot::encode(&schema, &config, &store.d);
        Engine::restore(&bytes).map_err(|e| MigrateError::Inconsistent(e.to_string()))
    }
}

fn check_limits(d: &crate::store::StoreData, config: &Config) -> Result<(), MigrateError> {
    let live = d.model.iter().filter(|&&m| m != DEAD).count() as u64;
    if live > config.objects_max {
        return Err(MigrateError::Limit {
            setting: "objects_max",
            max: config.objects_max,
            found: format!("{live} objects"),
        });
    }
    let limits = config.value_limits();
    for id in 0..d.keys.len() {
        if d.model[id] == DEAD {
            continue;
        }
        if d.keys[id].len() > config.key_len_max as usize {
            return Err(MigrateError::Limit {
                setting: "key_len_max",
                max: config.key_len_max.into(),
                found: format!("key {} of {} bytes", &d.keys[id], d.keys[id].len()),
            });
        }
        for v in d.values[id].iter() {
            if let Err(e) = v.check_limits(&limits) {
                return Err(MigrateError::Limit {
                    setting: setting_of(e.what),
                    max: e.max as u64,
                    found: format!("object {}: {}", &d.keys[id], e.what),
                });
            }
        }
    }
    Ok(())
}

fn setting_of(what: &str) -> &'static str {
    match what {
        "string length" => "string_len_max",
        "bytes length" => "bytes_len_max",
        "json length" => "json_len_max",
        "json depth" => "json_depth_max",
        "reference count" => "refs_max",
        _ => "key_len_max",
    }
}

/// An object cycle over effective dependencies, as keys in dependency order starting with
/// the smallest key, or `None`. Iterative three-colour DFS in id order.
fn find_cycle(store: &Store) -> Option<Vec<String>> {
    let n = store.capacity();
    let mut colour = vec![0u8; n]; // 0 new, 1 on the stack, 2 done
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (id, o) in out.iter_mut().enumerate() {
        if store.alive(ObjectId(id as u32)) {
            graph::for_each_effective_dep(store, ObjectId(id as u32), |t| o.push(t.0));
            o.sort_unstable();
            o.dedup();
        }
    }
    for root in 0..n {
        if colour[root] != 0 || !store.alive(ObjectId(root as u32)) {
            continue;
        }
        let mut stack: Vec<(u32, usize)> = vec![(root as u32, 0)];
        colour[root] = 1;
        while let Some(&mut (u, ref mut next)) = stack.last_mut() {
            if let Some(&t) = out[u as usize].get(*next) {
                *next += 1;
                match colour[t as usize] {
                    0 => {
                        colour[t as usize] = 1;
                        stack.push((t, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|&(s, _)| s == t).unwrap_or(0);
                        let mut keys: Vec<String> = stack[from..]
                            .iter()
                            .map(|&(s, _)| store.key(ObjectId(s)).to_string())
                            .collect();
                        // Stack order is "depends on" order; start at the smallest key.
                        let min = (0..keys.len()).min_by_key(|&i| &keys[i]).unwrap_or(0);
                        keys.rotate_left(min);
                        return Some(keys);
                    }
                    _ => {}
                }
            } else {
                colour[u as usize] = 2;
                stack.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
