//! Executor overhead per task, side by side with a plain rayon DAG runner on the same
//! graphs, and the end-to-end run loop (plan + execute + complete).
//!
//! * `exec/<graph>/syncore_t{1,2}`: `Executor::run` of a fully pending plan with no-op
//!   actuators, 1 and 2 worker threads. Includes everything a run does: inverting the
//!   plan's edges, the pending counters and result slots, the workers, the report.
//! * `exec/<graph>/rayon_t{1,2}`: the baseline. The same DAG (the plan's task graph, its
//!   successor lists built beforehand), atomic in-degree counters, one `rayon::Scope::spawn`
//!   per ready task, the same no-op actuator called through the same object view.
//! * `loop/g100k_shuf/t{1,2}`: one round of the run loop on 100k pending objects: `plan`,
//!   `run` (1 or 2 threads), `complete_run`; throughput in tasks per second.
//!
//! Graphs: `layered` of `docs/bench-graphs.md`, 4 dependencies per node, shuffled ids: 10k
//! (W=100, L=100, seed 7), 100k (W=1000, L=100, seed 7), 1M (W=1000, L=1000, seed 42).
//!
//! Run: `cargo bench --bench exec -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion_group! generates undocumented items.

mod common;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use syncore::{Actuator, Actuators, Engine, ExecConfig, Executor, ObjectView, Outcome, Plan, Time};

/// The no-op actuator both sides call.
struct Noop;

impl Actuator for Noop {
    fn sync(&self, _: &ObjectView<'_>) -> Outcome {
        Outcome::ok()
    }
}

fn executor(engine: &Engine, threads: usize) -> Executor {
    Executor::new(
        engine.schema(),
        &Actuators::new().with("Node", Noop),
        ExecConfig::new().threads(threads),
    )
    .expect("executor")
}

/// The plan's task graph as successor lists (CSR) and in-degrees.
struct TaskDag {
    succ_off: Vec<u32>,
    succ: Vec<u32>,
    indeg: Vec<u32>,
}

fn task_dag(plan: &Plan) -> TaskDag {
    let n = plan.tasks.len();
    let mut succ_off = vec![0u32; n + 1];
    let mut indeg = vec![0u32; n];
    for (i, d) in indeg.iter_mut().enumerate() {
        for &p in &plan.implied_deps(i) {
            succ_off[p as usize + 1] += 1;
            *d += 1;
        }
    }
    for i in 0..n {
        succ_off[i + 1] += succ_off[i];
    }
    let mut fill = succ_off.clone();
    let mut succ = vec![0u32; succ_off[n] as usize];
    for i in 0..n {
        for &p in &plan.implied_deps(i) {
            succ[fill[p as usize] as usize] = i as u32;
            fill[p as usize] += 1;
        }
    }
    TaskDag {
        succ_off,
        succ,
        indeg,
    }
}

/// What the baseline's tasks share.
struct Ctx<'s> {
    engine: &'s Engine,
    plan: &'s Plan,
    dag: &'s TaskDag,
    counters: Vec<AtomicU32>,
    done: AtomicUsize,
    actuator: &'s Arc<dyn Actuator>,
}

/// One task of the baseline: act, then release the successors, spawning the ready ones.
fn visit<'s>(s: &rayon::Scope<'s>, i: u32, cx: &'s Ctx<'s>) {
    let outcome = cx
        .actuator
        .sync(&cx.engine.view(cx.plan.tasks[i as usize].object));
    std::hint::black_box(&outcome);
    cx.done.fetch_add(1, Ordering::Relaxed);
    let (a, b) = (
        cx.dag.succ_off[i as usize] as usize,
        cx.dag.succ_off[i as usize + 1] as usize,
    );
    for &d in &cx.dag.succ[a..b] {
        if cx.counters[d as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
            s.spawn(move |s| visit(s, d, cx));
        }
    }
}

/// The rayon baseline: atomic in-degree counters, a spawn per ready task.
fn rayon_run(
    pool: &rayon::ThreadPool,
    engine: &Engine,
    plan: &Plan,
    dag: &TaskDag,
    actuator: &Arc<dyn Actuator>,
) -> usize {
    let cx = Ctx {
        engine,
        plan,
        dag,
        counters: dag.indeg.iter().map(|&d| AtomicU32::new(d)).collect(),
        done: AtomicUsize::new(0),
        actuator,
    };
    let cx = &cx;
    pool.scope(|s| {
        for (i, &d) in dag.indeg.iter().enumerate() {
            if d == 0 {
                s.spawn(move |s| visit(s, i as u32, cx));
            }
        }
    });
    cx.done.load(Ordering::Relaxed)
}

fn bench_exec(c: &mut Criterion) {
    let graphs = [
        ("g10k_shuf", common::layered(100, 100, 4, 7, true, 1), 30),
        ("g100k_shuf", common::layered(1000, 100, 4, 7, true, 1), 20),
        ("g1m_shuf", common::layered(1000, 1000, 4, 42, true, 1), 10),
    ];
    let actuator: Arc<dyn Actuator> = Arc::new(Noop);
    for (name, dag, samples) in graphs {
        let engine = common::load_engine(&dag);
        let plan = engine.plan(Time(0));
        assert_eq!(plan.tasks.len(), dag.n as usize);
        let tdag = task_dag(&plan);
        let mut group = c.benchmark_group(format!("exec/{name}"));
        group.sample_size(samples);
        group.throughput(Throughput::Elements(u64::from(dag.n)));
        for threads in [1usize, 2] {
            let exec = executor(&engine, threads);
            group.bench_function(format!("syncore_t{threads}"), |b| {
                b.iter(|| {
                    let report = exec.run(&engine, &plan);
                    assert_eq!(report.states.len(), plan.tasks.len());
                    report
                })
            });
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("rayon pool");
            group.bench_function(format!("rayon_t{threads}"), |b| {
                b.iter(|| {
                    let done = rayon_run(&pool, &engine, &plan, &tdag, &actuator);
                    assert_eq!(done, plan.tasks.len());
                })
            });
        }
        group.finish();
    }
}

fn bench_loop(c: &mut Criterion) {
    let dag = common::layered(1000, 100, 4, 7, true, 1);
    let snapshot = common::load_engine(&dag).snapshot();
    let mut group = c.benchmark_group("loop/g100k_shuf");
    group.sample_size(10);
    group.throughput(Throughput::Elements(u64::from(dag.n)));
    for threads in [1usize, 2] {
        let exec = executor(&Engine::restore(&snapshot).expect("restore"), threads);
        group.bench_function(format!("t{threads}"), |b| {
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
    }
    group.finish();
}

criterion_group!(benches, bench_exec, bench_loop);
criterion_main!(benches);
