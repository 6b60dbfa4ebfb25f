//! Errors of loading plugins. (A failing *call* is data: `Outcome::Failed` for actuators,
//! `Err(String)` for policies and watchers, never a `PluginError`.)

use std::path::PathBuf;

use super::PluginKind;

/// A plugin could not be loaded, or the host could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// A [`HostConfig`](super::HostConfig) option is out of range.
    #[error("invalid wasm host configuration: {message}")]
    Config {
        /// Which option, and why.
        message: String,
    },
    /// Wasmtime refused the engine settings or the cache directory.
    #[error("cannot start the wasm engine: {message}")]
    Engine {
        /// Wasmtime's message.
        message: String,
    },
    /// The component file could not be read.
    #[error("plugin {plugin}: cannot read {}: {source}", path.display())]
    Read {
        /// The plugin's name.
        plugin: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bytes are not a valid component (a core module, or not wasm at all).
    #[error("plugin {plugin}: not a valid wasm component: {message}")]
    Compile {
        /// The plugin's name.
        plugin: String,
        /// Wasmtime's message.
        message: String,
    },
    /// The component was built against an incompatible `syncore:plugin` version (P4).
    #[error(
        "plugin {plugin} was built against syncore:plugin@{plugin_version} ({interface}), \
         but this host implements syncore:plugin@{host_version}"
    )]
    Version {
        /// The plugin's name.
        plugin: String,
        /// The interface that carries the version, e.g. `syncore:plugin/actuator@0.1.0`.
        interface: String,
        /// The version the plugin was built against (`unversioned` if none).
        plugin_version: String,
        /// The version this host implements.
        host_version: String,
    },
    /// The component does not export the interface of the expected kind.
    #[error(
        "plugin {plugin} is not {}: it does not export syncore:plugin/{}@{host_version} \
         (its exports: {})",
        expected.article(), expected.interface(), if exports.is_empty() { "none".to_string() } else { exports.join(", ") }
    )]
    World {
        /// The plugin's name.
        plugin: String,
        /// The kind it was loaded as.
        expected: PluginKind,
        /// The version this host implements.
        host_version: String,
        /// What it exports instead.
        exports: Vec<String>,
    },
    /// The component imports something the host does not grant (P3), or its exports do not
    /// have the expected types.
    #[error("plugin {plugin}: cannot be linked: {message}")]
    Link {
        /// The plugin's name.
        plugin: String,
        /// Wasmtime's message (names the import).
        message: String,
    },
}
