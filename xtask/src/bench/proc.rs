//! Child processes for `cargo xtask bench`: spawning with the command shown, reaping with
//! `wait4` (for the child's own CPU time and peak RSS), timeouts, and line-by-line output.
use std::io::{BufRead as _, BufReader, Read};
use std::process::{Child, ChildStdin, Command};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::stats;
use crate::util;

/// How a reaped child ended, and what it used (from `wait4`'s rusage).
#[derive(Clone, Debug)]
pub struct Exit {
    /// The raw wait status.
    pub status: i32,
    /// User + system CPU time.
    pub cpu: Duration,
    /// System CPU time alone (uprobe hits show up here, in the probed process).
    pub sys: Duration,
    /// Peak resident set size in kB (`ru_maxrss`).
    pub maxrss_kb: u64,
    /// When it was reaped (within a few ms of its exit).
    pub at: Instant,
}

impl Exit {
    pub fn success(&self) -> bool {
        libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 0
    }

    pub fn describe(&self) -> String {
        if libc::WIFEXITED(self.status) {
            format!("exit status {}", libc::WEXITSTATUS(self.status))
        } else if libc::WIFSIGNALED(self.status) {
            let sig = libc::WTERMSIG(self.status);
            let core = if libc::WCOREDUMP(self.status) {
                ", core dumped"
            } else {
                ""
            };
            format!("killed by signal {sig} ({}{core})", signal_name(sig))
        } else {
            format!("wait status {:#x}", self.status)
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGINT => "SIGINT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGPIPE => "SIGPIPE",
        _ => "?",
    }
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec.max(0) as u64) + Duration::from_micros(tv.tv_usec.max(0) as u64)
}

/// A child we reap ourselves with `wait4`. Dropping it kills and reaps a child still running.
pub struct Proc {
    pub name: &'static str,
    child: Child,
    exit: Option<Exit>,
    pub started: Instant,
}

impl Proc {
    /// Prints `$ <command>` and starts it.
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Result<Proc> {
        util::announce(cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("could not start `{}`", util::display(cmd)))?;
        Ok(Proc {
            name,
            child,
            exit: None,
            started: Instant::now(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Its stdout, read line by line on a thread.
    pub fn stdout_lines(&mut self) -> Option<Lines> {
        self.child.stdout.take().map(Lines::new)
    }

    /// Its stderr, read line by line on a thread.
    pub fn stderr_lines(&mut self) -> Option<Lines> {
        self.child.stderr.take().map(Lines::new)
    }

    /// Reaps it if it has exited (never blocks).
    pub fn try_wait(&mut self) -> Result<Option<&Exit>> {
        if self.exit.is_none() {
            self.exit = self.wait4(libc::WNOHANG)?;
        }
        Ok(self.exit.as_ref())
    }

    /// Waits at most `timeout` for it to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<&Exit>> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.try_wait()?.is_some() || Instant::now() >= deadline {
                return Ok(self.exit.as_ref());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends `sig` unless it was reaped already (its pid could be reused then).
    pub fn signal(&self, sig: i32) {
        if self.exit.is_none() {
            // SAFETY: kill(2) with our own child's pid, not yet reaped.
            unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        }
    }

    /// SIGTERM, `grace` to exit, then SIGKILL; returns how it ended.
    pub fn stop(&mut self, grace: Duration) -> Result<Exit> {
        self.signal(libc::SIGTERM);
        if self.wait_timeout(grace)?.is_none() {
            self.signal(libc::SIGKILL);
            self.exit = self.wait4(0)?;
        }
        self.exit
            .clone()
            .with_context(|| format!("{} (pid {}) could not be reaped", self.name, self.pid()))
    }

    fn wait4(&self, flags: i32) -> Result<Option<Exit>> {
        let pid = self.pid() as libc::pid_t;
        loop {
            let mut status = 0;
            // SAFETY: rusage is plain data; wait4 fills it in.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: valid pointers; pid is our own child.
            let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
            if r == pid {
                return Ok(Some(Exit {
                    status,
                    cpu: timeval(ru.ru_utime) + timeval(ru.ru_stime),
                    sys: timeval(ru.ru_stime),
                    maxrss_kb: ru.ru_maxrss.max(0) as u64,
                    at: Instant::now(),
                }));
            }
            if r == 0 {
                return Ok(None);
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                bail!("wait4 on {} (pid {pid}): {err}", self.name);
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exit.is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.wait4(0);
        }
    }
}

/// CPU time (user + system) so far of a live process, from /proc/PID/stat.
pub fn cpu_so_far(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (u, s) = stats::parse_stat_cpu_ticks(&stat)?;
    Some(Duration::from_secs_f64((u + s) as f64 / clock_ticks()))
}

/// A `kB` field of /proc/PID/status (VmRSS, VmHWM, ...).
pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    stats::parse_status_kb(&status, key)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// What waiting for a line gave.
pub enum Waited<T> {
    Found(T),
    /// The pipe closed (the process exited or closed it) first.
    Closed,
    TimedOut,
}

/// The lines of a child's pipe, read on a thread; every line read is kept in `seen`.
pub struct Lines {
    rx: Receiver<String>,
    pub seen: Vec<String>,
}

impl Lines {
    fn new(pipe: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits at most `timeout` for a line that `f` accepts.
    pub fn wait_for<T>(&mut self, timeout: Duration, f: impl Fn(&str) -> Option<T>) -> Waited<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    let found = f(&line);
                    self.seen.push(line);
                    if let Some(v) = found {
                        return Waited::Found(v);
                    }
                }
                Err(RecvTimeoutError::Timeout) => return Waited::TimedOut,
                Err(RecvTimeoutError::Disconnected) => return Waited::Closed,
            }
        }
    }

    /// Collects what is left, for at most `timeout` (the pipe normally closes at the exit).
    pub fn drain(&mut self, timeout: Duration) {
        let _ = self.wait_for(timeout, |_| None::<()>);
    }

    /// The last `n` lines, indented, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let start = self.seen.len().saturating_sub(n);
        if self.seen.is_empty() {
            return "    (nothing)".into();
        }
        self.seen[start..]
            .iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
