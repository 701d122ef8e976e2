//! The text view of `blockprobe stat`: a `GODEBUG=schedtrace` style SCHED line, then a heap
//! line, per reading.

use super::read::Stat;

/// Bytes in a short human form (KiB/MiB/GiB, binary units like Go's own tooling).
pub fn bytes(n: u64) -> String {
    const U: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < U.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", U[u])
    }
}

/// `SCHED <ms>ms: gomaxprocs=… idleprocs=… threads=… spinningthreads=… idlethreads=…
/// runqueue=… [ per-P run queue lengths ] timers=… goroutines=…`, then
/// `HEAP: inuse=… alloc=… idle=… released=… sys=… next_gc=… gc=N last_gc=…s ago gc_cpu=…%
/// stack=…`.
pub fn render(s: &Stat, elapsed_ms: u64) -> String {
    let mut out = lines(s, elapsed_ms);
    if let Some(g) = s.timers.growth {
        out.push_str(&format!(
            "TIMERS: pending grew {} -> {} over {:.1}s ({} readings) without falling back: timers armed and never stopped (a timer leak?)\n",
            g.from,
            g.to,
            g.over_ms as f64 / 1e3,
            g.readings
        ));
    }
    for g in &s.goroutines.growing {
        let heap = g
            .heap
            .map(|h| {
                format!(
                    "; {}",
                    h.describe(g.growth.to.saturating_sub(g.growth.from))
                )
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "LEAK: goroutines created at {} grew {} -> {} over {:.1}s ({} readings) without falling back{heap}\n",
            g.site,
            g.growth.from,
            g.growth.to,
            g.growth.over_ms as f64 / 1e3,
            g.growth.readings,
        ));
    }
    out
}

fn lines(s: &Stat, elapsed_ms: u64) -> String {
    let sc = &s.sched;
    let runqs: Vec<String> = sc.ps.iter().map(|p| p.runqsize.to_string()).collect();
    let timers: Vec<String> = sc.ps.iter().map(|p| p.timers.to_string()).collect();
    let states: Vec<String> = s
        .goroutines
        .by_state
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let m = &s.memstats;
    let last_gc = if m.last_gc == 0 {
        "never".to_string()
    } else {
        let now_ns = s.unix_ms.saturating_mul(1_000_000);
        format!("{:.1}s ago", now_ns.saturating_sub(m.last_gc) as f64 / 1e9)
    };
    format!(
        "SCHED {elapsed_ms}ms: gomaxprocs={} idleprocs={} threads={} spinningthreads={} idlethreads={} runqueue={} [ {} ] timers={} [ {} ] goroutines={} ({})\n\
         HEAP: inuse={} alloc={} idle={} released={} sys={} next_gc={} gc={} last_gc={} gc_cpu={:.2}% stack={}\n",
        sc.gomaxprocs,
        sc.idleprocs,
        sc.threads,
        sc.spinningthreads,
        sc.idlethreads,
        sc.runqueue,
        runqs.join(" "),
        s.timers.pending,
        timers.join(" "),
        s.goroutines.total,
        states.join(" "),
        bytes(m.heap_inuse),
        bytes(m.heap_alloc),
        bytes(m.heap_idle),
        bytes(m.heap_released),
        bytes(m.sys),
        bytes(m.next_gc),
        m.num_gc,
        last_gc,
        m.gc_cpu_fraction * 100.0,
        bytes(m.stack_inuse),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_units() {
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(4 << 20), "4.0MiB");
        assert_eq!(bytes(1536), "1.5KiB");
    }
}
