use super::*;
use crate::{ChangeSet, Outcome, Status, Time};
use proptest::prelude::*;

fn schema(json: &str) -> Schema {
    Schema::from_json(json).unwrap()
}

const OLD: &str = r#"{"models": [
  {"name": "Site", "fields": [{"name": "name", "type": "string"}, {"name": "note", "type": "string"}]},
  {"name": "Slice", "fields": [{"name": "site", "type": "ref"}, {"name": "size", "type": "int"}],
   "feedback": [{"name": "id", "type": "string"}],
   "links": [{"field": "site", "target": "Site"}]},
  {"name": "Spare"}]}"#;

/// Two sites and a slice; s1 synced, the slice failed once, s2 pending.
fn engine() -> Engine {
    let mut e = Engine::new(schema(OLD), Config::default());
    e.apply(
        ChangeSet::new()
            .upsert("s1", "Site", [("name", "one")])
            .upsert("s2", "Site", [("name", "two")])
            .upsert(
                "sl",
                "Slice",
                [("site", Value::from("s1")), ("size", Value::Int(3))],
            ),
    )
    .unwrap();
    let plan = e.plan(Time(0));
    let s1 = e.id("s1").unwrap();
    let t = *plan.tasks.iter().find(|t| t.object == s1).unwrap();
    e.complete(&t, Outcome::ok(), Time(1)).unwrap();
    let plan = e.plan(Time(1));
    let sl = e.id("sl").unwrap();
    let t = *plan.tasks.iter().find(|t| t.object == sl).unwrap();
    e.complete(&t, Outcome::failed("backend down"), Time(2))
        .unwrap();
    e
}

#[test]
fn added_models_fields_and_links_keep_every_object_its_state() {
    let before = engine();
    let info = |e: &Engine, k: &str| e.object(k).unwrap();
    let (s1, sl) = (info(&before, "s1"), info(&before, "sl"));
    let new = schema(
        r#"{"models": [
      {"name": "Region"},
      {"name": "Site", "fields": [{"name": "name", "type": "string"}, {"name": "note", "type": "string"},
         {"name": "region", "type": "ref"}], "links": [{"field": "region", "target": "Region"}]},
      {"name": "Slice", "fields": [{"name": "size", "type": "int"}, {"name": "site", "type": "ref"},
         {"name": "label", "type": "string"}],
       "feedback": [{"name": "id", "type": "string"}, {"name": "ip", "type": "string"}],
       "links": [{"field": "site", "target": "Site"}]},
      {"name": "Spare"}]}"#,
    );
    let cfg = Config {
        policy_rounds_max: 4,
        ..Config::default()
    };
    let after = before.migrate(new, cfg.clone()).unwrap();
    assert_eq!(after.config(), &cfg);
    let (s1b, slb) = (info(&after, "s1"), info(&after, "sl"));
    assert_eq!((s1b.version, s1b.enacted), (s1.version, s1.enacted));
    assert_eq!(
        (slb.version, slb.failures, slb.retry_at),
        (sl.version, 1, sl.retry_at)
    );
    assert_eq!(slb.message.as_deref(), Some("backend down"));
    let field = |i: &ObjectInfo, f: &str| i.fields.iter().find(|(n, _)| n == f).unwrap().1.clone();
    assert_eq!(field(&slb, "site"), Value::Ref("s1".into()));
    assert_eq!(field(&slb, "size"), Value::Int(3));
    assert_eq!(field(&slb, "label"), Value::Null);
    assert_eq!(field(&s1b, "region"), Value::Null);
    // Nothing new to run: s2 still pending, the slice still backing off.
    let plan = after.plan(Time(2));
    let keys: Vec<_> = plan.tasks.iter().map(|t| after.key(t.object)).collect();
    assert_eq!(keys, ["s2"]);
    assert!(matches!(
        after.status("sl", Time(2)),
        Some(Status::Error { failures: 1, .. })
    ));
    // The new model and link work.
    let mut after = after;
    after
        .apply(
            ChangeSet::new()
                .upsert("r", "Region", [("x", 0i64); 0])
                .upsert("s2", "Site", [("region", "r")]),
        )
        .unwrap();
    assert!(matches!(
        after.status("s2", Time(2)),
        Some(Status::Blocked { .. }) | Some(Status::Pending)
    ));
}

use crate::engine::ObjectInfo;

#[test]
fn a_removed_field_holding_data_is_refused_by_name() {
    let new = schema(
        r#"{"models": [
      {"name": "Site", "fields": [{"name": "note", "type": "string"}]},
      {"name": "Slice", "fields": [{"name": "site", "type": "ref"}, {"name": "size", "type": "int"}],
       "feedback": [{"name": "id", "type": "string"}],
       "links": [{"field": "site", "target": "Site"}]},
      {"name": "Spare"}]}"#,
    );
    let err = engine().migrate(new, Config::default()).unwrap_err();
    assert_eq!(
        err,
        MigrateError::FieldRemoved {
            model: "Site".into(),
            field: "name".into(),
            key: "s1".into()
        }
    );
    assert!(
        err.to_string().contains("field name of Site is removed"),
        "{err}"
    );
}

#[test]
fn a_removed_empty_field_and_an_empty_model_are_accepted() {
    // `note` holds no data; `Spare` has no objects.
    let new = schema(
        r#"{"models": [
      {"name": "Site", "fields": [{"name": "name", "type": "string"}]},
      {"name": "Slice", "fields": [{"name": "site", "type": "ref"}, {"name": "size", "type": "int"}],
       "feedback": [{"name": "id", "type": "string"}],
       "links": [{"field": "site", "target": "Site"}]}]}"#,
    );
    let e = engine().migrate(new, Config::default()).unwrap();
    assert_eq!(
        e.object("s1").unwrap().fields,
        vec![("name".into(), Value::from("one"))]
    );
}

#[test]
fn a_removed_model_with_objects_is_refused() {
    let new = schema(
        r#"{"models": [{"name": "Site", "fields": [{"name": "name", "type": "string"}, {"name": "note", "type": "string"}]}]}"#,
    );
    let err = engine().migrate(new, Config::default()).unwrap_err();
    assert_eq!(
        err,
        MigrateError::ModelRemoved {
            model: "Slice".into(),
            key: "sl".into(),
            count: 1
        }
    );
}

#[test]
fn a_type_change_over_data_is_refused_and_over_null_accepted() {
    let with = |size: &str, note: &str| {
        schema(
            &OLD.replace(
                r#"{"name": "size", "type": "int"}"#,
                &format!(r#"{{"name": "size", "type": "{size}"}}"#),
            )
            .replace(
                r#"{"name": "note", "type": "string"}"#,
                &format!(r#"{{"name": "note", "type": "{note}"}}"#),
            ),
        )
    };
    let err = engine()
        .migrate(with("string", "string"), Config::default())
        .unwrap_err();
    assert_eq!(
        err,
        MigrateError::TypeChanged {
            model: "Slice".into(),
            field: "size".into(),
            from: "int".into(),
            to: "string".into(),
            key: "sl".into()
        }
    );
    // int -> float fits; `note` is null everywhere, so any type goes.
    let e = engine()
        .migrate(with("float", "bool"), Config::default())
        .unwrap();
    let sl = e.object("sl").unwrap();
    assert!(sl.fields.contains(&("size".into(), Value::Float(3.0))));
}

#[test]
fn a_string_field_turned_link_that_closes_a_cycle_is_refused_naming_it() {
    let old =
        schema(r#"{"models": [{"name": "Node", "fields": [{"name": "next", "type": "string"}]}]}"#);
    let mut e = Engine::new(old, Config::default());
    e.apply(
        ChangeSet::new()
            .upsert("b", "Node", [("next", "c")])
            .upsert("c", "Node", [("next", "a")])
            .upsert("a", "Node", [("next", "b")])
            .upsert("z", "Node", [("next", "a")]),
    )
    .unwrap();
    let new = schema(
        r#"{"models": [{"name": "Node", "fields": [{"name": "next", "type": "ref"}],
            "links": [{"field": "next", "target": "Node"}]}]}"#,
    );
    // z -> a is no cycle; a -> b -> c -> a is.
    let err = e.migrate(new, Config::default()).unwrap_err();
    assert_eq!(
        err,
        MigrateError::Cycle {
            keys: vec!["a".into(), "b".into(), "c".into()]
        }
    );
}

#[test]
fn a_new_link_to_a_missing_key_is_refused() {
    let old =
        schema(r#"{"models": [{"name": "Node", "fields": [{"name": "next", "type": "string"}]}]}"#);
    let mut e = Engine::new(old, Config::default());
    e.apply(ChangeSet::new().upsert("a", "Node", [("next", "ghost")]))
        .unwrap();
    let new = schema(
        r#"{"models": [{"name": "Node", "fields": [{"name": "next", "type": "ref"}],
            "links": [{"field": "next", "target": "Node"}]}]}"#,
    );
    let err = e.migrate(new, Config::default()).unwrap_err();
    assert!(
        matches!(err, MigrateError::DanglingReference { ref target, .. } if target == "ghost"),
        "{err}"
    );
}

#[test]
fn a_kind_change_with_objects_and_settings_below_the_state_are_refused() {
    let err = engine()
        .migrate(
            schema(&OLD.replace(
                r#"{"name": "Site","#,
                r#"{"name": "Site", "kind": "passive","#,
            )),
            Config::default(),
        )
        .unwrap_err();
    assert!(
        matches!(err, MigrateError::KindChanged { ref model, .. } if model == "Site"),
        "{err}"
    );
    let cfg = Config {
        objects_max: 2,
        ..Config::default()
    };
    let err = engine().migrate(schema(OLD), cfg).unwrap_err();
    assert_eq!(
        err,
        MigrateError::Limit {
            setting: "objects_max",
            max: 2,
            found: "3 objects".into()
        }
    );
    let cfg = Config {
        string_len_max: 2,
        ..Config::default()
    };
    let err = engine().migrate(schema(OLD), cfg).unwrap_err();
    assert!(
        matches!(
            err,
            MigrateError::Limit {
                setting: "string_len_max",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn migrating_onto_the_same_schema_is_the_identity() {
    let e = engine();
    let snap = e.snapshot();
    let e = e.migrate(schema(OLD), Config::default()).unwrap();
    assert_eq!(e.snapshot(), snap);
}

proptest! {
    /// Adding fields (declarative and feedback) and a model, and reordering models, keeps
    /// every object's versions, values and backoff; removing the added ones again gives
    /// back the original snapshot bytes.
    #[test]
    fn adding_then_removing_fields_round_trips(extra in 1usize..4, reorder in any::<bool>()) {
        let e = engine();
        let snap = e.snapshot();
        let mut def: crate::SchemaDef = serde_json::from_str(OLD).unwrap();
        for i in 0..extra {
            def.models[0].fields.push(crate::FieldDef { name: format!("f{i}"), ty: crate::FieldType::Int });
            def.models[1].feedback.push(crate::FieldDef { name: format!("fb{i}"), ty: crate::FieldType::String });
        }
        def.models.push(serde_json::from_str(r#"{"name": "New"}"#).unwrap());
        if reorder {
            def.models.reverse();
        }
        let grown = e.migrate(Schema::new(def).unwrap(), Config::default()).unwrap();
        for k in ["s1", "s2", "sl"] {
            let o = grown.object(k).unwrap();
            prop_assert!(o.version > 0);
        }
        let back = grown.migrate(schema(OLD), Config::default()).unwrap();
        prop_assert_eq!(back.snapshot(), snap);
    }
}
