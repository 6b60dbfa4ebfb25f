//! `syncore bench`: synthetic graphs (the `layered` generator of docs/bench-graphs.md, chains,
//! fan-out, fan-in, or a `DAG1` file), loaded into an engine, planned and executed with a
//! no-op actuator; reports throughput.

use std::time::{Duration, Instant};

use syncore::{
    Actuator, Actuators, Change, ChangeSet, Config, Engine, ExecConfig, Executor, ObjectView,
    Outcome, Schema, Time, Value,
};

/// A DAG: `edges` are `(src, dst)`, meaning "dst depends on src".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dag {
    /// Node count.
    pub n: u32,
    /// Edges in generator order.
    pub edges: Vec<(u32, u32)>,
}

/// SplitMix64, exactly as docs/bench-graphs.md specifies.
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A draw in `0..n`: the high 64 bits of `next * n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// `layered(W, L, D, seed, shuffle, comps)` from docs/bench-graphs.md.
///
/// # Errors
/// If `D > W` (a node cannot pick `D` distinct predecessors) or the graph exceeds `u32` ids.
pub fn layered(
    w: u32,
    l: u32,
    d: u32,
    seed: u64,
    shuffle: bool,
    comps: u32,
) -> Result<Dag, String> {
    if w == 0 || l == 0 || comps == 0 {
        return Err("width, layers and components must be at least 1".into());
    }
    if d > w {
        return Err(format!(
            "degree {d} is larger than the width {w}: a node picks distinct predecessors from the layer above"
        ));
    }
    let n = u64::from(w) * u64::from(l) * u64::from(comps);
    let n =
        u32::try_from(n).map_err(|_| format!("{n} nodes is too many (at most {})", u32::MAX))?;
    let mut rng = SplitMix(seed);
    let mut edges = Vec::with_capacity(
        (u64::from(comps) * u64::from(l - 1) * u64::from(w) * u64::from(d)) as usize,
    );
    let mut picks: Vec<u32> = Vec::with_capacity(d as usize);
    for c in 0..comps {
        for layer in 1..l {
            for i in 0..w {
                let v = c * w * l + layer * w + i;
                picks.clear();
                while picks.len() < d as usize {
                    let u = c * w * l + (layer - 1) * w + rng.below(u64::from(w)) as u32;
                    if !picks.contains(&u) {
                        picks.push(u);
                    }
                }
                edges.extend(picks.iter().map(|&u| (u, v)));
            }
        }
    }
    if shuffle {
        let mut perm: Vec<u32> = (0..n).collect();
        for i in (1..n as usize).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            perm.swap(i, j);
        }
        for e in &mut edges {
            *e = (perm[e.0 as usize], perm[e.1 as usize]);
        }
        for i in (1..edges.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            edges.swap(i, j);
        }
    }
    Ok(Dag { n, edges })
}

/// A chain `0 <- 1 <- ... <- n-1`.
pub fn chain(n: u32) -> Dag {
    Dag {
        n,
        edges: (1..n).map(|i| (i - 1, i)).collect(),
    }
}

/// One root that `n - 1` nodes depend on.
pub fn fan_out(n: u32) -> Dag {
    Dag {
        n,
        edges: (1..n).map(|i| (0, i)).collect(),
    }
}

/// One node that depends on `n - 1` others.
pub fn fan_in(n: u32) -> Dag {
    let last = n.saturating_sub(1);
    Dag {
        n,
        edges: (0..last).map(|i| (i, last)).collect(),
    }
}

/// FNV-1a over `src, dst, ...`, each u32 XORed in whole.
pub fn checksum(dag: &Dag) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &(s, d) in &dag.edges {
        h = (h ^ u64::from(s)).wrapping_mul(0x0000_0100_0000_01b3);
        h = (h ^ u64::from(d)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Reads a `DAG1` file's bytes.
///
/// # Errors
/// What is wrong with the bytes.
pub fn read_dag1(bytes: &[u8]) -> Result<Dag, String> {
    if bytes.get(..4) != Some(b"DAG1".as_slice()) {
        return Err("not a DAG1 file (expected the 4 bytes `DAG1` first)".into());
    }
    let word = |at: usize| -> Result<u64, String> {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| "DAG1 header is truncated (expected node and edge counts)".to_string())
    };
    let n = word(4)?;
    let e = word(12)?;
    let n = u32::try_from(n).map_err(|_| format!("DAG1: {n} nodes is too many"))?;
    let len = usize::try_from(e)
        .ok()
        .and_then(|e| e.checked_mul(8))
        .ok_or_else(|| format!("DAG1: {e} edges is too many"))?;
    let body = bytes.get(20..20usize.saturating_add(len)).ok_or_else(|| {
        format!(
            "DAG1 is truncated: the header says {e} edges ({len} bytes), the file has {} bytes after the header",
            bytes.len().saturating_sub(20)
        )
    })?;
    let mut edges = Vec::with_capacity(e as usize);
    for c in body.chunks_exact(8) {
        let s = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let d = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        if s >= n || d >= n {
            return Err(format!(
                "DAG1: edge ({s}, {d}) names a node >= the node count {n}"
            ));
        }
        edges.push((s, d));
    }
    Ok(Dag { n, edges })
}

/// The one-model schema benches use: `Node` with a `deps` list of references to `Node`.
pub const NODE_SCHEMA: &str = r#"{"models": [{"name": "Node",
  "fields": [{"name": "deps", "type": "refs"}],
  "links": [{"field": "deps", "target": "Node"}]}]}"#;

/// A change set creating every node of `dag`, each linking to its predecessors.
pub fn change_set(dag: &Dag) -> ChangeSet {
    let mut preds: Vec<Vec<String>> = vec![Vec::new(); dag.n as usize];
    for &(s, d) in &dag.edges {
        preds[d as usize].push(format!("n{s}"));
    }
    let changes = preds
        .into_iter()
        .enumerate()
        .map(|(i, p)| Change::upsert(format!("n{i}"), "Node", [("deps", Value::Refs(p))]))
        .collect();
    ChangeSet { changes }
}

/// Measurements of one bench.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// What graph.
    pub graph: String,
    /// Nodes.
    pub nodes: u32,
    /// Edges.
    pub edges: usize,
    /// FNV-1a checksum of the edge list.
    pub checksum: String,
    /// Time to apply the whole graph as one change set, s.
    pub apply_s: f64,
    /// Time of the first plan, s.
    pub plan_s: f64,
    /// Tasks in that plan.
    pub plan_tasks: usize,
    /// Waves in that plan.
    pub plan_waves: usize,
    /// Time to execute everything with a no-op actuator (plan, run each task, complete), s.
    pub execute_s: f64,
    /// Actuations executed.
    pub actuations: u64,
    /// Plan rounds the execution took.
    pub rounds: u64,
    /// Worker threads of the engine's executor run.
    pub threads: usize,
    /// Time to execute everything on the engine's executor (plan, run on `threads` threads
    /// with a no-op actuator, complete the run), s.
    pub executor_s: f64,
    /// Actuations the executor ran.
    pub executor_actuations: u64,
}

/// The no-op actuator the execution measurements call.
struct Noop;

impl Actuator for Noop {
    fn sync(&self, _: &ObjectView<'_>) -> Outcome {
        Outcome::ok()
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Loads `dag` into an engine, plans, and executes it to convergence.
///
/// # Errors
/// If the engine refuses the graph (for example a cycle in a DAG1 file).
pub fn run(dag: &Dag, name: String, threads: usize) -> Result<Report, String> {
    let schema = Schema::from_json(NODE_SCHEMA).map_err(|e| e.to_string())?;
    let mut engine = Engine::new(schema.clone(), Config::default());
    let set = change_set(dag);
    let mut twin = Engine::new(schema, Config::default());
    twin.apply(set.clone())
        .map_err(|e| format!("the engine refused the graph: {e}"))?;
    let t = Instant::now();
    engine
        .apply(set)
        .map_err(|e| format!("the engine refused the graph: {e}"))?;
    let apply_s = secs(t.elapsed());
    let t = Instant::now();
    let plan = engine.plan(Time(0));
    let plan_s = secs(t.elapsed());
    let (plan_tasks, plan_waves) = (plan.tasks.len(), plan.wave_count());
    drop(plan);
    let t = Instant::now();
    let mut actuations = 0u64;
    let mut rounds = 0u64;
    loop {
        let plan = engine.plan(Time(0));
        if plan.tasks.is_empty() {
            break;
        }
        rounds += 1;
        for task in &plan.tasks {
            let _ = std::hint::black_box(engine.view(task.object).version());
            engine
                .complete(task, Outcome::ok(), Time(0))
                .map_err(|e| e.to_string())?;
            actuations += 1;
        }
    }
    let execute_s = secs(t.elapsed());

    // The same graph on the engine's work-stealing executor.
    let actuators = Actuators::new().with("Node", Noop);
    let executor = Executor::new(
        twin.schema(),
        &actuators,
        ExecConfig::new().threads(threads.max(1)),
    )
    .map_err(|e| e.to_string())?;
    let t = Instant::now();
    let mut executor_actuations = 0u64;
    loop {
        let plan = twin.plan(Time(0));
        if plan.tasks.is_empty() {
            break;
        }
        let report = executor.run(&twin, &plan);
        executor_actuations += report.counts().ok as u64;
        twin.complete_run(&plan, &report, Time(0))
            .map_err(|e| e.to_string())?;
    }
    let executor_s = secs(t.elapsed());
    Ok(Report {
        graph: name,
        nodes: dag.n,
        edges: dag.edges.len(),
        checksum: format!("{:016x}", checksum(dag)),
        apply_s,
        plan_s,
        plan_tasks,
        plan_waves,
        execute_s,
        actuations,
        rounds,
        threads: threads.max(1),
        executor_s,
        executor_actuations,
    })
}

/// `n` per second, readable.
fn rate(n: f64, s: f64) -> String {
    if s <= 0.0 {
        return "-".into();
    }
    let r = n / s;
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

/// The report as text.
pub fn text(r: &Report) -> String {
    format!(
        "graph    {}: {} nodes, {} edges, checksum {}\n\
         apply    {:>10.3} ms  {:>9} objects     {:>10}\n\
         plan     {:>10.3} ms  {:>9} tasks       {:>10}  ({} waves)\n\
         execute  {:>10.3} ms  {:>9} actuations  {:>10}  ({} round{}, one thread, no-op actuator: plan, call, complete)\n\
         executor {:>10.3} ms  {:>9} actuations  {:>10}  (the engine's executor on {} thread{}: plan, run, complete)\n",
        r.graph,
        r.nodes,
        r.edges,
        r.checksum,
        r.apply_s * 1e3,
        r.nodes,
        rate(f64::from(r.nodes), r.apply_s),
        r.plan_s * 1e3,
        r.plan_tasks,
        rate(r.plan_tasks as f64, r.plan_s),
        r.plan_waves,
        r.execute_s * 1e3,
        r.actuations,
        rate(r.actuations as f64, r.execute_s),
        r.rounds,
        if r.rounds == 1 { "" } else { "s" },
        r.executor_s * 1e3,
        r.executor_actuations,
        rate(r.executor_actuations as f64, r.executor_s),
        r.threads,
        if r.threads == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layered_matches_the_published_checksum() {
        let g = layered(100, 100, 4, 7, false, 1).unwrap();
        assert_eq!((g.n, g.edges.len()), (10_000, 39_600));
        assert_eq!(format!("{:016x}", checksum(&g)), "296679cb607c6f8b");
    }

    #[test]
    fn dag1_round_trips_and_refuses_truncation() {
        let g = layered(5, 4, 2, 1, true, 2).unwrap();
        let mut bytes = b"DAG1".to_vec();
        bytes.extend(u64::from(g.n).to_le_bytes());
        bytes.extend((g.edges.len() as u64).to_le_bytes());
        for &(s, d) in &g.edges {
            bytes.extend(s.to_le_bytes());
            bytes.extend(d.to_le_bytes());
        }
        assert_eq!(read_dag1(&bytes).unwrap(), g);
        assert!(read_dag1(&bytes[..bytes.len() - 3]).is_err());
        assert!(read_dag1(b"DAG2").is_err());
    }
}
