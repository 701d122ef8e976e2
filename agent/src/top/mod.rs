//! `blockprobe top --pid N` (py-spy's `top`, for Go): a live terminal view of the blocked
//! goroutines of a running process, grouped by blocking site and wait reason, with counts and
//! the longest wait, refreshed in place.
//!
//! It costs the target what scan mode costs: it reads the goroutine table from the target's
//! memory (`scan::Scanner`, as `dump --pid` does) every `--interval`, with no eBPF, no ptrace
//! stop and no signal. The scans are folded into the same [`Model`] as scan mode's, under the
//! same consecutive-scan rule, through scan mode's own loop (`scanmode::ScanLoop`, which walks
//! each newly blocked goroutine's stack once); so a wait's start is the first scan that saw it,
//! tightened by `g.waitsince` where the runtime set it, kept across refreshes, and the rows
//! come from the same `summary::blocked` as the reports'.

pub mod groups;
pub mod view;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::widgets::TableState;

use crate::goruntime::GoBinary;
use crate::model::Model;
use crate::scan::Scanner;
use crate::scanmode::ScanLoop;
use crate::session::{Mode, SessionError, monotonic_ns};
use crate::summary::{self, Context};
use groups::SortBy;
use view::{Header, Snapshot};

#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(
        "`top` draws on a terminal and stdout is not one (for a one-off listing, use \
         `blockprobe dump --pid {0}`)"
    )]
    NotATerminal(u32),
    #[error("the terminal: {0}")]
    Terminal(#[from] std::io::Error),
    #[error("--interval must be at least 10ms")]
    Interval,
}

/// How `top` ended, for the caller to report.
#[derive(Debug)]
pub enum Ended {
    /// `q`, Esc, Ctrl-C, SIGTERM or SIGHUP.
    Quit,
    /// The target exited, or exec'd another program; the last refresh, as plain text.
    TargetGone { why: String, last: String },
}

/// Runs `top` on `pid` until the user quits or the target exits. The terminal is restored in
/// every case (and on a panic, by ratatui's hook).
pub fn run(pid: u32, interval: Duration) -> Result<Ended, TopError> {
    if interval < Duration::from_millis(10) {
        return Err(TopError::Interval);
    }
    // Everything that can fail on a bad PID fails here, before the screen is taken.
    let (bin, exe) = crate::session::open_target(pid)?;
    let bias = crate::session::load_bias(pid, &exe, &bin);
    let scanner = Scanner::new(&bin, pid, bias).map_err(SessionError::from)?;
    let first = scanner.scan().map_err(SessionError::from)?;
    if !std::io::stdout().is_terminal() {
        return Err(TopError::NotATerminal(pid));
    }
    // ScanLoop keeps a tokio interval (unused here): it must be made inside a runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let _in_rt = rt.enter();
    let mut watch = Watch {
        pid,
        exe: exe.clone(),
        bin: &bin,
        bias,
        scanner,
        model: {
            let mut m = Model::new();
            m.set_reason_ops(&bin.wait_reasons);
            m
        },
        // No finding is made here: the global-deadlock watch (which prints) never fires.
        scans: ScanLoop::new(Mode::Scan, interval, Duration::from_nanos(u64::MAX)),
        snapshot: Snapshot::default(),
    };
    watch.first(&first);
    let header = Header {
        pid,
        exe: exe.display().to_string(),
        go_version: bin.build.go_version.clone(),
        interval,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGTERM, libc::SIGHUP] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            // Raw mode may be on already: leave the terminal as it was found.
            let _ = ratatui::try_restore();
            return Err(e.into());
        }
    };
    let ended = screen(&mut terminal, &mut watch, &header, interval, &stop);
    ratatui::try_restore()?;
    ended
}

/// The scans, the model they feed, and the latest snapshot.
struct Watch<'b> {
    pid: u32,
    exe: PathBuf,
    bin: &'b GoBinary,
    bias: u64,
    scanner: Scanner<'b>,
    model: Model,
    scans: ScanLoop,
    snapshot: Snapshot,
}

impl Watch<'_> {
    /// The scan taken before the screen: waits it finds began before `top` started.
    fn first(&mut self, scan: &crate::scan::Scan) {
        let bin = self.bin;
        self.model
            .observe_scan(scan, monotonic_ns(), true, |r| bin.wait_reason(r));
        self.snapshot.goroutines = scan.goroutines.len();
        self.snapshot.refreshes = 1;
    }

    /// Takes a scan and rebuilds the snapshot; Err when the target is gone.
    fn refresh(&mut self) -> Result<(), String> {
        let scan = self.scanner.scan();
        if !crate::procfs::alive(self.pid) {
            return Err(format!("pid {} exited", self.pid));
        }
        if crate::procfs::exe_path(self.pid).ok().as_ref() != Some(&self.exe) {
            return Err(format!(
                "pid {} no longer runs {} (it exec'd another program)",
                self.pid,
                self.exe.display()
            ));
        }
        self.snapshot.refreshes += 1;
        let scan = match scan {
            Ok(s) => s,
            Err(e) => {
                // A torn read of a table being rewritten: keep the rows, say so.
                self.snapshot.stale = Some(e.to_string());
                return Ok(());
            }
        };
        let ctx = Context {
            bin: self.bin,
            bias: self.bias,
        };
        // Scan mode's own step: the consecutive-scan rule, the stacks of newly blocked
        // goroutines walked once, WaitGroups and Conds settled from the stack.
        if let Err(e) = self
            .scans
            .take(&scan, &mut self.model, &ctx, self.pid, &mut None)
        {
            self.snapshot.stale = Some(e.to_string());
            return Ok(());
        }
        let blocked = summary::blocked(&ctx, &self.model, monotonic_ns(), 0, &self.scans.stacks);
        self.snapshot.goroutines = scan.goroutines.len();
        self.snapshot.blocked = blocked.goroutines.len();
        self.snapshot.runtime_hidden = blocked.runtime_hidden;
        self.snapshot.groups = groups::group(&blocked.goroutines, SortBy::Count);
        self.snapshot.stale = None;
        Ok(())
    }
}

/// The first refresh comes soon after the first scan, so that the screen fills at once: a
/// wait counts once two scans in a row saw it.
const FIRST_REFRESH: Duration = Duration::from_millis(200);
/// How often keys and signals are looked at between refreshes.
const POLL: Duration = Duration::from_millis(100);

fn screen(
    terminal: &mut ratatui::DefaultTerminal,
    watch: &mut Watch<'_>,
    header: &Header,
    interval: Duration,
    stop: &AtomicBool,
) -> Result<Ended, TopError> {
    let mut sort = SortBy::default();
    let mut state = TableState::default();
    let mut next = Instant::now() + interval.min(FIRST_REFRESH);
    let mut rows = sorted(&watch.snapshot, sort);
    loop {
        terminal.draw(|f| view::draw(f, header, &watch.snapshot, &rows, sort, &mut state))?;
        // Waits for the next refresh, a key, a resize or a signal, whichever comes first.
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(Ended::Quit);
            }
            let now = Instant::now();
            if now >= next {
                break;
            }
            if !event::poll((next - now).min(POLL))? {
                continue;
            }
            match event::read()? {
                Event::Key(k) if k.kind != KeyEventKind::Release => match k.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(Ended::Quit),
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                        return Ok(Ended::Quit);
                    }
                    KeyCode::Char('s') => {
                        sort = sort.toggled();
                        rows = sorted(&watch.snapshot, sort);
                    }
                    KeyCode::Down | KeyCode::Char('j') => state.select_next(),
                    KeyCode::Up | KeyCode::Char('k') => state.select_previous(),
                    _ => continue,
                },
                Event::Resize(..) => {}
                _ => continue,
            }
            terminal.draw(|f| view::draw(f, header, &watch.snapshot, &rows, sort, &mut state))?;
        }
        if let Err(why) = watch.refresh() {
            let last = view::plain(header, &watch.snapshot, &rows, sort);
            return Ok(Ended::TargetGone { why, last });
        }
        // From the end of this refresh: a scan slower than the interval delays the next one
        // instead of running scans back to back.
        next = Instant::now() + interval;
        rows = sorted(&watch.snapshot, sort);
    }
}

fn sorted(snap: &Snapshot, sort: SortBy) -> Vec<groups::Group> {
    let mut rows = snap.groups.clone();
    groups::sort(&mut rows, sort);
    rows
}
