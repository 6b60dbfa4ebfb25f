//! WASM components as actuators, policies and watchers, through the engine's `wasm` host.

use std::path::Path;
use std::sync::Arc;

use syncore::{Actuator, Policy, Watcher};

/// Checks that a plugin file exists and is readable; `written` is the path as written in
/// the scenario.
///
/// # Errors
/// A message naming the file and what was expected.
pub fn check_file(path: &Path, kind: &str, written: &str) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(format!(
            "{kind} plugin {written} is not a file (resolved to {})",
            path.display()
        )),
        Err(e) => Err(format!(
            "{kind} plugin file {written} not found (resolved to {}: {e}); expected a WASM component (.wasm) or a built-in name",
            path.display()
        )),
    }
}

fn unavailable(path: &Path) -> String {
    format!(
        "cannot load {}: this build has no WASM host yet",
        path.display()
    )
}

/// Loads a WASM actuator component.
///
/// # Errors
/// Why the component cannot be used.
pub fn actuator(path: &Path) -> Result<Arc<dyn Actuator>, String> {
    Err(unavailable(path))
}

/// Loads a WASM policy component.
///
/// # Errors
/// Why the component cannot be used.
pub fn policy(path: &Path) -> Result<Box<dyn Policy>, String> {
    Err(unavailable(path))
}

/// Loads a WASM watcher component.
///
/// # Errors
/// Why the component cannot be used.
pub fn watcher(path: &Path) -> Result<Box<dyn Watcher>, String> {
    Err(unavailable(path))
}
