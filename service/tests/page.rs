//! The web page, loaded in headless Chromium (Debian's `chromium`, which `.ci/run`
//! installs) against the real binary serving the demo deployment: the demo's objects
//! appear with their statuses, and the dependency graph is drawn.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{get, wait_until, Server};
use serde_json::Value;

#[test]
fn the_page_shows_the_demo_objects_with_statuses_and_the_graph() {
    let dir = tempfile::tempdir().unwrap();
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/serve/demo.json");
    let mut d: Value = serde_json::from_str(&std::fs::read_to_string(demo).unwrap()).unwrap();
    d["listen"] = "127.0.0.1:0".into();
    d["data_dir"] = dir
        .path()
        .join("data")
        .to_string_lossy()
        .into_owned()
        .into();
    let keys: Vec<String> = d["initial"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["upsert"]["key"].as_str().unwrap().to_string())
        .collect();
    let path = dir.path().join("demo.json");
    std::fs::write(&path, d.to_string()).unwrap();
    let server = Server::start(&path).unwrap();
    let c = server.client();
    // Let the sites sync, so the page shows more than one status.
    wait_until(Duration::from_secs(10), "a synced site", || {
        get(&c, "/v1/objects/site-east")["status"] == "synced"
    });
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("{}/", server.url))
        .output()
        .expect("chromium runs (apt-get install -y chromium; .ci/run installs it)");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("data-loaded=\"1\""),
        "the page did not load its data:\n{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for key in &keys {
        assert!(
            dom.contains(&format!("<tr data-key=\"{key}\">")),
            "{key} missing from the table"
        );
        assert!(
            dom.contains(&format!("class=\"node\" data-key=\"{key}\" data-status=\"")),
            "{key} missing from the graph"
        );
    }
    assert!(
        dom.contains("data-key=\"site-east\" data-status=\"synced\""),
        "site-east is not shown synced"
    );
    let circles = dom.matches("<circle").count();
    let lines = dom.matches("<line").count();
    assert_eq!(circles, keys.len(), "one node per object");
    assert!(
        lines >= 12,
        "the dependency edges are drawn ({lines} lines)"
    );
    assert!(dom.contains("class=\"st synced\""));
}
