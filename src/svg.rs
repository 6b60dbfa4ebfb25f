//! Hand-written SVG: a Gantt chart of a run (a lane per worker, a bar per actuation colored
//! by outcome, a time axis, change sets marked) and the object dependency graph (layered by
//! dependency depth, each object colored by its final status).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use syncore::{Completion, Outcome, Status, TaskKind};

use crate::run::{Event, FinalObject, RunResult};

/// Escapes text for SVG content and attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

const FONT: &str = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\"";

/// Colors of actuation outcomes and object statuses.
const OK: &str = "#43a047";
const OK_DELETE: &str = "#546e7a";
const FAILED: &str = "#e53935";
const DEFERRED: &str = "#fb8c00";
const STALE: &str = "#8e24aa";
const BLOCKED: &str = "#fdd835";
const PENDING: &str = "#90a4ae";
const WAITING: &str = "#1e88e5";
const DELETED: &str = "#eceff1";

/// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `n` ticks over `span`.
fn tick_step(span: u64, n: u64) -> u64 {
    let raw = (span / n.max(1)).max(1);
    let mut p = 1u64;
    while p.saturating_mul(10) <= raw {
        p *= 10;
    }
    for m in [1, 2, 5, 10] {
        if p.saturating_mul(m) >= raw {
            return p.saturating_mul(m);
        }
    }
    p.saturating_mul(10)
}

/// Approximate text width at `size` px.
fn text_w(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * 0.6
}

/// The Gantt chart of `run`.
pub fn gantt(run: &RunResult, title: &str) -> String {
    let lanes = run.workers.max(1);
    let end = run.end.max(1);
    let (left, right, top, lane_h) = (90.0, 30.0, 64.0, 30.0);
    let chart_w = 1300.0;
    let chart_h = lanes as f64 * lane_h;
    let legend_y = top + chart_h + 52.0;
    let width = left + chart_w + right;
    let height = legend_y + 30.0;
    let x = |t: u64| left + (t as f64 / end as f64) * chart_w;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" {FONT} font-size=\"12\">"
    );
    let _ = writeln!(
        s,
        "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n<text x=\"{left}\" y=\"24\" font-size=\"16\" font-weight=\"bold\">{}</text>",
        esc(title)
    );
    let c = crate::report::counts(run);
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"42\" fill=\"#555\">{} actuations on {lanes} workers, {} failed, {} deferred · {} at t={}ms</text>",
        c.actuations,
        c.failed,
        c.deferred,
        if run.converged { "converged" } else { "not converged" },
        run.end
    );
    // Lanes.
    for lane in 0..lanes {
        let y = top + lane as f64 * lane_h;
        let fill = if lane % 2 == 0 { "#f5f7f8" } else { "#ffffff" };
        let _ = writeln!(
            s,
            "<rect x=\"{left}\" y=\"{y}\" width=\"{chart_w}\" height=\"{lane_h}\" fill=\"{fill}\"/>\n<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#333\">worker {}</text>",
            left - 8.0,
            y + lane_h / 2.0 + 4.0,
            lane + 1
        );
    }
    // Time axis.
    let step = tick_step(end, 10);
    let axis_y = top + chart_h;
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" y1=\"{axis_y}\" x2=\"{:.1}\" y2=\"{axis_y}\" stroke=\"#333\"/>",
        left + chart_w
    );
    let mut t = 0;
    while t <= end {
        let tx = x(t);
        let _ = writeln!(
            s,
            "<line x1=\"{tx:.1}\" y1=\"{top}\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"#dde3e6\"/>\n<text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#333\">{}</text>",
            axis_y + 5.0,
            axis_y + 19.0,
            fmt_ms(t)
        );
        match t.checked_add(step) {
            Some(next) => t = next,
            None => break,
        }
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">logical time</text>",
        left + chart_w / 2.0,
        axis_y + 36.0
    );
    // Change sets.
    for e in &run.events {
        if let Event::Applied { at, label, .. } = e {
            let tx = x(*at);
            let _ = writeln!(
                s,
                "<line x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{axis_y}\" stroke=\"#1e88e5\" stroke-dasharray=\"4 3\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#1e88e5\" font-size=\"11\">{}</text>",
                top - 8.0,
                tx + 3.0,
                top - 10.0,
                esc(label)
            );
        }
    }
    // Bars.
    for e in &run.events {
        let Event::Finished {
            start,
            at,
            worker,
            key,
            kind,
            version,
            outcome,
            completion,
            ..
        } = e
        else {
            continue;
        };
        let (color, word) = bar_color(outcome, completion.as_ref(), *kind);
        let x0 = x(*start);
        let w = (x(*at) - x0).max(1.5);
        let y = top + *worker as f64 * lane_h + 5.0;
        let h = lane_h - 10.0;
        let detail = match outcome {
            Outcome::Failed { message } | Outcome::Deferred { message } => format!(": {message}"),
            Outcome::Ok { .. } => String::new(),
        };
        let kind_word = match kind {
            TaskKind::Sync => "sync",
            TaskKind::Delete => "delete",
        };
        let _ = writeln!(
            s,
            "<g><title>{} {} v{} · {}-{}ms · {word}{}</title><rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"3\" fill=\"{color}\" stroke=\"#ffffff\" stroke-width=\"0.8\"/>",
            kind_word,
            esc(key),
            version,
            start,
            at,
            esc(&detail)
        );
        let label = if *kind == TaskKind::Delete {
            format!("✕ {key}")
        } else {
            key.clone()
        };
        // As much of the key as fits; nothing if not even a few characters do.
        let fits = ((w - 5.0) / (10.0 * 0.6)) as usize;
        if fits >= 4 {
            let text: String = if label.chars().count() <= fits {
                label
            } else {
                label.chars().take(fits - 1).chain(['…']).collect()
            };
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#ffffff\">{}</text>",
                x0 + 3.0,
                y + h / 2.0 + 3.5,
                esc(&text)
            );
        }
        s.push_str("</g>\n");
        // A failure or deferral: a dashed line to when the object may run again (R5, R6).
        let retry = match completion {
            Some(Completion::Failed { retry_at, .. } | Completion::Deferred { retry_at }) => {
                Some(retry_at.0)
            }
            _ => None,
        };
        if let Some(r) = retry.filter(|r| r > at) {
            let ly = y + h - 1.5;
            let _ = writeln!(
                s,
                "<line x1=\"{:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"3 2\"><title>{} backs off until t={r}ms</title></line>",
                x(*at),
                x(r.min(end)),
                esc(key)
            );
        }
    }
    // Legend.
    let items = [
        (OK, "synced"),
        (OK_DELETE, "deleted"),
        (FAILED, "failed"),
        (DEFERRED, "deferred"),
        (STALE, "stale (dropped, R8)"),
    ];
    let backoff_legend = "backoff until retry";
    let mut lx = left;
    for (color, name) in items {
        let _ = writeln!(
            s,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"14\" height=\"14\" rx=\"2\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{legend_y:.1}\">{name}</text>",
            legend_y - 11.0,
            lx + 19.0
        );
        lx += 40.0 + text_w(name, 12.0);
    }
    let _ = writeln!(
        s,
        "<line x1=\"{lx:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{FAILED}\" stroke-width=\"2\" stroke-dasharray=\"3 2\"/><text x=\"{:.1}\" y=\"{legend_y:.1}\">{backoff_legend}</text>",
        legend_y - 4.0,
        lx + 22.0,
        legend_y - 4.0,
        lx + 28.0
    );
    lx += 50.0 + text_w(backoff_legend, 12.0);
    let _ = writeln!(
        s,
        "<line x1=\"{lx:.1}\" y1=\"{:.1}\" x2=\"{lx:.1}\" y2=\"{:.1}\" stroke=\"#1e88e5\" stroke-dasharray=\"4 3\"/><text x=\"{:.1}\" y=\"{legend_y:.1}\">change set applied</text>",
        legend_y - 12.0,
        legend_y + 3.0,
        lx + 6.0
    );
    s.push_str("</svg>\n");
    s
}

fn bar_color(
    outcome: &Outcome,
    c: Option<&Completion>,
    kind: TaskKind,
) -> (&'static str, &'static str) {
    match (outcome, c) {
        (_, Some(Completion::Stale) | None) => (STALE, "stale"),
        (_, Some(Completion::Failed { .. })) => (FAILED, "failed"),
        (Outcome::Deferred { .. }, _) => (DEFERRED, "deferred"),
        (Outcome::Ok { .. }, _) if kind == TaskKind::Delete => (OK_DELETE, "deleted"),
        (Outcome::Ok { .. }, _) => (OK, "ok"),
        (Outcome::Failed { .. }, _) => (FAILED, "failed"),
    }
}

fn fmt_ms(t: u64) -> String {
    if t >= 10_000 && t.is_multiple_of(1000) {
        format!("{}s", t / 1000)
    } else {
        format!("{t}ms")
    }
}

/// Most objects `graph` draws.
pub const GRAPH_OBJECTS_MAX: usize = 5000;

fn status_color(status: Option<&Status>) -> (&'static str, &'static str) {
    match status {
        None => (DELETED, "deleted"),
        Some(Status::Synced) => (OK, "synced"),
        Some(Status::Pending) => (PENDING, "pending"),
        Some(Status::Error { .. }) => (FAILED, "error"),
        Some(Status::Deferred { .. }) => (DEFERRED, "deferred"),
        Some(Status::Blocked { .. }) => (BLOCKED, "blocked"),
        Some(Status::WaitingExternal { .. } | Status::WaitingReferrers { .. }) => {
            (WAITING, "waiting")
        }
    }
}

/// The object dependency graph: layers by dependency depth (what an object depends on is
/// above it), each object colored by its final status; arrows point at dependencies.
///
/// # Errors
/// If there are more than [`GRAPH_OBJECTS_MAX`] objects.
pub fn graph(objects: &[FinalObject], title: &str) -> Result<String, String> {
    if objects.len() > GRAPH_OBJECTS_MAX {
        return Err(format!(
            "the graph has {} objects; --graph draws at most {GRAPH_OBJECTS_MAX}",
            objects.len()
        ));
    }
    let index: BTreeMap<&str, usize> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| (o.key.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = objects
        .iter()
        .map(|o| {
            o.deps
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    // Depth: longest dependency chain below each object (iterative, bounded: R11 keeps the
    // graph acyclic, the bound guards against anything else).
    let n = objects.len();
    let mut depth = vec![0usize; n];
    for _ in 0..n.max(1) {
        let mut changed = false;
        for i in 0..n {
            let d = deps[i].iter().map(|&j| depth[j] + 1).max().unwrap_or(0);
            if d > depth[i] && d <= n {
                depth[i] = d;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let layers_n = depth.iter().max().map_or(0, |d| d + 1);
    let mut layers: Vec<Vec<usize>> = vec![Vec::new(); layers_n];
    for (i, &d) in depth.iter().enumerate() {
        layers[d].push(i);
    }
    // Order each layer by the mean position of its dependencies (one barycenter pass).
    let mut pos = vec![0.0f64; n];
    for layer in &mut layers {
        let mut keyed: Vec<(f64, usize)> = layer
            .iter()
            .map(|&i| {
                let b = if deps[i].is_empty() {
                    f64::MAX
                } else {
                    deps[i].iter().map(|&j| pos[j]).sum::<f64>() / deps[i].len() as f64
                };
                (b, i)
            })
            .collect();
        keyed.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then(objects[a.1].key.cmp(&objects[b.1].key))
        });
        *layer = keyed.into_iter().map(|(_, i)| i).collect();
        for (k, &i) in layer.iter().enumerate() {
            pos[i] = k as f64;
        }
    }
    let box_w = objects
        .iter()
        .map(|o| text_w(&o.key, 12.0).max(text_w(&o.model, 10.0)))
        .fold(60.0f64, f64::max)
        .min(220.0)
        + 18.0;
    let (box_h, gap_x, gap_y, row_gap, margin, top) = (38.0, 16.0, 56.0, 14.0, 30.0, 60.0);
    // A wide layer wraps onto several rows of at most ROW_MAX objects.
    const ROW_MAX: usize = 40;
    let widest = layers
        .iter()
        .map(|l| l.len().min(ROW_MAX))
        .max()
        .unwrap_or(1)
        .max(1);
    let content_w = widest as f64 * (box_w + gap_x) - gap_x;
    let legend_w: f64 = GRAPH_LEGEND
        .iter()
        .map(|(_, name)| 36.0 + text_w(name, 12.0))
        .sum();
    let width = (content_w + 2.0 * margin)
        .max(legend_w + 2.0 * margin)
        .max(640.0);
    let mut xy = vec![(0.0f64, 0.0f64); n];
    let mut y = top;
    for layer in &layers {
        for (r, row) in layer.chunks(ROW_MAX).enumerate() {
            if r > 0 {
                y += box_h + row_gap;
            }
            let row_w = row.len() as f64 * (box_w + gap_x) - gap_x;
            let x0 = (width - row_w) / 2.0;
            for (k, &i) in row.iter().enumerate() {
                xy[i] = (x0 + k as f64 * (box_w + gap_x), y);
            }
        }
        y += box_h + gap_y;
    }
    let height = y + 24.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" {FONT} font-size=\"12\">"
    );
    let _ = writeln!(
        s,
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#78909c\"/></marker></defs>"
    );
    let _ = writeln!(
        s,
        "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n<text x=\"{margin}\" y=\"26\" font-size=\"16\" font-weight=\"bold\">{}</text>\n<text x=\"{margin}\" y=\"44\" fill=\"#555\">{n} objects in {layers_n} layers by dependency depth; arrows point at what an object depends on</text>",
        esc(title)
    );
    for i in 0..n {
        for &j in &deps[i] {
            let (x1, y1) = (xy[i].0 + box_w / 2.0, xy[i].1);
            let (x2, y2) = (xy[j].0 + box_w / 2.0, xy[j].1 + box_h);
            let my = (y1 + y2) / 2.0;
            let _ = writeln!(
                s,
                "<path d=\"M {x1:.1} {y1:.1} C {x1:.1} {my:.1}, {x2:.1} {my:.1}, {x2:.1} {y2:.1}\" fill=\"none\" stroke=\"#90a4ae\" stroke-width=\"1.2\" marker-end=\"url(#arrow)\"/>"
            );
        }
    }
    for (i, o) in objects.iter().enumerate() {
        let (x, y) = xy[i];
        let (fill, word) = status_color(o.status.as_ref());
        let dark = matches!(word, "synced" | "error" | "deferred" | "waiting");
        let text_fill = if dark { "#ffffff" } else { "#263238" };
        let dash = if o.status.is_none() {
            " stroke-dasharray=\"4 3\""
        } else {
            ""
        };
        let detail = o
            .status
            .as_ref()
            .map(crate::report::status_text)
            .unwrap_or_else(|| "deleted".into());
        let _ = writeln!(
            s,
            "<g><title>{} ({}): {}</title><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{box_w:.1}\" height=\"{box_h}\" rx=\"6\" fill=\"{fill}\" stroke=\"#455a64\" stroke-width=\"1\"{dash}/>",
            esc(&o.key),
            esc(&o.model),
            esc(&detail)
        );
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-weight=\"bold\" fill=\"{text_fill}\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\" fill=\"{text_fill}\">{}</text></g>",
            x + box_w / 2.0,
            y + 16.0,
            esc(&clip(&o.key, box_w)),
            x + box_w / 2.0,
            y + 30.0,
            esc(&o.model)
        );
    }
    let ly = height - 16.0;
    let mut lx = margin;
    for (color, name) in GRAPH_LEGEND {
        let _ = writeln!(
            s,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"14\" height=\"14\" rx=\"3\" fill=\"{color}\" stroke=\"#455a64\" stroke-width=\"0.6\"/><text x=\"{:.1}\" y=\"{ly:.1}\">{name}</text>",
            ly - 11.0,
            lx + 19.0
        );
        lx += 36.0 + text_w(name, 12.0);
    }
    s.push_str("</svg>\n");
    Ok(s)
}

/// The graph's legend: status colors.
const GRAPH_LEGEND: [(&str, &str); 7] = [
    (OK, "synced"),
    (PENDING, "pending"),
    (FAILED, "error"),
    (DEFERRED, "deferred"),
    (BLOCKED, "blocked"),
    (WAITING, "waiting"),
    (DELETED, "deleted"),
];

/// Clips a label to fit `w` px at 12 px.
fn clip(s: &str, w: f64) -> String {
    let max = ((w - 8.0) / 7.2).max(4.0) as usize;
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(1000, 10), 100);
        assert_eq!(tick_step(3400, 10), 500);
        assert_eq!(tick_step(1, 10), 1);
        assert!(tick_step(u64::MAX, 10) > 0);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
    }
}
