//! How `top` draws one refresh: a header about the target, the groups as a table, the keys.
//! The same cells serve the terminal (ratatui) and the plain text printed when the target exits.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use super::groups::{Group, SortBy, short_location, wait};

/// What one refresh saw, ready to draw.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Goroutines in the latest scan (not dead).
    pub goroutines: usize,
    /// Blocked goroutines shown (the runtime's own left out).
    pub blocked: usize,
    /// The runtime's own blocked goroutines, left out.
    pub runtime_hidden: usize,
    /// Rows, in no particular order (the view sorts them).
    pub groups: Vec<Group>,
    /// Refreshes so far.
    pub refreshes: u64,
    /// The latest scan failed (e.g. the goroutine table was being rewritten): the rows are
    /// the previous refresh's.
    pub stale: Option<String>,
}

/// The fixed facts shown in the header.
#[derive(Debug, Clone)]
pub struct Header {
    pub pid: u32,
    pub exe: String,
    pub go_version: String,
    pub interval: std::time::Duration,
}

pub const COLUMNS: [&str; 6] = [
    "COUNT",
    "LONGEST",
    "REASON",
    "SITE",
    "FUNCTION",
    "CREATED BY",
];

/// The six cells of a row, as text.
pub fn cells(g: &Group) -> [String; 6] {
    let created = match &g.created_by {
        Some(c) => {
            let at = c.location.as_deref().map(short_location).unwrap_or("?");
            format!("{} {at}", c.function)
        }
        None => "(main goroutine)".to_string(),
    };
    let created = if g.other_creators > 0 {
        format!("{created} (+{} more)", g.other_creators)
    } else {
        created
    };
    [
        g.count.to_string(),
        format!(
            "{}{}",
            if g.at_least { "≥" } else { "" },
            wait(g.longest_ns)
        ),
        g.reason.to_string(),
        g.location
            .as_deref()
            .map_or("(stack not read yet)".to_string(), |l| {
                short_location(l).to_string()
            }),
        g.function.to_string(),
        created,
    ]
}

fn title(h: &Header) -> String {
    format!(
        "blockprobe top  pid {}  {}  {}  every {}",
        h.pid,
        h.exe,
        h.go_version,
        humantime::format_duration(h.interval)
    )
}

fn status(s: &Snapshot, sort: SortBy) -> String {
    let mut line = format!(
        "goroutines {}  blocked {} in {} group{}  {} runtime hidden  sort: {}  refresh {}",
        s.goroutines,
        s.blocked,
        s.groups.len(),
        if s.groups.len() == 1 { "" } else { "s" },
        s.runtime_hidden,
        sort.name(),
        s.refreshes,
    );
    if let Some(why) = &s.stale {
        line.push_str(&format!("  (latest scan failed: {why})"));
    }
    line
}

/// Draws one frame.
pub fn draw(
    frame: &mut Frame,
    header: &Header,
    snap: &Snapshot,
    rows: &[Group],
    sort: SortBy,
    state: &mut TableState,
) {
    let [top, table_area, keys] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(
        Paragraph::new(vec![
            Line::styled(title(header), Style::new().add_modifier(Modifier::BOLD)),
            Line::raw(status(snap, sort)),
        ]),
        top,
    );
    let other = match sort.toggled() {
        SortBy::Count => "count",
        SortBy::Longest => "longest wait",
    };
    frame.render_widget(
        Paragraph::new(format!("q quit   s sort by {other}   ↑/↓ scroll")),
        keys,
    );
    if rows.is_empty() {
        let why = if snap.refreshes < 2 {
            "reading the goroutine table (a wait counts once two scans in a row saw it)..."
        } else {
            "no goroutine of the program is blocked"
        };
        frame.render_widget(Paragraph::new(why), table_area);
        return;
    }
    let texts: Vec<[String; 6]> = rows.iter().map(cells).collect();
    let width = |i: usize, cap: usize| {
        texts
            .iter()
            .map(|c| c[i].chars().count())
            .chain([COLUMNS[i].len()])
            .max()
            .unwrap_or(0)
            .min(cap) as u16
    };
    let widths = [
        Constraint::Length(width(0, 8)),
        Constraint::Length(width(1, 9)),
        Constraint::Length(width(2, 28)),
        Constraint::Length(width(3, 48)),
        Constraint::Fill(1),
        Constraint::Fill(1),
    ];
    let table = Table::new(
        texts.into_iter().map(|c| Row::new(c.map(Cell::from))),
        widths,
    )
    .header(Row::new(COLUMNS).style(Style::new().add_modifier(Modifier::REVERSED)))
    .row_highlight_style(Style::new().add_modifier(Modifier::BOLD))
    .column_spacing(2);
    frame.render_stateful_widget(table, table_area, state);
}

/// The last refresh as plain text (printed when the target exits and the screen is gone).
pub fn plain(header: &Header, snap: &Snapshot, rows: &[Group], sort: SortBy) -> String {
    let mut out = format!("{}\n{}\n", title(header), status(snap, sort));
    let texts: Vec<[String; 6]> = rows.iter().map(cells).collect();
    let mut widths = COLUMNS.map(str::len);
    for c in &texts {
        for (w, cell) in widths.iter_mut().zip(c) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |c: [&str; 6]| {
        let mut s = String::new();
        for (i, (cell, w)) in c.iter().zip(widths).enumerate() {
            if i + 1 == c.len() {
                s.push_str(cell);
            } else {
                let pad = w.saturating_sub(cell.chars().count());
                s.push_str(cell);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    out.push_str(&line(COLUMNS));
    for c in &texts {
        out.push_str(&line(c.each_ref().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CreationSite, Text};

    #[test]
    fn plain_text_lines_up() {
        let g = Group {
            function: Text::from("main.worker"),
            location: Some(Text::from("/src/app/main.go:41")),
            reason: Text::from("chan send"),
            count: 12,
            longest_ns: 3_400_000_000,
            at_least: true,
            longest_goid: 7,
            created_by: Some(CreationSite {
                function: Text::from("main.main"),
                location: Some(Text::from("/src/app/main.go:39")),
                parent_goid: 1,
            }),
            other_creators: 2,
        };
        let header = Header {
            pid: 42,
            exe: "/bin/app".into(),
            go_version: "go1.27.3".into(),
            interval: std::time::Duration::from_secs(1),
        };
        let snap = Snapshot {
            goroutines: 20,
            blocked: 12,
            runtime_hidden: 3,
            groups: vec![g.clone()],
            refreshes: 4,
            stale: None,
        };
        let text = plain(&header, &snap, &[g], SortBy::Count);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "blockprobe top  pid 42  /bin/app  go1.27.3  every 1s"
        );
        assert!(
            lines[1].starts_with("goroutines 20  blocked 12 in 1 group  "),
            "{text}"
        );
        assert_eq!(
            lines[2],
            "COUNT  LONGEST  REASON     SITE            FUNCTION     CREATED BY"
        );
        assert_eq!(
            lines[3],
            "12     ≥3.4s    chan send  app/main.go:41  main.worker  main.main app/main.go:39 (+2 more)"
        );
    }

    #[test]
    fn draws_the_rows_in_the_given_order() {
        let row = |count, site: &str, reason: &str| Group {
            function: Text::from("main.worker"),
            location: Some(Text::from(site)),
            reason: Text::from(reason),
            count,
            longest_ns: 2_000_000_000,
            at_least: false,
            longest_goid: 9,
            created_by: None,
            other_creators: 0,
        };
        let rows = [
            row(7, "/src/app/main.go:41", "chan send"),
            row(2, "/src/app/lock.go:12", "sync.Mutex.Lock"),
        ];
        let header = Header {
            pid: 42,
            exe: "/bin/app".into(),
            go_version: "go1.27.3".into(),
            interval: std::time::Duration::from_millis(500),
        };
        let snap = Snapshot {
            goroutines: 10,
            blocked: 9,
            runtime_hidden: 1,
            groups: rows.to_vec(),
            refreshes: 3,
            stale: None,
        };
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 8)).unwrap();
        let mut state = TableState::default();
        terminal
            .draw(|f| draw(f, &header, &snap, &rows, SortBy::Count, &mut state))
            .unwrap();
        let buf = terminal.backend().buffer();
        let lines: Vec<String> = (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol())
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect();
        assert!(lines[0].starts_with("blockprobe top  pid 42  /bin/app  go1.27.3  every 500ms"));
        assert!(lines[2].starts_with("COUNT  LONGEST  REASON"), "{lines:#?}");
        assert!(
            lines[3].starts_with("7      2.0s     chan send        app/main.go:41"),
            "{lines:#?}"
        );
        assert!(
            lines[4].starts_with("2      2.0s     sync.Mutex.Lock  app/lock.go:12"),
            "{lines:#?}"
        );
        assert!(lines[3].ends_with("(main goroutine)"), "{lines:#?}");
        assert!(
            lines[7].starts_with("q quit   s sort by longest wait"),
            "{lines:#?}"
        );
        let mut narrow = ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 8)).unwrap();
        narrow
            .draw(|f| draw(f, &header, &snap, &rows, SortBy::Count, &mut state))
            .unwrap();
        // 80 columns: the fixed columns and the function still fit; the creator is cut.
        let buf = narrow.backend().buffer();
        let row3: String = (0..80).map(|x| buf[(x, 3)].symbol()).collect();
        assert!(
            row3.starts_with("7      2.0s     chan send        app/main.go:41  main.worker"),
            "{row3}"
        );
    }
}
