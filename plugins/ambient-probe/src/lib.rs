//! Probes for ambient authority and reports what it found as the feedback field `report`
//! (JSON): the environment, the arguments, the filesystem, the clocks and the network. On a
//! host that grants nothing (P3) every probe comes back empty, zero or refused.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use syncore_plugin_sdk::{export_actuator, Actuator, ObjectView, Outcome, Value};

/// Quotes `text` as a JSON string.
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `"ok"` if the probe got through, else `"denied"`.
fn verdict<T, E>(result: Result<T, E>) -> &'static str {
    if result.is_ok() {
        "ok"
    } else {
        "denied"
    }
}

/// Looks around.
struct Probe;

impl Actuator for Probe {
    fn sync(_: &ObjectView) -> Outcome {
        let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
        let args = std::env::args().count();
        let cwd = std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let read_root = verdict(std::fs::read_dir("/"));
        let read_passwd = verdict(std::fs::read("/etc/passwd"));
        let write_tmp = verdict(std::fs::write("/tmp/syncore-probe", b"x"));
        let wall_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(u64::MAX);
        let start = Instant::now();
        let elapsed_ns = start.elapsed().as_nanos();
        let tcp = verdict(std::net::TcpStream::connect("127.0.0.1:80"));
        let report = format!(
            r#"{{"env": {}, "args": {args}, "cwd": {}, "read_root": "{read_root}", "read_passwd": "{read_passwd}", "write_tmp": "{write_tmp}", "wall_secs": {wall_secs}, "monotonic_elapsed_ns": {elapsed_ns}, "tcp": "{tcp}"}}"#,
            quote(&env.join(",")),
            quote(&cwd),
        );
        Outcome::ok_with([("report", Value::Json(report))])
    }
}

export_actuator!(Probe);
