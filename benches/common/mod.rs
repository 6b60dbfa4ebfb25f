//! Shared benchmark graphs: the `layered` generator of `docs/bench-graphs.md` (SplitMix64,
//! Fisher-Yates shuffles, FNV-1a checksum), the `DAG1` file format, and a loader that turns a
//! graph into an engine whose objects each link to their predecessors.
#![allow(dead_code)]

use syncore::{Change, ChangeSet, Config, Engine, Rows, Schema, Value};

/// A DAG: `edges` are `(src, dst)`, meaning "dst depends on src".
pub struct Dag {
    /// Node count.
    pub n: u32,
    /// Edges in generator order.
    pub edges: Vec<(u32, u32)>,
}

/// SplitMix64, exactly as docs/bench-graphs.md specifies.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// `layered(W, L, D, seed, shuffle, comps)` from docs/bench-graphs.md.
pub fn layered(w: u32, l: u32, d: u32, seed: u64, shuffle: bool, comps: u32) -> Dag {
    let mut rng = SplitMix(seed);
    let n = w * l * comps;
    let mut edges = Vec::with_capacity((comps * (l - 1) * w * d) as usize);
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
    Dag { n, edges }
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

/// Reads a `DAG1` file.
pub fn read_dag1(bytes: &[u8]) -> Option<Dag> {
    if bytes.get(..4)? != b"DAG1" {
        return None;
    }
    let n = u64::from_le_bytes(bytes.get(4..12)?.try_into().ok()?) as u32;
    let e = u64::from_le_bytes(bytes.get(12..20)?.try_into().ok()?) as usize;
    let body = bytes.get(20..20 + e * 8)?;
    let edges = body
        .chunks_exact(8)
        .map(|c| {
            (
                u32::from_le_bytes(c[..4].try_into().unwrap()),
                u32::from_le_bytes(c[4..].try_into().unwrap()),
            )
        })
        .collect();
    Some(Dag { n, edges })
}

/// The one-model schema benches use: `Node` with a `deps` list of references to `Node`.
pub const NODE_SCHEMA: &str = r#"{"models": [{"name": "Node",
  "fields": [{"name": "deps", "type": "refs"}, {"name": "v", "type": "int"}],
  "links": [{"field": "deps", "target": "Node"}]}]}"#;

/// Object key of node `i`.
pub fn key(i: u32) -> String {
    format!("n{i}")
}

/// A change set creating every node of `dag`, each linking to its predecessors.
pub fn change_set(dag: &Dag) -> ChangeSet {
    let mut preds: Vec<Vec<String>> = vec![Vec::new(); dag.n as usize];
    for &(s, d) in &dag.edges {
        preds[d as usize].push(key(s));
    }
    let changes = preds
        .into_iter()
        .enumerate()
        .map(|(i, p)| Change::upsert(key(i as u32), "Node", [("deps", Value::Refs(p))]))
        .collect();
    ChangeSet { changes }
}

/// The same objects as [`change_set`], as [`Rows`] (one `deps` column, no map per object).
pub fn rows(dag: &Dag) -> Rows {
    let mut preds: Vec<Vec<String>> = vec![Vec::new(); dag.n as usize];
    for &(s, d) in &dag.edges {
        preds[d as usize].push(key(s));
    }
    let mut rows = Rows::new("Node", ["deps"]).expect("one column");
    rows.reserve(preds.len(), preds.len() * 8);
    for (i, p) in preds.into_iter().enumerate() {
        rows.push(&key(i as u32), [Value::Refs(p)])
            .expect("one value per row");
    }
    rows
}

/// An engine holding every node of `dag`, all pending.
pub fn load_engine(dag: &Dag) -> Engine {
    let mut engine = Engine::new(
        Schema::from_json(NODE_SCHEMA).expect("schema"),
        Config::default(),
    );
    engine.apply(change_set(dag)).expect("bench graph applies");
    engine
}

/// Predecessor keys of each node of `dag` (the references its `deps` field holds).
pub fn pred_keys(dag: &Dag) -> Vec<(String, Vec<String>)> {
    let mut preds: Vec<Vec<String>> = vec![Vec::new(); dag.n as usize];
    for &(s, d) in &dag.edges {
        preds[d as usize].push(key(s));
    }
    preds
        .into_iter()
        .enumerate()
        .map(|(i, p)| (key(i as u32), p))
        .collect()
}

/// The median of a finished criterion benchmark, in nanoseconds, read from its
/// `estimates.json` (`None` when it did not run in this invocation, e.g. filtered out).
pub fn median_ns(id: &str) -> Option<f64> {
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let path = std::path::Path::new(&dir)
        .join("criterion")
        .join(id)
        .join("new/estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    // Only results written by this process count.
    if modified < *START.get_or_init(std::time::SystemTime::now) {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

static START: std::sync::OnceLock<std::time::SystemTime> = std::sync::OnceLock::new();

/// Marks the start of this bench process (results older than this are not reported).
pub fn mark_start() {
    START.get_or_init(std::time::SystemTime::now);
}

/// Prints each measured figure beside its floor and the ratio, per `unit` items.
/// `rows`: (label, benchmark id, floor id, items).
pub fn print_ratios(title: &str, rows: &[(&str, String, String, u64)]) {
    let mut printed = false;
    for (label, id, floor, items) in rows {
        let (Some(a), Some(b)) = (median_ns(id), median_ns(floor)) else {
            continue;
        };
        if !printed {
            println!("\n{title}");
            println!(
                "{:<34} {:>14} {:>14} {:>8}",
                "", "measured", "floor", "ratio"
            );
            printed = true;
        }
        let per = |ns: f64| {
            if *items > 1 {
                format!("{:.3} us/item", ns / *items as f64 / 1000.0)
            } else {
                format!("{:.3} ms", ns / 1e6)
            }
        };
        println!("{label:<34} {:>14} {:>14} {:>7.2}x", per(a), per(b), a / b);
    }
}

/// Whether criterion's name filter (the first free argument; `a|b` alternatives matched as
/// substrings) selects a benchmark whose id contains `id`, so a bench can skip building a
/// large graph nothing will measure.
pub fn wanted(id: &str) -> bool {
    let mut args = std::env::args().skip(1);
    let mut filter = None;
    while let Some(a) = args.next() {
        if a.starts_with("--") {
            // Options that take a value.
            if matches!(
                a.as_str(),
                "--warm-up-time"
                    | "--measurement-time"
                    | "--sample-size"
                    | "--save-baseline"
                    | "--baseline"
                    | "--nresamples"
                    | "--noise-threshold"
                    | "--confidence-level"
                    | "--significance-level"
                    | "--profile-time"
                    | "--output-format"
                    | "--color"
                    | "--format"
            ) {
                args.next();
            }
            continue;
        }
        filter = Some(a);
        break;
    }
    match filter {
        None => true,
        Some(f) => f.split('|').any(|alt| id.contains(alt) || alt.contains(id)),
    }
}
