//! Hostile: `sync` panics with a message naming the object; the host must quote it. Objects
//! whose key starts with `calm` are synced normally, so a test can check that the instance a
//! panic poisoned is not reused.

use syncore_plugin_sdk::{export_actuator, Actuator, ObjectView, Outcome};

/// Panics, except on calm objects.
struct Panic;

impl Actuator for Panic {
    fn sync(object: &ObjectView) -> Outcome {
        if object.key.starts_with("calm") {
            return Outcome::ok();
        }
        panic!("the backend for {} is on fire", object.key);
    }
}

export_actuator!(Panic);
