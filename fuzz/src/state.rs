//! A base engine with every kind of model, field type and status, and the checks every
//! target runs on a state it reached: the reference planner (tests/engine/reference.rs),
//! DESIGN.md's order and hold invariants, and the snapshot round trip (R14).

use std::sync::OnceLock;

use syncore::{
    BackoffPolicy, ChangeSet, Config, Engine, ExternalReport, Outcome, Schema, TaskKind, Time,
    Value,
};

use super::ops::check_order_and_holds;
use super::reference::{compare, Reference};

/// A schema with every model kind (R17), every field type, a proxy (R16), a self-link and
/// a model-level dependency (R1).
pub const BASE_SCHEMA: &str = r#"{"models": [
  {"name": "Site", "fields": [{"name": "name", "type": "string"}],
   "feedback": [{"name": "ip", "type": "string"}]},
  {"name": "Owner", "kind": "external"},
  {"name": "Tag", "kind": "passive", "fields": [{"name": "label", "type": "string"}]},
  {"name": "Slice",
   "fields": [{"name": "site", "type": "ref"}, {"name": "tags", "type": "refs"},
              {"name": "owner", "type": "ref"}, {"name": "on", "type": "bool"},
              {"name": "n", "type": "int"}, {"name": "x", "type": "float"},
              {"name": "s", "type": "string"}, {"name": "b", "type": "bytes"},
              {"name": "j", "type": "json"}],
   "feedback": [{"name": "fb_b", "type": "bool"}, {"name": "fb_i", "type": "int"},
                {"name": "fb_f", "type": "float"}, {"name": "fb_s", "type": "string"},
                {"name": "fb_y", "type": "bytes"}, {"name": "fb_j", "type": "json"}],
   "links": [{"field": "site", "target": "Site"}, {"field": "tags", "target": "Tag"},
             {"field": "owner", "target": "Owner"}]},
  {"name": "SliceExt", "fields": [{"name": "base", "type": "ref"}],
   "links": [{"field": "base", "target": "Slice", "proxy": true}]},
  {"name": "Node", "fields": [{"name": "parent", "type": "ref"}],
   "links": [{"field": "parent", "target": "Node"}]},
  {"name": "Late", "depends_on_models": ["Site"]}
]}"#;

/// Keys of the base state (and a few that do not exist), for generated references.
pub const BASE_KEYS: &[&str] = &[
    "s1", "s2", "o1", "t1", "t2", "sl1", "sl2", "e1", "n1", "n2", "n3", "l1", "new1", "new2",
];

/// Small value limits, so short fuzz inputs reach them (issue 7).
pub fn base_config() -> Config {
    Config {
        backoff: BackoffPolicy {
            base_ms: 100,
            factor: 3,
            cap_ms: 10_000,
            jitter_permille: 200,
            seed: 11,
            growth: true,
            defer_delay_ms: Some(250),
        },
        policy_rounds_max: 4,
        changes_max: 64,
        key_len_max: 24,
        objects_max: 40,
        string_len_max: 24,
        bytes_len_max: 12,
        json_len_max: 48,
        json_depth_max: 3,
        refs_max: 4,
    }
}

/// The base state: every status at once (synced, pending, failed with backoff, deferred,
/// blocked, external waiting and failed, deleting with referrers).
pub fn base_engine() -> Engine {
    let mut engine = Engine::new(
        Schema::from_json(BASE_SCHEMA).expect("the base schema is valid"),
        base_config(),
    );
    let none = Vec::<(String, Value)>::new;
    let slice_fields: Vec<(String, Value)> = vec![
        ("site".into(), "s1".into()),
        ("tags".into(), Value::Refs(vec!["t1".into(), "t2".into()])),
        ("owner".into(), "o1".into()),
        ("on".into(), true.into()),
        ("n".into(), Value::Int(-7)),
        ("x".into(), Value::Float(2.5)),
        ("s".into(), "text".into()),
        ("b".into(), Value::Bytes(vec![0, 255])),
        ("j".into(), Value::Json(r#"{"a":[1,2]}"#.into())),
    ];
    let set = ChangeSet::new()
        .upsert("s1", "Site", [("name", "one")])
        .upsert("s2", "Site", none())
        .upsert("o1", "Owner", none())
        .upsert("t1", "Tag", [("label", "red")])
        .upsert("t2", "Tag", none())
        .upsert("sl1", "Slice", slice_fields)
        .upsert("sl2", "Slice", [("site", "s2")])
        .upsert("e1", "SliceExt", [("base", "sl1")])
        .upsert("n1", "Node", none())
        .upsert("n2", "Node", [("parent", "n1")])
        .upsert("n3", "Node", [("parent", "n2")])
        .upsert("l1", "Late", none());
    engine.apply(set).expect("the base change set applies");
    for round in 0..3u64 {
        let now = Time(round * 10);
        for task in engine.plan(now).tasks {
            let outcome = match engine.key(task.object) {
                "s2" => Outcome::failed("site s2 is down"),
                "n3" if round == 0 => Outcome::deferred("not yet"),
                "s1" => Outcome::ok_with([("ip", "10.0.0.1")]),
                _ => Outcome::ok(),
            };
            engine
                .complete(&task, outcome, now)
                .expect("a planned task completes");
        }
    }
    engine
        .report_external(
            "o1",
            ExternalReport::Failed {
                version: engine.object("o1").map_or(0, |o| o.version),
                message: "owner refused".into(),
            },
        )
        .expect("o1 is external");
    engine
        .apply(ChangeSet::new().delete("n1"))
        .expect("n1 can be marked for deletion");
    engine
}

/// The base state's snapshot, made once per process.
pub fn base_snapshot() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| base_engine().snapshot())
}

/// A fresh copy of the base state (restored from its snapshot: cheaper than rebuilding).
pub fn base() -> Engine {
    Engine::restore(base_snapshot()).expect("the base snapshot restores")
}

/// Every check a reachable state must pass at `now`: the plan equals the reference
/// planner's, tasks come after their dependencies and holds are exactly the stuck objects'
/// dependents, no object cycle (R11), and the snapshot restores to the same bytes and plan
/// (R14).
pub fn check(engine: &Engine, now: Time) -> Result<(), String> {
    let plan = compare(engine, now)?;
    check_order_and_holds(engine, &plan, now)?;
    let reference = Reference::new(engine, now);
    for key in reference.objs.keys() {
        if reference.ancestors(key).contains(key) {
            return Err(format!("R11: object cycle through {key}"));
        }
    }
    for t in &plan.tasks {
        if t.kind == TaskKind::Sync && engine.object(engine.key(t.object)).is_none() {
            return Err("a task for an object without info".into());
        }
    }
    let bytes = engine.snapshot();
    let restored = Engine::restore(&bytes)
        .map_err(|e| format!("R14: a reached state does not restore: {e}"))?;
    if restored.snapshot() != bytes {
        return Err("R14: snapshot, restore, snapshot changed the bytes".into());
    }
    let json = |p: &syncore::Plan| serde_json::to_string(p).unwrap_or_default();
    if json(&restored.plan(now)) != json(&plan) {
        return Err("R14: the restored engine plans differently".into());
    }
    Ok(())
}
