//! The same CORD-like actuator and policy written in Rust, Python, JavaScript and C, through
//! the same host, the same limits and the same hostile checks (issue 6).
//!
//! Goal: the language a plugin is written in changes nothing the engine can see. A run with
//! the Python, JavaScript or C plugins ends in the very snapshot the Rust plugins give, after
//! the very same trace; and a trap or an infinite loop written in any of the languages fails
//! only its own object, with a message naming the cause, while the rest converges.
//!
//! Method: the Rust components come from `syncore-test-plugins` (built by cargo); the others
//! are built by `plugins/<language>/build.sh` into `<target>/wasm-plugins-lang/<language>/`
//! (`.ci/run` installs the tools and runs the scripts first). One component per language
//! exports both the actuator and the policy (`plugins/lang-wit/world.wit`); it also holds the
//! language's hostile code, reached through the models `Trap` and `Loop`. A missing or stale
//! component fails the test with the commands that install the tools and build it: nothing
//! is skipped.
//!
//! Limits: every language runs under the host's default limits (`Limits::default()`: a 1 s
//! epoch deadline per call, 64 MiB of linear memory, 512 KiB of stack...), the Python and
//! JavaScript interpreters included; `docs/languages.md` has the measured call times.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use syncore::trace::{self, Event, Recorder};
use syncore::wasm::{
    HostConfig, Instances, LogBuffer, TimeLimit, WasmActuator, WasmHost, WasmPolicy,
};
use syncore::{
    Actuators, ChangeSet, Config, Engine, ExecConfig, Runner, RunnerConfig, Schema, Status,
    StopReason, Time, VirtualClock,
};

mod support;
use support::{converge, error_message};

/// The per-call time limit of every plugin in this file: the default's.
const TIMEOUT: Duration = Duration::from_secs(1);

/// The languages, Rust (the reference) first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lang {
    Rust,
    Python,
    Js,
    C,
}

const LANGS: [Lang; 4] = [Lang::Rust, Lang::Python, Lang::Js, Lang::C];

impl Lang {
    /// The directory under `plugins/` and under `<target>/wasm-plugins-lang/`.
    fn dir(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::C => "c",
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
            Lang::C => &["plugins/c/cord.c", "plugins/c/build.sh"],
        }
    }
}

/// The repository root.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `<target>/wasm-plugins-lang`, where the build scripts put the components (the target
/// directory is the parent of `CARGO_TARGET_TMPDIR`).
fn lang_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("wasm-plugins-lang")
}

/// The path of a language's component, checked: it exists and is newer than its sources.
///
/// # Panics
/// With the commands that install the language's tools and build the component.
fn component(lang: Lang) -> PathBuf {
    let path = lang_dir().join(lang.dir()).join("cord.wasm");
    let how = format!(
        "install the tools and build it with `plugins/{0}/install.sh && plugins/{0}/build.sh` \
         (see plugins/{0}/README.md; `.ci/run` does both)",
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
    let wit = [
        "plugins/lang-wit/world.wit",
        "wit/types.wit",
        "wit/actuator.wit",
        "wit/policy.wit",
        "wit/host.wit",
        "wit/config.wit",
    ];
    for source in lang.sources().iter().chain(&wit) {
        let changed = std::fs::metadata(repo().join(source))
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

/// The host settings of every language: the defaults, with compiled code cached on disk
/// under the target directory (shared with `tests/wasm.rs`).
fn config() -> HostConfig {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasm-test-cache");
    let config = HostConfig::default()
        .instances(Instances::Reuse { idle_max: 4 })
        .cache_dir(cache);
    assert_eq!(
        config.limits.time,
        TimeLimit::Epoch {
            timeout: TIMEOUT,
            tick: Duration::from_millis(10)
        },
        "the default time limit"
    );
    config
}

/// One language's plugins, loaded once per test binary (a Python component takes a while to
/// compile), with the host's log buffer.
struct Loaded {
    logs: Arc<LogBuffer>,
    actuator: WasmActuator,
    policy: WasmPolicy,
    /// The actuators of the hostile models `Trap` and `Loop`.
    trap: WasmActuator,
    spin: WasmActuator,
}

fn loaded(lang: Lang) -> &'static Loaded {
    static LOADED: [OnceLock<Loaded>; 4] = [const { OnceLock::new() }; 4];
    let index = LANGS.iter().position(|l| *l == lang).unwrap();
    LOADED[index].get_or_init(|| {
        let logs = Arc::new(LogBuffer::default());
        let host = WasmHost::with_log_sink(config(), logs.clone()).expect("host");
        let load = |name: &str, path: &Path| {
            host.load_actuator(name, path)
                .unwrap_or_else(|e| panic!("{lang:?}: {e}"))
        };
        let started = Instant::now();
        let loaded = match lang {
            Lang::Rust => {
                use syncore_test_plugins as rust;
                Loaded {
                    actuator: load("cord-actuators", Path::new(rust::CORD_ACTUATORS)),
                    policy: host
                        .load_policy("cord-policy", rust::CORD_POLICY)
                        .unwrap_or_else(|e| panic!("{e}")),
                    trap: load("panic-message", Path::new(rust::PANIC_MESSAGE)),
                    spin: load("infinite-loop", Path::new(rust::INFINITE_LOOP)),
                    logs,
                }
            }
            _ => {
                let path = component(lang);
                let actuator = load("cord-actuators", &path);
                Loaded {
                    policy: host
                        .load_policy("cord-policy", &path)
                        .unwrap_or_else(|e| panic!("{lang:?}: {e}")),
                    trap: actuator.clone(),
                    spin: actuator.clone(),
                    actuator,
                    logs,
                }
            }
        };
        eprintln!("{lang:?}: loaded in {:?}", started.elapsed());
        loaded
    })
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

/// [`SCHEMA`] and the hostile models `Trap` and `Loop`.
fn hostile_schema() -> Schema {
    let hostile = r#"{"name": "Trap", "fields": [{"name": "name", "type": "string"}]},
      {"name": "Loop", "fields": [{"name": "name", "type": "string"}]}"#;
    let cord = SCHEMA.trim_end().trim_end_matches("]}");
    Schema::from_json(&format!("{cord},\n{hostile}]}}")).expect("the hostile schema")
}

const MODELS: [&str; 5] = ["Site", "Slice", "Network", "Instance", "Port"];

/// Two sites with a slice each; a network per slice (the policy adds `net-b-port`);
/// instances; one explicit port.
fn deployment() -> ChangeSet {
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

/// Adds a site without a name: its sync fails (the actuator's own `failed`), and it is
/// retried after backoff.
fn nameless(changes: ChangeSet) -> ChangeSet {
    changes.upsert("nameless", "Site", [("name", syncore::Value::Null)])
}

/// Steps per [`Runner::run`] in [`run_scenario`]: the first phase uses them all.
const STEPS_MAX: u64 = 16;

/// A new network (the policy adds its port), a renamed slice, the removal of net-b with its
/// port (deletes run through the actuators too), and a name for the nameless site.
fn changes() -> ChangeSet {
    ChangeSet::new()
        .upsert("net-c", "Network", [("name", "c"), ("slice", "slice-a")])
        .upsert(
            "slice-a",
            "Slice",
            [("name", "a-renamed"), ("site", "princeton")],
        )
        .upsert("nameless", "Site", [("name", "Named at last")])
        .delete("net-b-port")
        .delete("net-b")
}

/// What a run left: the final snapshot, the trace with times and worker lanes cleared, and
/// the plugins' log lines (sorted: two workers interleave them).
struct Run {
    snapshot: Vec<u8>,
    trace: Vec<String>,
    logs: Vec<String>,
}

/// Runs both phases through a [`Runner`] on a virtual clock, recording the trace.
fn run_scenario(lang: Lang) -> Run {
    let plugins = loaded(lang);
    plugins.logs.take();
    let actuators = MODELS.iter().fold(Actuators::new(), |a, m| {
        a.with(*m, plugins.actuator.clone())
    });
    let mut engine = Engine::new(Schema::from_json(SCHEMA).unwrap(), Config::default());
    engine
        .register_policy("Network", Box::new(plugins.policy.clone()))
        .unwrap();
    let clock = Arc::new(VirtualClock::new(Time(0)));
    let config = RunnerConfig {
        exec: ExecConfig::new().threads(2),
        steps_max: Some(STEPS_MAX),
        ..RunnerConfig::default()
    };
    let mut runner = Runner::new(engine, &actuators, clock, config).expect("runner");
    runner.record(Recorder::memory()).unwrap();
    // Phase 1 does not converge by itself: the nameless site fails and backs off (virtual
    // time jumps to each retry) until the step budget ends the run.
    let phases = [
        (nameless(deployment()), StopReason::StepsMax),
        (changes(), StopReason::Converged),
    ];
    for (phase, reason) in phases {
        runner.sender().send(phase).unwrap();
        let summary = runner.run().expect("run");
        assert_eq!(summary.reason, reason, "{lang:?}: {summary:?}");
    }
    let text = runner.take_recorder().unwrap().into_text();
    let events = trace::parse(text.as_bytes()).expect("a valid trace");
    let replayed = trace::replay(&events, |engine| {
        engine
            .register_policy("Network", Box::new(plugins.policy.clone()))
            .unwrap();
    })
    .unwrap_or_else(|e| panic!("{lang:?}: the trace replays: {e}"));
    assert_eq!(replayed.state_hash, runner.engine().state_hash());
    let trace = events
        .into_iter()
        .map(|mut event| {
            if let Event::DidActuate {
                lane,
                start_ns,
                end_ns,
                ..
            } = &mut event
            {
                *lane = None;
                *start_ns = 0;
                *end_ns = 0;
            }
            serde_json::to_string(&event).unwrap()
        })
        .collect();
    let mut logs: Vec<String> = plugins
        .logs
        .take()
        .into_iter()
        .map(|l| format!("{} {} {:?} {}", l.plugin, l.key, l.level, l.message))
        .collect();
    logs.sort();
    Run {
        snapshot: runner.engine().snapshot(),
        trace,
        logs,
    }
}

/// The first line where two traces differ, for the failure message.
fn first_difference(a: &[String], b: &[String]) -> String {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x != y {
            return format!("line {}:\n  rust: {x}\n  this: {y}", i + 1);
        }
    }
    format!("lengths {} and {}", a.len(), b.len())
}

/// Goal: the Python, JavaScript and C plugins are indistinguishable from the Rust ones.
/// Method: the same two-phase scenario through a runner on a virtual clock with each
/// language's actuator and policy; the final snapshots must be byte-identical, the traces
/// identical line for line once times and worker lanes are cleared, and the plugins' log
/// lines identical. The trace of each run must also replay.
#[test]
fn every_language_gives_the_same_snapshot_and_trace_as_rust() {
    let rust = run_scenario(Lang::Rust);
    // The scenario exercises every kind of outcome, holds and deletes.
    for part in [
        r#""failed":{"message":"a site needs a name"}"#,
        r#""deferred":{"message":"the port's network has no cidr yet"}"#,
        r#""state":"held""#,
        r#""kind":"delete""#,
        r#""key":"net-c-port""#,
    ] {
        assert!(
            rust.trace.iter().any(|line| line.contains(part)),
            "the Rust trace should contain {part}"
        );
    }
    assert!(
        rust.logs
            .iter()
            .any(|l| l == "cord-actuators net-b Info deleted Network net-b"),
        "{:?}",
        rust.logs
    );
    for lang in [Lang::C, Lang::Js, Lang::Python] {
        let other = run_scenario(lang);
        assert!(
            other.trace == rust.trace,
            "{lang:?}: the trace differs from Rust's at {}",
            first_difference(&rust.trace, &other.trace)
        );
        assert!(
            other.snapshot == rust.snapshot,
            "{lang:?}: the final snapshot differs from Rust's"
        );
        assert_eq!(other.logs, rust.logs, "{lang:?}: the plugins' log lines");
    }
}

/// What each language's trap says besides "sync of trap-1 (Trap) failed".
fn trap_cause(lang: Lang) -> &'static str {
    match lang {
        // A Rust panic aborts; the host quotes the panic message.
        Lang::Rust => "panicked: the backend for trap-1 is on fire",
        // componentize-py prints the traceback, then its runtime (Rust) panics; the host
        // quotes the panic.
        Lang::Python => "panicked: Python function threw an unexpected exception",
        // StarlingMonkey prints the error and its stack, then aborts; the host quotes the
        // last line of stderr ("Redirecting call to abort() to mozalloc_abort").
        Lang::Js => "trap: unreachable instruction executed (stderr: ",
        // The C plugin writes to stderr, then executes `unreachable`.
        Lang::C => {
            "trap: unreachable instruction executed (stderr: the backend for trap-1 is on fire)"
        }
    }
}

/// Goal: a trap and an infinite loop written in each language fail only their own object,
/// with a message naming the cause, and the rest converges to what the Rust plugins give.
/// Method: the deployment plus `trap-1` (model `Trap`) and `loop-1` (model `Loop`), run until
/// both were retried; the CORD objects must be synced with Rust's feedback, the hostile ones
/// in error with the trap's or the timeout's message, the same on the retry.
#[test]
fn hostile_code_in_every_language_fails_only_its_own_object() {
    let mut reference: Option<BTreeMap<String, syncore::ObjectInfo>> = None;
    for lang in LANGS {
        let plugins = loaded(lang);
        let actuators = MODELS
            .iter()
            .fold(Actuators::new(), |a, m| {
                a.with(*m, plugins.actuator.clone())
            })
            .with("Trap", plugins.trap.clone())
            .with("Loop", plugins.spin.clone());
        let mut engine = Engine::new(hostile_schema(), Config::default());
        engine
            .register_policy("Network", Box::new(plugins.policy.clone()))
            .unwrap();
        engine
            .apply(
                deployment()
                    .upsert("trap-1", "Trap", [("name", "t")])
                    .upsert("loop-1", "Loop", [("name", "l")]),
            )
            .unwrap();
        let started = Instant::now();
        let mut now = Time(0);
        let hostile = ["trap-1", "loop-1"];
        let retried = |engine: &Engine| {
            hostile
                .iter()
                .all(|k| engine.object(k).unwrap().failures >= 2)
        };
        for _ in 0..10 {
            now = converge(&mut engine, &actuators, now, 3);
            if retried(&engine) {
                break;
            }
        }
        let elapsed = started.elapsed();
        assert!(
            retried(&engine),
            "{lang:?}: both hostile objects were retried"
        );

        let trap = error_message(&engine, "trap-1", now);
        let name = match lang {
            Lang::Rust => "panic-message",
            _ => "cord-actuators",
        };
        for part in [
            &format!("plugin {name}: sync of trap-1 (Trap) failed"),
            trap_cause(lang),
        ] {
            assert!(
                trap.contains(part),
                "{lang:?}: {trap:?} should contain {part:?}"
            );
        }
        let spin = error_message(&engine, "loop-1", now);
        let name = match lang {
            Lang::Rust => "infinite-loop",
            _ => "cord-actuators",
        };
        let timeout = format!(
            "plugin {name}: sync of loop-1 (Loop) failed: timeout: interrupted after exceeding the time limit of {} ms",
            TIMEOUT.as_millis()
        );
        assert_eq!(spin, timeout, "{lang:?}");
        // Two loops ran to their deadline; everything else is quick.
        assert!(
            elapsed < 2 * TIMEOUT + Duration::from_secs(20),
            "{lang:?}: {elapsed:?}"
        );

        let objects: BTreeMap<String, syncore::ObjectInfo> = engine
            .keys()
            .filter(|k| !hostile.contains(k))
            .map(|k| (k.to_string(), engine.object(k).unwrap()))
            .collect();
        for (key, object) in &objects {
            assert_eq!(
                engine.status(key, now),
                Some(Status::Synced),
                "{lang:?}: {key} converges beside the hostile objects: {object:?}"
            );
        }
        assert!(objects.contains_key("net-b-port"), "the policy ran");
        match &reference {
            None => reference = Some(objects),
            Some(rust) => {
                for (key, object) in rust {
                    assert_eq!(
                        objects[key].feedback, object.feedback,
                        "{lang:?}: {key}'s feedback is Rust's"
                    );
                }
                assert_eq!(objects.len(), rust.len(), "{lang:?}");
            }
        }
    }
}
