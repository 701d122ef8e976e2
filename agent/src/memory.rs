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

    /// Reads many ranges with as few syscalls as possible. Returns, per range, whether it was
    /// read completely. A range that faults does not stop the others.
    pub fn read_many(&self, ranges: &mut [(u64, &mut [u8])]) -> Result<Vec<bool>, MemError> {
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
    fn gone_process_is_an_error_not_a_panic() {
        let mut b = [0u8; 8];
        assert!(matches!(
            ProcessMemory::new(0x3fff_fff0).read(0x1000, &mut b),
            Err(MemError::Gone { .. })
        ));
    }
}
