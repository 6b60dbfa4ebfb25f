//! Model-level dependencies at scale (R1, R7, R15): 2,000 `Vm`s that `depends_on_models`
//! `Net`, and 2,000 `Net`s, all pending.
//!
//! * `model_deps/plan_2000x2000`: one `Engine::plan` (the `Vm`s wait for every `Net`).
//! * `model_deps/sched_2000x2000`: a fresh `Scheduler` driven to convergence (the plan,
//!   then one dispatch and one `Ok` delivery per task, each releasing its dependents).
//!
//! Run: `cargo bench -p syncore --bench model_deps -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use syncore::sched::{Input, SchedConfig, Scheduler};
use syncore::{ChangeSet, Config, Engine, Outcome, Schema, Time};

const N: usize = 2_000;

fn engine() -> Engine {
    let schema = Schema::from_json(
        r#"{"models": [{"name": "Net", "fields": [{"name": "v", "type": "int"}]},
          {"name": "Vm", "fields": [{"name": "v", "type": "int"}], "depends_on_models": ["Net"]}]}"#,
    )
    .expect("schema");
    let mut e = Engine::new(schema, Config::default());
    let mut set = ChangeSet::new();
    for i in 0..N {
        set = set.upsert(format!("n{i:05}"), "Net", [("v", 0i64)]).upsert(
            format!("vm{i:05}"),
            "Vm",
            [("v", 0i64)],
        );
    }
    e.apply(set).expect("apply");
    e
}

/// Drives `engine` to convergence through the scheduler; returns the scheduler (so that
/// freeing it is not timed).
fn converge(engine: Engine) -> Scheduler {
    let mut s =
        Scheduler::new(engine, SchedConfig::default().concurrency(u32::MAX)).expect("scheduler");
    let mut ready = Vec::new();
    s.step(Input::Tick { now: Time(0) }, &mut ready);
    let mut out = Vec::new();
    while let Some(d) = ready.pop() {
        out.clear();
        s.step(
            Input::Deliver {
                lease: d.lease,
                outcome: Outcome::ok(),
                now: Time(1),
            },
            &mut out,
        );
        ready.extend_from_slice(&out);
    }
    assert_eq!(s.engine().unsettled_count(), 0);
    s
}

fn bench_model_deps(c: &mut Criterion) {
    let mut group = c.benchmark_group("model_deps");
    group.throughput(Throughput::Elements(2 * N as u64));
    let e = engine();
    let plan = e.plan(Time(0));
    assert_eq!((plan.tasks.len(), plan.wave_count()), (2 * N, 2));
    group.bench_function("plan_2000x2000", |b| b.iter(|| e.plan(Time(0))));
    let snapshot = e.snapshot();
    group.bench_function("sched_2000x2000", |b| {
        b.iter_batched(
            || Engine::restore(&snapshot).expect("restore"),
            converge,
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_model_deps);
criterion_main!(benches);
