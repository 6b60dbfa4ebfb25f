//! The real-time runtime against a real backend: directories and files under a temporary
//! directory (Site -> Slice -> Instance), a slow actuator, a failing one, and a change set
//! sent mid-run that renames a site so its directory moves. Plus: a run with random
//! thread timing, recorded and replayed, gives the same final snapshot bytes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use syncore::runtime::{Registry, Runtime, RuntimeConfig};
use syncore::sched::{ModelSched, SchedConfig, Scheduler};
use syncore::{
    ActuationContext, AsyncActuator, BackoffPolicy, BoxFuture, ChangeSet, Config, Engine, Outcome,
    OwnedView, Schema, Status, Time, Value,
};

const SCHEMA: &str = r#"{"models": [
  {"name": "Site", "fields": [{"name": "name", "type": "string"}, {"name": "slow", "type": "bool"}],
   "feedback": [{"name": "dir", "type": "string"}]},
  {"name": "Slice", "fields": [{"name": "site", "type": "ref"}, {"name": "name", "type": "string"}],
   "feedback": [{"name": "dir", "type": "string"}],
   "links": [{"field": "site", "target": "Site", "into": ["dir"]}]},
  {"name": "Instance", "fields": [{"name": "slice", "type": "ref"}, {"name": "name", "type": "string"},
     {"name": "fail_first", "type": "int"}],
   "feedback": [{"name": "path", "type": "string"}],
   "links": [{"field": "slice", "target": "Slice", "into": ["dir"]}]}]}"#;

fn text(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

/// What the actuators saw, for the checks.
#[derive(Default)]
struct Log {
    /// (key, attempt, start, end).
    runs: Vec<(String, u32, Instant, Instant)>,
    /// Problems an actuator found with its dependency's feedback.
    problems: Vec<String>,
}

struct Sites {
    root: PathBuf,
    log: Arc<Mutex<Log>>,
}

impl AsyncActuator for Sites {
    fn sync(&self, cx: ActuationContext, o: OwnedView) -> BoxFuture<Outcome> {
        let root = self.root.clone();
        let log = self.log.clone();
        Box::pin(async move {
            let start = Instant::now();
            if o.field("slow") == Some(&Value::Bool(true)) {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            let name = text(o.field("name")).unwrap_or_default();
            let dir = root.join(&name);
            // A rename moves the old directory (and everything under it).
            if let Some(old) = text(o.feedback("dir")) {
                let old = PathBuf::from(old);
                if old != dir && old.exists() {
                    std::fs::rename(&old, &dir).expect("move the site directory");
                }
            }
            std::fs::create_dir_all(&dir).expect("site directory");
            log.lock()
                .unwrap()
                .runs
                .push((o.key().into(), cx.attempt, start, Instant::now()));
            Outcome::ok_with([("dir", dir.to_string_lossy().to_string())])
        })
    }
}

struct Slices {
    log: Arc<Mutex<Log>>,
}

impl AsyncActuator for Slices {
    fn sync(&self, cx: ActuationContext, o: OwnedView) -> BoxFuture<Outcome> {
        let log = self.log.clone();
        Box::pin(async move {
            let start = Instant::now();
            let site = &o.dependencies()[0];
            let Some(site_dir) = text(site.feedback("dir")) else {
                log.lock()
                    .unwrap()
                    .problems
                    .push(format!("{}: site has no dir", o.key()));
                return Outcome::deferred("site not ready");
            };
            if !Path::new(&site_dir).is_dir() {
                log.lock()
                    .unwrap()
                    .problems
                    .push(format!("{}: stale site dir {site_dir}", o.key()));
            }
            let dir = Path::new(&site_dir).join(text(o.field("name")).unwrap_or_default());
            std::fs::create_dir_all(&dir).expect("slice directory");
            log.lock()
                .unwrap()
                .runs
                .push((o.key().into(), cx.attempt, start, Instant::now()));
            Outcome::ok_with([("dir", dir.to_string_lossy().to_string())])
        })
    }
}

struct Instances {
    log: Arc<Mutex<Log>>,
}

impl AsyncActuator for Instances {
    fn sync(&self, cx: ActuationContext, o: OwnedView) -> BoxFuture<Outcome> {
        let log = self.log.clone();
        Box::pin(async move {
            let start = Instant::now();
            let slice = &o.dependencies()[0];
            let Some(slice_dir) = text(slice.feedback("dir")) else {
                log.lock()
                    .unwrap()
                    .problems
                    .push(format!("{}: slice has no dir", o.key()));
                return Outcome::deferred("slice not ready");
            };
            if !Path::new(&slice_dir).is_dir() {
                log.lock()
                    .unwrap()
                    .problems
                    .push(format!("{}: stale slice dir {slice_dir}", o.key()));
            }
            let fail_first = match o.field("fail_first") {
                Some(Value::Int(n)) => *n as u32,
                _ => 0,
            };
            log.lock()
                .unwrap()
                .runs
                .push((o.key().into(), cx.attempt, start, Instant::now()));
            if cx.attempt <= fail_first {
                return Outcome::failed(format!("attempt {} fails", cx.attempt));
            }
            let name = text(o.field("name")).unwrap_or_default();
            let path = Path::new(&slice_dir).join(format!("{name}.txt"));
            std::fs::write(&path, format!("{} v{}", o.key(), o.version())).expect("instance file");
            Outcome::ok_with([("path", path.to_string_lossy().to_string())])
        })
    }
}

/// The files backend's actuators (Site -> Slice -> Instance) under `root`, logging to `log`.
fn files_backend(root: &Path, log: &Arc<Mutex<Log>>) -> Registry {
    Registry::new()
        .with_async(
            "Site",
            Sites {
                root: root.to_path_buf(),
                log: log.clone(),
            },
        )
        .with_async("Slice", Slices { log: log.clone() })
        .with_async("Instance", Instances { log: log.clone() })
}

fn temp_root(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let root = std::env::temp_dir().join(format!("syncore-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    root
}

fn initial() -> ChangeSet {
    ChangeSet::new()
        .upsert(
            "s1",
            "Site",
            [("name", Value::from("alpha")), ("slow", Value::Bool(false))],
        )
        .upsert(
            "s2",
            "Site",
            [
                ("name", Value::from("slowsite")),
                ("slow", Value::Bool(true)),
            ],
        )
        .upsert("sl1", "Slice", [("site", "s1"), ("name", "web")])
        .upsert("sl2", "Slice", [("site", "s2"), ("name", "db")])
        .upsert("i1", "Instance", [("slice", "sl1"), ("name", "one")])
        .upsert("i2", "Instance", [("slice", "sl2"), ("name", "two")])
        .upsert(
            "ifail",
            "Instance",
            [
                ("slice", Value::from("sl1")),
                ("name", Value::from("flaky")),
                ("fail_first", Value::Int(2)),
            ],
        )
}

#[test]
fn new_user_files_backend_rename_mid_run_slow_and_failing_actuators() {
    let root = temp_root("sched");
    let log = Arc::new(Mutex::new(Log::default()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stopped = rt.block_on(async {
        let config = Config {
            backoff: BackoffPolicy {
                base_ms: 200,
                factor: 2,
                cap_ms: 10_000,
                jitter_permille: 0,
                ..BackoffPolicy::default()
            },
            ..Config::default()
        };
        let engine = Engine::new(Schema::from_json(SCHEMA).unwrap(), config);
        let sched = Scheduler::new(engine, SchedConfig::default()).unwrap();
        let registry = files_backend(&root, &log);
        let runtime = Runtime::start(
            sched,
            registry,
            RuntimeConfig {
                record: true,
                ..RuntimeConfig::default()
            },
        )
        .unwrap();
        let h = runtime.handle().clone();
        let t0 = Instant::now();
        h.apply(initial()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The slow site is still being synced: the rename must not wait for it.
        let slow_in_flight = h
            .query(|s| s.lease(s.engine().id("s2").unwrap()).is_some())
            .await
            .unwrap();
        assert!(slow_in_flight, "the slow site's 2 s actuation is running");
        let sent = Instant::now();
        h.apply(ChangeSet::new().upsert("s1", "Site", [("name", "beta")]))
            .await
            .unwrap();
        let took = sent.elapsed();
        assert!(
            took < Duration::from_millis(50),
            "change set applied after {took:?}"
        );
        h.converged().await;
        let total = t0.elapsed();
        let stopped = runtime.shutdown(Duration::from_secs(1)).await;
        (stopped, total)
    });
    let (stopped, total) = stopped;
    let log = log.lock().unwrap();
    assert!(
        log.problems.is_empty(),
        "dependents saw stale feedback: {:?}",
        log.problems
    );

    // Retries at failure time + delay (200 ms, then 400 ms), not after the slow site.
    let flaky: Vec<_> = log.runs.iter().filter(|r| r.0 == "ifail").collect();
    assert_eq!(
        flaky.iter().map(|r| r.1).take(3).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    for (k, want) in [(1usize, 200u64), (2, 400)] {
        let gap = flaky[k].2.duration_since(flaky[k - 1].3);
        assert!(
            gap >= Duration::from_millis(want - 5) && gap < Duration::from_millis(want + 150),
            "retry {k} came {gap:?} after the failure, expected about {want} ms"
        );
    }
    assert!(flaky[2].2.duration_since(flaky[0].2) < Duration::from_millis(1500));
    // Completion-driven: the run takes about the slow site's 2 s, not a batch multiple.
    assert!(
        total < Duration::from_millis(3500),
        "converged after {total:?}"
    );

    // The backend matches the declarative state, after the rename.
    let engine = stopped.scheduler.engine();
    for key in engine.keys() {
        assert_eq!(
            engine.status(key, Time(u64::MAX / 2)),
            Some(Status::Synced),
            "{key}"
        );
    }
    assert!(!root.join("alpha").exists(), "the old site directory moved");
    for (key, path) in [
        ("i1", root.join("beta/web/one.txt")),
        ("ifail", root.join("beta/web/flaky.txt")),
        ("i2", root.join("slowsite/db/two.txt")),
    ] {
        let content = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let version = engine.object(key).unwrap().version;
        assert_eq!(content, format!("{key} v{version}"));
        let fb = text(engine.view_key(key).unwrap().feedback("path")).unwrap();
        assert_eq!(PathBuf::from(fb), path, "{key}'s feedback names its file");
    }
    // i1 ran again after the rename (its slice's dir moved), with the new directory.
    assert!(log.runs.iter().filter(|r| r.0 == "i1").count() >= 2);

    // The recorded run replays to the same state hashes and snapshot bytes.
    let mut replay = Scheduler::restore(&stopped.initial).unwrap();
    assert_eq!(replay.replay(stopped.trace.clone()), stopped.hashes);
    assert_eq!(replay.snapshot(), stopped.scheduler.snapshot());
    let _ = std::fs::remove_dir_all(&root);
}

/// A deployment loaded as `Rows` (one per model, no field map per object) runs on the
/// real-time runtime against the files backend, with a slow site and instances that fail
/// first: the backend ends holding exactly the declarative state, one file per instance
/// with its version, and nothing else.
#[test]
fn a_deployment_loaded_as_rows_converges_on_the_files_backend() {
    let root = temp_root("rows");
    let log = Arc::new(Mutex::new(Log::default()));
    let mut engine = Engine::new(
        Schema::from_json(SCHEMA).unwrap(),
        Config {
            backoff: BackoffPolicy {
                base_ms: 20,
                factor: 2,
                cap_ms: 200,
                jitter_permille: 0,
                ..BackoffPolicy::default()
            },
            ..Config::default()
        },
    );
    let mut sites = syncore::Rows::new("Site", ["name", "slow"]).unwrap();
    for s in 0..3 {
        sites
            .push(
                &format!("s{s}"),
                [Value::from(format!("site{s}")), Value::Bool(s == 0)],
            )
            .unwrap();
    }
    let mut slices = syncore::Rows::new("Slice", ["site", "name"]).unwrap();
    for l in 0..30 {
        slices
            .push(
                &format!("l{l:02}"),
                [
                    Value::Ref(format!("s{}", l % 3)),
                    Value::from(format!("slice{l}")),
                ],
            )
            .unwrap();
    }
    let mut instances = syncore::Rows::new("Instance", ["slice", "name", "fail_first"]).unwrap();
    for i in 0..300 {
        instances
            .push(
                &format!("i{i:03}"),
                [
                    Value::Ref(format!("l{:02}", i % 30)),
                    Value::from(format!("inst{i}")),
                    Value::Int(i64::from(i % 7 == 0)),
                ],
            )
            .unwrap();
    }
    for rows in [sites, slices, instances] {
        let n = rows.len();
        assert_eq!(engine.apply_rows(rows).unwrap().changed.len(), n);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stopped = rt.block_on(async {
        let sched = Scheduler::new(engine, SchedConfig::default()).unwrap();
        let registry = files_backend(&root, &log);
        let runtime = Runtime::start(sched, registry, RuntimeConfig::default()).unwrap();
        let h = runtime.handle().clone();
        tokio::time::timeout(Duration::from_secs(30), h.converged())
            .await
            .expect("converges");
        runtime.shutdown(Duration::from_secs(1)).await
    });
    let log = log.lock().unwrap();
    assert!(
        log.problems.is_empty(),
        "stale feedback: {:?}",
        log.problems
    );
    let failed_first = log
        .runs
        .iter()
        .filter(|r| r.0.starts_with('i') && r.1 == 2)
        .count();
    assert_eq!(
        failed_first,
        300 / 7 + 1,
        "every fail_first instance retried once"
    );
    // Exactly the declarative state: a directory per site, per slice under its site, a
    // file per instance under its slice holding its key and version.
    let engine = stopped.scheduler.engine();
    let mut want: Vec<PathBuf> = Vec::new();
    for i in 0..300u32 {
        let (l, s) = (i % 30, i % 30 % 3);
        let path = root.join(format!("site{s}/slice{l}/inst{i}.txt"));
        let key = format!("i{i:03}");
        let version = engine.object(&key).unwrap().version;
        assert_eq!(
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}")),
            format!("{key} v{version}")
        );
        want.push(path);
    }
    let mut found: Vec<PathBuf> = Vec::new();
    for site in std::fs::read_dir(&root).unwrap() {
        for slice in std::fs::read_dir(site.unwrap().path()).unwrap() {
            for file in std::fs::read_dir(slice.unwrap().path()).unwrap() {
                found.push(file.unwrap().path());
            }
        }
    }
    want.sort();
    found.sort();
    assert_eq!(
        found, want,
        "the backend holds the declarative state and nothing else"
    );
    for key in engine.keys() {
        assert_eq!(
            engine.status(key, Time(u64::MAX / 2)),
            Some(Status::Synced),
            "{key}"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// An actuator that sleeps a random few milliseconds (real thread timing), fails now and
/// then, and writes a file.
struct Jittery {
    root: PathBuf,
    seed: u64,
}

impl AsyncActuator for Jittery {
    fn sync(&self, cx: ActuationContext, o: OwnedView) -> BoxFuture<Outcome> {
        let root = self.root.clone();
        let h = o
            .key()
            .bytes()
            .fold(self.seed ^ u64::from(cx.attempt), |h, b| {
                h.wrapping_mul(31).wrapping_add(u64::from(b))
            });
        Box::pin(async move {
            tokio::time::sleep(Duration::from_micros(h % 3000)).await;
            if h % 5 == 0 && cx.attempt == 1 {
                return Outcome::failed("transient");
            }
            std::fs::write(root.join(o.key()), o.version().to_string()).unwrap();
            Outcome::ok_with([("n", o.version() as i64)])
        })
    }

    fn delete(&self, _: ActuationContext, o: OwnedView) -> BoxFuture<Outcome> {
        let path = self.root.join(o.key());
        Box::pin(async move {
            let _ = std::fs::remove_file(path);
            Outcome::ok()
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// A runtime run with random thread timing, recorded and replayed from its initial
    /// snapshot, gives the same final snapshot bytes.
    #[test]
    fn r12_runtime_trace_replays_to_the_same_snapshot(seed in any::<u64>(), n in 2usize..12, threads in 1usize..3) {
        let root = temp_root("replay");
        let schema = Schema::from_json(r#"{"models": [
            {"name": "A", "feedback": [{"name": "n", "type": "int"}]},
            {"name": "B", "fields": [{"name": "a", "type": "ref"}], "feedback": [{"name": "n", "type": "int"}],
             "links": [{"field": "a", "target": "A", "into": ["n"]}]}]}"#).unwrap();
        let mut config = Config::default();
        config.backoff.base_ms = 2;
        config.backoff.cap_ms = 8;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().unwrap();
        let stopped = rt.block_on(async {
            let sched = Scheduler::new(Engine::new(schema, config), SchedConfig::default()
                .concurrency(3)
                .model("B", ModelSched { limit: Some(2), ..ModelSched::default() })).unwrap();
            let registry = Registry::new()
                .with_async("A", Jittery { root: root.clone(), seed })
                .with_async("B", Jittery { root: root.clone(), seed: seed.rotate_left(7) });
            let runtime = Runtime::start(sched, registry, RuntimeConfig { record: true, ..RuntimeConfig::default() }).unwrap();
            let h = runtime.handle().clone();
            let mut cs = ChangeSet::new();
            for i in 0..n {
                cs = cs.upsert(format!("a{i}"), "A", Vec::<(String, Value)>::new());
                cs = cs.upsert(format!("b{i}"), "B", [("a", format!("a{i}"))]);
            }
            h.apply(cs).await.unwrap();
            tokio::time::sleep(Duration::from_millis(seed % 4)).await;
            // In-flight updates and deletes.
            h.apply(ChangeSet::new().upsert("b0", "B", [("a", "a1")]).delete(format!("b{}", n - 1))).await.unwrap();
            h.converged().await;
            runtime.shutdown(Duration::from_secs(1)).await
        });
        let mut replay = Scheduler::restore(&stopped.initial).unwrap();
        let hashes = replay.replay(stopped.trace.clone());
        prop_assert_eq!(hashes, stopped.hashes.clone());
        prop_assert_eq!(replay.snapshot(), stopped.scheduler.snapshot());
        // The backend: one file per B left, holding its version.
        for i in 0..n - 1 {
            let v = stopped.scheduler.engine().object(&format!("b{i}")).unwrap().version;
            prop_assert_eq!(std::fs::read_to_string(root.join(format!("b{i}"))).unwrap(), v.to_string());
        }
        let gone = root.join(format!("b{}", n - 1));
        prop_assert!(!gone.exists(), "deleted object's file remains");
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// A blocking actuator that hangs on its first attempt, on the runtime's pool.
struct Hangs {
    /// (attempt, start, end).
    calls: Arc<Mutex<Vec<(u32, Instant, Instant)>>>,
}

impl syncore::runtime::BlockingActuator for Hangs {
    fn sync(&self, cx: ActuationContext, _: OwnedView) -> Outcome {
        let start = Instant::now();
        if cx.attempt == 1 {
            std::thread::sleep(Duration::from_millis(1500));
        }
        self.calls
            .lock()
            .unwrap()
            .push((cx.attempt, start, Instant::now()));
        Outcome::ok()
    }
}

#[test]
fn overdue_blocking_actuation_times_out_and_its_thread_is_abandoned() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let stopped = rt.block_on(async {
        let schema = Schema::from_json(r#"{"models": [{"name": "Site"}]}"#).unwrap();
        let config = Config {
            backoff: BackoffPolicy {
                base_ms: 10,
                jitter_permille: 0,
                ..BackoffPolicy::default()
            },
            ..Config::default()
        };
        let sched = Scheduler::new(
            Engine::new(schema, config),
            SchedConfig::default().model(
                "Site",
                ModelSched {
                    timeout_ms: Some(50),
                    ..ModelSched::default()
                },
            ),
        )
        .unwrap();
        let registry = Registry::new().with_blocking(
            "Site",
            Hangs {
                calls: calls.clone(),
            },
        );
        let runtime = Runtime::start(
            sched,
            registry,
            RuntimeConfig {
                blocking_threads: 1,
                ..RuntimeConfig::default()
            },
        )
        .unwrap();
        let start = Instant::now();
        runtime
            .handle()
            .apply(ChangeSet::new().upsert("s", "Site", Vec::<(String, Value)>::new()))
            .await
            .unwrap();
        runtime.handle().converged().await;
        // The retry ran on a replacement thread, long before the hung call returned.
        assert!(
            start.elapsed() < Duration::from_millis(400),
            "{:?}",
            start.elapsed()
        );
        runtime.shutdown(Duration::from_secs(1)).await
    });
    // The retry ran on a replacement thread while the hung call was still running.
    std::thread::sleep(Duration::from_millis(1600));
    let calls = calls.lock().unwrap();
    assert_eq!(calls.iter().map(|c| c.0).collect::<Vec<_>>(), [2, 1]);
    assert!(
        calls[0].1 < calls[1].2,
        "the retry did not wait for the hung call"
    );
    assert_eq!(stopped.stats.abandoned, 1);
    assert_eq!(stopped.scheduler.stats().timed_out, 1);
    assert_eq!(
        stopped.scheduler.engine().status("s", Time(0)),
        Some(Status::Synced)
    );
}

/// A file backend written by plain [`syncore::Actuator`]s (the executor's trait, which WASM
/// plugins implement too): a Site writes its directory, a Host writes a file inside its
/// Site's directory, read from the Site's feedback at dispatch. Run on the runtime with
/// `Registry::with_actuator`, a clock that starts late and runs 20 times fast, a first
/// failure, and slow calls.
#[test]
fn plain_actuators_run_on_the_runtime_against_files_with_a_scaled_clock() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use syncore::{Actuator, ObjectView};

    struct SiteDir(PathBuf);
    impl Actuator for SiteDir {
        fn sync(&self, o: &ObjectView<'_>) -> Outcome {
            let name = text(o.field("name")).unwrap_or_default();
            let dir = self.0.join(&name);
            std::thread::sleep(Duration::from_millis(20));
            match std::fs::create_dir_all(&dir) {
                Ok(()) => Outcome::ok_with([("dir", dir.display().to_string())]),
                Err(e) => Outcome::failed(format!("mkdir {}: {e}", dir.display())),
            }
        }
    }
    struct HostFile(AtomicU32);
    impl Actuator for HostFile {
        fn sync(&self, o: &ObjectView<'_>) -> Outcome {
            if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                return Outcome::failed("backend busy");
            }
            let Some(site) = o.dependencies().next() else {
                return Outcome::failed("no site");
            };
            let Some(dir) = text(site.feedback("dir")) else {
                return Outcome::deferred("site has no directory yet");
            };
            let path = Path::new(&dir).join(o.key());
            match std::fs::write(&path, format!("v{}", o.version())) {
                Ok(()) => Outcome::ok_with([("path", path.display().to_string())]),
                Err(e) => Outcome::failed(format!("write {}: {e}", path.display())),
            }
        }
        fn delete(&self, o: &ObjectView<'_>) -> Outcome {
            match o.feedback("path").and_then(|v| text(Some(v))) {
                Some(p) => match std::fs::remove_file(&p) {
                    Ok(()) => Outcome::ok(),
                    Err(e) => Outcome::failed(format!("rm {p}: {e}")),
                },
                None => Outcome::ok(),
            }
        }
    }

    let root = temp_root("plain");
    let schema = Schema::from_json(
        r#"{"models": [
      {"name": "Site", "fields": [{"name": "name", "type": "string"}], "feedback": [{"name": "dir", "type": "string"}]},
      {"name": "Host", "fields": [{"name": "site", "type": "ref"}], "feedback": [{"name": "path", "type": "string"}],
       "links": [{"field": "site", "target": "Site"}]}]}"#,
    )
    .unwrap();
    let start_at = Time(1_000_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stopped = rt.block_on(async {
        let sched = Scheduler::new(
            Engine::new(schema, Config::default()),
            SchedConfig::default(),
        )
        .unwrap();
        let registry = Registry::new()
            .with_actuator("Site", Arc::new(SiteDir(root.clone())))
            .with_actuator("Host", Arc::new(HostFile(AtomicU32::new(0))));
        let config = RuntimeConfig {
            record: true,
            start_at,
            time_scale: 20,
            ..RuntimeConfig::default()
        };
        let runtime = Runtime::start(sched, registry, config).unwrap();
        let h = runtime.handle().clone();
        h.apply(
            ChangeSet::new()
                .upsert("s", "Site", [("name", "east")])
                .upsert("h1", "Host", [("site", "s")])
                .upsert("h2", "Host", [("site", "s")]),
        )
        .await
        .unwrap();
        tokio::time::timeout(Duration::from_secs(20), h.converged())
            .await
            .expect("converges");
        h.apply(ChangeSet::new().delete("h2")).await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), h.converged())
            .await
            .expect("converges after the delete");
        runtime.shutdown(Duration::from_secs(5)).await
    });
    let e = stopped.scheduler.engine();
    // The backend: the site's directory holds h1's file (written with the site's fresh
    // feedback), and h2's file is gone.
    let dir = root.join("east");
    assert_eq!(
        std::fs::read_to_string(dir.join("h1")).unwrap(),
        format!("v{}", e.object("h1").unwrap().version)
    );
    assert!(!dir.join("h2").exists(), "h2's file was deleted");
    assert!(e.object("h2").is_none());
    assert_eq!(e.status("h1", start_at), Some(Status::Synced));
    // Every input carries the late, scaled clock.
    assert!(
        stopped.trace.iter().all(|i| i.now() >= start_at),
        "{:?}",
        stopped.trace.first()
    );
    // And the record replays to the same state.
    let mut again = Scheduler::restore(&stopped.initial).unwrap();
    assert_eq!(again.replay(stopped.trace.clone()), stopped.hashes);
    assert_eq!(again.snapshot(), stopped.scheduler.snapshot());
    let _ = std::fs::remove_dir_all(&root);
}

/// The lifecycle of a runtime against a file backend: its journal, back-pressure on its
/// input channel, and graceful shutdown.
mod lifecycle {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use syncore::runtime::{Journal, RefusedBy};
    use syncore::sched::Input;

    use super::*;

    const FLAT: &str = r#"{"models": [{"name": "File", "fields": [{"name": "ms", "type": "int"}],
        "feedback": [{"name": "path", "type": "string"}]}]}"#;

    /// Writes `<root>/<key>` holding the object's version after sleeping `ms` (a field); an
    /// actuation cancelled meanwhile (shutdown, timeout) writes nothing.
    struct SlowFile(PathBuf);
    impl AsyncActuator for SlowFile {
        fn sync(&self, cx: ActuationContext, o: OwnedView) -> BoxFuture<Outcome> {
            let path = self.0.join(o.key());
            let ms = match o.field("ms") {
                Some(Value::Int(ms)) => *ms as u64,
                _ => 0,
            };
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                if cx.cancel.is_cancelled() {
                    return Outcome::failed("cancelled");
                }
                match std::fs::write(&path, format!("v{}", o.version())) {
                    Ok(()) => Outcome::ok_with([("path", path.display().to_string())]),
                    Err(e) => Outcome::failed(format!("write {}: {e}", path.display())),
                }
            })
        }
    }

    fn files(ms: &[(&str, i64)]) -> ChangeSet {
        ms.iter().fold(ChangeSet::new(), |cs, (k, ms)| {
            cs.upsert(*k, "File", [("ms", *ms)])
        })
    }

    fn scheduler() -> Scheduler {
        Scheduler::new(
            Engine::new(Schema::from_json(FLAT).unwrap(), Config::default()),
            SchedConfig::default(),
        )
        .unwrap()
    }

    fn tokio_rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// A journal in a file: frames of (seq, length, `Input::to_bytes`), flushed per input;
    /// it fails from input `fail_from` on.
    struct FileJournal {
        file: std::fs::File,
        fail_from: Arc<AtomicU64>,
    }
    impl Journal for FileJournal {
        fn record(&mut self, seq: u64, input: &Input) -> Result<(), String> {
            if seq >= self.fail_from.load(Ordering::SeqCst) {
                return Err(format!("disk full at input {seq}"));
            }
            let bytes = input.to_bytes();
            let mut frame = seq.to_le_bytes().to_vec();
            frame.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            frame.extend_from_slice(&bytes);
            self.file.write_all(&frame).map_err(|e| e.to_string())?;
            self.file.flush().map_err(|e| e.to_string())
        }
    }

    fn read_journal(path: &Path) -> Vec<(u64, Input)> {
        let bytes = std::fs::read(path).unwrap();
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let seq = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
            let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
            let input = Input::from_bytes(&bytes[at + 12..at + 12 + len]).unwrap();
            out.push((seq, input));
            at += 12 + len;
        }
        out
    }

    #[test]
    fn the_journal_sees_every_input_in_order_and_a_failing_journal_refuses_and_stops() {
        let root = temp_root("journal");
        let log = root.join("journal.bin");
        let fail_from = Arc::new(AtomicU64::new(u64::MAX));
        let journal = FileJournal {
            file: std::fs::File::create(&log).unwrap(),
            fail_from: fail_from.clone(),
        };
        let backend = root.join("backend");
        std::fs::create_dir_all(&backend).unwrap();
        let (stopped, refused) = tokio_rt().block_on(async {
            let registry = Registry::new().with_async("File", SlowFile(backend.clone()));
            let config = RuntimeConfig {
                record: true,
                ..RuntimeConfig::default()
            };
            let runtime =
                Runtime::start_with_journal(scheduler(), registry, config, Some(Box::new(journal)))
                    .unwrap();
            let h = runtime.handle().clone();
            h.apply(files(&[("a", 30), ("b", 5)])).await.unwrap();
            h.apply(files(&[("c", 10)])).await.unwrap();
            tokio::time::timeout(Duration::from_secs(20), h.converged())
                .await
                .expect("converges");
            // From now on the journal fails: the next change set is handed back, unapplied,
            // and the runtime stops (fail-stop).
            fail_from.store(0, Ordering::SeqCst);
            let refused = h.apply(files(&[("d", 0)])).await.unwrap_err();
            (runtime.shutdown(Duration::from_secs(5)).await, refused)
        });
        assert!(
            matches!(*refused.error, RefusedBy::Journal(ref m) if m.contains("disk full")),
            "{refused}"
        );
        assert_eq!(refused.changes, files(&[("d", 0)]), "handed back as sent");
        assert!(stopped.error.as_deref().unwrap_or("").contains("journal"));
        let e = stopped.scheduler.engine();
        assert!(
            e.object("d").is_none(),
            "a refused change set changes nothing"
        );
        assert!(!backend.join("d").exists());
        // The journal holds exactly the inputs applied, numbered 1, 2, ... in order.
        let journal = read_journal(&log);
        let seqs: Vec<u64> = journal.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=journal.len() as u64).collect::<Vec<_>>());
        let inputs: Vec<Input> = journal.into_iter().map(|(_, i)| i).collect();
        assert_eq!(inputs, stopped.trace);
        // ... and replaying it reproduces the final state; the backend matches it.
        let mut again = Scheduler::restore(&stopped.initial).unwrap();
        assert_eq!(again.replay(inputs), stopped.hashes);
        assert_eq!(again.snapshot(), stopped.scheduler.snapshot());
        for k in ["a", "b", "c"] {
            let o = e.object(k).unwrap();
            let on_disk = std::fs::read_to_string(backend.join(k)).unwrap();
            assert_eq!(on_disk, format!("v{}", o.version), "{k}");
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_full_input_channel_hands_change_sets_back_and_loses_none_it_accepted() {
        let root = temp_root("backpressure");
        let (accepted, refused, stopped) = tokio_rt().block_on(async {
            let registry = Registry::new().with_async("File", SlowFile(root.clone()));
            let config = RuntimeConfig {
                channel_capacity: 2,
                ..RuntimeConfig::default()
            };
            let runtime = Runtime::start(scheduler(), registry, config).unwrap();
            let h = runtime.handle().clone();
            // Hold the driver inside a query until released.
            let release = Arc::new(AtomicBool::new(false));
            let (running_tx, running_rx) = std::sync::mpsc::channel();
            let hold = {
                let (h, release) = (h.clone(), release.clone());
                tokio::spawn(async move {
                    h.query(move |_| {
                        running_tx.send(()).unwrap();
                        while !release.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    })
                    .await
                })
            };
            tokio::task::spawn_blocking(move || running_rx.recv().unwrap())
                .await
                .unwrap();
            let mut accepted = Vec::new();
            let mut refused = Vec::new();
            for i in 0..6 {
                let cs = files(&[(format!("f{i}").as_str(), 1)]);
                match h.try_apply(cs.clone()) {
                    Ok(answer) => accepted.push((i, answer)),
                    Err(back) => {
                        assert_eq!(back, cs, "handed back as sent");
                        refused.push(i);
                    }
                }
            }
            release.store(true, Ordering::SeqCst);
            hold.await.unwrap().unwrap();
            let mut ok = Vec::new();
            for (i, answer) in accepted {
                answer.await.unwrap().unwrap();
                ok.push(i);
            }
            tokio::time::timeout(Duration::from_secs(20), h.converged())
                .await
                .expect("converges");
            (ok, refused, runtime.shutdown(Duration::from_secs(5)).await)
        });
        assert_eq!(accepted, [0, 1], "the channel holds two inputs");
        assert_eq!(refused, [2, 3, 4, 5]);
        let e = stopped.scheduler.engine();
        for i in 0..6 {
            let k = format!("f{i}");
            let applied = accepted.contains(&i);
            assert_eq!(e.object(&k).is_some(), applied, "{k}");
            assert_eq!(root.join(&k).exists(), applied, "{k} on disk");
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn shutdown_waits_for_work_in_flight_then_cancels_and_the_snapshot_redispatches_it() {
        let root = temp_root("shutdown");
        let rt = tokio_rt();
        // A deadline longer than the work: the runtime waits, everything lands.
        let stopped = rt.block_on(async {
            let registry = Registry::new().with_async("File", SlowFile(root.clone()));
            let runtime = Runtime::start(scheduler(), registry, RuntimeConfig::default()).unwrap();
            let h = runtime.handle().clone();
            h.apply(files(&[("quick", 300)])).await.unwrap();
            runtime.shutdown(Duration::from_secs(10)).await
        });
        assert_eq!(stopped.unfinished, 0);
        let e = stopped.scheduler.engine();
        assert_eq!(e.status("quick", Time(u64::MAX / 2)), Some(Status::Synced));
        assert!(root.join("quick").exists());

        // A deadline shorter than the work: the actuation is cancelled (it writes nothing),
        // its lease stays in the snapshot, and a runtime started from it runs it again.
        let snapshot = {
            let mut s = stopped.scheduler;
            let mut out = Vec::new();
            s.step(
                Input::Apply {
                    changes: files(&[("slow", 1_500)]),
                    now: Time(0),
                },
                &mut out,
            );
            s.snapshot()
        };
        let (stopped, waited) = rt.block_on(async {
            let registry = Registry::new().with_async("File", SlowFile(root.clone()));
            let runtime = Runtime::start(
                Scheduler::restore(&snapshot).unwrap(),
                registry,
                RuntimeConfig::default(),
            )
            .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let t0 = Instant::now();
            let stopped = runtime.shutdown(Duration::from_millis(100)).await;
            (stopped, t0.elapsed())
        });
        assert_eq!(stopped.unfinished, 1, "the slow actuation was cut off");
        assert!(waited < Duration::from_millis(1_400), "waited {waited:?}");
        let leased: Vec<String> = stopped
            .scheduler
            .leases()
            .map(|l| stopped.scheduler.engine().key(l.task.object).to_string())
            .collect();
        assert_eq!(leased, ["slow"], "its lease survives the shutdown");
        std::thread::sleep(Duration::from_millis(1_600));
        assert!(
            !root.join("slow").exists(),
            "a cancelled actuation wrote nothing"
        );
        let snapshot = stopped.scheduler.snapshot();
        let stopped = rt.block_on(async {
            let registry = Registry::new().with_async("File", SlowFile(root.clone()));
            let runtime = Runtime::start(
                Scheduler::restore(&snapshot).unwrap(),
                registry,
                RuntimeConfig::default(),
            )
            .unwrap();
            let h = runtime.handle().clone();
            tokio::time::timeout(Duration::from_secs(20), h.converged())
                .await
                .expect("the restored lease runs again");
            runtime.shutdown(Duration::from_secs(5)).await
        });
        let e = stopped.scheduler.engine();
        let o = e.object("slow").unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("slow")).unwrap(),
            format!("v{}", o.version)
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
