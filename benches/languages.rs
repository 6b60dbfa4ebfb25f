//! The same CORD-like actuator written in Rust, Python, JavaScript and C (`plugins/`), side
//! by side through one host: what a language costs in component size, compile and load time,
//! and per call.
//!
//! - `size`: printed once (bytes of each component; the Rust row is `cord-actuators`, its
//!   policy is a second, separate component).
//! - `languages_compile/<lang>`: loading the component into a new host with no compile cache
//!   (Cranelift compiles it: a cold start).
//! - `languages_load/<lang>`: loading it into a new host from a filled on-disk compile cache
//!   (a warm start: read and map the compiled code, type-check, link).
//! - `languages_call/<lang>`: one `sync` of a Slice with its synced Site dependency, on a
//!   reused instance (the host's default): the guest's work plus the host's copy in and out.
//! - `languages_call_fresh/<lang>`: the same call on a fresh instance every time (pooling
//!   allocator): instantiation included.
//!
//! The Python, JavaScript and C components are built by `plugins/<lang>/build.sh` (see
//! `docs/languages.md`). Run:
//! `cargo bench --bench languages -- --warm-up-time 1 --measurement-time 5`
//! (numbers in docs/languages.md).

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use syncore::wasm::{HostConfig, Instances, WasmHost};
use syncore::{Actuator, ChangeSet, Config, Engine, Outcome, Schema, Time};

/// (language, component path), Rust first.
fn components() -> Vec<(&'static str, PathBuf)> {
    let lang_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("wasm-plugins-lang");
    let mut all = vec![("rust", PathBuf::from(syncore_test_plugins::CORD_ACTUATORS))];
    for lang in ["python", "js", "c"] {
        let path = lang_dir.join(lang).join("cord.wasm");
        assert!(
            path.is_file(),
            "{} is missing: run `plugins/{lang}/install.sh && plugins/{lang}/build.sh`",
            path.display()
        );
        all.push((lang, path));
    }
    all
}

/// An engine holding `slice` linked to `site` (synced, with feedback), as in `wasm_call`.
fn engine() -> Engine {
    let schema = Schema::from_json(
        r#"{"models": [
      {"name": "Site", "fields": [{"name": "name", "type": "string"}], "feedback": [{"name": "id", "type": "string"}]},
      {"name": "Slice", "fields": [{"name": "name", "type": "string"}, {"name": "site", "type": "ref"}],
       "feedback": [{"name": "id", "type": "string"}], "links": [{"field": "site", "target": "Site"}]}]}"#,
    )
    .expect("schema");
    let mut engine = Engine::new(schema, Config::default());
    engine
        .apply(
            ChangeSet::new()
                .upsert("site", "Site", [("name", "Princeton")])
                .upsert("slice", "Slice", [("name", "a"), ("site", "site")]),
        )
        .expect("apply");
    let site = engine.id("site").expect("site");
    let plan = engine.plan(Time(0));
    let task = plan
        .tasks
        .iter()
        .find(|t| t.object == site)
        .expect("site task");
    engine
        .complete(task, Outcome::ok_with([("id", "site-1")]), Time(0))
        .expect("complete");
    engine
}

fn calls(c: &mut Criterion) {
    let engine = engine();
    let view = engine.view_key("slice").expect("slice");
    let reuse = WasmHost::new(HostConfig::default()).expect("host");
    let fresh = WasmHost::new(HostConfig::default().instances(Instances::Fresh)).expect("host");
    let mut loaded = Vec::new();
    for (lang, path) in components() {
        let bytes = std::fs::read(&path).expect("component");
        println!("size/{lang}: {} bytes ({})", bytes.len(), path.display());
        let a = reuse.load_actuator_bytes(lang, &bytes).expect("load");
        let f = fresh.load_actuator_bytes(lang, &bytes).expect("load");
        let expected = Outcome::ok_with([("id", "slice-a7a1d8b1")]);
        assert_eq!(a.sync(&view), expected, "{lang}");
        assert_eq!(f.sync(&view), expected, "{lang}");
        loaded.push((lang, a, f));
    }

    let mut group = c.benchmark_group("languages_call");
    for (lang, a, _) in &loaded {
        group.bench_function(*lang, |b| b.iter(|| a.sync(&view)));
    }
    group.finish();
    let mut group = c.benchmark_group("languages_call_fresh");
    group.sample_size(20);
    for (lang, _, f) in &loaded {
        group.bench_function(*lang, |b| b.iter(|| f.sync(&view)));
    }
    group.finish();
}

fn loads(c: &mut Criterion) {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("syncore-bench-lang-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let all: Vec<(&str, Vec<u8>)> = components()
        .into_iter()
        .map(|(lang, path)| (lang, std::fs::read(path).expect("component")))
        .collect();
    // Fill the cache once.
    let filler = WasmHost::new(HostConfig::default().cache_dir(&dir)).expect("host");
    for (lang, bytes) in &all {
        filler.load_actuator_bytes(lang, bytes).expect("load");
    }

    let mut group = c.benchmark_group("languages_compile");
    group.sample_size(10);
    for (lang, bytes) in &all {
        group.bench_function(*lang, |b| {
            b.iter(|| {
                let host = WasmHost::new(HostConfig::default()).expect("host");
                host.load_actuator_bytes(lang, bytes).expect("load")
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("languages_load");
    group.sample_size(10);
    for (lang, bytes) in &all {
        group.bench_function(*lang, |b| {
            b.iter(|| {
                let host = WasmHost::new(HostConfig::default().cache_dir(&dir)).expect("host");
                let actuator = host.load_actuator_bytes(lang, bytes).expect("load");
                assert_eq!(host.cache_stats().misses, 0, "a warm load compiles nothing");
                actuator
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, calls, loads);
criterion_main!(benches);
