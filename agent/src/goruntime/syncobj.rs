//! From the semaphore a sync primitive waits on to the primitive itself.
//!
//! The semacquire entry points receive the address of a `uint32` field inside the Mutex,
//! RWMutex or WaitGroup (and `notifyListWait` the address of a Cond's notifyList). The field's
//! offset inside its struct is the same in every supported Go version (checked against the
//! sources of Go 1.22 to 1.27, and end to end by the `parkers` fixture, which prints `%p` of each
//! object):
//!
//! - `sync.Mutex{state int32; sema uint32}` (from Go 1.24 `sync.Mutex{_ noCopy; mu
//!   internal/sync.Mutex}` with the same two fields): sema at +4 (src/sync/mutex.go,
//!   src/internal/sync/mutex.go).
//! - `sync.RWMutex{w Mutex; writerSem uint32; readerSem uint32; ...}`: Lock waits on writerSem
//!   at +8, RLock on readerSem at +12; Lock first takes `w`, a Mutex at +0
//!   (src/sync/rwmutex.go).
//! - `sync.WaitGroup{noCopy; state atomic.Uint64; sema uint32}`: sema at +8
//!   (src/sync/waitgroup.go).
//! - `sync.Cond{noCopy; L Locker; notify notifyList; ...}`: notify at +16, after the 16-byte
//!   interface L (src/sync/cond.go).

use probes_ebpf::SemaKind;

/// Offset of the waited-on field inside its primitive, per kind.
pub fn field_offset(kind: SemaKind) -> u64 {
    match kind {
        SemaKind::Mutex => 4,
        SemaKind::RWMutexW => 8,
        SemaKind::RWMutexR => 12,
        SemaKind::WaitGroup => 8,
        SemaKind::Cond => 16,
    }
}

/// The kind of object as reports name it.
pub fn object_kind(kind: SemaKind) -> &'static str {
    match kind {
        SemaKind::Mutex => "mutex",
        SemaKind::RWMutexR | SemaKind::RWMutexW => "rwmutex",
        SemaKind::WaitGroup => "waitgroup",
        SemaKind::Cond => "cond",
    }
}

/// Whether a park with this wait reason is the one a semacquire entry point of `kind` leads to
/// (src/runtime/sema.go passes these reasons to semacquire1; notifyListWait parks with
/// "sync.Cond.Wait"). The entry point's record can be stale: a semaphore acquired without
/// parking leaves it behind, and the goroutine's next park (on a channel, or on a runtime
/// semaphore) must not inherit it.
pub fn reason_matches(kind: SemaKind, wait_reason: &str) -> bool {
    match kind {
        SemaKind::Mutex => wait_reason == "sync.Mutex.Lock",
        SemaKind::RWMutexR => wait_reason == "sync.RWMutex.RLock",
        SemaKind::RWMutexW => wait_reason == "sync.RWMutex.Lock",
        // Before Go 1.24 WaitGroup.Wait parks as plain "semacquire".
        SemaKind::WaitGroup => matches!(wait_reason, "sync.WaitGroup.Wait" | "semacquire"),
        SemaKind::Cond => wait_reason == "sync.Cond.Wait",
    }
}

/// The semacquire kind a wait reason implies, for waits found in the semaphore table (which
/// records addresses, not kinds). "semacquire" is ambiguous (WaitGroup before Go 1.24, or a
/// runtime-internal semaphore), so it gives None; Cond waits are not in the semaphore table.
pub fn kind_for_reason(wait_reason: &str) -> Option<SemaKind> {
    match wait_reason {
        "sync.Mutex.Lock" => Some(SemaKind::Mutex),
        "sync.RWMutex.RLock" => Some(SemaKind::RWMutexR),
        "sync.RWMutex.Lock" => Some(SemaKind::RWMutexW),
        "sync.WaitGroup.Wait" => Some(SemaKind::WaitGroup),
        _ => None,
    }
}

/// (object kind, object address) for a semaphore wait that parked with `wait_reason`; None for
/// an unknown kind number or a reason that kind does not park with.
pub fn object_of(kind: u32, sema_addr: u64, wait_reason: &str) -> Option<(&'static str, u64)> {
    let kind = SemaKind::try_from(kind).ok()?;
    if !reason_matches(kind, wait_reason) {
        return None;
    }
    Some((
        object_kind(kind),
        sema_addr.wrapping_sub(field_offset(kind)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_semaphores_to_their_objects() {
        let m = "sync.Mutex.Lock";
        assert_eq!(object_of(1, 0xc000010004, m), Some(("mutex", 0xc000010000)));
        let r = "sync.RWMutex.RLock";
        assert_eq!(
            object_of(2, 0xc00001000c, r),
            Some(("rwmutex", 0xc000010000))
        );
        let w = "sync.RWMutex.Lock";
        assert_eq!(
            object_of(3, 0xc000010008, w),
            Some(("rwmutex", 0xc000010000))
        );
        let wg = "sync.WaitGroup.Wait";
        assert_eq!(
            object_of(4, 0xc000010008, wg),
            Some(("waitgroup", 0xc000010000))
        );
        assert_eq!(
            object_of(4, 0xc000010008, "semacquire"),
            Some(("waitgroup", 0xc000010000))
        );
        let c = "sync.Cond.Wait";
        assert_eq!(object_of(5, 0xc000010010, c), Some(("cond", 0xc000010000)));
        assert_eq!(object_of(0, 0x1000, m), None);
        assert_eq!(object_of(99, 0x1000, m), None);
    }

    #[test]
    fn a_stale_semaphore_record_does_not_describe_another_park() {
        // A Mutex acquired without parking, then a park on a channel: not a mutex wait.
        assert_eq!(object_of(1, 0xc000010004, "chan receive"), None);
        assert_eq!(object_of(1, 0xc000010004, "semacquire"), None);
        assert_eq!(object_of(5, 0xc000010010, "sync.Mutex.Lock"), None);
    }
}
