//! Ground-truth counters, sharded per thread so counting never becomes a shared hot cache line.
//!
//! They live in one exported static, `SYNCMAP_STATS`, so a tracer can find them by symbol and
//! read them from outside the process (`/proc/PID/mem`) without the program's help. Every
//! map in the process adds to them.
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// One counter per map event of interest. The order is the layout a tracer reads: keep it.
#[repr(usize)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `load` answered from the read snapshot without locking.
    FastRead = 0,
    /// `load` missed the snapshot and took the lock.
    SlowLoad,
    /// A miss toward promotion: a load, delete or compare-and-* that had to look in dirty
    /// (counted in `miss_locked`).
    ReadMiss,
    /// The dirty map became the read snapshot (O(1) swap).
    Promotion,
    /// Dirty rebuilt from the read snapshot (O(n) copy under the lock).
    Rebuild,
    /// Entries copied by rebuilds.
    EntriesCopied,
    /// Stores that took the lock.
    SlowStore,
    /// Stores that updated an entry in the snapshot without locking.
    FastStore,
    /// Deletes that took the lock.
    SlowDelete,
    /// `range` calls.
    Range,
}

pub const EVENTS: usize = 10;

impl Event {
    /// Every event, in layout order (`ALL[i] as usize == i`).
    pub const ALL: [Event; EVENTS] = [
        Event::FastRead,
        Event::SlowLoad,
        Event::ReadMiss,
        Event::Promotion,
        Event::Rebuild,
        Event::EntriesCopied,
        Event::SlowStore,
        Event::FastStore,
        Event::SlowDelete,
        Event::Range,
    ];

    /// The counter's name in reports, profiles and metrics (`fast_reads`).
    pub fn name(self) -> &'static str {
        NAMES[self as usize]
    }
}
pub const SHARDS: usize = 64;

/// A shard: one cache line's worth of counters, padded so shards never share a line.
#[repr(C, align(128))]
pub struct Shard {
    pub counts: [AtomicU64; EVENTS],
}

/// All shards. `#[repr(C)]` with a magic first word so an outside reader can check it found
/// the right thing.
#[repr(C)]
pub struct Stats {
    pub magic: u64,
    pub events: u64,
    pub shards_len: u64,
    pub shards: [Shard; SHARDS],
}

/// "LOCKSCOP" in ASCII: marks the start of [`SYNCMAP_STATS`].
pub const MAGIC: u64 = u64::from_le_bytes(*b"LOCKSCOP");

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const SHARD: Shard = Shard {
    counts: [ZERO; EVENTS],
};

/// The process-wide counters, under a fixed symbol name so tracers can find them.
// SAFETY: `no_mangle` only fixes the symbol name; the name is unique to this crate, so it
// cannot clash with another definition.
#[allow(unsafe_code)]
#[no_mangle]
#[used]
pub static SYNCMAP_STATS: Stats = Stats {
    magic: MAGIC,
    events: EVENTS as u64,
    shards_len: SHARDS as u64,
    shards: [SHARD; SHARDS],
};

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MY_SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn shard() -> &'static Shard {
    let i = MY_SHARD.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
            s.set(i);
        }
        i
    });
    &SYNCMAP_STATS.shards[i]
}

#[inline]
pub fn count(e: Event) {
    add(e, 1);
}

#[inline]
pub fn add(e: Event, n: u64) {
    // Relaxed: these are statistics; each shard is written by few threads.
    shard().counts[e as usize].fetch_add(n, Relaxed);
}

/// Current totals, summed over shards.
pub fn snapshot() -> [u64; EVENTS] {
    let mut out = [0; EVENTS];
    for s in &SYNCMAP_STATS.shards {
        for (o, c) in out.iter_mut().zip(&s.counts) {
            *o += c.load(Relaxed);
        }
    }
    out
}

pub const NAMES: [&str; EVENTS] = [
    "fast_reads",
    "slow_loads",
    "read_misses",
    "promotions",
    "rebuilds",
    "entries_copied",
    "slow_stores",
    "fast_stores",
    "slow_deletes",
    "ranges",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_listed_once_in_layout_order_with_its_name() {
        for (i, e) in Event::ALL.into_iter().enumerate() {
            assert_eq!(e as usize, i);
            assert_eq!(e.name(), NAMES[i]);
        }
        assert_eq!(Event::FastRead.name(), "fast_reads");
        assert_eq!(Event::Promotion.name(), "promotions");
        assert_eq!(Event::Range.name(), "ranges");
    }
}
