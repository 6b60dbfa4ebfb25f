//! Planning: which tasks may run now, in what order, and why everything else is held.
//!
//! ## Algorithm
//! Only *unsettled* objects (work to do: a new version, an error, a deferral, a delete, an
//! external report missing) take part, so a plan costs O(unsettled objects and the edges to
//! their ancestors), not O(store) (R15).
//!
//! 1. **Prerequisites.** A live unsettled object waits for its nearest unsettled ancestors
//!    in the effective graph: a depth-first walk through its dependencies that passes
//!    *through* settled objects (R1: `c -> b -> a` with only `a` and `c` changed still
//!    orders `c` after `a`), plus every unsettled object of the models it
//!    `depends_on_models`. A deleting object waits for its deleting referrers and for the
//!    deleting objects of the models that depend on its model (R7); a live referrer makes
//!    it wait as `WaitingReferrers`.
//!
//!    A model-level wait is not expanded into one edge per pair of objects: each
//!    (model, live or deleting) waited for becomes one **barrier** node whose
//!    prerequisites are that model's unsettled live (or deleting) objects, and every
//!    waiting object has one edge to the barrier. 2,000 objects of `A` waiting for 2,000
//!    of `B` cost 4,000 edges, not 4,000,000 (R15).
//! 2. **Resolution**, in topological order of those prerequisites (Kahn): an object whose
//!    prerequisites are all tasks, and which is not itself backing off, becomes a task in
//!    wave `1 + max(wave of prerequisites)`; otherwise it is held, naming the root cause
//!    (the smallest key among the failing objects it transitively waits for, R4). A
//!    barrier folds its members once (largest wave, smallest root cause, whether one waits
//!    for an external object or for referrers) and hands the result to each of its waiters,
//!    which is exactly what the waiter would have folded from the members itself.
//!    Results are pushed, not pulled: a resolved node adds its share to each dependent as
//!    it counts it down (an 8-byte countdown in the common case, the rest of the record
//!    only for failing or waiting prerequisites), so no node reads its prerequisites'
//!    results; the fold is order-free (a max, an or, minimums by unique key).
//! 3. **Output**: tasks sorted by (wave, id) with their dependency edges (sorted), the
//!    barriers some task waits for with their member tasks, holds in id order, and the next
//!    wake time (the earliest backoff expiry among unblocked holds).
//!
//! Scratch arrays indexed by object id are kept between plans and invalidated by stamping,
//! so a plan never clears or allocates O(store) memory.

use serde::{Deserialize, Serialize};

use crate::actuator::TaskKind;
use crate::graph;
use crate::id::{ModelId, ObjectId, Time};
use crate::schema::{ModelKind, Schema};
use crate::store::Store;

/// One actuation the executor may run.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    bincode::Encode,
    bincode::Decode,
)]
pub struct Task {
    /// The object.
    pub object: ObjectId,
    /// Its model.
    pub model: ModelId,
    /// The declarative version the task enacts (R8: completions for older versions are stale).
    pub version: u64,
    /// Sync or delete.
    pub kind: TaskKind,
}

/// Why an unsettled object is not a task in this plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// A dependency (transitively) failed, is deferred, backing off, or being deleted; `by`
    /// is the root cause (R3, R4).
    Blocked {
        /// The root cause.
        by: ObjectId,
    },
    /// The object's own failure or deferral: eligible again at `until` (R5, R6).
    BackingOff {
        /// When it becomes eligible.
        until: Time,
    },
    /// An external object (this one or a dependency) has no matching report yet (R17).
    WaitingExternal {
        /// The external object.
        key: ObjectId,
    },
    /// A delete waits until these referrers are deleted or re-pointed (R7).
    WaitingReferrers {
        /// The referrers, in key order.
        keys: Vec<ObjectId>,
    },
    /// The embedder reported this external object failed (R17).
    ExternalFailed,
}

/// A held object and its reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct Hold {
    /// The object.
    pub object: ObjectId,
    /// Why it waits.
    pub reason: HoldReason,
}

/// Work counters of one plan (R15).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    bincode::Encode,
    bincode::Decode,
)]
pub struct PlanStats {
    /// Objects visited (unsettled ones and settled ancestors walked through).
    pub objects: u64,
    /// Edges examined.
    pub edges: u64,
}

/// A model-level barrier of a plan (R1, R7): it stands for every task of one model of one
/// kind (its syncs, or its deletes), and the tasks that wait for it wait for all of them.
///
/// A `depends_on_models` wait costs one edge per waiting task and one per member, not one
/// per pair of objects (R15).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    bincode::Encode,
    bincode::Decode,
)]
pub struct Barrier {
    /// The model waited for.
    pub model: ModelId,
    /// `Sync`: the model's unsettled live objects (R1, a model that `depends_on_models` it
    /// waits); `Delete`: its deleting objects (R7, the deletes of a model it depends on
    /// wait).
    pub kind: TaskKind,
}

/// What may run now: a DAG of tasks in waves, the held objects, and when to plan again.
///
/// The DAG has two kinds of node: tasks (`0..tasks.len()`) and model-level
/// [`Barrier`]s (`tasks.len()..`, see [`Plan::node_count`]). Task `i` may start once every
/// task in [`Plan::deps`]`(i)` has succeeded and every member
/// ([`Plan::barrier_members`]) of every barrier in [`Plan::barrier_deps`]`(i)` has
/// succeeded; [`Plan::implied_deps`] lists both at once. Counting consumers (the
/// executor, the scheduler) use [`Plan::node_deps`] over all nodes: a barrier is a node
/// with no actuation that completes when its members have.
///
/// Serialised plans are byte-identical for the same engine state and `now` (R12).
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode,
)]
pub struct Plan {
    /// The time planned for.
    pub now: Time,
    /// Tasks sorted by (wave, object id).
    pub tasks: Vec<Task>,
    /// Dependencies of every node (tasks, then barriers) as CSR: node indices, ascending.
    dep_offsets: Vec<u32>,
    dep_targets: Vec<u32>,
    wave_offsets: Vec<u32>,
    /// The barriers some task waits for, by (model, sync before delete).
    #[serde(default)]
    pub barriers: Vec<Barrier>,
    /// Held objects, in id order.
    pub holds: Vec<Hold>,
    /// The earliest time a backing-off object becomes eligible, if any.
    pub next_wake: Option<Time>,
    /// Work counters.
    pub stats: PlanStats,
}

impl Plan {
    /// Indices (into [`Plan::tasks`]) of the tasks task `i` waits for directly, ascending.
    /// Model-level waits go through barriers: see [`Plan::barrier_deps`] and
    /// [`Plan::implied_deps`].
    pub fn deps(&self, i: usize) -> &[u32] {
        let all = self.node_deps(i);
        let t = self.tasks.len();
        &all[..all.partition_point(|&d| (d as usize) < t)]
    }

    /// Indices (into [`Plan::barriers`]) of the barriers task `i` waits for, ascending.
    pub fn barrier_deps(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let all = self.node_deps(i);
        let t = self.tasks.len();
        all[all.partition_point(|&d| (d as usize) < t)..]
            .iter()
            .map(move |&d| d as usize - t)
    }

    /// Indices (into [`Plan::tasks`]) of the tasks barrier `b` stands for, ascending.
    pub fn barrier_members(&self, b: usize) -> &[u32] {
        self.node_deps(self.tasks.len() + b)
    }

    /// Every task task `i` waits for, directly or through a barrier, ascending and without
    /// repeats: the edges a plan without barriers would have. Costs O(the members of its
    /// barriers); for checks and displays, not for walking a large plan.
    pub fn implied_deps(&self, i: usize) -> Vec<u32> {
        let mut out = self.deps(i).to_vec();
        for b in self.barrier_deps(i) {
            out.extend_from_slice(self.barrier_members(b));
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Number of nodes of the DAG: tasks, then barriers.
    pub fn node_count(&self) -> usize {
        self.tasks.len() + self.barriers.len()
    }

    /// The nodes node `k` waits for, ascending: for a task (`k < tasks.len()`) its direct
    /// dependencies, then its barriers (as `tasks.len() + b`); for a barrier, its members
    /// (tasks only).
    pub fn node_deps(&self, k: usize) -> &[u32] {
        &self.dep_targets[self.dep_offsets[k] as usize..self.dep_offsets[k + 1] as usize]
    }

    /// Number of waves (the longest dependency chain among tasks, R2).
    pub fn wave_count(&self) -> usize {
        self.wave_offsets.len().saturating_sub(1)
    }

    /// The tasks of wave `w`: none depends on another of the same wave.
    pub fn wave(&self, w: usize) -> &[Task] {
        &self.tasks[self.wave_offsets[w] as usize..self.wave_offsets[w + 1] as usize]
    }

    /// The wave of each task, by task index.
    pub fn waves(&self) -> impl Iterator<Item = &[Task]> {
        (0..self.wave_count()).map(|w| self.wave(w))
    }

    /// Dependency edges stored: task to task, task to barrier and barrier to member
    /// (O(tasks + their object edges) even with model-level dependencies, R15).
    pub fn edge_count(&self) -> usize {
        self.dep_targets.len()
    }

    /// Whether there is nothing to run and nothing held.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.holds.is_empty()
    }

    /// The hold of `object`, if it is held.
    pub fn hold(&self, object: ObjectId) -> Option<&HoldReason> {
        self.holds
            .binary_search_by_key(&object, |h| h.object)
            .ok()
            .map(|i| &self.holds[i].reason)
    }

    /// The index of `object`'s task, if it has one.
    pub fn task_index(&self, object: ObjectId) -> Option<usize> {
        self.tasks.iter().position(|t| t.object == object)
    }
}

/// Reusable scratch for planning, indexed by object id and invalidated by stamps.
///
/// `slot[id]` packs the plan epoch (high 32 bits) with the object's slot among the
/// unsettled objects and a deleting bit (low 32 bits), so one memory access answers
/// "unsettled? which slot? deleting?".
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    slot: Vec<u64>,
    visit: Vec<u32>,
    slot_epoch: u32,
    visit_epoch: u32,
}

/// The deleting bit of a packed slot.
const SLOT_DELETING: u32 = 1 << 31;

impl Scratch {
    fn prepare(&mut self, capacity: usize) {
        if self.slot.len() < capacity {
            self.slot.resize(capacity, 0);
            self.visit.resize(capacity, 0);
        }
        self.slot_epoch = self.slot_epoch.wrapping_add(1);
        if self.slot_epoch == 0 {
            self.slot.iter_mut().for_each(|s| *s = 0);
            self.slot_epoch = 1;
        }
    }

    fn next_visit(&mut self) -> u32 {
        self.visit_epoch = self.visit_epoch.wrapping_add(1);
        if self.visit_epoch == 0 {
            self.visit.iter_mut().for_each(|s| *s = 0);
            self.visit_epoch = 1;
        }
        self.visit_epoch
    }

    #[inline]
    fn set_slot(&mut self, id: u32, slot: u32, deleting: bool) {
        let packed = slot | if deleting { SLOT_DELETING } else { 0 };
        self.slot[id as usize] = (u64::from(self.slot_epoch) << 32) | u64::from(packed);
    }

    /// The packed slot of `id` if it is unsettled in this plan.
    #[inline]
    fn slot_of(&self, id: ObjectId) -> Option<u32> {
        let v = self.slot[id.index()];
        ((v >> 32) as u32 == self.slot_epoch).then_some(v as u32)
    }

    /// Marks `id` visited in the current walk; false if it already was.
    #[inline]
    fn first_visit(&mut self, id: ObjectId, epoch: u32) -> bool {
        let v = &mut self.visit[id.index()];
        if *v == epoch {
            false
        } else {
            *v = epoch;
            true
        }
    }
}

/// What planning reads of one unsettled object, copied once in id order (a sequential
/// pass over the store's arrays) so that the passes in topological order, which visit
/// objects at random, read one small record instead of several arrays.
#[derive(Clone, Copy, Debug)]
struct SlotInfo {
    version: u64,
    /// When its own backoff ends (meaningful with [`SlotInfo::BACKING_OFF`]).
    retry_at: Time,
    model: ModelId,
    kind: ModelKind,
    flags: u8,
}

impl SlotInfo {
    const DELETING: u8 = 1;
    /// Waits on its own timer at the plan's `now` (R5, R6).
    const BACKING_OFF: u8 = 2;
    const EXTERNAL_FAILED: u8 = 4;

    fn read(schema: &Schema, store: &Store, id: ObjectId, now: Time) -> SlotInfo {
        let b = store.backoff(id);
        let model = store.model(id);
        let flag = |on: bool, flag: u8| if on { flag } else { 0 };
        let flags = flag(b.deleting(), Self::DELETING)
            | flag(b.backing_off(now), Self::BACKING_OFF)
            | flag(b.external_failed(), Self::EXTERNAL_FAILED);
        SlotInfo {
            version: store.version(id),
            retry_at: b.retry_at,
            model,
            kind: schema.model(model).kind,
            flags,
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// How one unsettled object resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Res {
    Unresolved,
    Task {
        wave: u32,
    },
    /// Held behind a failing root.
    Blocked {
        root: u32,
    },
    /// Its own backoff (until its [`SlotInfo::retry_at`]).
    Own,
    /// External, not yet reported.
    ExtWait,
    /// External, reported failed.
    ExtFailed,
    /// Waits for an external object.
    WaitExt {
        key: u32,
    },
    /// A delete waiting for referrers.
    WaitRefs,
}

/// No object (in [`Fold`]'s `root` and `wait_ext`).
const NO_OBJECT: u32 = u32::MAX;

/// What a node's resolved prerequisites add up to. A resolved object adds what its result
/// means to the objects waiting for it ([`Fold::of`]); a barrier passes on what its
/// members add up to, so a barrier changes no result. The fold is order-free (a max, an
/// or, and minimums by key, keys being unique), so the order prerequisites resolve in
/// does not matter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fold {
    /// 1 + the largest wave of a prerequisite task (0 if none).
    wave: u32,
    /// What failing or waiting prerequisites add.
    waits: Waits,
}

/// The part of a [`Fold`] only failing or waiting prerequisites change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Waits {
    /// The smallest-key root cause among failing prerequisites (R4), or [`NO_OBJECT`].
    root: u32,
    /// The smallest-key external object waited for (R17), or [`NO_OBJECT`].
    wait_ext: u32,
    /// A prerequisite delete waits for referrers (R7).
    wait_refs: bool,
}

impl Waits {
    const NONE: Waits = Waits {
        root: NO_OBJECT,
        wait_ext: NO_OBJECT,
        wait_refs: false,
    };

    fn is_none(&self) -> bool {
        *self == Waits::NONE
    }

    /// Adds `other` (the keys decide the minimums).
    fn merge(&mut self, store: &Store, other: &Waits) {
        if other.root != NO_OBJECT {
            self.root = min_key(store, self.root, other.root);
        }
        if other.wait_ext != NO_OBJECT {
            self.wait_ext = min_key(store, self.wait_ext, other.wait_ext);
        }
        self.wait_refs |= other.wait_refs;
    }
}

impl Fold {
    /// What object `id`, resolved as `r`, adds to the objects waiting for it.
    fn of(r: Res, id: u32) -> Fold {
        let mut f = Fold {
            wave: 0,
            waits: Waits::NONE,
        };
        match r {
            Res::Task { wave } => f.wave = wave + 1,
            Res::Blocked { root } => f.waits.root = root,
            Res::Own | Res::ExtFailed => f.waits.root = id,
            Res::ExtWait => f.waits.wait_ext = id,
            Res::WaitExt { key } => f.waits.wait_ext = key,
            Res::WaitRefs => f.waits.wait_refs = true,
            Res::Unresolved => unreachable!("only resolved objects are folded"),
        }
        f
    }
}

/// Of two objects (`a` may be [`NO_OBJECT`]), the one with the smaller key.
fn min_key(store: &Store, a: u32, b: u32) -> u32 {
    if a != NO_OBJECT && store.key(ObjectId(a)) <= store.key(ObjectId(b)) {
        a
    } else {
        b
    }
}

/// One node's countdown in the resolution (step 2 of [`plan`]): its prerequisites not yet
/// resolved, and 1 + the largest wave among the resolved ones. A resolved node pushes its
/// share into each dependent as it counts it down; nearly every push changes only these
/// 8 bytes, so the pushes' random writes stay within one small array.
#[derive(Clone, Copy, Debug)]
struct Countdown {
    left: u32,
    wave: u32,
}

/// The rest of a node's record: its [`Waits`] (changed only by failing or waiting
/// prerequisites) and what [`resolve`] reads of an object. Resolving a node reads its
/// countdown and this, never its prerequisites' results.
#[derive(Clone, Copy, Debug)]
struct Rest {
    waits: Waits,
    /// [`SlotInfo`]'s flags (objects; 0 for barriers).
    flags: u8,
    kind: ModelKind,
}

impl Rest {
    /// A barrier's: nothing added yet.
    const BARRIER: Rest = Rest {
        waits: Waits::NONE,
        flags: 0,
        kind: ModelKind::Passive,
    };
}

/// One live object's walk through its dependencies (step 1 of [`plan`]).
struct Walk<'a> {
    store: &'a Store,
    scratch: &'a mut Scratch,
    epoch: u32,
    /// The object's prerequisites found so far (slots).
    pre: &'a mut Vec<u32>,
    /// The object's root cause so far (R7: a deleting dependency blocks it).
    root: &'a mut u32,
    /// Settled objects to walk through (R1).
    stack: &'a mut Vec<ObjectId>,
    /// Objects visited (for [`PlanStats`]).
    objects: &'a mut u64,
}

impl Walk<'_> {
    /// Dependency `d` reached: each object is looked at once per walk (the visit marks), so
    /// an unsettled prerequisite reached twice is listed once.
    #[inline]
    fn reach(&mut self, d: ObjectId) {
        if !self.scratch.first_visit(d, self.epoch) {
            return;
        }
        match self.scratch.slot_of(d) {
            Some(s) if s & SLOT_DELETING != 0 => {
                *self.root = min_key(self.store, *self.root, d.0);
            }
            Some(s) => self.pre.push(s),
            None => {
                *self.objects += 1;
                self.stack.push(d);
            }
        }
    }
}

/// The barrier node of (`model`, `deleting`), made on first use: node `n + b`.
fn barrier_node(
    node_of: &mut [u32],
    defs: &mut Vec<(ModelId, bool)>,
    n: usize,
    model: ModelId,
    deleting: bool,
) -> u32 {
    let k = model.index() * 2 + usize::from(deleting);
    if node_of[k] == u32::MAX {
        node_of[k] = (n + defs.len()) as u32;
        defs.push((model, deleting));
    }
    node_of[k]
}

/// Computes the plan at `now` (R1-R8, R13, R16, R17). Pure: reads the store only.
pub(crate) fn plan(schema: &Schema, store: &Store, scratch: &mut Scratch, now: Time) -> Plan {
    let unsettled: Vec<u32> = store.d.unsettled.iter().collect();
    let n = unsettled.len();
    scratch.prepare(store.capacity());
    let mut stats = PlanStats {
        objects: n as u64,
        edges: 0,
    };
    let info: Vec<SlotInfo> = unsettled
        .iter()
        .enumerate()
        .map(|(i, &u)| {
            let info = SlotInfo::read(schema, store, ObjectId(u), now);
            scratch.set_slot(u, i as u32, info.has(SlotInfo::DELETING));
            info
        })
        .collect();

    // Model-level prerequisites (R1): the unsettled, live objects of each model; and for
    // deletes (R7), the deleting objects of each model. Each (model, live/deleting) waited
    // for is one barrier node, `n + b`, made on first use (`barrier_of`, by
    // `model * 2 + deleting`).
    let models = schema.models().len();
    let any_model_deps = schema.models().iter().any(|m| !m.depends_on.is_empty());
    let mut by_model: Vec<Vec<u32>> = Vec::new();
    let mut deleting_by_model: Vec<Vec<u32>> = Vec::new();
    let mut barrier_of: Vec<u32> = Vec::new();
    let mut barrier_defs: Vec<(ModelId, bool)> = Vec::new();
    if any_model_deps {
        by_model = vec![Vec::new(); models];
        deleting_by_model = vec![Vec::new(); models];
        barrier_of = vec![u32::MAX; models * 2];
        for (i, info) in info.iter().enumerate() {
            if info.has(SlotInfo::DELETING) {
                deleting_by_model[info.model.index()].push(i as u32);
            } else {
                by_model[info.model.index()].push(i as u32);
            }
        }
    }

    // 1. Prerequisites, as node indices, in one flat array (each listed once per object:
    // by a walk's marks, or by a sort for deletes and model-level waits); the barriers' own prerequisites (their members) follow the objects'.
    // A wait of slot `me` (of model `own`) for every unsettled object (`members`) of model
    // `model`: one edge to that model's barrier, made on first use. The barrier is skipped
    // when it has no members; a waiter that is itself a member (R11 refuses such schemas)
    // waits for the other members one by one.
    let mut wait_on_model = |members: &[u32],
                             model: ModelId,
                             own: ModelId,
                             me: usize,
                             deleting: bool,
                             pre: &mut Vec<u32>,
                             stats: &mut PlanStats| {
        stats.edges += 1;
        if members.is_empty() {
            return;
        }
        if model == own {
            stats.edges += members.len() as u64;
            pre.extend(members.iter().copied().filter(|&s| s != me as u32));
        } else {
            pre.push(barrier_node(
                &mut barrier_of,
                &mut barrier_defs,
                n,
                model,
                deleting,
            ));
        }
    };
    let mut pre_off: Vec<u32> = Vec::with_capacity(n + 1);
    let mut pre: Vec<u32> = Vec::with_capacity(n * 2);
    // Each object's part of the resolution record (step 2), made here for the root cause
    // found on the way: a live object waiting on a deleting one is blocked by it (R7).
    let mut rests: Vec<Rest> = info
        .iter()
        .map(|info| Rest {
            flags: info.flags,
            kind: info.kind,
            ..Rest::BARRIER
        })
        .collect();
    let mut stack: Vec<ObjectId> = Vec::new();
    let has_extensions = store.has_extensions();
    pre_off.push(0);
    for (i, &u) in unsettled.iter().enumerate() {
        let id = ObjectId(u);
        let start = pre.len();
        let deleting = info[i].has(SlotInfo::DELETING);
        if deleting {
            graph::for_each_effective_referrer(store, id, |r| {
                stats.edges += 1;
                if let Some(s) = scratch.slot_of(r) {
                    if s & SLOT_DELETING != 0 {
                        pre.push(s & !SLOT_DELETING);
                    }
                }
            });
            // R7 through `depends_on_models`: the deletes of the models that depend on this
            // one's model go first (through one barrier per model).
            if any_model_deps {
                let own = store.model(id);
                for &dm in &schema.model(own).depended_on_by {
                    let members = &deleting_by_model[dm.index()];
                    wait_on_model(members, dm, own, i, true, &mut pre, &mut stats);
                }
            }
        } else {
            // Walk dependencies; pass through settled ones (R1), stop at unsettled ones.
            let epoch = scratch.next_visit();
            stack.clear();
            stack.push(id);
            let own = store.model(id);
            while let Some(x) = stack.pop() {
                let mut walk = Walk {
                    store,
                    scratch: &mut *scratch,
                    epoch,
                    pre: &mut pre,
                    root: &mut rests[i].waits.root,
                    stack: &mut stack,
                    objects: &mut stats.objects,
                };
                if has_extensions {
                    let mut edges = 0;
                    graph::for_each_effective_dep(store, x, |d| {
                        edges += 1;
                        walk.reach(d);
                    });
                    stats.edges += edges;
                } else {
                    // No extensions anywhere: the effective dependencies are the links.
                    let deps = store.deps(x);
                    stats.edges += deps.len() as u64;
                    for &e in deps {
                        walk.reach(graph::target(e));
                    }
                }
                // Model-level waits (R1) of this object and, transitively, of the settled
                // objects it passes through: one barrier per model.
                if any_model_deps {
                    for &dm in &schema.model(store.model(x)).depends_on {
                        let members = &by_model[dm.index()];
                        wait_on_model(members, dm, own, i, false, &mut pre, &mut stats);
                    }
                }
            }
        }
        if !(any_model_deps || deleting) {
            // Listed once each already (the walk's marks).
            pre_off.push(pre.len() as u32);
            continue;
        }
        let list = &mut pre[start..];
        list.sort_unstable();
        let mut kept = start;
        for r in start..pre.len() {
            if kept == start || pre[r] != pre[kept - 1] {
                pre[kept] = pre[r];
                kept += 1;
            }
        }
        pre.truncate(kept);
        pre_off.push(pre.len() as u32);
    }
    // Each barrier's members, counted once however many objects wait for it.
    for &(m, deleting) in &barrier_defs {
        let members = if deleting {
            &deleting_by_model[m.index()]
        } else {
            &by_model[m.index()]
        };
        stats.edges += members.len() as u64;
        pre.extend_from_slice(members);
        pre_off.push(pre.len() as u32);
    }
    let nb = barrier_defs.len();
    let total = n + nb;

    // 2. Resolution in topological order of prerequisites (Kahn), barriers included.
    // Each node's dependents (`rev`, CSR by `rev_off`), ascending: counted, summed to
    // each list's end, then filled from the last node down, each list's end moving back
    // to its start.
    let mut rev_off: Vec<u32> = vec![0; total + 1];
    for &p in &pre {
        rev_off[p as usize] += 1;
    }
    let mut sum = 0;
    for end in &mut rev_off[..total] {
        sum += *end;
        *end = sum;
    }
    rev_off[total] = sum;
    let mut rev: Vec<u32> = vec![0; pre.len()];
    for i in (0..total).rev() {
        for &p in &pre[pre_off[i] as usize..pre_off[i + 1] as usize] {
            let at = &mut rev_off[p as usize];
            *at -= 1;
            rev[*at as usize] = i as u32;
        }
    }
    let mut counts: Vec<Countdown> = (0..total)
        .map(|i| Countdown {
            left: pre_off[i + 1] - pre_off[i],
            wave: 0,
        })
        .collect();
    rests.resize(total, Rest::BARRIER);
    let mut res: Vec<Res> = vec![Res::Unresolved; n];
    let mut queue: Vec<u32> = (0..total as u32)
        .filter(|&i| counts[i as usize].left == 0)
        .collect();
    let mut head = 0;
    // Tasks per wave, counted as they resolve.
    let mut per_wave: Vec<u32> = Vec::new();
    while head < queue.len() {
        let i = queue[head] as usize;
        head += 1;
        let rest = rests[i];
        let fold = Fold {
            wave: counts[i].wave,
            waits: rest.waits,
        };
        let share = if i >= n {
            fold
        } else {
            let r = resolve(store, ObjectId(unsettled[i]), fold, rest.flags, rest.kind);
            if let Res::Task { wave } = r {
                let w = wave as usize;
                if w >= per_wave.len() {
                    per_wave.resize(w + 1, 0);
                }
                per_wave[w] += 1;
            }
            res[i] = r;
            Fold::of(r, unsettled[i])
        };
        let rare = !share.waits.is_none();
        for &d in &rev[rev_off[i] as usize..rev_off[i + 1] as usize] {
            let count = &mut counts[d as usize];
            count.wave = count.wave.max(share.wave);
            count.left -= 1;
            let ready = count.left == 0;
            if rare {
                rests[d as usize].waits.merge(store, &share.waits);
            }
            if ready {
                queue.push(d);
            }
        }
    }
    debug_assert_eq!(
        head, total,
        "prerequisites are acyclic (R11 is checked at apply)"
    );
    // The resolution's scratch goes before the output is built, which lowers the plan's
    // peak memory by about a fifth (28 of 144 B/object at 1M, benches/memory.rs).
    drop((queue, rev, rev_off, counts, rests));

    // 3. Output: tasks by (wave, id), with edges; the barriers tasks wait for; holds by id.
    let waves = per_wave.len();
    let mut wave_offsets = Vec::with_capacity(waves + 1);
    wave_offsets.push(0u32);
    let mut task_count = 0;
    for &tasks in &per_wave {
        task_count += tasks;
        wave_offsets.push(task_count);
    }
    let task_count = task_count as usize;
    let mut next_in_wave: Vec<u32> = wave_offsets[..waves].to_vec();
    let mut task_of_slot: Vec<u32> = vec![u32::MAX; n];
    let mut order: Vec<u32> = vec![0; task_count];
    for (i, r) in res.iter().enumerate() {
        if let Res::Task { wave } = r {
            let t = next_in_wave[*wave as usize];
            next_in_wave[*wave as usize] += 1;
            task_of_slot[i] = t;
            order[t as usize] = i as u32;
        }
    }
    // The barriers some task waits for (a held object's are dropped with it), numbered by
    // (model, sync before delete). Every member of such a barrier is a task: a waiter whose
    // barrier has a member that is not is held (R3).
    let mut barrier_out: Vec<u32> = vec![u32::MAX; nb];
    if nb > 0 {
        // A pass over every task's prerequisites: only when there are barriers at all.
        for &i in &order {
            for &p in &pre[pre_off[i as usize] as usize..pre_off[i as usize + 1] as usize] {
                if p as usize >= n {
                    barrier_out[p as usize - n] = 0;
                }
            }
        }
    }
    let mut barriers: Vec<Barrier> = Vec::new();
    let mut barrier_src: Vec<usize> = Vec::new();
    for &node in &barrier_of {
        if node != u32::MAX && barrier_out[node as usize - n] == 0 {
            let b = node as usize - n;
            barrier_out[b] = barriers.len() as u32;
            let (model, deleting) = barrier_defs[b];
            barriers.push(Barrier {
                model,
                kind: if deleting {
                    TaskKind::Delete
                } else {
                    TaskKind::Sync
                },
            });
            barrier_src.push(node as usize);
        }
    }
    let mut tasks = Vec::with_capacity(task_count);
    let mut dep_offsets = Vec::with_capacity(task_count + barriers.len() + 1);
    let mut dep_targets = Vec::with_capacity(pre.len());
    dep_offsets.push(0u32);
    for &i in &order {
        let info = &info[i as usize];
        tasks.push(Task {
            object: ObjectId(unsettled[i as usize]),
            model: info.model,
            version: info.version,
            kind: if info.has(SlotInfo::DELETING) {
                TaskKind::Delete
            } else {
                TaskKind::Sync
            },
        });
        let start = dep_targets.len();
        for &p in &pre[pre_off[i as usize] as usize..pre_off[i as usize + 1] as usize] {
            let target = if (p as usize) < n {
                task_of_slot[p as usize]
            } else {
                task_count as u32 + barrier_out[p as usize - n]
            };
            debug_assert!(target != u32::MAX, "a task's prerequisites are tasks");
            dep_targets.push(target);
        }
        sort_small(&mut dep_targets[start..]);
        dep_offsets.push(dep_targets.len() as u32);
    }
    for &node in &barrier_src {
        let start = dep_targets.len();
        for &p in &pre[pre_off[node] as usize..pre_off[node + 1] as usize] {
            debug_assert!(
                task_of_slot[p as usize] != u32::MAX,
                "a barrier a task waits for has tasks for members"
            );
            dep_targets.push(task_of_slot[p as usize]);
        }
        dep_targets[start..].sort_unstable();
        dep_offsets.push(dep_targets.len() as u32);
    }
    let mut holds = Vec::with_capacity(n - task_count);
    let mut next_wake: Option<Time> = None;
    // The deleting objects of each model in key order, sorted once for every delete held
    // behind that model's deletes (R7).
    let mut deletes_in_key_order: Vec<Option<Vec<ObjectId>>> = vec![None; deleting_by_model.len()];
    // With every unsettled object a task there are no holds, and no pass to find them.
    let held = if task_count < n { &res[..] } else { &[] };
    for (i, r) in held.iter().enumerate() {
        let id = ObjectId(unsettled[i]);
        let reason = match *r {
            Res::Task { .. } => continue,
            Res::Unresolved => unreachable!("every object resolves"),
            Res::Blocked { root } => HoldReason::Blocked { by: ObjectId(root) },
            Res::Own => {
                let until = info[i].retry_at;
                next_wake = Some(next_wake.map_or(until, |w| w.min(until)));
                HoldReason::BackingOff { until }
            }
            Res::ExtWait => HoldReason::WaitingExternal { key: id },
            Res::WaitExt { key } => HoldReason::WaitingExternal { key: ObjectId(key) },
            Res::ExtFailed => HoldReason::ExternalFailed,
            Res::WaitRefs => {
                let mut keys = referrers_waited_for(store, id);
                if keys.is_empty() && any_model_deps {
                    // Held only behind the deletes of dependent models (R7).
                    let dms = &schema.model(store.model(id)).depended_on_by;
                    for dm in dms {
                        let sorted = deletes_in_key_order[dm.index()].get_or_insert_with(|| {
                            let mut v: Vec<ObjectId> = deleting_by_model[dm.index()]
                                .iter()
                                .map(|&s| ObjectId(unsettled[s as usize]))
                                .collect();
                            v.sort_by(|a, b| store.key(*a).cmp(store.key(*b)));
                            v
                        });
                        keys.extend_from_slice(sorted);
                    }
                    if dms.len() > 1 {
                        keys.sort_by(|a, b| store.key(*a).cmp(store.key(*b)));
                    }
                }
                HoldReason::WaitingReferrers { keys }
            }
        };
        holds.push(Hold { object: id, reason });
    }
    Plan {
        now,
        tasks,
        dep_offsets,
        dep_targets,
        wave_offsets,
        barriers,
        holds,
        next_wake,
        stats,
    }
}

/// Sorts a task's prerequisites: an insertion sort for the few most tasks have.
fn sort_small(list: &mut [u32]) {
    if list.len() > 16 {
        list.sort_unstable();
        return;
    }
    for i in 1..list.len() {
        let v = list[i];
        let mut j = i;
        while j > 0 && list[j - 1] > v {
            list[j] = list[j - 1];
            j -= 1;
        }
        list[j] = v;
    }
}

/// The referrers a delete waits for: its live ones, or else all that remain; in key order.
pub(crate) fn referrers_waited_for(store: &Store, id: ObjectId) -> Vec<ObjectId> {
    let mut live = Vec::new();
    let mut all = Vec::new();
    graph::for_each_effective_referrer(store, id, |r| {
        all.push(r);
        if !store.deleting(r) {
            live.push(r);
        }
    });
    let mut out = if live.is_empty() { all } else { live };
    out.sort_by(|a, b| store.key(*a).cmp(store.key(*b)));
    out.dedup();
    out
}

/// How object `id` (of `kind`, with [`SlotInfo`]'s `flags`) resolves, given what its
/// prerequisites add up to.
fn resolve(store: &Store, id: ObjectId, fold: Fold, flags: u8, kind: ModelKind) -> Res {
    let Fold {
        wave,
        waits: Waits {
            root,
            wait_ext,
            wait_refs,
        },
    } = fold;
    let root = (root != NO_OBJECT).then_some(root);
    let wait_ext = (wait_ext != NO_OBJECT).then_some(wait_ext);
    let has = |flag: u8| flags & flag != 0;
    let backing_off = has(SlotInfo::BACKING_OFF);
    if has(SlotInfo::DELETING) {
        let mut live_referrer = false;
        graph::for_each_effective_referrer(store, id, |r| live_referrer |= !store.deleting(r));
        if live_referrer {
            return Res::WaitRefs;
        }
        if let Some(r) = root {
            return Res::Blocked { root: r };
        }
        if wait_refs || wait_ext.is_some() || kind != ModelKind::Actuated {
            return Res::WaitRefs;
        }
        if backing_off {
            return Res::Own;
        }
        return Res::Task { wave };
    }
    if let Some(r) = root {
        return Res::Blocked { root: r };
    }
    if let Some(k) = wait_ext {
        return Res::WaitExt { key: k };
    }
    match kind {
        ModelKind::External if has(SlotInfo::EXTERNAL_FAILED) => Res::ExtFailed,
        ModelKind::External => Res::ExtWait,
        _ if backing_off => Res::Own,
        _ => Res::Task { wave },
    }
}
