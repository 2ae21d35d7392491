//! collect: the recording engine (`Recorder`: tick, rows so far, finish) that reads the
//! kernel's aggregates out as raw rows; the threads asleep before attach (`blocked`); and the
//! one builder that turns raw rows into a profile (`build`, over `assemble`).
//!
//! Exposes the recorder, the raw rows (`Raw`) and what reads them, `build` and its typed
//! `Inputs`, the blocked-at-attach steps and `Follow`; it drives `attach`'s tracer and names
//! no command.
use std::collections::{BTreeMap, HashMap};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use anyhow::Result;
use tokio::io::unix::AsyncFd;
use tracer_common::{WaitKey, WaitStats, WakeKey, WakeStats, NUM_COUNTERS};

use crate::profile::{fmt_ns, GoSampled, StopReason};
use crate::symbolize::Addr;
use crate::sys::MapHistory;
use crate::tracee::BundledMap;

/// Whether processes the target forks are traced too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    Forks,
    Off,
}

mod assemble;
mod blocked;
mod build;
mod children;
mod drain;
mod exec;
mod fleet;
mod gosample;
mod handoff;
mod infer;
mod lockshards;
mod new_stacks;
mod oncpu;
mod read;
mod recorder;
mod since;
mod snapshots;
mod stops;
mod windows;

pub(crate) use blocked::{
    lend_scanned_stacks, scan as scan_blocked, seed as seed_blocked, still_blocked,
};
pub use build::{build, Inputs, Namer};
pub use exec::Identity;
pub(crate) use gosample::GoSample;
pub(crate) use stops::StopSignals;
pub(crate) use windows::{ProbeWindows, WindowShare, Windowed, WINDOW as PROBE_WINDOW};

pub use drain::{Expected, SnapshotDrain, SnapshotRows};
pub use fleet::{Fleet, Joining, Member, Strangers, Take};
pub use handoff::{consume_leftovers, pair_snapshots};
pub use new_stacks::NewStacks;
pub use read::read_rows;
pub use read::SlotPhases;
pub use recorder::{Finished, Progress, Recorder, Setup, Start, Until, TICK};
pub use since::{rows_since, Base, Since};

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
    /// `--probe-windows`: the windows the goroutine or tokio probes were attached (their rows
    /// are weighted).
    pub windows: Option<crate::profile::ProbeWindows>,
    /// On-CPU samples (Go `sync.Map` targets; empty otherwise).
    pub oncpu: oncpu::Samples,
    /// The shards of hinted locks (`WaitKey::flags` has `LOCK_HINTED`), by lock address,
    /// read while the target lived.
    pub lock_shards: BTreeMap<u64, crate::profile::LockShard>,
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
            go_sampled: None,
            windows: None,
            oncpu: Default::default(),
            lock_shards: BTreeMap::new(),
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

/// A pidfd becomes readable when the process exits; works for processes that are not ours.
pub(super) fn pidfd(pid: u32) -> Result<AsyncFd<OwnedFd>> {
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
