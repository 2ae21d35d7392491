//! top: a live, refreshing table of a running process's hottest lock waits (like `py-spy
//! top`): the same kernel aggregates and grouping as `record`, read every interval.
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::options::TopOptions;
use super::session::{Probes, Session};
use super::tty::{Input, Key as Press, Tty};
use crate::analyze::{groups, shown_totals, GroupBy, Key, SortKey, ViewOptions};
use crate::collect::{self, build_profile, Follow};
use crate::profile::{blamed_function, fmt_count, fmt_ns, percent, Profile, StopReason};
use crate::render::key_label;
use crate::symbolize::StackSymbolizer;
use crate::sys::{self, thread_names, MapHistory};

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

/// Set by SIGTERM/SIGHUP/SIGINT: leave the loop and restore the terminal rather than die in
/// raw mode (in raw mode Ctrl-C arrives as a key, but `kill` and a closed terminal do not).
static QUIT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_quit_signal(_: libc::c_int) {
    QUIT.store(true, Ordering::Relaxed);
}

fn catch_quit_signals() {
    for sig in [
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_quit_signal as *const () as libc::sighandler_t);
        }
    }
}

fn next<T: Copy + PartialEq>(all: &[T], cur: T) -> T {
    let i = all.iter().position(|x| *x == cur).unwrap_or(0);
    all[(i + 1) % all.len()]
}

pub fn run(opts: &TopOptions) -> Result<()> {
    sys::check_privileges()?;
    let target = sys::target(opts.pid)?;
    sys::check_may_trace(target.tgid)?;
    sys::ensure_tracefs()?;
    let probes = Probes {
        unwind: opts.unwind,
        phases: &opts.phases,
        go_uprobes: opts.go_uprobes,
        go_sample: None,
        follow: Follow::Off,
        hooks: opts.hooks,
    };
    let Session {
        target,
        map,
        plan,
        mut tracer,
        snapshots,
        ..
    } = Session::start(target, &probes, crate::sys::AttachPriority::raise(), |_| {
        Ok(Vec::new())
    })?;
    let start_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let started = Instant::now();
    let mut maps = MapHistory::default();
    let mut threads = BTreeMap::new();
    let mut sym = StackSymbolizer::new(MapHistory::default());
    sym.fetch_in_background();
    // The new-stack notices are read without awaiting, but registering them needs a reactor.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let _reactor = rt.enter();
    maps.refresh(target.tgid);
    // Keeps the maps complete between refreshes (a library loaded, a short-lived thread).
    let mut new_stacks = collect::NewStacks::take(&mut tracer)?;
    let mut view = ViewOptions {
        by: opts.by,
        sort: opts.sort,
        waits: opts.waits,
        ..ViewOptions::default()
    };
    catch_quit_signals();
    let tty = Tty::open().context("opening the terminal (top needs one; try `record`)")?;
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    // From here on the terminal is restored on every way out, errors included.
    let result = (|| -> Result<End> {
        let mut profile: Option<Profile> = None;
        let mut forwarders = crate::symbolize::Forwarders::default();
        let mut last: HashMap<Key, u64> = HashMap::new();
        let mut recent: HashMap<Key, f64> = HashMap::new();
        let mut last_at = Instant::now();
        let mut next_refresh = Instant::now();
        let mut exited = false;
        loop {
            if QUIT.load(Ordering::Relaxed) {
                return Ok(End::Signal);
            }
            new_stacks.check(target.tgid, &mut maps, &tracer);
            if Instant::now() >= next_refresh && !exited {
                exited = !maps.refresh(target.tgid);
                thread_names(target.tgid, &mut threads);
                let stop = if exited {
                    StopReason::TargetExited
                } else {
                    StopReason::Duration
                };
                let raw = collect::read(
                    &tracer,
                    maps.clone(),
                    threads.clone(),
                    stop,
                    started.elapsed(),
                )?;
                let mut raw = raw;
                raw.dwarf = snapshots.as_ref().map(collect::SnapshotDrain::rows);
                let mut p = build_profile(&target, raw, start_unix_ms, map.as_ref(), &mut sym);
                p.meta.unwind = plan.mode.into();
                p.meta.unwind_note = plan.why.clone();
                forwarders.mark(&mut p);
                opts.lock_wrappers.mark(&mut p);
                let dt = last_at.elapsed().as_secs_f64().max(1e-3);
                last_at = Instant::now();
                recent.clear();
                let all = ViewOptions {
                    top: usize::MAX,
                    ..view
                };
                let mut now_totals = HashMap::new();
                for g in groups(&p, &all) {
                    let before = last.get(&g.key).copied().unwrap_or(0);
                    recent.insert(g.key.clone(), g.total_ns.saturating_sub(before) as f64 / dt);
                    now_totals.insert(g.key, g.total_ns);
                }
                last = now_totals;
                profile = Some(p);
                next_refresh = Instant::now() + opts.interval;
            }
            if let Some(p) = &profile {
                let status = if exited {
                    "target exited: final totals".to_string()
                } else {
                    format!("every {}", fmt_ns(opts.interval.as_nanos() as u64))
                };
                let drawn = terminal.draw(|f| {
                    draw(
                        f,
                        &Screen {
                            profile: p,
                            view,
                            recent: &recent,
                            status: &status,
                        },
                    )
                });
                // A terminal that cannot be written to is gone (EIO after a hang-up).
                if drawn.is_err() {
                    return Ok(End::HungUp);
                }
            }
            let wait = next_refresh
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(250));
            let keys = match tty.wait(wait) {
                Input::HungUp => return Ok(End::HungUp),
                Input::Keys(keys) => keys,
            };
            for k in keys {
                match k {
                    Press::Quit => return Ok(End::Quit),
                    Press::Sort => view.sort = next(&SortKey::ALL, view.sort),
                    Press::By => {
                        view.by = next(&GroupBy::ALL, view.by);
                        // Rates restart with the new keys.
                        last.clear();
                        recent.clear();
                    }
                }
            }
        }
    })();
    // The cursor first (the terminal's own drop would print its failure to a dead terminal),
    // then raw mode and the alternate screen.
    let cursor = terminal.show_cursor();
    std::mem::forget(terminal);
    let restored = ratatui::try_restore();
    if cursor.is_err() || restored.is_err() {
        // The terminal is gone: later messages (and the panic a failed eprintln! would be)
        // go nowhere.
        super::tty::stderr_to_null();
    }
    drop(tracer);
    match result? {
        // The terminal may be gone (SIGHUP comes with a hang-up): restored if it still could be.
        End::HungUp | End::Signal => Ok(()),
        End::Quit => restored.context("restoring the terminal"),
    }
}

/// Why the screen loop ended.
enum End {
    /// A quit key.
    Quit,
    /// SIGTERM, SIGINT, SIGHUP (or SIGUSR1/2).
    Signal,
    /// The terminal hung up, closed, or failed a read or write.
    HungUp,
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn keys_cycle_through_every_choice() {
        assert_eq!(next(&SortKey::ALL, SortKey::Total), SortKey::Count);
        assert_eq!(next(&SortKey::ALL, SortKey::Avg), SortKey::Total);
        assert_eq!(next(&GroupBy::ALL, GroupBy::Category), GroupBy::Stack);
    }
}
