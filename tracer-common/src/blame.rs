//! Holder blame: each wait's time is split across the holder phases that overlapped it.
//!
//! Every phase function is a method of the map, so its entry uprobe reads the map's address
//! (the receiver) and charges the run to that map's [`MapClock`]: per phase, the ns of every
//! finished run and the start of the run in progress. The map's lock word lies inside the map
//! object, so a futex word is tied to a map the first time a thread whose last phase ran on
//! that map wakes a word within it (Go: unlocks it). A wait on that word reads the clock when
//! it starts and when it ends ([`ClockRead`]); [`split`] turns the two reads into the exact
//! ns each phase ran during the wait: the finished runs in between, less the part before the
//! wait of the run in progress at its start, plus the part of the run in progress at its end.
//! O(1) per event, and independent of which releases wake anyone (a barging holder whose
//! release wakes nobody is still counted).

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

/// Map implementations whose phases are counted apart (`PHASE_STATS` has [`NUM_PHASES`]
/// slots per kind): one executable can hold both the bundled map and Go's `sync.Map`.
pub const MAP_SLOTS: usize = 2;

/// A phase probe's attach cookie: the [`Phase`] in bits 0–7, the map slot (0: the bundled
/// map, 1: Go's `sync.Map`) in bits 8–15, and in bits 16–31 the offset in the map object of
/// its dirty map's pointer, read at a Go return probe for the entries copied (`len(dirty)`:
/// the count is the first word of Go's map header), or 0 when the function returns that
/// number itself. Bits 32–47: the offset of the lock word in the map object when the layout
/// is known (Go's `sync.Map`: its mutex's semaphore, 4), so the first phase run ties the word
/// to the map; 0: learned from the holder's unlocks instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhaseCookie {
    pub phase: Phase,
    pub slot: u32,
    pub dirty_at: u32,
    pub lock_at: u32,
}

impl PhaseCookie {
    pub fn encode(self) -> u64 {
        self.phase as u64
            | (u64::from(self.slot & 0xff) << 8)
            | (u64::from(self.dirty_at & 0xffff) << 16)
            | (u64::from(self.lock_at & 0xffff) << 32)
    }

    #[inline(always)]
    pub fn decode(v: u64) -> Option<PhaseCookie> {
        let slot = ((v >> 8) & 0xff) as u32;
        if slot as usize >= MAP_SLOTS {
            return None;
        }
        Some(PhaseCookie {
            phase: Phase::from_u64(v & 0xff)?,
            slot,
            dirty_at: ((v >> 16) & 0xffff) as u32,
            lock_at: ((v >> 32) & 0xffff) as u32,
        })
    }

    /// The cookie's index in `PHASE_STATS`.
    #[inline(always)]
    pub fn stats_index(self) -> u32 {
        self.slot * NUM_PHASES as u32 + self.phase as u32
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

/// How far into the map object its lock word may lie (the Rust map is ~100 bytes; Go's
/// `sync.Map`-style map has its mutex first).
pub const MAP_LOCK_SPAN: u64 = 512;

/// One map's phase clock, indexed by [`Phase`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapClock {
    /// ns of every finished run (0 for instants).
    pub cum_ns: [u64; NUM_PHASES],
    /// Finished runs (instants included).
    pub cum_runs: [u64; NUM_PHASES],
    /// Start of the run in progress, 0 if none (phases run under the map's lock: one at a time).
    pub run_start: [u64; NUM_PHASES],
    /// Who runs it (tid, or Go's g).
    pub run_runner: [u64; NUM_PHASES],
}

impl MapClock {
    #[inline(always)]
    pub fn began(&mut self, phase: Phase, runner: u64, now: u64) {
        let j = phase as usize;
        if j < NUM_PHASES {
            self.run_start[j] = now;
            self.run_runner[j] = runner;
        }
    }

    /// A run `[start, now]` finished (an instant has `start == now`).
    #[inline(always)]
    pub fn ended(&mut self, phase: Phase, runner: u64, start: u64, now: u64) {
        let j = phase as usize;
        if j < NUM_PHASES {
            self.cum_ns[j] += now.saturating_sub(start);
            self.cum_runs[j] += 1;
            if self.run_runner[j] == runner {
                self.run_start[j] = 0;
            }
        }
    }

    /// The clock as `me` (a waiter) sees it; `map` is this clock's key.
    #[inline(always)]
    pub fn read(&self, map: u64, me: u64) -> ClockRead {
        let mut r = ClockRead {
            map,
            cum_ns: self.cum_ns,
            cum_runs: self.cum_runs,
            run_start: self.run_start,
        };
        let mut j = 0;
        while j < NUM_PHASES {
            if self.run_runner[j] == me {
                r.run_start[j] = 0;
            }
            j += 1;
        }
        r
    }
}

/// A map's clock as a wait saw it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockRead {
    /// The map (its address); 0: the lock is not known to belong to a map.
    pub map: u64,
    pub cum_ns: [u64; NUM_PHASES],
    pub cum_runs: [u64; NUM_PHASES],
    /// Another runner's run in progress (its start), 0 if none.
    pub run_start: [u64; NUM_PHASES],
}

/// Splits the wait `[wait_start, wait_end]` whose map clock read `at_start` when it began and
/// `at_end` when it ended: ns per [`Phase`] that other runners ran that phase during the wait.
/// [`Phase::Miss`] (an instant) gets the rest of the wait when a holder missed during it (its
/// critical section was a read miss), else 0. The remainder (wait minus the sum) is other
/// work under the lock.
#[inline(always)]
pub fn split(
    at_start: &ClockRead,
    at_end: &ClockRead,
    wait_start: u64,
    wait_end: u64,
) -> [u64; NUM_PHASES] {
    let mut out = [0u64; NUM_PHASES];
    if at_start.map == 0 || at_start.map != at_end.map {
        return out;
    }
    let mut left = wait_end.saturating_sub(wait_start);
    // Heaviest first, so clamping to the wait trims the lighter phase.
    let mut j = NUM_PHASES;
    while j > 0 {
        j -= 1;
        if j == Phase::Miss as usize {
            continue;
        }
        let mut b = at_end.cum_ns[j].saturating_sub(at_start.cum_ns[j]);
        let (s0, s1) = (at_start.run_start[j], at_end.run_start[j]);
        if s0 != 0 && s0 != s1 {
            // The run in progress at the start has finished: its part before the wait is not
            // the wait's.
            b = b.saturating_sub(wait_start.saturating_sub(s0));
        }
        if s1 != 0 && s1 < wait_end {
            b += wait_end - if s1 > wait_start { s1 } else { wait_start };
        }
        b = min(b, left);
        out[j] = b;
        left -= b;
    }
    let m = Phase::Miss as usize;
    if at_end.cum_runs[m] > at_start.cum_runs[m] {
        out[m] = left;
    }
    out
}

#[inline(always)]
fn min(a: u64, b: u64) -> u64 {
    if a < b {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests;
