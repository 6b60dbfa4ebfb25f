//! What one plugin may do beyond computing on its arguments (P3): outbound HTTP to listed
//! origins, configuration values and secrets, clocks, randomness, directories, and its own
//! limits. Everything is denied unless the embedder grants it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::config::Limits;

/// Most bytes of one HTTP response body a plugin may read, unless its grant says otherwise.
pub const RESPONSE_BYTES_MAX: usize = 1 << 20;

/// The per-request timeout of outbound HTTP (connect, first byte, between bytes), unless the
/// grant says otherwise.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A secret value (a token, a password). It is handed to the plugin that was granted it
/// through `syncore:plugin/config.secret`, and nowhere else: its `Debug` form is `Secret(..)`,
/// it has no `Display`, and the host replaces it by `[secret NAME]` in every log line and
/// failure message a plugin produces, and fails a call whose feedback would hold it (so it
/// never reaches a trace or a snapshot).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value (for the host's own use).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// An outbound HTTP origin a plugin may reach: scheme, host and port, each exact or a
/// wildcard, in the style of Spin's `allowed_outbound_hosts`.
///
/// | pattern | matches |
/// |---|---|
/// | `http://127.0.0.1:8080` | exactly that origin |
/// | `https://api.example.com` | port 443 (the scheme's default) |
/// | `https://*.example.com` | any subdomain of example.com (not example.com itself), port 443 |
/// | `http://localhost:*` | any port |
/// | `*://example.com:8443` | http or https |
/// | `*://*:*` | anything (avoid) |
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// `None`: http or https.
    scheme: Option<String>,
    host: HostPattern,
    /// `None`: any port.
    port: Option<u16>,
    text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.suffix`: the suffix with its leading dot.
    Subdomains(String),
}

impl Origin {
    /// Parses a pattern (see the type's table).
    ///
    /// # Errors
    /// A message naming what is wrong: no `://`, a scheme other than http, https or `*`, an
    /// empty host, a path, or a bad port.
    pub fn parse(pattern: &str) -> Result<Origin, String> {
        let bad = |why: &str| format!("bad origin {pattern:?}: {why}");
        let (scheme, rest) = pattern
            .split_once("://")
            .ok_or_else(|| bad("expected scheme://host[:port]"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "*" => None,
            s @ ("http" | "https") => Some(s.to_string()),
            _ => return Err(bad("the scheme must be http, https or *")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('@') {
            return Err(bad("an origin has no path, query or user"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (h, Some(p)),
            _ => (rest, None),
        };
        let port = match port {
            Some("*") => None,
            Some(p) => Some(p.parse::<u16>().map_err(|_| bad("bad port"))?),
            None => match scheme.as_deref() {
                Some("http") => Some(80),
                Some("https") => Some(443),
                _ => return Err(bad("with scheme *, give a port (or *)")),
            },
        };
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(bad("bad wildcard host"));
            }
            HostPattern::Subdomains(format!(".{suffix}"))
        } else if host.is_empty() || host.contains('*') {
            return Err(bad("bad host"));
        } else {
            HostPattern::Exact(host)
        };
        Ok(Origin {
            scheme,
            host,
            port,
            text: pattern.to_string(),
        })
    }

    /// Whether a request to `scheme://host:port` is allowed by this pattern.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = match &self.scheme {
            Some(s) => s.eq_ignore_ascii_case(scheme),
            None => scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"),
        };
        let host = host.to_ascii_lowercase();
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => *h == host,
            HostPattern::Subdomains(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        };
        scheme_ok && host_ok && self.port.is_none_or(|p| p == port)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A directory of the host a plugin may open files in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirGrant {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the plugin sees it (an absolute guest path such as `/data`).
    pub guest: String,
    /// Whether the plugin may create, write and remove files in it (otherwise read-only).
    pub writable: bool,
}

/// Everything one plugin may do beyond computing on its arguments. [`Grant::default`]
/// grants nothing (P3): no outbound HTTP, no configuration, no secrets, clocks stopped at
/// zero, a fixed "random" sequence, no directories, the host's limits.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use syncore::wasm::{Grant, HostConfig, Secret};
/// let grant = Grant::default()
///     .http("http://127.0.0.1:8080")
///     .http("https://*.example.com")
///     .request_timeout(Duration::from_millis(500))
///     .config("region", "eu-1")
///     .secret("api-token", Secret::new("s3cr3t"));
/// let config = HostConfig::default().grant("cord-actuators", grant);
/// # let _ = config;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// Origin patterns outbound HTTP (`wasi:http/outgoing-handler`) may reach; a request to
    /// any other origin fails the call with a message naming the plugin and the origin. A
    /// redirect is a new request, checked the same way.
    pub http: Vec<String>,
    /// The timeout of one outbound request (connect, first byte, between bytes); the
    /// plugin's own request options may only shorten it. Default: [`REQUEST_TIMEOUT`].
    pub request_timeout: Option<Duration>,
    /// Most bytes of one response body; more fails the call. Default: [`RESPONSE_BYTES_MAX`].
    pub response_bytes_max: Option<usize>,
    /// Configuration values (`syncore:plugin/config.get`).
    pub config: BTreeMap<String, String>,
    /// Secrets (`syncore:plugin/config.secret`); never shown in logs, messages or feedback.
    pub secrets: BTreeMap<String, Secret>,
    /// The real wall clock (otherwise it reads zero).
    pub wall_clock: bool,
    /// The real monotonic clock (otherwise it reads zero).
    pub monotonic_clock: bool,
    /// Real randomness (otherwise a fixed sequence).
    pub random: bool,
    /// Directories the plugin may open files in.
    pub dirs: Vec<DirGrant>,
    /// This plugin's per-call limits instead of the host's. The kind of time limit (epoch
    /// or fuel), the epoch tick and the stack size are the host's for every plugin.
    pub limits: Option<Limits>,
}

impl Grant {
    /// Allows outbound HTTP to an origin pattern (see [`Origin`]).
    pub fn http(mut self, origin: impl Into<String>) -> Grant {
        self.http.push(origin.into());
        self
    }

    /// Sets the per-request timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> Grant {
        self.request_timeout = Some(timeout);
        self
    }

    /// Sets the response-size cap.
    pub fn response_bytes_max(mut self, bytes: usize) -> Grant {
        self.response_bytes_max = Some(bytes);
        self
    }

    /// Adds a configuration value.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Grant {
        self.config.insert(key.into(), value.into());
        self
    }

    /// Adds a secret.
    pub fn secret(mut self, name: impl Into<String>, value: Secret) -> Grant {
        self.secrets.insert(name.into(), value);
        self
    }

    /// Grants the real wall and monotonic clocks.
    pub fn clocks(mut self) -> Grant {
        self.wall_clock = true;
        self.monotonic_clock = true;
        self
    }

    /// Grants real randomness.
    pub fn random(mut self) -> Grant {
        self.random = true;
        self
    }

    /// Grants a directory, read-only or read-write.
    pub fn dir(
        mut self,
        host: impl Into<PathBuf>,
        guest: impl Into<String>,
        writable: bool,
    ) -> Grant {
        self.dirs.push(DirGrant {
            host: host.into(),
            guest: guest.into(),
            writable,
        });
        self
    }

    /// Sets this plugin's own limits.
    pub fn limits(mut self, limits: Limits) -> Grant {
        self.limits = Some(limits);
        self
    }
}

/// A grant checked and ready for calls: parsed origins, resolved defaults.
#[derive(Debug)]
pub(crate) struct Granted {
    pub(crate) origins: Vec<Origin>,
    pub(crate) request_timeout: Duration,
    pub(crate) response_bytes_max: usize,
    pub(crate) grant: Grant,
}

impl Granted {
    /// Checks a grant for plugin `name`, naming the offending entry.
    pub(crate) fn new(grant: Grant) -> Result<Granted, String> {
        let origins = grant
            .http
            .iter()
            .map(|o| Origin::parse(o))
            .collect::<Result<Vec<_>, _>>()?;
        for dir in &grant.dirs {
            if !dir.host.is_dir() {
                return Err(format!(
                    "granted directory {} is not a directory",
                    dir.host.display()
                ));
            }
            if !dir.guest.starts_with('/') {
                return Err(format!(
                    "granted directory {}: the guest path {:?} must be absolute",
                    dir.host.display(),
                    dir.guest
                ));
            }
        }
        for (name, secret) in &grant.secrets {
            if secret.expose().len() < super::SECRET_BYTES_MIN {
                return Err(super::GrantProblem::SecretTooShort { name: name.clone() }.to_string());
            }
        }
        let request_timeout = grant.request_timeout.unwrap_or(REQUEST_TIMEOUT);
        if request_timeout.is_zero() {
            return Err("request_timeout must be positive".into());
        }
        Ok(Granted {
            origins,
            request_timeout,
            response_bytes_max: grant.response_bytes_max.unwrap_or(RESPONSE_BYTES_MAX),
            grant,
        })
    }

    /// Whether `scheme://host:port` is granted.
    pub(crate) fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.origins.iter().any(|o| o.allows(scheme, host, port))
    }

    /// The granted patterns, for messages ("none" when empty).
    pub(crate) fn describe_origins(&self) -> String {
        if self.origins.is_empty() {
            "none".to_string()
        } else {
            self.origins
                .iter()
                .map(Origin::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    /// `text` with every granted secret replaced by `[secret NAME]`.
    pub(crate) fn redact(&self, text: String) -> String {
        let mut text = text;
        for (name, secret) in &self.grant.secrets {
            if text.contains(secret.expose()) {
                text = text.replace(secret.expose(), &format!("[secret {name}]"));
            }
        }
        text
    }

    /// The name of a granted secret that `text` holds, if any.
    pub(crate) fn secret_in(&self, text: &str) -> Option<&str> {
        if self.grant.secrets.is_empty() {
            return None;
        }
        self.grant
            .secrets
            .iter()
            .find(|(_, s)| text.contains(s.expose()))
            .map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p3_origin_patterns_match_scheme_host_and_port() {
        let exact = Origin::parse("http://127.0.0.1:8080").unwrap();
        assert!(exact.allows("http", "127.0.0.1", 8080));
        assert!(!exact.allows("http", "127.0.0.1", 8081), "another port");
        assert!(!exact.allows("https", "127.0.0.1", 8080), "another scheme");
        assert!(!exact.allows("http", "localhost", 8080), "another name");

        let default_port = Origin::parse("https://api.example.com").unwrap();
        assert!(default_port.allows("https", "API.example.com", 443));
        assert!(!default_port.allows("https", "api.example.com", 8443));

        let sub = Origin::parse("https://*.example.com").unwrap();
        assert!(sub.allows("https", "a.b.example.com", 443));
        assert!(!sub.allows("https", "example.com", 443));
        assert!(!sub.allows("https", "badexample.com", 443));

        let any_port = Origin::parse("http://localhost:*").unwrap();
        assert!(any_port.allows("http", "localhost", 1));
        let any_scheme = Origin::parse("*://h:9").unwrap();
        assert!(any_scheme.allows("https", "h", 9) && any_scheme.allows("http", "h", 9));
        assert!(!any_scheme.allows("ftp", "h", 9));
    }

    #[test]
    fn bad_origin_patterns_are_refused_naming_them() {
        for bad in [
            "127.0.0.1:80",
            "ftp://x",
            "http://",
            "http://x/path",
            "http://x:port",
            "*://x",
            "http://a*b",
        ] {
            let err = Origin::parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn secrets_are_redacted_and_found() {
        let granted =
            Granted::new(Grant::default().secret("token", Secret::new("hunter22"))).unwrap();
        assert_eq!(
            granted.redact("auth hunter22 failed".into()),
            "auth [secret token] failed"
        );
        assert_eq!(granted.secret_in("xhunter22x"), Some("token"));
        assert_eq!(granted.secret_in("nothing"), None);
        assert_eq!(format!("{:?}", Secret::new("hunter22")), "Secret(..)");
        assert!(!format!("{:?}", granted.grant).contains("hunter22"));
    }
}
