//! The CORD actuators in Rust, Python and JavaScript against the real inventory service on
//! loopback (`syncore-inventory`), through the public API only (issue 12, items 4 and 5).
//!
//! Goal: the Python (componentize-py, `wasi:http` bindings through `plugins/python/syncore_sdk.py`)
//! and JavaScript (componentize-js, `fetch` through `plugins/js/syncore.js`) actuators create,
//! update and delete through the inventory exactly as the Rust one does: after convergence the
//! backend holds exactly the declarative state (same keys and fields) and every object's
//! feedback is the one the Rust actuator reports (the backend's ids); a delete in the model
//! deletes in the backend, dependents first; a 500 is a failure with backoff, then a success;
//! an inventory whose origin is not granted is refused by the host, naming the plugin and the
//! origin, and never reached; through the asynchronous path, calls waiting on the backend
//! hold no thread. The endpoint comes from the plugin's granted configuration
//! (`inventory`), never from a declarative field.
//!
//! Method: an `Inventory` per scenario on 127.0.0.1 (a free port); the engine driven by plan
//! -> executor -> complete; the backend's records and request log read back. The Python and
//! JavaScript components are the ones `tests/languages.rs` runs (one component per language,
//! built by `plugins/<language>/build.sh` into `<target>/wasm-plugins-lang/<language>/`); a
//! missing or stale component fails the test with the commands that build it, nothing is
//! skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use syncore::wasm::{Grant, HostConfig, Instances, WasmActuator, WasmHost};
use syncore::{
    Actuators, ChangeSet, Config, Engine, ExecConfig, Executor, Schema, Status, Time, Value,
};
use syncore_inventory::{Faults, Inventory};

mod support;
use support::{collection, converge, json};

/// The languages, Rust (the reference) first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lang {
    Rust,
    Python,
    Js,
}

impl Lang {
    /// The directory under `plugins/` and under `<target>/wasm-plugins-lang/`.
    fn dir(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }

    /// The sources the component is built from (relative to the repository), for the
    /// staleness check.
    fn sources(self) -> &'static [&'static str] {
        match self {
            Lang::Rust => &[],
            Lang::Python => &[
                "plugins/python/cord.py",
                "plugins/python/syncore_sdk.py",
                "plugins/python/build.sh",
                "plugins/lang-wit-http/world.wit",
                "plugins/lang-wit-http/deps/wasi-http.wit",
                "plugins/lang-wit-http/deps/wasi-io.wit",
            ],
            Lang::Js => &[
                "plugins/js/cord.js",
                "plugins/js/syncore.js",
                "plugins/js/build.sh",
                "plugins/js/package-lock.json",
            ],
        }
    }
}

/// The WIT every language component is built from.
const WIT: [&str; 6] = [
    "plugins/lang-wit/world.wit",
    "wit/types.wit",
    "wit/actuator.wit",
    "wit/policy.wit",
    "wit/host.wit",
    "wit/config.wit",
];

/// The path of a language's component, checked: it exists and is newer than its sources.
///
/// # Panics
/// With the commands that install the language's tools and build the component.
fn component(lang: Lang) -> PathBuf {
    if lang == Lang::Rust {
        return PathBuf::from(syncore_test_plugins::CORD_ACTUATORS);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("wasm-plugins-lang")
        .join(lang.dir())
        .join("cord.wasm");
    let how = format!(
        "install the tools and build it with `plugins/{0}/install.sh && plugins/{0}/build.sh` \
         (see plugins/{0}/README.md; scripts/test.sh does both)",
        lang.dir()
    );
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "the {lang:?} component {} is missing ({e}): {how}",
                path.display()
            )
        });
    for source in lang.sources().iter().chain(&WIT) {
        let changed = std::fs::metadata(repo.join(source))
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| panic!("{source}: {e}"));
        assert!(
            changed <= built,
            "the {lang:?} component {} is older than {source}: rebuild it with `plugins/{}/build.sh`",
            path.display(),
            lang.dir()
        );
    }
    path
}

/// A host whose `cord-actuators` (the language's component) may reach `granted` (and only
/// it) and is told that the inventory is at `inventory`. Compiled code is cached on disk
/// (shared with the other wasm tests); the request timeout is generous, since these tests
/// count the backend's requests exactly.
fn cord(lang: Lang, granted: &Inventory, inventory: &Inventory) -> WasmActuator {
    let path = component(lang);
    let grant = Grant::default()
        .http(granted.origin())
        .config("inventory", inventory.origin())
        .request_timeout(Duration::from_secs(10));
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasm-test-cache");
    let config = HostConfig::default()
        .instances(Instances::Reuse { idle_max: 4 })
        .cache_dir(cache)
        .grant("cord-actuators", grant);
    let host = WasmHost::new(config).expect("host");
    // Two tests of one language compile the component once: the second waits for the first
    // and then finds the compiled code in the disk cache.
    static COMPILED: [OnceLock<()>; 3] = [const { OnceLock::new() }; 3];
    let mut loaded = None;
    COMPILED[lang as usize].get_or_init(|| {
        loaded = Some(host.load_actuator("cord-actuators", &path));
    });
    loaded
        .unwrap_or_else(|| host.load_actuator("cord-actuators", &path))
        .unwrap_or_else(|e| panic!("{lang:?}: {e}"))
}

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
   "links": [{"field": "network", "target": "Network"}, {"field": "instance", "target": "Instance"}]}
]}"#;

const MODELS: [&str; 5] = ["Site", "Slice", "Network", "Instance", "Port"];

fn actuators(cord: &WasmActuator) -> Actuators {
    MODELS
        .iter()
        .fold(Actuators::new(), |a, m| a.with(*m, cord.clone()))
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
        // A null link: sent as JSON null, kept as null in the backend.
        .upsert("port-x", "Port", [("network", "net-a")])
}

/// Checks that the backend holds exactly the declarative state of the engine's backed
/// objects (same collections, keys and fields), and that each backed object's feedback `id`
/// is the backend's.
fn assert_backend_matches(lang: Lang, engine: &Engine, inventory: &Inventory) {
    let records = inventory.records();
    let mut expected: BTreeMap<String, BTreeMap<String, serde_json::Value>> = BTreeMap::new();
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
            .entry(collection.to_string())
            .or_default()
            .insert(key.to_string(), serde_json::Value::Object(fields));
        let record = records
            .get(collection, key)
            .unwrap_or_else(|| panic!("{lang:?}: the backend has no {collection}/{key}"));
        let id = object
            .feedback
            .iter()
            .find(|(n, _)| n == "id")
            .map(|(_, v)| v);
        assert_eq!(
            id,
            Some(&Value::Str(record.id.clone())),
            "{lang:?}: {key}: the feedback id is the backend's"
        );
    }
    let actual: BTreeMap<String, BTreeMap<String, serde_json::Value>> = records
        .all()
        .iter()
        .map(|(c, rs)| {
            let rs = rs
                .iter()
                .map(|(k, r)| (k.clone(), serde_json::Value::Object(r.fields.clone())))
                .collect();
            (c.clone(), rs)
        })
        .collect();
    assert_eq!(
        actual, expected,
        "{lang:?}: the backend holds exactly the declarative state"
    );
}

fn assert_all_synced(lang: Lang, engine: &Engine, now: Time) {
    for key in engine.keys() {
        assert_eq!(
            engine.status(key, now),
            Some(Status::Synced),
            "{lang:?}: {key}: {:?}",
            engine.object(key)
        );
    }
}

/// Every object's feedback, by key.
fn feedback(engine: &Engine) -> BTreeMap<String, Vec<(String, Value)>> {
    engine
        .keys()
        .map(|k| (k.to_string(), engine.object(k).unwrap().feedback))
        .collect()
}

/// What a language's actuator leaves: the feedback after the deployment and after the
/// update with deletes, and the backend's request log (method, path, status).
struct Converged {
    deployed: BTreeMap<String, Vec<(String, Value)>>,
    updated: BTreeMap<String, Vec<(String, Value)>>,
    requests: Vec<(String, String, u16)>,
}

/// The deployment, then an update and two deletes, each converged against a fresh inventory,
/// with the backend checked after each.
fn deploy_update_delete(lang: Lang) -> Converged {
    let inventory = Inventory::start().unwrap();
    let cord = cord(lang, &inventory, &inventory);
    let actuators = actuators(&cord);
    let mut engine = Engine::new(Schema::from_json(SCHEMA).unwrap(), Config::default());
    engine.apply(deployment()).unwrap();
    let now = converge(&mut engine, &actuators, Time(0), 20);
    assert_all_synced(lang, &engine, now);
    assert_backend_matches(lang, &engine, &inventory);
    assert_eq!(
        inventory.records().len(),
        7,
        "{lang:?}: two networks, two instances, three ports"
    );
    assert_eq!(
        inventory.records().get("ports", "port-x").unwrap().fields["instance"],
        serde_json::Value::Null,
        "{lang:?}: a null link is a JSON null"
    );
    let deployed = feedback(&engine);

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
    assert_all_synced(lang, &engine, now);
    assert_backend_matches(lang, &engine, &inventory);
    let records = inventory.records();
    assert!(
        records.get("networks", "net-b").is_none() && records.get("ports", "port-b2").is_none(),
        "{lang:?}: deleted in the backend"
    );
    let net_a = records.get("networks", "net-a").unwrap();
    assert_eq!(net_a.fields["name"], "a-renamed", "{lang:?}");
    assert_eq!(net_a.revision, 2, "{lang:?}: updated in place");
    let requests: Vec<(String, String, u16)> = inventory
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path, r.status))
        .collect();
    let deletes: Vec<_> = requests.iter().filter(|r| r.0 == "DELETE").collect();
    assert_eq!(
        deletes,
        [
            &("DELETE".to_string(), "/v1/ports/port-b2".to_string(), 204),
            &("DELETE".to_string(), "/v1/networks/net-b".to_string(), 204)
        ],
        "{lang:?}: the dependent is deleted first (R7)"
    );
    Converged {
        deployed,
        updated: feedback(&engine),
        requests,
    }
}

/// Goal: the language's actuator leaves the backend exactly as the Rust one does: the same
/// records after each phase (checked against the model), the same feedback (the backend's
/// ids), and the same requests in the backend's log, counted by method, path and status
/// (the order within a round depends on the two workers).
fn same_backend_as_rust(lang: Lang) {
    let rust = deploy_update_delete(Lang::Rust);
    let other = deploy_update_delete(lang);
    assert_eq!(
        other.deployed, rust.deployed,
        "{lang:?}: the feedback after the deployment"
    );
    assert_eq!(
        other.updated, rust.updated,
        "{lang:?}: the feedback after the update"
    );
    let sorted = |mut r: Vec<(String, String, u16)>| {
        r.sort();
        r
    };
    assert_eq!(
        sorted(other.requests),
        sorted(rust.requests),
        "{lang:?}: the backend's requests"
    );
}

/// Goal: a 500 from the backend is a failure with backoff (R5), then a success once the
/// backend recovers; the dependent waits meanwhile.
fn a_500_fails_with_backoff_then_succeeds(lang: Lang) {
    let inventory = Inventory::start().unwrap();
    let cord = cord(lang, &inventory, &inventory);
    let actuators = actuators(&cord);
    let mut engine = Engine::new(Schema::from_json(SCHEMA).unwrap(), Config::default());
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
    let message = match engine.status("net-a", Time(0)) {
        Some(Status::Error { message, .. }) => message,
        other => panic!("{lang:?}: net-a should be in error, is {other:?}"),
    };
    let url = format!("{}/v1/networks/net-a", inventory.origin());
    assert!(
        message.contains(&format!("PUT {url}: status 500 ("))
            && message.contains("injected failure"),
        "{lang:?}: {message:?}"
    );
    let object = engine.object("net-a").unwrap();
    assert_eq!(object.failures, 1, "{lang:?}");
    let retry_at = object.retry_at.expect("backing off");
    assert!(retry_at > Time(0), "{lang:?}: {retry_at:?}");
    assert!(
        matches!(
            engine.status("port-a", Time(0)),
            Some(Status::Blocked { .. })
        ),
        "{lang:?}: the dependent waits"
    );
    assert!(
        engine.plan(Time(0)).tasks.is_empty(),
        "{lang:?}: nothing before the retry time"
    );
    let now = converge(&mut engine, &actuators, Time(0), 10);
    assert_all_synced(lang, &engine, now);
    assert_backend_matches(lang, &engine, &inventory);
    let statuses: Vec<u16> = inventory.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [500, 201, 201],
        "{lang:?}: one failure, then the network, then its port"
    );
}

/// Goal (P3): an inventory whose origin the plugin was not granted is never reached; the
/// host fails the call naming the plugin and the origin, and the granted service is not
/// touched either.
fn an_inventory_not_granted_is_refused(lang: Lang) {
    let granted = Inventory::start().unwrap();
    let elsewhere = Inventory::start().unwrap();
    let cord = cord(lang, &granted, &elsewhere);
    let actuators = actuators(&cord);
    let mut engine = Engine::new(Schema::from_json(SCHEMA).unwrap(), Config::default());
    engine
        .apply(ChangeSet::new().upsert("net-a", "Network", [("name", "a")]))
        .unwrap();
    converge(&mut engine, &actuators, Time(0), 1);
    let message = match engine.status("net-a", Time(0)) {
        Some(Status::Error { message, .. }) => message,
        other => panic!("{lang:?}: net-a should be in error, is {other:?}"),
    };
    for part in [
        "plugin cord-actuators: sync of net-a (Network) failed",
        &format!(
            "outbound HTTP to {} is not granted to plugin cord-actuators",
            elsewhere.origin()
        ),
    ] {
        assert!(
            message.contains(part),
            "{lang:?}: {message:?} should contain {part:?}"
        );
    }
    assert!(elsewhere.requests().is_empty(), "{lang:?}");
    assert!(granted.requests().is_empty(), "{lang:?}");
}

/// Goal (issue 12, async calls): through the asynchronous path (the one the runtime and
/// `syncore serve` use), the language's actuator waits on the backend without holding a
/// thread: six syncs of networks against a backend answering after 300 ms, spawned
/// together on a two-thread runtime, are more than two in flight at once (were each call
/// holding a thread, at most two could be), every one succeeds with the backend's id, and
/// the backend ends holding all six.
fn async_calls_wait_without_holding_a_thread(lang: Lang) {
    const N: usize = 6;
    let inventory = Inventory::start().unwrap();
    inventory.set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let cord = cord(lang, &inventory, &inventory);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcomes = rt.block_on(async {
        let calls: Vec<_> = (0..N)
            .map(|i| {
                let cord = cord.clone();
                tokio::spawn(async move {
                    let key = format!("net-{i}");
                    let view = syncore::OwnedView::new(
                        &key,
                        "Network",
                        1,
                        syncore::TaskKind::Sync,
                        [("name".to_string(), Value::from(key.as_str()))],
                        [
                            ("id".to_string(), Value::Null),
                            ("cidr".to_string(), Value::Null),
                        ],
                    );
                    let cx = syncore::ActuationContext::new(Time(0));
                    (key, syncore::AsyncActuator::sync(&cord, cx, view).await)
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for call in calls {
            outcomes.push(call.await.unwrap());
        }
        outcomes
    });
    let records = inventory.records();
    for (key, outcome) in &outcomes {
        let record = records
            .get("networks", key)
            .unwrap_or_else(|| panic!("{lang:?}: the backend has no networks/{key}"));
        let text = format!("{outcome:?}");
        assert!(
            outcome.is_ok() && text.contains(&record.id),
            "{lang:?}: {key}: {text} should be ok with the backend's id {}",
            record.id
        );
    }
    assert_eq!(records.len(), N, "{lang:?}");
    let stats = cord.pool_stats();
    assert!(
        stats.in_flight_peak > 2,
        "{lang:?}: more calls in flight than threads: {stats:?}"
    );
    assert_eq!(stats.in_flight, 0, "{lang:?}: {stats:?}");
}

#[test]
fn rust_async_calls_wait_without_holding_a_thread() {
    async_calls_wait_without_holding_a_thread(Lang::Rust);
}

#[test]
fn python_async_calls_wait_without_holding_a_thread() {
    async_calls_wait_without_holding_a_thread(Lang::Python);
}

#[test]
fn js_async_calls_wait_without_holding_a_thread() {
    async_calls_wait_without_holding_a_thread(Lang::Js);
}

#[test]
fn rust_a_500_fails_with_backoff_then_succeeds() {
    a_500_fails_with_backoff_then_succeeds(Lang::Rust);
}

#[test]
fn rust_an_inventory_not_granted_is_refused() {
    an_inventory_not_granted_is_refused(Lang::Rust);
}

#[test]
fn python_leaves_the_backend_as_rust_does() {
    same_backend_as_rust(Lang::Python);
}

#[test]
fn python_a_500_fails_with_backoff_then_succeeds() {
    a_500_fails_with_backoff_then_succeeds(Lang::Python);
}

#[test]
fn python_an_inventory_not_granted_is_refused() {
    an_inventory_not_granted_is_refused(Lang::Python);
}

#[test]
fn js_leaves_the_backend_as_rust_does() {
    same_backend_as_rust(Lang::Js);
}

#[test]
fn js_a_500_fails_with_backoff_then_succeeds() {
    a_500_fails_with_backoff_then_succeeds(Lang::Js);
}

#[test]
fn js_an_inventory_not_granted_is_refused() {
    an_inventory_not_granted_is_refused(Lang::Js);
}
