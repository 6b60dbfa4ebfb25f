//! Ingest, restore and state hashing, each beside its floor in the same process.
//!
//! * `ingest/<graph>/apply`: `Engine::apply` of the whole graph as one change set (every
//!   object a `Node` whose `deps` field lists its predecessors' keys), into an empty engine.
//! * `ingest/<graph>/apply_rows`: `Engine::apply_rows` of the same objects as `Rows` (one
//!   `deps` column: no field map per object).
//! * `ingest/<graph>/floor`: the floor any key-addressed store pays for the same input: a
//!   `HashMap<String, u32>` key index (each key moved in), then a CSR of the references,
//!   every reference resolved by key.
//! * `snapshot/<graph>/{snapshot,restore}`: `Engine::snapshot` and `Engine::restore` of the
//!   loaded graph (restore checks the whole state for consistency, R14).
//! * `state_hash/<graph>`: one `Engine::state_hash` call.
//!
//! Graphs (BENCH-GRAPHS.md, 4 references per object, shuffled ids): g10k_shuf (W=100,
//! L=100, seed 7), g100k_shuf (W=1000, L=100, seed 7), g1m_shuf (W=1000, L=1000, seed 42).
//! The 1M cases are long on a shared machine; select them with a filter, e.g.
//! `cargo bench --bench ingest -- g1m`, or leave them out with `-- 'g10k|g100k'` (graphs a
//! filter leaves out are not even built).
//!
//! Run: `cargo bench --bench ingest -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion_group! generates undocumented items.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use syncore::Engine;

const GRAPHS: [(&str, u32, u32, u64); 3] = [
    ("g10k_shuf", 100, 100, 7),
    ("g100k_shuf", 1000, 100, 7),
    ("g1m_shuf", 1000, 1000, 42),
];

/// The ingest floor: key index plus CSR of resolved references. Returns the index and the
/// CSR so nothing is optimised away.
fn ingest_floor(input: Vec<(String, Vec<String>)>) -> (HashMap<String, u32>, Vec<u32>, Vec<u32>) {
    let mut index: HashMap<String, u32> = HashMap::with_capacity(input.len());
    let mut refs: Vec<Vec<String>> = Vec::with_capacity(input.len());
    for (i, (key, r)) in input.into_iter().enumerate() {
        index.insert(key, i as u32);
        refs.push(r);
    }
    let mut offsets = Vec::with_capacity(refs.len() + 1);
    let mut targets = Vec::with_capacity(refs.iter().map(Vec::len).sum());
    offsets.push(0u32);
    for r in &refs {
        for k in r {
            targets.push(*index.get(k.as_str()).expect("every reference resolves"));
        }
        offsets.push(targets.len() as u32);
    }
    (index, offsets, targets)
}

fn graph(name: &str, w: u32, l: u32, seed: u64) -> common::Dag {
    let dag = common::layered(w, l, 4, seed, true, 1);
    if name == "g1m_shuf" {
        assert_eq!(
            common::checksum(&dag),
            0xb0e16571f1241168,
            "BENCH-GRAPHS.md checksum"
        );
    }
    dag
}

fn ingest(c: &mut Criterion) {
    common::mark_start();
    let mut group = c.benchmark_group("ingest");
    group.sample_size(10);
    for (name, w, l, seed) in GRAPHS {
        if !common::wanted(&format!("ingest/{name}")) {
            continue;
        }
        let dag = graph(name, w, l, seed);
        if name == "g1m_shuf" {
            group.warm_up_time(Duration::from_millis(1));
            group.measurement_time(Duration::from_secs(1));
        }
        let schema = syncore::Schema::from_json(common::NODE_SCHEMA).expect("schema");
        group.bench_function(BenchmarkId::new(name, "apply"), |b| {
            b.iter_batched(
                || {
                    (
                        Engine::new(schema.clone(), syncore::Config::default()),
                        common::change_set(&dag),
                    )
                },
                |(mut engine, set)| {
                    engine.apply(set).expect("applies");
                    engine
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function(BenchmarkId::new(name, "apply_rows"), |b| {
            b.iter_batched(
                || {
                    (
                        Engine::new(schema.clone(), syncore::Config::default()),
                        common::rows(&dag),
                    )
                },
                |(mut engine, rows)| {
                    engine.apply_rows(rows).expect("applies");
                    engine
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function(BenchmarkId::new(name, "floor"), |b| {
            b.iter_batched(
                || common::pred_keys(&dag),
                ingest_floor,
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
    for bench in ["apply", "apply_rows"] {
        let rows: Vec<_> = GRAPHS
            .iter()
            .map(|(name, w, l, _)| {
                (
                    *name,
                    format!("ingest/{name}/{bench}"),
                    format!("ingest/{name}/floor"),
                    u64::from(w * l),
                )
            })
            .collect();
        common::print_ratios(
            &format!("{bench} of the whole graph vs the ingest floor"),
            &rows,
        );
    }
}

fn snapshot(c: &mut Criterion) {
    common::mark_start();
    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(1));
    for (name, w, l, seed) in &GRAPHS[1..] {
        if !common::wanted(&format!("snapshot/{name}")) {
            continue;
        }
        let dag = graph(name, *w, *l, *seed);
        let engine = common::load_engine(&dag);
        let bytes = engine.snapshot();
        println!("{name}: snapshot of {} bytes", bytes.len());
        group.bench_function(BenchmarkId::new(*name, "snapshot"), |b| {
            b.iter(|| engine.snapshot())
        });
        group.bench_function(BenchmarkId::new(*name, "restore"), |b| {
            b.iter_batched(
                || (),
                |()| Engine::restore(&bytes).expect("restores"),
                BatchSize::PerIteration,
            )
        });
        drop(engine);
    }
    group.finish();
    let rows: Vec<_> = GRAPHS[1..]
        .iter()
        .map(|(name, ..)| {
            (
                *name,
                format!("snapshot/{name}/restore"),
                format!("snapshot/{name}/snapshot"),
                1,
            )
        })
        .collect();
    common::print_ratios("restore vs snapshot (floor: writing it)", &rows);
}

fn state_hash(c: &mut Criterion) {
    let mut group = c.benchmark_group("state_hash");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(100));
    group.measurement_time(Duration::from_secs(1));
    for (name, w, l, seed) in GRAPHS {
        if !common::wanted(&format!("state_hash/{name}")) {
            continue;
        }
        let engine = common::load_engine(&graph(name, w, l, seed));
        group.bench_function(name, |b| b.iter(|| engine.state_hash()));
    }
    group.finish();
}

criterion_group!(benches, ingest, snapshot, state_hash);
criterion_main!(benches);
