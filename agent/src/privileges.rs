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
    }
}
