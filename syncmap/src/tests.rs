use std::collections::HashMap;
use std::sync::Mutex;

use super::stats::{snapshot, Event};
use super::*;

/// The counters are process-wide, and every map operation moves them: all tests take turns,
/// so one test's rebuilds never show up in another's counter deltas.
static COUNTED: Mutex<()> = Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    COUNTED.lock().unwrap_or_else(|p| p.into_inner())
}

fn delta(before: &[u64; stats::EVENTS], e: Event) -> u64 {
    snapshot()[e as usize] - before[e as usize]
}

#[test]
fn basic_operations() {
    let _g = exclusive();
    let m = SyncMap::new();
    assert_eq!(m.load("a"), None);
    m.store("a".to_string(), 1);
    assert_eq!(m.load("a"), Some(1));
    assert_eq!(m.swap("a".to_string(), 2), Some(1));
    assert_eq!(m.load_or_store("a".to_string(), 9), (2, true));
    assert_eq!(m.load_or_store("b".to_string(), 3), (3, false));
    assert!(m.compare_and_swap(&"b".to_string(), &3, 4));
    assert!(!m.compare_and_swap(&"b".to_string(), &3, 5));
    assert_eq!(m.load("b"), Some(4));
    assert!(!m.compare_and_delete(&"b".to_string(), &3));
    assert!(m.compare_and_delete(&"b".to_string(), &4));
    assert_eq!(m.load("b"), None);
    assert_eq!(m.load_and_delete("a"), Some(2));
    assert_eq!(m.load_and_delete("a"), None);
    m.delete("nothing");
    assert!(m.is_empty());
}

#[test]
fn misses_promote_dirty_in_one_swap() {
    let _g = exclusive();
    let m = SyncMap::new();
    for k in 0..4 {
        m.store(k, k * 10);
    }
    // All four keys are only in dirty: each load misses until misses >= len(dirty) = 4.
    let before = snapshot();
    for _ in 0..3 {
        assert_eq!(m.load(&0), Some(0));
    }
    assert_eq!(delta(&before, Event::ReadMiss), 3);
    assert_eq!(delta(&before, Event::Promotion), 0);
    assert_eq!(m.load(&1), Some(10));
    assert_eq!(delta(&before, Event::Promotion), 1);
    // Now in the snapshot: fast path, no more misses.
    let before = snapshot();
    for k in 0..4 {
        assert_eq!(m.load(&k), Some(k * 10));
    }
    assert_eq!(delta(&before, Event::FastRead), 4);
    assert_eq!(delta(&before, Event::ReadMiss), 0);
}

#[test]
fn first_new_key_after_promotion_rebuilds_dirty_by_copying() {
    let _g = exclusive();
    let m = SyncMap::new();
    for k in 0..100 {
        m.store(k, k);
    }
    let mut n = 0;
    m.range(|_, _| {
        n += 1;
        true
    }); // range promotes
    assert_eq!(n, 100);
    m.delete(&7); // deleted in the snapshot: will be expunged by the rebuild
    let before = snapshot();
    m.store(1000, 1); // new key: rebuild copies the 99 live entries
    assert_eq!(delta(&before, Event::Rebuild), 1);
    assert_eq!(delta(&before, Event::EntriesCopied), 99);
    m.store(1001, 1); // dirty exists now: no second rebuild
    assert_eq!(delta(&before, Event::Rebuild), 1);
    // Updating an existing key is a lock-free CAS.
    let before = snapshot();
    m.store(5, 55);
    assert_eq!(delta(&before, Event::FastStore), 1);
    assert_eq!(delta(&before, Event::SlowStore), 0);
    assert_eq!(m.load(&5), Some(55));
    // The expunged key comes back through the lock and is visible again.
    m.store(7, 70);
    assert_eq!(m.load(&7), Some(70));
    assert_eq!(m.len(), 102);
}

#[test]
fn expunged_key_revived_is_kept_across_promotion() {
    let _g = exclusive();
    let m = SyncMap::new();
    m.store(1, 1);
    m.range(|_, _| true); // promote: 1 in snapshot, dirty gone
    m.delete(&1); // deleted in snapshot
    m.store(2, 2); // rebuild: 1 expunged, not copied
    m.store(1, 11); // revive: must be re-added to dirty
    m.range(|_, _| true); // promote dirty
    assert_eq!(m.load(&1), Some(11));
    assert_eq!(m.load(&2), Some(2));
}

#[test]
fn load_or_store_is_atomic_under_races() {
    let _g = exclusive();
    // Many threads race to be first for the same fresh keys: exactly one wins each key, and
    // everyone sees the winner's value.
    // Fewer rounds under Miri, which interprets every instruction.
    let rounds = if cfg!(miri) { 3 } else { 50 };
    for round in 0..rounds {
        let m = Arc::new(SyncMap::new());
        let results: Vec<(u64, bool)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4u64)
                .map(|t| {
                    let m = m.clone();
                    s.spawn(move || m.load_or_store(round, t))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<_> = results.iter().filter(|(_, loaded)| !loaded).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert!(
            results.iter().all(|(v, _)| *v == winners[0].0),
            "{results:?}"
        );
    }
}

#[test]
fn stats_symbol_is_exported_with_its_magic() {
    let _g = exclusive();
    assert_eq!(stats::SYNCMAP_STATS.magic, stats::MAGIC);
    assert_eq!(stats::SYNCMAP_STATS.events as usize, stats::EVENTS);
    assert_eq!(std::mem::align_of::<stats::Shard>(), 128);
}

/// Many threads doing random operations; afterwards the map agrees with a reference
/// `Mutex<HashMap>` that saw the same per-key operations in the same order (each thread owns
/// its own keys, so per-key order is the thread's program order).
#[test]
#[cfg_attr(
    miri,
    ignore = "hundreds of thousands of operations: minutes under Miri"
)]
fn stress_against_reference_map() {
    let _g = exclusive();
    let m = Arc::new(SyncMap::new());
    let threads = 8u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                let mut reference = HashMap::new();
                let mut x = t + 1;
                for _ in 0..20_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = (x % 64) * threads + t; // this thread's keys only
                    match x % 7 {
                        0 | 1 => {
                            m.store(key, x);
                            reference.insert(key, x);
                        }
                        2 => assert_eq!(m.load(&key), reference.get(&key).copied()),
                        3 => assert_eq!(m.load_and_delete(&key), reference.remove(&key)),
                        4 => {
                            let had = reference.get(&key).copied();
                            let got = m.load_or_store(key, x);
                            match had {
                                Some(h) => assert_eq!(got, (h, true)),
                                None => {
                                    assert_eq!(got, (x, false));
                                    reference.insert(key, x);
                                }
                            }
                        }
                        5 => {
                            let cur = reference.get(&key).copied();
                            if let Some(c) = cur {
                                assert!(m.compare_and_swap(&key, &c, x));
                                reference.insert(key, x);
                            }
                        }
                        _ => {
                            // Other threads' keys: exercises misses and promotions.
                            let _ = m.load(&(x % 512));
                        }
                    }
                }
                reference
            })
        })
        .collect();
    let mut all = HashMap::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    let mut seen = HashMap::new();
    m.range(|k, v| {
        seen.insert(*k, v);
        true
    });
    assert_eq!(seen, all);
}
