//! Helpers shared by the WASM integration tests (`tests/wasm.rs`, `tests/wasm_backend.rs`,
//! `tests/languages.rs`, `tests/languages_http.rs`); each uses a part of them.
#![allow(dead_code)]

use syncore::{Actuators, Engine, ExecConfig, Executor, Status, Time, Value};

/// Plan, execute, complete until nothing is due (jumping to the next wake-up when only
/// backing-off objects remain) or `rounds_max` rounds passed; the time reached.
pub fn converge(
    engine: &mut Engine,
    actuators: &Actuators,
    start: Time,
    rounds_max: usize,
) -> Time {
    let executor =
        Executor::new(engine.schema(), actuators, ExecConfig::new().threads(2)).expect("executor");
    let mut now = start;
    for _ in 0..rounds_max {
        let plan = engine.plan(now);
        if plan.tasks.is_empty() {
            match plan.next_wake {
                Some(wake) => {
                    now = wake;
                    continue;
                }
                None => break,
            }
        }
        let report = executor.run(engine, &plan);
        engine.complete_run(&plan, &report, now).expect("complete");
        now = now.after(1);
    }
    now
}

pub fn json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Str(s) | Value::Ref(s) => s.clone().into(),
        Value::Int(i) => (*i).into(),
        Value::Bool(b) => (*b).into(),
        other => panic!("no such field in the CORD schema: {other:?}"),
    }
}

pub fn error_message(engine: &Engine, key: &str, now: Time) -> String {
    match engine.status(key, now) {
        Some(Status::Error { message, .. }) => message,
        other => panic!("{key} should be in error, is {other:?}"),
    }
}

pub fn assert_contains(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{text:?} should contain {part:?}");
    }
}

/// Which collection of the inventory holds a model.
pub fn collection(model: &str) -> Option<&'static str> {
    match model {
        "Network" => Some("networks"),
        "Instance" => Some("instances"),
        "Port" => Some("ports"),
        _ => None,
    }
}
