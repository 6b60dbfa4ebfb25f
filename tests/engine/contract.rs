//! Regression tests for the contract defects of issue 10, one per rule, written from the
//! text of DESIGN.md (not from the planner's code). Public API only.

use std::sync::{Arc, Mutex};

use syncore::{
    Actuator, Actuators, Change, ChangeError, ChangeSet, Completion, Config, Engine, ExecConfig,
    Executor, ObjectView, Outcome, Policy, PolicyInput, Schema, StateView, Status, TaskKind,
    TaskState, Time, Value,
};

fn engine(schema: &str) -> Engine {
    Engine::new(Schema::from_json(schema).unwrap(), Config::default())
}

fn none() -> Vec<(String, Value)> {
    Vec::new()
}

/// Completes every task Ok at `now`, round after round, until nothing runs.
fn settle(e: &mut Engine, now: Time) {
    for _ in 0..50 {
        let plan = e.plan(now);
        if plan.tasks.is_empty() {
            return;
        }
        for t in &plan.tasks {
            e.complete(t, Outcome::ok(), now).unwrap();
        }
    }
    panic!("did not settle");
}

fn task_keys(e: &Engine, now: Time) -> Vec<String> {
    e.plan(now)
        .tasks
        .iter()
        .map(|t| e.key(t.object).to_string())
        .collect()
}

const PROXY: &str = r#"{"models": [
  {"name": "Slice", "fields": [{"name": "n", "type": "int"}]},
  {"name": "ControllerSlice", "fields": [{"name": "slice", "type": "ref"}, {"name": "n", "type": "int"}],
   "links": [{"field": "slice", "target": "Slice", "proxy": true}]},
  {"name": "Instance", "fields": [{"name": "slice", "type": "ref"}, {"name": "n", "type": "int"}],
   "links": [{"field": "slice", "target": "Slice"}]}]}"#;

/// R16 + R7: deleting an extension while its base lives waits only for the extension's own
/// referrers; the base's referrers neither hold it nor are held by it.
#[test]
fn r16_deleting_extension_waits_only_for_its_own_referrers() {
    let mut e = engine(PROXY);
    e.apply(
        ChangeSet::new()
            .upsert("s", "Slice", none())
            .upsert("cs", "ControllerSlice", [("slice", "s")])
            .upsert("i", "Instance", [("slice", "s")]),
    )
    .unwrap();
    settle(&mut e, Time(0));
    e.apply(ChangeSet::new().delete("cs")).unwrap();
    // Nothing references cs: its delete runs now.
    assert_eq!(task_keys(&e, Time(0)), vec!["cs"]);
    // An update of the base's referrer is not held by the leaving extension.
    e.apply(ChangeSet::new().upsert("i", "Instance", [("n", 1i64)]))
        .unwrap();
    let mut keys = task_keys(&e, Time(0));
    keys.sort();
    assert_eq!(keys, vec!["cs", "i"]);
    assert_eq!(e.status("i", Time(0)), Some(Status::Pending));
    settle(&mut e, Time(0));
    assert!(e.object("cs").is_none(), "the extension left the store");
    assert_eq!(e.status("i", Time(0)), Some(Status::Synced));
    // With the base deleted too, the mirror order of R16 holds: i, then cs, then s.
    e.apply(
        ChangeSet::new()
            .upsert("cs", "ControllerSlice", [("slice", "s")])
            .upsert("j", "Instance", [("slice", "s")]),
    )
    .unwrap();
    settle(&mut e, Time(0));
    e.apply(
        ChangeSet::new()
            .delete("s")
            .delete("cs")
            .delete("i")
            .delete("j"),
    )
    .unwrap();
    let plan = e.plan(Time(0));
    let waves: Vec<Vec<&str>> = plan
        .waves()
        .map(|w| w.iter().map(|t| e.key(t.object)).collect())
        .collect();
    assert_eq!(waves, vec![vec!["i", "j"], vec!["cs"], vec!["s"]]);
}

/// R16 (mirror order) + R7: an extension deleted with its base goes after every other
/// object that depends on the base; a live one makes both the extension and the base wait
/// as `WaitingReferrers` until the embedder re-points or deletes it.
#[test]
fn r16_an_extension_deleted_with_its_base_waits_for_the_bases_live_dependents() {
    let mut e = engine(PROXY);
    e.apply(
        ChangeSet::new()
            .upsert("s", "Slice", none())
            .upsert("s2", "Slice", none())
            .upsert("cs", "ControllerSlice", [("slice", "s")])
            .upsert("i", "Instance", [("slice", "s")]),
    )
    .unwrap();
    settle(&mut e, Time(0));
    e.apply(ChangeSet::new().delete("s").delete("cs")).unwrap();
    assert!(task_keys(&e, Time(0)).is_empty());
    for key in ["s", "cs"] {
        assert_eq!(
            e.status(key, Time(0)),
            Some(Status::WaitingReferrers {
                keys: vec!["i".into()]
            }),
            "{key}"
        );
    }
    // The embedder re-points i: i syncs (after s2), then cs goes, then s.
    e.apply(ChangeSet::new().upsert("i", "Instance", [("slice", "s2")]))
        .unwrap();
    let plan = e.plan(Time(0));
    let waves: Vec<Vec<&str>> = plan
        .waves()
        .map(|w| w.iter().map(|t| e.key(t.object)).collect())
        .collect();
    assert_eq!(waves, vec![vec!["cs", "i"], vec!["s"]]);
    settle(&mut e, Time(0));
    assert!(e.object("s").is_none() && e.object("cs").is_none());
    assert_eq!(e.status("i", Time(0)), Some(Status::Synced));
}

const NODES: &str = r#"{"models": [
  {"name": "Node", "fields": [{"name": "dep", "type": "ref"}, {"name": "v", "type": "int"}],
   "feedback": [{"name": "out", "type": "string"}, {"name": "backend_id", "type": "string"}],
   "links": [{"field": "dep", "target": "Node"}]}]}"#;

/// R7: a referrer that keeps its reference to an object being deleted and gets a new
/// version is `Blocked` by the delete, which waits `WaitingReferrers` for it: the two
/// statuses name each other, nothing runs, and the embedder ends it by re-pointing (or
/// deleting) the referrer.
#[test]
fn r7_a_changed_referrer_and_the_delete_it_waits_for_name_each_other() {
    let mut e = engine(NODES);
    e.apply(ChangeSet::new().upsert("a", "Node", [("v", 1i64)]).upsert(
        "b",
        "Node",
        [("dep", "a")],
    ))
    .unwrap();
    settle(&mut e, Time(0));
    e.apply(ChangeSet::new().delete("a")).unwrap();
    e.apply(ChangeSet::new().upsert("b", "Node", [("v", 2i64)]))
        .unwrap();
    let plan = e.plan(Time(0));
    assert!(
        plan.tasks.is_empty() && plan.next_wake.is_none(),
        "{plan:?}"
    );
    assert!(
        matches!(e.status("b", Time(0)), Some(Status::Blocked { by, .. }) if by == "a"),
        "{:?}",
        e.status("b", Time(0))
    );
    assert_eq!(
        e.status("a", Time(0)),
        Some(Status::WaitingReferrers {
            keys: vec!["b".into()]
        })
    );
    e.apply(ChangeSet::new().upsert("b", "Node", [("dep", Value::Null)]))
        .unwrap();
    let mut keys = task_keys(&e, Time(0));
    keys.sort();
    assert_eq!(keys, vec!["a", "b"]);
    settle(&mut e, Time(0));
    assert!(e.object("a").is_none());
    assert_eq!(e.status("b", Time(0)), Some(Status::Synced));
}

/// R7: a change set may not add a reference to an object that is being deleted (the delete
/// would wait for the new referrer and the referrer for the delete, forever). Refused with
/// both keys named; nothing changes.
#[test]
fn r7_new_reference_to_a_deleting_object_is_refused_naming_both_keys() {
    let mut e = engine(NODES);
    e.apply(
        ChangeSet::new()
            .upsert("a", "Node", none())
            .upsert("c", "Node", [("dep", "a")]),
    )
    .unwrap();
    settle(&mut e, Time(0));
    e.apply(ChangeSet::new().delete("c").delete("a")).unwrap();
    let before = e.snapshot();
    let err = e
        .apply(ChangeSet::new().upsert("b", "Node", [("dep", "a")]))
        .unwrap_err();
    assert_eq!(
        err,
        ChangeError::ReferenceToDeleting {
            key: "b".into(),
            field: "dep".into(),
            target: "a".into()
        }
    );
    assert_eq!(e.snapshot(), before, "nothing applied");
    // In one change set, the same refusal.
    let mut e = engine(NODES);
    e.apply(ChangeSet::new().upsert("a", "Node", none()))
        .unwrap();
    let err = e
        .apply(
            ChangeSet::new()
                .delete("a")
                .upsert("b", "Node", [("dep", "a")]),
        )
        .unwrap_err();
    assert_eq!(
        err,
        ChangeError::ReferenceToDeleting {
            key: "b".into(),
            field: "dep".into(),
            target: "a".into()
        }
    );
}

/// R7: a reference that already existed may stay, also when the change set moves it from a
/// plain link to a proxy link to the same deleting target (the referrer is not new: the delete
/// already waits for it).
#[test]
fn r7_an_existing_referrer_may_move_its_reference_to_another_link() {
    let schema = r#"{"models": [{"name": "Base"},
      {"name": "Ref", "fields": [{"name": "px", "type": "ref"}, {"name": "plain", "type": "ref"}],
       "links": [{"field": "px", "target": "Base", "proxy": true}, {"field": "plain", "target": "Base"}]}]}"#;
    let mut e = engine(schema);
    e.apply(
        ChangeSet::new()
            .upsert("b", "Base", none())
            .upsert("r", "Ref", [("plain", "b")]),
    )
    .unwrap();
    settle(&mut e, Time(0));
    e.apply(
        ChangeSet::new()
            .upsert("r", "Ref", [("px", "b")])
            .delete("b"),
    )
    .expect("an existing referrer is not a new reference");
    assert!(e.object("b").unwrap().deleting);
    let r = e.object("r").unwrap();
    let px = r.fields.iter().find(|(f, _)| f == "px").map(|(_, v)| v);
    assert_eq!(px, Some(&Value::Ref("b".into())));
}

/// R7 with `depends_on_models`: dependents are deleted first, also through a model-level
/// dependency.
#[test]
fn r7_deletes_honour_model_level_dependencies() {
    let mut e =
        engine(r#"{"models": [{"name": "Net"}, {"name": "Vm", "depends_on_models": ["Net"]}]}"#);
    e.apply(
        ChangeSet::new()
            .upsert("n", "Net", none())
            .upsert("v", "Vm", none()),
    )
    .unwrap();
    settle(&mut e, Time(0));
    e.apply(ChangeSet::new().delete("n").delete("v")).unwrap();
    let plan = e.plan(Time(0));
    let waves: Vec<Vec<&str>> = plan
        .waves()
        .map(|w| w.iter().map(|t| e.key(t.object)).collect())
        .collect();
    assert_eq!(waves, vec![vec!["v"], vec!["n"]], "the Vm's delete first");
    let n = plan.task_index(e.id("n").unwrap()).unwrap();
    let v = plan.task_index(e.id("v").unwrap()).unwrap();
    assert_eq!(plan.implied_deps(n), [v as u32]);
    assert_eq!(
        plan.barrier_members(0),
        &[v as u32],
        "through the Vm deletes' barrier"
    );
}

/// R4 at the instant a retry becomes due: the object is a task again, so it is `Pending`,
/// like its dependents; before that instant it is `Error` and they are `Blocked`.
#[test]
fn r4_status_and_plan_agree_when_a_retry_becomes_due() {
    let mut e = Engine::new(
        Schema::from_json(NODES).unwrap(),
        Config {
            backoff: syncore::BackoffPolicy {
                jitter_permille: 0,
                ..Default::default()
            },
            ..Config::default()
        },
    );
    e.apply(
        ChangeSet::new()
            .upsert("a", "Node", none())
            .upsert("b", "Node", [("dep", "a")]),
    )
    .unwrap();
    let t = e.plan(Time(0)).tasks[0];
    let Completion::Failed { retry_at, .. } =
        e.complete(&t, Outcome::failed("down"), Time(0)).unwrap()
    else {
        panic!("a failure")
    };
    let before = Time(retry_at.0 - 1);
    assert!(matches!(e.status("a", before), Some(Status::Error { .. })));
    assert!(matches!(
        e.status("b", before),
        Some(Status::Blocked { .. })
    ));
    let plan = e.plan(retry_at);
    assert_eq!(plan.tasks.len(), 2, "a and b are tasks again");
    for key in ["a", "b"] {
        assert_eq!(
            e.status_in(&plan, e.id(key).unwrap()),
            Status::Pending,
            "{key}"
        );
    }
    // The failure is still on record.
    let a = e.object("a").unwrap();
    assert_eq!((a.failures, a.message.as_deref()), (1, Some("down")));
}

/// R8 + R9: the feedback of a stale successful completion is kept (the backend resource it
/// names exists), but the stale completion never marks the newer version synced.
#[test]
fn r8_stale_ok_keeps_its_feedback_but_does_not_sync() {
    let mut e = engine(NODES);
    e.apply(ChangeSet::new().upsert("a", "Node", none()))
        .unwrap();
    let old = e.plan(Time(0)).tasks[0];
    e.apply(ChangeSet::new().upsert("a", "Node", [("v", 2i64)]))
        .unwrap();
    let done = e
        .complete(&old, Outcome::ok_with([("backend_id", "vm-17")]), Time(0))
        .unwrap();
    assert_eq!(done, Completion::Stale);
    let a = e.object("a").unwrap();
    assert_ne!(a.enacted, a.version, "the new version is not synced");
    assert!(a
        .feedback
        .contains(&("backend_id".to_string(), Value::from("vm-17"))));
    // Lost to a delete: the delete sees the id.
    let mut e = engine(NODES);
    e.apply(ChangeSet::new().upsert("a", "Node", none()))
        .unwrap();
    let old = e.plan(Time(0)).tasks[0];
    e.apply(ChangeSet::new().delete("a")).unwrap();
    assert_eq!(
        e.complete(&old, Outcome::ok_with([("backend_id", "vm-18")]), Time(0))
            .unwrap(),
        Completion::Stale
    );
    let del = e.plan(Time(0)).tasks[0];
    assert_eq!(del.kind, TaskKind::Delete);
    assert_eq!(
        e.view(del.object).feedback("backend_id"),
        Some(&Value::from("vm-18"))
    );
}

const KINDS: &str = r#"{"models": [
  {"name": "Ctl", "kind": "external"}, {"name": "Tpl", "kind": "passive"},
  {"name": "Net", "fields": [{"name": "ctl", "type": "ref"}, {"name": "v", "type": "int"}],
   "links": [{"field": "ctl", "target": "Ctl"}]}]}"#;

/// `complete` refuses tasks the engine did not plan: a sync of an external or passive
/// object, a wrong model, a version the object never had, a delete of a live object.
#[test]
fn r17_complete_refuses_tasks_the_engine_did_not_plan() {
    let mut e = engine(KINDS);
    e.apply(
        ChangeSet::new()
            .upsert("c", "Ctl", none())
            .upsert("t", "Tpl", none())
            .upsert("n", "Net", [("ctl", "c")]),
    )
    .unwrap();
    let task = |key: &str, version: u64, kind| syncore::Task {
        object: e.id(key).unwrap(),
        model: e.schema().model_id(&e.object(key).unwrap().model).unwrap(),
        version,
        kind,
    };
    let vc = e.object("c").unwrap().version;
    let vt = e.object("t").unwrap().version;
    let vn = e.object("n").unwrap().version;
    let bad = vec![
        task("c", vc, TaskKind::Sync),
        task("t", vt, TaskKind::Sync),
        task("n", vn + 10, TaskKind::Sync),
        task("n", vn, TaskKind::Delete),
        syncore::Task {
            model: e.schema().model_id("Ctl").unwrap(),
            ..task("n", vn, TaskKind::Sync)
        },
    ];
    let before = e.snapshot();
    for t in bad {
        let r = e.complete(&t, Outcome::ok(), Time(0));
        assert!(
            matches!(r, Err(syncore::CompleteError::NotPlanned { .. })),
            "{t:?}: {r:?}"
        );
        assert_eq!(e.snapshot(), before, "{t:?} changed the state");
    }
    assert_eq!(
        e.status("c", Time(0)),
        Some(Status::WaitingExternal { key: "c".into() })
    );
}

/// R3/R4: the executor's `Held { by }` names the root cause with the smallest key, not the
/// smallest task index.
#[test]
fn r4_held_by_names_the_smallest_key() {
    struct Fails;
    impl Actuator for Fails {
        fn sync(&self, o: &ObjectView<'_>) -> Outcome {
            if o.key().starts_with("root") {
                Outcome::failed("down")
            } else {
                Outcome::ok()
            }
        }
        fn delete(&self, _: &ObjectView<'_>) -> Outcome {
            Outcome::ok()
        }
    }
    let schema = r#"{"models": [{"name": "Node", "fields": [{"name": "deps", "type": "refs"}],
        "links": [{"field": "deps", "target": "Node"}]}]}"#;
    let mut e = engine(schema);
    // "root-z" gets the smaller id (created first), "root-a" the smaller key.
    e.apply(ChangeSet::new().upsert("root-z", "Node", none()))
        .unwrap();
    e.apply(ChangeSet::new().upsert("root-a", "Node", none()).upsert(
        "x",
        "Node",
        [("deps", Value::Refs(vec!["root-z".into(), "root-a".into()]))],
    ))
    .unwrap();
    assert!(e.id("root-z").unwrap() < e.id("root-a").unwrap());
    let plan = e.plan(Time(0));
    let exec = Executor::new(
        e.schema(),
        &Actuators::new().with("Node", Fails),
        ExecConfig::new().threads(1),
    )
    .unwrap();
    let report = exec.run(&e, &plan);
    let x = plan.task_index(e.id("x").unwrap()).unwrap();
    let a = plan.task_index(e.id("root-a").unwrap()).unwrap();
    assert_eq!(report.states[x], TaskState::Held { by: a });
}

/// R11: a model linking to itself may watch itself (a tree watching its parent): watchers
/// change nothing, so it is no watch loop.
#[test]
fn r11_tree_model_may_watch_its_parent() {
    let schema = r#"{"models": [{"name": "T", "fields": [{"name": "parent", "type": "ref"}],
        "feedback": [{"name": "ip", "type": "string"}],
        "links": [{"field": "parent", "target": "T", "into": ["ip"]}]}]}"#;
    let s = Schema::from_json(schema).unwrap();
    assert_eq!(s.models()[0].watches.len(), 1);
}

/// R13: pretend goes on through backoff expiries, every task assumed to succeed, until
/// nothing is left.
#[test]
fn r13_pretend_runs_through_backoff_expiries() {
    let mut e = engine(NODES);
    e.apply(
        ChangeSet::new()
            .upsert("a", "Node", none())
            .upsert("b", "Node", [("dep", "a")]),
    )
    .unwrap();
    let t = e.plan(Time(0)).tasks[0];
    e.complete(&t, Outcome::failed("down"), Time(0)).unwrap();
    let before = e.snapshot();
    let rounds = e.pretend(Time(0), 10);
    assert_eq!(e.snapshot(), before);
    let keys: Vec<Vec<&str>> = rounds
        .iter()
        .map(|p| p.tasks.iter().map(|t| e.key(t.object)).collect())
        .collect();
    assert_eq!(keys, vec![vec!["a", "b"]]);
    assert!(rounds[0].now > Time(0), "the round runs at a's retry time");
}

/// Upserts an object of model `.0` for every change it sees: three of them make a loop.
struct Ping(&'static str);
impl Policy for Ping {
    fn on_change(&self, n: &PolicyInput<'_>, _: &dyn StateView) -> Result<Vec<Change>, String> {
        let v = n.fields.get("v").and_then(|v| match v {
            Value::Int(i) => Some(*i),
            _ => None,
        });
        let next = v.unwrap_or(0) + 1;
        Ok(vec![Change::upsert(
            format!("{}-x", self.0.to_lowercase()),
            self.0,
            [("v", next)],
        )])
    }
}

/// R10: a policy loop error names every model that took part in the loop, not only those of
/// the last round.
#[test]
fn r10_policy_loop_names_every_model_in_the_loop() {
    let schema = r#"{"models": [
      {"name": "A", "fields": [{"name": "v", "type": "int"}]},
      {"name": "B", "fields": [{"name": "v", "type": "int"}]},
      {"name": "C", "fields": [{"name": "v", "type": "int"}]}]}"#;
    for rounds in [3u32, 4, 5] {
        let mut e = Engine::new(
            Schema::from_json(schema).unwrap(),
            Config {
                policy_rounds_max: rounds,
                ..Config::default()
            },
        );
        e.register_policy("A", Box::new(Ping("B"))).unwrap();
        e.register_policy("B", Box::new(Ping("C"))).unwrap();
        e.register_policy("C", Box::new(Ping("A"))).unwrap();
        let err = e
            .apply(ChangeSet::new().upsert("a0", "A", [("v", 0i64)]))
            .unwrap_err();
        assert_eq!(
            err,
            ChangeError::PolicyLoop {
                models: vec!["A".into(), "B".into(), "C".into()],
                rounds
            },
            "with {rounds} rounds"
        );
    }
}

/// A watcher that records what it hears.
struct Log(Arc<Mutex<Vec<String>>>);
impl syncore::Watcher for Log {
    fn notify(&self, ev: &syncore::WatchEvent<'_>) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .push(format!("{}:{:?}", ev.key, ev.kind));
        Ok(())
    }
}

/// R18: requested and completed deletes are distinct events; passive and external objects
/// swept in an apply, and an actuated object whose delete completes, are reported as having
/// left the store.
#[test]
fn r18_watchers_hear_requested_and_completed_deletes() {
    let schema = r#"{"models": [
      {"name": "Tpl", "kind": "passive"},
      {"name": "Net", "fields": [{"name": "tpl", "type": "ref"}], "links": [{"field": "tpl", "target": "Tpl"}]},
      {"name": "Audit", "watch_degree": 2, "fields": [{"name": "net", "type": "ref"}],
       "links": [{"field": "net", "target": "Net"}]}]}"#;
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut e = engine(schema);
    e.register_watcher("Audit", Box::new(Log(log.clone())))
        .unwrap();
    e.apply(
        ChangeSet::new()
            .upsert("t", "Tpl", none())
            .upsert("u", "Tpl", none())
            .upsert("n", "Net", [("tpl", "t")]),
    )
    .unwrap();
    settle(&mut e, Time(0));
    log.lock().unwrap().clear();
    e.apply(ChangeSet::new().delete("n").delete("t").delete("u"))
        .unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "n:DeleteRequested",
            "t:DeleteRequested",
            "u:DeleteRequested",
            "u:Deleted"
        ],
        "u leaves at once; t waits for n"
    );
    log.lock().unwrap().clear();
    settle(&mut e, Time(0));
    assert_eq!(*log.lock().unwrap(), vec!["n:Deleted", "t:Deleted"]);
    assert!(e.is_empty());
}

/// Creates a `Group` per `Vpc`, as the scenario `ensure` policy does.
struct EnsureGroup;
impl Policy for EnsureGroup {
    fn on_change(&self, n: &PolicyInput<'_>, s: &dyn StateView) -> Result<Vec<Change>, String> {
        if n.deleted
            || s.referrers(n.key)
                .iter()
                .any(|r| s.get(r).is_some_and(|o| !o.deleted))
        {
            return Ok(vec![]);
        }
        let mut i = 0;
        let key = loop {
            let k = format!("{}-group{}", n.key, i);
            if s.get(&k).is_none() {
                break k;
            }
            i += 1;
        };
        Ok(vec![Change::upsert(key, "Group", [("vpc", n.key)])])
    }
}

const VPC: &str = r#"{"models": [{"name": "Vpc", "fields": [{"name": "v", "type": "int"}]},
  {"name": "Group", "fields": [{"name": "vpc", "type": "ref"}], "links": [{"field": "vpc", "target": "Vpc"}]}]}"#;

/// R10: an object a policy created is owned by its trigger and deleted with it; deleted
/// alone, the policy runs for its owner again and keeps its invariant. Owners persist in
/// snapshots.
#[test]
fn r10_policy_created_objects_are_owned_by_their_trigger() {
    let mut e = engine(VPC);
    e.register_policy("Vpc", Box::new(EnsureGroup)).unwrap();
    e.apply(ChangeSet::new().upsert("vpc", "Vpc", none()))
        .unwrap();
    assert!(e.object("vpc-group0").is_some());
    settle(&mut e, Time(0));
    // Deleted alone: recreated.
    let r = e.apply(ChangeSet::new().delete("vpc-group0")).unwrap();
    assert_eq!(r.changed, vec!["vpc-group1"]);
    settle(&mut e, Time(0));
    // Survives a snapshot; deleting the owner deletes what it owns, and nothing waits.
    let mut e2 = Engine::restore(&e.snapshot()).unwrap();
    e2.register_policy("Vpc", Box::new(EnsureGroup)).unwrap();
    let r = e2.apply(ChangeSet::new().delete("vpc")).unwrap();
    assert_eq!(r.deleted, vec!["vpc", "vpc-group1"]);
    settle(&mut e2, Time(0));
    assert!(e2.is_empty(), "{:?}", e2.keys().collect::<Vec<_>>());
}

/// R17: a failure reported for the current version blocks dependents, whatever was
/// reported before (here: synced first).
#[test]
fn r17_external_failure_of_the_current_version_blocks_dependents() {
    let mut e = engine(KINDS);
    e.apply(
        ChangeSet::new()
            .upsert("c", "Ctl", none())
            .upsert("n", "Net", [("ctl", "c")]),
    )
    .unwrap();
    let v = e.object("c").unwrap().version;
    e.report_external("c", syncore::ExternalReport::Synced { version: v })
        .unwrap();
    assert_eq!(task_keys(&e, Time(0)), vec!["n"]);
    e.report_external(
        "c",
        syncore::ExternalReport::Failed {
            version: v,
            message: "owner lost it".into(),
        },
    )
    .unwrap();
    assert!(task_keys(&e, Time(0)).is_empty(), "n waits again");
    assert_eq!(
        e.status("n", Time(0)),
        Some(Status::Blocked {
            by: "c".into(),
            message: "external dependency c failed: owner lost it".into()
        })
    );
}

/// R17 + R8: external reports name the version they are about; a late report about an
/// older version changes nothing; `ApplyReport` tells the owner which version to report.
#[test]
fn r17_external_reports_name_their_version() {
    let schema = r#"{"models": [
      {"name": "Ctl", "kind": "external", "fields": [{"name": "v", "type": "int"}]},
      {"name": "Net", "fields": [{"name": "ctl", "type": "ref"}], "links": [{"field": "ctl", "target": "Ctl"}]}]}"#;
    let mut e = engine(schema);
    let r = e
        .apply(
            ChangeSet::new()
                .upsert("c", "Ctl", none())
                .upsert("n", "Net", [("ctl", "c")]),
        )
        .unwrap();
    assert_eq!(r.changed, vec!["c", "n"]);
    assert_eq!(r.versions.len(), 2);
    let v1 = r.version("c").unwrap();
    assert_eq!(v1, e.object("c").unwrap().version);
    let v2 = e
        .apply(ChangeSet::new().upsert("c", "Ctl", [("v", 2i64)]))
        .unwrap()
        .version("c")
        .unwrap();
    assert!(v2 > v1);
    // A late failure about v1 does not mark v2 failed.
    let late = syncore::ExternalReport::Failed {
        version: v1,
        message: "old".into(),
    };
    assert_eq!(e.report_external("c", late).unwrap(), Completion::Stale);
    assert_eq!(
        e.status("n", Time(0)),
        Some(Status::WaitingExternal { key: "c".into() })
    );
    assert!(!e.object("c").unwrap().external_failed);
    e.report_external("c", syncore::ExternalReport::Synced { version: v2 })
        .unwrap();
    assert_eq!(task_keys(&e, Time(0)), vec!["n"]);
    // A failure of v2 after it was reported synced blocks n again.
    let now_failed = syncore::ExternalReport::Failed {
        version: v2,
        message: "lost".into(),
    };
    assert_eq!(
        e.report_external("c", now_failed).unwrap(),
        Completion::ExternalFailed
    );
    assert!(matches!(
        e.status("n", Time(0)),
        Some(Status::Blocked { .. })
    ));
    assert!(matches!(
        e.status("c", Time(0)),
        Some(Status::Error { retry_at: None, .. })
    ));
    // And a snapshot carries it.
    let r = Engine::restore(&e.snapshot()).unwrap();
    assert!(matches!(
        r.status("n", Time(0)),
        Some(Status::Blocked { .. })
    ));
}

/// R15 with a policy: a change set of 2,000 objects whose policy asks
/// `StateView::referrers` for each costs O(changes) in the work counters (the staged
/// reverse index), not O(changes^2).
#[test]
fn r15_policy_referrers_cost_is_linear_in_the_change_set() {
    let n = 2_000usize;
    let mut e = engine(VPC);
    e.register_policy("Vpc", Box::new(EnsureGroup)).unwrap();
    let mut set = ChangeSet::new();
    for i in 0..n {
        set = set.upsert(format!("vpc{i:05}"), "Vpc", none());
    }
    let r = e.apply(set).unwrap();
    assert_eq!(r.changed.len(), 2 * n, "a group per vpc");
    let work = r.touched_objects + r.touched_edges;
    assert!(
        work <= 20 * n as u64,
        "{work} units of work for {n} vpcs and their groups"
    );
    // Every later vpc's policy sees the groups staged before it, at no extra cost.
    let mut set = ChangeSet::new();
    for i in 0..n {
        set = set.upsert(format!("vpc{i:05}"), "Vpc", [("v", 1i64)]);
    }
    let r = e.apply(set).unwrap();
    assert_eq!(r.changed.len(), n, "groups exist: nothing created");
    assert!(r.touched_objects + r.touched_edges <= 20 * n as u64);
}
