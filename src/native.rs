//! Built-in native actuators, policies and watchers for scenarios, and the fault script.
//!
//! | name | kind | what it does |
//! |---|---|---|
//! | `cord` | actuator | the CORD example's actuators (Site, Slice, Network, Instance, Port), as the `cord-actuators` WASM plugin does: ids and addresses derived from the key |
//! | `ok` | actuator | succeeds; every feedback field gets a value derived from the key |
//! | `noop` | actuator | succeeds, writes nothing |
//! | `fail` | actuator | always fails ("backend unavailable") |
//! | `flaky` | actuator | fails the first 0, 1 or 2 attempts of each object (by key hash), then succeeds |
//! | `ensure:Model.field` | policy | every live object has at least one `Model` whose `field` references it; creates `<key>-<model>` |
//! | `network-has-port` | policy | `ensure:Port.network`, the CORD example's policy |
//! | `log` | watcher | prints each notification in the run's timeline |

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use syncore::{
    Actuator, Change, FieldType, ObjectView, Outcome, Policy, PolicyInput, Schema, StateView,
    TaskKind, Value, WatchEvent, Watcher,
};

use crate::scenario::{Fault, FaultOn};

/// Names of the built-in actuators.
pub const ACTUATORS: &[&str] = &["cord", "ok", "noop", "fail", "flaky"];
/// Names of the built-in policies (besides `ensure:Model.field`).
pub const POLICIES: &[&str] = &["network-has-port"];
/// Names of the built-in watchers.
pub const WATCHERS: &[&str] = &["log"];

/// FNV-1a over a string: a stable hash, the same on every machine and run.
pub fn fnv1a(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A built-in actuator by name, for objects of `model`.
pub fn actuator(name: &str, schema: &Schema, model: &str) -> Option<Arc<dyn Actuator>> {
    Some(match name {
        "cord" => Arc::new(Cord),
        "ok" => {
            let feedback = schema
                .model_id(model)
                .map(|id| {
                    schema
                        .model(id)
                        .feedback
                        .iter()
                        .map(|f| (f.name.clone(), f.ty))
                        .collect()
                })
                .unwrap_or_default();
            Arc::new(Derive { feedback })
        }
        "noop" => Arc::new(Noop),
        "fail" => Arc::new(Fail),
        "flaky" => Arc::new(Flaky::default()),
        _ => return None,
    })
}

/// A built-in policy by name, for objects of `model`.
///
/// # Errors
/// Why the name or its `ensure:` target is not usable.
pub fn policy(name: &str, schema: &Schema, model: &str) -> Result<Box<dyn Policy>, String> {
    let spec = match name {
        "network-has-port" => "ensure:Port.network",
        other => other,
    };
    let Some(target) = spec.strip_prefix("ensure:") else {
        return Err(format!(
            "unknown built-in policy {name:?}; expected `ensure:Model.field`, {}, or a path to a .wasm component",
            POLICIES.join(", ")
        ));
    };
    let Some((child, field)) = target.split_once('.') else {
        return Err(format!("policy {name:?}: expected `ensure:Model.field`"));
    };
    let cid = schema
        .model_id(child)
        .ok_or_else(|| format!("policy {name:?}: no model named {child}"))?;
    let cm = schema.model(cid);
    let link = cm
        .fields
        .iter()
        .position(|f| f.name == field)
        .and_then(|slot| cm.link_of_field[slot])
        .map(|l| &cm.links[l as usize]);
    match link {
        Some(l) if schema.model(l.target).name == model => {}
        _ => {
            return Err(format!(
                "policy {name:?}: {child}.{field} is not a link to {model}"
            ))
        }
    }
    Ok(Box::new(Ensure {
        child: child.to_string(),
        field: field.to_string(),
        many: cm
            .fields
            .iter()
            .any(|f| f.name == field && f.ty == FieldType::Refs),
    }))
}

/// A built-in watcher by name, writing into `sink`.
pub fn watcher(name: &str, sink: &Sink) -> Option<Box<dyn Watcher>> {
    (name == "log").then(|| Box::new(LogWatcher { sink: sink.clone() }) as Box<dyn Watcher>)
}

/// Lines written by watchers, drained by the runner after each engine call.
pub type Sink = Arc<Mutex<Vec<String>>>;

/// The CORD example's actuators, a native twin of the `cord-actuators` plugin.
struct Cord;

impl Cord {
    fn id(o: &ObjectView<'_>) -> String {
        format!(
            "{}-{:08x}",
            o.model().to_lowercase(),
            fnv1a(o.key()) & 0xffff_ffff
        )
    }

    /// The feedback `name` of the dependency that field `field` references, if set.
    fn dep_feedback(o: &ObjectView<'_>, field: &str, name: &str) -> Option<Value> {
        let key = match o.field(field)? {
            Value::Ref(k) | Value::Str(k) => k.clone(),
            _ => return None,
        };
        o.dependencies()
            .find(|d| d.key() == key)?
            .feedback(name)
            .filter(|v| **v != Value::Null)
            .cloned()
    }
}

impl Actuator for Cord {
    fn sync(&self, o: &ObjectView<'_>) -> Outcome {
        let hash = fnv1a(o.key());
        let id = Cord::id(o);
        match o.model() {
            "Site" => match o.field("name") {
                Some(Value::Str(_)) => Outcome::ok_with([("id", id)]),
                _ => Outcome::failed("a site needs a name"),
            },
            "Slice" => match Cord::dep_feedback(o, "site", "id") {
                Some(_) => Outcome::ok_with([("id", id)]),
                None => Outcome::deferred("the slice's site has no id yet"),
            },
            "Network" => {
                let cidr = format!("10.{}.{}.0/24", (hash >> 8) & 0xff, hash & 0xff);
                Outcome::ok_with([("id", Value::from(id)), ("cidr", Value::from(cidr))])
            }
            "Instance" => {
                let ip = format!("172.16.{}.{}", (hash >> 8) & 0xff, 1 + hash % 254);
                Outcome::ok_with([("id", Value::from(id)), ("ip", Value::from(ip))])
            }
            "Port" => match Cord::dep_feedback(o, "network", "cidr") {
                Some(Value::Str(cidr)) => {
                    let prefix = cidr.trim_end_matches("0/24");
                    let ip = format!("{prefix}{}", 2 + hash % 250);
                    Outcome::ok_with([("id", Value::from(id)), ("ip", Value::from(ip))])
                }
                _ => Outcome::deferred("the port's network has no cidr yet"),
            },
            other => Outcome::failed(format!("the cord actuator does not know model {other}")),
        }
    }
}

/// Succeeds, deriving every feedback field from the key.
struct Derive {
    feedback: Vec<(String, FieldType)>,
}

impl Actuator for Derive {
    fn sync(&self, o: &ObjectView<'_>) -> Outcome {
        let hash = fnv1a(o.key());
        let fields = self.feedback.iter().map(|(name, ty)| {
            let v = match ty {
                FieldType::Bool => Value::Bool(hash & 1 == 1),
                FieldType::Int => Value::Int((hash % 100_000) as i64),
                FieldType::Float => Value::Float((hash % 10_000) as f64 / 100.0),
                FieldType::String => Value::Str(format!(
                    "{}-{:08x}",
                    o.model().to_lowercase(),
                    hash & 0xffff_ffff
                )),
                FieldType::Bytes => Value::Bytes(hash.to_le_bytes().to_vec()),
                FieldType::Json => Value::Json(format!("{{\"hash\":{}}}", hash & 0xffff)),
                FieldType::Ref | FieldType::Refs => Value::Null,
            };
            (name.clone(), v)
        });
        Outcome::ok_with(fields.collect::<Vec<_>>())
    }
}

struct Noop;

impl Actuator for Noop {
    fn sync(&self, _: &ObjectView<'_>) -> Outcome {
        Outcome::ok()
    }
}

struct Fail;

impl Actuator for Fail {
    fn sync(&self, _: &ObjectView<'_>) -> Outcome {
        Outcome::failed("backend unavailable")
    }
    fn delete(&self, _: &ObjectView<'_>) -> Outcome {
        Outcome::failed("backend unavailable")
    }
}

/// Fails the first `fnv1a(key) % 3` attempts of each object.
#[derive(Default)]
struct Flaky {
    attempts: Mutex<BTreeMap<String, u32>>,
}

impl Actuator for Flaky {
    fn sync(&self, o: &ObjectView<'_>) -> Outcome {
        let n = bump(&self.attempts, o.key());
        let fails = (fnv1a(o.key()) % 3) as u32;
        if n <= fails {
            Outcome::failed(format!("flaky backend (attempt {n} of {})", fails + 1))
        } else {
            Outcome::ok()
        }
    }
}

/// Increments and returns the attempt counter of `key` (1 for the first attempt).
fn bump(map: &Mutex<BTreeMap<String, u32>>, key: &str) -> u32 {
    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
    let n = m.entry(key.to_string()).or_insert(0);
    *n = n.saturating_add(1);
    *n
}

/// An actuator with a fault script in front of it.
pub struct Faulty {
    inner: Arc<dyn Actuator>,
    faults: Vec<Fault>,
    attempts: Mutex<BTreeMap<String, u32>>,
}

impl Faulty {
    /// Wraps `inner` with the faults that may apply to its model (matched by key at call).
    pub fn new(inner: Arc<dyn Actuator>, faults: Vec<Fault>) -> Faulty {
        Faulty {
            inner,
            faults,
            attempts: Mutex::new(BTreeMap::new()),
        }
    }

    fn scripted(&self, o: &ObjectView<'_>, kind: TaskKind) -> Option<Outcome> {
        let scripted: Vec<&Fault> = self
            .faults
            .iter()
            .filter(|f| f.defer.is_some() || f.fail.is_some())
            .collect();
        let f = scripted
            .into_iter()
            .find(|f| matches(f, o.key(), o.model(), kind))?;
        let counter = format!("{}\u{0}{kind:?}", o.key());
        let n = bump(&self.attempts, &counter);
        let defer = f.defer.map_or(0, |c| c.times());
        let fail = f.fail.map_or(0, |c| c.times());
        let what = match kind {
            TaskKind::Sync => "sync",
            TaskKind::Delete => "delete",
        };
        if n <= defer {
            return Some(Outcome::deferred(f.message.clone().unwrap_or_else(|| {
                format!(
                    "scripted deferral of {what} ({} of {})",
                    n,
                    count_text(defer)
                )
            })));
        }
        if n - defer <= fail {
            return Some(Outcome::failed(f.message.clone().unwrap_or_else(|| {
                format!(
                    "scripted failure of {what} ({} of {})",
                    n - defer,
                    count_text(fail)
                )
            })));
        }
        None
    }
}

fn count_text(n: u32) -> String {
    if n == u32::MAX {
        "always".into()
    } else {
        n.to_string()
    }
}

/// Whether fault `f` applies to a `kind` actuation of (`key`, `model`).
pub fn matches(f: &Fault, key: &str, model: &str, kind: TaskKind) -> bool {
    let on = matches!(
        (f.on, kind),
        (FaultOn::Both, _) | (FaultOn::Sync, TaskKind::Sync) | (FaultOn::Delete, TaskKind::Delete)
    );
    on && f.key.as_deref().is_none_or(|k| k == key) && f.model.as_deref().is_none_or(|m| m == model)
}

impl Actuator for Faulty {
    fn sync(&self, o: &ObjectView<'_>) -> Outcome {
        self.scripted(o, TaskKind::Sync)
            .unwrap_or_else(|| self.inner.sync(o))
    }
    fn delete(&self, o: &ObjectView<'_>) -> Outcome {
        self.scripted(o, TaskKind::Delete)
            .unwrap_or_else(|| self.inner.delete(o))
    }
}

/// `ensure:Child.field`: every live object has a `Child` referencing it through `field`.
struct Ensure {
    child: String,
    field: String,
    many: bool,
}

impl Policy for Ensure {
    fn on_change(
        &self,
        input: &PolicyInput<'_>,
        state: &dyn StateView,
    ) -> Result<Vec<Change>, String> {
        if input.deleted {
            return Ok(vec![]);
        }
        let has = state.referrers(input.key).iter().any(|r| {
            state
                .get(r)
                .is_some_and(|o| o.model == self.child && !o.deleted)
        });
        if has {
            return Ok(vec![]);
        }
        // `<key>-<child>`; while an earlier one is being deleted (an owned object deleted
        // alone, R10), `<key>-<child>-2`, `-3`, ...
        let base = format!("{}-{}", input.key, self.child.to_lowercase());
        let mut key = base.clone();
        let mut n = 2;
        loop {
            match state.get(&key) {
                None => break,
                Some(o) if o.deleted => {
                    key = format!("{base}-{n}");
                    n += 1;
                }
                Some(_) => return Ok(vec![]),
            }
        }
        let value = if self.many {
            Value::Refs(vec![input.key.to_string()])
        } else {
            Value::Ref(input.key.to_string())
        };
        Ok(vec![Change::upsert(
            key,
            self.child.clone(),
            [(self.field.clone(), value)],
        )])
    }
}

/// Writes one line per notification into the run's timeline.
struct LogWatcher {
    sink: Sink,
}

impl Watcher for LogWatcher {
    fn notify(&self, e: &WatchEvent<'_>) -> Result<(), String> {
        let what = match e.kind {
            syncore::WatchKind::Declarative => {
                format!("declarative change of {}", e.changed.join(", "))
            }
            syncore::WatchKind::Feedback => {
                let values: Vec<String> = e
                    .changed
                    .iter()
                    .map(|f| {
                        let v = e
                            .object
                            .and_then(|o| o.feedback(f).cloned())
                            .unwrap_or_default();
                        format!("{f}={}", crate::report::show_value(&v))
                    })
                    .collect();
                format!("feedback {}", values.join(", "))
            }
            syncore::WatchKind::DeleteRequested => "delete requested".to_string(),
            syncore::WatchKind::Deleted => "deleted".to_string(),
        };
        let line = format!(
            "{} watcher saw {} {}: {what}",
            e.watcher_model, e.model, e.key
        );
        self.sink
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Count;
    use syncore::{ChangeSet, Config, Engine, Time};

    fn schema() -> Schema {
        Schema::from_json(
            r#"{"models": [{"name": "Net"},
            {"name": "Port", "fields": [{"name": "net", "type": "ref"}],
             "links": [{"field": "net", "target": "Net"}]}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn fault_script_defers_then_fails_then_passes() {
        let fault = Fault {
            key: Some("n".into()),
            model: None,
            on: FaultOn::Sync,
            defer: Some(Count::Times(1)),
            fail: Some(Count::Times(2)),
            message: None,
            slow_ms: None,
        };
        let a = Faulty::new(Arc::new(Noop), vec![fault]);
        let mut engine = Engine::new(schema(), Config::default());
        engine
            .apply(ChangeSet::new().upsert("n", "Net", Vec::<(String, Value)>::new()))
            .unwrap();
        let view = engine.view_key("n").unwrap();
        let outcomes: Vec<Outcome> = (0..4).map(|_| a.sync(&view)).collect();
        assert!(
            matches!(&outcomes[0], Outcome::Deferred { message } if message.contains("1 of 1"))
        );
        assert!(matches!(&outcomes[1], Outcome::Failed { message } if message.contains("1 of 2")));
        assert!(matches!(&outcomes[2], Outcome::Failed { message } if message.contains("2 of 2")));
        assert!(outcomes[3].is_ok());
        assert!(a.delete(&view).is_ok(), "deletes are not scripted");
    }

    #[test]
    fn ensure_policy_creates_one_child_and_refuses_bad_specs() {
        let s = schema();
        assert!(policy("ensure:Port.net", &s, "Net").is_ok());
        assert!(policy("ensure:Port.nope", &s, "Net").is_err());
        assert!(policy("ensure:Nope.net", &s, "Net").is_err());
        assert!(policy("whatever", &s, "Net").is_err());
        let mut engine = Engine::new(s.clone(), Config::default());
        engine
            .register_policy("Net", policy("ensure:Port.net", &s, "Net").unwrap())
            .unwrap();
        let r = engine
            .apply(ChangeSet::new().upsert("n", "Net", Vec::<(String, Value)>::new()))
            .unwrap();
        assert_eq!(r.changed, vec!["n".to_string(), "n-port".to_string()]);
        assert_eq!(engine.plan(Time(0)).wave_count(), 2);
    }
}
