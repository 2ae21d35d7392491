//! `lockdemo`: threads that contend (or deliberately do not) on std Mutexes, with known
//! function names so tests can check that lockscope blames the right frame.
//!
//! lockdemo [contended|uncontended] [--threads N] [--seconds S]
//! Runs until killed unless --seconds is given; prints its pid and lock count at exit.
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Args {
    mode: String,
    threads: usize,
    seconds: Option<f64>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        mode: "contended".into(),
        threads: 8,
        seconds: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => {
                args.threads = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--threads needs a positive number")?
            }
            "--seconds" => {
                args.seconds = Some(
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .filter(|&s: &f64| s > 0.0)
                        .ok_or("--seconds needs a positive number")?,
                )
            }
            "contended" | "uncontended" => args.mode = a,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// A little arithmetic, so the critical section is long enough for waiters to pile up.
#[inline(never)]
fn work(n: u64) -> u64 {
    let mut x = n;
    for i in 0..200 {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

/// The lock site tests look for: every thread takes the one shared lock here. It does a
/// little work after unlocking, as most code does; an unlock that is a function's last act
/// becomes a tail call, and the function then vanishes from the waker's stack.
#[inline(never)]
fn contended_lock_site(shared: &Mutex<u64>) -> u64 {
    let mut g = shared.lock().unwrap_or_else(|p| p.into_inner());
    let v = work(*g);
    *g = v;
    drop(g);
    black_box(v.rotate_left(7))
}

/// Each thread's own lock: never contended. Its body differs from `contended_lock_site` on
/// purpose: identical functions get folded into one symbol by the optimiser.
#[inline(never)]
fn private_lock_site(own: &Mutex<u64>) {
    let mut g = own.lock().unwrap_or_else(|p| p.into_inner());
    *g = work(*g ^ 0x5555);
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lockdemo: {e}");
            std::process::exit(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let locks = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Mutex::new(0u64));
    let contended = args.mode == "contended";
    let workers: Vec<_> = (0..args.threads)
        .map(|i| {
            let (stop, locks, shared) = (stop.clone(), locks.clone(), shared.clone());
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    let own = Mutex::new(0u64);
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if contended {
                            black_box(contended_lock_site(&shared));
                        } else {
                            private_lock_site(&own);
                        }
                        n += 1;
                    }
                    locks.fetch_add(n, Ordering::Relaxed);
                })
                .expect("spawn worker")
        })
        .collect();
    println!(
        "lockdemo pid {} mode {} threads {}",
        std::process::id(),
        args.mode,
        args.threads
    );
    if let Some(s) = args.seconds {
        let end = Instant::now() + Duration::from_secs_f64(s);
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
    }
    for w in workers {
        let _ = w.join();
    }
    println!("{{\"locks\": {}}}", locks.load(Ordering::Relaxed));
}
