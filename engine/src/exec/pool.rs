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

thread_local! {
    /// Set on the threads a multi-threaded run spawns (lane 0 runs on the caller's).
    static RUN_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is one a run spawned for itself: it ends with the run, so
/// nothing worth keeping across calls (a plugin's connections) should live on it.
#[cfg_attr(not(feature = "wasm"), allow(dead_code))]
pub(crate) fn on_run_thread() -> bool {
    RUN_THREAD.get()
}

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
    /// Dependents of node `k` (a task, or a model-level barrier after the tasks):
    /// `succ[succ_off[k]..succ_off[k + 1]]`.
    succ_off: Vec<u32>,
    succ: Vec<u32>,
    /// Dependencies counted for each node (edges that respect plan order).
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
        let tasks = plan.tasks.len();
        let nodes = if invert { plan.node_count() } else { 0 };
        // A barrier's place in plan order: its last member (`None`: it has none).
        let last_member: Vec<Option<usize>> = (tasks..nodes)
            .map(|k| plan.node_deps(k).iter().map(|&m| m as usize).max())
            .collect();
        // Plans list tasks in topological order, and a barrier's members are tasks before
        // its waiters; an edge that does not respect that (a plan not made by
        // `Engine::plan`) is ignored rather than allowed to hang the run.
        let respects = |k: usize, d: usize| -> bool {
            if k >= tasks {
                d < tasks
            } else if d < tasks {
                d < k
            } else {
                matches!(last_member.get(d - tasks), Some(Some(m)) if *m < k)
            }
        };
        let mut succ_off = vec![0u32; nodes + 1];
        let mut deps_count = vec![0u32; nodes];
        for (k, count) in deps_count.iter_mut().enumerate() {
            for &d in plan.node_deps(k) {
                if respects(k, d as usize) {
                    succ_off[d as usize + 1] += 1;
                    *count += 1;
                } else {
                    debug_assert!(false, "node {k} depends on node {d} out of plan order");
                }
            }
        }
        for k in 0..nodes {
            succ_off[k + 1] += succ_off[k];
        }
        let mut fill: Vec<u32> = succ_off[..nodes].to_vec();
        let mut succ = vec![0u32; succ_off[nodes] as usize];
        for k in 0..nodes {
            for &d in plan.node_deps(k) {
                if respects(k, d as usize) {
                    succ[fill[d as usize] as usize] = k as u32;
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
    /// several (R4). A model-level barrier's members count as dependencies; its root is
    /// computed once, at its first waiter (after all its members, in plan order), and kept
    /// in `barrier_roots`.
    #[inline]
    fn held_by(
        &self,
        states: &[TaskState],
        i: usize,
        barrier_roots: &mut [Option<Option<usize>>],
    ) -> Option<usize> {
        let mut by: Option<usize> = None;
        for &d in self.plan.deps(i) {
            if let Some(root) = Self::root_of(states, d as usize, i) {
                by = self.smaller(by, root);
            }
        }
        for b in self.plan.barrier_deps(i) {
            let root = match barrier_roots.get(b).copied().flatten() {
                Some(root) => root,
                None => {
                    let mut root = None;
                    for &m in self.plan.barrier_members(b) {
                        if let Some(r) = Self::root_of(states, m as usize, i) {
                            root = self.smaller(root, r);
                        }
                    }
                    if let Some(slot) = barrier_roots.get_mut(b) {
                        *slot = Some(root);
                    }
                    root
                }
            };
            if let Some(root) = root {
                by = self.smaller(by, root);
            }
        }
        by
    }

    /// The root cause dependency `d` of task `i` stands for, if it did not succeed.
    #[inline]
    fn root_of(states: &[TaskState], d: usize, i: usize) -> Option<usize> {
        match states.get(d) {
            Some(TaskState::Ran { outcome, .. }) if !outcome.is_ok() => Some(d),
            Some(TaskState::Held { by }) if d < i => Some(*by),
            _ => None,
        }
    }

    /// Of a root cause so far and another, the one with the smaller key (R4).
    fn smaller(&self, a: Option<usize>, b: usize) -> Option<usize> {
        Some(match a {
            Some(a) if self.key_of(a) <= self.key_of(b) => a,
            _ => b,
        })
    }

    /// The key of task `i`'s object.
    fn key_of(&self, i: usize) -> &str {
        self.engine.key(self.plan.tasks[i].object)
    }

    /// Builds the report: `states` holds every task run, `NotRun` elsewhere; tasks not run
    /// behind a dependency that did not succeed become `Held`, in plan order.
    fn report(self, mut states: Vec<TaskState>, cancelled: bool, threads: usize) -> RunReport {
        let mut barrier_roots = vec![None; self.plan.barriers.len()];
        for i in 0..states.len() {
            if matches!(states[i], TaskState::NotRun) {
                if let Some(by) = self.held_by(&states, i, &mut barrier_roots) {
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
            .map(|(lane, local)| {
                scope.spawn(move || {
                    RUN_THREAD.set(true);
                    pool.work(lane as u16, &local)
                })
            })
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
    let mut barrier_roots = vec![None; sh.plan.barriers.len()];
    for i in 0..n {
        let state = match sh.held_by(&states, i, &mut barrier_roots) {
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
        for (i, &c) in sh.deps_count.iter().enumerate().take(n) {
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
        let settled = 1 + self.settle_dependents(i, ok, me);
        // Sleepers first: it is read-mostly, while the deque's length reads a line the
        // stealers write.
        if self.sleepers.load(Ordering::Relaxed) > 0 && me.queue.len() > 1 {
            let _guard = self.lock.lock();
            self.wake.notify_one();
        }
        settled
    }

    /// Node `k` settled (`ok`: it succeeded): each dependent has one dependency fewer; one
    /// with none left is queued, or held if a dependency did not succeed. A barrier with
    /// no member left settles at once, the same way. Returns the tasks held.
    fn settle_dependents(&self, k: usize, ok: bool, me: &mut Local<'_>) -> usize {
        let mut settled = 0;
        for &d in self.sh.dependents(k) {
            let counter = &self.pending[d as usize];
            if !ok {
                counter.fetch_or(POISON, Ordering::AcqRel);
            }
            // The decrement that reaches zero sees every poison set before the other
            // decrements (each dependency poisons before it decrements).
            let prev = counter.fetch_sub(1, Ordering::AcqRel);
            if prev & LOW == 1 {
                if d as usize >= self.n {
                    // A barrier (R1, R7): its waiters are tasks, so this recurses once.
                    settled += self.settle_dependents(d as usize, prev & POISON == 0, me);
                } else if prev & POISON == 0 {
                    me.queue.push(d);
                } else {
                    settled += self.hold(d, &mut me.held);
                }
            }
        }
        settled
    }

    /// Settles `d` as held and poisons its dependents, transitively (R3); a barrier on
    /// the way is passed through (it is no task). Returns the tasks held.
    fn hold(&self, d: u32, held: &mut Vec<u32>) -> usize {
        held.push(d);
        let mut count = 0;
        while let Some(h) = held.pop() {
            if (h as usize) < self.n {
                count += 1;
            }
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
