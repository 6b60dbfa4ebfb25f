//! The WASM host (feature `wasm`): actuators, policies and watchers written as WebAssembly
//! components, sandboxed by wasmtime, behind the same traits as native ones.
//!
//! A plugin is a component built against the WIT package `syncore:plugin@0.2.0` (`wit/` at
//! the repository root; Rust plugins use the `syncore-plugin-sdk` crate). A [`WasmHost`]
//! loads it, checks that it exports the expected interface at a compatible version (P4),
//! compiles it once (optionally through an on-disk cache), links it once (`InstancePre`), and
//! hands out a [`WasmActuator`], [`WasmPolicy`] or [`WasmWatcher`]: `Send + Sync` values
//! implementing [`Actuator`](crate::Actuator), [`Policy`](crate::Policy) and
//! [`Watcher`](crate::Watcher), callable from many executor threads at once.
//!
//! ```no_run
//! use syncore::wasm::{HostConfig, WasmHost};
//! use syncore::{Actuator, Config, Engine, Schema, Time};
//! # let schema = Schema::from_json(r#"{"models": [{"name": "Site"}]}"#).unwrap();
//! let host = WasmHost::new(HostConfig::default())?;
//! let sites = host.load_actuator("sites", "site_actuator.wasm")?;
//! let mut engine = Engine::new(schema, Config::default());
//! # let _ = engine.apply(syncore::ChangeSet::new().upsert("s1", "Site", Vec::<(String, syncore::Value)>::new()));
//! for task in engine.plan(Time(0)).tasks {
//!     let outcome = sites.sync(&engine.view(task.object)); // a trap is `Outcome::Failed`
//!     engine.complete(&task, outcome, Time(0)).unwrap();
//! }
//! # Ok::<(), syncore::wasm::PluginError>(())
//! ```
//!
//! ## Sandbox (P1-P3)
//! - **Authority**: a plugin may import `syncore:plugin/host` (log lines, which go to a
//!   [`LogSink`]), `syncore:plugin/config` (configuration and secrets), `wasi:http` and WASI
//!   p2 over a context holding only what its [`Grant`] allows. With no grant: no preopened
//!   directories, environment, arguments or sockets; clocks stopped at zero; "random" bytes a
//!   fixed sequence; every outbound HTTP request refused; no configuration; stdin closed,
//!   stdout discarded, stderr captured (bounded) to quote panic messages. Anything else it
//!   imports makes loading fail ([`PluginError::Link`]).
//! - **Grants** ([`HostConfig::grant`], by plugin name): outbound HTTP to [`Origin`]
//!   patterns, with a per-request timeout and a response-size cap; configuration values;
//!   [`Secret`]s, hidden from every log line, message and feedback; the real clocks; real
//!   randomness; directories (read-only or read-write); the plugin's own [`Limits`]. A
//!   refused request (a redirect to an origin not granted included), a response over the
//!   cap, a request timeout or a secret not granted fails the call naming the plugin and the
//!   origin or secret. [`GrantSpec`] is a grant as written in a JSON file (a scenario's
//!   or a deployment's), checked field by field and converted into a [`Grant`]. [`HostConfig::http_handler`] answers outbound HTTP in-process instead
//!   of the network, for deterministic simulations ([`HttpHandler`]).
//! - **Limits** ([`Limits`], per call): time as an epoch deadline (a ticker thread; the
//!   default) or fuel (deterministic, [`Limits::deterministic`]); linear memory and table
//!   growth through a resource limiter; native stack; the size of results and messages.
//! - **Failures**: a trap, panic, timeout, exhausted limit or malformed result fails only the
//!   call (an actuator's [`Outcome::Failed`](crate::Outcome::Failed), a policy's or watcher's
//!   `Err`) with a message naming the plugin, the object and the root cause; the instance is
//!   discarded; the engine and every other plugin go on.
//!
//! ## Instances
//! [`Instances::Reuse`] (the default) keeps instances that finished a call successfully and
//! hands them to later calls; [`Instances::Fresh`] instantiates for every call from the
//! pooling allocator, so no guest state can survive a call. `benches/wasm_call.rs` measures
//! both (numbers in `BENCHMARKS.md`). Either way each call has its own store while it runs:
//! concurrent calls never share an instance.
//!
//! ## Asynchronous calls
//! A [`WasmActuator`] is also an [`AsyncActuator`](crate::AsyncActuator), for the real-time
//! runtime (`Registry::with_async`): each call runs on a fiber, with WASI and `wasi:http`
//! linked asynchronously, on an instance of the plugin's own pool (at most
//! [`Limits::calls_in_flight_max`] at once). A plugin blocked on an outbound request
//! suspends its fiber and the thread runs other calls, so hundreds of requests can be out
//! on two threads. The epoch limit then counts the guest's running time (a spinning guest
//! also yields at every tick), and the call stops when its cancel token is set
//! (`benches/wasm_http.rs` measures 1,000 objects against a 20 ms backend).
//!
//! ## Determinism
//! With [`TimeLimit::Fuel`] and plugins that keep no state between calls, a call's outcome
//! is a function of its input alone. Epoch deadlines depend on the machine's speed.

mod bindings;
mod call;
mod config;
mod conn;
mod convert;
mod error;
mod grant;
mod host;
mod http;
mod local_io;
mod plugins;
mod pool;
mod sandbox;
mod spec;

pub use config::{
    HostConfig, HttpRoute, Instances, Limits, TimeLimit, CALLS_IN_FLIGHT_MAX, IDLE_INSTANCES_MAX,
    MEMORY_BYTES_MAX, STACK_BYTES_MAX,
};
pub use conn::{HttpPool, HttpPoolStats, HTTP_IDLE_PER_ORIGIN_MAX, HTTP_IDLE_TIMEOUT};
pub use error::PluginError;
pub use grant::{DirGrant, Grant, Origin, Secret, REQUEST_TIMEOUT, RESPONSE_BYTES_MAX};
pub use host::{CacheStats, WasmHost, COMPILED_MEMO_MAX, POOL_INSTANCES_MAX, WIT_VERSION};
pub use http::{HttpHandler, HttpReply, HttpRequest};
pub use plugins::{WasmActuator, WasmPolicy, WasmWatcher};
pub use pool::{PoolStats, FUEL_YIELD_INTERVAL};
pub use sandbox::{LogBuffer, LogLevel, LogLine, LogSink, LOG_BUFFER_LINES_MAX};
pub use spec::{
    DirSpec, GrantError, GrantErrors, GrantField, GrantProblem, GrantSpec, SECRET_BYTES_MIN,
};

/// The kinds of plugin, one per WIT world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// `world actuator-plugin`, exporting `syncore:plugin/actuator`.
    Actuator,
    /// `world policy-plugin`, exporting `syncore:plugin/policy`.
    Policy,
    /// `world watcher-plugin`, exporting `syncore:plugin/watcher`.
    Watcher,
}

impl PluginKind {
    /// The exported interface's name: `actuator`, `policy` or `watcher`.
    pub fn interface(self) -> &'static str {
        match self {
            PluginKind::Actuator => "actuator",
            PluginKind::Policy => "policy",
            PluginKind::Watcher => "watcher",
        }
    }

    /// "an actuator", "a policy", "a watcher" (for messages).
    pub fn article(self) -> &'static str {
        match self {
            PluginKind::Actuator => "an actuator",
            PluginKind::Policy => "a policy",
            PluginKind::Watcher => "a watcher",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.interface())
    }
}
