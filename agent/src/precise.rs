//! Precise mode's in-kernel aggregation: short waits filtered in the kernel (a park is sent
//! only once its wait has lasted `--min-wait`), the parks still open kept in the `PARKED` map,
//! and per-site wait histograms (`WAIT_HIST`, keyed by the park's user stack and wait reason)
//! instead of a stream of every transition.

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuHashMap};
use probes_ebpf::{
    GoEvent, HistKey, MAP_PARKED, MAP_PRECISE_CONFIG, MAP_WAIT_HIST, NO_STACK, PreciseConfig,
    WAIT_HIST_BUCKETS, WaitHist,
};
use serde::Serialize;

use crate::probes::{Attached, ProbeError};
use crate::report::BlockingSite;
use crate::summary::Context;
use crate::unwind;

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> ProbeError {
    move |source| ProbeError::Map {
        map,
        source: Box::new(source),
    }
}

/// Sets the in-kernel filter: parks are streamed once their wait reaches `min_wait_ns`.
pub fn set_min_wait(a: &mut Attached, min_wait_ns: u64) -> Result<(), ProbeError> {
    let map = a
        .ebpf_mut()
        .map_mut(MAP_PRECISE_CONFIG)
        .ok_or(ProbeError::Missing(MAP_PRECISE_CONFIG))?;
    let mut cfg: Array<_, PreciseConfig> =
        Array::try_from(map).map_err(map_err(MAP_PRECISE_CONFIG))?;
    cfg.set(0, PreciseConfig { min_wait_ns }, 0)
        .map_err(map_err(MAP_PRECISE_CONFIG))
}

/// The kernel's map of open parks (goid → park), None if the object lacks it.
fn parked_map(a: &Attached) -> Option<BpfHashMap<&MapData, u64, GoEvent>> {
    BpfHashMap::try_from(a.ebpf().map(MAP_PARKED)?).ok()
}

/// Every park still open in the kernel's map: the goroutines parked now (or when the target
/// exited) as far as the probes know.
pub fn open_parks(a: &Attached) -> Vec<GoEvent> {
    parked_map(a).map_or_else(Vec::new, |parked| {
        parked
            .iter()
            .filter_map(Result::ok)
            .map(|(_, ev)| ev)
            .collect()
    })
}

/// Every site's histogram, the CPUs' copies summed.
pub fn histograms(a: &Attached) -> Result<Vec<(HistKey, WaitHist)>, ProbeError> {
    let map = a
        .ebpf()
        .map(MAP_WAIT_HIST)
        .ok_or(ProbeError::Missing(MAP_WAIT_HIST))?;
    let hists: PerCpuHashMap<&MapData, HistKey, WaitHist> =
        PerCpuHashMap::try_from(map).map_err(map_err(MAP_WAIT_HIST))?;
    let mut out = Vec::new();
    for item in hists.iter() {
        let Ok((key, per_cpu)) = item else { continue };
        let mut sum = WaitHist::default();
        for h in per_cpu.iter() {
            sum.count += h.count;
            sum.total_ns += h.total_ns;
            for (s, b) in sum.buckets.iter_mut().zip(h.buckets.iter()) {
                *s += b;
            }
        }
        out.push((key, sum));
    }
    Ok(out)
}

/// One site's finished waits, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct WaitHistogram {
    pub wait_reason: String,
    /// The first frame outside the runtime (None when the stack was not captured).
    pub blocked_at: Option<BlockingSite>,
    pub count: u64,
    pub total_ns: u64,
    /// Upper bounds (2^(i+1) ns) of the buckets holding the median and the 99th percentile.
    pub p50_le_ns: u64,
    pub p99_le_ns: u64,
    /// Non-empty buckets: (upper bound in ns, waits).
    pub buckets: Vec<(u64, u64)>,
}

/// The upper bound of the bucket holding quantile `q`.
fn quantile_le(h: &WaitHist, q: f64) -> u64 {
    if h.count == 0 {
        return 0;
    }
    let want = (h.count as f64 * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &n) in h.buckets.iter().enumerate() {
        seen += n;
        if seen >= want {
            return 1u64 << (i + 1).min(63);
        }
    }
    1u64 << WAIT_HIST_BUCKETS.min(63)
}

/// The histograms of every site, symbolized, sites merged when their stacks symbolize to the
/// same blocking site; busiest first. Waits at sites inside the runtime's own goroutines count
/// like any other.
pub fn summarize(
    ctx: &Context<'_>,
    a: &Attached,
    hists: &[(HistKey, WaitHist)],
) -> Vec<WaitHistogram> {
    let mut merged: std::collections::BTreeMap<(String, Option<(String, String)>), WaitHist> =
        Default::default();
    for (key, h) in hists {
        let site = (key.stack_id != NO_STACK)
            .then(|| a.user_stack(key.stack_id))
            .flatten()
            .and_then(|pcs| {
                unwind::blocking_site(&unwind::symbolize(ctx.bin, ctx.bias, &pcs))
                    .map(|f| (f.function.clone(), format!("{}:{}", f.file, f.line)))
            });
        let m = merged
            .entry((ctx.bin.wait_reason(key.reason).into_owned(), site))
            .or_default();
        m.count += h.count;
        m.total_ns += h.total_ns;
        for (s, b) in m.buckets.iter_mut().zip(h.buckets.iter()) {
            *s += b;
        }
    }
    let mut out: Vec<WaitHistogram> = merged
        .into_iter()
        .map(|((wait_reason, site), h)| WaitHistogram {
            wait_reason,
            blocked_at: site.map(|(function, location)| BlockingSite {
                function: function.into(),
                location: location.into(),
            }),
            count: h.count,
            total_ns: h.total_ns,
            p50_le_ns: quantile_le(&h, 0.5),
            p99_le_ns: quantile_le(&h, 0.99),
            buckets: h
                .buckets
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, &n)| (1u64 << (i + 1).min(63), n))
                .collect(),
        })
        .collect();
    out.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.wait_reason.cmp(&b.wait_reason))
    });
    out
}

/// Applies, oldest first, the open parks the kernel held back (their waits were still shorter
/// than the in-kernel filter's, or they parked before the filter let anything through) that the
/// model does not have from a probe event. With `waiting_in`, only those of goroutines that scan
/// finds waiting: long waits in progress, known before they end. Without, all of them: at the
/// session's end, when the target may be gone and cannot be scanned.
///
/// One pass over the kernel's open parks (few: the waits in progress), never one map lookup per
/// waiting goroutine, which would be a syscall each for 100k blocked goroutines every second.
pub fn take_open_parks(
    a: &Attached,
    model: &mut crate::model::Model,
    waiting_in: Option<&crate::scan::Scan>,
    mut on_park: impl FnMut(&GoEvent) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let waiting: Option<rustc_hash::FxHashSet<u64>> = waiting_in.map(|scan| {
        scan.goroutines
            .iter()
            .filter(|sg| sg.status == crate::scan::status::WAITING)
            .map(|sg| sg.goid)
            .collect()
    });
    let mut parks: Vec<GoEvent> = open_parks(a)
        .into_iter()
        .filter(|ev| waiting.as_ref().is_none_or(|w| w.contains(&ev.goid)))
        .filter(|ev| !model.parked_by_probe(ev.goid))
        .collect();
    parks.sort_by_key(|ev| ev.ts_ns);
    for ev in parks {
        model.apply(&ev);
        on_park(&ev)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut h = WaitHist::default();
        // 90 waits of ~1 µs (bucket 9: [512, 1024) ns), 10 of ~1 s (bucket 29).
        h.buckets[9] = 90;
        h.buckets[29] = 10;
        h.count = 100;
        assert_eq!(quantile_le(&h, 0.5), 1024);
        assert_eq!(quantile_le(&h, 0.9), 1024);
        assert_eq!(quantile_le(&h, 0.99), 1 << 30);
        assert_eq!(quantile_le(&WaitHist::default(), 0.5), 0);
    }
}
