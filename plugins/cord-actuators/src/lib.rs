//! Actuators for the CORD-like example: `Site`, `Slice`, `Instance`, `Network` and `Port`.
//!
//! With the configuration value `inventory` set (a base URL such as `http://127.0.0.1:8080`,
//! whose origin the embedder must grant), networks, instances and ports are created, updated
//! and deleted in that inventory service (`inventory/` in the repository): `sync` PUTs the
//! object's declarative fields under its key, `delete` DELETEs it (a 404 is success), and the
//! service's `id` is reported as feedback. With `inventory-auth` naming a granted secret, the secret
//! is sent as a bearer token. Any status other than 2xx fails the call (the object backs off and retries).
//!
//! Without `inventory`, there is no backend: every id is derived from the object's key
//! (FNV-1a), so a retry or a restart reports the same feedback, and the native twin in the
//! tests (`tests/wasm.rs`) can check that both give byte-identical snapshots. Addresses
//! (`cidr`, `ip`) are derived from the key either way.
//!
//! | model    | needs                         | feedback                                   |
//! |----------|-------------------------------|--------------------------------------------|
//! | Site     | `name`                        | `id`                                       |
//! | Slice    | `site` (synced: has an `id`)  | `id`                                       |
//! | Network  | -                             | `id`, `cidr` = `10.a.b.0/24`               |
//! | Instance | `slice`                       | `id`, `ip` = `172.16.a.b`                  |
//! | Port     | `network` (synced: a `cidr`)  | `id`, `ip` inside the network's `cidr`     |

use syncore_plugin_sdk::{
    config, export_actuator, http, log, Actuator, ObjectView, Outcome, Value,
};

/// The inventory collection of a model, if the inventory holds it.
fn collection(model: &str) -> Option<&'static str> {
    match model {
        "Network" => Some("networks"),
        "Instance" => Some("instances"),
        "Port" => Some("ports"),
        _ => None,
    }
}

/// A field value as JSON.
fn json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Boolean(b) => (*b).into(),
        Value::Integer(i) => (*i).into(),
        Value::Float(x) => (*x).into(),
        Value::Text(s) | Value::Reference(s) => s.clone().into(),
        Value::Json(text) => serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
        Value::Bytes(b) => b.iter().map(|&x| serde_json::Value::from(x)).collect(),
        Value::References(keys) => keys.iter().cloned().collect(),
    }
}

/// The inventory's base URL, if configured.
fn inventory() -> Option<String> {
    config::get("inventory").map(|u| u.trim_end_matches('/').to_string())
}

/// The headers of every inventory request: with the configuration value `inventory-auth`
/// naming a secret, that secret as a bearer token (a secret not granted fails the call).
fn auth() -> Vec<(String, String)> {
    let Some(name) = config::get("inventory-auth") else {
        return Vec::new();
    };
    match config::secret(&name) {
        Ok(token) => vec![("authorization".into(), format!("Bearer {token}"))],
        Err(_) => Vec::new(),
    }
}

/// PUTs the object's declarative fields; the service's id.
fn put(base: &str, collection: &str, object: &ObjectView) -> Result<String, String> {
    let fields: serde_json::Map<String, serde_json::Value> = object
        .fields
        .iter()
        .map(|f| (f.name.clone(), json(&f.value)))
        .collect();
    let body = serde_json::Value::Object(fields).to_string();
    let url = format!("{base}/v1/{collection}/{}", object.key);
    let headers = auth();
    let mut all: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    all.extend(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let reply =
        http::request("PUT", &url, &all, Some(body.as_bytes())).map_err(|e| e.to_string())?;
    if !(200..300).contains(&reply.status) {
        return Err(http::Error::status("PUT", &url, &reply).to_string());
    }
    let record: serde_json::Value = serde_json::from_slice(&reply.body)
        .map_err(|e| format!("PUT {url}: the answer is not JSON: {e}"))?;
    record["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("PUT {url}: the answer has no id"))
}

/// DELETEs the object (a 404 means it is already gone).
fn remove(base: &str, collection: &str, key: &str) -> Result<(), String> {
    let url = format!("{base}/v1/{collection}/{key}");
    let headers = auth();
    let all: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let reply = http::request("DELETE", &url, &all, None).map_err(|e| e.to_string())?;
    if (200..300).contains(&reply.status) || reply.status == 404 {
        Ok(())
    } else {
        Err(http::Error::status("DELETE", &url, &reply).to_string())
    }
}

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
        let mut id = id(object);
        if let (Some(base), Some(collection)) = (inventory(), collection(&object.model)) {
            if object.model == "Port" && dependency_feedback(object, "network", "cidr").is_none() {
                return Outcome::deferred("the port's network has no cidr yet");
            }
            match put(&base, collection, object) {
                Ok(backend_id) => id = backend_id,
                Err(message) => return Outcome::failed(message),
            }
        }
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
        if let (Some(base), Some(collection)) = (inventory(), collection(&object.model)) {
            if let Err(message) = remove(&base, collection, &object.key) {
                return Outcome::failed(message);
            }
        }
        log::info(&format!("deleted {} {}", object.model, object.key));
        Outcome::ok()
    }
}

export_actuator!(Cord);
