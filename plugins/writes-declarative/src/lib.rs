//! Hostile: `sync` returns feedback naming the declarative field `name` (R9 forbids it).

use syncore_plugin_sdk::{export_actuator, Actuator, ObjectView, Outcome};

/// Tries to change declarative state.
struct Writer;

impl Actuator for Writer {
    fn sync(_: &ObjectView) -> Outcome {
        Outcome::ok_with([("name", "hijacked")])
    }
}

export_actuator!(Writer);
