//! Engine memory at 1M objects / 4M edges (g1m_shuf): heap bytes per object, measured with
//! a counting allocator around loading the graph (field data included: each object holds
//! its `deps` list value as well as the edges derived from it), and the peak resident set
//! of a process that loads it, once through a `ChangeSet` (a field map per object) and once
//! through `Rows` (values by column). Each input runs in a child process of its own, so
//! each peak is that input's alone.
//!
//! Run: `cargo bench --bench memory`

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
/// The most `LIVE` has been since it was last reset.
static PEAK: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts bytes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live =
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed) + layout.size() as isize;
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The environment variable that makes the process a child measuring one input.
const INPUT: &str = "SYNCORE_MEMORY_INPUT";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    match std::env::var(INPUT).as_deref() {
        Ok("changeset") => measure(false),
        Ok("rows") => measure(true),
        _ => {
            for input in ["changeset", "rows"] {
                println!("== input: {input}");
                let out = std::process::Command::new(std::env::current_exe().expect("exe"))
                    .env(INPUT, input)
                    .output()
                    .expect("child runs");
                print!("{}", String::from_utf8_lossy(&out.stdout));
                eprint!("{}", String::from_utf8_lossy(&out.stderr));
                assert!(out.status.success(), "{input}: {}", out.status);
            }
        }
    }
}

fn measure(by_rows: bool) {
    let dag = common::layered(1000, 1000, 4, 42, true, 1);
    // Measured from before the input is built: `apply` consumes (and frees) it, so what
    // remains afterwards is the engine's.
    let before = LIVE.load(Ordering::Relaxed);
    let mut engine = syncore::Engine::new(
        syncore::Schema::from_json(common::NODE_SCHEMA).unwrap(),
        syncore::Config::default(),
    );
    let rss_graph = vm_kib("VmRSS:");
    let report = if by_rows {
        let rows = common::rows(&dag);
        let rss_input = vm_kib("VmRSS:");
        let r = engine.apply_rows(rows).unwrap();
        stages(rss_graph, rss_input);
        r
    } else {
        let set = common::change_set(&dag);
        let rss_input = vm_kib("VmRSS:");
        let r = engine.apply(set).unwrap();
        stages(rss_graph, rss_input);
        r
    };
    assert_eq!(report.changed.len(), dag.n as usize);
    drop(report);
    let peak_loading = vm_hwm_kib();
    let total = LIVE.load(Ordering::Relaxed) - before;
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    let live_before_plan = LIVE.load(Ordering::Relaxed);
    let plan = engine.plan(syncore::Time(0));
    let plan_peak = PEAK.load(Ordering::Relaxed) - live_before_plan;
    let with_scratch = LIVE.load(Ordering::Relaxed) - before - plan_bytes(&plan);
    let (n, e) = (f64::from(dag.n), dag.edges.len() as f64);
    // Field data: each object's `deps` value holds its predecessors' keys as Strings.
    // Summed in place: a copy of every list would raise the peak this bench reports.
    let mut field_bytes = 0usize;
    for i in 0..engine.len() {
        let view = engine.view(syncore::ObjectId(i as u32));
        for (_, v) in view.fields() {
            if let syncore::Value::Refs(ks) = v {
                field_bytes += ks.capacity() * 24 + ks.iter().map(String::capacity).sum::<usize>();
            }
        }
    }
    println!("objects {n}, edges {e}");
    println!(
        "engine heap after apply: {total} bytes = {:.1} B/object",
        total as f64 / n
    );
    println!(
        "  of which field data (refs lists): {field_bytes} bytes = {:.1} B/object",
        field_bytes as f64 / n
    );
    let core = total as f64 - field_bytes as f64;
    println!(
        "  engine without field data: {:.1} B/object, or {:.1} B/object + 16 B/edge",
        core / n,
        (core - 16.0 * e) / n
    );
    // The value slots themselves (a `Value` per field of every object) are field data by
    // another reading; printed beside, the bar is judged on the line above.
    let slots = (0..engine.len())
        .map(|i| {
            let view = engine.view(syncore::ObjectId(i as u32));
            view.fields().count() + view.feedbacks().count()
        })
        .sum::<usize>()
        * std::mem::size_of::<syncore::Value>();
    println!(
        "  engine without field data or the value slots holding it: {:.1} B/object",
        (core - slots as f64) / n
    );
    println!(
        "engine heap incl. plan scratch: {:.1} B/object",
        with_scratch as f64 / n
    );
    println!(
        "first plan: {:.1} B/object at its peak (plan and scratch), {:.1} B/object held after",
        plan_peak as f64 / n,
        (LIVE.load(Ordering::Relaxed) - live_before_plan) as f64 / n
    );
    println!(
        "engine.memory_bytes() estimate: {:.1} B/object",
        engine.memory_bytes() as f64 / n
    );
    println!(
        "  target: engine without field data at most 120 B/object + 8 B/edge = {:.1} B/object: {:.2}x",
        120.0 + 8.0 * e / n,
        core / n / (120.0 + 8.0 * e / n)
    );
    let peak_planned = vm_hwm_kib();
    drop(plan);
    drop(engine);
    for (what, hwm) in [
        ("loading (graph, input, apply)", peak_loading),
        ("loading, then the first plan", peak_planned),
    ] {
        if let Some(hwm) = hwm {
            let mb = hwm as f64 * 1024.0 / 1e6;
            println!(
                "peak RSS of the process (VmHWM), {what}: {mb:.0} MB; target 720 MB (2x Taskflow's 360 MB): {:.2}x",
                mb / 720.0
            );
        }
    }
}

/// The process's peak resident set (`VmHWM` in /proc/self/status), in KiB.
fn vm_hwm_kib() -> Option<u64> {
    vm_kib("VmHWM:")
}

/// A line of /proc/self/status, in KiB.
fn vm_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Where the resident set stood: with the graph generated, with the input built, after
/// `apply` (and the peak so far).
fn stages(graph: Option<u64>, input: Option<u64>) {
    let mb = |k: Option<u64>| k.map_or(f64::NAN, |k| k as f64 * 1024.0 / 1e6);
    println!(
        "resident set: graph generated {:.0} MB, input built {:.0} MB, after apply {:.0} MB (peak {:.0} MB)",
        mb(graph),
        mb(input),
        mb(vm_kib("VmRSS:")),
        mb(vm_hwm_kib())
    );
}

fn plan_bytes(plan: &syncore::Plan) -> isize {
    (plan.tasks.capacity() * std::mem::size_of::<syncore::Task>()
        + plan.edge_count() * 4
        + plan.tasks.len() * 4) as isize
}
