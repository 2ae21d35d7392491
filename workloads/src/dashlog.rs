//! dashlog: 8 threads update two hot keys of a `DashMap` (`entry().or_insert()`) in
//! `bump_counter` and log through a `parking_lot::Mutex` in `log_line`: lock waits whose
//! sites are those two callers, not DashMap's or parking_lot's lock code.
//!
//!   dashlog SECONDS
//!
//! Prints its map's layout at start, as a reference for `--by lock`:
//! `dashmap shards=N stride=S block=0x… key0_shard=I key1_shard=J` (the shards block is the
//! boxed slice of shard locks, S bytes each), and `bump_calls=N log_calls=M` at exit.
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::Mutex;

/// Arithmetic held under a lock, so waiters pile up.
#[inline(never)]
fn work(n: u64, rounds: u64) -> u64 {
    let mut x = n;
    for i in 0..rounds {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

#[inline(never)]
fn bump_counter(map: &DashMap<u64, u64>, key: u64) {
    let mut v = map.entry(key).or_insert(0);
    *v = work(*v, 2000);
}

#[inline(never)]
fn log_line(log: &Mutex<Vec<u64>>, n: u64) {
    let mut l = log.lock();
    let x = work(n, 1000);
    if l.len() > 1024 {
        l.clear();
    }
    l.push(x);
}

fn main() {
    let seconds: f64 = match std::env::args().nth(1).map(|s| s.parse()) {
        Some(Ok(s)) => s,
        _ => {
            eprintln!("usage: dashlog SECONDS");
            std::process::exit(2);
        }
    };
    let map = Arc::new(DashMap::<u64, u64>::new());
    let log = Arc::new(Mutex::new(Vec::new()));
    println!(
        "dashmap shards={} stride={} block={:#x} key0_shard={} key1_shard={}",
        map.shards().len(),
        std::mem::size_of_val(&map.shards()[0]),
        map.shards().as_ptr() as usize,
        map.determine_map(&0u64),
        map.determine_map(&1u64)
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (bumps, logs) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let (map, log, stop) = (map.clone(), log.clone(), stop.clone());
            let (bumps, logs) = (bumps.clone(), logs.clone());
            thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    bump_counter(&map, (t + i) % 2);
                    bumps.fetch_add(1, Ordering::Relaxed);
                    if i.is_multiple_of(2) {
                        log_line(&log, i);
                        logs.fetch_add(1, Ordering::Relaxed);
                    }
                    work(i, 500);
                    i += 1;
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    println!(
        "bump_calls={} log_calls={}",
        bumps.load(Ordering::Relaxed),
        logs.load(Ordering::Relaxed)
    );
}
