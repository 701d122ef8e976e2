//! Finding the Go processes on the host: /proc, polled; a process is known by its pid, its start
//! time (a reused pid is a new process) and its executable's inode (an exec changes it).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use regex::Regex;
use rustc_hash::FxHashMap;

use super::DaemonError;

/// Which processes to watch: those matching any rule (every Go process without rules).
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    rules: Vec<(Field, Regex)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Comm,
    Path,
}

impl Matcher {
    /// From `--match comm|path REGEX` pairs, flattened (`["comm", "^api$", "path", "/srv/"]`).
    pub fn new(pairs: &[String]) -> Result<Self, DaemonError> {
        let mut rules = Vec::new();
        for pair in pairs.chunks(2) {
            let [field, re] = pair else {
                return Err(DaemonError::Match(format!(
                    "{pair:?}: expected `--match comm|path REGEX`"
                )));
            };
            let field = match field.as_str() {
                "comm" => Field::Comm,
                "path" => Field::Path,
                other => {
                    return Err(DaemonError::Match(format!(
                        "{other:?}: expected `comm` or `path` before the regex"
                    )));
                }
            };
            let re = Regex::new(re).map_err(|e| DaemonError::Match(format!("{re:?}: {e}")))?;
            rules.push((field, re));
        }
        Ok(Self { rules })
    }

    pub fn matches(&self, comm: &str, path: &str) -> bool {
        self.rules.is_empty()
            || self.rules.iter().any(|(f, re)| match f {
                Field::Comm => re.is_match(comm),
                Field::Path => re.is_match(path),
            })
    }
}

/// A process image: what changes when the pid is reused (start time) or execs (executable,
/// and the exec's own mark: see `procfs::exec_mark`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Image {
    /// Field 22 of /proc/PID/stat (clock ticks since boot).
    pub start: u64,
    /// Field 28 (`startstack`), new at each exec.
    pub exec: u64,
    pub dev: u64,
    pub ino: u64,
}

/// The image `pid` runs now; None for kernel threads and processes gone or not ours to read.
pub fn image(pid: u32) -> Option<Image> {
    let meta = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(Image {
        start: crate::procfs::stat_field(&stat, 22)?,
        exec: crate::procfs::stat_field(&stat, 28).unwrap_or(0),
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// Every process id in /proc.
pub fn pids() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Whether the ELF file at `path` is a Go program (it has the `.go.buildinfo` section every
/// Go linker since 1.13 writes, kept by `-s -w`). Only the headers are read, not the file.
pub fn is_go_binary(path: &Path) -> bool {
    use object::{Object, ObjectSection};
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let cache = object::ReadCache::new(file);
    object::File::parse(&cache).is_ok_and(|f| {
        f.sections()
            .any(|s| s.name().is_ok_and(|n| n == ".go.buildinfo"))
    })
}

/// Verdicts on executables by (device, inode): each binary is read once, however many
/// processes run it.
#[derive(Default)]
pub struct GoCache {
    by_file: FxHashMap<(u64, u64), bool>,
}

/// Most executables remembered.
const MAX_CACHED: usize = 4096;

impl GoCache {
    pub fn is_go(&mut self, pid: u32, img: &Image) -> bool {
        if let Some(&v) = self.by_file.get(&(img.dev, img.ino)) {
            return v;
        }
        let v = is_go_binary(Path::new(&format!("/proc/{pid}/exe")));
        if self.by_file.len() >= MAX_CACHED {
            self.by_file.clear();
        }
        self.by_file.insert((img.dev, img.ino), v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_rules() {
        let m =
            Matcher::new(&["comm".into(), "^api".into(), "path".into(), "/srv/".into()]).unwrap();
        assert!(m.matches("api-server", "/usr/bin/x"));
        assert!(m.matches("x", "/srv/web"));
        assert!(!m.matches("web", "/usr/bin/web"));
        assert!(Matcher::default().matches("anything", "/any"));
        assert!(Matcher::new(&["exe".into(), "x".into()]).is_err());
        assert!(Matcher::new(&["comm".into(), "(".into()]).is_err());
        assert!(Matcher::new(&["comm".into()]).is_err());
    }

    #[test]
    fn this_process_is_found_and_is_not_go() {
        // A Go binary, if the fixtures are built (as CI builds them before the tests).
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures");
        let built = std::fs::read_dir(&root).into_iter().flatten().flatten();
        if let Some(go) = built
            .map(|e| e.path().join("stripped/leaky"))
            .find(|p| p.exists())
        {
            assert!(is_go_binary(&go), "{}", go.display());
        }
        assert!(!is_go_binary(Path::new("/nonexistent")));
        let me = std::process::id();
        assert!(pids().contains(&me));
        let img = image(me).expect("our own image");
        assert_eq!(image(me), Some(img));
        assert!(!GoCache::default().is_go(me, &img));
    }
}
