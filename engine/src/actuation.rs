//! The actuation contract shared by every driver: what an actuation is given
//! ([`ActuationContext`], an [`OwnedView`] of its object) and the asynchronous actuator
//! trait ([`AsyncActuator`]).
//!
//! This module is part of the pure core: it names no runtime (no tokio type appears in
//! it). A future returned by [`AsyncActuator::sync`] is driven by whichever driver holds
//! it: the real-time runtime spawns it on tokio, a test may poll it by hand.
//!
//! Views are *owned*: an actuation runs while the engine goes on accepting change sets and
//! completions, so it cannot borrow the engine. An [`OwnedView`] is a copy, taken when the
//! task is dispatched, of everything an [`ObjectView`] offers: the object's key, model,
//! version, declarative and feedback fields, and the same of each object it links to.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::actuator::{ObjectView, Outcome, TaskKind};
use crate::id::{ObjectId, Time};
use crate::value::Value;

/// A boxed, sendable future: what [`AsyncActuator`] methods return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A shared flag that asks work in progress to stop. Clones share the flag.
///
/// Cancellation is cooperative: an actuator polls [`CancelToken::is_cancelled`] (or the
/// driver stops polling its future). It is set when an actuation is overdue (its model's
/// timeout), when the driver shuts down, and when a batch run is cancelled.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancels: work using this token should stop (a run starts no further task).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called (and not [`CancelToken::reset`] since).
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Clears the flag, so the token can serve the next run.
    pub fn reset(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// What an actuation is told besides its object.
#[derive(Clone, Debug)]
pub struct ActuationContext {
    /// 1 for the first try of this object's current work, 2 for the first retry, and so
    /// on (consecutive failures + 1; a deferral does not count).
    pub attempt: u32,
    /// The time the actuation was dispatched (the driver's clock, in engine time).
    pub now: Time,
    /// When the actuation becomes overdue and is turned into a failure, if its model has a
    /// timeout.
    pub deadline: Option<Time>,
    /// Set when the actuation should stop: overdue, or the driver is shutting down.
    pub cancel: CancelToken,
}

impl ActuationContext {
    /// A context for a first attempt at `now`, with no deadline and a fresh token.
    pub fn new(now: Time) -> ActuationContext {
        ActuationContext {
            attempt: 1,
            now,
            deadline: None,
            cancel: CancelToken::new(),
        }
    }
}

/// An owned copy of one object as an actuator sees it: what [`ObjectView`] offers, without
/// borrowing the engine.
///
/// [`OwnedView::dependencies`] are views of the objects this one links to, with their
/// declarative fields and feedback as they were when the task was dispatched; they carry no
/// dependencies of their own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OwnedView {
    id: ObjectId,
    key: String,
    model: String,
    version: u64,
    kind: TaskKind,
    fields: Vec<(String, Value)>,
    feedback: Vec<(String, Value)>,
    dependencies: Vec<OwnedView>,
}

impl OwnedView {
    /// Copies `view` for a task of `kind`, its direct dependencies included.
    pub fn of(view: &ObjectView<'_>, kind: TaskKind) -> OwnedView {
        let mut owned = OwnedView::shallow(view, kind);
        owned.dependencies = view
            .dependencies()
            .map(|d| OwnedView::shallow(&d, TaskKind::Sync))
            .collect();
        owned
    }

    fn shallow(view: &ObjectView<'_>, kind: TaskKind) -> OwnedView {
        OwnedView {
            id: view.id(),
            key: view.key().to_string(),
            model: view.model().to_string(),
            version: view.version(),
            kind,
            fields: view
                .fields()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            feedback: view
                .feedbacks()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            dependencies: Vec::new(),
        }
    }

    /// A view built by hand (for tests of actuators): fields and feedback in the order
    /// given, no dependencies (add them with [`OwnedView::with_dependency`]).
    pub fn new(
        key: impl Into<String>,
        model: impl Into<String>,
        version: u64,
        kind: TaskKind,
        fields: impl IntoIterator<Item = (String, Value)>,
        feedback: impl IntoIterator<Item = (String, Value)>,
    ) -> OwnedView {
        OwnedView {
            id: ObjectId(u32::MAX),
            key: key.into(),
            model: model.into(),
            version,
            kind,
            fields: fields.into_iter().collect(),
            feedback: feedback.into_iter().collect(),
            dependencies: Vec::new(),
        }
    }

    /// Adds a dependency view (its own dependencies are dropped).
    pub fn with_dependency(mut self, mut dep: OwnedView) -> OwnedView {
        dep.dependencies.clear();
        self.dependencies.push(dep);
        self
    }

    /// The object's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The object's dense id when the view was taken (`ObjectId(u32::MAX)` for a view
    /// built by hand).
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// The object's model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The declarative version the actuation enacts.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether the actuation syncs or deletes the object.
    pub fn kind(&self) -> TaskKind {
        self.kind
    }

    /// A declarative field by name.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// A feedback field by name.
    pub fn feedback(&self, name: &str) -> Option<&Value> {
        self.feedback
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Declarative fields as (name, value), in schema order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Feedback fields as (name, value), in schema order.
    pub fn feedbacks(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.feedback.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The objects this one links to (its direct dependencies), in id order.
    pub fn dependencies(&self) -> &[OwnedView] {
        &self.dependencies
    }

    /// This copy as an [`ObjectView`], for an [`crate::Actuator`] (or anything else written
    /// against the borrowing view).
    pub fn as_view(&self) -> ObjectView<'_> {
        ObjectView::of_owned(self)
    }

    /// The dependency with `key`, if this object links to it.
    pub fn dependency(&self, key: &str) -> Option<&OwnedView> {
        self.dependencies.iter().find(|d| d.key == key)
    }
}

/// Brings objects of one model in sync with the backend, asynchronously: thousands of
/// I/O-bound actuations can be in flight on a few threads.
///
/// The same contract as [`crate::Actuator`]: idempotent (the engine may run `sync` again
/// for the same version), reads declarative state, returns feedback only (R9). The future
/// must be `Send + 'static`: it owns its [`OwnedView`] and context.
///
/// # Examples
/// ```
/// use syncore::{ActuationContext, AsyncActuator, BoxFuture, OwnedView, Outcome};
/// struct Echo;
/// impl AsyncActuator for Echo {
///     fn sync(&self, cx: ActuationContext, object: OwnedView) -> BoxFuture<Outcome> {
///         Box::pin(async move {
///             if cx.cancel.is_cancelled() {
///                 return Outcome::failed("cancelled");
///             }
///             Outcome::ok_with([("seen", object.version() as i64)])
///         })
///     }
/// }
/// ```
pub trait AsyncActuator: Send + Sync + 'static {
    /// Brings the backend to `object`'s declarative state.
    fn sync(&self, cx: ActuationContext, object: OwnedView) -> BoxFuture<Outcome>;

    /// Removes `object` from the backend. Default: nothing to remove, `Ok`.
    fn delete(&self, cx: ActuationContext, object: OwnedView) -> BoxFuture<Outcome> {
        let _ = (cx, object);
        Box::pin(std::future::ready(Outcome::ok()))
    }
}

impl<A: AsyncActuator + ?Sized> AsyncActuator for Arc<A> {
    fn sync(&self, cx: ActuationContext, object: OwnedView) -> BoxFuture<Outcome> {
        (**self).sync(cx, object)
    }

    fn delete(&self, cx: ActuationContext, object: OwnedView) -> BoxFuture<Outcome> {
        (**self).delete(cx, object)
    }
}
