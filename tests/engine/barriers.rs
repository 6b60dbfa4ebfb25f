//! Model-level dependencies (`depends_on_models`, R1; its delete order, R7) go through one
//! barrier per (model, live or deleting) in the plan, so they cost O(objects + models), not
//! O(objects of A x objects of B) (R15); and they order, hold and name root causes exactly
//! as a wait for every object of the model would.

use std::collections::BTreeSet;

use syncore::sched::{SchedConfig, Scheduler};
use syncore::{
    Actuator, Actuators, Barrier, Change, ChangeSet, Config, Engine, ExecConfig, Executor,
    HoldReason, ObjectView, Outcome, Plan, Policy, PolicyInput, Schema, StateView, Status,
    TaskKind, TaskState, Time,
};

/// `Vm` waits for every unsettled `Net` (a model-level dependency); a `Port` references
/// its `Vm`, and a policy ensures one `Port` per `Vm`.
const SCHEMA: &str = r#"{"models": [
  {"name": "Net", "fields": [{"name": "v", "type": "int"}]},
  {"name": "Vm", "fields": [{"name": "v", "type": "int"}], "depends_on_models": ["Net"]},
  {"name": "Port", "fields": [{"name": "vm", "type": "ref"}, {"name": "v", "type": "int"}],
   "links": [{"field": "vm", "target": "Vm"}]}
]}"#;

fn engine() -> Engine {
    let mut config = Config::default();
    config.backoff.jitter_permille = 0;
    Engine::new(Schema::from_json(SCHEMA).unwrap(), config)
}

/// Every `Vm` has a `Port` named after it.
struct EnsurePort;
impl Policy for EnsurePort {
    fn on_change(&self, n: &PolicyInput<'_>, s: &dyn StateView) -> Result<Vec<Change>, String> {
        let port = format!("{}-port", n.key);
        if n.deleted || s.get(&port).is_some() {
            return Ok(vec![]);
        }
        Ok(vec![Change::upsert(port, "Port", [("vm", n.key)])])
    }
}

fn none() -> [(&'static str, i64); 0] {
    []
}

fn keys(e: &Engine, plan: &Plan, tasks: &[u32]) -> Vec<String> {
    tasks
        .iter()
        .map(|&t| e.key(plan.tasks[t as usize].object).to_string())
        .collect()
}

/// Completes every task Ok at `now`, round after round.
fn settle(e: &mut Engine, now: Time) {
    for _ in 0..10 {
        let plan = e.plan(now);
        if plan.tasks.is_empty() {
            return;
        }
        for t in &plan.tasks {
            e.complete(t, Outcome::ok(), now).unwrap();
        }
    }
}

/// Runs everything through the scheduler, every outcome Ok, delivering in dispatch order;
/// returns the (model, kind) of each event in order: `true` for a dispatch, `false` for a
/// delivery.
fn run_all(s: &mut Scheduler) -> Vec<(String, bool, String)> {
    let mut events = Vec::new();
    let mut now = 0u64;
    loop {
        let mut batch = Vec::new();
        while let Some(d) = s.poll_dispatch(Time(now)) {
            let v = s.engine().view(d.task.object);
            events.push((v.model().to_string(), true, v.key().to_string()));
            batch.push(d);
        }
        if batch.is_empty() {
            return events;
        }
        now += 1;
        for d in batch {
            let v = s.engine().view(d.task.object);
            events.push((v.model().to_string(), false, v.key().to_string()));
            s.deliver(d.lease, Outcome::ok(), Time(now));
        }
    }
}

/// Whether every dispatch of `later` comes after every delivery of `first`.
fn after_all(events: &[(String, bool, String)], later: &str, first: &str) -> bool {
    let last_first = events
        .iter()
        .rposition(|(m, dispatch, _)| m == first && !dispatch)
        .expect("the first model ran");
    let first_later = events
        .iter()
        .position(|(m, dispatch, _)| m == later && *dispatch)
        .expect("the later model ran");
    first_later > last_first
}

/// R15 with `depends_on_models` at scale: 2,000 `Vm`s waiting for 2,000 `Net`s (and a
/// policy adding 2,000 `Port`s) plan in O(objects + models) edges, not 4,000,000; the
/// scheduler still runs every `Vm` after every `Net`, and its release work is
/// O(objects + models) too. The same for the deletes in reverse (R7).
#[test]
fn r15_model_level_dependency_costs_objects_plus_models_not_their_product() {
    let n = 2_000usize;
    let mut e = engine();
    e.register_policy("Vm", Box::new(EnsurePort)).unwrap();
    let mut set = ChangeSet::new();
    for i in 0..n {
        set =
            set.upsert(format!("n{i:05}"), "Net", none())
                .upsert(format!("vm{i:05}"), "Vm", none());
    }
    let report = e.apply(set).unwrap();
    assert_eq!(report.changed.len(), 3 * n, "a port per vm");
    let bound = 10 * (3 * n as u64 + 3);

    let plan = e.plan(Time(0));
    assert_eq!(plan.tasks.len(), 3 * n);
    assert!(
        plan.stats.edges < bound && (plan.edge_count() as u64) < bound,
        "{} edges examined, {} stored, for {} objects",
        plan.stats.edges,
        plan.edge_count(),
        3 * n
    );
    let waves: Vec<BTreeSet<&str>> = plan
        .waves()
        .map(|w| w.iter().map(|t| e.view(t.object).model()).collect())
        .collect();
    assert_eq!(
        waves,
        vec![
            BTreeSet::from(["Net"]),
            BTreeSet::from(["Vm"]),
            BTreeSet::from(["Port"])
        ]
    );
    let net = e.schema().model_id("Net").unwrap();
    assert_eq!(
        plan.barriers,
        vec![Barrier {
            model: net,
            kind: TaskKind::Sync
        }]
    );
    assert_eq!(plan.barrier_members(0).len(), n);
    assert!(plan
        .barrier_members(0)
        .iter()
        .all(|&m| plan.tasks[m as usize].model == net));
    for (i, t) in plan.tasks.iter().enumerate() {
        let model = e.view(t.object).model();
        let barriers: Vec<usize> = plan.barrier_deps(i).collect();
        match model {
            "Vm" => assert!(plan.deps(i).is_empty() && barriers == [0], "{model}"),
            "Port" => assert!(plan.deps(i).len() == 1 && barriers.is_empty()),
            _ => assert!(plan.deps(i).is_empty() && barriers.is_empty()),
        }
    }

    let mut s = Scheduler::new(e, SchedConfig::default()).unwrap();
    let events = run_all(&mut s);
    assert_eq!(s.engine().unsettled_count(), 0, "everything synced");
    assert!(after_all(&events, "Vm", "Net"), "every Vm after every Net");
    for (at, (m, dispatch, key)) in events.iter().enumerate() {
        if m == "Port" && *dispatch {
            let vm = key.strip_suffix("-port").unwrap();
            let done = events.iter().position(|(_, d, k)| !d && k == vm).unwrap();
            assert!(done < at, "{key} after its vm");
        }
    }
    let release = s.stats().release_edges;
    assert!(release < bound, "{release} release edges");
    assert_eq!(
        s.stats().replans,
        1,
        "one plan, released completion by completion"
    );

    // R7: deleting them all, the Vms' deletes (and their ports') go before any Net's,
    // through one barrier of Vm deletes.
    let mut set = ChangeSet::new();
    for i in 0..n {
        set = set
            .delete(format!("n{i:05}"))
            .delete(format!("vm{i:05}"))
            .delete(format!("vm{i:05}-port"));
    }
    let before = *s.stats();
    s.apply(set, Time(100)).unwrap();
    let plan = s.engine().plan(Time(100));
    assert_eq!(plan.tasks.len(), 3 * n);
    assert!(
        plan.stats.edges < bound && (plan.edge_count() as u64) < bound,
        "{} edges examined, {} stored",
        plan.stats.edges,
        plan.edge_count()
    );
    let vm = s.engine().schema().model_id("Vm").unwrap();
    assert_eq!(
        plan.barriers,
        vec![Barrier {
            model: vm,
            kind: TaskKind::Delete
        }]
    );
    assert_eq!(plan.wave_count(), 3, "ports, vms, nets");
    let events = run_all(&mut s);
    assert_eq!(s.engine().keys().count(), 0, "everything deleted");
    assert!(
        after_all(&events, "Net", "Vm"),
        "every Net delete after every Vm's"
    );
    let release = s.stats().release_edges - before.release_edges;
    assert!(release < bound, "{release} release edges for the deletes");
}

/// A `Vm` and a `Port` passing through its settled `Vm` both wait for the `Net` barrier:
/// the same order as a wait for every unsettled `Net`.
#[test]
fn r1_model_level_wait_passes_through_settled_objects_via_the_barrier() {
    let mut e = engine();
    e.apply(
        ChangeSet::new()
            .upsert("n1", "Net", none())
            .upsert("vm", "Vm", none())
            .upsert("p", "Port", [("vm", "vm")]),
    )
    .unwrap();
    settle(&mut e, Time(0));
    e.apply(
        ChangeSet::new()
            .upsert("n1", "Net", [("v", 1i64)])
            .upsert("n2", "Net", none())
            .upsert("p", "Port", [("v", 1i64)]),
    )
    .unwrap();
    let plan = e.plan(Time(0));
    let p = plan.task_index(e.id("p").unwrap()).unwrap();
    assert_eq!(keys(&e, &plan, &plan.implied_deps(p)), ["n1", "n2"]);
    assert!(plan.deps(p).is_empty(), "no object edge: vm is settled");
    assert_eq!(plan.barrier_deps(p).collect::<Vec<_>>(), [0]);
    assert_eq!(plan.wave_count(), 2);
}

/// R3/R4 through a barrier: a failing Net holds every Vm, naming the failing Net with the
/// smallest key as root cause, in the plan, in `status`, and in the executor's report.
#[test]
fn r4_a_failing_member_of_a_barrier_holds_every_waiter_naming_it() {
    let mut e = engine();
    e.apply(
        ChangeSet::new()
            .upsert("n1", "Net", none())
            .upsert("n2", "Net", none())
            .upsert("n3", "Net", none())
            .upsert("v1", "Vm", none())
            .upsert("v2", "Vm", none()),
    )
    .unwrap();

    // The executor, one thread and several: n2 fails, so both Vms are held by it.
    struct FailOne(&'static str);
    impl Actuator for FailOne {
        fn sync(&self, v: &ObjectView<'_>) -> Outcome {
            if v.key() == self.0 {
                Outcome::failed("boom")
            } else {
                Outcome::ok()
            }
        }
    }
    let plan = e.plan(Time(0));
    let n2 = plan.task_index(e.id("n2").unwrap()).unwrap();
    for threads in [1, 4] {
        let x = Executor::new(
            e.schema(),
            &Actuators::new()
                .with("Net", FailOne("n2"))
                .with("Vm", FailOne("-"))
                .with("Port", FailOne("-")),
            ExecConfig::new().threads(threads),
        )
        .unwrap();
        let report = x.run(&e, &plan);
        for key in ["v1", "v2"] {
            let i = plan.task_index(e.id(key).unwrap()).unwrap();
            assert_eq!(
                report.states[i],
                TaskState::Held { by: n2 },
                "{key}, {threads} threads"
            );
        }
        for key in ["n1", "n3"] {
            let i = plan.task_index(e.id(key).unwrap()).unwrap();
            assert!(matches!(&report.states[i], TaskState::Ran { outcome, .. } if outcome.is_ok()));
        }
    }

    // The engine: n3 fails, then n2; the root cause is the smallest key.
    let t = |e: &Engine, k: &str| {
        let plan = e.plan(Time(0));
        plan.tasks[plan.task_index(e.id(k).unwrap()).unwrap()]
    };
    let n3 = t(&e, "n3");
    e.complete(&n3, Outcome::failed("boom"), Time(0)).unwrap();
    let plan = e.plan(Time(0));
    for key in ["v1", "v2"] {
        assert_eq!(
            plan.hold(e.id(key).unwrap()),
            Some(&HoldReason::Blocked {
                by: e.id("n3").unwrap()
            })
        );
        assert!(matches!(e.status(key, Time(0)), Some(Status::Blocked { by, .. }) if by == "n3"));
    }
    assert!(
        plan.barriers.is_empty(),
        "no task waits for the Net barrier"
    );
    let n2 = t(&e, "n2");
    e.complete(&n2, Outcome::failed("boom"), Time(0)).unwrap();
    let plan = e.plan(Time(0));
    for key in ["v1", "v2"] {
        assert_eq!(
            plan.hold(e.id(key).unwrap()),
            Some(&HoldReason::Blocked {
                by: e.id("n2").unwrap()
            }),
            "the smallest key among the failing Nets"
        );
    }
    // Their retries succeed: the Vms become tasks behind the barrier again.
    let later = Time(3_600_000);
    for k in ["n2", "n3"] {
        let plan = e.plan(later);
        let task = plan.tasks[plan.task_index(e.id(k).unwrap()).unwrap()];
        e.complete(&task, Outcome::ok(), later).unwrap();
    }
    let plan = e.plan(later);
    let v1 = plan.task_index(e.id("v1").unwrap()).unwrap();
    assert_eq!(keys(&e, &plan, &plan.implied_deps(v1)), ["n1"]);
}

/// R7 through a barrier: Net deletes wait for every Vm delete; a failing Vm delete blocks
/// them all naming it, and a Vm delete waiting for a live referrer makes them wait as
/// `WaitingReferrers` for the Vm deletes, as before barriers.
#[test]
fn r7_deletes_of_a_model_wait_for_the_deletes_of_its_dependents_through_a_barrier() {
    let mut e = engine();
    e.apply(
        ChangeSet::new()
            .upsert("n1", "Net", none())
            .upsert("n2", "Net", none())
            .upsert("v1", "Vm", none())
            .upsert("v2", "Vm", none())
            .upsert("p", "Port", [("vm", "v1")]),
    )
    .unwrap();
    settle(&mut e, Time(0));
    e.apply(ChangeSet::new().delete("n1").delete("n2").delete("v2"))
        .unwrap();
    let plan = e.plan(Time(0));
    let waves: Vec<Vec<&str>> = plan
        .waves()
        .map(|w| w.iter().map(|t| e.key(t.object)).collect())
        .collect();
    assert_eq!(waves, vec![vec!["v2"], vec!["n1", "n2"]]);
    let vm = e.schema().model_id("Vm").unwrap();
    assert_eq!(
        plan.barriers,
        vec![Barrier {
            model: vm,
            kind: TaskKind::Delete
        }]
    );
    for k in ["n1", "n2"] {
        let i = plan.task_index(e.id(k).unwrap()).unwrap();
        assert_eq!(keys(&e, &plan, &plan.implied_deps(i)), ["v2"]);
    }

    // v2's delete fails: both Net deletes are blocked by it (R4).
    let v2 = plan.tasks[plan.task_index(e.id("v2").unwrap()).unwrap()];
    e.complete(&v2, Outcome::failed("boom"), Time(0)).unwrap();
    let plan = e.plan(Time(0));
    for k in ["n1", "n2"] {
        assert_eq!(
            plan.hold(e.id(k).unwrap()),
            Some(&HoldReason::Blocked {
                by: e.id("v2").unwrap()
            })
        );
    }

    // v1's delete too, while the live port references it: v1 waits for p, and the Net
    // deletes wait for the Vm deletes (v2's failure still blocks them first).
    e.apply(ChangeSet::new().delete("v1")).unwrap();
    let plan = e.plan(Time(0));
    assert_eq!(
        plan.hold(e.id("v1").unwrap()),
        Some(&HoldReason::WaitingReferrers {
            keys: vec![e.id("p").unwrap()]
        })
    );
    let later = Time(3_600_000);
    let plan = e.plan(later);
    let v2 = plan.tasks[plan.task_index(e.id("v2").unwrap()).unwrap()];
    e.complete(&v2, Outcome::ok(), later).unwrap();
    let plan = e.plan(later);
    assert!(plan.tasks.is_empty());
    for k in ["n1", "n2"] {
        assert_eq!(
            plan.hold(e.id(k).unwrap()),
            Some(&HoldReason::WaitingReferrers {
                keys: vec![e.id("v1").unwrap()]
            }),
            "{k} waits for the Vm delete that waits for its referrer"
        );
    }
}

/// R1 through a barrier on worker threads: the executor starts no `Vm` before every `Net`
/// has finished, and starts every `Vm` (none waits for another).
#[test]
fn r1_executor_starts_waiters_of_a_barrier_only_after_all_its_members() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    struct Log {
        clock: AtomicU64,
        /// (model, start, end) of each call.
        calls: Mutex<Vec<(String, u64, u64)>>,
    }
    struct Rec(Arc<Log>);
    impl Actuator for Rec {
        fn sync(&self, v: &ObjectView<'_>) -> Outcome {
            let start = self.0.clock.fetch_add(1, Ordering::SeqCst);
            std::thread::yield_now();
            let end = self.0.clock.fetch_add(1, Ordering::SeqCst);
            let call = (v.model().to_string(), start, end);
            self.0.calls.lock().unwrap().push(call);
            Outcome::ok()
        }
    }
    let mut e = engine();
    let mut set = ChangeSet::new();
    for i in 0..50 {
        set =
            set.upsert(format!("n{i:02}"), "Net", none())
                .upsert(format!("v{i:02}"), "Vm", none());
    }
    e.apply(set).unwrap();
    let log = Arc::new(Log {
        clock: AtomicU64::new(0),
        calls: Mutex::new(Vec::new()),
    });
    let x = Executor::new(
        e.schema(),
        &Actuators::new()
            .with("Net", Rec(log.clone()))
            .with("Vm", Rec(log.clone()))
            .with("Port", Rec(log.clone())),
        ExecConfig::new().threads(4),
    )
    .unwrap();
    let plan = e.plan(Time(0));
    assert_eq!(plan.barriers.len(), 1);
    let report = x.run(&e, &plan);
    assert!(report
        .states
        .iter()
        .all(|s| matches!(s, TaskState::Ran { outcome, .. } if outcome.is_ok())));
    let calls = log.calls.lock().unwrap();
    assert_eq!(calls.len(), 100);
    let last_net_end = calls.iter().filter(|c| c.0 == "Net").map(|c| c.2).max();
    let first_vm_start = calls.iter().filter(|c| c.0 == "Vm").map(|c| c.1).min();
    assert!(
        first_vm_start > last_net_end,
        "first Vm start {first_vm_start:?}, last Net end {last_net_end:?}"
    );
}
