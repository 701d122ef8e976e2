use super::*;

fn span(tid: u32, off_ns: u64, on_ns: u64) -> OffCpuSpan {
    OffCpuSpan {
        off_ns,
        on_ns,
        tid,
        prev_state: task_state::INTERRUPTIBLE,
        kstack_id: -1,
        ..OffCpuSpan::default()
    }
}

#[test]
fn the_history_keeps_the_newest_and_counts_the_rest() {
    let mut h = SpanHistory::new(3);
    for i in 0..5 {
        h.push(span(1, i * 10, i * 10 + 5));
    }
    assert_eq!(h.len(), 3);
    assert_eq!((h.received(), h.dropped()), (5, 2));
    let offs: Vec<u64> = h.iter().map(|s| s.off_ns).collect();
    assert_eq!(offs, [20, 30, 40]);
}

#[test]
fn a_history_of_no_capacity_counts_everything_as_dropped() {
    let mut h = SpanHistory::new(0);
    h.push(span(1, 0, 5));
    assert!(h.is_empty());
    assert_eq!((h.received(), h.dropped()), (1, 1));
}

#[test]
fn a_track_is_the_threads_spans_in_order() {
    let spans = [span(7, 300, 400), span(8, 0, 1000), span(7, 100, 200)];
    let t = track(&spans, 7, None);
    let got: Vec<(u64, u64)> = t.iter().map(|s| (s.start, s.end)).collect();
    assert_eq!(got, [(100, 200), (300, 400)]);
    assert!(t.iter().all(|s| s.span.tid == 7));
    assert!(track(&spans, 9, None).is_empty());
}

#[test]
fn overlapping_spans_are_cut_at_the_previous_end() {
    // A seeded sleep's start is the attach time; a racing record may overlap its neighbour.
    let spans = [span(1, 100, 250), span(1, 200, 300), span(1, 210, 240)];
    let got: Vec<(u64, u64)> = track(&spans, 1, None)
        .iter()
        .map(|s| (s.start, s.end))
        .collect();
    // The third lies inside the second's cut-down range and is left out.
    assert_eq!(got, [(100, 250), (250, 300)]);
    for w in got.windows(2) {
        assert!(w[1].0 >= w[0].1, "{got:?}");
    }
}

#[test]
fn the_reports_open_span_wins() {
    // The report read the thread off CPU since 500; spans that arrived after that read (its
    // switch-in at 700, a later sleep) would overlap the open span: cut or left out.
    let spans = [
        span(1, 100, 200),
        span(1, 450, 600),
        span(1, 500, 700),
        span(1, 800, 900),
    ];
    let got: Vec<(u64, u64)> = track(&spans, 1, Some(500))
        .iter()
        .map(|s| (s.start, s.end))
        .collect();
    assert_eq!(got, [(100, 200), (450, 500)]);
}

#[test]
fn empty_spans_are_left_out() {
    let spans = [span(1, 100, 100), span(1, 300, 200)];
    assert!(track(&spans, 1, None).is_empty());
}

#[test]
fn states_and_names() {
    use task_state::*;
    assert_eq!(state_label(INTERRUPTIBLE), "S");
    assert_eq!(state_label(UNINTERRUPTIBLE), "D");
    assert_eq!(state_label(PREEMPTED), "R+");
    assert_eq!(state_label(RUNNING), "R");
    assert_eq!(state_description(PREEMPTED), "preempted");
    assert_eq!(state_description(RUNNING), "yielded");
    assert_eq!(state_description(UNINTERRUPTIBLE), "disk sleep");
    let stack = vec!["do_nanosleep".to_string(), "hrtimer_nanosleep".to_string()];
    assert_eq!(
        slice_name(INTERRUPTIBLE, &stack),
        "off CPU (S: do_nanosleep)"
    );
    assert_eq!(slice_name(INTERRUPTIBLE, &[]), "off CPU (S: sleeping)");
    assert_eq!(slice_name(PREEMPTED, &[]), "off CPU (R+: preempted)");
}

#[test]
fn a_spans_stack_and_the_warning() {
    let mut ts = ThreadSpans {
        capacity: 10,
        ..ThreadSpans::default()
    };
    ts.kernel_stacks.insert(3, vec!["futex_wait_queue".into()]);
    let with = OffCpuSpan {
        kstack_id: 3,
        ..span(1, 0, 1)
    };
    assert_eq!(ts.kernel_stack(&with), ["futex_wait_queue"]);
    assert!(ts.kernel_stack(&span(1, 0, 1)).is_empty());
    assert!(ts.warning().is_none());
    ts.lost_in_kernel = 4;
    let w = ts.warning().unwrap();
    assert!(w.contains("4 lost in the kernel"), "{w}");
    assert!(before_attach(&OffCpuSpan {
        flags: SPAN_F_BEFORE_ATTACH,
        ..span(1, 0, 1)
    }));
}
