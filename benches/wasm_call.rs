//! The cost of the WASM sandbox: one actuator call, and loading a component.
//!
//! - `call/*`: one `sync` of a small object (two fields, one dependency) by a no-op
//!   actuator: native (the baseline), a wasm component with instance reuse (the default),
//!   and a wasm component with a fresh instance per call from the pooling allocator. Also the
//!   CORD actuator (a realistic guest: hashing, formatting, feedback) with reuse.
//! - `load/*`: loading the no-op component in a new host: a cold compile (no cache) and a
//!   warm load from the on-disk compile cache.
//!
//! Run: `cargo bench --bench wasm_call -- --warm-up-time 1 --measurement-time 3`
//! (numbers in BENCHMARKS.md, "WASM plugins").

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use syncore::wasm::{HostConfig, Instances, WasmHost};
use syncore::{Actuator, ChangeSet, Config, Engine, ObjectView, Outcome, Schema};
use syncore_test_plugins::{CORD_ACTUATORS, NOOP_ACTUATOR};

/// The native baseline: does nothing, succeeds.
struct NativeNoop;

impl Actuator for NativeNoop {
    fn sync(&self, _: &ObjectView<'_>) -> Outcome {
        Outcome::ok()
    }
}

/// An engine holding `slice` (two fields) linked to `site` (synced, with feedback).
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
    let plan = engine.plan(syncore::Time(0));
    let task = plan
        .tasks
        .iter()
        .find(|t| t.object == site)
        .expect("site task");
    engine
        .complete(task, Outcome::ok_with([("id", "site-1")]), syncore::Time(0))
        .expect("complete");
    engine
}

fn calls(c: &mut Criterion) {
    let engine = engine();
    let view = engine.view_key("slice").expect("slice");
    let reuse = WasmHost::new(HostConfig::default().instances(Instances::Reuse { idle_max: 16 }))
        .expect("host");
    let fresh = WasmHost::new(HostConfig::default().instances(Instances::Fresh)).expect("host");
    let wasm_reuse = reuse.load_actuator("noop", NOOP_ACTUATOR).expect("load");
    let wasm_fresh = fresh.load_actuator("noop", NOOP_ACTUATOR).expect("load");
    let cord = reuse.load_actuator("cord", CORD_ACTUATORS).expect("load");
    assert_eq!(wasm_reuse.sync(&view), Outcome::ok());
    assert!(cord.sync(&view).is_ok());

    let mut group = c.benchmark_group("call");
    group.bench_function("native_noop", |b| b.iter(|| NativeNoop.sync(&view)));
    group.bench_function("wasm_noop_reuse", |b| b.iter(|| wasm_reuse.sync(&view)));
    group.bench_function("wasm_noop_fresh_pooling", |b| {
        b.iter(|| wasm_fresh.sync(&view))
    });
    group.bench_function("wasm_cord_reuse", |b| b.iter(|| cord.sync(&view)));
    group.finish();
}

fn loads(c: &mut Criterion) {
    let bytes = std::fs::read(NOOP_ACTUATOR).expect("component");
    let dir: PathBuf =
        std::env::temp_dir().join(format!("syncore-bench-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Fill the cache once.
    WasmHost::new(HostConfig::default().cache_dir(&dir))
        .expect("host")
        .load_actuator_bytes("noop", &bytes)
        .expect("load");

    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.bench_function("cold_compile", |b| {
        b.iter(|| {
            let host = WasmHost::new(HostConfig::default()).expect("host");
            host.load_actuator_bytes("noop", &bytes).expect("load")
        })
    });
    group.bench_function("warm_cache", |b| {
        b.iter(|| {
            let host = WasmHost::new(HostConfig::default().cache_dir(&dir)).expect("host");
            let actuator = host.load_actuator_bytes("noop", &bytes).expect("load");
            assert_eq!(host.cache_stats().misses, 0, "a warm load compiles nothing");
            actuator
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, calls, loads);
criterion_main!(benches);
