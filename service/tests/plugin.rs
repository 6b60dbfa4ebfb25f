//! Models synced by a WASM plugin in a deployment, on the real `syncore-serve` binary: the
//! Rust CORD actuator (`plugins/cord-actuators`), granted outbound HTTP to the loopback
//! inventory (`syncore-inventory`) and a token secret read from a file or an environment
//! variable.
//!
//! Goal: change sets applied over the HTTP API end with the inventory holding exactly the
//! declarative state (creates, updates and deletes); a 500 from the inventory is a failure
//! with backoff, then a success; the token never reaches the data directory, the API's
//! answers, the event stream or `/metrics`, but does reach the inventory (which requires
//! it, and refuses a wrong or absent one without changing anything); a missing plugin
//! file and a grant naming an unknown secret stop the start with an error naming the model
//! and the file.
//!
//! Method: one inventory per test on 127.0.0.1 (a free port); the deployment written into
//! a temp dir; the service driven through its HTTP API; the inventory's records and request
//! log read back after convergence.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{get, wait_until, Server};
use serde_json::{json, Value};
use syncore_inventory::{Faults, Inventory};
use syncore_service::Client;

/// The token the plugin sends; searched for everywhere it must not be.
const TOKEN: &str = "tok-3f9a1c77e2b54d08-inventory";

/// Backoff base of the deployments (no jitter), in ms.
const BACKOFF_MS: u64 = 600;

const MODELS: [&str; 5] = ["Site", "Slice", "Network", "Instance", "Port"];

fn schema() -> Value {
    json!({"models": [
      {"name": "Site", "fields": [{"name": "name", "type": "string"}],
       "feedback": [{"name": "id", "type": "string"}]},
      {"name": "Slice", "fields": [{"name": "name", "type": "string"}, {"name": "site", "type": "ref"}],
       "feedback": [{"name": "id", "type": "string"}],
       "links": [{"field": "site", "target": "Site"}]},
      {"name": "Network", "fields": [{"name": "name", "type": "string"}, {"name": "slice", "type": "ref"}],
       "feedback": [{"name": "id", "type": "string"}, {"name": "cidr", "type": "string"}],
       "links": [{"field": "slice", "target": "Slice"}]},
      {"name": "Instance", "fields": [{"name": "name", "type": "string"}, {"name": "slice", "type": "ref"}],
       "feedback": [{"name": "id", "type": "string"}, {"name": "ip", "type": "string"}],
       "links": [{"field": "slice", "target": "Slice", "into": ["id"]}]},
      {"name": "Port", "fields": [{"name": "network", "type": "ref"}, {"name": "instance", "type": "ref"}],
       "feedback": [{"name": "id", "type": "string"}, {"name": "ip", "type": "string"}],
       "links": [{"field": "network", "target": "Network"}, {"field": "instance", "target": "Instance"}]}
    ]})
}

/// The CORD grant: the inventory's origin only, told where it is and which secret to
/// send as a bearer token.
fn grants(inventory: &Inventory) -> Value {
    json!({
        "http": [inventory.origin()],
        "config": {"inventory": inventory.origin(), "inventory-auth": "token"},
        "secrets": {"token": "inventory"},
        "request_timeout_ms": 10000,
        "call_timeout_ms": 2000,
        "calls_in_flight_max": 8
    })
}

/// Writes a deployment whose five CORD models are synced by the plugin (the component is
/// copied beside the file and named relative to it), with `secret` as the source of the
/// `inventory` secret; `edit` changes the JSON before it is written.
fn deployment(
    dir: &Path,
    inventory: &Inventory,
    secret: Value,
    edit: impl FnOnce(&mut Value),
) -> PathBuf {
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    std::fs::copy(
        syncore_test_plugins::CORD_ACTUATORS,
        dir.join("plugins/cord_actuators.wasm"),
    )
    .unwrap();
    let models: serde_json::Map<String, Value> = MODELS
        .iter()
        .map(|m| {
            (
                m.to_string(),
                json!({"plugin": "plugins/cord_actuators.wasm", "grants": grants(inventory),
                       "timeout_ms": 20000}),
            )
        })
        .collect();
    let mut d = json!({
        "schema": schema(),
        "models": models,
        "secrets": {"inventory": secret},
        "listen": "127.0.0.1:0",
        "data_dir": "data",
        "settings": {"backoff": {"base_ms": BACKOFF_MS, "jitter_permille": 0}},
    });
    edit(&mut d);
    let path = dir.join("deploy.json");
    std::fs::write(&path, serde_json::to_string_pretty(&d).unwrap()).unwrap();
    path
}

/// The CORD deployment of tests/wasm_backend.rs, as a change set.
const CHANGES: &str = r#"[
  {"upsert": {"key": "princeton", "model": "Site", "fields": {"name": "Princeton"}}},
  {"upsert": {"key": "slice-a", "model": "Slice", "fields": {"name": "a", "site": "princeton"}}},
  {"upsert": {"key": "net-a", "model": "Network", "fields": {"name": "a", "slice": "slice-a"}}},
  {"upsert": {"key": "net-b", "model": "Network", "fields": {"name": "b", "slice": "slice-a"}}},
  {"upsert": {"key": "vm-a1", "model": "Instance", "fields": {"name": "a1", "slice": "slice-a"}}},
  {"upsert": {"key": "vm-a2", "model": "Instance", "fields": {"name": "a2", "slice": "slice-a"}}},
  {"upsert": {"key": "port-a1", "model": "Port", "fields": {"network": "net-a", "instance": "vm-a1"}}},
  {"upsert": {"key": "port-b2", "model": "Port", "fields": {"network": "net-b", "instance": "vm-a2"}}}
]"#;

fn collection(model: &str) -> Option<&'static str> {
    match model {
        "Network" => Some("networks"),
        "Instance" => Some("instances"),
        "Port" => Some("ports"),
        _ => None,
    }
}

fn apply(c: &Client, changes: &str) {
    let a = c.apply(changes).unwrap();
    assert!(a.ok(), "apply: {} {}", a.status, a.body);
}

fn converge(c: &Client) {
    wait_until(Duration::from_secs(60), "convergence", || {
        get(c, "/v1/status")["converged"] == true
    });
}

/// Checks that the inventory holds exactly the declarative state the service reports for
/// its backed objects (same keys, same fields), and that each one's feedback `id` is the
/// inventory's.
fn assert_inventory_matches(c: &Client, inventory: &Inventory) {
    let objects = get(c, "/v1/objects?limit=100000");
    let mut expected: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    let records = inventory.records();
    for o in objects.as_array().unwrap() {
        assert_eq!(o["status"], "synced", "{o}");
        let Some(coll) = collection(o["model"].as_str().unwrap()) else {
            continue;
        };
        let key = o["key"].as_str().unwrap();
        expected
            .entry(coll.to_string())
            .or_default()
            .insert(key.to_string(), o["fields"].clone());
        let record = records
            .get(coll, key)
            .unwrap_or_else(|| panic!("the inventory has no {coll}/{key}"));
        assert_eq!(
            o["feedback"]["id"], record.id,
            "{key}: the feedback id is the inventory's"
        );
    }
    let actual: BTreeMap<String, BTreeMap<String, Value>> = records
        .all()
        .iter()
        .filter(|(_, rs)| !rs.is_empty())
        .map(|(coll, rs)| {
            let rs = rs
                .iter()
                .map(|(k, r)| (k.clone(), Value::Object(r.fields.clone())))
                .collect();
            (coll.clone(), rs)
        })
        .collect();
    assert_eq!(
        actual, expected,
        "the inventory holds exactly the declarative state"
    );
}

/// Collects the `/v1/events` stream (server-sent events) on a thread, until dropped.
struct Events {
    text: Arc<Mutex<String>>,
    stream: TcpStream,
}

impl Events {
    fn open(url: &str) -> Events {
        let addr = url.trim_start_matches("http://").trim_end_matches('/');
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let text = Arc::new(Mutex::new(String::new()));
        let (sink, mut reader) = (text.clone(), stream.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        // The subscription is in place once the answer's head arrived.
        wait_until(Duration::from_secs(10), "the event stream's head", || {
            text.lock().unwrap().contains("\r\n\r\n")
        });
        Events { text, stream }
    }

    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// The `data:` lines as JSON, in order.
    fn events(&self) -> Vec<Value> {
        self.text()
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Every file below `dir` that holds `needle`, read as bytes.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files += 1;
                let bytes = std::fs::read(&path).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path);
                }
            }
        }
    }
    assert!(files > 0, "{} holds no files at all", dir.display());
    found
}

/// Goal: the plugin syncs through the inventory: after each change set the inventory
/// holds exactly the declarative state, an update updates, and a delete (of a port and
/// the network it is on, R7) deletes in the inventory, the port first.
#[test]
fn a_plugin_synced_deployment_converges_the_inventory_creates_updates_and_deletes() {
    let inventory = Inventory::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inventory.token"), format!("{TOKEN}\n")).unwrap();
    let deploy = deployment(
        dir.path(),
        &inventory,
        json!({"file": "inventory.token"}),
        |_| {},
    );
    let server = Server::start(&deploy).unwrap();
    let c = server.client();
    apply(&c, CHANGES);
    converge(&c);
    assert_inventory_matches(&c, &inventory);
    assert_eq!(
        inventory.records().len(),
        6,
        "two networks, instances, ports"
    );

    // An update, and a delete of a port with its network.
    apply(
        &c,
        r#"[{"upsert": {"key": "net-a", "model": "Network", "fields": {"name": "a-renamed"}}},
            {"delete": {"key": "port-b2"}}, {"delete": {"key": "net-b"}}]"#,
    );
    converge(&c);
    assert_inventory_matches(&c, &inventory);
    let records = inventory.records();
    assert_eq!(
        records.get("networks", "net-a").unwrap().fields["name"],
        "a-renamed"
    );
    assert!(records.get("ports", "port-b2").is_none(), "port-b2 deleted");
    assert!(records.get("networks", "net-b").is_none(), "net-b deleted");
    assert_eq!(records.len(), 4);
    let log = inventory.requests();
    let at = |method: &str, path: &str| {
        log.iter()
            .position(|r| r.method == method && r.path == path && (200..300).contains(&r.status))
            .unwrap_or_else(|| panic!("no successful {method} {path} in {log:?}"))
    };
    assert!(
        at("DELETE", "/v1/ports/port-b2") < at("DELETE", "/v1/networks/net-b"),
        "the port is deleted before its network (R7)"
    );
    // The service went on after the actuations: the objects are gone from it too.
    let a = c.object("net-b").unwrap();
    assert_eq!(a.status, 404, "{}", a.body);
}

/// Goal: a 500 from the inventory fails the actuation, the object backs off (R5: its
/// retry no sooner than the backoff base after the failure), then succeeds; and the token,
/// read from an environment variable, appears in none of the data directory's files, the
/// API's answers, the event stream or the metrics, though the plugin sent it.
#[test]
fn a_500_backs_off_then_succeeds_and_the_token_never_leaks() {
    let inventory = Inventory::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let var = format!("SYNCORE_TEST_PLUGIN_TOKEN_{}", std::process::id());
    // The child inherits it.
    std::env::set_var(&var, TOKEN);
    let deploy = deployment(dir.path(), &inventory, json!({"env": var}), |_| {});
    let server = Server::start(&deploy).unwrap();
    assert!(!server.first_line.contains(TOKEN));
    let c = server.client();
    let events = Events::open(&server.url);
    apply(&c, CHANGES);
    converge(&c);

    // The next request answers 500: the new network's first attempt.
    inventory.set_faults(Faults {
        fail_next: 1,
        ..Faults::default()
    });
    apply(
        &c,
        r#"[{"upsert": {"key": "net-c", "model": "Network", "fields": {"name": "c", "slice": "slice-a"}}}]"#,
    );
    let mut seen_backing_off = None;
    wait_until(
        Duration::from_secs(30),
        "net-c to fail and back off",
        || {
            let o = get(&c, "/v1/objects/net-c");
            if o["failures"] == 1 && o["hold"]["reason"] == "backing_off" {
                seen_backing_off = Some(o);
                true
            } else {
                false
            }
        },
    );
    let o = seen_backing_off.unwrap();
    assert!(
        o["message"].as_str().unwrap().contains("500"),
        "the failure names the inventory's answer: {o}"
    );
    assert!(o["retry_at"].as_u64().is_some(), "{o}");
    converge(&c);
    assert_inventory_matches(&c, &inventory);
    let o = get(&c, "/v1/objects/net-c");
    assert_eq!(
        o["failures"], 0,
        "the success clears the failure count: {o}"
    );

    // The inventory saw the 500, then the retry's success.
    let log = inventory.requests();
    let puts: Vec<u16> = log
        .iter()
        .filter(|r| r.method == "PUT" && r.path == "/v1/networks/net-c")
        .map(|r| r.status)
        .collect();
    assert_eq!(puts.len(), 2, "one failed PUT, one retry: {puts:?}");
    assert_eq!(puts[0], 500);
    assert!((200..300).contains(&puts[1]), "{puts:?}");
    // The event stream shows the failure, then the success no sooner than the backoff.
    let stream = events.events();
    let ends: Vec<&Value> = stream
        .iter()
        .filter(|e| e["event"] == "did_actuate" && e["key"] == "net-c")
        .collect();
    assert_eq!(ends.len(), 2, "{ends:?}");
    assert_eq!(ends[0]["outcome"], "failed");
    assert_eq!(ends[1]["outcome"], "ok");
    let retry_start = stream
        .iter()
        .filter(|e| e["event"] == "will_actuate" && e["key"] == "net-c")
        .nth(1)
        .expect("a second attempt")["at"]
        .as_u64()
        .unwrap();
    let failed_at = ends[0]["at"].as_u64().unwrap();
    assert!(
        retry_start >= failed_at + BACKOFF_MS,
        "the retry at {retry_start} waits the backoff ({BACKOFF_MS} ms) after the failure at {failed_at}"
    );

    // A graceful stop writes the final snapshot; then nothing the service wrote or said
    // holds the token.
    let answers: Vec<String> = [
        "/",
        "/metrics",
        "/v1/status",
        "/v1/objects?limit=100000",
        "/v1/objects/net-c",
        "/v1/objects/port-a1",
        "/v1/plan",
        "/v1/graph",
        "/v1/actuations",
        "/v1/state-hash",
    ]
    .iter()
    .map(|p| {
        let a = c.get(p).unwrap();
        assert!(a.ok(), "GET {p}: {} {}", a.status, a.body);
        a.body
    })
    .collect();
    for (p, body) in answers.iter().enumerate() {
        assert!(!body.contains(TOKEN), "answer {p} holds the token");
    }
    let metrics = &answers[1];
    assert!(
        metrics.contains("Network"),
        "the metrics count the plugin's actuations by model"
    );
    // The plugin's log lines join the stream.
    assert!(
        stream.iter().any(|e| e["event"] == "plugin_log"
            && e["plugin"] == "cord_actuators"
            && e["key"] == "port-a1"
            && e["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("port port-a1 gets ")),
        "no log line of the plugin in {stream:?}"
    );
    let text = events.text();
    assert!(text.contains("did_actuate"), "the stream was read");
    assert!(!text.contains(TOKEN), "the event stream holds the token");
    drop(events);
    let pid = server.child.id();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let mut server = server;
    let start = Instant::now();
    while server.child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no graceful stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The log and its snapshots (the search asserts it found files to read).
    let leaks = files_holding(&dir.path().join("data"), TOKEN.as_bytes());
    assert!(leaks.is_empty(), "files holding the token: {leaks:?}");
    // The search would find it.
    std::fs::write(dir.path().join("data/probe"), TOKEN).unwrap();
    assert_eq!(
        files_holding(&dir.path().join("data"), TOKEN.as_bytes()).len(),
        1
    );
}

/// Goal: the bearer token reaching the backend is the deployment's secret. With the
/// inventory requiring it, every request the plugin sent carried exactly `Bearer <token>`
/// and the inventory converged; a service whose secret holds another token, and one whose
/// grant sends none, are refused by the inventory (401): their objects fail with backoff,
/// naming the status, and the inventory's records do not change.
#[test]
fn the_backend_sees_the_granted_token_and_refuses_a_wrong_or_absent_one() {
    const WRONG: &str = "tok-00000000deadbeef-wrong";
    let inventory = Inventory::start().unwrap();
    inventory.require_token(Some(TOKEN));
    let bearer = |token: &str| Some(format!("Bearer {token}"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inventory.token"), TOKEN).unwrap();
    let deploy = deployment(
        dir.path(),
        &inventory,
        json!({"file": "inventory.token"}),
        |_| {},
    );
    let server = Server::start(&deploy).unwrap();
    let c = server.client();
    apply(&c, CHANGES);
    converge(&c);
    assert_inventory_matches(&c, &inventory);
    let log = inventory.requests();
    assert_eq!(log.len(), 6, "one PUT per backed object: {log:?}");
    for r in &log {
        assert_eq!(r.authorization, bearer(TOKEN), "{r:?}");
        assert!((200..300).contains(&r.status), "{r:?}");
    }
    server.kill();
    let records = inventory.records();

    // The same objects with other fields, from services sending a wrong token or none.
    let changed = CHANGES.replace(r#""name": "a", "slice""#, r#""name": "a-refused", "slice""#);
    assert_ne!(changed, CHANGES);
    /// A change to a deployment's JSON.
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit, Option<String>); 2] = [
        ("a wrong token", |_| {}, bearer(WRONG)),
        (
            "no token",
            |d| {
                for m in MODELS {
                    d["models"][m]["grants"]["config"]
                        .as_object_mut()
                        .unwrap()
                        .remove("inventory-auth");
                }
            },
            None,
        ),
    ];
    for (case, edit, sent) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inventory.token"), WRONG).unwrap();
        let deploy = deployment(
            dir.path(),
            &inventory,
            json!({"file": "inventory.token"}),
            edit,
        );
        let server = Server::start(&deploy).unwrap();
        let c = server.client();
        let before = inventory.requests().len();
        apply(&c, &changed);
        let mut failed = Value::Null;
        wait_until(
            Duration::from_secs(30),
            &format!("{case}: net-a to fail twice"),
            || {
                failed = get(&c, "/v1/objects/net-a");
                failed["failures"].as_u64().unwrap_or(0) >= 2
            },
        );
        assert!(
            failed["message"].as_str().unwrap_or("").contains("401"),
            "{case}: the failure names the inventory's answer: {failed}"
        );
        assert_ne!(failed["status"], "synced", "{case}: {failed}");
        let log = inventory.requests();
        let refused = &log[before..];
        assert!(
            refused.iter().any(|r| r.path == "/v1/networks/net-a"),
            "{case}: {refused:?}"
        );
        for r in refused {
            assert_eq!(r.status, 401, "{case}: {r:?}");
            assert_eq!(r.authorization, sent, "{case}: {r:?}");
        }
        assert_eq!(
            inventory.records(),
            records,
            "{case}: the inventory's records are unchanged"
        );
        server.kill();
    }
}

/// Runs `syncore-serve` on a deployment that must not start; its stderr.
fn refused(deploy: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncore-serve"))
        .arg(deploy)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "the start is refused");
    assert!(out.stdout.is_empty(), "nothing listened");
    String::from_utf8(out.stderr).unwrap()
}

/// Goal: a missing plugin file, a file that is not a component, a grant naming an
/// unknown secret and a bad origin each stop the start before anything runs, with an
/// error naming the model, the file and the offending field; no data directory is made.
#[test]
fn a_missing_plugin_or_a_bad_grant_stops_the_start_naming_model_and_file() {
    let inventory = Inventory::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inventory.token"), TOKEN).unwrap();
    let secret = json!({"file": "inventory.token"});

    let deploy = deployment(dir.path(), &inventory, secret.clone(), |d| {
        d["models"]["Port"]["plugin"] = json!("plugins/missing.wasm");
    });
    let err = refused(&deploy);
    let file = dir.path().join("plugins/missing.wasm");
    assert!(
        err.contains(&format!("models.Port: plugin {}", file.display())),
        "{err}"
    );
    assert!(err.contains("No such file"), "{err}");

    std::fs::write(dir.path().join("plugins/junk.wasm"), "not a component").unwrap();
    let deploy = deployment(dir.path(), &inventory, secret.clone(), |d| {
        d["models"]["Site"]["plugin"] = json!("plugins/junk.wasm");
    });
    let err = refused(&deploy);
    assert!(err.contains("models.Site: plugin "), "{err}");
    assert!(err.contains("junk.wasm"), "{err}");
    assert!(err.contains("not a valid wasm component"), "{err}");

    let deploy = deployment(dir.path(), &inventory, secret.clone(), |d| {
        for m in MODELS {
            d["models"][m]["grants"]["secrets"]["token"] = json!("nope");
        }
    });
    let err = refused(&deploy);
    assert!(
        err.contains("cord_actuators.wasm: grants.secrets.token: the deployment has no secret named \"nope\""),
        "{err}"
    );
    assert!(
        err.contains("models.Instance: plugin "),
        "the first model is named: {err}"
    );

    let deploy = deployment(dir.path(), &inventory, secret, |d| {
        d["models"]["Network"]["grants"]["http"] = json!(["127.0.0.1:80"]);
    });
    let err = refused(&deploy);
    assert!(err.contains("models.Network: plugin "), "{err}");
    assert!(
        err.contains("grants.http[0]: bad origin \"127.0.0.1:80\""),
        "{err}"
    );
    assert!(!err.contains(TOKEN), "{err}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing started: no data directory"
    );
}

/// The number of OS threads of process `pid` (Linux: `/proc/<pid>/status`).
fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads: line")
}

/// Goal: plugin actuations run on the async path: 48 of them waiting at once on a slow
/// inventory (every request answered after 1.5 s) hold no OS thread each (the service
/// process has far fewer threads than actuations in flight), and the inventory still ends
/// holding exactly the declarative state.
#[test]
fn plugin_actuations_waiting_on_http_hold_no_thread() {
    const NETWORKS: usize = 48;
    let inventory = Inventory::start_with(
        "127.0.0.1:0".parse().unwrap(),
        Faults {
            latency_ms: 1500,
            ..Faults::default()
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inventory.token"), TOKEN).unwrap();
    let deploy = deployment(
        dir.path(),
        &inventory,
        json!({"file": "inventory.token"}),
        |d| {
            d["models"]["Network"]["grants"]["calls_in_flight_max"] = json!(64);
        },
    );
    let server = Server::start(&deploy).unwrap();
    let c = server.client();
    let mut changes = vec![
        json!({"upsert": {"key": "princeton", "model": "Site", "fields": {"name": "Princeton"}}}),
        json!({"upsert": {"key": "slice-a", "model": "Slice", "fields": {"name": "a", "site": "princeton"}}}),
    ];
    for i in 0..NETWORKS {
        changes.push(
            json!({"upsert": {"key": format!("net-{i:02}"), "model": "Network",
            "fields": {"name": format!("n{i}"), "slice": "slice-a"}}}),
        );
    }
    let start = Instant::now();
    apply(&c, &Value::Array(changes).to_string());
    let mut most = (0, 0);
    wait_until(
        Duration::from_secs(30),
        "every network in flight at once",
        || {
            let in_flight = get(&c, "/v1/status")["in_flight"].as_u64().unwrap() as usize;
            if in_flight >= NETWORKS {
                most = (in_flight, threads(server.child.id()));
                true
            } else {
                false
            }
        },
    );
    let (in_flight, threads) = most;
    assert!(
        threads < NETWORKS / 2,
        "{in_flight} actuations in flight on {threads} threads: they hold threads"
    );
    converge(&c);
    // One after the other they would take 48 x 1.5 s = 72 s.
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "the requests overlapped: converged in {:?}",
        start.elapsed()
    );
    assert_inventory_matches(&c, &inventory);
    assert_eq!(inventory.records().collection("networks").len(), NETWORKS);
}

/// Goal: a plugin actuation stuck on a backend that never answers is overdue after its
/// model's `timeout_ms`: it fails as timed out (its call cancelled), backs off, and once
/// the backend answers again the retry succeeds and the inventory holds the state.
#[test]
fn an_overdue_plugin_actuation_times_out_then_the_retry_succeeds() {
    let inventory = Inventory::start_with(
        "127.0.0.1:0".parse().unwrap(),
        Faults {
            hang: true,
            ..Faults::default()
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inventory.token"), TOKEN).unwrap();
    let deploy = deployment(
        dir.path(),
        &inventory,
        json!({"file": "inventory.token"}),
        |d| d["models"]["Network"]["timeout_ms"] = json!(400),
    );
    let server = Server::start(&deploy).unwrap();
    let c = server.client();
    apply(
        &c,
        r#"[{"upsert": {"key": "princeton", "model": "Site", "fields": {"name": "Princeton"}}},
            {"upsert": {"key": "slice-a", "model": "Slice", "fields": {"name": "a", "site": "princeton"}}},
            {"upsert": {"key": "net-a", "model": "Network", "fields": {"name": "a", "slice": "slice-a"}}}]"#,
    );
    let mut failed = Value::Null;
    wait_until(Duration::from_secs(30), "net-a to time out", || {
        failed = get(&c, "/v1/objects/net-a");
        failed["failures"].as_u64() >= Some(1)
    });
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("timed out after 400 ms"),
        "{failed}"
    );
    assert!(inventory.records().is_empty(), "nothing was answered");
    inventory.set_faults(Faults::default());
    converge(&c);
    assert_inventory_matches(&c, &inventory);
    assert_eq!(inventory.records().len(), 1);
}
