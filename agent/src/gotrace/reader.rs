//! The trace reader, ported from Go 1.27.3's `internal/trace/reader.go`: it reads one
//! generation at a time, merges the per-M batches through the ordering state machine, and
//! yields [`Event`]s in Go's order.
//!
//! The algorithm (reader.go: ReadEvent):
//! 1. Read all the batches of the next generation, and its strings, stacks, CPU samples and
//!    clock data (`generation.rs`).
//! 2. Keep a cursor per M over its batches, in a min-heap by the time of its next event.
//! 3. Try to advance the event of the earliest cursor; if the ordering can't take it, sort the
//!    heap and try the others in time order, taking the first that advances.
//! 4. When the cursors are exhausted, go to 1. A Sync event starts each generation, and one
//!    ends the trace.
//!
//! Unlike Go's reader, a trace cut off inside a generation is not an error: every complete
//! generation is yielded, then the end-of-trace Sync, then `Ok(None)`, and
//! [`Reader::warning`] says what was lost.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{Read, Write};

use super::base::{BaseEvent, CpuSample, MAX_ARGS, Time, TraceError};
use super::batch::PosReader;
use super::cursor::{BatchCursor, heap_insert, heap_remove, heap_update};
use super::event::Event;
use super::generation::{Generation, SpilledBatch, read_generation, read_generation_with_spill};
use super::gosort::sort_func;
use super::order::{Ordering, SchedCtx};
use super::spec;
use super::version::{Version, read_header};

/// reader.go: Reader, reads a trace and produces its events, validated and in order.
///
/// Provided the trace is not empty, the first event is a Sync, and so is the last.
pub struct Reader<R: Read> {
    version: Version,
    r: PosReader<R>,
    last_ts: Time,
    generation: Option<Generation>,
    frontier: Vec<BatchCursor>,
    cpu_samples: VecDeque<CpuSample>,
    order: Ordering,
    syncs: u64,
    /// Go 1.26+: the error reading the next generation, reported after a Sync.
    read_gen_err: Option<TraceError>,
    done: bool,
    /// Before Go 1.26: the first batch of the next generation, read while looking for the end
    /// of the current one.
    spill: Option<SpilledBatch>,
    /// Before Go 1.26: the error met reading the next generation.
    spill_err: Option<TraceError>,
    /// Whether the Sync before `spill_err` was emitted.
    spill_err_sync: bool,
    /// Set when the trace ended inside a generation.
    warning: Option<String>,
    /// An error returned already, returned again on later calls (as Go's reader does).
    failed: Option<String>,
    /// Generations installed so far.
    generations: u64,
    /// The number of the last generation installed.
    last_generation: Option<u64>,
}

impl<R: Read> Reader<R> {
    /// reader.go: NewReader, reads the header. Traces older than Go 1.22 (the v1 format) are
    /// [`TraceError::UnsupportedVersion`].
    pub fn new(r: R) -> Result<Self, TraceError> {
        let mut r = PosReader::new(r);
        let version = read_header(&mut r)?;
        Ok(Reader {
            version,
            r,
            last_ts: 0,
            generation: None,
            frontier: Vec::new(),
            cpu_samples: VecDeque::new(),
            order: Ordering::new(version),
            syncs: 0,
            read_gen_err: None,
            done: false,
            spill: None,
            spill_err: None,
            spill_err_sync: false,
            warning: None,
            failed: None,
            generations: 0,
            last_generation: None,
        })
    }

    /// The trace's format version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Set when the trace ended inside a generation: every complete generation was yielded,
    /// then reading stopped. Says which generation was lost and where the input ended.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    /// The number of bytes of the trace consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.r.pos()
    }

    /// The number of generations read so far.
    pub fn generations(&self) -> u64 {
        self.generations
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        self.r.get_ref()
    }

    /// reader.go: ReadEvent, the next event; `Ok(None)` at the end of the trace.
    ///
    /// After an error, every later call fails too.
    pub fn read_event(&mut self) -> Result<Option<Event>, TraceError> {
        if let Some(msg) = &self.failed {
            return Err(TraceError::Malformed(msg.clone()));
        }
        match self.read_event_inner() {
            Ok(Some(mut ev)) => {
                // Go's deferred fix-up: validate the event's table IDs, and make timestamps
                // strictly increasing.
                if let Err(e) = ev.validate_table_ids() {
                    return Err(self.fail(e));
                }
                if ev.base.time <= self.last_ts {
                    ev.base.time = self.last_ts.wrapping_add(1);
                }
                self.last_ts = ev.base.time;
                Ok(Some(ev))
            }
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn fail(&mut self, e: TraceError) -> TraceError {
        self.failed = Some(e.to_string());
        e
    }

    /// ReadEvent without the deferred fix-up.
    fn read_event_inner(&mut self) -> Result<Option<Event>, TraceError> {
        // Return only the end if we're done.
        if self.done {
            return Ok(None);
        }
        // Consume any events in the ordering first.
        if let Some(ev) = self.order.next_event() {
            return Ok(Some(ev));
        }

        // Check if we need to refresh the generation.
        if self.frontier.is_empty() && self.cpu_samples.is_empty() {
            if self.version < Version::Go126 {
                return self.next_gen_with_spill();
            }
            if let Some(err) = self.read_gen_err.take() {
                return self.stop_with(err);
            }
            return match read_generation(&mut self.r, self.version) {
                Ok(generation) => self.install_gen(generation),
                Err(err) => {
                    // Before returning an error, emit the Sync event for the current
                    // generation and queue up the error for the next call.
                    self.read_gen_err = Some(err);
                    self.generation = None;
                    Ok(Some(self.sync(None, self.last_ts)))
                }
            };
        }

        // Inject a CPU sample if it comes next.
        if let Some(s) = self.cpu_samples.front().copied()
            && self.frontier.first().is_none_or(|bc| s.time < bc.ev.time)
        {
            self.cpu_samples.pop_front();
            return Ok(Some(self.cpu_sample_event(s)));
        }

        // Try to advance the head of the frontier, which should have the minimum timestamp.
        // This should be by far the most common case.
        if self.frontier.is_empty() {
            return Err(TraceError::Malformed(format!(
                "broken trace: frontier is empty:\n[gen={}]\n\n{}\n{}\n",
                self.generation_number(),
                self.dump_frontier(),
                self.order.dump()
            )));
        }
        if !self.try_advance(0)? {
            // Try to advance the rest of the frontier, in timestamp order. To do this, sort
            // the min-heap (a sorted min-heap is still a min-heap) and try the others in
            // order. This path should be rare.
            sort_func(&mut self.frontier, |a, b| a.compare(b));
            let mut success = false;
            for i in 1..self.frontier.len() {
                if self.try_advance(i)? {
                    success = true;
                    break;
                }
            }
            if !success {
                return Err(TraceError::Malformed(format!(
                    "broken trace: failed to advance: frontier:\n[gen={}]\n\n{}\n{}\n",
                    self.generation_number(),
                    self.dump_frontier(),
                    self.order.dump()
                )));
            }
        }

        // Pick off the next event on the queue. At this point, one must exist.
        match self.order.next_event() {
            Some(ev) => Ok(Some(ev)),
            None => Err(TraceError::malformed(
                "invariant violation: advance successful, but queue is empty",
            )),
        }
    }

    /// reader.go: tryAdvance, offers the event of frontier cursor `i` to the ordering and,
    /// if it advanced, moves the cursor on (or drops it when its batches are exhausted).
    fn try_advance(&mut self, i: usize) -> Result<bool, TraceError> {
        let Some(generation) = &self.generation else {
            return Ok(false);
        };
        let Some(bc) = self.frontier.get_mut(i) else {
            return Ok(false);
        };
        let table = &generation.ev_table;
        if !self
            .order
            .advance(&mut bc.ev, table, bc.m, generation.generation)?
        {
            return Ok(false);
        }
        // Refresh the cursor's event.
        let batches = generation.batches.get(&bc.m).map_or(&[][..], Vec::as_slice);
        if bc.next_event(batches, generation.freq())? {
            // If we successfully refreshed, update the heap.
            heap_update(&mut self.frontier, i);
        } else {
            // There's nothing else to read. Delete this cursor from the frontier.
            heap_remove(&mut self.frontier, i);
        }
        Ok(true)
    }

    /// reader.go: nextGenWithSpill, reads the next generation of a trace before Go 1.26,
    /// handling the batch spilled from the previous one.
    fn next_gen_with_spill(&mut self) -> Result<Option<Event>, TraceError> {
        if let Some(err) = self.spill_err.take() {
            if self.spill_err_sync {
                return self.stop_with(err);
            }
            self.spill_err = Some(err);
            self.spill_err_sync = true;
            return Ok(Some(self.sync(None, self.last_ts)));
        }
        if self.generation.is_some() && self.spill.is_none() {
            // There's a generation from the last read, nothing left in the frontier, and no
            // spilled batch: there's no further generation. Emit the final Sync event.
            self.done = true;
            return Ok(Some(self.sync(None, self.last_ts)));
        }

        // Read the next generation.
        let err = match read_generation_with_spill(&mut self.r, self.spill.take(), self.version) {
            Ok(Some((generation, spill, spill_err))) => {
                self.spill = spill;
                // The error was met in the first batch of the next generation.
                self.spill_err = spill_err.map(|e| match e {
                    TraceError::Truncated(msg) => TraceError::Truncated(format!(
                        "generation {} is incomplete: {msg}",
                        generation.generation.wrapping_add(1)
                    )),
                    e => e,
                });
                return self.install_gen(Some(generation));
            }
            // No batch at all after the header (Go: "no frequency event found").
            Ok(None) => {
                TraceError::Truncated("the trace has no generation after its header".into())
            }
            Err(err) => err,
        };
        self.generation = None;
        self.spill_err = Some(err);
        self.spill_err_sync = true;
        Ok(Some(self.sync(None, self.last_ts)))
    }

    /// reader.go: installGen, installs a new generation and returns its Sync event; with no
    /// generation, the trace is done and this is the final Sync.
    fn install_gen(&mut self, generation: Option<Generation>) -> Result<Option<Event>, TraceError> {
        let Some(generation) = generation else {
            // Emit the final sync event.
            self.generation = None;
            self.done = true;
            if self.generations == 0 {
                // Go reads this as an empty trace, but the runtime always writes at least
                // one generation: the trace was cut right after its header.
                self.warning = Some(format!(
                    "trace truncated: the trace has no generation after its header (the \
                     trace ends at byte {}); no complete generation was read",
                    self.r.pos()
                ));
            }
            return Ok(Some(self.sync(None, self.last_ts)));
        };
        self.generations += 1;
        self.last_generation = Some(generation.generation);
        // Reset the CPU samples cursor.
        self.cpu_samples = generation.cpu_samples.iter().copied().collect();
        // Reset the frontier.
        for &m in &generation.batch_ms {
            let batches = generation.batches.get(&m).map_or(&[][..], Vec::as_slice);
            let mut bc = BatchCursor::new(m);
            if !bc.next_event(batches, generation.freq())? {
                // Turns out there aren't actually any events in these batches.
                continue;
            }
            heap_insert(&mut self.frontier, bc);
        }
        let table = generation.ev_table.clone();
        let ts = generation.freq().mul(generation.min_ts);
        self.generation = Some(generation);
        // Always emit a sync event at the beginning of the generation.
        Ok(Some(self.sync(Some(table), ts)))
    }

    /// The next Sync event (Go: `r.syncs++; syncEvent(table, ts, r.syncs)`).
    fn sync(&mut self, table: Option<std::sync::Arc<super::base::EvTable>>, ts: Time) -> Event {
        self.syncs += 1;
        Event::sync_event(table, ts, self.syncs)
    }

    /// Ends reading with `err`: a truncation becomes the warning and a clean end, anything
    /// else is returned.
    fn stop_with(&mut self, err: TraceError) -> Result<Option<Event>, TraceError> {
        let TraceError::Truncated(msg) = err else {
            return Err(err);
        };
        let mut w = format!(
            "trace truncated: {msg} (the trace ends at byte {})",
            self.r.pos()
        );
        match self.last_generation {
            Some(g) => {
                let _ = write!(w, "; events up to generation {g} were read");
            }
            None => w.push_str("; no complete generation was read"),
        }
        self.warning = Some(w);
        self.done = true;
        Ok(None)
    }

    /// base.go: cpuSample.asEvent.
    fn cpu_sample_event(&self, s: CpuSample) -> Event {
        let mut base = BaseEvent {
            typ: spec::EV_CPU_SAMPLE,
            time: s.time,
            args: [0; MAX_ARGS],
        };
        base.args[0] = s.stack;
        let ctx = SchedCtx {
            g: s.g,
            p: s.p,
            m: s.m,
        };
        match &self.generation {
            Some(g) => Event::new(&g.ev_table, ctx, base),
            None => Event {
                table: None,
                ctx,
                base,
            },
        }
    }

    fn generation_number(&self) -> u64 {
        self.generation.as_ref().map_or(0, |g| g.generation)
    }

    /// reader.go: dumpFrontier.
    fn dump_frontier(&self) -> String {
        let mut sb = String::new();
        for bc in &self.frontier {
            let spec = spec::spec_or_empty(bc.ev.typ);
            let _ = write!(sb, "M {} [{} time={}", bc.m, spec.name, bc.ev.time);
            for (arg, v) in spec.args.iter().skip(1).zip(bc.ev.args) {
                let _ = write!(sb, " {arg}={v}");
            }
            sb.push_str("]\n");
        }
        sb
    }
}

/// What [`dump`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// Events written (Sync events included).
    pub events: u64,
    /// Generations read.
    pub generations: u64,
    /// Bytes of the trace consumed.
    pub bytes: u64,
    /// Set when the trace was cut off inside a generation ([`Reader::warning`]).
    pub warning: Option<String>,
}

/// Writes every event of the trace `r` to `out`, one `Display` per event followed by a
/// newline: exactly what `go tool trace -d=parsed` prints (cmd/trace: debugProcessedEvents).
pub fn dump(r: impl Read, out: &mut impl Write) -> Result<DumpStats, TraceError> {
    let mut reader = Reader::new(r)?;
    let mut stats = DumpStats::default();
    let mut line = String::new();
    while let Some(ev) = reader.read_event()? {
        line.clear();
        let _ = writeln!(line, "{ev}");
        out.write_all(line.as_bytes()).map_err(TraceError::Io)?;
        stats.events += 1;
    }
    stats.generations = reader.generations();
    stats.bytes = reader.bytes_read();
    stats.warning = reader.warning().map(str::to_string);
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compares [`dump`] with `go tool trace -d=parsed` on real traces: for every `X.bin` in
    /// `$GOTRACE_COMPARE_DIR` with a `X.parsed` next to it (Go 1.27.3's output), the dump must
    /// be byte-identical. Writes `X.ours` for inspection. Run with
    /// `GOTRACE_COMPARE_DIR=dir cargo test --release -p blockprobe --lib compare_with_go -- --ignored --nocapture`.
    #[test]
    #[ignore = "needs traces and Go's output in $GOTRACE_COMPARE_DIR"]
    fn compare_with_go() {
        let Ok(dir) = std::env::var("GOTRACE_COMPARE_DIR") else {
            panic!("set GOTRACE_COMPARE_DIR");
        };
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "bin"))
            .collect();
        names.sort();
        let mut failed = vec![];
        for bin in names {
            let want_path = bin.with_extension("parsed");
            let Ok(want) = std::fs::read(&want_path) else {
                continue;
            };
            let f = std::io::BufReader::new(std::fs::File::open(&bin).unwrap());
            let mut got = Vec::new();
            let res = dump(f, &mut got);
            std::fs::write(bin.with_extension("ours"), &got).unwrap();
            let go_err = std::fs::read_to_string(bin.with_extension("err")).unwrap_or_default();
            let same = got == want;
            let lines = want.iter().filter(|&&b| b == b'\n').count();
            println!(
                "{}: {} ({lines} lines of Go output){}{}",
                bin.display(),
                if same { "IDENTICAL" } else { "DIFFERENT" },
                match &res {
                    Ok(s) => format!(", ours: {} events, warning: {:?}", s.events, s.warning),
                    Err(e) => format!(", ours: error {e}"),
                },
                if go_err.is_empty() {
                    String::new()
                } else {
                    format!(", Go: {}", go_err.trim())
                },
            );
            if !same {
                let (g, w) = (
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want),
                );
                if let Some((i, (a, b))) = g
                    .lines()
                    .zip(w.lines())
                    .enumerate()
                    .find(|(_, (a, b))| a != b)
                {
                    println!(
                        "  first difference at line {}:\n  ours: {a}\n  go:   {b}",
                        i + 1
                    );
                } else {
                    println!(
                        "  ours has {} lines, Go's {}",
                        g.lines().count(),
                        w.lines().count()
                    );
                }
                failed.push(bin);
            }
        }
        assert!(failed.is_empty(), "different: {failed:?}");
    }
}
