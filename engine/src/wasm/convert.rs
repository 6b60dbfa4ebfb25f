//! Conversions between the engine's data and the WIT types, and the checks on what a plugin
//! returns: a result is untrusted input, so every field name, value and size is checked and a
//! bad one becomes a message, never a panic (P1).

use std::collections::BTreeMap;

use super::bindings::wit;
use crate::actuator::{ObjectView, Outcome};
use crate::change::Change;
use crate::policy::{PolicyInput, StateView, WatchEvent, WatchKind};
use crate::value::Value;

/// An engine value as a WIT value.
pub(crate) fn value_to_wit(value: &Value) -> wit::Value {
    match value {
        Value::Null => wit::Value::Null,
        Value::Bool(b) => wit::Value::Boolean(*b),
        Value::Int(i) => wit::Value::Integer(*i),
        Value::Float(x) => wit::Value::Float(*x),
        Value::Str(s) => wit::Value::Text(s.clone()),
        Value::Bytes(b) => wit::Value::Bytes(b.clone()),
        Value::Ref(k) => wit::Value::Reference(k.clone()),
        Value::Refs(ks) => wit::Value::References(ks.clone()),
        Value::Json(text) => wit::Value::Json(text.clone()),
    }
}

fn fields_to_wit<'a>(fields: impl Iterator<Item = (&'a str, &'a Value)>) -> Vec<wit::Field> {
    fields
        .map(|(name, value)| wit::Field {
            name: name.to_string(),
            value: value_to_wit(value),
        })
        .collect()
}

/// An object view as the WIT `object-view`: fields, feedback, and each dependency's feedback.
pub(crate) fn view_to_wit(view: &ObjectView<'_>) -> wit::ObjectView {
    wit::ObjectView {
        key: view.key().to_string(),
        model: view.model().to_string(),
        version: view.version(),
        fields: fields_to_wit(view.fields()),
        feedback: fields_to_wit(view.feedbacks()),
        dependencies: view
            .dependencies()
            .map(|d| wit::Dependency {
                key: d.key().to_string(),
                model: d.model().to_string(),
                version: d.version(),
                feedback: fields_to_wit(d.feedbacks()),
            })
            .collect(),
    }
}

/// Refills `out` with `view`, as [`view_to_wit`] would build it, reusing the strings and
/// lists `out` already holds (a reused instance's previous input), so a call in steady state
/// allocates nothing to pass its object.
pub(crate) fn view_into_wit(view: &ObjectView<'_>, out: &mut wit::ObjectView) {
    set(&mut out.key, view.key());
    set(&mut out.model, view.model());
    out.version = view.version();
    fields_into_wit(view.fields(), &mut out.fields);
    fields_into_wit(view.feedbacks(), &mut out.feedback);
    let mut n = 0;
    for d in view.dependencies() {
        if n == out.dependencies.len() {
            out.dependencies.push(wit::Dependency {
                key: String::new(),
                model: String::new(),
                version: 0,
                feedback: Vec::new(),
            });
        }
        let dep = &mut out.dependencies[n];
        set(&mut dep.key, d.key());
        set(&mut dep.model, d.model());
        dep.version = d.version();
        fields_into_wit(d.feedbacks(), &mut dep.feedback);
        n += 1;
    }
    out.dependencies.truncate(n);
}

fn set(out: &mut String, text: &str) {
    out.clear();
    out.push_str(text);
}

fn fields_into_wit<'a>(
    fields: impl Iterator<Item = (&'a str, &'a Value)>,
    out: &mut Vec<wit::Field>,
) {
    let mut n = 0;
    for (name, value) in fields {
        if n == out.len() {
            out.push(wit::Field {
                name: name.to_string(),
                value: value_to_wit(value),
            });
        } else {
            let field = &mut out[n];
            set(&mut field.name, name);
            value_into_wit(value, &mut field.value);
        }
        n += 1;
    }
    out.truncate(n);
}

/// Refills `out` with `value`, reusing its string when both are text of the same kind.
fn value_into_wit(value: &Value, out: &mut wit::Value) {
    match (value, &mut *out) {
        (Value::Str(v), wit::Value::Text(s))
        | (Value::Ref(v), wit::Value::Reference(s))
        | (Value::Json(v), wit::Value::Json(s)) => set(s, v),
        _ => *out = value_to_wit(value),
    }
}

/// A policy's input, with the object's live referrers (key and model) from the staged state.
pub(crate) fn policy_input_to_wit(
    input: &PolicyInput<'_>,
    state: &dyn StateView,
) -> wit::PolicyInput {
    let referrers = state
        .referrers(input.key)
        .into_iter()
        .filter_map(|key| {
            state.get(&key).map(|o| wit::Referrer {
                key,
                model: o.model,
            })
        })
        .collect();
    wit::PolicyInput {
        key: input.key.to_string(),
        model: input.model.to_string(),
        fields: input
            .fields
            .iter()
            .map(|(name, value)| wit::Field {
                name: name.clone(),
                value: value_to_wit(value),
            })
            .collect(),
        deleted: input.deleted,
        referrers,
    }
}

/// A watch event as the WIT `watch-event`, or `None` for a requested delete: the WIT
/// package (0.1) has no case for it, and its `deleted` means the object left the store,
/// which a plugin is told when it happens (R18).
pub(crate) fn event_to_wit(event: &WatchEvent<'_>) -> Option<wit::WatchEvent> {
    Some(wit::WatchEvent {
        watcher_model: event.watcher_model.to_string(),
        key: event.key.to_string(),
        model: event.model.to_string(),
        kind: match event.kind {
            WatchKind::Declarative => wit::WatchKind::Declarative,
            WatchKind::Feedback => wit::WatchKind::Feedback,
            WatchKind::Deleted => wit::WatchKind::Deleted,
            WatchKind::DeleteRequested => return None,
        },
        changed: event.changed.to_vec(),
        object: event.object.as_ref().map(view_to_wit),
    })
}

/// Counts what a result holds, against the result limits.
pub(crate) struct Budget {
    bytes: usize,
    entries: usize,
    bytes_max: usize,
    entries_max: usize,
}

impl Budget {
    pub(crate) fn new(bytes_max: usize, entries_max: usize) -> Budget {
        Budget {
            bytes: 0,
            entries: 0,
            bytes_max,
            entries_max,
        }
    }

    fn entry(&mut self) -> Result<(), String> {
        self.entries += 1;
        if self.entries > self.entries_max {
            return Err(format!(
                "result too large: more than {} entries",
                self.entries_max
            ));
        }
        Ok(())
    }

    fn bytes(&mut self, n: usize) -> Result<(), String> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.bytes_max {
            return Err(format!(
                "result too large: more than {} bytes (result limit)",
                self.bytes_max
            ));
        }
        Ok(())
    }

    fn value_size(value: &wit::Value) -> usize {
        match value {
            wit::Value::Text(s) | wit::Value::Reference(s) | wit::Value::Json(s) => s.len(),
            wit::Value::Bytes(b) => b.len(),
            wit::Value::References(ks) => ks.iter().map(|k| k.len() + 8).sum(),
            _ => 8,
        }
    }
}

/// A WIT value from a plugin as an engine value.
///
/// # Errors
/// A non-finite float, or `json` text that does not parse.
pub(crate) fn value_from_wit(value: wit::Value) -> Result<Value, String> {
    Ok(match value {
        wit::Value::Null => Value::Null,
        wit::Value::Boolean(b) => Value::Bool(b),
        wit::Value::Integer(i) => Value::Int(i),
        wit::Value::Float(x) if x.is_finite() => Value::Float(x),
        wit::Value::Float(x) => return Err(format!("float {x} is not finite")),
        wit::Value::Text(s) => Value::Str(s),
        wit::Value::Bytes(b) => Value::Bytes(b),
        wit::Value::Reference(k) => Value::Ref(k),
        wit::Value::References(ks) => Value::Refs(ks),
        wit::Value::Json(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            // Canonical text (sorted keys), as the engine stores JSON.
            Ok(json) => Value::Json(serde_json::to_string(&json).map_err(|e| e.to_string())?),
            Err(e) => return Err(format!("json value is not JSON: {e}")),
        },
    })
}

/// Checks and converts an actuator's feedback: only feedback fields of the object's model,
/// each once, within the result limits (R9).
///
/// # Errors
/// A message naming the field and what is wrong with it.
pub(crate) fn feedback_from_wit(
    view: &ObjectView<'_>,
    fields: Vec<wit::Field>,
    budget: &mut Budget,
) -> Result<BTreeMap<String, Value>, String> {
    let mut feedback = BTreeMap::new();
    for field in fields {
        budget.entry()?;
        budget.bytes(field.name.len() + Budget::value_size(&field.value))?;
        if view.fields().any(|(name, _)| name == field.name) {
            return Err(format!(
                "wrote declarative field `{}` (actuators may write feedback fields only, R9)",
                field.name
            ));
        }
        if !view.feedbacks().any(|(name, _)| name == field.name) {
            return Err(format!(
                "malformed result: model {} has no feedback field `{}`",
                view.model(),
                field.name
            ));
        }
        let value = value_from_wit(field.value)
            .map_err(|e| format!("malformed result: feedback `{}`: {e}", field.name))?;
        if feedback.insert(field.name.clone(), value).is_some() {
            return Err(format!(
                "malformed result: feedback field `{}` given twice",
                field.name
            ));
        }
    }
    Ok(feedback)
}

/// Converts an actuator's outcome, checking its feedback.
pub(crate) fn outcome_from_wit(
    view: &ObjectView<'_>,
    outcome: wit::Outcome,
    budget: &mut Budget,
    message_max: usize,
) -> Result<Outcome, String> {
    Ok(match outcome {
        wit::Outcome::Ok(fields) => Outcome::Ok {
            feedback: feedback_from_wit(view, fields, budget)?,
            requeue_after: None,
        },
        wit::Outcome::Failed(message) => Outcome::Failed {
            message: super::sandbox::truncate(message, message_max),
        },
        wit::Outcome::Deferred(message) => Outcome::Deferred {
            message: super::sandbox::truncate(message, message_max),
        },
    })
}

/// Converts a policy's changes, within the result limits. Field names and types are left to
/// the engine, which validates every change of a change set (policies' included) before it
/// applies any.
pub(crate) fn changes_from_wit(
    changes: Vec<wit::Change>,
    budget: &mut Budget,
) -> Result<Vec<Change>, String> {
    let mut out = Vec::with_capacity(changes.len().min(1024));
    for change in changes {
        budget.entry()?;
        out.push(match change {
            wit::Change::Upsert(u) => {
                budget.bytes(u.key.len() + u.model.len())?;
                let mut fields = BTreeMap::new();
                for field in u.fields {
                    budget.bytes(field.name.len() + Budget::value_size(&field.value))?;
                    let value = value_from_wit(field.value).map_err(|e| {
                        format!(
                            "malformed result: change of `{}`, field `{}`: {e}",
                            u.key, field.name
                        )
                    })?;
                    if fields.insert(field.name.clone(), value).is_some() {
                        return Err(format!(
                            "malformed result: change of `{}` sets field `{}` twice",
                            u.key, field.name
                        ));
                    }
                }
                Change::Upsert {
                    key: u.key,
                    model: u.model,
                    fields,
                }
            }
            wit::Change::Delete(key) => {
                budget.bytes(key.len())?;
                Change::Delete { key }
            }
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actuation::OwnedView;
    use crate::TaskKind;

    fn view(key: &str, fields: &[(&str, Value)], deps: usize) -> OwnedView {
        let fields: Vec<(String, Value)> = fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        (0..deps).fold(
            OwnedView::new(key, "Model", 3, TaskKind::Sync, fields.clone(), fields),
            |v, i| {
                let dep = OwnedView::new(
                    format!("dep-{i}"),
                    "Dep",
                    i as u64,
                    TaskKind::Sync,
                    [],
                    [("id".to_string(), Value::Str(format!("id-{i}")))],
                );
                v.with_dependency(dep)
            },
        )
    }

    #[test]
    fn a_refilled_input_equals_a_new_one() {
        let views = [
            view(
                "a",
                &[("x", Value::Str("one".into())), ("y", Value::Int(1))],
                2,
            ),
            view("bb", &[("x", Value::Ref("k".into()))], 0),
            view(
                "c",
                &[
                    ("x", Value::Str("longer text".into())),
                    ("y", Value::Json("{}".into())),
                    ("z", Value::Null),
                ],
                3,
            ),
            view("d", &[], 1),
        ];
        let mut input = view_to_wit(&views[0].as_view());
        for v in views.iter().chain(views.iter().rev()) {
            view_into_wit(&v.as_view(), &mut input);
            assert_eq!(
                format!("{input:?}"),
                format!("{:?}", view_to_wit(&v.as_view()))
            );
        }
    }

    #[test]
    fn values_round_trip_and_bad_ones_are_refused() {
        let values = [
            Value::Null,
            Value::Bool(true),
            Value::Int(-3),
            Value::Float(1.5),
            Value::Str("s".into()),
            Value::Bytes(vec![1, 2]),
            Value::Ref("k".into()),
            Value::Refs(vec!["a".into(), "b".into()]),
            Value::Json(r#"{"a":1}"#.into()),
        ];
        for v in values {
            assert_eq!(value_from_wit(value_to_wit(&v)).unwrap(), v);
        }
        assert!(value_from_wit(wit::Value::Float(f64::NAN))
            .unwrap_err()
            .contains("not finite"));
        assert!(value_from_wit(wit::Value::Json("{x".into()))
            .unwrap_err()
            .contains("not JSON"));
        assert_eq!(
            value_from_wit(wit::Value::Json(r#"{"b":1, "a":2}"#.into())).unwrap(),
            Value::Json(r#"{"a":2,"b":1}"#.into())
        );
    }

    #[test]
    fn budgets_refuse_large_results() {
        let mut budget = Budget::new(10, 2);
        let changes = vec![wit::Change::Delete("0123456789abc".into())];
        assert!(changes_from_wit(changes, &mut budget)
            .unwrap_err()
            .contains("more than 10 bytes"));
        let mut budget = Budget::new(1000, 2);
        let changes = (0..3)
            .map(|i| wit::Change::Delete(format!("k{i}")))
            .collect();
        assert!(changes_from_wit(changes, &mut budget)
            .unwrap_err()
            .contains("more than 2 entries"));
    }
}
