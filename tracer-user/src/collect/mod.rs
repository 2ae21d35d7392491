//! collect: run a recording (live progress, stop on duration, Ctrl-C or target exit) and read
//! the kernel's aggregates out as raw rows; find the threads asleep before attach (`blocked`);
//! and build the profile from the raw rows (`assemble`).
//!
//! Exposes `record`, the raw rows (`Raw`) and what reads them, `build_profile`, the blocked-at-
//! attach steps and `Follow`; it drives `attach`'s tracer and names no command.
use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::io::unix::AsyncFd;
use tracer_common::{Counter, Phase, WaitKey, WaitStats, WakeKey, WakeStats, NUM_COUNTERS};

use crate::attach::Tracer;
use crate::profile::{fmt_count, fmt_ns, GoSampled, StopReason};
use crate::symbolize::Addr;
use crate::sys::{thread_names, MapHistory};
use crate::tracee::{self, BundledMap};

/// Whether processes the target forks are traced too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    Forks,
    Off,
}

mod assemble;
mod blocked;
mod children;
mod drain;
mod exec;
mod gosample;
mod handoff;
mod new_stacks;
mod oncpu;
mod read;
mod snapshots;
mod stops;

pub(crate) use assemble::build_profile;
pub(crate) use blocked::{
    add_to_profile as add_blocked, lend_scanned_stacks, scan as scan_blocked, seed as seed_blocked,
    still_blocked,
};
pub use children::Child;
use children::Children;
use exec::ExecWatch;
pub use exec::Identity;
pub(crate) use gosample::GoSample;
pub(crate) use stops::StopSignals;

pub use drain::{Expected, SnapshotDrain, SnapshotRows};
pub use handoff::{consume_leftovers, pair_snapshots};
pub use new_stacks::NewStacks;
pub use read::SlotPhases;
pub use read::{read, read_rows, Leftovers};
use read::{read_counters, read_phases};

/// How often the progress line and the map/thread snapshots refresh.
const TICK: Duration = Duration::from_millis(250);
/// Memory maps are re-read every this many ticks (cheap, but not free for huge processes).
const MAPS_EVERY: u32 = 4;

/// Everything read from the kernel and /proc for one recording, before symbolization.
pub struct Raw {
    pub waits: Vec<(WaitKey, WaitStats)>,
    pub wakes: Vec<(WakeKey, WakeStats)>,
    /// Kernel stack id → frames (innermost first).
    pub stacks: HashMap<u64, Vec<u64>>,
    pub counters: [u64; NUM_COUNTERS as usize],
    pub still_waiting: u64,
    pub longest_unfinished_ns: u64,
    pub maps: MapHistory,
    pub threads: BTreeMap<u32, String>,
    pub stop: StopReason,
    pub elapsed: Duration,
    /// The bundled map's own counters and the traced phase totals over one window.
    pub map_window: Option<MapWindow>,
    /// Traced phase totals over the whole recording.
    pub phases: SlotPhases,
    /// Waits by kernel key and a stack unwound in user space: DWARF mode's snapshots, or (in
    /// frame-pointer mode) the attach scan's stacks of waits the kernel took none for.
    pub dwarf: Option<HashMap<(WaitKey, Vec<Addr>), WaitStats>>,
    /// The bundled map probed at the end (after an exec, the new image's).
    pub map: Option<BundledMap>,
    /// What the target exec'd into during the recording, last exec.
    pub exec: Option<Identity>,
    /// Woken waits still waiting for their waker's exit when recording stopped: recorded in
    /// `waits` with no waker.
    pub handoffs_left: u64,
    /// `--go-sample`: the share of goroutine waits followed (their rows are already scaled).
    pub go_sampled: Option<GoSampled>,
    /// `--follow-forks`: the processes followed, by pid (their rows are still in `waits`).
    pub children: BTreeMap<u32, Child>,
    /// On-CPU samples (Go `sync.Map` targets; empty otherwise).
    pub oncpu: oncpu::Samples,
}

impl Raw {
    /// Rows read outside one recording's loop (the agent's window on one target, a followed
    /// child's share of a record): no map window, phase totals, DWARF snapshots, exec or
    /// children, nothing left waiting, and no maps or thread names until the caller sets them.
    pub fn rows_only(
        waits: Vec<(WaitKey, WaitStats)>,
        wakes: Vec<(WakeKey, WakeStats)>,
        stacks: HashMap<u64, Vec<u64>>,
        counters: [u64; NUM_COUNTERS as usize],
        stop: StopReason,
        elapsed: Duration,
    ) -> Raw {
        Raw {
            waits,
            wakes,
            stacks,
            counters,
            still_waiting: 0,
            longest_unfinished_ns: 0,
            maps: MapHistory::default(),
            threads: BTreeMap::new(),
            stop,
            elapsed,
            map_window: None,
            phases: Default::default(),
            dwarf: None,
            map: None,
            exec: None,
            handoffs_left: 0,
            children: BTreeMap::new(),
            go_sampled: None,
            oncpu: Default::default(),
        }
    }
}

/// The map's counters and the traced phase totals, read at the same instant.
#[derive(Clone)]
pub struct Snapshot {
    pub counters: BTreeMap<String, u64>,
    pub phases: SlotPhases,
}

/// Two snapshots bounding one window, so traced and counted events cover the same time (the
/// probes keep firing while they are detached, which takes a while).
pub struct MapWindow {
    pub start: Snapshot,
    pub end: Snapshot,
    /// False when the target exited first: `end` is then the last periodic snapshot.
    pub end_exact: bool,
}

/// Whether the recording began at the target's exec (`record -- CMD`) or attached to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    FromExec,
    Attached,
}

/// What one recording does.
pub struct Recording {
    pub pid: u32,
    /// `None`: until the target exits.
    pub duration: Option<Duration>,
    pub progress: bool,
    pub start: Start,
    /// The bundled map found in the target, its probes attached.
    pub map: Option<BundledMap>,
    /// Phases to probe if the target execs into an image with the bundled map.
    pub phases: Vec<Phase>,
    pub follow: Follow,
    /// `--go-sample`: the kernel followed this share of goroutine waits.
    pub go_sample: Option<GoSample>,
    /// DWARF and `fp+cfi` modes: the snapshot reader, running since the programs attached.
    pub snapshots: Option<SnapshotDrain>,
    /// Listened for since the command began.
    pub stops: StopSignals,
    /// The executable the target was recognised as running (an exec is a change from it).
    pub exe: Option<std::path::PathBuf>,
    /// `--unwind`: followed children choose their mode from it.
    pub unwind: crate::unwind::Unwind,
}

pub async fn record(tracer: &mut Tracer, rec: Recording) -> Result<Raw> {
    let Recording {
        pid,
        duration,
        progress,
        start,
        mut map,
        phases,
        follow,
        go_sample,
        snapshots,
        mut stops,
        exe,
        unwind,
    } = rec;
    let mut children = Children::new(unwind);
    let from_exec = start == Start::FromExec;
    // The window starts now that every probe is live.
    let snap = |tracer: &Tracer, m: &BundledMap| -> Result<Snapshot> {
        Ok(Snapshot {
            // Go's sync.Map alone keeps no counters.
            counters: match m.stats_offset {
                Some(_) => tracee::read_counters(pid, m)?,
                None => BTreeMap::new(),
            },
            phases: read_phases(tracer)?,
        })
    };
    // A process traced from exec starts with every counter and traced total at zero.
    let zero = |_: &BundledMap| -> Result<Snapshot> {
        Ok(Snapshot {
            counters: tracee::zero_counters(),
            phases: Default::default(),
        })
    };
    let mut map_start = match map
        .as_ref()
        .map(|m| if from_exec { zero(m) } else { snap(tracer, m) })
    {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            eprintln!("lockscope: cannot read the bundled map's counters ({e:#}); reporting traced counts only");
            None
        }
        None => None,
    };
    let mut map_last = map_start.clone();
    let mut maps = MapHistory::default();
    let mut threads = BTreeMap::new();
    maps.refresh(pid);
    thread_names(pid, &mut threads);
    let mut new_stacks = NewStacks::take(tracer)?;
    let mut exec = ExecWatch::new(pid, exe);
    let mut became = None;

    let exited = pidfd(pid)?;
    let started = Instant::now();
    // No duration: until the target exits (a week is the longest --duration takes).
    let deadline =
        tokio::time::Instant::now() + duration.unwrap_or(Duration::from_secs(7 * 24 * 3600));
    let mut tick = tokio::time::interval(TICK);
    let show = progress && std::io::stderr().is_terminal();
    let mut last = (started, 0u64);
    let mut ticks = 0u32;

    let stop = loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break StopReason::Duration,
            // A closed terminal, or a signal a supervisor sends, saves it like Ctrl-C.
            () = stops.recv() => break StopReason::Interrupted,
            _ = exited.readable() => break StopReason::TargetExited,
            Ok(()) = new_stacks.ready() => {
                new_stacks.check(pid, &mut maps, tracer);
            }
            _ = tick.tick() => {
                ticks += 1;
                tracer.flush_logs();
                if follow == Follow::Forks {
                    children.refresh(tracer, pid, snapshots.as_ref());
                }
                if let Some(id) = exec.check(pid) {
                    if let Some(s) = &snapshots {
                        s.exec_happened();
                    }
                    eprintln!(
                        "lockscope: pid {pid} exec'd {}; following it",
                        crate::profile::term_safe(&id.exe.display().to_string())
                    );
                    maps.refresh(pid);
                    // The new image's bundled map, probed from now on: its window starts
                    // when the probes are live, like an attach.
                    if let Some(m) = tracee::find_probed(Some(&id.exe), &phases) {
                        match tracer.attach_phases(pid, &m) {
                            Ok(_) => {
                                map_start = snap(tracer, &m).ok();
                                map_last = map_start.clone();
                                map = Some(m);
                            }
                            Err(e) => eprintln!("lockscope: cannot probe the bundled map after exec ({e:#})"),
                        }
                    }
                    became = Some(id);
                }
                if ticks.is_multiple_of(MAPS_EVERY) {
                    maps.refresh(pid);
                    thread_names(pid, &mut threads);
                }
                if let (Some(m), Some(_)) = (&map, &map_start) {
                    if let Ok(s) = snap(tracer, m) {
                        map_last = Some(s);
                    }
                }
                if show {
                    let slept = read_counters(tracer)?[Counter::Slept as usize];
                    let now = Instant::now();
                    let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
                    let rate = (slept.saturating_sub(last.1)) as f64 / dt;
                    last = (now, slept);
                    eprint!(
                        "\r\x1b[2K  recording pid {pid}: {:>6.1}s  waits {:>10}  rate {:>9}/s",
                        started.elapsed().as_secs_f64(),
                        fmt_count(slept),
                        fmt_count(rate as u64),
                    );
                    let _ = std::io::stderr().flush();
                }
            }
        }
    };
    let elapsed = started.elapsed();
    if show {
        eprint!("\r\x1b[2K");
    }
    // One last look at the maps in case a library appeared since the last tick.
    let mut end_exact = false;
    if stop != StopReason::TargetExited {
        maps.refresh(pid);
        thread_names(pid, &mut threads);
        if let (Some(m), Some(_)) = (&map, &map_start) {
            if let Ok(s) = snap(tracer, m) {
                map_last = Some(s);
                end_exact = true;
            }
        }
    }
    if follow == Follow::Forks {
        children.refresh(tracer, pid, snapshots.as_ref());
    }
    tracer.detach()?;
    tracer.flush_logs();
    // Snapshots of the last waits, sent before the programs went away.
    let dwarf = snapshots.map(SnapshotDrain::finish);
    let mut raw = read(tracer, maps, threads, stop, elapsed)?;
    raw.oncpu = oncpu::read_samples(tracer)?;
    raw.dwarf = dwarf.map(|rows| handoff::pair_snapshots(&raw.waits, rows));
    if let (Some(end), true) = (&map_last, end_exact) {
        // The stop instant, not later: the probes keep firing until they are detached.
        raw.phases = end.phases;
    }
    raw.map_window = map_start.zip(map_last).map(|(start, end)| MapWindow {
        start,
        end,
        end_exact,
    });
    raw.go_sampled = go_sample.map(GoSample::record);
    if let Some(s) = &raw.go_sampled {
        gosample::scale_rows(&mut raw.waits, s);
    }
    raw.map = map;
    raw.exec = became;
    raw.children = children.seen;
    Ok(raw)
}

/// A pidfd becomes readable when the process exits; works for processes that are not ours.
fn pidfd(pid: u32) -> Result<AsyncFd<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        anyhow::bail!("target PID {pid} is gone ({e})");
    }
    // SAFETY: the fd was just returned to us and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the OwnedFd moves into the AsyncFd, so the fd stays open and the same for the
    // AsyncFd's whole life.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("watching PID {pid} for exit: {e}"))
}

/// One line for the end of a recording, e.g. "recorded 5.00 s (target exited)".
pub fn describe_stop(stop: StopReason, elapsed: Duration) -> String {
    format!(
        "recorded {} ({})",
        fmt_ns(elapsed.as_nanos() as u64),
        stop.describe()
    )
}

/// A row of `count` equal waits totalling `total_ns`, for the collect stage's tests.
#[cfg(test)]
pub(crate) fn stats(count: u64, total_ns: u64) -> WaitStats {
    let mut s = WaitStats {
        count,
        total_ns,
        max_ns: total_ns / count.max(1),
        ..WaitStats::default()
    };
    s.hist[tracer_common::hist_bucket(s.max_ns)] = count;
    s
}
