//! Property tests: the engine against the reference planner on random schemas, object
//! graphs, change sets, outcomes and times, checking after every step; plus determinism,
//! snapshot and convergence properties.

use proptest::prelude::*;
use syncore::{Change, ChangeSet, Engine, ExternalReport, ModelKind, Outcome, Schema, Time};

use crate::ops::{config, materialize, run_ops, schema_json, GChange, GModel, Op, KEYS};
use crate::reference::Reference;

pub fn schema_strategy() -> impl Strategy<Value = Vec<GModel>> {
    let model = (
        0u8..10,
        prop::collection::vec((any::<u8>(), any::<bool>(), 0u8..10), 0..=2),
        0u8..10,
        any::<u8>(),
    );
    prop::collection::vec(model, 1..=4).prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (kind, links, dep, dep_t))| GModel {
                kind: match kind {
                    0 => ModelKind::Passive,
                    1 => ModelKind::External,
                    _ => ModelKind::Actuated,
                },
                links: links
                    .into_iter()
                    .map(|(t, many, p)| {
                        let target = t as usize % (i + 1);
                        (target, many, p < 3 && target < i)
                    })
                    .collect(),
                depends_on: (dep < 2 && i > 0).then(|| dep_t as usize % i),
            })
            .collect()
    })
}

fn change_strategy() -> impl Strategy<Value = GChange> {
    (
        0..KEYS,
        0u8..10,
        any::<u8>(),
        any::<i8>(),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..=2), 2),
    )
        .prop_map(|(key, d, model, v, refs)| GChange {
            key,
            delete: d < 2,
            model,
            v,
            refs,
        })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop::collection::vec(change_strategy(), 1..6).prop_map(Op::Apply),
        4 => prop::collection::vec(any::<u8>(), 1..8).prop_map(Op::Run),
        2 => (0u16..3000).prop_map(Op::Advance),
        1 => (0..KEYS, any::<bool>()).prop_map(|(k, ok)| Op::External(k, ok)),
        1 => Just(Op::Restore),
        1 => Just(Op::Stale),
    ]
}

proptest! {
    // 256 cases by default; PROPTEST_CASES=N for a longer sweep.
    /// Same tasks, same holds, same reasons, same waves and edges as the reference, after
    /// every step of random apply/plan/complete/time/external/restore sequences.
    #[test]
    fn engine_matches_reference_planner(models in schema_strategy(), ops in prop::collection::vec(op_strategy(), 1..40)) {
        if let Err(e) = run_ops(&models, &ops) {
            prop_assert!(false, "{}", e);
        }
    }

    /// R12: the order of entries inside a change set changes neither state nor plan, and a
    /// refused set is refused the same way.
    #[test]
    fn r12_permutation_invariance(models in schema_strategy(), setup in prop::collection::vec(change_strategy(), 0..10),
                                  set in prop::collection::vec(change_strategy(), 1..8), seed: u64) {
        let Ok(schema) = Schema::from_json(&schema_json(&models)) else { return Ok(()) };
        let mut base = Engine::new(schema, config());
        let setup = materialize(&models, &base, &setup);
        let _ = base.apply(setup);
        let changes: Vec<Change> = materialize(&models, &base, &set).changes;
        let mut shuffled = changes.clone();
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut a = Engine::restore(&base.snapshot()).unwrap();
        let mut b = Engine::restore(&base.snapshot()).unwrap();
        let ra = a.apply(ChangeSet { changes });
        let rb = b.apply(ChangeSet { changes: shuffled });
        prop_assert_eq!(ra, rb);
        prop_assert_eq!(a.snapshot(), b.snapshot());
        prop_assert_eq!(serde_json::to_string(&a.plan(Time(5))).unwrap(), serde_json::to_string(&b.plan(Time(5))).unwrap());
    }

    /// With every outcome Ok (and external objects reported synced), the engine converges
    /// within depth + 1 rounds.
    #[test]
    fn all_ok_converges_within_depth_plus_one_rounds(models in schema_strategy(), set in prop::collection::vec(change_strategy(), 1..12)) {
        let Ok(schema) = Schema::from_json(&schema_json(&models)) else { return Ok(()) };
        let mut engine = Engine::new(schema, config());
        let set = materialize(&models, &engine, &set);
        if engine.apply(set).is_err() {
            return Ok(());
        }
        let r = Reference::new(&engine, Time(0));
        let depth = r.objs.keys().map(|k| r.ancestors(k).len()).max().unwrap_or(0);
        let mut rounds = 0;
        loop {
            let keys: Vec<String> = engine.keys().map(str::to_string).collect();
            for k in keys {
                let o = engine.object(&k).unwrap();
                let _ = engine.report_external(&k, ExternalReport::Synced { version: o.version });
            }
            let plan = engine.plan(Time(0));
            if plan.tasks.is_empty() {
                prop_assert!(plan.holds.is_empty(), "stuck: {:?}", plan.holds);
                break;
            }
            rounds += 1;
            prop_assert!(rounds <= depth + 1, "more than depth+1 = {} rounds", depth + 1);
            for t in &plan.tasks {
                engine.complete(t, Outcome::ok(), Time(0)).unwrap();
            }
        }
    }
}

/// The generators reach the interesting states: most change sets apply, some are
/// refused, and plans hold objects behind failures (otherwise the reference comparison
/// would prove little).
#[test]
fn generators_cover_accepts_refusals_and_holds() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut applied, mut refused, mut tasks, mut blocked) = (0, 0, 0, 0);
    for _ in 0..200 {
        let models = schema_strategy().new_tree(&mut runner).unwrap().current();
        let ops = prop::collection::vec(op_strategy(), 1..40)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let Ok(schema) = Schema::from_json(&schema_json(&models)) else {
            continue;
        };
        let mut e = Engine::new(schema, config());
        for op in &ops {
            match op {
                Op::Apply(gs) => match e.apply(materialize(&models, &e, gs)) {
                    Ok(_) => applied += 1,
                    Err(_) => refused += 1,
                },
                Op::Run(_) => {
                    let p = e.plan(Time(0));
                    tasks += p.tasks.len();
                    blocked += p
                        .holds
                        .iter()
                        .filter(|h| matches!(h.reason, syncore::HoldReason::Blocked { .. }))
                        .count();
                    for t in &p.tasks {
                        let failed = t.object.0 % 3 == 0;
                        let _ = e.complete(
                            t,
                            if failed {
                                Outcome::failed("x")
                            } else {
                                Outcome::ok()
                            },
                            Time(0),
                        );
                    }
                }
                _ => {}
            }
        }
    }
    assert!(applied > refused, "applied {applied}, refused {refused}");
    assert!(
        refused > 50 && tasks > 300 && blocked > 100,
        "refused {refused}, tasks {tasks}, blocked {blocked}"
    );
}
