//! Per-M cursors over a generation's event batches and the min-heap the reader keeps them in,
//! ported from Go 1.27's `internal/trace/batchcursor.go`.

use std::cmp::Ordering;

use super::base::{BaseEvent, Frequency, MAX_TIME, ThreadID, Time, Timestamp, TraceError};
use super::batch::{Batch, uvarint};
use super::spec;

/// batchcursor.go: batchCursor, the read position in one M's batches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchCursor {
    /// The M whose batches this walks.
    pub m: ThreadID,
    /// The time of the last event read (0 at the start of a batch).
    pub last_ts: Time,
    /// Next index into the batches.
    pub idx: usize,
    /// Next offset into the current batch's data.
    pub data_off: usize,
    /// The last event read.
    pub ev: BaseEvent,
}

impl BatchCursor {
    /// A cursor at the start of `m`'s batches.
    pub fn new(m: ThreadID) -> BatchCursor {
        BatchCursor {
            m,
            ..BatchCursor::default()
        }
    }

    /// batchCursor.nextEvent: reads the next event of `batches` into `self.ev`. Returns false
    /// when the batches are exhausted.
    pub fn next_event(&mut self, batches: &[Batch], freq: Frequency) -> Result<bool, TraceError> {
        // Batches should generally always have at least one event, but let's be defensive
        // about that and accept empty batches.
        while batches
            .get(self.idx)
            .is_some_and(|b| b.data.len() <= self.data_off)
        {
            self.idx += 1;
            self.data_off = 0;
            self.last_ts = 0;
        }
        // Have we reached the end of the batches?
        let Some(batch) = batches.get(self.idx) else {
            return Ok(false);
        };
        // Initialize lastTs if it hasn't been yet.
        if self.last_ts == 0 {
            self.last_ts = freq.mul(batch.time);
        }
        // Read an event out.
        let data = batch.data.get(self.data_off..).unwrap_or(&[]);
        let (n, tsdiff) = read_timed_base_event(data, &mut self.ev)?;
        // Complete the timestamp from the cursor's last timestamp (Go's arithmetic wraps).
        self.ev.time = freq.mul(tsdiff).wrapping_add(self.last_ts);

        // Move the cursor's timestamp forward.
        self.last_ts = self.ev.time;

        // Move the cursor forward.
        self.data_off += n;
        Ok(true)
    }

    /// batchCursor.compare: orders cursors by the time of their current event.
    pub fn compare(&self, other: &BatchCursor) -> Ordering {
        self.ev.time.cmp(&other.ev.time)
    }
}

/// batchcursor.go: readTimedBaseEvent, decodes the event at the start of `b` into `e` without
/// interpreting its arguments, checking that it is a timed event (not a structural one, which
/// cannot appear in a plain event batch). Returns the bytes read and the timestamp delta.
///
/// As in Go, the full table ([`spec::all_specs`]) is used, whatever the trace's version.
pub fn read_timed_base_event(
    b: &[u8],
    e: &mut BaseEvent,
) -> Result<(usize, Timestamp), TraceError> {
    // Get the event type.
    let Some(&typ) = b.first() else {
        return Err(TraceError::malformed("found empty event data"));
    };
    let Some(spec) = spec::spec(typ) else {
        return Err(TraceError::Malformed(format!(
            "found invalid event type: {typ}"
        )));
    };
    e.typ = typ;

    // Get spec.
    if spec.args.is_empty() || !spec.is_timed_event {
        return Err(TraceError::Malformed(format!(
            "found event without a timestamp: type={typ}"
        )));
    }
    let mut n = 1;

    // Read timestamp diff.
    let (ts, nb) = uvarint(b.get(n..).unwrap_or(&[]));
    if nb <= 0 {
        return Err(TraceError::malformed("found invalid uvarint for timestamp"));
    }
    n += nb.unsigned_abs();

    // Read the rest of the arguments. (Unlike Go, unused slots are cleared, so no value of a
    // previous event lingers in the extra space.)
    e.args = [0; super::base::MAX_ARGS];
    for i in 0..spec.args.len() - 1 {
        let (arg, nb) = uvarint(b.get(n..).unwrap_or(&[]));
        if nb <= 0 {
            return Err(TraceError::malformed("found invalid uvarint"));
        }
        let Some(slot) = e.args.get_mut(i) else {
            return Err(TraceError::Malformed(format!(
                "event type {typ} has more arguments than a timed event can hold"
            )));
        };
        *slot = arg;
        n += nb.unsigned_abs();
    }
    Ok((n, ts))
}

/// batchcursor.go: heapInsert, adds `bc` to the min-heap ordered by event time.
pub fn heap_insert(heap: &mut Vec<BatchCursor>, bc: BatchCursor) {
    // Add the cursor to the end of the heap.
    heap.push(bc);

    // Sift the new entry up to the right place.
    let last = heap.len() - 1;
    heap_sift_up(heap, last);
}

/// batchcursor.go: heapUpdate, restores the heap after the cursor at `i` moved on.
pub fn heap_update(heap: &mut [BatchCursor], i: usize) {
    if i >= heap.len() {
        return;
    }
    // Try to sift up.
    if heap_sift_up(heap, i) != i {
        return;
    }
    // Try to sift down, if sifting up failed.
    heap_sift_down(heap, i);
}

/// batchcursor.go: heapRemove, removes the cursor at `i` and returns it.
pub fn heap_remove(heap: &mut Vec<BatchCursor>, mut i: usize) -> Option<BatchCursor> {
    if i >= heap.len() {
        return None;
    }
    // Sift index i up to the root, ignoring actual values.
    while i > 0 {
        heap.swap((i - 1) / 2, i);
        i = (i - 1) / 2;
    }
    // Swap the root with the last element, then remove it.
    let removed = heap.swap_remove(0);
    // Sift the root down.
    heap_sift_down(heap, 0);
    Some(removed)
}

fn time_at(heap: &[BatchCursor], i: usize) -> Option<Time> {
    heap.get(i).map(|bc| bc.ev.time)
}

fn heap_sift_up(heap: &mut [BatchCursor], mut i: usize) -> usize {
    while i > 0 {
        let parent = (i - 1) / 2;
        match (time_at(heap, parent), time_at(heap, i)) {
            (Some(p), Some(c)) if p > c => heap.swap(parent, i),
            _ => break,
        }
        i = parent;
    }
    i
}

fn heap_sift_down(heap: &mut [BatchCursor], mut i: usize) -> usize {
    loop {
        let m = min3(heap, i, 2 * i + 1, 2 * i + 2);
        if m == i {
            // Heap invariant already applies.
            break;
        }
        heap.swap(i, m);
        i = m;
    }
    i
}

fn min3(b: &[BatchCursor], i0: usize, i1: usize, i2: usize) -> usize {
    let mut min_idx = i0;
    let mut min_t = time_at(b, i0).unwrap_or(MAX_TIME);
    for i in [i1, i2] {
        if let Some(t) = time_at(b, i)
            && t < min_t
        {
            min_t = t;
            min_idx = i;
        }
    }
    min_idx
}

#[cfg(test)]
mod tests {
    use super::super::batch::test_writer::event;
    use super::*;

    fn batch(m: ThreadID, time: u64, events: &[Vec<u8>]) -> Batch {
        Batch {
            m,
            generation: 1,
            time,
            data: events.concat(),
            exp: 0,
        }
    }

    #[test]
    fn walks_events_across_batches() {
        let freq = Frequency(2.0); // 2 ns per tick
        let batches = vec![
            batch(
                1,
                100,
                &[
                    event(spec::EV_PROC_START, &[5, 2, 1]),
                    event(spec::EV_GO_STATUS, &[1, 7, 1, 2]),
                ],
            ),
            batch(1, 200, &[]),
            batch(1, 300, &[event(spec::EV_PROC_STOP, &[10])]),
        ];
        let mut c = BatchCursor::new(1);
        assert!(c.next_event(&batches, freq).unwrap());
        assert_eq!((c.ev.typ, c.ev.time), (spec::EV_PROC_START, 210));
        assert_eq!(c.ev.args, [2, 1, 0, 0]);
        assert!(c.next_event(&batches, freq).unwrap());
        assert_eq!((c.ev.typ, c.ev.time), (spec::EV_GO_STATUS, 212));
        assert_eq!(c.ev.args, [7, 1, 2, 0]);
        assert!(c.next_event(&batches, freq).unwrap());
        assert_eq!((c.ev.typ, c.ev.time), (spec::EV_PROC_STOP, 620));
        assert_eq!(c.ev.args, [0; 4], "stale args are cleared");
        assert!(!c.next_event(&batches, freq).unwrap());
        assert!(!c.next_event(&batches, freq).unwrap());
    }

    #[test]
    fn rejects_bad_events() {
        let mut e = BaseEvent::default();
        for bad in [
            vec![],
            vec![spec::EV_STRING, 1, 1],     // structural
            vec![spec::EV_NONE],             // no spec
            vec![200],                       // beyond the table
            vec![spec::EV_PROC_START, 1, 2], // missing an argument
            vec![spec::EV_PROC_STOP],        // missing the timestamp
            vec![
                spec::EV_PROC_STOP,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0x7f,
            ],
        ] {
            let err = read_timed_base_event(&bad, &mut e).unwrap_err();
            assert!(matches!(err, TraceError::Malformed(_)), "{bad:?}: {err}");
        }
        // Experimental events decode with the full table.
        let ok = event(spec::EV_SPAN_FREE, &[3, 99]);
        assert_eq!(read_timed_base_event(&ok, &mut e).unwrap(), (3, 3));
        assert_eq!(e.args[0], 99);
    }

    fn cursor_at(m: ThreadID, time: Time) -> BatchCursor {
        let mut c = BatchCursor::new(m);
        c.ev.time = time;
        c
    }

    fn is_heap(h: &[BatchCursor]) -> bool {
        (1..h.len()).all(|i| h[(i - 1) / 2].ev.time <= h[i].ev.time)
    }

    #[test]
    fn heap_operations() {
        let mut h = vec![];
        for (m, t) in [(1, 50), (2, 10), (3, 40), (4, 30), (5, 20), (6, 60)] {
            heap_insert(&mut h, cursor_at(m, t));
            assert!(is_heap(&h));
        }
        assert_eq!(h[0].m, 2);
        // Move the root forward in time.
        h[0].ev.time = 45;
        heap_update(&mut h, 0);
        assert!(is_heap(&h));
        assert_eq!(h[0].m, 5);
        // Move a leaf backwards.
        let last = h.len() - 1;
        h[last].ev.time = 1;
        heap_update(&mut h, last);
        assert!(is_heap(&h));
        assert_eq!(h[0].ev.time, 1);
        heap_update(&mut h, 99); // out of range: no-op
        // Remove from the middle, then drain in order.
        let removed = heap_remove(&mut h, 2).unwrap();
        assert!(is_heap(&h));
        assert_eq!(h.len(), 5);
        let mut times = vec![removed.ev.time];
        while let Some(c) = heap_remove(&mut h, 0) {
            assert!(is_heap(&h));
            times.push(c.ev.time);
        }
        times[1..].windows(2).for_each(|w| assert!(w[0] <= w[1]));
        assert!(heap_remove(&mut h, 0).is_none());
        assert_eq!(times.len(), 6);
    }
}
