//! [`Engine`]: the one public mutating entry point. It sequences schema, store, change
//! sets, planning and completions, and holds no logic of its own beyond that.

use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::actuator::{ObjectView, Outcome};
use crate::backoff::BackoffPolicy;
use crate::change::{self, ApplyReport, ChangeSet, Stage};
use crate::complete::{self, Completion, ExternalReport};
use crate::error::{ChangeError, CompleteError, SnapshotError};
use crate::id::{ObjectId, Time};
use crate::plan::{self, HoldReason, Plan, Scratch, Task};
use crate::policy::{Policy, WatchEvent, WatchKind, Watcher};
use crate::rows::Rows;
use crate::schema::{FieldSlot, ModelKind, Schema};
use crate::snapshot;
use crate::store::Store;
use crate::value::{Value, ValueLimits};

/// Crate-private methods the scheduler needs (they read the store directly).
#[path = "sched/hooks.rs"]
mod sched_hooks;

/// Engine settings. Every option states its default; [`Config::default`] gives them all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Backoff after failures and deferrals (R5, R6). Default: [`BackoffPolicy::default`].
    pub backoff: BackoffPolicy,
    /// Policy rounds before a change set is refused as a loop (R10). Default: 16.
    pub policy_rounds_max: u32,
    /// Most entries in one change set, policy output included (every change a policy
    /// returns counts). Default: 10,000,000.
    pub changes_max: u64,
    /// Longest key, in bytes, of an object or inside a reference. Default: 1,024.
    pub key_len_max: u32,
    /// Most live objects in the store; a change set that would leave more is refused.
    /// Default: 10,000,000 (never more than [`OBJECTS_MAX`](crate::OBJECTS_MAX)).
    pub objects_max: u64,
    /// Longest `string` value, in bytes (declarative and feedback). Default: 1,048,576.
    pub string_len_max: u32,
    /// Longest `bytes` value. Default: 1,048,576.
    pub bytes_len_max: u32,
    /// Longest `json` value, as canonical text in bytes. Default: 1,048,576.
    pub json_len_max: u32,
    /// Deepest nesting of arrays and objects in a `json` value. Default: 64. (JSON input
    /// nested deeper than 128 does not parse at all.)
    pub json_depth_max: u32,
    /// Most references in one `refs` field. Default: 65,536.
    pub refs_max: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            backoff: BackoffPolicy::default(),
            policy_rounds_max: 16,
            changes_max: 10_000_000,
            key_len_max: 1024,
            objects_max: 10_000_000,
            string_len_max: 1 << 20,
            bytes_len_max: 1 << 20,
            json_len_max: 1 << 20,
            json_depth_max: 64,
            refs_max: 1 << 16,
        }
    }
}

impl Config {
    /// The limits staging checks every change against (issue 7).
    pub(crate) fn limits(&self) -> change::Limits {
        let usize_of = |x: u64| usize::try_from(x).unwrap_or(usize::MAX);
        change::Limits {
            changes_max: usize_of(self.changes_max),
            key_len_max: self.key_len_max as usize,
            objects_max: usize_of(self.objects_max).min(crate::graph::OBJECTS_MAX),
            value: self.value_limits(),
        }
    }

    /// The size limits on one field value.
    pub(crate) fn value_limits(&self) -> ValueLimits {
        ValueLimits {
            string_len_max: self.string_len_max as usize,
            bytes_len_max: self.bytes_len_max as usize,
            json_len_max: self.json_len_max as usize,
            json_depth_max: self.json_depth_max as usize,
            refs_max: self.refs_max as usize,
            key_len_max: self.key_len_max as usize,
        }
    }
}

/// An object's status (R4): exactly one of these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Status {
    /// Synced at its current version.
    Synced,
    /// Work to do: runnable now, or after dependencies in the same plan.
    Pending,
    /// Its last actuation failed.
    Error {
        /// The failure message.
        message: String,
        /// Consecutive failures.
        failures: u32,
        /// When it is eligible again (`None`: an external object waits for a new report).
        retry_at: Option<Time>,
    },
    /// Its actuator deferred (R6).
    Deferred {
        /// The actuator's message.
        message: String,
        /// When it is eligible again.
        retry_at: Time,
    },
    /// A dependency, transitively, is in error, deferred, blocked or being deleted.
    Blocked {
        /// The root cause's key.
        by: String,
        /// What happened to it.
        message: String,
    },
    /// Waits for an external object's report (R17).
    WaitingExternal {
        /// The external object.
        key: String,
    },
    /// A delete waiting for its referrers to go (R7).
    WaitingReferrers {
        /// The referrers, sorted.
        keys: Vec<String>,
    },
}

/// Everything stored about one object, for inspection.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ObjectInfo {
    /// Key.
    pub key: String,
    /// Model name.
    pub model: String,
    /// Dense id.
    pub id: ObjectId,
    /// Declarative version.
    pub version: u64,
    /// Version last synced (`0`: never).
    pub enacted: u64,
    /// Declarative fields.
    pub fields: Vec<(String, Value)>,
    /// Feedback fields.
    pub feedback: Vec<(String, Value)>,
    /// Consecutive failures.
    pub failures: u32,
    /// When a failed or deferred object is eligible again.
    pub retry_at: Option<Time>,
    /// Last error or deferral message.
    pub message: Option<String>,
    /// Whether it is being deleted.
    pub deleting: bool,
    /// Whether its last outcome was `Deferred` (R6).
    pub deferred: bool,
    /// Whether the embedder reported this external object failed (R17).
    pub external_failed: bool,
}

/// Watcher failures, counted (R18).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchStats {
    /// Notifications delivered.
    pub delivered: u64,
    /// Notifications whose watcher returned an error.
    pub failed: u64,
    /// The most recent failure messages (at most [`WATCH_LOG_MAX`]).
    pub log: Vec<String>,
}

/// Most watcher failure messages kept.
pub const WATCH_LOG_MAX: usize = 256;

/// The synchronizer core: schema, objects, and the rules that turn change sets into plans.
///
/// # Examples
/// ```
/// use syncore::{Change, ChangeSet, Config, Engine, Outcome, Schema, Time};
/// let schema = Schema::from_json(r#"{"models": [
///   {"name": "Site"},
///   {"name": "Slice", "fields": [{"name": "site", "type": "ref"}],
///    "links": [{"field": "site", "target": "Site"}]}]}"#).unwrap();
/// let mut engine = Engine::new(schema, Config::default());
/// engine.apply(ChangeSet::new()
///     .upsert("s1", "Site", [("x", 0i64); 0])
///     .upsert("sl1", "Slice", [("site", "s1")])).unwrap();
/// let plan = engine.plan(Time(0));
/// assert_eq!(plan.wave_count(), 2); // the site first, then the slice
/// for task in plan.tasks.clone() {
///     engine.complete(&task, Outcome::ok(), Time(1)).unwrap();
/// }
/// assert!(engine.plan(Time(1)).is_empty());
/// ```
pub struct Engine {
    schema: Arc<Schema>,
    config: Config,
    store: Store,
    policies: Vec<Option<Box<dyn Policy>>>,
    watchers: Vec<Option<Box<dyn Watcher>>>,
    watch: WatchStats,
    scratch: Mutex<Scratch>,
    /// The hash of the schema and configuration (fixed for the engine's life).
    base_hash: u64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("objects", &self.len())
            .field("unsettled", &self.store.d.unsettled.len())
            .finish()
    }
}

/// A registration named a model the schema lacks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no model named {model}")]
pub struct UnknownModel {
    /// The name.
    pub model: String,
}

impl Engine {
    /// An empty engine over `schema`.
    pub fn new(schema: Schema, config: Config) -> Engine {
        let decl = schema
            .models()
            .iter()
            .map(|m| m.fields.len() as u16)
            .collect();
        let n = schema.models().len();
        let base_hash = snapshot::header_hash(&schema, &config);
        Engine {
            schema: Arc::new(schema),
            config,
            store: Store::new(decl),
            policies: (0..n).map(|_| None).collect(),
            watchers: (0..n).map(|_| None).collect(),
            watch: WatchStats::default(),
            scratch: Mutex::new(Scratch::default()),
            base_hash,
        }
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Registers `model`'s policy (R10), replacing any previous one.
    ///
    /// # Errors
    /// [`UnknownModel`] if the schema has no such model.
    pub fn register_policy(
        &mut self,
        model: &str,
        policy: Box<dyn Policy>,
    ) -> Result<(), UnknownModel> {
        let id = self.schema.model_id(model).ok_or_else(|| UnknownModel {
            model: model.into(),
        })?;
        self.policies[id.index()] = Some(policy);
        Ok(())
    }

    /// Registers `model`'s watcher (R18), replacing any previous one.
    ///
    /// # Errors
    /// [`UnknownModel`] if the schema has no such model.
    pub fn register_watcher(
        &mut self,
        model: &str,
        watcher: Box<dyn Watcher>,
    ) -> Result<(), UnknownModel> {
        let id = self.schema.model_id(model).ok_or_else(|| UnknownModel {
            model: model.into(),
        })?;
        self.watchers[id.index()] = Some(watcher);
        Ok(())
    }

    /// Applies a change set atomically: all of it, policies' changes included, or nothing.
    ///
    /// # Errors
    /// A [`ChangeError`] naming the offending key, model or field; the engine is unchanged.
    ///
    /// # Complexity
    /// O(changes + their edges), plus the effective ancestors of objects that gain
    /// dependencies (the cycle check, R11). Never O(store) (R15).
    pub fn apply(&mut self, set: ChangeSet) -> Result<ApplyReport, ChangeError> {
        let limits = self.config.limits();
        // Refused before sorting; staging counts policy output against the same limit.
        if set.changes.len() > limits.changes_max {
            return Err(ChangeError::TooLarge {
                what: "change set",
                max: limits.changes_max,
            });
        }
        // A change set that only creates objects takes the bulk path (same result).
        let set = match crate::bulk::try_apply(
            &self.schema,
            &mut self.store,
            &limits,
            &self.policies,
            &self.watchers,
            set,
        ) {
            Ok(report) => {
                self.store.flush_hash();
                return Ok(report);
            }
            Err(set) => set,
        };
        self.apply_general(set)
    }

    /// Applies `rows` as the change set of the same upserts (`ChangeSet::from(rows)`) would
    /// be applied, with the same result, report and state, but without a field map per
    /// object: rows of new objects take the bulk path with their values moved by column.
    ///
    /// # Errors
    /// As [`Engine::apply`]: a [`ChangeError`] naming the offending key or field; the
    /// engine is unchanged.
    pub fn apply_rows(&mut self, rows: Rows) -> Result<ApplyReport, ChangeError> {
        let limits = self.config.limits();
        if rows.len() > limits.changes_max {
            return Err(ChangeError::TooLarge {
                what: "change set",
                max: limits.changes_max,
            });
        }
        match crate::bulk::try_apply(
            &self.schema,
            &mut self.store,
            &limits,
            &self.policies,
            &self.watchers,
            rows,
        ) {
            Ok(report) => {
                self.store.flush_hash();
                Ok(report)
            }
            Err(rows) => self.apply_general(ChangeSet::from(rows)),
        }
    }

    /// `apply` through the bulk path only: the set back if it is out of that path's scope.
    #[cfg(test)]
    pub(crate) fn apply_bulk(&mut self, set: ChangeSet) -> Result<ApplyReport, ChangeSet> {
        let limits = self.config.limits();
        let r = crate::bulk::try_apply(
            &self.schema,
            &mut self.store,
            &limits,
            &self.policies,
            &self.watchers,
            set,
        );
        self.store.flush_hash();
        r
    }

    /// `apply` through the general staging path (policies, watchers, updates, deletes).
    pub(crate) fn apply_general(&mut self, set: ChangeSet) -> Result<ApplyReport, ChangeError> {
        let limits = self.config.limits();
        let checked = Stage::new(&self.schema, &self.store, limits).run(
            &set,
            &self.policies,
            self.config.policy_rounds_max,
        )?;
        let (report, events) = change::commit(&self.schema, &mut self.store, checked);
        self.store.flush_hash();
        self.notify(&events);
        Ok(report)
    }

    /// The plan at `now`: tasks that may run, their edges and waves, held objects and why,
    /// and the next wake time. Pure: the same state and `now` give the same plan (R12).
    ///
    /// # Complexity
    /// O(unsettled objects + the edges to their nearest unsettled ancestors), walking
    /// through settled ancestors (R1, R15).
    pub fn plan(&self, now: Time) -> Plan {
        match self.scratch.try_lock() {
            Some(mut s) => plan::plan(&self.schema, &self.store, &mut s, now),
            None => plan::plan(&self.schema, &self.store, &mut Scratch::default(), now),
        }
    }

    /// Feeds back the outcome of `task` at `now`.
    ///
    /// # Errors
    /// [`CompleteError::UnknownObject`] if the task's object is gone.
    pub fn complete(
        &mut self,
        task: &Task,
        outcome: Outcome,
        now: Time,
    ) -> Result<Completion, CompleteError> {
        let outcome = self.check_feedback_limits(task, outcome);
        // The key is copied only for watchers (a completed delete frees it).
        let watched = self.watchers.iter().any(Option::is_some);
        let object = (watched && self.store.alive(task.object)).then(|| {
            (
                self.store.key(task.object).to_string(),
                self.store.model(task.object),
            )
        });
        let done = complete::complete(
            &self.schema,
            &mut self.store,
            &self.config.backoff,
            task,
            outcome,
            now,
        );
        self.store.flush_hash();
        let (done, changed, swept) = done?;
        let Some((key, model)) = object else {
            return Ok(done);
        };
        let mut events = Vec::new();
        if !changed.is_empty() {
            events.push((key.clone(), model, WatchKind::Feedback, changed));
        }
        if matches!(done, Completion::Deleted { .. }) {
            // The object left the store, and the passive or external objects it freed (R18).
            events.push((key, model, WatchKind::Deleted, Vec::new()));
            events.extend(
                swept
                    .into_iter()
                    .map(|(k, m)| (k, m, WatchKind::Deleted, Vec::new())),
            );
            events.sort_by(|a, b| a.0.cmp(&b.0));
        }
        self.notify(&events);
        Ok(done)
    }

    /// An `Ok` outcome whose feedback breaks a value limit becomes a failure naming the
    /// field, recorded like a refused declarative write (R9): oversized feedback never
    /// reaches the store.
    fn check_feedback_limits(&self, task: &Task, outcome: Outcome) -> Outcome {
        let Outcome::Ok { feedback, .. } = &outcome else {
            return outcome;
        };
        if feedback.is_empty() || !self.store.alive(task.object) {
            return outcome;
        }
        let model = self.schema.model(self.store.model(task.object));
        let limits = self.config.value_limits();
        for (name, value) in feedback {
            // Checked as it would be stored; a write `complete` refuses anyway is skipped.
            let Some(FieldSlot::Feedback(i)) = model.slot(name) else {
                continue;
            };
            let Ok(value) = value.clone().coerce(model.feedback[i as usize].ty) else {
                continue;
            };
            if let Err(e) = value.check_limits(&limits) {
                return Outcome::Failed {
                    message: format!(
                        "feedback field {name}: {} exceeds the limit of {}",
                        e.what, e.max
                    ),
                };
            }
        }
        outcome
    }

    /// Records a report about an object of an external model (R17). A report names the
    /// version it is about ([`ApplyReport::versions`] tells the embedder which version an
    /// apply gave); one about another version than the current one is
    /// [`Completion::Stale`]. A failure of the current version blocks its dependents, even
    /// after it was reported synced.
    ///
    /// # Errors
    /// [`CompleteError::UnknownKey`] or [`CompleteError::NotExternal`].
    pub fn report_external(
        &mut self,
        key: &str,
        report: ExternalReport,
    ) -> Result<Completion, CompleteError> {
        let id = self
            .store
            .id_of(key)
            .ok_or_else(|| CompleteError::UnknownKey { key: key.into() })?;
        if self.schema.model(self.store.model(id)).kind != ModelKind::External {
            return Err(CompleteError::NotExternal { key: key.into() });
        }
        let done = complete::report_external(&mut self.store, id, report);
        self.store.flush_hash();
        Ok(done)
    }

    /// Number of objects in the store.
    pub fn len(&self) -> usize {
        self.store.live_count
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.store.live_count == 0
    }

    /// Number of objects with work to do or a reason to wait.
    pub fn unsettled_count(&self) -> usize {
        self.store.d.unsettled.len()
    }

    /// Keys of all objects, in id order.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.store.capacity() as u32)
            .map(ObjectId)
            .filter(|&id| self.store.alive(id))
            .map(|id| self.store.key(id))
    }

    /// The id of `key`.
    pub fn id(&self, key: &str) -> Option<ObjectId> {
        self.store.id_of(key)
    }

    /// The key of a live object.
    ///
    /// # Panics
    /// If `id` is not a live object's id.
    pub fn key(&self, id: ObjectId) -> &str {
        assert!(self.store.alive(id), "no live object with id {}", id.0);
        self.store.key(id)
    }

    /// A read-only view of a live object (what actuators get).
    ///
    /// # Panics
    /// If `id` is not a live object's id.
    pub fn view(&self, id: ObjectId) -> ObjectView<'_> {
        assert!(self.store.alive(id), "no live object with id {}", id.0);
        ObjectView::in_store(&self.schema, &self.store, id)
    }

    /// A read-only view of the object with `key`.
    pub fn view_key(&self, key: &str) -> Option<ObjectView<'_>> {
        self.store
            .id_of(key)
            .map(|id| ObjectView::in_store(&self.schema, &self.store, id))
    }

    /// Everything stored about `key`.
    pub fn object(&self, key: &str) -> Option<ObjectInfo> {
        let id = self.store.id_of(key)?;
        let v = self.view(id);
        let b = self.store.backoff(id);
        Some(ObjectInfo {
            key: key.to_string(),
            model: v.model().to_string(),
            id,
            version: self.store.version(id),
            enacted: self.store.enacted(id),
            fields: v
                .fields()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            feedback: v
                .feedbacks()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            failures: b.failures,
            retry_at: (b.failures > 0 || b.deferred()).then_some(b.retry_at),
            message: self.store.message(id).map(str::to_string),
            deleting: b.deleting(),
            deferred: b.deferred(),
            external_failed: b.external_failed(),
        })
    }

    /// The status of `key` at `now` (R4), or `None` if there is no such object.
    ///
    /// # Complexity
    /// One [`Engine::plan`]; use [`Engine::status_in`] to read many statuses from one plan.
    pub fn status(&self, key: &str, now: Time) -> Option<Status> {
        let id = self.store.id_of(key)?;
        Some(self.status_in(&self.plan(now), id))
    }

    /// The status of object `id` according to `plan`, which must be this engine's latest.
    pub fn status_in(&self, plan: &Plan, id: ObjectId) -> Status {
        if !self.store.is_unsettled(id) {
            return Status::Synced;
        }
        let b = *self.store.backoff(id);
        let message = || self.store.message(id).unwrap_or_default().to_string();
        match plan.hold(id) {
            // A task in this plan: work to do now, also when it is the retry of a failure
            // or deferral whose time has come (R4; the failure stays in `object`).
            None => Status::Pending,
            Some(HoldReason::BackingOff { .. }) => {
                if b.deferred() {
                    Status::Deferred {
                        message: message(),
                        retry_at: b.retry_at,
                    }
                } else if b.failures > 0 {
                    Status::Error {
                        message: message(),
                        failures: b.failures,
                        retry_at: Some(b.retry_at),
                    }
                } else {
                    Status::Pending
                }
            }
            Some(HoldReason::ExternalFailed) => Status::Error {
                message: message(),
                failures: b.failures,
                retry_at: None,
            },
            Some(HoldReason::Blocked { by }) => Status::Blocked {
                by: self.key(*by).to_string(),
                message: self.cause(*by),
            },
            Some(HoldReason::WaitingExternal { key }) => Status::WaitingExternal {
                key: self.key(*key).to_string(),
            },
            Some(HoldReason::WaitingReferrers { keys }) => Status::WaitingReferrers {
                keys: keys.iter().map(|k| self.key(*k).to_string()).collect(),
            },
        }
    }

    /// What happened to a root cause, in words.
    fn cause(&self, root: ObjectId) -> String {
        let key = self.store.key(root);
        let b = self.store.backoff(root);
        let msg = self.store.message(root).unwrap_or_default();
        if b.deleting() && b.failures == 0 && !b.deferred() {
            format!("dependency {key} is being deleted")
        } else if b.deferred() {
            format!("dependency {key} deferred: {msg}")
        } else if b.external_failed() {
            format!("external dependency {key} failed: {msg}")
        } else {
            format!("dependency {key} failed: {msg}")
        }
    }

    /// Watcher delivery counters (R18).
    pub fn watch_stats(&self) -> &WatchStats {
        &self.watch
    }

    /// Pretend mode (R13): the waves that would run, round after round, if every task
    /// succeeded, without calling any actuator, policy or watcher and without changing
    /// this engine. A round with nothing runnable but a backoff expiry ahead waits for it:
    /// the next round is planned at that time (its [`Plan::now`]). Rounds stop when
    /// nothing runnable is left or will become so (or after `rounds_max`).
    pub fn pretend(&self, now: Time, rounds_max: usize) -> Vec<Plan> {
        let mut store = self.store.clone();
        let mut scratch = Scratch::default();
        let mut rounds = Vec::new();
        let mut now = now;
        while rounds.len() < rounds_max {
            let p = plan::plan(&self.schema, &store, &mut scratch, now);
            if p.tasks.is_empty() {
                match p.next_wake {
                    Some(wake) if wake > now => {
                        now = wake;
                        continue;
                    }
                    _ => break,
                }
            }
            for t in &p.tasks {
                // Every outcome here is Ok; a completion can only fail on a vanished task.
                let _ = complete::complete(
                    &self.schema,
                    &mut store,
                    &self.config.backoff,
                    t,
                    Outcome::ok(),
                    now,
                );
            }
            rounds.push(p);
        }
        rounds
    }

    /// Serialises the whole state, backoff included (R14): a format header, the schema,
    /// the configuration, the store, and a checksum. Policies and watchers are code and
    /// must be registered again after [`Engine::restore`].
    pub fn snapshot(&self) -> Vec<u8> {
        snapshot::encode(&self.schema, &self.config, &self.store.d)
    }

    /// Rebuilds an engine from [`Engine::snapshot`] bytes.
    ///
    /// # Errors
    /// A [`SnapshotError`] for foreign, truncated, corrupt or inconsistent bytes; never panics.
    pub fn restore(bytes: &[u8]) -> Result<Engine, SnapshotError> {
        Engine::restore_with(bytes, true)
    }

    /// [`Engine::restore`]; without the checksum pass when `check_sum` is false (the
    /// caller checked the bytes' integrity: see `snapshot::decode_with`).
    pub(crate) fn restore_with(bytes: &[u8], check_sum: bool) -> Result<Engine, SnapshotError> {
        let (schema, config, store) = snapshot::decode_with(bytes, check_sum)?;
        let mut engine = Engine::new(schema, config);
        debug_assert_eq!(engine.store.decl_counts, store.decl_counts);
        engine.store = store;
        Ok(engine)
    }

    /// A 64-bit hash of the whole state [`Engine::snapshot`] carries: equal states hash
    /// equal, whatever order of operations reached them.
    ///
    /// # Complexity
    /// O(1): the hash is maintained as the state changes (see `state_hash.rs`).
    pub fn state_hash(&self) -> u64 {
        let h = self.base_hash.wrapping_add(self.store.state_hash());
        #[cfg(debug_assertions)]
        if self.store.capacity() <= 256 {
            debug_assert_eq!(h, self.state_hash_full(), "incremental state hash drifted");
        }
        h
    }

    /// [`Engine::state_hash`] recomputed from scratch, O(store): what the incremental hash
    /// is checked against.
    #[doc(hidden)]
    pub fn state_hash_full(&self) -> u64 {
        let d = &self.store.d;
        snapshot::header_hash(&self.schema, &self.config)
            .wrapping_add(crate::state_hash::SlotHashes::full(d))
    }

    /// Approximate heap bytes held by the store and its indexes (field data included).
    pub fn memory_bytes(&self) -> usize {
        self.store.memory_bytes()
    }

    /// Delivers watch events in (watcher, key) order (R18); `events` are in key order.
    fn notify(&mut self, events: &[change::Event]) {
        if events.is_empty() || self.watchers.iter().all(Option::is_none) {
            return;
        }
        let mut failures = Vec::new();
        let mut delivered = 0;
        for (w, watcher) in self.watchers.iter().enumerate() {
            let Some(watcher) = watcher else { continue };
            let wm = &self.schema.models()[w];
            for (key, model, kind, changed) in events {
                let model = *model;
                let Some((_, filter)) = wm.watches.iter().find(|(m, _)| *m == model) else {
                    continue;
                };
                let fields: Vec<String> = match filter {
                    Some(set) => changed
                        .iter()
                        .filter(|f| set.contains(*f))
                        .cloned()
                        .collect(),
                    None => changed.clone(),
                };
                let is_delete = matches!(kind, WatchKind::Deleted | WatchKind::DeleteRequested);
                if fields.is_empty() && !is_delete {
                    continue;
                }
                let id = match kind {
                    WatchKind::Deleted => None,
                    _ => self.store.id_of(key),
                };
                let event = WatchEvent {
                    watcher_model: &wm.name,
                    key,
                    model: &self.schema.model(model).name,
                    kind: *kind,
                    changed: &fields,
                    object: id.map(|id| ObjectView::in_store(&self.schema, &self.store, id)),
                };
                delivered += 1;
                if let Err(e) = watcher.notify(&event) {
                    failures.push(format!("watcher of {} on {key}: {e}", wm.name));
                }
            }
        }
        self.watch.delivered += delivered;
        self.watch.failed += failures.len() as u64;
        for f in failures {
            if self.watch.log.len() == WATCH_LOG_MAX {
                self.watch.log.remove(0);
            }
            self.watch.log.push(f);
        }
    }
}
