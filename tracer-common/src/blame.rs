//! Holder blame: each wait's time is split across the holder phases that overlapped it.
//!
//! A phase run cannot be charged to a lock when it happens (the probes do not know which lock
//! the thread holds), so each runner (thread, or goroutine) keeps its phase runs as [`Runs`]
//! until it releases a lock to waiters; that wake *flushes* them onto the lock's
//! [`LockClock`]: a cumulative ns counter per phase plus a small ring of the last flushes. A
//! wait reads the clock when it starts ([`ClockRead`]) and again when it ends; the difference
//! is the phase time of every holder it waited through, less what the first of them ran
//! before the wait began (kept in the ring). O(1) per event: one lookup at wait entry, one at
//! wait exit, one update per wake.
//!
//! Runs older than the lock's previous flush are dropped at flush: they ran in an earlier
//! critical section that woke nobody, so no wait overlapped them.

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
/// by `older_end`. Instants (entry-only phases) have `start == end`.
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

#[inline(always)]
fn max(a: u64, b: u64) -> u64 {
    if a > b {
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

    /// The part of these runs after `t`.
    #[inline(always)]
    pub fn after(&self, t: u64) -> Runs {
        let mut r = Runs::default();
        if self.last_end > t {
            r.last_start = max(self.last_start, t);
            r.last_end = self.last_end;
            r.count = 1;
        }
        if self.older_end > t {
            r.older_ns = min(self.older_ns, self.older_end - t);
            r.older_end = self.older_end;
            r.count += self.count.saturating_sub(1);
        }
        r
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

/// A runner's phase runs not yet charged to a lock, indexed by [`Phase`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhaseRuns {
    pub runs: [Runs; NUM_PHASES],
}

/// Flushes remembered per lock: a wait that sees more flushes than this while it sleeps is
/// blamed without subtracting what its first holder ran before it (then clamped to the wait).
pub const FLUSH_RING: usize = 8;

/// One lock's phase clock (keyed by futex word or Go semaphore address).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockClock {
    /// ns each phase ran while holding this lock, over every flush.
    pub cum_ns: [u64; NUM_PHASES],
    /// Runs of each phase, over every flush.
    pub cum_runs: [u64; NUM_PHASES],
    pub flushes: u64,
    pub last_flush_ns: u64,
    /// Flush `k`'s runs are in slot `k % FLUSH_RING`.
    pub ring: [PhaseRuns; FLUSH_RING],
}

impl Default for LockClock {
    fn default() -> Self {
        LockClock {
            cum_ns: [0; NUM_PHASES],
            cum_runs: [0; NUM_PHASES],
            flushes: 0,
            last_flush_ns: 0,
            ring: [PhaseRuns::default(); FLUSH_RING],
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

    /// Charges a releasing runner's phase runs to this lock at `now` (the runner must then
    /// drop them).
    #[inline(always)]
    pub fn flush(&mut self, mine: &PhaseRuns, now: u64) {
        let lo = self.last_flush_ns;
        let k = self.flushes + 1;
        let slot = (k as usize) & (FLUSH_RING - 1);
        let mut i = 0;
        while i < NUM_PHASES {
            let r = mine.runs[i].after(lo);
            self.cum_ns[i] += r.total_ns();
            self.cum_runs[i] += r.count;
            self.ring[slot].runs[i] = r;
            i += 1;
        }
        self.flushes = k;
        self.last_flush_ns = now;
    }
}

/// Splits the wait `[wait_start, wait_end]` on a lock whose clock read `at_start` then and
/// reads `lock` now: ns per [`Phase`] that holders ran that phase during the wait. Timed
/// phases get their overlap; [`Phase::Miss`] gets the rest of the wait when a holder it waited
/// through missed (its critical section was a read miss), else 0. The remainder (wait minus
/// the sum) is other work under the lock.
#[inline(always)]
pub fn split(
    lock: &LockClock,
    at_start: &ClockRead,
    wait_start: u64,
    wait_end: u64,
) -> [u64; NUM_PHASES] {
    let mut out = [0u64; NUM_PHASES];
    let n = lock.flushes.wrapping_sub(at_start.flushes);
    if n == 0 || lock.flushes < at_start.flushes {
        return out;
    }
    let wait = wait_end.saturating_sub(wait_start);
    let first = (at_start.flushes as usize + 1) & (FLUSH_RING - 1);
    let ring_has_first = n <= FLUSH_RING as u64;
    let mut left = wait;
    // Heaviest first, so clamping to the wait trims the lighter phase.
    let mut j = NUM_PHASES;
    while j > 0 {
        j -= 1;
        if j == Phase::Miss as usize {
            continue;
        }
        let mut b = lock.cum_ns[j].saturating_sub(at_start.cum_ns[j]);
        if ring_has_first {
            b = b.saturating_sub(lock.ring[first].runs[j].before(wait_start));
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
