//! The built-in actuators a deployment can name, over owned copies of objects (so the
//! engine goes on while they run).
//!
//! | name | what it does |
//! |---|---|
//! | `rest` | an HTTP inventory: `PUT {url}/{key}` with the declarative fields as a JSON object, `DELETE {url}/{key}` (404 counts as deleted); 2xx is `Ok` (feedback: the response's JSON object fields that are feedback fields of the model), 409/423/429/503 `Deferred`, anything else `Failed` |
//! | `delay` | waits `delay_ms`, then fails the first attempts of some objects (`fail_first`), then succeeds |
//! | `noop` | succeeds at once |
//!
//! A model synced by a WASM plugin runs it through [`ModelActuator::Async`] instead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use syncore::{AsyncActuator, Outcome, TaskKind, Value};

use crate::deploy::ModelDeploy;

/// What an actuator gets: an owned copy of the object.
#[derive(Clone, Debug)]
pub struct Doc {
    /// The key.
    pub key: String,
    /// The model.
    pub model: String,
    /// The version being enacted.
    pub version: u64,
    /// Sync or delete.
    pub kind: TaskKind,
    /// The attempt (1 for the first).
    pub attempt: u32,
    /// Declarative fields.
    pub fields: Vec<(String, Value)>,
    /// The model's feedback field names.
    pub feedback_names: Vec<String>,
}

/// A built-in actuator.
pub trait Actuate: Send + Sync {
    /// Brings the backend to `doc` (sync) or removes it (delete). Blocking.
    fn run(&self, doc: &Doc) -> Outcome;
}

/// How one model's actuations run.
#[derive(Clone)]
pub enum ModelActuator {
    /// A built-in actuator, on a blocking thread of the runtime.
    Blocking(Arc<dyn Actuate>),
    /// A WASM plugin (or any asynchronous actuator), as a task of the runtime: one
    /// waiting on I/O holds no thread. Its cancel token is set when the actuation is
    /// overdue or abandoned at shutdown.
    Async(Arc<dyn AsyncActuator>),
}

/// The built-in actuator a model's deployment names.
pub fn builtin(d: &ModelDeploy, secrets: &BTreeMap<String, String>) -> Box<dyn Actuate> {
    match d.actuator.as_deref().unwrap_or("noop") {
        "rest" => Box::new(Rest {
            url: d
                .url
                .clone()
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_string(),
            token: d
                .token_secret
                .as_ref()
                .and_then(|s| secrets.get(s).cloned()),
            agent: ureq::Agent::new_with_config(
                ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_millis(d.timeout_ms)))
                    .build(),
            ),
        }),
        "delay" => Box::new(Delay {
            delay: Duration::from_millis(d.delay_ms),
            fail_first: d.fail_first,
        }),
        _ => Box::new(Noop),
    }
}

struct Noop;

impl Actuate for Noop {
    fn run(&self, _: &Doc) -> Outcome {
        Outcome::ok()
    }
}

struct Delay {
    delay: Duration,
    fail_first: u32,
}

impl Actuate for Delay {
    fn run(&self, doc: &Doc) -> Outcome {
        std::thread::sleep(self.delay);
        let digit = doc
            .key
            .chars()
            .last()
            .and_then(|c| c.to_digit(10))
            .unwrap_or(0);
        let fails = digit % (self.fail_first + 1);
        if doc.kind == TaskKind::Sync && doc.attempt <= fails {
            return Outcome::failed(format!(
                "backend refused attempt {} of {} (fails {fails} times)",
                doc.attempt, doc.key
            ));
        }
        let feedback = doc
            .feedback_names
            .iter()
            .map(|n| (n.clone(), Value::Str(format!("{}-{n}", doc.key))));
        Outcome::ok_with(feedback)
    }
}

struct Rest {
    url: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Rest {
    fn call(&self, doc: &Doc) -> Result<(u16, String), String> {
        let url = format!("{}/{}", self.url, encode_key(&doc.key));
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let resp = match doc.kind {
            TaskKind::Sync => {
                let fields: serde_json::Map<String, serde_json::Value> = doc
                    .fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect();
                let body = serde_json::Value::Object(fields);
                let mut req = self
                    .agent
                    .put(&url)
                    .header("content-type", "application/json");
                if let Some(a) = &auth {
                    req = req.header("authorization", a);
                }
                req.send(body.to_string())
            }
            TaskKind::Delete => {
                let mut req = self.agent.delete(&url);
                if let Some(a) = &auth {
                    req = req.header("authorization", a);
                }
                req.call()
            }
        };
        let mut resp = resp.map_err(|e| format!("{} {url}: {e}", method(doc.kind)))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{} {url}: reading the answer: {e}", method(doc.kind)))?;
        Ok((status, text))
    }
}

fn method(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Sync => "PUT",
        TaskKind::Delete => "DELETE",
    }
}

impl Actuate for Rest {
    fn run(&self, doc: &Doc) -> Outcome {
        match self.call(doc) {
            Err(e) => Outcome::failed(e),
            Ok((s, _)) if doc.kind == TaskKind::Delete && (s == 404 || s == 410) => Outcome::ok(),
            Ok((s, text)) if (200..300).contains(&s) => {
                let parsed: Option<serde_json::Map<String, serde_json::Value>> =
                    serde_json::from_str(&text).ok();
                let feedback = parsed
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| doc.feedback_names.contains(k))
                    .map(|(k, v)| (k, Value::from_json(&v)));
                Outcome::ok_with(feedback)
            }
            Ok((s @ (409 | 423 | 429 | 503), text)) => {
                Outcome::deferred(format!("{} answered {s}: {}", self.url, snippet(&text)))
            }
            Ok((s, text)) => {
                Outcome::failed(format!("{} answered {s}: {}", self.url, snippet(&text)))
            }
        }
    }
}

fn snippet(text: &str) -> &str {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim()
}

/// Percent-encodes a key for a URL path segment.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
