//! One call into a plugin: get an instance (fresh, or an idle one), arm the time limit, run,
//! and turn any failure into a message naming the root cause (P1, P2).
//!
//! ## Failure causes
//! Wasmtime reports every failure as an error whose top-level text is only "error while
//! executing at wasm backtrace". The cause is found, in this order:
//! 1. the resource limiter's record of a refused growth ("out of memory": the guest's own
//!    abort after a failed allocation is only its consequence);
//! 2. a Rust panic message on the instance's captured stderr (a panic aborts with
//!    `unreachable`, which alone would say nothing);
//! 3. the [`wasmtime::Trap`] code: `Interrupt` (epoch deadline) and `OutOfFuel` are timeouts,
//!    `StackOverflow`, `UnreachableCodeReached` and the rest are named as such;
//! 4. a call of `wasi:cli/exit` is named with its status;
//! 5. anything else (a result the canonical ABI cannot lift: bad pointers, invalid UTF-8,
//!    bad discriminants; a host error) is quoted.
//!
//! If one of the call's outbound requests failed in transport (a refused connection, a
//! connection closed mid-answer), the host's view of it (`origin: error`) is appended, to a
//! trap's cause and to an actuator's own `Failed` message alike: the guest saw only a WASI
//! error code such as `HttpProtocolError`.
//!
//! An instance that failed is never reused: its memory may be half-written.

use std::sync::Arc;

use parking_lot::Mutex;
use wasmtime::component::InstancePre;
use wasmtime::{Store, Trap};

use super::bindings::{actuator, policy, watcher};
use super::config::{epoch_ticks, Instances, Limits, TimeLimit};
use super::conn::HttpPool;
use super::grant::Granted;
use super::host::HostInner;
use super::sandbox::{truncate, Denied, HostState, StateParts};
use super::PluginKind;

/// A plugin world as the host sees it: how to pre-link and instantiate its bindings.
pub(crate) trait World: 'static {
    /// The pre-linked component with the world's export indices.
    type Pre: Send + Sync + 'static;
    /// An instance's bindings (typed exports).
    type Bindings: Send + 'static;
    /// Which kind of plugin this world is.
    const KIND: PluginKind;
    /// Looks up and type-checks the world's exports.
    fn pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre>;
    /// Instantiates into `store`.
    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Self::Bindings>;
}

/// `world actuator-plugin`.
pub(crate) struct ActuatorWorld;
/// `world policy-plugin`.
pub(crate) struct PolicyWorld;
/// `world watcher-plugin`.
pub(crate) struct WatcherWorld;

impl World for ActuatorWorld {
    type Pre = actuator::ActuatorPluginPre<HostState>;
    type Bindings = actuator::ActuatorPlugin;
    const KIND: PluginKind = PluginKind::Actuator;
    fn pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
        actuator::ActuatorPluginPre::new(pre)
    }
    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Self::Bindings> {
        pre.instantiate(store)
    }
}

impl World for PolicyWorld {
    type Pre = policy::PolicyPluginPre<HostState>;
    type Bindings = policy::PolicyPlugin;
    const KIND: PluginKind = PluginKind::Policy;
    fn pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
        policy::PolicyPluginPre::new(pre)
    }
    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Self::Bindings> {
        pre.instantiate(store)
    }
}

impl World for WatcherWorld {
    type Pre = watcher::WatcherPluginPre<HostState>;
    type Bindings = watcher::WatcherPlugin;
    const KIND: PluginKind = PluginKind::Watcher;
    fn pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
        watcher::WatcherPluginPre::new(pre)
    }
    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Self::Bindings> {
        pre.instantiate(store)
    }
}

/// An instance with its store.
struct Slot<W: World> {
    store: Store<HostState>,
    bindings: W::Bindings,
}

/// A loaded plugin: its pre-linked component, its grant, its limits and its idle instances.
pub(crate) struct Plugin<W: World> {
    pub(crate) name: Arc<str>,
    pub(crate) host: Arc<HostInner>,
    pre: W::Pre,
    /// What the plugin may do (P3).
    pub(crate) granted: Arc<Granted>,
    /// Its per-call limits: its grant's, or the host's.
    pub(crate) limits: Limits,
    /// Instances that finished a call successfully, ready for another (reuse mode only).
    idle: Mutex<Vec<Slot<W>>>,
    /// Keep-alive connections for its outbound HTTP (`HostConfig::http_keep_alive`).
    pub(crate) http_pool: Option<HttpPool>,
    /// Whether its synchronous calls run on the caller's own runtime (`local_io.rs`): it
    /// is granted outbound HTTP to the network (no in-process handler).
    pub(crate) io_on_caller: bool,
}

impl<W: World> Plugin<W> {
    pub(crate) fn new(
        name: &str,
        host: Arc<HostInner>,
        pre: W::Pre,
        granted: Arc<Granted>,
        limits: Limits,
    ) -> Plugin<W> {
        let http_pool = host.config.http_keep_alive.then(HttpPool::new);
        let io_on_caller = !granted.origins.is_empty() && host.config.http_handler.is_none();
        Plugin {
            name: name.into(),
            io_on_caller,
            http_pool,
            host,
            pre,
            granted,
            limits,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on an instance, for the object `key`, within the per-call limits.
    ///
    /// # Errors
    /// The root cause of a failed call, as a message (see the module docs).
    pub(crate) fn call<R>(
        &self,
        key: &str,
        f: impl FnOnce(&W::Bindings, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, String> {
        self.call_noted(key, f).map(|(result, _)| result)
    }

    /// As [`Plugin::call`], with the call's first transport failure (`origin: error`) if an
    /// outbound request failed on the way: the root cause of a failure the guest reports
    /// with only a WASI error code.
    ///
    /// # Errors
    /// As [`Plugin::call`].
    pub(crate) fn call_noted<R>(
        &self,
        key: &str,
        f: impl FnOnce(&W::Bindings, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<(R, Option<String>), String> {
        let idle = self.idle.lock().pop();
        let mut slot = match idle {
            Some(slot) => slot,
            None => self.instantiate(key)?,
        };
        slot.store.data_mut().begin(key);
        let stderr_mark = slot.store.data().stderr_mark;
        self.arm(&mut slot.store)?;
        let result = f(&slot.bindings, &mut slot.store);
        // A host-side incident (a refused request, a secret not granted...) is the root
        // cause, whatever the guest made of the error it got.
        if let Some(incident) = slot.store.data().incident() {
            if result.is_ok() {
                self.recycle(slot);
            }
            return Err(incident);
        }
        match result {
            Ok(result) => {
                let transport = slot.store.data().transport_error();
                self.recycle(slot);
                Ok((result, transport))
            }
            Err(err) => Err(self.cause(&err, slot.store.data(), stderr_mark)),
        }
    }

    /// A new store for a call about `key`: the plugin's state (what its grant allows) and
    /// the resource limiter; no time limit yet (synchronous and asynchronous calls arm it
    /// differently).
    pub(crate) fn new_store(&self, key: &str) -> Result<Store<HostState>, String> {
        let host = &self.host;
        let state = HostState::new(StateParts {
            plugin: self.name.clone(),
            limits: &self.limits,
            granted: self.granted.clone(),
            handler: host.config.http_handler.as_ref().map(|r| r.0.clone()),
            pool: self.http_pool.clone(),
            sink: host.sink.clone(),
            buffer: host.buffer.clone(),
        })?;
        let mut store = Store::new(&host.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.data_mut().begin(key);
        Ok(store)
    }

    /// A new instance, in a new store with the limiter and the time limit armed (a
    /// component may run code while it is instantiated).
    fn instantiate(&self, key: &str) -> Result<Slot<W>, String> {
        let mut store = self.new_store(key)?;
        if let TimeLimit::Epoch { .. } = self.limits.time {
            store.epoch_deadline_trap();
        }
        self.arm(&mut store)?;
        match W::instantiate(&self.pre, &mut store) {
            Ok(bindings) => {
                store.data_mut().stderr_mark = store.data().stderr_len();
                Ok(Slot { store, bindings })
            }
            Err(err) => Err(format!(
                "cannot instantiate: {}",
                self.cause(&err, store.data(), 0)
            )),
        }
    }

    /// Sets the call's time budget: a fresh epoch deadline or a full tank of fuel.
    fn arm(&self, store: &mut Store<HostState>) -> Result<(), String> {
        match self.limits.time {
            TimeLimit::Epoch { timeout, tick } => {
                store.set_epoch_deadline(epoch_ticks(timeout, tick));
                Ok(())
            }
            TimeLimit::Fuel(fuel) => store
                .set_fuel(fuel)
                .map_err(|e| format!("cannot set fuel: {e}")),
        }
    }

    /// Keeps a successful instance for the next call, in reuse mode, unless its stderr
    /// capture is half full (a later panic message must still fit).
    fn recycle(&self, mut slot: Slot<W>) {
        let Some(idle_max) = self.idle_max(slot.store.data_mut()) else {
            return;
        };
        let mut idle = self.idle.lock();
        if idle.len() < idle_max {
            idle.push(slot);
        }
    }

    /// How many idle instances to keep, if an instance that ended a call successfully in
    /// state `state` may be kept at all: only in reuse mode, and only while its stderr
    /// capture is at most half full. Marks where the next call's stderr starts.
    pub(crate) fn idle_max(&self, state: &mut HostState) -> Option<usize> {
        let Instances::Reuse { idle_max } = self.host.config.instances else {
            return None;
        };
        state.stderr_mark = state.stderr_len();
        (state.stderr_mark <= self.limits.stderr_bytes_max / 2).then_some(idle_max)
    }

    /// The root cause of a failed call (module docs, "Failure causes").
    pub(crate) fn cause(
        &self,
        err: &wasmtime::Error,
        state: &HostState,
        stderr_mark: usize,
    ) -> String {
        let limits = &self.limits;
        let message = match state.limiter.denied {
            Some(Denied::Memory { desired }) => Some(format!(
                "out of memory: growing linear memory to {desired} bytes exceeds the memory limit of {} bytes",
                limits.memory_bytes_max
            )),
            Some(Denied::Table { desired }) => Some(format!(
                "table limit: growing a table to {desired} elements exceeds the limit of {} elements",
                limits.table_elements_max
            )),
            None => None,
        };
        let stderr = state.stderr.contents();
        let stderr = String::from_utf8_lossy(stderr.get(stderr_mark..).unwrap_or_default());
        let message = message.or_else(|| panic_message(&stderr).map(|p| format!("panicked: {p}")));
        let message = message.unwrap_or_else(|| match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => {
                format!(
                    "timeout: interrupted after exceeding the time limit of {}",
                    limits.time.describe()
                )
            }
            Some(Trap::OutOfFuel) => {
                format!(
                    "timeout: out of fuel after exceeding the time limit of {}",
                    limits.time.describe()
                )
            }
            Some(Trap::StackOverflow) => {
                format!(
                    "stack overflow: call stack exhausted (stack limit {} bytes)",
                    limits.stack_bytes_max
                )
            }
            Some(Trap::UnreachableCodeReached) => {
                with_stderr("trap: unreachable instruction executed", &stderr)
            }
            Some(trap) => with_stderr(
                &format!(
                    "trap: {}",
                    trap.to_string().trim_start_matches("wasm trap: ")
                ),
                &stderr,
            ),
            None => match err.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => with_stderr(
                    &format!("exited with status {} (wasi:cli/exit)", exit.0),
                    &stderr,
                ),
                None => with_stderr(&format!("invalid call or result: {err:#}"), &stderr),
            },
        });
        let message = match state.transport_error() {
            Some(transport) => format!("{message} (after an outbound request failed: {transport})"),
            None => message,
        };
        truncate(self.granted.redact(message), limits.message_bytes_max)
    }
}

/// `what`, followed by the last stderr line if there is one (a guest's own diagnosis, such
/// as "memory allocation of 1048576 bytes failed").
fn with_stderr(what: &str, stderr: &str) -> String {
    match stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()) {
        Some(line) => format!("{what} (stderr: {line})"),
        None => what.to_string(),
    }
}

/// The message of a Rust panic printed on stderr, with its location:
/// "thread 'x' panicked at src/lib.rs:9:9:\nmessage\nnote: ..." gives
/// "message (at src/lib.rs:9:9)".
pub(crate) fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at ")? + "panicked at ".len();
    let rest = &stderr[start..];
    let (location, body) = rest.split_once('\n').unwrap_or((rest, ""));
    let location = location.trim_end().trim_end_matches(':');
    let body = body.split("\nnote:").next().unwrap_or_default().trim();
    if body.is_empty() {
        return Some(location.to_string());
    }
    Some(format!("{body} (at {location})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_found_with_their_location() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:12:9:\nthe backend for k is on fire\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).unwrap(),
            "the backend for k is on fire (at src/lib.rs:12:9)"
        );
        assert_eq!(panic_message("nothing here"), None);
    }

    #[test]
    fn stderr_tails_are_quoted() {
        assert_eq!(
            with_stderr("trap: x", "a\nmemory allocation failed\n\n"),
            "trap: x (stderr: memory allocation failed)"
        );
        assert_eq!(with_stderr("trap: x", ""), "trap: x");
    }
}
