//! The virtual-time driver: [`Lanes`] runs a [`Scheduler`] with simulated durations on N
//! lanes (the scheduler's global concurrency), reproducible from its inputs alone.
//!
//! Events are processed in virtual-time order: actuation ends (earliest first, ties by
//! dispatch order), then change sets and reports scheduled at that time (in the order
//! given), then a tick when [`Scheduler::next_wake`] comes. Each becomes an [`Input`]
//! applied with [`Scheduler::step`]; every task it dispatches asks the `actuate` closure
//! for its virtual duration and outcome, looking at the object as it is at dispatch.
//!
//! This is the only virtual-time loop: the simulator and the CLI's `syncore run` render
//! what it did; every scheduling decision is the [`Scheduler`]'s.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use super::{Dispatch, Effect, Input, Scheduler};
use crate::actuator::Outcome;
use crate::id::Time;

/// One actuation as it ran in virtual time.
#[derive(Clone, Debug, PartialEq)]
pub struct LaneSpan {
    /// The dispatch.
    pub dispatch: Dispatch,
    /// The lane it ran on (0-based).
    pub lane: u32,
    /// When it ended (delivered).
    pub end: Time,
    /// What it returned.
    pub outcome: Outcome,
    /// What the delivery did (`None` while still running at the end).
    pub effect: Option<Effect>,
}

/// What a virtual run did.
#[derive(Debug, Default)]
pub struct LaneRun {
    /// Every actuation, in dispatch order.
    pub spans: Vec<LaneSpan>,
    /// Every input applied, in order (replays with [`Scheduler::replay`]).
    pub inputs: Vec<Input>,
    /// What each scheduled input (change set or report) did, in the order given.
    pub effects: Vec<Effect>,
    /// The virtual time at the end.
    pub end: Time,
    /// Why the run ended.
    pub stop: LaneStop,
}

/// Why a virtual run ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LaneStop {
    /// Nothing was left to happen: no actuation running, no input scheduled, no wake-up.
    #[default]
    Idle,
    /// The next event came after the horizon ([`Lanes::until`]).
    Horizon,
    /// The dispatch budget ran out ([`Lanes::max_dispatches`]); actuations still running
    /// are left undelivered.
    MaxDispatches,
}

/// An input made at its time from the scheduler's state then (`None`: nothing to do).
type Scheduled<'a> = Box<dyn FnOnce(&Scheduler) -> Option<Input> + 'a>;

/// The virtual-time driver. See the [module docs](self).
pub struct Lanes<'a> {
    sched: &'a mut Scheduler,
    scheduled: BTreeMap<Time, Vec<Scheduled<'a>>>,
    horizon: Time,
    max_dispatches: usize,
}

impl<'a> Lanes<'a> {
    /// A driver of `sched`; lanes are its global concurrency ([`super::SchedConfig`]).
    pub fn new(sched: &'a mut Scheduler) -> Lanes<'a> {
        Lanes {
            sched,
            scheduled: BTreeMap::new(),
            horizon: Time(u64::MAX),
            max_dispatches: usize::MAX,
        }
    }

    /// Schedules an input (a change set or an external report) at its own time.
    pub fn at(self, input: Input) -> Self {
        let t = input.now();
        self.at_fn(t, move |_| Some(input))
    }

    /// Schedules an input made at time `t` from the scheduler's state then (for example an
    /// external report naming the version the object has at `t`); `None` skips it. The
    /// input's own time should be `t`.
    pub fn at_fn(mut self, t: Time, make: impl FnOnce(&Scheduler) -> Option<Input> + 'a) -> Self {
        self.scheduled.entry(t).or_default().push(Box::new(make));
        self
    }

    /// Stops the run once `n` tasks were dispatched (a budget against runs that never
    /// settle); see [`LaneStop::MaxDispatches`].
    pub fn max_dispatches(mut self, n: usize) -> Self {
        self.max_dispatches = n;
        self
    }

    /// Stops the run at `t` (re-syncs would otherwise go on forever): nothing after `t` is
    /// processed.
    pub fn until(mut self, t: Time) -> Self {
        self.horizon = t;
        self
    }

    /// Runs until nothing is left to happen (or the horizon, or the dispatch budget).
    /// `actuate` gives each dispatch, on its lane, its virtual duration (ms) and outcome;
    /// `observe` is called after every input with the scheduler, the input, what it did
    /// and what it dispatched (for invariant checks and rendering), before `actuate` is
    /// called for those dispatches.
    pub fn run(
        self,
        mut actuate: impl FnMut(&Scheduler, &Dispatch, u32) -> (u64, Outcome),
        mut observe: impl FnMut(&Scheduler, &Input, &Effect, &[Dispatch]),
    ) -> LaneRun {
        let Lanes {
            sched,
            mut scheduled,
            horizon,
            max_dispatches,
        } = self;
        let mut run = LaneRun::default();
        // (end, dispatch order) -> span index.
        let mut running: BinaryHeap<Reverse<(Time, usize)>> = BinaryHeap::new();
        let mut free: BinaryHeap<Reverse<u32>> = BinaryHeap::new();
        let mut lanes_used = 0u32;
        let mut lane_of: Vec<u32> = Vec::new();
        let mut now = Time(0);
        let mut out = Vec::new();
        let mut first = true;
        let mut span_of: BTreeMap<u64, usize> = BTreeMap::new();
        loop {
            let next_end = running.peek().map(|Reverse((t, _))| *t);
            let next_input = scheduled.keys().next().copied();
            let next_wake = sched.next_wake();
            let input = if first {
                first = false;
                Input::Tick { now }
            } else {
                let Some(t) = [next_end, next_input, next_wake]
                    .into_iter()
                    .flatten()
                    .min()
                else {
                    break;
                };
                if t > horizon {
                    run.stop = LaneStop::Horizon;
                    break;
                }
                now = now.max(t);
                if next_end == Some(t) {
                    let Reverse((_, i)) = running.pop().expect("peeked");
                    free.push(Reverse(lane_of[i]));
                    let s = &run.spans[i];
                    Input::Deliver {
                        lease: s.dispatch.lease,
                        outcome: s.outcome.clone(),
                        now,
                    }
                } else if next_input == Some(t) {
                    let mut list = scheduled.remove(&t).expect("peeked");
                    let make = list.remove(0);
                    if !list.is_empty() {
                        scheduled.insert(t, list);
                    }
                    match make(sched) {
                        Some(input) => input,
                        None => continue,
                    }
                } else {
                    Input::Tick { now }
                }
            };
            run.inputs.push(input.clone());
            out.clear();
            let delivered = match &input {
                Input::Deliver { lease, .. } => Some(*lease),
                _ => None,
            };
            let scheduled_input = matches!(input, Input::Apply { .. } | Input::Report { .. });
            let effect = sched.step(input.clone(), &mut out);
            if let Some(lease) = delivered {
                if let Some(&i) = span_of.get(&lease.seq) {
                    run.spans[i].effect = Some(effect.clone());
                }
            }
            if scheduled_input {
                run.effects.push(effect.clone());
            }
            observe(sched, &input, &effect, &out);
            for d in &out {
                let lane = free.pop().map(|Reverse(l)| l).unwrap_or_else(|| {
                    lanes_used += 1;
                    lanes_used - 1
                });
                let (ms, outcome) = actuate(sched, d, lane);
                let i = run.spans.len();
                span_of.insert(d.lease.seq, i);
                lane_of.push(lane);
                run.spans.push(LaneSpan {
                    dispatch: *d,
                    lane,
                    end: now.after(ms),
                    outcome,
                    effect: None,
                });
                running.push(Reverse((now.after(ms), i)));
            }
            if run.spans.len() >= max_dispatches {
                run.stop = LaneStop::MaxDispatches;
                break;
            }
        }
        run.end = now;
        run
    }
}
