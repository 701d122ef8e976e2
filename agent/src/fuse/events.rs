//! The probes' side of `blockprobe fuse`: an NDJSON event stream written by `attach --events`
//! or `run --events` (see `crate::events`), replayed into each goroutine's last park and the
//! transitions for clock alignment.

use std::io::BufRead;

use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::clock::{Stamp, Transition};
use super::join::ProbeView;
use crate::report::{Hex, Text};

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("reading the event stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("event stream line {line}: {msg}")]
    Bad { line: u64, msg: String },
    #[error("the event stream has no events")]
    Empty,
}

/// One line of the stream, the fields fusion needs.
#[derive(Debug, Deserialize)]
struct Line {
    ts_ns: u64,
    event: String,
    #[serde(default)]
    goid: Option<u64>,
    #[serde(default)]
    tid: Option<u32>,
    #[serde(default)]
    wait_reason: Option<String>,
    #[serde(default)]
    object_kind: Option<String>,
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    wait_chans: Vec<String>,
    #[serde(default)]
    source: Option<String>,
}

/// A goroutine's last park, if nothing readied it since.
#[derive(Debug, Clone)]
pub struct Park {
    pub ts_ns: u64,
    pub source: &'static str,
    pub tid: Option<u32>,
    pub wait_reason: Text,
    pub object_kind: &'static str,
    pub object: Option<Hex>,
    pub wait_chans: Vec<Hex>,
}

impl Park {
    /// The probes' view of this park.
    pub fn view(&self) -> ProbeView {
        ProbeView {
            source: self.source,
            wait_reason: self.wait_reason.clone(),
            object_kind: self.object_kind,
            object: self.object,
            wait_chans: self.wait_chans.clone(),
            blocked_since_mono_ns: Some(self.ts_ns as i64),
            blocked_before_attach: false,
            tid: self.tid,
            thread_state: None,
            native_frames: Vec::new(),
        }
    }
}

/// The stream replayed.
#[derive(Debug, Default)]
pub struct ProbeEvents {
    /// Goroutines parked at the stream's end.
    pub parked: FxHashMap<u64, Park>,
    /// Exact transitions (uprobe events), for aligning clocks.
    pub stamps: Vec<Stamp>,
    pub events: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

fn hex(s: &str) -> Option<Hex> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16)
        .ok()
        .filter(|&v| v != 0)
        .map(Hex)
}

/// The object kinds the stream can carry (as `crate::summary::wait_object` names them).
fn kind(s: &str) -> &'static str {
    match s {
        "chan" => "chan",
        "select" => "select",
        "sema" => "sema",
        "mutex" => "mutex",
        "rwmutex" => "rwmutex",
        "waitgroup" => "waitgroup",
        "cond" => "cond",
        "other" => "other",
        _ => "none",
    }
}

/// Stamps kept at most.
const MAX_STAMPS: usize = 1 << 20;

/// Reads an NDJSON event stream. Blank lines are skipped; a line that is not an event is an
/// error naming the line (a stream cut mid-line at its very end is tolerated).
pub fn read(r: impl BufRead) -> Result<ProbeEvents, EventsError> {
    let mut out = ProbeEvents::default();
    let mut lines = r.lines().peekable();
    let mut n = 0u64;
    while let Some(line) = lines.next() {
        let line = line?;
        n += 1;
        if line.trim().is_empty() {
            continue;
        }
        let ev: Line = match serde_json::from_str(&line) {
            Ok(ev) => ev,
            // The writer was killed mid-line: the last line may be cut.
            Err(_) if lines.peek().is_none() => break,
            Err(e) => {
                return Err(EventsError::Bad {
                    line: n,
                    msg: e.to_string(),
                });
            }
        };
        out.events += 1;
        if out.first_ns == 0 {
            out.first_ns = ev.ts_ns;
        }
        out.last_ns = out.last_ns.max(ev.ts_ns);
        let Some(goid) = ev.goid else { continue };
        let source: &'static str = match ev.source.as_deref() {
            Some("uprobe") => "uprobe",
            _ => "scan",
        };
        // Only the uprobes' times are exact enough to align clocks with.
        let stamp = |kind| {
            (source == "uprobe").then_some(Stamp {
                goid,
                kind,
                ns: ev.ts_ns as i64,
            })
        };
        match ev.event.as_str() {
            "park" => {
                if out.stamps.len() < MAX_STAMPS {
                    out.stamps.extend(stamp(Transition::Block));
                }
                out.parked.insert(
                    goid,
                    Park {
                        ts_ns: ev.ts_ns,
                        source,
                        tid: ev.tid.filter(|&t| t != 0),
                        wait_reason: Text::from(ev.wait_reason.unwrap_or_default()),
                        object_kind: kind(ev.object_kind.as_deref().unwrap_or("")),
                        object: ev.object.as_deref().and_then(hex),
                        wait_chans: ev.wait_chans.iter().filter_map(|c| hex(c)).collect(),
                    },
                );
            }
            "ready" => {
                if out.stamps.len() < MAX_STAMPS {
                    out.stamps.extend(stamp(Transition::Unblock));
                }
                out.parked.remove(&goid);
            }
            "exit" => {
                out.parked.remove(&goid);
            }
            _ => {}
        }
    }
    if out.events == 0 {
        return Err(EventsError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_parks_and_readies() {
        let stream = r#"{"ts_ns":100,"event":"park","goid":7,"tid":12,"wait_reason":"chan receive","object_kind":"chan","object":"0xc000010000","wait_chans":["0xc000010000"],"source":"uprobe"}
{"ts_ns":150,"event":"ready","goid":7,"waker_goid":3,"source":"uprobe"}

{"ts_ns":200,"event":"park","goid":7,"tid":12,"wait_reason":"chan receive","object_kind":"chan","object":"0xc000010000","wait_chans":[],"source":"uprobe"}
{"ts_ns":210,"event":"park","goid":9,"tid":0,"wait_reason":"select","object_kind":"select","object":"0x0","wait_chans":["0xc1","0xc2"],"source":"scan"}
{"ts_ns":220,"event":"exit","goid":11,"tid":1}
{"ts_ns":230,"event":"park","goid":1"#;
        let ev = read(stream.as_bytes()).unwrap();
        assert_eq!(ev.events, 5);
        assert_eq!((ev.first_ns, ev.last_ns), (100, 220));
        let p = &ev.parked[&7];
        assert_eq!(p.ts_ns, 200);
        assert_eq!(p.object, Some(Hex(0xc000010000)));
        assert_eq!(p.source, "uprobe");
        let s = &ev.parked[&9];
        assert_eq!(s.object, None);
        assert_eq!(s.wait_chans, vec![Hex(0xc1), Hex(0xc2)]);
        assert_eq!(s.tid, None);
        // Only the uprobe's transitions are exact enough to align clocks with.
        assert_eq!(ev.stamps.len(), 3);
        assert!(read("".as_bytes()).is_err());
        let bad = "{\"ts_ns\":1}\n{\"ts_ns\":2,\"event\":\"park\"}\n";
        assert!(matches!(
            read(bad.as_bytes()),
            Err(EventsError::Bad { line: 1, .. })
        ));
    }
}
