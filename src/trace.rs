//! Traces: `run --json` writes the run as a `syncore::trace` (JSON lines), `replay` reads one
//! back and re-runs it against the engine, comparing every plan, completion and state hash.
//!
//! The header line carries two extra fields, `scenario` (the scenario's text) and
//! `scenario_dir` (where relative plugin paths resolve), so that a trace replays on its own:
//! the engine's policies are code, and replay registers them from the scenario as the
//! recorded run had them. Traces without these fields (recorded by other embedders) replay
//! with no policies or watchers registered.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use syncore::trace::{self, ReplayError};

use crate::check::{self, Setup};
use crate::locate::Pos;
use crate::report::Style;
use crate::run::RunResult;
use crate::scenario::{Problem, Source};

/// The run's trace as JSON lines, the header carrying the scenario.
pub fn to_json_lines(setup: &Setup, result: &RunResult) -> String {
    let mut out = String::new();
    for (i, e) in result.trace.iter().enumerate() {
        let line = if i == 0 {
            let mut v = serde_json::to_value(e).unwrap_or_default();
            if let Some(map) = v.as_object_mut() {
                map.insert("scenario".into(), setup.text.clone().into());
                map.insert(
                    "scenario_dir".into(),
                    setup.dir.display().to_string().into(),
                );
                map.insert("scenario_file".into(), setup.file.clone().into());
            }
            serde_json::to_string(&v)
        } else {
            serde_json::to_string(e)
        };
        out.push_str(&line.unwrap_or_default());
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
            format!("{} {}", style.green(&style.bold("match:")), self.detail)
        } else {
            format!("{} {}", style.red(&style.bold("MISMATCH:")), self.detail)
        }
    }
}

/// Replays a trace file.
///
/// # Errors
/// Problems with the file (unreadable, not a trace, a broken line, a scenario in the header
/// that does not load): bad input.
pub fn replay(path: &Path) -> Result<ReplayOutcome, Vec<Problem>> {
    let file = path.display().to_string();
    let problem = |line: Option<usize>, message: String| Problem {
        file: file.clone(),
        pos: line.map(|line| Pos { line, column: 1 }),
        message,
    };
    let bytes = std::fs::read(path)
        .map_err(|e| vec![problem(None, format!("cannot read the trace: {e}"))])?;
    let events = trace::parse(BufReader::new(&bytes[..])).map_err(|e| match e {
        ReplayError::Parse { line, message } => vec![problem(
            Some(line),
            format!("not a syncore trace line: {message}"),
        )],
        other => vec![problem(None, other.to_string())],
    })?;
    if events.is_empty() {
        return Err(vec![problem(None, "the trace is empty".into())]);
    }
    // The scenario the header carries, if any, gives the policies and watchers.
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let header: serde_json::Value = serde_json::from_slice(first).unwrap_or_default();
    let setup = match header.get("scenario").and_then(|v| v.as_str()) {
        Some(text) => {
            let dir = header
                .get("scenario_dir")
                .and_then(|v| v.as_str())
                .map_or_else(|| PathBuf::from("."), PathBuf::from);
            let name = header
                .get("scenario_file")
                .and_then(|v| v.as_str())
                .unwrap_or("scenario");
            let src = Source::parse(format!("{file} (scenario {name})"), dir, text)
                .map_err(|p| vec![p])?;
            Some(check::prepare(&src)?)
        }
        None => None,
    };
    let mut hook_error = None;
    let result = trace::replay(&events, |engine| {
        if let Some(setup) = &setup {
            if let Err(e) = setup.register_hooks(engine) {
                hook_error = Some(e);
            }
        }
    });
    if let Some(e) = hook_error {
        return Err(vec![problem(Some(1), e)]);
    }
    match result {
        Ok(r) => Ok(ReplayOutcome {
            matched: true,
            detail: format!(
                "{} steps, {} events replayed, {} state hashes checked, final state {:016x}",
                r.steps, r.events, r.hashes_checked, r.state_hash
            ),
        }),
        Err(e @ ReplayError::Diverged { .. }) => Ok(ReplayOutcome {
            matched: false,
            detail: e.to_string(),
        }),
        Err(ReplayError::Parse { line, message }) => Err(vec![problem(Some(line), message)]),
        Err(other) => Err(vec![problem(Some(1), other.to_string())]),
    }
}
