//! The raw bindings wit-bindgen generates for the three plugin worlds of
//! `syncore:plugin@0.2.0` (`wit/` at the repository root).
//!
//! The actuator world generates the shared `types` and `host` interfaces; the policy and
//! watcher worlds reuse them (`with`), so one [`Value`](crate::Value) type serves all three.
//! Each world's export macro carries that world's full type information, so a component only
//! claims the exports of the one world whose `export_*!` macro it calls.
//!
//! Plugin authors do not need this module: the crate root re-exports the types, and the
//! [`export_actuator!`](crate::export_actuator), [`export_policy!`](crate::export_policy)
//! and [`export_watcher!`](crate::export_watcher) macros wrap the generated ones.

/// Bindings for `world actuator-plugin` (and the shared `types` and `host` interfaces).
pub mod actuator {
    #![allow(missing_docs, clippy::all)]
    wit_bindgen::generate!({
        path: "../wit",
        world: "actuator-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_actuator_plugin",
        default_bindings_module: "::syncore_plugin_sdk::bindings::actuator",
        additional_derives: [PartialEq],
    });
}

/// Bindings for `world policy-plugin`.
pub mod policy {
    #![allow(missing_docs, clippy::all)]
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_policy_plugin",
        default_bindings_module: "::syncore_plugin_sdk::bindings::policy",
        with: {
            "syncore:plugin/types@0.2.0": crate::bindings::actuator::syncore::plugin::types,
            "syncore:plugin/host@0.2.0": crate::bindings::actuator::syncore::plugin::host,
            "syncore:plugin/config@0.2.0": crate::bindings::actuator::syncore::plugin::config,
        },
    });
}

/// Bindings for `world watcher-plugin`.
pub mod watcher {
    #![allow(missing_docs, clippy::all)]
    wit_bindgen::generate!({
        path: "../wit",
        world: "watcher-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_watcher_plugin",
        default_bindings_module: "::syncore_plugin_sdk::bindings::watcher",
        with: {
            "syncore:plugin/types@0.2.0": crate::bindings::actuator::syncore::plugin::types,
            "syncore:plugin/host@0.2.0": crate::bindings::actuator::syncore::plugin::host,
            "syncore:plugin/config@0.2.0": crate::bindings::actuator::syncore::plugin::config,
        },
    });
}
