//! The exports of the CLI: `--html` (the report as one self-contained page) and `--timeline`
//! (Chrome trace-event JSON for Perfetto), on the commands that make a report, and
//! `blockprobe report FILE` for a report saved as JSON.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use blockprobe::reportview::ReportView;
use blockprobe::threads::spans::ThreadSpans;
use blockprobe::timeline::{self, Collected, TeeSink};

#[derive(clap::Args, Default)]
pub struct Exports {
    /// Also write the report as one self-contained HTML page to FILE: each finding's wait-for
    /// graph, stacks, durations and creation sites, and a timeline of the blocked goroutines.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also write a timeline as Chrome trace-event JSON to FILE (open it in the Perfetto UI or
    /// chrome://tracing): each goroutine's blocked spans, who woke whom, the OS threads'
    /// off-CPU spans, and the fused execution trace.
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
}

impl Exports {
    /// The session's event sink: with `--timeline`, the `--events` writer (if any) wrapped so
    /// that the events are also kept for the timeline.
    pub fn events_sink(
        &self,
        sink: Option<Box<dyn Write + Send>>,
    ) -> (Option<Box<dyn Write + Send>>, Option<Collected>) {
        if self.timeline.is_none() {
            return (sink, None);
        }
        let (tee, kept) = TeeSink::new(sink);
        (Some(Box::new(tee)), Some(kept))
    }

    /// Writes what was asked for; `trace` is the execution trace fused into the report, if
    /// it is still on disk (its own events go on the timeline).
    /// `spans`: the session's recorded off-CPU spans, for the threads' tracks.
    pub fn write(
        &self,
        report: &blockprobe::report::Report,
        collected: Option<Collected>,
        trace: Option<&Path>,
        spans: Option<&ThreadSpans>,
    ) -> Result<()> {
        if self.html.is_none() && self.timeline.is_none() {
            return Ok(());
        }
        let view = ReportView::from_report(report).context("reading the report back")?;
        let kept = collected
            .map(|c| std::mem::take(&mut *c.lock().unwrap_or_else(|p| p.into_inner())))
            .unwrap_or_default();
        self.write_view(&view, &kept, trace, spans)
    }

    fn write_view(
        &self,
        view: &ReportView,
        kept: &timeline::Kept,
        trace: Option<&Path>,
        spans: Option<&ThreadSpans>,
    ) -> Result<()> {
        if let Some(path) = &self.html {
            write_file(path, blockprobe::html::render(view).as_bytes())?;
        }
        if let Some(path) = &self.timeline {
            let tracks = match trace.filter(|_| view.trace.is_some()) {
                Some(t) => Some(trace_tracks(t, view)?),
                None => None,
            };
            let doc = timeline::build(&kept.events, kept.dropped, view, tracks, spans);
            write_file(path, &serde_json::to_vec(&doc)?)?;
        }
        Ok(())
    }
}

/// The trace's events, on the probes' clock as the report aligned it.
fn trace_tracks(path: &Path, view: &ReportView) -> Result<timeline::trace::TraceTracks> {
    let offset = view
        .trace
        .as_ref()
        .and_then(|t| t.clock.as_ref())
        .map_or(0, |c| c.offset_ns);
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    timeline::trace::read(std::io::BufReader::new(f), offset).with_context(|| {
        format!(
            "reading the execution trace {} for the timeline",
            path.display()
        )
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The events of a saved stream (`--events FILE`), for `fuse --timeline`.
pub fn read_events(path: &Path) -> Result<timeline::Kept> {
    let f =
        std::fs::File::open(path).with_context(|| format!("reading events {}", path.display()))?;
    let mut kept = timeline::Kept::default();
    for line in std::io::BufReader::new(f).split(b'\n') {
        let line = line.with_context(|| format!("reading events {}", path.display()))?;
        if let Some(e) = timeline::parse_line(&line) {
            kept.push(e);
        }
    }
    Ok(kept)
}

/// `blockprobe report FILE --html OUT [--timeline OUT]`.
pub fn report(file: &Path, exports: &Exports) -> Result<()> {
    if exports.html.is_none() && exports.timeline.is_none() {
        bail!("nothing to write: give --html FILE and/or --timeline FILE");
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let view =
        ReportView::from_json(&text).with_context(|| format!("reading {}", file.display()))?;
    exports.write_view(&view, &timeline::Kept::default(), None, None)
}

/// `analyze`/`fuse --html/--timeline`: the report of a trace, with the stream's events if any.
pub fn write_trace_exports(
    exports: &Exports,
    report: &blockprobe::report::Report,
    trace: &Path,
    events: Option<&Path>,
) -> Result<()> {
    if exports.html.is_none() && exports.timeline.is_none() {
        return Ok(());
    }
    let view = ReportView::from_report(report).context("reading the report back")?;
    let events = match (events, &exports.timeline) {
        (Some(p), Some(_)) => read_events(p)?,
        _ => timeline::Kept::default(),
    };
    exports.write_view(&view, &events, Some(trace), None)
}
