//! Unit tests of the executor: ordering, holds, panics, cancellation, limits.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::*;
use crate::{ChangeSet, Config, ObjectView, Time, Value};

/// One self-linked model: `Node.deps` references other nodes.
fn engine_with(edges: &[(usize, &[usize])]) -> Engine {
    let schema = Schema::from_json(
        r#"{"models": [{"name": "Node", "fields": [{"name": "deps", "type": "refs"}],
            "links": [{"field": "deps", "target": "Node"}]}]}"#,
    )
    .unwrap();
    let mut engine = Engine::new(schema, Config::default());
    let mut set = ChangeSet::new();
    for (n, deps) in edges {
        let refs: Vec<String> = deps.iter().map(|d| format!("n{d}")).collect();
        set = set.upsert(format!("n{n}"), "Node", [("deps", Value::Refs(refs))]);
    }
    engine.apply(set).unwrap();
    engine
}

/// Records the order of calls and checks that every dependency finished first.
#[derive(Default)]
struct Recording {
    done: Mutex<BTreeSet<String>>,
    order: Mutex<Vec<String>>,
    fail: BTreeSet<String>,
    panic: BTreeSet<String>,
    violations: AtomicUsize,
}

impl Actuator for Recording {
    fn sync(&self, object: &ObjectView<'_>) -> Outcome {
        for d in object.dependencies() {
            if !self.done.lock().contains(d.key()) {
                self.violations.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.order.lock().push(object.key().to_string());
        if self.panic.contains(object.key()) {
            panic!("boom on {}", object.key());
        }
        if self.fail.contains(object.key()) {
            return Outcome::failed("no");
        }
        self.done.lock().insert(object.key().to_string());
        Outcome::ok()
    }
}

fn executor(engine: &Engine, act: Arc<Recording>, threads: usize) -> Executor {
    let mut acts = Actuators::new();
    acts.insert("Node", act);
    Executor::new(engine.schema(), &acts, ExecConfig::new().threads(threads)).unwrap()
}

/// n0 <- n1, n2 <- n3 (a diamond), n4 alone, n5 <- n6 <- n7 (a chain).
const DAG: &[(usize, &[usize])] = &[
    (0, &[]),
    (1, &[0]),
    (2, &[0]),
    (3, &[1, 2]),
    (4, &[]),
    (5, &[]),
    (6, &[5]),
    (7, &[6]),
];

#[test]
fn r1_tasks_start_only_after_their_dependencies_succeeded() {
    for threads in [1, 2, 4, 8] {
        let engine = engine_with(DAG);
        let act = Arc::new(Recording::default());
        let report = executor(&engine, act.clone(), threads).run(&engine, &engine.plan(Time(0)));
        assert_eq!(report.counts().ok, 8, "threads={threads}");
        assert_eq!(
            act.violations.load(Ordering::SeqCst),
            0,
            "threads={threads}"
        );
        assert_eq!(act.order.lock().len(), 8);
    }
}

#[test]
fn r3_failure_holds_only_transitive_dependents_in_the_run() {
    for threads in [1, 3] {
        let engine = engine_with(DAG);
        let act = Arc::new(Recording {
            fail: ["n1".to_string()].into(),
            ..Default::default()
        });
        let plan = engine.plan(Time(0));
        let report = executor(&engine, act.clone(), threads).run(&engine, &plan);
        let n1 = plan.task_index(engine.id("n1").unwrap()).unwrap();
        let n3 = plan.task_index(engine.id("n3").unwrap()).unwrap();
        assert_eq!(report.states[n3], TaskState::Held { by: n1 });
        let c = report.counts();
        assert_eq!((c.ok, c.failed, c.held, c.not_run), (6, 1, 1, 0));
        assert!(!act.order.lock().contains(&"n3".to_string()));
    }
}

#[test]
fn actuator_panic_fails_that_object_only() {
    for threads in [1, 2] {
        let engine = engine_with(DAG);
        let act = Arc::new(Recording {
            panic: ["n5".to_string()].into(),
            ..Default::default()
        });
        let plan = engine.plan(Time(0));
        let report = executor(&engine, act, threads).run(&engine, &plan);
        let n5 = plan.task_index(engine.id("n5").unwrap()).unwrap();
        assert_eq!(
            report.states[n5].outcome(),
            Some(&Outcome::failed("actuator for Node panicked: boom on n5"))
        );
        assert_eq!(report.panics, 1);
        let c = report.counts();
        assert_eq!((c.ok, c.failed, c.held), (5, 1, 2), "n6 and n7 are held");
    }
}

#[test]
fn r17_missing_actuators_are_listed_when_the_executor_starts() {
    let schema = Schema::from_json(
        r#"{"models": [{"name": "B"}, {"name": "A"}, {"name": "Ext", "kind": "external"},
            {"name": "P", "kind": "passive"}]}"#,
    )
    .unwrap();
    let err = Executor::new(&schema, &Actuators::new(), ExecConfig::new()).unwrap_err();
    assert_eq!(
        err,
        ExecError::MissingActuators {
            models: vec!["A".into(), "B".into()]
        }
    );
    let acts = Actuators::new()
        .with("A", Recording::default())
        .with("B", Recording::default());
    assert!(Executor::new(&schema, &acts, ExecConfig::new()).is_ok());
    let err = Executor::new(
        &schema,
        &acts.clone().with("P", Recording::default()),
        ExecConfig::new(),
    );
    assert!(matches!(err, Err(ExecError::NotActuated { .. })));
    let err = Executor::new(
        &schema,
        &acts.clone().with("Z", Recording::default()),
        ExecConfig::new(),
    );
    assert!(matches!(err, Err(ExecError::UnknownModel { .. })));
    let err = Executor::new(&schema, &acts, ExecConfig::new().model_limit("A", 0));
    assert!(matches!(err, Err(ExecError::ZeroLimit { .. })));
    let err = Executor::new(&schema, &acts, ExecConfig::new().threads(0));
    assert!(matches!(err, Err(ExecError::Threads { .. })));
}

/// Cancels its token on the first call, then sleeps a little.
struct CancelFirst(CancelToken, AtomicUsize);

impl Actuator for CancelFirst {
    fn sync(&self, _: &ObjectView<'_>) -> Outcome {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.cancel();
        std::thread::sleep(Duration::from_millis(2));
        Outcome::ok()
    }
}

#[test]
fn cancellation_reports_tasks_not_started_as_not_run() {
    for threads in [1, 2, 4] {
        let edges: Vec<(usize, &[usize])> = (0..40).map(|i| (i, &[][..])).collect();
        let engine = engine_with(&edges);
        let token = CancelToken::new();
        let act = Arc::new(CancelFirst(token.clone(), AtomicUsize::new(0)));
        let mut acts = Actuators::new();
        acts.insert("Node", act.clone());
        let exec =
            Executor::new(engine.schema(), &acts, ExecConfig::new().threads(threads)).unwrap();
        let report = exec.run_with(&engine, &engine.plan(Time(0)), Some(&token), None);
        assert!(report.cancelled);
        let c = report.counts();
        assert_eq!(c.ok, act.1.load(Ordering::SeqCst));
        assert!(c.ok <= threads, "at most one task per worker was in flight");
        assert_eq!(c.ok + c.not_run, 40);
    }
}

/// Tracks the most actuations in flight at once. With `meet` set, the first actuation
/// waits (up to 1 s) until `meet` are in flight together, so that a cap of `meet` or more is
/// reached whatever the machine's load, and a cap below it is put under pressure.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    max: AtomicUsize,
    meet: usize,
    waited: std::sync::atomic::AtomicBool,
}

impl Actuator for Concurrency {
    fn sync(&self, _: &ObjectView<'_>) -> Outcome {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        if !self.waited.swap(true, Ordering::SeqCst) {
            let until = std::time::Instant::now() + Duration::from_secs(1);
            while self.max.load(Ordering::SeqCst) < self.meet && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        std::thread::sleep(Duration::from_micros(300));
        self.now.fetch_sub(1, Ordering::SeqCst);
        Outcome::ok()
    }
}

#[test]
fn model_limit_caps_actuations_in_flight() {
    let edges: Vec<(usize, &[usize])> = (0..24).map(|i| (i, &[][..])).collect();
    let engine = engine_with(&edges);
    // Every run waits for 2 in flight at once, so a cap of 1 must hold against pressure,
    // and the control (no cap) and a cap of 2 must reach 2.
    for limit in [None, Some(1), Some(2)] {
        let act = Arc::new(Concurrency {
            meet: 2,
            ..Concurrency::default()
        });
        let mut acts = Actuators::new();
        acts.insert("Node", act.clone());
        let mut config = ExecConfig::new().threads(4);
        if let Some(limit) = limit {
            config = config.model_limit("Node", limit);
        }
        let exec = Executor::new(engine.schema(), &acts, config).unwrap();
        let report = exec.run(&engine, &engine.plan(Time(0)));
        assert_eq!(report.counts().ok, 24);
        let max = act.max.load(Ordering::SeqCst);
        match limit {
            // Positive control: without a cap, the four workers overlap.
            None => assert!(max >= 2, "without a limit only {max} ran at once"),
            Some(limit) => assert_eq!(max, limit as usize, "limit {limit}"),
        }
    }
}

#[test]
fn timing_records_a_span_per_actuation() {
    let engine = engine_with(DAG);
    let clock = crate::RealClock::new();
    let mut acts = Actuators::new();
    acts.insert("Node", Arc::new(Concurrency::default()));
    let exec = Executor::new(
        engine.schema(),
        &acts,
        ExecConfig::new().threads(2).timing(true),
    )
    .unwrap();
    let report = exec.run_with(&engine, &engine.plan(Time(0)), None, Some(&clock));
    assert_eq!(report.spans.len(), 8);
    assert!(report
        .spans
        .iter()
        .all(|s| s.end_ns >= s.start_ns && s.end_ns > 0));
    let lanes: BTreeSet<u16> = report
        .states
        .iter()
        .filter_map(|s| match s {
            TaskState::Ran { lane, .. } => Some(*lane),
            _ => None,
        })
        .collect();
    assert!(lanes.iter().all(|&l| l < 2));
}

#[test]
fn empty_plan_runs_nothing() {
    let engine = engine_with(&[]);
    let exec = executor(&engine, Arc::new(Recording::default()), 4);
    let report = exec.run(&engine, &engine.plan(Time(0)));
    assert!(report.states.is_empty());
    assert!(!report.cancelled);
}
