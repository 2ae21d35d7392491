//! render: output formats. One `Render` impl per format; the table is the default.
use std::io::{self, Write};

use crate::aggregate::{by_stack, percent, totals};
use crate::attribute::{attribute, Share};
use crate::cli::ViewOptions;
use crate::profile::{Frame, Profile};
use crate::units::{fmt_count, fmt_ns};

pub trait Render {
    fn render(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()>;
}

/// The hot stack table, with a header that says what was recorded and what was lost.
pub struct Table {
    pub view: ViewOptions,
}

/// Functions that implement locking and waiting rather than decide to take a lock: the first
/// frame outside them is where the program asked for the lock.
pub fn is_lock_internal(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "syscall",
        "__syscall",
        "futex",
        "__futex",
        "__GI___futex",
        "__lll_lock",
        "lll_",
        "__pthread_mutex",
        "___pthread_mutex",
        "pthread_mutex",
        "__pthread_cond",
        "___pthread_cond",
        "pthread_cond",
        "pthread_rwlock",
        "__pthread_rwlock",
        "sem_wait",
        "__new_sem_wait",
        "do_futex_wait",
        "core::",
        "parking_lot",
        "std::thread::park",
        "runtime.",
    ];
    const CONTAINS: &[&str] = &["std::sys::", "std::sync::", "std::thread::Thread::park"];
    let n = name.trim_start_matches('<');
    PREFIXES.iter().any(|p| n.starts_with(p)) || CONTAINS.iter().any(|c| n.contains(c))
}

/// Display lines of one frame: one per function (inlined ones first).
pub fn frame_lines(frame: &Frame, profile: &Profile) -> Vec<(String, Option<String>)> {
    if frame.syms.is_empty() {
        let module = frame
            .module
            .and_then(|m| profile.modules.get(m))
            .map(|m| m.path.rsplit('/').next().unwrap_or(&m.path).to_string());
        let text = match (module, frame.offset) {
            (Some(m), Some(o)) => format!("{:#x} ({m}+{o:#x})", frame.addr),
            _ => format!("{:#x}", frame.addr),
        };
        return vec![(text, None)];
    }
    frame
        .syms
        .iter()
        .map(|s| {
            let loc = s.file.as_ref().map(|f| {
                let short = f.rsplit('/').next().unwrap_or(f);
                match s.line {
                    Some(l) => format!("{short}:{l}"),
                    None => short.to_string(),
                }
            });
            (s.name.clone(), loc)
        })
        .collect()
}

const NAME_WIDTH: usize = 72;

fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(width - 1).collect();
        t.push('…');
        t
    }
}

pub fn header(profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
    let m = &profile.meta;
    let t = totals(&profile.waits);
    let c = &profile.counters;
    let l = &profile.losses;
    writeln!(
        out,
        "lockscope: pid {} ({}) · recorded {} ({}) · attached in {} · unwind {}",
        m.pid,
        m.comm,
        fmt_ns(m.duration_ns),
        m.stop.describe(),
        fmt_ns(m.attach_ns),
        m.unwind
    )?;
    writeln!(
        out,
        "waits {} · {} of thread time waiting · lost events {} · stacks lost {}",
        fmt_count(t.waits),
        fmt_ns(t.wait_ns),
        fmt_count(l.events()),
        fmt_count(l.stacks())
    )?;
    writeln!(
        out,
        "not counted as contention: {} EAGAIN (word changed before sleeping) · {} timeouts ({}) · {} in flight at start · {} still waiting at end{}",
        fmt_count(c.eagain),
        fmt_count(t.timeouts),
        fmt_ns(t.timeout_ns),
        fmt_count(c.in_flight_at_start),
        fmt_count(c.still_waiting_at_end),
        if c.still_waiting_at_end > 0 {
            format!(" (longest {})", fmt_ns(c.longest_unfinished_ns))
        } else {
            String::new()
        }
    )
}

impl Render for Table {
    fn render(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        header(profile, out)?;
        let rows = by_stack(profile);
        let grand = totals(&profile.waits).wait_ns;
        writeln!(out)?;
        if rows.is_empty() {
            writeln!(
                out,
                "no lock contention: no thread slept on a futex while recording"
            )?;
            return bundled_map(profile, out);
        }
        writeln!(
            out,
            "{:>3} {:>10} {:>11} {:>9} {:>9} {:>6}  stack (innermost first; ▶ first frame outside the lock code)",
            "#", "waits", "total wait", "avg", "max", "share"
        )?;
        let pad = " ".repeat(3 + 1 + 10 + 1 + 11 + 1 + 9 + 1 + 9 + 1 + 6 + 2);
        for (rank, r) in rows.iter().take(self.view.top).enumerate() {
            let lead = format!(
                "{:>3} {:>10} {:>11} {:>9} {:>9} {:>5.1}%  ",
                rank + 1,
                fmt_count(r.count),
                fmt_ns(r.total_ns),
                fmt_ns(r.avg_ns()),
                fmt_ns(r.max_ns),
                percent(r.total_ns, grand)
            );
            let lines: Vec<(String, Option<String>)> =
                match r.stack.and_then(|s| profile.stacks.get(s)) {
                    Some(stack) => stack
                        .frames
                        .iter()
                        .flat_map(|f| frame_lines(f, profile))
                        .collect(),
                    None => vec![("[stack lost]".to_string(), None)],
                };
            let blamed = lines.iter().position(|(name, _)| !is_lock_internal(name));
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
                let text = format!(
                    "{marker}{:<width$}  {}",
                    clip(name, NAME_WIDTH),
                    loc.as_deref().unwrap_or("")
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
                    "{pad}  … {} more frames (--full-stacks)",
                    lines.len() - shown
                )?;
            }
        }
        if rows.len() > self.view.top {
            writeln!(
                out,
                "… {} more stacks (--top N)",
                rows.len() - self.view.top
            )?;
        }
        bundled_map(profile, out)
    }
}

/// The bundled map's section: what waiters were doing, what they waited behind, the traced
/// phases, the check against the map's own counters, and the verdict.
fn bundled_map(profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
    let (Some(b), Some(a)) = (&profile.bundled, attribute(profile)) else {
        return Ok(());
    };
    writeln!(out)?;
    writeln!(
        out,
        "bundled map in {}: probed {}",
        b.exe,
        if b.probed.is_empty() {
            "no phases (--phase-probes off)".to_string()
        } else {
            b.probed.join(", ")
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
    for (lock, rows) in &a.behind_by_lock {
        let whole = rows.iter().map(|(_, s)| s.wait_ns).sum();
        share_table(
            out,
            &format!("waited behind, on lock {lock:#x}"),
            rows.iter().map(|(l, s)| (*l, s)),
            whole,
        )?;
    }
    let phases: Vec<String> = b
        .phases
        .iter()
        .filter(|r| r.calls > 0)
        .map(|r| {
            let mut s = format!("{} ×{}", r.phase, fmt_count(r.calls));
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
    if let (Some(f), Some(c)) = (a.fast_read_percent, &b.counters) {
        writeln!(
            out,
            "  reads: {f:.2}% fast path ({} lock-free, {} locked)",
            fmt_count(c.get("fast_reads").copied().unwrap_or(0)),
            fmt_count(c.get("slow_loads").copied().unwrap_or(0))
        )?;
    }
    if !b.probed.iter().any(|p| p == "miss_locked") {
        if let Some(misses) = b.counters.as_ref().and_then(|c| c.get("read_misses")) {
            writeln!(
                out,
                "  read misses: {} (the map's own count; `--phase-probes all` traces each one, at a cost)",
                fmt_count(*misses)
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
mod tests {
    use super::*;
    use crate::profile::tests::sample;

    fn render(view: ViewOptions) -> String {
        let mut buf = Vec::new();
        Table { view }.render(&sample(), &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn table_lists_hottest_stack_first_with_blame_marker() {
        let s = render(ViewOptions {
            top: 10,
            max_frames: Some(8),
        });
        let lines: Vec<&str> = s.lines().collect();
        assert!(
            lines[0].starts_with("lockscope: pid 42 (demo) · recorded 2.00 s (duration reached)")
        );
        assert!(lines[1].starts_with("waits 6 · 4.50 ms of thread time waiting · lost events 0"));
        let first = lines
            .iter()
            .position(|l| l.trim_start().starts_with("1 "))
            .unwrap();
        assert!(
            lines[first].contains("4.00 ms") && lines[first].contains("88.9%"),
            "{}",
            lines[first]
        );
        assert!(lines[first].contains("syscall"));
        assert!(
            lines[first + 1].contains("▶ demo::hot") && lines[first + 1].ends_with("main.rs:21")
        );
        assert!(lines[first + 2].contains("  demo::worker"));
        let second = lines
            .iter()
            .position(|l| l.trim_start().starts_with("2 "))
            .unwrap();
        assert!(lines[second].contains("0x3000"), "{}", lines[second]);
    }

    #[test]
    fn top_and_frame_limits_apply() {
        let s = render(ViewOptions {
            top: 1,
            max_frames: Some(1),
        });
        assert!(s.contains("… 1 more stacks (--top N)"));
        // The blamed frame is shown even past the frame limit; the rest is summarised.
        assert!(s.contains("▶ demo::hot"));
        assert!(s.contains("… 1 more frames (--full-stacks)"));
    }

    #[test]
    fn lock_internals_are_recognised() {
        for n in [
            "syscall",
            "std::sys::sync::mutex::futex::Mutex::lock_contended",
            "<std::sync::poison::mutex::Mutex<T>>::lock",
            "__lll_lock_wait",
            "___pthread_mutex_lock",
            "runtime.futex",
        ] {
            assert!(is_lock_internal(n), "{n}");
        }
        for n in ["contended::hot_site", "main", "syncmap::Map<K,V>::load"] {
            assert!(!is_lock_internal(n), "{n}");
        }
    }
}
