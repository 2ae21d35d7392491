//! `lockdemo`: threads that contend (or deliberately do not) on std Mutexes, with known
//! function names so tests can check that lockscope blames the right frame.
//!
//! lockdemo [contended|uncontended|stacks] [--threads N] [--seconds S] [--outside N]
//!          [--unique N] [--start-delay S] [--linger S] [--exit-code N]
//!
//! - `contended`: every thread takes one shared lock (8 threads with the default, ~0 work
//!   outside the lock, make a futex storm); `--outside N` adds N rounds of arithmetic (a few
//!   ns each) outside the lock per acquisition, for a moderately contended program.
//! - `uncontended`: each thread takes its own lock.
//! - `stacks`: like contended, but each acquisition comes through one of `--unique N`
//!   distinct call paths (for symbolization benchmarks).
//!
//! Runs until killed unless `--seconds` is given. `--start-delay` waits before starting the
//! threads and `--linger` stays alive after printing, so a tracer attached in the delay sees
//! exactly the measured run. Prints its lock count and rate as JSON at exit, then exits with
//! `--exit-code` (default 0), so launchers can be checked to pass the status on.
//!
//! The shared lock is the static `SHARED_LOCK`, so a tracer can name it by symbol.
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The one lock every `contended`/`stacks` thread takes.
static SHARED_LOCK: Mutex<u64> = Mutex::new(0);
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Contended,
    Uncontended,
    Stacks,
}

struct Args {
    mode: Mode,
    threads: usize,
    seconds: Option<f64>,
    outside: u64,
    unique: u64,
    start_delay: f64,
    linger: f64,
    exit_code: i32,
}

fn number<T: std::str::FromStr>(v: Option<String>, what: &str) -> Result<T, String> {
    v.and_then(|v| v.parse().ok())
        .ok_or(format!("{what} needs a number"))
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        mode: Mode::Contended,
        threads: 8,
        seconds: None,
        outside: 0,
        unique: 1024,
        start_delay: 0.0,
        linger: 0.0,
        exit_code: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => args.threads = number(it.next(), "--threads")?,
            "--seconds" => args.seconds = Some(number(it.next(), "--seconds")?),
            "--outside" => args.outside = number(it.next(), "--outside")?,
            "--unique" => args.unique = number(it.next(), "--unique")?,
            "--start-delay" => args.start_delay = number(it.next(), "--start-delay")?,
            "--linger" => args.linger = number(it.next(), "--linger")?,
            "--exit-code" => args.exit_code = number(it.next(), "--exit-code")?,
            "contended" => args.mode = Mode::Contended,
            "uncontended" => args.mode = Mode::Uncontended,
            "stacks" => args.mode = Mode::Stacks,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.threads == 0 || args.unique == 0 || args.seconds.is_some_and(|s| s <= 0.0) {
        return Err("--threads, --unique and --seconds must be positive".into());
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

/// One level of a distinct call path: `left` or `right` by the next bit. The addition after
/// the call keeps it a real call (not a tail call), so each level leaves its return address.
#[inline(never)]
fn left(bits: u64, depth: u32, shared: &Mutex<u64>) -> u64 {
    black_box(descend(bits, depth, shared)).wrapping_add(1)
}

#[inline(never)]
fn right(bits: u64, depth: u32, shared: &Mutex<u64>) -> u64 {
    black_box(descend(bits, depth, shared)).wrapping_add(2)
}

#[inline(always)]
fn descend(bits: u64, depth: u32, shared: &Mutex<u64>) -> u64 {
    if depth == 0 {
        contended_lock_site(shared)
    } else if bits & 1 == 0 {
        left(bits >> 1, depth - 1, shared)
    } else {
        right(bits >> 1, depth - 1, shared)
    }
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lockdemo: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "lockdemo pid {} threads {}",
        std::process::id(),
        args.threads
    );
    std::thread::sleep(Duration::from_secs_f64(args.start_delay));
    let stop = Arc::new(AtomicBool::new(false));
    let locks = Arc::new(AtomicU64::new(0));
    // Paths 0..unique need this many bits.
    let depth = 64 - (args.unique - 1).leading_zeros();
    let started = Instant::now();
    let workers: Vec<_> = (0..args.threads)
        .map(|i| {
            let (stop, locks, shared) = (stop.clone(), locks.clone(), &SHARED_LOCK);
            let (mode, outside, unique) = (args.mode, args.outside, args.unique);
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    let own = Mutex::new(0u64);
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        match mode {
                            Mode::Contended => {
                                black_box(contended_lock_site(shared));
                            }
                            Mode::Uncontended => private_lock_site(&own),
                            Mode::Stacks => {
                                let path = (n.wrapping_mul(7919) + i as u64) % unique;
                                black_box(descend(path, depth, shared));
                            }
                        }
                        let mut x = n;
                        for r in 0..outside {
                            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(r));
                        }
                        n += 1;
                    }
                    locks.fetch_add(n, Ordering::Relaxed);
                })
                .expect("spawn worker")
        })
        .collect();
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
    let secs = started.elapsed().as_secs_f64();
    let n = locks.load(Ordering::Relaxed);
    println!(
        "{{\"locks\": {n}, \"seconds\": {secs:.3}, \"locks_per_sec\": {:.0}}}",
        n as f64 / secs
    );
    std::thread::sleep(Duration::from_secs_f64(args.linger));
    std::process::exit(args.exit_code);
}
