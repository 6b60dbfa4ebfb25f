//! The WASM host (`syncore::wasm`, feature `wasm`) through the public API only.
//!
//! Goal: plugins behave exactly like native actuators, policies and watchers when they are
//! well behaved, and a hostile one fails only its own object, with a message naming the
//! cause, within the configured limit (P1-P4).
//!
//! Method: the components are built from `plugins/` by `syncore-test-plugins`' build script.
//! `cord` runs the CORD-like example with wasm plugins and with native twins and compares
//! the final snapshots byte for byte; `hostile` runs every hostile plugin side by side with
//! well-behaved ones through the executor; `rules` holds a test per sandbox rule (`p1_`..
//! `p4_`); `per_plugin` holds a test named after each plugin, which `foreach_plugin!` checks
//! (a plugin without a test fails to compile this file).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use syncore::wasm::{
    HostConfig, Instances, Limits, PluginError, TimeLimit, WasmActuator, WasmHost,
};
use syncore::{
    Actuator, Actuators, ChangeSet, Config, Engine, ObjectView, Outcome, Schema, Status, Time,
    Value,
};
use syncore_test_plugins as components;

mod support;
use support::{assert_contains, converge, error_message};

/// Fails the build unless `per_plugin::$name` exists (one test per plugin).
macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports)]
        use self::per_plugin::$name as _;
    };
}
syncore_test_plugins::foreach_plugin!(assert_test_exists);

/// The time limit of most tests: long enough for a slow CI machine to finish a real call.
const TIMEOUT: Duration = Duration::from_millis(300);
/// The memory limit of most tests.
const MEMORY: usize = 32 << 20;

/// The test limits: a 300 ms epoch deadline, 32 MiB of memory, the other defaults.
fn limits() -> Limits {
    Limits {
        time: TimeLimit::Epoch {
            timeout: TIMEOUT,
            tick: Duration::from_millis(10),
        },
        memory_bytes_max: MEMORY,
        ..Limits::default()
    }
}

/// A host with the test limits and `instances`. Compiled code is cached on disk under the
/// target directory, so the many hosts of this file compile each component once.
fn host_with(limits: Limits, instances: Instances) -> WasmHost {
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasm-test-cache");
    let config = HostConfig::default()
        .limits(limits)
        .instances(instances)
        .cache_dir(cache);
    WasmHost::new(config).expect("host")
}

/// A shared host with the test limits, reusing instances (the default mode).
fn host() -> &'static WasmHost {
    static HOST: OnceLock<WasmHost> = OnceLock::new();
    HOST.get_or_init(|| host_with(limits(), Instances::Reuse { idle_max: 16 }))
}

/// The plugin's name as the tests load it: the crate name, from the component's file name.
fn plugin_name(path: &str) -> String {
    let stem = std::path::Path::new(path)
        .file_stem()
        .unwrap()
        .to_string_lossy();
    stem.replace('_', "-")
}

fn actuator(host: &WasmHost, path: &str) -> WasmActuator {
    host.load_actuator(&plugin_name(path), path)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A FNV-1a hash of a key, as the CORD plugins compute it.
fn fnv1a(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

mod cord {
    //! The CORD-like example with wasm actuators, a wasm policy and a wasm watcher, against
    //! native twins that implement the same rules in Rust.

    use super::*;
    use syncore::{Change, Policy, PolicyInput, StateView, WatchEvent, Watcher};

    pub const SCHEMA: &str = r#"{"models": [
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

    pub const MODELS: [&str; 5] = ["Site", "Slice", "Network", "Instance", "Port"];

    /// Two sites with a slice each; a network per slice; instances; one explicit port (on
    /// net-a), so the policy must create exactly `net-b-port`.
    pub fn deployment() -> ChangeSet {
        ChangeSet::new()
            .upsert("princeton", "Site", [("name", "Princeton")])
            .upsert("stanford", "Site", [("name", "Stanford")])
            .upsert("slice-a", "Slice", [("name", "a"), ("site", "princeton")])
            .upsert("slice-b", "Slice", [("name", "b"), ("site", "stanford")])
            .upsert("net-a", "Network", [("name", "a"), ("slice", "slice-a")])
            .upsert("net-b", "Network", [("name", "b"), ("slice", "slice-b")])
            .upsert("vm-a1", "Instance", [("name", "a1"), ("slice", "slice-a")])
            .upsert("vm-a2", "Instance", [("name", "a2"), ("slice", "slice-a")])
            .upsert("vm-b1", "Instance", [("name", "b1"), ("slice", "slice-b")])
            .upsert(
                "port-a1",
                "Port",
                [("network", "net-a"), ("instance", "vm-a1")],
            )
    }

    /// A second phase: a new network (the policy adds its port), a renamed slice, and the
    /// removal of net-b with its port (deletes run through the actuators too).
    pub fn changes() -> ChangeSet {
        ChangeSet::new()
            .upsert("net-c", "Network", [("name", "c"), ("slice", "slice-a")])
            .upsert(
                "slice-a",
                "Slice",
                [("name", "a-renamed"), ("site", "princeton")],
            )
            .delete("net-b-port")
            .delete("net-b")
    }

    /// The native twin of `plugins/cord-actuators`.
    pub struct NativeCord;

    fn dependency_feedback(object: &ObjectView<'_>, field: &str, name: &str) -> Option<Value> {
        let key = object.field(field)?.refs().first()?.clone();
        let dep = object.dependencies().find(|d| d.key() == key)?;
        dep.feedback(name).filter(|v| **v != Value::Null).cloned()
    }

    impl Actuator for NativeCord {
        fn sync(&self, object: &ObjectView<'_>) -> Outcome {
            let hash = fnv1a(object.key());
            let id = format!(
                "{}-{:08x}",
                object.model().to_lowercase(),
                hash & 0xffff_ffff
            );
            match object.model() {
                "Site" => Outcome::ok_with([("id", id)]),
                "Slice" => match dependency_feedback(object, "site", "id") {
                    Some(_) => Outcome::ok_with([("id", id)]),
                    None => Outcome::deferred("the slice's site has no id yet"),
                },
                "Network" => {
                    let cidr = format!("10.{}.{}.0/24", (hash >> 8) & 0xff, hash & 0xff);
                    Outcome::ok_with([("id", id), ("cidr", cidr)])
                }
                "Instance" => {
                    let ip = format!("172.16.{}.{}", (hash >> 8) & 0xff, 1 + hash % 254);
                    Outcome::ok_with([("id", id), ("ip", ip)])
                }
                "Port" => {
                    let Some(Value::Str(cidr)) = dependency_feedback(object, "network", "cidr")
                    else {
                        return Outcome::deferred("the port's network has no cidr yet");
                    };
                    let ip = format!("{}{}", cidr.trim_end_matches("0/24"), 2 + hash % 250);
                    Outcome::ok_with([("id", id), ("ip", ip)])
                }
                other => Outcome::failed(format!("unknown model {other}")),
            }
        }
    }

    /// The native twin of `plugins/cord-policy`.
    pub struct NativeNetworkHasPort;

    impl Policy for NativeNetworkHasPort {
        fn on_change(
            &self,
            n: &PolicyInput<'_>,
            state: &dyn StateView,
        ) -> Result<Vec<Change>, String> {
            let has_port = state
                .referrers(n.key)
                .iter()
                .any(|k| state.get(k).is_some_and(|o| o.model == "Port"));
            if n.deleted || has_port {
                return Ok(vec![]);
            }
            Ok(vec![Change::upsert(
                format!("{}-port", n.key),
                "Port",
                [("network", Value::Ref(n.key.to_string()))],
            )])
        }
    }

    /// The native twin of `plugins/cord-watcher` (minus the log lines).
    pub struct NativeWatcher;

    impl Watcher for NativeWatcher {
        fn notify(&self, event: &WatchEvent<'_>) -> Result<(), String> {
            if event.key.starts_with("bad") {
                return Err(format!("refusing to watch {}", event.key));
            }
            Ok(())
        }
    }

    /// Runs both phases; returns the final snapshot and the engine.
    pub fn run(
        actuators: &Actuators,
        policy: Box<dyn Policy>,
        watcher: Box<dyn Watcher>,
    ) -> (Vec<u8>, Engine) {
        let mut engine = Engine::new(Schema::from_json(SCHEMA).unwrap(), Config::default());
        engine.register_policy("Network", policy).unwrap();
        engine.register_watcher("Instance", watcher).unwrap();
        engine.apply(deployment()).expect("apply the deployment");
        let now = converge(&mut engine, actuators, Time(0), 50);
        assert!(engine.plan(now).is_empty(), "the deployment converges");
        engine.apply(changes()).expect("apply the changes");
        let now = converge(&mut engine, actuators, now, 50);
        assert!(engine.plan(now).is_empty(), "the changes converge");
        (engine.snapshot(), engine)
    }

    /// Goal: the example converges with wasm plugins, and to the very same state as with the
    /// native twins. Method: run both, compare snapshots byte for byte, then spot-check the
    /// feedback and the policy's work.
    #[test]
    fn wasm_plugins_converge_to_the_same_snapshot_as_native_ones() {
        let host = host_with(limits(), Instances::Reuse { idle_max: 4 });
        let cord = actuator(&host, components::CORD_ACTUATORS);
        let wasm_actuators = MODELS
            .iter()
            .fold(Actuators::new(), |a, m| a.with(*m, cord.clone()));
        let policy = host
            .load_policy("cord-policy", components::CORD_POLICY)
            .unwrap();
        let watcher = host
            .load_watcher("cord-watcher", components::CORD_WATCHER)
            .unwrap();
        let (wasm_snapshot, engine) = run(&wasm_actuators, Box::new(policy), Box::new(watcher));

        let native_actuators = MODELS
            .iter()
            .fold(Actuators::new(), |a, m| a.with(*m, NativeCord));
        let (native_snapshot, _) = run(
            &native_actuators,
            Box::new(NativeNetworkHasPort),
            Box::new(NativeWatcher),
        );
        assert!(
            wasm_snapshot == native_snapshot,
            "wasm and native runs must give identical snapshots"
        );

        assert!(
            engine.object("net-b-port").is_none() && engine.object("net-b").is_none(),
            "deleted"
        );
        assert!(
            engine.object("net-a-port").is_none(),
            "net-a has port-a1: no port created"
        );
        let port = engine
            .object("net-c-port")
            .expect("the policy created net-c's port");
        assert_eq!(
            port.fields.iter().find(|(k, _)| k == "network").unwrap().1,
            Value::Ref("net-c".into())
        );
        let net = engine.object("net-c").unwrap();
        let cidr = match &net.feedback.iter().find(|(k, _)| k == "cidr").unwrap().1 {
            Value::Str(s) => s.clone(),
            other => panic!("cidr {other:?}"),
        };
        let ip = &port.feedback.iter().find(|(k, _)| k == "ip").unwrap().1;
        assert!(
            matches!(ip, Value::Str(ip) if ip.starts_with(cidr.trim_end_matches("0/24"))),
            "{ip:?} in {cidr}"
        );

        let logs = host.take_logs();
        assert!(
            logs.iter().any(|l| l.plugin == "cord-watcher"
                && l.message
                    .contains("Instance saw feedback change of Slice slice-a [id]")),
            "watcher lines reach the log: {logs:?}"
        );
        assert!(logs.iter().any(|l| l.plugin == "cord-actuators"
            && l.key == "net-b"
            && l.message == "deleted Network net-b"));
    }
}

mod hostile {
    //! Every hostile plugin next to well-behaved ones, through the executor.

    use super::*;

    /// One model per hostile plugin, a model for the well-behaved noop plugin, and `Site`
    /// (the CORD actuators). Every model has a `name` and the feedback the plugins write.
    pub fn schema() -> Schema {
        let models: Vec<String> = ["Good", "Site", "Loop", "Bomb", "Trap", "Panic", "Stack", "Huge", "Writer", "Malformed"]
            .iter()
            .map(|m| {
                format!(
                    r#"{{"name": "{m}", "fields": [{{"name": "name", "type": "string"}}],
                      "feedback": [{{"name": "id", "type": "json"}}, {{"name": "blob", "type": "string"}}, {{"name": "depth", "type": "int"}}]}}"#
                )
            })
            .collect();
        Schema::from_json(&format!(r#"{{"models": [{}]}}"#, models.join(","))).unwrap()
    }

    /// (model, component, object key, what its error message must say).
    pub fn cases() -> Vec<(&'static str, &'static str, &'static str, Vec<String>)> {
        let s = |parts: &[&str]| parts.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        vec![
            (
                "Loop",
                components::INFINITE_LOOP,
                "loop-1",
                s(&[
                    "plugin infinite-loop: sync of loop-1 (Loop) failed",
                    "timeout",
                    "interrupt",
                    "300 ms",
                ]),
            ),
            (
                "Bomb",
                components::MEMORY_BOMB,
                "bomb-1",
                s(&[
                    "plugin memory-bomb: sync of bomb-1",
                    "out of memory",
                    &format!("memory limit of {MEMORY} bytes"),
                ]),
            ),
            (
                "Trap",
                components::TRAP_UNREACHABLE,
                "trap-1",
                s(&["plugin trap-unreachable: sync of trap-1", "unreachable"]),
            ),
            (
                "Panic",
                components::PANIC_MESSAGE,
                "panic-1",
                s(&[
                    "plugin panic-message: sync of panic-1",
                    "panicked: the backend for panic-1 is on fire",
                ]),
            ),
            (
                "Stack",
                components::STACK_OVERFLOW,
                "stack-1",
                s(&["plugin stack-overflow: sync of stack-1", "stack overflow"]),
            ),
            (
                "Huge",
                components::HUGE_RESULT,
                "huge-1",
                s(&[
                    "plugin huge-result: sync of huge-1",
                    "result too large",
                    "1048576 bytes",
                ]),
            ),
            (
                "Writer",
                components::WRITES_DECLARATIVE,
                "writer-1",
                s(&[
                    "plugin writes-declarative: sync of writer-1",
                    "declarative field `name`",
                ]),
            ),
            (
                "Malformed",
                components::MALFORMED_RESULT,
                "malformed-1",
                s(&[
                    "plugin malformed-result: sync of malformed-1",
                    "malformed result",
                    "not finite",
                ]),
            ),
            (
                "Malformed",
                components::MALFORMED_RESULT,
                "malformed-2-json",
                s(&["malformed result", "not JSON"]),
            ),
        ]
    }

    /// Goal: P1 end to end. Each hostile plugin fails only its own object, with a message
    /// naming the plugin, the object and the cause; the well-behaved objects sync in the same
    /// runs; the engine keeps going (retries fail the same way, new work still converges).
    #[test]
    fn p1_hostile_plugins_fail_only_their_own_object() {
        let host = host_with(limits(), Instances::Reuse { idle_max: 4 });
        let mut actuators = Actuators::new()
            .with("Good", actuator(&host, components::NOOP_ACTUATOR))
            .with("Site", actuator(&host, components::CORD_ACTUATORS));
        let mut changes = ChangeSet::new();
        let mut loaded = BTreeMap::new();
        for (model, path, key, _) in cases() {
            if !loaded.contains_key(model) {
                loaded.insert(model, ());
                actuators = actuators.with(model, actuator(&host, path));
            }
            changes = changes.upsert(key, model, [("name", key)]);
        }
        for i in 0..6 {
            changes = changes
                .upsert(format!("good-{i}"), "Good", [("name", "g")])
                .upsert(format!("site-{i}"), "Site", [("name", "s")]);
        }
        let mut engine = Engine::new(schema(), Config::default());
        engine.apply(changes).unwrap();

        let started = Instant::now();
        let now = converge(&mut engine, &actuators, Time(0), 1);
        let elapsed = started.elapsed();
        // Two workers; one loop burns its 300 ms deadline, the rest are quick.
        assert!(
            elapsed < Duration::from_secs(20),
            "one round took {elapsed:?}"
        );
        for (_, _, key, parts) in cases() {
            let message = error_message(&engine, key, now);
            assert_contains(
                &message,
                &parts.iter().map(String::as_str).collect::<Vec<_>>(),
            );
        }
        for i in 0..6 {
            assert_eq!(
                engine.status(&format!("good-{i}"), now),
                Some(Status::Synced)
            );
            assert_eq!(
                engine.status(&format!("site-{i}"), now),
                Some(Status::Synced)
            );
        }

        // The engine goes on: retries after backoff fail the same way, new objects sync.
        engine
            .apply(ChangeSet::new().upsert("late", "Site", [("name", "late")]))
            .unwrap();
        let mut now = converge(&mut engine, &actuators, now, 1);
        assert_eq!(engine.status("late", now), Some(Status::Synced));
        let retried = |engine: &Engine| {
            cases()
                .iter()
                .all(|(_, _, key, _)| engine.object(key).unwrap().failures >= 2)
        };
        for _ in 0..20 {
            if retried(&engine) {
                break;
            }
            now = converge(&mut engine, &actuators, now, 2);
        }
        assert!(
            retried(&engine),
            "every hostile object is retried after its backoff"
        );
        for (_, _, key, parts) in cases() {
            let message = error_message(&engine, key, now);
            assert_contains(
                &message,
                &parts.iter().map(String::as_str).collect::<Vec<_>>(),
            );
        }
    }
}

mod rules {
    //! One or more tests per sandbox rule.

    use super::hostile::schema;
    use super::*;

    /// An engine over the hostile test schema holding one object `key` of `model`.
    pub fn engine_with(model: &str, key: &str) -> Engine {
        let mut engine = Engine::new(schema(), Config::default());
        engine
            .apply(ChangeSet::new().upsert(key, model, [("name", key)]))
            .unwrap();
        engine
    }

    /// Calls `actuator.sync` on a fresh object `key` of `model`.
    pub fn sync(actuator: &WasmActuator, model: &str, key: &str) -> Outcome {
        let engine = engine_with(model, key);
        actuator.sync(&engine.view_key(key).unwrap())
    }

    pub fn failure(outcome: Outcome) -> String {
        match outcome {
            Outcome::Failed { message } => message,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    /// Goal: a plugin that panicked is run again on a new instance (the poisoned one is
    /// discarded) and works for other objects. Method: reuse mode with one idle instance;
    /// alternate calm and panicking objects.
    #[test]
    fn p1_an_instance_that_failed_is_discarded_and_the_plugin_recovers() {
        let host = host_with(limits(), Instances::Reuse { idle_max: 1 });
        let plugin = actuator(&host, components::PANIC_MESSAGE);
        for round in 0..3 {
            assert_eq!(
                sync(&plugin, "Panic", &format!("calm-{round}")),
                Outcome::ok()
            );
            let message = failure(sync(&plugin, "Panic", &format!("hot-{round}")));
            assert_contains(
                &message,
                &[&format!("panicked: the backend for hot-{round} is on fire")],
            );
        }
    }

    /// Goal: a failing policy refuses only its change set, naming the plugin, and a failing
    /// watcher is only counted (R10, R18 with wasm plugins). Method: a result limit of zero
    /// entries makes the port policy's one change too large; the watcher refuses `bad-*` keys.
    #[test]
    fn p1_failing_policies_and_watchers_do_not_stop_the_engine() {
        let strict = Limits {
            result_entries_max: 0,
            ..limits()
        };
        let host = host_with(strict, Instances::Fresh);
        let policy = host
            .load_policy("cord-policy", components::CORD_POLICY)
            .unwrap();
        let watcher = host
            .load_watcher("cord-watcher", components::CORD_WATCHER)
            .unwrap();
        let mut engine = Engine::new(
            Schema::from_json(super::cord::SCHEMA).unwrap(),
            Config::default(),
        );
        engine.register_policy("Network", Box::new(policy)).unwrap();
        engine
            .register_watcher("Instance", Box::new(watcher))
            .unwrap();
        let err = engine
            .apply(ChangeSet::new().upsert("net-x", "Network", [("name", "x")]))
            .unwrap_err();
        assert_contains(
            &err.to_string(),
            &[
                "policy plugin cord-policy failed on net-x (Network)",
                "result too large",
            ],
        );
        assert!(engine.is_empty(), "the change set was refused whole");

        engine
            .apply(
                ChangeSet::new()
                    .upsert("site", "Site", [("name", "s")])
                    .upsert("bad-slice", "Slice", [("site", "site")]),
            )
            .unwrap();
        engine
            .apply(ChangeSet::new().upsert("vm", "Instance", [("slice", "bad-slice")]))
            .unwrap();
        let actuators = super::cord::MODELS
            .iter()
            .fold(Actuators::new(), |a, m| a.with(*m, super::cord::NativeCord));
        let now = converge(&mut engine, &actuators, Time(0), 20);
        assert!(engine.plan(now).is_empty());
        let stats = engine.watch_stats();
        assert!(stats.failed >= 1, "{stats:?}");
        assert!(
            stats
                .log
                .iter()
                .any(|m| m.contains("refusing to watch bad-slice")),
            "{stats:?}"
        );
    }

    /// Goal: P2, time. An epoch deadline interrupts an endless loop within the limit (plus
    /// slack for a loaded machine), whatever the limit is set to.
    #[test]
    fn p2_epoch_deadline_interrupts_an_endless_loop_on_time() {
        for timeout_ms in [100u64, 400] {
            let limits = Limits {
                time: TimeLimit::Epoch {
                    timeout: Duration::from_millis(timeout_ms),
                    tick: Duration::from_millis(5),
                },
                ..limits()
            };
            let host = host_with(limits, Instances::Fresh);
            let plugin = actuator(&host, components::INFINITE_LOOP);
            let engine = engine_with("Loop", "spin");
            let started = Instant::now();
            let message = failure(plugin.sync(&engine.view_key("spin").unwrap()));
            let elapsed = started.elapsed();
            assert_contains(
                &message,
                &["timeout", &format!("time limit of {timeout_ms} ms")],
            );
            assert!(
                elapsed >= Duration::from_millis(timeout_ms),
                "stopped early: {elapsed:?}"
            );
            assert!(
                elapsed < Duration::from_millis(timeout_ms + 2000),
                "stopped late: {elapsed:?}"
            );
        }
    }

    /// Goal: P2, deterministic time. With fuel, an endless loop stops with "out of fuel" and
    /// well-behaved plugins still work; the same call gives the same outcome every time.
    #[test]
    fn p2_fuel_limit_is_deterministic() {
        let host = host_with(Limits::deterministic(20_000_000), Instances::Fresh);
        let spin = actuator(&host, components::INFINITE_LOOP);
        let first = failure(sync(&spin, "Loop", "spin"));
        assert_contains(&first, &["timeout: out of fuel", "20000000 fuel"]);
        assert_eq!(failure(sync(&spin, "Loop", "spin")), first);
        let cord = actuator(&host, components::CORD_ACTUATORS);
        let a = sync(&cord, "Site", "s1");
        assert!(a.is_ok(), "{a:?}");
        assert_eq!(sync(&cord, "Site", "s1"), a);
    }

    /// Goal: P2, memory. The memory limit is per call and configurable; the message names it.
    #[test]
    fn p2_memory_limit_is_configurable_and_named() {
        for memory in [8usize << 20, 48 << 20] {
            let host = host_with(
                Limits {
                    memory_bytes_max: memory,
                    ..limits()
                },
                Instances::Reuse { idle_max: 2 },
            );
            let bomb = actuator(&host, components::MEMORY_BOMB);
            let message = failure(sync(&bomb, "Bomb", "boom"));
            assert_contains(
                &message,
                &["out of memory", &format!("memory limit of {memory} bytes")],
            );
            let cord = actuator(&host, components::CORD_ACTUATORS);
            assert!(
                sync(&cord, "Site", "fine").is_ok(),
                "a small plugin fits in {memory} bytes"
            );
        }
    }

    /// Goal: P2, tables. A table limit below what a component needs refuses its instances.
    #[test]
    fn p2_table_limit_is_enforced() {
        let host = host_with(
            Limits {
                table_elements_max: 1,
                ..limits()
            },
            Instances::Fresh,
        );
        let noop = actuator(&host, components::NOOP_ACTUATOR);
        let message = failure(sync(&noop, "Good", "g"));
        assert_contains(
            &message,
            &["plugin noop-actuator", "table limit", "limit of 1 elements"],
        );
    }

    /// Goal: P2, stack. Unbounded recursion stops at the configured stack limit.
    #[test]
    fn p2_stack_limit_is_configurable() {
        let host = host_with(
            Limits {
                stack_bytes_max: 64 << 10,
                ..limits()
            },
            Instances::Fresh,
        );
        let deep = actuator(&host, components::STACK_OVERFLOW);
        assert_contains(
            &failure(sync(&deep, "Stack", "deep")),
            &["stack overflow", "stack limit 65536 bytes"],
        );
    }

    /// Goal: P2, result size. The result limit is configurable: the huge result passes under
    /// a limit above its size (and within memory), fails under the default.
    #[test]
    fn p2_result_limit_is_configurable() {
        let roomy = Limits {
            result_bytes_max: 16 << 20,
            memory_bytes_max: 64 << 20,
            ..limits()
        };
        let roomy_host = host_with(roomy, Instances::Fresh);
        let huge = actuator(&roomy_host, components::HUGE_RESULT);
        match sync(&huge, "Huge", "big") {
            Outcome::Ok { feedback, .. } => {
                assert!(matches!(&feedback["blob"], Value::Str(s) if s.len() == 8 << 20))
            }
            other => panic!("{other:?}"),
        }
        let huge = actuator(host(), components::HUGE_RESULT);
        assert_contains(&failure(sync(&huge, "Huge", "big")), &["result too large"]);
    }

    /// Goal: P3. A plugin sees no environment, arguments, files, clock or network. Method:
    /// the probe plugin tries each and reports what it got.
    #[test]
    fn p3_plugins_get_no_ambient_authority() {
        let probe = actuator(host(), components::AMBIENT_PROBE);
        let engine = Engine::new(
            Schema::from_json(r#"{"models": [{"name": "Probe", "feedback": [{"name": "report", "type": "json"}]}]}"#).unwrap(),
            Config::default(),
        );
        let mut engine = engine;
        engine
            .apply(ChangeSet::new().upsert("probe", "Probe", Vec::<(String, Value)>::new()))
            .unwrap();
        let feedback = match probe.sync(&engine.view_key("probe").unwrap()) {
            Outcome::Ok { feedback, .. } => feedback,
            other => panic!("{other:?}"),
        };
        let Value::Json(text) = &feedback["report"] else {
            panic!("{feedback:?}")
        };
        let report: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(report["env"], "", "no environment variables: {report}");
        assert_eq!(report["args"], 0, "no arguments: {report}");
        for probe in ["read_root", "read_passwd", "write_tmp", "tcp"] {
            assert_eq!(report[probe], "denied", "{probe}: {report}");
        }
        assert_eq!(
            report["wall_secs"], 0,
            "the wall clock is stopped at zero: {report}"
        );
        assert_eq!(
            report["monotonic_elapsed_ns"], 0,
            "the monotonic clock does not move: {report}"
        );
    }

    /// Goal: P4. A component built against `syncore:plugin@0.1.0` (the previous version) is
    /// refused at load with a message naming both versions.
    #[test]
    fn p4_a_plugin_built_against_another_version_is_refused_naming_both() {
        let err = host()
            .load_actuator("wrong-version", components::WRONG_VERSION)
            .unwrap_err();
        assert!(matches!(err, PluginError::Version { .. }), "{err:?}");
        assert_contains(
            &err.to_string(),
            &[
                "plugin wrong-version",
                "built against syncore:plugin@0.1.0",
                "implements syncore:plugin@0.2.0",
            ],
        );
    }

    /// Goal: P4, worlds. A component of another kind is refused naming the expected export.
    #[test]
    fn p4_a_plugin_of_another_kind_is_refused_naming_the_expected_interface() {
        let err = host()
            .load_actuator("cord-policy", components::CORD_POLICY)
            .unwrap_err();
        assert!(matches!(err, PluginError::World { .. }), "{err:?}");
        assert_contains(
            &err.to_string(),
            &[
                "is not an actuator",
                "syncore:plugin/actuator@0.2.0",
                "syncore:plugin/policy@0.2.0",
            ],
        );
        let err = host()
            .load_watcher("noop", components::NOOP_ACTUATOR)
            .unwrap_err();
        assert_contains(&err.to_string(), &["is not a watcher"]);
        let err = host()
            .load_policy("missing", "/nonexistent/plugin.wasm")
            .unwrap_err();
        assert_contains(
            &err.to_string(),
            &["plugin missing: cannot read /nonexistent/plugin.wasm"],
        );
    }

    /// Goal: `host.log` lines reach the embedder's sink tagged with the plugin, the object
    /// and the level, and a call's `log_lines_max` bounds them (the rest are counted).
    #[test]
    fn plugin_log_lines_reach_the_sink_within_limits() {
        use std::sync::{Arc, Mutex};
        use syncore::wasm::{LogLevel, LogLine, LogSink};

        #[derive(Default)]
        struct Collect(Mutex<Vec<LogLine>>);
        impl LogSink for Collect {
            fn log(&self, line: LogLine) {
                self.0.lock().unwrap().push(line);
            }
        }

        for lines_max in [1u32, 0] {
            let sink = Arc::new(Collect::default());
            let config = HostConfig::default().limits(Limits {
                log_lines_max: lines_max,
                ..limits()
            });
            let host = WasmHost::with_log_sink(config, sink.clone()).unwrap();
            let cord = actuator(&host, components::CORD_ACTUATORS);
            let engine = engine_with("Site", "s1");
            assert_eq!(cord.delete(&engine.view_key("s1").unwrap()), Outcome::ok());
            let lines = sink.0.lock().unwrap().clone();
            if lines_max == 1 {
                assert_eq!(
                    lines,
                    vec![LogLine {
                        plugin: "cord-actuators".into(),
                        key: "s1".into(),
                        level: LogLevel::Info,
                        message: "deleted Site s1".into(),
                    }]
                );
                assert_eq!(host.logs_dropped(), 0);
            } else {
                assert!(lines.is_empty(), "{lines:?}");
                assert_eq!(host.logs_dropped(), 1, "the line over the limit is counted");
            }
        }
    }

    /// Goal: a second start loads compiled code from the disk cache instead of compiling.
    /// Method: two hosts over a fresh cache directory load the same component.
    #[test]
    fn compiled_components_are_cached_on_disk() {
        let dir =
            std::env::temp_dir().join(format!("syncore-wasm-cache-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = || HostConfig::default().limits(limits()).cache_dir(&dir);
        let cold = WasmHost::new(config()).unwrap();
        cold.load_actuator("noop", components::NOOP_ACTUATOR)
            .unwrap();
        assert_eq!(cold.cache_stats().hits, 0);
        assert_eq!(cold.cache_stats().misses, 1);
        cold.load_actuator("noop-again", components::NOOP_ACTUATOR)
            .unwrap();
        assert_eq!(
            cold.cache_stats().misses,
            1,
            "the same bytes are compiled once per host"
        );

        let warm = WasmHost::new(config()).unwrap();
        let noop = warm
            .load_actuator("noop", components::NOOP_ACTUATOR)
            .unwrap();
        assert_eq!(
            warm.cache_stats(),
            syncore::wasm::CacheStats { hits: 1, misses: 0 }
        );
        assert_eq!(sync(&noop, "Good", "g"), Outcome::ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Goal: fresh and reused instances give the same outcomes, from several threads at once.
    #[test]
    fn fresh_and_reused_instances_agree_under_concurrency() {
        let engine = {
            let mut engine = Engine::new(
                Schema::from_json(super::cord::SCHEMA).unwrap(),
                Config::default(),
            );
            engine.apply(super::cord::deployment()).unwrap();
            engine
        };
        let keys: Vec<String> = engine.keys().map(str::to_string).collect();
        let outcomes = |instances: Instances| {
            let host = host_with(limits(), instances);
            let cord = actuator(&host, components::CORD_ACTUATORS);
            std::thread::scope(|s| {
                let workers: Vec<_> = (0..4)
                    .map(|_| {
                        s.spawn(|| {
                            keys.iter()
                                .map(|k| cord.sync(&engine.view_key(k).unwrap()))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                let all: Vec<Vec<Outcome>> =
                    workers.into_iter().map(|w| w.join().unwrap()).collect();
                assert!(
                    all.windows(2).all(|w| w[0] == w[1]),
                    "every thread sees the same outcomes"
                );
                all.into_iter().next().unwrap()
            })
        };
        assert_eq!(
            outcomes(Instances::Fresh),
            outcomes(Instances::Reuse { idle_max: 2 })
        );
    }
}

mod per_plugin {
    //! A test named after each plugin in `plugins/` (checked by `foreach_plugin!`).

    use super::rules::{failure, sync};
    use super::*;

    #[test]
    pub fn cord_actuators() {
        let cord = actuator(host(), components::CORD_ACTUATORS);
        let outcome = sync(&cord, "Site", "princeton");
        let id = format!("site-{:08x}", fnv1a("princeton") & 0xffff_ffff);
        assert_eq!(outcome, Outcome::ok_with([("id", id)]));
        assert_contains(
            &failure(sync(&cord, "Good", "g")),
            &["cord-actuators does not know model Good"],
        );
    }

    #[test]
    pub fn cord_policy() {
        let policy = host()
            .load_policy("cord-policy", components::CORD_POLICY)
            .unwrap();
        let mut engine = Engine::new(
            Schema::from_json(super::cord::SCHEMA).unwrap(),
            Config::default(),
        );
        engine.register_policy("Network", Box::new(policy)).unwrap();
        engine
            .apply(ChangeSet::new().upsert("n1", "Network", [("name", "n")]))
            .unwrap();
        let port = engine.object("n1-port").expect("n1-port created");
        assert_eq!(port.model, "Port");
        engine
            .apply(ChangeSet::new().upsert("n1", "Network", [("name", "renamed")]))
            .unwrap();
        assert_eq!(engine.len(), 2, "no second port once one exists");
    }

    #[test]
    pub fn cord_watcher() {
        let watcher = host_with(limits(), Instances::Fresh);
        let w = watcher
            .load_watcher("cord-watcher", components::CORD_WATCHER)
            .unwrap();
        let mut engine = Engine::new(
            Schema::from_json(super::cord::SCHEMA).unwrap(),
            Config::default(),
        );
        engine.register_watcher("Instance", Box::new(w)).unwrap();
        engine
            .apply(
                ChangeSet::new()
                    .upsert("s", "Site", [("name", "s")])
                    .upsert("sl", "Slice", [("site", "s")]),
            )
            .unwrap();
        engine
            .apply(ChangeSet::new().upsert("vm", "Instance", [("slice", "sl")]))
            .unwrap();
        let actuators = super::cord::MODELS
            .iter()
            .fold(Actuators::new(), |a, m| a.with(*m, super::cord::NativeCord));
        converge(&mut engine, &actuators, Time(0), 10);
        let logs = watcher.take_logs();
        assert!(
            logs.iter()
                .any(|l| l.key == "sl"
                    && l.message == "Instance saw feedback change of Slice sl [id]"),
            "{logs:?}"
        );
        assert_eq!(engine.watch_stats().failed, 0);
    }

    #[test]
    pub fn noop_actuator() {
        let noop = actuator(host(), components::NOOP_ACTUATOR);
        assert_eq!(sync(&noop, "Good", "g"), Outcome::ok());
        let engine = rules::engine_with("Good", "g");
        assert_eq!(
            noop.delete(&engine.view_key("g").unwrap()),
            Outcome::ok(),
            "the SDK's default delete"
        );
    }

    #[test]
    pub fn ambient_probe() {
        let probe = actuator(host(), components::AMBIENT_PROBE);
        // On a model without a `report` feedback field the probe's result is malformed.
        assert_contains(
            &failure(sync(&probe, "Good", "g")),
            &["has no feedback field `report`"],
        );
    }

    /// The probe on a host that grants it nothing: an unknown action is its own failure,
    /// reported with the plugin's own message (a guest's `Outcome::Failed` is not a host
    /// failure, so it carries no host prefix); `tests/wasm_backend.rs` drives every action
    /// with and without grants.
    #[test]
    pub fn capability_probe() {
        let probe = actuator(host(), components::CAPABILITY_PROBE);
        assert_eq!(failure(sync(&probe, "Good", "g")), "unknown action \"\"");
    }

    #[test]
    pub fn infinite_loop() {
        let spin = actuator(host(), components::INFINITE_LOOP);
        assert_contains(
            &failure(sync(&spin, "Loop", "l")),
            &["plugin infinite-loop: sync of l (Loop) failed: timeout: interrupted"],
        );
    }

    #[test]
    pub fn memory_bomb() {
        let bomb = actuator(host(), components::MEMORY_BOMB);
        assert_contains(
            &failure(sync(&bomb, "Bomb", "b")),
            &["out of memory: growing linear memory to"],
        );
    }

    #[test]
    pub fn trap_unreachable() {
        let trap = actuator(host(), components::TRAP_UNREACHABLE);
        assert_contains(
            &failure(sync(&trap, "Trap", "t")),
            &["trap: unreachable instruction executed"],
        );
    }

    #[test]
    pub fn panic_message() {
        let panic = actuator(host(), components::PANIC_MESSAGE);
        let message = failure(sync(&panic, "Panic", "p"));
        assert_contains(
            &message,
            &["panicked: the backend for p is on fire (at ", "src/lib.rs"],
        );
    }

    #[test]
    pub fn stack_overflow() {
        let deep = actuator(host(), components::STACK_OVERFLOW);
        assert_contains(
            &failure(sync(&deep, "Stack", "s")),
            &["stack overflow: call stack exhausted"],
        );
    }

    #[test]
    pub fn huge_result() {
        let huge = actuator(host(), components::HUGE_RESULT);
        assert_contains(
            &failure(sync(&huge, "Huge", "h")),
            &["result too large: more than 1048576 bytes"],
        );
    }

    #[test]
    pub fn writes_declarative() {
        let writer = actuator(host(), components::WRITES_DECLARATIVE);
        assert_contains(
            &failure(sync(&writer, "Writer", "w")),
            &["wrote declarative field `name`", "R9"],
        );
    }

    #[test]
    pub fn malformed_result() {
        let bad = actuator(host(), components::MALFORMED_RESULT);
        assert_contains(
            &failure(sync(&bad, "Malformed", "m")),
            &["malformed result: feedback `id`: float NaN is not finite"],
        );
        assert_contains(
            &failure(sync(&bad, "Malformed", "m-json")),
            &["malformed result: feedback `id`: json value is not JSON"],
        );
    }

    #[test]
    pub fn wrong_version() {
        let err = host()
            .load_actuator("wrong-version", components::WRONG_VERSION)
            .unwrap_err();
        assert_contains(&err.to_string(), &["syncore:plugin/actuator@0.1.0"]);
    }
}
