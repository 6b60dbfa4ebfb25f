//! Completions: an [`Outcome`] becomes status, backoff and feedback.
//!
//! Rules: a completion for a stale version never marks a newer version synced (R8), but
//! the feedback of a stale `Ok` is kept (it may name a backend resource the sync created,
//! which a later sync or delete must see); a task the engine never planned is refused; an
//! `Ok` that writes a declarative field is refused and recorded as the object's error (R9);
//! failures back off exponentially (R5); deferrals wait a fixed delay and keep the failure
//! count (R6); a successful delete removes the object and frees what it held (R7, R17).

use serde::{Deserialize, Serialize};

use crate::actuator::{Outcome, TaskKind};
use crate::backoff::BackoffPolicy;
use crate::change::sweep_unreferenced;
use crate::error::CompleteError;
use crate::graph;
use crate::id::{ModelId, Time};
use crate::plan::Task;
use crate::schema::{FieldSlot, Model, ModelKind, Schema};
use crate::store::{Store, DEFERRED, EXTERNAL_FAILED};
use crate::value::Value;

/// What a completion did to its object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// The object is synced at the task's version.
    Synced,
    /// The object left the store; `removed` lists passive or external objects freed with it.
    Deleted {
        /// Keys removed in addition, sorted.
        removed: Vec<String>,
    },
    /// Counted as a failure: eligible again at `retry_at`.
    Failed {
        /// Consecutive failures now.
        failures: u32,
        /// When it becomes eligible again.
        retry_at: Time,
    },
    /// Deferred: eligible again at `retry_at` (R6).
    Deferred {
        /// When it becomes eligible again.
        retry_at: Time,
    },
    /// An external object was reported failed; it waits for a new report or version.
    ExternalFailed,
    /// The task no longer matches the object (newer version, delete requested, already
    /// done): nothing changed (R8).
    Stale,
}

/// A report about an object of an external model (R17).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExternalReport {
    /// The owner synced this engine's declarative version `version`.
    Synced {
        /// The version synced.
        version: u64,
    },
    /// The owner failed to sync this engine's declarative version `version`.
    Failed {
        /// The version the failure is about.
        version: u64,
        /// Why.
        message: String,
    },
}

/// What one completion did: its [`Completion`], the feedback fields that changed, and the
/// passive or external objects swept with a completed delete (key and model, by key).
pub(crate) type Done = (Completion, Vec<String>, Vec<(String, ModelId)>);

/// Applies one outcome.
pub(crate) fn complete(
    schema: &Schema,
    store: &mut Store,
    policy: &BackoffPolicy,
    task: &Task,
    outcome: Outcome,
    now: Time,
) -> Result<Done, CompleteError> {
    let id = task.object;
    if !store.alive(id) {
        return Err(CompleteError::UnknownObject {
            id: id.0,
            version: task.version,
        });
    }
    let deleting = store.deleting(id);
    if task.version < store.born(id) {
        // Planned for an earlier object in this slot (R8): nothing of it applies here.
        return Ok((Completion::Stale, Vec::new(), Vec::new()));
    }
    check_planned(schema, store, task)?;
    let model = schema.model(store.model(id));
    // R8: only the current version's task may change the object's status.
    let current = store.version(id) == task.version
        && task.kind
            == if deleting {
                TaskKind::Delete
            } else {
                TaskKind::Sync
            }
        && store.is_unsettled(id);
    if !current {
        if let (TaskKind::Sync, Outcome::Ok { feedback, .. }) = (task.kind, outcome) {
            // The sync did happen: keep what it reported, all of it or nothing.
            if let Ok(writes) = feedback_writes(model, feedback) {
                let changed = write_feedback(store, id, model, writes);
                return Ok((Completion::Stale, changed, Vec::new()));
            }
        }
        return Ok((Completion::Stale, Vec::new(), Vec::new()));
    }
    match outcome {
        Outcome::Ok { feedback, .. } => {
            if deleting {
                if !store.rdeps(id).is_empty() {
                    // Referrers still present: the delete ran out of order (R7).
                    return Ok((Completion::Stale, Vec::new(), Vec::new()));
                }
                let deps: Vec<_> = store.deps(id).iter().map(|&e| graph::target(e)).collect();
                store.remove(id);
                let removed = sweep_unreferenced(schema, store, deps);
                let keys = removed.iter().map(|(k, _)| k.clone()).collect();
                return Ok((Completion::Deleted { removed: keys }, Vec::new(), removed));
            }
            let changed = if feedback.is_empty() {
                // An empty map owns no memory: forgetting it skips a destructor that walks
                // an empty tree, on the path every plain `Ok` takes.
                std::mem::forget(feedback);
                Vec::new()
            } else {
                // R9: validate every write before making any.
                match feedback_writes(model, feedback) {
                    Ok(writes) => write_feedback(store, id, model, writes),
                    Err(refused) => {
                        return Ok((
                            fail(store, policy, id, refused, now),
                            Vec::new(),
                            Vec::new(),
                        ))
                    }
                }
            };
            store.mark_synced(id, task.version);
            Ok((Completion::Synced, changed, Vec::new()))
        }
        Outcome::Failed { message } => Ok((
            fail(store, policy, id, message, now),
            Vec::new(),
            Vec::new(),
        )),
        Outcome::Deferred { message } => {
            let retry_at = now.after(policy.defer_ms());
            let b = store.backoff_mut(id);
            b.flags |= DEFERRED;
            b.retry_at = retry_at;
            store.set_message(id, Some(message));
            Ok((Completion::Deferred { retry_at }, Vec::new(), Vec::new()))
        }
    }
}

/// Refuses a task the engine cannot have planned for the object now in its slot: the
/// wrong model, an external or passive model (R17: they get no tasks), a version the
/// object never had, or a delete of an object that is not being deleted.
fn check_planned(schema: &Schema, store: &Store, task: &Task) -> Result<(), CompleteError> {
    let id = task.object;
    let why = if task.model != store.model(id) {
        "the object is of another model"
    } else if schema.model(task.model).kind != ModelKind::Actuated {
        "external and passive objects get no tasks (R17)"
    } else if task.version > store.version(id) {
        "the object never had that version"
    } else if task.kind == TaskKind::Delete && !store.deleting(id) {
        "the object is not being deleted"
    } else {
        return Ok(());
    };
    Err(CompleteError::NotPlanned {
        key: store.key(id).to_string(),
        version: task.version,
        why,
    })
}

/// Checks an `Ok`'s feedback against the model (R9): the slot and coerced value of every
/// write, or why one is refused.
fn feedback_writes(
    model: &Model,
    feedback: std::collections::BTreeMap<String, Value>,
) -> Result<Vec<(usize, Value)>, String> {
    if feedback.is_empty() {
        return Ok(Vec::new());
    }
    let n_decl = model.fields.len();
    let mut writes: Vec<(usize, Value)> = Vec::with_capacity(feedback.len());
    for (name, value) in feedback {
        let refused = match model.slot(&name) {
            Some(FieldSlot::Feedback(i)) => match value.coerce(model.feedback[i as usize].ty) {
                Ok(v) => {
                    writes.push((n_decl + i as usize, v));
                    continue;
                }
                Err(e) => format!(
                    "feedback field {name} wants {}, got {}",
                    e.expected, e.found
                ),
            },
            Some(FieldSlot::Declarative(_)) => {
                format!(
                    "actuator wrote declarative field {name}; actuators write feedback only (R9)"
                )
            }
            None => format!("actuator wrote unknown field {name}"),
        };
        return Err(refused);
    }
    Ok(writes)
}

/// Writes checked feedback; returns the names of the fields whose value changed.
fn write_feedback(
    store: &mut Store,
    id: crate::ObjectId,
    model: &Model,
    writes: Vec<(usize, Value)>,
) -> Vec<String> {
    let n_decl = model.fields.len();
    let mut changed = Vec::new();
    for (slot, v) in writes {
        // Only a value that changes marks the object for rehashing.
        if store.d.values[id.index()][slot] != v {
            store.values_mut(id)[slot] = v;
            changed.push(model.feedback[slot - n_decl].name.clone());
        }
    }
    changed
}

/// Records a failure: one more consecutive failure, backoff from `now` (R5).
fn fail(
    store: &mut Store,
    policy: &BackoffPolicy,
    id: crate::ObjectId,
    message: String,
    now: Time,
) -> Completion {
    let failures = store.backoff(id).failures.saturating_add(1);
    let retry_at = now.after(policy.delay_ms(failures, store.key(id)));
    let b = store.backoff_mut(id);
    b.failures = failures;
    b.retry_at = retry_at;
    b.flags &= !DEFERRED;
    store.set_message(id, Some(message));
    Completion::Failed { failures, retry_at }
}

/// Applies an external report (R17).
pub(crate) fn report_external(
    store: &mut Store,
    id: crate::ObjectId,
    report: ExternalReport,
) -> Completion {
    if store.deleting(id) {
        return Completion::Stale;
    }
    // A report about another version than the current one is stale, whatever it says.
    match report {
        ExternalReport::Synced { version } => {
            if version != store.version(id) {
                return Completion::Stale;
            }
            store.set_enacted(id, version);
            store.backoff_mut(id).flags &= !EXTERNAL_FAILED;
            store.set_message(id, None);
            store.refresh_unsettled(id);
            Completion::Synced
        }
        ExternalReport::Failed { version, message } => {
            if version != store.version(id) {
                return Completion::Stale;
            }
            // The current version failed, even if it was reported synced before: its
            // dependents are blocked by it (R17).
            store.backoff_mut(id).flags |= EXTERNAL_FAILED;
            store.set_message(id, Some(message));
            store.refresh_unsettled(id);
            Completion::ExternalFailed
        }
    }
}
