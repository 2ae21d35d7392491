//! The maps the workload can drive: the bundled map, and the usual alternatives it is
//! benchmarked against, behind one small interface.
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use dashmap::DashMap;
use syncmap::SyncMap;

/// What the presets do to a map.
pub trait BenchMap: Send + Sync + 'static {
    const NAME: &'static str;
    fn new() -> Self;
    fn load(&self, k: u64) -> Option<u64>;
    fn store(&self, k: u64, v: u64);
    fn delete(&self, k: u64);
    /// Sets `k` to `new` if it holds `old`.
    fn compare_and_swap(&self, k: u64, old: u64, new: u64) -> bool;
    /// Visits every value; returns their wrapping sum.
    fn range_sum(&self) -> u64;
}

impl BenchMap for SyncMap<u64, u64> {
    const NAME: &'static str = "syncmap";
    fn new() -> Self {
        SyncMap::new()
    }
    fn load(&self, k: u64) -> Option<u64> {
        SyncMap::load(self, &k)
    }
    fn store(&self, k: u64, v: u64) {
        SyncMap::store(self, k, v)
    }
    fn delete(&self, k: u64) {
        SyncMap::delete(self, &k)
    }
    fn compare_and_swap(&self, k: u64, old: u64, new: u64) -> bool {
        SyncMap::compare_and_swap(self, &k, &old, new)
    }
    fn range_sum(&self) -> u64 {
        let mut sum = 0u64;
        self.range(|_, v| {
            sum = sum.wrapping_add(v);
            true
        });
        sum
    }
}

/// A `HashMap` behind one of std's locks: all the benchmark needs is shared and exclusive
/// access. A poisoned lock (a panicked writer) is still used, as most programs would.
pub trait LockedHashMap: Send + Sync + 'static {
    const NAME: &'static str;
    fn new() -> Self;
    fn shared<R>(&self, f: impl FnOnce(&HashMap<u64, u64>) -> R) -> R;
    fn exclusive<R>(&self, f: impl FnOnce(&mut HashMap<u64, u64>) -> R) -> R;
}

impl LockedHashMap for RwLock<HashMap<u64, u64>> {
    const NAME: &'static str = "rwlock-hashmap";
    fn new() -> Self {
        RwLock::new(HashMap::new())
    }
    fn shared<R>(&self, f: impl FnOnce(&HashMap<u64, u64>) -> R) -> R {
        f(&self.read().unwrap_or_else(|p| p.into_inner()))
    }
    fn exclusive<R>(&self, f: impl FnOnce(&mut HashMap<u64, u64>) -> R) -> R {
        f(&mut self.write().unwrap_or_else(|p| p.into_inner()))
    }
}

impl LockedHashMap for Mutex<HashMap<u64, u64>> {
    const NAME: &'static str = "mutex-hashmap";
    fn new() -> Self {
        Mutex::new(HashMap::new())
    }
    fn shared<R>(&self, f: impl FnOnce(&HashMap<u64, u64>) -> R) -> R {
        f(&self.lock().unwrap_or_else(|p| p.into_inner()))
    }
    fn exclusive<R>(&self, f: impl FnOnce(&mut HashMap<u64, u64>) -> R) -> R {
        f(&mut self.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl<L: LockedHashMap> BenchMap for L {
    const NAME: &'static str = L::NAME;
    fn new() -> Self {
        L::new()
    }
    fn load(&self, k: u64) -> Option<u64> {
        self.shared(|m| m.get(&k).copied())
    }
    fn store(&self, k: u64, v: u64) {
        self.exclusive(|m| m.insert(k, v));
    }
    fn delete(&self, k: u64) {
        self.exclusive(|m| m.remove(&k));
    }
    fn compare_and_swap(&self, k: u64, old: u64, new: u64) -> bool {
        self.exclusive(|m| match m.get_mut(&k) {
            Some(v) if *v == old => {
                *v = new;
                true
            }
            _ => false,
        })
    }
    fn range_sum(&self) -> u64 {
        self.shared(|m| m.values().fold(0u64, |a, v| a.wrapping_add(*v)))
    }
}

impl BenchMap for DashMap<u64, u64> {
    const NAME: &'static str = "dashmap";
    fn new() -> Self {
        DashMap::new()
    }
    fn load(&self, k: u64) -> Option<u64> {
        self.get(&k).map(|v| *v)
    }
    fn store(&self, k: u64, v: u64) {
        self.insert(k, v);
    }
    fn delete(&self, k: u64) {
        self.remove(&k);
    }
    fn compare_and_swap(&self, k: u64, old: u64, new: u64) -> bool {
        match self.get_mut(&k) {
            Some(mut v) if *v == old => {
                *v = new;
                true
            }
            _ => false,
        }
    }
    fn range_sum(&self) -> u64 {
        self.iter().fold(0u64, |a, e| a.wrapping_add(*e.value()))
    }
}

pub const NAMES: [&str; 4] = ["syncmap", "rwlock-hashmap", "mutex-hashmap", "dashmap"];
