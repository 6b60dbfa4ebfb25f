//! The executor, the run loop and record/replay, through the public API only.
//!
//! Goal: outcomes reach the engine in plan order whatever the thread count (R12), a
//! panicking, slow or cancelled run leaves the state consistent, and the run loop plans,
//! sleeps, wakes and stops as documented. Method: small engines built from JSON schemas,
//! actuators whose outcome is a pure function of the object, and a virtual clock.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use proptest::prelude::*;
use syncore::sim::{gen, strategy, SplitMix64};
use syncore::{
    trace, Actuator, Actuators, CancelToken, ChangeSet, Clock, Config, Engine, ExecConfig,
    ExecError, Executor, ObjectView, Outcome, RealClock, Runner, RunnerConfig, Schema, Status,
    StopReason, TaskState, Time, Value, VirtualClock,
};

const CHAIN: &str = r#"{"models": [
  {"name": "Net", "fields": [{"name": "v", "type": "int"}]},
  {"name": "Port", "fields": [{"name": "net", "type": "ref"}, {"name": "v", "type": "int"}],
   "feedback": [{"name": "mac", "type": "string"}],
   "links": [{"field": "net", "target": "Net"}]},
  {"name": "Vm", "fields": [{"name": "ports", "type": "refs"}],
   "links": [{"field": "ports", "target": "Port"}]}]}"#;

/// `nets` networks, two ports each, one VM per network over its ports.
fn chain_engine(nets: usize) -> Engine {
    let mut engine = Engine::new(Schema::from_json(CHAIN).unwrap(), Config::default());
    let mut set = ChangeSet::new();
    for n in 0..nets {
        set = set.upsert(format!("net{n}"), "Net", [("v", 1i64)]);
        for p in 0..2 {
            set = set.upsert(
                format!("port{n}-{p}"),
                "Port",
                [
                    ("net", Value::from(format!("net{n}"))),
                    ("v", Value::Int(1)),
                ],
            );
        }
        set = set.upsert(
            format!("vm{n}"),
            "Vm",
            [(
                "ports",
                Value::Refs(vec![format!("port{n}-0"), format!("port{n}-1")]),
            )],
        );
    }
    engine.apply(set).unwrap();
    engine
}

/// Outcome is a pure function of the key: keys in `fail` fail, in `slow` sleep first, in
/// `panic` panic; ports report a MAC.
#[derive(Default)]
struct Scripted {
    fail: BTreeSet<String>,
    panic: BTreeSet<String>,
    slow: BTreeSet<String>,
    calls: AtomicUsize,
}

impl Actuator for Scripted {
    fn sync(&self, o: &ObjectView<'_>) -> Outcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let key = o.key();
        if self.slow.contains(key) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.panic.contains(key) {
            panic!("driver crashed on {key}");
        }
        if self.fail.contains(key) {
            return Outcome::failed(format!("{key} refused"));
        }
        if o.model() == "Port" {
            Outcome::ok_with([("mac", format!("mac-{key}"))])
        } else {
            Outcome::ok()
        }
    }
}

fn all(act: Arc<Scripted>) -> Actuators {
    let mut a = Actuators::new();
    for m in ["Net", "Port", "Vm"] {
        a.insert(m, act.clone());
    }
    a
}

/// One plan-execute-complete round at `now` with `threads` workers.
fn round(
    engine: &mut Engine,
    act: &Arc<Scripted>,
    threads: usize,
    now: Time,
) -> syncore::RunReport {
    let exec = Executor::new(
        engine.schema(),
        &all(act.clone()),
        ExecConfig::new().threads(threads),
    )
    .unwrap();
    let plan = engine.plan(now);
    let report = exec.run(engine, &plan);
    engine.complete_run(&plan, &report, now).unwrap();
    report
}

/// Nothing is synced that did not succeed, nothing is lost: every object is still there,
/// synced exactly when its actuation (and its dependencies') succeeded.
fn assert_consistent(engine: &Engine, now: Time, not_synced: &[&str]) {
    let plan = engine.plan(now);
    for key in engine.keys() {
        let status = engine.status_in(&plan, engine.id(key).unwrap());
        let info = engine.object(key).unwrap();
        if not_synced.contains(&key) {
            assert_ne!(status, Status::Synced, "{key} must not be synced");
            assert_ne!(info.enacted, info.version, "{key}");
        }
        if status == Status::Synced {
            assert_eq!(info.enacted, info.version, "{key}");
        }
    }
}

#[test]
fn r12_snapshot_after_a_run_is_identical_for_1_2_and_8_threads_on_a_fixed_graph() {
    let mut hashes = BTreeSet::new();
    for threads in [1, 2, 8] {
        let mut engine = chain_engine(20);
        let act = Arc::new(Scripted {
            fail: ["net3".into(), "port7-1".into()].into(),
            ..Default::default()
        });
        for t in 0..4 {
            round(&mut engine, &act, threads, Time(t * 1000));
        }
        hashes.insert(engine.snapshot());
    }
    assert_eq!(hashes.len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// R12: generated schemas and graphs, outcomes a pure function of (key, version): the
    /// snapshot after every round is byte-identical for 1, 2 and 8 threads.
    #[test]
    fn r12_snapshot_is_identical_for_1_2_and_8_threads(
        case in strategy::scenario(4, 40, 6),
        fail_permille in 0u32..400,
        seed: u64,
    ) {
        struct Pure { seed: u64, fail: u32 }
        impl Actuator for Pure {
            fn sync(&self, o: &ObjectView<'_>) -> Outcome {
                let mut r = SplitMix64::new(self.seed ^ o.version() ^ (o.key().len() as u64 * 7919)
                    ^ o.key().bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))));
                match r.below(1000) as u32 {
                    x if x < self.fail => Outcome::failed("no"),
                    x if x < self.fail + 50 => Outcome::deferred("later"),
                    _ if o.feedback("seen").is_some() => Outcome::ok_with([("seen", o.version() as i64)]),
                    _ => Outcome::ok(),
                }
            }
            fn delete(&self, o: &ObjectView<'_>) -> Outcome { self.sync(o) }
        }
        let mut snapshots: Vec<Vec<Vec<u8>>> = Vec::new();
        for threads in [1usize, 2, 8] {
            let mut engine = Engine::new(case.schema.clone(), Config::default());
            let _ = engine.apply(case.graph.clone());
            let mut acts = Actuators::new();
            for m in case.schema.models() {
                acts.insert(m.name.clone(), Arc::new(Pure { seed, fail: fail_permille }));
            }
            let exec = Executor::new(engine.schema(), &acts, ExecConfig::new().threads(threads)).unwrap();
            let mut snaps = Vec::new();
            let mut sets = case.stream.iter();
            for step in 0..8u64 {
                if let Some(set) = sets.next() {
                    let _ = engine.apply(set.clone());
                }
                let now = Time(step * 400);
                let plan = engine.plan(now);
                let report = exec.run(&engine, &plan);
                engine.complete_run(&plan, &report, now).unwrap();
                snaps.push(engine.snapshot());
            }
            snapshots.push(snaps);
        }
        prop_assert_eq!(&snapshots[0], &snapshots[1]);
        prop_assert_eq!(&snapshots[0], &snapshots[2]);
    }
}

#[test]
fn actuator_panic_leaves_the_state_consistent() {
    for threads in [1, 4] {
        let mut engine = chain_engine(3);
        let act = Arc::new(Scripted {
            panic: ["port1-0".into()].into(),
            ..Default::default()
        });
        let report = round(&mut engine, &act, threads, Time(0));
        assert_eq!(report.panics, 1);
        let info = engine.object("port1-0").unwrap();
        assert_eq!(
            info.message.as_deref(),
            Some("actuator for Port panicked: driver crashed on port1-0")
        );
        assert_eq!(info.failures, 1);
        // Its VM is held behind it (R3); everything else went ahead.
        let plan = engine.plan(Time(0));
        assert_eq!(
            engine.status_in(&plan, engine.id("vm1").unwrap()),
            Status::Blocked {
                by: "port1-0".into(),
                message: "dependency port1-0 failed: actuator for Port panicked: driver crashed on port1-0".into()
            }
        );
        assert_consistent(&engine, Time(0), &["port1-0", "vm1"]);
        for key in ["vm0", "vm2", "port1-1", "net1"] {
            assert_eq!(engine.status(key, Time(0)), Some(Status::Synced), "{key}");
        }
    }
}

#[test]
fn slow_actuator_delays_only_its_dependents() {
    // net0's sync does not return until every object outside its dependents (net1..3, their
    // ports and VMs: 12) has been synced, or 10 s have passed: if anything else waited for
    // net0, the run would take the 10 s and net0 would fail. Its dependents (port0-*, vm0)
    // must start only after it returned.
    struct SlowNet0 {
        events: std::sync::Mutex<Vec<String>>,
        others_done: AtomicUsize,
    }
    impl Actuator for SlowNet0 {
        fn sync(&self, o: &ObjectView<'_>) -> Outcome {
            let key = o.key();
            self.events.lock().unwrap().push(format!("start {key}"));
            if key == "net0" {
                let until = std::time::Instant::now() + Duration::from_secs(10);
                while self.others_done.load(Ordering::SeqCst) < 12 {
                    if std::time::Instant::now() > until {
                        return Outcome::failed("other objects waited for net0");
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            } else if !["port0-0", "port0-1", "vm0"].contains(&key) {
                self.others_done.fetch_add(1, Ordering::SeqCst);
            }
            self.events.lock().unwrap().push(format!("end {key}"));
            if o.model() == "Port" {
                Outcome::ok_with([("mac", format!("mac-{key}"))])
            } else {
                Outcome::ok()
            }
        }
    }
    let mut engine = chain_engine(4);
    let act = Arc::new(SlowNet0 {
        events: Default::default(),
        others_done: AtomicUsize::new(0),
    });
    let mut acts = Actuators::new();
    for m in ["Net", "Port", "Vm"] {
        acts.insert(m, act.clone());
    }
    let exec = Executor::new(engine.schema(), &acts, ExecConfig::new().threads(4)).unwrap();
    let plan = engine.plan(Time(0));
    let report = exec.run(&engine, &plan);
    engine.complete_run(&plan, &report, Time(0)).unwrap();
    assert_eq!(report.counts().ok, 16, "{:?}", engine.object("net0"));
    assert!(engine.plan(Time(0)).is_empty());
    let events = act.events.lock().unwrap().clone();
    let at = |e: &str| events.iter().position(|x| x == e).unwrap();
    // Everything outside net0's dependents finished while net0 was still running ...
    for n in 1..4 {
        for key in [
            format!("net{n}"),
            format!("port{n}-0"),
            format!("port{n}-1"),
            format!("vm{n}"),
        ] {
            assert!(
                at(&format!("end {key}")) < at("end net0"),
                "{key}: {events:?}"
            );
        }
    }
    // ... and its dependents started only after it ended.
    for key in ["port0-0", "port0-1", "vm0"] {
        assert!(
            at(&format!("start {key}")) > at("end net0"),
            "{key}: {events:?}"
        );
    }
    assert_eq!(
        engine.object("port0-0").unwrap().feedback,
        vec![("mac".to_string(), Value::Str("mac-port0-0".into()))]
    );
}

/// Blocks every actuation until the test lets it go, so a cancellation lands mid-run.
struct Gate {
    entered: Arc<Barrier>,
    release: Arc<Barrier>,
}

impl Actuator for Gate {
    fn sync(&self, _: &ObjectView<'_>) -> Outcome {
        self.entered.wait();
        self.release.wait();
        Outcome::ok()
    }
}

#[test]
fn cancellation_mid_run_leaves_the_state_consistent() {
    //   net0 (running when cancelled)  <-  port0-*  <-  vm0      (not run)
    let mut engine = Engine::new(Schema::from_json(CHAIN).unwrap(), Config::default());
    engine
        .apply(
            ChangeSet::new()
                .upsert("net0", "Net", [("v", 1i64)])
                .upsert("port0", "Port", [("net", "net0")])
                .upsert("vm0", "Vm", [("ports", Value::Refs(vec!["port0".into()]))]),
        )
        .unwrap();
    let entered = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let gate = Arc::new(Gate {
        entered: entered.clone(),
        release: release.clone(),
    });
    let mut acts = Actuators::new();
    for m in ["Net", "Port", "Vm"] {
        acts.insert(m, gate.clone());
    }
    let exec = Executor::new(engine.schema(), &acts, ExecConfig::new().threads(2)).unwrap();
    let plan = engine.plan(Time(0));
    let token = CancelToken::new();
    let report = std::thread::scope(|s| {
        let t = s.spawn(|| exec.run_with(&engine, &plan, Some(&token), None));
        entered.wait(); // net0 is in its actuator
        token.cancel();
        release.wait();
        t.join().unwrap()
    });
    assert!(report.cancelled);
    assert_eq!(report.counts().ok, 1);
    assert_eq!(report.counts().not_run, 2);
    engine.complete_run(&plan, &report, Time(0)).unwrap();
    assert_eq!(engine.status("net0", Time(0)), Some(Status::Synced));
    assert_consistent(&engine, Time(0), &["port0", "vm0"]);
    // Nothing was lost: the next plan runs what was not run, in order.
    let next = engine.plan(Time(0));
    assert_eq!(next.tasks.len(), 2);
    assert_eq!(next.wave_count(), 2);
}

#[test]
fn r17_runner_refuses_to_start_without_every_actuator() {
    let engine = chain_engine(1);
    let err = Runner::new(
        engine,
        &Actuators::new().with("Port", Scripted::default()),
        Arc::new(VirtualClock::new(Time(0))),
        RunnerConfig::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "actuated models without an actuator: Net, Vm"
    );
    assert!(matches!(
        Executor::new(&Schema::from_json(CHAIN).unwrap(), &Actuators::new(), ExecConfig::new()),
        Err(ExecError::MissingActuators { models }) if models == ["Net", "Port", "Vm"]
    ));
}

#[test]
fn runner_converges_and_sleeps_until_backoff_expires_in_virtual_time() {
    // net0 fails twice, then succeeds: the loop must wake exactly at each retry time.
    struct FlakyNet(AtomicUsize);
    impl Actuator for FlakyNet {
        fn sync(&self, o: &ObjectView<'_>) -> Outcome {
            if o.model() == "Net" && self.0.fetch_add(1, Ordering::SeqCst) < 2 {
                Outcome::failed("flaky")
            } else {
                Outcome::ok()
            }
        }
    }
    let engine = chain_engine(1);
    let clock = Arc::new(VirtualClock::new(Time(1000)));
    let act = Arc::new(FlakyNet(AtomicUsize::new(0)));
    let mut acts = Actuators::new();
    for m in ["Net", "Port", "Vm"] {
        acts.insert(m, act.clone());
    }
    let mut runner = Runner::new(
        engine,
        &acts,
        clock.clone(),
        RunnerConfig {
            exec: ExecConfig::new().threads(2),
            ..RunnerConfig::default()
        },
    )
    .unwrap();
    let summary = runner.run().unwrap();
    assert_eq!(summary.reason, StopReason::Converged);
    assert_eq!(summary.counts.failed, 2);
    assert_eq!(summary.counts.ok, 4);
    let backoff = &runner.engine().config().backoff;
    let expected = Time(1000)
        .after(backoff.delay_ms(1, "net0"))
        .after(backoff.delay_ms(2, "net0"));
    assert_eq!(
        clock.now(),
        expected,
        "woke exactly at each retry time, never polled"
    );
    assert!(runner.engine().plan(clock.now()).is_empty());
}

#[test]
fn runner_takes_change_sets_from_other_threads_and_stops_on_request() {
    let engine = Engine::new(Schema::from_json(CHAIN).unwrap(), Config::default());
    let act = Arc::new(Scripted::default());
    let mut runner = Runner::new(
        engine,
        &all(act.clone()),
        Arc::new(RealClock::new()),
        RunnerConfig {
            stop_when_converged: false,
            exec: ExecConfig::new().threads(2),
            ..RunnerConfig::default()
        },
    )
    .unwrap();
    let sender = runner.sender();
    let producer = std::thread::spawn(move || {
        for i in 0..5 {
            sender
                .send(ChangeSet::new().upsert(format!("net{i}"), "Net", [("v", 1i64)]))
                .unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20));
        sender.stop();
    });
    let summary = runner.run().unwrap();
    producer.join().unwrap();
    assert_eq!(summary.reason, StopReason::Requested);
    assert_eq!(act.calls.load(Ordering::SeqCst), 5);
    assert_eq!(runner.engine().len(), 5);
    assert!(runner.engine().plan(Time(u64::MAX)).is_empty());
}

#[test]
fn r13_pretend_mode_reports_waves_without_calling_actuators() {
    let engine = chain_engine(2);
    let before = engine.state_hash();
    let act = Arc::new(Scripted::default());
    let mut runner = Runner::new(
        engine,
        &Actuators::new(), // pretend mode needs no actuator
        Arc::new(VirtualClock::new(Time(0))),
        RunnerConfig {
            pretend: true,
            ..RunnerConfig::default()
        },
    )
    .unwrap();
    let step = runner.step().unwrap();
    assert_eq!(step.pretend.len(), 1);
    assert_eq!(step.pretend[0].wave_count(), 3, "nets, ports, vms");
    assert_eq!(runner.run().unwrap().reason, StopReason::Converged);
    assert_eq!(act.calls.load(Ordering::SeqCst), 0);
    assert_eq!(runner.engine().state_hash(), before);
}

#[test]
fn trace_of_a_run_replays_every_state_hash_and_names_a_divergence() {
    let engine = chain_engine(3);
    let clock = Arc::new(VirtualClock::new(Time(0)));
    let act = Arc::new(Scripted {
        fail: ["port2-1".into()].into(),
        ..Default::default()
    });
    let mut runner = Runner::new(
        engine,
        &all(act),
        clock.clone(),
        RunnerConfig {
            exec: ExecConfig::new().threads(2).timing(true),
            steps_max: Some(4),
            ..RunnerConfig::default()
        },
    )
    .unwrap();
    runner.record(trace::Recorder::memory()).unwrap();
    runner
        .sender()
        .send(ChangeSet::new().upsert("net0", "Net", [("v", 2i64)]))
        .unwrap();
    runner
        .sender()
        .send(ChangeSet::new().upsert("net9", "Nope", [("v", 2i64)]))
        .unwrap();
    runner.run().unwrap();
    let text = runner.take_recorder().unwrap().into_text();
    let events = trace::parse(text.as_bytes()).unwrap();
    assert!(matches!(events[0], trace::Event::Header { .. }));
    let gantt = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                trace::Event::DidActuate {
                    state: trace::Settled::Ran,
                    ..
                }
            )
        })
        .count();
    assert!(gantt >= 12, "one record per actuation");
    let replayed = trace::replay(&events, |_| {}).unwrap();
    assert_eq!(replayed.state_hash, runner.engine().state_hash());
    assert!(replayed.hashes_checked >= 4);

    // Tamper with one recorded outcome: replay names the step where it diverges.
    let mut tampered = events.clone();
    let i = tampered
        .iter()
        .position(|e| {
            matches!(
                e,
                trace::Event::DidComplete {
                    outcome: Outcome::Failed { .. },
                    ..
                }
            )
        })
        .unwrap();
    let step = tampered[i].step().unwrap();
    if let trace::Event::DidComplete { outcome, .. } = &mut tampered[i] {
        *outcome = Outcome::ok();
    }
    match trace::replay(&tampered, |_| {}) {
        Err(trace::ReplayError::Diverged { step: s, line, .. }) => {
            assert_eq!(s, step);
            assert_eq!(line, i + 1);
        }
        other => panic!("expected a divergence, got {other:?}"),
    }
}

#[test]
fn sim_trace_replays_every_intermediate_state_hash() {
    let mut config = syncore::sim::SimConfig::from_seed(5);
    config.steps = 150;
    let mut sim = syncore::sim::Sim::new(config).unwrap();
    sim.record(trace::Recorder::memory()).unwrap();
    sim.run().unwrap();
    let final_hash = sim.engine().state_hash();
    let text = sim.take_recorder().unwrap().into_text();
    let events = trace::parse(text.as_bytes()).unwrap();
    let replayed = trace::replay(&events, |_| {}).unwrap();
    assert_eq!(replayed.state_hash, final_hash);
    assert!(replayed.hashes_checked > 150);
}

#[test]
fn executor_runs_generated_graphs_like_a_sequential_reference() {
    // Every object of a generated graph syncs exactly once, dependencies first.
    for seed in 0..20 {
        let mut r = SplitMix64::new(seed);
        let schema = Schema::new(gen::schema_def(&mut r, &gen::SchemaShape::default())).unwrap();
        let mut stream = gen::ChangeStream::new(&schema, seed, 60);
        let mut engine = Engine::new(schema.clone(), Config::default());
        engine.apply(stream.populate(60)).unwrap();
        let act = Arc::new(Scripted::default());
        let mut acts = Actuators::new();
        for m in schema.models() {
            acts.insert(m.name.clone(), act.clone());
        }
        let exec = Executor::new(&schema, &acts, ExecConfig::new().threads(3)).unwrap();
        let mut rounds = 0;
        while !engine.plan(Time(0)).tasks.is_empty() {
            let plan = engine.plan(Time(0));
            let report = exec.run(&engine, &plan);
            assert!(report
                .states
                .iter()
                .all(|s| matches!(s, TaskState::Ran { .. })));
            engine.complete_run(&plan, &report, Time(0)).unwrap();
            rounds += 1;
            assert!(rounds < 10);
        }
        assert_eq!(act.calls.load(Ordering::SeqCst), engine.len());
    }
}

/// Habit 2 of docs/style.md: no ambient time or randomness in the engine. Only `clock.rs` (the
/// real clock) may read `std::time`; nothing draws from a thread-local generator.
#[test]
fn only_the_real_clock_reads_time() {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("engine/src"),
        &mut files,
    );
    assert!(files.len() > 10);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        // The real-time drivers read the wall clock by design (clock.rs, the tokio runtime),
        // and a test module may bound a wait with it; the pure core never does.
        let clock = f.ends_with("clock.rs")
            || f.ends_with("tests.rs")
            || f.components().any(|c| c.as_os_str() == "runtime");
        for banned in ["Instant::now", "SystemTime", "thread_rng"] {
            if banned != "thread_rng" && clock {
                continue;
            }
            assert!(!text.contains(banned), "{} uses {banned}", f.display());
        }
    }
}
