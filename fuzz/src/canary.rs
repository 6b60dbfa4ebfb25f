//! Target `canary`: proof that the fuzzing set-up finds bugs. It plants a false invariant
//! ("no plan ever has three waves") over the `ops` generators with a fixed chain of three
//! models, and must fail within seconds: a fuzz run that finds nothing here means the
//! tooling, the instrumentation or the generators are broken (TigerBeetle's canary fuzzer).
//! `tests/fuzz_corpus.rs` checks on stable that some generated input trips it.

use arbitrary::Unstructured;
use syncore::{Engine, ModelKind, Schema, Time};

use super::ops::{config, materialize, schema_json, GModel, Op};
use super::sequences::op;

/// Runs one input; `Err` is the planted finding.
pub fn run(data: &[u8]) -> Result<(), String> {
    let models = chain();
    let Ok(schema) = Schema::from_json(&schema_json(&models)) else {
        return Err("the canary's schema is refused".into());
    };
    let mut engine = Engine::new(schema, config());
    let mut u = Unstructured::new(data);
    while !u.is_empty() {
        let Ok(Op::Apply(gs)) = op(&mut u) else {
            continue;
        };
        let _ = engine.apply(materialize(&models, &engine, &gs));
        let plan = engine.plan(Time(0));
        if plan.wave_count() >= 3 {
            return Err(format!(
                "canary: a plan with {} waves (planted false invariant)",
                plan.wave_count()
            ));
        }
    }
    Ok(())
}

/// M0 <- M1 <- M2, one single-valued link each.
fn chain() -> Vec<GModel> {
    (0..3)
        .map(|i| GModel {
            kind: ModelKind::Actuated,
            links: if i == 0 {
                vec![]
            } else {
                vec![(i - 1, false, false)]
            },
            depends_on: None,
        })
        .collect()
}
