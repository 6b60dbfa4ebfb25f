//! The service drives the library's scheduler: its recorded log replays with
//! `Scheduler::replay` to the live state hash, and a per-model limit from the deployment
//! file holds against a real backend (a slow REST service on loopback).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{get, Server};
use serde_json::{json, Value};
use syncore::sched::{Input, Scheduler};
use syncore_service::SqliteLog;

fn write_deployment(dir: &std::path::Path, d: Value) -> std::path::PathBuf {
    let path = dir.join("deploy.json");
    std::fs::write(&path, d.to_string()).unwrap();
    path
}

/// Waits for convergence with everything durable; on a timeout, fails with the status,
/// the plan and the server's stderr.
fn wait_converged(server: &mut Option<Server>, c: &syncore_service::Client) {
    let start = std::time::Instant::now();
    while !converged_and_durable(c) {
        if start.elapsed() > Duration::from_secs(30) {
            let status = get(c, "/v1/status");
            let plan = get(c, "/v1/plan");
            let err = server
                .take()
                .map(Server::kill_for_stderr)
                .unwrap_or_default();
            panic!("no convergence: {status}\nplan: {plan}\nstderr: {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn converged_and_durable(c: &syncore_service::Client) -> bool {
    let s = get(c, "/v1/status");
    s["converged"] == true && s["durable_seq"] == s["applied_seq"]
}

#[test]
fn the_recorded_log_replays_to_the_live_state_hash() {
    // Once with a snapshot only at the start (the whole run replays from the empty
    // state), once with snapshots every 4 entries (taken while actuations are in flight:
    // the tail names leases the snapshot holds).
    for snapshot_every in [100_000u64, 4] {
        let dir = tempfile::tempdir().unwrap();
        let deploy = write_deployment(
            dir.path(),
            json!({
                "schema": {"models": [
                    {"name": "Site", "fields": [{"name": "name", "type": "string"}]},
                    {"name": "Slice", "fields": [{"name": "name", "type": "string"}, {"name": "site", "type": "ref"}],
                     "links": [{"field": "site", "target": "Site"}]}
                ]},
                "models": {
                    "Site": {"actuator": "delay", "delay_ms": 20, "fail_first": 1, "in_flight_max": 2},
                    "Slice": {"actuator": "delay", "delay_ms": 10, "priority": 1}
                },
                "listen": "127.0.0.1:0",
                "data_dir": dir.path().join("data"),
                "settings": {"backoff": {"base_ms": 30, "cap_ms": 120, "jitter_permille": 0}},
                "service": {"snapshot_every": snapshot_every}
            }),
        );
        let mut server = Some(Server::start(&deploy).unwrap());
        let c = server.as_ref().unwrap().client();
        for i in 0..12 {
            let set = json!([
                {"upsert": {"key": format!("site-{}", i % 5), "model": "Site", "fields": {"name": format!("s{i}")}}},
                {"upsert": {"key": format!("slice-{i}"), "model": "Slice",
                    "fields": {"name": format!("x{i}"), "site": format!("site-{}", i % 5)}}}
            ]);
            let a = c.apply(&set.to_string()).unwrap();
            if !a.ok() {
                panic!(
                    "{}\nserver stderr:\n{}",
                    a.body,
                    server.take().unwrap().kill_for_stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(7));
        }
        let a = c.apply(r#"[{"delete": {"key": "slice-3"}}]"#).unwrap();
        assert!(a.ok(), "{}", a.body);
        wait_converged(&mut server, &c);
        let live = get(&c, "/v1/state-hash");
        server.take().unwrap().kill();

        let (log, rec) = SqliteLog::open(&dir.path().join("data").join("log.sqlite")).unwrap();
        drop(log);
        let (snap_seq, snap) = rec.snapshot.clone().expect("a snapshot");
        if snapshot_every == 4 {
            assert!(snap_seq > 0, "snapshots were taken during the run");
        } else {
            assert_eq!(snap_seq, 0);
        }
        assert_eq!(rec.last_seq(), live["applied_seq"].as_u64().unwrap());
        let inputs: Vec<Input> = rec
            .tail
            .iter()
            .map(|(_, b)| Input::from_bytes(b).unwrap())
            .collect();
        if snapshot_every != 4 {
            // The whole run: change sets, deliveries (failures included) and ticks.
            let count = |f: fn(&Input) -> bool| inputs.iter().filter(|i| f(i)).count();
            assert_eq!(count(|i| matches!(i, Input::Apply { .. })), 13);
            assert!(count(|i| matches!(i, Input::Deliver { .. })) >= 5 + 12);
            assert!(count(|i| matches!(i, Input::Tick { .. })) >= 1);
        }
        let mut s = Scheduler::resume(&snap).unwrap();
        s.replay(inputs);
        assert_eq!(
            format!("{:016x}", s.state_hash()),
            live["state_hash"].as_str().unwrap(),
            "snapshot_every {snapshot_every}: the replayed log gives the live state"
        );
        assert_eq!(s.engine().unsettled_count(), 0);
        assert!(s.engine().object("slice-3").is_none());
    }
}

/// A REST backend on loopback: `PUT /{collection}/{key}` stores the body after `delay`,
/// the first attempt of every key ending in `7` fails with 500; it counts the requests in
/// progress per collection and keeps the maximum.
struct Backend {
    origin: String,
    store: Arc<Mutex<BTreeMap<String, Value>>>,
    max: Arc<Mutex<BTreeMap<String, u32>>>,
}

fn backend(delay: Duration) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let store: Arc<Mutex<BTreeMap<String, Value>>> = Arc::default();
    let max: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let now: Arc<Mutex<BTreeMap<String, Arc<AtomicU32>>>> = Arc::default();
    let failed: Arc<Mutex<BTreeMap<String, ()>>> = Arc::default();
    let (st, mx) = (store.clone(), max.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (st, mx, now, failed) = (st.clone(), mx.clone(), now.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or("").to_string();
                    let path = parts.next().unwrap_or("").to_string();
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        let lower = h.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let collection = path.split('/').nth(1).unwrap_or("").to_string();
                    let counter = now
                        .lock()
                        .unwrap()
                        .entry(collection.clone())
                        .or_default()
                        .clone();
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    {
                        let mut m = mx.lock().unwrap();
                        let e = m.entry(collection).or_default();
                        *e = (*e).max(n);
                    }
                    std::thread::sleep(delay);
                    let fail = method == "PUT"
                        && path.ends_with('7')
                        && failed.lock().unwrap().insert(path.clone(), ()).is_none();
                    let status = if fail {
                        "500 Internal Server Error"
                    } else {
                        if method == "PUT" {
                            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            st.lock().unwrap().insert(path.clone(), v);
                        } else if method == "DELETE" {
                            st.lock().unwrap().remove(&path);
                        }
                        "200 OK"
                    };
                    counter.fetch_sub(1, Ordering::SeqCst);
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
                    );
                    if w.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Backend { origin, store, max }
}

#[test]
fn a_per_model_limit_from_the_deployment_holds_against_a_real_backend() {
    let b = backend(Duration::from_millis(120));
    let dir = tempfile::tempdir().unwrap();
    let deploy = write_deployment(
        dir.path(),
        json!({
            "schema": {"models": [
                {"name": "Slow", "fields": [{"name": "n", "type": "int"}]},
                {"name": "Fast", "fields": [{"name": "n", "type": "int"}]}
            ]},
            "models": {
                "Slow": {"actuator": "rest", "url": format!("{}/slow", b.origin), "in_flight_max": 2},
                "Fast": {"actuator": "rest", "url": format!("{}/fast", b.origin)}
            },
            "listen": "127.0.0.1:0",
            "data_dir": dir.path().join("data"),
            "settings": {"backoff": {"base_ms": 50, "cap_ms": 200, "jitter_permille": 0}}
        }),
    );
    let server = Server::start(&deploy).unwrap();
    let c = server.client();
    let mut set = Vec::new();
    for i in 0..10 {
        set.push(json!({"upsert": {"key": format!("s{i}"), "model": "Slow", "fields": {"n": i}}}));
        set.push(json!({"upsert": {"key": format!("f{i}"), "model": "Fast", "fields": {"n": i}}}));
    }
    let a = c.apply(&Value::Array(set).to_string()).unwrap();
    assert!(a.ok(), "{}", a.body);
    // While the slow model is busy, the page's view agrees with the limit.
    std::thread::sleep(Duration::from_millis(60));
    let m = c.get("/metrics").unwrap().body;
    assert!(m.contains("syncore_in_flight "), "{m}");
    let mut server = Some(server);
    wait_converged(&mut server, &c);
    let max = b.max.lock().unwrap().clone();
    assert_eq!(
        max.get("slow"),
        Some(&2),
        "the limit of Slow is reached and holds: {max:?}"
    );
    assert!(
        max.get("fast").is_some_and(|&n| n > 2),
        "Fast has no limit of its own, so more of it ran at once: {max:?}"
    );
    // The backend's final state is the declarative state, the failed first attempts of
    // s7 and f7 retried.
    let store = b.store.lock().unwrap().clone();
    for i in 0..10 {
        for (col, k) in [("slow", "s"), ("fast", "f")] {
            assert_eq!(
                store.get(&format!("/{col}/{k}{i}")),
                Some(&json!({"n": i})),
                "{col}/{k}{i} in {store:?}"
            );
        }
    }
    assert_eq!(store.len(), 20);
    let o = get(&c, "/v1/objects/s7");
    assert_eq!(o["status"], "synced");
    let retries = c.get("/metrics").unwrap().body;
    assert!(
        retries
            .lines()
            .any(|l| l.starts_with("syncore_retries_total ") && !l.ends_with(" 0")),
        "{retries}"
    );
}
