//! Unit tests of the scheduling state machine, one per rule it implements.

use super::*;
use crate::{Config, Schema, Status, TaskKind};

const SCHEMA: &str = r#"{"models": [
  {"name": "Site", "fields": [{"name": "name", "type": "string"}],
   "feedback": [{"name": "dir", "type": "string"}]},
  {"name": "Slice", "fields": [{"name": "site", "type": "ref"}, {"name": "n", "type": "int"}],
   "feedback": [{"name": "seen", "type": "string"}],
   "links": [{"field": "site", "target": "Site", "into": ["dir"]}]},
  {"name": "Instance", "fields": [{"name": "slice", "type": "ref"}],
   "links": [{"field": "slice", "target": "Slice"}]}]}"#;

fn sched(config: SchedConfig) -> Scheduler {
    let mut c = Config::default();
    c.backoff.jitter_permille = 0;
    Scheduler::new(Engine::new(Schema::from_json(SCHEMA).unwrap(), c), config).unwrap()
}

fn t(ms: u64) -> Time {
    Time(ms)
}

fn site(key: &str, name: &str) -> ChangeSet {
    ChangeSet::new().upsert(key, "Site", [("name", name)])
}

fn world() -> ChangeSet {
    ChangeSet::new()
        .upsert("s", "Site", [("name", "a")])
        .upsert("sl", "Slice", [("site", "s")])
        .upsert("i", "Instance", [("slice", "sl")])
}

fn step(s: &mut Scheduler, input: Input) -> Vec<Dispatch> {
    let mut out = Vec::new();
    s.step(input, &mut out);
    out
}

fn keys(s: &Scheduler, d: &[Dispatch]) -> Vec<String> {
    d.iter()
        .map(|d| s.engine().key(d.task.object).to_string())
        .collect()
}

fn ok(s: &mut Scheduler, d: &Dispatch, now: u64) -> Vec<Dispatch> {
    step(
        s,
        Input::Deliver {
            lease: d.lease,
            outcome: Outcome::ok(),
            now: t(now),
        },
    )
}

#[test]
fn r1_completion_releases_dependents_at_its_own_time() {
    let mut s = sched(SchedConfig::default());
    let d = step(
        &mut s,
        Input::Apply {
            changes: world(),
            now: t(0),
        },
    );
    assert_eq!(keys(&s, &d), ["s"]);
    let d2 = ok(&mut s, &d[0], 7);
    assert_eq!(keys(&s, &d2), ["sl"]);
    assert_eq!(d2[0].now, t(7));
    assert_eq!(d2[0].eligible_at, t(7));
    let d3 = ok(&mut s, &d2[0], 9);
    assert_eq!(keys(&s, &d3), ["i"]);
    ok(&mut s, &d3[0], 10);
    assert_eq!(s.engine().unsettled_count(), 0);
    // One plan for the whole run: completions walked only their dependents.
    assert_eq!(s.stats().replans, 1);
    assert_eq!(s.stats().release_edges, 2);
}

#[test]
fn r15_completion_costs_its_dependents_not_the_plan() {
    let mut s = sched(SchedConfig::default().concurrency(u32::MAX));
    let mut cs = ChangeSet::new();
    for i in 0..100 {
        cs = cs.upsert(format!("s{i:03}"), "Site", [("name", "x")]);
        for j in 0..10 {
            cs = cs.upsert(
                format!("s{i:03}-{j}"),
                "Slice",
                [("site", format!("s{i:03}"))],
            );
        }
    }
    let sites = step(
        &mut s,
        Input::Apply {
            changes: cs,
            now: t(0),
        },
    );
    assert_eq!(sites.len(), 100);
    let before = *s.stats();
    let released = ok(&mut s, &sites[0], 1);
    assert_eq!(released.len(), 10);
    assert_eq!(s.stats().release_edges - before.release_edges, 10);
    assert_eq!(s.stats().replans, before.replans, "no plan per completion");
}

#[test]
fn r1_a_completion_whose_prerequisites_changed_while_it_ran_releases_nobody_early() {
    // s <- sl <- i. sl runs; meanwhile s gets a new version. When sl completes, i must
    // wait for s's new version (it waits through the settled sl, R1), not start at once.
    let mut s = sched(SchedConfig::default());
    let d = step(
        &mut s,
        Input::Apply {
            changes: world(),
            now: t(0),
        },
    );
    let sl = ok(&mut s, &d[0], 1);
    assert_eq!(keys(&s, &sl), ["sl"]);
    let s2 = step(
        &mut s,
        Input::Apply {
            changes: site("s", "b"),
            now: t(2),
        },
    );
    assert_eq!(
        keys(&s, &s2),
        ["s"],
        "the renamed site starts while sl runs"
    );
    let replans = s.stats().replans;
    let after_sl = ok(&mut s, &sl[0], 3);
    assert!(
        after_sl.is_empty(),
        "i must not start before s's new version"
    );
    assert_eq!(s.activity("i"), Some(Activity::Waiting));
    assert!(
        s.stats().replans > replans,
        "the plan no longer counted on sl"
    );
    let after_s = ok(&mut s, &s2[0], 4);
    assert_eq!(keys(&s, &after_s), ["i"]);
    assert_eq!(after_s[0].eligible_at, t(4));
    ok(&mut s, &after_s[0], 5);
    assert_eq!(s.engine().unsettled_count(), 0);
}

#[test]
fn r3_failure_releases_nobody_and_retries_at_failure_time_plus_delay() {
    let mut s = sched(SchedConfig::default());
    let d = step(
        &mut s,
        Input::Apply {
            changes: world(),
            now: t(0),
        },
    );
    let out = step(
        &mut s,
        Input::Deliver {
            lease: d[0].lease,
            outcome: Outcome::failed("down"),
            now: t(300),
        },
    );
    assert!(out.is_empty());
    let base = s.engine().config().backoff.base_ms;
    assert_eq!(s.next_wake(), Some(t(300 + base)));
    assert!(step(
        &mut s,
        Input::Tick {
            now: t(300 + base - 1)
        }
    )
    .is_empty());
    let retry = step(&mut s, Input::Tick { now: t(300 + base) });
    assert_eq!(keys(&s, &retry), ["s"]);
    assert_eq!(retry[0].attempt, 2);
}

#[test]
fn r9_refused_outcome_releases_no_dependent() {
    let mut s = sched(SchedConfig::default());
    let d = step(
        &mut s,
        Input::Apply {
            changes: world(),
            now: t(0),
        },
    );
    // A declarative write: the engine refuses it and records an error (R9).
    let out = step(
        &mut s,
        Input::Deliver {
            lease: d[0].lease,
            outcome: Outcome::ok_with([("name", "z")]),
            now: t(1),
        },
    );
    assert!(
        out.is_empty(),
        "the slice must not start behind a refused outcome"
    );
    assert!(matches!(
        s.engine().status("s", t(1)),
        Some(Status::Error { .. })
    ));
}

#[test]
fn r8_one_lease_per_object_and_stale_completion_never_syncs_newer_version() {
    let mut s = sched(SchedConfig::default());
    let d = step(
        &mut s,
        Input::Apply {
            changes: site("s", "a"),
            now: t(0),
        },
    );
    let v1 = d[0].task.version;
    // A new version while v1 is in flight: no second lease.
    let out = step(
        &mut s,
        Input::Apply {
            changes: site("s", "b"),
            now: t(1),
        },
    );
    assert!(out.is_empty());
    assert_eq!(s.leases().count(), 1);
    assert!(matches!(s.activity("s"), Some(Activity::InFlight { version, .. }) if version == v1));
    // v1 completes: stale, the newer version is dispatched right away.
    let out = ok(&mut s, &d[0], 2);
    assert_eq!(keys(&s, &out), ["s"]);
    assert!(out[0].task.version > v1);
    assert_eq!(s.engine().status("s", t(2)), Some(Status::Pending));
    ok(&mut s, &out[0], 3);
    assert_eq!(s.engine().status("s", t(3)), Some(Status::Synced));
}

#[test]
fn r7_delete_waits_for_the_sync_in_flight() {
    let mut s = sched(SchedConfig::default());
    let d = step(
        &mut s,
        Input::Apply {
            changes: site("s", "a"),
            now: t(0),
        },
    );
    let out = step(
        &mut s,
        Input::Apply {
            changes: ChangeSet::new().delete("s"),
            now: t(1),
        },
    );
    assert!(out.is_empty(), "the delete waits for the running sync");
    let out = ok(&mut s, &d[0], 2);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].task.kind, TaskKind::Delete);
    ok(&mut s, &out[0], 3);
    assert!(s.engine().is_empty());
}

#[test]
fn global_and_model_limits_cap_leases() {
    let mut cs = ChangeSet::new();
    for i in 0..5 {
        cs = cs.upsert(format!("s{i}"), "Site", [("name", "x")]);
    }
    // Positive control: without limits all five start.
    let mut s = sched(SchedConfig::default());
    assert_eq!(
        step(
            &mut s,
            Input::Apply {
                changes: cs.clone(),
                now: t(0)
            }
        )
        .len(),
        5
    );
    let mut s = sched(SchedConfig::default().concurrency(2));
    let d = step(
        &mut s,
        Input::Apply {
            changes: cs.clone(),
            now: t(0),
        },
    );
    assert_eq!(d.len(), 2);
    assert_eq!(s.queue_depth(), 3);
    assert_eq!(ok(&mut s, &d[0], 1).len(), 1);
    let mut s = sched(SchedConfig::default().model(
        "Site",
        ModelSched {
            limit: Some(1),
            ..Default::default()
        },
    ));
    let d = step(
        &mut s,
        Input::Apply {
            changes: cs,
            now: t(0),
        },
    );
    assert_eq!(d.len(), 1);
    assert_eq!(ok(&mut s, &d[0], 1).len(), 1);
}

#[test]
fn priority_classes_then_eligible_time_then_id() {
    let mut config = SchedConfig::default().concurrency(1);
    config.object_priority.insert("s3".into(), 5);
    let mut s = sched(config);
    let mut cs = ChangeSet::new();
    for i in 0..4 {
        cs = cs.upsert(format!("s{i}"), "Site", [("name", "x")]);
    }
    let mut order = Vec::new();
    let mut d = step(
        &mut s,
        Input::Apply {
            changes: cs,
            now: t(0),
        },
    );
    let mut now = 0;
    while let Some(x) = d.pop() {
        order.push(s.engine().key(x.task.object).to_string());
        now += 1;
        d = ok(&mut s, &x, now);
    }
    assert_eq!(order, ["s3", "s0", "s1", "s2"]);
}

#[test]
fn timeout_turns_overdue_actuation_into_failure() {
    let mut s = sched(SchedConfig::default().model(
        "Site",
        ModelSched {
            timeout_ms: Some(50),
            ..Default::default()
        },
    ));
    let d = step(
        &mut s,
        Input::Apply {
            changes: site("s", "a"),
            now: t(0),
        },
    );
    assert_eq!(d[0].deadline, Some(t(50)));
    assert_eq!(s.next_wake(), Some(t(50)));
    step(&mut s, Input::Tick { now: t(50) });
    assert!(s.leases().next().is_none());
    match s.engine().status("s", t(50)) {
        Some(Status::Error { message, .. }) => assert_eq!(message, "timed out after 50 ms"),
        other => panic!("{other:?}"),
    }
    // The real outcome arriving later is ignored.
    let late = s.deliver(d[0].lease, Outcome::ok(), t(60));
    assert_eq!(late, Delivery::Late);
}

#[test]
fn r9_resync_ms_reactuates_synced_objects_at_their_time() {
    let mut config = SchedConfig::default().model(
        "Site",
        ModelSched {
            resync_ms: Some(1000),
            ..Default::default()
        },
    );
    config.resync_jitter_permille = 0;
    let mut s = sched(config);
    let d = step(
        &mut s,
        Input::Apply {
            changes: site("s", "a"),
            now: t(0),
        },
    );
    ok(&mut s, &d[0], 10);
    assert_eq!(s.next_wake(), Some(t(1010)));
    assert!(step(&mut s, Input::Tick { now: t(1009) }).is_empty());
    let again = step(&mut s, Input::Tick { now: t(1010) });
    assert_eq!(keys(&s, &again), ["s"]);
    assert_eq!(
        again[0].task.version, d[0].task.version,
        "no new version (R8)"
    );
    ok(&mut s, &again[0], 1020);
    assert_eq!(s.next_wake(), Some(t(2020)));
    assert_eq!(s.stats().resyncs, 1);
}

#[test]
fn r9_requeue_after_reruns_after_its_delay() {
    let mut s = sched(SchedConfig::default());
    let d = step(
        &mut s,
        Input::Apply {
            changes: site("s", "a"),
            now: t(0),
        },
    );
    step(
        &mut s,
        Input::Deliver {
            lease: d[0].lease,
            outcome: Outcome::ok().requeue_after(40),
            now: t(5),
        },
    );
    assert_eq!(s.engine().status("s", t(5)), Some(Status::Synced));
    let d = step(&mut s, Input::Tick { now: t(45) });
    assert_eq!(keys(&s, &d), ["s"]);
}

#[test]
fn r18_watched_feedback_change_reactuates_the_watcher() {
    let mut s = sched(SchedConfig::default());
    let d = step(
        &mut s,
        Input::Apply {
            changes: world(),
            now: t(0),
        },
    );
    let d = step(
        &mut s,
        Input::Deliver {
            lease: d[0].lease,
            outcome: Outcome::ok_with([("dir", "/a")]),
            now: t(1),
        },
    );
    let d = ok(&mut s, &d[0], 2);
    ok(&mut s, &d[0], 3);
    assert_eq!(s.engine().unsettled_count(), 0);
    // The site is renamed: its directory (feedback) moves; the slice watches `dir`.
    let d = step(
        &mut s,
        Input::Apply {
            changes: site("s", "b"),
            now: t(4),
        },
    );
    assert_eq!(keys(&s, &d), ["s"]);
    let d = step(
        &mut s,
        Input::Deliver {
            lease: d[0].lease,
            outcome: Outcome::ok_with([("dir", "/b")]),
            now: t(5),
        },
    );
    assert_eq!(
        keys(&s, &d),
        ["sl"],
        "the watcher re-runs with the new feedback"
    );
    assert_eq!(s.stats().watch_resyncs, 1);
    // The same feedback again triggers nothing.
    ok(&mut s, &d[0], 6);
    assert_eq!(s.engine().unsettled_count(), 0);
}

#[test]
fn r14_snapshot_carries_leases_and_restore_redispatches() {
    let mut s = sched(SchedConfig::default());
    let d = step(
        &mut s,
        Input::Apply {
            changes: world(),
            now: t(0),
        },
    );
    let bytes = s.snapshot();
    // Leases do not survive a restart: they are listed, and their tasks dispatched again.
    let mut r = Scheduler::restore(&bytes).unwrap();
    assert_eq!(r.restored_leases().len(), 1);
    assert_eq!(r.restored_leases()[0].task, d[0].task);
    let again = step(&mut r, Input::Tick { now: t(1) });
    assert_eq!(again[0].task, d[0].task);
    assert_ne!(again[0].lease, d[0].lease);
    // Without leases in flight a snapshot round-trips byte for byte.
    let mut q = sched(SchedConfig::default());
    let d = step(
        &mut q,
        Input::Apply {
            changes: world(),
            now: t(0),
        },
    );
    ok(&mut q, &d[0], 1);
    let q = Scheduler::restore(&q.snapshot()).unwrap();
    let idle = q.snapshot();
    assert_eq!(Scheduler::restore(&idle).unwrap().snapshot(), idle);
    for bad in [
        &bytes[..5],
        &bytes[..bytes.len() - 1],
        b"SYNCSCHDxxxxxxxxxxxxxxxx".as_slice(),
    ] {
        assert!(Scheduler::restore(bad).is_err());
    }
}

#[test]
fn r12_recorded_inputs_replay_to_identical_state_hashes() {
    let mut s = sched(SchedConfig::default());
    let mut inputs = Vec::new();
    let mut hashes = Vec::new();
    let mut record = |s: &mut Scheduler, i: Input| {
        let bytes = i.to_bytes();
        assert_eq!(Input::from_bytes(&bytes).unwrap(), i);
        inputs.push(i.clone());
        let d = step(s, i);
        hashes.push(s.state_hash());
        d
    };
    let d = record(
        &mut s,
        Input::Apply {
            changes: world(),
            now: t(0),
        },
    );
    let d = record(
        &mut s,
        Input::Deliver {
            lease: d[0].lease,
            outcome: Outcome::failed("x"),
            now: t(3),
        },
    );
    assert!(d.is_empty());
    let d = record(&mut s, Input::Tick { now: t(10_000) });
    record(
        &mut s,
        Input::Deliver {
            lease: d[0].lease,
            outcome: Outcome::ok(),
            now: t(10_001),
        },
    );
    let mut r = sched(SchedConfig::default());
    assert_eq!(r.replay(inputs), hashes);
    assert!(Input::from_bytes(&[9, 1, 2]).is_err());
    assert!(Input::from_bytes(&[]).is_err());
}

#[test]
fn config_naming_unknown_model_is_refused() {
    let e = Scheduler::new(
        Engine::new(Schema::from_json(SCHEMA).unwrap(), Config::default()),
        SchedConfig::default().model("Nope", ModelSched::default()),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "scheduler configuration names unknown model Nope"
    );
}

#[test]
fn r14_resume_keeps_leases_and_a_checkpointed_log_replays_to_the_same_hashes() {
    let mut live = sched(SchedConfig::default());
    let d = step(
        &mut live,
        Input::Apply {
            changes: world(),
            now: t(0),
        },
    );
    // Mid-run, with the site's lease in flight: checkpoint, then go on.
    let bytes = live.checkpoint();
    let resumed = Scheduler::resume(&bytes).unwrap();
    assert!(resumed.restored_leases().is_empty());
    assert_eq!(
        resumed.leases().copied().collect::<Vec<_>>(),
        vec![*live.leases().next().unwrap()]
    );
    let tail = vec![
        Input::Deliver {
            lease: d[0].lease,
            outcome: Outcome::ok(),
            now: t(5),
        },
        Input::Apply {
            changes: site("s2", "b"),
            now: t(6),
        },
        Input::Tick { now: t(7) },
    ];
    let mut want = Vec::new();
    for i in tail.clone() {
        let mut out = Vec::new();
        live.step(i, &mut out);
        want.push(live.state_hash());
    }
    // The delivery named the lease taken before the checkpoint: it applied (not late).
    assert_eq!(live.stats().late, 0);
    let mut replayed = Scheduler::resume(&bytes).unwrap();
    assert_eq!(replayed.replay(tail), want);
}

#[test]
fn a_refused_change_set_changes_nothing_not_even_the_clock() {
    let mut s = sched(SchedConfig::default());
    step(
        &mut s,
        Input::Apply {
            changes: site("s", "a"),
            now: t(3),
        },
    );
    let before = s.state_hash();
    let mut out = Vec::new();
    let bad = ChangeSet::new().upsert("x", "NoSuchModel", [("name", "a")]);
    let e = s.step(
        Input::Apply {
            changes: bad,
            now: t(50),
        },
        &mut out,
    );
    assert!(matches!(e, Effect::Refused(_)), "{e:?}");
    assert!(out.is_empty());
    assert_eq!(s.state_hash(), before);
}

#[test]
fn migrate_moves_onto_a_new_config_and_redispatches_leases() {
    let mut s = sched(SchedConfig::default());
    let d = step(
        &mut s,
        Input::Apply {
            changes: world(),
            now: t(0),
        },
    );
    s.shutdown(t(1));
    let schema = s.engine().schema().clone();
    let settings = s.engine().config().clone();
    let cfg = SchedConfig::default().model(
        "Site",
        ModelSched {
            limit: Some(1),
            ..ModelSched::default()
        },
    );
    let mut m = s.migrate(schema, settings, cfg.clone()).unwrap();
    assert_eq!(m.config(), &cfg);
    assert!(!m.draining());
    assert_eq!(m.restored_leases().len(), 1);
    let again = step(&mut m, Input::Tick { now: t(2) });
    assert_eq!(again[0].task, d[0].task);
    assert!(
        again[0].lease.seq > d[0].lease.seq,
        "lease ids never repeat"
    );
    // A configuration naming an unknown model is refused.
    let s = sched(SchedConfig::default());
    let (schema, settings) = (s.engine().schema().clone(), s.engine().config().clone());
    let bad = SchedConfig::default().model("Nope", ModelSched::default());
    assert!(matches!(
        s.migrate(schema, settings, bad),
        Err(SchedMigrateError::Config(_))
    ));
}

#[test]
fn r14_a_draining_snapshot_restores_dispatching_but_resumes_draining() {
    let mut s = sched(SchedConfig::default());
    step(&mut s, Input::Shutdown { now: t(0) });
    let d = step(
        &mut s,
        Input::Apply {
            changes: world(),
            now: t(1),
        },
    );
    assert!(d.is_empty(), "no dispatch once shutdown began");
    let bytes = s.snapshot();
    // A restart dispatches again...
    let mut restarted = Scheduler::restore(&bytes).unwrap();
    assert!(!restarted.draining());
    let d = step(&mut restarted, Input::Tick { now: t(2) });
    assert_eq!(keys(&restarted, &d), ["s"]);
    // ... a continuation (log replay) is exactly the state snapshotted.
    let mut resumed = Scheduler::resume(&bytes).unwrap();
    assert!(resumed.draining());
    assert_eq!(resumed.state_hash(), s.state_hash());
    assert!(step(&mut resumed, Input::Tick { now: t(2) }).is_empty());
}

#[test]
fn r15_a_change_set_of_new_objects_joins_the_running_plan_without_a_new_plan() {
    let mut s = sched(SchedConfig::default().concurrency(u32::MAX));
    let d = step(
        &mut s,
        Input::Apply {
            changes: world(),
            now: t(0),
        },
    );
    assert_eq!(keys(&s, &d), ["s"]);
    let replans = s.stats().replans;
    // A new independent object starts at once, while s runs.
    let s2 = step(
        &mut s,
        Input::Apply {
            changes: site("s2", "b"),
            now: t(1),
        },
    );
    assert_eq!(keys(&s, &s2), ["s2"]);
    assert_eq!(s2[0].eligible_at, t(1));
    // A new slice of the running s waits for it, beside sl (R1), without a new plan.
    let none = step(
        &mut s,
        Input::Apply {
            changes: ChangeSet::new().upsert("sl2", "Slice", [("site", "s")]),
            now: t(2),
        },
    );
    assert!(none.is_empty());
    assert_eq!(s.activity("sl2"), Some(Activity::Waiting));
    // One that references only settled or absent-of-work objects: s2 is running, so it
    // waits too; a slice of a site that is settled starts at once.
    let after_s2 = ok(&mut s, &s2[0], 3);
    assert!(after_s2.is_empty());
    let sl3 = step(
        &mut s,
        Input::Apply {
            changes: ChangeSet::new().upsert("sl3", "Slice", [("site", "s2")]),
            now: t(4),
        },
    );
    assert_eq!(keys(&s, &sl3), ["sl3"]);
    assert_eq!(
        s.stats().replans,
        replans,
        "each change set joined the plan"
    );
    // s completes: both its slices go, at its completion's time.
    let slices = ok(&mut s, &d[0], 5);
    assert_eq!(keys(&s, &slices), ["sl", "sl2"]);
    assert!(slices.iter().all(|x| x.eligible_at == t(5)));
    let mut next = Vec::new();
    for x in slices.iter().chain(&sl3) {
        next.extend(ok(&mut s, x, 6));
    }
    assert_eq!(keys(&s, &next), ["i"]);
    ok(&mut s, &next[0], 7);
    assert_eq!(s.engine().unsettled_count(), 0);
    assert_eq!(s.stats().replans, replans);
}

#[test]
fn r3_an_object_folded_behind_a_failing_prerequisite_is_held_by_the_next_plan() {
    let mut s = sched(SchedConfig::default());
    let d = step(
        &mut s,
        Input::Apply {
            changes: site("s", "a"),
            now: t(0),
        },
    );
    let replans = s.stats().replans;
    step(
        &mut s,
        Input::Apply {
            changes: ChangeSet::new().upsert("sl", "Slice", [("site", "s")]),
            now: t(1),
        },
    );
    assert_eq!(s.stats().replans, replans);
    let out = step(
        &mut s,
        Input::Deliver {
            lease: d[0].lease,
            outcome: Outcome::failed("down"),
            now: t(10),
        },
    );
    assert!(out.is_empty(), "a failure releases nobody (R3)");
    let base = s.engine().config().backoff.base_ms;
    let plan = s.engine().plan(t(11));
    let sl = s.engine().id("sl").unwrap();
    let by = s.engine().id("s").unwrap();
    assert_eq!(plan.hold(sl), Some(&crate::HoldReason::Blocked { by }));
    let retry = step(&mut s, Input::Tick { now: t(10 + base) });
    assert_eq!(keys(&s, &retry), ["s"]);
    let after = ok(&mut s, &retry[0], 10 + base + 1);
    assert_eq!(keys(&s, &after), ["sl"]);
}

#[test]
fn r1_what_a_fold_cannot_express_plans_again() {
    let mut s = sched(SchedConfig::default().concurrency(u32::MAX));
    let d = step(
        &mut s,
        Input::Apply {
            changes: world(),
            now: t(0),
        },
    );
    let replans = s.stats().replans;
    // sl is in the plan (waiting for s): its new version is planned again.
    step(
        &mut s,
        Input::Apply {
            changes: ChangeSet::new().upsert(
                "sl",
                "Slice",
                [
                    ("site", crate::Value::from("s")),
                    ("n", crate::Value::Int(2)),
                ],
            ),
            now: t(1),
        },
    );
    assert_eq!(s.stats().replans, replans + 1);
    let sl = ok(&mut s, &d[0], 2);
    assert_eq!(keys(&s, &sl), ["sl"]);
    assert_eq!(sl[0].task.version, s.engine().object("sl").unwrap().version);
    // A new instance of the running sl joins the plan beside i.
    step(
        &mut s,
        Input::Apply {
            changes: ChangeSet::new().upsert("i9", "Instance", [("slice", "sl")]),
            now: t(3),
        },
    );
    assert_eq!(s.stats().replans, replans + 1);
    let is = ok(&mut s, &sl[0], 4);
    assert_eq!(keys(&s, &is), ["i", "i9"]);
    for x in &is {
        ok(&mut s, x, 5);
    }
    assert_eq!(s.engine().unsettled_count(), 0);
    // Two objects of one change set where one waits for the other: a plan orders them.
    let both = step(
        &mut s,
        Input::Apply {
            changes: site("s", "c").upsert(
                "sl",
                "Slice",
                [
                    ("site", crate::Value::from("s")),
                    ("n", crate::Value::Int(3)),
                ],
            ),
            now: t(6),
        },
    );
    assert_eq!(s.stats().replans, replans + 2);
    assert_eq!(keys(&s, &both), ["s"], "sl waits for s");
    let after = ok(&mut s, &both[0], 7);
    assert_eq!(keys(&s, &after), ["sl"]);
}

#[test]
fn r15_a_change_set_applied_behind_a_backlog_costs_its_objects_not_the_backlog() {
    // 1,000 sites queued behind a limit of one; each later change set adds one site.
    let mut s = sched(SchedConfig::default().concurrency(1));
    let mut cs = ChangeSet::new();
    for i in 0..1000 {
        cs = cs.upsert(format!("s{i:04}"), "Site", [("name", "x")]);
    }
    let first = step(
        &mut s,
        Input::Apply {
            changes: cs,
            now: t(0),
        },
    );
    assert_eq!(first.len(), 1);
    let before = *s.stats();
    for i in 0..100 {
        step(
            &mut s,
            Input::Apply {
                changes: site(&format!("n{i:03}"), "y"),
                now: t(1 + i),
            },
        );
    }
    assert_eq!(s.stats().replans, before.replans, "no plan per change set");
    assert_eq!(s.stats().plan_objects, before.plan_objects);
    assert_eq!(s.queue_depth(), 999 + 100);
    // The backlog keeps its order: the earliest eligible go first.
    let next = ok(&mut s, &first[0], 200);
    assert_eq!(keys(&s, &next), ["s0001"]);
}

/// A lease taken before a checkpoint is delivered after the plan that follows it, in which
/// its task has another index: the delivery finds the task of the current plan (the lease's
/// own plan task is of a dropped plan), releases nobody it should not, and the run settles.
#[test]
fn a_lease_from_before_a_checkpoint_is_matched_to_the_new_plan() {
    let mut s = sched(SchedConfig::default());
    let d = step(
        &mut s,
        Input::Apply {
            changes: site("a", "a").upsert("b", "Site", [("name", "b")]),
            now: t(0),
        },
    );
    assert_eq!(keys(&s, &d), ["a", "b"]);
    ok(&mut s, &d[0], 1);
    s.checkpoint();
    // The next plan holds b (in flight) and c: b is its task 0, where it was task 1.
    let c = step(
        &mut s,
        Input::Apply {
            changes: ChangeSet::new()
                .upsert("c", "Site", [("name", "c")])
                .upsert("d", "Slice", [("site", "b")]),
            now: t(2),
        },
    );
    assert_eq!(keys(&s, &c), ["c"]);
    assert_eq!(s.stats().replans, 2);
    // b's delivery releases its dependent d in the new plan.
    let released = ok(&mut s, &d[1], 3);
    assert_eq!(keys(&s, &released), ["d"]);
    ok(&mut s, &c[0], 4);
    ok(&mut s, &released[0], 5);
    assert_eq!(s.engine().unsettled_count(), 0);
}

mod lease_plan_tasks {
    //! A delivery finds its task through the plan task its lease remembers while that plan
    //! stands; a debug assertion compares it with the lookup by object id on every
    //! delivery. Any sequence of change sets, deliveries, checkpoints and ticks keeps the
    //! two in agreement, and the lease table in agreement with the scheduler's counters.
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        /// Upsert a site (and a slice on it) with a new name.
        Apply {
            site: u8,
            slice: bool,
        },
        /// Deliver the nth lease in flight: Ok, or a failure.
        Deliver {
            nth: u8,
            ok: bool,
        },
        Checkpoint,
        /// Let time pass (backoff expiries re-plan).
        Tick {
            ms: u16,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6, any::<bool>()).prop_map(|(site, slice)| Op::Apply { site, slice }),
            (any::<u8>(), prop::bool::weighted(0.8)).prop_map(|(nth, ok)| Op::Deliver { nth, ok }),
            Just(Op::Checkpoint),
            (1u16..3000).prop_map(|ms| Op::Tick { ms }),
        ]
    }

    proptest! {
        #[test]
        fn deliveries_find_their_tasks(ops in prop::collection::vec(op(), 1..80)) {
            let mut s = sched(SchedConfig::default().concurrency(3));
            let mut now = 0u64;
            let mut in_flight: Vec<Dispatch> = Vec::new();
            for (k, op) in ops.into_iter().enumerate() {
                now += 1;
                let input = match op {
                    Op::Apply { site, slice } => {
                        let key = format!("s{site}");
                        let mut cs = ChangeSet::new().upsert(&key, "Site", [("name", format!("n{k}"))]);
                        if slice {
                            cs = cs.upsert(format!("sl{site}"), "Slice", [("site", key.as_str())]);
                        }
                        Input::Apply { changes: cs, now: t(now) }
                    }
                    Op::Deliver { nth, ok } => {
                        if in_flight.is_empty() {
                            continue;
                        }
                        let d = in_flight.remove(nth as usize % in_flight.len());
                        let outcome = if ok { Outcome::ok() } else { Outcome::failed("backend said no") };
                        Input::Deliver { lease: d.lease, outcome, now: t(now) }
                    }
                    Op::Checkpoint => {
                        s.checkpoint();
                        continue;
                    }
                    Op::Tick { ms } => {
                        now += u64::from(ms);
                        Input::Tick { now: t(now) }
                    }
                };
                in_flight.extend(step(&mut s, input));
                // Every dispatch handed out and not delivered is a lease, and nothing else.
                prop_assert_eq!(s.in_flight(), in_flight.len());
                let mut held: Vec<LeaseId> = s.leases().map(|l| l.id).collect();
                let mut want: Vec<LeaseId> = in_flight.iter().map(|d| d.lease).collect();
                prop_assert!(held.windows(2).all(|w| w[0].object < w[1].object), "object id order");
                held.sort();
                want.sort();
                prop_assert_eq!(held, want);
            }
        }
    }
}
