//! `run --executor threads`: the scenario on the library's real-time runtime
//! ([`syncore::runtime::Runtime`]: the same scheduler as the simulation, driven by tokio),
//! with `workers` threads running the actuators and a clock that runs `speed` times faster
//! than the wall clock.
//!
//! Actuations take their scenario duration (divided by `speed`) of real time, so workers
//! really overlap, and the timeline's change sets are sent while they run. Unlike the
//! default simulation the output depends on thread timing; the runtime records every input
//! it applied, and the timeline shown is rendered by replaying that record on a second
//! scheduler (checking each state hash against the live run's), so the trace `--json` writes
//! replays exactly.

use std::sync::Arc;
use std::time::Duration;

use syncore::runtime::{Registry, Runtime, RuntimeConfig};
use syncore::sched::{Effect, Scheduler};
use syncore::{Actuator, ExternalReport, ObjectView, Outcome, TaskKind};

use crate::check::Setup;
use crate::run::{sched_config, Event, Render, RunResult, Stop};

/// The scenario's duration rule: (key, model, kind) to ms.
type DurationFn = Arc<dyn Fn(&str, &str, TaskKind) -> u64 + Send + Sync>;

/// An actuator that takes its scenario duration of (scaled) real time.
struct Timed {
    inner: Arc<dyn Actuator>,
    speed: u64,
    duration: DurationFn,
}

impl Timed {
    fn wait(&self, o: &ObjectView<'_>, kind: TaskKind) {
        let ms = (self.duration)(o.key(), o.model(), kind);
        std::thread::sleep(Duration::from_micros(ms.saturating_mul(1000) / self.speed));
    }
}

impl Actuator for Timed {
    fn sync(&self, o: &ObjectView<'_>) -> Outcome {
        let outcome = self.inner.sync(o);
        self.wait(o, TaskKind::Sync);
        outcome
    }

    fn delete(&self, o: &ObjectView<'_>) -> Outcome {
        let outcome = self.inner.delete(o);
        self.wait(o, TaskKind::Delete);
        outcome
    }
}

/// Runs `setup` on the real-time runtime with `workers` threads; see the module docs.
///
/// # Errors
/// A message if the runtime cannot be built (a plugin, a missing actuator) or the replay
/// of its record does not reproduce the live run.
pub fn execute(
    setup: &Setup,
    speed: u64,
    observe: &mut dyn FnMut(&Event),
) -> Result<RunResult, String> {
    let speed = speed.max(1);
    let sched = Scheduler::new(setup.engine()?, sched_config(setup)).map_err(|e| e.to_string())?;
    let duration: DurationFn = Arc::new(setup.duration_fn());
    let mut registry = Registry::new();
    for (i, m) in setup.schema.models().iter().enumerate() {
        if let Some(a) = &setup.actuators[i] {
            let timed = Timed {
                inner: a.clone(),
                speed,
                duration: duration.clone(),
            };
            registry = registry.with_actuator(m.name.clone(), Arc::new(timed));
        }
    }
    let config = RuntimeConfig {
        blocking_threads: setup.settings.workers.max(1),
        record: true,
        time_scale: u32::try_from(speed).unwrap_or(u32::MAX),
        ..RuntimeConfig::default()
    };
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let (stopped, stop, end) = tokio.block_on(async {
        let rt = Runtime::start(sched, registry, config).map_err(|e| e.to_string())?;
        let h = rt.handle().clone();
        let begun = tokio::time::Instant::now();
        let real = |ms: u64| Duration::from_micros(ms.saturating_mul(1000) / speed);
        // The timeline, each set sent at its (scaled) time while actuations run.
        for set in &setup.sets {
            tokio::time::sleep_until(begun + real(set.at)).await;
            if !set.changes.is_empty() || set.reports.is_empty() {
                // A refused set is recorded and rendered like an applied one.
                let _ = h.apply(set.changes.clone()).await;
            }
            for (key, failed) in &set.reports {
                let k = key.clone();
                let Ok(Some(version)) = h
                    .query(move |s| s.engine().object(&k).map(|o| o.version))
                    .await
                else {
                    continue;
                };
                let report = match failed {
                    None => ExternalReport::Synced { version },
                    Some(message) => ExternalReport::Failed {
                        version,
                        message: message.clone(),
                    },
                };
                let _ = h.report_external(key.clone(), report).await;
            }
        }
        let max = setup.settings.actuations_max;
        let idle =
            h.wait_until(|s| s.in_flight() == 0 && s.queue_depth() == 0 && s.next_wake().is_none());
        let budget = h.wait_until(move |s| s.stats().dispatched >= max);
        let stop = tokio::select! {
            _ = idle => Stop::Idle,
            _ = budget => Stop::Actuations,
            _ = tokio::time::sleep_until(begun + real(setup.settings.end_ms)) => Stop::EndTime,
        };
        let end = u64::try_from(begun.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .saturating_mul(speed)
            / 1000;
        // Actuations still running finish (their outcomes are part of the record).
        let stopped = rt.shutdown(Duration::from_secs(30)).await;
        Ok::<_, String>((stopped, stop, end))
    })?;
    // Render by replaying the record on a second scheduler.
    let mut shadow = Scheduler::restore(&stopped.initial).map_err(|e| e.to_string())?;
    setup.register_hooks(shadow.engine_mut())?;
    setup.drain_watch_lines();
    crate::plugins::take_logs();
    let mut r = Render::new(setup, true, observe);
    r.header(&shadow, "real");
    let mut out = Vec::new();
    let mut last = 0;
    for (i, input) in stopped.trace.iter().enumerate() {
        out.clear();
        let effect: Effect = shadow.step(input.clone(), &mut out);
        if stopped.hashes.get(i) != Some(&shadow.state_hash()) {
            return Err(format!(
                "the runtime's record does not replay: state hash differs after input {}",
                i + 1
            ));
        }
        r.input(&shadow, i as u64 + 1, input, &effect, &out);
        for d in &out {
            let lane = r.free_lane();
            r.start(&shadow, d, lane);
        }
        last = input.now().0;
    }
    Ok(r.finish(&shadow, end.max(last), stop))
}
