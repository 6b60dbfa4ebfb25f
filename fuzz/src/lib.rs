//! Generators and oracles for syncore's fuzz targets, in ordinary code.
//!
//! Each target module has a `run(data: &[u8]) -> Result<(), String>`: it decodes the input
//! (JSON text, snapshot bytes, or structured values drawn with `arbitrary::Unstructured`),
//! drives the engine through its public API, and checks the answers against an oracle
//! (the reference planner, DESIGN.md's invariants, round trips). `Err` is a finding; a
//! panic inside the engine is one too. The binaries in `fuzz_targets/` only call `run`,
//! and `tests/fuzz_corpus.rs` replays `corpus/<target>/` through the same functions on a
//! stable toolchain, so every machine checks the corpus (this file is included there with
//! `#[path]`, which is why the modules below name their siblings with `super::`).
//!
//! | target | input | oracle |
//! |---|---|---|
//! | `schema` | schema JSON, or a structured [`SchemaDef`](syncore::SchemaDef) | R11 restated naively; accepted schemas round-trip |
//! | `changes` | a change-set JSON array, or a CLI scenario file | refusals change nothing; accepted states match the reference and restore (R14) |
//! | `snapshot` | raw bytes, a payload under a valid header, or a mutated real snapshot | restore never panics; what it accepts plans like the reference and keeps working |
//! | `ops` | operation sequences (`tests/engine/ops.rs`) | `run_ops`: the reference after every step |
//! | `outcomes` | outcomes with arbitrary feedback, as a plugin could return | R8, R9, limits; reachable states restore |
//! | `canary` | operation sequences | a planted false invariant: must fail quickly |

#![forbid(unsafe_code)]

#[path = "../../tests/engine/reference.rs"]
#[allow(missing_docs, dead_code)]
pub mod reference;

#[path = "../../tests/engine/ops.rs"]
#[allow(missing_docs, dead_code)]
pub mod ops;

// The CLI's scenario format (src/scenario.rs) lives in a binary crate; it is compiled here
// from its source file, with the one module it uses.
#[path = "../../src/locate.rs"]
#[allow(missing_docs, dead_code)]
pub mod locate;

#[path = "../../src/scenario.rs"]
#[allow(missing_docs, dead_code)]
pub mod scenario;

pub mod canary;
pub mod changes;
pub mod gen;
pub mod outcomes;
pub mod schema;
pub mod sequences;
pub mod snapshot;
pub mod state;

/// A target's entry point: `Err` is a finding.
pub type Run = fn(&[u8]) -> Result<(), String>;

/// The fuzz targets by name, each with its `run` function (for the corpus replay).
pub const TARGETS: &[(&str, Run)] = &[
    ("schema", schema::run),
    ("changes", changes::run),
    ("snapshot", snapshot::run),
    ("ops", sequences::run),
    ("outcomes", outcomes::run),
    ("canary", canary::run),
];
