//! idlemix: threads idle until told (condition variable, `thread::park`, `join`) beside
//! threads contending on one mutex, the mix in which idle waits used to pass for lock
//! contention.
//!
//!   idlemix std|parking-lot [--idle N] [--busy N] [--seconds S]
//!
//! `std`: N pool threads wait on a `std::sync::Condvar` for a work item posted every 50 ms,
//! one more thread sleeps in `std::thread::park` until unparked every 50 ms, and main waits
//! in `join`; the busy threads contend on a `std::sync::Mutex` in `std_lock_site`.
//! `parking-lot`: the same with `parking_lot::{Mutex, Condvar}`; the lock site is
//! `parking_lot_lock_site`.
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Std,
    ParkingLot,
}

struct Args {
    kind: Kind,
    idle: usize,
    busy: usize,
    seconds: f64,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        kind: Kind::Std,
        idle: 4,
        busy: 4,
        seconds: 2.0,
    };
    let mut it = std::env::args().skip(1);
    let num = |v: Option<String>, what: &str| -> Result<f64, String> {
        v.and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{what} needs a number"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "std" => args.kind = Kind::Std,
            "parking-lot" => args.kind = Kind::ParkingLot,
            "--idle" => args.idle = num(it.next(), "--idle")? as usize,
            "--busy" => args.busy = num(it.next(), "--busy")? as usize,
            "--seconds" => args.seconds = num(it.next(), "--seconds")?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// Arithmetic: `rounds` steps of it (~10 µs per 10,000 here) under the lock piles waiters up.
#[inline(never)]
fn work(n: u64, rounds: u64) -> u64 {
    let mut x = n;
    for i in 0..rounds {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

/// Rounds of work under the contended lock: long enough that its waiters sleep (parking_lot
/// spins first) and lock waiting outweighs the idle waits.
const HOLD_ROUNDS: u64 = 20_000;

/// The contended std lock: every busy thread takes it here.
#[inline(never)]
fn std_lock_site(shared: &Mutex<u64>) -> u64 {
    let mut g = shared.lock().unwrap_or_else(|p| p.into_inner());
    *g = work(*g, HOLD_ROUNDS);
    let v = *g;
    drop(g);
    black_box(v.rotate_left(3))
}

/// The contended parking_lot lock.
#[inline(never)]
fn parking_lot_lock_site(shared: &parking_lot::Mutex<u64>) -> u64 {
    let mut g = shared.lock();
    *g = work(*g, HOLD_ROUNDS);
    let v = *g;
    drop(g);
    black_box(v.rotate_left(5))
}

/// A pool thread: waits for work items on a condition variable.
#[inline(never)]
fn std_pool_worker(queue: &(Mutex<u32>, Condvar), stop: &AtomicBool) {
    let (m, cv) = queue;
    let mut q = m.lock().unwrap_or_else(|p| p.into_inner());
    while !stop.load(Ordering::Relaxed) {
        if *q > 0 {
            *q -= 1;
            drop(q);
            black_box(work(7, 2000));
            q = m.lock().unwrap_or_else(|p| p.into_inner());
        } else {
            q = cv.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[inline(never)]
fn parking_lot_pool_worker(
    queue: &(parking_lot::Mutex<u32>, parking_lot::Condvar),
    stop: &AtomicBool,
) {
    let (m, cv) = queue;
    let mut q = m.lock();
    while !stop.load(Ordering::Relaxed) {
        if *q > 0 {
            *q -= 1;
            parking_lot::MutexGuard::unlocked(&mut q, || black_box(work(7, 2000)));
        } else {
            cv.wait(&mut q);
        }
    }
}

/// A thread that parks until unparked.
#[inline(never)]
fn parked_thread(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        thread::park();
    }
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("idlemix: {e}");
            std::process::exit(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let std_queue = Arc::new((Mutex::new(0u32), Condvar::new()));
    let pl_queue = Arc::new((parking_lot::Mutex::new(0u32), parking_lot::Condvar::new()));
    let std_hot = Arc::new(Mutex::new(1u64));
    let pl_hot = Arc::new(parking_lot::Mutex::new(1u64));
    let mut handles = Vec::new();
    for _ in 0..args.idle {
        let (stop, sq, pq) = (stop.clone(), std_queue.clone(), pl_queue.clone());
        handles.push(thread::spawn(move || match args.kind {
            Kind::Std => std_pool_worker(&sq, &stop),
            Kind::ParkingLot => parking_lot_pool_worker(&pq, &stop),
        }));
    }
    for _ in 0..args.busy {
        let (stop, sh, ph) = (stop.clone(), std_hot.clone(), pl_hot.clone());
        handles.push(thread::spawn(move || {
            let mut acc = 0u64;
            while !stop.load(Ordering::Relaxed) {
                acc ^= match args.kind {
                    Kind::Std => std_lock_site(&sh),
                    Kind::ParkingLot => parking_lot_lock_site(&ph),
                };
            }
            black_box(acc);
        }));
    }
    let parked = {
        let stop = stop.clone();
        thread::spawn(move || parked_thread(&stop))
    };
    let unpark = parked.thread().clone();
    // A joiner: waits in join for the parked thread's end.
    let joiner = thread::spawn(move || parked.join().is_ok());
    let until = Instant::now() + Duration::from_secs_f64(args.seconds);
    while Instant::now() < until {
        thread::sleep(Duration::from_millis(50));
        match args.kind {
            Kind::Std => {
                *std_queue.0.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                std_queue.1.notify_one();
            }
            Kind::ParkingLot => {
                *pl_queue.0.lock() += 1;
                pl_queue.1.notify_one();
            }
        }
        // The parked thread wakes and parks again at once.
        unpark.unpark();
    }
    // Stop under each queue's lock, so no pool thread misses the last notify.
    {
        let _q = std_queue.0.lock().unwrap_or_else(|p| p.into_inner());
        let _p = pl_queue.0.lock();
        stop.store(true, Ordering::Relaxed);
    }
    std_queue.1.notify_all();
    pl_queue.1.notify_all();
    unpark.unpark();
    for h in handles {
        let _ = h.join();
    }
    let _ = joiner.join();
}
