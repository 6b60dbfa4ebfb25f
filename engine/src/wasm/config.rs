//! How the host runs plugins: per-call limits (P2), instance handling and the compile cache.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::grant::Grant;
use super::http::HttpHandler;

/// Largest memory limit accepted: 4 GiB, all a 32-bit linear memory can address.
pub const MEMORY_BYTES_MAX: usize = 4 << 30;
/// Most idle instances one plugin keeps for reuse.
pub const IDLE_INSTANCES_MAX: usize = 1024;
/// Largest [`Limits::calls_in_flight_max`] accepted: the instances one plugin may hold at
/// once (each reserves its own address space and fiber stack).
pub const CALLS_IN_FLIGHT_MAX: usize = 4096;
/// Largest stack a call may use (wasmtime's `max_wasm_stack`), 64 MiB.
pub const STACK_BYTES_MAX: usize = 64 << 20;

/// How a call's running time is limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeLimit {
    /// Wall-clock deadline, checked by epoch interruption: a ticker thread advances the
    /// engine's epoch every `tick`, and a call is interrupted once `timeout` (rounded up to
    /// whole ticks, plus one) has passed. Cheap (a load and compare per loop header and
    /// function entry) but not deterministic: where a call stops depends on the machine.
    Epoch {
        /// The longest a call may run.
        timeout: Duration,
        /// How often the epoch advances; the deadline's precision.
        tick: Duration,
    },
    /// Deterministic: a call may execute this many units of fuel (about one per wasm
    /// instruction), then it traps. The same plugin on the same input stops at the same
    /// instruction on every machine. Costs a few percent of speed.
    Fuel(u64),
}

/// The epoch ticks a call under `TimeLimit::Epoch { timeout, tick }` may run: the whole
/// ticks of the timeout, plus one (the epoch may advance right after the deadline is set,
/// so one more guarantees at least `timeout`).
pub(crate) fn epoch_ticks(timeout: std::time::Duration, tick: std::time::Duration) -> u64 {
    let ticks = timeout.as_nanos().div_ceil(tick.as_nanos().max(1)) + 1;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

impl TimeLimit {
    /// A short text for messages: "1000 ms" or "10000000 fuel".
    pub fn describe(&self) -> String {
        match self {
            TimeLimit::Epoch { timeout, .. } => format!("{} ms", timeout.as_millis()),
            TimeLimit::Fuel(fuel) => format!("{fuel} fuel"),
        }
    }
}

/// Per-call limits (P2). [`Limits::default`] gives every default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long a call may run. Default: an epoch deadline of 1 s, ticking every 10 ms.
    pub time: TimeLimit,
    /// Most linear-memory bytes one instance may grow to. Default: 64 MiB.
    pub memory_bytes_max: usize,
    /// Most elements a table may grow to. Default: 10,000.
    pub table_elements_max: usize,
    /// Most core instances, memories and tables one component instance may create.
    /// Default: 32.
    pub instances_max: usize,
    /// Most native stack bytes wasm code may use before a stack-overflow trap.
    /// Default: 512 KiB (wasmtime's default).
    pub stack_bytes_max: usize,
    /// Most bytes of strings and byte lists in one result (feedback, changes). Default: 1 MiB.
    pub result_bytes_max: usize,
    /// Most entries in one result (feedback fields, changes). Default: 10,000.
    pub result_entries_max: usize,
    /// Longest message kept from a plugin (failure text, log line), in bytes; longer ones
    /// are cut. Default: 4,096.
    pub message_bytes_max: usize,
    /// Most log lines one call may write; more are dropped and counted. Default: 100.
    pub log_lines_max: u32,
    /// Most stderr bytes kept per instance (quoted when a call fails). Default: 64 KiB.
    pub stderr_bytes_max: usize,
    /// Most asynchronous calls of one plugin running at once, each on its own instance
    /// (the plugin's instance pool, see [`WasmActuator`](super::WasmActuator)'s
    /// [`AsyncActuator`](crate::AsyncActuator) implementation); further calls wait, holding
    /// no thread, until one ends. With [`Instances::Fresh`] the host-wide pooling allocator
    /// ([`POOL_INSTANCES_MAX`](super::POOL_INSTANCES_MAX) instances) caps it too.
    /// Default: 256.
    pub calls_in_flight_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time: TimeLimit::Epoch {
                timeout: Duration::from_secs(1),
                tick: Duration::from_millis(10),
            },
            memory_bytes_max: 64 << 20,
            table_elements_max: 10_000,
            instances_max: 32,
            stack_bytes_max: 512 << 10,
            result_bytes_max: 1 << 20,
            result_entries_max: 10_000,
            message_bytes_max: 4096,
            log_lines_max: 100,
            stderr_bytes_max: 64 << 10,
            calls_in_flight_max: 256,
        }
    }
}

impl Limits {
    /// The defaults with a deterministic fuel budget instead of a wall-clock deadline.
    pub fn deterministic(fuel: u64) -> Limits {
        Limits {
            time: TimeLimit::Fuel(fuel),
            ..Limits::default()
        }
    }
}

/// Where a call's instance comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instances {
    /// Every call gets a fresh instance (from the compiled `InstancePre`, memory slots from
    /// wasmtime's pooling allocator). No state survives a call, whatever the plugin does.
    Fresh,
    /// Instances are kept after a successful call and reused by later calls (one call per
    /// instance at a time; concurrent calls use different instances). An instance is
    /// discarded after any failed call (trap, timeout, limit), or when its captured stderr
    /// fills up. Up to `idle_max` idle instances are kept per plugin. Plugins must keep no
    /// state between calls: which instance serves which call is not defined.
    Reuse {
        /// Most idle instances kept per plugin.
        idle_max: usize,
    },
}

/// An in-process [`HttpHandler`] that answers every plugin's outbound HTTP in place of the
/// network ([`HostConfig::http_handler`]). Two routes are equal when they share the handler.
#[derive(Clone)]
pub struct HttpRoute(pub Arc<dyn HttpHandler>);

impl PartialEq for HttpRoute {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for HttpRoute {}

impl std::fmt::Debug for HttpRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpRoute(..)")
    }
}

/// Settings of a [`WasmHost`](super::WasmHost). [`HostConfig::default`] gives every default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// Per-call limits. Default: [`Limits::default`].
    pub limits: Limits,
    /// Fresh or reused instances. Default: reuse, up to 16 idle instances per plugin
    /// (`benches/wasm_call.rs` measures both; see `BENCHMARKS.md`).
    pub instances: Instances,
    /// A directory for compiled components (wasmtime's cache, keyed by a hash of the wasm
    /// bytes and the compiler settings), so a second start loads instead of compiling.
    /// Default: `None`, no disk cache (the host writes no files unless told to).
    pub cache_dir: Option<PathBuf>,
    /// Optimise generated code (Cranelift `speed`) rather than compile fast (`none`).
    /// Default: `true`.
    pub optimize: bool,
    /// What each plugin may do, by plugin name (the name given to `load_*`). A plugin with
    /// no entry gets [`Grant::default`]: nothing (P3). Default: empty.
    pub grants: BTreeMap<String, Grant>,
    /// Answers outbound HTTP in-process instead of the network (deterministic simulations).
    /// Grants still apply. Default: `None`, the network.
    pub http_handler: Option<HttpRoute>,
    /// Keep plugins' HTTP/1.1 connections open and reuse them for later requests to the same
    /// origin (each plugin its own [`HttpPool`](super::HttpPool)); otherwise every request
    /// opens and closes a connection of its own. Default: `true`.
    pub http_keep_alive: bool,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            limits: Limits::default(),
            instances: Instances::Reuse { idle_max: 16 },
            cache_dir: None,
            optimize: true,
            grants: BTreeMap::new(),
            http_handler: None,
            http_keep_alive: true,
        }
    }
}

impl HostConfig {
    /// Sets the per-call limits.
    pub fn limits(mut self, limits: Limits) -> HostConfig {
        self.limits = limits;
        self
    }

    /// Sets how instances are handled.
    pub fn instances(mut self, instances: Instances) -> HostConfig {
        self.instances = instances;
        self
    }

    /// Sets the compile cache directory.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> HostConfig {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Grants `grant` to the plugin named `plugin` (replacing an earlier grant).
    pub fn grant(mut self, plugin: impl Into<String>, grant: Grant) -> HostConfig {
        self.grants.insert(plugin.into(), grant);
        self
    }

    /// Routes every plugin's outbound HTTP to `handler` instead of the network.
    pub fn http_handler(mut self, handler: Arc<dyn HttpHandler>) -> HostConfig {
        self.http_handler = Some(HttpRoute(handler));
        self
    }

    /// Sets whether plugins' HTTP connections are kept open for reuse.
    pub fn http_keep_alive(mut self, keep_alive: bool) -> HostConfig {
        self.http_keep_alive = keep_alive;
        self
    }

    /// Checks every option once, naming the offending one (setters never fail).
    pub(crate) fn validate(&self) -> Result<(), String> {
        validate_limits(&self.limits, "limits")?;
        if let Instances::Reuse { idle_max } = self.instances {
            if idle_max > IDLE_INSTANCES_MAX {
                return Err(format!(
                    "instances: idle_max must be at most {IDLE_INSTANCES_MAX}"
                ));
            }
        }
        for (name, grant) in &self.grants {
            let Some(own) = &grant.limits else { continue };
            let what = format!("grants[{name}].limits");
            validate_limits(own, &what)?;
            let host = &self.limits;
            let same_kind = match (own.time, host.time) {
                (TimeLimit::Epoch { tick: a, .. }, TimeLimit::Epoch { tick: b, .. }) => a == b,
                (TimeLimit::Fuel(_), TimeLimit::Fuel(_)) => true,
                _ => false,
            };
            if !same_kind {
                return Err(format!(
                    "{what}.time: a plugin's time limit must be of the host's kind (epoch with the same tick, or fuel)"
                ));
            }
            if own.stack_bytes_max != host.stack_bytes_max {
                return Err(format!(
                    "{what}.stack_bytes_max: the stack size is the host's for every plugin"
                ));
            }
            if self.instances == Instances::Fresh && own.memory_bytes_max > host.memory_bytes_max {
                return Err(format!(
                    "{what}.memory_bytes_max: with fresh instances a plugin may not exceed the host's memory limit (the pool's slot size)"
                ));
            }
        }
        Ok(())
    }
}

/// Checks one set of limits; `what` names it in messages.
fn validate_limits(l: &Limits, what: &str) -> Result<(), String> {
    match l.time {
        TimeLimit::Epoch { timeout, tick } => {
            if tick.is_zero() || timeout.is_zero() {
                return Err(format!(
                    "{what}.time: epoch timeout and tick must be positive"
                ));
            }
        }
        TimeLimit::Fuel(0) => return Err(format!("{what}.time: fuel must be positive")),
        TimeLimit::Fuel(_) => {}
    }
    if l.memory_bytes_max == 0 || l.memory_bytes_max > MEMORY_BYTES_MAX {
        return Err(format!(
            "{what}.memory_bytes_max must be in 1..={MEMORY_BYTES_MAX}"
        ));
    }
    if l.stack_bytes_max < 16 << 10 || l.stack_bytes_max > STACK_BYTES_MAX {
        return Err(format!(
            "{what}.stack_bytes_max must be in {}..={STACK_BYTES_MAX}",
            16 << 10
        ));
    }
    if l.instances_max == 0 {
        return Err(format!("{what}.instances_max must be positive"));
    }
    if l.calls_in_flight_max == 0 || l.calls_in_flight_max > CALLS_IN_FLIGHT_MAX {
        return Err(format!(
            "{what}.calls_in_flight_max must be in 1..={CALLS_IN_FLIGHT_MAX}"
        ));
    }
    if l.message_bytes_max < 64 {
        return Err(format!("{what}.message_bytes_max must be at least 64"));
    }
    Ok(())
}
