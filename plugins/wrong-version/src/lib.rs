//! Hostile: an actuator built against `syncore:plugin@0.1.0`, the previous version (its WIT,
//! as it was, is copied in `wit/` here). A host implementing 0.2.x refuses to load it,
//! naming both versions (P4): 0.2.0 added `config` and outbound HTTP, and for 0.x versions a
//! minor bump is a breaking one.

wit_bindgen::generate!({
    path: "wit",
    world: "actuator-plugin",
});

use exports::syncore::plugin::actuator::Guest;
use syncore::plugin::types::{ObjectView, Outcome};

/// Would succeed, if it were ever loaded.
struct Past;

impl Guest for Past {
    fn sync(_: ObjectView) -> Outcome {
        Outcome::Ok(Vec::new())
    }

    fn delete(_: ObjectView) -> Outcome {
        Outcome::Ok(Vec::new())
    }
}

export!(Past);
