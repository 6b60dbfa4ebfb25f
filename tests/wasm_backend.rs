//! WASM actuators that actuate: plugins granted outbound HTTP, configuration and secrets,
//! against the real inventory service on loopback (`syncore-inventory`), through the public
//! API only.
//!
//! Goal: with a grant, the CORD actuator creates, updates and deletes in the backend, which
//! ends holding exactly the declarative state; without one (or beyond it), a plugin fails
//! only its own object, with a message naming the plugin and the refused origin, secret,
//! file or limit (P3). Secrets never reach a log line, a message, a trace or a snapshot.
//!
//! Method: an `Inventory` per test on 127.0.0.1 (a free port); the engine driven by plan ->
//! executor -> complete (`converge`), or by a `Runner` on a virtual clock when the trace
//! matters; the backend's records read back after convergence.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use syncore::trace::Recorder;
use syncore::wasm::{
    Grant, HostConfig, Instances, LogBuffer, Secret, TimeLimit, WasmActuator, WasmHost,
};
use syncore::{
    Actuators, ChangeSet, Config, Engine, ExecConfig, Executor, Runner, RunnerConfig, Schema,
    Status, Time, Value, VirtualClock,
};
use syncore_inventory::{Faults, Inventory};
use syncore_test_plugins as components;

mod support;
use support::{assert_contains, collection, converge, error_message, json};

const SCHEMA: &str = r#"{"models": [
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
   "links": [{"field": "network", "target": "Network"}, {"field": "instance", "target": "Instance"}]},
  {"name": "Probe", "fields": [{"name": "action", "type": "string"}, {"name": "target", "type": "string"}],
   "feedback": [{"name": "result", "type": "string"}]}
]}"#;

const MODELS: [&str; 5] = ["Site", "Slice", "Network", "Instance", "Port"];

/// The models of `SCHEMA` named in `models` (the executor wants an actuator for every
/// actuated model, so each test's schema holds only the models it syncs).
fn schema(models: &[&str]) -> Schema {
    let mut def: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
    def["models"]
        .as_array_mut()
        .unwrap()
        .retain(|m| models.contains(&m["name"].as_str().unwrap()));
    Schema::from_json(&def.to_string()).unwrap()
}

/// The CORD models.
fn cord_schema() -> Schema {
    schema(&MODELS)
}

fn deployment() -> ChangeSet {
    ChangeSet::new()
        .upsert("princeton", "Site", [("name", "Princeton")])
        .upsert("slice-a", "Slice", [("name", "a"), ("site", "princeton")])
        .upsert("net-a", "Network", [("name", "a"), ("slice", "slice-a")])
        .upsert("net-b", "Network", [("name", "b"), ("slice", "slice-a")])
        .upsert("vm-a1", "Instance", [("name", "a1"), ("slice", "slice-a")])
        .upsert("vm-a2", "Instance", [("name", "a2"), ("slice", "slice-a")])
        .upsert(
            "port-a1",
            "Port",
            [("network", "net-a"), ("instance", "vm-a1")],
        )
        .upsert(
            "port-b2",
            "Port",
            [("network", "net-b"), ("instance", "vm-a2")],
        )
}

/// A host whose `cord-actuators` may reach `inventory` (and only it), told where it is.
/// The request timeout is generous: these tests count the backend's requests exactly, and a
/// request that times out on a loaded machine after the backend did its work would be sent
/// again (the timeout itself is tested with a backend that never answers).
fn host_for(inventory: &Inventory, extra: impl FnOnce(Grant) -> Grant) -> WasmHost {
    let grant = Grant::default()
        .http(inventory.origin())
        .config("inventory", inventory.origin())
        .request_timeout(Duration::from_secs(10));
    host(HostConfig::default().grant("cord-actuators", extra(grant)))
}

fn host(config: HostConfig) -> WasmHost {
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasm-test-cache");
    WasmHost::new(config.cache_dir(cache)).expect("host")
}

fn cord(host: &WasmHost) -> WasmActuator {
    host.load_actuator("cord-actuators", components::CORD_ACTUATORS)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn actuators(cord: &WasmActuator) -> Actuators {
    MODELS
        .iter()
        .fold(Actuators::new(), |a, m| a.with(*m, cord.clone()))
}

/// Checks that the backend holds exactly the declarative state of the engine's backed
/// objects (same keys, same fields), and that each object's feedback `id` is the backend's.
fn assert_backend_matches(engine: &Engine, inventory: &Inventory) {
    let records = inventory.records();
    let mut expected: BTreeMap<&str, BTreeMap<String, serde_json::Value>> = BTreeMap::new();
    for key in engine.keys() {
        let object = engine.object(key).unwrap();
        let Some(collection) = collection(&object.model) else {
            continue;
        };
        let fields = object
            .fields
            .iter()
            .map(|(n, v)| (n.clone(), json(v)))
            .collect::<serde_json::Map<_, _>>();
        expected
            .entry(collection)
            .or_default()
            .insert(key.to_string(), serde_json::Value::Object(fields));
        let record = records
            .get(collection, key)
            .unwrap_or_else(|| panic!("the backend has no {collection}/{key}"));
        let id = object
            .feedback
            .iter()
            .find(|(n, _)| n == "id")
            .map(|(_, v)| v);
        assert_eq!(
            id,
            Some(&Value::Str(record.id.clone())),
            "{key}: the feedback id is the backend's"
        );
    }
    let actual: BTreeMap<&str, BTreeMap<String, serde_json::Value>> = records
        .all()
        .iter()
        .map(|(c, rs)| {
            let c = syncore_inventory::COLLECTIONS
                .iter()
                .find(|x| **x == c.as_str())
                .unwrap();
            let rs = rs
                .iter()
                .map(|(k, r)| (k.clone(), serde_json::Value::Object(r.fields.clone())))
                .collect();
            (*c, rs)
        })
        .collect();
    assert_eq!(
        actual, expected,
        "the backend holds exactly the declarative state"
    );
}

/// Goal: the Rust CORD actuator creates, updates and deletes through the inventory; after
/// convergence the backend holds exactly the declarative state, and ids are the backend's.
#[test]
fn the_backend_holds_exactly_the_declarative_state_and_deletes_follow() {
    let inventory = Inventory::start().unwrap();
    let host = host_for(&inventory, |g| g);
    let cord = cord(&host);
    let actuators = actuators(&cord);
    let mut engine = Engine::new(cord_schema(), Config::default());
    engine.apply(deployment()).unwrap();
    let now = converge(&mut engine, &actuators, Time(0), 20);
    for key in engine.keys() {
        assert_eq!(engine.status(key, now), Some(Status::Synced), "{key}");
    }
    assert_backend_matches(&engine, &inventory);
    assert_eq!(inventory.records().len(), 6);

    // An update and a delete in the model: the backend follows.
    engine
        .apply(
            ChangeSet::new()
                .upsert(
                    "net-a",
                    "Network",
                    [("name", "a-renamed"), ("slice", "slice-a")],
                )
                .delete("port-b2")
                .delete("net-b"),
        )
        .unwrap();
    let now = converge(&mut engine, &actuators, now, 20);
    assert!(engine.object("net-b").is_none() && engine.object("port-b2").is_none());
    for key in engine.keys() {
        assert_eq!(engine.status(key, now), Some(Status::Synced), "{key}");
    }
    assert_backend_matches(&engine, &inventory);
    let records = inventory.records();
    assert!(
        records.get("networks", "net-b").is_none(),
        "deleted in the backend"
    );
    assert_eq!(
        records.get("networks", "net-a").unwrap().revision,
        2,
        "updated in place"
    );
    let deletes: Vec<_> = inventory
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| (r.path, r.status))
        .collect();
    assert_eq!(
        deletes,
        [
            ("/v1/ports/port-b2".to_string(), 204),
            ("/v1/networks/net-b".to_string(), 204)
        ],
        "the dependent is deleted first (R7)"
    );
}

/// Goal: a plugin's requests go out on keep-alive connections: with two executor threads
/// (at most two requests at once) the backend accepts at most two connections for all the
/// requests of a deployment, through slow answers and 500s; a request that gets no answer
/// times out and the next one succeeds (the timed-out connection is closed, never reused);
/// when the server closes the pooled connections, the next request goes out on a new one
/// and succeeds. The backend ends holding exactly the declarative state.
///
/// Method: the inventory counts the TCP connections it accepts; the plugin's pool counts
/// the connections it opened and the requests it sent on reused ones.
#[test]
fn keep_alive_connections_are_reused_through_slow_failing_and_hung_requests() {
    let inventory = Inventory::start().unwrap();
    inventory.set_faults(Faults {
        latency_ms: 20,
        fail_next: 3,
        ..Faults::default()
    });
    let host = host_for(&inventory, |g| g.request_timeout(Duration::from_secs(2)));
    let cord = cord(&host);
    let actuators = actuators(&cord);
    let mut engine = Engine::new(cord_schema(), Config::default());
    engine.apply(deployment()).unwrap();
    let now = converge(&mut engine, &actuators, Time(0), 20);
    for key in engine.keys() {
        assert_eq!(engine.status(key, now), Some(Status::Synced), "{key}");
    }
    assert_backend_matches(&engine, &inventory);
    let requests = inventory.requests();
    let failed = requests.iter().filter(|r| r.status == 500).count();
    assert_eq!(failed, 3, "{requests:?}");
    let accepted = inventory.connections_accepted();
    let stats = cord.http_stats();
    assert!(
        (1..=2).contains(&accepted),
        "{accepted} connections for {} requests: {stats:?}",
        requests.len()
    );
    assert_eq!(stats.connections_opened, accepted, "{stats:?}");
    assert_eq!(
        stats.requests_reused + stats.connections_opened,
        requests.len() as u64,
        "every other request reused a connection: {stats:?}"
    );
    assert_eq!((stats.requests_retried, stats.requests_unpooled), (0, 0));

    // No answer: the request times out, and the next request succeeds.
    inventory.set_faults(Faults {
        hang: true,
        ..Faults::default()
    });
    let rename = |name: &str| {
        ChangeSet::new().upsert("net-a", "Network", [("name", name), ("slice", "slice-a")])
    };
    engine.apply(rename("a-hung")).unwrap();
    let plan = engine.plan(now);
    let executor = Executor::new(engine.schema(), &actuators, ExecConfig::new()).unwrap();
    let report = executor.run(&engine, &plan);
    engine.complete_run(&plan, &report, now).unwrap();
    assert_contains(
        &error_message(&engine, "net-a", now),
        &["within the request timeout of 2000 ms"],
    );
    inventory.set_faults(Faults::default());
    engine.apply(rename("a-answered")).unwrap();
    let now = converge(&mut engine, &actuators, now, 20);
    assert_eq!(engine.status("net-a", now), Some(Status::Synced));
    assert_backend_matches(&engine, &inventory);

    // The server goes away, closing every pooled connection, and comes back on the same
    // port (empty): the next request does not fail on a dead connection.
    let addr = inventory.addr();
    let opened = cord.http_stats().connections_opened;
    drop(inventory);
    let inventory = Inventory::start_with(addr, Faults::default()).unwrap();
    engine.apply(rename("a-restarted")).unwrap();
    let now = converge(&mut engine, &actuators, now, 20);
    assert_eq!(engine.status("net-a", now), Some(Status::Synced));
    let record = inventory
        .records()
        .get("networks", "net-a")
        .unwrap()
        .clone();
    assert_eq!(record.fields["name"], "a-restarted");
    assert_eq!(inventory.connections_accepted(), 1);
    assert_eq!(cord.http_stats().connections_opened, opened + 1);
}

/// Goal: a synchronous call's outbound HTTP runs on its calling thread, which keeps its own
/// keep-alive connections: calls from two threads, interleaved, open one connection per
/// thread and reuse it for every later call of that thread; a call from inside a task of a
/// multi-threaded tokio runtime (`block_in_place`) still works, on the shared connections.
/// Every network ends in the backend with the id it reported.
///
/// Method: two threads each sync 10 networks through the executor's trait (`Actuator`),
/// alternating through a barrier; the inventory counts accepted TCP connections and the
/// plugin's pool counts opened and reused ones.
#[test]
fn synchronous_calls_keep_one_connection_per_calling_thread() {
    let inventory = Inventory::start().unwrap();
    let host = host_for(&inventory, |g| g);
    let cord = cord(&host);
    let barrier = std::sync::Barrier::new(2);
    let ids = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for t in 0..2 {
            let (cord, barrier, ids) = (&cord, &barrier, &ids);
            scope.spawn(move || {
                for i in 0..10 {
                    barrier.wait();
                    let key = format!("net-{t}-{i}");
                    let outcome = syncore::Actuator::sync(cord, &network_view(&key).as_view());
                    let syncore::Outcome::Ok { feedback, .. } = outcome else {
                        panic!("{key}: {outcome:?}");
                    };
                    ids.lock().unwrap().push((key, feedback["id"].clone()));
                }
            });
        }
    });
    let stats = cord.http_stats();
    assert_eq!(inventory.connections_accepted(), 2, "{stats:?}");
    assert_eq!(
        (stats.connections_opened, stats.requests_reused),
        (2, 18),
        "{stats:?}"
    );
    assert_eq!((stats.requests_retried, stats.requests_unpooled), (0, 0));
    let records = inventory.records();
    let ids = ids.into_inner().unwrap();
    assert_eq!(ids.len(), 20);
    for (key, id) in ids {
        let record = records
            .get("networks", &key)
            .unwrap_or_else(|| panic!("{key}"));
        assert_eq!(id, Value::from(record.id.clone()), "{key}");
    }

    let rt = two_threads();
    let outcome = rt.block_on(async {
        tokio::task::block_in_place(|| {
            syncore::Actuator::sync(&cord, &network_view("net-in-task").as_view())
        })
    });
    assert!(outcome.is_ok(), "{outcome:?}");
    assert!(inventory.records().get("networks", "net-in-task").is_some());
}

/// Goal: a 500 from the backend is a failure with backoff (R5), then a success once the
/// backend recovers, and only that object (and its dependents) waits.
#[test]
fn a_500_from_the_backend_fails_with_backoff_then_succeeds() {
    let inventory = Inventory::start().unwrap();
    let host = host_for(&inventory, |g| g);
    let cord = cord(&host);
    let actuators = actuators(&cord);
    let mut engine = Engine::new(cord_schema(), Config::default());
    engine
        .apply(
            ChangeSet::new()
                .upsert("net-a", "Network", [("name", "a")])
                .upsert("port-a", "Port", [("network", "net-a")]),
        )
        .unwrap();
    inventory.set_faults(Faults {
        fail_next: 1,
        ..Faults::default()
    });
    let plan = engine.plan(Time(0));
    let executor = Executor::new(engine.schema(), &actuators, ExecConfig::new()).unwrap();
    let report = executor.run(&engine, &plan);
    engine.complete_run(&plan, &report, Time(0)).unwrap();
    let message = error_message(&engine, "net-a", Time(0));
    assert_contains(
        &message,
        &[
            "PUT http://127.0.0.1:",
            "/v1/networks/net-a: status 500",
            "injected failure",
        ],
    );
    let object = engine.object("net-a").unwrap();
    assert_eq!(object.failures, 1);
    let retry_at = object.retry_at.expect("backing off");
    assert!(retry_at > Time(0), "{retry_at:?}");
    assert!(
        matches!(
            engine.status("port-a", Time(0)),
            Some(Status::Blocked { .. })
        ),
        "the dependent waits"
    );
    assert!(
        engine.plan(Time(0)).tasks.is_empty(),
        "nothing before the retry time"
    );
    let now = converge(&mut engine, &actuators, Time(0), 10);
    assert_eq!(engine.status("net-a", now), Some(Status::Synced));
    assert_eq!(engine.status("port-a", now), Some(Status::Synced));
    assert_backend_matches(&engine, &inventory);
    let statuses: Vec<u16> = inventory.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [500, 201, 201],
        "one failure, then the network, then its port"
    );
}

/// The probe plugin, granted `grant`, syncing one `Probe` object per (key, action, target).
fn probe(grant: Grant, probes: &[(&str, &str, &str)]) -> (Engine, Time, Arc<LogBuffer>) {
    let logs = Arc::new(LogBuffer::default());
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasm-test-cache");
    let config = HostConfig::default()
        .cache_dir(cache)
        .grant("capability-probe", grant);
    let host = WasmHost::with_log_sink(config, logs.clone()).expect("host");
    let probe = host
        .load_actuator("capability-probe", components::CAPABILITY_PROBE)
        .unwrap_or_else(|e| panic!("{e}"));
    let actuators = Actuators::new().with("Probe", probe);
    let mut engine = Engine::new(schema(&["Probe"]), Config::default());
    let changes = probes
        .iter()
        .fold(ChangeSet::new(), |c, (key, action, target)| {
            c.upsert(*key, "Probe", [("action", *action), ("target", *target)])
        });
    engine.apply(changes).unwrap();
    let plan = engine.plan(Time(0));
    let executor =
        Executor::new(engine.schema(), &actuators, ExecConfig::new().threads(2)).unwrap();
    let report = executor.run(&engine, &plan);
    engine.complete_run(&plan, &report, Time(0)).unwrap();
    (engine, Time(0), logs)
}

fn result(engine: &Engine, key: &str) -> String {
    let object = engine.object(key).unwrap();
    assert_eq!(
        engine.status(key, Time(0)),
        Some(Status::Synced),
        "{object:?}"
    );
    match object.feedback.iter().find(|(n, _)| n == "result") {
        Some((_, Value::Str(s))) => s.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

/// Goal: P3 for outbound HTTP. Each hostile request fails only its own object, with a
/// message naming the plugin and the root cause; the granted request beside them succeeds.
#[test]
fn p3_hostile_requests_each_fail_only_their_own_object_naming_the_cause() {
    let inventory = Inventory::start().unwrap();
    let silent = Inventory::start_with(
        ([127, 0, 0, 1], 0).into(),
        Faults {
            hang: true,
            ..Faults::default()
        },
    )
    .unwrap();
    let not_granted = Inventory::start().unwrap();
    let origin = inventory.origin();
    let grant = Grant::default()
        .http(&origin)
        .http(silent.origin())
        .request_timeout(Duration::from_millis(300))
        .response_bytes_max(10_000);
    let port = inventory.addr().port();
    let other_host = format!("http://localhost:{port}/v1/networks");
    let redirect = format!("{origin}/test/redirect?to=http://127.0.0.1:1/v1/networks");
    let big = format!("{origin}/test/bytes/20000");
    let small = format!("{origin}/test/bytes/5000");
    let hang = format!("{}/v1/networks/x", silent.origin());
    let loopback = format!("{}/v1/networks", not_granted.origin());
    let (engine, now, _) = probe(
        grant,
        &[
            ("ok", "get", &format!("{origin}/v1/networks")),
            ("small", "get", &small),
            ("other-host", "get", &other_host),
            ("redirect", "get", &redirect),
            ("too-large", "get", &big),
            ("hang", "get", &hang),
            ("loopback", "get", &loopback),
        ],
    );
    assert_eq!(result(&engine, "ok"), "200 12");
    assert_eq!(result(&engine, "small"), "200 5000");
    let fails = |key: &str, parts: &[&str]| {
        let message = error_message(&engine, key, now);
        assert_contains(
            &message,
            &[&format!(
                "plugin capability-probe: sync of {key} (Probe) failed: "
            )],
        );
        assert_contains(&message, parts);
    };
    let granted = format!("(granted origins: {origin}, {})", silent.origin());
    fails(
        "other-host",
        &[
            &format!("outbound HTTP to http://localhost:{port} is not granted to plugin capability-probe"),
            &granted,
        ],
    );
    fails(
        "redirect",
        &["outbound HTTP to http://127.0.0.1:1 is not granted to plugin capability-probe"],
    );
    fails(
        "too-large",
        &[&format!(
            "the response from {origin} exceeds the response size cap of 10000 bytes"
        )],
    );
    fails(
        "hang",
        &[&format!(
            "no answer from {} within the request timeout of 300 ms",
            silent.origin()
        )],
    );
    fails(
        "loopback",
        &[&format!(
            "outbound HTTP to {} is not granted to plugin capability-probe",
            not_granted.origin()
        )],
    );
    assert!(
        not_granted.requests().is_empty(),
        "a refused request never leaves the host"
    );
    let followed: Vec<_> = inventory.requests().into_iter().map(|r| r.path).collect();
    assert!(
        followed.contains(&"/v1/networks".to_string()),
        "{followed:?}"
    );
}

/// Goal: a request that fails in transport reports its root cause. The guest sees only a
/// WASI error code; the failed object's message adds the host's view of the failure,
/// naming the origin: a server that closes every connection without answering, and a
/// granted port where nothing listens. A request beside them succeeds.
#[test]
fn transport_failures_report_the_hosts_cause() {
    let inventory = Inventory::start().unwrap();
    let closer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closer_origin = format!("http://{}", closer.local_addr().unwrap());
    std::thread::spawn(move || {
        // Reads the request, then closes the connection without a word.
        for stream in closer.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut buf);
        }
    });
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody_origin = format!("http://{}", nobody.local_addr().unwrap());
    drop(nobody);
    let grant = Grant::default()
        .http(inventory.origin())
        .http(&closer_origin)
        .http(&nobody_origin);
    let (engine, now, _) = probe(
        grant,
        &[
            ("ok", "get", &format!("{}/v1/networks", inventory.origin())),
            ("closed", "get", &format!("{closer_origin}/x")),
            ("refused", "get", &format!("{nobody_origin}/x")),
        ],
    );
    assert_eq!(result(&engine, "ok"), "200 12");
    let closed = error_message(&engine, "closed", now);
    assert_contains(
        &closed,
        &[
            &format!("GET {closer_origin}/x: ErrorCode::"),
            &format!("(host: {closer_origin}: "),
            "connection closed before message completed",
        ],
    );
    let refused = error_message(&engine, "refused", now);
    assert_contains(
        &refused,
        &[
            &format!("GET {nobody_origin}/x: ErrorCode::ConnectionRefused"),
            &format!("(host: {nobody_origin}: connection error: "),
            "Connection refused",
        ],
    );
}

/// Goal: P3 without any grant. Outbound HTTP is refused, even to the test's own loopback
/// service; configuration reads nothing; secrets are refused naming the secret.
#[test]
fn p3_a_plugin_without_a_grant_reaches_nothing() {
    let inventory = Inventory::start().unwrap();
    let url = format!("{}/v1/networks", inventory.origin());
    let (engine, now, _) = probe(
        Grant::default(),
        &[
            ("http", "get", &url),
            ("secret", "secret", "db-password"),
            ("config", "config", "region"),
            ("clock", "clock", ""),
        ],
    );
    assert_contains(
        &error_message(&engine, "http", now),
        &[&format!(
            "outbound HTTP to {} is not granted to plugin capability-probe (granted origins: none)",
            inventory.origin()
        )],
    );
    assert_contains(
        &error_message(&engine, "secret", now),
        &["secret \"db-password\" is not granted to plugin capability-probe"],
    );
    assert_eq!(result(&engine, "config"), "none");
    assert_eq!(
        result(&engine, "clock"),
        "0 false",
        "clocks stopped at zero"
    );
    assert!(inventory.requests().is_empty());
}

/// Goal: P3 for configuration, clocks and files. Granted values are read; a file outside
/// the granted directory, and a write into a read-only grant, fail their own object.
#[test]
fn p3_granted_config_clocks_and_directories_and_nothing_beyond() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("probe-grant");
    let ro = dir.join("ro");
    let rw = dir.join("rw");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("hello.txt"), "hello from the host").unwrap();
    let _ = std::fs::remove_file(rw.join("out.txt"));
    let grant = Grant::default()
        .config("region", "eu-1")
        .clocks()
        .dir(&ro, "/data", false)
        .dir(&rw, "/out", true);
    let (engine, now, _) = probe(
        grant,
        &[
            ("config", "config", "region"),
            ("clock", "clock", ""),
            ("read", "read", "/data/hello.txt"),
            ("write", "write", "/out/out.txt"),
            ("outside", "read", "/etc/passwd"),
            ("escape", "read", "/data/../../../../etc/passwd"),
            ("read-only", "write", "/data/new.txt"),
        ],
    );
    assert_eq!(result(&engine, "config"), "eu-1");
    let clock = result(&engine, "clock");
    let (wall, moved) = clock.split_once(' ').unwrap();
    assert!(wall.parse::<u64>().unwrap() > 1_600_000_000, "{clock}");
    assert_eq!(moved, "true");
    assert_eq!(result(&engine, "read"), "hello from the host");
    assert_eq!(result(&engine, "write"), "written");
    assert_eq!(std::fs::read_to_string(rw.join("out.txt")).unwrap(), "x");
    assert_contains(
        &error_message(&engine, "outside", now),
        &["read /etc/passwd: "],
    );
    assert_contains(
        &error_message(&engine, "escape", now),
        &["read /data/../../../../etc/passwd: "],
    );
    assert_contains(
        &error_message(&engine, "read-only", now),
        &["write /data/new.txt: "],
    );
    assert!(!ro.join("new.txt").exists());
}

/// Goal: secrets never appear in traces, snapshots, log lines or error messages. The CORD
/// actuator sends a granted token to the backend; the probe tries to log it, fail with it
/// and return it as feedback. Every output is searched for the secret.
#[test]
fn secrets_never_reach_logs_messages_traces_or_snapshots() {
    const SECRET: &str = "tok-5f3a9c1e77d2";
    let inventory = Inventory::start().unwrap();
    let logs = Arc::new(LogBuffer::default());
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasm-test-cache");
    let cord_grant = Grant::default()
        .http(inventory.origin())
        .config("inventory", inventory.origin())
        .config("inventory-auth", "token")
        .secret("token", Secret::new(SECRET));
    let probe_grant = Grant::default().secret("token", Secret::new(SECRET));
    let config = HostConfig::default()
        .cache_dir(cache)
        .grant("cord-actuators", cord_grant)
        .grant("capability-probe", probe_grant.clone());
    let host = WasmHost::with_log_sink(config.clone(), logs.clone()).expect("host");
    let cord = cord(&host);
    let probe = host
        .load_actuator("capability-probe", components::CAPABILITY_PROBE)
        .unwrap();
    let actuators = actuators(&cord).with("Probe", probe);
    let mut engine = Engine::new(Schema::from_json(SCHEMA).unwrap(), Config::default());
    engine.apply(deployment()).unwrap();
    let changes = ChangeSet::new()
        .upsert("uses", "Probe", [("action", "secret"), ("target", "token")])
        .upsert("logs", "Probe", [("action", "leak"), ("target", "token")])
        .upsert(
            "returns",
            "Probe",
            [("action", "leak-feedback"), ("target", "token")],
        );
    let clock = Arc::new(VirtualClock::new(Time(0)));
    let runner_config = RunnerConfig {
        exec: ExecConfig::new().threads(2),
        // Empty steps count too; 40 reach the ports' retry after their deferral (they are
        // planned beside their networks and see no cidr yet) while the leaking probes back off.
        steps_max: Some(40),
        ..RunnerConfig::default()
    };
    let mut runner = Runner::new(engine, &actuators, clock, runner_config).expect("runner");
    runner.record(Recorder::memory()).unwrap();
    runner.sender().send(changes).unwrap();
    runner.run().expect("run");
    let trace = runner.take_recorder().unwrap().into_text();
    let engine = runner.engine();
    let now = Time(0);

    assert_eq!(result(engine, "uses"), SECRET.len().to_string());
    assert_contains(
        &error_message(engine, "logs", now),
        &["leaking [secret token] in a message"],
    );
    assert_contains(
        &error_message(engine, "returns", now),
        &["feedback `result` holds the value of secret \"token\""],
    );
    let lines: Vec<String> = logs.take().into_iter().map(|l| l.message).collect();
    assert!(
        lines.iter().any(|l| l == "the secret is [secret token]"),
        "{lines:?}"
    );
    for key in engine.keys() {
        if collection(&engine.object(key).unwrap().model).is_some() {
            assert_eq!(
                engine.status(key, now),
                Some(Status::Synced),
                "{key}: authenticated"
            );
        }
    }
    let snapshot = engine.snapshot();
    let messages: Vec<String> = engine
        .keys()
        .filter_map(|k| engine.object(k).unwrap().message)
        .collect();
    let debug = format!("{config:?} {:?}", host.config());
    for (what, text) in [
        ("the trace", trace.as_str()),
        ("the snapshot", &String::from_utf8_lossy(&snapshot)),
        ("the log lines", &lines.join("\n")),
        ("the messages", &messages.join("\n")),
        ("the host's Debug", &debug),
    ] {
        assert!(!text.contains(SECRET), "{what} holds the secret");
        assert!(
            !text.is_empty() || what == "the messages",
            "{what} is empty"
        );
    }
    assert!(
        trace.contains("[secret token]"),
        "the trace shows where a secret was hidden"
    );
}

/// Goal: limits per plugin. A plugin's own grant gives it a shorter time limit than the
/// host's; another plugin on the same host keeps the host's.
#[test]
fn limits_are_per_plugin() {
    let own = syncore::wasm::Limits {
        time: TimeLimit::Epoch {
            timeout: Duration::from_millis(50),
            tick: Duration::from_millis(10),
        },
        ..syncore::wasm::Limits::default()
    };
    let config = HostConfig::default()
        .instances(Instances::Fresh)
        .grant("infinite-loop", Grant::default().limits(own));
    let host = host(config);
    let spin = host
        .load_actuator("infinite-loop", components::INFINITE_LOOP)
        .unwrap();
    let schema = Schema::from_json(r#"{"models": [{"name": "Loop"}]}"#).unwrap();
    let mut engine = Engine::new(schema, Config::default());
    engine
        .apply(ChangeSet::new().upsert("l", "Loop", Vec::<(String, Value)>::new()))
        .unwrap();
    let actuators = Actuators::new().with("Loop", spin);
    let started = std::time::Instant::now();
    converge(&mut engine, &actuators, Time(0), 1);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_contains(
        &error_message(&engine, "l", Time(0)),
        &["timeout: interrupted after exceeding the time limit of 50 ms"],
    );
    // A bad per-plugin limit is refused naming the plugin's grant.
    let bad = syncore::wasm::Limits::deterministic(1000);
    let err =
        WasmHost::new(HostConfig::default().grant("p", Grant::default().limits(bad))).unwrap_err();
    assert_contains(&err.to_string(), &["grants[p].limits.time"]);
}

/// Goal: a grant is checked when the plugin loads, naming the plugin and the entry.
#[test]
fn bad_grants_are_refused_at_load_naming_the_entry() {
    let host = host(
        HostConfig::default()
            .grant("cord-actuators", Grant::default().http("localhost:80"))
            .grant(
                "capability-probe",
                Grant::default().dir("/no/such/dir", "/data", false),
            ),
    );
    let err = host
        .load_actuator("cord-actuators", components::CORD_ACTUATORS)
        .unwrap_err();
    assert_contains(
        &err.to_string(),
        &["grants[cord-actuators]: bad origin \"localhost:80\""],
    );
    let err = host
        .load_actuator("capability-probe", components::CAPABILITY_PROBE)
        .unwrap_err();
    assert_contains(
        &err.to_string(),
        &["grants[capability-probe]: granted directory /no/such/dir is not a directory"],
    );
}

/// An in-process inventory for simulations: PUT stores the body under the path, DELETE
/// removes it; the first request for each path in `fail_first` answers 500 and the first for
/// each path in `time_out_first` never answers. Answers depend only on the requests for the
/// same path, so the order in which objects run does not change them.
struct ScriptedInventory {
    records: std::sync::Mutex<BTreeMap<String, String>>,
    seen: std::sync::Mutex<BTreeMap<String, u32>>,
    fail_first: Vec<&'static str>,
    time_out_first: Vec<&'static str>,
}

impl syncore::wasm::HttpHandler for ScriptedInventory {
    fn handle(&self, request: &syncore::wasm::HttpRequest) -> syncore::wasm::HttpReply {
        use syncore::wasm::HttpReply;
        let n = {
            let mut seen = self.seen.lock().unwrap();
            let n = seen.entry(request.path.clone()).or_default();
            *n += 1;
            *n
        };
        if n == 1 && self.fail_first.iter().any(|p| request.path.ends_with(p)) {
            return HttpReply::json(500, r#"{"error": "scripted failure"}"#);
        }
        if n == 1
            && self
                .time_out_first
                .iter()
                .any(|p| request.path.ends_with(p))
        {
            return HttpReply::Timeout;
        }
        let key = request
            .path
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        match request.method.as_str() {
            "PUT" => {
                self.records.lock().unwrap().insert(
                    request.path.clone(),
                    String::from_utf8_lossy(&request.body).into(),
                );
                HttpReply::json(200, format!(r#"{{"id": "sim-{key}", "key": "{key}"}}"#))
            }
            "DELETE" => match self.records.lock().unwrap().remove(&request.path) {
                Some(_) => HttpReply::Response {
                    status: 204,
                    headers: vec![],
                    body: vec![],
                },
                None => HttpReply::json(404, "{}"),
            },
            _ => HttpReply::json(405, "{}"),
        }
    }
}

/// One simulated run of the CORD actuators against the scripted inventory: the trace text
/// and the records left.
fn simulated_run(seed: u64, lanes: usize) -> (String, BTreeMap<String, String>) {
    use syncore::Clock as _;
    let handler = Arc::new(ScriptedInventory {
        records: Default::default(),
        seen: Default::default(),
        fail_first: vec!["/networks/net-b", "/ports/port-a1"],
        time_out_first: vec!["/instances/vm-a2"],
    });
    let origin = "http://inventory.sim:80";
    let grant = Grant::default().http(origin).config("inventory", origin);
    let config = HostConfig::default()
        .limits(syncore::wasm::Limits::deterministic(200_000_000))
        .http_handler(handler.clone())
        .grant("cord-actuators", grant);
    let host = host(config);
    let cord = cord(&host);
    let mut engine = Engine::new(cord_schema(), Config::default());
    engine.apply(deployment()).unwrap();
    let mut sim_config = syncore::sim::SimConfig::from_seed(seed);
    sim_config.steps = 40;
    sim_config.dispatches_max = 2_000;
    sim_config.lanes = lanes;
    let mut sim = syncore::sim::Sim::with_engine(sim_config, engine, &actuators(&cord))
        .unwrap()
        .changes(|_| None);
    sim.record(Recorder::memory()).unwrap();
    sim.run().unwrap_or_else(|f| panic!("{f:?}"));
    for key in sim.engine().keys() {
        assert_eq!(
            sim.engine().status(key, sim.clock().now()),
            Some(Status::Synced),
            "{key} converges after the scripted failures"
        );
    }
    let trace = sim.take_recorder().unwrap().into_text();
    let records = handler.records.lock().unwrap().clone();
    (trace, records)
}

/// Goal: deterministic simulation of plugins that do I/O. In virtual time, with outbound
/// HTTP answered in-process (scripted 500s and a timeout) and the seed's fault script, the
/// same scenario gives byte-identical traces run after run, and converges to the backend
/// holding every object. With three lanes (more actuations overlap in virtual time) the
/// run is just as reproducible and the backend ends the same.
#[test]
fn simulated_http_gives_byte_identical_traces_run_after_run() {
    let (first, records) = simulated_run(7, 1);
    assert!(
        first.contains("status 500"),
        "a scripted 500 shows in the trace"
    );
    assert!(
        first.contains("no answer from http://inventory.sim:80 within the request timeout"),
        "the scripted timeout shows in the trace"
    );
    assert_eq!(records.len(), 6, "{records:?}");
    for seed_run in 0..2 {
        let (again, again_records) = simulated_run(7, 1);
        assert!(again == first, "run {seed_run}: the trace differs");
        assert_eq!(again_records, records);
    }
    let (three, three_records) = simulated_run(7, 3);
    assert!(
        simulated_run(7, 3).0 == three,
        "three lanes: the trace differs"
    );
    assert_eq!(
        three_records, records,
        "three lanes: the backend ends the same"
    );
}

/// A deployment of `n` networks, `n` instances and `n` ports (port i joins network i and
/// instance i) in one slice of one site.
fn wide_deployment(n: usize) -> ChangeSet {
    let mut cs = ChangeSet::new()
        .upsert("princeton", "Site", [("name", "Princeton")])
        .upsert("slice-a", "Slice", [("name", "a"), ("site", "princeton")]);
    for i in 0..n {
        cs = cs
            .upsert(
                format!("net-{i:03}"),
                "Network",
                [("name", format!("n{i}")), ("slice", "slice-a".into())],
            )
            .upsert(
                format!("vm-{i:03}"),
                "Instance",
                [("name", format!("v{i}")), ("slice", "slice-a".into())],
            )
            .upsert(
                format!("port-{i:03}"),
                "Port",
                [
                    ("network", format!("net-{i:03}")),
                    ("instance", format!("vm-{i:03}")),
                ],
            );
    }
    cs
}

/// Goal (issue 12, async calls): the real-time runtime drives the CORD actuator through
/// its asynchronous side against the loopback inventory, with a slow backend (every
/// request answered after 100 ms) and a failing one (its first five requests answered
/// with a 500). Checked: many calls of the one component are in flight at once on two
/// tokio threads (a call waiting on HTTP holds no thread: were it holding one, at most two
/// could be in flight); each 500 fails its own object, which backs off (R5: its retry is
/// delivered no sooner than its failure plus the backoff base and the backend's latency)
/// and then succeeds; after convergence, then after an update and deletes, the backend
/// holds exactly the declarative state.
///
/// Method: a `Runtime` (2 worker threads, concurrency 200) with the actuator registered
/// with `Registry::with_async` for every CORD model; the recorded input trace gives each
/// delivery's outcome and time; the plugin's pool counters give the peak in flight.
#[test]
fn the_runtime_drives_async_wasm_actuators_against_a_slow_and_failing_backend() {
    use syncore::runtime::{Registry, Runtime, RuntimeConfig};
    use syncore::sched::{Input, SchedConfig, Scheduler};
    use syncore::Outcome;

    const N: usize = 40;
    const LATENCY_MS: u64 = 100;
    let inventory = Inventory::start().unwrap();
    inventory.set_faults(Faults {
        latency_ms: LATENCY_MS,
        fail_next: 5,
        ..Faults::default()
    });
    // Idle instances are kept up to the peak, so every instance is created once per
    // concurrent call and then reused.
    let grant = Grant::default()
        .http(inventory.origin())
        .config("inventory", inventory.origin())
        .request_timeout(Duration::from_secs(10));
    let host = host(
        HostConfig::default()
            .instances(Instances::Reuse { idle_max: 256 })
            .grant("cord-actuators", grant),
    );
    let cord = cord(&host);
    let registry = MODELS
        .iter()
        .fold(Registry::new(), |r, m| r.with_async(*m, cord.clone()));
    let config = Config::default();
    let base_ms = config.backoff.base_ms;
    let engine = Engine::new(cord_schema(), config);
    let sched = Scheduler::new(engine, SchedConfig::default().concurrency(200)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stopped = rt.block_on(async {
        let runtime = Runtime::start(
            sched,
            registry,
            RuntimeConfig {
                record: true,
                ..RuntimeConfig::default()
            },
        )
        .unwrap();
        let deadline = Duration::from_secs(60);
        runtime.handle().apply(wide_deployment(N)).await.unwrap();
        tokio::time::timeout(deadline, runtime.handle().converged())
            .await
            .expect("the deployment converges");
        // An update of some networks and the deletes of some ports (and one network with
        // its port): the backend follows.
        let mut changes = ChangeSet::new();
        for i in 0..10 {
            changes = changes.upsert(
                format!("net-{i:03}"),
                "Network",
                [
                    ("name", format!("renamed-{i}")),
                    ("slice", "slice-a".into()),
                ],
            );
        }
        for i in 30..N {
            changes = changes.delete(format!("port-{i:03}"));
        }
        changes = changes.delete(format!("net-{:03}", N - 1));
        runtime.handle().apply(changes).await.unwrap();
        tokio::time::timeout(deadline, runtime.handle().converged())
            .await
            .expect("the update converges");
        runtime.shutdown(Duration::from_secs(5)).await
    });
    let engine = stopped.scheduler.engine();
    for key in engine.keys() {
        assert_eq!(
            engine.status(key, Time(u64::MAX / 2)),
            Some(Status::Synced),
            "{key}"
        );
    }
    assert!(engine.object(&format!("net-{:03}", N - 1)).is_none());
    assert_backend_matches(engine, &inventory);
    assert_eq!(
        inventory.records().len(),
        3 * N - (N - 30) - 1,
        "every network, instance and remaining port; nothing else"
    );
    for i in 0..10 {
        let record = inventory
            .records()
            .get("networks", &format!("net-{i:03}"))
            .unwrap()
            .clone();
        assert_eq!(record.fields["name"], format!("renamed-{i}"));
    }

    let stats = cord.pool_stats();
    assert!(
        stats.in_flight_peak >= N,
        "at least the {N} networks and {N} instances wait on the backend together on two threads: {stats:?}"
    );
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    assert!(
        stats.instances_created as usize <= stats.in_flight_peak
            && stats.instances_created < stats.calls,
        "an instance is created only when every other one is busy, then reused: {stats:?}"
    );

    // Each 500 failed its own object once; that object's next delivery is a success, no
    // sooner than the backoff base (plus the backend's latency) after the failure.
    let mut by_object: BTreeMap<u32, Vec<(Time, bool, String)>> = BTreeMap::new();
    for input in &stopped.trace {
        if let Input::Deliver {
            lease,
            outcome,
            now,
        } = input
        {
            let message = match outcome {
                Outcome::Failed { message } => message.clone(),
                _ => String::new(),
            };
            by_object.entry(lease.object.0).or_default().push((
                *now,
                matches!(outcome, Outcome::Failed { .. }),
                message,
            ));
        }
    }
    let mut failed = 0;
    for deliveries in by_object.values() {
        for pair in deliveries.windows(2) {
            let ((t_fail, true, message), (t_next, next_failed, _)) = (&pair[0], &pair[1]) else {
                continue;
            };
            failed += 1;
            assert_contains(message, &["status 500", "injected failure"]);
            assert!(!next_failed, "one 500 each, then success: {deliveries:?}");
            assert!(
                t_next.0 >= t_fail.0 + base_ms + LATENCY_MS,
                "the retry waited for its backoff: failed at {t_fail:?}, next at {t_next:?}"
            );
        }
    }
    assert_eq!(failed, 5, "the five 500s each failed one actuation");
    let statuses: Vec<u16> = inventory.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 500).count(), 5);

    // Keep-alive: a connection is opened only when every open one is busy, so no more
    // than the calls that were out at once; every other request reused one.
    let accepted = inventory.connections_accepted();
    let http = cord.http_stats();
    assert_eq!(http.connections_opened, accepted, "{http:?}");
    assert!(
        accepted as usize <= stats.in_flight_peak,
        "{accepted} connections, at most {} calls at once: {http:?}",
        stats.in_flight_peak
    );
    assert_eq!(
        http.requests_reused + http.connections_opened,
        statuses.len() as u64,
        "{http:?}"
    );
    assert!(http.requests_reused > 0, "{http:?}");
}

/// A `Network` view as the runtime hands it to an asynchronous actuator.
fn network_view(key: &str) -> syncore::OwnedView {
    syncore::OwnedView::new(
        key,
        "Network",
        1,
        syncore::TaskKind::Sync,
        [("name".to_string(), Value::from(key))],
        [
            ("id".to_string(), Value::Null),
            ("cidr".to_string(), Value::Null),
        ],
    )
}

/// One asynchronous sync of `actuator` on `view`.
async fn sync_async(
    actuator: &WasmActuator,
    view: syncore::OwnedView,
    cancel: Option<syncore::CancelToken>,
) -> syncore::Outcome {
    let mut cx = syncore::ActuationContext::new(Time(0));
    if let Some(cancel) = cancel {
        cx.cancel = cancel;
    }
    syncore::AsyncActuator::sync(actuator, cx, view).await
}

fn two_threads() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Goal (P2, asynchronous calls): the epoch limit of an asynchronous call counts the
/// guest's running time, not its waits. A plugin whose limit is 100 ms succeeds against a
/// backend answering after 400 ms asynchronously, where the same synchronous call (wall
/// time) times out; a spinning plugin under the same 100 ms limit is still stopped, with
/// the synchronous call's message.
#[test]
fn p2_an_async_calls_time_limit_counts_running_time_not_waits() {
    let inventory = Inventory::start().unwrap();
    inventory.set_faults(Faults {
        latency_ms: 400,
        ..Faults::default()
    });
    let limits = syncore::wasm::Limits {
        time: TimeLimit::Epoch {
            timeout: Duration::from_millis(100),
            tick: Duration::from_millis(10),
        },
        ..syncore::wasm::Limits::default()
    };
    let cord_host = host_for(&inventory, |g| g.limits(limits.clone()));
    let cord = cord(&cord_host);
    let rt = two_threads();
    let outcome = rt.block_on(sync_async(&cord, network_view("net-slow"), None));
    assert!(outcome.is_ok(), "{outcome:?}");
    assert!(inventory.records().get("networks", "net-slow").is_some());

    let sync = syncore::Actuator::sync(&cord, &network_view("net-slow-2").as_view());
    assert_contains(
        &format!("{sync:?}"),
        &["timeout: interrupted after exceeding the time limit of 100 ms"],
    );

    let spin_host =
        host(HostConfig::default().grant("infinite-loop", Grant::default().limits(limits)));
    let spin = spin_host
        .load_actuator("infinite-loop", components::INFINITE_LOOP)
        .unwrap();
    let started = std::time::Instant::now();
    let outcome = rt.block_on(sync_async(&spin, network_view("spin"), None));
    assert_contains(
        &format!("{outcome:?}"),
        &[
            "plugin infinite-loop: sync of spin (Network) failed",
            "timeout: interrupted after exceeding the time limit of 100 ms",
        ],
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// Goal (P2, asynchronous calls): a spinning plugin yields at every epoch tick, so on a
/// single-threaded executor calls beside it go on while it runs (and it is still stopped
/// at its limit). Method: two tasks on a current-thread runtime, the spinning call spawned
/// first; the no-op calls must end long before it.
#[test]
fn p2_a_spinning_async_call_does_not_starve_the_calls_beside_it() {
    let limits = syncore::wasm::Limits {
        time: TimeLimit::Epoch {
            timeout: Duration::from_millis(500),
            tick: Duration::from_millis(10),
        },
        ..syncore::wasm::Limits::default()
    };
    let config = HostConfig::default().limits(limits);
    let host = host(config);
    let spin = host
        .load_actuator("infinite-loop", components::INFINITE_LOOP)
        .unwrap();
    let noop = host
        .load_actuator("noop-actuator", components::NOOP_ACTUATOR)
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t0 = std::time::Instant::now();
        let spinning = tokio::spawn({
            let spin = spin.clone();
            async move {
                let outcome = sync_async(&spin, network_view("spin"), None).await;
                (outcome, std::time::Instant::now())
            }
        });
        // Spawned after the spinning call, so queued behind it on the one thread.
        let noops = tokio::spawn(async move {
            for i in 0..20 {
                let outcome = sync_async(&noop, network_view(&format!("n{i}")), None).await;
                assert!(outcome.is_ok(), "{outcome:?}");
            }
            std::time::Instant::now()
        });
        let noops_done = noops.await.unwrap();
        let (outcome, spin_done) = spinning.await.unwrap();
        assert_contains(&format!("{outcome:?}"), &["timeout: interrupted"]);
        assert!(
            noops_done + Duration::from_millis(100) < spin_done,
            "the no-op calls finished ({:?}) while the spinning one still ran (until {:?}); were it holding the only thread, they would have run after it",
            noops_done - t0,
            spin_done - t0
        );
    });
}

/// Goal (issue 12, instance pool): at most `calls_in_flight_max` asynchronous calls of one
/// plugin run at once, each on its own instance; the others wait (holding no thread) and
/// then reuse the instances. With a limit of 3 and 12 calls against a backend answering
/// after 100 ms: the peak in flight is exactly 3, 3 instances are made, every call
/// succeeds, and it takes four rounds of the latency.
#[test]
fn the_instance_pool_bounds_the_calls_in_flight_and_reuses_instances() {
    let inventory = Inventory::start().unwrap();
    inventory.set_faults(Faults {
        latency_ms: 100,
        ..Faults::default()
    });
    let limits = syncore::wasm::Limits {
        calls_in_flight_max: 3,
        ..syncore::wasm::Limits::default()
    };
    let host = host_for(&inventory, |g| g.limits(limits));
    let cord = cord(&host);
    let rt = two_threads();
    let started = std::time::Instant::now();
    let outcomes = rt.block_on(async {
        let calls: Vec<_> = (0..12)
            .map(|i| {
                let cord = cord.clone();
                tokio::spawn(async move {
                    sync_async(&cord, network_view(&format!("net-{i:02}")), None).await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for call in calls {
            outcomes.push(call.await.unwrap());
        }
        outcomes
    });
    let took = started.elapsed();
    for outcome in &outcomes {
        assert!(outcome.is_ok(), "{outcome:?}");
    }
    let stats = cord.pool_stats();
    assert_eq!(stats.calls, 12, "{stats:?}");
    assert_eq!(stats.in_flight_peak, 3, "{stats:?}");
    assert_eq!(stats.instances_created, 3, "{stats:?}");
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    assert!(
        took >= Duration::from_millis(400),
        "four rounds of 100 ms: {took:?}"
    );
    assert_eq!(inventory.records().len(), 12);
    // A zero limit is refused naming it.
    let bad = syncore::wasm::Limits {
        calls_in_flight_max: 0,
        ..syncore::wasm::Limits::default()
    };
    let err =
        WasmHost::new(HostConfig::default().grant("p", Grant::default().limits(bad))).unwrap_err();
    assert_contains(&err.to_string(), &["grants[p].limits.calls_in_flight_max"]);
}

/// Goal (S4 with asynchronous calls): a call waiting on a backend that never answers stops
/// once its cancel token is set (the runtime sets it when the actuation is overdue), and
/// says so; the instance it held is dropped, and the pool serves the next call.
#[test]
fn a_cancelled_async_call_stops_waiting() {
    let inventory = Inventory::start().unwrap();
    inventory.set_faults(Faults {
        hang: true,
        ..Faults::default()
    });
    let host = host_for(&inventory, |g| g);
    let cord = cord(&host);
    let rt = two_threads();
    let cancel = syncore::CancelToken::new();
    let started = std::time::Instant::now();
    let outcome = rt.block_on(async {
        let call = sync_async(&cord, network_view("net-hang"), Some(cancel.clone()));
        let cancel_later = async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            cancel.cancel();
            std::future::pending::<()>().await;
        };
        tokio::select! {
            outcome = call => outcome,
            () = cancel_later => unreachable!(),
        }
    });
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_contains(
        &format!("{outcome:?}"),
        &[
            "plugin cord-actuators: sync of net-hang (Network) failed",
            "cancelled while running",
        ],
    );
    assert_eq!(
        cord.pool_stats().idle,
        0,
        "the cancelled instance is not kept"
    );
    inventory.set_faults(Faults::default());
    let outcome = rt.block_on(sync_async(&cord, network_view("net-ok"), None));
    assert!(outcome.is_ok(), "{outcome:?}");
}
