//! The shared benchmark graphs match docs/bench-graphs.md, and the cost rule R15 holds: apply
//! and plan work grows with the change and the unsettled set, not with the store.

#[path = "../../benches/common/mod.rs"]
mod common;

use syncore::{ChangeSet, Outcome, Time, Value};

#[test]
fn generator_matches_published_checksums() {
    let g = common::layered(100, 100, 4, 7, false, 1);
    assert_eq!((g.n, g.edges.len()), (10_000, 39_600));
    assert_eq!(format!("{:016x}", common::checksum(&g)), "296679cb607c6f8b");
    let g = common::layered(1000, 100, 4, 7, true, 1);
    assert_eq!((g.n, g.edges.len()), (100_000, 396_000));
    assert_eq!(format!("{:016x}", common::checksum(&g)), "0723c302a9217d38");
}

/// Loads a forest of `comps` components, settles it, then upserts one object; returns the
/// work counters of that apply and of the following plan.
fn one_upsert_cost(comps: u32) -> (u64, u64, u64, u64) {
    // Unshuffled, so the first component is the same graph whatever the store size.
    let dag = common::layered(10, 10, 2, 99, false, comps);
    let mut engine = common::load_engine(&dag);
    let plan = engine.plan(Time(0));
    for t in plan.tasks.clone() {
        engine.complete(&t, Outcome::ok(), Time(0)).unwrap();
    }
    assert_eq!(engine.unsettled_count(), 0);
    // Node 57 of the first component, re-pointed at one predecessor.
    let target = dag.edges.iter().find(|e| e.1 == 57).unwrap().0;
    let report = engine
        .apply(ChangeSet::new().upsert(
            common::key(57),
            "Node",
            [("deps", Value::Refs(vec![common::key(target)]))],
        ))
        .unwrap();
    let plan = engine.plan(Time(1));
    assert_eq!(plan.tasks.len(), 1);
    (
        report.touched_objects,
        report.touched_edges,
        plan.stats.objects,
        plan.stats.edges,
    )
}

#[test]
fn r15_apply_and_plan_cost_does_not_grow_with_the_store() {
    let small = one_upsert_cost(10);
    let large = one_upsert_cost(1000);
    assert_eq!(
        small, large,
        "work counters for one upsert: 1k objects vs 100k objects"
    );
    assert!(
        large.2 <= 100 && large.3 <= 400,
        "bounded by one component: {large:?}"
    );
}

/// A bench graph loaded as `Rows` gives the state a `ChangeSet` of the same upserts gives
/// (same snapshot bytes, report and plan), and a second load of the same rows, now all
/// stored keys, updates nothing but versions, as the change set does.
#[test]
fn rows_load_a_graph_as_its_change_set_does() {
    let dag = common::layered(100, 20, 3, 5, true, 1);
    let schema = || syncore::Schema::from_json(common::NODE_SCHEMA).unwrap();
    let mut by_rows = syncore::Engine::new(schema(), syncore::Config::default());
    let mut by_set = syncore::Engine::new(schema(), syncore::Config::default());
    let a = by_rows.apply_rows(common::rows(&dag)).unwrap();
    let b = by_set.apply(common::change_set(&dag)).unwrap();
    assert_eq!(a, b);
    assert_eq!(by_rows.snapshot(), by_set.snapshot());
    assert_eq!(by_rows.plan(Time(0)).tasks, by_set.plan(Time(0)).tasks);
    assert_eq!(by_rows.plan(Time(0)).wave_count(), 20);
    let a = by_rows.apply_rows(common::rows(&dag)).unwrap();
    let b = by_set.apply(common::change_set(&dag)).unwrap();
    assert_eq!(a, b);
    assert_eq!(by_rows.snapshot(), by_set.snapshot());
}
