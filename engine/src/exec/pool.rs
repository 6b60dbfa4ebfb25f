//! The worker pool behind [`Executor::run`](super::Executor::run): per-run arrays, the
//! single-threaded path, and the work-stealing workers. The algorithm is described in the
//! module docs of [`crate::exec`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crossbeam::deque::{Injector, Steal, Stealer, Worker};
use crossbeam::queue::SegQueue;

use super::sync::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};
use super::{CancelToken, Executor, RunReport, Span, TaskState};
use crate::actuator::{Outcome, TaskKind};
use crate::clock::Clock;
use crate::engine::Engine;
use crate::plan::Plan;

/// The top bit of a pending counter: some dependency did not succeed.
const POISON: u32 = 1 << 31;
/// The rest of a pending counter: dependencies not yet settled.
const LOW: u32 = POISON - 1;
/// Idle rounds spent spinning, then yielding, before a worker sleeps.
const SPINS: u32 = 64;
const YIELDS: u32 = 16;
/// Longest sleep of an idle worker: bounds the cost of a wake-up lost to a race (the
/// pusher checks for sleepers without a fence, to keep the hot path cheap).
const NAP: Duration = Duration::from_micros(500);

/// What every worker reads: the plan, its inverted edges, the actuators.
struct Shared<'a> {
    exec: &'a Executor,
    engine: &'a Engine,
    plan: &'a Plan,
    cancel: Option<&'a CancelToken>,
    clock: Option<&'a dyn Clock>,
    t0: u64,
    /// Dependents of task `i`: `succ[succ_off[i]..succ_off[i + 1]]`.
    succ_off: Vec<u32>,
    succ: Vec<u32>,
    /// Dependencies counted for each task (edges that respect plan order).
    deps_count: Vec<u32>,
    /// Start and end of each actuation (empty unless timing is on).
    spans: Vec<(AtomicU64, AtomicU64)>,
    panics: AtomicUsize,
}

impl<'a> Shared<'a> {
    fn new(
        exec: &'a Executor,
        engine: &'a Engine,
        plan: &'a Plan,
        cancel: Option<&'a CancelToken>,
        clock: Option<&'a dyn Clock>,
        invert: bool,
    ) -> Shared<'a> {
        let n = if invert { plan.tasks.len() } else { 0 };
        let mut succ_off = vec![0u32; n + 1];
        let mut deps_count = vec![0u32; n];
        for (i, count) in deps_count.iter_mut().enumerate() {
            for &d in plan.deps(i) {
                // Plans list tasks in topological order; an edge that does not (a plan
                // not made by `Engine::plan`) is ignored rather than allowed to hang the run.
                if (d as usize) < i {
                    succ_off[d as usize + 1] += 1;
                    *count += 1;
                } else {
                    debug_assert!(false, "task {i} depends on later task {d}");
                }
            }
        }
        for i in 0..n {
            succ_off[i + 1] += succ_off[i];
        }
        let mut fill: Vec<u32> = succ_off[..n].to_vec();
        let mut succ = vec![0u32; succ_off[n] as usize];
        for i in 0..n {
            for &d in plan.deps(i) {
                if (d as usize) < i {
                    succ[fill[d as usize] as usize] = i as u32;
                    fill[d as usize] += 1;
                }
            }
        }
        let clock = clock.filter(|_| exec.config.timing);
        let spans = if clock.is_some() {
            (0..plan.tasks.len())
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect()
        } else {
            Vec::new()
        };
        Shared {
            exec,
            engine,
            plan,
            cancel,
            clock,
            t0: clock.map_or(0, |c| c.monotonic_ns()),
            succ_off,
            succ,
            deps_count,
            spans,
            panics: AtomicUsize::new(0),
        }
    }

    #[inline]
    fn dependents(&self, i: usize) -> &[u32] {
        &self.succ[self.succ_off[i] as usize..self.succ_off[i + 1] as usize]
    }

    #[inline]
    fn cancelled(&self) -> bool {
        self.cancel.is_some_and(CancelToken::is_cancelled)
    }

    /// Calls task `i`'s actuator; a panic becomes `Failed` for this object only.
    #[inline]
    fn actuate(&self, i: usize) -> Outcome {
        let task = self.plan.tasks[i];
        let m = task.model.index();
        let Some(Some(actuator)) = self.exec.actuators.get(m) else {
            let name = self.exec.names.get(m).map_or("?", String::as_str);
            return Outcome::failed(format!("no actuator for model {name}"));
        };
        let start = self.clock.map(|c| c.monotonic_ns());
        let result = catch_unwind(AssertUnwindSafe(|| {
            let view = self.engine.view(task.object);
            match task.kind {
                TaskKind::Sync => actuator.sync(&view),
                TaskKind::Delete => actuator.delete(&view),
            }
        }));
        if let (Some(c), Some(start)) = (self.clock, start) {
            let end = c.monotonic_ns();
            self.spans[i]
                .0
                .store(start.saturating_sub(self.t0), Ordering::Relaxed);
            self.spans[i]
                .1
                .store(end.saturating_sub(self.t0), Ordering::Relaxed);
        }
        match result {
            Ok(outcome) => outcome,
            Err(payload) => {
                self.panics.fetch_add(1, Ordering::Relaxed);
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_string());
                Outcome::failed(format!(
                    "actuator for {} panicked: {message}",
                    self.exec.names[m]
                ))
            }
        }
    }

    /// The root cause holding task `i`, if a dependency did not succeed (R3): the failed
    /// dependency itself, or the root holding it; the one with the smallest key if
    /// several (R4).
    #[inline]
    fn held_by(&self, states: &[TaskState], i: usize) -> Option<usize> {
        let mut by: Option<usize> = None;
        for &d in self.plan.deps(i) {
            let root = match states.get(d as usize) {
                Some(TaskState::Ran { outcome, .. }) if !outcome.is_ok() => d as usize,
                Some(TaskState::Held { by }) if (d as usize) < i => *by,
                _ => continue,
            };
            by = Some(match by {
                Some(b) if self.key_of(b) <= self.key_of(root) => b,
                _ => root,
            });
        }
        by
    }

    /// The key of task `i`'s object.
    fn key_of(&self, i: usize) -> &str {
        self.engine.key(self.plan.tasks[i].object)
    }

    /// Builds the report: `states` holds every task run, `NotRun` elsewhere; tasks not run
    /// behind a dependency that did not succeed become `Held`, in plan order.
    fn report(self, mut states: Vec<TaskState>, cancelled: bool, threads: usize) -> RunReport {
        for i in 0..states.len() {
            if matches!(states[i], TaskState::NotRun) {
                if let Some(by) = self.held_by(&states, i) {
                    states[i] = TaskState::Held { by };
                }
            }
        }
        debug_assert!(
            cancelled || states.iter().all(|s| !matches!(s, TaskState::NotRun)),
            "every task settles unless cancelled"
        );
        RunReport {
            states,
            spans: self
                .spans
                .into_iter()
                .map(|(s, e)| Span {
                    start_ns: s.into_inner(),
                    end_ns: e.into_inner(),
                })
                .collect(),
            cancelled,
            panics: self.panics.into_inner(),
            threads,
        }
    }
}

/// Runs `plan` (see [`Executor::run`]).
pub(super) fn run(
    exec: &Executor,
    engine: &Engine,
    plan: &Plan,
    cancel: Option<&CancelToken>,
    clock: Option<&dyn Clock>,
) -> RunReport {
    let n = plan.tasks.len();
    let threads = exec.config.threads.clamp(1, n.max(1));
    let shared = Shared::new(exec, engine, plan, cancel, clock, threads > 1);
    if threads == 1 {
        return run_single(shared);
    }
    let workers: Vec<Worker<u32>> = (0..threads).map(|_| Worker::new_fifo()).collect();
    let pool = Pool::new(&shared, workers.iter().map(Worker::stealer).collect());
    let results: Vec<Vec<(u32, Outcome)>> = std::thread::scope(|scope| {
        let mut workers = workers.into_iter().enumerate();
        let (_, mine) = workers.next().expect("at least two workers");
        let pool = &pool;
        let handles: Vec<_> = workers
            .map(|(lane, local)| scope.spawn(move || pool.work(lane as u16, &local)))
            .collect();
        let mut all = vec![pool.work(0, &mine)];
        for h in handles {
            // A worker only panics on a bug of its own (actuator panics are caught).
            all.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        all
    });
    let cancelled = pool.finished.load(Ordering::SeqCst) < n;
    drop(pool);
    let mut states: Vec<TaskState> = vec![TaskState::NotRun; n];
    for (lane, done) in results.into_iter().enumerate() {
        for (i, outcome) in done {
            states[i as usize] = TaskState::Ran {
                outcome,
                lane: lane as u16,
            };
        }
    }
    shared.report(states, cancelled, threads)
}

/// One thread, on the caller's: plan order is a topological order, so the tasks simply run
/// in it, each unless a dependency did not succeed (then it is held, R3).
fn run_single(sh: Shared<'_>) -> RunReport {
    let n = sh.plan.tasks.len();
    let mut states: Vec<TaskState> = Vec::with_capacity(n);
    let mut cancelled = false;
    for i in 0..n {
        let state = match sh.held_by(&states, i) {
            Some(by) => TaskState::Held { by },
            None if cancelled || sh.cancelled() => {
                cancelled = true;
                TaskState::NotRun
            }
            None => TaskState::Ran {
                outcome: sh.actuate(i),
                lane: 0,
            },
        };
        states.push(state);
    }
    sh.report(states, cancelled, 1)
}

/// A model's concurrency limit: permits and the tasks waiting for one.
struct Gate {
    max: u32,
    in_flight: AtomicU32,
    waiting: SegQueue<u32>,
}

impl Gate {
    fn try_acquire(&self) -> bool {
        let mut cur = self.in_flight.load(Ordering::SeqCst);
        loop {
            if cur >= self.max {
                return false;
            }
            match self.in_flight.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(seen) => cur = seen,
            }
        }
    }

    fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What one worker owns: its deque, a stack for holds, the outcomes it produced.
struct Local<'q> {
    queue: &'q Worker<u32>,
    held: Vec<u32>,
    out: Vec<(u32, Outcome)>,
}

/// The multi-threaded state of one run.
struct Pool<'s, 'a> {
    sh: &'s Shared<'a>,
    n: usize,
    /// Dependencies pending, and [`POISON`] once one did not succeed.
    pending: Box<[AtomicU32]>,
    /// Concurrency limit of each model, by model id (empty: no limits at all).
    gates: Vec<Option<Gate>>,
    injector: Injector<u32>,
    stealers: Vec<Stealer<u32>>,
    /// Tasks settled (run or held), published by workers when they run out of work.
    finished: AtomicUsize,
    /// Set when the run is over (all settled, or cancelled).
    stop: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

impl<'s, 'a> Pool<'s, 'a> {
    fn new(sh: &'s Shared<'a>, stealers: Vec<Stealer<u32>>) -> Pool<'s, 'a> {
        let n = sh.plan.tasks.len();
        let injector = Injector::new();
        for (i, &c) in sh.deps_count.iter().enumerate() {
            if c == 0 {
                injector.push(i as u32);
            }
        }
        let gates = if sh.exec.limits.iter().any(|&l| l > 0) {
            sh.exec
                .limits
                .iter()
                .map(|&max| {
                    (max > 0).then(|| Gate {
                        max,
                        in_flight: AtomicU32::new(0),
                        waiting: SegQueue::new(),
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        Pool {
            sh,
            n,
            pending: sh.deps_count.iter().map(|&c| AtomicU32::new(c)).collect(),
            gates,
            injector,
            stealers,
            finished: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    /// A worker's loop: its own deque, then stealing, then spinning, then sleeping.
    /// Returns the outcomes of the tasks it ran.
    fn work(&self, lane: u16, local: &Worker<u32>) -> Vec<(u32, Outcome)> {
        let mut me = Local {
            queue: local,
            held: Vec::new(),
            out: Vec::with_capacity(self.n / self.stealers.len().max(1) + 64),
        };
        let mut settled = 0usize;
        let mut idle = 0u32;
        loop {
            if let Some(i) = local.pop().or_else(|| self.steal(lane, local)) {
                idle = 0;
                if self.sh.cancelled() {
                    self.halt();
                    return me.out;
                }
                settled += self.process(i as usize, &mut me);
                continue;
            }
            if settled > 0 {
                let total = self.finished.fetch_add(settled, Ordering::AcqRel) + settled;
                settled = 0;
                if total == self.n {
                    self.halt();
                    return me.out;
                }
            }
            if self.stop.load(Ordering::Acquire) {
                return me.out;
            }
            if self.sh.cancelled() {
                self.halt();
                return me.out;
            }
            idle += 1;
            if idle < SPINS {
                std::hint::spin_loop();
            } else if idle < SPINS + YIELDS {
                std::thread::yield_now();
            } else {
                self.sleep();
            }
        }
    }

    fn steal(&self, lane: u16, local: &Worker<u32>) -> Option<u32> {
        loop {
            let mut retry = false;
            match self.injector.steal_batch_and_pop(local) {
                Steal::Success(i) => return Some(i),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            let t = self.stealers.len();
            for k in 1..t {
                match self.stealers[(lane as usize + k) % t].steal_batch_and_pop(local) {
                    Steal::Success(i) => return Some(i),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            if !retry {
                return None;
            }
        }
    }

    fn has_work(&self) -> bool {
        !self.injector.is_empty() || self.stealers.iter().any(|s| !s.is_empty())
    }

    fn sleep(&self) {
        let mut guard = self.lock.lock();
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        if !self.stop.load(Ordering::SeqCst) && !self.has_work() && !self.sh.cancelled() {
            self.wake.wait_for(&mut guard, NAP);
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    fn halt(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _guard = self.lock.lock();
        self.wake.notify_all();
    }

    /// Runs task `i`, or queues it behind its model's limit; returns the tasks settled.
    #[inline]
    fn process(&self, i: usize, me: &mut Local<'_>) -> usize {
        if !self.gates.is_empty() {
            let m = self.sh.plan.tasks[i].model.index();
            if let Some(Some(gate)) = self.gates.get(m) {
                return self.run_gated(gate, i, me);
            }
        }
        self.run_one(i, me)
    }

    /// Queue first, then try for a permit: whoever releases a permit looks at the queue
    /// after releasing, so a queued task is never stranded (both sides fence).
    fn run_gated(&self, gate: &Gate, i: usize, me: &mut Local<'_>) -> usize {
        gate.waiting.push(i as u32);
        let mut settled = 0;
        loop {
            fence(Ordering::SeqCst);
            if gate.waiting.is_empty() || !gate.try_acquire() {
                return settled;
            }
            match gate.waiting.pop() {
                Some(j) => {
                    if self.sh.cancelled() {
                        gate.release();
                        self.halt();
                        return settled;
                    }
                    settled += self.run_one(j as usize, me);
                    gate.release();
                }
                None => gate.release(),
            }
        }
    }

    #[inline]
    fn run_one(&self, i: usize, me: &mut Local<'_>) -> usize {
        let outcome = self.sh.actuate(i);
        let ok = outcome.is_ok();
        me.out.push((i as u32, outcome));
        let mut settled = 1;
        for &d in self.sh.dependents(i) {
            let counter = &self.pending[d as usize];
            if !ok {
                counter.fetch_or(POISON, Ordering::AcqRel);
            }
            // The decrement that reaches zero sees every poison set before the other
            // decrements (each dependency poisons before it decrements).
            let prev = counter.fetch_sub(1, Ordering::AcqRel);
            if prev & LOW == 1 {
                if prev & POISON == 0 {
                    me.queue.push(d);
                } else {
                    settled += self.hold(d, &mut me.held);
                }
            }
        }
        // Sleepers first: it is read-mostly, while the deque's length reads a line the
        // stealers write.
        if self.sleepers.load(Ordering::Relaxed) > 0 && me.queue.len() > 1 {
            let _guard = self.lock.lock();
            self.wake.notify_one();
        }
        settled
    }

    /// Settles `d` as held and poisons its dependents, transitively (R3).
    fn hold(&self, d: u32, held: &mut Vec<u32>) -> usize {
        held.push(d);
        let mut count = 0;
        while let Some(h) = held.pop() {
            count += 1;
            for &e in self.sh.dependents(h as usize) {
                let counter = &self.pending[e as usize];
                counter.fetch_or(POISON, Ordering::AcqRel);
                let prev = counter.fetch_sub(1, Ordering::AcqRel);
                if prev & LOW == 1 {
                    held.push(e);
                }
            }
        }
        count
    }
}
