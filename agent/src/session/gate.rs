//! `blockprobe run`'s child: spawned and held before exec until the probes are attached, and
//! the wait for it to run the program.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use super::SessionError;
use crate::procfs::{self, ProcError};

/// `program` as execvp would find it: a path with a slash as is, else the first match on PATH.
pub fn resolve_program(program: &Path) -> PathBuf {
    if program.components().count() > 1 {
        return program.to_path_buf();
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(program))
                .find(|c| c.is_file())
        })
        .unwrap_or_else(|| program.to_path_buf())
}

/// A child that is held before exec until [`Gate::release`]: it blocks in `read` on a pipe
/// between fork and exec, so the probes can be attached to its pid before the Go program runs.
///
/// Plain fork + execv rather than `std::process::Command`: `Command::spawn` waits for the exec
/// to happen (it reads a CLOEXEC error pipe), which a child held before exec never does.
pub(super) struct Gate {
    pid: libc::pid_t,
    write_fd: libc::c_int,
    status: Option<ExitStatus>,
}

impl Gate {
    pub(super) fn spawn(program: &Path, args: &[String]) -> Result<Self, SessionError> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let err = |source| SessionError::Spawn {
            program: program.display().to_string(),
            source,
        };
        let nul = |_| err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        // Everything the child needs is allocated before fork: after it, only async-signal-safe
        // calls (close, read, execv, _exit).
        let path = CString::new(program.as_os_str().as_bytes()).map_err(nul)?;
        let mut argv: Vec<CString> = vec![path.clone()];
        for a in args {
            argv.push(CString::new(a.as_bytes()).map_err(nul)?);
        }
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());

        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds is a valid array of two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        let (read_fd, write_fd) = (fds[0], fds[1]);
        // SAFETY: the child only calls async-signal-safe functions on pre-allocated data.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: child side of fork, see above.
            unsafe {
                libc::close(write_fd);
                let mut b = 0u8;
                // A byte (go ahead) or EOF (the agent gave up): either way, exec.
                while libc::read(read_fd, (&raw mut b).cast(), 1) < 0
                    && *libc::__errno_location() == libc::EINTR
                {}
                libc::execv(path.as_ptr(), argv_ptrs.as_ptr());
                libc::_exit(127);
            }
        }
        // SAFETY: closing our copy of the read end.
        unsafe { libc::close(read_fd) };
        if pid < 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: closing our own fd.
            unsafe { libc::close(write_fd) };
            return Err(err(e));
        }
        Ok(Self {
            pid,
            write_fd,
            status: None,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.pid as u32
    }

    pub(super) fn release(&mut self) {
        if self.write_fd >= 0 {
            // SAFETY: writing one byte to, then closing, our own pipe fd.
            unsafe {
                libc::write(self.write_fd, [1u8].as_ptr().cast(), 1);
                libc::close(self.write_fd);
            }
            self.write_fd = -1;
        }
    }

    /// Ends a child still held before its exec: the program never ran, so a session that could
    /// not attach leaves nothing running unobserved.
    pub(super) fn abort(&mut self) {
        if self.write_fd >= 0 {
            // SAFETY: killing and reaping our own child, then closing our own pipe fd.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::close(self.write_fd);
            }
            self.write_fd = -1;
            self.wait(true);
        }
    }

    /// Reaps the child: blocking, or only if it has exited.
    pub(super) fn wait(&mut self, block: bool) -> Option<ExitStatus> {
        if self.status.is_none() {
            let mut st = 0;
            let flags = if block { 0 } else { libc::WNOHANG };
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut st, flags) };
            if r == self.pid {
                self.status = Some(ExitStatus::from_raw(st));
            }
        }
        self.status
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // Never leave the child stuck before exec.
        self.release();
    }
}

/// Waits (up to 5 s) until `pid` runs `exe`.
pub(super) async fn wait_for_exec(pid: u32, exe: &Path) -> bool {
    let want = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
    for _ in 0..500 {
        match procfs::exe_path(pid) {
            Ok(p) if p == want => return true,
            Err(ProcError::Gone { .. }) => return false,
            _ => {}
        }
        if !procfs::alive(pid) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
