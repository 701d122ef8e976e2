//! The trace header and the trace format version, ported from Go 1.27's
//! `internal/trace/version/version.go`.
//!
//! Every Go execution trace starts with the 16-byte header `"go 1.NN trace\x00\x00\x00"`. Go 1.27
//! reads the v2 format written by Go 1.22 and later: headers 1.22, 1.23 (also written by Go
//! 1.24), 1.25 and 1.26 (also written by Go 1.27). Older headers (1.5 … 1.21) are the v1 format,
//! which this reader does not support.

use std::fmt;
use std::io::{self, Read};

use super::base::TraceError;
use super::spec::{self, EventType, Spec};

/// version.Version: the version of a v2 trace file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// "go 1.22 trace" (Go 1.22).
    Go122 = 22,
    /// "go 1.23 trace" (Go 1.23 and 1.24): coroutine events, GoStatusStack, experimental batches.
    Go123 = 23,
    /// "go 1.25 trace" (Go 1.25): sync batches with clock snapshots.
    Go125 = 25,
    /// "go 1.26 trace" (Go 1.26 and 1.27): explicit end-of-generation batches.
    Go126 = 26,
}

impl Version {
    /// version.Current: the newest version Go 1.27 writes.
    pub const CURRENT: Version = Version::Go126;

    /// The minor Go version number in the header (22 for "go 1.22 trace").
    pub fn minor(self) -> u32 {
        self as u32
    }

    /// The v2 version for a header's minor number, if Go 1.27 reads it as a v2 trace.
    pub fn from_minor(minor: u32) -> Option<Version> {
        match minor {
            22 => Some(Version::Go122),
            23 => Some(Version::Go123),
            25 => Some(Version::Go125),
            26 => Some(Version::Go126),
            _ => None,
        }
    }

    /// version.Version.Specs: the events this version's traces may contain.
    pub fn specs(self) -> &'static [Spec] {
        spec::specs(self)
    }

    /// version.Version.EventName: the wire name of an event type for this version.
    pub fn event_name(self, typ: EventType) -> String {
        match self.specs().get(usize::from(typ)) {
            Some(s) if !s.name.is_empty() => s.name.to_string(),
            _ => format!("Invalid({typ})"),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "go 1.{}", self.minor())
    }
}

/// The length of every trace header: `"go 1.NN trace"` padded with NULs to 16 bytes.
pub const HEADER_LEN: usize = 16;

/// Minor versions Go 1.27 still knows as valid (v1) headers without reading them as v2:
/// version.go's Go111, Go119 and Go121.
const V1_MINORS: [u32; 3] = [11, 19, 21];

/// version.ReadHeader: reads the 16-byte header and returns the trace's version.
///
/// Errors: a header that does not look like a Go trace header → [`TraceError::NotATrace`]; a
/// header of a known older format (Go ≤ 1.21, the v1 format) → [`TraceError::UnsupportedVersion`];
/// a well-formed header of a version Go 1.27 does not know (e.g. "go 1.24 trace", never written,
/// or a future one) → [`TraceError::UnknownVersion`]; a file that ends inside a header that
/// looked right so far → [`TraceError::Truncated`].
///
/// Go parses the header with `fmt.Fscanf(r, "go 1.%d trace\x00\x00\x00", &v)`; for the
/// two-digit versions that exist this is exactly 16 bytes, which is what we read (no more, so
/// the caller's reader is positioned on the first batch).
pub fn read_header<R: Read + ?Sized>(r: &mut R) -> Result<Version, TraceError> {
    let mut buf = [0u8; HEADER_LEN];
    let n = read_up_to(r, &mut buf)?;
    parse_header(buf.get(..n).unwrap_or(&[]))
}

/// Reads until `buf` is full or the reader reports EOF; returns how many bytes were read.
fn read_up_to<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> Result<usize, TraceError> {
    let mut n = 0;
    while n < buf.len() {
        let Some(rest) = buf.get_mut(n..) else { break };
        match r.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(TraceError::Io(e)),
        }
    }
    Ok(n)
}

/// Parses a header from at most [`HEADER_LEN`] bytes (fewer when the file is shorter).
pub fn parse_header(h: &[u8]) -> Result<Version, TraceError> {
    const PREFIX: &[u8] = b"go 1.";
    const SUFFIX: &[u8] = b" trace";
    let not_a_trace = || {
        TraceError::NotATrace(format!(
            "bad file format: the file starts with {:?}, not \"go 1.NN trace\"",
            String::from_utf8_lossy(h).trim_end_matches('\0')
        ))
    };
    if h.is_empty() {
        return Err(TraceError::NotATrace("the file is empty".into()));
    }
    // A short file is only "truncated" if what there is could still be a header.
    let looks_like_header_prefix = |h: &[u8]| -> bool {
        let k = h.len().min(PREFIX.len());
        if h.get(..k) != PREFIX.get(..k) {
            return false;
        }
        let rest = h.get(PREFIX.len()..).unwrap_or(&[]);
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let after = rest.get(digits..).unwrap_or(&[]);
        let k = after.len().min(SUFFIX.len());
        (digits > 0 || after.is_empty())
            && after.get(..k) == SUFFIX.get(..k)
            && after
                .get(SUFFIX.len()..)
                .unwrap_or(&[])
                .iter()
                .all(|&b| b == 0)
    };
    if h.len() < HEADER_LEN {
        return Err(if looks_like_header_prefix(h) {
            TraceError::Truncated(format!(
                "the file ends inside the trace header after {} bytes",
                h.len()
            ))
        } else {
            not_a_trace()
        });
    }
    let Some(rest) = h.strip_prefix(PREFIX) else {
        return Err(not_a_trace());
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (num, after) = rest.split_at(digits.min(rest.len()));
    let Some(pad) = after.strip_prefix(SUFFIX) else {
        return Err(not_a_trace());
    };
    if num.is_empty() || num.len() > 3 || pad.is_empty() || pad.iter().any(|&b| b != 0) {
        return Err(not_a_trace());
    }
    let minor: u32 = std::str::from_utf8(num)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(not_a_trace)?;
    if let Some(v) = Version::from_minor(minor) {
        // Two-digit versions have exactly three NULs of padding, as Go's format requires.
        if pad.len() == 3 {
            return Ok(v);
        }
        return Err(not_a_trace());
    }
    // Every header before 1.22 is the v1 format (Go 1.27 only still parses 1.11, 1.19 and 1.21
    // of them, through a separate v1 parser this port leaves out).
    if minor < 22 {
        let what = if V1_MINORS.contains(&minor) {
            format!("go 1.{minor}")
        } else {
            format!("go 1.{minor} (not readable by Go 1.27 either)")
        };
        return Err(TraceError::UnsupportedVersion(what));
    }
    Err(TraceError::UnknownVersion(format!("go 1.{minor}")))
}

/// version.WriteHeader: the header bytes for version `v`.
pub fn header_bytes(v: Version) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let s = format!("go 1.{} trace", v.minor());
    for (dst, src) in h.iter_mut().zip(s.bytes()) {
        *dst = src;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.resize(HEADER_LEN.max(v.len()), 0);
        v
    }

    #[test]
    fn accepts_every_v2_header() {
        for (s, v) in [
            ("go 1.22 trace", Version::Go122),
            ("go 1.23 trace", Version::Go123),
            ("go 1.25 trace", Version::Go125),
            ("go 1.26 trace", Version::Go126),
        ] {
            let mut bytes = hdr(s);
            bytes.extend_from_slice(&[1, 2, 3]);
            let mut r = bytes.as_slice();
            assert_eq!(read_header(&mut r).unwrap(), v, "{s}");
            // Exactly the header was consumed.
            assert_eq!(r, &[1, 2, 3]);
            assert_eq!(header_bytes(v).to_vec(), hdr(s));
        }
    }

    #[test]
    fn rejects_old_versions_as_unsupported() {
        for s in [
            "go 1.21 trace",
            "go 1.19 trace",
            "go 1.11 trace",
            "go 1.5 trace",
        ] {
            let err = read_header(&mut hdr(s).as_slice()).unwrap_err();
            assert!(
                matches!(err, TraceError::UnsupportedVersion(_)),
                "{s}: {err:?}"
            );
        }
        let err = read_header(&mut hdr("go 1.21 trace").as_slice()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported trace version go 1.21 (use Go ≥ 1.22)"
        );
    }

    #[test]
    fn rejects_unknown_versions() {
        for s in ["go 1.24 trace", "go 1.27 trace", "go 1.99 trace"] {
            let err = read_header(&mut hdr(s).as_slice()).unwrap_err();
            assert!(matches!(err, TraceError::UnknownVersion(_)), "{s}: {err:?}");
        }
    }

    #[test]
    fn rejects_garbage_as_not_a_trace() {
        let cases: Vec<Vec<u8>> = vec![
            b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec(),
            b"hello world, this is not a trace".to_vec(),
            hdr("go 1.22 trace!"),
            hdr("go 1.x trace"),
            hdr("go 1. trace"),
            b"go 1.22 trace\0\0X".to_vec(),
            b"go 1.22 tracer\0\0".to_vec(),
            b"go 2.22 trace\0\0\0".to_vec(),
            vec![],
            b"xy".to_vec(),
        ];
        for c in cases {
            let err = read_header(&mut c.as_slice()).unwrap_err();
            assert!(matches!(err, TraceError::NotATrace(_)), "{c:?}: {err:?}");
        }
    }

    #[test]
    fn short_header_is_truncated() {
        for c in [&b"go"[..], b"go 1.2", b"go 1.22 tr", b"go 1.22 trace\0"] {
            let err = read_header(&mut &c[..]).unwrap_err();
            assert!(matches!(err, TraceError::Truncated(_)), "{c:?}: {err:?}");
        }
    }

    #[test]
    fn event_names_per_version() {
        assert_eq!(Version::Go122.event_name(spec::EV_GO_START), "GoStart");
        assert_eq!(Version::Go122.event_name(spec::EV_GO_SWITCH), "Invalid(45)");
        assert_eq!(Version::Go123.event_name(spec::EV_GO_SWITCH), "GoSwitch");
        assert_eq!(Version::Go123.event_name(spec::EV_SYNC), "Invalid(50)");
        assert_eq!(Version::Go125.event_name(spec::EV_SYNC), "Sync");
        assert_eq!(
            Version::Go125.event_name(spec::EV_END_OF_GENERATION),
            "Invalid(52)"
        );
        assert_eq!(
            Version::Go126.event_name(spec::EV_END_OF_GENERATION),
            "EndOfGeneration"
        );
        assert_eq!(Version::Go126.event_name(spec::EV_SPAN), "Span");
        assert_eq!(Version::Go126.event_name(100), "Invalid(100)");
        assert_eq!(Version::Go126.event_name(0), "Invalid(0)");
    }
}
