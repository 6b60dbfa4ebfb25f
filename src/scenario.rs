//! The scenario file: a schema, what syncs each model, the objects, a timeline of change sets,
//! a fault script and engine settings, all in one JSON document (comments allowed).
//!
//! `examples/scenarios/cord-demo.json` is the commented reference; `docs/scenarios.md`
//! describes every field. Loading is two steps: [`Source::read`] parses the text (syntax and
//! shape errors carry serde_json's line and column), then `check::validate` looks at the
//! meaning (unknown models, missing objects, cycles, missing plugins) and points each problem
//! at its place in the file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use syncore::sched::ModelSched;
use syncore::{BackoffPolicy, Change, SchemaDef};

use crate::locate::{self, Index, Pos};

/// A whole scenario, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A short name, printed in headers. Default: the file name.
    #[serde(default)]
    pub name: Option<String>,
    /// One or two sentences on what the scenario shows.
    #[serde(default)]
    pub description: Option<String>,
    /// The schema, exactly as `Schema::from_json` reads it.
    pub schema: SchemaDef,
    /// What syncs each model: actuator, policy, watcher, actuation time.
    #[serde(default)]
    pub models: BTreeMap<String, ModelSetup>,
    /// The change set applied at time 0.
    #[serde(default)]
    pub initial: Vec<Change>,
    /// Later change sets and external reports, in time order.
    #[serde(default)]
    pub timeline: Vec<Step>,
    /// Scripted failures, deferrals and slow actuations.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Engine and simulation settings.
    #[serde(default)]
    pub settings: Settings,
    /// What each WASM plugin may do beyond computing on its arguments (P3), by plugin name
    /// (the component's file stem, e.g. `cord_actuators`). A plugin without an entry gets
    /// nothing. Default: none.
    #[serde(default)]
    pub grants: BTreeMap<String, GrantSpec>,
}

/// One plugin's grant, as written: the engine's [`syncore::wasm::GrantSpec`] (every field
/// documented there), each secret read from an environment variable or a file
/// ([`SecretSource`]). Everything is denied unless listed. Calls are limited by fuel
/// (`fuel`; `call_timeout_ms` is refused). Granting clocks, randomness, outbound HTTP or
/// directories makes a run depend on the world outside, so it may no longer replay
/// identically.
#[cfg(not(fuzzing))]
pub type GrantSpec = syncore::wasm::GrantSpec<SecretSource>;

/// Under cargo-fuzz (`cfg(fuzzing)`) the engine is built without its WASM host, which the
/// grant type belongs to, so the `changes` target reads a grant as plain JSON; the grant's
/// own checks are covered by `syncore::wasm::GrantSpec`'s tests and the CLI's.
#[cfg(fuzzing)]
pub type GrantSpec = serde_json::Value;

/// Where a secret's value comes from: exactly one of `env` and `file`, never the value
/// itself (the scenario lands in traces).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// An environment variable of the `syncore` process.
    #[serde(default)]
    pub env: Option<String>,
    /// A file (relative to the scenario file); its content without the final newline.
    #[serde(default)]
    pub file: Option<String>,
}

/// How one model is synced.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSetup {
    /// The actuator: a built-in name or a path to a `.wasm` component.
    #[serde(default)]
    pub actuator: Option<String>,
    /// The model policy: a built-in name (`ensure:Model.field`) or a `.wasm` path.
    #[serde(default)]
    pub policy: Option<String>,
    /// The watcher: a built-in name (`log`) or a `.wasm` path.
    #[serde(default)]
    pub watcher: Option<String>,
    /// Simulated time one actuation of this model takes, in ms. Default: the settings'.
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

/// One entry of the timeline.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Logical time, in ms since the start.
    pub at: u64,
    /// What this step is, printed in the timeline.
    #[serde(default)]
    pub label: Option<String>,
    /// The change set applied at `at`.
    #[serde(default)]
    pub changes: Vec<Change>,
    /// Reports about objects of external models (R17).
    #[serde(default)]
    pub reports: Vec<Report>,
}

/// A report about an external object: synced at its current version, or failed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The external object.
    pub key: String,
    /// A failure message; absent means "synced at the current version".
    #[serde(default)]
    pub failed: Option<String>,
}

/// A scripted fault: matching actuations defer, then fail, then run (slowly, if asked).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// The object it applies to (or use `model`).
    #[serde(default)]
    pub key: Option<String>,
    /// Every object of this model (or use `key`).
    #[serde(default)]
    pub model: Option<String>,
    /// Which actuations count: `sync` (default), `delete` or `both`.
    #[serde(default)]
    pub on: FaultOn,
    /// The first N matching attempts of each object defer (R6); `"always"` for all.
    #[serde(default)]
    pub defer: Option<Count>,
    /// The next N attempts fail (R5); `"always"` for all.
    #[serde(default)]
    pub fail: Option<Count>,
    /// The message of the scripted failures and deferrals.
    #[serde(default)]
    pub message: Option<String>,
    /// Extra simulated time every matching actuation takes, in ms.
    #[serde(default)]
    pub slow_ms: Option<u64>,
}

/// Which actuations a fault applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultOn {
    /// Syncs only.
    #[default]
    Sync,
    /// Deletes only.
    Delete,
    /// Both.
    Both,
}

/// A number of attempts, or every attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// The first N attempts.
    Times(u32),
    /// Every attempt.
    Always,
}

impl Count {
    /// The count as a number (`u32::MAX` for always).
    pub fn times(self) -> u32 {
        match self {
            Count::Times(n) => n,
            Count::Always => u32::MAX,
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of attempts or \"always\"")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Count, E> {
                u32::try_from(n)
                    .map(Count::Times)
                    .map_err(|_| E::custom("too many attempts (at most 4294967295)"))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Count, E> {
                if s == "always" {
                    Ok(Count::Always)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(s), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Engine and simulation settings. Every field has a default.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Workers running actuations at the same time. Default: 4.
    pub workers: usize,
    /// Seed of the backoff jitter and of the actuation-time jitter. Default: 0.
    pub seed: u64,
    /// Backoff after failures and deferrals (R5, R6); its `seed` is replaced by `seed`.
    /// Default: the engine's (100 ms, doubling, capped at 60 s, +10% jitter).
    pub backoff: BackoffPolicy,
    /// Policy rounds before a change set is refused as a loop (R10). Default: 16.
    pub policy_rounds_max: u32,
    /// Simulated time one actuation takes, in ms. Default: 100.
    pub duration_ms: u64,
    /// Actuation times vary by up to this many thousandths, per key. Default: 500.
    pub duration_jitter_permille: u32,
    /// The run stops (not converged) at this logical time, in ms. Default: 3,600,000.
    pub end_ms: u64,
    /// The run stops (not converged) after this many actuations. Default: 100,000.
    pub actuations_max: u64,
    /// Seeded random faults for every actuated model (`syncore::sim::Faults`:
    /// `fail_permille`, `defer_permille`, `panic_permille`, `fail_first`), drawn from
    /// `seed`, on top of the fault script. Default: none.
    pub random_faults: Option<syncore::sim::Faults>,
    /// Random faults stop at this time, ms, so the run can heal. Default: never.
    pub random_faults_until_ms: Option<u64>,
    /// Scheduling per model, by name (`syncore::sched::ModelSched`: `limit` on actuations
    /// in flight, `priority` class, `resync_ms` drift re-syncs, `timeout_ms`). Default: none.
    pub models: BTreeMap<String, ModelSched>,
    /// Priority classes of single objects, by key (overriding their model's). Default: none.
    pub object_priority: BTreeMap<String, i32>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            workers: 4,
            seed: 0,
            backoff: BackoffPolicy::default(),
            policy_rounds_max: 16,
            duration_ms: 100,
            duration_jitter_permille: 500,
            end_ms: 3_600_000,
            actuations_max: 100_000,
            random_faults: None,
            random_faults_until_ms: None,
            models: BTreeMap::new(),
            object_priority: BTreeMap::new(),
        }
    }
}

/// Every shape problem of a well-formed scenario document: each part (and each entry of
/// each list) is read on its own, so that one bad entry does not hide the next.
fn shape_problems(value: &serde_json::Value, index: &Index, file: &str) -> Vec<Problem> {
    use serde_json::Value as J;
    let mut out = Vec::new();
    let mut at = |pointer: &str, e: serde_json::Error| {
        let mut message = e.to_string();
        if let Some(i) = message.rfind(" at line ") {
            message.truncate(i);
        }
        let what = if pointer.is_empty() { "/" } else { pointer };
        out.push(Problem {
            file: file.to_string(),
            pos: Some(index.pos(pointer)),
            message: format!("invalid scenario at {what}: {message}"),
        });
    };
    fn one<T: serde::de::DeserializeOwned>(v: &J) -> Result<(), serde_json::Error> {
        serde_json::from_value::<T>(v.clone()).map(|_| ())
    }
    /// Each entry of a list on its own; the list itself when it is not one.
    fn each<T: serde::de::DeserializeOwned>(
        v: &J,
        pointer: &str,
        at: &mut dyn FnMut(&str, serde_json::Error),
    ) {
        match v {
            J::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Err(e) = one::<T>(item) {
                        at(&format!("{pointer}/{i}"), e);
                    }
                }
            }
            other => {
                if let Err(e) = one::<Vec<T>>(other) {
                    at(pointer, e);
                }
            }
        }
    }
    let J::Object(top) = value else {
        if let Err(e) = one::<Scenario>(value) {
            at("", e);
        }
        return out;
    };
    if !top.contains_key("schema") {
        if let Err(e) = one::<Scenario>(value) {
            at("", e);
        }
    }
    for (key, v) in top {
        let pointer = format!("/{}", key.replace('~', "~0").replace('/', "~1"));
        let r = match key.as_str() {
            "name" | "description" => one::<Option<String>>(v),
            "schema" => match v.get("models") {
                Some(models) if v.as_object().is_some_and(|o| o.len() == 1) => {
                    each::<syncore::ModelDef>(models, &format!("{pointer}/models"), &mut at);
                    Ok(())
                }
                _ => one::<SchemaDef>(v),
            },
            "models" => match v {
                J::Object(m) => {
                    for (name, setup) in m {
                        if let Err(e) = one::<ModelSetup>(setup) {
                            let name = name.replace('~', "~0").replace('/', "~1");
                            at(&format!("{pointer}/{name}"), e);
                        }
                    }
                    Ok(())
                }
                other => one::<BTreeMap<String, ModelSetup>>(other),
            },
            "initial" => {
                each::<Change>(v, &pointer, &mut at);
                Ok(())
            }
            "timeline" => {
                if let J::Array(steps) = v {
                    for (i, step) in steps.iter().enumerate() {
                        let p = format!("{pointer}/{i}");
                        let mut inner = false;
                        if let Some(changes) = step.get("changes") {
                            let mut found = false;
                            each::<Change>(changes, &format!("{p}/changes"), &mut |q, e| {
                                found = true;
                                at(q, e)
                            });
                            inner |= found;
                        }
                        if let Some(reports) = step.get("reports") {
                            let mut found = false;
                            each::<Report>(reports, &format!("{p}/reports"), &mut |q, e| {
                                found = true;
                                at(q, e)
                            });
                            inner |= found;
                        }
                        if !inner {
                            if let Err(e) = one::<Step>(step) {
                                at(&p, e);
                            }
                        }
                    }
                    Ok(())
                } else {
                    one::<Vec<Step>>(v)
                }
            }
            "faults" => {
                each::<Fault>(v, &pointer, &mut at);
                Ok(())
            }
            "settings" => one::<Settings>(v),
            _ => one::<Scenario>(&J::Object(
                [
                    (key.clone(), v.clone()),
                    ("schema".to_string(), serde_json::json!({"models": []})),
                ]
                .into_iter()
                .collect(),
            )),
        };
        if let Err(e) = r {
            at(&pointer, e);
        }
    }
    out
}

/// Most workers a scenario may ask for.
pub const WORKERS_MAX: usize = 1024;

/// One problem in an input file, with its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file, as the user named it.
    pub file: String,
    /// Where in the file, if known.
    pub pos: Option<Pos>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{}:{}:{}: {}", self.file, p.line, p.column, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// A scenario's text, parsed, with what is needed to locate problems in it.
#[derive(Debug)]
pub struct Source {
    /// The file name as given (`<built-in demo>` for the demo).
    pub file: String,
    /// Directory that relative plugin paths are resolved against.
    pub dir: PathBuf,
    /// The parsed scenario.
    pub scenario: Scenario,
    /// The text as read.
    pub text: String,
    /// Value positions by JSON pointer.
    pub index: Index,
}

impl Source {
    /// Reads and parses a scenario file.
    ///
    /// # Errors
    /// The file cannot be read, or the problems of [`Source::parse_all`].
    pub fn read(path: &Path) -> Result<Source, Vec<Problem>> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![Problem {
                file: file.clone(),
                pos: None,
                message: format!("cannot read the scenario file: {e}"),
            }]
        })?;
        // Absolute, so that a trace recorded here replays from any directory.
        let dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .map(|p| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()))
            .unwrap_or_else(|| PathBuf::from("."));
        Source::parse_all(file, dir, &text)
    }

    /// Parses scenario text; `file` names it in problems.
    ///
    /// # Errors
    /// The first [`Problem`] of [`Source::parse_all`].
    pub fn parse(file: String, dir: PathBuf, text: &str) -> Result<Source, Problem> {
        Source::parse_all(file, dir, text).map_err(|mut all| all.remove(0))
    }

    /// Parses scenario text; `file` names it in problems.
    ///
    /// # Errors
    /// Every shape problem (a missing or unknown field, a value of the wrong type), each at
    /// its place, in file order; or the syntax error that stops the reading (JSON cannot be
    /// read past one), with serde_json's line and column. Never empty.
    pub fn parse_all(file: String, dir: PathBuf, text: &str) -> Result<Source, Vec<Problem>> {
        let stripped = locate::strip_comments(text);
        // Shape problems need well-formed JSON: read it as a value first.
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&stripped) {
            let index = Index::build(&stripped);
            let mut problems = shape_problems(&value, &index, &file);
            if !problems.is_empty() {
                problems.sort_by(|a, b| a.pos.cmp(&b.pos).then(a.message.cmp(&b.message)));
                problems.dedup();
                return Err(problems);
            }
        }
        let scenario: Scenario = serde_json::from_str(&stripped)
            .map_err(|e| {
                let mut message = e.to_string();
                if let Some(i) = message.rfind(" at line ") {
                    message.truncate(i);
                }
                if e.is_eof() {
                    message.push_str(" (the file ends too early: is it truncated?)");
                }
                Problem {
                    file: file.clone(),
                    pos: (e.line() > 0).then(|| Pos {
                        line: e.line(),
                        column: e.column().max(1),
                    }),
                    message: format!("invalid scenario: {message}"),
                }
            })
            .map_err(|p| vec![p])?;
        Ok(Source {
            file,
            dir,
            text: text.to_string(),
            index: Index::build(&stripped),
            scenario,
        })
    }

    /// A problem at the value `pointer` points to.
    pub fn problem(&self, pointer: &str, message: impl Into<String>) -> Problem {
        Problem {
            file: self.file.clone(),
            pos: Some(self.index.pos(pointer)),
            message: message.into(),
        }
    }

    /// The scenario's display name.
    pub fn name(&self) -> String {
        self.scenario.name.clone().unwrap_or_else(|| {
            Path::new(&self.file)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.file.clone())
        })
    }

    /// The change sets in time order, with the JSON pointer of each: `(at, label, pointer,
    /// changes)`; the initial set first, at time 0.
    pub fn change_sets(&self) -> Vec<(u64, String, String, &[Change])> {
        let mut sets = vec![(
            0,
            "initial".to_string(),
            "/initial".to_string(),
            &self.scenario.initial[..],
        )];
        for (i, s) in self.scenario.timeline.iter().enumerate() {
            sets.push((
                s.at,
                s.label
                    .clone()
                    .unwrap_or_else(|| format!("timeline step {}", i + 1)),
                format!("/timeline/{i}/changes"),
                &s.changes[..],
            ));
        }
        sets
    }
}

/// The built-in CORD-like demo scenario (`examples/scenarios/cord-demo.json`).
pub const DEMO: &str = include_str!("../examples/scenarios/cord-demo.json");

/// The demo, parsed.
///
/// # Errors
/// Only if the shipped demo were broken (a test checks it is not).
pub fn demo() -> Result<Source, Problem> {
    Source::parse("<built-in demo>".to_string(), PathBuf::from("."), DEMO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_numbers_or_always() {
        let f: Fault =
            serde_json::from_str(r#"{"key": "a", "fail": 3, "defer": "always"}"#).unwrap();
        assert_eq!(f.fail, Some(Count::Times(3)));
        assert_eq!(f.defer.map(Count::times), Some(u32::MAX));
        let e = serde_json::from_str::<Fault>(r#"{"key": "a", "fail": "often"}"#).unwrap_err();
        assert!(
            e.to_string().contains("a number of attempts or \"always\""),
            "{e}"
        );
    }

    #[test]
    fn parse_errors_name_file_line_and_column() {
        let p = Source::parse(
            "f.json".into(),
            PathBuf::from("."),
            "{\n  \"schema\": {\"models\": []},\n  \"oops\": 1\n}",
        )
        .unwrap_err();
        // The position of the offending entry's value, its path, and what was expected.
        assert_eq!(
            p.pos,
            Some(Pos {
                line: 3,
                column: 11
            })
        );
        assert!(
            p.to_string().starts_with(
                "f.json:3:11: invalid scenario at /oops: unknown field `oops`, expected one of"
            ),
            "{p}"
        );
    }

    #[test]
    fn the_demo_parses_and_settings_default() {
        let demo = demo().unwrap();
        assert_eq!(demo.name(), "cord-demo");
        assert_eq!(demo.scenario.settings.workers, 4);
        assert_eq!(Settings::default().duration_ms, 100);
        assert_eq!(demo.change_sets().len(), 3);
    }
}
