//! Configuration values and secrets the embedder granted this plugin
//! (`syncore:plugin/config`).
//!
//! A secret is for use (an `Authorization` header), never for output: the host replaces its
//! value in log lines and failure messages by `[secret NAME]`, and fails a call whose
//! feedback holds it. Asking for a secret that was not granted fails the call, naming the
//! secret.

/// The configuration value `key`, if the embedder set one.
pub fn get(key: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::actuator::syncore::plugin::config::get(key);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = key;
        None
    }
}

/// The secret `name`.
///
/// # Errors
/// The secret was not granted (the call fails with that cause whatever the plugin returns).
pub fn secret(name: &str) -> Result<String, String> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::actuator::syncore::plugin::config::secret(name);
    #[cfg(not(target_arch = "wasm32"))]
    Err(format!(
        "secret {name:?}: secrets need the wasm host (this is a native build)"
    ))
}
