//! Hostile: an actuator built against `syncore:plugin@0.2.0` (the WIT copy in `wit/` here).
//! A host implementing 0.1.x must refuse to load it, naming both versions (P4).

wit_bindgen::generate!({
    path: "wit",
    world: "actuator-plugin",
});

use exports::syncore::plugin::actuator::Guest;
use syncore::plugin::types::{ObjectView, Outcome};

/// Would succeed, if it were ever loaded.
struct Future;

impl Guest for Future {
    fn sync(_: ObjectView) -> Outcome {
        Outcome::Ok(Vec::new())
    }

    fn delete(_: ObjectView) -> Outcome {
        Outcome::Ok(Vec::new())
    }
}

export!(Future);
