//! The invariant checker: watches every step of a simulation through the public API.
//!
//! It recomputes, independently of the planner, what every unsettled object should be
//! waiting for, and compares:
//! * **plan** (R1-R4, R7): the tasks are exactly the objects whose prerequisites can all
//!   run; every other unsettled object is held for the right reason, and a blocked one
//!   names the smallest key among the failing objects it transitively waits for;
//! * **dispatch** (R1, R5, R7, R8): when a task is dispatched, it enacts its object's
//!   current version, every prerequisite has an accepted completion (deletes: every
//!   referrer is gone), and the object is not backing off; the simulator adds that no
//!   object has two leases (S1);
//! * **completion** (R5, R6, R8): a failure counts one more consecutive failure and backs
//!   off exactly `BackoffPolicy::delay_ms` from the delivery time; a deferral waits
//!   `defer_ms`; success syncs or deletes; a completion is stale exactly when its object
//!   changed while it ran, and a stale completion never marks anything synced;
//! * **step**: nothing became synced, or left the store, without a successful completion.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::world::{Obj, World};
use crate::actuator::{Outcome, TaskKind};
use crate::backoff::BackoffPolicy;
use crate::complete::Completion;
use crate::engine::Engine;
use crate::id::{ObjectId, Time};
use crate::plan::{HoldReason, Plan, Task};
use crate::schema::{ModelKind, Schema};

/// A broken invariant: the rule and what happened, naming keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{rule}: {message}")]
pub struct Violation {
    /// The rule (`R1`..`R18`, or `convergence`, `atomicity`, `determinism`).
    pub rule: String,
    /// What happened.
    pub message: String,
}

impl Violation {
    pub(crate) fn new(rule: &str, message: impl Into<String>) -> Violation {
        Violation {
            rule: rule.to_string(),
            message: message.into(),
        }
    }
}

/// What the checker expects of one unsettled object.
#[derive(Clone, Debug, PartialEq)]
enum Expect {
    Task,
    Blocked(BTreeSet<String>),
    Own(Time),
    WaitRefs,
    WaitExt(String),
    ExtWait,
    ExtFailed,
}

/// Checks the engine's invariants around plans, actuations and completions, through the
/// public API (see the module docs of [`crate::sim`]). [`crate::sim::Sim`] drives one;
/// a hand-written loop can call the same checks.
#[derive(Debug)]
pub struct Checker {
    policy: BackoffPolicy,
}

impl Checker {
    /// A checker for an engine with `policy` as its backoff.
    pub fn new(policy: BackoffPolicy) -> Checker {
        Checker { policy }
    }

    /// Checks `plan` (made by `engine` at `plan.now`) against an independent computation
    /// of what may run and why everything else waits (R1-R4, R7).
    ///
    /// # Errors
    /// The first [`Violation`] found.
    pub fn check_plan(&self, engine: &Engine, plan: &Plan) -> Result<(), Violation> {
        let world = World::capture(engine);
        self.check_plan_in(engine, &world, plan)
    }

    pub(crate) fn check_plan_in(
        &self,
        engine: &Engine,
        world: &World,
        plan: &Plan,
    ) -> Result<(), Violation> {
        let schema = engine.schema();
        let expect = expectations(world, schema, plan.now);
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for (i, task) in plan.tasks.iter().enumerate() {
            let key = engine.key(task.object);
            if !seen.insert(key) {
                return Err(Violation::new(
                    "R2",
                    format!("{key} is two tasks of one plan"),
                ));
            }
            if plan.implied_deps(i).iter().any(|&d| d as usize >= i) {
                return Err(Violation::new(
                    "R2",
                    format!("task {key} depends on a later task"),
                ));
            }
            let o = &world.objs[key];
            let kind = if o.deleting {
                TaskKind::Delete
            } else {
                TaskKind::Sync
            };
            if task.kind != kind || task.version != o.version {
                return Err(Violation::new(
                    "R8",
                    format!(
                        "task {key} is {:?} v{}, object is {kind:?} v{}",
                        task.kind, task.version, o.version
                    ),
                ));
            }
            match expect.get(key) {
                Some(Expect::Task) => {}
                other => {
                    return Err(Violation::new(
                        "R3",
                        format!("{key} is a task, expected {other:?}"),
                    ))
                }
            }
        }
        for h in &plan.holds {
            let key = engine.key(h.object);
            if !seen.insert(key) {
                return Err(Violation::new(
                    "R4",
                    format!("{key} is both a task and held, or held twice"),
                ));
            }
            let e = expect.get(key);
            let ok = match (&h.reason, e) {
                (HoldReason::Blocked { by }, Some(Expect::Blocked(roots))) => {
                    roots.iter().next().map(String::as_str) == Some(engine.key(*by))
                }
                (HoldReason::BackingOff { until }, Some(Expect::Own(t))) => until == t,
                (HoldReason::WaitingReferrers { .. }, Some(Expect::WaitRefs)) => true,
                (HoldReason::WaitingExternal { key: k }, Some(Expect::ExtWait)) => {
                    engine.key(*k) == key
                }
                (HoldReason::WaitingExternal { key: k }, Some(Expect::WaitExt(x))) => {
                    engine.key(*k) == x
                }
                (HoldReason::ExternalFailed, Some(Expect::ExtFailed)) => true,
                _ => false,
            };
            if !ok {
                let reason = describe(engine, &h.reason);
                return Err(Violation::new(
                    "R3",
                    format!("{key} is held as {reason}, expected {e:?}"),
                ));
            }
        }
        if let Some(k) = expect.keys().find(|k| !seen.contains(k.as_str())) {
            return Err(Violation::new(
                "R4",
                format!("unsettled {k} is neither a task nor held"),
            ));
        }
        let wake = plan
            .holds
            .iter()
            .filter_map(|h| match h.reason {
                HoldReason::BackingOff { until } => Some(until),
                _ => None,
            })
            .min();
        if wake != plan.next_wake {
            return Err(Violation::new(
                "R5",
                format!(
                    "next wake {:?}, earliest backoff expiry {wake:?}",
                    plan.next_wake
                ),
            ));
        }
        Ok(())
    }

    /// Checks a dispatch of `task` (the object `key`) at `now` against the state then
    /// (`world`), independently of the planner and the scheduler:
    /// * it enacts the object's current version and kind, which is unsettled (R8);
    /// * every prerequisite has an accepted completion: no unsettled dependency, no
    ///   deleting object on the way (R1); a delete has no referrer left, live or
    ///   deleting, and no delete of a dependent model pending (R7);
    /// * the object is not backing off (R5, R6).
    pub(crate) fn check_dispatch(
        &self,
        engine: &Engine,
        world: &World,
        key: &str,
        task: &Task,
        now: Time,
    ) -> Result<(), Violation> {
        let Some(o) = world.get(key) else {
            return Err(Violation::new(
                "R8",
                format!("{key} dispatched, but it is not in the store"),
            ));
        };
        let kind = if o.deleting {
            TaskKind::Delete
        } else {
            TaskKind::Sync
        };
        if task.kind != kind || task.version != o.version || !o.unsettled() {
            return Err(Violation::new(
                "R8",
                format!(
                    "dispatched {:?} v{} of {key}, the object is {kind:?} v{} (enacted v{})",
                    task.kind, task.version, o.version, o.enacted
                ),
            ));
        }
        let (mut pre, blocking) = world.prerequisites(engine.schema(), key);
        if task.kind == TaskKind::Delete {
            for r in world.effective_referrers(key) {
                if !pre.contains(&r) {
                    pre.push(r);
                }
            }
        }
        pre.extend(blocking);
        if !pre.is_empty() {
            let (rule, what) = match task.kind {
                TaskKind::Sync => ("R1", "sync"),
                TaskKind::Delete => ("R7", "delete"),
            };
            pre.sort();
            let states: Vec<String> = pre
                .iter()
                .map(|p| format!("{p}: {:?}", world.get(p)))
                .collect();
            return Err(Violation::new(
                rule,
                format!(
                    "{what} of {key} v{} dispatched before {} completed ({key}: {o:?}; {})",
                    task.version,
                    pre.join(", "),
                    states.join("; ")
                ),
            ));
        }
        if o.backing_off(now) {
            return Err(Violation::new(
                "R5",
                format!(
                    "{key} dispatched at {now}, backing off until {:?}",
                    o.retry_at
                ),
            ));
        }
        Ok(())
    }

    /// Checks one completion against the state before it (`before`, R5, R6, R8, R9). A
    /// completion is stale exactly when the object no longer matches its task: a newer
    /// version, or a delete requested, while the actuation ran (S1).
    pub(crate) fn check_completion(
        &self,
        before: &World,
        key: &str,
        task: &Task,
        outcome: &Outcome,
        at: Time,
        completion: &Completion,
    ) -> Result<(), Violation> {
        let Some(o) = before.get(key) else {
            return Err(Violation::new(
                "R8",
                format!("completion for vanished {key}"),
            ));
        };
        let kind = if o.deleting {
            TaskKind::Delete
        } else {
            TaskKind::Sync
        };
        let current = o.version == task.version && kind == task.kind && o.unsettled();
        if !current {
            return match completion {
                Completion::Stale => Ok(()),
                c => Err(Violation::new(
                    "R8",
                    format!(
                        "the completion of {:?} {key} v{}, now {kind:?} v{}, gave {c:?}, expected stale",
                        task.kind, task.version, o.version
                    ),
                )),
            };
        }
        let expect_fail = |c: &Completion| -> Result<(), Violation> {
            let failures = o.failures.saturating_add(1);
            let retry_at = at.after(self.policy.delay_ms(failures, key));
            if *c == (Completion::Failed { failures, retry_at }) {
                Ok(())
            } else {
                Err(Violation::new(
                    "R5",
                    format!("failure of {key} at {at} (failure {failures}) gave {c:?}, expected retry at {retry_at}"),
                ))
            }
        };
        match (outcome, completion) {
            (_, Completion::Stale) => Err(Violation::new(
                "R8",
                format!(
                    "completion of {key} v{} was stale, but the object did not change while it ran",
                    task.version
                ),
            )),
            (Outcome::Ok { .. }, Completion::Synced) if task.kind == TaskKind::Sync => Ok(()),
            (Outcome::Ok { .. }, Completion::Deleted { .. }) if task.kind == TaskKind::Delete => {
                Ok(())
            }
            // R9: an Ok that writes a declarative field is a failure.
            (Outcome::Ok { .. }, c @ Completion::Failed { .. }) => expect_fail(c),
            (Outcome::Failed { .. }, c) => expect_fail(c),
            (Outcome::Deferred { .. }, c) => {
                let retry_at = at.after(self.policy.defer_ms());
                if *c == (Completion::Deferred { retry_at }) {
                    Ok(())
                } else {
                    Err(Violation::new(
                        "R6",
                        format!(
                            "deferral of {key} at {at} gave {c:?}, expected retry at {retry_at}"
                        ),
                    ))
                }
            }
            (o, c) => Err(Violation::new(
                "R8",
                format!("outcome {o:?} of {:?} {key} gave {c:?}", task.kind),
            )),
        }
    }

    /// Checks that of the objects a run touched (`before`: their state before it),
    /// none became synced, or left the store, except those in `synced` and `removed`.
    /// (Objects the run did not touch are compared with a full capture every few steps.)
    pub(crate) fn check_step(
        &self,
        before: &BTreeMap<String, Obj>,
        after: &World,
        synced: &BTreeSet<String>,
        removed: &BTreeSet<String>,
    ) -> Result<(), Violation> {
        for (k, o) in before {
            match after.get(k) {
                None if !removed.contains(k) => {
                    return Err(Violation::new(
                        "R7",
                        format!("{k} left the store without a successful delete"),
                    ))
                }
                Some(a) if a.enacted != o.enacted && !synced.contains(k) => {
                    return Err(Violation::new(
                        "R8",
                        format!(
                            "{k} marked synced at v{} without a successful sync",
                            a.enacted
                        ),
                    ))
                }
                Some(a) if a.enacted > a.version => {
                    return Err(Violation::new(
                        "R8",
                        format!(
                            "{k} enacted v{} beyond its version {}",
                            a.enacted, a.version
                        ),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl Checker {
    /// Liveness: once faults and changes have stopped and nothing runs or is due (`plan`
    /// has no task and no wake time), every object still unconverged must be waiting for
    /// something only the embedder can change. Following each hold to its end, that is:
    /// * an external object not yet reported synced at its current version, or reported
    ///   failed (R17), for it and for what waits for it or is blocked by its failure;
    /// * a delete waiting for live referrers (R7): a change set can delete them or re-point
    ///   them, whatever their own state. This includes the case R7 names: a referrer that
    ///   got a new version while the delete was pending is `Blocked` by the delete, which
    ///   waits `WaitingReferrers` for it; both statuses name the other, and the embedder
    ///   ends it by re-pointing or deleting the referrer. So is what is blocked behind such
    ///   a delete, and a delete waiting for deleting referrers that wait this way.
    ///
    /// Anything else is a stall nobody will end, and a violation: a hold whose chain does
    /// not end at the embedder (blocked by an object that is settled or a task, or that is
    /// itself only blocked; a delete waiting for no referrer; an object backing off with no
    /// wake time; a reason that the object's state contradicts).
    ///
    /// # Errors
    /// The first stuck object, as a `liveness` [`Violation`] naming it and why.
    pub fn check_live(&self, engine: &Engine, plan: &Plan) -> Result<(), Violation> {
        if !plan.tasks.is_empty() || plan.next_wake.is_some() {
            return Err(Violation::new(
                "liveness",
                "checked while tasks or wake times remain",
            ));
        }
        for h in &plan.holds {
            if let Err(why) = waits_for_embedder(engine, plan, h.object, plan.holds.len() + 1) {
                return Err(Violation::new(
                    "liveness",
                    format!(
                        "{} is stuck after faults stopped ({}): {why}",
                        engine.key(h.object),
                        describe(engine, &h.reason)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Whether `id`'s hold in `plan`, followed to its end, waits for the embedder (see
/// [`Checker::check_live`]); if not, why not. `depth` bounds the walk (holds chain through
/// deleting referrers, which R11 keeps acyclic, and through one root cause).
fn waits_for_embedder(
    engine: &Engine,
    plan: &Plan,
    id: ObjectId,
    depth: usize,
) -> Result<(), String> {
    let key = engine.key(id);
    let Some(info) = engine.object(key) else {
        return Err(format!("{key} is held but not in the store"));
    };
    if depth == 0 {
        return Err(format!("the chain of holds through {key} does not end"));
    }
    let external = |id: ObjectId| {
        let schema = engine.schema();
        schema
            .model_id(engine.view(id).model())
            .is_some_and(|m| schema.model(m).kind == ModelKind::External)
    };
    match plan.hold(id) {
        None if info.deleting || info.version != info.enacted => {
            Err(format!("{key} is unsettled but neither a task nor held"))
        }
        None => Err(format!("{key} is settled")),
        Some(HoldReason::BackingOff { until }) => Err(format!(
            "{key} backs off until {until}, but the plan has no wake time"
        )),
        Some(HoldReason::ExternalFailed) if external(id) && info.external_failed => Ok(()),
        Some(HoldReason::ExternalFailed) => Err(format!(
            "{key} is held as a failed external object, but is not one"
        )),
        Some(HoldReason::WaitingExternal { key: e }) if *e == id => {
            if external(id) && !info.deleting && info.version != info.enacted {
                Ok(())
            } else {
                Err(format!(
                    "{key} waits for its own external report, but is not an unreported external object"
                ))
            }
        }
        Some(HoldReason::WaitingExternal { key: e }) => {
            match plan.hold(*e) {
                Some(HoldReason::WaitingExternal { key: ee }) if ee == e => {}
                other => {
                    return Err(format!(
                        "{key} waits for external {}, which is {}",
                        engine.key(*e),
                        other.map_or("not held".into(), |r| describe(engine, r))
                    ))
                }
            }
            waits_for_embedder(engine, plan, *e, depth - 1)
        }
        Some(HoldReason::Blocked { by }) if *by == id => Err(format!("{key} is blocked by itself")),
        Some(HoldReason::Blocked { by }) => {
            // A root cause holds for a reason of its own: a failed external object, or a
            // delete waiting for referrers.
            match plan.hold(*by) {
                Some(HoldReason::ExternalFailed | HoldReason::WaitingReferrers { .. }) => {}
                other => {
                    return Err(format!(
                        "{key} is blocked by {}, which is {}: no root cause",
                        engine.key(*by),
                        other.map_or("not held".into(), |r| describe(engine, r))
                    ))
                }
            }
            waits_for_embedder(engine, plan, *by, depth - 1)
                .map_err(|why| format!("blocked by {}: {why}", engine.key(*by)))
        }
        Some(HoldReason::WaitingReferrers { keys }) => {
            if !info.deleting {
                return Err(format!(
                    "{key} waits for referrers but is not being deleted"
                ));
            }
            if keys.is_empty() {
                return Err(format!("{key}'s delete waits for no referrer"));
            }
            for &r in keys {
                let rk = engine.key(r);
                match engine.object(rk) {
                    None => return Err(format!("{key} waits for {rk}, which is not in the store")),
                    // A live referrer: the embedder deletes or re-points it (R7), whatever
                    // it waits for itself (it may be blocked by this very delete).
                    Some(o) if !o.deleting => {}
                    // A deleting referrer goes first; it must wait for the embedder too.
                    Some(_) => waits_for_embedder(engine, plan, r, depth - 1)
                        .map_err(|why| format!("waits for deleting {rk}: {why}"))?,
                }
            }
            Ok(())
        }
    }
}

fn describe(engine: &Engine, reason: &HoldReason) -> String {
    match reason {
        HoldReason::Blocked { by } => format!("blocked by {}", engine.key(*by)),
        HoldReason::BackingOff { until } => format!("backing off until {until}"),
        HoldReason::WaitingExternal { key } => format!("waiting for external {}", engine.key(*key)),
        HoldReason::WaitingReferrers { keys } => {
            let keys: Vec<&str> = keys.iter().map(|&k| engine.key(k)).collect();
            format!("waiting for referrers {}", keys.join(", "))
        }
        HoldReason::ExternalFailed => "external failed".to_string(),
    }
}

/// What each unsettled object should be, computed from the public state alone.
fn expectations(world: &World, schema: &Schema, now: Time) -> BTreeMap<String, Expect> {
    let mut memo = BTreeMap::new();
    let keys: Vec<String> = world
        .objs
        .iter()
        .filter(|(_, o)| o.unsettled())
        .map(|(k, _)| k.clone())
        .collect();
    for k in keys {
        resolve(world, schema, now, &k, &mut memo);
    }
    memo
}

fn resolve(
    world: &World,
    schema: &Schema,
    now: Time,
    key: &str,
    memo: &mut BTreeMap<String, Expect>,
) -> Expect {
    if let Some(e) = memo.get(key) {
        return e.clone();
    }
    let o = &world.objs[key];
    let (pre, blocking) = world.prerequisites(schema, key);
    let mut roots: BTreeSet<String> = blocking.into_iter().collect();
    let mut wait_ext: Option<String> = None;
    let mut wait_refs = false;
    for p in pre {
        match resolve(world, schema, now, &p, memo) {
            Expect::Task => {}
            Expect::Blocked(r) => roots.extend(r),
            Expect::Own(_) | Expect::ExtFailed => {
                roots.insert(p);
            }
            Expect::ExtWait => wait_ext = Some(wait_ext.map_or(p.clone(), |w| w.min(p))),
            Expect::WaitExt(k) => wait_ext = Some(wait_ext.map_or(k.clone(), |w| w.min(k))),
            Expect::WaitRefs => wait_refs = true,
        }
    }
    let kind = world.kind(schema, key);
    let own = o.backing_off(now);
    let e = if o.deleting {
        let live_referrer = world
            .effective_referrers(key)
            .iter()
            .any(|r| world.get(r).is_some_and(|x| !x.deleting));
        if live_referrer {
            Expect::WaitRefs
        } else if !roots.is_empty() {
            Expect::Blocked(roots)
        } else if wait_refs || wait_ext.is_some() || kind != ModelKind::Actuated {
            Expect::WaitRefs
        } else if own {
            Expect::Own(o.retry_at.unwrap_or_default())
        } else {
            Expect::Task
        }
    } else if !roots.is_empty() {
        Expect::Blocked(roots)
    } else if let Some(k) = wait_ext {
        Expect::WaitExt(k)
    } else {
        match kind {
            ModelKind::External if o.external_failed => Expect::ExtFailed,
            ModelKind::External => Expect::ExtWait,
            _ if own => Expect::Own(o.retry_at.unwrap_or_default()),
            _ => Expect::Task,
        }
    };
    memo.insert(key.to_string(), e.clone());
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::ChangeSet;
    use crate::engine::{Config, Status};

    /// A, B -> A, C -> B, all synced.
    fn synced_chain() -> Engine {
        let schema = Schema::from_json(
            r#"{"models": [
              {"name": "A", "fields": [{"name": "v", "type": "int"}]},
              {"name": "B", "fields": [{"name": "a", "type": "ref"}, {"name": "v", "type": "int"}],
               "links": [{"field": "a", "target": "A"}]},
              {"name": "C", "fields": [{"name": "b", "type": "ref"}, {"name": "v", "type": "int"}],
               "links": [{"field": "b", "target": "B"}]}]}"#,
        )
        .unwrap();
        let mut engine = Engine::new(schema, Config::default());
        engine
            .apply(
                ChangeSet::new()
                    .upsert("a", "A", [("v", 1i64)])
                    .upsert("b", "B", [("a", "a")])
                    .upsert("c", "C", [("b", "b")]),
            )
            .unwrap();
        while let Some(t) = engine.plan(Time(0)).tasks.first().copied() {
            engine.complete(&t, Outcome::ok(), Time(0)).unwrap();
        }
        engine
    }

    /// R7: a live referrer that gets a new version while the delete it references is
    /// pending is `Blocked` by that delete, which waits `WaitingReferrers` for it. Not a
    /// deadlock: both wait for the embedder, who re-points or deletes the referrer; the
    /// liveness check counts it as waiting for the embedder, also behind a second delete.
    #[test]
    fn r7_a_referrer_blocked_by_the_delete_that_waits_for_it_waits_for_the_embedder() {
        let mut engine = synced_chain();
        let checker = Checker::new(engine.config().backoff.clone());
        engine
            .apply(ChangeSet::new().delete("a").delete("b"))
            .unwrap();
        // A new reference to a deleting object is refused (R7) ...
        assert!(engine
            .apply(ChangeSet::new().upsert("c2", "C", [("b", "b")]))
            .is_err());
        // ... an existing one may stay and its object change.
        engine
            .apply(ChangeSet::new().upsert("c", "C", [("v", 2i64)]))
            .unwrap();
        let plan = engine.plan(Time(0));
        assert!(
            plan.tasks.is_empty() && plan.next_wake.is_none(),
            "{plan:?}"
        );
        assert!(
            matches!(engine.status("c", Time(0)), Some(Status::Blocked { by, .. }) if by == "b")
        );
        assert_eq!(
            engine.status("b", Time(0)),
            Some(Status::WaitingReferrers {
                keys: vec!["c".into()]
            })
        );
        assert_eq!(
            engine.status("a", Time(0)),
            Some(Status::WaitingReferrers {
                keys: vec!["b".into()]
            })
        );
        checker.check_live(&engine, &plan).unwrap();

        // Not vacuous: the same delete with its referrer's hold pointing at nothing that
        // waits is a stall.
        let mut tampered = plan.clone();
        let c = engine.id("c").unwrap();
        let a = engine.id("a").unwrap();
        for h in &mut tampered.holds {
            if h.object == c {
                h.reason = HoldReason::Blocked { by: a };
            }
        }
        tampered.holds.retain(|h| h.object != a);
        let v = checker.check_live(&engine, &tampered).unwrap_err();
        assert!(
            v.message.contains("c is blocked by a, which is not held"),
            "{v}"
        );

        // The embedder deletes the referrer: everything goes.
        engine.apply(ChangeSet::new().delete("c")).unwrap();
        while let Some(t) = engine.plan(Time(0)).tasks.first().copied() {
            engine.complete(&t, Outcome::ok(), Time(0)).unwrap();
        }
        assert_eq!(engine.keys().count(), 0);
    }

    /// Liveness is checked only once quiet: a plan with a task is not a state to judge.
    #[test]
    fn liveness_refuses_to_judge_a_plan_with_tasks() {
        let mut engine = synced_chain();
        engine
            .apply(ChangeSet::new().upsert("a", "A", [("v", 2i64)]))
            .unwrap();
        let plan = engine.plan(Time(0));
        assert!(!plan.tasks.is_empty());
        let checker = Checker::new(engine.config().backoff.clone());
        assert!(checker.check_live(&engine, &plan).is_err());
    }
}
