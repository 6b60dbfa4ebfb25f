//! Model policies (R10) and watchers (R18): the traits embedders implement.
//!
//! A [`Policy`] reacts to declarative changes of its model inside `apply` and returns
//! further changes that join the same atomic change set. A [`Watcher`] is told about changes
//! of the models its model watches; it cannot change anything, is never retried, and its
//! failures are only counted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::actuator::ObjectView;
use crate::change::Change;
use crate::value::Value;

/// The object a policy is asked about, as it stands in the change set being applied.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyInput<'a> {
    /// The object's key.
    pub key: &'a str,
    /// The object's model.
    pub model: &'a str,
    /// Its declarative fields after the change (every field of the model, nulls included).
    pub fields: &'a BTreeMap<String, Value>,
    /// Whether the change deletes it.
    pub deleted: bool,
}

/// An object as the staged state shows it to a policy.
#[derive(Clone, Debug, PartialEq)]
pub struct StagedObject {
    /// The object's model.
    pub model: String,
    /// Declarative fields (every field of the model).
    pub fields: BTreeMap<String, Value>,
    /// Whether it is deleted by the change set or already being deleted.
    pub deleted: bool,
}

/// Read access to the state a change set would produce, for policies.
pub trait StateView {
    /// The object with `key`, as the change set leaves it.
    fn get(&self, key: &str) -> Option<StagedObject>;
    /// Keys of the live objects that reference `key`, sorted.
    fn referrers(&self, key: &str) -> Vec<String>;
}

/// A model policy: keeps data relationships, such as "every Network has a Port" (R10).
///
/// # Examples
/// ```
/// use syncore::{Change, Policy, PolicyInput, StateView};
/// struct NetworkHasPort;
/// impl Policy for NetworkHasPort {
///     fn on_change(&self, n: &PolicyInput<'_>, state: &dyn StateView) -> Result<Vec<Change>, String> {
///         if n.deleted || !state.referrers(n.key).is_empty() {
///             return Ok(vec![]);
///         }
///         Ok(vec![Change::upsert(format!("{}-port", n.key), "Port", [("network", n.key)])])
///     }
/// }
/// ```
pub trait Policy: Send + Sync {
    /// Called once per changed object of the policy's model in a round (in key order);
    /// returns the further changes. `Err` refuses the whole change set.
    fn on_change(
        &self,
        input: &PolicyInput<'_>,
        state: &dyn StateView,
    ) -> Result<Vec<Change>, String>;

    /// Whether objects this policy creates are owned by the object it was called on (R10,
    /// like Kubernetes owner references): an owned object is deleted with its owner, and
    /// when it is deleted alone the owner's policy runs again in the same change set, so
    /// that it can restore its invariant. Default: `true`.
    fn owns_created(&self) -> bool {
        true
    }
}

/// What changed about a watched object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchKind {
    /// Declarative fields changed (after `apply`).
    Declarative,
    /// Feedback fields changed (after `complete`).
    Feedback,
    /// Its delete was requested (after `apply`); it is still in the store until the
    /// delete completes.
    #[serde(rename = "delete_requested")]
    DeleteRequested,
    /// The object left the store: its delete completed (after `complete`), or it was a
    /// passive or external object swept once nothing referenced it (after `apply` or
    /// `complete`).
    Deleted,
}

/// One notification to a watcher (R18).
#[derive(Clone, Copy, Debug)]
pub struct WatchEvent<'a> {
    /// The watching model (whose watcher this is).
    pub watcher_model: &'a str,
    /// The changed object's key.
    pub key: &'a str,
    /// The changed object's model.
    pub model: &'a str,
    /// What changed.
    pub kind: WatchKind,
    /// Names of the changed fields (already filtered by the link's `into`).
    pub changed: &'a [String],
    /// The object as it is now (`None` once it left the store: [`WatchKind::Deleted`]).
    pub object: Option<ObjectView<'a>>,
}

/// A watcher: told about changes of the models its model watches (R18). No ordering with
/// actuation, no retries, no error propagation.
pub trait Watcher: Send + Sync {
    /// Handles one change. An `Err` is counted and dropped.
    fn notify(&self, event: &WatchEvent<'_>) -> Result<(), String>;
}
