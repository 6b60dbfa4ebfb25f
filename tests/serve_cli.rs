//! `syncore serve` and its client commands (`apply`, `get`, `status`) on the real binary,
//! against a real backend: the loopback inventory REST service, slow and failing at first.
//! The inventory's final records are checked, not only the service's answers.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use syncore_inventory::{Faults, Inventory};

fn syncore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_syncore"))
        .args(args)
        .output()
        .expect("the syncore binary starts")
}

/// A `syncore serve` child; killed when dropped.
struct Serve {
    child: Child,
    url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(deployment: &std::path::Path) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_syncore"))
        .args(["serve", deployment.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("syncore serve starts");
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    Serve { child, url }
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
        panic!(
            "not JSON: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

#[test]
fn serve_apply_get_status_against_a_slow_failing_rest_backend() {
    let inventory = Inventory::start_with(
        "127.0.0.1:0".parse().unwrap(),
        Faults {
            latency_ms: 40,
            fail_next: 2,
            hang: false,
        },
    )
    .unwrap();
    let origin = inventory.origin();
    let dir = std::env::temp_dir().join(format!(
        "syncore-serve-cli-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let deployment = dir.join("deploy.json");
    std::fs::write(
        &deployment,
        json!({
            "schema": {"models": [
                {"name": "Network", "fields": [{"name": "cidr", "type": "string"}],
                 "feedback": [{"name": "id", "type": "string"}]},
                {"name": "Instance", "fields": [{"name": "net", "type": "ref"}, {"name": "name", "type": "string"}],
                 "feedback": [{"name": "id", "type": "string"}],
                 "links": [{"field": "net", "target": "Network"}]}
            ]},
            "models": {
                "Network": {"actuator": "rest", "url": format!("{origin}/v1/networks")},
                "Instance": {"actuator": "rest", "url": format!("{origin}/v1/instances")}
            },
            "listen": "127.0.0.1:0",
            "data_dir": dir.join("data"),
        })
        .to_string(),
    )
    .unwrap();
    let server = serve(&deployment);
    let changes = dir.join("changes.json");
    std::fs::write(
        &changes,
        json!([
            {"upsert": {"key": "net-a", "model": "Network", "fields": {"cidr": "10.0.0.0/24"}}},
            {"upsert": {"key": "vm-1", "model": "Instance", "fields": {"net": "net-a", "name": "one"}}}
        ])
        .to_string(),
    )
    .unwrap();
    let url = server.url.clone();
    let s = ["--server", url.as_str()];
    let o = syncore(&[&["apply", changes.to_str().unwrap()], &s[..]].concat());
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let applied = json_of(&o);
    assert!(applied["versions"]["vm-1"].as_u64().is_some(), "{applied}");

    // A bad change set: a typed refusal (exit 1), nothing changed.
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"[{"upsert": {"key": "vm-2", "model": "Instance", "fields": {"net": "nowhere"}}}]"#,
    )
    .unwrap();
    let o = syncore(&[&["apply", bad.to_str().unwrap()], &s[..]].concat());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nowhere"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The first two calls fail (500): backoff, then convergence.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let st = json_of(&syncore(&[&["status"], &s[..]].concat()));
        if st["unsettled"] == 0 && st["in_flight"] == 0 {
            break st;
        }
        assert!(Instant::now() < deadline, "did not converge: {st}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status["objects"], 2, "{status}");
    let vm = json_of(&syncore(&[&["get", "vm-1"], &s[..]].concat()));
    let records = inventory.records();
    let r = records
        .get("instances", "vm-1")
        .expect("vm-1 in the inventory");
    assert_eq!(r.fields["name"], "one");
    assert_eq!(vm["feedback"]["id"], r.id.as_str(), "{vm}");
    assert!(records.get("networks", "net-a").is_some());
    let o = syncore(&[&["get", "vm-2"], &s[..]].concat());
    assert_eq!(o.status.code(), Some(1), "no such object");

    // Nothing listening: exit 2, naming the server.
    drop(server);
    let o = syncore(&[&["status"], &s[..]].concat());
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot reach"));
    let _ = std::fs::remove_dir_all(&dir);
}
