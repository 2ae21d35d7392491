//! header: the lines above a table — what was recorded and how (and which forked processes
//! were followed), what was lost, what is not counted as contention, what stayed unnamed, and
//! the waits the view leaves out.
use std::io::{self, Write};

use crate::analyze::{shown_totals, timeout_totals, Waits};
use crate::profile::{fmt_count, fmt_ns, term_safe, ProbeWindows, Profile};
use crate::render::set_apart_line;

pub fn header(profile: &Profile, waits: Waits, out: &mut dyn Write) -> io::Result<()> {
    let m = &profile.meta;
    let t = shown_totals(profile, waits);
    let timed_out = timeout_totals(profile);
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
        match &m.unwind_note {
            Some(note) => format!("{} ({note})", m.unwind),
            None => m.unwind.to_string(),
        }
    )?;
    if let Some(line) = processes_line(profile) {
        writeln!(out, "{line}")?;
    }
    if let Some(hooks) = &m.hooks {
        writeln!(out, "{hooks}")?;
    }
    writeln!(
        out,
        "waits {} · {} of thread time waiting · lost events {} · stacks lost {}{}",
        fmt_count(t.waits),
        fmt_ns(t.wait_ns),
        fmt_count(l.events()),
        fmt_count(l.stacks()),
        if l.snapshots_dropped > 0 && c.stacks_inferred > 0 {
            format!(
                " ({} stack snapshots dropped: {} waits took the unwound stacks of their row's other waits, the rest keep their frame-pointer stacks)",
                fmt_count(l.snapshots_dropped),
                fmt_count(c.stacks_inferred)
            )
        } else if l.snapshots_dropped > 0 {
            format!(
                " ({} stack snapshots dropped: those waits keep their frame-pointer stacks)",
                fmt_count(l.snapshots_dropped)
            )
        } else {
            String::new()
        }
    )?;
    if l.stacks_cut > 0 {
        writeln!(
            out,
            "{} stacks cut at an impossible frame (an address outside the target's code, or a return address that follows no call)",
            fmt_count(l.stacks_cut)
        )?;
    }
    writeln!(
        out,
        "not counted as contention: {} EAGAIN (word changed before sleeping) · {} timeouts ({}) · {} in flight at start · {} still waiting at end{}",
        fmt_count(c.eagain),
        fmt_count(timed_out.timeouts),
        fmt_ns(timed_out.timeout_ns),
        fmt_count(c.in_flight_at_start),
        fmt_count(c.still_waiting_at_end),
        if c.still_waiting_at_end > 0 {
            format!(" (longest {})", fmt_ns(c.longest_unfinished_ns))
        } else {
            String::new()
        }
    )?;
    if !m.unnamed.is_empty() {
        writeln!(out, "{}", unnamed_line(&m.unnamed))?;
    }
    if let Some(line) = set_apart_line(profile, waits) {
        writeln!(out, "{line}")?;
    }
    if let Some(g) = &profile.go {
        writeln!(
            out,
            "Go target ({}): futex waits are OS threads ({} idle-thread parkings, {}, left out as not contention); {}",
            g.version,
            fmt_count(g.idle_waits),
            fmt_ns(g.idle_ns),
            if g.goroutine_probes > 0 {
                format!(
                    "goroutines blocked on sync.Mutex/RWMutex are the `go semacquire` rows ({} uprobes)",
                    g.goroutine_probes
                )
            } else {
                "goroutines blocked on sync.Mutex park without a futex and are not in these rows (--go-uprobes)".to_string()
            }
        )?;
        if let Some(w) = &g.windows {
            windows_line(
                out,
                w,
                "goroutine waits",
                "the goroutine probes",
                "go semacquire",
            )?;
        }
        if let Some(s) = &g.sampled {
            writeln!(
                out,
                "goroutine waits sampled (--go-sample {}): the kernel followed each with probability {}%, chosen where it began; the `go semacquire` rows are estimates, scaled ×{:.1} (a row of n waits kept is good to about 1/√n)",
                s.percent,
                s.percent,
                s.scale()
            )?;
        }
    }
    if let Some(t) = &profile.tokio {
        match &t.unprobed {
            None => writeln!(
                out,
                "tokio {}: async waits on tokio::sync::{{Mutex, RwLock, Semaphore}} are the `tokio acquire` rows ({} uprobes: {})",
                term_safe(&t.version),
                t.probes,
                crate::profile::TokioTarget::describe(t.probes, t.inlined.as_ref())
            )?,
            Some(why) => writeln!(
                out,
                "tokio {}: async waits cannot be probed: {}",
                term_safe(&t.version),
                term_safe(why)
            )?,
        }
        if let Some(w) = &t.windows {
            windows_line(out, w, "async waits", "tokio's probes", "tokio acquire")?;
        }
    }
    Ok(())
}

/// What `--probe-windows` did to `what` (probed by `probes`, rows of op `op`), and what its
/// estimate misses.
fn windows_line(
    out: &mut dyn Write,
    w: &ProbeWindows,
    what: &str,
    probes: &str,
    op: &str,
) -> io::Result<()> {
    writeln!(
        out,
        "{what} sampled (--probe-windows {}): {probes} were attached {}% of the time, in {} windows of {}; the `{op}` rows are estimates, each wait seen whole weighted by the inverse of the chance that a window held it; waits over {} are under-counted and those over {} are not seen, and where the probes slow the program inside a window its counts run low: compare these rows by time",
        w.percent,
        w.percent,
        w.windows,
        fmt_ns(w.window_ns),
        fmt_ns(w.weighted_up_to_ns()),
        fmt_ns(w.window_ns)
    )
}

/// The processes `--follow-forks` followed, each with how its stacks were walked:
/// "followed 2 forked processes: pid 7 (lockdemo, unwind fp) · pid 8 (...); --by process".
pub fn processes_line(profile: &Profile) -> Option<String> {
    if profile.processes.is_empty() {
        return None;
    }
    let each: Vec<String> = profile
        .processes
        .iter()
        .map(|p| format!("pid {} ({}, unwind {})", p.pid, p.comm, p.unwind))
        .collect();
    Some(format!(
        "followed {} forked process{}: {} (rows per process: --by process)",
        each.len(),
        if each.len() == 1 { "" } else { "es" },
        each.join(" · ")
    ))
}

/// "412 frames unnamed in memcached: install memcached-dbgsym (or set DEBUGINFOD_URLS)", the
/// three modules with most, then how many more.
pub fn unnamed_line(unnamed: &[crate::profile::Unnamed]) -> String {
    let mut parts: Vec<String> = unnamed
        .iter()
        .take(3)
        .map(|u| {
            let name = u.module.rsplit('/').next().unwrap_or(&u.module);
            format!(
                "{} frames unnamed in {name}: {}",
                fmt_count(u.frames),
                u.hint
            )
        })
        .collect();
    if unnamed.len() > 3 {
        parts.push(format!("and {} more modules", unnamed.len() - 3));
    }
    parts.join(" · ")
}
