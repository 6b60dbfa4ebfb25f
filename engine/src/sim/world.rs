//! [`World`]: the engine's state as read through its public API only, with the effective
//! dependency graph recomputed from link fields (R1, R7, R16), for the invariant checker.

use std::collections::BTreeMap;

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
    /// Work to do: a version not yet enacted, or a delete (the store's "unsettled").
    pub fn unsettled(&self) -> bool {
        self.version != self.enacted || self.deleting
    }

    /// Waiting on its own backoff at `now` (R5, R6).
    pub fn backing_off(&self, now: Time) -> bool {
        (self.failures > 0 || self.deferred) && self.retry_at.is_some_and(|t| t > now)
    }
}

/// The whole state, through the public API.
#[derive(Clone, Debug, Default)]
pub(crate) struct World {
    pub objs: BTreeMap<String, Obj>,
    /// Referrers of each key, with the referrer's link proxy flag.
    pub rdeps: BTreeMap<String, Vec<(String, bool)>>,
    /// Keys by model index, sorted.
    pub by_model: Vec<Vec<String>>,
}

impl World {
    pub fn capture(engine: &Engine) -> World {
        let schema = engine.schema();
        let mut w = World {
            by_model: vec![Vec::new(); schema.models().len()],
            ..World::default()
        };
        for key in engine.keys() {
            let Some(info) = engine.object(key) else {
                continue;
            };
            let Some(mid) = schema.model_id(&info.model) else {
                continue;
            };
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
            deps.dedup_by(|a, b| a.0 == b.0);
            w.by_model[mid.index()].push(key.to_string());
            w.objs.insert(
                key.to_string(),
                Obj {
                    model: mid.index(),
                    version: info.version,
                    enacted: info.enacted,
                    failures: info.failures,
                    retry_at: info.retry_at,
                    deferred: info.deferred,
                    deleting: info.deleting,
                    external_failed: info.external_failed,
                    deps,
                },
            );
        }
        for (k, o) in &w.objs {
            for (d, proxy) in &o.deps {
                w.rdeps
                    .entry(d.clone())
                    .or_default()
                    .push((k.clone(), *proxy));
            }
        }
        for list in w.by_model.iter_mut() {
            list.sort();
        }
        w
    }

    pub fn get(&self, key: &str) -> Option<&Obj> {
        self.objs.get(key)
    }

    fn referrers(&self, key: &str) -> &[(String, bool)] {
        self.rdeps.get(key).map_or(&[], Vec::as_slice)
    }

    /// Effective dependencies (graph.rs semantics): link targets, plus the extensions of
    /// each non-proxy target (R16).
    pub fn effective_deps(&self, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(o) = self.objs.get(key) {
            for (b, proxy) in &o.deps {
                out.push(b.clone());
                if !proxy {
                    for (r, rp) in self.referrers(b) {
                        if *rp && r != key {
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

    /// Effective referrers: the objects whose effective dependencies include `key`.
    pub fn effective_referrers(&self, key: &str) -> Vec<String> {
        let mut out: Vec<String> = self.referrers(key).iter().map(|(r, _)| r.clone()).collect();
        if let Some(o) = self.objs.get(key) {
            for (b, proxy) in &o.deps {
                if *proxy {
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
