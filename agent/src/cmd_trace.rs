//! The command line's execution-trace commands: `analyze`, `fuse`, `trace-dump`, and
//! `attach --trace-from`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use blockprobe::fuse;

use crate::{Verdicts, print_text, write_json};

/// `attach --trace-from`: fetch an execution trace from the target while the probes run.
#[derive(clap::Args)]
pub struct TraceFrom {
    /// Fetch an execution trace from the target's net/http/pprof endpoint while the probes
    /// run (e.g. http://127.0.0.1:6060/debug/pprof/trace?seconds=5), and fuse it into the
    /// report: each finding with the trace's history of its goroutine.
    #[arg(long, value_name = "URL")]
    pub trace_from: Option<String>,
    /// Keep the fetched trace in FILE (default: a temporary file, removed afterwards).
    #[arg(long, value_name = "FILE", requires = "trace_from")]
    pub trace_out: Option<PathBuf>,
}

type Fetching = JoinHandle<Result<fuse::fetch::Fetched, fuse::fetch::FetchError>>;

/// A trace being fetched, started once the probes are attached.
pub struct TraceFetch {
    url: String,
    path: PathBuf,
    keep: bool,
    handle: Arc<Mutex<Option<Fetching>>>,
}

impl TraceFetch {
    /// Checks the URL (before anything is attached) and picks the file.
    pub fn new(t: &TraceFrom, pid: u32) -> Result<Option<Self>> {
        let Some(url) = &t.trace_from else {
            return Ok(None);
        };
        fuse::fetch::check_url(url)?;
        let (path, keep) = match &t.trace_out {
            Some(p) => (p.clone(), true),
            None => (
                std::env::temp_dir()
                    .join(format!("blockprobe-trace-{pid}-{}.out", std::process::id())),
                false,
            ),
        };
        Ok(Some(Self {
            url: url.clone(),
            path,
            keep,
            handle: Arc::default(),
        }))
    }

    /// Starts the fetch (call once the probes are attached).
    pub fn starter(&self) -> impl FnOnce() + Send + 'static {
        let (url, path, handle) = (self.url.clone(), self.path.clone(), self.handle.clone());
        move || {
            let h = std::thread::spawn(move || fuse::fetch::fetch(&url, &path));
            if let Ok(mut slot) = handle.lock() {
                *slot = Some(h);
            }
        }
    }

    /// Waits for the trace and fuses it into the report. A trace that could not be fetched or
    /// read leaves the report as it is, with a warning: the probes' findings stand alone.
    pub fn fuse_into(self, report: &mut blockprobe::report::Report, events_file: Option<&str>) {
        let handle = self.handle.lock().ok().and_then(|mut h| h.take());
        let result = match handle {
            None => Err("the session ended before the probes were attached".to_string()),
            Some(h) => match h.join() {
                Ok(Ok(_)) => read_trace(&self.path, &self.url, true).map_err(|e| format!("{e:#}")),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("the fetching thread panicked".to_string()),
            },
        };
        match result {
            Ok(facts) => {
                // Precise mode's stream carries exact transitions: for traces without clock
                // snapshots (Go < 1.25) they align the clocks.
                let stamps = events_file
                    .filter(|f| *f != "-")
                    .and_then(|f| std::fs::File::open(f).ok())
                    .and_then(|f| fuse::events::read(std::io::BufReader::new(f)).ok())
                    .map(|e| e.stamps)
                    .unwrap_or_default();
                fuse::fuse_live(report, &facts, &stamps);
            }
            Err(e) => report
                .warnings
                .push(format!("no execution trace fused ({}): {e}", self.url)),
        }
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Reads a trace; `stamps` keeps its transitions for aligning clocks with probe events.
fn read_trace(path: &Path, source: &str, stamps: bool) -> Result<fuse::offline::TraceFacts> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let facts = fuse::offline::read_trace(std::io::BufReader::new(f), source, stamps)
        .with_context(|| format!("reading the execution trace {}", path.display()))?;
    if let Some(w) = &facts.truncated {
        eprintln!("blockprobe: warning: {w}");
    }
    Ok(facts)
}

fn output(report: &blockprobe::report::Report, spec: Option<String>) -> Result<()> {
    match spec {
        Some(spec) => write_json(&spec, report),
        None => {
            print_text(report, &mut std::io::stdout().lock());
            Ok(())
        }
    }
}

/// `blockprobe analyze TRACE`.
pub fn analyze(
    trace: &Path,
    report: Option<String>,
    verdicts: Verdicts,
    exports: crate::cmd_export::Exports,
) -> Result<()> {
    let policy = verdicts.policy()?;
    let facts = read_trace(trace, &trace.display().to_string(), false)?;
    let r = fuse::offline::report(&facts, verdicts.threshold.as_nanos() as u64, &policy, None);
    output(&r, report)?;
    crate::cmd_export::write_trace_exports(&exports, &r, trace, None)?;
    if let Some(code) = verdicts.verdict(&policy, &r)? {
        std::process::exit(code);
    }
    Ok(())
}

/// `blockprobe fuse --events E --trace T`.
pub fn fuse(
    events: &Path,
    trace: &Path,
    report: Option<String>,
    verdicts: Verdicts,
    exports: crate::cmd_export::Exports,
) -> Result<()> {
    let policy = verdicts.policy()?;
    let f = std::fs::File::open(events).with_context(|| format!("opening {}", events.display()))?;
    let probe = fuse::events::read(std::io::BufReader::new(f))
        .with_context(|| format!("reading the event stream {}", events.display()))?;
    let facts = read_trace(trace, &trace.display().to_string(), true)?;
    let r = fuse::fuse_offline(
        &probe,
        &facts,
        verdicts.threshold.as_nanos() as u64,
        &policy,
    );
    output(&r, report)?;
    crate::cmd_export::write_trace_exports(&exports, &r, trace, Some(events))?;
    if let Some(code) = verdicts.verdict(&policy, &r)? {
        std::process::exit(code);
    }
    Ok(())
}

/// `blockprobe trace-dump FILE`: every event as Go's reader prints it.
pub fn trace_dump(file: &Path, count: bool) -> Result<()> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let r = std::io::BufReader::with_capacity(1 << 20, f);
    let stats = if count {
        blockprobe::gotrace::reader::dump(r, &mut std::io::sink())
    } else {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
        let s = blockprobe::gotrace::reader::dump(r, &mut out);
        out.flush()?;
        s
    }
    .with_context(|| format!("reading the execution trace {}", file.display()))?;
    if let Some(w) = &stats.warning {
        eprintln!("blockprobe: warning: {w}");
    }
    if count {
        println!(
            "{}",
            serde_json::json!({
                "events": stats.events, "bytes": stats.bytes, "generations": stats.generations,
            })
        );
    }
    Ok(())
}
