//! `blockprobe top --pid N` in a real pseudo-terminal, its screen read back by a VT100 parser.
//!
//! The target is the `demo` fixture, whose blocked goroutines are known from its source: two
//! transfers deadlocked on each other's `to.mu.Lock()` (sync.Mutex.Lock, 2 goroutines, for
//! ever), and the leaked workers of `handle`, each blocked in `result <- id * 2` (chan send, 5
//! before `ready`, one more every 500 ms). The screen must show both groups with their site,
//! reason and count; it must refresh (the longest wait grows); `q` must exit 0 with the
//! alternate screen left and the terminal out of raw mode; the target exiting must end `top`
//! with a clear message. No eBPF: `top` reads the target's memory only.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blockprobe_tests::{blockprobe_bin, prepare_fixture, source_line, start_ready};
use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};

const ROWS: u16 = 40;
const COLS: u16 = 220;

/// `blockprobe top` running in a pseudo-terminal; what it drew, parsed.
struct Screen {
    master: Box<dyn MasterPty + Send>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn Child + Send + Sync>,
    parser: Arc<Mutex<vt100::Parser>>,
}

impl Screen {
    fn start(pid: u32) -> Screen {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pseudo-terminal");
        let mut cmd = CommandBuilder::new(blockprobe_bin());
        cmd.args(["top", "--pid", &pid.to_string(), "--interval", "300ms"]);
        cmd.env("TERM", "xterm-256color");
        let child = pty.slave.spawn_command(cmd).expect("start blockprobe top");
        drop(pty.slave);
        let parser = Arc::new(Mutex::new(vt100::Parser::new(
            ROWS.try_into().unwrap(),
            COLS.try_into().unwrap(),
            0,
        )));
        let mut reader = pty.master.try_clone_reader().expect("pty reader");
        let sink = Arc::clone(&parser);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().process(&buf[..n]);
            }
        });
        let writer = pty.master.take_writer().expect("pty writer");
        Screen {
            master: pty.master,
            writer,
            child,
            parser,
        }
    }

    fn contents(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    /// Waits until `want` finds what it looks for on the screen; panics with the screen if not.
    fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        want: impl Fn(&str) -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            let screen = self.contents();
            if let Some(v) = want(&screen) {
                return v;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("top exited ({st:?}) before {what}:\n{screen}");
            }
            if start.elapsed() > timeout {
                panic!("no {what} within {timeout:?}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> portable_pty::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("wait for top") {
                return st;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("top did not exit within {timeout:?}:\n{}", self.contents());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the pseudo-terminal is back in canonical mode with echo (raw mode left).
    fn cooked(&self) -> bool {
        let fd = self.master.as_raw_fd().expect("pty fd");
        // SAFETY: tcgetattr fills a termios for a valid open terminal fd.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::tcgetattr(fd, &mut t) }, 0, "tcgetattr");
        t.c_lflag & libc::ICANON != 0 && t.c_lflag & libc::ECHO != 0
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// One row of the table: (count, longest wait in ns, whether it is a lower bound).
#[derive(Debug, Clone, Copy)]
struct Row {
    count: usize,
    longest_ns: u64,
}

/// The row whose SITE is `site` and REASON `reason`, if on screen.
fn row(screen: &str, site: &str, reason: &str) -> Option<Row> {
    screen.lines().find_map(|line| {
        let cols: Vec<&str> = line
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        // COUNT LONGEST REASON SITE FUNCTION CREATED-BY
        if cols.len() >= 5 && cols[2] == reason && cols[3] == site {
            Some(Row {
                count: cols[0].parse().ok()?,
                longest_ns: parse_wait(cols[1].trim_start_matches('≥'))?,
            })
        } else {
            None
        }
    })
}

/// Reads back `950ms`, `12.3s`, `4m05s` (what `top` shows; hours do not occur here).
fn parse_wait(s: &str) -> Option<u64> {
    if let Some(ms) = s.strip_suffix("ms") {
        return Some(ms.parse::<u64>().ok()? * 1_000_000);
    }
    if let Some((m, s)) = s.split_once('m') {
        let s: u64 = s.strip_suffix('s')?.parse().ok()?;
        return Some((m.parse::<u64>().ok()? * 60 + s) * 1_000_000_000);
    }
    let secs: f64 = s.strip_suffix('s')?.parse().ok()?;
    Some((secs * 1e9) as u64)
}

#[test]
fn top_shows_the_blocked_groups_refreshes_and_quits() {
    shows_refreshes_and_quits("default");
}

/// Loaded at a random address: every PC is taken back to the link-time one.
#[test]
fn top_on_a_pie_build() {
    shows_refreshes_and_quits("pie");
}

/// No symbol table, no DWARF: the sites and layouts come from .gopclntab and the per-version
/// table.
#[test]
fn top_on_a_stripped_build() {
    shows_refreshes_and_quits("stripped");
}

fn shows_refreshes_and_quits(variant: &str) {
    let Some(fixture) = prepare_fixture("1.27", variant, "demo") else {
        return;
    };
    let target = start_ready(&fixture);
    let pid = target.pid();
    let lock = format!("demo/main.go:{}", source_line("demo", "to.mu.Lock()"));
    let leak = format!("demo/main.go:{}", source_line("demo", "result <- id * 2"));

    let mut top = Screen::start(pid);
    let first = top.wait_for("both groups", Duration::from_secs(15), |s| {
        Some((
            row(s, &lock, "sync.Mutex.Lock")?,
            row(s, &leak, "chan send")?,
        ))
    });
    let (deadlock, leaked) = first;
    let screen = top.contents();
    eprintln!("the first screen with both groups:\n{screen}");
    assert_eq!(deadlock.count, 2, "{screen}");
    assert!(leaked.count >= 5, "{screen}");
    assert!(
        screen.contains(&format!("blockprobe top  pid {pid}")),
        "{screen}"
    );
    assert!(screen.contains("main.transfer"), "{screen}");
    assert!(screen.contains("main.handle.func1"), "{screen}");
    // The creation sites: the two transfers come from two `go` statements of main (the
    // row names the longest waiter's, and counts the other), the leaked workers from one.
    let transfers = [
        source_line("demo", "go transfer(a, b"),
        source_line("demo", "go transfer(b, a"),
    ];
    assert!(
        transfers
            .iter()
            .any(|l| screen.contains(&format!("main.main demo/main.go:{l} (+1 more)"))),
        "{screen}"
    );
    let go_worker = source_line("demo", "go func() {");
    assert!(
        screen.contains(&format!("main.handle demo/main.go:{go_worker}\n"))
            || screen.contains(&format!("main.handle demo/main.go:{go_worker} ")),
        "{screen}"
    );
    assert!(top.parser.lock().unwrap().screen().alternate_screen());

    // Refreshed in place: the deadlock's wait grows, the leak's count too.
    let later = top.wait_for("a longer wait", Duration::from_secs(10), |s| {
        row(s, &lock, "sync.Mutex.Lock")
            .filter(|r| r.longest_ns >= deadlock.longest_ns + 1_000_000_000)
    });
    assert_eq!(later.count, 2);
    top.wait_for("more leaked workers", Duration::from_secs(10), |s| {
        row(s, &leak, "chan send").filter(|r| r.count > leaked.count)
    });

    // `s` sorts by the longest wait instead (which row comes first is not fixed here: the
    // deadlock and the first leaked worker block at about the same time).
    top.writer.write_all(b"s").unwrap();
    top.writer.flush().unwrap();
    top.wait_for("sorted by longest wait", Duration::from_secs(5), |s| {
        s.contains("sort: longest wait").then_some(())
    });

    top.writer.write_all(b"q").unwrap();
    top.writer.flush().unwrap();
    let status = top.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
    // Give the reader thread the last bytes.
    std::thread::sleep(Duration::from_millis(200));
    let parser = top.parser.lock().unwrap();
    assert!(
        !parser.screen().alternate_screen(),
        "alternate screen not left"
    );
    assert!(!parser.screen().hide_cursor(), "cursor left hidden");
    drop(parser);
    assert!(top.cooked(), "the terminal was left in raw mode");
}

#[test]
fn top_ends_when_the_target_exits() {
    let Some(fixture) = prepare_fixture("1.27", "default", "demo") else {
        return;
    };
    let mut target = start_ready(&fixture);
    let pid = target.pid();
    let lock = format!("demo/main.go:{}", source_line("demo", "to.mu.Lock()"));
    let mut top = Screen::start(pid);
    top.wait_for("the deadlock", Duration::from_secs(15), |s| {
        row(s, &lock, "sync.Mutex.Lock")
    });
    target.child.kill().unwrap();
    target.child.wait().unwrap();
    let status = top.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(200));
    let parser = top.parser.lock().unwrap();
    assert!(!parser.screen().alternate_screen());
    // The last refresh is printed on the normal screen, then why it ended.
    let screen = parser.screen().contents();
    assert!(
        screen.contains(&format!("blockprobe: top ended: pid {pid} exited")),
        "{screen}"
    );
    assert!(screen.contains("COUNT  LONGEST  REASON"), "{screen}");
    assert!(screen.contains("sync.Mutex.Lock"), "{screen}");
}

#[test]
fn top_refuses_what_it_cannot_watch() {
    let Some(fixture) = prepare_fixture("1.27", "default", "demo") else {
        return;
    };
    let run = |pid: u32| {
        let out = std::process::Command::new(blockprobe_bin())
            .args(["top", "--pid", &pid.to_string()])
            .output()
            .expect("run blockprobe top");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Not a Go program.
    let mut sleep = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let (code, err) = run(sleep.id());
    sleep.kill().unwrap();
    sleep.wait().unwrap();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not a Go"), "{err}");
    // Gone.
    let (code, err) = run(sleep.id());
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    // A Go program, but stdout is not a terminal (a pipe here).
    let target = start_ready(&fixture);
    let (code, err) = run(target.pid());
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("stdout is not one"), "{err}");
}

#[test]
fn ctrl_c_and_sigterm_restore_the_terminal() {
    let Some(fixture) = prepare_fixture("1.27", "default", "demo") else {
        return;
    };
    let target = start_ready(&fixture);
    let lock = format!("demo/main.go:{}", source_line("demo", "to.mu.Lock()"));
    let mut by_key = Screen::start(target.pid());
    let mut by_signal = Screen::start(target.pid());
    for top in [&mut by_key, &mut by_signal] {
        top.wait_for("the deadlock", Duration::from_secs(15), |s| {
            row(s, &lock, "sync.Mutex.Lock")
        });
    }
    // Raw mode: Ctrl-C arrives as a key (ETX), not as SIGINT.
    by_key.writer.write_all(b"\x03").unwrap();
    by_key.writer.flush().unwrap();
    let pid = by_signal.child.process_id().expect("top's pid");
    // SAFETY: kill(2) on a child of this test.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    for top in [&mut by_key, &mut by_signal] {
        let status = top.wait_exit(Duration::from_secs(5));
        assert!(status.success(), "{status:?}");
        std::thread::sleep(Duration::from_millis(200));
        assert!(!top.parser.lock().unwrap().screen().alternate_screen());
        assert!(top.cooked(), "the terminal was left in raw mode");
    }
}

#[test]
fn top_ends_when_the_target_execs() {
    let Some(fixture) = prepare_fixture("1.27", "default", "parkers") else {
        return;
    };
    let mut target = start_ready(&fixture);
    let pid = target.pid();
    let mut top = Screen::start(pid);
    top.wait_for("a few refreshes", Duration::from_secs(15), |s| {
        s.contains("refresh 3").then_some(())
    });
    // parkers execs /bin/sleep on this line: the same pid, another program.
    target.send_line("exec").unwrap();
    let status = top.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(200));
    let screen = top.contents();
    assert!(
        screen.contains(&format!("blockprobe: top ended: pid {pid} no longer runs")),
        "{screen}"
    );
}
