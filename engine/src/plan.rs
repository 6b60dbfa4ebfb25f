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
//! 2. **Resolution**, in topological order of those prerequisites (Kahn): an object whose
//!    prerequisites are all tasks, and which is not itself backing off, becomes a task in
//!    wave `1 + max(wave of prerequisites)`; otherwise it is held, naming the root cause
//!    (the smallest key among the failing objects it transitively waits for, R4).
//! 3. **Output**: tasks sorted by (wave, id) with their dependency edges (sorted), holds in
//!    id order, and the next wake time (the earliest backoff expiry among unblocked holds).
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

/// What may run now: a DAG of tasks in waves, the held objects, and when to plan again.
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
    dep_offsets: Vec<u32>,
    dep_targets: Vec<u32>,
    wave_offsets: Vec<u32>,
    /// Held objects, in id order.
    pub holds: Vec<Hold>,
    /// The earliest time a backing-off object becomes eligible, if any.
    pub next_wake: Option<Time>,
    /// Work counters.
    pub stats: PlanStats,
}

impl Plan {
    /// Indices (into [`Plan::tasks`]) of the tasks task `i` waits for, ascending.
    pub fn deps(&self, i: usize) -> &[u32] {
        &self.dep_targets[self.dep_offsets[i] as usize..self.dep_offsets[i + 1] as usize]
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

    /// Total dependency edges among tasks.
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
    /// Its own backoff.
    Own {
        until: Time,
    },
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

fn min_by_key(store: &Store, a: Option<u32>, b: u32) -> Option<u32> {
    match a {
        Some(a) if store.key(ObjectId(a)) <= store.key(ObjectId(b)) => Some(a),
        _ => Some(b),
    }
}

/// Computes the plan at `now` (R1-R8, R13, R16, R17). Pure: reads the store only.
pub(crate) fn plan(schema: &Schema, store: &Store, scratch: &mut Scratch, now: Time) -> Plan {
    let unsettled: Vec<u32> = store.d.unsettled.iter().copied().collect();
    let n = unsettled.len();
    scratch.prepare(store.capacity());
    let mut stats = PlanStats {
        objects: n as u64,
        edges: 0,
    };
    for (i, &u) in unsettled.iter().enumerate() {
        scratch.set_slot(u, i as u32, store.deleting(ObjectId(u)));
    }

    // Model-level prerequisites (R1): the unsettled, live objects of each model; and for
    // deletes (R7), the deleting objects of each model.
    let any_model_deps = schema.models().iter().any(|m| !m.depends_on.is_empty());
    let mut by_model: Vec<Vec<u32>> = Vec::new();
    let mut deleting_by_model: Vec<Vec<u32>> = Vec::new();
    if any_model_deps {
        by_model = vec![Vec::new(); schema.models().len()];
        deleting_by_model = vec![Vec::new(); schema.models().len()];
        for (i, &u) in unsettled.iter().enumerate() {
            let id = ObjectId(u);
            if store.deleting(id) {
                deleting_by_model[store.model(id).index()].push(i as u32);
            } else {
                by_model[store.model(id).index()].push(i as u32);
            }
        }
    }

    // 1. Prerequisites, as slots, in one flat array (sorted and deduplicated per object).
    let mut pre_off: Vec<u32> = Vec::with_capacity(n + 1);
    let mut pre: Vec<u32> = Vec::with_capacity(n * 2);
    let mut direct_block: Vec<u32> = vec![u32::MAX; n];
    let mut stack: Vec<ObjectId> = Vec::new();
    pre_off.push(0);
    for (i, &u) in unsettled.iter().enumerate() {
        let id = ObjectId(u);
        let start = pre.len();
        if store.deleting(id) {
            graph::for_each_effective_referrer(store, id, |r| {
                stats.edges += 1;
                if let Some(s) = scratch.slot_of(r) {
                    if s & SLOT_DELETING != 0 {
                        pre.push(s & !SLOT_DELETING);
                    }
                }
            });
            // R7 through `depends_on_models`: the deletes of the models that depend on this
            // one's model go first.
            if any_model_deps {
                for dm in &schema.model(store.model(id)).depended_on_by {
                    stats.edges += deleting_by_model[dm.index()].len() as u64;
                    pre.extend(
                        deleting_by_model[dm.index()]
                            .iter()
                            .copied()
                            .filter(|&s| s != i as u32),
                    );
                }
            }
        } else {
            // Walk dependencies; pass through settled ones (R1), stop at unsettled ones.
            let epoch = scratch.next_visit();
            stack.clear();
            stack.push(id);
            while let Some(x) = stack.pop() {
                graph::for_each_effective_dep(store, x, |d| {
                    stats.edges += 1;
                    match scratch.slot_of(d) {
                        Some(s) if s & SLOT_DELETING != 0 => {
                            // R7: a live object waiting on a deleting one is blocked by it.
                            let have = (direct_block[i] != u32::MAX).then_some(direct_block[i]);
                            direct_block[i] = min_by_key(store, have, d.0).unwrap_or(d.0);
                        }
                        Some(s) => pre.push(s),
                        None => {
                            if scratch.first_visit(d, epoch) {
                                stats.objects += 1;
                                stack.push(d);
                            }
                        }
                    }
                });
                // Model-level waits (R1) of this object and, transitively, of the settled
                // objects it passes through.
                if any_model_deps {
                    for dm in &schema.model(store.model(x)).depends_on {
                        stats.edges += by_model[dm.index()].len() as u64;
                        pre.extend(
                            by_model[dm.index()]
                                .iter()
                                .copied()
                                .filter(|&s| s != i as u32),
                        );
                    }
                }
            }
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

    // 2. Resolution in topological order of prerequisites (Kahn).
    let mut indeg: Vec<u32> = (0..n).map(|i| pre_off[i + 1] - pre_off[i]).collect();
    let mut rev_off: Vec<u32> = vec![0; n + 1];
    for &p in &pre {
        rev_off[p as usize + 1] += 1;
    }
    for i in 0..n {
        rev_off[i + 1] += rev_off[i];
    }
    let mut rev: Vec<u32> = vec![0; pre.len()];
    let mut fill: Vec<u32> = rev_off[..n].to_vec();
    for i in 0..n {
        for &p in &pre[pre_off[i] as usize..pre_off[i + 1] as usize] {
            rev[fill[p as usize] as usize] = i as u32;
            fill[p as usize] += 1;
        }
    }
    drop(fill);
    let mut res: Vec<Res> = vec![Res::Unresolved; n];
    let mut queue: Vec<u32> = (0..n as u32).filter(|&i| indeg[i as usize] == 0).collect();
    let mut head = 0;
    let mut max_wave = 0u32;
    while head < queue.len() {
        let i = queue[head] as usize;
        head += 1;
        let r = resolve(
            schema,
            store,
            now,
            i,
            &unsettled,
            &pre[pre_off[i] as usize..pre_off[i + 1] as usize],
            &res,
            direct_block[i],
        );
        if let Res::Task { wave } = r {
            max_wave = max_wave.max(wave);
        }
        res[i] = r;
        for &d in &rev[rev_off[i] as usize..rev_off[i + 1] as usize] {
            indeg[d as usize] -= 1;
            if indeg[d as usize] == 0 {
                queue.push(d);
            }
        }
    }
    debug_assert_eq!(
        head, n,
        "prerequisites are acyclic (R11 is checked at apply)"
    );

    // 3. Output: tasks by (wave, id), with edges; holds by id.
    let task_count = res.iter().filter(|r| matches!(r, Res::Task { .. })).count();
    let waves = if task_count == 0 {
        0
    } else {
        max_wave as usize + 1
    };
    let mut wave_offsets = vec![0u32; waves + 1];
    for r in &res {
        if let Res::Task { wave } = r {
            wave_offsets[*wave as usize + 1] += 1;
        }
    }
    for w in 0..waves {
        wave_offsets[w + 1] += wave_offsets[w];
    }
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
    let mut tasks = Vec::with_capacity(task_count);
    let mut dep_offsets = Vec::with_capacity(task_count + 1);
    let mut dep_targets = Vec::with_capacity(pre.len());
    dep_offsets.push(0u32);
    for &i in &order {
        let id = ObjectId(unsettled[i as usize]);
        tasks.push(Task {
            object: id,
            model: store.model(id),
            version: store.version(id),
            kind: if store.deleting(id) {
                TaskKind::Delete
            } else {
                TaskKind::Sync
            },
        });
        let start = dep_targets.len();
        for &p in &pre[pre_off[i as usize] as usize..pre_off[i as usize + 1] as usize] {
            debug_assert!(
                task_of_slot[p as usize] != u32::MAX,
                "a task's prerequisites are tasks"
            );
            dep_targets.push(task_of_slot[p as usize]);
        }
        dep_targets[start..].sort_unstable();
        dep_offsets.push(dep_targets.len() as u32);
    }
    let mut holds = Vec::with_capacity(n - task_count);
    let mut next_wake: Option<Time> = None;
    for (i, r) in res.iter().enumerate() {
        let id = ObjectId(unsettled[i]);
        let reason = match *r {
            Res::Task { .. } => continue,
            Res::Unresolved => unreachable!("every object resolves"),
            Res::Blocked { root } => HoldReason::Blocked { by: ObjectId(root) },
            Res::Own { until } => {
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
                    for dm in &schema.model(store.model(id)).depended_on_by {
                        keys.extend(
                            deleting_by_model[dm.index()]
                                .iter()
                                .map(|&s| ObjectId(unsettled[s as usize])),
                        );
                    }
                    keys.sort_by(|a, b| store.key(*a).cmp(store.key(*b)));
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
        holds,
        next_wake,
        stats,
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

#[allow(clippy::too_many_arguments)]
fn resolve(
    schema: &Schema,
    store: &Store,
    now: Time,
    i: usize,
    unsettled: &[u32],
    pre: &[u32],
    res: &[Res],
    direct_block: u32,
) -> Res {
    let id = ObjectId(unsettled[i]);
    let mut root: Option<u32> = (direct_block != u32::MAX).then_some(direct_block);
    let mut wait_ext: Option<u32> = None;
    let mut wait_refs = false;
    let mut wave = 0u32;
    for &p in pre {
        let pid = unsettled[p as usize];
        match res[p as usize] {
            Res::Task { wave: w } => wave = wave.max(w + 1),
            Res::Blocked { root: r } => root = min_by_key(store, root, r),
            Res::Own { .. } | Res::ExtFailed => root = min_by_key(store, root, pid),
            Res::ExtWait => wait_ext = min_by_key(store, wait_ext, pid),
            Res::WaitExt { key } => wait_ext = min_by_key(store, wait_ext, key),
            Res::WaitRefs => wait_refs = true,
            Res::Unresolved => unreachable!("prerequisites resolve first"),
        }
    }
    let kind = schema.model(store.model(id)).kind;
    let b = store.backoff(id);
    if store.deleting(id) {
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
        if b.backing_off(now) {
            return Res::Own { until: b.retry_at };
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
        ModelKind::External if b.external_failed() => Res::ExtFailed,
        ModelKind::External => Res::ExtWait,
        _ if b.backing_off(now) => Res::Own { until: b.retry_at },
        _ => Res::Task { wave },
    }
}
