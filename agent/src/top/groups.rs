//! `top`'s rows: the blocked goroutines of one refresh, grouped by where they block (the
//! blocking site `file:line`, see `unwind::blocking_site`) and why (the wait reason), with how
//! many share it, the longest wait among them, and the `go` statement that created them.

use std::collections::HashMap;

use crate::report::{BlockedGoroutine, CreationSite, Text};

/// Blocked goroutines that share a blocking site and a wait reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The function of the blocking site, or the runtime function that parked the goroutines
    /// while their stacks are not walked yet.
    pub function: Text,
    /// `file:line` of the blocking site; None while the stacks are not walked yet.
    pub location: Option<Text>,
    pub reason: Text,
    pub count: usize,
    /// The longest wait in the group, in nanoseconds.
    pub longest_ns: u64,
    /// The longest wait began before `top` started (and `g.waitsince` did not say when), so
    /// it is a lower bound.
    pub at_least: bool,
    /// The goroutine that waited longest: the one the creation site is taken from.
    pub longest_goid: u64,
    /// The creation site of the longest-waiting goroutine (None for the main goroutine).
    pub created_by: Option<CreationSite>,
    /// How many other distinct creation sites the group's goroutines have.
    pub other_creators: usize,
}

/// How the rows are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    /// Most goroutines first (a leak grows its row to the top), then the longest wait.
    #[default]
    Count,
    /// Longest wait first (a deadlock's parties stay at the top), then the count.
    Longest,
}

impl SortBy {
    pub fn toggled(self) -> Self {
        match self {
            SortBy::Count => SortBy::Longest,
            SortBy::Longest => SortBy::Count,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SortBy::Count => "count",
            SortBy::Longest => "longest wait",
        }
    }
}

/// (blocking site `file:line`, None while the stack is not walked yet; function; wait reason).
type GroupKey = (Option<Text>, Text, Text);

/// Groups blocked goroutines by (blocking site, wait reason), ordered by `by`.
pub fn group(blocked: &[BlockedGoroutine], by: SortBy) -> Vec<Group> {
    let mut groups: HashMap<GroupKey, (Group, Vec<Option<Text>>)> = HashMap::new();
    for b in blocked {
        let (function, location) = match &b.blocked_at {
            Some(site) => (site.function.clone(), Some(site.location.clone())),
            None => (b.parked_in.clone(), None),
        };
        let key = (location.clone(), function.clone(), b.wait_reason.clone());
        let creator = creator_key(&b.created_by);
        let (g, creators) = groups.entry(key).or_insert_with(|| {
            (
                Group {
                    function,
                    location,
                    reason: b.wait_reason.clone(),
                    count: 0,
                    longest_ns: 0,
                    at_least: false,
                    longest_goid: b.goid,
                    created_by: b.created_by.clone(),
                    other_creators: 0,
                },
                Vec::new(),
            )
        });
        g.count += 1;
        // The longest wait, and on a tie the lowest goid (the oldest goroutine), so that the
        // creation site shown does not flip between refreshes.
        if (b.blocked_ns, std::cmp::Reverse(b.goid))
            > (g.longest_ns, std::cmp::Reverse(g.longest_goid))
        {
            g.longest_ns = b.blocked_ns;
            g.longest_goid = b.goid;
            g.at_least = b.blocked_before_attach;
            g.created_by = b.created_by.clone();
        }
        if !creators.contains(&creator) {
            creators.push(creator);
        }
    }
    let mut rows: Vec<Group> = groups
        .into_values()
        .map(|(mut g, creators)| {
            g.other_creators = creators.len().saturating_sub(1);
            g
        })
        .collect();
    sort(&mut rows, by);
    rows
}

/// Orders rows by `by`; ties are broken by the site, so that rows do not jump between
/// refreshes.
pub fn sort(rows: &mut [Group], by: SortBy) {
    rows.sort_by(|a, b| {
        let primary = match by {
            SortBy::Count => (b.count, b.longest_ns).cmp(&(a.count, a.longest_ns)),
            SortBy::Longest => (b.longest_ns, b.count).cmp(&(a.longest_ns, a.count)),
        };
        primary
            .then_with(|| a.location.cmp(&b.location))
            .then_with(|| a.function.cmp(&b.function))
            .then_with(|| a.reason.cmp(&b.reason))
    });
}

fn creator_key(c: &Option<CreationSite>) -> Option<Text> {
    c.as_ref()
        .map(|c| c.location.clone().unwrap_or_else(|| c.function.clone()))
}

/// A wait as `top` shows it: `950ms`, `12.3s`, `4m05s`, `2h03m`, `3d04h`.
pub fn wait(ns: u64) -> String {
    let ms = ns / 1_000_000;
    let s = ns / 1_000_000_000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{}.{}s", s, (ms % 1000) / 100),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

/// A source location shortened to its last two path components (`demo/main.go:45`), as
/// py-spy's `top` shows file names: the function column already names the package.
pub fn short_location(location: &str) -> &str {
    let mut slashes = location.rmatch_indices('/');
    match (slashes.next(), slashes.next()) {
        (Some(_), Some((i, _))) => &location[i + 1..],
        _ => location,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{BlockingSite, Hex};

    fn blocked(goid: u64, site: Option<(&str, &str)>, reason: &str, ns: u64) -> BlockedGoroutine {
        BlockedGoroutine {
            goid,
            wait_reason: Text::from(reason),
            wait_reason_code: 0,
            blocked_ns: ns,
            object_kind: "chan",
            object: Hex(0),
            parked_in: Text::from("runtime.chansend"),
            tid: 0,
            blocked_before_attach: false,
            wait_chans: Default::default(),
            created_by: Some(CreationSite {
                function: Text::from("main.main"),
                location: Some(Text::from(format!("/src/main.go:{}", goid % 2 + 10))),
                parent_goid: 1,
            }),
            start_function: None,
            stack: None,
            blocked_at: site.map(|(f, l)| {
                std::sync::Arc::new(BlockingSite {
                    function: Text::from(f),
                    location: Text::from(l),
                })
            }),
            made_at: None,
            source: "scan",
        }
    }

    #[test]
    fn groups_by_site_and_reason() {
        let send = Some(("main.worker", "/src/main.go:41"));
        let lock = Some(("main.transfer", "/src/main.go:20"));
        let gs = [
            blocked(10, send, "chan send", 3_000_000_000),
            blocked(11, send, "chan send", 1_000_000_000),
            blocked(12, send, "chan send", 2_000_000_000),
            // Same site, another reason: another row.
            blocked(13, send, "select", 9_000_000_000),
            blocked(20, lock, "sync.Mutex.Lock", 5_000_000_000),
            blocked(21, lock, "sync.Mutex.Lock", 5_000_000_000),
            // Stack not walked yet: grouped by the runtime function that parked it.
            blocked(30, None, "chan send", 1),
        ];
        let rows = group(&gs, SortBy::Count);
        type Summary<'a> = (Option<&'a str>, &'a str, &'a str, usize, u64, u64);
        let summary: Vec<Summary> = rows
            .iter()
            .map(|r| {
                (
                    r.location.as_deref(),
                    &*r.function,
                    &*r.reason,
                    r.count,
                    r.longest_ns,
                    r.longest_goid,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    Some("/src/main.go:41"),
                    "main.worker",
                    "chan send",
                    3,
                    3_000_000_000,
                    10
                ),
                (
                    Some("/src/main.go:20"),
                    "main.transfer",
                    "sync.Mutex.Lock",
                    2,
                    5_000_000_000,
                    20
                ),
                (
                    Some("/src/main.go:41"),
                    "main.worker",
                    "select",
                    1,
                    9_000_000_000,
                    13
                ),
                (None, "runtime.chansend", "chan send", 1, 1, 30),
            ]
        );
        // Goids 10 and 12 come from :10, 11 from :11.
        assert_eq!(rows[0].other_creators, 1);
        assert_eq!(
            rows[0].created_by.as_ref().unwrap().location.as_deref(),
            Some("/src/main.go:10")
        );
        let by_wait = group(&gs, SortBy::Longest);
        assert_eq!(by_wait[0].reason.as_ref(), "select");
        assert_eq!(by_wait[1].reason.as_ref(), "sync.Mutex.Lock");
    }

    #[test]
    fn a_wait_from_before_top_started_is_a_lower_bound() {
        let site = Some(("main.worker", "/src/main.go:41"));
        let mut old = blocked(5, site, "chan send", 7_000_000_000);
        old.blocked_before_attach = true;
        let rows = group(&[blocked(6, site, "chan send", 1), old], SortBy::Count);
        assert!(rows[0].at_least);
        assert_eq!(rows[0].longest_goid, 5);
    }

    #[test]
    fn waits_and_locations() {
        assert_eq!(wait(950_000_000), "950ms");
        assert_eq!(wait(12_345_000_000), "12.3s");
        assert_eq!(wait(245_000_000_000), "4m05s");
        assert_eq!(wait(7_380_000_000_000), "2h03m");
        assert_eq!(wait(273_600_000_000_000), "3d04h");
        assert_eq!(short_location("/a/b/demo/main.go:45"), "demo/main.go:45");
        assert_eq!(short_location("demo/main.go:45"), "demo/main.go:45");
        assert_eq!(short_location("main.go:45"), "main.go:45");
    }
}
