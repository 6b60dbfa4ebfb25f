//! Fault injection: [`Faults`] and the [`FaultyActuator`] wrapper.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::rng::mix;
use crate::actuator::{Actuator, ObjectView, Outcome, TaskKind};
use crate::clock::{Clock, VirtualClock};
use crate::id::Time;
use crate::value::Value;

/// Which faults to inject, and how long actuations take. Every option states its default
/// (no faults, instant actuations).
///
/// Decisions are a pure function of the seed, the model, the key, the version and the
/// attempt number, so they do not depend on thread scheduling.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Chance, in thousandths, that an actuation returns `Failed`. Default: 0.
    pub fail_permille: u32,
    /// Chance, in thousandths, that an actuation returns `Deferred`. Default: 0.
    pub defer_permille: u32,
    /// Chance, in thousandths, that an actuation panics. Default: 0.
    pub panic_permille: u32,
    /// The first this-many attempts at each version of each object fail. Default: 0.
    pub fail_first: u32,
    /// Shortest virtual time an actuation takes, in ms. Default: 0.
    pub duration_ms_min: u64,
    /// Longest virtual time an actuation takes, in ms. Default: 0.
    pub duration_ms_max: u64,
}

/// When faults stop: shared by every [`FaultyActuator`] of a simulation, so one call heals
/// them all. Faults are injected while the clock is before this time.
#[derive(Debug)]
pub struct FaultSwitch {
    until_ms: AtomicU64,
}

impl FaultSwitch {
    /// Faults until `until` (`None`: forever).
    pub fn new(until: Option<Time>) -> Arc<FaultSwitch> {
        Arc::new(FaultSwitch {
            until_ms: AtomicU64::new(until.map_or(u64::MAX, |t| t.0)),
        })
    }

    /// Stops all faults from time `t` on.
    pub fn stop_at(&self, t: Time) {
        self.until_ms.fetch_min(t.0, Ordering::SeqCst);
    }

    /// Whether faults are injected at `now`.
    pub fn active(&self, now: Time) -> bool {
        now.0 < self.until_ms.load(Ordering::SeqCst)
    }

    /// When faults stop (`None`: never).
    pub fn until(&self) -> Option<Time> {
        let t = self.until_ms.load(Ordering::SeqCst);
        (t != u64::MAX).then_some(Time(t))
    }
}

/// Wraps an actuator (or none: a no-op that reports `Ok`) with seeded faults and virtual
/// durations. Panics are raised with `resume_unwind`, which skips the panic hook, so the
/// simulator's output stays quiet; the simulator catches them at dispatch and delivers a failure.
///
/// The no-op writes the feedback field `seen` (the version) when the model has one, so
/// feedback writes are exercised too.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use syncore::sim::{Faults, FaultSwitch, FaultyActuator};
/// use syncore::{Time, VirtualClock};
/// let clock = Arc::new(VirtualClock::new(Time(0)));
/// let faults = Faults { fail_first: 1, duration_ms_min: 5, duration_ms_max: 5, ..Faults::default() };
/// let actuator = FaultyActuator::new("Site", None, faults, 42, clock, FaultSwitch::new(None));
/// # let _ = actuator;
/// ```
pub struct FaultyActuator {
    model: String,
    inner: Option<Arc<dyn Actuator>>,
    faults: Faults,
    seed: u64,
    clock: Arc<VirtualClock>,
    switch: Arc<FaultSwitch>,
    /// Attempts per (key, version) and the duration of each key's last actuation. Looked
    /// up only, never iterated.
    attempts: Mutex<HashMap<(String, u64), u32>>,
    durations: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for FaultyActuator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyActuator")
            .field("model", &self.model)
            .field("faults", &self.faults)
            .finish()
    }
}

/// What a fault decision says to do.
enum Decision {
    Pass,
    Fail(String),
    Defer,
    Panic,
}

impl FaultyActuator {
    /// Wraps `inner` (`None`: a no-op) for `model`, with `faults` drawn from `seed`, while
    /// `switch` is active at `clock`'s time.
    pub fn new(
        model: impl Into<String>,
        inner: Option<Arc<dyn Actuator>>,
        faults: Faults,
        seed: u64,
        clock: Arc<VirtualClock>,
        switch: Arc<FaultSwitch>,
    ) -> FaultyActuator {
        FaultyActuator {
            model: model.into(),
            inner,
            faults,
            seed,
            clock,
            switch,
            attempts: Mutex::new(HashMap::new()),
            durations: Mutex::new(HashMap::new()),
        }
    }

    /// The virtual time the last actuation of `key` took, in ms (0 if none).
    pub fn last_duration_ms(&self, key: &str) -> u64 {
        self.durations.lock().get(key).copied().unwrap_or(0)
    }

    /// The faults.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    fn decide(&self, key: &str, version: u64, kind: TaskKind) -> Decision {
        let attempt = {
            let mut attempts = self.attempts.lock();
            let a = attempts.entry((key.to_string(), version)).or_insert(0);
            *a += 1;
            *a - 1
        };
        let h = mix(
            &[self.seed, version, u64::from(attempt), kind as u64],
            &format!("{}/{key}", self.model),
        );
        let f = &self.faults;
        let span = f.duration_ms_max.saturating_sub(f.duration_ms_min);
        let duration = f.duration_ms_min + if span == 0 { 0 } else { (h >> 20) % (span + 1) };
        self.durations.lock().insert(key.to_string(), duration);
        if !self.switch.active(self.clock.now()) {
            return Decision::Pass;
        }
        if attempt < f.fail_first {
            return Decision::Fail(format!(
                "injected failure: attempt {} of the first {}",
                attempt + 1,
                f.fail_first
            ));
        }
        let r = (h % 1000) as u32;
        if r < f.fail_permille {
            Decision::Fail("injected failure".to_string())
        } else if r < f.fail_permille + f.defer_permille {
            Decision::Defer
        } else if r < f.fail_permille + f.defer_permille + f.panic_permille {
            Decision::Panic
        } else {
            Decision::Pass
        }
    }

    fn actuate(&self, object: &ObjectView<'_>, kind: TaskKind) -> Outcome {
        let key = object.key();
        match self.decide(key, object.version(), kind) {
            Decision::Fail(m) => Outcome::failed(m),
            Decision::Defer => Outcome::deferred("injected deferral"),
            Decision::Panic => {
                std::panic::resume_unwind(Box::new(format!("injected panic on {key}")));
            }
            Decision::Pass => match (&self.inner, kind) {
                (Some(a), TaskKind::Sync) => a.sync(object),
                (Some(a), TaskKind::Delete) => a.delete(object),
                (None, TaskKind::Sync) if object.feedback("seen").is_some() => {
                    Outcome::ok_with([("seen", Value::Int(object.version() as i64))])
                }
                (None, _) => Outcome::ok(),
            },
        }
    }
}

impl Actuator for FaultyActuator {
    fn sync(&self, object: &ObjectView<'_>) -> Outcome {
        self.actuate(object, TaskKind::Sync)
    }

    fn delete(&self, object: &ObjectView<'_>) -> Outcome {
        self.actuate(object, TaskKind::Delete)
    }
}
