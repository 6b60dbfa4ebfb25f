//! WASM components as actuators, policies and watchers, through the engine's `wasm` host.
//!
//! One [`WasmHost`] serves the whole process while the scenario's `grants` stay the same,
//! so a component named by several models (or loaded again for a replay) is compiled once.
//! Each plugin gets its own grant from the scenario (by file stem) and nothing else (P3). Calls are limited by fuel, not by a
//! wall-clock deadline, so a scenario's outcome does not depend on the machine's speed.
//! Plugins' log lines join the run's timeline, as watcher lines do.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use syncore::wasm::{Grant, HostConfig, Limits, LogLine, LogSink, Secret, WasmHost};
use syncore::{Actuator, Policy, Watcher};

use crate::scenario::GrantSpec;

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

/// The grants of the scenario being run, by plugin name ([`set_grants`]).
static GRANTS: Mutex<BTreeMap<String, Grant>> = Mutex::new(BTreeMap::new());

/// The host, and the grants it was made with.
static HOST: Mutex<Option<(BTreeMap<String, Grant>, WasmHost)>> = Mutex::new(None);

/// Sets the grants later loads use (the scenario's `grants`, converted by [`grant`]).
pub fn set_grants(grants: BTreeMap<String, Grant>) {
    *GRANTS.lock().unwrap_or_else(|p| p.into_inner()) = grants;
}

/// The host for the current grants: one per process while the grants stay the same, so a
/// component named by several models (or loaded again for a replay) is compiled once.
fn host() -> Result<WasmHost, String> {
    let grants = GRANTS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut host = HOST.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((made_with, host)) = host.as_ref() {
        if *made_with == grants {
            return Ok(host.clone());
        }
    }
    let config = grants.iter().fold(
        HostConfig::default().limits(Limits::deterministic(FUEL_PER_CALL)),
        |config, (name, grant)| config.grant(name.clone(), grant.clone()),
    );
    let made = WasmHost::with_log_sink(config, Arc::new(Sink))
        .map_err(|e| format!("cannot start the WASM host: {e}"))?;
    *host = Some((grants, made.clone()));
    Ok(made)
}

/// Converts one scenario grant (the engine's shared checks, on this host's fuel limits);
/// `dir` resolves relative paths (the scenario's directory).
///
/// # Errors
/// Every offending entry, as a JSON pointer below the grant (`http/0`, `secrets/token`,
/// `dirs/1/host`...), with what is wrong with it. A secret's value never appears in a
/// message.
pub fn grant(spec: &GrantSpec, dir: &Path) -> Result<Grant, Vec<(String, String)>> {
    spec.to_grant(
        dir,
        &Limits::deterministic(FUEL_PER_CALL),
        |name, source| secret(name, source, dir),
    )
    .map_err(|errors| {
        errors
            .0
            .iter()
            .map(|e| (e.field.pointer(), e.message()))
            .collect()
    })
}

/// A secret's value, from its environment variable or file.
fn secret(
    name: &str,
    source: &crate::scenario::SecretSource,
    dir: &Path,
) -> Result<Secret, String> {
    let value = match (&source.env, &source.file) {
        (Some(var), None) => std::env::var(var).map_err(|_| {
            format!("secret {name:?}: the environment variable {var} is not set (or not UTF-8)")
        })?,
        (None, Some(file)) => {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("secret {name:?}: cannot read {}: {e}", path.display()))?;
            text.strip_suffix('\n').unwrap_or(&text).to_string()
        }
        _ => {
            return Err(format!(
                "secret {name:?}: give exactly one of \"env\" and \"file\""
            ))
        }
    };
    Ok(Secret::new(value))
}

/// The plugin's name: its file stem (the key of its entry in the scenario's `grants`).
pub fn name(path: &Path) -> String {
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
