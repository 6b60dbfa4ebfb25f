//! [`Actuators`]: the registry of native actuators, one per model, checked against a
//! schema once (R17).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::actuator::Actuator;
use crate::exec::ExecError;
use crate::schema::{ModelKind, Schema};

/// The actuators of a schema's models: model name -> actuator.
///
/// Cheap to clone (actuators are shared behind `Arc`). [`Actuators::check`] (called by
/// [`crate::Executor::new`]) refuses an actuated model without an actuator, listing every
/// such model (R17), and an actuator for a model that is not actuated or not in the schema.
///
/// # Examples
/// ```
/// use syncore::{Actuator, Actuators, ObjectView, Outcome, Schema};
/// struct Noop;
/// impl Actuator for Noop {
///     fn sync(&self, _: &ObjectView<'_>) -> Outcome { Outcome::ok() }
/// }
/// let schema = Schema::from_json(r#"{"models": [{"name": "Site"}, {"name": "Slice"}]}"#)?;
/// let err = Actuators::new().with("Site", Noop).check(&schema).unwrap_err();
/// assert_eq!(err.to_string(), "actuated models without an actuator: Slice");
/// assert!(Actuators::new().with("Site", Noop).with("Slice", Noop).check(&schema).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct Actuators {
    by_model: BTreeMap<String, Arc<dyn Actuator>>,
}

impl std::fmt::Debug for Actuators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_model.keys()).finish()
    }
}

impl Actuators {
    /// An empty registry.
    pub fn new() -> Actuators {
        Actuators::default()
    }

    /// Registers `actuator` for `model` (builder style), replacing any previous one.
    pub fn with(mut self, model: impl Into<String>, actuator: impl Actuator + 'static) -> Self {
        self.insert(model, Arc::new(actuator));
        self
    }

    /// Registers a shared `actuator` for `model`; returns the one it replaces.
    pub fn insert(
        &mut self,
        model: impl Into<String>,
        actuator: Arc<dyn Actuator>,
    ) -> Option<Arc<dyn Actuator>> {
        self.by_model.insert(model.into(), actuator)
    }

    /// Removes and returns the actuator of `model`.
    pub fn remove(&mut self, model: &str) -> Option<Arc<dyn Actuator>> {
        self.by_model.remove(model)
    }

    /// The actuator of `model`.
    pub fn get(&self, model: &str) -> Option<&Arc<dyn Actuator>> {
        self.by_model.get(model)
    }

    /// The models with an actuator, sorted.
    pub fn models(&self) -> impl Iterator<Item = &str> + '_ {
        self.by_model.keys().map(String::as_str)
    }

    /// Number of registered actuators.
    pub fn len(&self) -> usize {
        self.by_model.len()
    }

    /// Whether none is registered.
    pub fn is_empty(&self) -> bool {
        self.by_model.is_empty()
    }

    /// Checks the registry against `schema` (R17).
    ///
    /// # Errors
    /// [`ExecError::UnknownModel`] for an actuator of a model the schema lacks,
    /// [`ExecError::NotActuated`] for one of an external or passive model, and
    /// [`ExecError::MissingActuators`] listing every actuated model without an actuator.
    pub fn check(&self, schema: &Schema) -> Result<(), ExecError> {
        for model in self.by_model.keys() {
            let Some(id) = schema.model_id(model) else {
                return Err(ExecError::UnknownModel {
                    model: model.clone(),
                    what: "actuator",
                });
            };
            let kind = schema.model(id).kind;
            if kind != ModelKind::Actuated {
                return Err(ExecError::NotActuated {
                    model: model.clone(),
                    kind,
                });
            }
        }
        let mut missing: Vec<String> = schema
            .models()
            .iter()
            .filter(|m| m.kind == ModelKind::Actuated && !self.by_model.contains_key(&m.name))
            .map(|m| m.name.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort();
        Err(ExecError::MissingActuators { models: missing })
    }

    /// The actuators by model id, for `schema` (absent ones `None`).
    pub(crate) fn resolve(&self, schema: &Schema) -> Vec<Option<Arc<dyn Actuator>>> {
        schema
            .models()
            .iter()
            .map(|m| self.by_model.get(&m.name).cloned())
            .collect()
    }
}
