//! `blockprobe stat` and the hidden `blockprobe bench-stat`.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{HealthError, HealthReader, open_pid};
use crate::memory::MemError;

/// Prints readings of `pid`: one, or one per `interval` (until `count` readings, Ctrl-C, or
/// the target's exit). `json`: one JSON object per line.
pub fn stat(
    pid: u32,
    interval: Option<Duration>,
    count: Option<u64>,
    json: bool,
) -> Result<(), HealthError> {
    let (bin, bias) = open_pid(pid)?;
    let reader = HealthReader::new(&bin, pid, bias)?;
    let start = Instant::now();
    let mut out = std::io::stdout().lock();
    let mut n = 0u64;
    let mut trend = super::trend::Trend::default();
    let mut sites = SiteTrends::default();
    loop {
        let mut s = match reader.read() {
            Ok(s) => s,
            // The target exited between two readings: the stream simply ends.
            Err(HealthError::Mem(MemError::Gone { .. })) if n > 0 => return Ok(()),
            Err(e) => return Err(e),
        };
        s.timers.growth = trend.push(s.unix_ms, s.timers.pending);
        s.goroutines.growing = sites.push(&s);
        let line = if json {
            serde_json::to_string(&s).map_err(|e| HealthError::Target(e.to_string()))? + "\n"
        } else {
            super::view::render(&s, start.elapsed().as_millis() as u64)
        };
        if out
            .write_all(line.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return Ok(()); // stdout closed (e.g. piped into head)
        }
        n += 1;
        let Some(every) = interval else { return Ok(()) };
        if count.is_some_and(|c| n >= c) {
            return Ok(());
        }
        std::thread::sleep(every);
    }
}

/// Per creation site, the trend of its goroutines; and the heap over the same readings, so
/// that a leak is reported with the memory it came with ("the goroutines leaked and they hold
/// N MB" as one finding).
#[derive(Default)]
struct SiteTrends {
    sites: HashMap<String, super::trend::Trend>,
    heap: super::window::HeapSeries,
}

impl SiteTrends {
    fn push(&mut self, s: &super::Stat) -> Vec<super::read::SiteGrowth> {
        let now_ns = s.unix_ms.saturating_mul(1_000_000);
        self.heap.push(now_ns, &s.memstats);
        // Sites gone from the table drained (or fell out of its top): forget them.
        self.sites
            .retain(|site, _| s.goroutines.by_site.contains_key(site));
        let mut out = Vec::new();
        for (site, &n) in &s.goroutines.by_site {
            if site == "other" || site == "main" {
                continue;
            }
            let trend = self.sites.entry(site.clone()).or_default();
            if let Some(growth) = trend.push(s.unix_ms, n) {
                let from_ns = now_ns.saturating_sub(growth.over_ms.saturating_mul(1_000_000));
                out.push(super::read::SiteGrowth {
                    site: site.clone(),
                    growth,
                    heap: self.heap.over(from_ns, now_ns),
                });
            }
        }
        out
    }
}

/// What `bench-stat` measures: agent CPU time per complete reading.
#[derive(Debug, Serialize)]
pub struct BenchStat {
    pub readings: u64,
    /// Agent thread CPU time per reading (CLOCK_THREAD_CPUTIME_ID), µs: mean and worst.
    pub cpu_us_mean: f64,
    pub cpu_us_max: f64,
    /// Wall time per reading, µs (mean).
    pub wall_us_mean: f64,
    /// One-time setup (reading the binary, DWARF, symbols), ms of CPU.
    pub setup_cpu_ms: f64,
    pub goroutines: u64,
    pub gomaxprocs: u32,
}

/// Reads all the figures `iters` times and reports the CPU each reading cost.
pub fn bench(pid: u32, iters: u64) -> Result<BenchStat, HealthError> {
    let cpu = || crate::procfs::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID);
    let c0 = cpu();
    let (bin, bias) = open_pid(pid)?;
    let reader = HealthReader::new(&bin, pid, bias)?;
    let setup = cpu() - c0;
    let first = reader.read()?;
    let (mut total, mut worst) = (0u64, 0u64);
    let wall = Instant::now();
    for _ in 0..iters.max(1) {
        let c = cpu();
        std::hint::black_box(reader.read()?);
        let d = cpu() - c;
        total += d;
        worst = worst.max(d);
    }
    let n = iters.max(1);
    Ok(BenchStat {
        readings: n,
        cpu_us_mean: total as f64 / n as f64 / 1e3,
        cpu_us_max: worst as f64 / 1e3,
        wall_us_mean: wall.elapsed().as_secs_f64() * 1e6 / n as f64,
        setup_cpu_ms: setup as f64 / 1e6,
        goroutines: first.goroutines.total + first.goroutines.system,
        gomaxprocs: first.sched.gomaxprocs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::read::{Goroutines, MemStats, Sched, SourcesOut, Timers};

    fn reading(i: u64, leaked: u64, pool: u64) -> super::super::Stat {
        super::super::Stat {
            pid: 1,
            go_version: "go1.27.3".into(),
            unix_ms: 1000 + i * 100,
            memstats: MemStats {
                heap_alloc: (1 << 20) + leaked * (64 << 10),
                ..Default::default()
            },
            metrics: Default::default(),
            sched: Sched::default(),
            goroutines: Goroutines {
                by_site: [
                    ("a.go:1".to_string(), leaked),
                    ("b.go:2".to_string(), pool),
                    ("main".to_string(), 1),
                ]
                .into(),
                ..Default::default()
            },
            timers: Timers::default(),
            sources: SourcesOut {
                layout: "dwarf".into(),
                globals: "symtab".into(),
            },
        }
    }

    #[test]
    fn a_growing_site_comes_with_the_heap_it_took() {
        let mut t = SiteTrends::default();
        let mut last = Vec::new();
        for i in 0..8 {
            last = t.push(&reading(i, 100 + 100 * i, 8 + i % 2));
        }
        assert_eq!(last.len(), 1, "{last:?}");
        let g = &last[0];
        assert_eq!(g.site, "a.go:1");
        assert_eq!((g.growth.from, g.growth.to), (100, 800));
        let heap = g.heap.expect("heap over the window");
        assert_eq!(heap.heap_alloc_delta(), 700 * (64 << 10));
    }
}
