//! The scheduling state machine's overhead per task, beside today's executor.
//!
//! * `sched/<graph>/continuous`: a fresh `Scheduler` over a fully pending engine, driven
//!   to convergence by `step`: the plan, then one dispatch and one delivery (an `Ok` from a
//!   no-op actuator, applied by the engine) per task, each delivery releasing dependents.
//!   Everything a real driver asks of the scheduler, minus the actuator calls.
//! * `sched/<graph>/deliveries`: the same run with the first plan and its first dispatches
//!   made in the setup: only the per-task dispatch and delivery are timed (the part of
//!   `continuous` that a run's length, not the graph's one plan, pays for).
//! * `sched/<graph>/executor_loop_t1`: the same work the old way: `plan`, a single-thread
//!   `Executor::run` with a no-op actuator, `complete_run`.
//! * `sched/<graph>/executor_run_t1`: `Executor::run` alone (the 47.5 ns/task baseline of
//!   issue 11: no planning, no completion).
//!
//! Graphs: `layered` of docs' BENCH-GRAPHS, 4 dependencies per node, shuffled ids: 100k
//! (W=1000, L=100, seed 7) and 1M (W=1000, L=1000, seed 42).
//!
//! Run: `cargo bench -p syncore --bench sched -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion_group! generates undocumented items.

#[path = "../../benches/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use syncore::sched::{Dispatch, Input, SchedConfig, Scheduler};
use syncore::{Actuator, Actuators, Engine, ExecConfig, Executor, ObjectView, Outcome, Time};

struct Noop;

impl Actuator for Noop {
    fn sync(&self, _: &ObjectView<'_>) -> Outcome {
        Outcome::ok()
    }
}

/// A scheduler over `engine` after its first input: the plan made, the first tasks
/// dispatched.
#[inline(never)]
fn started(engine: Engine) -> (Scheduler, Vec<Dispatch>) {
    let mut s =
        Scheduler::new(engine, SchedConfig::default().concurrency(u32::MAX)).expect("scheduler");
    let mut ready = Vec::new();
    s.step(Input::Tick { now: Time(0) }, &mut ready);
    (s, ready)
}

/// Drives `engine` to convergence through the scheduler; returns the deliveries made and
/// the scheduler (so that freeing it is not timed).
fn continuous(engine: Engine) -> (u64, Scheduler) {
    let (s, ready) = started(engine);
    deliver_all(s, ready)
}

/// Delivers an `Ok` for every dispatch, and for every dispatch those release, until none
/// is left.
#[inline(never)]
fn deliver_all(mut s: Scheduler, mut ready: Vec<Dispatch>) -> (u64, Scheduler) {
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
    (n, s)
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
                |engine| {
                    let (n, s) = continuous(engine);
                    assert_eq!(n, u64::from(dag.n));
                    s
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function("deliveries", |b| {
            b.iter_batched(
                || started(Engine::restore(&snapshot).expect("restore")),
                |(s, ready)| {
                    let (n, s) = deliver_all(s, ready);
                    assert_eq!(n, u64::from(dag.n));
                    s
                },
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

/// The real-time runtime (feature `runtime`): I/O-bound async actuators and the latency
/// from a completion to its dependent's start.
#[cfg(feature = "runtime")]
mod rt {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use criterion::Criterion;
    use syncore::runtime::{Registry, Runtime, RuntimeConfig};
    use syncore::sched::{SchedConfig, Scheduler};
    use syncore::{
        ActuationContext, AsyncActuator, BoxFuture, ChangeSet, Config, Engine, Outcome, OwnedView,
        Schema, Value,
    };

    const CHAIN: &str = r#"{"models": [{"name": "N", "fields": [{"name": "prev", "type": "ref"}],
        "links": [{"field": "prev", "target": "N"}]}]}"#;

    /// Awaits `ms`, records when it started and ended.
    struct Sleep {
        ms: u64,
        log: Arc<Mutex<Vec<(Instant, Instant)>>>,
    }

    impl AsyncActuator for Sleep {
        fn sync(&self, _: ActuationContext, _: OwnedView) -> BoxFuture<Outcome> {
            let (ms, log) = (self.ms, self.log.clone());
            Box::pin(async move {
                let start = Instant::now();
                if ms > 0 {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                log.lock().unwrap().push((start, Instant::now()));
                Outcome::ok()
            })
        }
    }

    /// `chains` chains of `len` objects each (`len = 1`: independent objects).
    fn forest(chains: usize, len: usize) -> ChangeSet {
        let mut cs = ChangeSet::new();
        for c in 0..chains {
            for i in 0..len {
                let prev = if i == 0 {
                    Value::Null
                } else {
                    Value::from(format!("c{c:05}-{:02}", i - 1))
                };
                cs = cs.upsert(format!("c{c:05}-{i:02}"), "N", [("prev", prev)]);
            }
        }
        cs
    }

    /// Converges `cs` on a fresh runtime (2 tokio threads); returns the time taken and
    /// the actuations' (start, end).
    fn converge(cs: ChangeSet, ms: u64, concurrency: u32) -> (Duration, Vec<(Instant, Instant)>) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let took = rt.block_on(async {
            let engine = Engine::new(Schema::from_json(CHAIN).unwrap(), Config::default());
            let sched =
                Scheduler::new(engine, SchedConfig::default().concurrency(concurrency)).unwrap();
            let registry = Registry::new().with_async(
                "N",
                Sleep {
                    ms,
                    log: log.clone(),
                },
            );
            let runtime = Runtime::start(sched, registry, RuntimeConfig::default()).unwrap();
            let start = Instant::now();
            runtime.handle().apply(cs).await.unwrap();
            runtime.handle().converged().await;
            let took = start.elapsed();
            runtime.shutdown(Duration::from_secs(1)).await;
            took
        });
        let log = std::mem::take(&mut *log.lock().unwrap());
        (took, log)
    }

    pub fn bench_runtime(c: &mut Criterion) {
        let mut group = c.benchmark_group("runtime");
        group.sample_size(10);
        group.bench_function("io_10k_50ms_c1000", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| converge(forest(10_000, 1), 50, 1000).0)
                    .sum()
            })
        });
        group.bench_function("chain10_forest_10k_50ms", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| converge(forest(1000, 10), 50, 1000).0)
                    .sum()
            })
        });
        group.finish();
        // Completion-to-dependent-dispatch latency: one chain of no-op actuations; the gap
        // from an actuation's end to its dependent's start.
        let (_, log) = converge(forest(1, 2000), 0, 1000);
        let mut gaps: Vec<Duration> = log
            .windows(2)
            .map(|w| w[1].0.saturating_duration_since(w[0].1))
            .collect();
        gaps.sort();
        println!(
            "runtime/completion_to_dependent_start: median {:?}, p90 {:?}, over {} links",
            gaps[gaps.len() / 2],
            gaps[gaps.len() * 9 / 10],
            gaps.len()
        );
    }
}

#[cfg(feature = "runtime")]
criterion_group!(benches, bench_sched, rt::bench_runtime);
#[cfg(not(feature = "runtime"))]
criterion_group!(benches, bench_sched);
criterion_main!(benches);
