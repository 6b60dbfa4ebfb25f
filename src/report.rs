//! The readable timeline of a run, colored on a terminal and plain otherwise.

use std::fmt::Write as _;
use std::io::IsTerminal;

use syncore::{Completion, Outcome, Status, TaskKind, Value};

use crate::run::{Event, FinalObject, RunResult};

/// ANSI styling, or none.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    /// Whether to emit escape codes.
    pub color: bool,
}

impl Style {
    /// Colors when `choice` says so, or (for `auto`) when stdout is a terminal and `NO_COLOR`
    /// is unset or empty.
    pub fn detect(choice: ColorChoice) -> Style {
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        };
        Style { color }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    /// Red.
    pub fn red(&self, t: &str) -> String {
        self.paint("31", t)
    }
    /// Green.
    pub fn green(&self, t: &str) -> String {
        self.paint("32", t)
    }
    /// Yellow.
    pub fn yellow(&self, t: &str) -> String {
        self.paint("33", t)
    }
    /// Blue.
    pub fn blue(&self, t: &str) -> String {
        self.paint("34", t)
    }
    /// Magenta.
    pub fn magenta(&self, t: &str) -> String {
        self.paint("35", t)
    }
    /// Cyan.
    pub fn cyan(&self, t: &str) -> String {
        self.paint("36", t)
    }
    /// Dim.
    pub fn dim(&self, t: &str) -> String {
        self.paint("2", t)
    }
    /// Bold.
    pub fn bold(&self, t: &str) -> String {
        self.paint("1", t)
    }
}

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// A value for display: strings without quotes.
pub fn show_value(v: &Value) -> String {
    match v {
        Value::Str(s) | Value::Ref(s) => s.clone(),
        other => other.to_string(),
    }
}

fn kind_word(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Sync => "sync",
        TaskKind::Delete => "delete",
    }
}

/// Ordinal suffix: 1st, 2nd, 3rd, 4th.
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, r) if r != 11 => "st",
        (2, r) if r != 12 => "nd",
        (3, r) if r != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// A status in words (R4).
pub fn status_text(status: &Status) -> String {
    match status {
        Status::Synced => "synced".into(),
        Status::Pending => "pending".into(),
        Status::Error {
            message,
            failures,
            retry_at,
        } => match retry_at {
            Some(t) => format!(
                "error after {failures} failure{}: {message} (retry at t={}ms)",
                if *failures == 1 { "" } else { "s" },
                t.0
            ),
            None => format!("error: {message}"),
        },
        Status::Deferred { message, retry_at } => {
            format!("deferred: {message} (retry at t={}ms)", retry_at.0)
        }
        Status::Blocked { by, message } => format!("blocked by {by}: {message}"),
        Status::WaitingExternal { key } => format!("waiting for external object {key}"),
        Status::WaitingReferrers { keys } => {
            format!("delete waits for its referrers: {}", keys.join(", "))
        }
    }
}

/// Limits on the timeline's length.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most event lines printed; the rest are counted.
    pub lines_max: usize,
}

/// Writes the timeline of `run` into a string.
pub fn timeline(run: &RunResult, style: Style, limits: Limits) -> String {
    let mut out = String::new();
    let mut lines = 0usize;
    let mut skipped = 0usize;
    let events = &run.events;
    let mut i = 0;
    while i < events.len() {
        let e = &events[i];
        i += 1;
        if matches!(e, Event::End { .. }) {
            continue;
        }
        if lines >= limits.lines_max {
            skipped += 1;
            continue;
        }
        // Objects held at the same moment for the same reason share one line.
        if let Event::Held { at, status, key } = e {
            let mut keys = vec![key.clone()];
            while let Some(Event::Held {
                at: a2,
                status: s2,
                key: k2,
            }) = events.get(i)
            {
                if a2 != at || s2 != status {
                    break;
                }
                keys.push(k2.clone());
                i += 1;
            }
            if keys.len() > 1 {
                lines += 1;
                let _ = writeln!(
                    out,
                    "{} {} {} {}",
                    style.dim(&format!("{:>8}ms", at)),
                    style.yellow(&format!("{:<9}", "held")),
                    style.bold(&list(&keys, 8)),
                    style.dim(&status_text(status))
                );
                continue;
            }
        }
        let line = event_line(e, style);
        if line.is_empty() {
            continue;
        }
        lines += 1;
        let _ = writeln!(out, "{} {line}", style.dim(&format!("{:>8}ms", e.at())));
    }
    if skipped > 0 {
        let _ = writeln!(
            out,
            "{}",
            style.dim(&format!(
                "          ... {skipped} more events not shown (--lines to raise the limit, --json for all)"
            ))
        );
    }
    out
}

/// One event as a line (without its time column).
pub fn event_line(e: &Event, s: Style) -> String {
    let tag = |t: &str| format!("{t:<9}");
    match e {
        Event::Applied {
            label,
            changed,
            by_policy,
            deleted,
            removed,
            ..
        } => {
            let mut parts = Vec::new();
            let own = changed.len() - by_policy.len();
            if own > 0 {
                parts.push(format!("{own} upserted"));
            }
            if !by_policy.is_empty() {
                parts.push(format!(
                    "{} by policy ({})",
                    by_policy.len(),
                    list(by_policy, 6)
                ));
            }
            if !deleted.is_empty() {
                parts.push(format!(
                    "{} to delete ({})",
                    deleted.len(),
                    list(deleted, 6)
                ));
            }
            if !removed.is_empty() {
                parts.push(format!("{} removed", removed.len()));
            }
            if parts.is_empty() {
                parts.push("no changes".into());
            }
            format!(
                "{} {}: {}",
                s.blue(&s.bold(&tag("apply"))),
                s.bold(label),
                parts.join(", ")
            )
        }
        Event::Refused { label, error, .. } => {
            format!("{} {label}: {error}", s.red(&s.bold(&tag("refused"))))
        }
        Event::Reported { key, failed, .. } => match failed {
            None => format!("{} external {key} synced", s.blue(&tag("report"))),
            Some(m) => format!("{} external {key} failed: {m}", s.red(&tag("report"))),
        },
        Event::Started {
            worker,
            key,
            model,
            kind,
            version,
            running,
            ..
        } => format!(
            "{} {} {} {} {}",
            s.cyan(&tag("start")),
            kind_word(*kind),
            s.bold(key),
            s.dim(&format!("({model} v{version})")),
            s.dim(&format!("on worker {} · {running} running", worker + 1))
        ),
        Event::Finished {
            start,
            at,
            key,
            kind,
            outcome,
            completion,
            ..
        } => {
            let took = s.dim(&format!("after {}ms", at - start));
            let what = format!("{} {}", kind_word(*kind), s.bold(key));
            match (outcome, completion) {
                (_, Some(Completion::Stale)) => format!(
                    "{} {what} {took}: result dropped, the object changed meanwhile (R8)",
                    s.magenta(&tag("stale"))
                ),
                (_, None) => format!(
                    "{} {what} {took}: the object is gone",
                    s.magenta(&tag("stale"))
                ),
                (Outcome::Ok { feedback, .. }, Some(c)) => {
                    let mut text = format!("{} {what} {took}", s.green(&tag("ok")));
                    if let Completion::Deleted { removed } = c {
                        if !removed.is_empty() {
                            let _ = write!(text, " · also removed {}", removed.join(", "));
                        }
                    } else if !feedback.is_empty() {
                        let fb: Vec<String> = feedback
                            .iter()
                            .map(|(k, v)| format!("{k}={}", show_value(v)))
                            .collect();
                        let _ = write!(text, " {}", s.dim(&format!("· {}", fb.join(" "))));
                    }
                    if let Completion::Failed { failures, retry_at } = c {
                        let _ = write!(
                            text,
                            " {}",
                            s.red(&format!(
                                "but refused (failure {failures}, retry at t={}ms)",
                                retry_at.0
                            ))
                        );
                    }
                    text
                }
                (Outcome::Failed { message }, Some(c)) => {
                    let tail = match c {
                        Completion::Failed { failures, retry_at } => format!(
                            " · {} failure, retry at t={}ms",
                            ordinal(*failures),
                            retry_at.0
                        ),
                        _ => String::new(),
                    };
                    format!(
                        "{} {what} {took}: {}{}",
                        s.red(&s.bold(&tag("FAILED"))),
                        s.red(message),
                        s.yellow(&tail)
                    )
                }
                (Outcome::Deferred { message }, Some(c)) => {
                    let tail = match c {
                        Completion::Deferred { retry_at } => {
                            format!(" · retry at t={}ms", retry_at.0)
                        }
                        _ => String::new(),
                    };
                    format!(
                        "{} {what} {took}: {message}{}",
                        s.yellow(&tag("deferred")),
                        s.yellow(&tail)
                    )
                }
            }
        }
        Event::Held { key, status, .. } => format!(
            "{} {} {}",
            s.yellow(&tag("held")),
            s.bold(key),
            s.dim(&status_text(status))
        ),
        Event::Waiting {
            until, backing_off, ..
        } => {
            let who: Vec<String> = backing_off
                .iter()
                .take(4)
                .map(|(k, t)| format!("{k} until t={t}ms"))
                .collect();
            let more = if backing_off.len() > 4 {
                format!(", +{} more", backing_off.len() - 4)
            } else {
                String::new()
            };
            format!(
                "{} nothing runnable until t={until}ms {}",
                s.yellow(&tag("backoff")),
                s.dim(&format!("(backing off: {}{more})", who.join(", ")))
            )
        }
        Event::Watch { line, .. } => format!("{} {}", s.magenta(&tag("watch")), s.dim(line)),
        Event::Log { line, .. } => format!("{} {}", s.blue(&tag("log")), s.dim(line)),
        Event::End { .. } => String::new(),
    }
}

/// "a, b, c, +3 more".
fn list(keys: &[String], max: usize) -> String {
    let mut text = keys
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if keys.len() > max {
        let _ = write!(text, ", +{} more", keys.len() - max);
    }
    text
}

/// Counts over a run, for the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Actuations that ended.
    pub actuations: usize,
    /// Of those, failed.
    pub failed: usize,
    /// Deferred.
    pub deferred: usize,
    /// Stale (dropped).
    pub stale: usize,
    /// Most actuations running at once.
    pub concurrency_max: usize,
}

/// Counts the run's actuations.
pub fn counts(run: &RunResult) -> Counts {
    let mut c = Counts::default();
    for e in &run.events {
        match e {
            Event::Started { running, .. } => c.concurrency_max = c.concurrency_max.max(*running),
            Event::Finished {
                outcome,
                completion,
                ..
            } => {
                c.actuations += 1;
                match (outcome, completion) {
                    (_, Some(Completion::Stale) | None) => c.stale += 1,
                    (Outcome::Failed { .. }, _) => c.failed += 1,
                    (Outcome::Deferred { .. }, _) => c.deferred += 1,
                    (Outcome::Ok { .. }, _) => {}
                }
            }
            _ => {}
        }
    }
    c
}

/// The closing summary: convergence, counts, and what is still not synced.
pub fn summary(run: &RunResult, style: Style) -> String {
    let c = counts(run);
    let live = run.objects.iter().filter(|o| o.status.is_some()).count();
    let deleted = run.objects.len() - live;
    let reason = run
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::End { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let mut out = String::new();
    let stats = format!(
        "{live} objects live, {deleted} deleted · {} actuations ({} failed, {} deferred, {} stale) · at most {} running at once · state {:016x}",
        c.actuations, c.failed, c.deferred, c.stale, c.concurrency_max, run.state_hash
    );
    if run.converged {
        let _ = writeln!(
            out,
            "{} at t={}ms: {reason}",
            style.green(&style.bold("converged")),
            run.end
        );
        let _ = writeln!(out, "  {}", style.dim(&stats));
    } else {
        let left = run.unsettled();
        let _ = writeln!(
            out,
            "{} at t={}ms ({reason}): {} object{} not synced",
            style.red(&style.bold("did not converge")),
            run.end,
            left.len(),
            if left.len() == 1 { "" } else { "s" }
        );
        for o in left.iter().take(50) {
            let _ = writeln!(out, "  {}", unsettled_line(o, style));
        }
        if left.len() > 50 {
            let _ = writeln!(out, "  ... and {} more", left.len() - 50);
        }
        let _ = writeln!(out, "  {}", style.dim(&stats));
    }
    out
}

fn unsettled_line(o: &FinalObject, style: Style) -> String {
    let status = o.status.as_ref().map(status_text).unwrap_or_default();
    let painted = match &o.status {
        Some(Status::Error { .. }) => style.red(&status),
        Some(Status::Blocked { .. } | Status::Deferred { .. }) => style.yellow(&status),
        _ => status,
    };
    format!("{} ({}): {painted}", style.bold(&o.key), o.model)
}
