//! Does nothing and succeeds: `benches/wasm_call.rs` measures the cost of a call with it.

use syncore_plugin_sdk::{export_actuator, Actuator, ObjectView, Outcome};

/// Succeeds at once, with no feedback.
struct Noop;

impl Actuator for Noop {
    fn sync(_: &ObjectView) -> Outcome {
        Outcome::ok()
    }
}

export_actuator!(Noop);
