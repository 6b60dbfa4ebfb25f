//! Which actuator runs each model in the runtime.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::pool::BlockingActuator;
use crate::actuation::{ActuationContext, AsyncActuator, OwnedView};
use crate::actuator::{Actuator, Outcome};
use crate::schema::{ModelKind, Schema};

/// An [`Actuator`] run as a [`BlockingActuator`].
struct Bridge(Arc<dyn Actuator>);

impl BlockingActuator for Bridge {
    fn sync(&self, _: ActuationContext, object: OwnedView) -> Outcome {
        self.0.sync(&object.as_view())
    }

    fn delete(&self, _: ActuationContext, object: OwnedView) -> Outcome {
        self.0.delete(&object.as_view())
    }
}

/// How one model's actuations run.
#[derive(Clone)]
pub(super) enum Kind {
    Async(Arc<dyn AsyncActuator>),
    Blocking(Arc<dyn BlockingActuator>),
}

/// Actuators by model name: asynchronous ones (on tokio) or blocking ones (on the pool).
#[derive(Clone, Default)]
pub struct Registry {
    by_model: BTreeMap<String, Kind>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_model.keys()).finish()
    }
}

/// A registry that does not fit the schema.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Actuated models without an actuator (R17), sorted.
    #[error("no actuator registered for actuated models: {}", models.join(", "))]
    MissingActuators {
        /// The models.
        models: Vec<String>,
    },
    /// An actuator for a model the schema lacks, or one that is not actuated.
    #[error("actuator registered for {model}, which is not an actuated model of the schema")]
    NotActuated {
        /// The model.
        model: String,
    },
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers an asynchronous actuator for `model`.
    pub fn with_async(mut self, model: impl Into<String>, a: impl AsyncActuator) -> Registry {
        self.by_model.insert(model.into(), Kind::Async(Arc::new(a)));
        self
    }

    /// Registers a shared asynchronous actuator for `model`.
    pub fn with_async_arc(
        mut self,
        model: impl Into<String>,
        a: Arc<dyn AsyncActuator>,
    ) -> Registry {
        self.by_model.insert(model.into(), Kind::Async(a));
        self
    }

    /// Registers a blocking actuator for `model` (run on the pool).
    pub fn with_blocking(mut self, model: impl Into<String>, a: impl BlockingActuator) -> Registry {
        self.by_model
            .insert(model.into(), Kind::Blocking(Arc::new(a)));
        self
    }

    /// Registers a shared blocking actuator for `model` (run on the pool).
    pub fn with_blocking_arc(
        mut self,
        model: impl Into<String>,
        a: Arc<dyn BlockingActuator>,
    ) -> Registry {
        self.by_model.insert(model.into(), Kind::Blocking(a));
        self
    }

    /// Registers an [`Actuator`] (the executor's blocking trait: native code, a WASM
    /// plugin) for `model`: it runs on the pool and sees the view copied at dispatch
    /// ([`crate::OwnedView::as_view`]); the context (deadline, cancellation) is not passed
    /// on, so an overdue call is abandoned by the timeout (S4).
    pub fn with_actuator(self, model: impl Into<String>, a: Arc<dyn Actuator>) -> Registry {
        self.with_blocking_arc(model, Arc::new(Bridge(a)))
    }

    /// Per model id, checked against `schema` (R17: every actuated model has one).
    pub(super) fn resolve(&self, schema: &Schema) -> Result<Vec<Option<Kind>>, RegistryError> {
        let mut out = vec![None; schema.models().len()];
        for (name, k) in &self.by_model {
            match schema.model_id(name) {
                Some(id) if schema.model(id).kind == ModelKind::Actuated => {
                    out[id.index()] = Some(k.clone());
                }
                _ => {
                    return Err(RegistryError::NotActuated {
                        model: name.clone(),
                    })
                }
            }
        }
        let missing: Vec<String> = schema
            .models()
            .iter()
            .enumerate()
            .filter(|(i, m)| m.kind == ModelKind::Actuated && out[*i].is_none())
            .map(|(_, m)| m.name.clone())
            .collect();
        if !missing.is_empty() {
            return Err(RegistryError::MissingActuators { models: missing });
        }
        Ok(out)
    }
}
