//! The report as one self-contained HTML page (`report --html`, `run`/`attach`/`analyze
//! --html`): each finding with its wait-for graph drawn as SVG ([`graph`]), its goroutines'
//! symbolized stacks (Go, C and kernel frames), durations and creation sites, and a timeline of
//! the blocked goroutines ([`gantt`]). Inline CSS, no script, no font, image or link to fetch:
//! the page makes no network request.

pub mod gantt;
pub mod graph;
pub mod svg;

use std::fmt::Write;

use crate::reportview::{
    BlockedView, CreationView, FindingView, FrameView, MixedFrameView, ReportView, SyscallView,
    is_null_addr,
};

/// Goroutines detailed (stacks and all) per finding.
const MAX_DETAILED: usize = 10;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `2.1s`, `350ms`, `12µs`.
pub fn human_ns(ns: u64) -> String {
    let s = ns as f64 / 1e9;
    if ns == 0 {
        "0s".to_string()
    } else if s >= 120.0 {
        format!("{:.1} min", s / 60.0)
    } else if s >= 1.0 {
        format!("{s:.1}s")
    } else if ns >= 1_000_000 {
        format!("{}ms", ns / 1_000_000)
    } else {
        format!("{}µs", ns / 1_000)
    }
}

const CSS: &str = r#"
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg:#f6f8fa; --red:#c5221f; --blue:#1a56c4; --orange:#b45f06; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0 auto; max-width: 1100px; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 18px; border-bottom: 1px solid var(--line); padding-bottom: 4px; margin-top: 32px; }
h3 { font-size: 16px; margin: 0 0 6px; }
code, .mono, pre { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px; }
.muted { color: var(--muted); }
.summary span { margin-right: 14px; white-space: nowrap; }
.finding { border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; margin: 14px 0; background: #fff; }
.finding.allowed { opacity: .7; }
.badge { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; font-weight: 600; color: #fff; background: var(--muted); vertical-align: 1px; }
.badge.error { background: var(--red); } .badge.warning { background: #bf8700; } .badge.note { background: var(--blue); }
.explanation { font-size: 15px; margin: 4px 0 10px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 8px 0; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; }
figure.graph { margin: 10px 0; padding: 8px; background: var(--bg); border-radius: 6px; overflow-x: auto; }
figure.graph figcaption { color: var(--muted); font-size: 12px; margin-top: 4px; }
svg text { font-family: system-ui, sans-serif; fill: var(--fg); }
.waitgraph .node rect { fill: #e8f0fe; stroke: var(--blue); stroke-width: 1.5; }
.waitgraph .node ellipse { fill: #fff4e5; stroke: var(--orange); stroke-width: 1.5; }
.waitgraph .node.more rect { fill: #fff; stroke: var(--muted); stroke-dasharray: 4 3; }
.waitgraph .node.root rect, .waitgraph .node.root ellipse { stroke: var(--red); stroke-width: 3; }
.waitgraph .edge path { stroke: #57606a; stroke-width: 1.5; }
.waitgraph .edge.cycle path { stroke: var(--red); stroke-width: 2.5; }
.waitgraph .arrowhead polygon { fill: #57606a; } .waitgraph .arrowhead.cycle polygon { fill: var(--red); }
.waitgraph .label { font-size: 12px; } .waitgraph .edge-label { font-size: 11px; fill: var(--muted); }
ol.chain { margin: 4px 0 8px 18px; padding: 0; }
details.goroutine { border-top: 1px solid var(--line); padding: 6px 0; }
details.goroutine summary { cursor: pointer; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px; }
ol.stack { list-style: none; margin: 6px 0 0 8px; padding: 0; }
ol.stack li { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; padding: 1px 0; }
ol.stack li .loc { color: var(--muted); display: block; padding-left: 24px; }
ol.stack li.wrapper, ol.stack li.runtime { color: var(--muted); }
.tag { display: inline-block; min-width: 64px; font-weight: 600; }
li.kernel .tag { color: #8250df; } li.c .tag { color: var(--orange); } li.boundary .tag { color: var(--red); }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--bg); }
td code, ol.stack li .loc, .mono { overflow-wrap: anywhere; }
.timeline .tick { stroke: var(--line); } .timeline .tick-label, .timeline .row-label { font-size: 11px; fill: var(--muted); }
.timeline .span rect { fill: #f4a9a8; stroke: var(--red); } .timeline .span.syscall rect { fill: #d8c8f8; stroke: #8250df; }
.timeline .span.before-attach rect { stroke-dasharray: 4 2; } .timeline .span-label { font-size: 11px; }
.warnings li { color: #9a6700; }
"#;

/// The whole page.
pub fn render(r: &ReportView) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let exe = r.target.exe.rsplit('/').next().unwrap_or(&r.target.exe);
    let title = if r.target.pid != 0 {
        format!("blockprobe: pid {} {exe}", r.target.pid)
    } else {
        format!("blockprobe: {exe}")
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head>\n<body>\n",
        esc(&title)
    );
    header(&mut out, r);
    findings(&mut out, r);
    timeline(&mut out, r);
    blocked_table(&mut out, r);
    syscalls(&mut out, r);
    threads(&mut out, r);
    if !r.warnings.is_empty() {
        out.push_str("<section id=\"warnings\"><h2>Warnings</h2><ul class=\"warnings\">");
        for w in &r.warnings {
            let _ = write!(out, "<li>{}</li>", esc(w));
        }
        out.push_str("</ul></section>\n");
    }
    let _ = write!(
        out,
        "<footer class=\"muted\"><p>{} · made by blockprobe; the JSON layout is \
         docs/report-schema.md</p></footer>\n</body></html>\n",
        esc(&r.schema)
    );
    out
}

fn header(out: &mut String, r: &ReportView) {
    let t = &r.target;
    let _ = write!(
        out,
        "<header><h1>blockprobe report</h1><p class=\"mono\">{}</p><p class=\"summary\">",
        esc(&t.exe)
    );
    let mut facts: Vec<String> = Vec::new();
    if t.pid != 0 {
        facts.push(format!("pid {}", t.pid));
    }
    let flags: Vec<&str> = [(t.pie, "pie"), (t.stripped, "stripped"), (t.cgo, "cgo")]
        .iter()
        .filter_map(|(on, n)| on.then_some(*n))
        .collect();
    facts.push(format!(
        "{}{}",
        t.go_version,
        if flags.is_empty() {
            String::new()
        } else {
            format!(" ({})", flags.join(", "))
        }
    ));
    facts.push(format!("mode: {}", r.mode));
    if r.mode != "trace" {
        facts.push(format!(
            "session {} ({})",
            human_ns(r.duration_ns),
            r.end_reason
        ));
        facts.push(format!(
            "{} events, {} lost",
            r.events_received, r.events_lost
        ));
    }
    if let Some(tr) = &r.trace {
        facts.push(format!(
            "trace {} ({}, {} events over {})",
            tr.source,
            tr.format,
            tr.events,
            human_ns(tr.span_ns)
        ));
    }
    facts.push(format!("{} goroutines seen", r.goroutines_seen));
    facts.push(format!("threshold {}", human_ns(r.threshold_ns)));
    match (r.exit_code, r.exit_signal) {
        (Some(c), _) => facts.push(format!("exit code {c}")),
        (None, Some(s)) => facts.push(format!("killed by signal {s}")),
        _ => {}
    }
    for f in facts {
        let _ = write!(out, "<span>{}</span>", esc(&f));
    }
    out.push_str("</p></header>\n");
}

fn findings(out: &mut String, r: &ReportView) {
    let open = r.findings.iter().filter(|f| !f.allowed).count();
    let _ = writeln!(
        out,
        "<section id=\"findings\"><h2>{open} finding(s){}</h2>",
        match r.findings.len() - open {
            0 => String::new(),
            n => format!(", {n} allowed"),
        }
    );
    if r.findings.is_empty() {
        out.push_str("<p>Nothing blocked long enough to make a finding.</p>");
    }
    for (i, f) in r.findings.iter().enumerate() {
        finding(out, r, i, f);
    }
    out.push_str("</section>\n");
}

fn site(s: &Option<crate::reportview::SiteView>) -> Option<String> {
    s.as_ref().map(|s| {
        format!(
            "<code>{}</code> at <code>{}</code>",
            esc(&s.function),
            esc(&s.location)
        )
    })
}

fn creation(c: &Option<CreationView>) -> Option<String> {
    c.as_ref().map(|c| {
        format!(
            "<code>{}</code> at <code>{}</code> in goroutine {}",
            esc(&c.function),
            esc(c.location.as_deref().unwrap_or("?")),
            c.parent_goid
        )
    })
}

fn finding(out: &mut String, r: &ReportView, i: usize, f: &FindingView) {
    let _ = write!(
        out,
        "<article class=\"finding{}\" id=\"finding-{i}\" data-pattern=\"{}\" data-slug=\"{}\" \
         data-severity=\"{}\"><h3><span class=\"badge {}\">{}</span> {} <code>{}</code> — {}</h3>\
         <p class=\"explanation\">{}</p><dl class=\"facts\">",
        if f.allowed { " allowed" } else { "" },
        esc(&f.pattern),
        esc(&f.slug),
        esc(&f.severity),
        esc(&f.severity),
        esc(&f.severity),
        esc(&f.pattern),
        esc(&f.slug),
        esc(&f.name),
        esc(&f.explanation)
    );
    let mut fact = |k: &str, v: String| {
        let _ = write!(out, "<dt>{k}</dt><dd>{v}</dd>");
    };
    let ids: Vec<String> = f.goroutines.iter().take(20).map(u64::to_string).collect();
    fact(
        "goroutines",
        format!(
            "{} ({}{})",
            f.count,
            ids.join(", "),
            if f.count > ids.len() { ", …" } else { "" }
        ),
    );
    if let Some(w) = &f.wait_reason {
        fact("wait reason", esc(w));
    }
    let objects: Vec<&str> = if f.objects.is_empty() {
        f.object.iter().map(String::as_str).collect()
    } else {
        f.objects.iter().map(String::as_str).collect()
    };
    if !objects.is_empty() {
        fact(
            "object",
            format!(
                "{} <code>{}</code>",
                esc(f.object_kind.as_deref().unwrap_or("")),
                esc(&objects.join(", "))
            ),
        );
    }
    fact(
        "blocked for",
        format!(
            "{}{}",
            if f.blocked_before_attach {
                "more than "
            } else {
                ""
            },
            human_ns(f.blocked_ns)
        ),
    );
    if let Some(s) = site(&f.blocked_at) {
        fact("blocked in", s);
    }
    if let Some(c) = creation(&f.created_by) {
        fact("created by", c);
    }
    fact(
        "confidence",
        format!(
            "{}{}",
            esc(&f.confidence),
            if f.allowed { " (allowed)" } else { "" }
        ),
    );
    out.push_str("</dl>");

    let g = graph::Graph::of_finding(r, f);
    let prefix = format!("g{i}");
    if let Some(svg) = g.to_svg(&prefix, &format!("wait-for graph of {}", f.slug)) {
        let _ = write!(
            out,
            "<figure class=\"graph\" data-finding=\"{i}\">{svg}<figcaption>Wait-for graph: \
             goroutines (boxes) wait on objects (circles), which the goroutines they point to hold \
             or would serve; red outline: the root cause{}; dashed: inferred.</figcaption></figure>",
            if f.chain_is_cycle() {
                " (the cycle, drawn in red)"
            } else {
                ""
            }
        );
    } else if !g.nodes.is_empty() {
        out.push_str("<p class=\"muted\">(the wait-for graph could not be laid out)</p>");
    }
    if !f.chain.is_empty() {
        let _ = write!(
            out,
            "<p class=\"muted\">{}:</p><ol class=\"chain\">",
            if f.chain_is_cycle() {
                "The cycle"
            } else {
                "The chain, to its root"
            }
        );
        for l in &f.chain {
            let _ = write!(
                out,
                "<li data-goid=\"{}\">goroutine {} ({}{}){}</li>",
                l.goid,
                l.goid,
                esc(&l.state),
                l.wait_reason
                    .as_deref()
                    .map(|w| format!(", {}", esc(w)))
                    .unwrap_or_default(),
                match (&l.object_kind, &l.object) {
                    (Some(k), Some(o)) => format!(" on {} <code>{}</code>", esc(k), esc(o)),
                    _ => String::new(),
                }
            );
        }
        out.push_str("</ol>");
    }
    if let Some(fused) = &f.fused {
        fused_view(out, fused);
    }
    for (k, &goid) in f.goroutines.iter().take(MAX_DETAILED).enumerate() {
        if let Some(b) = r.blocked_goroutine(goid) {
            blocked_details(out, r, b, k < 2);
        } else if let Some(s) = r.syscall_goroutine(goid) {
            syscall_details(out, s, k < 2);
        }
    }
    if f.goroutines.len() > MAX_DETAILED {
        let _ = write!(
            out,
            "<p class=\"muted\">… and {} more goroutine(s), listed under Blocked goroutines.</p>",
            f.count.max(f.goroutines.len()) - MAX_DETAILED
        );
    }
    out.push_str("</article>\n");
}

fn fused_view(out: &mut String, fused: &crate::reportview::FusedView) {
    out.push_str("<div class=\"fused\"><p class=\"muted\">The execution trace's view:</p><ul>");
    match &fused.trace {
        Some(t) => {
            let _ = write!(
                out,
                "<li>goroutine {}: {} for {}{}{}</li>",
                fused.goid,
                esc(&t.state),
                human_ns(t.in_state_ns),
                t.block_reason
                    .as_deref()
                    .map(|b| format!(" (trace block reason: {})", esc(b)))
                    .unwrap_or_default(),
                if t.since_before_trace {
                    ", since before the trace began"
                } else {
                    ""
                }
            );
            if let (Some(by), Some(at)) = (t.created_by, &t.created_at) {
                let _ = write!(
                    out,
                    "<li>created by goroutine {by} at <code>{}</code></li>",
                    esc(at)
                );
            }
            if let Some(u) = t.unblocked.last() {
                let _ = write!(
                    out,
                    "<li>last made runnable by {} ({} time(s) in the trace)</li>",
                    u.by.map(|b| format!("goroutine {b}"))
                        .unwrap_or_else(|| "the runtime".into()),
                    t.unblock_count
                );
            }
        }
        None => out.push_str("<li>the trace never mentions this goroutine</li>"),
    }
    for d in &fused.disagreements {
        let _ = write!(out, "<li>disagreement: {}</li>", esc(d));
    }
    out.push_str("</ul></div>");
}

fn go_frames(out: &mut String, frames: &[FrameView]) {
    out.push_str("<ol class=\"stack\">");
    for fr in frames {
        let class = if fr.wrapper {
            "go wrapper"
        } else if fr.function.starts_with("runtime.") {
            "go runtime"
        } else {
            "go"
        };
        let _ = write!(
            out,
            "<li class=\"{class}\"><span class=\"tag\">[Go]</span><code>{}</code>{}\
             <span class=\"loc\">{}:{}</span></li>",
            esc(&fr.function),
            if fr.inlined { " (inlined)" } else { "" },
            esc(&fr.file),
            fr.line
        );
    }
    out.push_str("</ol>");
}

fn mixed_frames(out: &mut String, frames: &[MixedFrameView]) {
    out.push_str("<ol class=\"stack mixed\">");
    for fr in frames {
        let (class, tag) = match (fr.kind.as_str(), &fr.module) {
            ("kernel", _) => ("kernel", "[kernel]".to_string()),
            ("c", Some(m)) => ("c", format!("[C {m}]")),
            ("c", None) => ("c", "[C]".to_string()),
            _ if fr.cgo_boundary => ("go boundary", "[cgo boundary]".to_string()),
            _ => ("go", "[Go]".to_string()),
        };
        let loc = if fr.file.is_empty() {
            String::new()
        } else {
            format!("<span class=\"loc\">{}:{}</span>", esc(&fr.file), fr.line)
        };
        let _ = write!(
            out,
            "<li class=\"{class}\"><span class=\"tag\">{}</span><code>{}</code>{}{loc}</li>",
            esc(&tag),
            esc(&fr.function),
            if fr.inlined { " (inlined)" } else { "" }
        );
    }
    out.push_str("</ol>");
}

fn blocked_summary(b: &BlockedView) -> String {
    format!(
        "goroutine {} [{}, {}{}]{}",
        b.goid,
        b.wait_reason,
        if b.blocked_before_attach { ">" } else { "" },
        human_ns(b.blocked_ns),
        if is_null_addr(&b.object) || b.object_kind == "none" {
            String::new()
        } else {
            format!(" on {} {}", b.object_kind, b.object)
        }
    )
}

fn blocked_details(out: &mut String, r: &ReportView, b: &BlockedView, open: bool) {
    let _ = write!(
        out,
        "<details class=\"goroutine\" data-goid=\"{}\"{}><summary>{}</summary><dl class=\"facts\">",
        b.goid,
        if open { " open" } else { "" },
        esc(&blocked_summary(b))
    );
    if let Some(s) = site(&b.blocked_at) {
        let _ = write!(out, "<dt>blocked in</dt><dd>{s}</dd>");
    }
    if let Some(c) = creation(&b.created_by) {
        let _ = write!(out, "<dt>created by</dt><dd>{c}</dd>");
    }
    if let Some(sf) = &b.start_function {
        let _ = write!(out, "<dt>started at</dt><dd><code>{}</code></dd>", esc(sf));
    }
    if b.wait_chans.len() > 1 {
        let _ = write!(
            out,
            "<dt>channels</dt><dd><code>{}</code></dd>",
            esc(&b.wait_chans.join(", "))
        );
    }
    let _ = write!(
        out,
        "<dt>seen by</dt><dd>{}{}</dd></dl>",
        esc(&b.source),
        if b.tid != 0 {
            format!(", parked on thread {}", b.tid)
        } else {
            String::new()
        }
    );
    match r.stack(b.stack) {
        Some(frames) => go_frames(out, frames),
        None => out.push_str("<p class=\"muted\">(no stack)</p>"),
    }
    out.push_str("</details>");
}

fn thread_line(s: &SyscallView) -> String {
    match (&s.tid, &s.thread) {
        (Some(tid), Some(t)) => format!(
            "thread {tid} {} for {}{}",
            t.state_name,
            if t.since_before_attach { ">" } else { "" },
            human_ns(t.in_state_for_ns)
        ),
        (Some(tid), None) => format!("thread {tid}"),
        _ => "thread unknown".to_string(),
    }
}

fn syscall_details(out: &mut String, s: &SyscallView, open: bool) {
    let _ = write!(
        out,
        "<details class=\"goroutine syscall\" data-goid=\"{}\"{}><summary>goroutine {} \
         [syscall]: {}</summary><dl class=\"facts\">",
        s.goid,
        if open { " open" } else { "" },
        s.goid,
        esc(&thread_line(s))
    );
    if let Some(c) = creation(&s.created_by) {
        let _ = write!(out, "<dt>created by</dt><dd>{c}</dd>");
    }
    if let Some(sf) = &s.start_function {
        let _ = write!(out, "<dt>started at</dt><dd><code>{}</code></dd>", esc(sf));
    }
    out.push_str("</dl>");
    match (&s.stack, &s.thread) {
        (Some(st), _) => mixed_frames(out, &st.frames),
        (None, Some(t)) if !t.kernel_stack.is_empty() => {
            let frames: Vec<MixedFrameView> = t
                .kernel_stack
                .iter()
                .map(|k| MixedFrameView {
                    kind: "kernel".into(),
                    function: k.function.clone(),
                    ..MixedFrameView::default()
                })
                .collect();
            mixed_frames(out, &frames);
        }
        _ => {}
    }
    if let Some(e) = &s.stack_error {
        let _ = write!(out, "<p class=\"muted\">(no C stack: {})</p>", esc(e));
    }
    out.push_str("</details>");
}

fn timeline(out: &mut String, r: &ReportView) {
    out.push_str(
        "<section id=\"timeline\"><h2>Timeline of the blocked goroutines</h2>\
         <p class=\"muted\">Each wait from its start to the report; a dashed outline began \
         before blockprobe attached (its length is a lower bound).</p>",
    );
    match gantt::timeline_svg(r) {
        Some((svg, hidden)) => {
            let _ = write!(out, "<figure class=\"graph\">{svg}</figure>");
            if hidden > 0 {
                let _ = write!(
                    out,
                    "<p class=\"muted\">… and {hidden} shorter wait(s).</p>"
                );
            }
        }
        None => out.push_str("<p>No goroutine was blocked.</p>"),
    }
    out.push_str("</section>\n");
}

fn blocked_table(out: &mut String, r: &ReportView) {
    let _ = write!(
        out,
        "<section id=\"blocked\"><h2>{} blocked goroutine(s)</h2>",
        r.blocked.len()
    );
    if !r.blocked.is_empty() {
        out.push_str(
            "<table><thead><tr><th>goroutine</th><th>wait</th><th>for</th><th>object</th>\
             <th>blocked in</th><th>created by</th></tr></thead><tbody>",
        );
        for b in r.blocked.iter().take(1000) {
            let _ = write!(
                out,
                "<tr data-goid=\"{}\"><td>{}</td><td>{}</td><td>{}{}</td><td><code>{}</code></td>\
                 <td>{}</td><td>{}</td></tr>",
                b.goid,
                b.goid,
                esc(&b.wait_reason),
                if b.blocked_before_attach { "&gt;" } else { "" },
                human_ns(b.blocked_ns),
                if is_null_addr(&b.object) {
                    String::new()
                } else {
                    esc(&format!("{} {}", b.object_kind, b.object))
                },
                b.blocked_at
                    .as_ref()
                    .map(|s| format!("<code>{}</code>", esc(&s.location)))
                    .unwrap_or_default(),
                b.created_by
                    .as_ref()
                    .and_then(|c| c.location.as_ref())
                    .map(|l| format!("<code>{}</code>", esc(l)))
                    .unwrap_or_default()
            );
        }
        out.push_str("</tbody></table>");
        if r.blocked.len() > 1000 {
            let _ = write!(
                out,
                "<p class=\"muted\">… and {} more.</p>",
                r.blocked.len() - 1000
            );
        }
    }
    if r.runtime_goroutines_hidden > 0 {
        let _ = write!(
            out,
            "<p class=\"muted\">(+{} goroutine(s) of the Go runtime itself, not shown)</p>",
            r.runtime_goroutines_hidden
        );
    }
    out.push_str("</section>\n");
}

fn syscalls(out: &mut String, r: &ReportView) {
    if r.in_syscall.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<section id=\"syscalls\"><h2>{} goroutine(s) in a system call or cgo call</h2>",
        r.in_syscall.len()
    );
    for s in &r.in_syscall {
        syscall_details(out, s, false);
    }
    out.push_str("</section>\n");
}

fn threads(out: &mut String, r: &ReportView) {
    if r.threads.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<section id=\"threads\"><h2>{} OS thread(s)</h2><table><thead><tr><th>tid</th>\
         <th>name</th><th>state</th><th>for</th><th>off-CPU total</th><th>switches</th>\
         <th>kernel</th></tr></thead><tbody>",
        r.threads.len()
    );
    for t in &r.threads {
        let _ = write!(
            out,
            "<tr data-tid=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td>\
             <td>{}</td><td><code>{}</code></td></tr>",
            t.tid,
            t.tid,
            esc(t.comm.as_deref().unwrap_or("")),
            esc(&t.state_name),
            if t.since_before_attach { "&gt;" } else { "" },
            human_ns(t.in_state_for_ns),
            human_ns(t.off_cpu_total_ns),
            t.switches,
            esc(&t
                .kernel_stack
                .iter()
                .take(3)
                .map(|k| k.function.as_str())
                .collect::<Vec<_>>()
                .join(" ← "))
        );
    }
    out.push_str("</tbody></table></section>\n");
}

#[cfg(test)]
mod tests;
