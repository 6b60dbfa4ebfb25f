//! The cost of the WASM sandbox on an actuator that does I/O: one HTTP PUT to the loopback
//! inventory service (`syncore-inventory`), by the CORD actuator in wasm (granted the
//! origin, through `wasi:http`) and by a native Rust actuator sending the same request with
//! the same client (wasmtime-wasi-http's `default_send_request`: hyper, a new connection per
//! request, as the guest's). The difference is the sandbox's overhead per call.
//!
//! `runtime_1000_20ms_c200/*`: 1,000 independent networks synced by the real-time runtime
//! (`syncore::runtime`, 2 tokio worker threads, scheduler concurrency 200) against the
//! inventory answering every request after 20 ms: through the CORD actuator's asynchronous
//! side (`AsyncActuator`, a pool of instances, calls suspended on their fibers while the
//! request is out), and through the native twin as an async actuator with the same client.
//! The ideal is 1,000 / 200 x 20 ms = 100 ms; the time is from the change set's `apply` to
//! convergence.
//!
//! Run: `cargo bench --bench wasm_http -- --warm-up-time 1 --measurement-time 3`
//! (numbers in BENCHMARKS.md, "WASM plugins doing I/O").

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::{BodyExt, Full};
use std::time::{Duration, Instant};

use syncore::runtime::{Registry, Runtime, RuntimeConfig};
use syncore::sched::{SchedConfig, Scheduler};
use syncore::wasm::{Grant, HostConfig, Instances, WasmHost};
use syncore::{
    ActuationContext, Actuator, AsyncActuator, BoxFuture, ChangeSet, Config, Engine, ObjectView,
    Outcome, OwnedView, Schema,
};
use syncore_inventory::{Faults, Inventory};
use syncore_test_plugins::CORD_ACTUATORS;

/// The native twin: PUTs the network's fields, reports the backend's id.
struct NativePut {
    base: String,
    runtime: tokio::runtime::Runtime,
}

/// The same request as the guest's, sent with the same client: the backend's id, or why
/// not.
async fn native_put<'a>(
    base: &str,
    key: &str,
    fields: impl Iterator<Item = (&'a str, &'a syncore::Value)>,
) -> Outcome {
    let fields: serde_json::Map<String, serde_json::Value> = fields
        .map(|(n, v)| {
            let v = match v {
                syncore::Value::Str(s) | syncore::Value::Ref(s) => s.clone().into(),
                _ => serde_json::Value::Null,
            };
            (n.to_string(), v)
        })
        .collect();
    let body = serde_json::Value::Object(fields).to_string();
    let url = format!("{base}/v1/networks/{key}");
    let request = http::Request::put(&url)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("request");
    let answer = async {
        let (response, io) = wasmtime_wasi_http::default_send_request(request, None)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let io = tokio::spawn(io);
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{e:?}"))?
            .to_bytes();
        let _ = io.await;
        Ok::<_, String>((status, body))
    }
    .await;
    match answer {
        Ok((status, body)) if (200..300).contains(&status) => {
            let record: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            match record["id"].as_str() {
                Some(id) => Outcome::ok_with([("id", id.to_string())]),
                None => Outcome::failed("no id"),
            }
        }
        Ok((status, _)) => Outcome::failed(format!("PUT {url}: status {status}")),
        Err(e) => Outcome::failed(format!("PUT {url}: {e}")),
    }
}

impl Actuator for NativePut {
    fn sync(&self, object: &ObjectView<'_>) -> Outcome {
        self.runtime
            .block_on(native_put(&self.base, object.key(), object.fields()))
    }
}

/// The native twin as an asynchronous actuator.
struct NativeAsyncPut {
    base: String,
}

impl AsyncActuator for NativeAsyncPut {
    fn sync(&self, _: ActuationContext, object: OwnedView) -> BoxFuture<Outcome> {
        let base = self.base.clone();
        Box::pin(async move { native_put(&base, object.key(), object.fields()).await })
    }
}

fn schema() -> Schema {
    Schema::from_json(
        r#"{"models": [{"name": "Network", "fields": [{"name": "name", "type": "string"}],
            "feedback": [{"name": "id", "type": "string"}, {"name": "cidr", "type": "string"}]}]}"#,
    )
    .expect("schema")
}

fn engine() -> Engine {
    let mut engine = Engine::new(schema(), Config::default());
    engine
        .apply(ChangeSet::new().upsert("net-a", "Network", [("name", "a")]))
        .expect("apply");
    engine
}

fn bench(c: &mut Criterion) {
    let inventory = Inventory::start().expect("inventory");
    let grant = Grant::default()
        .http(inventory.origin())
        .config("inventory", inventory.origin());
    let host = WasmHost::new(HostConfig::default().grant("cord-actuators", grant)).expect("host");
    let wasm = host
        .load_actuator("cord-actuators", CORD_ACTUATORS)
        .expect("load");
    let native = NativePut {
        base: inventory.origin(),
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
    };
    let engine = engine();
    let view = engine.view(engine.id("net-a").expect("net-a"));
    let wasm_id = Actuator::sync(&wasm, &view);
    assert!(wasm_id.is_ok(), "{wasm_id:?}");
    let native_outcome = native.sync(&view);
    assert!(native_outcome.is_ok(), "{native_outcome:?}");

    let mut group = c.benchmark_group("http_put");
    group.bench_function("native", |b| b.iter(|| native.sync(&view)));
    group.bench_function("wasm", |b| b.iter(|| Actuator::sync(&wasm, &view)));
    group.finish();
}

/// Objects, concurrency and backend latency of the runtime bench.
const OBJECTS: usize = 1000;
const CONCURRENCY: u32 = 200;
const LATENCY_MS: u64 = 20;

/// Syncs `OBJECTS` networks with `registry` on a new runtime (on the caller's tokio
/// runtime); the time from `apply` to convergence, and the scheduler's engine.
async fn converge(registry: Registry) -> (Duration, Engine) {
    let sched = Scheduler::new(
        Engine::new(schema(), Config::default()),
        SchedConfig::default().concurrency(CONCURRENCY),
    )
    .expect("scheduler");
    let changes = (0..OBJECTS).fold(ChangeSet::new(), |cs, i| {
        cs.upsert(
            format!("net-{i:04}"),
            "Network",
            [("name", format!("n{i}"))],
        )
    });
    let runtime = Runtime::start(sched, registry, RuntimeConfig::default()).expect("runtime");
    let start = Instant::now();
    runtime.handle().apply(changes).await.expect("apply");
    runtime.handle().converged().await;
    let took = start.elapsed();
    let stopped = runtime.shutdown(Duration::from_secs(5)).await;
    (took, stopped.scheduler.into_engine())
}

fn concurrent(c: &mut Criterion) {
    let inventory = Inventory::start_with(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        Faults {
            latency_ms: LATENCY_MS,
            ..Faults::default()
        },
    )
    .expect("inventory");
    let grant = Grant::default()
        .http(inventory.origin())
        .config("inventory", inventory.origin())
        .request_timeout(Duration::from_secs(10));
    // Idle instances are kept up to the concurrency: after the first run every call finds
    // one.
    let host = WasmHost::new(
        HostConfig::default()
            .instances(Instances::Reuse {
                idle_max: CONCURRENCY as usize,
            })
            .grant("cord-actuators", grant),
    )
    .expect("host");
    let wasm = host
        .load_actuator("cord-actuators", CORD_ACTUATORS)
        .expect("load");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let wasm_registry = || Registry::new().with_async("Network", wasm.clone());
    let native_registry = || {
        Registry::new().with_async(
            "Network",
            NativeAsyncPut {
                base: inventory.origin(),
            },
        )
    };
    // Both converge, and the backend holds every network.
    for registry in [wasm_registry(), native_registry()] {
        let (_, engine) = rt.block_on(converge(registry));
        assert_eq!(engine.unsettled_count(), 0, "converged");
        assert_eq!(inventory.records().len(), OBJECTS);
    }
    let stats = wasm.pool_stats();
    assert!(
        stats.in_flight_peak >= CONCURRENCY as usize / 2,
        "calls overlap: {stats:?}"
    );

    let mut group = c.benchmark_group("runtime_1000_20ms_c200");
    group.sample_size(10);
    group.bench_function("wasm", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| rt.block_on(converge(wasm_registry())).0)
                .sum()
        })
    });
    group.bench_function("native", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| rt.block_on(converge(native_registry())).0)
                .sum()
        })
    });
    group.finish();
    let stats = wasm.pool_stats();
    println!(
        "runtime_1000_20ms_c200/wasm: ideal {} ms; pool: {} calls, {} instances created, peak {} in flight",
        OBJECTS as u64 / u64::from(CONCURRENCY) * LATENCY_MS,
        stats.calls,
        stats.instances_created,
        stats.in_flight_peak
    );
}

criterion_group!(benches, bench, concurrent);
criterion_main!(benches);
