//! [`WasmHost`]: the wasmtime engine, the linker that grants plugins their (few)
//! capabilities, the epoch ticker, the compile cache, and loading with world and version
//! checks (P4).

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Cache, CacheConfig, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use super::bindings::actuator::ActuatorPlugin;
use super::bindings::actuator_async::ActuatorPluginPre as ActuatorPluginPreAsync;
use super::call::{ActuatorWorld, Plugin, PolicyWorld, WatcherWorld, World};
use super::config::{HostConfig, Instances, TimeLimit};
use super::error::PluginError;
use super::grant::Granted;
use super::plugins::{WasmActuator, WasmPolicy, WasmWatcher};
use super::sandbox::{HostState, LogBuffer, LogLine, LogSink};
use super::PluginKind;

/// The `syncore:plugin` version this host implements (the `package` line of `wit/*.wit`).
pub const WIT_VERSION: &str = "0.2.0";

/// Most compiled components one host remembers by their bytes (loading the same bytes again
/// reuses the compiled code instead of compiling or reading the disk cache).
pub const COMPILED_MEMO_MAX: usize = 64;

/// Component instances the pooling allocator reserves in [`Instances::Fresh`] mode: the most
/// calls that can run at once on one host.
pub const POOL_INSTANCES_MAX: u32 = 256;

/// Shared by the host and every plugin it loaded (plugins outlive a dropped host).
pub(crate) struct HostInner {
    pub(crate) engine: wasmtime::Engine,
    /// Synchronous WASI and `wasi:http` (a request blocks the calling thread): for the
    /// executor's calls.
    pub(crate) linker: Linker<HostState>,
    /// Asynchronous WASI and `wasi:http` (a request suspends the call's fiber, its thread
    /// goes on with other work): for [`AsyncActuator`](crate::AsyncActuator) calls.
    pub(crate) linker_async: Linker<HostState>,
    pub(crate) config: HostConfig,
    pub(crate) sink: Arc<dyn LogSink>,
    pub(crate) buffer: Arc<LogBuffer>,
    cache: Option<Cache>,
    /// Compiled components by their exact bytes, at most [`COMPILED_MEMO_MAX`].
    compiled: Mutex<Vec<(Vec<u8>, Component)>>,
    /// Advances the epoch while any plugin of this host may run (epoch time limits only).
    _ticker: Option<Ticker>,
}

/// The epoch ticker thread; stops when dropped.
struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: wasmtime::Engine, tick: Duration) -> std::io::Result<Ticker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("syncore-wasm-epoch".into())
            .spawn(move || {
                // A timeout means another tick has passed; a message or a hang-up means stop.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Compile-cache counters of a host (see [`HostConfig::cache_dir`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Components loaded from the disk cache.
    pub hits: usize,
    /// Components compiled (and then written to the cache).
    pub misses: usize,
}

/// Loads and runs plugins: WASM components exporting `syncore:plugin/actuator`, `policy` or
/// `watcher` at a version compatible with [`WIT_VERSION`].
///
/// One host serves any number of plugins and threads; plugins keep the host's engine alive,
/// so they may outlive it. Cloning is cheap (shared).
///
/// # Examples
/// ```no_run
/// use syncore::wasm::{HostConfig, Limits, WasmHost};
/// let host = WasmHost::new(HostConfig::default().limits(Limits::deterministic(50_000_000)))?;
/// let cord = host.load_actuator("cord", "plugins/cord_actuators.wasm")?;
/// let port_policy = host.load_policy("cord-policy", "plugins/cord_policy.wasm")?;
/// # let _ = (cord, port_policy);
/// # Ok::<(), syncore::wasm::PluginError>(())
/// ```
#[derive(Clone)]
pub struct WasmHost {
    inner: Arc<HostInner>,
}

impl std::fmt::Debug for WasmHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmHost")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl WasmHost {
    /// A host with `config`, logging into its own [`LogBuffer`] (see [`WasmHost::take_logs`]).
    ///
    /// # Errors
    /// [`PluginError::Config`] naming a bad option; [`PluginError::Engine`] if wasmtime
    /// refuses the settings or the cache directory.
    pub fn new(config: HostConfig) -> Result<WasmHost, PluginError> {
        let buffer = Arc::new(LogBuffer::default());
        WasmHost::build(config, buffer.clone(), buffer)
    }

    /// A host whose plugins' log lines go to `sink` (the embedder's trace).
    ///
    /// # Errors
    /// As [`WasmHost::new`].
    pub fn with_log_sink(
        config: HostConfig,
        sink: Arc<dyn LogSink>,
    ) -> Result<WasmHost, PluginError> {
        WasmHost::build(config, sink, Arc::new(LogBuffer::default()))
    }

    fn build(
        config: HostConfig,
        sink: Arc<dyn LogSink>,
        buffer: Arc<LogBuffer>,
    ) -> Result<WasmHost, PluginError> {
        config
            .validate()
            .map_err(|message| PluginError::Config { message })?;
        let engine_err = |e: wasmtime::Error| PluginError::Engine {
            message: format!("{e:#}"),
        };
        let limits = &config.limits;
        let mut wt = wasmtime::Config::new();
        wt.wasm_component_model(true);
        wt.max_wasm_stack(limits.stack_bytes_max);
        // An async call runs on a fiber whose stack must hold the wasm stack and the host
        // functions it calls (wasmtime refuses a wasm stack larger than the fiber's).
        wt.async_stack_size(limits.stack_bytes_max.saturating_add(1 << 20).max(2 << 20));
        wt.cranelift_opt_level(if config.optimize {
            OptLevel::Speed
        } else {
            OptLevel::None
        });
        match limits.time {
            TimeLimit::Epoch { .. } => wt.epoch_interruption(true),
            TimeLimit::Fuel(_) => wt.consume_fuel(true),
        };
        if config.instances == Instances::Fresh {
            let n = POOL_INSTANCES_MAX;
            let per = u32::try_from(limits.instances_max).unwrap_or(u32::MAX);
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(n)
                .total_core_instances(n.saturating_mul(4))
                .total_memories(n.saturating_mul(2))
                .total_tables(n.saturating_mul(4))
                .max_core_instances_per_component(per)
                .max_memories_per_component(per)
                .max_tables_per_component(per)
                .max_memory_size(limits.memory_bytes_max);
            wt.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let cache = match &config.cache_dir {
            Some(dir) => {
                let mut cc = CacheConfig::new();
                cc.with_directory(dir);
                let cache = Cache::new(cc).map_err(engine_err)?;
                wt.cache(Some(cache.clone()));
                Some(cache)
            }
            None => None,
        };
        let engine = wasmtime::Engine::new(&wt).map_err(engine_err)?;

        // The linker offers exactly: WASI p2 over a context holding only what the plugin's
        // grant allows (see `HostState::new`), `wasi:http` behind the grant's gate,
        // `syncore:plugin/host` (log lines) and `syncore:plugin/config`. `types` has no
        // functions.
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker).map_err(engine_err)?;
        ActuatorPlugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(engine_err)?;
        // The same capabilities for asynchronous calls; `host` and `config` never block, so
        // they stay synchronous functions there too.
        let mut linker_async = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker_async).map_err(engine_err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker_async)
            .map_err(engine_err)?;
        ActuatorPlugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker_async, |s| s)
            .map_err(engine_err)?;

        let ticker = match limits.time {
            TimeLimit::Epoch { tick, .. } => Some(Ticker::start(engine.clone(), tick).map_err(
                |e| PluginError::Engine {
                    message: format!("cannot start the epoch ticker thread: {e}"),
                },
            )?),
            TimeLimit::Fuel(_) => None,
        };
        Ok(WasmHost {
            inner: Arc::new(HostInner {
                engine,
                linker,
                linker_async,
                config,
                sink,
                buffer,
                cache,
                compiled: Mutex::new(Vec::new()),
                _ticker: ticker,
            }),
        })
    }

    /// The host's configuration.
    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    /// Takes the log lines buffered so far (only for hosts made with [`WasmHost::new`]).
    pub fn take_logs(&self) -> Vec<LogLine> {
        self.inner.buffer.take()
    }

    /// Log lines dropped: beyond a call's `log_lines_max`, or past the buffer's size.
    pub fn logs_dropped(&self) -> u64 {
        self.inner.buffer.dropped()
    }

    /// Disk-cache counters (zero without a cache directory).
    pub fn cache_stats(&self) -> CacheStats {
        self.inner
            .cache
            .as_ref()
            .map_or_else(CacheStats::default, |c| CacheStats {
                hits: c.cache_hits(),
                misses: c.cache_misses(),
            })
    }

    /// Loads the actuator component at `path` as plugin `name`.
    ///
    /// # Errors
    /// [`PluginError`]: unreadable file, not a component, wrong `syncore:plugin` version
    /// (naming both versions, P4), not an actuator, or an import the host does not grant.
    pub fn load_actuator(
        &self,
        name: &str,
        path: impl AsRef<Path>,
    ) -> Result<WasmActuator, PluginError> {
        let bytes = read(name, path.as_ref())?;
        self.load_actuator_bytes(name, &bytes)
    }

    /// Loads an actuator component from its bytes.
    ///
    /// # Errors
    /// As [`WasmHost::load_actuator`].
    pub fn load_actuator_bytes(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<WasmActuator, PluginError> {
        let (plugin, component) = self.load::<ActuatorWorld>(name, bytes)?;
        let link = |e: wasmtime::Error| PluginError::Link {
            plugin: name.to_string(),
            message: format!("{e:#}"),
        };
        let pre = self
            .inner
            .linker_async
            .instantiate_pre(&component)
            .map_err(link)?;
        let pre = ActuatorPluginPreAsync::new(pre).map_err(link)?;
        Ok(WasmActuator::new(plugin, pre))
    }

    /// Loads the policy component at `path` as plugin `name`.
    ///
    /// # Errors
    /// As [`WasmHost::load_actuator`], for the policy world.
    pub fn load_policy(
        &self,
        name: &str,
        path: impl AsRef<Path>,
    ) -> Result<WasmPolicy, PluginError> {
        let bytes = read(name, path.as_ref())?;
        self.load_policy_bytes(name, &bytes)
    }

    /// Loads a policy component from its bytes.
    ///
    /// # Errors
    /// As [`WasmHost::load_policy`].
    pub fn load_policy_bytes(&self, name: &str, bytes: &[u8]) -> Result<WasmPolicy, PluginError> {
        Ok(WasmPolicy::new(self.load::<PolicyWorld>(name, bytes)?.0))
    }

    /// Loads the watcher component at `path` as plugin `name`.
    ///
    /// # Errors
    /// As [`WasmHost::load_actuator`], for the watcher world.
    pub fn load_watcher(
        &self,
        name: &str,
        path: impl AsRef<Path>,
    ) -> Result<WasmWatcher, PluginError> {
        let bytes = read(name, path.as_ref())?;
        self.load_watcher_bytes(name, &bytes)
    }

    /// Loads a watcher component from its bytes.
    ///
    /// # Errors
    /// As [`WasmHost::load_watcher`].
    pub fn load_watcher_bytes(&self, name: &str, bytes: &[u8]) -> Result<WasmWatcher, PluginError> {
        Ok(WasmWatcher::new(self.load::<WatcherWorld>(name, bytes)?.0))
    }

    /// Compiles (or finds) the component, checks its world and version, links it once;
    /// the plugin, and the component (to link it again for asynchronous calls).
    fn load<W: World>(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<(Plugin<W>, Component), PluginError> {
        let grant = self
            .inner
            .config
            .grants
            .get(name)
            .cloned()
            .unwrap_or_default();
        let limits = grant
            .limits
            .clone()
            .unwrap_or_else(|| self.inner.config.limits.clone());
        let granted = Granted::new(grant).map_err(|message| PluginError::Config {
            message: format!("grants[{name}]: {message}"),
        })?;
        let component = self.compile(name, bytes)?;
        check_world(&self.inner.engine, &component, W::KIND, name)?;
        let link = |e: wasmtime::Error| PluginError::Link {
            plugin: name.to_string(),
            message: format!("{e:#}"),
        };
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(link)?;
        let pre = W::pre(pre).map_err(link)?;
        let plugin = Plugin::new(name, self.inner.clone(), pre, Arc::new(granted), limits);
        Ok((plugin, component))
    }

    /// Compiles `bytes`, or reuses this host's earlier compilation of the same bytes; the
    /// disk cache (if configured) makes the first compilation of a later run a load.
    fn compile(&self, name: &str, bytes: &[u8]) -> Result<Component, PluginError> {
        if let Some((_, c)) = self.inner.compiled.lock().iter().find(|(b, _)| b == bytes) {
            return Ok(c.clone());
        }
        // The 8-byte preamble: `\0asm`, then version 1 layer 0 (core) or layer 1 (component).
        if !bytes.starts_with(b"\0asm") || bytes.get(6..8) != Some(&[1, 0]) {
            let core = bytes.starts_with(b"\0asm\x01\0\0\0");
            let what = if core {
                "a core wasm module"
            } else {
                "not wasm"
            };
            return Err(PluginError::Compile {
                plugin: name.to_string(),
                message: format!("the bytes are {what}"),
            });
        }
        let component =
            Component::new(&self.inner.engine, bytes).map_err(|e| PluginError::Compile {
                plugin: name.to_string(),
                message: format!("{e:#}"),
            })?;
        let mut memo = self.inner.compiled.lock();
        if memo.len() >= COMPILED_MEMO_MAX {
            memo.remove(0);
        }
        memo.push((bytes.to_vec(), component.clone()));
        Ok(component)
    }
}

fn read(name: &str, path: &Path) -> Result<Vec<u8>, PluginError> {
    std::fs::read(path).map_err(|source| PluginError::Read {
        plugin: name.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

/// Whether a plugin built against `version` of `syncore:plugin` runs on this host: semver
/// compatible (the same major version, and for 0.x the same minor; patch versions do not
/// change the interface), and for 1.x and later no newer minor version than the host's.
pub(crate) fn compatible(version: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64, u64)> {
        let core = v.split(['-', '+']).next()?;
        let mut it = core.split('.').map(|p| p.parse::<u64>().ok());
        let parsed = (it.next()??, it.next()??, it.next()??);
        it.next().is_none().then_some(parsed)
    };
    let (Some(host), Some(plugin)) = (parse(WIT_VERSION), parse(version)) else {
        return false;
    };
    if host.0 == 0 {
        plugin.0 == 0 && plugin.1 == host.1
    } else {
        plugin.0 == host.0 && plugin.1 <= host.1
    }
}

/// Refuses a component built against another `syncore:plugin` version (P4), or one that does
/// not export the interface of `kind`.
fn check_world(
    engine: &wasmtime::Engine,
    component: &Component,
    kind: PluginKind,
    name: &str,
) -> Result<(), PluginError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    for item in exports.iter().chain(imports.iter()) {
        let Some(rest) = item.strip_prefix("syncore:plugin/") else {
            continue;
        };
        let version = rest.split_once('@').map_or("unversioned", |(_, v)| v);
        if !compatible(version) {
            return Err(PluginError::Version {
                plugin: name.to_string(),
                interface: item.clone(),
                plugin_version: version.to_string(),
                host_version: WIT_VERSION.to_string(),
            });
        }
    }
    let wanted = format!("syncore:plugin/{}@", kind.interface());
    if !exports.iter().any(|e| e.starts_with(&wanted)) {
        return Err(PluginError::World {
            plugin: name.to_string(),
            expected: kind,
            host_version: WIT_VERSION.to_string(),
            exports,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wit_version_matches_the_wit_package() {
        let wit = include_str!("../../../wit/types.wit");
        assert!(wit.contains(&format!("package syncore:plugin@{WIT_VERSION};")));
    }

    #[test]
    fn compatible_versions_follow_semver() {
        assert!(compatible(WIT_VERSION));
        assert!(compatible("0.2.0"));
        assert!(!compatible("0.1.0"), "0.1.0 lacks config and outbound HTTP");
        assert!(!compatible("0.3.0"));
        assert!(!compatible("1.1.0"));
        assert!(compatible("0.2.7"), "patch versions share the interface");
        assert!(!compatible("unversioned"));
        assert!(!compatible("0.1"));
    }

    #[test]
    fn bad_configs_are_refused_naming_the_option() {
        let mut config = HostConfig::default();
        config.limits.memory_bytes_max = 0;
        let err = WasmHost::new(config).unwrap_err();
        assert!(err.to_string().contains("memory_bytes_max"), "{err}");
        let config = HostConfig::default().limits(super::super::Limits::deterministic(0));
        assert!(WasmHost::new(config)
            .unwrap_err()
            .to_string()
            .contains("fuel"));
    }

    #[test]
    fn non_components_are_refused() {
        let host = WasmHost::new(HostConfig::default()).unwrap();
        let err = host
            .load_actuator_bytes("junk", b"not wasm at all")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("plugin junk: not a valid wasm component: the bytes are not wasm"),
            "{err}"
        );
        let core = b"\0asm\x01\0\0\0";
        let err = host.load_actuator_bytes("core", core).unwrap_err();
        assert!(err.to_string().contains("a core wasm module"), "{err}");
    }
}
