//! Write syncore actuators, policies and watchers in Rust, as WASM components.
//!
//! A plugin is a `cdylib` crate built for `wasm32-wasip2` (rustc emits a component directly).
//! It implements one of the traits [`Actuator`], [`Policy`] or [`Watcher`] on a unit type
//! and exports it with [`export_actuator!`], [`export_policy!`] or [`export_watcher!`]. The
//! host (`syncore::wasm`, engine feature `wasm`) loads the component, checks that it was built
//! against a compatible `syncore:plugin` version, and calls it once per task with a fresh copy
//! of the data: a plugin sees only its arguments and returns only its result.
//!
//! # A complete actuator
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "site-actuator"
//! version = "0.1.0"
//! edition = "2021"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! syncore-plugin-sdk = { path = "../plugin-sdk" }
//!
//! [profile.release]
//! panic = "abort"
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! use syncore_plugin_sdk::{export_actuator, log, Actuator, ObjectView, Outcome};
//!
//! /// Creates sites: the backend id is derived from the key, so a retry gives the same id.
//! struct Sites;
//!
//! impl Actuator for Sites {
//!     fn sync(site: &ObjectView) -> Outcome {
//!         let Some(name) = site.field_str("name") else {
//!             return Outcome::failed("a site needs a name");
//!         };
//!         log::info(&format!("creating site {name}"));
//!         Outcome::ok_with([("id", format!("site-{}", site.key))])
//!     }
//!
//!     fn delete(site: &ObjectView) -> Outcome {
//!         log::info(&format!("removing site {}", site.key));
//!         Outcome::ok()
//!     }
//! }
//!
//! export_actuator!(Sites);
//! # fn main() {
//! #     use syncore_plugin_sdk::{fields, Value};
//! #     let view = ObjectView { key: "s1".into(), model: "Site".into(), version: 1,
//! #         fields: fields([("name", Value::from("lab"))]), feedback: vec![], dependencies: vec![] };
//! #     assert_eq!(<Sites as Actuator>::sync(&view), Outcome::ok_with([("id", "site-s1")]));
//! # }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (once:
//! `rustup target add wasm32-wasip2`); the component is
//! `target/wasm32-wasip2/release/site_actuator.wasm`. On the host:
//!
//! ```text
//! use syncore::wasm::{HostConfig, WasmHost};
//! let host = WasmHost::new(HostConfig::default())?;
//! let sites = host.load_actuator("sites", "site_actuator.wasm")?;
//! let actuators = syncore::Actuators::new().with("Site", sites); // for an Executor or Runner
//! ```
//!
//! # Policies and watchers
//!
//! ```
//! use syncore_plugin_sdk::{export_policy, Change, Policy, PolicyInput, Value};
//!
//! /// Every Network has at least one Port.
//! struct NetworkHasPort;
//!
//! impl Policy for NetworkHasPort {
//!     fn on_change(network: &PolicyInput) -> Result<Vec<Change>, String> {
//!         if network.deleted || network.referrers_of("Port").next().is_some() {
//!             return Ok(vec![]);
//!         }
//!         let port = format!("{}-port", network.key);
//!         Ok(vec![Change::upsert(port, "Port", [("network", Value::reference(&network.key))])])
//!     }
//! }
//!
//! export_policy!(NetworkHasPort);
//! ```
//!
//! A watcher implements [`Watcher::notify`] and is exported with [`export_watcher!`]. A
//! component exports exactly one kind.
//!
//! # What a plugin may do
//!
//! - Read its arguments, compute, and [`log`] lines (they land in the run's trace).
//! - What the embedder granted it, and nothing else: outbound [`http`] to granted origins,
//!   [`config`] values and secrets, the real clocks, real randomness, granted directories
//!   (`std::fs` under their guest paths). Without a grant there are no files, environment or
//!   network, the clocks read zero and randomness is a fixed sequence. Calls are limited in
//!   time, memory and table size; a plugin that exceeds a limit, traps, panics or is refused
//!   a capability fails only the object it was called for, with a message naming the cause
//!   (a panic message is quoted).
//! - Actuators return feedback fields only; naming a declarative field fails the call.
//! - Keep no state between calls: the host may run each call in a fresh instance, or reuse
//!   instances in any order.

#![deny(missing_docs)]

pub mod bindings;
pub mod config;
mod data;
pub mod http;

pub use bindings::actuator::syncore::plugin::host::Level;
pub use bindings::actuator::syncore::plugin::types::{
    Change, Dependency, Field, ObjectView, Outcome, PolicyInput, Referrer, Upsert, Value,
    WatchEvent, WatchKind,
};
pub use data::fields;

/// Brings objects of one model in sync with a backend (exported with [`export_actuator!`]).
///
/// The engine may call `sync` again for the same version (retries, restarts): be idempotent,
/// and derive backend ids from the key rather than from a counter.
pub trait Actuator {
    /// Brings the backend to `object`'s declarative state.
    fn sync(object: &ObjectView) -> Outcome;

    /// Removes `object` from the backend. Default: nothing to remove, `ok`.
    fn delete(object: &ObjectView) -> Outcome {
        let _ = object;
        Outcome::ok()
    }
}

/// A model policy: returns the changes that keep a data relationship (exported with
/// [`export_policy!`]). An `Err` refuses the whole change set.
pub trait Policy {
    /// Called once per changed object of the policy's model in a round.
    fn on_change(input: &PolicyInput) -> Result<Vec<Change>, String>;
}

/// Told about changes of watched models (exported with [`export_watcher!`]). An `Err` is
/// counted, never retried.
pub trait Watcher {
    /// Handles one change.
    fn notify(event: &WatchEvent) -> Result<(), String>;
}

/// Log lines for the run's trace, tagged by the host with the plugin and the object.
///
/// Compiled for a native target (a plugin's own unit tests), the lines go to stderr instead.
pub mod log {
    pub use crate::bindings::actuator::syncore::plugin::host::Level;

    /// Writes one line at `level`.
    pub fn line(level: Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        crate::bindings::actuator::syncore::plugin::host::log(level, message);
        #[cfg(not(target_arch = "wasm32"))]
        eprintln!("[{level:?}] {message}");
    }

    /// Writes one `debug` line.
    pub fn debug(message: &str) {
        line(Level::Debug, message);
    }

    /// Writes one `info` line.
    pub fn info(message: &str) {
        line(Level::Info, message);
    }

    /// Writes one `warn` line.
    pub fn warn(message: &str) {
        line(Level::Warn, message);
    }

    /// Writes one `error` line.
    pub fn error(message: &str) {
        line(Level::Error, message);
    }
}

/// Exports a type implementing [`Actuator`] as this component's `syncore:plugin/actuator`.
///
/// Call it once, at the crate root of a `cdylib`, in place of wit-bindgen's `export!`.
#[macro_export]
macro_rules! export_actuator {
    ($ty:ty) => {
        const _: () = {
            struct __SyncoreActuator;
            impl $crate::bindings::actuator::exports::syncore::plugin::actuator::Guest
                for __SyncoreActuator
            {
                fn sync(object: $crate::ObjectView) -> $crate::Outcome {
                    <$ty as $crate::Actuator>::sync(&object)
                }
                fn delete(object: $crate::ObjectView) -> $crate::Outcome {
                    <$ty as $crate::Actuator>::delete(&object)
                }
            }
            $crate::bindings::actuator::__export_actuator_plugin!(
                __SyncoreActuator with_types_in $crate::bindings::actuator
            );
        };
    };
}

/// Exports a type implementing [`Policy`] as this component's `syncore:plugin/policy`.
#[macro_export]
macro_rules! export_policy {
    ($ty:ty) => {
        const _: () = {
            struct __SyncorePolicy;
            impl $crate::bindings::policy::exports::syncore::plugin::policy::Guest for __SyncorePolicy {
                fn on_change(
                    input: $crate::PolicyInput,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::Change>, ::std::string::String> {
                    <$ty as $crate::Policy>::on_change(&input)
                }
            }
            $crate::bindings::policy::__export_policy_plugin!(
                __SyncorePolicy with_types_in $crate::bindings::policy
            );
        };
    };
}

/// Exports a type implementing [`Watcher`] as this component's `syncore:plugin/watcher`.
#[macro_export]
macro_rules! export_watcher {
    ($ty:ty) => {
        const _: () = {
            struct __SyncoreWatcher;
            impl $crate::bindings::watcher::exports::syncore::plugin::watcher::Guest
                for __SyncoreWatcher
            {
                fn notify(
                    event: $crate::WatchEvent,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    <$ty as $crate::Watcher>::notify(&event)
                }
            }
            $crate::bindings::watcher::__export_watcher_plugin!(
                __SyncoreWatcher with_types_in $crate::bindings::watcher
            );
        };
    };
}
