//! What actuators see and return: [`ObjectView`], [`Outcome`], and the [`Actuator`] trait.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::ObjectId;
use crate::schema::Schema;
use crate::store::Store;
use crate::value::Value;

/// What an actuation ended with.
///
/// Outcomes are data: a failing actuator returns `Failed`, it never panics through the
/// engine (the executor turns a panic into `Failed` as well).
///
/// An `Ok` may ask to be run again after a delay ([`Outcome::requeue_after`]): the object
/// is synced (its dependents go ahead) and the scheduler re-actuates it once the delay has
/// passed, as a per-object re-sync (R9).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The backend matches the declarative state; `feedback` fields to record (R9: feedback
    /// fields only).
    Ok {
        /// Feedback field writes, by name.
        #[serde(default)]
        feedback: BTreeMap<String, Value>,
        /// Run the actuator again this many milliseconds after the completion (`None`: only
        /// when something changes or the model's `resync_ms` comes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requeue_after: Option<u64>,
    },
    /// The actuation failed; the object backs off (R5) and holds its dependents (R3).
    Failed {
        /// Why, for the operator.
        message: String,
    },
    /// Not now, try later without counting a failure (R6).
    Deferred {
        /// Why, for the operator.
        message: String,
    },
}

impl Outcome {
    /// `Ok` with no feedback.
    pub fn ok() -> Outcome {
        Outcome::Ok {
            feedback: BTreeMap::new(),
            requeue_after: None,
        }
    }

    /// `Ok` with feedback fields.
    pub fn ok_with<K: Into<String>, V: Into<Value>>(
        feedback: impl IntoIterator<Item = (K, V)>,
    ) -> Outcome {
        Outcome::Ok {
            feedback: feedback
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            requeue_after: None,
        }
    }

    /// `Failed` with a message.
    pub fn failed(message: impl Into<String>) -> Outcome {
        Outcome::Failed {
            message: message.into(),
        }
    }

    /// `Deferred` with a message.
    pub fn deferred(message: impl Into<String>) -> Outcome {
        Outcome::Deferred {
            message: message.into(),
        }
    }

    /// Whether this is `Ok`.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok { .. })
    }

    /// Asks for the actuator to run again `ms` milliseconds after this completion (an `Ok`
    /// only; other outcomes are retried by backoff and are returned unchanged).
    ///
    /// ```
    /// use syncore::Outcome;
    /// let o = Outcome::ok().requeue_after(5_000);
    /// assert_eq!(o.requeue_delay(), Some(5_000));
    /// assert_eq!(Outcome::failed("x").requeue_after(1).requeue_delay(), None);
    /// ```
    pub fn requeue_after(mut self, ms: u64) -> Outcome {
        if let Outcome::Ok { requeue_after, .. } = &mut self {
            *requeue_after = Some(ms);
        }
        self
    }

    /// The re-run delay an `Ok` asked for, if any.
    pub fn requeue_delay(&self) -> Option<u64> {
        match self {
            Outcome::Ok { requeue_after, .. } => *requeue_after,
            _ => None,
        }
    }
}

/// Whether a task syncs an object or deletes it.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Bring the backend to the object's declarative state.
    Sync,
    /// Remove the object from the backend.
    Delete,
}

/// A read-only view of one object, as an actuator or watcher sees it: declarative fields,
/// feedback fields, and the objects it links to (with their feedback).
///
/// Borrowing the engine, a view costs nothing to make. A view can also borrow an
/// [`crate::OwnedView`] (a copy taken at dispatch, [`crate::OwnedView::as_view`]), so that
/// every [`Actuator`] also runs on the real-time runtime while the engine goes on.
#[derive(Clone, Copy)]
pub struct ObjectView<'a>(Repr<'a>);

#[derive(Clone, Copy)]
enum Repr<'a> {
    Store {
        schema: &'a Schema,
        store: &'a Store,
        id: ObjectId,
    },
    Owned(&'a crate::actuation::OwnedView),
}

/// One of two iterators (the two representations of a view).
enum Either<A, B> {
    A(A),
    B(B),
}

impl<T, A: Iterator<Item = T>, B: Iterator<Item = T>> Iterator for Either<A, B> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match self {
            Either::A(a) => a.next(),
            Either::B(b) => b.next(),
        }
    }
}

impl<'a> ObjectView<'a> {
    /// A view of object `id` in `store`.
    pub(crate) fn in_store(schema: &'a Schema, store: &'a Store, id: ObjectId) -> Self {
        ObjectView(Repr::Store { schema, store, id })
    }

    /// A view of an owned copy.
    pub(crate) fn of_owned(view: &'a crate::actuation::OwnedView) -> Self {
        ObjectView(Repr::Owned(view))
    }

    /// The object's key.
    pub fn key(&self) -> &'a str {
        match self.0 {
            Repr::Store { store, id, .. } => store.key(id),
            Repr::Owned(o) => o.key(),
        }
    }

    /// The object's dense id.
    pub fn id(&self) -> ObjectId {
        match self.0 {
            Repr::Store { id, .. } => id,
            Repr::Owned(o) => o.id(),
        }
    }

    /// The object's model name.
    pub fn model(&self) -> &'a str {
        match self.0 {
            Repr::Store { schema, store, id } => &schema.model(store.model(id)).name,
            Repr::Owned(o) => o.model(),
        }
    }

    /// The object's declarative version.
    pub fn version(&self) -> u64 {
        match self.0 {
            Repr::Store { store, id, .. } => store.version(id),
            Repr::Owned(o) => o.version(),
        }
    }

    /// A declarative field by name (`None` if the model has no such field).
    pub fn field(&self, name: &str) -> Option<&'a Value> {
        match self.0 {
            Repr::Store { schema, store, id } => match schema.model(store.model(id)).slot(name)? {
                crate::schema::FieldSlot::Declarative(i) => store.fields(id).get(i as usize),
                crate::schema::FieldSlot::Feedback(_) => None,
            },
            Repr::Owned(o) => o.field(name),
        }
    }

    /// A feedback field by name (`None` if the model has no such feedback field).
    pub fn feedback(&self, name: &str) -> Option<&'a Value> {
        match self.0 {
            Repr::Store { schema, store, id } => match schema.model(store.model(id)).slot(name)? {
                crate::schema::FieldSlot::Feedback(i) => store.feedback(id).get(i as usize),
                crate::schema::FieldSlot::Declarative(_) => None,
            },
            Repr::Owned(o) => o.feedback(name),
        }
    }

    /// Declarative fields as (name, value), in schema order.
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        match self.0 {
            Repr::Store { schema, store, id } => Either::A(
                schema
                    .model(store.model(id))
                    .fields
                    .iter()
                    .map(|f| f.name.as_str())
                    .zip(store.fields(id).iter()),
            ),
            Repr::Owned(o) => Either::B(o.fields()),
        }
    }

    /// Feedback fields as (name, value), in schema order.
    pub fn feedbacks(&self) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        match self.0 {
            Repr::Store { schema, store, id } => Either::A(
                schema
                    .model(store.model(id))
                    .feedback
                    .iter()
                    .map(|f| f.name.as_str())
                    .zip(store.feedback(id).iter()),
            ),
            Repr::Owned(o) => Either::B(o.feedbacks()),
        }
    }

    /// The objects this one links to (its direct dependencies), in id order. (A view of
    /// an owned copy lists the dependencies copied with it; theirs are not copied.)
    pub fn dependencies(&self) -> impl Iterator<Item = ObjectView<'a>> + 'a {
        match self.0 {
            Repr::Store { schema, store, id } => Either::A(
                store
                    .deps(id)
                    .iter()
                    .map(move |&d| ObjectView::in_store(schema, store, crate::graph::target(d))),
            ),
            Repr::Owned(o) => Either::B(o.dependencies().iter().map(ObjectView::of_owned)),
        }
    }
}

impl std::fmt::Debug for ObjectView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectView")
            .field("key", &self.key())
            .field("model", &self.model())
            .field("version", &self.version())
            .finish()
    }
}

/// Brings objects of one model in sync with the backend.
///
/// Actuators are idempotent: the engine may run `sync` again for the same version (retry,
/// restart). They read declarative state and return feedback only (R9).
///
/// # Examples
/// ```
/// use syncore::{Actuator, ObjectView, Outcome};
/// struct Echo;
/// impl Actuator for Echo {
///     fn sync(&self, object: &ObjectView<'_>) -> Outcome {
///         Outcome::ok_with([("seen", object.version() as i64)])
///     }
/// }
/// ```
pub trait Actuator: Send + Sync {
    /// Brings the backend to `object`'s declarative state.
    fn sync(&self, object: &ObjectView<'_>) -> Outcome;

    /// Removes `object` from the backend. Default: nothing to remove, `Ok`.
    fn delete(&self, object: &ObjectView<'_>) -> Outcome {
        let _ = object;
        Outcome::ok()
    }
}
