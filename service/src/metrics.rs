//! Counters and histograms of the service, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::log::{LogStats, FSYNC_BUCKETS_S};

/// Upper bounds, in seconds, of the latency histograms.
pub const LATENCY_BUCKETS_S: [f64; 12] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A fixed-bucket histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_S.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation of `secs` seconds.
    pub fn observe(&self, secs: f64) {
        let i = LATENCY_BUCKETS_S
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS_S.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add((secs * 1e9) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut acc = 0;
        for (i, b) in LATENCY_BUCKETS_S.iter().enumerate() {
            acc += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {acc}");
        }
        acc += self.buckets[LATENCY_BUCKETS_S.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {acc}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {acc}");
    }
}

/// Everything `GET /metrics` reports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Tasks planned and not yet started.
    pub queue_depth: AtomicU64,
    /// Actuations running.
    pub in_flight: AtomicU64,
    /// Objects in the store.
    pub objects: AtomicU64,
    /// Change sets accepted.
    pub applies: AtomicU64,
    /// Change sets refused.
    pub refused: AtomicU64,
    /// Actuations that were a retry (attempt > 1), from the scheduler's counters.
    pub retries: AtomicU64,
    /// Actuations the scheduler failed for running past their model's timeout.
    pub timed_out: AtomicU64,
    /// Outcomes that came after their lease had timed out (dropped, changing nothing).
    pub late: AtomicU64,
    /// Actuations by (model, outcome), from the scheduler's metrics (since start).
    pub actuations: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Actuation latency by model.
    pub actuation_latency: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
    /// From request to durable acknowledgement of a change set.
    pub apply_latency: Histogram,
    /// From a task becoming dispatchable (its plan) to its start.
    pub dispatch_wait: Histogram,
}

impl Metrics {
    /// Records the latency of one finished actuation of `model`.
    pub fn actuated(&self, model: &str, secs: f64) {
        let h = self
            .actuation_latency
            .lock()
            .entry(model.to_string())
            .or_default()
            .clone();
        h.observe(secs);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, log: &LogStats) -> String {
        let mut out = String::with_capacity(4096);
        let g = |out: &mut String, name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        g(
            &mut out,
            "syncore_queue_depth",
            "gauge",
            "Tasks dispatchable and not started.",
            load(&self.queue_depth),
        );
        g(
            &mut out,
            "syncore_in_flight",
            "gauge",
            "Actuations running.",
            load(&self.in_flight),
        );
        g(
            &mut out,
            "syncore_objects",
            "gauge",
            "Objects in the store.",
            load(&self.objects),
        );
        g(
            &mut out,
            "syncore_change_sets_total",
            "counter",
            "Change sets accepted.",
            load(&self.applies),
        );
        g(
            &mut out,
            "syncore_change_sets_refused_total",
            "counter",
            "Change sets refused.",
            load(&self.refused),
        );
        g(
            &mut out,
            "syncore_retries_total",
            "counter",
            "Actuations that were retries.",
            load(&self.retries),
        );
        g(
            &mut out,
            "syncore_timed_out_total",
            "counter",
            "Actuations failed by their model's timeout.",
            load(&self.timed_out),
        );
        g(
            &mut out,
            "syncore_late_outcomes_total",
            "counter",
            "Outcomes that came after their lease timed out (ignored).",
            load(&self.late),
        );
        let _ = writeln!(out, "# HELP syncore_actuations_total Actuations finished, by model and outcome.\n# TYPE syncore_actuations_total counter");
        for ((model, outcome), n) in self.actuations.lock().iter() {
            let _ = writeln!(
                out,
                "syncore_actuations_total{{model=\"{model}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP syncore_actuation_seconds Actuation latency, by model.\n# TYPE syncore_actuation_seconds histogram");
        for (model, h) in self.actuation_latency.lock().iter() {
            h.render(
                &mut out,
                "syncore_actuation_seconds",
                &format!("model=\"{model}\""),
            );
        }
        let _ = writeln!(out, "# HELP syncore_apply_seconds From request to durable acknowledgement of a change set.\n# TYPE syncore_apply_seconds histogram");
        self.apply_latency
            .render(&mut out, "syncore_apply_seconds", "");
        let _ = writeln!(out, "# HELP syncore_dispatch_wait_seconds From a task's plan to its start.\n# TYPE syncore_dispatch_wait_seconds histogram");
        self.dispatch_wait
            .render(&mut out, "syncore_dispatch_wait_seconds", "");
        g(
            &mut out,
            "syncore_log_bytes",
            "gauge",
            "Bytes held by the input log (entries and snapshots).",
            log.bytes,
        );
        g(
            &mut out,
            "syncore_log_entries",
            "gauge",
            "Entries held by the input log.",
            log.entries,
        );
        g(
            &mut out,
            "syncore_log_appended_total",
            "counter",
            "Entries appended since start.",
            log.appended,
        );
        g(
            &mut out,
            "syncore_log_commits_total",
            "counter",
            "Log commits (one fsync each) since start.",
            log.commits,
        );
        g(
            &mut out,
            "syncore_log_snapshots_total",
            "counter",
            "Snapshots written since start.",
            log.snapshots,
        );
        let _ = writeln!(out, "# HELP syncore_log_fsync_seconds Log commit (fsync) time.\n# TYPE syncore_log_fsync_seconds histogram");
        let mut acc = 0;
        for (i, b) in FSYNC_BUCKETS_S.iter().enumerate() {
            acc += log.fsync_buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "syncore_log_fsync_seconds_bucket{{le=\"{b}\"}} {acc}");
        }
        acc += log
            .fsync_buckets
            .get(FSYNC_BUCKETS_S.len())
            .copied()
            .unwrap_or(0);
        let _ = writeln!(out, "syncore_log_fsync_seconds_bucket{{le=\"+Inf\"}} {acc}");
        let _ = writeln!(
            out,
            "syncore_log_fsync_seconds_sum {}",
            log.fsync_total.as_secs_f64()
        );
        let _ = writeln!(out, "syncore_log_fsync_seconds_count {acc}");
        out
    }
}
