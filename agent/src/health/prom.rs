//! The health figures as Prometheus metrics (text exposition format), for the metrics
//! endpoint. Names follow the Prometheus Go client's (`go_memstats_*`), prefixed
//! `blockprobe_go_`; deploy/prometheus/health.rules.yml alerts on them; docs/health.md lists
//! them. Every sample carries the caller's target labels (pid, comm, binary).

use std::fmt::Write;

use super::read::Stat;

/// (name, type, help). The order of [`encode`]'s output.
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        "blockprobe_go_memstats_heap_alloc_bytes",
        "gauge",
        "HeapAlloc: bytes of allocated heap objects.",
    ),
    (
        "blockprobe_go_memstats_heap_inuse_bytes",
        "gauge",
        "HeapInuse: bytes in in-use heap spans.",
    ),
    (
        "blockprobe_go_memstats_heap_idle_bytes",
        "gauge",
        "HeapIdle: bytes in idle (unused) heap spans.",
    ),
    (
        "blockprobe_go_memstats_heap_released_bytes",
        "gauge",
        "HeapReleased: bytes of physical memory returned to the OS.",
    ),
    (
        "blockprobe_go_memstats_heap_objects",
        "gauge",
        "HeapObjects: number of allocated heap objects.",
    ),
    (
        "blockprobe_go_memstats_sys_bytes",
        "gauge",
        "Sys: bytes of memory obtained from the OS by the Go runtime.",
    ),
    (
        "blockprobe_go_memstats_next_gc_bytes",
        "gauge",
        "NextGC: the heap size target of the next GC cycle.",
    ),
    (
        "blockprobe_go_memstats_stack_inuse_bytes",
        "gauge",
        "StackInuse: bytes in stack spans.",
    ),
    (
        "blockprobe_go_memstats_alloc_bytes_total",
        "counter",
        "TotalAlloc: cumulative bytes allocated for heap objects.",
    ),
    (
        "blockprobe_go_memstats_gc_cycles_total",
        "counter",
        "NumGC: completed GC cycles.",
    ),
    (
        "blockprobe_go_memstats_last_gc_time_seconds",
        "gauge",
        "LastGC: when the last GC finished, Unix seconds (0: never).",
    ),
    (
        "blockprobe_go_memstats_gc_cpu_fraction",
        "gauge",
        "GCCPUFraction: fraction of the CPU time used by the GC since the program started.",
    ),
    ("blockprobe_go_sched_gomaxprocs", "gauge", "GOMAXPROCS."),
    ("blockprobe_go_sched_idle_procs", "gauge", "Idle Ps."),
    (
        "blockprobe_go_sched_threads",
        "gauge",
        "OS threads (Ms) of the runtime.",
    ),
    (
        "blockprobe_go_sched_spinning_threads",
        "gauge",
        "Ms spinning, looking for work.",
    ),
    ("blockprobe_go_sched_idle_threads", "gauge", "Idle Ms."),
    (
        "blockprobe_go_sched_global_runqueue",
        "gauge",
        "Goroutines in the global run queue.",
    ),
    (
        "blockprobe_go_sched_local_runqueue",
        "gauge",
        "Goroutines in a P's local run queue.",
    ),
    (
        "blockprobe_go_goroutines",
        "gauge",
        "Goroutines (the runtime's own left out) by state.",
    ),
    (
        "blockprobe_go_goroutines_by_site",
        "gauge",
        "Goroutines (the runtime's own left out) by creation site: file:line of the go statement, the top sites, the rest summed into other.",
    ),
    (
        "blockprobe_go_timers_pending",
        "gauge",
        "Pending timers (armed, not stopped), all Ps.",
    ),
    (
        "blockprobe_go_timers_pending_by_p",
        "gauge",
        "Pending timers of one P.",
    ),
];

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics of one reading. `labels`: the target's labels, e.g. `[("pid", "42")]`.
pub fn encode(s: &Stat, labels: &[(&str, &str)]) -> String {
    let labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    encode_many(&[(s, labels)])
}

/// The metrics of several targets' readings (the metrics endpoint of `attach`, `run` and
/// `daemon`), each family's `# HELP`/`# TYPE` once: the text format allows one per name.
pub fn encode_many(targets: &[(&Stat, Vec<(String, String)>)]) -> String {
    let mut out = String::new();
    for (name, kind, help) in METRICS {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (s, labels) in targets {
            let base: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
                .collect();
            let lab = |extra: &[(&str, String)]| {
                let mut all = base.clone();
                all.extend(extra.iter().map(|(k, v)| format!("{k}=\"{}\"", esc(v))));
                format!("{{{}}}", all.join(","))
            };
            let mut one = |v: f64, extra: &[(&str, String)]| {
                let _ = writeln!(out, "{name}{} {v}", lab(extra));
            };
            samples(s, name, &mut one);
        }
    }
    out
}

/// One sample: its value and its labels beyond the target's.
type Sample<'a> = dyn FnMut(f64, &[(&str, String)]) + 'a;

/// Calls `one(value, extra labels)` for each sample of the family `name` in one reading.
fn samples(s: &Stat, name: &str, one: &mut Sample<'_>) {
    let m = &s.memstats;
    let sc = &s.sched;
    match name {
        "blockprobe_go_memstats_heap_alloc_bytes" => one(m.heap_alloc as f64, &[]),
        "blockprobe_go_memstats_heap_inuse_bytes" => one(m.heap_inuse as f64, &[]),
        "blockprobe_go_memstats_heap_idle_bytes" => one(m.heap_idle as f64, &[]),
        "blockprobe_go_memstats_heap_released_bytes" => one(m.heap_released as f64, &[]),
        "blockprobe_go_memstats_heap_objects" => one(m.heap_objects as f64, &[]),
        "blockprobe_go_memstats_sys_bytes" => one(m.sys as f64, &[]),
        "blockprobe_go_memstats_next_gc_bytes" => one(m.next_gc as f64, &[]),
        "blockprobe_go_memstats_stack_inuse_bytes" => one(m.stack_inuse as f64, &[]),
        "blockprobe_go_memstats_alloc_bytes_total" => one(m.total_alloc as f64, &[]),
        "blockprobe_go_memstats_gc_cycles_total" => one(f64::from(m.num_gc), &[]),
        "blockprobe_go_memstats_last_gc_time_seconds" => one(m.last_gc as f64 / 1e9, &[]),
        "blockprobe_go_memstats_gc_cpu_fraction" => one(m.gc_cpu_fraction, &[]),
        "blockprobe_go_sched_gomaxprocs" => one(f64::from(sc.gomaxprocs), &[]),
        "blockprobe_go_sched_idle_procs" => one(f64::from(sc.idleprocs), &[]),
        "blockprobe_go_sched_threads" => one(f64::from(sc.threads), &[]),
        "blockprobe_go_sched_spinning_threads" => one(f64::from(sc.spinningthreads), &[]),
        "blockprobe_go_sched_idle_threads" => one(f64::from(sc.idlethreads), &[]),
        "blockprobe_go_sched_global_runqueue" => one(f64::from(sc.runqueue), &[]),
        "blockprobe_go_sched_local_runqueue" => {
            for p in &sc.ps {
                one(f64::from(p.runqsize), &[("p", p.id.to_string())]);
            }
        }
        "blockprobe_go_goroutines" => {
            for (state, n) in &s.goroutines.by_state {
                one(*n as f64, &[("state", state.clone())]);
            }
        }
        "blockprobe_go_goroutines_by_site" => {
            for (site, n) in &s.goroutines.by_site {
                one(*n as f64, &[("site", site.clone())]);
            }
        }
        "blockprobe_go_timers_pending" => one(s.timers.pending as f64, &[]),
        "blockprobe_go_timers_pending_by_p" => {
            for p in &sc.ps {
                one(f64::from(p.timers), &[("p", p.id.to_string())]);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::read::{Goroutines, MemStats, PStat, Sched, SourcesOut, Timers};

    #[test]
    fn encodes_every_metric_with_the_target_labels() {
        let s = Stat {
            pid: 7,
            go_version: "go1.27.3".into(),
            unix_ms: 0,
            memstats: MemStats {
                heap_inuse: 4096,
                ..Default::default()
            },
            metrics: Default::default(),
            sched: Sched {
                gomaxprocs: 1,
                ps: vec![PStat {
                    id: 0,
                    status: "idle".into(),
                    runqsize: 2,
                    runnext: false,
                    timers: 5,
                }],
                ..Default::default()
            },
            goroutines: Goroutines {
                total: 3,
                by_state: [("waiting".to_string(), 3)].into(),
                ..Default::default()
            },
            timers: Timers {
                pending: 5,
                growth: None,
            },
            sources: SourcesOut {
                layout: "dwarf".into(),
                globals: "symtab".into(),
            },
        };
        let text = encode(&s, &[("pid", "7"), ("comm", "a\"b")]);
        for (name, _, _) in METRICS {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
        assert!(
            text.contains(
                "blockprobe_go_memstats_heap_inuse_bytes{pid=\"7\",comm=\"a\\\"b\"} 4096\n"
            )
        );
        assert!(
            text.contains(
                "blockprobe_go_timers_pending_by_p{pid=\"7\",comm=\"a\\\"b\",p=\"0\"} 5\n"
            )
        );
        assert!(
            text.contains(
                "blockprobe_go_goroutines{pid=\"7\",comm=\"a\\\"b\",state=\"waiting\"} 3\n"
            )
        );
    }
}
