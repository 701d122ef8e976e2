//! Tests of the generation readers, on traces built by hand with the test writer.

use super::super::batch::test_writer::{TraceWriter, event, put_uvarint};
use super::super::version::{HEADER_LEN, read_header};
use super::*;

const ALL: [Version; 4] = [
    Version::Go122,
    Version::Go123,
    Version::Go125,
    Version::Go126,
];

/// Every generation of `bytes` (after the header), as the reader would read them; stops at
/// the first error, which is returned too.
fn read_all(bytes: &[u8]) -> (Vec<Generation>, Option<TraceError>) {
    let mut r = bytes;
    let ver = read_header(&mut r).unwrap();
    let mut gens = vec![];
    if ver >= Version::Go126 {
        loop {
            match read_generation(&mut r, ver) {
                Ok(Some(g)) => gens.push(g),
                Ok(None) => return (gens, None),
                Err(e) => return (gens, Some(e)),
            }
        }
    }
    let mut spill = None;
    loop {
        match read_generation_with_spill(&mut r, spill.take(), ver) {
            Ok(Some((g, s, err))) => {
                gens.push(g);
                if err.is_some() {
                    return (gens, err);
                }
                match s {
                    Some(s) => spill = Some(s),
                    None => return (gens, None),
                }
            }
            Ok(None) => return (gens, None),
            Err(e) => return (gens, Some(e)),
        }
    }
}

/// One generation: strings, stacks, sync, CPU samples, two Ms' event batches, an
/// experimental batch (1.23+), and the end marker (1.26+).
fn write_generation(w: &mut TraceWriter, v: Version, g: u64) {
    let base = 1000 * g;
    w.strings(
        g,
        &[(1, "main.main"), (2, "/src/main.go"), (3, "chan receive")],
    );
    w.batch(
        g,
        7,
        base + 50,
        &[
            event(spec::EV_PROCS_CHANGE, &[1, 4, 1]),
            event(spec::EV_GO_BLOCK, &[2, 3, 1]),
        ]
        .concat(),
    );
    w.stacks(
        g,
        &[
            (1, &[[0x401000, 1, 2, 10], [0x402000, 1, 2, 20]]),
            (2, &[[0x401000, 1, 2, 10]]),
        ],
    );
    w.sync(v, g, base, 1_000_000_000);
    let mut cpu = vec![spec::EV_CPU_SAMPLES];
    cpu.extend(event(spec::EV_CPU_SAMPLE, &[base + 90, 7, 0, 0, 1]));
    cpu.extend(event(spec::EV_CPU_SAMPLE, &[base + 80, 8, 1, 5, 2]));
    w.batch(g, u64::MAX, base, &cpu);
    w.batch(g, 8, base + 20, &event(spec::EV_PROC_STATUS, &[1, 0, 1]));
    w.batch(g, 7, base + 60, &event(spec::EV_PROC_STOP, &[3]));
    if v >= Version::Go123 {
        w.exp_batch(1, g, 8, base + 70, b"exp data");
    }
    if v >= Version::Go126 {
        w.end_of_generation();
    }
}

fn two_generations(v: Version) -> Vec<u8> {
    let mut w = TraceWriter::new(v);
    write_generation(&mut w, v, 1);
    write_generation(&mut w, v, 2);
    w.out
}

#[test]
fn reads_generations_with_tables() {
    for v in ALL {
        let (gens, err) = read_all(&two_generations(v));
        assert!(err.is_none(), "{v}: {err:?}");
        assert_eq!(gens.len(), 2, "{v}");
        for (i, g) in gens.iter().enumerate() {
            let n = i as u64 + 1;
            assert_eq!(g.generation, n);
            assert_eq!(g.batch_ms, vec![7, 8], "{v}: Ms in order of appearance");
            assert_eq!(g.batches[&7].len(), 2);
            assert_eq!(g.batches[&8].len(), 1);
            assert_eq!(g.min_ts, 1000 * n, "{v}");
            let t = &g.ev_table;
            assert_eq!(t.freq(), Frequency(1.0));
            assert_eq!(t.strings.get(3).map(String::as_str), Some("chan receive"));
            assert_eq!(t.stacks.get(1).unwrap().pcs, vec![0x401000, 0x402000]);
            assert_eq!(
                t.pcs[&0x402000],
                StackFrame {
                    pc: 0x402000,
                    func: 1,
                    file: 2,
                    line: 20
                }
            );
            assert_eq!(t.sync.has_clock_snapshot, v >= Version::Go125);
            if v >= Version::Go125 {
                assert_eq!(t.sync.snap_time, 1000 * n + 5);
                assert_eq!(t.sync.snap_mono, 777);
                assert_eq!(
                    t.sync.snap_wall,
                    WallTime {
                        sec: 1_700_000_000,
                        nsec: 42
                    }
                );
            }
            let exp = t.exp_batches.get(&spec::ALLOC_FREE).map_or(0, Vec::len);
            assert_eq!(exp, usize::from(v >= Version::Go123));
            // CPU samples: converted, sorted, G 0 → NoGoroutine.
            let s = &g.cpu_samples;
            assert_eq!(s.len(), 2);
            assert_eq!(
                (s[0].time, s[0].m, s[0].p, s[0].g, s[0].stack),
                (1000 * n as i64 + 80, 8, 1, 5, 2)
            );
            assert_eq!((s[1].m, s[1].g), (7, NO_GOROUTINE));
            // The event batches decode.
            let mut c = BatchCursor::new(7);
            let mut seen = vec![];
            while c.next_event(&g.batches[&7], g.freq()).unwrap() {
                seen.push((c.ev.typ, c.ev.time));
            }
            let b = 1000 * n as i64;
            assert_eq!(
                seen,
                vec![
                    (spec::EV_PROCS_CHANGE, b + 51),
                    (spec::EV_GO_BLOCK, b + 53),
                    (spec::EV_PROC_STOP, b + 63),
                ]
            );
        }
    }
}

#[test]
fn truncation_at_every_byte() {
    for v in ALL {
        let full = two_generations(v);
        // Where generation 2 starts, and where its first batch's gen number ends.
        let mut w = TraceWriter::new(v);
        write_generation(&mut w, v, 1);
        let gen2_start = w.out.len();
        for cut in HEADER_LEN..full.len() {
            let (gens, err) = read_all(&full[..cut]);
            let complete: Vec<u64> = gens.iter().map(|g| g.generation).collect();
            if cut == HEADER_LEN {
                assert!(gens.is_empty() && err.is_none(), "{v} cut {cut}: {err:?}");
            } else if cut < gen2_start {
                if v >= Version::Go126 || cut < HEADER_LEN + 3 {
                    // Nothing complete; the error says truncated.
                    assert!(complete.is_empty(), "{v} cut {cut}");
                    assert!(
                        err.as_ref().is_some_and(TraceError::is_truncated),
                        "{v} cut {cut}: {err:?}"
                    );
                } else {
                    // Before 1.26 a cut on a batch boundary looks like the end of the
                    // trace; a partial generation is yielded only if it passes the checks.
                    assert!(complete.len() <= 1, "{v} cut {cut}");
                    if let Some(e) = &err {
                        assert!(e.is_truncated(), "{v} cut {cut}: {e}");
                    }
                }
            } else if cut == gen2_start {
                assert_eq!(complete, vec![1], "{v} cut {cut}");
                assert!(err.is_none(), "{v} cut {cut}: {err:?}");
            } else if v >= Version::Go126 {
                // Generation 1 is complete; generation 2 is reported truncated.
                assert_eq!(complete, vec![1], "{v} cut {cut}");
                let e = err.unwrap_or_else(|| panic!("{v} cut {cut}: no error"));
                assert!(e.is_truncated(), "{v} cut {cut}: {e}");
                // (With only its first byte read, the generation number is unknown.)
                let name = if cut == gen2_start + 1 {
                    "next generation"
                } else {
                    "generation 2"
                };
                assert!(e.to_string().contains(name), "{v} cut {cut}: {e}");
            } else if cut == gen2_start + 1 {
                // Only the type byte of generation 2's first batch: no more is known than at
                // the batch boundary, so generation 1 is checked as a final one and yielded,
                // and the cut is reported after it.
                assert_eq!(complete, vec![1], "{v} cut {cut}");
                let e = err.unwrap_or_else(|| panic!("{v} cut {cut}: no error"));
                assert!(e.is_truncated(), "{v} cut {cut}: {e}");
            } else {
                // Generation 1 is always yielded, then either a truncation error or
                // (on a batch boundary) a possibly partial generation 2.
                assert_eq!(complete.first(), Some(&1), "{v} cut {cut}");
                if let Some(e) = &err {
                    assert!(e.is_truncated(), "{v} cut {cut}: {e}");
                }
            }
        }
    }
}

#[test]
fn cut_in_next_generations_first_batch_keeps_the_previous_one() {
    // Before 1.26: a cut inside the first batch of generation 2, after its gen number.
    let v = Version::Go123;
    let full = two_generations(v);
    let mut w = TraceWriter::new(v);
    write_generation(&mut w, v, 1);
    let cut = w.out.len() + 3;
    let (gens, err) = read_all(&full[..cut]);
    assert_eq!(gens.len(), 1);
    assert!(err.is_some_and(|e| e.is_truncated()));
    // A cut inside generation 1's last batch, by contrast, loses generation 1.
    let (gens, err) = read_all(&full[..w.out.len() - 1]);
    assert!(gens.is_empty());
    let e = err.unwrap();
    assert!(
        e.is_truncated() && e.to_string().contains("generation 1 is incomplete"),
        "{e}"
    );
}

fn expect_malformed(v: Version, bytes: &[u8], needle: &str) {
    let (_, err) = read_all(bytes);
    let e = err.unwrap_or_else(|| panic!("{v}: no error, wanted {needle}"));
    assert!(matches!(e, TraceError::Malformed(_)), "{v}: {e}");
    assert!(e.to_string().contains(needle), "{v}: {e} lacks {needle}");
}

#[test]
fn corrupt_generations_are_malformed() {
    for v in ALL {
        // End generation 1: with the marker, or (before 1.26) with the start of generation
        // 2, as a bad final generation of an old trace is reported as truncated.
        let end = |w: &mut TraceWriter| {
            if v >= Version::Go126 {
                w.end_of_generation();
            } else {
                w.sync(v, 2, 10, 100);
            }
        };
        let mut w = TraceWriter::new(v);
        w.sync(v, 1, 10, 100).strings(1, &[(1, "a"), (1, "b")]);
        end(&mut w);
        expect_malformed(v, &w.out, "multiple");

        let mut w = TraceWriter::new(v);
        w.sync(v, 1, 10, 100)
            .strings(1, &[(1, "f")])
            .stacks(1, &[(1, &[[1, 1, 9, 1]])]);
        end(&mut w);
        expect_malformed(v, &w.out, "invalid file string ID 9 for stack 1");

        let mut w = TraceWriter::new(v);
        w.strings(1, &[(1, "x")]);
        end(&mut w);
        expect_malformed(v, &w.out, "no frequency event found");

        let mut w = TraceWriter::new(v);
        w.sync(v, 1, 10, 100).sync(v, 1, 10, 100);
        end(&mut w);
        expect_malformed(v, &w.out, "multiple");

        let mut w = TraceWriter::new(v);
        let mut d = vec![spec::EV_STRINGS, spec::EV_STRING, 1];
        put_uvarint(&mut d, 5000);
        w.sync(v, 1, 10, 100).batch(1, 1, 1, &d);
        end(&mut w);
        expect_malformed(v, &w.out, "invalid string size 5000");

        let mut w = TraceWriter::new(v);
        w.sync(v, 1, 10, 100)
            .batch(1, 1, 1, &[spec::EV_STRINGS, spec::EV_STRING, 1, 9, b'a']);
        end(&mut w);
        expect_malformed(v, &w.out, "failed to read full string");

        let mut w = TraceWriter::new(v);
        w.sync(v, 1, 10, 100)
            .batch(1, 1, 1, &[spec::EV_STACKS, spec::EV_STACK, 1, 200, 1]);
        end(&mut w);
        expect_malformed(v, &w.out, "invalid stack size 200");

        let mut w = TraceWriter::new(v);
        let mut d = vec![spec::EV_STACKS, spec::EV_STACK, 1, 1];
        d.extend_from_slice(&[0xff; 11]);
        w.sync(v, 1, 10, 100).batch(1, 1, 1, &d);
        end(&mut w);
        expect_malformed(v, &w.out, "overflow");

        let mut w = TraceWriter::new(v);
        w.sync(v, 1, 10, 100)
            .batch(1, 1, 1, &[spec::EV_CPU_SAMPLES, spec::EV_STRING]);
        end(&mut w);
        expect_malformed(v, &w.out, "expected CPU sample event");

        let mut w = TraceWriter::new(v);
        w.sync(v, 0, 10, 100);
        expect_malformed(v, &w.out, "invalid generation number 0");

        let mut w = TraceWriter::new(v);
        w.raw(&[spec::EV_GO_START, 1, 2]);
        expect_malformed(v, &w.out, "expected batch event, got event 16");
    }
    // Generations out of order / interleaved.
    let mut w = TraceWriter::new(Version::Go122);
    w.sync(Version::Go122, 5, 10, 100).batch(3, 1, 1, &[]);
    expect_malformed(Version::Go122, &w.out, "generations out of order");
    let mut w = TraceWriter::new(Version::Go126);
    w.sync(Version::Go126, 5, 10, 100).batch(6, 1, 1, &[]);
    expect_malformed(Version::Go126, &w.out, "interleaved");
    // A 1.25+ generation needs a clock snapshot.
    let mut w = TraceWriter::new(Version::Go125);
    w.batch(1, 1, 1, &[spec::EV_SYNC, spec::EV_FREQUENCY, 100]);
    w.sync(Version::Go125, 2, 10, 100);
    expect_malformed(Version::Go125, &w.out, "no clock snapshot event found");
    // The same checks failing on the final generation of a pre-1.26 trace mean it was cut
    // on a batch boundary: truncated.
    let mut w = TraceWriter::new(Version::Go125);
    w.batch(1, 1, 1, &[spec::EV_SYNC, spec::EV_FREQUENCY, 100]);
    let (_, err) = read_all(&w.out);
    let e = err.unwrap();
    assert!(
        e.is_truncated() && e.to_string().contains("no clock snapshot"),
        "{e}"
    );
    let mut w = TraceWriter::new(Version::Go122);
    w.sync(Version::Go122, 1, 10, 100)
        .strings(1, &[(1, "f")])
        .stacks(1, &[(1, &[[1, 1, 9, 1]])]);
    let (_, err) = read_all(&w.out);
    let e = err.unwrap();
    assert!(
        e.is_truncated() && e.to_string().contains("generation 1 is incomplete"),
        "{e}"
    );
    // An old trace's final generation cut before its string/stack tables (which the
    // runtime writes last) is truncated too; with the tables it is complete.
    let mut w = TraceWriter::new(Version::Go123);
    w.sync(Version::Go123, 1, 10, 100);
    w.batch(1, 1, 1, &event(spec::EV_GO_BLOCK, &[1, 3, 1]));
    let (gens, err) = read_all(&w.out);
    let e = err.unwrap();
    assert!(gens.is_empty() && e.is_truncated(), "{e}");
    assert!(
        e.to_string()
            .contains("found invalid stack ID 1 for event GoBlock"),
        "{e}"
    );
    w.stacks(1, &[(1, &[[1, 1, 2, 1]])]);
    let (_, err) = read_all(&w.out);
    assert!(
        err.unwrap()
            .to_string()
            .contains("invalid string ID 3 for event GoBlock")
    );
    w.strings(1, &[(1, "f"), (2, "file"), (3, "reason")]);
    let (gens, err) = read_all(&w.out);
    assert!(err.is_none() && gens.len() == 1, "{err:?}");
    // A 1.22 "frequency batch" cannot hold a clock snapshot.
    let mut w = TraceWriter::new(Version::Go122);
    w.batch(
        1,
        1,
        1,
        &[spec::EV_FREQUENCY, 100, spec::EV_CLOCK_SNAPSHOT, 1, 1, 1, 1],
    );
    expect_malformed(
        Version::Go122,
        &w.out,
        "expected frequency or clock snapshot event",
    );
}

#[test]
fn wrong_reader_for_the_version_is_an_error() {
    let mut r: &[u8] = &[];
    assert!(read_generation(&mut r, Version::Go125).is_err());
    assert!(read_generation_with_spill(&mut r, None, Version::Go126).is_err());
    assert!(read_generation(&mut r, Version::Go126).unwrap().is_none());
    assert!(
        read_generation_with_spill(&mut r, None, Version::Go122)
            .unwrap()
            .is_none()
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes after a valid header never panic, and reading always ends.
    #[test]
    fn arbitrary_bytes_never_panic(v in 0usize..4, body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
        let mut w = TraceWriter::new(ALL[v]);
        w.raw(&body);
        let (gens, _) = read_all(&w.out);
        for g in &gens {
            for (m, batches) in &g.batches {
                let mut c = BatchCursor::new(*m);
                while let Ok(true) = c.next_event(batches, g.freq()) {}
            }
        }
    }

    /// Mutations of a valid trace never panic either (they get further into the format).
    #[test]
    fn mutated_traces_never_panic(v in 0usize..4, edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..8), cut in proptest::prelude::any::<usize>()) {
        let mut bytes = two_generations(ALL[v]);
        for (pos, b) in edits {
            let i = HEADER_LEN + pos % (bytes.len() - HEADER_LEN);
            bytes[i] = b;
        }
        bytes.truncate(HEADER_LEN + cut % (bytes.len() - HEADER_LEN + 1));
        let (gens, _) = read_all(&bytes);
        for g in &gens {
            for (m, batches) in &g.batches {
                let mut c = BatchCursor::new(*m);
                while let Ok(true) = c.next_event(batches, g.freq()) {}
            }
        }
    }
}
