//! The engine traits, implemented by WASM components: [`WasmActuator`], [`WasmPolicy`],
//! [`WasmWatcher`]. Each call copies its input into the plugin, runs it under the limits,
//! and checks what comes back.

use std::sync::Arc;

use super::bindings::actuator_async::ActuatorPluginPre;
use super::bindings::wit;
use super::call::{ActuatorWorld, Plugin, PolicyWorld, WatcherWorld, World};
use super::conn::{HttpPool, HttpPoolStats};
use super::convert::{self, Budget};
use super::grant::Granted;
use super::local_io;
use super::pool::{AsyncPool, CallTime, Op, PoolStats};
use super::sandbox::HostState;
use crate::actuation::{ActuationContext, AsyncActuator, BoxFuture, OwnedView};
use crate::actuator::{Actuator, ObjectView, Outcome};
use crate::change::Change;
use crate::policy::{Policy, PolicyInput, StateView, WatchEvent, Watcher};
use crate::value::Value;

impl<W: World> Plugin<W> {
    fn budget(&self) -> Budget {
        let limits = &self.limits;
        Budget::new(limits.result_bytes_max, limits.result_entries_max)
    }

    /// The outcome with granted secrets hidden: replaced in messages, refused in feedback
    /// (feedback lands in snapshots and traces).
    fn hide_secrets(&self, outcome: Outcome) -> Result<Outcome, String> {
        let granted = &self.granted;
        if granted.grant.secrets.is_empty() {
            return Ok(outcome);
        }
        match outcome {
            Outcome::Ok {
                feedback,
                requeue_after,
            } => {
                for (field, value) in &feedback {
                    if let Some(secret) = value_secret(granted, value) {
                        return Err(format!(
                            "feedback `{field}` holds the value of secret {secret:?} (secrets never leave the plugin)"
                        ));
                    }
                }
                Ok(Outcome::Ok {
                    feedback,
                    requeue_after,
                })
            }
            Outcome::Failed { message } => Ok(Outcome::Failed {
                message: granted.redact(message),
            }),
            Outcome::Deferred { message } => Ok(Outcome::Deferred {
                message: granted.redact(message),
            }),
        }
    }

    /// Refuses policy changes that would write a granted secret into declarative state.
    fn changes_without_secrets(&self, changes: &[Change]) -> Result<(), String> {
        if self.granted.grant.secrets.is_empty() {
            return Ok(());
        }
        for change in changes {
            if let Change::Upsert { key, fields, .. } = change {
                for (field, value) in fields {
                    if let Some(secret) = value_secret(&self.granted, value) {
                        return Err(format!(
                            "the change of {key} writes the value of secret {secret:?} into `{field}` (secrets never leave the plugin)"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A failure the guest reported after one of its outbound requests failed, with the host's
/// view of that failure appended (the guest saw only a WASI error code).
fn with_transport(outcome: Outcome, transport: Option<String>, message_max: usize) -> Outcome {
    match (outcome, transport) {
        (Outcome::Failed { message }, Some(transport)) => Outcome::Failed {
            message: super::sandbox::truncate(
                format!("{message} (host: {transport})"),
                message_max,
            ),
        },
        (outcome, _) => outcome,
    }
}

/// The name of a granted secret that `value` holds, if any.
fn value_secret<'a>(granted: &'a Granted, value: &Value) -> Option<&'a str> {
    match value {
        Value::Str(s) | Value::Ref(s) | Value::Json(s) => granted.secret_in(s),
        Value::Refs(keys) => keys.iter().find_map(|k| granted.secret_in(k)),
        Value::Bytes(b) => granted.secret_in(&String::from_utf8_lossy(b)),
        Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => None,
    }
}

/// An [`Actuator`] and an [`AsyncActuator`] running in a WASM component
/// (`world actuator-plugin`).
///
/// Every failure of the plugin (trap, panic, timeout, memory or table limit, malformed or
/// oversized result, a write to a declarative field) becomes [`Outcome::Failed`] with a
/// message naming the plugin, the object and the cause; nothing escapes to the engine (P1).
/// Cloning is cheap and shares the compiled component and its idle instances, so one load
/// can serve several models.
///
/// Two ways to call it, with the same grant, limits, failure causes and messages:
/// - [`Actuator`] (the executor, `Registry::with_actuator`): the call runs on the calling
///   thread; a request to the backend blocks it until the answer comes. A plugin granted
///   outbound HTTP has its requests served on that thread as well, by the thread's own
///   runtime, with keep-alive connections of the thread's own (no hand-off to another
///   thread per request).
/// - [`AsyncActuator`] (the runtime, `Registry::with_async`): the call runs on a fiber
///   from the plugin's pool of instances, at most [`Limits::calls_in_flight_max`] at once;
///   while the guest waits on outbound HTTP its thread runs other calls, so hundreds of
///   calls can be in flight on two threads. The time limit counts the guest's running
///   time, and the call stops once its context's cancel token is set. The futures must
///   run inside a tokio runtime (the requests are tokio tasks).
///
/// [`Limits::calls_in_flight_max`]: super::Limits::calls_in_flight_max
#[derive(Clone)]
pub struct WasmActuator {
    plugin: Arc<Plugin<ActuatorWorld>>,
    pool: Arc<AsyncPool>,
}

impl std::fmt::Debug for WasmActuator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmActuator")
            .field("name", &&*self.plugin.name)
            .finish()
    }
}

impl WasmActuator {
    pub(crate) fn new(
        plugin: Plugin<ActuatorWorld>,
        pre: ActuatorPluginPre<super::sandbox::HostState>,
    ) -> WasmActuator {
        let plugin = Arc::new(plugin);
        WasmActuator {
            pool: Arc::new(AsyncPool::new(plugin.clone(), pre)),
            plugin,
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.plugin.name
    }

    /// Counters of the calls on the plugin's pool of instances (the asynchronous calls,
    /// [`AsyncActuator`], and the synchronous calls of a plugin granted outbound HTTP, which
    /// run there too): calls, instances created, calls in flight now and at most so far,
    /// idle instances.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Counters of the plugin's keep-alive HTTP connections (synchronous and asynchronous
    /// calls share them); all zero with `HostConfig::http_keep_alive` off.
    pub fn http_stats(&self) -> HttpPoolStats {
        self.plugin
            .http_pool
            .as_ref()
            .map_or_else(HttpPoolStats::default, HttpPool::stats)
    }

    fn act(&self, object: &ObjectView<'_>, op: Op) -> Outcome {
        if self.plugin.io_on_caller && local_io::available() {
            // Outbound HTTP served on this thread (`local_io.rs`), wall-time limit as below.
            let call = self
                .pool
                .call(object.key(), op, object, None, CallTime::Wall);
            let result = local_io::block_on(call).and_then(|r| r);
            return settle(&self.plugin, object, op, result);
        }
        let result = self.plugin.call_noted(object.key(), |b, store| {
            let input = refill(store.data_mut(), object);
            let actuator = b.syncore_plugin_actuator();
            let result = match op {
                Op::Sync => actuator.call_sync(&mut *store, &input),
                Op::Delete => actuator.call_delete(&mut *store, &input),
            };
            store.data_mut().input = Some(input);
            result
        });
        settle(&self.plugin, object, op, result)
    }

    fn act_async(&self, cx: ActuationContext, object: OwnedView, op: Op) -> BoxFuture<Outcome> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let result = pool
                .call(
                    object.key(),
                    op,
                    &object.as_view(),
                    Some(&cx.cancel),
                    CallTime::Running,
                )
                .await;
            settle(&pool.plugin, &object.as_view(), op, result)
        })
    }
}

/// The WIT input for `object`: the instance's previous input refilled in place, or a new
/// one. The caller puts it back in `state.input` after the call.
pub(crate) fn refill(state: &mut HostState, object: &ObjectView<'_>) -> wit::ObjectView {
    match state.input.take() {
        Some(mut input) => {
            convert::view_into_wit(object, &mut input);
            input
        }
        None => convert::view_to_wit(object),
    }
}

/// The outcome of a call (synchronous or not): the guest's, checked (R9, result limits,
/// secrets), or `Failed` naming the plugin, the operation, the object and the cause.
fn settle(
    plugin: &Plugin<ActuatorWorld>,
    object: &ObjectView<'_>,
    op: Op,
    result: Result<(wit::Outcome, Option<String>), String>,
) -> Outcome {
    let message_max = plugin.limits.message_bytes_max;
    match result
        .and_then(|(o, transport)| {
            let outcome = convert::outcome_from_wit(object, o, &mut plugin.budget(), message_max)?;
            Ok(with_transport(outcome, transport, message_max))
        })
        .and_then(|o| plugin.hide_secrets(o))
    {
        Ok(outcome) => outcome,
        Err(cause) => Outcome::failed(format!(
            "plugin {}: {} of {} ({}) failed: {cause}",
            plugin.name,
            op.name(),
            object.key(),
            object.model()
        )),
    }
}

impl Actuator for WasmActuator {
    fn sync(&self, object: &ObjectView<'_>) -> Outcome {
        self.act(object, Op::Sync)
    }

    fn delete(&self, object: &ObjectView<'_>) -> Outcome {
        self.act(object, Op::Delete)
    }
}

impl AsyncActuator for WasmActuator {
    fn sync(&self, cx: ActuationContext, object: OwnedView) -> BoxFuture<Outcome> {
        self.act_async(cx, object, Op::Sync)
    }

    fn delete(&self, cx: ActuationContext, object: OwnedView) -> BoxFuture<Outcome> {
        self.act_async(cx, object, Op::Delete)
    }
}

/// A [`Policy`] running in a WASM component (`world policy-plugin`).
///
/// The plugin gets the changed object and its live referrers (key and model) from the staged
/// state. Its own `Err`, and any failure of the call, refuse the change set with a message
/// naming the plugin, the object and the cause (R10); the engine is unchanged.
#[derive(Clone)]
pub struct WasmPolicy {
    plugin: Arc<Plugin<PolicyWorld>>,
}

impl std::fmt::Debug for WasmPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmPolicy")
            .field("name", &&*self.plugin.name)
            .finish()
    }
}

impl WasmPolicy {
    pub(crate) fn new(plugin: Plugin<PolicyWorld>) -> WasmPolicy {
        WasmPolicy {
            plugin: Arc::new(plugin),
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.plugin.name
    }
}

impl Policy for WasmPolicy {
    fn on_change(
        &self,
        input: &PolicyInput<'_>,
        state: &dyn StateView,
    ) -> Result<Vec<Change>, String> {
        let arg = convert::policy_input_to_wit(input, state);
        let name = &self.plugin.name;
        match self.plugin.call(input.key, |b, store| {
            b.syncore_plugin_policy().call_on_change(store, &arg)
        }) {
            Ok(Ok(changes)) => convert::changes_from_wit(changes, &mut self.plugin.budget())
                .and_then(|changes| {
                    self.plugin.changes_without_secrets(&changes)?;
                    Ok(changes)
                })
                .map_err(|cause| {
                    format!(
                        "policy plugin {name} failed on {} ({}): {cause}",
                        input.key, input.model
                    )
                }),
            Ok(Err(message)) => {
                let message = super::sandbox::truncate(
                    self.plugin.granted.redact(message),
                    self.plugin.limits.message_bytes_max,
                );
                Err(format!(
                    "policy plugin {name} refused the change of {} ({}): {message}",
                    input.key, input.model
                ))
            }
            Err(cause) => Err(format!(
                "policy plugin {name} failed on {} ({}): {cause}",
                input.key, input.model
            )),
        }
    }
}

/// A [`Watcher`] running in a WASM component (`world watcher-plugin`). Its errors, and any
/// failure of the call, are returned as `Err` (the engine counts them, R18).
#[derive(Clone)]
pub struct WasmWatcher {
    plugin: Arc<Plugin<WatcherWorld>>,
}

impl std::fmt::Debug for WasmWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmWatcher")
            .field("name", &&*self.plugin.name)
            .finish()
    }
}

impl WasmWatcher {
    pub(crate) fn new(plugin: Plugin<WatcherWorld>) -> WasmWatcher {
        WasmWatcher {
            plugin: Arc::new(plugin),
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.plugin.name
    }
}

impl Watcher for WasmWatcher {
    fn notify(&self, event: &WatchEvent<'_>) -> Result<(), String> {
        let Some(arg) = convert::event_to_wit(event) else {
            return Ok(());
        };
        let name = &self.plugin.name;
        match self.plugin.call(event.key, |b, store| {
            b.syncore_plugin_watcher().call_notify(store, &arg)
        }) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => {
                let message = super::sandbox::truncate(
                    self.plugin.granted.redact(message),
                    self.plugin.limits.message_bytes_max,
                );
                Err(format!(
                    "watcher plugin {name} refused {} ({}): {message}",
                    event.key, event.model
                ))
            }
            Err(cause) => Err(format!(
                "watcher plugin {name} failed on {} ({}): {cause}",
                event.key, event.model
            )),
        }
    }
}
