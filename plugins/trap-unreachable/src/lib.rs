//! Hostile: `sync` executes the `unreachable` instruction (with nothing on stderr).

use syncore_plugin_sdk::{export_actuator, Actuator, ObjectView, Outcome};

/// Traps at once.
struct Trap;

impl Actuator for Trap {
    fn sync(_: &ObjectView) -> Outcome {
        #[cfg(target_arch = "wasm32")]
        core::arch::wasm32::unreachable();
        #[cfg(not(target_arch = "wasm32"))]
        std::process::abort();
    }
}

export_actuator!(Trap);
