//! `syncore plan`: pretend mode (R13). Each change set of the scenario is applied in time
//! order, and the rounds of waves the engine would run are printed, every task assumed to
//! succeed, without calling any actuator. Between change sets the engine is settled with
//! successful outcomes, so the next set's plan starts from the state it would meet.

use std::fmt::Write as _;

use serde::Serialize;
use syncore::{Engine, ExternalReport, HoldReason, Plan, TaskKind, Time};

use crate::check::{settle, Setup};
use crate::report::{status_text, Style};

/// One task of a pretend plan, by key.
#[derive(Debug, Serialize)]
struct TaskOut<'a> {
    key: &'a str,
    model: &'a str,
    kind: TaskKind,
    version: u64,
}

/// Renders the plans of every change set of `setup`.
///
/// # Errors
/// If a plugin cannot be loaded or a change set is refused.
pub fn print(setup: &Setup, style: Style, json: bool, rounds_max: usize) -> Result<String, String> {
    let mut engine = setup.engine()?;
    let mut out = String::new();
    if !json {
        let _ = writeln!(
            out,
            "{} {} {}\n",
            style.bold("syncore plan:"),
            style.bold(&setup.name),
            style.dim("(pretend mode: every task assumed to succeed, no actuator runs)")
        );
    }
    for set in &setup.sets {
        let report = engine
            .apply(set.changes.clone())
            .map_err(|e| format!("{}: {e}", set.label))?;
        for (key, failed) in &set.reports {
            if let Some(version) = engine.object(key).map(|o| o.version) {
                let r = match failed {
                    None => ExternalReport::Synced { version },
                    Some(m) => ExternalReport::Failed {
                        version,
                        message: m.clone(),
                    },
                };
                let _ = engine.report_external(key, r);
            }
        }
        setup.drain_watch_lines();
        crate::plugins::take_logs();
        let now = Time(set.at);
        let rounds = engine.pretend(now, rounds_max);
        let current = engine.plan(now);
        if json {
            for (r, plan) in rounds.iter().enumerate() {
                let waves: Vec<Vec<TaskOut<'_>>> = plan
                    .waves()
                    .map(|w| w.iter().map(|t| task_out(&engine, t)).collect())
                    .collect();
                let held: Vec<serde_json::Value> = if r == 0 {
                    held(&engine, &current)
                        .into_iter()
                        .map(|(k, s)| serde_json::json!({"key": k, "status": s}))
                        .collect()
                } else {
                    Vec::new()
                };
                let line = serde_json::json!({
                    "at": set.at, "label": set.label, "round": r + 1,
                    "waves": waves, "held": held,
                });
                let _ = writeln!(out, "{line}");
            }
        } else {
            let _ = writeln!(
                out,
                "{} {} {}",
                style.blue(&style.bold(&format!("t={}ms", set.at))),
                style.bold(&set.label),
                style.dim(&format!(
                    "({} changed, {} to delete{})",
                    report.changed.len(),
                    report.deleted.len(),
                    if report.removed.is_empty() {
                        String::new()
                    } else {
                        format!(", {} removed", report.removed.len())
                    }
                ))
            );
            if rounds.is_empty() {
                let _ = writeln!(out, "  nothing to run");
            }
            for (r, plan) in rounds.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  round {}: {} task{} in {} wave{}",
                    r + 1,
                    plan.tasks.len(),
                    if plan.tasks.len() == 1 { "" } else { "s" },
                    plan.wave_count(),
                    if plan.wave_count() == 1 { "" } else { "s" }
                );
                for (w, wave) in plan.waves().enumerate() {
                    let items: Vec<String> = wave
                        .iter()
                        .take(12)
                        .map(|t| {
                            let o = task_out(&engine, t);
                            let verb = match t.kind {
                                TaskKind::Sync => style.green("sync"),
                                TaskKind::Delete => style.red("delete"),
                            };
                            format!("{verb} {} {}", o.key, style.dim(&format!("({})", o.model)))
                        })
                        .collect();
                    let more = if wave.len() > 12 {
                        format!(", +{} more", wave.len() - 12)
                    } else {
                        String::new()
                    };
                    let _ = writeln!(out, "    wave {:>2}: {}{more}", w + 1, items.join(", "));
                }
            }
            let held = held(&engine, &current);
            for (k, s) in held.iter().take(20) {
                let _ = writeln!(out, "  {} {k}: {s}", style.yellow("held"));
            }
            if held.len() > 20 {
                let _ = writeln!(out, "  ... and {} more held", held.len() - 20);
            }
            out.push('\n');
        }
        settle(&mut engine, now);
    }
    // What would never converge, with every task succeeding (issue 10 item 16).
    let end = Time(setup.sets.last().map_or(0, |s| s.at));
    let stuck = crate::check::unconverged(&mut engine, end);
    if json {
        for (key, why) in &stuck {
            let line = serde_json::json!({"unconverged": key, "why": why});
            let _ = writeln!(out, "{line}");
        }
    } else if !stuck.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            style.bold("would never converge, with every task succeeding:")
        );
        for (key, why) in &stuck {
            let _ = writeln!(out, "  {} {key}: {why}", style.yellow("stuck"));
        }
    }
    Ok(out)
}

fn task_out<'a>(engine: &'a Engine, t: &syncore::Task) -> TaskOut<'a> {
    let v = engine.view(t.object);
    TaskOut {
        key: v.key(),
        model: v.model(),
        kind: t.kind,
        version: t.version,
    }
}

/// Held objects (not merely backing off) and their status, in key order.
fn held(engine: &Engine, plan: &Plan) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = plan
        .holds
        .iter()
        .filter(|h| !matches!(h.reason, HoldReason::BackingOff { .. }))
        .map(|h| {
            (
                engine.key(h.object).to_string(),
                status_text(&engine.status_in(plan, h.object)),
            )
        })
        .collect();
    v.sort();
    v
}
