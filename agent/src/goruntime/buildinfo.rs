//! The Go build information embedded in every Go binary since 1.13, in the `.go.buildinfo`
//! section: the toolchain version and the module/build settings (`go version -m` shows the same).
//!
//! Format (src/debug/buildinfo/buildinfo.go, `readRawBuildInfo`, Go ≥ 1.18 writers): a 32-byte
//! header that starts with the magic `"\xff Go buildinf:"`, then pointer size (1 byte) and flags
//! (1 byte; bit 1 = "strings are inline"). With inline strings, the version and the module info
//! follow the header as two uvarint-length-prefixed strings. Every supported Go (1.22–1.27)
//! writes inline strings; the older pointer form is reported as unsupported.

use thiserror::Error;

const MAGIC: &[u8] = b"\xff Go buildinf:";
const HEADER_LEN: usize = 32;
const FLAG_INLINE_STRINGS: u8 = 0x2;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BuildInfoError {
    #[error("no Go build information (.go.buildinfo section): not a Go binary")]
    Missing,
    #[error("Go build information is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "Go build information uses the pre-1.18 pointer format; blockprobe supports Go 1.22 to 1.27"
    )]
    TooOld,
}

/// What `.go.buildinfo` says about a binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// e.g. `go1.27.3`.
    pub go_version: String,
    /// `path` line of the module info, e.g. `blockprobe/fixtures/demo`.
    pub main_path: Option<String>,
    /// `build` settings as key/value pairs, e.g. (`CGO_ENABLED`, `1`), (`-buildmode`, `pie`).
    pub settings: Vec<(String, String)>,
}

impl BuildInfo {
    /// Parses the contents of the `.go.buildinfo` section.
    pub fn parse(section: &[u8]) -> Result<Self, BuildInfoError> {
        let start = find(section, MAGIC).ok_or(BuildInfoError::Missing)?;
        let data = &section[start..];
        if data.len() < HEADER_LEN {
            return Err(BuildInfoError::Malformed("header truncated"));
        }
        let flags = data[15];
        if flags & FLAG_INLINE_STRINGS == 0 {
            return Err(BuildInfoError::TooOld);
        }
        let mut rest = &data[HEADER_LEN..];
        let version = read_string(&mut rest)?;
        let modinfo = read_string(&mut rest)?;
        if version.is_empty() {
            return Err(BuildInfoError::Malformed("empty Go version"));
        }
        let mut info = BuildInfo {
            go_version: version,
            main_path: None,
            settings: Vec::new(),
        };
        info.parse_modinfo(&modinfo);
        Ok(info)
    }

    /// The module info is wrapped in 16-byte sentinels (src/runtime/debug/mod.go, ParseBuildInfo
    /// strips them) and holds tab-separated lines: `path P`, `mod ...`, `dep ...`, `build K=V`.
    fn parse_modinfo(&mut self, modinfo: &str) {
        let body = if modinfo.len() >= 33 {
            modinfo.get(16..modinfo.len() - 16).unwrap_or(modinfo)
        } else {
            modinfo
        };
        for line in body.lines() {
            let mut parts = line.splitn(2, '\t');
            match (parts.next(), parts.next()) {
                (Some("path"), Some(p)) => self.main_path = Some(p.to_string()),
                (Some("build"), Some(kv)) => {
                    if let Some((k, v)) = kv.split_once('=') {
                        self.settings
                            .push((k.to_string(), v.trim_matches('"').to_string()));
                    }
                }
                _ => {}
            }
        }
    }

    /// A build setting, e.g. `setting("CGO_ENABLED")`.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the binary was built with cgo enabled (the `build CGO_ENABLED=1` setting).
    pub fn cgo_enabled(&self) -> bool {
        self.setting("CGO_ENABLED") == Some("1")
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn read_string(rest: &mut &[u8]) -> Result<String, BuildInfoError> {
    let (len, n) = read_uvarint(rest).ok_or(BuildInfoError::Malformed("bad string length"))?;
    let body = rest
        .get(n..)
        .and_then(|r| r.get(..usize::try_from(len).ok()?))
        .ok_or(BuildInfoError::Malformed("string runs past the section"))?;
    let s = String::from_utf8_lossy(body).into_owned();
    *rest = &rest[n + body.len()..];
    Ok(s)
}

/// encoding/binary.Uvarint.
fn read_uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((x, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(version: &str, modinfo: &str) -> Vec<u8> {
        let mut s = MAGIC.to_vec();
        s.push(8); // pointer size
        s.push(FLAG_INLINE_STRINGS);
        s.resize(HEADER_LEN, 0);
        for part in [version, modinfo] {
            let mut n = part.len();
            loop {
                let b = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    s.push(b);
                    break;
                }
                s.push(b | 0x80);
            }
            s.extend_from_slice(part.as_bytes());
        }
        s
    }

    #[test]
    fn parses_inline_strings() {
        let sentinel = "0123456789abcdef";
        let modinfo = format!(
            "{sentinel}path\tblockprobe/fixtures/demo\nmod\tblockprobe/fixtures\t(devel)\t\nbuild\t-buildmode=pie\nbuild\tCGO_ENABLED=1\n{sentinel}"
        );
        let info = BuildInfo::parse(&section("go1.27.3", &modinfo)).unwrap();
        assert_eq!(info.go_version, "go1.27.3");
        assert_eq!(info.main_path.as_deref(), Some("blockprobe/fixtures/demo"));
        assert_eq!(info.setting("-buildmode"), Some("pie"));
        assert!(info.cgo_enabled());
    }

    #[test]
    fn rejects_missing_old_and_truncated() {
        assert_eq!(BuildInfo::parse(b"hello"), Err(BuildInfoError::Missing));
        let mut old = section("go1.17", "");
        old[15] = 0;
        assert_eq!(BuildInfo::parse(&old), Err(BuildInfoError::TooOld));
        let full = section("go1.27.3", "x");
        for cut in 0..full.len() {
            // Never panics; short inputs are errors.
            let _ = BuildInfo::parse(&full[..cut]);
        }
    }
}
