//! Traces: `run --json` writes one, `replay` reads one.

use std::path::Path;

use crate::check::Setup;
use crate::report::Style;
use crate::run::RunResult;
use crate::scenario::Problem;

/// The run's events as JSON lines.
pub fn to_json_lines(_setup: &Setup, result: &RunResult) -> String {
    let mut out = String::new();
    for e in &result.events {
        out.push_str(&serde_json::to_string(e).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// What a replay found.
#[derive(Debug)]
pub struct ReplayOutcome {
    /// Whether the trace matched.
    pub matched: bool,
    /// Details.
    pub detail: String,
}

impl ReplayOutcome {
    /// The outcome in words.
    pub fn text(&self, style: Style) -> String {
        if self.matched {
            format!("{} {}", style.green("match:"), self.detail)
        } else {
            format!("{} {}", style.red("MISMATCH:"), self.detail)
        }
    }
}

/// Replays a trace file.
///
/// # Errors
/// Problems with the file.
pub fn replay(path: &Path) -> Result<ReplayOutcome, Vec<Problem>> {
    Err(vec![Problem {
        file: path.display().to_string(),
        pos: None,
        message: "replay is not available yet".into(),
    }])
}
