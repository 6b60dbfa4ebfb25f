//! The deterministic simulation harness, through the public API only.
//!
//! Goal: every invariant the checker knows holds for many seeds under faults, the system
//! converges once faults stop, and a simulation is reproducible (from its seed alone, and
//! by replaying its trace). Method: `syncore::sim` drives the scheduler in virtual time on
//! N lanes (`syncore::sched::Lanes`) over generated schemas, graphs and change streams,
//! with change sets arriving while actuations are in flight. `SYNCORE_SIM_SEEDS=N` runs a
//! longer sweep; `SYNCORE_SEED=S` replays one seed.

use proptest::prelude::*;
use syncore::sim::{self, strategy, Faults, Sim, SimConfig};
use syncore::{trace, Actuator, Actuators, Config, Engine, ObjectView, Outcome, Schema};

/// What R16-R18 features one seed's schema and run exercised.
#[derive(Default)]
struct Reach {
    proxies: bool,
    externals: bool,
    passives: bool,
    model_deps: bool,
    watchers_notified: u64,
    watcher_failures: u64,
    /// Deletes left waiting for live referrers at the end (the embedder's to end).
    deletes_left_waiting: usize,
    /// Referrers left blocked by the very delete that waits for them (R7's case of a
    /// referrer changed while the delete was pending).
    referrers_blocked_by_their_delete: usize,
    /// Objects left waiting for an external report or blocked by an external failure.
    left_for_the_owner: usize,
}

/// At least 200 seeds x 2,000 change-stream arrivals of fault phase, then healing, in CI:
/// every invariant (among them: never two leases on one object, no dispatch before its
/// prerequisites' accepted completions, a stale completion never marks a newer version
/// synced), convergence by the bound and liveness (every object converged or waiting for
/// the embedder; any other stall fails the seed), over schemas with proxies, external and
/// passive models, model-level dependencies and watchers. Over the sweep, change sets do
/// arrive while actuations run: in-flight updates, stale completions and deletes of
/// objects with a sync in flight all happen.
#[test]
fn sim_invariants_hold_for_many_seeds() {
    let results = sim::check_seeds_parallel(200, |seed| {
        let mut sim = Sim::new(SimConfig::from_seed(seed)).map_err(|e| e.to_string())?;
        let report = sim.run().map_err(|f| f.to_string())?;
        let engine = sim.engine();
        let models = engine.schema().models();
        let end = engine.plan(syncore::Time(report.converged_at));
        let held_as = |id: syncore::ObjectId| end.hold(id);
        let reach = Reach {
            proxies: models.iter().any(|m| m.links.iter().any(|l| l.proxy)),
            externals: models
                .iter()
                .any(|m| m.kind == syncore::ModelKind::External),
            passives: models.iter().any(|m| m.kind == syncore::ModelKind::Passive),
            model_deps: models.iter().any(|m| !m.depends_on.is_empty()),
            watchers_notified: engine.watch_stats().delivered,
            watcher_failures: engine.watch_stats().failed,
            deletes_left_waiting: end
                .holds
                .iter()
                .filter(|h| matches!(h.reason, syncore::HoldReason::WaitingReferrers { .. }))
                .count(),
            referrers_blocked_by_their_delete: end
                .holds
                .iter()
                .filter(|h| match h.reason {
                    syncore::HoldReason::Blocked { by } => matches!(
                        held_as(by),
                        Some(syncore::HoldReason::WaitingReferrers { keys }) if keys.contains(&h.object)
                    ),
                    _ => false,
                })
                .count(),
            left_for_the_owner: end
                .holds
                .iter()
                .filter(|h| {
                    matches!(
                        h.reason,
                        syncore::HoldReason::WaitingExternal { .. }
                            | syncore::HoldReason::ExternalFailed
                    )
                })
                .count(),
        };
        Ok::<_, String>((report, reach))
    });
    let (reports, reach): (Vec<_>, Vec<_>) = results.into_iter().unzip();
    if reports.len() >= 50 {
        let count = |f: &dyn Fn(&Reach) -> bool| reach.iter().filter(|r| f(r)).count();
        let n = reports.len();
        let proxies = count(&|r| r.proxies);
        let externals = count(&|r| r.externals);
        let passives = count(&|r| r.passives);
        let model_deps = count(&|r| r.model_deps);
        let watched = count(&|r| r.watchers_notified > 0);
        let watcher_failed = count(&|r| r.watcher_failures > 0);
        let waiting = count(&|r| r.deletes_left_waiting > 0);
        let blocked = count(&|r| r.referrers_blocked_by_their_delete > 0);
        let owner = count(&|r| r.left_for_the_owner > 0);
        eprintln!(
            "of {n} seeds: {proxies} with proxies, {externals} external, {passives} passive, \
             {model_deps} model-level dependencies, {watched} watched ({watcher_failed} with \
             watcher failures); at the end {waiting} left deletes waiting for live referrers \
             ({blocked} with a referrer blocked by its delete), {owner} left objects for the \
             external owner"
        );
        for (what, c) in [
            ("proxy links", proxies),
            ("external models", externals),
            ("passive models", passives),
            ("depends_on_models", model_deps),
            ("watcher notifications", watched),
            ("watcher failures", watcher_failed),
        ] {
            assert!(c * 20 >= n, "only {c} of {n} seeds have {what}");
        }
    }
    let steps: u64 = reports.iter().map(|r| r.steps).sum();
    let actuations: u64 = reports.iter().map(|r| r.actuations).sum();
    let failed: u64 = reports.iter().map(|r| r.failed).sum();
    let panics: u64 = reports.iter().map(|r| r.panics).sum();
    let stale: u64 = reports.iter().map(|r| r.stale).sum();
    let applied_in_flight: u64 = reports.iter().map(|r| r.applied_in_flight).sum();
    let deleted_in_flight: u64 = reports.iter().map(|r| r.deleted_in_flight).sum();
    assert!(reports.iter().all(|r| r.steps > 2000));
    if reports.len() >= 50 {
        assert!(
            actuations > 10 * reports.len() as u64,
            "{actuations} actuations"
        );
        assert!(
            failed > 0 && panics > 0,
            "faults were injected: {failed} failed, {panics} panics"
        );
        assert!(
            stale > 0 && applied_in_flight > 0 && deleted_in_flight > 0,
            "work arrived while actuations ran: {applied_in_flight} change sets applied in \
             flight, {deleted_in_flight} deletes of objects with a sync in flight, {stale} \
             stale completions"
        );
    }
    eprintln!(
        "{} seeds, {steps} inputs, {actuations} actuations, {failed} failed, {panics} panics, \
         {stale} stale, {applied_in_flight} change sets applied in flight, \
         {deleted_in_flight} deletes with a sync in flight",
        reports.len()
    );
}

/// R12: a virtual-time run is reproducible from its configuration alone: the same seed
/// gives the same scheduler trace, input for input, and the trace replays to every state
/// hash it recorded (on 1 and on 3 lanes).
#[test]
fn r12_a_seed_gives_the_same_run_and_its_trace_replays() {
    for (seed, lanes) in [(1u64, 1usize), (2, 3), (3, 3)] {
        let run = || {
            let mut config = SimConfig::from_seed(seed);
            config.steps = 300;
            config.lanes = lanes;
            let mut sim = Sim::new(config).unwrap();
            sim.record(trace::Recorder::memory()).unwrap();
            let report = sim.run().unwrap_or_else(|f| panic!("{f}"));
            (report, sim.take_recorder().unwrap().into_text())
        };
        let (r1, t1) = run();
        let (r2, t2) = run();
        assert_eq!(r1, r2, "seed {seed}");
        assert_eq!(t1, t2, "seed {seed}");
        let events = trace::parse(t1.as_bytes()).unwrap();
        assert!(
            events.len() as u64 > r1.steps,
            "one line per input after the header"
        );
        let replayed = trace::replay(&events, |_| {}).unwrap();
        assert_eq!(replayed.state_hash, r1.state_hash, "seed {seed}");
        assert_eq!(replayed.hashes_checked as u64, r1.steps + 1, "seed {seed}");
    }
}

/// A fake cloud: ports need their network to exist, networks can only go once their ports
/// are gone. Under faults, the engine must drive it to exactly the declared state.
mod fake_cloud {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use super::*;

    pub const SCHEMA: &str = r#"{"models": [
      {"name": "Net", "fields": [{"name": "cidr", "type": "int"}]},
      {"name": "Port", "fields": [{"name": "net", "type": "ref"}, {"name": "mac", "type": "int"}],
       "feedback": [{"name": "id", "type": "string"}],
       "links": [{"field": "net", "target": "Net"}]}]}"#;

    /// key -> (model, version synced, network of a port).
    pub type Backend = Arc<Mutex<BTreeMap<String, (String, u64, Option<String>)>>>;

    pub struct Cloud(pub Backend);

    impl Actuator for Cloud {
        fn sync(&self, o: &ObjectView<'_>) -> Outcome {
            let mut b = self.0.lock().unwrap();
            let net = match o.field("net") {
                Some(syncore::Value::Ref(n)) => Some(n.clone()),
                _ => None,
            };
            if let Some(n) = &net {
                // R1 seen from the backend: the network must exist before its port.
                if !b.contains_key(n) {
                    panic!("port {} created before its network {n}", o.key());
                }
            }
            b.insert(
                o.key().to_string(),
                (o.model().to_string(), o.version(), net),
            );
            if o.model() == "Port" {
                Outcome::ok_with([("id", format!("port-{}", o.key()))])
            } else {
                Outcome::ok()
            }
        }

        fn delete(&self, o: &ObjectView<'_>) -> Outcome {
            // A port being deleted still names its network; the network goes after it (R7).
            self.0.lock().unwrap().remove(o.key());
            Outcome::ok()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Users' actuators under faults: after healing, the fake cloud holds exactly the live
    /// objects at their declared versions, and it never saw an out-of-order call (which
    /// would have panicked and failed the object, never converging).
    #[test]
    fn users_actuators_converge_to_the_declared_state(config in strategy::sim_config(150)) {
        use std::sync::{Arc, Mutex};
        let backend: fake_cloud::Backend = Arc::new(Mutex::new(Default::default()));
        let cloud = Arc::new(fake_cloud::Cloud(backend.clone()));
        let mut acts = Actuators::new();
        acts.insert("Net", cloud.clone());
        acts.insert("Port", cloud);
        let engine = Engine::new(Schema::from_json(fake_cloud::SCHEMA).unwrap(), Config::default());
        let faults = Faults { panic_permille: 0, ..config.faults.clone() };
        let mut sim = Sim::with_engine(SimConfig { faults, ..config }, engine, &acts).unwrap();
        let report = sim.run();
        prop_assert!(report.is_ok(), "{}", report.unwrap_err());
        let report = report.unwrap();
        prop_assert_eq!(report.panics, 0, "the backend saw an out-of-order call");
        // The backend holds every object at the version the engine says it synced (the
        // declared one, unless held behind a delete that waits for live referrers, R7).
        let b = backend.lock().unwrap();
        for key in sim.engine().keys() {
            let info = sim.engine().object(key).unwrap();
            let synced = (info.enacted > 0).then_some(info.enacted);
            prop_assert_eq!(b.get(key).map(|e| e.1), synced, "{}", key);
        }
        for key in b.keys() {
            prop_assert!(sim.engine().id(key).is_some(), "{} deleted but still in the backend", key);
        }
    }
}

/// Liveness (R7): a delete waiting for a live referrer waits for the embedder, also when
/// that referrer got a new version while the delete was pending and so is `Blocked` by the
/// delete (both statuses name the other); the embedder ends it by re-pointing the referrer.
/// The check is not vacuous: holds whose chain does not end at the embedder are stalls.
#[test]
fn liveness_accepts_what_the_embedder_must_end_and_nothing_else() {
    use syncore::{ChangeSet, Status, Time};
    let schema = Schema::from_json(fake_cloud::SCHEMA).unwrap();
    let mut engine = Engine::new(schema, Config::default());
    let settle = |engine: &mut Engine| {
        while let Some(t) = engine.plan(Time(0)).tasks.first().copied() {
            engine.complete(&t, Outcome::ok(), Time(0)).unwrap();
        }
    };
    engine
        .apply(
            ChangeSet::new()
                .upsert("n", "Net", [("cidr", 1i64)])
                .upsert("n2", "Net", [("cidr", 2i64)])
                .upsert("p", "Port", [("net", "n")]),
        )
        .unwrap();
    settle(&mut engine);
    let checker = sim::Checker::new(engine.config().backoff.clone());
    engine.apply(ChangeSet::new().delete("n")).unwrap();
    let plan = engine.plan(Time(0));
    assert!(
        plan.tasks.is_empty() && plan.next_wake.is_none(),
        "{plan:?}"
    );
    checker.check_live(&engine, &plan).unwrap();

    // p gets a new version and keeps its reference: blocked by n, which waits for p.
    engine
        .apply(ChangeSet::new().upsert("p", "Port", [("mac", 7i64)]))
        .unwrap();
    let plan = engine.plan(Time(0));
    assert!(
        plan.tasks.is_empty() && plan.next_wake.is_none(),
        "{plan:?}"
    );
    assert!(
        matches!(engine.status("p", Time(0)), Some(Status::Blocked { by, .. }) if by == "n"),
        "{:?}",
        engine.status("p", Time(0))
    );
    assert_eq!(
        engine.status("n", Time(0)),
        Some(Status::WaitingReferrers {
            keys: vec!["p".into()]
        })
    );
    checker.check_live(&engine, &plan).unwrap();

    // Stalls nobody ends are refused: a block whose root is settled, a delete waiting for
    // nobody, a wait for an "external" object that is an actuated one.
    let (n, n2, p) = (
        engine.id("n").unwrap().0,
        engine.id("n2").unwrap().0,
        engine.id("p").unwrap().0,
    );
    let tamper = |holds: serde_json::Value| -> syncore::Plan {
        let mut json: serde_json::Value = serde_json::to_value(&plan).unwrap();
        json["holds"] = holds;
        serde_json::from_value(json).unwrap()
    };
    for (holds, why) in [
        (
            serde_json::json!([
                {"object": n, "reason": {"waiting_referrers": {"keys": [p]}}},
                {"object": p, "reason": {"blocked": {"by": n2}}}
            ]),
            "p is stuck after faults stopped (blocked by n2): p is blocked by n2, which is not held",
        ),
        (
            serde_json::json!([
                {"object": n, "reason": {"waiting_referrers": {"keys": []}}},
                {"object": p, "reason": {"blocked": {"by": n}}}
            ]),
            "n's delete waits for no referrer",
        ),
        (
            serde_json::json!([
                {"object": n, "reason": {"waiting_referrers": {"keys": [p]}}},
                {"object": p, "reason": {"waiting_external": {"key": p}}}
            ]),
            "p waits for its own external report, but is not an unreported external object",
        ),
    ] {
        let v = checker.check_live(&engine, &tamper(holds)).unwrap_err();
        assert_eq!(v.rule, "liveness");
        assert!(v.message.contains(why), "{v}");
    }

    // The embedder re-points p: everything converges.
    engine
        .apply(ChangeSet::new().upsert("p", "Port", [("net", "n2")]))
        .unwrap();
    settle(&mut engine);
    assert!(engine.id("n").is_none());
    assert_eq!(engine.status("p", Time(0)), Some(Status::Synced));
}

/// The checker is not vacuous: a plan that drops a hold, or a completion stamped with the
/// wrong time, is reported.
#[test]
fn checker_catches_a_tampered_plan() {
    let schema = Schema::from_json(fake_cloud::SCHEMA).unwrap();
    let mut engine = Engine::new(schema, Config::default());
    engine
        .apply(
            syncore::ChangeSet::new()
                .upsert("n", "Net", [("cidr", 1i64)])
                .upsert("p", "Port", [("net", "n")]),
        )
        .unwrap();
    let plan = engine.plan(syncore::Time(0));
    let checker = sim::Checker::new(engine.config().backoff.clone());
    assert!(checker.check_plan(&engine, &plan).is_ok());
    let net = plan.tasks[0];
    engine
        .complete(&net, Outcome::failed("down"), syncore::Time(0))
        .unwrap();
    let plan = engine.plan(syncore::Time(0));
    assert!(checker.check_plan(&engine, &plan).is_ok());
    // Drop the port's hold (R3: it must be held behind the failed network).
    let mut json: serde_json::Value = serde_json::to_value(&plan).unwrap();
    json["holds"]
        .as_array_mut()
        .unwrap()
        .retain(|h| h["object"] != serde_json::json!(engine.id("p").unwrap().0));
    let tampered: syncore::Plan = serde_json::from_value(json).unwrap();
    let v = checker.check_plan(&engine, &tampered).unwrap_err();
    assert_eq!(v.rule, "R4");
    assert!(v.message.contains('p'), "{v}");
}
