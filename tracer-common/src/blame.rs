//! Holder blame: each wait's time is split across the holder phases that overlapped it.
//!
//! A phase run cannot be charged to a lock when it happens (the probes do not know which lock
//! the thread holds), so each runner (thread, or goroutine) keeps its phase runs as [`Runs`],
//! and each time it releases a lock to waiters that wake *flushes* the runs that ended since
//! its previous flush onto the same lock to the lock's [`LockClock`] (a runner that wakes a
//! malloc lock inside the map's critical section still flushes its rebuild onto the map's
//! lock when it releases that): a cumulative ns counter per phase plus a small ring of the last flushes. A
//! wait reads the clock when it starts ([`ClockRead`]) and again when it ends; the difference
//! is the phase time of every holder it waited through; the ring clips it to the wait. O(1) per event: one lookup at wait entry, one at
//! wait exit, one update per wake.
//!
//! Each flush's runs are clipped to the wait, so runs from an earlier critical section that
//! woke nobody (flushed late, by the runner's next wake) blame nothing. A wait that saw more
//! flushes than the ring holds falls back to the cumulative clock, clamped to its length.

/// Slow-path phases of the bundled map that lockscope probes (uprobes on the functions of the
/// same names).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// `miss_locked`: one miss toward promotion (entry probe only: an instant).
    Miss = 0,
    /// `promote`: dirty becomes the read snapshot, O(1).
    Promote = 1,
    /// `rebuild_dirty`: the snapshot copied into a new dirty map, O(n); returns entries copied.
    Rebuild = 2,
}

pub const NUM_PHASES: usize = 3;

impl Phase {
    pub const ALL: [Phase; NUM_PHASES] = [Phase::Miss, Phase::Promote, Phase::Rebuild];

    /// A `match`, not a table lookup: in BPF a load from `.rodata` loses the bound the
    /// verifier needs when the phase is then used as an index.
    pub fn from_u64(v: u64) -> Option<Phase> {
        match v {
            0 => Some(Phase::Miss),
            1 => Some(Phase::Promote),
            2 => Some(Phase::Rebuild),
            _ => None,
        }
    }

    /// Symbol name of the phase function (a method of `syncmap::SyncMap`).
    pub fn function(self) -> &'static str {
        match self {
            Phase::Miss => "miss_locked",
            Phase::Promote => "promote",
            Phase::Rebuild => "rebuild_dirty",
        }
    }

    /// Whether the return is probed too (for duration and return value). Only these phases
    /// have run time to blame; a miss is an instant.
    pub fn probes_return(self) -> bool {
        !matches!(self, Phase::Miss)
    }
}

/// Per-phase totals (per CPU), indexed by [`Phase`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhaseStats {
    pub calls: u64,
    /// Calls whose return was seen (probes attached mid-call miss their first return).
    pub returns: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    /// Sum of return values: entries copied, for rebuilds.
    pub items: u64,
    pub _reserved: u64,
}

/// Runs of one phase, compressed: the latest run exactly, the earlier ones as a sum that ended
/// by `older_end`. Instants (entry-only phases) have `start == end`; `count` counts them all.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Runs {
    pub last_start: u64,
    /// 0: no run.
    pub last_end: u64,
    pub older_ns: u64,
    pub older_end: u64,
    pub count: u64,
}

#[inline(always)]
fn min(a: u64, b: u64) -> u64 {
    if a < b {
        a
    } else {
        b
    }
}

impl Runs {
    /// Adds a finished run `[start, end]`.
    #[inline(always)]
    pub fn add(&mut self, start: u64, end: u64) {
        if self.last_end != 0 {
            self.older_ns += self.last_end.saturating_sub(self.last_start);
            self.older_end = self.last_end;
        }
        self.last_start = start;
        self.last_end = end;
        self.count += 1;
    }

    #[inline(always)]
    pub fn total_ns(&self) -> u64 {
        self.older_ns + self.last_end.saturating_sub(self.last_start)
    }

    /// Run time before `t`.
    #[inline(always)]
    pub fn before(&self, t: u64) -> u64 {
        let last = if self.last_end == 0 {
            0
        } else {
            min(self.last_end, t).saturating_sub(self.last_start)
        };
        let older = if self.older_end <= t {
            self.older_ns
        } else {
            self.older_ns
                .saturating_sub(min(self.older_ns, self.older_end - t))
        };
        last + older
    }
}

/// Runs of a phase kept per runner: the last [`RUN_LOG`] exactly (a runner that runs one
/// phase more often than that between two of its flushes onto a lock loses the oldest).
pub const RUN_LOG: usize = 4;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunLog {
    pub start: [u64; RUN_LOG],
    /// 0: an empty slot.
    pub end: [u64; RUN_LOG],
    /// Runs ever added; the next goes to slot `next % RUN_LOG`.
    pub next: u64,
}

impl RunLog {
    #[inline(always)]
    pub fn add(&mut self, start: u64, end: u64) {
        let i = (self.next as usize) & (RUN_LOG - 1);
        self.start[i] = start;
        self.end[i] = end;
        self.next += 1;
    }

    /// The runs (their parts) after `t`, oldest first, as [`Runs`].
    #[inline(always)]
    pub fn since(&self, t: u64) -> Runs {
        let mut r = Runs::default();
        let mut k = 0;
        while k < RUN_LOG {
            let i = (self.next as usize + k) & (RUN_LOG - 1);
            let (s, e) = (self.start[i], self.end[i]);
            if e != 0 && e > t {
                r.add(if s > t { s } else { t }, e);
            }
            k += 1;
        }
        r
    }
}

/// A runner's recent phase runs, indexed by [`Phase`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhaseRuns {
    pub runs: [RunLog; NUM_PHASES],
}

/// Flushes remembered per lock: a wait that sees more flushes than this while it sleeps is
/// blamed without subtracting what its first holder ran before it (then clamped to the wait).
pub const FLUSH_RING: usize = 8;

/// The runs one flush charged to a lock, indexed by [`Phase`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushRuns {
    pub runs: [Runs; NUM_PHASES],
}

/// One lock's phase clock (keyed by futex word or Go semaphore address). A flush's runs are
/// kept as [`Runs`]: the last exactly, the earlier ones as if back to back.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockClock {
    /// ns each phase ran while holding this lock, over every flush.
    pub cum_ns: [u64; NUM_PHASES],
    /// Runs of each phase, over every flush.
    pub cum_runs: [u64; NUM_PHASES],
    pub flushes: u64,
    pub _pad: u64,
    /// Flush `k`'s runs are in slot `k % FLUSH_RING`.
    pub ring: [FlushRuns; FLUSH_RING],
}

impl Default for LockClock {
    fn default() -> Self {
        LockClock {
            cum_ns: [0; NUM_PHASES],
            cum_runs: [0; NUM_PHASES],
            flushes: 0,
            _pad: 0,
            ring: [FlushRuns::default(); FLUSH_RING],
        }
    }
}

/// A lock's clock as a wait saw it when it began.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockRead {
    pub cum_ns: [u64; NUM_PHASES],
    pub cum_runs: [u64; NUM_PHASES],
    pub flushes: u64,
}

impl LockClock {
    #[inline(always)]
    pub fn read(&self) -> ClockRead {
        ClockRead {
            cum_ns: self.cum_ns,
            cum_runs: self.cum_runs,
            flushes: self.flushes,
        }
    }

    /// Charges a releasing runner's phase runs that ended after `since` (its previous flush
    /// onto this lock) to this lock.
    #[inline(always)]
    pub fn flush(&mut self, mine: &PhaseRuns, since: u64) {
        let k = self.flushes + 1;
        let slot = (k as usize) & (FLUSH_RING - 1);
        let mut i = 0;
        while i < NUM_PHASES {
            let r = mine.runs[i].since(since);
            self.cum_ns[i] += r.total_ns();
            self.cum_runs[i] += r.count;
            self.ring[slot].runs[i] = r;
            i += 1;
        }
        self.flushes = k;
    }
}

/// Splits the wait `[wait_start, wait_end]` on a lock whose clock read `at_start` then and
/// reads `lock` now: ns per [`Phase`] that holders ran that phase during the wait. Timed
/// phases get their overlap with the wait, exactly while the wait saw at most [`FLUSH_RING`]
/// flushes (each flush's runs are clipped to the wait), else from the cumulative clock.
/// A run still in progress when the wait ends (`running[phase]`: its start, 0 if none; it
/// will be flushed only later) adds its part inside the wait.
/// [`Phase::Miss`] gets the rest of the wait when a holder it waited through missed (its
/// critical section was a read miss), else 0. The remainder (wait minus the sum) is other
/// work under the lock.
#[inline(always)]
pub fn split(
    lock: &LockClock,
    at_start: &ClockRead,
    running: &[u64; NUM_PHASES],
    wait_start: u64,
    wait_end: u64,
) -> [u64; NUM_PHASES] {
    let mut out = [0u64; NUM_PHASES];
    let n = lock.flushes.saturating_sub(at_start.flushes);
    let wait = wait_end.saturating_sub(wait_start);
    let mut left = wait;
    // Heaviest first, so clamping to the wait trims the lighter phase.
    let mut j = NUM_PHASES;
    while j > 0 {
        j -= 1;
        if j == Phase::Miss as usize {
            continue;
        }
        let mut b = 0u64;
        let since = running[j];
        if since != 0 && since < wait_end {
            b += wait_end
                - if since > wait_start {
                    since
                } else {
                    wait_start
                };
        }
        if n <= FLUSH_RING as u64 {
            let mut k = 0;
            while k < FLUSH_RING {
                if k as u64 >= n {
                    break;
                }
                let slot = (at_start.flushes as usize + 1 + k) & (FLUSH_RING - 1);
                let r = &lock.ring[slot].runs[j];
                b += r.before(wait_end).saturating_sub(r.before(wait_start));
                k += 1;
            }
        } else {
            b += lock.cum_ns[j].saturating_sub(at_start.cum_ns[j]);
        }
        b = min(b, left);
        out[j] = b;
        left -= b;
    }
    let m = Phase::Miss as usize;
    if lock.cum_runs[m] > at_start.cum_runs[m] {
        out[m] = left;
    }
    out
}

#[cfg(test)]
mod tests;
