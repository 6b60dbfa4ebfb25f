//! Deterministic simulation: property-test the engine, the scheduler and your own
//! actuators under injected faults, in virtual time.
//!
//! ## What a simulation is
//! A seed picks everything ([`SimConfig::from_seed`]): a schema and a first graph
//! ([`gen`]), a stream of change sets, fault rates, actuation times, backoff settings and
//! the number of virtual lanes. [`Sim::run`] then drives the library's one scheduling
//! state machine, [`crate::sched::Scheduler`], in virtual time with
//! [`crate::sched::Lanes`] (lanes = [`SimConfig::lanes`], the scheduler's global
//! concurrency; [`SimConfig::model_limit`] caps each actuated model):
//! 1. the fault phase is a timeline fixed up front: [`SimConfig::steps`] arrivals of the
//!    change stream, `1..=change_gap_ms_max + 1` ms apart, each bringing the next change
//!    set and some reports from the owner of external objects (R17); they are scheduled at
//!    their own times, so they arrive while actuations are in flight (a refused set must
//!    leave the state untouched: atomicity);
//! 2. every task the scheduler dispatches calls its actuator at once, wrapped in a
//!    [`FaultyActuator`] (fail with a probability, defer, panic, fail the first k attempts,
//!    take virtual time), seeing the object as it is at dispatch; its outcome is delivered
//!    at `dispatch + duration`, and applied then (completion-driven: dependents are
//!    released at that moment, backoff counts from it);
//! 3. a change set arriving meanwhile gives an object in flight a newer version or a
//!    delete: that work waits for the running actuation (one lease per object), whose
//!    completion is then stale (R8). These in-flight updates, stale completions and deletes
//!    of objects with a sync in flight are counted in the [`SimReport`];
//! 4. the checker ([`Checker`]) looks at every input the scheduler takes: the effect, the
//!    plan after it, and each dispatch it made.
//!
//! Faults and changes stop at virtual time T, after the last arrival (most seeds: the
//! external owner then reports everything synced), and the run goes on until nothing is
//! in flight, scheduled or due. It must end by `T + actuation_max + backoff_max + (depth +
//! ceil(objects / lanes)) x (actuation_max + step) + step`, where `depth` is the longest
//! dependency chain at T, and be **live** ([`Checker::check_live`]): every object converged,
//! or waiting for something only the embedder controls (an external report; a delete's
//! live referrers, which a change set can delete or re-point), or held behind such a wait.
//! A referrer changed while the delete it references was pending is `Blocked` by that
//! delete, which waits for it: both wait for the embedder (R7). Any other stall fails the
//! seed, as does running past [`SimConfig::dispatches_max`] dispatches.
//!
//! ## Invariants checked at every input
//! * no task is dispatched before every prerequisite's accepted completion: its
//!   dependencies synced at their current version, a delete's referrers gone (R1, R7), and
//!   never while its object backs off (R5, R6);
//! * never two leases on one object: no dispatch of an object whose previous dispatch has
//!   not been delivered (S1);
//! * the plan after each input: holds are exactly the transitive dependents of failed,
//!   deferred and backing-off objects, naming the right root cause (R3, R4);
//! * backoff delays follow [`crate::BackoffPolicy::delay_ms`] from the delivery time,
//!   deferrals [`crate::BackoffPolicy::defer_ms`] (R5, R6);
//! * a completion is stale exactly when its object changed while it ran, and a stale
//!   completion never marks a newer version synced (R8);
//! * nothing is marked synced, or leaves the store, without a successful actuation; the
//!   only other change is a watch re-sync (R8, R9);
//! * refused change sets change nothing; convergence after faults stop, by the bound, and
//!   liveness (no deadlock) once quiet.
//!
//! The generated schemas ([`gen::schema_def`]) have links and trees, proxy links (R16),
//! `depends_on_models` (R1), external and passive models (R17) and watchers (R18); the
//! change stream deletes objects whatever their state, pending syncs, failures and syncs
//! in flight included.
//!
//! There is no thread count: the run is single-threaded in virtual time, and a seed gives
//! the same run, input for input, on any machine (R12). A scheduler trace can be recorded
//! ([`Sim::record`]: [`crate::trace::Event::sched_header`], then one
//! [`crate::trace::Event::DidInput`] per input) and replayed ([`crate::trace::replay`]).
//!
//! ## Seeds
//! [`seeds`] reads `SYNCORE_SEED` (one seed, to replay a failure) and `SYNCORE_SIM_SEEDS`
//! (how many), and [`check_seeds`] runs them, panicking with the failing seed first.
//!
//! # Examples
//! ```
//! use syncore::sim::{Sim, SimConfig};
//! let mut config = SimConfig::from_seed(3);
//! config.steps = 200;
//! let report = Sim::new(config)?.run()?;
//! assert!(report.converged_at >= report.healed_at);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Your own actuators, under faults:
//! ```
//! use syncore::sim::{Faults, Sim, SimConfig};
//! use syncore::{Actuator, Actuators, Config, Engine, ObjectView, Outcome, Schema};
//! struct Mine;
//! impl Actuator for Mine {
//!     fn sync(&self, o: &ObjectView<'_>) -> Outcome {
//!         Outcome::ok_with([("seen", o.version() as i64)])
//!     }
//! }
//! let schema = Schema::from_json(r#"{"models": [{"name": "Net"},
//!   {"name": "Port", "fields": [{"name": "net", "type": "ref"}],
//!    "feedback": [{"name": "seen", "type": "int"}],
//!    "links": [{"field": "net", "target": "Net"}]}]}"#)?;
//! let mut config = SimConfig::from_seed(11);
//! config.steps = 100;
//! config.faults = Faults { fail_permille: 200, ..Faults::default() };
//! let engine = Engine::new(schema, Config::default());
//! let report = Sim::with_engine(config, engine, &Actuators::new().with("Port", Mine))?.run()?;
//! assert!(report.steps > 100);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod check;
mod driver;
mod faults;
pub mod gen;
mod rng;
#[cfg(feature = "proptest")]
pub mod strategy;
mod world;

pub use check::{Checker, Violation};
pub use driver::{Sim, SimConfig, SimError, SimFailure, SimReport};
pub use faults::{FaultSwitch, Faults, FaultyActuator};
pub use rng::SplitMix64;

/// The seeds to run: `SYNCORE_SEED` if set (replaying one failure), else
/// `0..SYNCORE_SIM_SEEDS` (default `default_count`).
pub fn seeds(default_count: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("SYNCORE_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return vec![seed];
    }
    let n = std::env::var("SYNCORE_SIM_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default_count);
    (0..n).collect()
}

/// Runs `run` for every seed of [`seeds`]; panics at the first failure with its message,
/// which starts with the seed and `SYNCORE_SEED=<seed>`.
///
/// # Panics
/// On the first failing seed (meant for tests).
pub fn check_seeds<T, E: std::fmt::Display>(
    default_count: u64,
    mut run: impl FnMut(u64) -> Result<T, E>,
) -> Vec<T> {
    let mut out = Vec::new();
    for seed in seeds(default_count) {
        match run(seed) {
            Ok(t) => out.push(t),
            Err(e) => panic!("SYNCORE_SEED={seed}: {e}"),
        }
    }
    out
}

/// [`check_seeds`] on every available core: seeds are handed out in order, results come
/// back in seed order, and the failure reported is the smallest failing seed's.
///
/// # Panics
/// If a seed fails (meant for tests).
pub fn check_seeds_parallel<T, E>(
    default_count: u64,
    run: impl Fn(u64) -> Result<T, E> + Sync,
) -> Vec<T>
where
    T: Send,
    E: std::fmt::Display + Send,
{
    let seeds = seeds(default_count);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(seeds.len().max(1));
    let mut results: Vec<(u64, Result<T, E>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    while !failed.load(std::sync::atomic::Ordering::Relaxed) {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&seed) = seeds.get(i) else { break };
                        let r = run(seed);
                        if r.is_err() {
                            failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        out.push((seed, r));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    results.sort_by_key(|(seed, _)| *seed);
    let mut out = Vec::with_capacity(results.len());
    for (seed, r) in results {
        match r {
            Ok(t) => out.push(t),
            Err(e) => panic!("SYNCORE_SEED={seed}: {e}"),
        }
    }
    out
}
