//! Hostile: `sync` returns feedback the host cannot accept: a `json` value that is not JSON
//! (for objects whose key ends in `-json`) or a NaN float (otherwise).

use syncore_plugin_sdk::{export_actuator, Actuator, ObjectView, Outcome, Value};

/// Returns malformed feedback.
struct Malformed;

impl Actuator for Malformed {
    fn sync(object: &ObjectView) -> Outcome {
        if object.key.ends_with("-json") {
            Outcome::ok_with([("id", Value::Json("{not json".into()))])
        } else {
            Outcome::ok_with([("id", Value::Float(f64::NAN))])
        }
    }
}

export_actuator!(Malformed);
