//! Asynchronous calls of an actuator plugin: a pool of instances per plugin, each call on a
//! fiber, so a plugin waiting on outbound HTTP holds no thread.
//!
//! ## How a call runs
//! A call takes a permit (at most [`Limits::calls_in_flight_max`] calls of one plugin run
//! at once; the others wait for a permit, holding no thread), then an idle instance of the
//! plugin or a new one, and runs the export with `call_async` on a fiber. WASI and
//! `wasi:http` are linked asynchronously: when the guest blocks on a pollable (a response
//! not yet arrived), the fiber suspends and the thread goes on with other futures; the
//! request itself runs as a tokio task. An instance that ended a call successfully returns
//! to the idle list (reuse mode, up to `idle_max`); a failed one is dropped.
//!
//! ## Time (P2)
//! With an epoch limit the deadline bounds the time the guest *runs*, not the time it
//! waits: the store's deadline is one tick ahead, and at each deadline the guest reaches
//! the host's callback counts one tick and yields to the executor (cooperative time slices,
//! so a spinning plugin cannot starve the others on the same threads). When the count
//! reaches the limit's ticks the call traps with the same "timeout" cause as a
//! synchronous call. While the guest is suspended on I/O no deadline is reached; its first
//! check after resuming counts one tick, so a call is charged at most one tick per wait on
//! top of its running time. Waiting is bounded by the grant's request timeout per request
//! and, under the runtime, by the model's `timeout_ms` (S4): the call watches its
//! [`CancelToken`] and stops, dropping its instance, once it is set. With a fuel limit the
//! fuel bounds the running time deterministically and the guest yields every
//! [`FUEL_YIELD_INTERVAL`] units.
//!
//! ## Failures (P1)
//! As for synchronous calls (`call.rs`): the same root causes, the same incidents, the
//! same transport notes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use wasmtime::{Store, UpdateDeadline};

use super::bindings::actuator_async::{ActuatorPlugin, ActuatorPluginPre};
use super::bindings::wit;
use super::call::{ActuatorWorld, Plugin};
use super::config::{epoch_ticks, Limits, TimeLimit};
use super::plugins::refill;
use super::sandbox::HostState;
use crate::actuation::CancelToken;
use crate::actuator::ObjectView;

/// Fuel units between two yields of an asynchronous call under a fuel limit.
pub const FUEL_YIELD_INTERVAL: u64 = 100_000;

/// How often a waiting call looks at its cancel token.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// Which actuator export a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Sync,
    Delete,
}

impl Op {
    /// `sync` or `delete` (for messages).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Sync => "sync",
            Op::Delete => "delete",
        }
    }
}

/// Counters of a plugin's asynchronous calls ([`WasmActuator::pool_stats`](super::WasmActuator::pool_stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Asynchronous calls started.
    pub calls: u64,
    /// Instances created for them (a call that found an idle instance created none).
    pub instances_created: u64,
    /// Calls running now (holding an instance).
    pub in_flight: usize,
    /// Most calls that ran at once so far.
    pub in_flight_peak: usize,
    /// Idle instances kept for later calls.
    pub idle: usize,
}

/// What a call's epoch limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallTime {
    /// The time the guest runs (asynchronous calls: module docs, "Time").
    Running,
    /// Wall time, waits included (a synchronous call run on a fiber, P2).
    Wall,
}

/// An instance of the async-linked component, with its store.
struct Slot {
    store: Store<HostState>,
    bindings: ActuatorPlugin,
}

/// A plugin's asynchronous side: the component linked with asynchronous WASI, the permits
/// and the idle instances.
pub(crate) struct AsyncPool {
    /// The plugin (name, grant, limits, failure causes), shared with the synchronous side.
    pub(crate) plugin: Arc<Plugin<ActuatorWorld>>,
    pre: ActuatorPluginPre<HostState>,
    /// Instances that ended a call successfully (reuse mode only), at most `idle_max`.
    idle: Mutex<Vec<Slot>>,
    /// One permit per call that may run at once (`Limits::calls_in_flight_max`).
    permits: tokio::sync::Semaphore,
    calls: AtomicU64,
    instances_created: AtomicU64,
    in_flight: AtomicUsize,
    in_flight_peak: AtomicUsize,
}

/// Counts a call in flight while it lives.
struct Flight<'a>(&'a AsyncPool);

impl<'a> Flight<'a> {
    fn enter(pool: &'a AsyncPool) -> Flight<'a> {
        let now = pool.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        pool.in_flight_peak.fetch_max(now, Ordering::Relaxed);
        Flight(pool)
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncPool {
    pub(crate) fn new(
        plugin: Arc<Plugin<ActuatorWorld>>,
        pre: ActuatorPluginPre<HostState>,
    ) -> Self {
        let permits = tokio::sync::Semaphore::new(plugin.limits.calls_in_flight_max);
        AsyncPool {
            plugin,
            pre,
            idle: Mutex::new(Vec::new()),
            permits,
            calls: AtomicU64::new(0),
            instances_created: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            in_flight_peak: AtomicUsize::new(0),
        }
    }

    /// The counters.
    pub(crate) fn stats(&self) -> PoolStats {
        PoolStats {
            calls: self.calls.load(Ordering::Relaxed),
            instances_created: self.instances_created.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            in_flight_peak: self.in_flight_peak.load(Ordering::Relaxed),
            idle: self.idle.lock().len(),
        }
    }

    /// Runs export `op` on `input` (the object `key`), asynchronously; the guest's outcome
    /// and the call's first transport failure, if any.
    ///
    /// # Errors
    /// The root cause of a failed call, as a message (`call.rs`, "Failure causes"), or
    /// that the call was cancelled.
    pub(crate) async fn call(
        &self,
        key: &str,
        op: Op,
        object: &ObjectView<'_>,
        cancel: Option<&CancelToken>,
        time: CallTime,
    ) -> Result<(wit::Outcome, Option<String>), String> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let Ok(_permit) = self.permits.acquire().await else {
            return Err("the plugin's instance pool is closed".into());
        };
        let _flight = Flight::enter(self);
        let idle = self.idle.lock().pop();
        let mut slot = match idle {
            Some(slot) => slot,
            None => self.instantiate(key).await?,
        };
        slot.store.data_mut().begin(key);
        let stderr_mark = slot.store.data().stderr_mark;
        match time {
            CallTime::Running => self.arm(&mut slot.store)?,
            CallTime::Wall => arm_wall_time(&self.plugin.limits, &mut slot.store)?,
        }
        let input = refill(slot.store.data_mut(), object);
        let result = {
            let actuator = slot.bindings.syncore_plugin_actuator();
            let store = &mut slot.store;
            let input = &input;
            let run = async move {
                match op {
                    Op::Sync => actuator.call_sync(store, input).await,
                    Op::Delete => actuator.call_delete(store, input).await,
                }
            };
            tokio::select! {
                biased;
                result = run => result,
                () = cancelled(cancel), if cancel.is_some() => {
                    // The instance may be mid-call: it is dropped, never reused.
                    return Err("cancelled while running (the actuation is overdue or the runtime is stopping)".into());
                }
            }
        };
        slot.store.data_mut().input = Some(input);
        let plugin = &self.plugin;
        if let Some(incident) = slot.store.data().incident() {
            if result.is_ok() {
                self.recycle(slot);
            }
            return Err(incident);
        }
        match result {
            Ok(outcome) => {
                let transport = slot.store.data().transport_error();
                self.recycle(slot);
                Ok((outcome, transport))
            }
            Err(err) => Err(plugin.cause(&err, slot.store.data(), stderr_mark)),
        }
    }

    /// A new instance in a new store, its time limit counting running time only (module
    /// docs, "Time").
    async fn instantiate(&self, key: &str) -> Result<Slot, String> {
        let plugin = &self.plugin;
        let mut store = plugin.new_store(key)?;
        match plugin.limits.time {
            TimeLimit::Epoch { .. } => store.epoch_deadline_callback(|mut cx| {
                let state = cx.data_mut();
                if state.ticks_left == 0 {
                    return Ok(UpdateDeadline::Interrupt);
                }
                state.ticks_left -= 1;
                Ok(UpdateDeadline::Yield(1))
            }),
            TimeLimit::Fuel(_) => store
                .fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL))
                .map_err(|e| format!("cannot set the fuel yield interval: {e}"))?,
        }
        self.arm(&mut store)?;
        self.instances_created.fetch_add(1, Ordering::Relaxed);
        match self.pre.instantiate_async(&mut store).await {
            Ok(bindings) => {
                store.data_mut().stderr_mark = store.data().stderr_len();
                Ok(Slot { store, bindings })
            }
            Err(err) => Err(format!(
                "cannot instantiate: {}",
                plugin.cause(&err, store.data(), 0)
            )),
        }
    }

    /// Sets the call's budget: the ticks it may run, the first deadline one tick ahead; or
    /// a full tank of fuel.
    fn arm(&self, store: &mut Store<HostState>) -> Result<(), String> {
        arm_running_time(&self.plugin.limits, store)
    }

    /// Keeps a successful instance for the next call (reuse mode, up to `idle_max`).
    fn recycle(&self, mut slot: Slot) {
        let Some(idle_max) = self.plugin.idle_max(slot.store.data_mut()) else {
            return;
        };
        let mut idle = self.idle.lock();
        if idle.len() < idle_max {
            idle.push(slot);
        }
    }
}

/// Arms `store` for one asynchronous call under `limits` (module docs, "Time").
fn arm_running_time(limits: &Limits, store: &mut Store<HostState>) -> Result<(), String> {
    match limits.time {
        TimeLimit::Epoch { timeout, tick } => {
            store.data_mut().ticks_left = epoch_ticks(timeout, tick);
            store.set_epoch_deadline(1);
            Ok(())
        }
        TimeLimit::Fuel(fuel) => store
            .set_fuel(fuel)
            .map_err(|e| format!("cannot set fuel: {e}")),
    }
}

/// Arms `store` for a synchronous call run on the fiber (`local_io.rs`): the whole epoch
/// limit at once, as a synchronous call's, so it counts wall time, waits included; no
/// yields (nothing else runs on the calling thread's runtime). Fuel as always.
fn arm_wall_time(limits: &Limits, store: &mut Store<HostState>) -> Result<(), String> {
    match limits.time {
        TimeLimit::Epoch { timeout, tick } => {
            store.data_mut().ticks_left = 0;
            store.set_epoch_deadline(epoch_ticks(timeout, tick));
            Ok(())
        }
        TimeLimit::Fuel(_) => arm_running_time(limits, store),
    }
}

/// Resolves once `cancel` is set (looked at every [`CANCEL_POLL`]); never without a token
/// or outside a tokio runtime (there is no timer to poll with).
async fn cancelled(cancel: Option<&CancelToken>) {
    let Some(cancel) = cancel else {
        return std::future::pending().await;
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return std::future::pending().await;
    }
    while !cancel.is_cancelled() {
        tokio::time::sleep(CANCEL_POLL).await;
    }
}
