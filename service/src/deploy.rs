//! The deployment file of `syncore serve`: schema, what syncs each model, settings, listen
//! address, data directory, and where secrets are read from.
//!
//! ```json
//! {
//!   "schema": {"models": [{"name": "Site", "fields": [{"name": "name", "type": "string"}]}]},
//!   "models": {"Site": {"actuator": "rest", "url": "http://127.0.0.1:8080/v1/objects",
//!                       "token_secret": "inventory"}},
//!   "secrets": {"inventory": {"env": "INVENTORY_TOKEN"}, "api": {"file": "/run/api-token"}},
//!   "listen": "127.0.0.1:7070",
//!   "token_secret": "api",
//!   "data_dir": "data",
//!   "settings": {"backoff": {"base_ms": 500}},
//!   "service": {"snapshot_every": 10000, "body_max": 1048576, "in_flight_max": 256}
//! }
//! ```
//! Scheduling comes from the same file ([`sched_config`]): `service.in_flight_max` is the
//! global concurrency limit, and each model's `in_flight_max`, `timeout_ms`, `priority`
//! and `resync_ms` become its `syncore::sched::ModelSched`.
//!
//! Paths are relative to the file. Secrets are read when the service starts, from the file
//! or environment variable named; their values are never logged or snapshotted.
//!
//! ## Models synced by WASM plugins
//! Instead of a built-in `actuator`, a model may name a WASM component (built against
//! `syncore:plugin`, see `syncore::wasm`) with `plugin`, a path relative to the file, and
//! what it may do with `grants`, in the shape scenario files use (`docs/scenarios.md`):
//!
//! ```json
//! {
//!   "models": {
//!     "Network": {"plugin": "plugins/cord_actuators.wasm", "timeout_ms": 10000,
//!                 "grants": {"http": ["http://127.0.0.1:8080"],
//!                            "config": {"inventory": "http://127.0.0.1:8080",
//!                                       "inventory-auth": "token"},
//!                            "secrets": {"token": "inventory"},
//!                            "request_timeout_ms": 5000, "call_timeout_ms": 1000,
//!                            "calls_in_flight_max": 64}},
//!     "Port":    {"plugin": "plugins/cord_actuators.wasm", "grants": {"...": "the same"}}
//!   },
//!   "secrets": {"inventory": {"file": "inventory.token"}}
//! }
//! ```
//!
//! `grants` is a `syncore::wasm::GrantSpec`, the type scenario files use too (its doc
//! lists every field: `http`, `request_timeout_ms`, `response_bytes_max`, `config`,
//! `secrets`, `clocks`, `random`, `dirs`, `call_timeout_ms`, `memory_bytes_max`,
//! `calls_in_flight_max`), with what is the service's own:
//!
//! | grant field | meaning here |
//! |---|---|
//! | `secrets` | the plugin's secret name → the name of one of the deployment's `secrets`; the plugin reads the value with `config.secret`, and the host hides it from every log line, message and feedback, so it reaches neither the log, snapshots, the API, the event stream nor metrics |
//! | `dirs` | host paths relative to the deployment file |
//! | `call_timeout_ms` | most *running* time of one call (an epoch deadline; waiting on HTTP does not count); default 1,000 |
//! | `fuel` | refused: the service limits calls by a deadline (`call_timeout_ms`) |
//!
//! Every plugin is loaded (compiled, checked for the `syncore:plugin` version and the
//! actuator world, linked) when the deployment is loaded, before the log is opened or
//! anything listens: a missing or invalid component, a bad origin or a grant naming an
//! unknown secret is a [`DeployError::Plugin`] naming the model and the file. Models that
//! name the same file with the same grants share one loaded plugin (one compilation, one
//! instance pool, `calls_in_flight_max` over all of them); its name, in messages, is the
//! file stem. Plugin actuations run asynchronously (`syncore::AsyncActuator`): one
//! waiting on an HTTP answer holds no thread, and an overdue one (the model's
//! `timeout_ms`) is cancelled. A plugin's log lines go to the event stream
//! (`/v1/events`) as `plugin_log` events. `service.plugin_cache_dir` (relative to the
//! file) keeps compiled components between starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use std::sync::Arc;
use syncore::sched::{ModelSched, SchedConfig, Scheduler};

use syncore::wasm::{
    Grant, GrantSpec, HostConfig, LogLine, LogSink, Secret, WasmActuator, WasmHost,
};
use syncore::{ChangeSet, Config, Engine, Schema, SchemaDef};

/// A deployment file, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentDef {
    /// The schema (as `Schema::from_json` reads it).
    pub schema: SchemaDef,
    /// What syncs each actuated model, by model name.
    #[serde(default)]
    pub models: BTreeMap<String, ModelDeploy>,
    /// Named secrets and where to read them.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// Address to listen on. Default: `127.0.0.1:7070`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The secret holding the bearer token the API requires; mandatory when `listen` is
    /// not a loopback address.
    #[serde(default)]
    pub token_secret: Option<String>,
    /// Where the log lives. Default: `data` beside the file.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Engine settings.
    #[serde(default)]
    pub settings: Config,
    /// Service settings.
    #[serde(default)]
    pub service: ServiceSettings,
    /// A change set applied when the log is empty (first start only).
    #[serde(default)]
    pub initial: Option<ChangeSet>,
}

fn default_listen() -> String {
    "127.0.0.1:7070".into()
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

/// What syncs one model.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDeploy {
    /// A built-in actuator: `rest` (an HTTP inventory: `PUT url/key`, `DELETE url/key`),
    /// `delay` (waits `delay_ms`, fails the first `fail_first` attempts of each object),
    /// `noop` (succeeds at once). Exactly one of `actuator` and `plugin`.
    #[serde(default)]
    pub actuator: Option<String>,
    /// A WASM actuator component, relative to the deployment file (see the module's doc).
    #[serde(default)]
    pub plugin: Option<PathBuf>,
    /// What the `plugin` may do beyond computing on its arguments. Default: nothing.
    #[serde(default)]
    pub grants: Option<GrantSpec>,
    /// `rest`: the collection URL.
    #[serde(default)]
    pub url: Option<String>,
    /// `rest`: the secret sent as a bearer token.
    #[serde(default)]
    pub token_secret: Option<String>,
    /// `delay`: how long one actuation takes. Default: 0.
    #[serde(default)]
    pub delay_ms: u64,
    /// `delay`: failing attempts per object before success, by key suffix digit: an object
    /// whose key ends in a digit d fails the first `d % (fail_first + 1)` attempts.
    #[serde(default)]
    pub fail_first: u32,
    /// Most actuations of this model in flight (the scheduler's per-model `limit`).
    /// Default: no limit beyond the global one.
    #[serde(default)]
    pub in_flight_max: Option<u32>,
    /// An actuation longer than this fails as `timed out after <ms> ms` (the scheduler's
    /// `timeout_ms`). Default: 30,000.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Priority class: among dispatchable tasks, higher starts first. Default: 0.
    #[serde(default)]
    pub priority: i32,
    /// Re-actuate a synced object this long after its last successful sync (drift
    /// correction, with seeded jitter). Default: never.
    #[serde(default)]
    pub resync_ms: Option<u64>,
}

fn default_timeout() -> u64 {
    30_000
}

/// The scheduler configuration a deployment file describes: `service.in_flight_max` is
/// the global limit; each model's `in_flight_max`, `timeout_ms`, `priority` and
/// `resync_ms` are its [`ModelSched`].
pub fn sched_config(def: &DeploymentDef) -> SchedConfig {
    let mut c = SchedConfig::default().concurrency(def.service.in_flight_max);
    c.seed = def.service.resync_seed;
    for (name, d) in &def.models {
        c = c.model(
            name.clone(),
            ModelSched {
                limit: d.in_flight_max,
                priority: d.priority,
                resync_ms: d.resync_ms,
                timeout_ms: Some(d.timeout_ms),
            },
        );
    }
    c
}

/// Where a secret comes from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretSource {
    /// A file, read whole, surrounding whitespace trimmed.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

/// Service settings. Every option states its default.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceSettings {
    /// Log entries between snapshots. Default: 10,000.
    pub snapshot_every: u64,
    /// Largest request body, in bytes. Default: 1,048,576.
    pub body_max: usize,
    /// Requests per second the API accepts (a token bucket of one second's worth); 0: no
    /// limit. Default: 0.
    pub rate_per_s: u32,
    /// Most actuations in flight, over all models (the scheduler's `concurrency`).
    /// Default: 256.
    pub in_flight_max: u32,
    /// Seed of the re-sync jitter. Default: 0.
    pub resync_seed: u64,
    /// On SIGTERM, how long in-flight actuations may still finish. Default: 5,000.
    pub shutdown_grace_ms: u64,
    /// Where compiled plugins are kept between starts (relative to the file), so a
    /// restart loads instead of compiling. Default: none, plugins compile at every start.
    pub plugin_cache_dir: Option<PathBuf>,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            snapshot_every: 10_000,
            body_max: 1 << 20,
            rate_per_s: 0,
            in_flight_max: 256,
            resync_seed: 0,
            shutdown_grace_ms: 5_000,
            plugin_cache_dir: None,
        }
    }
}

/// A loaded, checked deployment.
#[derive(Debug)]
pub struct Deployment {
    /// The file's definition.
    pub def: DeploymentDef,
    /// The validated schema.
    pub schema: Schema,
    /// The scheduler's configuration: the global and per-model limits, timeouts,
    /// priorities and re-sync periods of the file.
    pub sched: SchedConfig,
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The data directory (resolved).
    pub data_dir: PathBuf,
    /// Secret values by name (never logged).
    pub secrets: BTreeMap<String, String>,
    /// The bearer token the API requires, if any.
    pub token: Option<String>,
    /// The loaded plugin of each model synced by one, by model name (models sharing a
    /// file and grants share one plugin).
    pub plugins: BTreeMap<String, WasmActuator>,
    /// Where the plugins' log lines go.
    pub plugin_logs: Arc<PluginLogs>,
}

/// Where plugins' log lines go: the service's event stream (`/v1/events`), as
/// `{"event": "plugin_log", "plugin", "key", "level", "message"}`, once the service runs
/// and someone listens; otherwise they are dropped. The host has already hidden granted
/// secrets in them.
#[derive(Debug, Default)]
pub struct PluginLogs {
    events: parking_lot::Mutex<Option<tokio::sync::broadcast::Sender<String>>>,
}

impl PluginLogs {
    /// Sends the lines from now on to `events`.
    pub fn connect(&self, events: tokio::sync::broadcast::Sender<String>) {
        *self.events.lock() = Some(events);
    }
}

impl LogSink for PluginLogs {
    fn log(&self, line: LogLine) {
        let events = self.events.lock();
        if let Some(tx) = events.as_ref().filter(|tx| tx.receiver_count() > 0) {
            let level = format!("{:?}", line.level).to_lowercase();
            let _ = tx.send(
                serde_json::json!({"event": "plugin_log", "plugin": line.plugin,
                    "key": line.key, "level": level, "message": line.message})
                .to_string(),
            );
        }
    }
}

/// A deployment file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The file could not be read.
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The JSON did not parse (or has an unknown or ill-typed field).
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The deployment is inconsistent.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, naming the model, field or secret.
        message: String,
    },
    /// A model's plugin cannot be used: its file is missing or not a valid actuator
    /// component, or its grants are wrong.
    #[error("{path}: models.{model}: plugin {file}: {message}")]
    Plugin {
        /// The deployment file.
        path: String,
        /// The model.
        model: String,
        /// The component's file, as resolved.
        file: String,
        /// What is wrong (a grant's field is named as `grants.<field>`).
        message: String,
    },
}

impl Deployment {
    /// Reads and checks a deployment file, reading the secrets it names.
    ///
    /// # Errors
    /// A [`DeployError`] naming the file, and the line and column or the model, actuator or
    /// secret at fault.
    pub fn load(path: &Path) -> Result<Deployment, DeployError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| DeployError::Read {
            path: p.clone(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Deployment::from_str(&text, base, &p)
    }

    /// Checks deployment text; relative paths are taken from `base`, `name` names it in
    /// errors.
    ///
    /// # Errors
    /// As [`Deployment::load`].
    pub fn from_str(text: &str, base: &Path, name: &str) -> Result<Deployment, DeployError> {
        let invalid = |message: String| DeployError::Invalid {
            path: name.to_string(),
            message,
        };
        let def: DeploymentDef = serde_json::from_str(text).map_err(|e| DeployError::Parse {
            path: name.to_string(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        let schema =
            Schema::new(def.schema.clone()).map_err(|e| invalid(format!("schema: {e}")))?;
        let listen: SocketAddr = def
            .listen
            .parse()
            .map_err(|e| invalid(format!("listen {:?}: {e}", def.listen)))?;
        let mut missing = Vec::new();
        for m in schema.models() {
            if m.kind == syncore::ModelKind::Actuated && !def.models.contains_key(&m.name) {
                missing.push(m.name.clone());
            }
        }
        if !missing.is_empty() {
            return Err(invalid(format!(
                "no actuator for actuated model(s) {} (R17)",
                missing.join(", ")
            )));
        }
        for (model, d) in &def.models {
            if schema.model_id(model).is_none() {
                return Err(invalid(format!(
                    "models.{model}: the schema has no such model"
                )));
            }
            match (d.actuator.as_deref(), &d.plugin) {
                (Some(_), Some(_)) => {
                    return Err(invalid(format!(
                        "models.{model}: give either a built-in actuator or a plugin, not both"
                    )))
                }
                (None, None) => {
                    return Err(invalid(format!(
                        "models.{model}: no actuator: give a built-in actuator (rest, delay, noop) or a plugin (a .wasm component)"
                    )))
                }
                (Some(_), None) if d.grants.is_some() => {
                    return Err(invalid(format!(
                        "models.{model}: grants are for a plugin, not a built-in actuator"
                    )))
                }
                (Some("rest"), None) if d.url.is_none() => {
                    return Err(invalid(format!(
                        "models.{model}: actuator rest needs a url"
                    )))
                }
                (Some("rest" | "delay" | "noop"), None) | (None, Some(_)) => {}
                (Some(other), None) => {
                    return Err(invalid(format!(
                        "models.{model}: unknown actuator {other:?} (built-ins: rest, delay, noop)"
                    )))
                }
            }
            if let Some(s) = &d.token_secret {
                if !def.secrets.contains_key(s) {
                    return Err(invalid(format!("models.{model}: no secret named {s:?}")));
                }
            }
        }
        let sched = sched_config(&def);
        for (model, d) in &def.models {
            if d.timeout_ms == 0 {
                return Err(invalid(format!(
                    "models.{model}.timeout_ms must be at least 1"
                )));
            }
            if d.in_flight_max == Some(0) {
                return Err(invalid(format!(
                    "models.{model}.in_flight_max must be at least 1"
                )));
            }
            if d.resync_ms == Some(0) {
                return Err(invalid(format!(
                    "models.{model}.resync_ms must be at least 1"
                )));
            }
        }
        if def.service.in_flight_max == 0 {
            return Err(invalid("service.in_flight_max must be at least 1".into()));
        }
        Scheduler::new(
            Engine::new(schema.clone(), def.settings.clone()),
            sched.clone(),
        )
        .map_err(|e| invalid(e.to_string()))?;
        let mut secrets = BTreeMap::new();
        for (n, source) in &def.secrets {
            let value = match source {
                SecretSource::File(f) => {
                    let f = base.join(f);
                    std::fs::read_to_string(&f)
                        .map(|s| s.trim().to_string())
                        .map_err(|e| invalid(format!("secret {n}: {}: {e}", f.display())))?
                }
                SecretSource::Env(v) => std::env::var(v).map_err(|_| {
                    invalid(format!("secret {n}: environment variable {v} is not set"))
                })?,
            };
            if value.is_empty() {
                return Err(invalid(format!("secret {n} is empty")));
            }
            secrets.insert(n.clone(), value);
        }
        let token = match &def.token_secret {
            Some(s) => Some(
                secrets
                    .get(s)
                    .cloned()
                    .ok_or_else(|| invalid(format!("token_secret: no secret named {s:?}")))?,
            ),
            None => None,
        };
        if !listen.ip().is_loopback() && token.is_none() {
            return Err(invalid(format!(
                "listen {listen} is not a loopback address: a token_secret is required"
            )));
        }
        let data_dir = base.join(&def.data_dir);
        let plugin_logs = Arc::new(PluginLogs::default());
        let plugins = load_plugins(&def, base, &secrets, name, plugin_logs.clone())?;
        Ok(Deployment {
            def,
            sched,
            schema,
            listen,
            data_dir,
            secrets,
            token,
            plugins,
            plugin_logs,
        })
    }
}

/// One plugin to load: its file and grants, and the models it syncs.
struct PluginLoad<'a> {
    file: PathBuf,
    grants: Option<&'a GrantSpec>,
    models: Vec<&'a str>,
    name: String,
}

/// Loads every model's plugin on one host: each distinct (file, grants) once. Checks the
/// file and the grants first, so each problem names its model and file.
fn load_plugins(
    def: &DeploymentDef,
    base: &Path,
    secrets: &BTreeMap<String, String>,
    path: &str,
    logs: Arc<PluginLogs>,
) -> Result<BTreeMap<String, WasmActuator>, DeployError> {
    let mut loads: Vec<PluginLoad<'_>> = Vec::new();
    for (model, d) in &def.models {
        let Some(plugin) = &d.plugin else { continue };
        let file = base.join(plugin);
        let grants = d.grants.as_ref();
        match loads
            .iter_mut()
            .find(|l| l.file == file && l.grants == grants)
        {
            Some(l) => l.models.push(model),
            None => loads.push(PluginLoad {
                file,
                grants,
                models: vec![model],
                name: String::new(),
            }),
        }
    }
    if loads.is_empty() {
        return Ok(BTreeMap::new());
    }
    let fail = |l: &PluginLoad<'_>, message: String| DeployError::Plugin {
        path: path.to_string(),
        model: l.models[0].to_string(),
        file: l.file.display().to_string(),
        message,
    };
    let mut config = HostConfig::default();
    if let Some(dir) = &def.service.plugin_cache_dir {
        config = config.cache_dir(base.join(dir));
    }
    for i in 0..loads.len() {
        let stem = loads[i]
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".into());
        // Two loads of one file (different grants) get different names: a grant is per name.
        let name = if loads[..i].iter().any(|l| l.name == stem) {
            format!("{stem}.{}", loads[i].models[0])
        } else {
            stem
        };
        loads[i].name = name;
        let l = &loads[i];
        match std::fs::metadata(&l.file) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(fail(l, "not a file".into())),
            Err(e) => return Err(fail(l, format!("cannot read the component: {e}"))),
        }
        let grant = grant(
            l.grants.unwrap_or(&GrantSpec::default()),
            base,
            secrets,
            &config,
        )
        .map_err(|m| fail(l, m))?;
        config = config.grant(l.name.clone(), grant);
    }
    let host = WasmHost::with_log_sink(config, logs).map_err(|e| DeployError::Invalid {
        path: path.to_string(),
        message: format!("cannot start the WASM host: {e}"),
    })?;
    let mut plugins = BTreeMap::new();
    for l in &loads {
        let actuator = host
            .load_actuator(&l.name, &l.file)
            .map_err(|e| fail(l, e.to_string()))?;
        for m in &l.models {
            plugins.insert(m.to_string(), actuator.clone());
        }
    }
    Ok(plugins)
}

/// Converts one model's grant: the shared checks of [`GrantSpec::to_grant`], each
/// secret named among the deployment's `secrets`. Every offending field is named as
/// `grants.<field>` (`grants.http[1]`, `grants.secrets.token`); a secret's value never
/// appears in a message.
fn grant(
    g: &GrantSpec,
    base: &Path,
    secrets: &BTreeMap<String, String>,
    host: &HostConfig,
) -> Result<Grant, String> {
    g.to_grant(base, &host.limits, |_, from| {
        secrets
            .get(from)
            .map(|value| Secret::new(value.clone()))
            .ok_or_else(|| format!("the deployment has no secret named {from:?}"))
    })
    .map_err(|errors| {
        errors
            .0
            .iter()
            .map(|e| format!("grants.{e}"))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#""schema": {"models": [{"name": "Site"}]}"#;

    fn load(text: &str) -> Result<Deployment, DeployError> {
        Deployment::from_str(text, Path::new("/tmp"), "deploy.json")
    }

    #[test]
    fn defaults_bind_loopback() {
        let d = load(&format!(
            r#"{{{SCHEMA}, "models": {{"Site": {{"actuator": "noop"}}}}}}"#
        ))
        .unwrap();
        assert_eq!(d.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(d.data_dir, Path::new("/tmp/data"));
        assert!(d.token.is_none());
    }

    #[test]
    fn a_public_address_needs_a_token() {
        let err = load(&format!(
            r#"{{{SCHEMA}, "models": {{"Site": {{"actuator": "noop"}}}}, "listen": "0.0.0.0:7070"}}"#
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("a token_secret is required"),
            "{err}"
        );
    }

    #[test]
    fn secrets_come_from_the_environment_and_missing_ones_are_named() {
        std::env::set_var("SYNCORE_TEST_DEPLOY_TOKEN", "s3cret");
        let d = load(&format!(
            r#"{{{SCHEMA}, "models": {{"Site": {{"actuator": "noop"}}}}, "listen": "0.0.0.0:1",
              "secrets": {{"api": {{"env": "SYNCORE_TEST_DEPLOY_TOKEN"}}}}, "token_secret": "api"}}"#
        ))
        .unwrap();
        assert_eq!(d.token.as_deref(), Some("s3cret"));
        let err = load(&format!(
            r#"{{{SCHEMA}, "models": {{"Site": {{"actuator": "noop"}}}},
              "secrets": {{"api": {{"env": "SYNCORE_TEST_DEPLOY_UNSET"}}}}}}"#
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("SYNCORE_TEST_DEPLOY_UNSET is not set"),
            "{err}"
        );
    }

    #[test]
    fn limits_timeouts_and_priorities_map_onto_the_scheduler_config() {
        let d = load(&format!(
            r#"{{{SCHEMA}, "models": {{"Site": {{"actuator": "noop", "in_flight_max": 3,
              "timeout_ms": 900, "priority": 2, "resync_ms": 60000}}}},
              "service": {{"in_flight_max": 7, "resync_seed": 5}}}}"#
        ))
        .unwrap();
        assert_eq!(d.sched.concurrency, 7);
        assert_eq!(d.sched.seed, 5);
        assert_eq!(
            d.sched.models["Site"],
            ModelSched {
                limit: Some(3),
                priority: 2,
                resync_ms: Some(60_000),
                timeout_ms: Some(900),
            }
        );
        // The default timeout is 30 s, as before.
        let d = load(&format!(
            r#"{{{SCHEMA}, "models": {{"Site": {{"actuator": "noop"}}}}}}"#
        ))
        .unwrap();
        assert_eq!(d.sched.models["Site"].timeout_ms, Some(30_000));
        for (bad, named) in [
            (
                r#""in_flight_max": 0"#,
                "models.Site.in_flight_max must be at least 1",
            ),
            (
                r#""timeout_ms": 0"#,
                "models.Site.timeout_ms must be at least 1",
            ),
            (
                r#""resync_ms": 0"#,
                "models.Site.resync_ms must be at least 1",
            ),
        ] {
            let err = load(&format!(
                r#"{{{SCHEMA}, "models": {{"Site": {{"actuator": "noop", {bad}}}}}}}"#
            ))
            .unwrap_err();
            assert!(err.to_string().contains(named), "{err}");
        }
        let err = load(&format!(
            r#"{{{SCHEMA}, "models": {{"Site": {{"actuator": "noop"}}}}, "service": {{"in_flight_max": 0}}}}"#
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("service.in_flight_max must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn bad_files_name_line_column_model_or_actuator() {
        let err = load("{\n  \"schema\": {\"models\": []},\n  \"lisen\": 1}").unwrap_err();
        assert!(matches!(err, DeployError::Parse { line: 3, .. }), "{err}");
        let err = load(&format!(
            r#"{{{SCHEMA},
              "models": {{"Site": {{"plugin": "a.wasm", "grants": {{"htp": []}}}}}}}}"#
        ))
        .unwrap_err();
        assert!(matches!(err, DeployError::Parse { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("unknown field `htp`"), "{err}");
        let err = load(&format!(r#"{{{SCHEMA}}}"#)).unwrap_err();
        assert!(
            err.to_string()
                .contains("no actuator for actuated model(s) Site"),
            "{err}"
        );
        let err = load(&format!(
            r#"{{{SCHEMA}, "models": {{"Site": {{"actuator": "magic"}}}}}}"#
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown actuator \"magic\""),
            "{err}"
        );
    }

    #[test]
    fn a_model_has_exactly_one_of_a_built_in_actuator_and_a_plugin() {
        for (model, named) in [
            (
                r#"{"actuator": "noop", "plugin": "a.wasm"}"#,
                "models.Site: give either a built-in actuator or a plugin, not both",
            ),
            (
                r#"{}"#,
                "models.Site: no actuator: give a built-in actuator",
            ),
            (
                r#"{"actuator": "noop", "grants": {"http": []}}"#,
                "models.Site: grants are for a plugin, not a built-in actuator",
            ),
        ] {
            let err = load(&format!(r#"{{{SCHEMA}, "models": {{"Site": {model}}}}}"#)).unwrap_err();
            assert!(err.to_string().contains(named), "{err}");
        }
    }

    #[test]
    fn plugin_files_and_grants_are_checked_naming_model_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("junk.wasm"), "not wasm").unwrap();
        std::fs::write(dir.path().join("token"), "s3cret-token\n").unwrap();
        let load = |model: &str| {
            Deployment::from_str(
                &format!(
                    r#"{{{SCHEMA}, "models": {{"Site": {model}}},
                      "secrets": {{"inv": {{"file": "token"}}}}}}"#
                ),
                dir.path(),
                "deploy.json",
            )
        };
        let file = dir.path().join("junk.wasm").display().to_string();
        for (model, field) in [
            (r#"{"plugin": "gone.wasm"}"#, "cannot read the component"),
            (
                r#"{"plugin": "junk.wasm", "grants": {"secrets": {"t": "nope"}}}"#,
                "grants.secrets.t: the deployment has no secret named \"nope\"",
            ),
            (
                r#"{"plugin": "junk.wasm", "grants": {"http": ["http://ok:1", "ftp://x"]}}"#,
                "grants.http[1]: bad origin \"ftp://x\"",
            ),
            (
                r#"{"plugin": "junk.wasm", "grants": {"call_timeout_ms": 0}}"#,
                "grants.call_timeout_ms: must be at least 1",
            ),
            (
                r#"{"plugin": "junk.wasm", "grants": {"calls_in_flight_max": 0}}"#,
                "grants.calls_in_flight_max: must be in 1..=",
            ),
            (
                r#"{"plugin": "junk.wasm", "grants": {"dirs": [{"host": "nodir", "guest": "/d"}]}}"#,
                "grants.dirs[0].host:",
            ),
            (
                r#"{"plugin": "junk.wasm", "grants": {"fuel": 5}}"#,
                "grants.fuel: this host limits a call's running time by a deadline: give call_timeout_ms instead",
            ),
            (
                r#"{"plugin": "junk.wasm", "grants": {"secrets": {"t": "inv"}}}"#,
                "not a valid wasm component",
            ),
        ] {
            let err = load(model).unwrap_err();
            assert!(
                matches!(&err, DeployError::Plugin { model, .. } if model == "Site"),
                "{err}"
            );
            let text = err.to_string();
            assert!(
                text.starts_with("deploy.json: models.Site: plugin "),
                "{text}"
            );
            assert!(text.contains(field), "{text}");
            if !model.contains("gone") {
                assert!(text.contains(&format!("plugin {file}: ")), "{text}");
            }
            assert!(!text.contains("s3cret-token"), "{text}");
        }
    }
}
