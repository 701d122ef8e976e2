//! The blocking-pattern taxonomy: one entry per pattern, with a stable id, a name, a severity,
//! whether this version detects it, and a minimal Go example (docs/patterns.md renders the same
//! table; a test keeps the two in step).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Note,
    Warning,
    Error,
}

impl Severity {
    pub fn word(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One blocking pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    /// Stable id: `BP01` … `BP17`, `BP00` for a global deadlock.
    pub id: &'static str,
    /// Stable short name, usable wherever an id is (`--fail-on`, `--allow`).
    pub slug: &'static str,
    pub name: &'static str,
    pub severity: Severity,
}

const fn p(
    id: &'static str,
    slug: &'static str,
    name: &'static str,
    severity: Severity,
) -> Pattern {
    Pattern {
        id,
        slug,
        name,
        severity,
    }
}

use Severity::{Error, Note, Warning};

pub const GLOBAL_DEADLOCK: Pattern = p(
    "BP00",
    "global-deadlock",
    "every goroutine of the program is blocked: the whole process is stuck",
    Error,
);
pub const CHAN_SEND_FULL: Pattern = p(
    "BP01",
    "chan-send-full",
    "send on a full buffered channel that no one drains",
    Warning,
);
pub const CHAN_SEND_NO_RECEIVER: Pattern = p(
    "BP02",
    "chan-send-no-receiver",
    "unbuffered send with no receiver",
    Warning,
);
pub const CHAN_RECV_NO_SENDER: Pattern = p(
    "BP03",
    "chan-recv-no-sender",
    "receive that no sender will satisfy (orphaned receiver)",
    Warning,
);
pub const NIL_CHAN_SEND: Pattern = p("BP04", "nil-chan-send", "send on a nil channel", Error);
pub const NIL_CHAN_RECV: Pattern = p("BP05", "nil-chan-recv", "receive on a nil channel", Error);
pub const SELECT_NO_CASES: Pattern = p(
    "BP06",
    "select-no-cases",
    "select {} with no cases: blocks forever",
    Warning,
);
pub const SELECT_ALL_BLOCKED: Pattern = p(
    "BP07",
    "select-all-blocked",
    "select without default whose cases are all blocked",
    Warning,
);
pub const BUSY_SELECT: Pattern = p(
    "BP08",
    "busy-select",
    "select with default spinning without progress",
    Warning,
);
pub const CHAN_CYCLE: Pattern = p(
    "BP09",
    "chan-cycle",
    "channel cycle: goroutines each waiting on a channel only another member would serve",
    Error,
);
pub const CASCADE: Pattern = p(
    "BP10",
    "cascade",
    "cascade: a chain of goroutines blocked behind one root blocker",
    Error,
);
pub const MUTEX_DEADLOCK: Pattern = p(
    "BP11",
    "mutex-deadlock",
    "Mutex deadlock: double Lock, or lock-order inversion between goroutines",
    Error,
);
pub const RWMUTEX_DEADLOCK: Pattern = p(
    "BP12",
    "rwmutex-deadlock",
    "RWMutex: recursive read lock, or a writer waiting forever",
    Error,
);
pub const WAITGROUP_NEVER_DONE: Pattern = p(
    "BP13",
    "waitgroup-never-done",
    "WaitGroup.Wait that can never return (Add without Done)",
    Error,
);
pub const COND_NO_SIGNAL: Pattern = p(
    "BP14",
    "cond-no-signal",
    "sync.Cond.Wait with no Signal or Broadcast to come",
    Warning,
);
pub const MIXED_DEADLOCK: Pattern = p(
    "BP15",
    "mixed-deadlock",
    "a lock holder blocked on a channel whose peer needs the lock",
    Error,
);
pub const LEAK_GROWTH: Pattern = p(
    "BP16",
    "leak-growth",
    "goroutine leak: goroutines blocked at one site, from one go statement, keep growing",
    Warning,
);
pub const LONG_SYSCALL: Pattern = p(
    "BP17",
    "long-syscall",
    "a goroutine stuck in C or in the kernel (cgo call or system call)",
    Note,
);

pub const ALL: [Pattern; 18] = [
    GLOBAL_DEADLOCK,
    CHAN_SEND_FULL,
    CHAN_SEND_NO_RECEIVER,
    CHAN_RECV_NO_SENDER,
    NIL_CHAN_SEND,
    NIL_CHAN_RECV,
    SELECT_NO_CASES,
    SELECT_ALL_BLOCKED,
    BUSY_SELECT,
    CHAN_CYCLE,
    CASCADE,
    MUTEX_DEADLOCK,
    RWMUTEX_DEADLOCK,
    WAITGROUP_NEVER_DONE,
    COND_NO_SIGNAL,
    MIXED_DEADLOCK,
    LEAK_GROWTH,
    LONG_SYSCALL,
];

/// The pattern with this id or slug (case-insensitive).
pub fn lookup(name: &str) -> Option<Pattern> {
    ALL.iter()
        .copied()
        .find(|p| p.id.eq_ignore_ascii_case(name) || p.slug.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_slugs_are_unique_and_documented() {
        let doc = include_str!("../../../docs/patterns.md");
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.id, b.id);
                assert_ne!(a.slug, b.slug);
            }
            let heading = format!("## {} `{}`", a.id, a.slug);
            assert!(doc.contains(&heading), "docs/patterns.md lacks `{heading}`");
            assert_eq!(lookup(a.slug), Some(*a));
            assert_eq!(lookup(&a.id.to_lowercase()), Some(*a));
        }
        assert_eq!(lookup("nope"), None);
    }
}
