//! Uses one capability per object, as its declarative fields `action` and `target` say, and
//! reports the result as the feedback field `result` (or fails with the error it got):
//!
//! | action | does |
//! |---|---|
//! | `get` | `GET target` (following redirects); `result` = `"<status> <bytes>"` |
//! | `secret` | reads the secret `target`; `result` = its length (never the value) |
//! | `leak` | reads the secret `target`, logs it and fails with it in the message |
//! | `leak-feedback` | reads the secret `target` and returns it as feedback |
//! | `config` | reads the configuration value `target`; `result` = the value or `none` |
//! | `read` | reads the file `target`; `result` = its contents |
//! | `write` | writes `x` to the file `target`; `result` = `written` |
//! | `clock` | `result` = `"<wall seconds> <monotonic elapsed > 0>"` |
//!
//! The tests grant or withhold each capability and check that a withheld one fails only its
//! own object, naming the cause.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use syncore_plugin_sdk::{config, export_actuator, http, log, Actuator, ObjectView, Outcome};

/// Probes one capability per call.
struct Probe;

impl Actuator for Probe {
    fn sync(object: &ObjectView) -> Outcome {
        let action = object.field_str("action").unwrap_or_default();
        let target = object.field_str("target").unwrap_or_default();
        let result = match action {
            "get" => http::get(target)
                .map(|r| format!("{} {}", r.status, r.body.len()))
                .map_err(|e| e.to_string()),
            "secret" => config::secret(target).map(|s| s.len().to_string()),
            "leak" => match config::secret(target) {
                Ok(secret) => {
                    log::warn(&format!("the secret is {secret}"));
                    Err(format!("leaking {secret} in a message"))
                }
                Err(e) => Err(e),
            },
            "leak-feedback" => config::secret(target),
            "config" => Ok(config::get(target).unwrap_or_else(|| "none".into())),
            "read" => std::fs::read_to_string(target).map_err(|e| format!("read {target}: {e}")),
            "write" => std::fs::write(target, b"x")
                .map(|()| "written".to_string())
                .map_err(|e| format!("write {target}: {e}")),
            "clock" => {
                let start = Instant::now();
                let wall = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let mut spin = 0u64;
                for i in 0..100_000u64 {
                    spin = spin.wrapping_add(i);
                }
                let moved = start.elapsed().as_nanos() > 0 && spin > 0;
                Ok(format!("{wall} {moved}"))
            }
            other => Err(format!("unknown action {other:?}")),
        };
        match result {
            Ok(result) => Outcome::ok_with([("result", result)]),
            Err(message) => Outcome::failed(message),
        }
    }
}

export_actuator!(Probe);
