//! Hostile: `sync` panics with a message naming the object; the host must quote it.

use syncore_plugin_sdk::{export_actuator, Actuator, ObjectView, Outcome};

/// Panics.
struct Panic;

impl Actuator for Panic {
    fn sync(object: &ObjectView) -> Outcome {
        panic!("the backend for {} is on fire", object.key);
    }
}

export_actuator!(Panic);
