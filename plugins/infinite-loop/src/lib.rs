//! Hostile: `sync` never returns. The host's time limit (epoch deadline or fuel) must
//! interrupt it and fail only this object.

use syncore_plugin_sdk::{export_actuator, Actuator, ObjectView, Outcome};

/// Spins forever.
struct Spin;

impl Actuator for Spin {
    fn sync(object: &ObjectView) -> Outcome {
        let mut counter = object.version;
        loop {
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

export_actuator!(Spin);
