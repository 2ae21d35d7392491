//! A read-mostly concurrent map: the design of Go's `sync.Map` before Go 1.24, in Rust.
//!
//! - `read`: an atomically swapped, immutable snapshot `{map, amended}`; loads of keys in it
//!   take no lock.
//! - `dirty`: a map under one `std::sync::Mutex` (so contention shows as futex waits) holding
//!   every live key, including ones not yet in `read`; `amended` says such keys exist.
//! - Each key's value lives in an [`Entry`] shared by `read` and `dirty`: updating a key present
//!   in `read` is a lock-free compare-and-swap on its entry.
//! - Loads that miss `read` while `amended` lock and count a miss; once misses ≥ len(dirty),
//!   dirty is **promoted** to be the new `read` (an O(1) swap, no copy) and dirty is dropped.
//! - The first store of a *new* key after a promotion **rebuilds** dirty by copying every live
//!   entry of `read` (O(n) under the lock): the design's real copy-on-write cost.
//!
//! Deleted entries are `Deleted` while dirty holds them, and become `Expunged` when a rebuild
//! leaves them out of the new dirty; an expunged entry must be put back into dirty (under the
//! lock) before it can hold a value again.
//!
//! Each slow-path phase is its own `#[inline(never)]` function with a stable name, so stacks
//! and probes can find it: [`phase::MISS`], [`phase::PROMOTE`], [`phase::REBUILD`], [`phase::LOAD_MISS`],
//! [`phase::SLOW_STORE`], [`phase::SLOW_DELETE`], [`phase::RANGE_PROMOTE`].
//!
//! The crate has no `unsafe` blocks (denied below; the one exception is the `#[no_mangle]` on
//! the counters' static): memory reclamation of snapshots and values is arc-swap's and `Arc`'s.
#![deny(unsafe_code)]
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

mod entry;
#[cfg(feature = "ground-truth")]
pub mod ground_truth;
pub mod stats;
mod sync;

pub use entry::Entry;
use sync::{Mutex, MutexGuard, SwapCell};

use stats::{add, count, Event};

/// Symbol-name fragments of the slow-path phase functions (the `SyncMap` methods of the same
/// names); lockscope classifies stacks by them.
pub mod phase {
    pub const MISS: &str = "miss_locked";
    pub const PROMOTE: &str = "promote";
    pub const REBUILD: &str = "rebuild_dirty";
    pub const LOAD_MISS: &str = "load_miss";
    pub const SLOW_STORE: &str = "slow_store";
    pub const SLOW_DELETE: &str = "slow_delete";
    pub const RANGE_PROMOTE: &str = "range_promote";
}

type Slots<K, V> = HashMap<K, Arc<Entry<V>>>;

/// What a locked lookup does to a key it finds only in dirty.
#[derive(Clone, Copy)]
enum Dirtied {
    Get,
    /// Delete: the key leaves dirty (its entry stays in any snapshot that has it).
    Remove,
}

struct ReadOnly<K, V> {
    m: Arc<Slots<K, V>>,
    /// Dirty holds keys that `m` does not.
    amended: bool,
}

struct Dirty<K, V> {
    /// `None` right after a promotion, until the next new-key store rebuilds it.
    map: Option<Slots<K, V>>,
    misses: usize,
}

/// The bundled concurrent map. See the crate docs for the design.
pub struct SyncMap<K, V> {
    read: SwapCell<ReadOnly<K, V>>,
    mu: Mutex<Dirty<K, V>>,
}

impl<K, V> Default for SyncMap<K, V> {
    fn default() -> Self {
        SyncMap {
            read: SwapCell::from_pointee(ReadOnly {
                m: Arc::new(HashMap::new()),
                amended: false,
            }),
            mu: Mutex::new(Dirty {
                map: None,
                misses: 0,
            }),
        }
    }
}

impl<K, V> SyncMap<K, V>
where
    K: Eq + Hash + Clone,
    V: Clone,
{
    pub fn new() -> Self {
        Self::default()
    }

    #[cfg(not(feature = "ground-truth"))]
    fn lock(&self) -> MutexGuard<'_, Dirty<K, V>> {
        // A panic while holding the lock cannot leave the maps torn (every update is a single
        // insert or swap), so a poisoned lock is still usable.
        self.mu.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The same, logging each wait that blocks (see [`ground_truth`]).
    #[cfg(feature = "ground-truth")]
    fn lock(&self) -> MutexGuard<'_, Dirty<K, V>> {
        use ground_truth::{now, record, Kind};
        match self.mu.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                let start = now();
                let g = self.mu.lock().unwrap_or_else(|p| p.into_inner());
                record(Kind::Wait, start, now());
                g
            }
        }
    }

    /// The value for `key`, if any. Lock-free when `key` is in the read snapshot.
    pub fn load<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let read = self.read.load();
        if let Some(e) = read.m.get(key) {
            count(Event::FastRead);
            return e.load();
        }
        if !read.amended {
            count(Event::FastRead);
            return None;
        }
        drop(read);
        self.load_miss(key)
    }

    /// Phase: a load that missed the snapshot while dirty has more keys.
    #[inline(never)]
    fn load_miss<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut d = self.lock();
        count(Event::SlowLoad);
        let (e, _) = self.lookup_locked(&mut d, key, Dirtied::Get);
        drop(d);
        e.and_then(|e| e.load())
    }

    /// Lock held: `key`'s entry, re-checking the snapshot first (a promotion may have happened
    /// while we waited for the lock); failing that, from dirty (removed from it for a delete),
    /// counting a miss toward promotion whether or not dirty had it: either way the snapshot
    /// is stale. Returns the entry and whether it missed the snapshot.
    fn lookup_locked<Q>(
        &self,
        d: &mut Dirty<K, V>,
        key: &Q,
        how: Dirtied,
    ) -> (Option<Arc<Entry<V>>>, bool)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let read = self.read.load();
        if let Some(e) = read.m.get(key) {
            return (Some(e.clone()), false);
        }
        if !read.amended {
            return (None, false);
        }
        let e = match (d.map.as_mut(), how) {
            (Some(m), Dirtied::Get) => m.get(key).cloned(),
            (Some(m), Dirtied::Remove) => m.remove(key),
            (None, _) => None,
        };
        self.miss_locked(d);
        (e, true)
    }

    /// Phase: one miss toward promotion (a load, delete or compare that had to look in dirty).
    /// Not inlined, so tracers can count misses at one symbol.
    #[inline(never)]
    fn miss_locked(&self, d: &mut Dirty<K, V>) {
        count(Event::ReadMiss);
        d.misses += 1;
        let len = d.map.as_ref().map_or(0, HashMap::len);
        if d.misses >= len {
            self.promote(d);
        }
    }

    /// Phase: dirty becomes the read snapshot. O(1): the map moves, nothing is copied.
    #[inline(never)]
    fn promote(&self, d: &mut Dirty<K, V>) {
        #[cfg(feature = "ground-truth")]
        let _span = ground_truth::Span::start(ground_truth::Kind::Promote);
        let m = d.map.take().unwrap_or_default();
        self.read.store(Arc::new(ReadOnly {
            m: Arc::new(m),
            amended: false,
        }));
        d.misses = 0;
        count(Event::Promotion);
    }

    /// Phase: after a promotion, the first new-key store copies every live entry of the
    /// snapshot into a fresh dirty map (O(n) under the lock), expunging deleted ones. Called
    /// only when dirty is absent, so every call is one rebuild. Returns the entries copied
    /// (tracers read it as the return value).
    #[inline(never)]
    fn rebuild_dirty(&self, d: &mut Dirty<K, V>) -> usize {
        #[cfg(feature = "ground-truth")]
        let _span = ground_truth::Span::start(ground_truth::Kind::Rebuild);
        let read = self.read.load();
        let mut m = HashMap::with_capacity(read.m.len());
        for (k, e) in read.m.iter() {
            if !e.try_expunge_locked() {
                m.insert(k.clone(), e.clone());
            }
        }
        let copied = m.len();
        count(Event::Rebuild);
        add(Event::EntriesCopied, copied as u64);
        d.map = Some(m);
        copied
    }

    /// Sets `key` to `value`.
    pub fn store(&self, key: K, value: V) {
        self.swap(key, value);
    }

    /// Sets `key` to `value` and returns the previous value.
    pub fn swap(&self, key: K, value: V) -> Option<V> {
        let read = self.read.load();
        if let Some(e) = read.m.get(&key) {
            if let Ok(prev) = e.try_swap(&value) {
                count(Event::FastStore);
                return prev;
            }
        }
        drop(read);
        self.slow_store(key, value)
    }

    /// Phase: a store that must lock: a new key, or a key whose entry was expunged.
    #[inline(never)]
    fn slow_store(&self, key: K, value: V) -> Option<V> {
        count(Event::SlowStore);
        let mut d = self.lock();
        let read = self.read.load_full();
        if let Some(e) = self.entry_for_store_locked(&mut d, &read, &key) {
            return e.swap_locked(&value);
        }
        self.insert_new_locked(&mut d, &read, key, value);
        None
    }

    /// Lock held: `key`'s entry from the snapshot or dirty, made storable (an expunged entry
    /// is revived and put back into dirty, which lacks it).
    fn entry_for_store_locked(
        &self,
        d: &mut Dirty<K, V>,
        read: &ReadOnly<K, V>,
        key: &K,
    ) -> Option<Arc<Entry<V>>> {
        if let Some(e) = read.m.get(key) {
            if e.unexpunge_locked() {
                if let Some(m) = d.map.as_mut() {
                    m.insert(key.clone(), e.clone());
                }
            }
            return Some(e.clone());
        }
        d.map.as_ref().and_then(|m| m.get(key).cloned())
    }

    /// Lock held, `key` in neither map: adds it to dirty, rebuilding dirty first if this is
    /// the first new key since a promotion.
    fn insert_new_locked(&self, d: &mut Dirty<K, V>, read: &ReadOnly<K, V>, key: K, value: V) {
        if !read.amended {
            // Dirty must hold every key again before it can take a new one.
            if d.map.is_none() {
                // black_box keeps the return value in the calling convention: unused, LLVM
                // would drop it from this internal function, and tracers read it from rax.
                std::hint::black_box(self.rebuild_dirty(d));
            }
            self.read.store(Arc::new(ReadOnly {
                m: read.m.clone(),
                amended: true,
            }));
        }
        if let Some(m) = d.map.as_mut() {
            m.insert(key, Entry::new(value));
        }
    }

    /// The existing value for `key` if present (`(v, true)`); otherwise stores `value` and
    /// returns `(value, false)`.
    pub fn load_or_store(&self, key: K, value: V) -> (V, bool) {
        if let Some(v) = self.load(&key) {
            return (v, true);
        }
        // Decided and done under one lock hold, so a racing store cannot slip in between.
        count(Event::SlowStore);
        let mut d = self.lock();
        let read = self.read.load_full();
        if let Some(e) = self.entry_for_store_locked(&mut d, &read, &key) {
            return e.load_or_store_locked(&value);
        }
        self.insert_new_locked(&mut d, &read, key, value.clone());
        (value, false)
    }

    /// Deletes `key`, returning its value if it had one.
    pub fn load_and_delete<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let read = self.read.load();
        if let Some(e) = read.m.get(key) {
            return e.delete();
        }
        if !read.amended {
            return None;
        }
        drop(read);
        self.slow_delete(key)
    }

    /// Phase: a delete of a key not in the snapshot.
    #[inline(never)]
    fn slow_delete<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        count(Event::SlowDelete);
        let mut d = self.lock();
        let (e, _) = self.lookup_locked(&mut d, key, Dirtied::Remove);
        drop(d);
        e.and_then(|e| e.delete())
    }

    pub fn delete<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.load_and_delete(key);
    }

    /// Sets `key` to `new` if its value is `old`.
    pub fn compare_and_swap(&self, key: &K, old: &V, new: V) -> bool
    where
        V: PartialEq,
    {
        self.entry_for_compare(key)
            .is_some_and(|e| e.compare_and_swap(old, &new))
    }

    /// Deletes `key` if its value is `old`.
    pub fn compare_and_delete(&self, key: &K, old: &V) -> bool
    where
        V: PartialEq,
    {
        self.entry_for_compare(key)
            .is_some_and(|e| e.compare_and_delete(old))
    }

    /// `key`'s entry for a compare-and-* operation: from the snapshot without locking, else
    /// (when dirty has more keys) from dirty under the lock, counting a miss as a load would.
    fn entry_for_compare(&self, key: &K) -> Option<Arc<Entry<V>>> {
        let read = self.read.load();
        if let Some(e) = read.m.get(key) {
            return Some(e.clone());
        }
        if !read.amended {
            return None;
        }
        drop(read);
        let mut d = self.lock();
        self.lookup_locked(&mut d, key, Dirtied::Get).0
    }

    /// Calls `f` for each key and value until it returns false. Sees a consistent key set (one
    /// snapshot) but values as they are when visited. Promotes first if dirty has more keys.
    pub fn range(&self, mut f: impl FnMut(&K, V) -> bool) {
        count(Event::Range);
        let mut read = self.read.load_full();
        if read.amended {
            read = self.range_promote();
        }
        for (k, e) in read.m.iter() {
            if let Some(v) = e.load() {
                if !f(k, v) {
                    break;
                }
            }
        }
    }

    /// Phase: `range` promoting dirty so it can iterate one complete snapshot.
    #[inline(never)]
    fn range_promote(&self) -> Arc<ReadOnly<K, V>> {
        let mut d = self.lock();
        if self.read.load().amended {
            self.promote(&mut d);
        }
        self.read.load_full()
    }

    /// Number of live keys (walks the map: O(n)).
    pub fn len(&self) -> usize {
        let mut n = 0;
        self.range(|_, _| {
            n += 1;
            true
        });
        n
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(all(test, not(feature = "shuttle")))]
mod tests;

#[cfg(all(test, feature = "shuttle"))]
mod model_tests;
