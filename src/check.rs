//! Validation of a scenario: everything is checked, every problem listed with its place.
//!
//! [`prepare`] checks the settings, the schema, what syncs each model (built-in names, WASM
//! files), then does a dry run: each change set in time order is checked entry by entry
//! (models, fields, types, references to missing objects) and applied to a scratch engine
//! with every actuation assumed to succeed, which finds what only the engine can (object
//! cycles, policy errors and loops). The result is a [`Setup`] that `run` and `plan` use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use syncore::sim::{FaultSwitch, FaultyActuator};
use syncore::{
    Actuator, Change, ChangeError, ChangeSet, Config, Engine, ExternalReport, FieldSlot, ModelKind,
    Schema, SchemaDef, SchemaError, TaskKind, Time, Value, VirtualClock,
};

use crate::locate::segment;
use crate::native::{self, Faulty, Sink};
use crate::plugins;
use crate::scenario::{Fault, Problem, Settings, Source, WORKERS_MAX};

/// A plugin named in the scenario: a built-in or a WASM component file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plugin {
    /// A built-in, by name.
    Builtin(String),
    /// A WASM component, by resolved path.
    Wasm(PathBuf),
}

impl Plugin {
    fn parse(src: &Source, text: &str) -> Plugin {
        if text.ends_with(".wasm") || text.contains('/') || text.contains('\\') {
            Plugin::Wasm(src.dir.join(text))
        } else {
            Plugin::Builtin(text.to_string())
        }
    }
}

/// One change set of the run, at its time.
#[derive(Clone, Debug)]
pub struct TimedSet {
    /// Logical time, ms.
    pub at: u64,
    /// What it is.
    pub label: String,
    /// The changes.
    pub changes: ChangeSet,
    /// External reports: (key, failure message or none for synced).
    pub reports: Vec<(String, Option<String>)>,
}

/// A validated scenario, ready to run.
pub struct Setup {
    /// Display name.
    pub name: String,
    /// The file name, as given.
    pub file: String,
    /// What the scenario shows.
    pub description: Option<String>,
    /// The scenario's text, as read (kept in traces so that they replay on their own).
    pub text: String,
    /// Directory that relative plugin paths are resolved against.
    pub dir: PathBuf,
    /// The schema.
    pub schema: Schema,
    /// Engine configuration.
    pub config: Config,
    /// Simulation settings.
    pub settings: Settings,
    /// Actuators by model index (with the fault script in front); `None` for passive and
    /// external models.
    pub actuators: Vec<Option<Arc<dyn Actuator>>>,
    /// Policy and watcher per model index.
    hooks: Vec<(Option<Plugin>, Option<Plugin>)>,
    /// Where built-in watchers write.
    pub sink: Sink,
    /// Actuation time per model index, ms.
    durations: Vec<u64>,
    /// The fault script.
    pub faults: Vec<Fault>,
    /// Change sets in time order (the initial one first, at 0).
    pub sets: Vec<TimedSet>,
    /// Every key that exists at some point of the dry run, sorted.
    pub keys: BTreeSet<String>,
    /// Objects that would stay unconverged after the whole timeline with every actuation
    /// succeeding, and why ([`unconverged`]), in key order.
    pub unconverged: Vec<(String, String)>,
    /// The time random faults see: the runner sets it before each actuator call.
    pub clock: Arc<VirtualClock>,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup").field("name", &self.name).finish()
    }
}

impl Setup {
    /// A fresh engine with the scenario's policies and watchers registered.
    ///
    /// # Errors
    /// A message if a plugin cannot be loaded (it was loadable when checked).
    pub fn engine(&self) -> Result<Engine, String> {
        let mut engine = Engine::new(self.schema.clone(), self.config.clone());
        self.register_hooks(&mut engine)?;
        Ok(engine)
    }

    /// Registers the scenario's policies and watchers on `engine`.
    ///
    /// # Errors
    /// A message if a plugin cannot be loaded.
    pub fn register_hooks(&self, engine: &mut Engine) -> Result<(), String> {
        for (i, (policy, watcher)) in self.hooks.iter().enumerate() {
            let model = self.schema.models()[i].name.clone();
            if let Some(p) = policy {
                let policy = match p {
                    Plugin::Builtin(name) => native::policy(name, &self.schema, &model)?,
                    Plugin::Wasm(path) => plugins::policy(path)?,
                };
                engine
                    .register_policy(&model, policy)
                    .map_err(|e| e.to_string())?;
            }
            if let Some(w) = watcher {
                let watcher = match w {
                    Plugin::Builtin(name) => native::watcher(name, &self.sink)
                        .ok_or_else(|| format!("unknown built-in watcher {name}"))?,
                    Plugin::Wasm(path) => plugins::watcher(path)?,
                };
                engine
                    .register_watcher(&model, watcher)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Simulated duration of one actuation, ms: the model's time, a per-key jitter, and the
    /// fault script's `slow_ms`.
    pub fn duration(&self, key: &str, model: &str, kind: TaskKind) -> u64 {
        let base = self
            .schema
            .model_id(model)
            .map_or(self.settings.duration_ms, |m| self.durations[m.index()]);
        duration_ms(base, &self.settings, &self.faults, key, model, kind)
    }

    /// A function computing [`Setup::duration`] that owns what it needs (for threads).
    pub fn duration_fn(&self) -> impl Fn(&str, &str, TaskKind) -> u64 + Send + Sync + 'static {
        let per_model: BTreeMap<String, u64> = self
            .schema
            .models()
            .iter()
            .zip(&self.durations)
            .map(|(m, d)| (m.name.clone(), *d))
            .collect();
        let (settings, faults) = (self.settings.clone(), self.faults.clone());
        move |key: &str, model: &str, kind: TaskKind| {
            let base = per_model
                .get(model)
                .copied()
                .unwrap_or(settings.duration_ms);
            duration_ms(base, &settings, &faults, key, model, kind)
        }
    }

    /// Drains what built-in watchers wrote.
    pub fn drain_watch_lines(&self) -> Vec<String> {
        std::mem::take(&mut *self.sink.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// One actuation's simulated time: the model's `base`, a per-key jitter, and the fault
/// script's `slow_ms`; at least 1 ms.
fn duration_ms(
    base: u64,
    settings: &Settings,
    faults: &[Fault],
    key: &str,
    model: &str,
    kind: TaskKind,
) -> u64 {
    let permille = u64::from(settings.duration_jitter_permille);
    let h = native::fnv1a(key) ^ settings.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let jitter = if permille == 0 {
        0
    } else {
        base.saturating_mul(h % (permille + 1)) / 1000
    };
    let slow: u64 = faults
        .iter()
        .filter(|f| native::matches(f, key, model, kind))
        .filter_map(|f| f.slow_ms)
        .fold(0u64, u64::saturating_add);
    base.saturating_add(jitter).saturating_add(slow).max(1)
}

/// "expected one of: a, b, c".
fn one_of<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    if names.is_empty() {
        "the schema has no models".to_string()
    } else {
        format!("expected one of: {}", names.join(", "))
    }
}

/// Checks everything and builds the [`Setup`].
///
/// # Errors
/// Every problem found, each with its place in the file.
pub fn prepare(src: &Source) -> Result<Setup, Vec<Problem>> {
    let sc = &src.scenario;
    let mut problems = Vec::new();

    let s = &sc.settings;
    if s.workers == 0 || s.workers > WORKERS_MAX {
        problems.push(src.problem(
            "/settings/workers",
            format!(
                "workers must be between 1 and {WORKERS_MAX}, got {}",
                s.workers
            ),
        ));
    }
    for (i, w) in sc.timeline.windows(2).enumerate() {
        if w[1].at < w[0].at {
            problems.push(src.problem(
                &format!("/timeline/{}/at", i + 1),
                format!(
                    "timeline steps must be in time order: this step is at {} ms, after one at {} ms",
                    w[1].at, w[0].at
                ),
            ));
        }
    }

    // The schema: unknown targets first (all of them), then the engine's own validation.
    let def = &sc.schema;
    let names: Vec<&str> = def.models.iter().map(|m| m.name.as_str()).collect();
    let mut sorted_names = names.clone();
    sorted_names.sort_unstable();
    for (i, m) in def.models.iter().enumerate() {
        for (j, l) in m.links.iter().enumerate() {
            if !names.contains(&l.target.as_str()) {
                problems.push(src.problem(
                    &format!("/schema/models/{i}/links/{j}/target"),
                    format!(
                        "model {}: link {} targets unknown model {}; {}",
                        m.name,
                        l.field,
                        l.target,
                        one_of(sorted_names.iter().copied())
                    ),
                ));
            }
        }
        for (j, d) in m.depends_on_models.iter().enumerate() {
            if !names.contains(&d.as_str()) {
                problems.push(src.problem(
                    &format!("/schema/models/{i}/depends_on_models/{j}"),
                    format!(
                        "model {}: depends on unknown model {d}; {}",
                        m.name,
                        one_of(sorted_names.iter().copied())
                    ),
                ));
            }
        }
    }
    let schema = if problems.iter().any(|p| p.message.contains("unknown model")) {
        None
    } else {
        match Schema::new(def.clone()) {
            Ok(s) => Some(s),
            Err(e) => {
                problems.push(src.problem(&schema_pointer(def, &e), format!("schema: {e}")));
                None
            }
        }
    };

    // What each WASM plugin may do (P3), set before any plugin loads.
    let mut grants = BTreeMap::new();
    for (name, spec) in &sc.grants {
        match plugins::grant(spec, &src.dir) {
            Ok(grant) => {
                grants.insert(name.clone(), grant);
            }
            Err(found) => {
                for (at, message) in found {
                    problems.push(src.problem(
                        &format!("/grants/{}/{at}", segment(name)),
                        format!("grants: plugin {name}: {message}"),
                    ));
                }
            }
        }
    }
    plugins::set_grants(grants);

    // What syncs each model.
    let mut actuator_plugins: BTreeMap<String, Plugin> = BTreeMap::new();
    let mut hooks_by_name: BTreeMap<String, (Option<Plugin>, Option<Plugin>)> = BTreeMap::new();
    for (model, setup) in &sc.models {
        let base = format!("/models/{}", segment(model));
        let Some(mdef) = def.models.iter().find(|m| &m.name == model) else {
            problems.push(src.problem(
                &base,
                format!(
                    "models: unknown model {model}; {}",
                    one_of(sorted_names.iter().copied())
                ),
            ));
            continue;
        };
        if let Some(a) = &setup.actuator {
            let p = format!("{base}/actuator");
            if mdef.kind != ModelKind::Actuated {
                problems.push(src.problem(
                    &p,
                    format!(
                        "model {model} is {}: it takes no actuator",
                        kind_name(mdef.kind)
                    ),
                ));
            }
            let plugin = Plugin::parse(src, a);
            match &plugin {
                Plugin::Builtin(name) if !native::ACTUATORS.contains(&name.as_str()) => {
                    problems.push(src.problem(
                        &p,
                        format!(
                            "model {model}: unknown built-in actuator {name:?}; expected one of: {}, or a path to a .wasm component",
                            native::ACTUATORS.join(", ")
                        ),
                    ));
                }
                Plugin::Wasm(path) => {
                    if let Err(e) = plugins::check_file(path, "actuator", a)
                        .and_then(|()| plugins::actuator(path).map(drop))
                    {
                        problems.push(src.problem(&p, format!("model {model}: {e}")));
                    }
                }
                Plugin::Builtin(_) => {}
            }
            actuator_plugins.insert(model.clone(), plugin);
        }
        let mut hooks = (None, None);
        if let Some(text) = &setup.policy {
            let p = format!("{base}/policy");
            let plugin = Plugin::parse(src, text);
            match (&plugin, &schema) {
                (Plugin::Builtin(name), Some(schema)) => {
                    if let Err(e) = native::policy(name, schema, model) {
                        problems.push(src.problem(&p, format!("model {model}: {e}")));
                    }
                }
                (Plugin::Wasm(path), _) => {
                    if let Err(e) = plugins::check_file(path, "policy", text)
                        .and_then(|()| plugins::policy(path).map(drop))
                    {
                        problems.push(src.problem(&p, format!("model {model}: {e}")));
                    }
                }
                _ => {}
            }
            hooks.0 = Some(plugin);
        }
        if let Some(text) = &setup.watcher {
            let p = format!("{base}/watcher");
            let plugin = Plugin::parse(src, text);
            match &plugin {
                Plugin::Builtin(name) if !native::WATCHERS.contains(&name.as_str()) => {
                    problems.push(src.problem(
                        &p,
                        format!(
                            "model {model}: unknown built-in watcher {name:?}; expected one of: {}, or a path to a .wasm component",
                            native::WATCHERS.join(", ")
                        ),
                    ));
                }
                Plugin::Wasm(path) => {
                    if let Err(e) = plugins::check_file(path, "watcher", text)
                        .and_then(|()| plugins::watcher(path).map(drop))
                    {
                        problems.push(src.problem(&p, format!("model {model}: {e}")));
                    }
                }
                Plugin::Builtin(_) => {}
            }
            hooks.1 = Some(plugin);
        }
        hooks_by_name.insert(model.clone(), hooks);
    }
    // A grant for a plugin no model uses is a mistake (a misspelt name would grant nothing).
    let used: BTreeSet<String> = actuator_plugins
        .values()
        .chain(hooks_by_name.values().flat_map(|(p, w)| p.iter().chain(w)))
        .filter_map(|p| match p {
            Plugin::Wasm(path) => Some(plugins::name(path)),
            Plugin::Builtin(_) => None,
        })
        .collect();
    for name in sc.grants.keys() {
        if !used.contains(name) {
            problems.push(src.problem(
                &format!("/grants/{}", segment(name)),
                format!(
                    "grants: no model uses a WASM plugin named {name} (a plugin's name is its file stem); {}",
                    if used.is_empty() {
                        "this scenario uses none".to_string()
                    } else {
                        format!("used: {}", used.iter().cloned().collect::<Vec<_>>().join(", "))
                    }
                ),
            ));
        }
    }

    // R17: an actuated model without an actuator is a configuration error, listing each.
    for (i, m) in def.models.iter().enumerate() {
        if m.kind == ModelKind::Actuated && !actuator_plugins.contains_key(&m.name) {
            let at = if sc.models.contains_key(&m.name) {
                format!("/models/{}", segment(&m.name))
            } else {
                format!("/schema/models/{i}/name")
            };
            problems.push(src.problem(
                &at,
                format!(
                    "model {} is actuated but has no actuator: set \"models\": {{\"{}\": {{\"actuator\": ...}}}}, or give it \"kind\": \"passive\"",
                    m.name, m.name
                ),
            ));
        }
    }

    for (i, f) in sc.faults.iter().enumerate() {
        if f.key.is_none() && f.model.is_none() {
            problems.push(src.problem(
                &format!("/faults/{i}"),
                "fault: name the object (\"key\") or the model (\"model\") it applies to",
            ));
        }
        if let Some(m) = &f.model {
            if !names.contains(&m.as_str()) {
                problems.push(src.problem(
                    &format!("/faults/{i}/model"),
                    format!(
                        "fault: unknown model {m}; {}",
                        one_of(sorted_names.iter().copied())
                    ),
                ));
            }
        }
    }

    let Some(schema) = schema else {
        return Err(sorted(problems));
    };
    // With the schema valid, the objects are checked even if the wiring has problems.
    let wiring_ok = problems.is_empty();

    let mut config = Config {
        backoff: s.backoff.clone(),
        policy_rounds_max: s.policy_rounds_max,
        ..Config::default()
    };
    config.backoff.seed = s.seed;
    let clock = Arc::new(VirtualClock::new(Time(0)));
    let mut actuators: Vec<Option<Arc<dyn Actuator>>> = Vec::new();
    let mut hooks = Vec::new();
    let mut durations = Vec::new();
    for m in schema.models() {
        let actuator = match actuator_plugins.get(&m.name).filter(|_| wiring_ok) {
            Some(Plugin::Builtin(name)) => native::actuator(name, &schema, &m.name),
            Some(Plugin::Wasm(path)) => match plugins::actuator(path) {
                Ok(a) => Some(a),
                Err(e) => {
                    problems.push(src.problem(
                        &format!("/models/{}/actuator", segment(&m.name)),
                        format!("model {}: {e}", m.name),
                    ));
                    None
                }
            },
            None => None,
        };
        actuators.push(actuator.map(|a| {
            let faults: Vec<Fault> = sc
                .faults
                .iter()
                .filter(|f| f.model.as_deref().is_none_or(|x| x == m.name))
                .cloned()
                .collect();
            let a = if faults.is_empty() {
                a
            } else {
                Arc::new(Faulty::new(a, faults)) as Arc<dyn Actuator>
            };
            // Seeded random faults from the engine's simulator, in front of everything.
            match &s.random_faults {
                Some(f) => Arc::new(FaultyActuator::new(
                    m.name.clone(),
                    Some(a),
                    f.clone(),
                    s.seed,
                    clock.clone(),
                    FaultSwitch::new(s.random_faults_until_ms.map(Time)),
                )) as Arc<dyn Actuator>,
                None => a,
            }
        }));
        hooks.push(hooks_by_name.remove(&m.name).unwrap_or((None, None)));
        durations.push(
            sc.models
                .get(&m.name)
                .and_then(|s| s.duration_ms)
                .unwrap_or(s.duration_ms),
        );
    }
    let mut setup = Setup {
        name: src.name(),
        file: src.file.clone(),
        description: sc.description.clone(),
        text: src.text.clone(),
        dir: src.dir.clone(),
        schema,
        config,
        settings: s.clone(),
        actuators,
        hooks,
        sink: Sink::default(),
        durations,
        faults: sc.faults.clone(),
        sets: Vec::new(),
        keys: BTreeSet::new(),
        unconverged: Vec::new(),
        clock,
    };
    let mut engine = if problems.is_empty() {
        match setup.engine() {
            Ok(e) => Some(e),
            Err(e) => return Err(vec![src.problem("/models", e)]),
        }
    } else {
        None
    };

    // The dry run: each set checked entry by entry, then applied and settled.
    let mut known: BTreeMap<String, String> = BTreeMap::new();
    let mut healthy = engine.is_some();
    let mut sets = Vec::new();
    for (n, (at, label, pointer, changes)) in src.change_sets().into_iter().enumerate() {
        let found = check_set(src, &setup.schema, &pointer, changes, &known);
        let ok = found.is_empty();
        problems.extend(found);
        let mut reports = Vec::new();
        if n > 0 {
            let step = &sc.timeline[n - 1];
            for (k, r) in step.reports.iter().enumerate() {
                let model = known.get(&r.key).or_else(|| {
                    changes.iter().find_map(|c| match c {
                        Change::Upsert { key, model, .. } if *key == r.key => Some(model),
                        _ => None,
                    })
                });
                let external = model
                    .and_then(|m| setup.schema.model_id(m))
                    .is_some_and(|id| setup.schema.model(id).kind == ModelKind::External);
                if model.is_none() {
                    problems.push(src.problem(
                        &format!("/timeline/{}/reports/{k}/key", n - 1),
                        format!("report about missing object {}", r.key),
                    ));
                } else if !external {
                    problems.push(src.problem(
                        &format!("/timeline/{}/reports/{k}/key", n - 1),
                        format!("report about {}, which is not of an external model", r.key),
                    ));
                }
                reports.push((r.key.clone(), r.failed.clone()));
            }
        }
        let set = ChangeSet {
            changes: changes.to_vec(),
        };
        if let (true, true, Some(engine)) = (healthy, ok, engine.as_mut()) {
            match engine.apply(set.clone()) {
                Ok(_) => {
                    for (key, failed) in &reports {
                        if let Some(v) = engine.object(key).map(|o| o.version) {
                            let report = match failed {
                                None => ExternalReport::Synced { version: v },
                                Some(m) => ExternalReport::Failed {
                                    version: v,
                                    message: m.clone(),
                                },
                            };
                            let _ = engine.report_external(key, report);
                        }
                    }
                    settle(engine, Time(at));
                    known = engine
                        .keys()
                        .filter_map(|k| engine.object(k).map(|o| (k.to_string(), o.model)))
                        .collect();
                    setup.keys.extend(known.keys().cloned());
                }
                Err(e) => {
                    healthy = false;
                    problems.push(change_problem(src, &pointer, changes, &label, &e));
                }
            }
        } else {
            healthy = false;
        }
        if !healthy {
            for c in changes {
                match c {
                    Change::Upsert { key, model, .. } => {
                        known.insert(key.clone(), model.clone());
                        setup.keys.insert(key.clone());
                    }
                    Change::Delete { key } => {
                        known.remove(key);
                    }
                }
            }
        }
        sets.push(TimedSet {
            at,
            label,
            changes: set,
            reports,
        });
    }
    for (i, f) in sc.faults.iter().enumerate() {
        if let Some(k) = &f.key {
            if !setup.keys.contains(k) {
                problems.push(src.problem(
                    &format!("/faults/{i}/key"),
                    format!("fault names object {k}, which the scenario never creates"),
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(sorted(problems));
    }
    if let (true, Some(engine)) = (healthy, engine.as_mut()) {
        let end = Time(sets.last().map_or(0, |s: &TimedSet| s.at));
        setup.unconverged = unconverged(engine, end);
    }
    setup.drain_watch_lines();
    plugins::take_logs();
    setup.sets = sets;
    Ok(setup)
}

/// Problems in file order (those without a position first), duplicates dropped.
fn sorted(mut problems: Vec<Problem>) -> Vec<Problem> {
    problems.sort_by(|a, b| a.pos.cmp(&b.pos).then(a.message.cmp(&b.message)));
    problems.dedup();
    problems
}

/// Completes every runnable task with success until nothing is runnable (the dry run and
/// `plan` use it to reach the state the next change set applies to).
pub fn settle(engine: &mut Engine, now: Time) {
    for _ in 0..100_000 {
        let plan = engine.plan(now);
        if plan.tasks.is_empty() {
            return;
        }
        for t in &plan.tasks {
            let _ = engine.complete(t, syncore::Outcome::ok(), now);
        }
    }
}

/// Every object that stays unconverged once `engine` is settled at `now` with every
/// actuation succeeding, with why, in key order: what nothing in the scenario will ever
/// release (issue 10 item 16). A delete waits for referrers that no later change removes
/// (R7); an external object is never reported synced at its current version, or was
/// reported failed (R17); everything held behind one of those says which.
pub fn unconverged(engine: &mut Engine, now: Time) -> Vec<(String, String)> {
    settle(engine, now);
    let plan = engine.plan(now);
    let key = |id| engine.key(id).to_string();
    let mut out: Vec<(String, String)> = plan
        .holds
        .iter()
        .map(|h| {
            let k = key(h.object);
            let why = match &h.reason {
                syncore::HoldReason::WaitingReferrers { keys } => {
                    let keys: Vec<String> = keys.iter().map(|&r| key(r)).collect();
                    format!(
                        "its delete waits for {}, which still reference{} it and which nothing deletes or re-points (R7)",
                        keys.join(", "),
                        if keys.len() == 1 { "s" } else { "" }
                    )
                }
                syncore::HoldReason::WaitingExternal { key: e } if *e == h.object => {
                    let v = engine.object(&k).map_or(0, |o| o.version);
                    format!(
                        "external object {k} is never reported synced at its current version v{v}; add a report {{\"key\": \"{k}\"}} to a timeline step after its last change (R17)"
                    )
                }
                syncore::HoldReason::WaitingExternal { key: e } => format!(
                    "waits for external object {}, which is never reported synced at its current version (R17)",
                    key(*e)
                ),
                syncore::HoldReason::ExternalFailed => format!(
                    "external object {k} is reported failed and never reported synced after (R17)"
                ),
                syncore::HoldReason::Blocked { by } => format!(
                    "held behind {}, which would stay unconverged too",
                    key(*by)
                ),
                syncore::HoldReason::BackingOff { until } => {
                    format!("still backing off until t={}ms", until.0)
                }
            };
            (k, why)
        })
        .collect();
    out.sort();
    out
}

fn kind_name(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Actuated => "actuated",
        ModelKind::External => "external",
        ModelKind::Passive => "passive",
    }
}

/// The JSON pointer a schema error is about.
fn schema_pointer(def: &SchemaDef, e: &SchemaError) -> String {
    let model_index = |name: &str| def.models.iter().rposition(|m| m.name == name);
    let model_ptr = |name: &str| match model_index(name) {
        Some(i) => format!("/schema/models/{i}"),
        None => "/schema".to_string(),
    };
    let link_ptr = |model: &str, field: &str, tail: &str| match model_index(model) {
        Some(i) => match def.models[i].links.iter().position(|l| l.field == field) {
            Some(j) => format!("/schema/models/{i}/links/{j}{tail}"),
            None => format!("/schema/models/{i}"),
        },
        None => "/schema".to_string(),
    };
    let field_ptr = |model: &str, field: &str| match model_index(model) {
        Some(i) => {
            let m = &def.models[i];
            if let Some(j) = m.feedback.iter().rposition(|f| f.name == field) {
                format!("/schema/models/{i}/feedback/{j}")
            } else if let Some(j) = m.fields.iter().rposition(|f| f.name == field) {
                format!("/schema/models/{i}/fields/{j}")
            } else {
                format!("/schema/models/{i}")
            }
        }
        None => "/schema".to_string(),
    };
    match e {
        SchemaError::DuplicateModel { model } => format!("{}/name", model_ptr(model)),
        SchemaError::EmptyName { model } => model_ptr(model),
        SchemaError::DuplicateField { model, field }
        | SchemaError::ReferenceWithoutLink { model, field }
        | SchemaError::FeedbackReference { model, field } => field_ptr(model, field),
        SchemaError::UnknownLinkField { model, field }
        | SchemaError::LinkOnNonReference { model, field, .. }
        | SchemaError::DuplicateLink { model, field } => link_ptr(model, field, "/field"),
        SchemaError::UnknownTarget { model, field, .. } => link_ptr(model, field, "/target"),
        SchemaError::UnknownIntoField { model, target, .. } => match model_index(model) {
            Some(i) => match def.models[i].links.iter().position(|l| &l.target == target) {
                Some(j) => format!("/schema/models/{i}/links/{j}/into"),
                None => format!("/schema/models/{i}"),
            },
            None => "/schema".into(),
        },
        SchemaError::UnknownDependsOn { model, .. } => model_ptr(model),
        SchemaError::ModelCycle { models } | SchemaError::WatchLoop { models } => {
            models.first().map_or_else(
                || "/schema".to_string(),
                |m| format!("{}/name", model_ptr(m)),
            )
        }
        _ => "/schema".to_string(),
    }
}

/// Checks one change set entry by entry against the schema and the objects that exist
/// before it (`known`: key → model).
fn check_set(
    src: &Source,
    schema: &Schema,
    pointer: &str,
    changes: &[Change],
    known: &BTreeMap<String, String>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut created: BTreeMap<&str, &str> = BTreeMap::new();
    let mut deleted: BTreeSet<&str> = BTreeSet::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for (j, c) in changes.iter().enumerate() {
        if !seen.insert(c.key()) {
            let tail = match c {
                Change::Upsert { .. } => "upsert/key",
                Change::Delete { .. } => "delete/key",
            };
            problems.push(src.problem(
                &format!("{pointer}/{j}/{tail}"),
                format!("object {} appears twice in this change set", c.key()),
            ));
        }
        match c {
            Change::Upsert { key, model, .. } => {
                created.insert(key, model);
            }
            Change::Delete { key } => {
                deleted.insert(key);
            }
        }
    }
    let mut model_names: Vec<&str> = schema.models().iter().map(|m| m.name.as_str()).collect();
    model_names.sort_unstable();
    for (j, c) in changes.iter().enumerate() {
        match c {
            Change::Upsert { key, model, fields } => {
                let p = format!("{pointer}/{j}/upsert");
                let Some(mid) = schema.model_id(model) else {
                    problems.push(src.problem(
                        &format!("{p}/model"),
                        format!(
                            "object {key}: unknown model {model}; {}",
                            one_of(model_names.iter().copied())
                        ),
                    ));
                    continue;
                };
                if let Some(existing) = known.get(key) {
                    if existing != model {
                        problems.push(src.problem(
                            &format!("{p}/model"),
                            format!("object {key} is a {existing}, not a {model}"),
                        ));
                    }
                }
                let m = schema.model(mid);
                for (name, value) in fields {
                    let fp = format!("{p}/fields/{}", segment(name));
                    let slot = match m.slot(name) {
                        Some(FieldSlot::Declarative(i)) => i as usize,
                        Some(FieldSlot::Feedback(_)) => {
                            problems.push(src.problem(
                                &fp,
                                format!("object {key}: field {name} of {model} is feedback, written only by its actuator"),
                            ));
                            continue;
                        }
                        None => {
                            let fields: Vec<&str> =
                                m.fields.iter().map(|f| f.name.as_str()).collect();
                            problems.push(src.problem(
                                &fp,
                                format!(
                                    "object {key}: model {model} has no field {name}; {}",
                                    if fields.is_empty() {
                                        "it has no declarative fields".to_string()
                                    } else {
                                        format!("expected one of: {}", fields.join(", "))
                                    }
                                ),
                            ));
                            continue;
                        }
                    };
                    let ty = m.fields[slot].ty;
                    let v = match value.clone().coerce(ty) {
                        Ok(v) => v,
                        Err(e) => {
                            problems.push(src.problem(
                                &fp,
                                format!(
                                    "object {key}: field {name} wants {}, got {}",
                                    e.expected, e.found
                                ),
                            ));
                            continue;
                        }
                    };
                    let Some(l) = m.link_of_field[slot] else {
                        continue;
                    };
                    let target_model = &schema.model(m.links[l as usize].target).name;
                    for target in v.refs() {
                        let found = created
                            .get(target.as_str())
                            .copied()
                            .or_else(|| known.get(target).map(String::as_str));
                        match found {
                            Some(tm) if !deleted.contains(target.as_str()) => {
                                if tm != target_model {
                                    problems.push(src.problem(
                                        &fp,
                                        format!("object {key}: field {name} must reference a {target_model}, but {target} is a {tm}"),
                                    ));
                                }
                            }
                            Some(_) => problems.push(src.problem(
                                &fp,
                                format!("object {key}: field {name} references {target}, which this change set deletes"),
                            )),
                            None => problems.push(src.problem(
                                &fp,
                                format!(
                                    "object {key}: field {name} references missing object {target} (expected the key of a {target_model})"
                                ),
                            )),
                        }
                    }
                }
            }
            Change::Delete { key } => {
                if !known.contains_key(key) && !created.contains_key(key.as_str()) {
                    problems.push(src.problem(
                        &format!("{pointer}/{j}/delete/key"),
                        format!("delete of missing object {key}"),
                    ));
                }
            }
        }
    }
    problems
}

/// A problem for a change set the engine refused.
fn change_problem(
    src: &Source,
    pointer: &str,
    changes: &[Change],
    label: &str,
    e: &ChangeError,
) -> Problem {
    let mut at = pointer.to_string();
    if let ChangeError::Cycle { keys } = e {
        // Point at a reference from one key on the cycle to another.
        'find: for (j, c) in changes.iter().enumerate() {
            if let Change::Upsert { key, fields, .. } = c {
                if !keys.contains(key) {
                    continue;
                }
                for (name, v) in fields {
                    let refs: Vec<String> = match v {
                        Value::Str(s) | Value::Ref(s) => vec![s.clone()],
                        Value::Refs(r) => r.clone(),
                        Value::Json(t) => serde_json::from_str(t).unwrap_or_default(),
                        _ => Vec::new(),
                    };
                    if refs.iter().any(|r| keys.contains(r)) {
                        at = format!("{pointer}/{j}/upsert/fields/{}", segment(name));
                        break 'find;
                    }
                }
            }
        }
    } else if let Some(j) = changes.iter().position(|c| match e {
        ChangeError::Policy { key, .. } => c.key() == key,
        _ => false,
    }) {
        at = format!("{pointer}/{j}");
    }
    let hint = match e {
        ChangeError::Cycle { .. } => " (each key depends on the next; R11)",
        _ => "",
    };
    src.problem(&at, format!("{label}: {e}{hint}"))
}
