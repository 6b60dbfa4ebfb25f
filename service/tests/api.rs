//! The HTTP API on the real binary: bad inputs get typed errors and change nothing; the
//! bearer token on a non-loopback bind; `/metrics`; restart after SIGTERM; the client.

mod common;

use std::time::Duration;

use common::{get, wait_until, Server};
use serde_json::{json, Value};
use syncore_service::Client;

fn deployment(dir: &std::path::Path, extra: Value) -> std::path::PathBuf {
    let mut d = json!({
        "schema": {"models": [
            {"name": "Site", "fields": [{"name": "name", "type": "string"}]},
            {"name": "Node", "fields": [{"name": "next", "type": "ref"}, {"name": "site", "type": "ref"}],
             "feedback": [{"name": "id", "type": "string"}],
             "links": [{"field": "next", "target": "Node"}, {"field": "site", "target": "Site"}]}
        ]},
        "models": {"Site": {"actuator": "delay", "delay_ms": 60}, "Node": {"actuator": "delay", "delay_ms": 5}},
        "listen": "127.0.0.1:0",
        "data_dir": dir.join("data"),
        "service": {"body_max": 4096}
    });
    for (k, v) in extra.as_object().unwrap() {
        d[k] = v.clone();
    }
    let path = dir.join("deploy.json");
    std::fs::write(&path, d.to_string()).unwrap();
    path
}

fn error_of(a: &syncore_service::Answer) -> Value {
    let v: Value = serde_json::from_str(&a.body).unwrap_or_else(|_| panic!("not JSON: {}", a.body));
    v["error"].clone()
}

fn objects(c: &Client) -> u64 {
    get(c, "/v1/status")["objects"].as_u64().unwrap()
}

#[test]
fn bad_inputs_get_typed_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&deployment(dir.path(), json!({}))).unwrap();
    let c = server.client();
    let a = c
        .apply(r#"[{"upsert": {"key": "s1", "model": "Site", "fields": {"name": "one"}}}]"#)
        .unwrap();
    assert!(a.ok(), "{}", a.body);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["versions"]["s1"], 1);
    let before = get(&c, "/v1/objects/s1");

    // Malformed JSON: line and column.
    let a = c
        .apply("[\n  {\"upsert\": {\"key\": \"s2\",, }}\n]")
        .unwrap();
    assert_eq!(a.status, 400);
    let e = error_of(&a);
    assert_eq!(
        (e["kind"].as_str(), e["line"].as_u64(), e["column"].as_u64()),
        (Some("parse"), Some(2), Some(27)),
        "{e}"
    );

    // Unknown model and unknown field, naming entry, key and field.
    let a = c
        .apply(r#"[{"upsert": {"key": "ok", "model": "Site"}}, {"upsert": {"key": "x", "model": "Nope"}}]"#)
        .unwrap();
    assert_eq!(a.status, 422);
    let e = error_of(&a);
    assert_eq!(
        (e["kind"].as_str(), e["entry"].as_u64(), e["key"].as_str()),
        (Some("unknown_model"), Some(1), Some("x")),
        "{e}"
    );
    let a = c
        .apply(r#"[{"upsert": {"key": "s1", "model": "Site", "fields": {"colour": "red"}}}]"#)
        .unwrap();
    assert_eq!(a.status, 422);
    let e = error_of(&a);
    assert_eq!(
        (e["kind"].as_str(), e["entry"].as_u64(), e["field"].as_str()),
        (Some("unknown_field"), Some(0), Some("colour")),
        "{e}"
    );

    // A cycle, listing its keys.
    let a = c
        .apply(
            r#"[{"upsert": {"key": "a", "model": "Node", "fields": {"next": "b"}}},
                   {"upsert": {"key": "b", "model": "Node", "fields": {"next": "a"}}}]"#,
        )
        .unwrap();
    assert_eq!(a.status, 422);
    let e = error_of(&a);
    assert_eq!(e["kind"], "cycle");
    assert_eq!(e["keys"], json!(["a", "b"]));

    // Oversized body (the limit is 4,096 bytes here).
    let big = format!(
        r#"[{{"upsert": {{"key": "s1", "model": "Site", "fields": {{"name": "{}"}}}}}}]"#,
        "x".repeat(5000)
    );
    let a = c.apply(&big).unwrap();
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(error_of(&a)["kind"], "too_large");

    // Unknown object, unknown status filter.
    let a = c.object("ghost").unwrap();
    assert_eq!(
        (a.status, error_of(&a)["kind"].as_str()),
        (404, Some("unknown_key"))
    );
    let a = c.get("/v1/objects?status=sleepy").unwrap();
    assert_eq!(
        (a.status, error_of(&a)["kind"].as_str()),
        (400, Some("unknown_status"))
    );

    // Nothing changed.
    assert_eq!(objects(&c), 1);
    let after = get(&c, "/v1/objects/s1");
    assert_eq!(
        (&after["version"], &after["fields"]),
        (&before["version"], &before["fields"])
    );
}

#[test]
fn a_non_loopback_bind_requires_the_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "tok-123\n").unwrap();
    let deploy = deployment(
        dir.path(),
        json!({"listen": "0.0.0.0:0", "secrets": {"api": {"file": "token"}}, "token_secret": "api"}),
    );
    let server = Server::start(&deploy).unwrap();
    let url = server.url.replace("0.0.0.0", "127.0.0.1");
    let set = r#"[{"upsert": {"key": "s1", "model": "Site"}}]"#;
    let a = Client::new(&url, None).apply(set).unwrap();
    assert_eq!(
        (a.status, error_of(&a)["kind"].as_str()),
        (401, Some("missing_token"))
    );
    let a = Client::new(&url, Some("tok-124".into()))
        .apply(set)
        .unwrap();
    assert_eq!(
        (a.status, error_of(&a)["kind"].as_str()),
        (401, Some("wrong_token"))
    );
    let good = Client::new(&url, Some("tok-123".into()));
    assert_eq!(objects(&good), 0, "refused requests changed nothing");
    assert!(good.apply(set).unwrap().ok());
    assert_eq!(objects(&good), 1);
    // The token is not in the log.
    drop(server);
    let log = std::fs::read(dir.path().join("data/log.sqlite")).unwrap();
    assert!(!log.windows(7).any(|w| w == b"tok-123"));

    // Without a token, a public address is refused at start.
    let deploy = deployment(dir.path(), json!({"listen": "0.0.0.0:0"}));
    let err = Server::start(&deploy).err().expect("refused");
    assert!(err.contains("a token_secret is required"), "{err}");
}

#[test]
fn metrics_status_and_a_restart_after_sigterm_keep_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let deploy = deployment(dir.path(), json!({}));
    let server = Server::start(&deploy).unwrap();
    let c = server.client();
    let a = c
        .apply(r#"[{"upsert": {"key": "s1", "model": "Site"}}, {"upsert": {"key": "n1", "model": "Node", "fields": {"site": "s1"}}}]"#)
        .unwrap();
    assert!(a.ok(), "{}", a.body);
    wait_until(Duration::from_secs(10), "convergence", || {
        get(&c, "/v1/status")["converged"] == true
    });
    let n1 = get(&c, "/v1/objects/n1");
    assert_eq!(n1["status"], "synced");
    assert_eq!(n1["feedback"]["id"], "n1-id");
    // R1 through the service: the node started only after its site's actuation ended.
    let spans = get(&c, "/v1/actuations")["spans"].clone();
    let span = |k: &str| {
        spans
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == k)
            .cloned()
            .unwrap()
    };
    assert!(
        span("n1")["start"].as_u64() >= span("s1")["end"].as_u64(),
        "{spans}"
    );
    let m = c.get("/metrics").unwrap().body;
    for line in [
        "syncore_actuations_total{model=\"Node\",outcome=\"ok\"} 1",
        "syncore_change_sets_total 1",
        "syncore_in_flight 0",
        "syncore_log_fsync_seconds_count",
        "syncore_apply_seconds_bucket{le=\"+Inf\"} 1",
        "syncore_actuation_seconds_count{model=\"Site\"} 1",
    ] {
        assert!(m.contains(line), "{line} not in\n{m}");
    }
    // SIGTERM: a graceful stop with a snapshot; the restart replays nothing.
    let pid = server.child.id();
    assert!(std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
    let mut server = server;
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let server = Server::start(&deploy).unwrap();
    assert!(
        server.first_line.contains("0 entries replayed"),
        "{}",
        server.first_line
    );
    let c = server.client();
    let n1b = get(&c, "/v1/objects/n1");
    assert_eq!(
        (&n1b["version"], &n1b["status"], &n1b["feedback"]),
        (&n1["version"], &n1["status"], &n1["feedback"])
    );
    // A new schema with a new field is migrated onto the state at the restart.
    drop(server);
    let mut d: Value = serde_json::from_str(&std::fs::read_to_string(&deploy).unwrap()).unwrap();
    d["schema"]["models"][0]["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "city", "type": "string"}));
    std::fs::write(&deploy, d.to_string()).unwrap();
    let server = Server::start(&deploy).unwrap();
    assert!(
        server.first_line.contains("migrated"),
        "{}",
        server.first_line
    );
    let c = server.client();
    assert!(c
        .apply(r#"[{"upsert": {"key": "s1", "model": "Site", "fields": {"city": "Lyon"}}}]"#)
        .unwrap()
        .ok());
    // One that removes a field holding data is refused at start, naming it.
    drop(server);
    d["schema"]["models"][0]["fields"] = json!([{"name": "name", "type": "string"}]);
    std::fs::write(&deploy, d.to_string()).unwrap();
    let err = Server::start(&deploy).err().expect("refused");
    assert!(
        err.contains("field city of Site is removed but object s1 holds data in it"),
        "{err}"
    );
}
