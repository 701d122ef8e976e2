//! Pure helpers of `cargo xtask bench`: what the workloads and /proc print, statistics,
//! formatting, and the verdicts on the targets.

/// A workload's result line, `ops=123456 secs=3.001`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OpsLine {
    pub ops: u64,
    pub secs: f64,
}

impl OpsLine {
    pub fn per_sec(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

/// Parses `ops=<n> secs=<s>` (more `key=value` fields may follow). `ops=` must come first and
/// `secs` must be positive.
pub fn parse_ops_line(line: &str) -> Option<OpsLine> {
    let line = line.trim();
    if !line.starts_with("ops=") {
        return None;
    }
    let (mut ops, mut secs) = (None, None);
    for tok in line.split_whitespace() {
        match tok.split_once('=') {
            Some(("ops", v)) => ops = Some(v.parse::<u64>().ok()?),
            Some(("secs", v)) => secs = Some(v.parse::<f64>().ok()?),
            _ => {}
        }
    }
    let secs = secs.filter(|s| s.is_finite() && *s > 0.0)?;
    Some(OpsLine { ops: ops?, secs })
}

/// `(utime, stime)` in clock ticks from the text of `/proc/PID/stat`: fields 14 and 15,
/// counted after the command name, which is in parentheses and may itself hold `)` or spaces.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is at index N - 3.
    let utime = fields.get(14 - 3)?.parse().ok()?;
    let stime = fields.get(15 - 3)?.parse().ok()?;
    Some((utime, stime))
}

/// A `kB` value from the text of `/proc/PID/status`, e.g. `VmHWM:    57060 kB` -> 57060.
pub fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The median (the mean of the middle two for an even count); None when empty. NaNs are
/// ignored.
pub fn median(xs: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// `num / den` when both are known and `den` is positive.
pub fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 && n.is_finite() => Some(n / d),
        _ => None,
    }
}

/// 1234 -> `1.23k`, 3_580_000 -> `3.58M`, 12.5 -> `12.5`: three significant digits.
pub fn fmt_si(x: f64) -> String {
    const UNITS: [(f64, &str); 3] = [(1e9, "G"), (1e6, "M"), (1e3, "k")];
    // Round to 3 significant digits first, so that 999_700 becomes 1.00M, not 1000k.
    let a = x.abs();
    let rounded = if a > 0.0 && a.is_finite() {
        let scale = 10f64.powi(a.log10().floor() as i32 - 2);
        (a / scale).round() * scale
    } else {
        a
    };
    let (div, unit) = UNITS
        .iter()
        .copied()
        .find(|(d, _)| rounded >= *d)
        .unwrap_or((1.0, ""));
    let v = rounded / div;
    let digits = match v {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    };
    let sign = if x < 0.0 { "-" } else { "" };
    format!("{sign}{v:.digits$}{unit}")
}

/// Nanoseconds for a person: `908 ns`, `9.78 µs`, `1.23 ms`, `1.50 s` (three significant
/// digits; negative values, from noise, keep their sign).
pub fn fmt_ns(ns: f64) -> String {
    let a = ns.abs();
    let (div, unit) = match a {
        a if a >= 0.9995e9 => (1e9, "s"),
        a if a >= 0.9995e6 => (1e6, "ms"),
        a if a >= 999.5 => (1e3, "µs"),
        _ => (1.0, "ns"),
    };
    let v = a / div;
    let digits = match v {
        _ if div == 1.0 => 0,
        v if v >= 99.95 => 0,
        v if v >= 9.995 => 1,
        _ => 2,
    };
    let sign = if ns < 0.0 { "-" } else { "" };
    format!("{sign}{v:.digits$} {unit}")
}

/// kB (KiB, as /proc and `ru_maxrss` count) -> decimal megabytes.
pub fn kb_to_mb(kb: u64) -> f64 {
    kb as f64 * 1024.0 / 1e6
}

/// `Some(x)` -> formatted, None -> `-`.
pub fn or_dash<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

/// A duration as blockprobe's `--scan-interval` takes it (`100ms`, `1s`, `250us`, `2m`,
/// `1.5s`), in seconds.
pub fn parse_interval_s(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        _ => return None,
    };
    Some(v * scale).filter(|v| v.is_finite())
}

/// Whether a target from the issue was met by what was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// The measurement could not decide (e.g. the rate named in the target was not reached,
    /// or a run failed).
    Undecided,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Undecided => "UNDECIDED",
        }
    }

    /// The worse of two verdicts (FAIL, then UNDECIDED, then PASS): that of a target made of
    /// several checks.
    pub fn worst(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::Fail, _) | (_, Verdict::Fail) => Verdict::Fail,
            (Verdict::Undecided, _) | (_, Verdict::Undecided) => Verdict::Undecided,
            _ => Verdict::Pass,
        }
    }
}

/// `value >= min` (a kept-throughput ratio).
pub fn at_least_verdict(value: Option<f64>, min: f64) -> Verdict {
    match value {
        Some(v) if v >= min => Verdict::Pass,
        Some(_) => Verdict::Fail,
        None => Verdict::Undecided,
    }
}

/// `value < limit` (strictly) or `value <= limit`.
pub fn below_verdict(value: Option<f64>, limit: f64, inclusive: bool) -> Verdict {
    match value {
        Some(v) if v < limit || (inclusive && v == limit) => Verdict::Pass,
        Some(_) => Verdict::Fail,
        None => Verdict::Undecided,
    }
}

/// "blockprobe's slowdown at most runtime/trace's on http": agent/none >= trace/none.
pub fn slowdown_verdict(agent_ratio: Option<f64>, trace_ratio: Option<f64>) -> Verdict {
    match (agent_ratio, trace_ratio) {
        (Some(a), Some(t)) if a >= t => Verdict::Pass,
        (Some(_), Some(_)) => Verdict::Fail,
        _ => Verdict::Undecided,
    }
}

/// "no lost events at `target_rate` events/s", from each agent run's (events/s, lost).
/// Any loss fails it (a loss below the target rate would only be worse at it); with no loss,
/// it is met only if some run reached the target rate.
pub fn lost_verdict(runs: &[(f64, u64)], target_rate: f64) -> Verdict {
    if runs.is_empty() {
        return Verdict::Undecided;
    }
    if runs.iter().any(|&(_, lost)| lost > 0) {
        return Verdict::Fail;
    }
    if runs.iter().any(|&(rate, _)| rate >= target_rate) {
        Verdict::Pass
    } else {
        Verdict::Undecided
    }
}

/// "agent RSS < `limit_mb` MB".
pub fn rss_verdict(peak_kb: Option<u64>, limit_mb: f64) -> Verdict {
    below_verdict(peak_kb.map(kb_to_mb), limit_mb, false)
}

/// The modes rotated left by `by`, so that each round starts with another mode.
pub fn rotated<T: Copy>(items: &[T], by: usize) -> Vec<T> {
    if items.is_empty() {
        return Vec::new();
    }
    let k = by % items.len();
    items[k..].iter().chain(&items[..k]).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_lines() {
        assert_eq!(
            parse_ops_line("ops=123456 secs=3.001\n"),
            Some(OpsLine {
                ops: 123456,
                secs: 3.001
            })
        );
        assert_eq!(
            parse_ops_line("ops=5 secs=2 extra=1").map(|o| o.per_sec()),
            Some(2.5)
        );
        assert_eq!(parse_ops_line("ops=5"), None);
        assert_eq!(parse_ops_line("ops=5 secs=0"), None);
        assert_eq!(parse_ops_line("ops=x secs=1"), None);
        assert_eq!(parse_ops_line("ready pid=7"), None);
        assert_eq!(parse_ops_line("note: ops=5 secs=1"), None);
    }

    #[test]
    fn proc_stat_cpu() {
        // The command name may hold spaces and parentheses.
        let stat = "4242 (a b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 3 0 9 1 1";
        assert_eq!(parse_stat_cpu_ticks(stat), Some((17, 5)));
        assert_eq!(parse_stat_cpu_ticks("4242 (x) S 1 2"), None);
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn proc_status_kb() {
        let s = "Name:\tblockprobe\nVmPeak:\t  100 kB\nVmHWM:\t   57060 kB\nVmRSS:\t 50000 kB\n";
        assert_eq!(parse_status_kb(s, "VmHWM"), Some(57060));
        assert_eq!(parse_status_kb(s, "VmRSS"), Some(50000));
        assert_eq!(parse_status_kb(s, "VmSwap"), None);
        assert_eq!(parse_status_kb("VmHWMX:\t1 kB\n", "VmHWM"), None);
    }

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
        assert_eq!(ratio(Some(1.0), Some(4.0)), Some(0.25));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(1.0), None), None);
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_si(12.5), "12.5");
        assert_eq!(fmt_si(-1234.0), "-1.23k");
        assert_eq!(fmt_si(1234.0), "1.23k");
        assert_eq!(fmt_si(56_837.0), "56.8k");
        assert_eq!(fmt_si(3_580_000.0), "3.58M");
        assert_eq!(fmt_si(999_700.0), "1.00M");
        assert_eq!(fmt_si(0.0), "0.00");
        assert_eq!(fmt_ns(908.2), "908 ns");
        assert_eq!(fmt_ns(9_781.0), "9.78 µs");
        assert_eq!(fmt_ns(39_700.0), "39.7 µs");
        assert_eq!(fmt_ns(1.234e6), "1.23 ms");
        assert_eq!(fmt_ns(1e8), "100 ms");
        assert_eq!(fmt_ns(-42.0), "-42 ns");
        assert!((kb_to_mb(57060) - 58.429).abs() < 0.001);
        assert_eq!(or_dash(None::<u8>, |v| v.to_string()), "-");
        assert_eq!(or_dash(Some(3), |v| v.to_string()), "3");
    }

    #[test]
    fn verdicts() {
        assert_eq!(slowdown_verdict(Some(0.93), Some(0.84)), Verdict::Pass);
        assert_eq!(slowdown_verdict(Some(0.5), Some(0.84)), Verdict::Fail);
        assert_eq!(slowdown_verdict(None, Some(0.84)), Verdict::Undecided);

        assert_eq!(lost_verdict(&[(1.2e6, 0), (3e5, 0)], 1e6), Verdict::Pass);
        assert_eq!(lost_verdict(&[(2e5, 0)], 1e6), Verdict::Undecided);
        assert_eq!(lost_verdict(&[(2e5, 3), (2e6, 0)], 1e6), Verdict::Fail);
        assert_eq!(lost_verdict(&[], 1e6), Verdict::Undecided);

        assert_eq!(rss_verdict(Some(57060), 100.0), Verdict::Pass);
        assert_eq!(rss_verdict(Some(200_000), 100.0), Verdict::Fail);
        assert_eq!(rss_verdict(None, 100.0), Verdict::Undecided);

        use Verdict::{Fail, Pass, Undecided};
        assert_eq!(Pass.worst(Pass), Pass);
        assert_eq!(Pass.worst(Undecided), Undecided);
        assert_eq!(Undecided.worst(Pass), Undecided);
        assert_eq!(Undecided.worst(Fail), Fail);
        assert_eq!(Fail.worst(Pass), Fail);
    }

    #[test]
    fn intervals_and_bounds() {
        assert_eq!(parse_interval_s("100ms"), Some(0.1));
        assert_eq!(parse_interval_s("1.5s"), Some(1.5));
        assert_eq!(parse_interval_s("2m"), Some(120.0));
        assert_eq!(parse_interval_s("250us"), Some(250e-6));
        assert_eq!(parse_interval_s("100"), None);
        assert_eq!(parse_interval_s("ms"), None);
        assert_eq!(parse_interval_s("1h"), None);

        assert_eq!(at_least_verdict(Some(0.98), 0.98), Verdict::Pass);
        assert_eq!(at_least_verdict(Some(0.979), 0.98), Verdict::Fail);
        assert_eq!(at_least_verdict(None, 0.98), Verdict::Undecided);
        assert_eq!(below_verdict(Some(1.2), 1.2, true), Verdict::Pass);
        assert_eq!(below_verdict(Some(50.0), 50.0, false), Verdict::Fail);
        assert_eq!(below_verdict(Some(49.9), 50.0, false), Verdict::Pass);
        assert_eq!(below_verdict(None, 50.0, false), Verdict::Undecided);
    }

    #[test]
    fn rotation() {
        assert_eq!(rotated(&[1, 2, 3], 0), [1, 2, 3]);
        assert_eq!(rotated(&[1, 2, 3], 1), [2, 3, 1]);
        assert_eq!(rotated(&[1, 2, 3], 5), [3, 1, 2]);
        assert!(rotated::<u8>(&[], 1).is_empty());
    }
}
