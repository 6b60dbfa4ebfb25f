//! Random operation sequences and the checks run after every step, shared by the
//! proptest properties (`props.rs`), the fuzz target `ops` and its corpus replay
//! (`fuzz/`, `tests/fuzz_corpus.rs`, which include this file with `#[path]`).
//!
//! A generated schema is a list of [`GModel`]s, a step an [`Op`]; [`run_ops`] plays the
//! steps on an engine and compares it with the reference planner (`reference.rs`, a
//! sibling module) after each one. Nothing here depends on a generator library: proptest
//! strategies and `arbitrary` decoders both build these plain values.

use std::collections::{BTreeMap, BTreeSet};

use syncore::{
    BackoffPolicy, Change, ChangeError, ChangeSet, Completion, Config, Engine, ExternalReport,
    ModelKind, Outcome, Schema, TaskKind, Time, Value,
};

use super::reference::{compare, Reference};

/// Keys objects are drawn from: a small pool, so updates, deletes and clashes happen.
pub const KEYS: u8 = 12;

/// A generated model.
#[derive(Clone, Debug)]
pub struct GModel {
    /// The model's kind (R17).
    pub kind: ModelKind,
    /// Links as (target model index, many, proxy); a proxy must target a smaller index.
    pub links: Vec<(usize, bool, bool)>,
    /// A model-level dependency on a smaller index (R1).
    pub depends_on: Option<usize>,
}

/// The schema of generated models as JSON: `M{i}` with field `v`, links `l{j}`, feedback `fb`.
pub fn schema_json(models: &[GModel]) -> String {
    let ms: Vec<serde_json::Value> = models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut fields = vec![serde_json::json!({"name": "v", "type": "int"})];
            let mut links = Vec::new();
            for (j, (t, many, proxy)) in m.links.iter().enumerate() {
                fields.push(serde_json::json!({"name": format!("l{j}"), "type": if *many { "refs" } else { "ref" }}));
                links.push(serde_json::json!({"field": format!("l{j}"), "target": format!("M{t}"), "proxy": proxy}));
            }
            let kind = match m.kind {
                ModelKind::Passive => "passive",
                ModelKind::External => "external",
                _ => "actuated",
            };
            serde_json::json!({
                "name": format!("M{i}"), "kind": kind, "fields": fields,
                "feedback": [{"name": "fb", "type": "string"}], "links": links,
                "depends_on_models": m.depends_on.iter().map(|d| format!("M{d}")).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({ "models": ms }).to_string()
}

/// A generated change-set entry, resolved against the engine by [`materialize`].
#[derive(Clone, Debug)]
pub struct GChange {
    /// The key, `k{key:02}`.
    pub key: u8,
    /// A delete rather than an upsert.
    pub delete: bool,
    /// The model, modulo the model count.
    pub model: u8,
    /// The `v` field; also steers `materialize` (see there).
    pub v: i8,
    /// Reference picks per link (at least one list).
    pub refs: Vec<Vec<u8>>,
}

/// One step of a sequence.
#[derive(Clone, Debug)]
pub enum Op {
    /// Apply a change set built from these entries by [`materialize`].
    Apply(Vec<GChange>),
    /// Plan, then complete the tasks with outcomes picked by these choices (non-empty):
    /// failed, deferred, a refused declarative write, skipped, or Ok with feedback.
    Run(Vec<u8>),
    /// Let time pass, in ms.
    Advance(u16),
    /// Report an external object synced (or failed) at its current version (R17).
    External(u8, bool),
    /// Snapshot and restore (R14).
    Restore,
    /// Complete the previous plan's tasks again, now stale (R8).
    Stale,
}

/// The key of generated key number `k`.
pub fn key(k: u8) -> String {
    format!("k{k:02}")
}

/// Builds a change set against the engine's current state: references mostly pick live
/// objects of the right model (or objects upserted in the same set), sometimes a raw key
/// (which may dangle or have the wrong model); keys are deduplicated unless the first
/// change asks for a clash.
pub fn materialize(models: &[GModel], engine: &Engine, gs: &[GChange]) -> ChangeSet {
    let live: Vec<(String, String)> = engine
        .keys()
        .filter_map(|k| {
            engine
                .object(k)
                .filter(|o| !o.deleting)
                .map(|o| (k.to_string(), o.model))
        })
        .collect();
    // Deletes mostly hit live objects; upserts of existing keys mostly keep their model.
    let gs: Vec<GChange> = gs
        .iter()
        .map(|g| {
            let mut g = g.clone();
            if g.delete && live.is_empty() && g.v % 5 != 0 {
                g.delete = false;
            } else if g.delete && !live.is_empty() && g.v % 5 != 0 {
                let k = &live[g.key as usize % live.len()].0;
                g.key = k[1..].parse().unwrap();
            } else if let Some((_, m)) = live.iter().find(|(k, _)| *k == key(g.key)) {
                if g.v % 7 != 0 {
                    g.model = m[1..].parse().unwrap();
                }
            }
            g
        })
        .collect();
    let upserted: Vec<(String, String)> = gs
        .iter()
        .filter(|g| !g.delete)
        .map(|g| (key(g.key), format!("M{}", g.model as usize % models.len())))
        .collect();
    let mut changes = Vec::new();
    for g in &gs {
        let mut c = to_change(models, g);
        if let Change::Upsert {
            key: own,
            fields,
            model,
        } = &mut c
        {
            let mi: usize = model[1..].parse().unwrap();
            for (j, (t, many, _)) in models[mi].links.iter().enumerate() {
                let target = format!("M{t}");
                // Mostly point "down" (smaller keys), so most sets are acyclic.
                let mut candidates: Vec<String> = live
                    .iter()
                    .chain(upserted.iter())
                    .filter(|(k, m)| *m == target && (g.v % 3 == 0 || k < own))
                    .map(|(k, _)| k.clone())
                    .collect();
                candidates.sort();
                candidates.dedup();
                let picks: Vec<String> = g.refs[j % g.refs.len()]
                    .iter()
                    .filter_map(|&r| {
                        if r >= 245 {
                            Some(key(r % KEYS))
                        } else if candidates.is_empty() {
                            None
                        } else {
                            Some(candidates[r as usize % candidates.len()].clone())
                        }
                    })
                    .collect();
                let v = match (many, picks.first()) {
                    (true, _) => Value::Refs(picks),
                    (false, Some(k)) => Value::Ref(k.clone()),
                    (false, None) => Value::Null,
                };
                fields.insert(format!("l{j}"), v);
            }
        }
        changes.push(c);
    }
    // Keys are deduplicated unless the first entry asks for a clash.
    if gs.first().is_none_or(|g| g.v % 8 != 0) {
        let mut seen = BTreeSet::new();
        changes.retain(|c| seen.insert(c.key().to_string()));
    }
    ChangeSet { changes }
}

/// A generated entry as a change, references taken literally.
pub fn to_change(models: &[GModel], g: &GChange) -> Change {
    if g.delete {
        return Change::delete(key(g.key));
    }
    let mi = g.model as usize % models.len();
    let m = &models[mi];
    let mut fields: BTreeMap<String, Value> = BTreeMap::new();
    fields.insert("v".into(), Value::Int(i64::from(g.v)));
    for (j, (_, many, _)) in m.links.iter().enumerate() {
        let keys: Vec<String> = g.refs[j % g.refs.len()].iter().map(|&k| key(k)).collect();
        let v = match (many, keys.first()) {
            (true, _) => Value::Refs(keys),
            (false, Some(k)) => Value::Ref(k.clone()),
            (false, None) => Value::Null,
        };
        fields.insert(format!("l{j}"), v);
    }
    Change::Upsert {
        key: key(g.key),
        model: format!("M{mi}"),
        fields,
    }
}

/// The engine configuration of every sequence: fast backoff with jitter and a defer delay.
pub fn config() -> Config {
    Config {
        backoff: BackoffPolicy {
            base_ms: 100,
            factor: 2,
            cap_ms: 2_000,
            jitter_permille: 100,
            seed: 7,
            growth: true,
            defer_delay_ms: Some(250),
        },
        ..Config::default()
    }
}

/// The state a change set would leave, naively: pre-state plus the upserts' links.
fn post_state(engine: &Engine, set: &ChangeSet, now: Time) -> Reference {
    let mut r = Reference::new(engine, now);
    let schema = engine.schema();
    for c in &set.changes {
        if let Change::Upsert { key, model, fields } = c {
            let Some(mid) = schema.model_id(model) else {
                continue;
            };
            let m = schema.model(mid);
            let mut deps = BTreeSet::new();
            let existing = r.objs.get(key).cloned();
            for link in &m.links {
                let name = &m.fields[link.field as usize].name;
                match fields.get(name) {
                    Some(v) => deps.extend(v.refs().iter().map(|t| (t.clone(), link.proxy))),
                    None => {
                        if let Some(e) = &existing {
                            deps.extend(e.deps.iter().filter(|(_, p)| *p == link.proxy).cloned());
                        }
                    }
                }
            }
            let entry = r
                .objs
                .entry(key.clone())
                .or_insert_with(|| super::reference::RObj {
                    model: model.clone(),
                    kind: m.kind,
                    version: 1,
                    enacted: 0,
                    deleting: false,
                    backing_off_until: None,
                    external_failed: false,
                    deps: BTreeSet::new(),
                });
            entry.deps = deps;
        }
    }
    r
}

/// Checks a refusal is justified by the naive post-state.
fn justify(engine: &Engine, set: &ChangeSet, err: &ChangeError, now: Time) -> Result<(), String> {
    let count = |k: &str| set.changes.iter().filter(|c| c.key() == k).count();
    let deleted_here = |k: &str| {
        set.changes
            .iter()
            .any(|c| matches!(c, Change::Delete { key } if key == k))
    };
    let upserted = |k: &str| {
        set.changes.iter().find_map(|c| match c {
            Change::Upsert { key, model, .. } if key == k => Some(model.clone()),
            _ => None,
        })
    };
    let ok = match err {
        ChangeError::DuplicateKey { key } => count(key) >= 2,
        ChangeError::UnknownKey { key } => engine.object(key).is_none() && upserted(key).is_none(),
        ChangeError::Deleting { key } => engine.object(key).is_some_and(|o| o.deleting),
        ChangeError::ModelMismatch { key, model, .. } => {
            engine.object(key).is_some_and(|o| &o.model != model)
        }
        ChangeError::DanglingReference { target, .. } => {
            deleted_here(target) || (engine.object(target).is_none() && upserted(target).is_none())
        }
        ChangeError::ReferenceToDeleting { key, target, .. } => {
            // R7: a new reference to an object being deleted, or deleted by this set.
            let deleting = engine.object(target).is_some_and(|o| o.deleting)
                || (deleted_here(target) && engine.object(target).is_some());
            let had = engine.object(key).is_some_and(|o| {
                o.fields
                    .iter()
                    .any(|(_, v)| v.refs().iter().any(|t| t == target))
            });
            deleting && !had
        }
        ChangeError::WrongTargetModel {
            target,
            found,
            expected,
            ..
        } => {
            let model = upserted(target).or_else(|| engine.object(target).map(|o| o.model));
            model.as_deref() == Some(found.as_str()) && found != expected
        }
        ChangeError::Cycle { keys } => {
            let post = post_state(engine, set, now);
            (0..keys.len()).all(|i| {
                let (a, b) = (&keys[i], &keys[(i + 1) % keys.len()]);
                post.objs.contains_key(a) && post.effdeps(a).contains(b)
            })
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("unjustified refusal {err:?} of {set:?}"))
    }
}

/// Runs an op sequence, checking the engine against the reference after every step.
pub fn run_ops(models: &[GModel], ops: &[Op]) -> Result<(), String> {
    let schema = match Schema::from_json(&schema_json(models)) {
        Ok(s) => s,
        // Model-level waits may not close a loop with proxies (R11); nothing else is refused.
        Err(syncore::SchemaError::ModelCycle { .. })
            if models.iter().any(|m| m.depends_on.is_some()) =>
        {
            return Ok(())
        }
        Err(e) => return Err(e.to_string()),
    };
    let mut engine = Engine::new(schema, config());
    let mut now = Time(0);
    let mut last_tasks = Vec::new();
    for op in ops {
        match op {
            Op::Apply(gs) => {
                let set = materialize(models, &engine, gs);
                let before = engine.snapshot();
                match engine.apply(set.clone()) {
                    Ok(_) => {
                        let r = Reference::new(&engine, now);
                        for k in r.objs.keys() {
                            if r.ancestors(k).contains(k) {
                                return Err(format!("accepted a cycle through {k}"));
                            }
                        }
                    }
                    Err(e) => {
                        if engine.snapshot() != before {
                            return Err(format!("refused change set {e} changed the state"));
                        }
                        justify(&engine, &set, &e, now)?;
                    }
                }
            }
            Op::Run(choices) => {
                let plan = compare(&engine, now)?;
                let mut ok = vec![false; plan.tasks.len()];
                for (i, t) in plan.tasks.iter().enumerate() {
                    if plan.implied_deps(i).iter().any(|&d| !ok[d as usize]) {
                        continue; // the executor would not run it (R3)
                    }
                    let key = engine.key(t.object).to_string();
                    let before = engine.object(&key).unwrap();
                    let choice = choices[i % choices.len()];
                    let outcome = match choice % 10 {
                        0 => Outcome::failed("boom"),
                        1 => Outcome::deferred("later"),
                        2 => Outcome::ok_with([("v", 1i64)]),
                        3 => continue,
                        _ => Outcome::ok_with([("fb", format!("at {}", now.0))]),
                    };
                    let done = engine
                        .complete(t, outcome, now)
                        .map_err(|e| e.to_string())?;
                    let after = engine.object(&key);
                    let policy = &engine.config().backoff;
                    match (choice % 10, &done) {
                        (0 | 2, Completion::Failed { failures, retry_at }) => {
                            let a = after.unwrap();
                            let want = now.after(policy.delay_ms(before.failures + 1, &key));
                            if *failures != before.failures + 1
                                || *retry_at != want
                                || a.failures != *failures
                            {
                                return Err(format!("R5: {key} failure {failures} retry {retry_at:?}, want {want:?}"));
                            }
                            if choice % 10 == 2
                                && !a
                                    .message
                                    .unwrap_or_default()
                                    .contains("declarative field v")
                            {
                                return Err("R9 refusal not recorded".into());
                            }
                        }
                        (1, Completion::Deferred { retry_at }) => {
                            let a = after.unwrap();
                            if a.failures != before.failures
                                || *retry_at != now.after(250)
                                || !a.deferred
                            {
                                return Err(format!("R6: {key} deferred wrongly"));
                            }
                        }
                        (_, Completion::Synced) => {
                            let a = after.unwrap();
                            if a.enacted != t.version || a.failures != 0 || t.kind != TaskKind::Sync
                            {
                                return Err(format!("{key} synced wrongly"));
                            }
                            ok[i] = true;
                        }
                        (_, Completion::Deleted { .. }) => {
                            if after.is_some() || t.kind != TaskKind::Delete {
                                return Err(format!("{key} not removed by its delete"));
                            }
                            ok[i] = true;
                        }
                        other => return Err(format!("{key}: unexpected completion {other:?}")),
                    }
                }
                last_tasks = plan.tasks.clone();
            }
            Op::Advance(dt) => now = now.after(u64::from(*dt)),
            Op::External(k, ok) => {
                let key = key(*k);
                if let Some(o) = engine.object(&key) {
                    let report = if *ok {
                        ExternalReport::Synced { version: o.version }
                    } else {
                        ExternalReport::Failed {
                            version: o.version,
                            message: "owner says no".into(),
                        }
                    };
                    let external = engine
                        .schema()
                        .model(engine.schema().model_id(&o.model).unwrap())
                        .kind
                        == ModelKind::External;
                    match engine.report_external(&key, report) {
                        Ok(_) if external => {}
                        Err(_) if !external => {}
                        other => return Err(format!("external report on {key}: {other:?}")),
                    }
                }
            }
            Op::Restore => {
                let bytes = engine.snapshot();
                let restored = Engine::restore(&bytes).map_err(|e| e.to_string())?;
                if restored.snapshot() != bytes {
                    return Err("R14: snapshot round trip changed bytes".into());
                }
                if serde_json::to_string(&restored.plan(now)).unwrap()
                    != serde_json::to_string(&engine.plan(now)).unwrap()
                {
                    return Err("R14: restored engine plans differently".into());
                }
                engine = restored;
            }
            Op::Stale => {
                for t in &last_tasks {
                    let key = engine.view_key_of(t);
                    let before = key.as_ref().and_then(|k| engine.object(k));
                    match engine.complete(t, Outcome::ok(), now) {
                        Ok(Completion::Stale) | Err(_) => {}
                        Ok(Completion::Synced) => {
                            let b = before.ok_or("synced a vanished object")?;
                            if b.version != t.version || b.enacted == b.version {
                                return Err("R8: a stale completion marked a version synced".into());
                            }
                        }
                        Ok(Completion::Deleted { .. }) => {}
                        Ok(other) => return Err(format!("stale completion gave {other:?}")),
                    }
                }
            }
        }
        let plan = compare(&engine, now)?;
        check_order_and_holds(&engine, &plan, now)?;
    }
    Ok(())
}

/// Two invariants stated directly: no task before its dependencies (every unsettled
/// ancestor of a sync task is a task of an earlier wave), and a live object with work is
/// held exactly when it, or something it transitively waits for, is stuck (backing off,
/// external and unreported or failed, or being deleted).
pub fn check_order_and_holds(
    engine: &Engine,
    plan: &syncore::Plan,
    now: Time,
) -> Result<(), String> {
    let r = Reference::new(engine, now);
    let mut wave: BTreeMap<String, usize> = BTreeMap::new();
    let mut i = 0;
    for (w, tasks) in plan.waves().enumerate() {
        for t in tasks {
            wave.insert(engine.key(t.object).to_string(), w);
            i += 1;
        }
    }
    debug_assert_eq!(i, plan.tasks.len());
    // Everything x waits for, transitively: links (with R16's implied edges) and
    // model-level waits (R1), through settled objects and unsettled ones alike.
    let waits_for = |x: &str| -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack = vec![x.to_string()];
        while let Some(a) = stack.pop() {
            let mut next: Vec<String> = r.effdeps(&a).into_iter().collect();
            for m in &r.depends_on[&r.objs[&a].model] {
                next.extend(
                    r.objs
                        .iter()
                        .filter(|(y, yo)| &yo.model == m && !yo.deleting && r.unsettled(y))
                        .map(|(y, _)| y.clone()),
                );
            }
            for n in next {
                if n != x && out.insert(n.clone()) {
                    stack.push(n);
                }
            }
        }
        out
    };
    let stuck = |k: &str| {
        let o = &r.objs[k];
        r.unsettled(k)
            && (o.deleting || o.backing_off_until.is_some() || o.kind == ModelKind::External)
    };
    for (k, o) in &r.objs {
        if !r.unsettled(k) || o.deleting {
            continue;
        }
        let ancestors = waits_for(k);
        if let Some(&w) = wave.get(k) {
            for a in ancestors.iter().filter(|a| r.unsettled(a)) {
                if wave.get(a).is_none_or(|&aw| aw >= w) {
                    return Err(format!("task {k} (wave {w}) before its dependency {a}"));
                }
            }
        }
        let held = plan.hold(engine.id(k).unwrap()).is_some();
        let should = stuck(k) || ancestors.iter().any(|a| stuck(a));
        if held != should {
            return Err(format!(
                "{k}: held {held}, but stuck ancestors say {should}"
            ));
        }
    }
    Ok(())
}

/// The key of a task's object, if it is still alive and the same object.
trait TaskKey {
    fn view_key_of(&self, t: &syncore::Task) -> Option<String>;
}
impl TaskKey for Engine {
    fn view_key_of(&self, t: &syncore::Task) -> Option<String> {
        self.keys()
            .find(|k| self.id(k) == Some(t.object))
            .map(str::to_string)
    }
}
