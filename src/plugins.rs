//! WASM components as actuators, policies and watchers, through the engine's `wasm` host.
//!
//! One [`WasmHost`] serves the whole process, so a component named by several models (or
//! loaded again for a replay) is compiled once. Calls are limited by fuel, not by a
//! wall-clock deadline, so a scenario's outcome does not depend on the machine's speed.
//! Plugins' log lines join the run's timeline, as watcher lines do.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use syncore::wasm::{HostConfig, Limits, LogLine, LogSink, WasmHost};
use syncore::{Actuator, Policy, Watcher};

/// Fuel one plugin call may burn (about a few hundred million wasm instructions).
pub const FUEL_PER_CALL: u64 = 500_000_000;

/// Where plugin log lines wait until the runner prints them.
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Sink;

impl LogSink for Sink {
    fn log(&self, line: LogLine) {
        let text = format!(
            "plugin {} ({:?}) on {}: {}",
            line.plugin, line.level, line.key, line.message
        );
        LOG.lock().unwrap_or_else(|p| p.into_inner()).push(text);
    }
}

/// Takes the plugin log lines written so far.
pub fn take_logs() -> Vec<String> {
    std::mem::take(&mut *LOG.lock().unwrap_or_else(|p| p.into_inner()))
}

fn host() -> Result<&'static WasmHost, String> {
    static HOST: OnceLock<Result<WasmHost, String>> = OnceLock::new();
    HOST.get_or_init(|| {
        let config = HostConfig::default().limits(Limits::deterministic(FUEL_PER_CALL));
        WasmHost::with_log_sink(config, Arc::new(Sink)).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| format!("cannot start the WASM host: {e}"))
}

/// The plugin's name: its file stem.
fn name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

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

/// Loads a WASM actuator component.
///
/// # Errors
/// Why the component cannot be used (not a component, wrong WIT version, wrong world).
pub fn actuator(path: &Path) -> Result<Arc<dyn Actuator>, String> {
    let a = host()?
        .load_actuator(&name(path), path)
        .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
    Ok(Arc::new(a))
}

/// Loads a WASM policy component.
///
/// # Errors
/// Why the component cannot be used.
pub fn policy(path: &Path) -> Result<Box<dyn Policy>, String> {
    let p = host()?
        .load_policy(&name(path), path)
        .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
    Ok(Box::new(p))
}

/// Loads a WASM watcher component.
///
/// # Errors
/// Why the component cannot be used.
pub fn watcher(path: &Path) -> Result<Box<dyn Watcher>, String> {
    let w = host()?
        .load_watcher(&name(path), path)
        .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
    Ok(Box::new(w))
}
