//! Criterion bench of the service: single-object change sets per second through the HTTP
//! API (`POST /v1/changes` on loopback), each committed by the SQLite log (group commit,
//! fsync included) before it is answered, from 32 keep-alive clients at once.
//!
//! - `apply/passive`: objects of a passive model (the log and API path only);
//! - `apply/actuated_noop`: objects of an actuated model with the `noop` actuator, so each
//!   change set also makes the scheduler dispatch, and logs a delivery.
//!
//! `cargo bench -p syncore-service --bench serve -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use syncore_service::{Client, Deployment, Service};

const CLIENTS: usize = 32;

fn deployment(dir: &std::path::Path, actuated: bool) -> Deployment {
    let kind = if actuated { "actuated" } else { "passive" };
    let mut d = json!({
        "schema": {"models": [{"name": "Item", "kind": kind, "fields": [{"name": "n", "type": "int"}]}]},
        "listen": "127.0.0.1:0",
        "data_dir": dir.join("data"),
        "service": {"snapshot_every": 1_000_000}
    });
    if actuated {
        d["models"] = json!({"Item": {"actuator": "noop"}});
    }
    Deployment::from_str(&d.to_string(), dir, "bench").unwrap()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    for (name, actuated) in [("passive", false), ("actuated_noop", true)] {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let service = rt
            .block_on(Service::start(deployment(dir.path(), actuated)))
            .unwrap();
        let url = format!("http://{}", service.addr);
        let clients: Vec<Client> = (0..CLIENTS).map(|_| Client::new(&url, None)).collect();
        let next = AtomicU64::new(0);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let left = AtomicU64::new(iters);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for c in &clients {
                        let (left, next) = (&left, &next);
                        s.spawn(move || {
                            while left
                                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                                    n.checked_sub(1)
                                })
                                .is_ok()
                            {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                let body = format!(
                                    r#"[{{"upsert": {{"key": "k{}", "model": "Item", "fields": {{"n": {i}}}}}}}]"#,
                                    i % 10_000
                                );
                                let a = c.apply(&body).unwrap();
                                assert!(a.ok(), "{}", a.body);
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
        rt.block_on(async move {
            tokio::time::timeout(Duration::from_secs(10), service.stop())
                .await
                .ok()
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
