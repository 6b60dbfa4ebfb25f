//! Criterion bench of the service's restart: [`syncore_service::recover`] (what
//! `Service::start` does before it listens, and what its start-up line reports as "ready
//! in") over a data directory holding a snapshot of 1,000,000 objects plus a tail of
//! 10,000 log entries: the SQLite log opened and read back (every entry's checksum
//! checked), the snapshot resumed (`Scheduler::resume`, with the engine's consistency
//! check), the tail replayed with `Scheduler::step`.
//!
//! The state: 1,000 `Site` objects and 999,000 `Item` objects, each item with an int and
//! a string field and a reference to one of the sites (passive models, as the store of a
//! service that syncs elsewhere); the tail upserts 10,000 items (new field values). The
//! data directory is built once (not timed); each timed run recovers from it afresh, and
//! dropping the recovered state is not timed.
//!
//! `cargo bench -p syncore-service --bench restart -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use syncore::sched::{Input, Scheduler};
use syncore::{ChangeSet, Engine, Time, Value};
use syncore_service::{recover, Deployment, InputLog, SqliteLog};

const SITES: usize = 1_000;
const OBJECTS: usize = 1_000_000;
const TAIL: usize = 10_000;

fn deployment(dir: &std::path::Path) -> Deployment {
    let d = json!({
        "schema": {"models": [
            {"name": "Site", "kind": "passive", "fields": [{"name": "name", "type": "string"}]},
            {"name": "Item", "kind": "passive", "fields": [
                {"name": "n", "type": "int"}, {"name": "label", "type": "string"},
                {"name": "site", "type": "ref"}],
             "links": [{"field": "site", "target": "Site"}]}
        ]},
        "listen": "127.0.0.1:0",
        "data_dir": dir.join("data"),
    });
    Deployment::from_str(&d.to_string(), dir, "bench").unwrap()
}

fn item(i: usize, n: i64) -> (String, Vec<(&'static str, Value)>) {
    (
        format!("item-{i:07}"),
        vec![
            ("n", Value::Int(n)),
            ("label", Value::from(format!("label of item {i}"))),
            ("site", Value::Ref(format!("site-{:04}", i % SITES))),
        ],
    )
}

/// Writes the snapshot (after one change set creating every object) and the tail.
fn build(deploy: &Deployment) {
    std::fs::create_dir_all(&deploy.data_dir).unwrap();
    let engine = Engine::new(deploy.schema.clone(), deploy.def.settings.clone());
    let mut sched = Scheduler::new(engine, deploy.sched.clone()).unwrap();
    let mut all = ChangeSet::new();
    for s in 0..SITES {
        all = all.upsert(
            format!("site-{s:04}"),
            "Site",
            [("name", Value::from(format!("site {s}")))],
        );
    }
    for i in 0..OBJECTS - SITES {
        let (key, fields) = item(i, 0);
        all = all.upsert(key, "Item", fields);
    }
    let mut out = Vec::new();
    let effect = sched.step(
        Input::Apply {
            changes: all,
            now: Time(1_000),
        },
        &mut out,
    );
    assert!(
        matches!(effect, syncore::sched::Effect::Applied(_)),
        "{effect:?}"
    );
    assert_eq!(sched.engine().len(), OBJECTS);
    let (log, rec) = SqliteLog::open(&deploy.data_dir.join("log.sqlite")).unwrap();
    assert_eq!(
        rec.last_seq(),
        0,
        "the bench starts from an empty directory"
    );
    log.snapshot_wait(0, sched.checkpoint()).unwrap();
    for t in 0..TAIL {
        let (key, fields) = item(t * 97 % (OBJECTS - SITES), t as i64 + 1);
        let input = Input::Apply {
            changes: ChangeSet::new().upsert(key, "Item", fields),
            now: Time(2_000 + t as u64),
        };
        let bytes = input.to_bytes();
        out.clear();
        let effect = sched.step(input, &mut out);
        assert!(matches!(effect, syncore::sched::Effect::Applied(_)));
        if t + 1 == TAIL {
            log.append_wait(bytes).unwrap();
        } else {
            log.append(bytes, Box::new(|r| assert!(r.is_ok(), "{r:?}")));
        }
    }
    log.close();
}

/// CPU time (user + system) of the calling thread so far, from /proc (10 ms ticks).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rfind(')')
        .map(|i| stat[i + 2..].split(' ').collect())
        .unwrap_or_default();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((tick(11) + tick(12)) * 10)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let deploy = deployment(dir.path());
    let t = Instant::now();
    build(&deploy);
    println!(
        "restart: built a {OBJECTS}-object snapshot and a {TAIL}-entry tail in {:?} ({} MB on disk)",
        t.elapsed(),
        std::fs::metadata(deploy.data_dir.join("log.sqlite"))
            .map(|m| m.len() >> 20)
            .unwrap_or(0)
            + std::fs::metadata(deploy.data_dir.join("log.sqlite-wal"))
                .map(|m| m.len() >> 20)
                .unwrap_or(0)
    );
    let mut cpu = Duration::ZERO;
    let mut runs = 0u32;
    let mut g = c.benchmark_group("restart");
    g.sample_size(10);
    g.bench_function("1m_snapshot_10k_tail", |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                let cpu_before = thread_cpu();
                let start = Instant::now();
                let (sched, log, last, snap, info) = recover(&deploy).unwrap();
                took += start.elapsed();
                cpu += thread_cpu() - cpu_before;
                runs += 1;
                assert_eq!((last, snap), (TAIL as u64, 0));
                assert_eq!(info.replayed, TAIL);
                assert!(!info.migrated);
                assert_eq!(sched.engine().len(), OBJECTS);
                log.close();
                drop(sched);
            }
            took
        })
    });
    g.finish();
    println!(
        "restart/1m_snapshot_10k_tail: CPU time of the recovering thread {:?} per restart ({runs} restarts)",
        cpu / runs.max(1)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
