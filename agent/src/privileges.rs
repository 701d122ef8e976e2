//! What blockprobe needs from the kernel and the user, said plainly when it is missing.

/// Capability numbers from include/uapi/linux/capability.h.
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability set of this process, from /proc/self/status.
pub fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1u64 << cap) != 0
}

/// The capabilities that are missing to load and attach uprobes and read the target's memory.
pub fn missing_for_ebpf(caps: u64) -> Vec<&'static str> {
    let mut missing = Vec::new();
    let admin = has(caps, CAP_SYS_ADMIN);
    if !admin && !has(caps, CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !admin && !has(caps, CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    if !has(caps, CAP_SYS_PTRACE) {
        missing.push("CAP_SYS_PTRACE");
    }
    missing
}

/// Fails with a message naming what is missing when this process cannot load eBPF programs.
pub fn require_for_ebpf() -> Result<(), String> {
    let Some(caps) = effective_caps() else {
        return Ok(()); // cannot tell; let the kernel answer
    };
    let missing = missing_for_ebpf(caps);
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "blockprobe needs root, or the capabilities CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE, to load \
         eBPF uprobes and read the target's memory; missing: {}. Run it with sudo, or grant them \
         with `sudo setcap cap_bpf,cap_perfmon,cap_sys_ptrace+ep $(command -v blockprobe)`. \
         (`blockprobe inspect BIN` needs no privileges.)",
        missing.join(", ")
    ))
}

/// Why attaching a uprobe failed, when it is privileges: kernels since 2025 again require
/// CAP_SYS_ADMIN to create a uprobe perf event (CAP_BPF + CAP_PERFMON are not enough; seen here
/// as EACCES from perf_event_open). None when the error is not a refusal, or CAP_SYS_ADMIN is
/// there (the refusal then has another cause, which the error itself says).
pub fn uprobe_refusal(err: &dyn std::fmt::Debug, caps: Option<u64>) -> Option<String> {
    let text = format!("{err:?}");
    let refused = [
        "PermissionDenied",
        "EACCES",
        "EPERM",
        "os error 13)",
        "os error 1)",
    ]
    .iter()
    .any(|s| text.contains(s));
    if !refused || caps.is_some_and(|c| has(c, CAP_SYS_ADMIN)) {
        return None;
    }
    Some(
        "the kernel refused to attach a uprobe: this kernel requires CAP_SYS_ADMIN (or root) for \
         uprobes, which precise mode uses. Run blockprobe as root or add CAP_SYS_ADMIN, or use \
         `--mode scan` (the default), which attaches no uprobe and needs only CAP_BPF + \
         CAP_PERFMON + CAP_SYS_PTRACE"
            .into(),
    )
}

/// A hint appended to an eBPF load error.
pub fn load_hint(err: &aya::EbpfError) -> String {
    let text = format!("{err:?}");
    if text.contains("PermissionDenied") || text.contains("EPERM") || text.contains("os error 1)") {
        " (permission denied: run as root or grant CAP_BPF + CAP_PERFMON)".into()
    } else if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        " (this kernel has no BTF at /sys/kernel/btf/vmlinux; blockprobe needs CONFIG_DEBUG_INFO_BTF, \
         CONFIG_BPF_SYSCALL and CONFIG_UPROBES)"
            .into()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_missing_capabilities() {
        assert_eq!(
            missing_for_ebpf(0),
            vec!["CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE"]
        );
        let root = u64::MAX >> 23; // what root gets on a 41-capability kernel
        assert!(missing_for_ebpf(root).is_empty());
        let caps = (1 << CAP_BPF) | (1 << CAP_PERFMON) | (1 << CAP_SYS_PTRACE);
        assert!(missing_for_ebpf(caps).is_empty());
        assert_eq!(missing_for_ebpf(1 << CAP_SYS_ADMIN), vec!["CAP_SYS_PTRACE"]);
        let eacces = std::io::Error::from_raw_os_error(libc::EACCES);
        let mine = (1 << CAP_BPF) | (1 << CAP_PERFMON) | (1 << CAP_SYS_PTRACE);
        assert!(
            uprobe_refusal(&eacces, Some(mine))
                .unwrap()
                .contains("CAP_SYS_ADMIN")
        );
        assert_eq!(
            uprobe_refusal(&eacces, Some(mine | (1 << CAP_SYS_ADMIN))),
            None
        );
        let enoent = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(uprobe_refusal(&enoent, Some(mine)), None);
    }
}
