//! Crash tests on the real binary: `syncore-serve` on loopback syncing into the loopback
//! REST inventory, a seeded stream of change sets, SIGKILL at seeded random moments.
//! After each restart every acknowledged change set is present and the failure count of a
//! failing object is intact; objects that were being actuated at the kill are actuated
//! again; once the stream ends the inventory matches the declarative state.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{get, wait_until, Rng, Server};
use serde_json::{json, Value};
use syncore_inventory::{Faults, Inventory};

const KILLS: usize = 22;

fn deployment(dir: &std::path::Path, origin: &str) -> std::path::PathBuf {
    let d = json!({
        "schema": {"models": [
            {"name": "Network", "fields": [{"name": "name", "type": "string"}],
             "feedback": [{"name": "id", "type": "string"}]},
            {"name": "Instance", "fields": [{"name": "name", "type": "string"}, {"name": "network", "type": "ref"}],
             "feedback": [{"name": "id", "type": "string"}],
             "links": [{"field": "network", "target": "Network"}]},
            {"name": "Port", "fields": [{"name": "name", "type": "string"}]}
        ]},
        "models": {
            "Network": {"actuator": "rest", "url": format!("{origin}/v1/networks")},
            "Instance": {"actuator": "rest", "url": format!("{origin}/v1/instances")},
            // No such collection: every actuation fails, so its failure count only grows.
            "Port": {"actuator": "rest", "url": format!("{origin}/v1/nowhere")}
        },
        "listen": "127.0.0.1:0",
        "data_dir": dir.join("data"),
        "settings": {"backoff": {"base_ms": 40, "cap_ms": 400, "jitter_permille": 0}},
        "service": {"snapshot_every": 25}
    });
    let path = dir.join("deploy.json");
    std::fs::write(&path, d.to_string()).unwrap();
    path
}

/// The seeded stream: change sets over 12 networks and 30 instances, with renames and
/// instance deletes (each delete alone in its set, so a retried one is recognisable).
fn stream(rng: &mut Rng, n: usize) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    let mut live_instances: BTreeMap<String, ()> = BTreeMap::new();
    for i in 0..n {
        if i > 0 && rng.below(6) == 0 && !live_instances.is_empty() {
            let k = live_instances
                .keys()
                .nth(rng.below(live_instances.len() as u64) as usize)
                .unwrap()
                .clone();
            live_instances.remove(&k);
            out.push(vec![json!({"delete": {"key": k}})]);
            continue;
        }
        let mut set = Vec::new();
        let mut keys = std::collections::BTreeSet::new();
        for _ in 0..1 + rng.below(3) {
            let net = format!("net-{}", rng.below(12));
            if keys.insert(net.clone()) {
                set.push(json!({"upsert": {"key": net, "model": "Network", "fields": {"name": format!("n{i}")}}}));
            }
            let vm = format!("vm-{}", rng.below(30));
            if keys.insert(vm.clone())
                && !out
                    .iter()
                    .any(|s: &Vec<Value>| s.iter().any(|c| c["delete"]["key"] == vm.as_str()))
            {
                set.push(json!({"upsert": {"key": vm, "model": "Instance",
                    "fields": {"name": format!("v{i}"), "network": net}}}));
                live_instances.insert(vm, ());
            }
        }
        out.push(set);
    }
    out
}

/// The declarative state the acknowledged sets give: key -> (model, fields) or deleted.
fn model_state(sets: &[Vec<Value>]) -> BTreeMap<String, Option<(String, Value)>> {
    let mut m: BTreeMap<String, Option<(String, Value)>> = BTreeMap::new();
    for set in sets {
        for c in set {
            if let Some(u) = c.get("upsert") {
                let key = u["key"].as_str().unwrap().to_string();
                let mut fields = match m.get(&key) {
                    Some(Some((_, f))) => f.clone(),
                    _ => json!({}),
                };
                for (k, v) in u["fields"].as_object().unwrap() {
                    fields[k] = v.clone();
                }
                m.insert(
                    key,
                    Some((u["model"].as_str().unwrap().to_string(), fields)),
                );
            } else {
                m.insert(c["delete"]["key"].as_str().unwrap().to_string(), None);
            }
        }
    }
    m
}

/// A delete sent again after a kill that had already applied it.
fn retried_delete(a: &syncore_service::Answer) -> bool {
    a.status == 422 && (a.body.contains("\"deleting\"") || a.body.contains("\"unknown_key\""))
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let seed: u64 = std::env::var("SYNCORE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe);
    eprintln!("seed {seed} (rerun with SYNCORE_SEED={seed})");
    let started = Instant::now();
    let mut rng = Rng(seed);
    let inventory = Inventory::start().unwrap();
    inventory.set_faults(Faults {
        latency_ms: 15,
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let deploy = deployment(dir.path(), &inventory.origin());
    let sets = stream(&mut rng, 260);
    let mut acked = 0usize; // sets[..acked] are acknowledged
    let mut port_failures = 0u64;
    let mut port_retry_at: Option<u64> = None;
    let mut rerun_seen = 0usize;
    let mut kills = 0;
    // The failing object, applied once and acknowledged before the first kill.
    let mut server = Server::start(&deploy).unwrap();
    let a = server
        .client()
        .apply(
            &json!([{"upsert": {"key": "port-x", "model": "Port", "fields": {"name": "x"}}}])
                .to_string(),
        )
        .unwrap();
    assert!(a.ok(), "{}", a.body);
    while kills < KILLS || acked < sets.len() {
        let c = server.client();
        // The set that was in flight at the kill may or may not be in: send it again first
        // (applying a set twice changes nothing; a delete already done is refused as such).
        if acked < sets.len() {
            let a = c
                .apply(&Value::Array(sets[acked].clone()).to_string())
                .unwrap();
            assert!(a.ok() || retried_delete(&a), "{} {}", a.status, a.body);
            acked += 1;
        }
        // After a restart: everything acknowledged is there, the failure count is intact.
        let want = model_state(&sets[..acked]);
        for (key, state) in &want {
            let a = c.object(key).unwrap();
            match state {
                Some((model, fields)) => {
                    assert_eq!(
                        a.status, 200,
                        "acknowledged {key} missing after kill {kills}: {}",
                        a.body
                    );
                    let o: Value = serde_json::from_str(&a.body).unwrap();
                    assert_eq!(&o["model"], model);
                    for (f, v) in fields.as_object().unwrap() {
                        assert_eq!(&o["fields"][f], v, "{key}.{f} after kill {kills}");
                    }
                }
                // Deleted: gone, or still being deleted.
                None => {
                    if a.status == 200 {
                        let o: Value = serde_json::from_str(&a.body).unwrap();
                        assert_eq!(o["deleting"], true, "{key} was deleted: {o}");
                    }
                }
            }
        }
        let port = get(&c, "/v1/objects/port-x");
        let f = port["failures"].as_u64().unwrap();
        assert!(
            f >= port_failures,
            "port-x failures went back from {port_failures} to {f} after kill {kills}"
        );
        if f == port_failures && port_failures > 0 {
            assert_eq!(
                port["retry_at"].as_u64(),
                port_retry_at,
                "port-x retry time after kill {kills}"
            );
        }
        // Stream some sets, then kill at a seeded moment (possibly mid-request).
        let burst = 2 + rng.below(12) as usize;
        let until = (acked + burst).min(sets.len());
        let pause_ms = rng.below(40);
        let client_sets: Vec<String> = sets[acked..until]
            .iter()
            .map(|s| Value::Array(s.clone()).to_string())
            .collect();
        let url = server.url.clone();
        let sender = std::thread::spawn(move || {
            let c = syncore_service::Client::new(&url, None);
            let mut ok = 0;
            for s in client_sets {
                match c.apply(&s) {
                    Ok(a) if a.ok() => ok += 1,
                    Ok(a) if retried_delete(&a) => ok += 1,
                    Ok(a) => panic!("refused: {} {}", a.status, a.body),
                    Err(_) => break, // killed mid-request: not acknowledged
                }
            }
            ok
        });
        std::thread::sleep(Duration::from_millis(pause_ms));
        if acked == sets.len() && kills >= KILLS {
            break;
        }
        // Before the kill: the failing object's durable failure count, and what runs now.
        let before = get(&c, "/v1/objects/port-x");
        let running: Vec<String> = get(&c, "/v1/plan")["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["in_flight"] == true)
            .map(|t| t["key"].as_str().unwrap().to_string())
            .collect();
        let requests_before = inventory.requests().len();
        server.kill();
        kills += 1;
        acked += sender.join().unwrap();
        // A failure the log had not committed may be lost with the kill; what was
        // committed must come back. The count only moves forward across restarts.
        let fb = before["failures"].as_u64().unwrap();
        server = Server::start(&deploy).unwrap();
        let c = server.client();
        let after = get(&c, "/v1/objects/port-x");
        let fa = after["failures"].as_u64().unwrap();
        assert!(
            fa + 1 >= fb,
            "port-x had {fb} failures before kill {kills}, {fa} after"
        );
        port_failures = fa;
        port_retry_at = after["retry_at"].as_u64();
        // Objects in flight at the kill are actuated again (unless they finished first).
        if !running.is_empty() {
            let key = &running[0];
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                let again = inventory.requests()[requests_before..]
                    .iter()
                    .any(|r| r.path.ends_with(&format!("/{key}")));
                if again {
                    rerun_seen += 1;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    // The stream is over: wait for convergence (but port-x, which always fails).
    let c = server.client();
    wait_until(Duration::from_secs(20), "convergence", || {
        let s = get(&c, "/v1/status");
        s["unsettled"] == 1 && s["counts"]["error"] == 1 && s["in_flight"].as_u64() <= Some(1)
    });
    // The inventory matches the declarative state.
    let want = model_state(&sets);
    let records = inventory.records();
    for (key, state) in &want {
        let coll = if key.starts_with("net-") {
            "networks"
        } else {
            "instances"
        };
        match state {
            Some((_, fields)) => {
                let r = records
                    .get(coll, key)
                    .unwrap_or_else(|| panic!("{key} missing in the inventory"));
                assert_eq!(
                    &Value::Object(r.fields.clone()),
                    fields,
                    "{key} in the inventory"
                );
                // The feedback the actuator recorded is the inventory's id.
                let o = get(&c, &format!("/v1/objects/{key}"));
                assert_eq!(o["feedback"]["id"], r.id.as_str(), "{key} feedback");
            }
            None => assert!(
                records.get(coll, key).is_none(),
                "{key} was deleted but is in the inventory"
            ),
        }
    }
    let extra: Vec<_> = ["networks", "instances"]
        .iter()
        .flat_map(|c| records.collection(c).into_keys())
        .filter(|k| !want.contains_key(k))
        .collect();
    assert!(extra.is_empty(), "records nobody declared: {extra:?}");
    assert!(kills >= KILLS);
    assert!(
        rerun_seen > 0,
        "no in-flight actuation was seen to run again"
    );
    eprintln!(
        "{kills} kills, {} sets, {rerun_seen} re-runs seen, {:?}",
        sets.len(),
        started.elapsed()
    );
}
