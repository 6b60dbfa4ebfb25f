//! The CORD-like example's model policy for `Network`: every Network has at least one Port.
//!
//! When a live network has no `Port` referring to it, the policy creates the Port
//! `<network-key>-port` with `network` = the network's key. It creates nothing when a port
//! already exists (one the user made counts), so applying the same change twice is a no-op.

use syncore_plugin_sdk::{export_policy, Change, Policy, PolicyInput, Value};

/// "Every Network has at least one Port."
struct NetworkHasPort;

impl Policy for NetworkHasPort {
    fn on_change(network: &PolicyInput) -> Result<Vec<Change>, String> {
        if network.deleted || network.referrers_of("Port").next().is_some() {
            return Ok(vec![]);
        }
        let port = format!("{}-port", network.key);
        Ok(vec![Change::upsert(
            port,
            "Port",
            [("network", Value::reference(network.key.as_str()))],
        )])
    }
}

export_policy!(NetworkHasPort);
