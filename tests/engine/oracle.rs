//! An oracle for holds, delete order and proxies, written from DESIGN.md alone.
//!
//! `reference.rs` mirrors the planner branch for branch, so it catches incremental bugs but
//! shares the planner's reading of the rules. This module shares nothing with either: it
//! reads the engine's public state (objects, link fields, versions, failures, deletes) and
//! the schema, builds the object graph of DESIGN's vocabulary, and answers by plain
//! reachability over it what each rule says must be so:
//!
//! * R1, R16 (sync order): an object depends on what its link fields reference; an
//!   extension (the source of a proxy link) comes after its base and before every other
//!   object that depends on the base; a model-level dependency makes every object of A
//!   wait for every not-yet-synced live object of B. A sync is a task only when nothing it
//!   reaches (transitively, through synced objects too) is failing, backing off, waiting
//!   for an external report or being deleted; every unsettled object it reaches is then a
//!   task too, ordered before it by the plan's edges.
//! * R3, R4 (holds): an object that reaches a failed, deferred or backing-off object is
//!   `Blocked` by one of them (a root cause: one it reaches that is itself held for its own
//!   reason); one that reaches an unreported external object waits for one of those; an
//!   object's own backoff holds it until its retry time. Nothing else is held.
//! * R7 (deletes): a delete waits as `WaitingReferrers` exactly while live objects still
//!   reference it by a link field, naming them; deletes run dependents first: an object's
//!   deleting referrers, and, with `depends_on_models`, the deleting objects of the
//!   dependent model, are deleted before it; and for a proxy, "deleted
//!   in the mirror order": when the base is deleted too, the base's other dependents go
//!   before the extension (a live one makes it wait), which goes before the base. An extension waits only
//!   for its own referrers.
//!
//! Where DESIGN does not say (a live object whose dependency is being deleted, the order of
//! several reasons that all apply, the key that a `Blocked` names among several roots), the
//! oracle accepts every reading that the text allows, and says so.
//!
//! [`check`] returns every disagreement; the property test at the bottom fails on any.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use syncore::{Engine, ExternalReport, HoldReason, ModelKind, Outcome, Plan, Schema, Time};

use crate::ops::{config, materialize, schema_json, GChange, GModel, KEYS};

/// One object, as the public API shows it.
#[derive(Clone, Debug)]
struct Obj {
    model: usize,
    kind: ModelKind,
    version: u64,
    enacted: u64,
    failures: u32,
    retry_at: Option<Time>,
    deferred: bool,
    deleting: bool,
    external_failed: bool,
    /// (target key, proxy) of every non-null link field value.
    links: Vec<(String, bool)>,
}

impl Obj {
    /// Work left, or a wait: being deleted, not synced at its version, or (R17) an external
    /// object whose owner reported its current version failed, whatever it reported before.
    fn unsettled(&self) -> bool {
        self.deleting || self.version != self.enacted || self.external_failed
    }

    /// Its own failure or deferral keeps it out of this plan (R5, R6).
    fn backing_off(&self, now: Time) -> bool {
        (self.failures > 0 || self.deferred) && self.retry_at.is_some_and(|t| t > now)
    }
}

/// The object graph of DESIGN's vocabulary.
struct Graph {
    objs: BTreeMap<String, Obj>,
    /// Model index -> the models it depends on without a link (`depends_on_models`).
    model_deps: Vec<Vec<usize>>,
}

impl Graph {
    fn read(engine: &Engine) -> Graph {
        let schema: &Schema = engine.schema();
        let models = schema.models();
        let index = |name: &str| models.iter().position(|m| m.name == name).unwrap();
        let mut objs = BTreeMap::new();
        for key in engine.keys() {
            let info = engine.object(key).unwrap();
            let model = index(&info.model);
            let m = &models[model];
            let mut links = Vec::new();
            for link in &m.links {
                let field = &m.fields[link.field as usize].name;
                if let Some((_, v)) = info.fields.iter().find(|(f, _)| f == field) {
                    for target in v.refs() {
                        links.push((target.clone(), link.proxy));
                    }
                }
            }
            objs.insert(
                key.to_string(),
                Obj {
                    model,
                    kind: m.kind,
                    version: info.version,
                    enacted: info.enacted,
                    failures: info.failures,
                    retry_at: info.retry_at,
                    deferred: info.deferred,
                    deleting: info.deleting,
                    external_failed: info.external_failed,
                    links,
                },
            );
        }
        let model_deps = models
            .iter()
            .map(|m| m.depends_on.iter().map(|d| d.index()).collect())
            .collect();
        Graph { objs, model_deps }
    }

    /// Objects whose link fields reference `key`, with the link's proxy flag.
    fn referrers(&self, key: &str) -> Vec<(&str, bool)> {
        self.objs
            .iter()
            .flat_map(|(k, o)| {
                o.links
                    .iter()
                    .filter(|(t, _)| t == key)
                    .map(move |(_, p)| (k.as_str(), *p))
            })
            .collect()
    }

    /// What `key`'s sync comes after, directly (R1, R16): its link targets; for each target
    /// it references without a proxy, that target's live extensions (other than itself); and
    /// the live not-yet-synced objects of the models its model depends on.
    fn sync_after(&self, key: &str) -> BTreeSet<String> {
        let o = &self.objs[key];
        let mut out = BTreeSet::new();
        for (target, proxy) in &o.links {
            if !self.objs.contains_key(target) {
                continue;
            }
            out.insert(target.clone());
            if !proxy {
                // A deleting extension orders nothing any more (R16): its base lives, or
                // the base is being deleted and holds `key` itself.
                for (ext, p) in self.referrers(target) {
                    if p && ext != key && !self.objs[ext].deleting {
                        out.insert(ext.to_string());
                    }
                }
            }
        }
        for (k, other) in &self.objs {
            if k != key
                && self.model_deps[o.model].contains(&other.model)
                && !other.deleting
                && other.unsettled()
            {
                out.insert(k.clone());
            }
        }
        out
    }

    /// Everything `key`'s sync reaches through [`Graph::sync_after`], transitively.
    fn sync_reach(&self, key: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![key.to_string()];
        while let Some(x) = stack.pop() {
            for y in self.sync_after(&x) {
                if y != key && seen.insert(y.clone()) {
                    stack.push(y);
                }
            }
        }
        seen
    }

    /// The live objects a delete of `key` waits for (R7): those that reference it by a link
    /// field, and, for an extension whose base is deleted too, the base's other dependents
    /// (R16's mirror order: the extension goes after everything that depends on the base,
    /// so a live one makes it wait, as it makes the base wait).
    fn live_referrers(&self, key: &str) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self
            .referrers(key)
            .into_iter()
            .filter(|(r, _)| !self.objs[*r].deleting)
            .map(|(r, _)| r.to_string())
            .collect();
        for (base, proxy) in &self.objs[key].links {
            if !proxy || !self.objs.get(base).is_some_and(|b| b.deleting) {
                continue;
            }
            for (r, p) in self.referrers(base) {
                if !p && r != key && !self.objs[r].deleting {
                    out.insert(r.to_string());
                }
            }
        }
        out
    }

    /// The deleting objects whose delete must come before `key`'s (R7, R16, R1).
    fn delete_after(&self, key: &str) -> Vec<String> {
        let o = &self.objs[key];
        let mut out: Vec<String> = Vec::new();
        // Dependents first: every deleting object that references it.
        for (r, _) in self.referrers(key) {
            if self.objs[r].deleting {
                out.push(r.to_string());
            }
        }
        // Model-level dependents first (R7 through `depends_on_models`).
        for (k, other) in &self.objs {
            if k != key && other.deleting && self.model_deps[other.model].contains(&o.model) {
                out.push(k.clone());
            }
        }
        // R16's mirror order, when the base is deleted too: the base's other deleting
        // dependents go before its extension.
        for (base, proxy) in &o.links {
            if !proxy || !self.objs.get(base).is_some_and(|b| b.deleting) {
                continue;
            }
            for (r, p) in self.referrers(base) {
                if !p && r != key && self.objs[r].deleting {
                    out.push(r.to_string());
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// What the oracle requires of one unsettled object.
#[derive(Clone, Debug)]
enum Expect {
    /// A task of this plan.
    Task,
    /// Held, for one of these reasons.
    Held(Vec<Reason>),
    /// Not a task; DESIGN does not say which hold.
    NotTask(&'static str),
}

#[derive(Clone, Debug, PartialEq)]
enum Reason {
    BlockedBy(BTreeSet<String>),
    BackingOff(Time),
    WaitingExternal(BTreeSet<String>),
    WaitingReferrers(BTreeSet<String>),
    /// Waiting for deletes that must go first: the hold names some of these.
    WaitingForDeletes(BTreeSet<String>),
    ExternalFailed,
}

/// A disagreement between the engine and the oracle.
#[derive(Clone, Debug)]
pub struct Finding {
    /// What differs, naming keys.
    pub message: String,
}

/// The oracle's expectation for every unsettled object (memoized: a delete's expectation
/// depends on those of the deletes that go before it).
struct Oracle<'g> {
    g: &'g Graph,
    now: Time,
    memo: BTreeMap<String, Expect>,
}

impl Oracle<'_> {
    fn expect(&mut self, key: &str) -> Expect {
        if let Some(e) = self.memo.get(key) {
            return e.clone();
        }
        // A delete cycle cannot exist (R11 keeps the graph acyclic); mark first anyway.
        self.memo.insert(key.to_string(), Expect::NotTask("cycle"));
        let e = if self.g.objs[key].deleting {
            self.expect_delete(key)
        } else {
            self.expect_sync(key)
        };
        self.memo.insert(key.to_string(), e.clone());
        e
    }

    fn expect_sync(&mut self, key: &str) -> Expect {
        let g = self.g;
        let o = &g.objs[key];
        let mut roots = BTreeSet::new();
        let mut externals = BTreeSet::new();
        let mut deleting = BTreeSet::new();
        for y in g.sync_reach(key) {
            let d = &g.objs[&y];
            if !d.unsettled() {
                continue;
            }
            if d.deleting {
                deleting.insert(y);
            } else if d.kind == ModelKind::External {
                if d.external_failed {
                    roots.insert(y);
                } else {
                    externals.insert(y);
                }
            } else if d.backing_off(self.now) {
                roots.insert(y);
            }
        }
        let mut reasons = Vec::new();
        if !roots.is_empty() {
            reasons.push(Reason::BlockedBy(roots));
        }
        if !externals.is_empty() {
            reasons.push(Reason::WaitingExternal(externals));
        }
        match o.kind {
            ModelKind::External if o.external_failed => reasons.push(Reason::ExternalFailed),
            ModelKind::External => reasons.push(Reason::WaitingExternal([key.into()].into())),
            _ if o.backing_off(self.now) => reasons.push(Reason::BackingOff(o.retry_at.unwrap())),
            _ => {}
        }
        let behind_delete = !deleting.is_empty();
        if behind_delete {
            // One reading of R1/R4 (the engine's): blocked by the delete it reaches.
            reasons.push(Reason::BlockedBy(deleting));
        }
        if reasons.len() > usize::from(behind_delete) {
            Expect::Held(reasons)
        } else if behind_delete {
            // R1: a dependency being deleted is never "synced at its current version";
            // which hold that is, DESIGN does not say.
            Expect::NotTask("depends on an object being deleted")
        } else {
            Expect::Task
        }
    }

    fn expect_delete(&mut self, key: &str) -> Expect {
        let g = self.g;
        let o = &g.objs[key];
        let live = g.live_referrers(key);
        if !live.is_empty() {
            return Expect::Held(vec![Reason::WaitingReferrers(live)]);
        }
        let mut roots = BTreeSet::new();
        let mut waiting = false;
        let after = g.delete_after(key);
        for before in after.clone() {
            match self.expect(&before) {
                Expect::Task => {}
                Expect::Held(reasons) => {
                    for r in reasons {
                        match r {
                            Reason::BlockedBy(r) => roots.extend(r),
                            Reason::BackingOff(_) => {
                                roots.insert(before.clone());
                            }
                            _ => waiting = true,
                        }
                    }
                }
                Expect::NotTask(_) => waiting = true,
            }
        }
        let mut reasons = Vec::new();
        if !roots.is_empty() {
            reasons.push(Reason::BlockedBy(roots));
        }
        if o.backing_off(self.now) {
            reasons.push(Reason::BackingOff(o.retry_at.unwrap()));
        }
        if !reasons.is_empty() {
            if waiting {
                // Held for its own reasons and behind a waiting delete: DESIGN does not
                // order the two, so waiting for the deletes that go first is right too.
                reasons.push(Reason::WaitingForDeletes(after.into_iter().collect()));
            }
            return Expect::Held(reasons);
        }
        if waiting {
            return Expect::NotTask("a delete that must go first is waiting");
        }
        if o.kind != ModelKind::Actuated {
            // Passive objects leave at once, external ones are their owner's (R17).
            return Expect::NotTask("not actuated");
        }
        Expect::Task
    }
}

/// Task index `i` of `plan` reaches task `j` through the plan's edges (j before i).
fn plan_path(plan: &Plan, from: usize, to: usize) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from];
    while let Some(i) = stack.pop() {
        for d in plan.implied_deps(i) {
            let d = d as usize;
            if d == to {
                return true;
            }
            if seen.insert(d) {
                stack.push(d);
            }
        }
    }
    false
}

/// Every disagreement between `plan` (the engine's plan at `plan.now`) and the oracle.
pub fn check(engine: &Engine, plan: &Plan) -> Vec<Finding> {
    let g = Graph::read(engine);
    let mut oracle = Oracle {
        g: &g,
        now: plan.now,
        memo: BTreeMap::new(),
    };
    let mut out = Vec::new();
    let mut found = |message: String| out.push(Finding { message });
    let task_of: BTreeMap<String, usize> = plan
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (engine.key(t.object).to_string(), i))
        .collect();
    let hold_of: BTreeMap<String, &HoldReason> = plan
        .holds
        .iter()
        .map(|h| (engine.key(h.object).to_string(), &h.reason))
        .collect();
    let key_set = |ids: &[syncore::ObjectId]| -> BTreeSet<String> {
        ids.iter().map(|&i| engine.key(i).to_string()).collect()
    };
    for (key, o) in &g.objs {
        let in_plan = task_of.contains_key(key) || hold_of.contains_key(key);
        if !o.unsettled() {
            if in_plan {
                found(format!("{key} is settled but in the plan"));
            }
            continue;
        }
        let expect = oracle.expect(key);
        match (&expect, task_of.get(key), hold_of.get(key)) {
            (Expect::Task, Some(_), _) => {}
            (Expect::Task, None, h) => found(
                format!("{key} must be a task (nothing it waits for is pending elsewhere), engine holds it: {h:?}"),
            ),
            (Expect::NotTask(why), Some(_), _) => {
                found(format!("{key} must not be a task ({why})"))
            }
            (Expect::NotTask(_), None, None) => {
                found(format!("unsettled {key} is neither a task nor held"))
            }
            (Expect::NotTask(_), None, Some(_)) => {}
            (Expect::Held(reasons), Some(_), _) => {
                found(format!("{key} must be held ({reasons:?}), engine made it a task"))
            }
            (Expect::Held(_), None, None) => {
                found(format!("unsettled {key} is neither a task nor held"))
            }
            (Expect::Held(reasons), None, Some(h)) => {
                let ok = reasons.iter().any(|r| match (r, h) {
                    (Reason::BlockedBy(roots), HoldReason::Blocked { by }) => {
                        roots.contains(engine.key(*by))
                    }
                    (Reason::BackingOff(t), HoldReason::BackingOff { until }) => t == until,
                    (Reason::WaitingExternal(ks), HoldReason::WaitingExternal { key: k }) => {
                        ks.contains(engine.key(*k))
                    }
                    (Reason::WaitingReferrers(ks), HoldReason::WaitingReferrers { keys }) => {
                        *ks == key_set(keys)
                    }
                    (Reason::WaitingForDeletes(ks), HoldReason::WaitingReferrers { keys }) => {
                        !keys.is_empty() && key_set(keys).is_subset(ks)
                    }
                    (Reason::ExternalFailed, HoldReason::ExternalFailed) => true,
                    _ => false,
                });
                if !ok {
                    found(format!("{key} is held as {h:?}, must be one of {reasons:?}"));
                }
            }
        }
        // Order: every unsettled object a task must come after is a task before it.
        let Some(&i) = task_of.get(key) else { continue };
        let before: Vec<String> = if o.deleting {
            g.delete_after(key)
        } else {
            g.sync_reach(key)
                .into_iter()
                .filter(|y| g.objs[y].unsettled())
                .collect()
        };
        for y in before {
            match task_of.get(&y) {
                Some(&j) if plan_path(plan, i, j) => {}
                Some(_) => found(format!(
                    "{key} must come after {y}, but the plan has no path from {y} to it"
                )),
                None => found(format!(
                    "{key} is a task, but {y} that must go first is not"
                )),
            }
        }
    }
    out
}

/// One step of a generated sequence.
#[derive(Clone, Debug)]
enum Step {
    Apply(Vec<GChange>),
    /// Plan and complete every task: 0 ok, 1 failed, 2 deferred, else ok (by task index).
    Run(Vec<u8>),
    Advance(u16),
    /// Report external object number k synced at its version, or failed.
    External(u8, bool),
}

fn models_strategy() -> impl Strategy<Value = Vec<GModel>> {
    let model = (
        0u8..10,
        prop::collection::vec((any::<u8>(), any::<bool>(), 0u8..10), 0..=2),
        0u8..10,
        any::<u8>(),
    );
    prop::collection::vec(model, 1..=4).prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (kind, links, dep, dep_t))| GModel {
                kind: match kind {
                    0 => ModelKind::Passive,
                    1 => ModelKind::External,
                    _ => ModelKind::Actuated,
                },
                links: links
                    .into_iter()
                    .map(|(t, many, p)| {
                        let target = t as usize % (i + 1);
                        // Proxies are common here: they are what the oracle is for.
                        (target, many, p < 5 && target < i)
                    })
                    .collect(),
                depends_on: (dep < 3 && i > 0).then(|| dep_t as usize % i),
            })
            .collect()
    })
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let change = (
        0..KEYS,
        0u8..10,
        any::<u8>(),
        any::<i8>(),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..=2), 2),
    )
        .prop_map(|(key, d, model, v, refs)| GChange {
            key,
            delete: d < 3,
            model,
            v,
            refs,
        });
    prop_oneof![
        3 => prop::collection::vec(change, 1..6).prop_map(Step::Apply),
        4 => prop::collection::vec(any::<u8>(), 1..8).prop_map(Step::Run),
        2 => (0u16..3000).prop_map(Step::Advance),
        2 => (0..KEYS, any::<bool>()).prop_map(|(k, ok)| Step::External(k, ok)),
    ]
}

/// Plays `steps`, checking the oracle after each; returns the findings of the first step
/// that has any.
fn play(models: &[GModel], steps: &[Step]) -> Vec<Finding> {
    let schema = Schema::from_json(&schema_json(models)).expect("generated schemas are valid");
    let mut engine = Engine::new(schema, config());
    let mut now = Time(0);
    for step in steps {
        match step {
            Step::Apply(gs) => {
                let set = materialize(models, &engine, gs);
                let _ = engine.apply(set);
            }
            Step::Run(choices) => {
                let plan = engine.plan(now);
                for (i, task) in plan.tasks.clone().iter().enumerate() {
                    let outcome = match choices[i % choices.len()] % 6 {
                        1 => Outcome::failed("no"),
                        2 => Outcome::deferred("later"),
                        _ => Outcome::ok(),
                    };
                    engine.complete(task, outcome, now).unwrap();
                }
            }
            Step::Advance(ms) => now = now.after(u64::from(*ms)),
            Step::External(k, ok) => {
                let externals: Vec<(String, u64)> = engine
                    .keys()
                    .filter_map(|key| {
                        let o = engine.object(key)?;
                        let m = engine
                            .schema()
                            .models()
                            .iter()
                            .find(|m| m.name == o.model)?;
                        (m.kind == ModelKind::External).then(|| (key.to_string(), o.version))
                    })
                    .collect();
                if let Some((key, version)) = externals.get(*k as usize % externals.len().max(1)) {
                    let report = if *ok {
                        ExternalReport::Synced { version: *version }
                    } else {
                        ExternalReport::Failed {
                            version: *version,
                            message: "owner failed".into(),
                        }
                    };
                    let _ = engine.report_external(key, report);
                }
            }
        }
        let plan = engine.plan(now);
        let findings = check(&engine, &plan);
        if !findings.is_empty() {
            return findings;
        }
    }
    Vec::new()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The engine's plans agree with the DESIGN.md oracle on holds, delete order and
    /// proxies after every step of random apply / run / time / external sequences.
    #[test]
    fn engine_agrees_with_the_design_oracle(
        models in models_strategy(),
        steps in prop::collection::vec(step_strategy(), 1..40),
    ) {
        // Some generated schemas are refused (a proxy can close a model cycle, R11).
        prop_assume!(Schema::from_json(&schema_json(&models)).is_ok());
        let findings = play(&models, &steps);
        prop_assert!(findings.is_empty(), "{:#?}\nschema: {}", findings, schema_json(&models));
    }
}

/// The schema of the proxy examples: Slice, ControllerSlice (proxy -> Slice), Instance -> Slice.
const PROXY: &str = r#"{"models": [
  {"name": "Slice", "fields": [{"name": "v", "type": "int"}]},
  {"name": "ControllerSlice", "fields": [{"name": "slice", "type": "ref"}],
   "links": [{"field": "slice", "target": "Slice", "proxy": true}]},
  {"name": "Instance", "fields": [{"name": "slice", "type": "ref"}],
   "links": [{"field": "slice", "target": "Slice"}]}]}"#;

fn synced_proxy_engine() -> Engine {
    let mut engine = Engine::new(Schema::from_json(PROXY).unwrap(), config());
    engine
        .apply(
            syncore::ChangeSet::new()
                .upsert("s", "Slice", [("v", 1i64)])
                .upsert("cs", "ControllerSlice", [("slice", "s")])
                .upsert("i", "Instance", [("slice", "s")]),
        )
        .unwrap();
    while let Some(task) = engine.plan(Time(0)).tasks.first().copied() {
        engine.complete(&task, Outcome::ok(), Time(0)).unwrap();
    }
    engine
}

/// The oracle is not vacuous: it sees R16's order in a fresh proxy graph, and flags a plan
/// whose edges were dropped.
#[test]
fn oracle_flags_a_plan_without_the_proxy_order() {
    let mut engine = Engine::new(Schema::from_json(PROXY).unwrap(), config());
    engine
        .apply(
            syncore::ChangeSet::new()
                .upsert("s", "Slice", [("v", 1i64)])
                .upsert("cs", "ControllerSlice", [("slice", "s")])
                .upsert("i", "Instance", [("slice", "s")]),
        )
        .unwrap();
    let plan = engine.plan(Time(0));
    let findings = check(&engine, &plan);
    assert!(findings.is_empty(), "{findings:#?}");
    let mut json = serde_json::to_value(&plan).unwrap();
    // Drop every edge (the serialized CSR form): i no longer comes after cs.
    json["dep_offsets"] = serde_json::json!(vec![0; plan.tasks.len() + 1]);
    json["dep_targets"] = serde_json::json!([]);
    let tampered: Plan = serde_json::from_value(json).unwrap();
    let findings = check(&engine, &tampered);
    assert!(
        findings
            .iter()
            .any(|f| f.message.contains("i must come after cs")),
        "{findings:#?}"
    );
}

/// R16 (issue 10 item 1): deleting an extension while its base lives waits only for
/// the extension's own referrers (it has none), so it is a task at once.
#[test]
fn r16_deleting_an_extension_alone_waits_only_for_its_own_referrers() {
    let mut engine = synced_proxy_engine();
    engine
        .apply(syncore::ChangeSet::new().delete("cs"))
        .unwrap();
    let plan = engine.plan(Time(0));
    let findings = check(&engine, &plan);
    assert!(findings.is_empty(), "{findings:#?}");
    assert_eq!(plan.tasks.len(), 1);
}

/// R16 mirror order: deleting base, extension and the base's dependent together deletes
/// the dependent, then the extension, then the base.
#[test]
fn r16_deletes_run_in_the_mirror_order() {
    let mut engine = synced_proxy_engine();
    engine
        .apply(
            syncore::ChangeSet::new()
                .delete("s")
                .delete("cs")
                .delete("i"),
        )
        .unwrap();
    let plan = engine.plan(Time(0));
    let findings = check(&engine, &plan);
    assert!(findings.is_empty(), "{findings:#?}");
    let order: Vec<&str> = plan
        .waves()
        .flatten()
        .map(|t| engine.key(t.object))
        .collect();
    assert_eq!(order, ["i", "cs", "s"]);
}

/// R7 with `depends_on_models` (issue 10 item 4): a Vm depending on model Net is deleted
/// before its Net when both go.
#[test]
fn r7_model_level_dependents_are_deleted_first() {
    let schema = Schema::from_json(
        r#"{"models": [{"name": "Net", "fields": [{"name": "v", "type": "int"}]},
            {"name": "Vm", "fields": [{"name": "v", "type": "int"}], "depends_on_models": ["Net"]}]}"#,
    )
    .unwrap();
    let mut engine = Engine::new(schema, config());
    engine
        .apply(
            syncore::ChangeSet::new()
                .upsert("n", "Net", [("v", 1i64)])
                .upsert("vm", "Vm", [("v", 1i64)]),
        )
        .unwrap();
    while let Some(task) = engine.plan(Time(0)).tasks.first().copied() {
        engine.complete(&task, Outcome::ok(), Time(0)).unwrap();
    }
    engine
        .apply(syncore::ChangeSet::new().delete("n").delete("vm"))
        .unwrap();
    let plan = engine.plan(Time(0));
    let findings = check(&engine, &plan);
    assert!(findings.is_empty(), "{findings:#?}");
}
