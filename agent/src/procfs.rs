//! Facts about a live process from /proc: does it exist, where its executable is mapped.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProcError {
    #[error("process {pid} does not exist (or has exited)")]
    Gone { pid: u32 },
    #[error("reading /proc/{pid}/{what}: {source}{hint}")]
    Io {
        pid: u32,
        what: &'static str,
        source: std::io::Error,
        hint: &'static str,
    },
}

fn io_err(pid: u32, what: &'static str, source: std::io::Error) -> ProcError {
    if source.kind() == std::io::ErrorKind::NotFound {
        return ProcError::Gone { pid };
    }
    let hint = if source.kind() == std::io::ErrorKind::PermissionDenied {
        " (permission denied: run as root or with CAP_SYS_PTRACE)"
    } else {
        ""
    };
    ProcError::Io {
        pid,
        what,
        source,
        hint,
    }
}

/// The target's executable as the kernel sees it (`/proc/PID/exe`, resolved).
pub fn exe_path(pid: u32) -> Result<PathBuf, ProcError> {
    std::fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| io_err(pid, "exe", e))
}

/// One line of /proc/PID/maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    pub perms: String,
    pub path: String,
}

/// Parses /proc/PID/maps text. Malformed lines are skipped.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.split_ascii_whitespace();
            let range = it.next()?;
            let perms = it.next()?.to_string();
            let offset = u64::from_str_radix(it.next()?, 16).ok()?;
            let _dev = it.next()?;
            let _inode = it.next()?;
            let path = it.collect::<Vec<_>>().join(" ");
            let (s, e) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(s, 16).ok()?,
                end: u64::from_str_radix(e, 16).ok()?,
                offset,
                perms,
                path,
            })
        })
        .collect()
}

pub fn maps(pid: u32) -> Result<Vec<Mapping>, ProcError> {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| io_err(pid, "maps", e))?;
    Ok(parse_maps(&text))
}

/// The load bias of the main executable: runtime address = link-time vaddr + bias.
/// `segments` are the executable's PT_LOAD (p_vaddr, p_offset) pairs. 0 for non-PIE binaries.
pub fn load_bias(maps: &[Mapping], exe: &str, segments: &[(u64, u64)]) -> Option<u64> {
    maps.iter()
        .filter(|m| m.path == exe)
        .find_map(|m| mapping_bias(m, segments))
}

/// The load bias of one mapping of an ELF file whose PT_LOAD segments are `segments`
/// ((p_vaddr, p_offset) pairs): the mapping's file offset names the segment it maps.
pub fn mapping_bias(m: &Mapping, segments: &[(u64, u64)]) -> Option<u64> {
    segments
        .iter()
        .find(|(_, off)| off & !0xfff == m.offset)
        .map(|(vaddr, _)| m.start.wrapping_sub(vaddr & !0xfff))
}

/// Whether the process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the last ')' (the command name may contain parentheses).
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_ascii_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Field `n` of the text of /proc/PID/stat, numbered as proc(5) numbers them (1 = pid, 22 =
/// starttime, 28 = startstack), read past the command name (which may hold spaces and ')').
pub fn stat_field(stat: &str, n: usize) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_ascii_whitespace()
        .nth(n.checked_sub(3)?)?
        .parse()
        .ok()
}

/// What tells one exec of a process from the next, beyond its executable: `startstack` (the
/// initial stack's address, field 28 of /proc/PID/stat), set at exec, never changed after, and
/// randomized at each exec (ASLR), so that an exec of the very same binary changes it too. None
/// when unreadable.
pub fn exec_mark(pid: u32) -> Option<u64> {
    stat_field(
        &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?,
        28,
    )
}

/// A clock's reading in ns (`clock_gettime`): CLOCK_MONOTONIC is the clock of
/// `bpf_ktime_get_ns`; CLOCK_THREAD_CPUTIME_ID is the calling thread's CPU time.
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_past_the_command() {
        let stat = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 7 0 \
                    987654 1000000 300 18446744073709551615 4194304 4198000 140731234567890 0";
        assert_eq!(stat_field(stat, 4), Some(1));
        assert_eq!(stat_field(stat, 22), Some(987654));
        assert_eq!(stat_field(stat, 28), Some(140731234567890));
        assert_eq!(stat_field(stat, 2), None);
        assert_eq!(stat_field(stat, 99), None);
        assert!(exec_mark(std::process::id()).is_some_and(|m| m != 0));
    }

    const MAPS: &str = "\
555555554000-555555600000 r--p 00000000 fd:00 1234 /tmp/x prog
555555600000-555555700000 r-xp 000ac000 fd:00 1234 /tmp/x prog
7ffff7dd0000-7ffff7df0000 rw-p 00000000 00:00 0 
garbage line
";

    #[test]
    fn parses_maps_and_bias() {
        let m = parse_maps(MAPS);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].path, "/tmp/x prog");
        assert_eq!(m[1].offset, 0xac000);
        // PIE: first segment at vaddr 0, offset 0.
        assert_eq!(
            load_bias(&m, "/tmp/x prog", &[(0, 0), (0xad000, 0xac000)]),
            Some(0x555555554000)
        );
        // Non-PIE: mapped at its link address.
        let fixed = parse_maps("400000-500000 r-xp 00000000 fd:00 1 /bin/g\n");
        assert_eq!(load_bias(&fixed, "/bin/g", &[(0x400000, 0)]), Some(0));
        assert_eq!(load_bias(&fixed, "/other", &[(0x400000, 0)]), None);
    }

    #[test]
    fn self_is_alive_and_pid_zero_is_not() {
        assert!(alive(std::process::id()));
        assert!(!alive(0));
        assert!(matches!(exe_path(u32::MAX), Err(ProcError::Gone { .. })));
    }
}
