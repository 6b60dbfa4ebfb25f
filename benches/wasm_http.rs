//! The cost of the WASM sandbox on an actuator that does I/O: one HTTP PUT to the loopback
//! inventory service (`syncore-inventory`), by the CORD actuator in wasm (granted the
//! origin, through `wasi:http`) and by a native Rust actuator sending the same request with
//! the same client (`syncore::wasm::HttpPool`, the plugins' keep-alive client: hyper,
//! connections reused). The difference is the sandbox's overhead per call. The `*_new_conn`
//! variants open a connection per request (`HostConfig::http_keep_alive(false)`, and
//! wasmtime-wasi-http's `default_send_request` for the native twin), as every request did
//! before the pool.
//!
//! `runtime_1000_20ms_c200/*`: 1,000 independent networks synced by the real-time runtime
//! (`syncore::runtime`, 2 tokio worker threads, scheduler concurrency 200) against the
//! inventory answering every request after 20 ms: through the CORD actuator's asynchronous
//! side (`AsyncActuator`, a pool of instances, calls suspended on their fibers while the
//! request is out), and through the native twin as an async actuator with the same client;
//! each with keep-alive connections and with a new connection per request (`*_new_conn`).
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
use syncore::wasm::{Grant, HostConfig, HttpPool, Instances, WasmHost};
use syncore::{
    ActuationContext, Actuator, AsyncActuator, BoxFuture, ChangeSet, Config, Engine, ObjectView,
    Outcome, OwnedView, Schema,
};
use syncore_inventory::{Faults, Inventory};
use syncore_test_plugins::CORD_ACTUATORS;

/// The native twin: PUTs the network's fields, reports the backend's id.
struct NativePut {
    base: String,
    /// The plugins' client; `None`: a new connection per request.
    pool: Option<HttpPool>,
    runtime: tokio::runtime::Runtime,
}

/// The same request as the guest's, sent with the same client (`pool`, or a new connection
/// per request without one): the backend's id, or why not.
async fn native_put<'a>(
    base: &str,
    pool: Option<&HttpPool>,
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
        let Some(pool) = pool else {
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
            return Ok::<_, String>((status, body));
        };
        let response = pool
            .send(request, None)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{e:?}"))?
            .to_bytes();
        Ok((status, body))
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
        self.runtime.block_on(native_put(
            &self.base,
            self.pool.as_ref(),
            object.key(),
            object.fields(),
        ))
    }
}

/// The native twin as an asynchronous actuator.
struct NativeAsyncPut {
    base: String,
    pool: Option<HttpPool>,
}

impl AsyncActuator for NativeAsyncPut {
    fn sync(&self, _: ActuationContext, object: OwnedView) -> BoxFuture<Outcome> {
        let base = self.base.clone();
        let pool = self.pool.clone();
        Box::pin(
            async move { native_put(&base, pool.as_ref(), object.key(), object.fields()).await },
        )
    }
}

/// A multi-threaded tokio runtime (the pool keeps connections only there, as the plugins'
/// synchronous calls run on wasmtime-wasi's multi-threaded runtime).
fn tokio_runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio")
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
    let load = |keep_alive: bool| {
        WasmHost::new(
            HostConfig::default()
                .grant("cord-actuators", grant.clone())
                .http_keep_alive(keep_alive),
        )
        .expect("host")
        .load_actuator("cord-actuators", CORD_ACTUATORS)
        .expect("load")
    };
    let (wasm, wasm_new_conn) = (load(true), load(false));
    let native = |pool: Option<HttpPool>| NativePut {
        base: inventory.origin(),
        pool,
        runtime: tokio_runtime(2),
    };
    let (native, native_new_conn) = (native(Some(HttpPool::new())), native(None));
    let engine = engine();
    let view = engine.view(engine.id("net-a").expect("net-a"));
    for actuator in [
        &wasm as &dyn Actuator,
        &wasm_new_conn,
        &native,
        &native_new_conn,
    ] {
        let outcome = actuator.sync(&view);
        assert!(outcome.is_ok(), "{outcome:?}");
    }

    let mut group = c.benchmark_group("http_put");
    group.bench_function("native", |b| b.iter(|| native.sync(&view)));
    group.bench_function("wasm", |b| b.iter(|| Actuator::sync(&wasm, &view)));
    group.bench_function("native_new_conn", |b| {
        b.iter(|| native_new_conn.sync(&view))
    });
    group.bench_function("wasm_new_conn", |b| {
        b.iter(|| Actuator::sync(&wasm_new_conn, &view))
    });
    group.finish();
    // Every request of the pooled actuator went over the one connection its first request
    // opened (whether or not a filter ran the timed loop).
    let reused = wasm.http_stats();
    assert_eq!(reused.connections_opened, 1, "{reused:?}");
    println!("http_put/wasm: {reused:?}");
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
    let load = |keep_alive: bool| {
        WasmHost::new(
            HostConfig::default()
                .instances(Instances::Reuse {
                    idle_max: CONCURRENCY as usize,
                })
                .grant("cord-actuators", grant.clone())
                .http_keep_alive(keep_alive),
        )
        .expect("host")
        .load_actuator("cord-actuators", CORD_ACTUATORS)
        .expect("load")
    };
    let (wasm, wasm_new_conn) = (load(true), load(false));
    let rt = tokio_runtime(2);
    let wasm_registry = || Registry::new().with_async("Network", wasm.clone());
    let wasm_new_conn_registry = || Registry::new().with_async("Network", wasm_new_conn.clone());
    let pool = HttpPool::new();
    let native_registry = |pool: Option<HttpPool>| {
        Registry::new().with_async(
            "Network",
            NativeAsyncPut {
                base: inventory.origin(),
                pool,
            },
        )
    };
    // Each converges, and the backend holds every network.
    for registry in [
        wasm_registry(),
        wasm_new_conn_registry(),
        native_registry(Some(pool.clone())),
        native_registry(None),
    ] {
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
                .map(|_| rt.block_on(converge(native_registry(Some(pool.clone())))).0)
                .sum()
        })
    });
    group.bench_function("wasm_new_conn", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| rt.block_on(converge(wasm_new_conn_registry())).0)
                .sum()
        })
    });
    group.bench_function("native_new_conn", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| rt.block_on(converge(native_registry(None))).0)
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
    println!(
        "runtime_1000_20ms_c200/wasm: {:?}; inventory accepted {} connections in all",
        wasm.http_stats(),
        inventory.connections_accepted()
    );
}

criterion_group!(benches, bench, concurrent);
criterion_main!(benches);
