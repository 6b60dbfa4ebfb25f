//! Hostile: `sync` returns a feedback field of 8 MiB, far above the host's result limit but
//! inside its memory limit: the host must refuse the result, not the allocation.

use syncore_plugin_sdk::{export_actuator, Actuator, ObjectView, Outcome, Value};

/// Returns too much.
struct Huge;

impl Actuator for Huge {
    fn sync(_: &ObjectView) -> Outcome {
        Outcome::ok_with([("blob", Value::Text("x".repeat(8 << 20)))])
    }
}

export_actuator!(Huge);
