//! Actuators for the CORD-like example: `Site`, `Slice`, `Instance`, `Network` and `Port`.
//!
//! There is no real backend: every id and address is derived from the object's key (FNV-1a),
//! so a retry or a restart reports the same feedback, and the native twin in the tests
//! (`tests/wasm.rs`) can check that both give byte-identical snapshots.
//!
//! | model    | needs                         | feedback                                   |
//! |----------|-------------------------------|--------------------------------------------|
//! | Site     | `name`                        | `id`                                       |
//! | Slice    | `site` (synced: has an `id`)  | `id`                                       |
//! | Network  | -                             | `id`, `cidr` = `10.a.b.0/24`               |
//! | Instance | `slice`                       | `id`, `ip` = `172.16.a.b`                  |
//! | Port     | `network` (synced: a `cidr`)  | `id`, `ip` inside the network's `cidr`     |

use syncore_plugin_sdk::{export_actuator, log, Actuator, ObjectView, Outcome, Value};

/// FNV-1a, 64 bits: a stable hash of a key (the same on every host and every run).
fn fnv1a(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The backend id of an object: model prefix and eight hex digits of the key's hash.
fn id(object: &ObjectView) -> String {
    format!(
        "{}-{:08x}",
        object.model.to_lowercase(),
        fnv1a(&object.key) & 0xffff_ffff
    )
}

/// The feedback field `name` of the dependency `field` points at, if it is synced.
fn dependency_feedback<'a>(object: &'a ObjectView, field: &str, name: &str) -> Option<&'a Value> {
    let key = object.field_str(field)?;
    object
        .dependency(key)?
        .feedback(name)
        .filter(|v| !v.is_null())
}

/// The CORD actuators, one component for every model (it dispatches on the model name).
struct Cord;

impl Actuator for Cord {
    fn sync(object: &ObjectView) -> Outcome {
        let hash = fnv1a(&object.key);
        let id = id(object);
        match object.model.as_str() {
            "Site" => match object.field_str("name") {
                Some(_) => Outcome::ok_with([("id", id)]),
                None => Outcome::failed("a site needs a name"),
            },
            "Slice" => match dependency_feedback(object, "site", "id") {
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
            "Port" => {
                let Some(cidr) =
                    dependency_feedback(object, "network", "cidr").and_then(Value::as_str)
                else {
                    return Outcome::deferred("the port's network has no cidr yet");
                };
                let prefix = cidr.trim_end_matches("0/24");
                let ip = format!("{prefix}{}", 2 + hash % 250);
                log::debug(&format!("port {} gets {ip}", object.key));
                Outcome::ok_with([("id", Value::from(id)), ("ip", Value::from(ip))])
            }
            other => Outcome::failed(format!("cord-actuators does not know model {other}")),
        }
    }

    fn delete(object: &ObjectView) -> Outcome {
        log::info(&format!("deleted {} {}", object.model, object.key));
        Outcome::ok()
    }
}

export_actuator!(Cord);
