//! The cost of the WASM sandbox on an actuator that does I/O: one HTTP PUT to the loopback
//! inventory service (`syncore-inventory`), by the CORD actuator in wasm (granted the
//! origin, through `wasi:http`) and by a native Rust actuator sending the same request with
//! the same client (wasmtime-wasi-http's `default_send_request`: hyper, a new connection per
//! request, as the guest's). The difference is the sandbox's overhead per call.
//!
//! Run: `cargo bench --bench wasm_http -- --warm-up-time 1 --measurement-time 3`
//! (numbers in BENCHMARKS.md, "WASM plugins doing I/O").

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::{BodyExt, Full};
use syncore::wasm::{Grant, HostConfig, WasmHost};
use syncore::{Actuator, ChangeSet, Config, Engine, ObjectView, Outcome, Schema};
use syncore_inventory::Inventory;
use syncore_test_plugins::CORD_ACTUATORS;

/// The native twin: PUTs the network's fields, reports the backend's id.
struct NativePut {
    base: String,
    runtime: tokio::runtime::Runtime,
}

impl Actuator for NativePut {
    fn sync(&self, object: &ObjectView<'_>) -> Outcome {
        let fields: serde_json::Map<String, serde_json::Value> = object
            .fields()
            .map(|(n, v)| {
                let v = match v {
                    syncore::Value::Str(s) | syncore::Value::Ref(s) => s.clone().into(),
                    _ => serde_json::Value::Null,
                };
                (n.to_string(), v)
            })
            .collect();
        let body = serde_json::Value::Object(fields).to_string();
        let url = format!("{}/v1/networks/{}", self.base, object.key());
        let request = http::Request::put(&url)
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(
                Full::new(Bytes::from(body))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .expect("request");
        let answer = self.runtime.block_on(async {
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
        });
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
}

fn engine() -> Engine {
    let schema = Schema::from_json(
        r#"{"models": [{"name": "Network", "fields": [{"name": "name", "type": "string"}],
            "feedback": [{"name": "id", "type": "string"}, {"name": "cidr", "type": "string"}]}]}"#,
    )
    .expect("schema");
    let mut engine = Engine::new(schema, Config::default());
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
    let wasm_id = wasm.sync(&view);
    assert!(wasm_id.is_ok(), "{wasm_id:?}");
    let native_outcome = native.sync(&view);
    assert!(native_outcome.is_ok(), "{native_outcome:?}");

    let mut group = c.benchmark_group("http_put");
    group.bench_function("native", |b| b.iter(|| native.sync(&view)));
    group.bench_function("wasm", |b| b.iter(|| wasm.sync(&view)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
