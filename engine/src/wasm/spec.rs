//! Grants as written in JSON files (a scenario's `grants`, a deployment model's `grants`):
//! one serde type, [`GrantSpec`], with its checks and its conversion into a [`Grant`].
//!
//! ```json
//! {"http": ["http://127.0.0.1:8080", "https://*.example.com"],
//!  "request_timeout_ms": 2000, "response_bytes_max": 65536,
//!  "config": {"inventory": "http://127.0.0.1:8080"},
//!  "secrets": {"token": "..."},
//!  "clocks": true, "random": true,
//!  "dirs": [{"host": "data", "guest": "/data", "writable": false}],
//!  "call_timeout_ms": 1000, "memory_bytes_max": 16777216, "calls_in_flight_max": 64}
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `http` | origins outbound HTTP may reach (`scheme://host[:port]`, wildcards as in [`Origin`]); nothing else |
//! | `request_timeout_ms` | timeout of one outbound request; default [`REQUEST_TIMEOUT`](super::REQUEST_TIMEOUT) (5,000) |
//! | `response_bytes_max` | most bytes of one response body; default [`RESPONSE_BYTES_MAX`](super::RESPONSE_BYTES_MAX) (1 MiB) |
//! | `config` | configuration values (`syncore:plugin/config.get`), plain text: never a secret |
//! | `secrets` | the name the plugin asks `config.secret` for → where its value comes from; the value type `S` is the embedder's (see below) |
//! | `clocks`, `random` | the real clocks and real randomness (otherwise zero and a fixed sequence) |
//! | `dirs` | directories ([`DirSpec`]), host paths relative to the file |
//! | `fuel` | fuel of one call, on a host that limits calls by fuel ([`TimeLimit::Fuel`]) |
//! | `call_timeout_ms` | most *running* time of one call, on a host that limits calls by a deadline ([`TimeLimit::Epoch`]; waiting on I/O does not count) |
//! | `memory_bytes_max` | most linear memory of one instance; at most [`MEMORY_BYTES_MAX`] |
//! | `calls_in_flight_max` | most calls of this plugin at once; at most [`CALLS_IN_FLIGHT_MAX`] |
//!
//! Everything not listed is denied. Unknown fields are refused (serde's `unknown field`).
//!
//! Where a secret's value comes from differs between embedders, so it is the type
//! parameter: `syncore serve` names one of the deployment's secrets (`S = String`, the
//! default), a scenario gives an environment variable or a file. [`GrantSpec::to_grant`]
//! asks a resolver for each value; the spec never holds one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::config::{Limits, TimeLimit, CALLS_IN_FLIGHT_MAX, MEMORY_BYTES_MAX};
use super::grant::{Grant, Origin, Secret};

/// Shortest secret value accepted: a shorter one is too short to find and hide in messages.
pub const SECRET_BYTES_MIN: usize = 4;

/// One plugin's grant, as written (module doc for every field); [`GrantSpec::to_grant`]
/// checks it and makes the [`Grant`]. `S` is where a secret's value comes from.
///
/// # Examples
/// ```
/// use std::path::Path;
/// use syncore::wasm::{GrantSpec, Limits, Secret};
/// let spec: GrantSpec = serde_json::from_str(
///     r#"{"http": ["http://127.0.0.1:8080"], "secrets": {"token": "inventory"}}"#,
/// )?;
/// let grant = spec
///     .to_grant(Path::new("."), &Limits::default(), |_, from| {
///         assert_eq!(from, "inventory");
///         Ok(Secret::new("s3cr3t-value"))
///     })
///     .unwrap();
/// assert_eq!(grant.http, ["http://127.0.0.1:8080"]);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec<S = String> {
    /// Origins outbound HTTP may reach: `scheme://host[:port]`, with wildcards
    /// (`https://*.example.com`, `http://localhost:*`).
    #[serde(default)]
    pub http: Vec<String>,
    /// Timeout of one outbound request, in ms. Default: 5,000.
    #[serde(default)]
    pub request_timeout_ms: Option<u64>,
    /// Most bytes of one response body. Default: 1 MiB.
    #[serde(default)]
    pub response_bytes_max: Option<usize>,
    /// Configuration values (`syncore:plugin/config.get`). Plain text, shown to whoever
    /// reads the file: secrets go in `secrets`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Secrets (`syncore:plugin/config.secret`): the name the plugin asks for, and where
    /// its value comes from.
    #[serde(default = "BTreeMap::new")]
    pub secrets: BTreeMap<String, S>,
    /// The real wall and monotonic clocks (otherwise they read zero).
    #[serde(default)]
    pub clocks: bool,
    /// Real randomness (otherwise a fixed sequence).
    #[serde(default)]
    pub random: bool,
    /// Directories the plugin may open files in.
    #[serde(default)]
    pub dirs: Vec<DirSpec>,
    /// Fuel one call may burn, on a host that limits calls by fuel. Default: the host's.
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Most running time of one call, in ms (waiting on I/O does not count), on a host that
    /// limits calls by a deadline. Default: the host's (1,000).
    #[serde(default)]
    pub call_timeout_ms: Option<u64>,
    /// Most linear-memory bytes one instance may grow to. Default: the host's (64 MiB).
    #[serde(default)]
    pub memory_bytes_max: Option<usize>,
    /// Most calls of this plugin running at once. Default: the host's (256).
    #[serde(default)]
    pub calls_in_flight_max: Option<usize>,
}

impl<S> Default for GrantSpec<S> {
    fn default() -> Self {
        GrantSpec {
            http: Vec::new(),
            request_timeout_ms: None,
            response_bytes_max: None,
            config: BTreeMap::new(),
            secrets: BTreeMap::new(),
            clocks: false,
            random: false,
            dirs: Vec::new(),
            fuel: None,
            call_timeout_ms: None,
            memory_bytes_max: None,
            calls_in_flight_max: None,
        }
    }
}

/// A directory granted to a plugin, as written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirSpec {
    /// The directory on the host (relative to the file that grants it).
    pub host: PathBuf,
    /// Where the plugin sees it: an absolute path such as `/data`.
    pub guest: String,
    /// Whether the plugin may create, write and remove files in it. Default: read-only.
    #[serde(default)]
    pub writable: bool,
}

/// The field of a [`GrantSpec`] a [`GrantError`] is about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrantField {
    /// `http[i]`.
    Http(usize),
    /// `request_timeout_ms`.
    RequestTimeoutMs,
    /// `response_bytes_max`.
    ResponseBytesMax,
    /// `secrets.<name>`, by the name the plugin asks for.
    Secret(String),
    /// `dirs[i].host`.
    DirHost(usize),
    /// `dirs[i].guest`.
    DirGuest(usize),
    /// `fuel`.
    Fuel,
    /// `call_timeout_ms`.
    CallTimeoutMs,
    /// `memory_bytes_max`.
    MemoryBytesMax,
    /// `calls_in_flight_max`.
    CallsInFlightMax,
}

impl GrantField {
    /// The field as a JSON pointer below the grant (`http/0`, `secrets/token`,
    /// `dirs/1/host`), `~` and `/` in a secret's name escaped as RFC 6901 says.
    pub fn pointer(&self) -> String {
        match self {
            GrantField::Http(i) => format!("http/{i}"),
            GrantField::Secret(name) => {
                format!("secrets/{}", name.replace('~', "~0").replace('/', "~1"))
            }
            GrantField::DirHost(i) => format!("dirs/{i}/host"),
            GrantField::DirGuest(i) => format!("dirs/{i}/guest"),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for GrantField {
    /// `http[0]`, `secrets.token`, `dirs[1].host`, `request_timeout_ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantField::Http(i) => write!(f, "http[{i}]"),
            GrantField::RequestTimeoutMs => f.write_str("request_timeout_ms"),
            GrantField::ResponseBytesMax => f.write_str("response_bytes_max"),
            GrantField::Secret(name) => write!(f, "secrets.{name}"),
            GrantField::DirHost(i) => write!(f, "dirs[{i}].host"),
            GrantField::DirGuest(i) => write!(f, "dirs[{i}].guest"),
            GrantField::Fuel => f.write_str("fuel"),
            GrantField::CallTimeoutMs => f.write_str("call_timeout_ms"),
            GrantField::MemoryBytesMax => f.write_str("memory_bytes_max"),
            GrantField::CallsInFlightMax => f.write_str("calls_in_flight_max"),
        }
    }
}

/// What is wrong with one field of a [`GrantSpec`]. No variant ever holds a secret's value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantProblem {
    /// An origin pattern does not parse; [`Origin::parse`]'s message, naming the pattern.
    #[error("{0}")]
    BadOrigin(String),
    /// A number that must be positive is 0.
    #[error("must be at least 1")]
    Zero,
    /// A number is 0 or above the host's cap.
    #[error("must be in 1..={max}")]
    OutOfRange {
        /// The largest value accepted.
        max: usize,
    },
    /// The resolver could not give a secret's value; its message.
    #[error("{0}")]
    Secret(String),
    /// A secret's value is shorter than [`SECRET_BYTES_MIN`].
    #[error(
        "secret {name:?} is shorter than {min} bytes (too short to find and hide in messages)",
        min = SECRET_BYTES_MIN
    )]
    SecretTooShort {
        /// The name the plugin asks for.
        name: String,
    },
    /// A granted host directory is missing or not a directory.
    #[error("granted directory {} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// A guest path is not absolute.
    #[error("the guest path {0:?} must be absolute")]
    GuestNotAbsolute(String),
    /// `fuel` on a host that limits calls by a deadline, or `call_timeout_ms` on one that
    /// limits them by fuel.
    #[error("this host limits a call's running time by {host}: give {instead} instead")]
    TimeLimitKind {
        /// How the host limits calls: `a deadline` or `fuel`.
        host: &'static str,
        /// The field to give instead.
        instead: &'static str,
    },
}

impl GrantProblem {
    /// Whether the problem's text names the value it is about (an origin, a path, a
    /// secret), so it reads alone where the field is already pointed at.
    fn names_its_value(&self) -> bool {
        matches!(
            self,
            GrantProblem::BadOrigin(_)
                | GrantProblem::Secret(_)
                | GrantProblem::SecretTooShort { .. }
                | GrantProblem::NotADirectory(_)
                | GrantProblem::GuestNotAbsolute(_)
        )
    }
}

/// One offending field of a [`GrantSpec`]: `http[1]: bad origin "ftp://x": ...`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct GrantError {
    /// The field.
    pub field: GrantField,
    /// What is wrong with it.
    pub problem: GrantProblem,
}

impl GrantError {
    /// What is wrong, for a reader already pointed at the field (a file position from
    /// [`GrantField::pointer`]): the problem alone when its text names the value (an
    /// origin, a path, a secret), otherwise `field: problem`.
    pub fn message(&self) -> String {
        if self.problem.names_its_value() {
            self.problem.to_string()
        } else {
            self.to_string()
        }
    }
}

/// Every offending field of a [`GrantSpec`], in field order (never empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantErrors(pub Vec<GrantError>);

impl fmt::Display for GrantErrors {
    /// Each error, `; `-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for GrantErrors {}

impl<S> GrantSpec<S> {
    /// Checks the grant and makes the [`Grant`] it describes. `base` resolves relative
    /// directory paths (the directory of the file that grants); `limits` are the host's
    /// per-call limits, the base of this plugin's own when it sets any of `fuel`,
    /// `call_timeout_ms`, `memory_bytes_max` or `calls_in_flight_max` (the kind of time
    /// limit and the epoch tick stay the host's); `secret` gives the value of the secret
    /// the plugin asks for by `name` from its source.
    ///
    /// # Errors
    /// Every offending field, each once, in field order: a bad origin, a zero timeout or
    /// cap, a limit out of the host's range, a time limit of the other kind than the
    /// host's, a secret the resolver cannot give or one shorter than
    /// [`SECRET_BYTES_MIN`], a host directory that is not one, a relative guest path. A
    /// secret's value never appears in them.
    pub fn to_grant(
        &self,
        base: &Path,
        limits: &Limits,
        mut secret: impl FnMut(&str, &S) -> Result<Secret, String>,
    ) -> Result<Grant, GrantErrors> {
        let mut errors = Vec::new();
        let mut fail = |field, problem| errors.push(GrantError { field, problem });
        let mut grant = Grant::default();
        for (i, origin) in self.http.iter().enumerate() {
            match Origin::parse(origin) {
                Ok(_) => grant = grant.http(origin.clone()),
                Err(e) => fail(GrantField::Http(i), GrantProblem::BadOrigin(e)),
            }
        }
        match self.request_timeout_ms {
            Some(0) => fail(GrantField::RequestTimeoutMs, GrantProblem::Zero),
            Some(ms) => grant = grant.request_timeout(Duration::from_millis(ms)),
            None => {}
        }
        match self.response_bytes_max {
            Some(0) => fail(GrantField::ResponseBytesMax, GrantProblem::Zero),
            Some(bytes) => grant = grant.response_bytes_max(bytes),
            None => {}
        }
        for (key, value) in &self.config {
            grant = grant.config(key.clone(), value.clone());
        }
        for (name, source) in &self.secrets {
            let field = GrantField::Secret(name.clone());
            match secret(name, source) {
                Ok(value) if value.expose().len() < SECRET_BYTES_MIN => {
                    fail(field, GrantProblem::SecretTooShort { name: name.clone() })
                }
                Ok(value) => grant = grant.secret(name.clone(), value),
                Err(message) => fail(field, GrantProblem::Secret(message)),
            }
        }
        if self.clocks {
            grant = grant.clocks();
        }
        if self.random {
            grant = grant.random();
        }
        for (i, d) in self.dirs.iter().enumerate() {
            let host = base.join(&d.host);
            let mut ok = true;
            if !host.is_dir() {
                fail(
                    GrantField::DirHost(i),
                    GrantProblem::NotADirectory(host.clone()),
                );
                ok = false;
            }
            if !d.guest.starts_with('/') {
                fail(
                    GrantField::DirGuest(i),
                    GrantProblem::GuestNotAbsolute(d.guest.clone()),
                );
                ok = false;
            }
            if ok {
                grant = grant.dir(host, d.guest.clone(), d.writable);
            }
        }
        let own_limits = self.fuel.is_some()
            || self.call_timeout_ms.is_some()
            || self.memory_bytes_max.is_some()
            || self.calls_in_flight_max.is_some();
        let mut own = limits.clone();
        match (self.fuel, limits.time) {
            (None, _) => {}
            (Some(0), _) => fail(GrantField::Fuel, GrantProblem::Zero),
            (Some(fuel), TimeLimit::Fuel(_)) => own.time = TimeLimit::Fuel(fuel),
            (Some(_), TimeLimit::Epoch { .. }) => fail(
                GrantField::Fuel,
                GrantProblem::TimeLimitKind {
                    host: "a deadline",
                    instead: "call_timeout_ms",
                },
            ),
        }
        match (self.call_timeout_ms, limits.time) {
            (None, _) => {}
            (Some(0), _) => fail(GrantField::CallTimeoutMs, GrantProblem::Zero),
            (Some(ms), TimeLimit::Epoch { tick, .. }) => {
                own.time = TimeLimit::Epoch {
                    timeout: Duration::from_millis(ms),
                    tick,
                }
            }
            (Some(_), TimeLimit::Fuel(_)) => fail(
                GrantField::CallTimeoutMs,
                GrantProblem::TimeLimitKind {
                    host: "fuel (deterministic runs)",
                    instead: "fuel",
                },
            ),
        }
        match self.memory_bytes_max {
            None => {}
            Some(bytes) if !(1..=MEMORY_BYTES_MAX).contains(&bytes) => fail(
                GrantField::MemoryBytesMax,
                GrantProblem::OutOfRange {
                    max: MEMORY_BYTES_MAX,
                },
            ),
            Some(bytes) => own.memory_bytes_max = bytes,
        }
        match self.calls_in_flight_max {
            None => {}
            Some(n) if !(1..=CALLS_IN_FLIGHT_MAX).contains(&n) => fail(
                GrantField::CallsInFlightMax,
                GrantProblem::OutOfRange {
                    max: CALLS_IN_FLIGHT_MAX,
                },
            ),
            Some(n) => own.calls_in_flight_max = n,
        }
        if own_limits {
            grant = grant.limits(own);
        }
        if errors.is_empty() {
            Ok(grant)
        } else {
            Err(GrantErrors(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolver that finds secrets in a fixed table.
    fn table() -> impl FnMut(&str, &String) -> Result<Secret, String> {
        |name: &str, from: &String| match from.as_str() {
            "inventory" => Ok(Secret::new("tok-inventory-7f3a")),
            "short" => Ok(Secret::new("abc")),
            other => Err(format!("no secret named {other:?} ({name})")),
        }
    }

    fn spec(json: &str) -> GrantSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_full_grant_is_accepted_and_converted() {
        let base = std::env::temp_dir();
        let full = spec(
            r#"{"http": ["http://127.0.0.1:8080", "https://*.example.com"],
                "request_timeout_ms": 2000, "response_bytes_max": 65536,
                "config": {"region": "eu-1"}, "secrets": {"token": "inventory"},
                "clocks": true, "random": true,
                "dirs": [{"host": ".", "guest": "/data", "writable": true}],
                "call_timeout_ms": 700, "memory_bytes_max": 16777216,
                "calls_in_flight_max": 8}"#,
        );
        let host = Limits::default();
        let grant = full.to_grant(&base, &host, table()).unwrap();
        let tick = match host.time {
            TimeLimit::Epoch { tick, .. } => tick,
            TimeLimit::Fuel(_) => unreachable!("the default limits are an epoch deadline"),
        };
        let expected = Grant::default()
            .http("http://127.0.0.1:8080")
            .http("https://*.example.com")
            .request_timeout(Duration::from_millis(2000))
            .response_bytes_max(65536)
            .config("region", "eu-1")
            .secret("token", Secret::new("tok-inventory-7f3a"))
            .clocks()
            .random()
            .dir(base.join("."), "/data", true)
            .limits(Limits {
                time: TimeLimit::Epoch {
                    timeout: Duration::from_millis(700),
                    tick,
                },
                memory_bytes_max: 16 << 20,
                calls_in_flight_max: 8,
                ..Limits::default()
            });
        assert_eq!(grant, expected);

        // Fuel on a fuel host; nothing set keeps the host's limits (no own limits).
        let fuel = GrantSpec::<String> {
            fuel: Some(1000),
            ..GrantSpec::default()
        }
        .to_grant(&base, &Limits::deterministic(5), table())
        .unwrap();
        assert_eq!(fuel.limits, Some(Limits::deterministic(1000)));
        let empty = spec("{}").to_grant(&base, &host, table()).unwrap();
        assert_eq!(empty, Grant::default());
    }

    #[test]
    fn an_unknown_field_is_refused_naming_it() {
        let e = serde_json::from_str::<GrantSpec>(r#"{"http": [], "htp": []}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `htp`"), "{e}");
        let e = serde_json::from_str::<GrantSpec>(
            r#"{"dirs": [{"host": "a", "guest": "/a", "rw": true}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `rw`"), "{e}");
    }

    #[test]
    fn a_bad_origin_is_refused_naming_its_index_and_pattern() {
        let errors = spec(r#"{"http": ["http://ok:1", "ftp://x"]}"#)
            .to_grant(Path::new("."), &Limits::default(), table())
            .unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        let e = &errors.0[0];
        assert_eq!(e.field, GrantField::Http(1));
        assert_eq!(e.field.pointer(), "http/1");
        assert!(
            e.to_string().starts_with("http[1]: bad origin \"ftp://x\""),
            "{e}"
        );
        assert!(e.message().starts_with("bad origin \"ftp://x\""), "{e}");
    }

    #[test]
    fn a_bad_dir_is_refused_naming_the_entry_and_the_path() {
        let base = std::env::temp_dir();
        let errors = spec(
            r#"{"dirs": [{"host": ".", "guest": "/ok"},
                         {"host": "syncore-no-such-dir-5c1e", "guest": "relative"}]}"#,
        )
        .to_grant(&base, &Limits::default(), table())
        .unwrap_err();
        let missing = base.join("syncore-no-such-dir-5c1e");
        assert_eq!(
            errors.0,
            [
                GrantError {
                    field: GrantField::DirHost(1),
                    problem: GrantProblem::NotADirectory(missing.clone()),
                },
                GrantError {
                    field: GrantField::DirGuest(1),
                    problem: GrantProblem::GuestNotAbsolute("relative".into()),
                },
            ]
        );
        assert_eq!(
            errors.0[0].to_string(),
            format!(
                "dirs[1].host: granted directory {} is not a directory",
                missing.display()
            )
        );
        assert_eq!(errors.0[1].field.pointer(), "dirs/1/guest");
    }

    #[test]
    fn numbers_secrets_and_time_limits_are_checked_naming_each_field() {
        let errors = spec(
            r#"{"request_timeout_ms": 0, "response_bytes_max": 0,
                "secrets": {"a/b": "nope", "short": "short", "ok": "inventory"},
                "fuel": 10, "call_timeout_ms": 0, "memory_bytes_max": 0,
                "calls_in_flight_max": 100000}"#,
        )
        .to_grant(Path::new("."), &Limits::default(), table())
        .unwrap_err();
        let shown: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "request_timeout_ms: must be at least 1".to_string(),
                "response_bytes_max: must be at least 1".into(),
                "secrets.a/b: no secret named \"nope\" (a/b)".into(),
                "secrets.short: secret \"short\" is shorter than 4 bytes (too short to find and hide in messages)".into(),
                "fuel: this host limits a call's running time by a deadline: give call_timeout_ms instead".into(),
                "call_timeout_ms: must be at least 1".into(),
                format!("memory_bytes_max: must be in 1..={MEMORY_BYTES_MAX}"),
                format!("calls_in_flight_max: must be in 1..={CALLS_IN_FLIGHT_MAX}"),
            ]
        );
        assert_eq!(errors.0[2].field.pointer(), "secrets/a~1b");
        assert_eq!(
            errors.0[0].message(),
            "request_timeout_ms: must be at least 1"
        );
        assert!(!errors.to_string().contains("tok-inventory"), "{errors}");
        let e = spec(r#"{"call_timeout_ms": 5}"#)
            .to_grant(Path::new("."), &Limits::deterministic(9), table())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "call_timeout_ms: this host limits a call's running time by fuel (deterministic runs): give fuel instead"
        );
    }
}
