//! top: a live, refreshing table of a running process's hottest lock waits (like `py-spy
//! top`): the same kernel aggregates and grouping as `record`, read every interval.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use super::options::TopOptions;
use super::session::{Probes, Session};
use super::tty::{Input, Key as Press, Tty};
use crate::analyze::{groups, GroupBy, Key, SortKey, ViewOptions};
use crate::collect::{self, Follow, Inputs, Namer, Recorder, Setup, Start, TICK};
use crate::profile::{fmt_ns, Profile, StopReason};
use crate::symbolize::StackSymbolizer;
use crate::sys::{self, MapHistory};

mod screen;
pub use screen::{draw, Screen};

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
    let probes = Probes::unsampled(opts.unwind, &opts.phases, opts.go_uprobes, opts.hooks);
    let t0 = Instant::now();
    let Session {
        target,
        map,
        plan,
        tracer,
        snapshots,
        go_probes,
        tokio,
        ..
    } = Session::start(target, &probes, crate::sys::AttachPriority::raise(), |_| {
        Ok(Vec::new())
    })?;
    let attach_ns = t0.elapsed().as_nanos() as u64;
    let start_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    // The recorder's pidfd and new-stack notices are read without awaiting, but registering
    // them needs a reactor.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let _reactor = rt.enter();
    let mut recorder = Recorder::new(
        tracer,
        Setup {
            target: target.clone(),
            plan: plan.clone(),
            start: Start::Attached,
            map,
            phases: opts.phases.clone(),
            follow: Follow::Off,
            go_sample: None,
            windows: None,
            snapshots,
            unwind: opts.unwind,
        },
    )?;
    let tokio = tokio.into_target(None);
    let mut namer = Namer::new(StackSymbolizer::new(MapHistory::default()));
    namer.sym.fetch_in_background();
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
        let mut last: HashMap<Key, u64> = HashMap::new();
        let mut recent: HashMap<Key, f64> = HashMap::new();
        let mut last_at = Instant::now();
        let mut next_refresh = Instant::now();
        let mut next_tick = Instant::now() + TICK;
        let mut exited = false;
        let mut note = String::new();
        loop {
            if QUIT.load(Ordering::Relaxed) {
                return Ok(End::Signal);
            }
            recorder.take_new_stacks();
            if Instant::now() >= next_tick && !exited {
                recorder.tick();
                if let Some(n) = recorder.take_notes().pop() {
                    note = format!(" · {n}");
                }
                next_tick = Instant::now() + TICK;
            }
            if Instant::now() >= next_refresh && !exited {
                exited = recorder.target_exited();
                let stop = if exited {
                    StopReason::TargetExited
                } else {
                    StopReason::Duration
                };
                let raw = recorder.rows(stop)?;
                let inputs = Inputs {
                    target: &target,
                    start_unix_ms,
                    map: recorder.map(),
                    plan: &plan,
                    attach_ns,
                    hooks: &recorder.tracer().hooks,
                    go_probes,
                    tokio: tokio.clone(),
                    blocked: Vec::new(),
                    wrappers: &opts.lock_wrappers,
                };
                let p = collect::build(raw, inputs, &mut namer);
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
                    format!("every {}{note}", fmt_ns(opts.interval.as_nanos() as u64))
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
                .min(next_tick)
                .saturating_duration_since(Instant::now())
                .min(TICK);
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
    drop(recorder);
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

    #[test]
    fn keys_cycle_through_every_choice() {
        assert_eq!(next(&SortKey::ALL, SortKey::Total), SortKey::Count);
        assert_eq!(next(&SortKey::ALL, SortKey::Avg), SortKey::Total);
        assert_eq!(next(&GroupBy::ALL, GroupBy::Category), GroupBy::Stack);
    }
}
