//! A naive, obviously-correct reference planner, built only from the public API.
//!
//! It restates the rules of DESIGN.md directly: every relation (effective dependencies,
//! referrers, nearest unsettled ancestors) is recomputed by scanning all objects, and each
//! object's resolution is a memoised recursion over its prerequisites. Quadratic, and meant
//! to be: it shares no code or data structure with the engine's planner.

use std::collections::{BTreeMap, BTreeSet};

use syncore::{Engine, HoldReason, ModelKind, Plan, TaskKind, Time};

/// One object as the public API shows it.
#[derive(Clone, Debug)]
pub struct RObj {
    pub model: String,
    pub kind: ModelKind,
    pub version: u64,
    pub enacted: u64,
    pub deleting: bool,
    pub backing_off_until: Option<Time>,
    pub external_failed: bool,
    /// Direct dependencies: (target key, via a proxy link).
    pub deps: BTreeSet<(String, bool)>,
}

/// How the reference resolves an unsettled object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RRes {
    Task {
        wave: u32,
        kind: TaskKind,
        pre: BTreeSet<String>,
    },
    Blocked(String),
    Own(Time),
    ExtWait,
    ExtFailed,
    WaitExt(String),
    WaitRefs(Vec<String>),
}

/// The reference's view of an engine.
pub struct Reference {
    pub objs: BTreeMap<String, RObj>,
    pub depends_on: BTreeMap<String, Vec<String>>,
}

impl Reference {
    pub fn new(engine: &Engine, now: Time) -> Reference {
        let schema = engine.schema();
        let mut objs = BTreeMap::new();
        for key in engine.keys() {
            let info = engine.object(key).unwrap();
            let model = schema.model(schema.model_id(&info.model).unwrap());
            let mut deps = BTreeSet::new();
            for link in &model.links {
                let name = &model.fields[link.field as usize].name;
                let value = &info.fields.iter().find(|(n, _)| n == name).unwrap().1;
                for t in value.refs() {
                    deps.insert((t.clone(), link.proxy));
                }
            }
            let backing_off_until = match info.retry_at {
                Some(t) if t > now && (info.failures > 0 || info.deferred) => Some(t),
                _ => None,
            };
            objs.insert(
                key.to_string(),
                RObj {
                    model: info.model.clone(),
                    kind: model.kind,
                    version: info.version,
                    enacted: info.enacted,
                    deleting: info.deleting,
                    backing_off_until,
                    external_failed: info.external_failed,
                    deps,
                },
            );
        }
        let depends_on = schema
            .models()
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    m.depends_on
                        .iter()
                        .map(|d| schema.model(*d).name.clone())
                        .collect(),
                )
            })
            .collect();
        Reference { objs, depends_on }
    }

    pub fn unsettled(&self, k: &str) -> bool {
        let o = &self.objs[k];
        o.enacted != o.version || o.deleting || o.external_failed
    }

    /// R16: a non-proxy dependency on `b` also waits for every extension of `b` (one being
    /// deleted no longer orders anything).
    pub fn effdeps(&self, x: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (b, proxy) in &self.objs[x].deps {
            out.insert(b.clone());
            if !proxy {
                for (e, eo) in &self.objs {
                    if e != x && !eo.deleting && eo.deps.contains(&(b.clone(), true)) {
                        out.insert(e.clone());
                    }
                }
            }
        }
        out
    }

    /// R7 + R16: what the delete of `x` waits for: the objects referencing it, and, when
    /// `x` extends a base that is deleted too, the base's other non-proxy referrers.
    pub fn effrefs(&self, x: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (y, yo) in &self.objs {
            if yo.deps.iter().any(|(t, _)| t == x) {
                out.insert(y.clone());
            }
        }
        for (b, proxy) in &self.objs[x].deps {
            if *proxy && self.objs[b].deleting {
                for (y, yo) in &self.objs {
                    if y != x && yo.deps.contains(&(b.clone(), false)) {
                        out.insert(y.clone());
                    }
                }
            }
        }
        out
    }

    /// R7 with `depends_on_models`: the deleting objects of the models that depend on
    /// `x`'s model.
    pub fn model_delete_refs(&self, x: &str) -> BTreeSet<String> {
        let model = &self.objs[x].model;
        self.objs
            .iter()
            .filter(|(y, yo)| *y != x && yo.deleting && self.depends_on[&yo.model].contains(model))
            .map(|(y, _)| y.clone())
            .collect()
    }

    /// Every effective ancestor of `x` (not `x` itself unless on a cycle).
    pub fn ancestors(&self, x: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<String> = self.effdeps(x).into_iter().collect();
        while let Some(d) = stack.pop() {
            if seen.insert(d.clone()) {
                stack.extend(self.effdeps(&d));
            }
        }
        seen
    }

    fn min_key(a: Option<String>, b: &str) -> Option<String> {
        match a {
            Some(a) if a.as_str() <= b => Some(a),
            _ => Some(b.to_string()),
        }
    }

    /// Resolves every unsettled object.
    pub fn resolve_all(&self) -> BTreeMap<String, RRes> {
        let mut memo = BTreeMap::new();
        for k in self.objs.keys() {
            if self.unsettled(k) {
                self.resolve(k, &mut memo);
            }
        }
        memo
    }

    fn resolve(&self, x: &str, memo: &mut BTreeMap<String, RRes>) -> RRes {
        if let Some(r) = memo.get(x) {
            return r.clone();
        }
        let o = &self.objs[x];
        let mut root: Option<String> = None;
        let mut wait_ext: Option<String> = None;
        let mut wait_refs = false;
        let mut pre: BTreeSet<String> = BTreeSet::new();
        if o.deleting {
            pre = self
                .effrefs(x)
                .into_iter()
                .filter(|r| self.objs[r].deleting)
                .collect();
            pre.extend(self.model_delete_refs(x));
        } else {
            // Nearest unsettled ancestors, walking through settled ones (R1), with the
            // model-level waits of x and of every settled object passed through.
            let model_waits = |of: &str, pre: &mut BTreeSet<String>| {
                for m in &self.depends_on[&self.objs[of].model] {
                    for (y, yo) in &self.objs {
                        if y != x && &yo.model == m && !yo.deleting && self.unsettled(y) {
                            pre.insert(y.clone());
                        }
                    }
                }
            };
            model_waits(x, &mut pre);
            let mut seen = BTreeSet::new();
            let mut stack: Vec<String> = self.effdeps(x).into_iter().collect();
            while let Some(d) = stack.pop() {
                if !seen.insert(d.clone()) {
                    continue;
                }
                if self.unsettled(&d) {
                    if self.objs[&d].deleting {
                        root = Self::min_key(root, &d);
                    } else {
                        pre.insert(d);
                    }
                } else {
                    model_waits(&d, &mut pre);
                    stack.extend(self.effdeps(&d));
                }
            }
        }
        let mut wave = 0;
        for p in &pre {
            match self.resolve(p, memo) {
                RRes::Task { wave: w, .. } => wave = wave.max(w + 1),
                RRes::Blocked(r) => root = Self::min_key(root, &r),
                RRes::Own(_) | RRes::ExtFailed => root = Self::min_key(root, p),
                RRes::ExtWait => wait_ext = Self::min_key(wait_ext, p),
                RRes::WaitExt(k) => wait_ext = Self::min_key(wait_ext, &k),
                RRes::WaitRefs(_) => wait_refs = true,
            }
        }
        let r = if o.deleting {
            let refs = self.effrefs(x);
            let live: Vec<String> = refs
                .iter()
                .filter(|r| !self.objs[*r].deleting)
                .cloned()
                .collect();
            if !live.is_empty() {
                RRes::WaitRefs(live)
            } else if let Some(r) = root {
                RRes::Blocked(r)
            } else if wait_refs || wait_ext.is_some() || o.kind != ModelKind::Actuated {
                let refs = if refs.is_empty() {
                    self.model_delete_refs(x)
                } else {
                    refs
                };
                RRes::WaitRefs(refs.into_iter().collect())
            } else if let Some(t) = o.backing_off_until {
                RRes::Own(t)
            } else {
                RRes::Task {
                    wave,
                    kind: TaskKind::Delete,
                    pre,
                }
            }
        } else if let Some(r) = root {
            RRes::Blocked(r)
        } else if let Some(k) = wait_ext {
            RRes::WaitExt(k)
        } else if o.kind == ModelKind::External {
            if o.external_failed {
                RRes::ExtFailed
            } else {
                RRes::ExtWait
            }
        } else if let Some(t) = o.backing_off_until {
            RRes::Own(t)
        } else {
            RRes::Task {
                wave,
                kind: TaskKind::Sync,
                pre,
            }
        };
        memo.insert(x.to_string(), r.clone());
        r
    }
}

/// The engine's plan in the reference's terms.
pub fn engine_view(engine: &Engine, plan: &Plan) -> BTreeMap<String, RRes> {
    let mut out = BTreeMap::new();
    let mut wave_of = vec![0u32; plan.tasks.len()];
    let mut i = 0;
    for (w, tasks) in plan.waves().enumerate() {
        for _ in tasks {
            wave_of[i] = w as u32;
            i += 1;
        }
    }
    for (i, t) in plan.tasks.iter().enumerate() {
        // Model-level waits go through barriers: compare what they imply.
        let pre = plan
            .implied_deps(i)
            .iter()
            .map(|&d| engine.key(plan.tasks[d as usize].object).to_string())
            .collect();
        out.insert(
            engine.key(t.object).to_string(),
            RRes::Task {
                wave: wave_of[i],
                kind: t.kind,
                pre,
            },
        );
    }
    for h in &plan.holds {
        let key = engine.key(h.object).to_string();
        let r = match &h.reason {
            HoldReason::Blocked { by } => RRes::Blocked(engine.key(*by).to_string()),
            HoldReason::BackingOff { until } => RRes::Own(*until),
            HoldReason::WaitingExternal { key: k } if *k == h.object => RRes::ExtWait,
            HoldReason::WaitingExternal { key: k } => RRes::WaitExt(engine.key(*k).to_string()),
            HoldReason::WaitingReferrers { keys } => {
                RRes::WaitRefs(keys.iter().map(|k| engine.key(*k).to_string()).collect())
            }
            HoldReason::ExternalFailed => RRes::ExtFailed,
        };
        out.insert(key, r);
    }
    out
}

/// Compares the engine's plan with the reference's; returns a description of the first
/// difference.
pub fn compare(engine: &Engine, now: Time) -> Result<Plan, String> {
    let plan = engine.plan(now);
    let reference = Reference::new(engine, now);
    let want = reference.resolve_all();
    let got = engine_view(engine, &plan);
    if want != got {
        for k in want.keys().chain(got.keys()) {
            if want.get(k) != got.get(k) {
                return Err(format!(
                    "object {k}: reference {:?}, engine {:?}",
                    want.get(k),
                    got.get(k)
                ));
            }
        }
    }
    let wake = want
        .values()
        .filter_map(|r| if let RRes::Own(t) = r { Some(*t) } else { None })
        .min();
    if wake != plan.next_wake {
        return Err(format!(
            "next wake: reference {wake:?}, engine {:?}",
            plan.next_wake
        ));
    }
    Ok(plan)
}
