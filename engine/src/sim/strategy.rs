//! Proptest strategies for schemas, graphs and change-set streams (feature `proptest`).
//!
//! They draw from the same seeded generators as the simulator ([`super::gen`]), so a
//! failing case is reproducible from its seed; proptest shrinks the sizes (models, objects,
//! stream length) and the seed.
//!
//! # Examples
//! ```
//! use proptest::prelude::*;
//! use syncore::sim::strategy;
//! use syncore::{Config, Engine};
//! proptest!(ProptestConfig::with_cases(8), |(case in strategy::scenario(3, 8, 10))| {
//!     let mut engine = Engine::new(case.schema.clone(), Config::default());
//!     engine.apply(case.graph.clone()).unwrap();
//!     for set in &case.stream {
//!         let _ = engine.apply(set.clone());
//!     }
//! });
//! ```

use proptest::prelude::*;

use super::gen::{self, ChangeStream, SchemaShape};
use super::rng::SplitMix64;
use super::SimConfig;
use crate::change::ChangeSet;
use crate::schema::{Schema, SchemaDef};

/// Schema definitions with up to `models_max` models (see [`gen::schema_def`]).
pub fn schema_def(models_max: usize) -> impl Strategy<Value = SchemaDef> {
    (any::<u64>(), 1..=models_max.max(1)).prop_map(|(seed, models_max)| {
        gen::schema_def(
            &mut SplitMix64::new(seed),
            &SchemaShape {
                models_max,
                ..SchemaShape::default()
            },
        )
    })
}

/// Validated schemas with up to `models_max` models.
pub fn schema(models_max: usize) -> impl Strategy<Value = Schema> {
    schema_def(models_max).prop_map(|d| Schema::new(d).expect("generated schemas are valid"))
}

/// A first graph of up to `objects_max` objects over `schema`, as one change set.
pub fn graph(schema: Schema, objects_max: usize) -> impl Strategy<Value = ChangeSet> {
    (any::<u64>(), 0..=objects_max)
        .prop_map(move |(seed, n)| ChangeStream::new(&schema, seed, objects_max.max(1)).populate(n))
}

/// A schema, a first graph and a stream of change sets following it (some of which are
/// meant to be refused: [`ChangeStream`]).
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The schema.
    pub schema: Schema,
    /// The first graph.
    pub graph: ChangeSet,
    /// What comes next.
    pub stream: Vec<ChangeSet>,
}

/// [`Scenario`]s: up to `models_max` models, `objects_max` live objects, `sets_max`
/// change sets after the first graph.
pub fn scenario(
    models_max: usize,
    objects_max: usize,
    sets_max: usize,
) -> impl Strategy<Value = Scenario> {
    (
        schema(models_max),
        any::<u64>(),
        0..=objects_max,
        0..=sets_max,
    )
        .prop_map(move |(schema, seed, n, sets)| {
            let mut stream = ChangeStream::new(&schema, seed, objects_max.max(1));
            let graph = stream.populate(n);
            let stream = (0..sets).map(|_| stream.next_set()).collect();
            Scenario {
                schema,
                graph,
                stream,
            }
        })
}

/// Simulation configurations from any seed, with `steps` fault-phase steps.
pub fn sim_config(steps: u64) -> impl Strategy<Value = SimConfig> {
    any::<u64>().prop_map(move |seed| SimConfig {
        steps,
        ..SimConfig::from_seed(seed)
    })
}
