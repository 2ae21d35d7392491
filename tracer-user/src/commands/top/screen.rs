//! screen: what `top` draws — the header, and the hottest groups with their recent rate,
//! the numeric columns dropped whole on a narrow terminal.
use std::collections::HashMap;

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use crate::analyze::{groups, shown_totals, Key, ViewOptions};
use crate::profile::{blamed_function, fmt_count, fmt_ns, percent, Profile};
use crate::render::key_label;

/// What one screen shows: the profile so far, the view, and each row's recent wait rate.
pub struct Screen<'a> {
    pub profile: &'a Profile,
    pub view: ViewOptions,
    /// Wait ns per second over the last interval, by group key.
    pub recent: &'a HashMap<Key, f64>,
    pub status: &'a str,
}

/// Draws one screen (also what the tests render to a test backend).
pub fn draw(frame: &mut Frame, s: &Screen) {
    let [head, body] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(3)]).areas(frame.area());
    let p = s.profile;
    let t = shown_totals(p, s.view.waits);
    let mut head_text = vec![
        Line::from(format!(
            "lockscope top · pid {} ({}) · {} · waits {} · {} waiting · lost {}",
            p.meta.pid,
            p.meta.comm,
            fmt_ns(p.meta.duration_ns),
            fmt_count(t.waits),
            fmt_ns(t.wait_ns),
            fmt_count(p.losses.events())
        ))
        .style(Style::new().add_modifier(Modifier::BOLD)),
        Line::from(format!(
            "by {} (b) · sort {} (s) · q quits · {} · unwind {}",
            s.view.by.name(),
            s.view.sort.name(),
            s.status,
            p.meta.unwind
        )),
    ];
    // Frames nothing named yet (a debuginfod fetch may still be running), and what would.
    if !p.meta.unnamed.is_empty() {
        head_text.push(Line::from(crate::render::unnamed_line(&p.meta.unnamed)));
    }
    frame.render_widget(Paragraph::new(head_text), head);

    let cols = columns_for(body.width);
    let rows: Vec<Row> = groups(p, &s.view)
        .iter()
        .take(body.height.saturating_sub(1) as usize)
        .map(|g| {
            let site = blamed_function(p, g.hottest_stack.and_then(|i| p.stacks.get(i)));
            let label = match &g.key {
                Key::Stack(_) | Key::Function(_) => site,
                key => format!("{} · at {site}", key_label(key, p)),
            };
            // Threads' worth of waiting right now: wait ns per second of wall time.
            let now = s.recent.get(&g.key).copied().unwrap_or(0.0) / 1e9;
            let cell = |c: Col| match c {
                Col::Now => format!("{:.2}", now),
                Col::Waits => fmt_count(g.count),
                Col::Total => fmt_ns(g.total_ns),
                Col::Avg => fmt_ns(g.avg_ns()),
                Col::Max => fmt_ns(g.max_ns),
                Col::Share => format!("{:.1}%", percent(g.total_ns, t.wait_ns)),
            };
            let mut cells: Vec<Cell> = cols.iter().map(|&c| Cell::from(cell(c))).collect();
            cells.push(Cell::from(label));
            Row::new(cells)
        })
        .collect();
    let mut names: Vec<&str> = cols.iter().map(|c| c.name()).collect();
    names.push("where");
    let header = Row::new(names).style(Style::new().add_modifier(Modifier::REVERSED));
    let mut widths: Vec<Constraint> = cols.iter().map(|c| Constraint::Length(c.width())).collect();
    widths.push(Constraint::Min(WHERE_MIN));
    frame.render_widget(Table::new(rows, widths).header(header), body);
}

/// The numeric columns, in screen order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Now,
    Waits,
    Total,
    Avg,
    Max,
    Share,
}

/// The narrowest the `where` column may get before numeric columns are dropped.
const WHERE_MIN: u16 = 20;

impl Col {
    const ORDER: [Col; 6] = [
        Col::Now,
        Col::Waits,
        Col::Total,
        Col::Avg,
        Col::Max,
        Col::Share,
    ];
    /// Which columns go first when the terminal is narrow: least telling first.
    const DROP: [Col; 5] = [Col::Avg, Col::Max, Col::Now, Col::Waits, Col::Share];

    fn name(self) -> &'static str {
        match self {
            Col::Now => "now",
            Col::Waits => "waits",
            Col::Total => "total",
            Col::Avg => "avg",
            Col::Max => "max",
            Col::Share => "share",
        }
    }

    fn width(self) -> u16 {
        match self {
            Col::Now => 6,
            Col::Waits => 11,
            Col::Total => 10,
            Col::Avg | Col::Max => 9,
            Col::Share => 7,
        }
    }
}

/// The columns that fit `width` whole: numbers are dropped, never clipped into other numbers.
fn columns_for(width: u16) -> Vec<Col> {
    let mut cols = Col::ORDER.to_vec();
    let need = |cols: &[Col]| cols.iter().map(|c| c.width() + 1).sum::<u16>() + WHERE_MIN;
    for drop in Col::DROP {
        if need(&cols) <= width {
            break;
        }
        cols.retain(|&c| c != drop);
    }
    cols
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::GroupBy;
    use crate::profile::testing::sample;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn screen_text(view: ViewOptions) -> String {
        screen_at(view, 110)
    }

    fn screen_at(view: ViewOptions, width: u16) -> String {
        let p = sample();
        let recent = HashMap::from([(Key::Stack(Some(0)), 500_000_000.0)]);
        let mut t = Terminal::new(TestBackend::new(width, 12)).unwrap();
        t.draw(|f| {
            draw(
                f,
                &Screen {
                    profile: &p,
                    view,
                    recent: &recent,
                    status: "every 1.00 s",
                },
            )
        })
        .unwrap();
        let buf = t.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_screen_shows_the_hot_frame_first_with_its_rate() {
        let s = screen_text(ViewOptions::default());
        assert!(s.contains("lockscope top · pid 42 (demo)"), "{s}");
        let hot = s.lines().position(|l| l.contains("demo::hot")).unwrap();
        let other = s.lines().position(|l| l.contains("0x3000")).unwrap();
        assert!(hot < other, "{s}");
        assert!(
            s.lines().nth(hot).unwrap().trim_start().starts_with("0.50"),
            "{s}"
        );
        let by_lock = screen_text(ViewOptions {
            by: GroupBy::Lock,
            ..ViewOptions::default()
        });
        assert!(by_lock.contains("0x5000 · at demo::hot"), "{by_lock}");
    }

    /// A narrow terminal drops whole columns rather than clip "1,000" into "1,0".
    #[test]
    fn narrow_terminals_drop_columns_not_digits() {
        assert_eq!(columns_for(200).len(), 6);
        assert_eq!(columns_for(40), vec![Col::Total, Col::Share]);
        for width in [30u16, 40, 60, 80] {
            let s = screen_at(ViewOptions::default(), width);
            let header = s.lines().find(|l| l.contains("where")).unwrap();
            for c in columns_for(width) {
                assert!(header.contains(c.name()), "{width}: {header}");
            }
            assert!(!header.contains("avg") || width >= 80, "{width}: {header}");
        }
    }
}
