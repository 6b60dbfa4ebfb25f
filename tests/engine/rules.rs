//! One test per rule of DESIGN.md (R1-R18), named after it.

use syncore::{
    BackoffPolicy, Change, ChangeError, ChangeSet, Completion, Config, Engine, ExternalReport,
    HoldReason, Outcome, Policy, PolicyInput, Schema, SchemaError, StateView, Status, TaskKind,
    Time, Value, WatchEvent, WatchKind, Watcher,
};

use std::sync::{Arc, Mutex};

/// A chain-friendly schema: `Node.dep` references another Node; `Leaf` has none.
const NODES: &str = r#"{"models": [
  {"name": "Node", "fields": [{"name": "dep", "type": "ref"}, {"name": "extra", "type": "refs"}, {"name": "v", "type": "int"}],
   "feedback": [{"name": "out", "type": "string"}],
   "links": [{"field": "dep", "target": "Node"}, {"field": "extra", "target": "Node"}]}
]}"#;

fn nodes() -> Engine {
    let backoff = BackoffPolicy {
        jitter_permille: 0,
        ..BackoffPolicy::default()
    };
    Engine::new(
        Schema::from_json(NODES).unwrap(),
        Config {
            backoff,
            ..Config::default()
        },
    )
}

fn node(key: &str, dep: Option<&str>) -> Change {
    Change::upsert(
        key,
        "Node",
        [("dep", dep.map_or(Value::Null, |d| Value::Ref(d.into())))],
    )
}

fn task_keys(e: &Engine, now: Time) -> Vec<String> {
    e.plan(now)
        .tasks
        .iter()
        .map(|t| e.key(t.object).to_string())
        .collect()
}

/// Completes every task Ok at `now`.
fn settle(e: &mut Engine, now: Time) {
    for _ in 0..20 {
        let plan = e.plan(now);
        if plan.tasks.is_empty() {
            return;
        }
        for t in &plan.tasks {
            e.complete(t, Outcome::ok(), now).unwrap();
        }
    }
}

fn complete_key(e: &mut Engine, key: &str, outcome: Outcome, now: Time) -> Completion {
    let plan = e.plan(now);
    let id = e.id(key).unwrap();
    let t = *plan
        .tasks
        .iter()
        .find(|t| t.object == id)
        .unwrap_or_else(|| panic!("{key} has no task"));
    e.complete(&t, outcome, now).unwrap()
}

#[test]
fn r1_waits_transitively_through_synced_objects() {
    let mut e = nodes();
    e.apply(ChangeSet::from(vec![
        node("a", None),
        node("b", Some("a")),
        node("c", Some("b")),
    ]))
    .unwrap();
    settle(&mut e, Time(0));
    // New versions of a and c only; b needs no work but c still waits for a.
    e.apply(ChangeSet::from(vec![
        Change::upsert("a", "Node", [("v", 1i64)]),
        Change::upsert("c", "Node", [("v", 1i64)]),
    ]))
    .unwrap();
    let plan = e.plan(Time(0));
    assert_eq!(plan.wave_count(), 2);
    assert_eq!(e.key(plan.wave(0)[0].object), "a");
    assert_eq!(e.key(plan.wave(1)[0].object), "c");
    assert_eq!(plan.deps(1), &[0]);
}

#[test]
fn r1_null_link_is_no_dependency_and_model_level_dependencies_wait_for_all() {
    let schema = r#"{"models": [{"name": "Net"}, {"name": "Vm", "depends_on_models": ["Net"]}]}"#;
    let mut e = Engine::new(Schema::from_json(schema).unwrap(), Config::default());
    e.apply(
        ChangeSet::new()
            .upsert("n1", "Net", [("x", 0i64); 0])
            .upsert("n2", "Net", [("x", 0i64); 0])
            .upsert("v", "Vm", [("x", 0i64); 0]),
    )
    .unwrap();
    let plan = e.plan(Time(0));
    assert_eq!(plan.wave_count(), 2);
    assert_eq!(
        plan.implied_deps(2),
        [0, 1],
        "the Vm waits for every unsynced Net"
    );
    assert!(
        plan.deps(2).is_empty(),
        "through the Net barrier, not object edges"
    );
    assert_eq!(plan.barrier_deps(2).collect::<Vec<_>>(), [0]);
    assert_eq!(plan.barrier_members(0), &[0, 1]);
    let mut e = nodes();
    e.apply(ChangeSet::from(vec![node("a", None), node("b", None)]))
        .unwrap();
    assert_eq!(e.plan(Time(0)).wave_count(), 1);
}

#[test]
fn r2_plan_exposes_all_concurrency_and_runs_each_key_once() {
    let mut e = nodes();
    let mut changes = vec![node("root", None)];
    for i in 0..10 {
        changes.push(node(&format!("leaf{i}"), Some("root")));
    }
    e.apply(ChangeSet::from(changes)).unwrap();
    let plan = e.plan(Time(0));
    assert_eq!(
        plan.wave_count(),
        2,
        "depth equals the longest pending chain"
    );
    assert_eq!(plan.wave(1).len(), 10, "siblings run together");
    let mut objects: Vec<_> = plan.tasks.iter().map(|t| t.object).collect();
    objects.dedup();
    assert_eq!(objects.len(), 11);
}

#[test]
fn r3_failure_holds_only_transitive_dependents() {
    let mut e = nodes();
    e.apply(ChangeSet::from(vec![
        node("a", None),
        node("b", Some("a")),
        node("c", Some("b")),
        node("x", None),
        node("y", Some("x")),
    ]))
    .unwrap();
    complete_key(&mut e, "a", Outcome::failed("down"), Time(0));
    let plan = e.plan(Time(0));
    let a = e.id("a").unwrap();
    assert_eq!(
        plan.hold(e.id("b").unwrap()),
        Some(&HoldReason::Blocked { by: a })
    );
    assert_eq!(
        plan.hold(e.id("c").unwrap()),
        Some(&HoldReason::Blocked { by: a })
    );
    assert_eq!(
        task_keys(&e, Time(0)),
        vec!["x", "y"],
        "the unrelated chain goes ahead"
    );
}

#[test]
fn r4_every_status_is_reported() {
    let mut e = nodes();
    e.apply(ChangeSet::from(vec![
        node("a", None),
        node("b", Some("a")),
        node("d", None),
        node("s", None),
    ]))
    .unwrap();
    complete_key(&mut e, "s", Outcome::ok(), Time(0));
    complete_key(&mut e, "a", Outcome::failed("disk full"), Time(0));
    complete_key(&mut e, "d", Outcome::deferred("not yet"), Time(0));
    assert_eq!(e.status("s", Time(0)), Some(Status::Synced));
    assert_eq!(
        e.status("a", Time(0)),
        Some(Status::Error {
            message: "disk full".into(),
            failures: 1,
            retry_at: Some(Time(100))
        })
    );
    assert_eq!(
        e.status("d", Time(0)),
        Some(Status::Deferred {
            message: "not yet".into(),
            retry_at: Time(100)
        })
    );
    assert_eq!(
        e.status("b", Time(0)),
        Some(Status::Blocked {
            by: "a".into(),
            message: "dependency a failed: disk full".into()
        })
    );
    e.apply(ChangeSet::from(vec![node("p", None)])).unwrap();
    assert_eq!(e.status("p", Time(0)), Some(Status::Pending));
    e.apply(ChangeSet::from(vec![Change::delete("a")])).unwrap();
    assert_eq!(
        e.status("a", Time(0)),
        Some(Status::WaitingReferrers {
            keys: vec!["b".into()]
        })
    );
}

#[test]
fn r5_backoff_grows_caps_and_resets() {
    let mut e = nodes();
    e.apply(ChangeSet::from(vec![node("a", None)])).unwrap();
    let mut now = Time(0);
    let mut delays = Vec::new();
    for _ in 0..12 {
        now = e.plan(now).next_wake.unwrap_or(now);
        match complete_key(&mut e, "a", Outcome::failed("x"), now) {
            Completion::Failed { retry_at, .. } => delays.push(retry_at.0 - now.0),
            other => panic!("{other:?}"),
        }
        assert!(
            e.plan(now).tasks.is_empty(),
            "held until the backoff expires"
        );
    }
    assert_eq!(&delays[..4], &[100, 200, 400, 800]);
    assert_eq!(*delays.last().unwrap(), 60_000, "capped");
    // A new declarative version resets the count.
    e.apply(ChangeSet::from(vec![Change::upsert(
        "a",
        "Node",
        [("v", 9i64)],
    )]))
    .unwrap();
    assert_eq!(e.object("a").unwrap().failures, 0);
    assert_eq!(task_keys(&e, now), vec!["a"]);
}

#[test]
fn r6_deferred_keeps_failures_and_waits_a_fixed_delay() {
    let mut e = nodes();
    e.apply(ChangeSet::from(vec![node("a", None), node("b", Some("a"))]))
        .unwrap();
    complete_key(&mut e, "a", Outcome::failed("x"), Time(0));
    for i in 0..3 {
        let now = Time(10_000 * (i + 1));
        assert_eq!(
            complete_key(&mut e, "a", Outcome::deferred("wait"), now),
            Completion::Deferred {
                retry_at: now.after(100)
            }
        );
        assert_eq!(e.object("a").unwrap().failures, 1);
        assert!(matches!(e.status("b", now), Some(Status::Blocked { .. })));
    }
}

#[test]
fn r7_deletes_run_in_reverse_order_and_wait_for_live_referrers() {
    let mut e = nodes();
    e.apply(ChangeSet::from(vec![
        node("a", None),
        node("b", Some("a")),
        node("c", Some("b")),
        node("z", Some("a")),
    ]))
    .unwrap();
    settle(&mut e, Time(0));
    e.apply(ChangeSet::from(vec![
        Change::delete("a"),
        Change::delete("b"),
        Change::delete("c"),
    ]))
    .unwrap();
    let plan = e.plan(Time(0));
    // z still references a: a waits; c then b can go.
    assert_eq!(
        plan.hold(e.id("a").unwrap()),
        Some(&HoldReason::WaitingReferrers {
            keys: vec![e.id("z").unwrap()]
        })
    );
    assert_eq!(task_keys(&e, Time(0)), vec!["c", "b"]);
    assert!(plan.tasks.iter().all(|t| t.kind == TaskKind::Delete));
    settle(&mut e, Time(0));
    // Re-pointing z releases a.
    e.apply(ChangeSet::from(vec![node("z", None)])).unwrap();
    assert_eq!(
        task_keys(&e, Time(0)),
        vec!["a", "z"],
        "no longer referenced: both run, in id order"
    );
    settle(&mut e, Time(0));
    assert_eq!(e.keys().collect::<Vec<_>>(), vec!["z"]);
}

#[test]
fn r8_no_version_without_change_and_stale_completions_do_not_sync() {
    let mut e = nodes();
    e.apply(ChangeSet::from(vec![node("a", None)])).unwrap();
    let v1 = e.object("a").unwrap().version;
    let old = e.plan(Time(0)).tasks[0];
    let report = e.apply(ChangeSet::from(vec![node("a", None)])).unwrap();
    assert!(
        report.changed.is_empty(),
        "an upsert that changes nothing creates no version"
    );
    assert_eq!(e.object("a").unwrap().version, v1);
    e.apply(ChangeSet::from(vec![Change::upsert(
        "a",
        "Node",
        [("v", 2i64)],
    )]))
    .unwrap();
    assert_eq!(
        e.complete(&old, Outcome::ok(), Time(0)).unwrap(),
        Completion::Stale
    );
    assert_eq!(e.object("a").unwrap().enacted, 0);
    assert_eq!(task_keys(&e, Time(0)), vec!["a"]);
}

#[test]
fn r9_actuators_write_feedback_only() {
    let mut e = nodes();
    e.apply(ChangeSet::from(vec![node("a", None)])).unwrap();
    let c = complete_key(&mut e, "a", Outcome::ok_with([("v", 5i64)]), Time(0));
    assert!(matches!(c, Completion::Failed { failures: 1, .. }));
    let o = e.object("a").unwrap();
    assert!(o.message.unwrap().contains("declarative field v"));
    assert_eq!(
        o.fields.iter().find(|f| f.0 == "v").unwrap().1,
        Value::Null,
        "nothing was written"
    );
    // Feedback changes never create a version.
    let v = o.version;
    complete_key(&mut e, "a", Outcome::ok_with([("out", "done")]), Time(1000));
    assert_eq!(e.object("a").unwrap().version, v);
    assert_eq!(e.object("a").unwrap().feedback[0].1, Value::from("done"));
    // And change sets may not write feedback.
    let err = e
        .apply(ChangeSet::from(vec![Change::upsert(
            "a",
            "Node",
            [("out", "x")],
        )]))
        .unwrap_err();
    assert_eq!(
        err,
        ChangeError::FeedbackWrite {
            key: "a".into(),
            model: "Node".into(),
            field: "out".into()
        }
    );
}

/// Mirrors `v` into a child node `<key>-child`, and counts its calls.
struct Mirror(Arc<Mutex<Vec<String>>>);
impl Policy for Mirror {
    fn on_change(&self, n: &PolicyInput<'_>, _: &dyn StateView) -> Result<Vec<Change>, String> {
        self.0.lock().unwrap().push(n.key.to_string());
        if n.key.matches("-child").count() >= 2 || n.deleted {
            return Ok(vec![]);
        }
        Ok(vec![Change::upsert(
            format!("{}-child", n.key),
            "Node",
            [("dep", Value::from(n.key)), ("v", n.fields["v"].clone())],
        )])
    }
}

/// Always changes something: a loop.
struct Bump;
impl Policy for Bump {
    fn on_change(&self, n: &PolicyInput<'_>, _: &dyn StateView) -> Result<Vec<Change>, String> {
        let v = match n.fields["v"] {
            Value::Int(i) => i,
            _ => 0,
        };
        Ok(vec![Change::upsert(n.key, "Node", [("v", v + 1)])])
    }
}

#[test]
fn r10_policies_run_in_rounds_and_loops_are_refused() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut e = nodes();
    e.register_policy("Node", Box::new(Mirror(calls.clone())))
        .unwrap();
    let report = e
        .apply(ChangeSet::from(vec![node("b", None), node("a", None)]))
        .unwrap();
    // Round 3 runs the grandchildren's policies, which change nothing.
    assert_eq!(report.policy_rounds, 3);
    assert_eq!(
        *calls.lock().unwrap(),
        vec![
            "a",
            "b",
            "a-child",
            "b-child",
            "a-child-child",
            "b-child-child"
        ]
    );
    assert_eq!(report.changed.len(), 6);
    let mut e = nodes();
    e.register_policy("Node", Box::new(Bump)).unwrap();
    let before = e.snapshot();
    let err = e.apply(ChangeSet::from(vec![node("a", None)])).unwrap_err();
    assert_eq!(
        err,
        ChangeError::PolicyLoop {
            models: vec!["Node".into()],
            rounds: 16
        }
    );
    assert_eq!(e.snapshot(), before, "nothing applied");
}

#[test]
fn r11_object_cycles_are_refused_atomically_with_every_key() {
    let mut e = nodes();
    e.apply(ChangeSet::from(vec![
        node("a", None),
        node("b", Some("a")),
        node("c", Some("b")),
    ]))
    .unwrap();
    let before = e.snapshot();
    let err = e
        .apply(ChangeSet::from(vec![node("a", Some("c")), node("d", None)]))
        .unwrap_err();
    assert_eq!(
        err,
        ChangeError::Cycle {
            keys: vec!["a".into(), "c".into(), "b".into()]
        }
    );
    assert_eq!(e.snapshot(), before);
    let err = e
        .apply(ChangeSet::from(vec![node("self", Some("self"))]))
        .unwrap_err();
    assert_eq!(
        err,
        ChangeError::Cycle {
            keys: vec!["self".into()]
        }
    );
    // Schema-level loops are named at load.
    let looped = r#"{"models": [{"name": "A", "fields": [{"name": "b", "type": "ref"}], "links": [{"field": "b", "target": "B"}]},
                               {"name": "B", "fields": [{"name": "a", "type": "ref"}], "links": [{"field": "a", "target": "A"}]}]}"#;
    assert_eq!(
        Schema::from_json(looped).unwrap_err(),
        SchemaError::ModelCycle {
            models: vec!["A".into(), "B".into()]
        }
    );
}

#[test]
fn r12_same_calls_give_identical_bytes() {
    let run = |order: &[usize]| {
        let mut e = nodes();
        let all = [
            node("a", None),
            node("b", Some("a")),
            node("c", Some("a")),
            node("d", Some("c")),
        ];
        e.apply(ChangeSet::from(
            order.iter().map(|&i| all[i].clone()).collect::<Vec<_>>(),
        ))
        .unwrap();
        complete_key(&mut e, "a", Outcome::failed("x"), Time(3));
        (e.snapshot(), serde_json::to_vec(&e.plan(Time(4))).unwrap())
    };
    assert_eq!(run(&[0, 1, 2, 3]), run(&[3, 1, 0, 2]));
    let err = nodes()
        .apply(ChangeSet::from(vec![node("a", None), node("a", None)]))
        .unwrap_err();
    assert_eq!(err, ChangeError::DuplicateKey { key: "a".into() });
}

#[test]
fn r13_pretend_reports_every_round_without_changing_state() {
    let mut e = nodes();
    e.apply(ChangeSet::from(vec![node("a", None), node("b", Some("a"))]))
        .unwrap();
    let before = e.snapshot();
    let rounds = e.pretend(Time(0), 10);
    assert_eq!(rounds.len(), 1);
    assert_eq!(rounds[0].wave_count(), 2);
    assert_eq!(e.snapshot(), before);
}

#[test]
fn r14_snapshot_carries_backoff_and_refuses_bad_bytes() {
    let mut e = nodes();
    e.apply(ChangeSet::from(vec![node("a", None), node("b", Some("a"))]))
        .unwrap();
    complete_key(&mut e, "a", Outcome::failed("x"), Time(7));
    let bytes = e.snapshot();
    let r = Engine::restore(&bytes).unwrap();
    assert_eq!(r.snapshot(), bytes);
    assert_eq!(r.object("a").unwrap().failures, 1);
    assert_eq!(r.plan(Time(8)), e.plan(Time(8)));
    assert!(matches!(
        Engine::restore(b"hello"),
        Err(syncore::SnapshotError::BadMagic)
    ));
    for cut in [9, 20, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            Engine::restore(&bytes[..cut]).is_err(),
            "truncated at {cut}"
        );
    }
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    assert!(matches!(
        Engine::restore(&flipped),
        Err(syncore::SnapshotError::Corrupt(_))
    ));
    let mut other = bytes.clone();
    other[8] = 99;
    assert_eq!(
        Engine::restore(&other).unwrap_err(),
        syncore::SnapshotError::Version {
            found: 99,
            expected: syncore::FORMAT_VERSION
        }
    );
}

#[test]
fn r16_proxy_extension_syncs_between_base_and_its_dependents() {
    let schema = r#"{"models": [
      {"name": "Slice"},
      {"name": "ControllerSlice", "fields": [{"name": "slice", "type": "ref"}], "links": [{"field": "slice", "target": "Slice", "proxy": true}]},
      {"name": "Instance", "fields": [{"name": "slice", "type": "ref"}], "links": [{"field": "slice", "target": "Slice"}]}]}"#;
    let mut e = Engine::new(Schema::from_json(schema).unwrap(), Config::default());
    e.apply(
        ChangeSet::new()
            .upsert("s", "Slice", [("x", 0i64); 0])
            .upsert("cs", "ControllerSlice", [("slice", "s")])
            .upsert("i", "Instance", [("slice", "s")]),
    )
    .unwrap();
    let plan = e.plan(Time(0));
    let order: Vec<&str> = plan.tasks.iter().map(|t| e.key(t.object)).collect();
    assert_eq!(order, vec!["s", "cs", "i"]);
    assert_eq!(plan.wave_count(), 3);
    settle(&mut e, Time(0));
    e.apply(ChangeSet::new().delete("s").delete("cs").delete("i"))
        .unwrap();
    let order: Vec<String> = task_keys(&e, Time(0));
    assert_eq!(order, vec!["i", "cs", "s"], "mirror order on delete");
}

#[test]
fn r17_external_and_passive_models() {
    let schema = r#"{"models": [
      {"name": "Ctl", "kind": "external"}, {"name": "Tpl", "kind": "passive"},
      {"name": "Net", "fields": [{"name": "ctl", "type": "ref"}, {"name": "tpl", "type": "ref"}],
       "links": [{"field": "ctl", "target": "Ctl"}, {"field": "tpl", "target": "Tpl"}]}]}"#;
    let mut e = Engine::new(Schema::from_json(schema).unwrap(), Config::default());
    e.apply(
        ChangeSet::new()
            .upsert("c", "Ctl", [("x", 0i64); 0])
            .upsert("t", "Tpl", [("x", 0i64); 0])
            .upsert("n", "Net", [("ctl", "c"), ("tpl", "t")]),
    )
    .unwrap();
    assert_eq!(
        e.status("t", Time(0)),
        Some(Status::Synced),
        "passive: synced when applied"
    );
    assert_eq!(
        e.status("n", Time(0)),
        Some(Status::WaitingExternal { key: "c".into() })
    );
    e.report_external(
        "c",
        ExternalReport::Failed {
            version: e.object("c").unwrap().version,
            message: "owner down".into(),
        },
    )
    .unwrap();
    assert_eq!(
        e.status("n", Time(0)),
        Some(Status::Blocked {
            by: "c".into(),
            message: "external dependency c failed: owner down".into()
        })
    );
    let v = e.object("c").unwrap().version;
    assert_eq!(
        e.report_external("c", ExternalReport::Synced { version: v + 100 })
            .unwrap(),
        Completion::Stale
    );
    e.report_external("c", ExternalReport::Synced { version: v })
        .unwrap();
    assert_eq!(task_keys(&e, Time(0)), vec!["n"]);
    assert!(e
        .report_external("n", ExternalReport::Synced { version: 1 })
        .is_err());
}

/// Records notifications.
struct Log(Arc<Mutex<Vec<String>>>, bool);
impl Watcher for Log {
    fn notify(&self, ev: &WatchEvent<'_>) -> Result<(), String> {
        self.0.lock().unwrap().push(format!(
            "{}:{}:{:?}:{}",
            ev.watcher_model,
            ev.key,
            ev.kind,
            ev.changed.join(",")
        ));
        if self.1 {
            Err("watcher broke".into())
        } else {
            Ok(())
        }
    }
}

#[test]
fn r18_watchers_are_notified_filtered_and_never_hold() {
    let schema = r#"{"models": [
      {"name": "Host", "fields": [{"name": "name", "type": "string"}], "feedback": [{"name": "ip", "type": "string"}, {"name": "load", "type": "int"}]},
      {"name": "Daemon", "fields": [{"name": "host", "type": "ref"}], "links": [{"field": "host", "target": "Host", "into": ["ip"]}]},
      {"name": "Audit", "watch_degree": 2, "fields": [{"name": "d", "type": "ref"}], "links": [{"field": "d", "target": "Daemon"}]}]}"#;
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut e = Engine::new(Schema::from_json(schema).unwrap(), Config::default());
    e.register_watcher("Daemon", Box::new(Log(log.clone(), false)))
        .unwrap();
    e.register_watcher("Audit", Box::new(Log(log.clone(), true)))
        .unwrap();
    e.apply(
        ChangeSet::new()
            .upsert("h2", "Host", [("name", "b")])
            .upsert("h1", "Host", [("name", "a")]),
    )
    .unwrap();
    // Daemon filters on ip: no declarative notification; Audit watches everything within 2 hops.
    assert_eq!(
        *log.lock().unwrap(),
        vec!["Audit:h1:Declarative:name", "Audit:h2:Declarative:name"]
    );
    log.lock().unwrap().clear();
    let plan = e.plan(Time(0));
    for t in &plan.tasks {
        e.complete(
            t,
            Outcome::ok_with([("ip", Value::from("10.0.0.1")), ("load", Value::Int(3))]),
            Time(0),
        )
        .unwrap();
    }
    // One notification batch per completion, in (watcher, key) order inside it.
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "Daemon:h1:Feedback:ip",
            "Audit:h1:Feedback:ip,load",
            "Daemon:h2:Feedback:ip",
            "Audit:h2:Feedback:ip,load"
        ]
    );
    assert_eq!(
        e.watch_stats().failed,
        4,
        "failures are counted, never retried"
    );
    assert!(e.plan(Time(0)).is_empty(), "and never hold anything");
    // A declarative change reaches the unfiltered watcher only, as a declarative event.
    log.lock().unwrap().clear();
    e.apply(ChangeSet::new().upsert("h1", "Host", [("name", "c")]))
        .unwrap();
    assert_eq!(*log.lock().unwrap(), vec!["Audit:h1:Declarative:name"]);
    assert_eq!(
        serde_json::to_string(&WatchKind::DeleteRequested).unwrap(),
        "\"delete_requested\""
    );
}

/// R16 + R11: an extension being deleted (or deleted by the same change set) orders nothing,
/// so an ordering through it is no cycle. `e1` extends `b1` and depends on `b2`; a new `e2`
/// extending `b2` and depending on `b1` would close `e1 -> e2 -> e1` while `e1` lives.
#[test]
fn r16_a_deleting_extension_closes_no_cycle() {
    let schema = r#"{"models": [
      {"name": "Base"},
      {"name": "Ext", "fields": [{"name": "of", "type": "ref"}, {"name": "dep", "type": "ref"}],
       "links": [{"field": "of", "target": "Base", "proxy": true}, {"field": "dep", "target": "Base"}]}]}"#;
    let setup = |e: &mut Engine| {
        e.apply(
            ChangeSet::new()
                .upsert("b1", "Base", [("x", 0i64); 0])
                .upsert("b2", "Base", [("x", 0i64); 0])
                .upsert("e1", "Ext", [("of", "b1"), ("dep", "b2")]),
        )
        .unwrap();
        settle(e, Time(0));
    };
    let e2 = || ChangeSet::new().upsert("e2", "Ext", [("of", "b2"), ("dep", "b1")]);

    let mut live = Engine::new(Schema::from_json(schema).unwrap(), Config::default());
    setup(&mut live);
    let before = live.snapshot();
    assert_eq!(
        live.apply(e2()),
        Err(ChangeError::Cycle {
            keys: vec!["e1".into(), "e2".into()]
        }),
        "while e1 lives, the two extensions order each other"
    );
    assert_eq!(live.snapshot(), before, "a refused set changes nothing");

    // e1 already being deleted: e2 is accepted, and both run in one wave.
    let mut deleting = Engine::new(Schema::from_json(schema).unwrap(), Config::default());
    setup(&mut deleting);
    deleting.apply(ChangeSet::new().delete("e1")).unwrap();
    assert!(deleting.object("e1").unwrap().deleting);
    deleting.apply(e2()).unwrap();
    let plan = deleting.plan(Time(0));
    let tasks: Vec<&str> = plan.tasks.iter().map(|t| deleting.key(t.object)).collect();
    assert_eq!(tasks, vec!["e1", "e2"]);
    assert_eq!(
        plan.wave_count(),
        1,
        "the deleting extension orders nothing"
    );

    // e1 deleted by the same change set that creates e2.
    let mut same = Engine::new(Schema::from_json(schema).unwrap(), Config::default());
    setup(&mut same);
    same.apply(e2().delete("e1")).unwrap();
    assert_eq!(same.plan(Time(0)).wave_count(), 1);
}
