//! Reading a live process's memory without stopping or signalling it: `process_vm_readv`, many
//! ranges per call. The target keeps running while we read, so callers must treat what they get
//! as a possibly torn snapshot; a range that is unmapped (EFAULT) reads as "not available".

use thiserror::Error;

#[derive(Debug, Error)]
pub enum MemError {
    #[error("process {pid} has exited")]
    Gone { pid: u32 },
    #[error("not allowed to read the memory of process {pid}: run as root or with CAP_SYS_PTRACE")]
    Denied { pid: u32 },
    #[error("reading {len} bytes at {addr:#x} in process {pid}: {source}")]
    Io {
        pid: u32,
        addr: u64,
        len: usize,
        source: std::io::Error,
    },
}

/// A live process's address space, read-only.
#[derive(Debug, Clone, Copy)]
pub struct ProcessMemory {
    pid: u32,
}

/// The kernel's cap on iovecs per process_vm_readv call (UIO_MAXIOV).
const MAX_IOV: usize = 1024;
/// Ranges closer than this are read as one: the kernel's cost is per range (it looks up and
/// pins the pages of each one), so 100k g records 448 bytes apart read far faster as a few
/// hundred spans than as 100k ranges, for a few hundred bytes more each.
const MERGE_GAP: u64 = 1024;
/// Longest merged span, and the most bytes of spans read before they are handed out (the
/// scratch buffer is reused, so reading a big table costs this much memory, not its size).
const MAX_SPAN: u64 = 256 << 10;
const SCRATCH_BYTES: usize = 4 << 20;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Frees this thread's read buffer (megabytes once a big goroutine table was read): for when the
/// scans are over, so that the memory serves what comes next (the report) instead of sitting
/// under it.
pub fn release_scratch() {
    SCRATCH.with(|s| *s.borrow_mut() = Vec::new());
}

impl ProcessMemory {
    pub fn new(pid: u32) -> Self {
        Self { pid }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Reads exactly `buf.len()` bytes at `addr`.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let n = self.readv_raw(&mut [(addr, &mut *buf)])?;
        if n == buf.len() {
            Ok(())
        } else {
            Err(MemError::Io {
                pid: self.pid,
                addr,
                len: buf.len(),
                source: std::io::Error::from_raw_os_error(libc::EFAULT),
            })
        }
    }

    pub fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads many ranges with as few syscalls, and as few kernel range walks, as possible:
    /// ranges near each other are merged into spans (see [`MERGE_GAP`]). Returns, per range,
    /// whether it was read completely. A range that faults does not stop the others (a span
    /// that faults is read again range by range).
    pub fn read_many(&self, ranges: &mut [(u64, &mut [u8])]) -> Result<Vec<bool>, MemError> {
        let mut ok = vec![false; ranges.len()];
        // A range that would wrap past the top of the address space (a torn or garbage pointer,
        // e.g. a frame pointer read mid-update) cannot be read: it stays not ok, and is kept out
        // of the spans, whose arithmetic assumes `addr + len` fits.
        let mut order: Vec<usize> = (0..ranges.len())
            .filter(|&i| ranges[i].0.checked_add(ranges[i].1.len() as u64).is_some())
            .collect();
        order.sort_unstable_by_key(|&i| ranges[i].0);
        // Spans: (start, end, members as a range of `order`).
        let mut spans: Vec<(u64, u64, std::ops::Range<usize>)> = Vec::new();
        for (k, &i) in order.iter().enumerate() {
            let (a, len) = (ranges[i].0, ranges[i].1.len() as u64);
            let end = a + len;
            match spans.last_mut() {
                Some((s, e, m))
                    if a <= e.saturating_add(MERGE_GAP) && end.max(*e) - *s <= MAX_SPAN =>
                {
                    *e = end.max(*e);
                    m.end = k + 1;
                }
                _ => spans.push((a, end, k..k + 1)),
            }
        }
        // Reused across calls: a fresh multi-megabyte buffer per scan would be page-faulted in
        // and zeroed every time.
        let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        let mut first = 0;
        while first < spans.len() {
            // A batch of spans whose bytes fit the scratch buffer (at least one span).
            let mut last = first;
            let mut bytes = 0usize;
            while last < spans.len()
                && (last == first
                    || bytes + (spans[last].1 - spans[last].0) as usize <= SCRATCH_BYTES)
            {
                bytes += (spans[last].1 - spans[last].0) as usize;
                last += 1;
            }
            scratch.resize(bytes, 0);
            let mut bufs: Vec<(u64, &mut [u8])> = Vec::with_capacity(last - first);
            let mut rest = scratch.as_mut_slice();
            for (s, e, _) in &spans[first..last] {
                let (head, tail) = rest.split_at_mut((e - s) as usize);
                bufs.push((*s, head));
                rest = tail;
            }
            let span_ok = self.read_each(&mut bufs)?;
            drop(bufs);
            let mut at = 0usize;
            for ((s, e, members), sok) in spans[first..last].iter().zip(span_ok) {
                let span = &scratch[at..at + (e - s) as usize];
                at += (e - s) as usize;
                if sok {
                    for &i in &order[members.clone()] {
                        let off = (ranges[i].0 - s) as usize;
                        let n = ranges[i].1.len();
                        ranges[i].1.copy_from_slice(&span[off..off + n]);
                        ok[i] = true;
                    }
                } else {
                    // Part of the span is unmapped (rare): read its ranges one by one.
                    for &i in &order[members.clone()] {
                        let (addr, buf) = &mut ranges[i];
                        ok[i] = self.read_each(&mut [(*addr, &mut **buf)])?[0];
                    }
                }
            }
            first = last;
        }
        SCRATCH.with(|s| *s.borrow_mut() = scratch);
        Ok(ok)
    }

    /// Reads each range as given, up to [`MAX_IOV`] per call.
    fn read_each(&self, ranges: &mut [(u64, &mut [u8])]) -> Result<Vec<bool>, MemError> {
        let mut ok = vec![false; ranges.len()];
        let mut start = 0;
        while start < ranges.len() {
            let end = (start + MAX_IOV).min(ranges.len());
            let chunk = &mut ranges[start..end];
            let mut done = self.readv_raw(chunk)?;
            // process_vm_readv stops at the first range that faults; everything before it is
            // complete. Mark those, then retry past the faulting range.
            let mut i = 0;
            while i < chunk.len() && done >= chunk[i].1.len() {
                done -= chunk[i].1.len();
                ok[start + i] = true;
                i += 1;
            }
            // chunk[i], if any, faulted or was partial: skip it and go on after it.
            start += if i == chunk.len() { i } else { i + 1 };
        }
        Ok(ok)
    }

    fn readv_raw(&self, ranges: &mut [(u64, &mut [u8])]) -> Result<usize, MemError> {
        if ranges.is_empty() {
            return Ok(0);
        }
        let local: Vec<libc::iovec> = ranges
            .iter_mut()
            .map(|(_, b)| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let remote: Vec<libc::iovec> = ranges
            .iter()
            .map(|(a, b)| libc::iovec {
                iov_base: *a as usize as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: every local iovec points into a live &mut [u8] of the stated length; the remote
        // ones are only addresses in the other process, which the kernel checks.
        let n = unsafe {
            libc::process_vm_readv(
                self.pid as libc::pid_t,
                local.as_ptr(),
                local.len() as libc::c_ulong,
                remote.as_ptr(),
                remote.len() as libc::c_ulong,
                0,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ESRCH) => Err(MemError::Gone { pid: self.pid }),
            Some(libc::EPERM) => Err(MemError::Denied { pid: self.pid }),
            // The first range faulted: nothing was read.
            Some(libc::EFAULT) => Ok(0),
            _ => Err(MemError::Io {
                pid: self.pid,
                addr: ranges[0].0,
                len: ranges[0].1.len(),
                source: err,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory_and_survives_faults() {
        let me = ProcessMemory::new(std::process::id());
        let data: Vec<u8> = (0..=255).collect();
        let mut buf = [0u8; 16];
        me.read(data.as_ptr() as u64 + 16, &mut buf).unwrap();
        assert_eq!(buf[0], 16);
        assert_eq!(
            me.read_u64(data.as_ptr() as u64).unwrap(),
            0x0706050403020100
        );

        let (mut a, mut bad, mut c) = ([0u8; 4], [0u8; 4], [0u8; 4]);
        let mut ranges: Vec<(u64, &mut [u8])> = vec![
            (data.as_ptr() as u64, &mut a),
            (8, &mut bad), // unmapped page 0
            (data.as_ptr() as u64 + 100, &mut c),
        ];
        let ok = me.read_many(&mut ranges).unwrap();
        assert_eq!(ok, vec![true, false, true]);
        assert_eq!(a, [0, 1, 2, 3]);
        assert_eq!(c, [100, 101, 102, 103]);
        assert!(me.read(8, &mut buf).is_err());

        // Garbage pointers at the top of the address space (a frame pointer read torn): not
        // readable, and no panic when one would wrap (seen in the http bench's precise runs).
        let (mut top, mut wrap, mut d) = ([0u8; 16], [0u8; 16], [0u8; 4]);
        let mut ranges: Vec<(u64, &mut [u8])> = vec![
            (u64::MAX - 15, &mut top),
            (u64::MAX - 7, &mut wrap),
            (data.as_ptr() as u64 + 200, &mut d),
        ];
        let ok = me.read_many(&mut ranges).unwrap();
        assert_eq!(ok, vec![false, false, true]);
        assert_eq!(d, [200, 201, 202, 203]);
    }

    #[test]
    fn reads_more_ranges_than_one_syscall_takes() {
        // More than UIO_MAXIOV ranges: none may be lost at the chunk boundaries.
        let me = ProcessMemory::new(std::process::id());
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let mut bufs = vec![[0u8; 1]; 3000];
        let mut ranges: Vec<(u64, &mut [u8])> = bufs
            .iter_mut()
            .enumerate()
            .map(|(i, b)| (data.as_ptr() as u64 + i as u64, b.as_mut_slice()))
            .collect();
        let ok = me.read_many(&mut ranges).unwrap();
        assert!(
            ok.iter().all(|&o| o),
            "{} unread",
            ok.iter().filter(|o| !**o).count()
        );
        assert!(
            bufs.iter()
                .enumerate()
                .all(|(i, b)| b[0] == (i % 251) as u8)
        );
    }

    #[test]
    fn a_merged_span_over_a_hole_falls_back_to_its_ranges() {
        // Two pages, the second unmapped: ranges on both sides of the boundary are close
        // enough to merge into one span, which faults; each readable range must still read.
        let me = ProcessMemory::new(std::process::id());
        // SAFETY: an anonymous private mapping of our own, unmapped in part below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        } as u64;
        assert_ne!(base, libc::MAP_FAILED as u64);
        // SAFETY: writing into, then unmapping part of, the mapping made above.
        unsafe {
            std::ptr::write_bytes(base as *mut u8, 7, 4096);
            libc::munmap((base + 4096) as *mut libc::c_void, 4096);
        }
        let (mut a, mut b, mut c) = ([0u8; 8], [0u8; 8], [0u8; 8]);
        let mut ranges: Vec<(u64, &mut [u8])> = vec![
            (base + 4096 + 16, &mut b), // in the hole
            (base + 4000, &mut a),
            (base + 4088, &mut c), // the last 8 readable bytes
        ];
        let ok = me.read_many(&mut ranges).unwrap();
        assert_eq!(ok, vec![false, true, true]);
        assert_eq!((a, c), ([7; 8], [7; 8]));
        // SAFETY: unmapping the rest of our own mapping.
        unsafe { libc::munmap(base as *mut libc::c_void, 4096) };
    }

    #[test]
    fn gone_process_is_an_error_not_a_panic() {
        let mut b = [0u8; 8];
        assert!(matches!(
            ProcessMemory::new(0x3fff_fff0).read(0x1000, &mut b),
            Err(MemError::Gone { .. })
        ));
    }
}
