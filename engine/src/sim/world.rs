//! [`World`]: the engine's state as read through its public API only, with the effective
//! dependency graph recomputed from link fields (R1, R7, R16), for the invariant checker.

use std::collections::{BTreeMap, BTreeSet};

use crate::engine::Engine;
use crate::id::Time;
use crate::schema::{ModelKind, Schema};

/// One object as the public API shows it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Obj {
    pub model: usize,
    pub version: u64,
    pub enacted: u64,
    pub failures: u32,
    pub retry_at: Option<Time>,
    pub deferred: bool,
    pub deleting: bool,
    pub external_failed: bool,
    /// Link targets with the link's proxy flag, sorted and deduplicated.
    pub deps: Vec<(String, bool)>,
}

impl Obj {
    /// Work to do: a version not yet enacted, a delete, or an external failure of the
    /// current version (the store's "unsettled", R17).
    pub fn unsettled(&self) -> bool {
        self.version != self.enacted || self.deleting || self.external_failed
    }

    /// Waiting on its own backoff at `now` (R5, R6).
    pub fn backing_off(&self, now: Time) -> bool {
        (self.failures > 0 || self.deferred) && self.retry_at.is_some_and(|t| t > now)
    }
}

/// The whole state, through the public API. Kept up to date incrementally by the
/// simulator ([`World::refresh`] of the objects a step touched) and compared with a full
/// [`World::capture`] now and then.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct World {
    pub objs: BTreeMap<String, Obj>,
    /// Referrers of each key, with the referrer's link proxy flag (no empty sets).
    pub rdeps: BTreeMap<String, BTreeSet<(String, bool)>>,
    /// Keys by model index.
    pub by_model: Vec<BTreeSet<String>>,
}

impl World {
    pub fn capture(engine: &Engine) -> World {
        let mut w = World {
            by_model: vec![BTreeSet::new(); engine.schema().models().len()],
            ..World::default()
        };
        for key in engine.keys() {
            if let Some(o) = World::read(engine, key) {
                w.insert(key.to_string(), o);
            }
        }
        w
    }

    /// Re-reads `keys` from the engine (gone ones are removed).
    pub fn refresh<'k>(&mut self, engine: &Engine, keys: impl IntoIterator<Item = &'k String>) {
        for key in keys {
            self.remove(key);
            if let Some(o) = World::read(engine, key) {
                self.insert(key.clone(), o);
            }
        }
    }

    fn read(engine: &Engine, key: &str) -> Option<Obj> {
        let schema = engine.schema();
        let info = engine.object(key)?;
        let mid = schema.model_id(&info.model)?;
        let model = schema.model(mid);
        let mut deps: Vec<(String, bool)> = Vec::new();
        for link in &model.links {
            let name = &model.fields[link.field as usize].name;
            if let Some((_, v)) = info.fields.iter().find(|(f, _)| f == name) {
                for r in v.refs() {
                    deps.push((r.clone(), link.proxy));
                }
            }
        }
        deps.sort();
        deps.dedup();
        Some(Obj {
            model: mid.index(),
            version: info.version,
            enacted: info.enacted,
            failures: info.failures,
            retry_at: info.retry_at,
            deferred: info.deferred,
            deleting: info.deleting,
            external_failed: info.external_failed,
            deps,
        })
    }

    fn insert(&mut self, key: String, o: Obj) {
        for (d, proxy) in &o.deps {
            self.rdeps
                .entry(d.clone())
                .or_default()
                .insert((key.clone(), *proxy));
        }
        if let Some(set) = self.by_model.get_mut(o.model) {
            set.insert(key.clone());
        }
        self.objs.insert(key, o);
    }

    fn remove(&mut self, key: &str) {
        let Some(o) = self.objs.remove(key) else {
            return;
        };
        for (d, proxy) in &o.deps {
            if let Some(set) = self.rdeps.get_mut(d) {
                set.remove(&(key.to_string(), *proxy));
                if set.is_empty() {
                    self.rdeps.remove(d);
                }
            }
        }
        if let Some(set) = self.by_model.get_mut(o.model) {
            set.remove(key);
        }
    }

    pub fn get(&self, key: &str) -> Option<&Obj> {
        self.objs.get(key)
    }

    fn referrers(&self, key: &str) -> impl Iterator<Item = &(String, bool)> + '_ {
        self.rdeps.get(key).into_iter().flatten()
    }

    /// Keys that differ between two worlds (changed, added or removed), sorted.
    pub fn diff(&self, other: &World) -> Vec<String> {
        let mut keys: BTreeSet<&String> = BTreeSet::new();
        for (k, o) in &self.objs {
            if other.objs.get(k) != Some(o) {
                keys.insert(k);
            }
        }
        for k in other.objs.keys() {
            if !self.objs.contains_key(k) {
                keys.insert(k);
            }
        }
        keys.into_iter().cloned().collect()
    }

    /// Effective dependencies (graph.rs semantics): link targets, plus the extensions of
    /// each non-proxy target (R16).
    pub fn effective_deps(&self, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(o) = self.objs.get(key) {
            for (b, proxy) in &o.deps {
                out.push(b.clone());
                if !proxy {
                    // R16: an extension being deleted orders nothing any more.
                    for (r, rp) in self.referrers(b) {
                        if *rp && r != key && !self.deleting(r) {
                            out.push(r.clone());
                        }
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// What a delete of `key` waits for (R7, R16): its referrers and, when it extends a
    /// base that is deleted too, the base's non-proxy referrers.
    pub fn effective_referrers(&self, key: &str) -> Vec<String> {
        let mut out: Vec<String> = self.referrers(key).map(|(r, _)| r.clone()).collect();
        if let Some(o) = self.objs.get(key) {
            for (b, proxy) in &o.deps {
                if *proxy && self.deleting(b) {
                    for (r, rp) in self.referrers(b) {
                        if !rp && r != key {
                            out.push(r.clone());
                        }
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn unsettled(&self, key: &str) -> bool {
        self.objs.get(key).is_some_and(Obj::unsettled)
    }

    fn deleting(&self, key: &str) -> bool {
        self.objs.get(key).is_some_and(|o| o.deleting)
    }

    /// What a live unsettled object waits for: its nearest unsettled effective
    /// dependencies (walking through settled ones, R1) and the unsettled objects of the
    /// models it depends on; plus the deleting objects it reaches (which block it, R7).
    /// A deleting object waits for its deleting referrers (R7).
    pub fn prerequisites(&self, schema: &Schema, key: &str) -> (Vec<String>, Vec<String>) {
        let mut pre = Vec::new();
        let mut blocking = Vec::new();
        let Some(o) = self.objs.get(key) else {
            return (pre, blocking);
        };
        if o.deleting {
            for r in self.effective_referrers(key) {
                if self.deleting(&r) {
                    pre.push(r);
                }
            }
            // R7 through `depends_on_models`: deletes of the dependent models go first.
            for (a, am) in schema.models().iter().enumerate() {
                if am.depends_on.iter().any(|d| d.index() == o.model) {
                    for k in &self.by_model[a] {
                        if k != key && self.deleting(k) && !pre.contains(k) {
                            pre.push(k.clone());
                        }
                    }
                }
            }
            return (pre, blocking);
        }
        let mut seen = std::collections::BTreeSet::new();
        seen.insert(key.to_string());
        let mut stack = vec![key.to_string()];
        while let Some(x) = stack.pop() {
            for d in self.effective_deps(&x) {
                if !seen.insert(d.clone()) {
                    continue;
                }
                if self.unsettled(&d) {
                    if self.deleting(&d) {
                        blocking.push(d);
                    } else {
                        pre.push(d);
                    }
                } else {
                    stack.push(d);
                }
            }
            // Model-level waits (R1) of the object and of every settled object it passes
            // through: every unsettled, live object of the models they depend on.
            if let Some(xo) = self.objs.get(&x) {
                for m in &schema.models()[xo.model].depends_on {
                    for k in &self.by_model[m.index()] {
                        let other = &self.objs[k];
                        if other.unsettled() && !other.deleting && k != key && !pre.contains(k) {
                            pre.push(k.clone());
                        }
                    }
                }
            }
        }
        (pre, blocking)
    }

    /// The model kind of `key`'s model.
    pub fn kind(&self, schema: &Schema, key: &str) -> ModelKind {
        self.objs
            .get(key)
            .map_or(ModelKind::Actuated, |o| schema.models()[o.model].kind)
    }

    /// The longest chain of objects linked by effective dependencies or model-level
    /// dependencies, counted in objects (the "depth" of the convergence bound).
    pub fn depth(&self, schema: &Schema) -> u64 {
        let mut memo: BTreeMap<String, u64> = BTreeMap::new();
        let keys: Vec<String> = self.objs.keys().cloned().collect();
        let mut best = 0;
        for k in keys {
            best = best.max(self.depth_of(schema, &k, &mut memo));
        }
        best
    }

    fn depth_of(&self, schema: &Schema, key: &str, memo: &mut BTreeMap<String, u64>) -> u64 {
        if let Some(&d) = memo.get(key) {
            return d;
        }
        // Marks the key first: a cycle (never present, R11) cannot recurse forever.
        memo.insert(key.to_string(), 1);
        let mut next = self.effective_deps(key);
        if let Some(o) = self.objs.get(key) {
            for m in &schema.models()[o.model].depends_on {
                next.extend(self.by_model[m.index()].iter().cloned());
            }
        }
        let mut d = 0;
        for n in next {
            if n != key && self.objs.contains_key(&n) {
                d = d.max(self.depth_of(schema, &n, memo));
            }
        }
        memo.insert(key.to_string(), d + 1);
        d + 1
    }
}
