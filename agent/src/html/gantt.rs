//! The HTML report's timeline of the blocked goroutines: one row per goroutine, its wait drawn
//! from when it began to when the report was made (the report's `at_mono_ns`), as SVG.

use super::{esc, human_ns};
use crate::reportview::ReportView;

/// Most rows drawn (the rest are counted under the chart).
pub const MAX_ROWS: usize = 200;
const WIDTH: f64 = 960.0;
const LABEL_W: f64 = 120.0;
const ROW_H: f64 = 20.0;
const AXIS_H: f64 = 24.0;

struct Row {
    goid: u64,
    /// Wait length up to the report, ns.
    len_ns: u64,
    lower_bound: bool,
    kind: &'static str,
    reason: String,
    object: String,
}

/// The chart, or None when nothing was blocked.
pub fn timeline_svg(r: &ReportView) -> Option<(String, usize)> {
    let mut rows: Vec<Row> = r
        .blocked
        .iter()
        .map(|b| Row {
            goid: b.goid,
            len_ns: b.blocked_ns,
            lower_bound: b.blocked_before_attach,
            kind: "blocked",
            reason: b.wait_reason.clone(),
            object: if crate::reportview::is_null_addr(&b.object) {
                String::new()
            } else {
                format!("{} {}", b.object_kind, b.object)
            },
        })
        .collect();
    rows.extend(r.in_syscall.iter().filter_map(|s| {
        let t = s.thread.as_ref()?;
        (t.on_cpu == Some(false)).then(|| Row {
            goid: s.goid,
            len_ns: t.in_state_for_ns,
            lower_bound: t.since_before_attach,
            kind: "syscall",
            reason: format!("syscall: thread {} {}", t.tid, t.state_name),
            object: t
                .kernel_stack
                .first()
                .map(|k| format!("in {}", k.function))
                .unwrap_or_default(),
        })
    }));
    if rows.is_empty() {
        return None;
    }
    // Longest first: the oldest waits on top.
    rows.sort_by(|a, b| b.len_ns.cmp(&a.len_ns).then(a.goid.cmp(&b.goid)));
    let hidden = rows.len().saturating_sub(MAX_ROWS);
    rows.truncate(MAX_ROWS);
    let span = rows.iter().map(|r| r.len_ns).max().unwrap_or(0).max(1) as f64;
    let plot = WIDTH - LABEL_W - 10.0;
    let x_of = |ns_before_end: f64| LABEL_W + plot * (1.0 - ns_before_end / span);
    let height = AXIS_H + ROW_H * rows.len() as f64 + 6.0;
    let mut body = String::new();

    // The axis: time before the report, in five steps.
    for i in 0..=4 {
        let before = span * (4 - i) as f64 / 4.0;
        let x = x_of(before);
        let label = if i == 4 {
            "report".to_string()
        } else {
            format!("−{}", human_ns(before as u64))
        };
        let anchor = if i == 4 { "end" } else { "middle" };
        body.push_str(&format!(
            "<line class=\"tick\" x1=\"{x:.1}\" y1=\"{AXIS_H}\" x2=\"{x:.1}\" y2=\"{height:.1}\"/>\
             <text class=\"tick-label\" x=\"{x:.1}\" y=\"14\" text-anchor=\"{anchor}\">{label}</text>"
        ));
    }
    for (i, row) in rows.iter().enumerate() {
        let y = AXIS_H + ROW_H * i as f64;
        let x0 = x_of(row.len_ns as f64);
        let w = (x_of(0.0) - x0).max(1.5);
        // The label inside the bar, or left of a short one.
        let (lx, anchor) = if w < 240.0 && x0 > LABEL_W + 250.0 {
            (x0 - 4.0, "end")
        } else {
            (x0 + 4.0, "start")
        };
        let title = format!(
            "goroutine {}: {}{} for {}{}",
            row.goid,
            row.reason,
            if row.object.is_empty() {
                String::new()
            } else {
                format!(" on {}", row.object)
            },
            if row.lower_bound { "more than " } else { "" },
            human_ns(row.len_ns)
        );
        body.push_str(&format!(
            "<g class=\"span {}{}\" data-goid=\"{}\" data-reason=\"{}\" data-object=\"{}\" \
             data-blocked-ns=\"{}\"><title>{}</title>\
             <text class=\"row-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">goroutine {}</text>\
             <rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" rx=\"3\"/>\
             <text class=\"span-label\" x=\"{lx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text></g>\n",
            row.kind,
            if row.lower_bound { " before-attach" } else { "" },
            row.goid,
            esc(&row.reason),
            esc(&row.object),
            row.len_ns,
            esc(&title),
            LABEL_W - 6.0,
            y + ROW_H * 0.7,
            row.goid,
            y + 3.0,
            ROW_H - 6.0,
            y + ROW_H * 0.7,
            esc(&format!("{} {}", row.reason, row.object))
        ));
    }
    Some((
        format!(
            "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" \
             height=\"{height:.0}\" viewBox=\"0 0 {WIDTH} {height:.0}\" role=\"img\">\
             <title>Blocked goroutines over time, up to the report</title>{body}</svg>"
        ),
        hidden,
    ))
}
