//! The inventory service over real HTTP on loopback: idempotent PUT, DELETE, GET, faults,
//! and the binary as a process.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use syncore_inventory::{id, Client, Faults, Inventory};

#[test]
fn put_by_key_is_idempotent_and_get_lists_sorted() {
    let inventory = Inventory::start().unwrap();
    let client = Client::new(inventory.addr());
    let created = client.put("networks", "net-b", r#"{"name": "b"}"#).unwrap();
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.json()["id"], id("networks", "net-b"));
    let again = client.put("networks", "net-b", r#"{"name": "b"}"#).unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(
        again.json()["revision"],
        1,
        "an unchanged PUT changes nothing"
    );
    let updated = client
        .put("networks", "net-b", r#"{"name": "b2"}"#)
        .unwrap();
    assert_eq!(
        (
            updated.json()["revision"].as_u64(),
            updated.json()["id"].clone()
        ),
        (Some(2), created.json()["id"].clone())
    );
    client.put("networks", "net-a", r#"{"name": "a"}"#).unwrap();

    let one = client.get("networks", "net-b").unwrap();
    assert_eq!(
        (one.status, one.json()["fields"]["name"].as_str()),
        (200, Some("b2"))
    );
    let list = client.request("GET", "/v1/networks", None).unwrap();
    let keys: Vec<_> = list.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["net-a", "net-b"]);
    assert_eq!(inventory.records().len(), 2);
}

#[test]
fn delete_removes_and_a_second_delete_is_404() {
    let inventory = Inventory::start().unwrap();
    let client = Client::new(inventory.addr());
    client.put("ports", "p1", "{}").unwrap();
    assert_eq!(client.delete("ports", "p1").unwrap().status, 204);
    assert_eq!(client.delete("ports", "p1").unwrap().status, 404);
    assert_eq!(client.get("ports", "p1").unwrap().status, 404);
    assert!(inventory.records().is_empty());
}

#[test]
fn bad_requests_are_refused_with_a_reason_and_change_nothing() {
    let inventory = Inventory::start().unwrap();
    let client = Client::new(inventory.addr());
    let bad_json = client.put("ports", "p1", "{not json").unwrap();
    assert_eq!(bad_json.status, 400);
    assert!(bad_json.body.contains("bad JSON body"), "{}", bad_json.body);
    let not_object = client.put("ports", "p1", "[1]").unwrap();
    assert_eq!(not_object.status, 400);
    let unknown = client.put("volumes", "v1", "{}").unwrap();
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("no collection"), "{}", unknown.body);
    let bad_key = client.put("ports", "a%20b", "{}").unwrap();
    assert_eq!(bad_key.status, 400);
    assert!(inventory.records().is_empty());
}

/// Goal: with a token required, a request without one or with another one is refused
/// (401) and changes nothing, before any fault; the right one is served; the log keeps
/// what each request sent.
#[test]
fn a_required_token_refuses_missing_and_wrong_ones_and_logs_what_was_sent() {
    let inventory = Inventory::start().unwrap();
    inventory.require_token(Some("tok-right-1234"));
    inventory.set_faults(Faults {
        fail_next: 1,
        ..Faults::default()
    });
    let none = Client::new(inventory.addr());
    let wrong = Client::new(inventory.addr()).token("tok-wrong-9876");
    let right = Client::new(inventory.addr()).token("tok-right-1234");
    let refused = none.put("networks", "net-a", r#"{"name": "a"}"#).unwrap();
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(
        refused.body.contains("a bearer token is required"),
        "{refused:?}"
    );
    let refused = wrong.put("networks", "net-a", r#"{"name": "a"}"#).unwrap();
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(refused.body.contains("wrong bearer token"), "{refused:?}");
    assert!(
        inventory.records().is_empty(),
        "a refused PUT changes nothing"
    );
    assert_eq!(
        inventory.faults().fail_next,
        1,
        "a refused request takes no fault"
    );
    // The fault, then the success, with the right token.
    assert_eq!(right.put("networks", "net-a", "{}").unwrap().status, 500);
    assert_eq!(right.put("networks", "net-a", "{}").unwrap().status, 201);
    assert_eq!(wrong.delete("networks", "net-a").unwrap().status, 401);
    assert_eq!(
        inventory.records().len(),
        1,
        "a refused DELETE deletes nothing"
    );
    let sent: Vec<(u16, Option<String>)> = inventory
        .requests()
        .into_iter()
        .map(|r| (r.status, r.authorization))
        .collect();
    let bearer = |t: &str| Some(format!("Bearer {t}"));
    assert_eq!(
        sent,
        [
            (401, None),
            (401, bearer("tok-wrong-9876")),
            (500, bearer("tok-right-1234")),
            (201, bearer("tok-right-1234")),
            (401, bearer("tok-wrong-9876")),
        ]
    );
    // Without a requirement, any request is served again.
    inventory.require_token(None);
    assert_eq!(none.get("networks", "net-a").unwrap().status, 200);
}

#[test]
fn injected_500s_then_success_and_latency() {
    let inventory = Inventory::start().unwrap();
    let client = Client::new(inventory.addr());
    inventory.set_faults(Faults {
        fail_next: 2,
        latency_ms: 30,
        hang: false,
    });
    let started = Instant::now();
    assert_eq!(client.put("instances", "vm", "{}").unwrap().status, 500);
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(client.put("instances", "vm", "{}").unwrap().status, 500);
    assert_eq!(client.put("instances", "vm", "{}").unwrap().status, 201);
    let statuses: Vec<u16> = inventory.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 201]);
    assert_eq!(inventory.records().len(), 1);
}

#[test]
fn a_hanging_service_never_answers_until_the_client_gives_up() {
    let inventory = Inventory::start().unwrap();
    inventory.set_faults(Faults {
        hang: true,
        ..Faults::default()
    });
    let client = Client::new(inventory.addr()).timeout(Duration::from_millis(200));
    let err = client.put("ports", "p", "{}").unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    // The admin endpoints still answer, and turn the fault off.
    let admin = Client::new(inventory.addr());
    let off = admin.request("PUT", "/admin/faults", Some("{}")).unwrap();
    assert_eq!(off.status, 200, "{off:?}");
    assert_eq!(admin.put("ports", "p", "{}").unwrap().status, 201);
}

#[test]
fn test_endpoints_redirect_and_send_large_bodies() {
    let inventory = Inventory::start().unwrap();
    let client = Client::new(inventory.addr());
    let redirect = client
        .request("GET", "/test/redirect?to=http://127.0.0.1:1/x", None)
        .unwrap();
    assert_eq!(redirect.status, 307);
    let big = client.request("GET", "/test/bytes/100000", None).unwrap();
    assert_eq!((big.status, big.body.len()), (200, 100_000));
}

#[test]
fn the_binary_prints_its_port_and_serves_with_its_fault_flags() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_syncore-inventory"))
        .args(["--port", "0", "--print-port", "--fail-next", "1"])
        .args(["--token", "bin-token-42"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("{line:?}"));
    let anonymous = Client::new(([127, 0, 0, 1], port).into());
    assert_eq!(anonymous.put("networks", "n", "{}").unwrap().status, 401);
    let client = anonymous.token("bin-token-42");
    assert_eq!(client.put("networks", "n", "{}").unwrap().status, 500);
    assert_eq!(client.put("networks", "n", "{}").unwrap().status, 201);
    let records = client.request("GET", "/admin/records", None).unwrap();
    assert!(
        records.json()["networks"]["n"]["id"].is_string(),
        "{records:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
