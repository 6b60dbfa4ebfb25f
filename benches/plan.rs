//! Planning throughput, side by side with petgraph's toposort and a bare Kahn pass on the
//! same graphs (docs/bench-graphs.md), and the cost of one upsert in a 1M-object forest (R15).
//!
//! Run: `cargo bench --bench plan -- --warm-up-time 1 --measurement-time 5`

#![allow(missing_docs)] // criterion_group! generates undocumented items.

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use petgraph::graph::{DiGraph, NodeIndex};
use syncore::{ChangeSet, Outcome, Time, Value};

/// Kahn's algorithm over a compact u32 CSR: the floor any scheduler pays.
fn kahn(n: usize, offsets: &[u32], targets: &[u32]) -> usize {
    let mut indeg = vec![0u32; n];
    for &t in targets {
        indeg[t as usize] += 1;
    }
    let mut queue: Vec<u32> = (0..n as u32).filter(|&i| indeg[i as usize] == 0).collect();
    let mut head = 0;
    while head < queue.len() {
        let u = queue[head] as usize;
        head += 1;
        for &v in &targets[offsets[u] as usize..offsets[u + 1] as usize] {
            indeg[v as usize] -= 1;
            if indeg[v as usize] == 0 {
                queue.push(v);
            }
        }
    }
    queue.len()
}

/// The plan floor: what a plan must produce from the stored dependency lists (`pred`, a
/// CSR of each node's prerequisites), with nothing else: in-degrees, successors, Kahn's
/// algorithm with waves, tasks sorted by (wave, id) and every task's prerequisites remapped
/// to task indices (sorted). Returns (tasks, wave offsets, dep offsets, dep targets).
fn plan_floor(
    n: usize,
    pred_off: &[u32],
    pred: &[u32],
) -> (Vec<u32>, Vec<u32>, Vec<u32>, Vec<u32>) {
    let mut indeg: Vec<u32> = (0..n).map(|i| pred_off[i + 1] - pred_off[i]).collect();
    let mut succ_off = vec![0u32; n + 1];
    for &p in pred {
        succ_off[p as usize + 1] += 1;
    }
    for i in 0..n {
        succ_off[i + 1] += succ_off[i];
    }
    let mut fill = succ_off.clone();
    let mut succ = vec![0u32; pred.len()];
    for i in 0..n {
        for &p in &pred[pred_off[i] as usize..pred_off[i + 1] as usize] {
            succ[fill[p as usize] as usize] = i as u32;
            fill[p as usize] += 1;
        }
    }
    let mut wave = vec![0u32; n];
    let mut queue: Vec<u32> = (0..n as u32).filter(|&i| indeg[i as usize] == 0).collect();
    let mut head = 0;
    let mut waves = 0;
    while head < queue.len() {
        let u = queue[head] as usize;
        head += 1;
        waves = waves.max(wave[u] + 1);
        for &v in &succ[succ_off[u] as usize..succ_off[u + 1] as usize] {
            let v = v as usize;
            wave[v] = wave[v].max(wave[u] + 1);
            indeg[v] -= 1;
            if indeg[v] == 0 {
                queue.push(v as u32);
            }
        }
    }
    // Counting sort by wave; ids ascend inside each wave.
    let mut wave_off = vec![0u32; waves as usize + 1];
    for &w in &wave {
        wave_off[w as usize + 1] += 1;
    }
    for w in 0..waves as usize {
        wave_off[w + 1] += wave_off[w];
    }
    let mut next = wave_off.clone();
    let mut tasks = vec![0u32; n];
    let mut task_of = vec![0u32; n];
    for i in 0..n {
        let t = next[wave[i] as usize];
        next[wave[i] as usize] += 1;
        tasks[t as usize] = i as u32;
        task_of[i] = t;
    }
    let mut dep_off = Vec::with_capacity(n + 1);
    let mut deps = Vec::with_capacity(pred.len());
    dep_off.push(0u32);
    for &i in &tasks {
        let start = deps.len();
        let i = i as usize;
        deps.extend(
            pred[pred_off[i] as usize..pred_off[i + 1] as usize]
                .iter()
                .map(|&p| task_of[p as usize]),
        );
        deps[start..].sort_unstable();
        dep_off.push(deps.len() as u32);
    }
    (tasks, wave_off, dep_off, deps)
}

/// Each node's prerequisites (predecessors) as a CSR.
fn pred_csr(dag: &common::Dag) -> (Vec<u32>, Vec<u32>) {
    let flipped = common::Dag {
        n: dag.n,
        edges: dag.edges.iter().map(|&(s, d)| (d, s)).collect(),
    };
    csr(&flipped)
}

fn csr(dag: &common::Dag) -> (Vec<u32>, Vec<u32>) {
    let n = dag.n as usize;
    let mut offsets = vec![0u32; n + 1];
    for &(s, _) in &dag.edges {
        offsets[s as usize + 1] += 1;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    let mut fill = offsets.clone();
    let mut targets = vec![0u32; dag.edges.len()];
    for &(s, d) in &dag.edges {
        targets[fill[s as usize] as usize] = d;
        fill[s as usize] += 1;
    }
    (offsets, targets)
}

const GRAPHS: [(&str, u32, u32, u64); 3] = [
    ("g10k_shuf", 100, 100, 7),
    ("g100k_shuf", 1000, 100, 7),
    ("g1m_shuf", 1000, 1000, 42),
];

fn full_plan(c: &mut Criterion) {
    common::mark_start();
    let mut group = c.benchmark_group("full_plan");
    for (name, w, l, seed) in GRAPHS {
        if !common::wanted(&format!("full_plan/{name}")) {
            continue;
        }
        let dag = common::layered(w, l, 4, seed, true, 1);
        if name == "g1m_shuf" {
            assert_eq!(
                common::checksum(&dag),
                0xb0e16571f1241168,
                "docs/bench-graphs.md checksum"
            );
            group.sample_size(10);
            group.warm_up_time(std::time::Duration::from_millis(1));
            group.measurement_time(std::time::Duration::from_secs(1));
        }
        group.throughput(Throughput::Elements(u64::from(dag.n)));
        let engine = common::load_engine(&dag);
        let plan = engine.plan(Time(0));
        assert_eq!(plan.tasks.len(), dag.n as usize);
        assert_eq!(plan.wave_count(), l as usize);
        group.bench_function(BenchmarkId::new("syncore_plan", name), |b| {
            b.iter(|| engine.plan(Time(0)))
        });
        drop(engine);
        let mut g: DiGraph<(), ()> = DiGraph::with_capacity(dag.n as usize, dag.edges.len());
        for _ in 0..dag.n {
            g.add_node(());
        }
        for &(s, d) in &dag.edges {
            g.add_edge(NodeIndex::new(s as usize), NodeIndex::new(d as usize), ());
        }
        group.bench_function(BenchmarkId::new("petgraph_toposort", name), |b| {
            b.iter(|| petgraph::algo::toposort(&g, None).unwrap())
        });
        drop(g);
        let (offsets, targets) = csr(&dag);
        group.bench_function(BenchmarkId::new("bare_kahn_u32", name), |b| {
            b.iter(|| kahn(dag.n as usize, &offsets, &targets))
        });
        let (pred_off, pred) = pred_csr(&dag);
        let floor = plan_floor(dag.n as usize, &pred_off, &pred);
        assert_eq!(floor.1.len(), l as usize + 1, "the floor finds every wave");
        group.bench_function(BenchmarkId::new("plan_floor", name), |b| {
            b.iter(|| plan_floor(dag.n as usize, &pred_off, &pred))
        });
    }
    group.finish();
    let mut rows = Vec::new();
    for (name, w, l, _) in GRAPHS {
        let items = u64::from(w * l);
        let id = format!("full_plan/syncore_plan/{name}");
        rows.push((
            name,
            id.clone(),
            format!("full_plan/plan_floor/{name}"),
            items,
        ));
        rows.push((
            name,
            id,
            format!("full_plan/petgraph_toposort/{name}"),
            items,
        ));
    }
    common::print_ratios(
        "first plan vs the plan floor (first line) and petgraph's toposort (second line)",
        &rows,
    );
}

/// One upsert in a settled 1M-object forest of 10,000 small components, then plan (and
/// complete the one task, so every iteration starts from the same state).
fn one_upsert(c: &mut Criterion) {
    if !common::wanted("incremental/upsert_plan_complete_1m_forest") {
        return;
    }
    let dag = common::layered(10, 10, 2, 99, true, 10_000);
    assert_eq!(
        common::checksum(&dag),
        0xccff4ce08551eb44,
        "docs/bench-graphs.md checksum"
    );
    let mut engine = common::load_engine(&dag);
    for t in engine.plan(Time(0)).tasks.clone() {
        engine.complete(&t, Outcome::ok(), Time(0)).unwrap();
    }
    let key = common::key(dag.edges[dag.edges.len() / 2].1);
    let mut v = 0i64;
    let mut group = c.benchmark_group("incremental");
    group.bench_function("upsert_plan_complete_1m_forest", |b| {
        b.iter_batched(
            || {
                v += 1;
                ChangeSet::new().upsert(key.clone(), "Node", [("v", Value::Int(v))])
            },
            |set| {
                engine.apply(set).unwrap();
                let plan = engine.plan(Time(0));
                assert_eq!(plan.tasks.len(), 1);
                engine
                    .complete(&plan.tasks[0], Outcome::ok(), Time(0))
                    .unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, full_plan, one_upsert);
criterion_main!(benches);
