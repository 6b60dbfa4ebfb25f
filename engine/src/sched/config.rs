//! The scheduler's configuration: concurrency limits, priority classes, re-sync periods
//! and timeouts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::schema::Schema;

/// Scheduling settings of one model. Every option states its default.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode,
)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSched {
    /// Most actuations of this model in flight at once. Default: no limit of its own.
    pub limit: Option<u32>,
    /// Priority class: higher starts first. Default: 0.
    pub priority: i32,
    /// Re-actuate a synced object this long after its last successful sync (drift
    /// correction), plus seeded jitter. Default: never.
    pub resync_ms: Option<u64>,
    /// An actuation running longer than this fails with `timed out after <ms> ms`.
    /// Default: never.
    pub timeout_ms: Option<u64>,
}

/// Scheduler settings. Every option states its default; [`SchedConfig::default`] gives
/// them all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
#[serde(default, deny_unknown_fields)]
pub struct SchedConfig {
    /// Most actuations in flight at once, over all models. Default: 1,024.
    pub concurrency: u32,
    /// Per model, by name. Default: none.
    pub models: BTreeMap<String, ModelSched>,
    /// Priority classes of single objects, by key (overriding their model's). Default:
    /// none.
    pub object_priority: BTreeMap<String, i32>,
    /// Seed of the re-sync jitter. Default: 0.
    pub seed: u64,
    /// Re-sync jitter band, in thousandths of the period: a re-sync comes in
    /// `[resync_ms, resync_ms * (1 + permille / 1000)]`. Default: 100.
    pub resync_jitter_permille: u32,
}

impl Default for SchedConfig {
    fn default() -> Self {
        SchedConfig {
            concurrency: 1024,
            models: BTreeMap::new(),
            object_priority: BTreeMap::new(),
            seed: 0,
            resync_jitter_permille: 100,
        }
    }
}

impl SchedConfig {
    /// Sets [`SchedConfig::concurrency`].
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    /// Sets the settings of `model`.
    pub fn model(mut self, model: impl Into<String>, settings: ModelSched) -> Self {
        self.models.insert(model.into(), settings);
        self
    }

    /// Resolves per-model settings by model id.
    pub(crate) fn resolve(&self, schema: &Schema) -> Result<Vec<ModelSched>, SchedConfigError> {
        if self.concurrency == 0 {
            return Err(SchedConfigError::ZeroLimit {
                what: "concurrency".into(),
            });
        }
        let mut out = vec![ModelSched::default(); schema.models().len()];
        for (name, m) in &self.models {
            let id = schema
                .model_id(name)
                .ok_or_else(|| SchedConfigError::UnknownModel {
                    model: name.clone(),
                })?;
            if m.limit == Some(0) {
                return Err(SchedConfigError::ZeroLimit {
                    what: format!("limit of model {name}"),
                });
            }
            if m.resync_ms == Some(0) {
                return Err(SchedConfigError::ZeroLimit {
                    what: format!("resync_ms of model {name}"),
                });
            }
            out[id.index()] = m.clone();
        }
        Ok(out)
    }
}

/// A [`SchedConfig`] that does not fit its schema.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchedConfigError {
    /// A model the schema does not have.
    #[error("scheduler configuration names unknown model {model}")]
    UnknownModel {
        /// The name.
        model: String,
    },
    /// A limit or period of 0, which would never let anything run (or run forever).
    #[error("scheduler configuration: {what} must be at least 1")]
    ZeroLimit {
        /// Which setting.
        what: String,
    },
}

/// The jitter of the `n`-th re-sync of `key`: a pure function of seed, key and n, in
/// `[0, period * permille / 1000]`.
pub(crate) fn jitter(seed: u64, key: &str, n: u32, period: u64, permille: u32) -> u64 {
    let band = period.saturating_mul(u64::from(permille)) / 1000;
    if band == 0 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &b in key.as_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    crate::backoff::splitmix(h ^ u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        % band.saturating_add(1)
}
