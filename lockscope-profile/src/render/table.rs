//! The default format: an aligned table of the hottest groups with their stacks, the header
//! saying what was recorded and lost, and the bundled map's explanation.
use std::io::{self, Write};

use super::{frame_lines, key_label, releasers, Render};
use crate::analyze::{
    attribute, groups, shown_rows, shown_totals, Group, GroupBy, Key, Share, ViewOptions, Waits,
};
use crate::profile::{fmt_count, fmt_ns, is_lock_code, percent, MapCounter, Profile};
use crate::render::header;

/// The hot stack table, with a header that says what was recorded and what was lost.
pub struct Table {
    pub view: ViewOptions,
    /// ANSI colour (only on a terminal, and not under NO_COLOR).
    pub color: bool,
}

const NAME_WIDTH: usize = 72;

#[path = "table_hist.rs"]
mod hist;
use hist::histogram;

fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(width - 1).collect();
        t.push('…');
        t
    }
}

/// ANSI styling that is a no-op without colour.
#[derive(Clone, Copy)]
pub(super) struct Paint(pub(super) bool);

impl Paint {
    pub(super) fn bold(self, s: &str) -> String {
        self.wrap("1", s)
    }
    /// The frame lockscope blames: where the program took the lock.
    fn blame(self, s: &str) -> String {
        self.wrap("1;33", s)
    }
    fn dim(self, s: &str) -> String {
        self.wrap("2", s)
    }
    fn wrap(self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

/// Width of the numeric columns before the key or stack column.
pub(super) const LEAD_WIDTH: usize = 3 + 1 + 10 + 1 + 11 + 1 + 9 + 1 + 9 + 1 + 6 + 2;

impl Render for Table {
    fn render(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        // Every string the target or a profile file controls is escaped for the terminal.
        let safe = crate::profile::for_terminal(profile);
        let profile = &safe;
        let paint = Paint(self.color);
        header(profile, self.view.waits, out)?;
        self.blocked(profile, paint, out)?;
        let rows = groups(profile, &self.view);
        let grand = shown_totals(profile, self.view.waits).wait_ns;
        writeln!(out)?;
        if rows.is_empty() {
            if !shown_rows(profile, self.view.waits).is_empty() {
                writeln!(
                    out,
                    "no group has {} or more of wait (--min-wait)",
                    fmt_ns(self.view.min_wait_ns)
                )?;
            } else {
                writeln!(
                    out,
                    "{}",
                    match self.view.waits {
                        Waits::Idle => "no idle waits: no thread slept in a condition wait, park or join while recording",
                        Waits::Contention => "no lock contention: no thread slept on a lock while recording",
                        Waits::All => "no lock contention: no thread slept on a futex while recording",
                    }
                )?;
            }
            return bundled_map(profile, out);
        }
        let what = match self.view.by {
            GroupBy::Stack => {
                "stack (innermost first; ▶ first frame outside the lock code)".to_string()
            }
            GroupBy::Lock => "lock (futex word): what it is · waiters · releasers".to_string(),
            by => format!("{} · hottest stack's lock site", by.name()),
        };
        let title = format!(
            "{:>3} {:>10} {:>11} {:>9} {:>9} {:>6}  {what}",
            "#", "waits", "total wait", "avg", "max", "share"
        );
        writeln!(out, "{}", paint.bold(&title))?;
        for (rank, g) in rows.iter().take(self.view.top).enumerate() {
            let lead = format!(
                "{:>3} {:>10} {:>11} {:>9} {:>9} {:>5.1}%  ",
                rank + 1,
                fmt_count(g.count),
                fmt_ns(g.total_ns),
                fmt_ns(g.avg_ns()),
                fmt_ns(g.max_ns),
                percent(g.total_ns, grand)
            );
            match &g.key {
                Key::Stack(s) => self.stack_rows(profile, *s, &lead, paint, out)?,
                key => self.group_rows(profile, g, key, &lead, paint, out)?,
            }
            if self.view.waits != Waits::Contention {
                let class = format!("({})", g.class.label());
                writeln!(out, "{:LEAD_WIDTH$}{}", "", paint.dim(&class))?;
            }
            if self.view.hist {
                histogram(g, paint, out)?;
            }
        }
        if rows.len() > self.view.top {
            writeln!(
                out,
                "{}",
                paint.dim(&format!(
                    "… {} more {}s (--top N)",
                    rows.len() - self.view.top,
                    self.view.by.name()
                ))
            )?;
        }
        bundled_map(profile, out)
    }
}

impl Table {
    /// One stack: its frames under the numbers, the blamed frame marked.
    pub(super) fn stack_rows(
        &self,
        profile: &Profile,
        stack: Option<usize>,
        lead: &str,
        paint: Paint,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        let pad = " ".repeat(LEAD_WIDTH);
        let lines: Vec<(String, Option<String>)> = match stack.and_then(|s| profile.stacks.get(s)) {
            Some(stack) => stack
                .frames
                .iter()
                .flat_map(|f| frame_lines(f, profile))
                .collect(),
            None => vec![("[stack lost]".to_string(), None)],
        };
        let blamed = lines
            .iter()
            .position(|(name, _)| !is_lock_code(profile, name));
        let limit = self.view.max_frames.unwrap_or(usize::MAX);
        // Always show through the blamed frame, even past the limit.
        let shown = limit.max(blamed.map_or(0, |b| b + 1)).min(lines.len());
        let width = lines
            .iter()
            .take(shown)
            .map(|(n, _)| n.chars().count())
            .max()
            .unwrap_or(0)
            .min(NAME_WIDTH);
        for (i, (name, loc)) in lines.iter().take(shown).enumerate() {
            let marker = if Some(i) == blamed { "▶ " } else { "  " };
            let name = format!("{:<width$}", clip(name, NAME_WIDTH));
            let name = if Some(i) == blamed {
                paint.blame(&name)
            } else {
                name
            };
            let text = format!(
                "{marker}{name}  {}",
                paint.dim(loc.as_deref().unwrap_or(""))
            );
            let text = text.trim_end();
            if i == 0 {
                writeln!(out, "{lead}{text}")?;
            } else {
                writeln!(out, "{pad}{text}")?;
            }
        }
        if shown < lines.len() {
            writeln!(
                out,
                "{pad}{}",
                paint.dim(&format!(
                    "  … {} more frames (--full-stacks)",
                    lines.len() - shown
                ))
            )?;
        }
        Ok(())
    }

    /// A non-stack group: its label, then what makes it readable (a lock's identity and
    /// releasers; otherwise where its hottest stack took the lock).
    fn group_rows(
        &self,
        profile: &Profile,
        g: &Group,
        key: &Key,
        lead: &str,
        paint: Paint,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        let pad = " ".repeat(LEAD_WIDTH);
        let site = crate::profile::blamed_function(
            profile,
            g.hottest_stack.and_then(|s| profile.stacks.get(s)),
        );
        match key {
            Key::Lock(pid, uaddr) => {
                let what = profile
                    .lock_info(*pid, *uaddr)
                    .map_or_else(|| "unknown".to_string(), |l| l.describe());
                writeln!(
                    out,
                    "{lead}{} {}",
                    paint.bold(&key_label(key, profile)),
                    clip(&what, NAME_WIDTH)
                )?;
                let r = releasers(profile, *pid, *uaddr);
                let released = r.hottest.map_or(String::new(), |s| {
                    let f = crate::profile::blamed_function(profile, profile.stacks.get(s));
                    format!(" · most released at {}", paint.blame(&clip(&f, NAME_WIDTH)))
                });
                writeln!(
                    out,
                    "{pad}{} waiting threads · {} releasing threads ({} woken) · most waited at {}{released}",
                    g.threads.len(),
                    r.threads,
                    fmt_count(r.woken),
                    paint.blame(&clip(&site, NAME_WIDTH))
                )?;
            }
            _ => {
                writeln!(
                    out,
                    "{lead}{}",
                    paint.bold(&clip(&key_label(key, profile), NAME_WIDTH))
                )?;
                if !matches!(key, Key::Function(_)) {
                    writeln!(
                        out,
                        "{pad}{} threads · {} locks · mostly at {}",
                        g.threads.len(),
                        g.locks.len(),
                        paint.blame(&clip(&site, NAME_WIDTH))
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// The bundled map's section: what waiters were doing, what they waited behind, the traced
/// phases, the check against the map's own counters, and the verdict.
fn bundled_map(profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
    if profile
        .bundled
        .as_ref()
        .is_some_and(|b| b.kind == crate::profile::MapKind::StdHashTrie)
    {
        return super::table_trie::trie_map(profile, out);
    }
    let (Some(b), Some(a)) = (&profile.bundled, attribute(profile)) else {
        return super::table_trie::map_unwaited(profile, out);
    };
    writeln!(out)?;
    let name = |f: &str| crate::knowledge::function_name(b.kind, f).to_string();
    writeln!(
        out,
        "{} in {}: probed {}",
        crate::knowledge::heading(b.kind, b.go_version.as_deref()),
        b.exe,
        if b.probed.is_empty() {
            crate::knowledge::none_probed(b.kind).to_string()
        } else {
            b.probed
                .iter()
                .map(|f| name(f))
                .collect::<Vec<_>>()
                .join(", ")
        }
    )?;
    share_table(
        out,
        "waiting threads were doing",
        a.by_category.iter().map(|(c, s)| (c.label(), s)),
        a.total_ns,
    )?;
    // Blame is kept per lock: with one map lock the table names it; with several, one table
    // per lock, busiest first.
    if !a.blame_known && b.kind != crate::profile::MapKind::StdHashTrie {
        writeln!(
            out,
            "  what waiters waited behind: not known (--phase-probes off)"
        )?;
    }
    for (lock, rows) in a.behind_by_lock.iter().filter(|_| a.blame_known) {
        let whole = rows.iter().map(|(_, s)| s.wait_ns).sum();
        share_table(
            out,
            &format!("waited behind, on lock {lock:#x}"),
            rows.iter().map(|(b, s)| (b.label(), s)),
            whole,
        )?;
    }
    let phases: Vec<String> = b
        .phases
        .iter()
        .filter(|r| r.calls > 0)
        .map(|r| {
            let mut s = format!("{} ×{}", name(r.phase.function()), fmt_count(r.calls));
            if let Some(avg) = r.total_ns.checked_div(r.returns) {
                s += &format!(" (avg {}, max {}", fmt_ns(avg), fmt_ns(r.max_ns));
                if r.items > 0 {
                    s += &format!(", {} entries copied", fmt_count(r.items));
                }
                s += ")";
            }
            s
        })
        .collect();
    if !phases.is_empty() {
        writeln!(out, "  phases traced: {}", phases.join(" · "))?;
    }
    if !b.checks.is_empty() {
        let worst = b
            .checks
            .iter()
            .map(|c| c.error_percent())
            .fold(0.0, f64::max);
        let items: Vec<String> = b
            .checks
            .iter()
            .map(|c| {
                format!(
                    "{} {}/{}",
                    c.what,
                    fmt_count(c.traced),
                    fmt_count(c.counted)
                )
            })
            .collect();
        writeln!(
            out,
            "  traced/counted by the map itself{}: {} (worst {:.2}% off)",
            if b.counters_exact {
                ""
            } else {
                " (to its last read before exit)"
            },
            items.join(" · "),
            worst
        )?;
    }
    if let (Some(f), Some(_)) = (a.fast_read_percent, &b.counters) {
        writeln!(
            out,
            "  reads: {f:.2}% fast path ({} lock-free, {} locked)",
            fmt_count(b.counter(MapCounter::FastRead).unwrap_or(0)),
            fmt_count(b.counter(MapCounter::SlowLoad).unwrap_or(0))
        )?;
    }
    super::table_trie::fast_path(b, out)?;
    for note in crate::knowledge::not_traced(b.kind, &b.probed) {
        writeln!(out, "  {note}")?;
    }
    if !b.probed.iter().any(|p| p == "miss_locked") {
        if let Some(misses) = b.counter(MapCounter::ReadMiss) {
            writeln!(
                out,
                "  read misses: {} (the map's own count; `--phase-probes all` traces each one, at a cost)",
                fmt_count(misses)
            )?;
        }
    }
    writeln!(out, "verdict: {}", a.verdict)
}

fn share_table<'a>(
    out: &mut dyn Write,
    title: &str,
    rows: impl Iterator<Item = (&'a str, &'a Share)>,
    whole: u64,
) -> io::Result<()> {
    let mut rows = rows.peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    writeln!(
        out,
        "  {title:<44} {:>10} {:>11} {:>6}",
        "waits", "wait time", "share"
    )?;
    for (label, s) in rows {
        writeln!(
            out,
            "  {label:<44} {:>10} {:>11} {:>5.1}%",
            fmt_count(s.waits),
            fmt_ns(s.wait_ns),
            percent(s.wait_ns, whole)
        )?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
