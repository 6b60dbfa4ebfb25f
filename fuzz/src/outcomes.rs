//! Target `outcomes`: what actuators (and WASM plugins, whose results the host converts to
//! [`Outcome`]s and [`Value`]s) hand back to `Engine::complete`.
//!
//! The WASM host's own conversion (`engine/src/wasm/convert.rs`) is crate-private and its
//! WIT types are generated; the values it produces land here, so this target feeds
//! `complete` what a plugin could make it produce: `Ok` with feedback of any names
//! (feedback, declarative, unknown) and any values (wrong types, non-finite floats,
//! invalid JSON text, oversized), `Failed`, `Deferred`, for current, stale and forged
//! tasks, at any time (near `u64::MAX` included), mixed with new versions and deletes.
//!
//! Oracle, for each completion of a planned task: a vanished object is an error and
//! nothing else is; a stale task changes nothing but the feedback of a stale sync's valid
//! `Ok`, which is kept (R8); a failure counts one more failure
//! (R5), a deferral none (R6); `Ok` syncs exactly when every feedback write names a
//! feedback field, fits its type and the value limits, and then stores the values, else it
//! is recorded as a failure (R9) naming an offending field; the declarative version never
//! moves (R9). After every step the state passes [`state::check`](super::state::check).

use std::collections::BTreeMap;

use arbitrary::Unstructured;
use syncore::{
    ChangeSet, Completion, Engine, ExternalReport, FieldSlot, ObjectId, Outcome, Task, TaskKind,
    Time, Value,
};

use super::gen::{self, below, Draw};
use super::state::{self, BASE_KEYS};

/// Steps taken from one input at most.
pub const STEPS_MAX: usize = 40;

const FIELD_NAMES: &[&str] = &[
    "fb_b", "fb_i", "fb_f", "fb_s", "fb_y", "fb_j", "ip", "name", "site", "n", "nope",
];

/// Runs one input; `Err` is a finding.
pub fn run(data: &[u8]) -> Result<(), String> {
    let mut u = Unstructured::new(data);
    let mut engine = state::base();
    let mut now = Time(20);
    for _ in 0..STEPS_MAX {
        if u.is_empty() {
            break;
        }
        let Ok(step) = step(&mut u, &mut engine, &mut now) else {
            break;
        };
        step?;
        state::check(&engine, now)?;
    }
    Ok(())
}

/// Draws and takes one step. The outer `Result` is the input running out.
fn step(u: &mut Unstructured<'_>, engine: &mut Engine, now: &mut Time) -> Draw<Result<(), String>> {
    match u.int_in_range(0u8..=9)? {
        0..=5 => {
            let plan = engine.plan(*now);
            let task = if plan.tasks.is_empty() || u.ratio(1, 6)? {
                forged(u, engine)?
            } else {
                plan.tasks[below(u, plan.tasks.len())?]
            };
            let outcome = outcome(u)?;
            Ok(complete_checked(engine, &task, outcome, *now))
        }
        6 => {
            *now = match u.int_in_range(0u8..=3)? {
                0 => Time(u64::MAX - u64::from(u.arbitrary::<u16>()?)),
                _ => now.after(u64::from(u.arbitrary::<u16>()?)),
            };
            Ok(Ok(()))
        }
        7 => {
            // A new version (or a delete) under a task in flight: later completions are stale.
            let key = gen::pick(u, BASE_KEYS)?.to_string();
            let set = match (u.ratio(1, 4)?, engine.object(&key)) {
                (true, _) | (false, None) => ChangeSet::new().delete(key),
                (false, Some(info)) => {
                    let fields: BTreeMap<String, Value> = info
                        .fields
                        .iter()
                        .filter(|(_, v)| v.refs().is_empty())
                        .map(|(n, _)| Ok((n.clone(), gen::value(u, BASE_KEYS)?)))
                        .collect::<Draw<_>>()?;
                    ChangeSet::from(vec![syncore::Change::Upsert {
                        key,
                        model: info.model,
                        fields,
                    }])
                }
            };
            let before = engine.snapshot();
            if engine.apply(set).is_err() && engine.snapshot() != before {
                return Ok(Err("a refused change set changed the state".into()));
            }
            Ok(Ok(()))
        }
        _ => {
            let key = gen::pick(u, BASE_KEYS)?;
            let report = match (u.arbitrary::<bool>()?, engine.object(key)) {
                (true, Some(info)) => ExternalReport::Synced {
                    version: info.version,
                },
                (_, info) => ExternalReport::Failed {
                    version: info.map_or(0, |i| i.version),
                    message: gen::text(u)?,
                },
            };
            let before = engine.snapshot();
            if engine.report_external(key, report).is_err() && engine.snapshot() != before {
                return Ok(Err("a refused external report changed the state".into()));
            }
            Ok(Ok(()))
        }
    }
}

/// A task the engine did not plan: any id (live, dead or out of range), version, kind.
fn forged(u: &mut Unstructured<'_>, engine: &Engine) -> Draw<Task> {
    let keys: Vec<&str> = engine.keys().collect();
    let (object, model, version) = match (u.ratio(3, 4)?, keys.is_empty()) {
        (true, false) => {
            let key = keys[below(u, keys.len())?];
            let info = engine.object(key).expect("a listed key has info");
            let model = engine
                .schema()
                .model_id(&info.model)
                .expect("its model exists");
            let delta = i64::from(u.int_in_range(-1i8..=1)?);
            (info.id, model, info.version.saturating_add_signed(delta))
        }
        _ => (
            ObjectId(u.arbitrary()?),
            syncore::ModelId(u.arbitrary()?),
            u.arbitrary()?,
        ),
    };
    Ok(Task {
        object,
        model,
        version,
        kind: if u.arbitrary()? {
            TaskKind::Sync
        } else {
            TaskKind::Delete
        },
    })
}

/// An outcome as a plugin could return it.
fn outcome(u: &mut Unstructured<'_>) -> Draw<Outcome> {
    Ok(match u.int_in_range(0u8..=5)? {
        0 => Outcome::failed(gen::text(u)?),
        1 => Outcome::deferred(gen::text(u)?),
        _ => {
            let mut feedback = BTreeMap::new();
            for _ in 0..below(u, 4)? {
                feedback.insert(gen::name(u, FIELD_NAMES)?, gen::value(u, BASE_KEYS)?);
            }
            Outcome::Ok {
                feedback,
                requeue_after: None,
            }
        }
    })
}

/// Why a feedback write must be refused, if it must: checked independently of the engine
/// (type by type, JSON depth by recursion over the parsed document).
fn refusal(engine: &Engine, model: &str, name: &str, value: &Value) -> Option<String> {
    let schema = engine.schema();
    let m = schema.model(schema.model_id(model)?);
    let Some(FieldSlot::Feedback(i)) = m.slot(name) else {
        return Some("not a feedback field".into());
    };
    let Ok(v) = value.clone().coerce(m.feedback[i as usize].ty) else {
        return Some("wrong type".into());
    };
    let c = engine.config();
    let too_long = |len: usize, max: u32| len > max as usize;
    let over = match &v {
        Value::Str(s) => too_long(s.len(), c.string_len_max),
        Value::Bytes(b) => too_long(b.len(), c.bytes_len_max),
        Value::Json(t) => {
            fn depth(j: &serde_json::Value) -> usize {
                match j {
                    serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
                    serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
                    _ => 0,
                }
            }
            let parsed: serde_json::Value = serde_json::from_str(t).unwrap_or_default();
            too_long(t.len(), c.json_len_max) || too_long(depth(&parsed), c.json_depth_max)
        }
        _ => false,
    };
    over.then(|| "over a limit".into())
}

/// Completes `task` with `outcome` and checks the result against the oracle above.
pub fn complete_checked(
    engine: &mut Engine,
    task: &Task,
    outcome: Outcome,
    now: Time,
) -> Result<(), String> {
    let key = engine
        .keys()
        .find(|k| engine.id(k) == Some(task.object))
        .map(str::to_string);
    let before = key.as_deref().and_then(|k| engine.object(k));
    let others: Vec<syncore::ObjectInfo> = engine
        .keys()
        .filter(|k| Some(*k) != key.as_deref())
        .filter_map(|k| engine.object(k))
        .collect();
    let snapshot = engine.snapshot();
    let result = engine.complete(task, outcome.clone(), now);
    let Some(before) = before else {
        return match result {
            Err(syncore::CompleteError::UnknownObject { .. }) if engine.snapshot() == snapshot => {
                Ok(())
            }
            other => Err(format!("completion of a vanished object gave {other:?}")),
        };
    };
    let key = before.key.clone();
    // A task the engine did not plan (hand-built: an external or passive object, a version
    // the object never had, a delete of an object not being deleted) is refused (issue 10
    // item 12), and the refusal changes nothing.
    if let Err(syncore::CompleteError::NotPlanned { .. }) = &result {
        return if engine.snapshot() == snapshot {
            Ok(())
        } else {
            Err(format!(
                "a refused unplanned task for {key} changed the state"
            ))
        };
    }
    let done = result.map_err(|e| format!("completion of live {key} refused: {e}"))?;
    let after = engine.object(&key);
    if let Some(a) = &after {
        if a.version != before.version {
            return Err(format!("R9: completion moved {key}'s version"));
        }
    }
    let unsettled = before.enacted != before.version || before.deleting;
    let current = task.version == before.version
        && (task.kind == TaskKind::Delete) == before.deleting
        && unsettled;
    if !current {
        return stale_checked(engine, task, &outcome, &done, &before, &others, &snapshot);
    }
    match (outcome, done) {
        (Outcome::Failed { .. }, Completion::Failed { failures, .. })
            if failures == before.failures.saturating_add(1) =>
        {
            Ok(())
        }
        (Outcome::Deferred { .. }, Completion::Deferred { .. }) => {
            let a = after.ok_or("deferred object vanished")?;
            if a.failures != before.failures || !a.deferred {
                return Err(format!(
                    "R6: deferral of {key} changed failures or was not recorded"
                ));
            }
            Ok(())
        }
        (Outcome::Ok { .. }, Completion::Deleted { .. }) if before.deleting => Ok(()),
        (Outcome::Ok { .. }, Completion::Stale) if before.deleting => Ok(()), // referrers left (R7)
        (Outcome::Ok { feedback, .. }, done) => {
            let bad: Vec<&String> = feedback
                .iter()
                .filter(|(n, v)| refusal(engine, &before.model, n, v).is_some())
                .map(|(n, _)| n)
                .collect();
            let a = after.ok_or("synced object vanished")?;
            match done {
                Completion::Synced if bad.is_empty() => {
                    for (n, v) in &feedback {
                        let stored = a.feedback.iter().find(|(f, _)| f == n).map(|(_, v)| v);
                        let schema = engine.schema();
                        let m = schema.model(schema.model_id(&a.model).ok_or("model")?);
                        let Some(FieldSlot::Feedback(i)) = m.slot(n) else {
                            return Err("feedback slot vanished".into());
                        };
                        let want = v.clone().coerce(m.feedback[i as usize].ty).ok();
                        if stored != want.as_ref() {
                            return Err(format!(
                                "feedback {n} of {key}: stored {stored:?}, want {want:?}"
                            ));
                        }
                    }
                    if a.enacted != task.version || a.failures != 0 {
                        return Err(format!("{key} synced without being enacted"));
                    }
                    Ok(())
                }
                Completion::Failed { .. } if !bad.is_empty() => {
                    let message = a.message.clone().unwrap_or_default();
                    if !bad.iter().any(|n| message.contains(n.as_str())) {
                        return Err(format!(
                            "R9: refusal of {key} names none of {bad:?}: {message}"
                        ));
                    }
                    if a.feedback != before.feedback {
                        return Err(format!("R9: refused feedback of {key} was stored"));
                    }
                    Ok(())
                }
                other => Err(format!(
                    "Ok with feedback {feedback:?} on {key} (bad: {bad:?}) gave {other:?}"
                )),
            }
        }
        (outcome, done) => Err(format!("{outcome:?} on {key} gave {done:?}")),
    }
}

/// The oracle for a stale task (R8): it gives `Stale` and changes nothing, except that a
/// stale sync's `Ok` whose every feedback write is valid stores that feedback (and only
/// that). For a task of the object's current version the feedback must be kept; for an
/// older version it may also be dropped (the version may predate the object in the slot).
fn stale_checked(
    engine: &Engine,
    task: &Task,
    outcome: &Outcome,
    done: &Completion,
    before: &syncore::ObjectInfo,
    others: &[syncore::ObjectInfo],
    snapshot: &[u8],
) -> Result<(), String> {
    let key = &before.key;
    if *done != Completion::Stale {
        return Err(format!("R8: a stale task {task:?} on {key} gave {done:?}"));
    }
    let keep = match (task.kind, outcome) {
        (TaskKind::Sync, Outcome::Ok { feedback, .. })
            if feedback
                .iter()
                .all(|(n, v)| refusal(engine, &before.model, n, v).is_none()) =>
        {
            Some(feedback)
        }
        _ => None,
    };
    let unchanged = engine.snapshot() == snapshot;
    let Some(feedback) = keep else {
        return if unchanged {
            Ok(())
        } else {
            Err(format!(
                "R8: a stale task {task:?} on {key} with nothing to keep changed the state"
            ))
        };
    };
    let mut want = before.clone();
    for (n, v) in feedback {
        let schema = engine.schema();
        let m = schema.model(schema.model_id(&before.model).ok_or("model")?);
        let Some(FieldSlot::Feedback(i)) = m.slot(n) else {
            return Err("feedback slot vanished".into());
        };
        let coerced = v.clone().coerce(m.feedback[i as usize].ty).ok();
        let slot = want.feedback.iter_mut().find(|(f, _)| f == n);
        if let (Some((_, stored)), Some(c)) = (slot, coerced) {
            *stored = c;
        }
    }
    let after = engine.object(key);
    let dropped = unchanged && task.version < before.version;
    if !dropped && after.as_ref() != Some(&want) {
        return Err(format!(
            "R8: stale Ok {task:?} on {key} with valid feedback {feedback:?}: want {want:?}, got {after:?}"
        ));
    }
    for o in others {
        if engine.object(&o.key).as_ref() != Some(o) {
            return Err(format!(
                "R8: a stale Ok on {key} changed another object, {}",
                o.key
            ));
        }
    }
    Ok(())
}
