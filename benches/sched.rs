//! The scheduling state machine's overhead per task, beside today's executor.
//!
//! * `sched/<graph>/continuous`: a fresh `Scheduler` over a fully pending engine, driven
//!   to convergence by `step`: the plan, then one dispatch and one delivery (an `Ok` from a
//!   no-op actuator, applied by the engine) per task, each delivery releasing dependents.
//!   Everything a real driver asks of the scheduler, minus the actuator calls.
//! * `sched/<graph>/executor_loop_t1`: the same work the old way: `plan`, a single-thread
//!   `Executor::run` with a no-op actuator, `complete_run`.
//! * `sched/<graph>/executor_run_t1`: `Executor::run` alone (the 47.5 ns/task baseline of
//!   issue 11: no planning, no completion).
//!
//! Graphs: `layered` of docs' BENCH-GRAPHS, 4 dependencies per node, shuffled ids: 100k
//! (W=1000, L=100, seed 7) and 1M (W=1000, L=1000, seed 42).
//!
//! Run: `cargo bench --bench sched -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion_group! generates undocumented items.

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use syncore::sched::{Input, SchedConfig, Scheduler};
use syncore::{Actuator, Actuators, Engine, ExecConfig, Executor, ObjectView, Outcome, Time};

struct Noop;

impl Actuator for Noop {
    fn sync(&self, _: &ObjectView<'_>) -> Outcome {
        Outcome::ok()
    }
}

/// Drives `engine` to convergence through the scheduler; returns the deliveries made.
fn continuous(engine: Engine) -> u64 {
    let mut s =
        Scheduler::new(engine, SchedConfig::default().concurrency(u32::MAX)).expect("scheduler");
    let mut ready = Vec::new();
    s.step(Input::Tick { now: Time(0) }, &mut ready);
    let mut out = Vec::new();
    let mut n = 0;
    while let Some(d) = ready.pop() {
        n += 1;
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
    n
}

fn bench_sched(c: &mut Criterion) {
    let graphs = [
        ("g100k_shuf", common::layered(1000, 100, 4, 7, true, 1), 10),
        ("g1m_shuf", common::layered(1000, 1000, 4, 42, true, 1), 10),
    ];
    for (name, dag, samples) in graphs {
        let snapshot = common::load_engine(&dag).snapshot();
        let mut group = c.benchmark_group(format!("sched/{name}"));
        group.sample_size(samples);
        group.throughput(Throughput::Elements(u64::from(dag.n)));
        group.bench_function("continuous", |b| {
            b.iter_batched(
                || Engine::restore(&snapshot).expect("restore"),
                |engine| assert_eq!(continuous(engine), u64::from(dag.n)),
                BatchSize::PerIteration,
            )
        });
        let exec = Executor::new(
            Engine::restore(&snapshot).expect("restore").schema(),
            &Actuators::new().with("Node", Noop),
            ExecConfig::new().threads(1),
        )
        .expect("executor");
        group.bench_function("executor_loop_t1", |b| {
            b.iter_batched(
                || Engine::restore(&snapshot).expect("restore"),
                |mut engine| {
                    let plan = engine.plan(Time(0));
                    let report = exec.run(&engine, &plan);
                    engine
                        .complete_run(&plan, &report, Time(1))
                        .expect("complete");
                    engine
                },
                BatchSize::PerIteration,
            )
        });
        let engine = Engine::restore(&snapshot).expect("restore");
        let plan = engine.plan(Time(0));
        group.bench_function("executor_run_t1", |b| b.iter(|| exec.run(&engine, &plan)));
        group.finish();
    }
}

criterion_group!(benches, bench_sched);
criterion_main!(benches);
