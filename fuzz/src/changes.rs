//! Target `changes`: change-set JSON and CLI scenario files, parsed and applied.
//!
//! Input: text. As a change set (`ChangeSet::from_json`), it is applied to the base state
//! of [`state`](super::state) (every model kind and field type, small `*_max` limits). As a
//! scenario (the CLI's format, `src/scenario.rs`), its schema is loaded and its initial set
//! and timeline (change sets and external reports) are applied in order.
//!
//! Oracle: a refused change set or report leaves the snapshot bytes unchanged; an accepted
//! state passes [`state::check`](super::state::check) (reference planner, order and holds,
//! no cycle, snapshot round trip); the order of entries does not matter (R12).

use std::path::PathBuf;

use syncore::{ApplyReport, ChangeError, ChangeSet, Config, Engine, ExternalReport, Schema, Time};

use super::scenario::Source;
use super::state;

/// Change sets applied from one scenario at most (the rest is ignored).
pub const STEPS_MAX: usize = 32;

/// Runs one input; `Err` is a finding.
pub fn run(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    change_set(text)?;
    scenario(text)
}

/// Applies `text` as a change set to the base state.
pub fn change_set(text: &str) -> Result<(), String> {
    let Ok(set) = ChangeSet::from_json(text) else {
        return Ok(());
    };
    let mut engine = state::base();
    let now = Time(20);
    let result = apply_checked(&mut engine, set.clone(), now)?;
    // R12: reversed entries give the same answer and the same state.
    let mut reversed = state::base();
    let mut back = set;
    back.changes.reverse();
    let again = reversed.apply(back);
    if again != result {
        return Err(format!(
            "R12: reversed entries gave {again:?}, in order {result:?}"
        ));
    }
    if reversed.snapshot() != engine.snapshot() {
        return Err("R12: reversed entries left a different state".into());
    }
    Ok(())
}

/// Applies `set`; a refusal must leave the state as it was, an acceptance must pass every
/// state check. Returns what `apply` returned.
pub fn apply_checked(
    engine: &mut Engine,
    set: ChangeSet,
    now: Time,
) -> Result<Result<ApplyReport, ChangeError>, String> {
    let before = engine.snapshot();
    let result = engine.apply(set);
    match &result {
        Ok(_) => state::check(engine, now)?,
        Err(e) => {
            if engine.snapshot() != before {
                return Err(format!("refused change set ({e}) changed the state"));
            }
            if e.to_string().is_empty() {
                return Err(format!("{e:?} has an empty message"));
            }
        }
    }
    Ok(result)
}

/// Parses `text` as a scenario and plays its change sets and reports.
pub fn scenario(text: &str) -> Result<(), String> {
    let Ok(src) = Source::parse("fuzz.json".into(), PathBuf::from("."), text) else {
        return Ok(());
    };
    // Locating problems must work for any pointer (src/locate.rs).
    for pointer in [
        "",
        "/schema",
        "/initial/0",
        "/timeline/0/changes/1",
        "/models/~1x",
    ] {
        let _ = src.problem(pointer, "located");
    }
    let _ = src.name();
    let Ok(schema) = Schema::new(src.scenario.schema.clone()) else {
        return Ok(());
    };
    let settings = &src.scenario.settings;
    let config = Config {
        backoff: settings.backoff.clone(),
        policy_rounds_max: settings.policy_rounds_max,
        ..Config::default()
    };
    let mut engine = Engine::new(schema, config);
    for (i, (at, _, _, changes)) in src.change_sets().into_iter().enumerate().take(STEPS_MAX) {
        let now = Time(at);
        let _ = apply_checked(&mut engine, ChangeSet::from(changes.to_vec()), now)?;
        let Some(step) = i.checked_sub(1).and_then(|s| src.scenario.timeline.get(s)) else {
            continue;
        };
        for report in &step.reports {
            let before = engine.snapshot();
            let version = engine.object(&report.key).map_or(0, |o| o.version);
            let r = match &report.failed {
                Some(message) => ExternalReport::Failed {
                    version,
                    message: message.clone(),
                },
                None => ExternalReport::Synced { version },
            };
            if engine.report_external(&report.key, r).is_err() && engine.snapshot() != before {
                return Err(format!(
                    "refused report on {} changed the state",
                    report.key
                ));
            }
        }
        state::check(&engine, now)?;
    }
    Ok(())
}
