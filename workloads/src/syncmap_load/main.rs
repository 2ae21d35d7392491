//! `syncmap-load`: drives the bundled map with presets that each provoke one phase, and prints
//! its throughput and the map's own counters as JSON at exit (the ground truth lockscope is
//! checked against).
//!
//! syncmap-load --preset NAME [--threads N] [--keys N] [--duration SECS]
//!              [--start-delay SECS] [--say-filled] [--linger SECS]
//!              [--map syncmap|rwlock-hashmap|mutex-hashmap|dashmap]
//!              [--ground-truth FILE]
//!
//! `--map` drives another map with the same preset, for the throughput benchmark
//! (`cargo xtask bench-map`); the map counters in the JSON are the bundled map's only.
//!
//! `--ground-truth FILE` (a build with `--features ground-truth` only) writes the bundled map's
//! own log of blocked lock waits and phase runs to FILE at exit (see `syncmap::ground_truth`).
//!
//! `--start-delay` waits after filling the map and before working, and `--linger` stays alive
//! (idle) after printing the JSON: a tracer attached in the delay and still attached in the
//! linger sees exactly the interval the JSON counts. `--say-filled` prints
//! `syncmap-load: filled` on stderr once the map is filled, as the delay begins (a test's
//! handshake: attach now).
//!
//! | preset          | what it does                                   | provokes              |
//! |-----------------|------------------------------------------------|-----------------------|
//! | read-mostly     | 99% loads of stable keys, 1% updates of them   | fast-path reads only  |
//! | update-existing | compare-and-swap on stable keys                | lock-free CAS only    |
//! | write-heavy     | a writer streams new keys into a large map; readers mostly hit old keys, sometimes fresh ones | dirty rebuilds (O(n)) |
//! | miss-storm      | loads of keys just stored into a small map     | read misses, promotions |
//! | range-insert    | one thread ranges, the others insert new keys  | range promotions, then rebuilds |
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod maps;

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use dashmap::DashMap;
use maps::BenchMap;
use syncmap::{stats, SyncMap};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Preset {
    ReadMostly,
    UpdateExisting,
    WriteHeavy,
    MissStorm,
    RangeInsert,
}

const PRESETS: [(&str, Preset); 5] = [
    ("read-mostly", Preset::ReadMostly),
    ("update-existing", Preset::UpdateExisting),
    ("write-heavy", Preset::WriteHeavy),
    ("miss-storm", Preset::MissStorm),
    ("range-insert", Preset::RangeInsert),
];

impl Preset {
    fn name(self) -> &'static str {
        PRESETS
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("?", |(n, _)| n)
    }
    /// Live keys kept in the map when --keys is not given.
    fn default_keys(self) -> u64 {
        match self {
            Preset::ReadMostly | Preset::UpdateExisting => 10_000,
            Preset::WriteHeavy => 100_000,
            Preset::MissStorm => 1_000,
            Preset::RangeInsert => 10_000,
        }
    }
}

struct Args {
    preset: Preset,
    threads: usize,
    keys: u64,
    duration: Duration,
    start_delay: Duration,
    filled: Filled,
    linger: Duration,
    map: String,
    /// Read only in a `ground-truth` build.
    #[cfg_attr(not(feature = "ground-truth"), allow(dead_code))]
    ground_truth: Option<String>,
}

/// Whether the end of the fill is announced (`--say-filled`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Filled {
    Quiet,
    Say,
}

fn secs(v: &str, what: &str) -> Result<Duration, String> {
    v.trim_end_matches('s')
        .parse()
        .ok()
        .filter(|&s: &f64| s >= 0.0 && s.is_finite())
        .map(Duration::from_secs_f64)
        .ok_or(format!("{what} needs a number of seconds"))
}

fn parse() -> Result<Args, String> {
    let mut preset = None;
    let (mut threads, mut keys) = (4usize, None);
    let mut duration = Duration::from_secs(5);
    let (mut start_delay, mut linger) = (Duration::ZERO, Duration::ZERO);
    let mut map = "syncmap".to_string();
    let mut ground_truth = None;
    let mut filled = Filled::Quiet;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |what: &str| it.next().ok_or(format!("{what} needs a value"));
        match a.as_str() {
            "--preset" => {
                let v = val("--preset")?;
                preset = Some(
                    PRESETS
                        .iter()
                        .find(|(n, _)| *n == v)
                        .map(|(_, p)| *p)
                        .ok_or(format!("unknown preset {v}; one of: {}", names()))?,
                );
            }
            "--threads" => {
                threads = val("--threads")?
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("--threads needs a positive number")?
            }
            "--keys" => {
                keys = Some(
                    val("--keys")?
                        .parse()
                        .ok()
                        .filter(|&n: &u64| n > 0)
                        .ok_or("--keys needs a positive number")?,
                )
            }
            "--duration" => duration = secs(&val("--duration")?, "--duration")?,
            "--start-delay" => start_delay = secs(&val("--start-delay")?, "--start-delay")?,
            "--linger" => linger = secs(&val("--linger")?, "--linger")?,
            "--say-filled" => filled = Filled::Say,
            "--map" => {
                map = val("--map")?;
                if !maps::NAMES.contains(&map.as_str()) {
                    return Err(format!(
                        "unknown map {map}; one of: {}",
                        maps::NAMES.join(", ")
                    ));
                }
            }
            "--ground-truth" if cfg!(feature = "ground-truth") => {
                ground_truth = Some(val("--ground-truth")?)
            }
            "--ground-truth" => {
                return Err("--ground-truth needs a build with `--features ground-truth`".into())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let preset = preset.ok_or(format!("--preset is required: one of {}", names()))?;
    Ok(Args {
        preset,
        threads,
        keys: keys.unwrap_or(preset.default_keys()),
        duration,
        start_delay,
        filled,
        linger,
        map,
        ground_truth,
    })
}

fn names() -> String {
    PRESETS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A little arithmetic standing in for the work a program does between map operations.
#[inline(never)]
fn work(seed: u64) -> u64 {
    let mut x = seed;
    for i in 0..64 {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

/// Per-thread xorshift: no shared state on the hot path.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct Shared<M> {
    map: M,
    /// Next new key id; live keys are the window [next - keys, next).
    next: AtomicU64,
    keys: u64,
    stop: AtomicBool,
}

impl<M: BenchMap> Shared<M> {
    /// Stores a brand-new key and deletes the one leaving the window, so the map's size stays
    /// at `keys` while every store is of a new key.
    fn insert_new(&self) -> u64 {
        let k = self.next.fetch_add(1, Relaxed);
        self.map.store(k, k);
        if k >= self.keys {
            self.map.delete(k - self.keys);
        }
        k
    }
    /// A live key from the older half of the window: in the read snapshot unless the map has
    /// not been promoted for half a window's worth of new keys.
    fn random_old(&self, rng: &mut Rng) -> u64 {
        let next = self.next.load(Relaxed);
        let oldest = next.saturating_sub(self.keys);
        oldest + rng.next() % (self.keys / 2).max(1)
    }

    fn random_live(&self, rng: &mut Rng) -> u64 {
        let next = self.next.load(Relaxed);
        next - 1 - rng.next() % self.keys.min(next)
    }
}

/// One thread's loop; returns its operation count.
fn worker<M: BenchMap>(preset: Preset, index: usize, s: &Shared<M>) -> u64 {
    let mut rng =
        Rng(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut ops = 0u64;
    while !s.stop.load(Relaxed) {
        match preset {
            Preset::ReadMostly => {
                let k = s.random_live(&mut rng);
                if rng.next().is_multiple_of(100) {
                    s.map.store(k, rng.next());
                } else {
                    black_box(s.map.load(k));
                }
            }
            Preset::UpdateExisting => {
                let k = s.random_live(&mut rng);
                if let Some(v) = s.map.load(k) {
                    black_box(s.map.compare_and_swap(k, v, v.wrapping_add(1)));
                }
            }
            Preset::WriteHeavy => {
                if index == 0 {
                    // One writer streams new keys into a big map, with a little work between
                    // stores, as a producer would.
                    s.insert_new();
                    black_box(work(rng.next()));
                } else if rng.next().is_multiple_of(64) {
                    // Readers sometimes read a fresh key: it misses the snapshot. Enough misses
                    // promote dirty, and the writer's next new key rebuilds dirty by copying
                    // the whole big snapshot, under the lock every miss needs.
                    let newest = s.next.load(Relaxed).saturating_sub(1);
                    black_box(s.map.load(newest));
                } else {
                    // Old keys: in the snapshot, lock-free.
                    black_box(s.map.load(s.random_old(&mut rng)));
                }
            }
            Preset::MissStorm => {
                if rng.next().is_multiple_of(8) {
                    s.insert_new();
                } else {
                    let newest = s.next.load(Relaxed).saturating_sub(1 + rng.next() % 4);
                    black_box(s.map.load(newest));
                }
            }
            Preset::RangeInsert => {
                if index == 0 {
                    black_box(s.map.range_sum());
                } else {
                    s.insert_new();
                }
            }
        }
        ops += 1;
    }
    ops
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("syncmap-load: {e}");
            std::process::exit(2);
        }
    };
    match args.map.as_str() {
        "rwlock-hashmap" => run::<RwLock<HashMap<u64, u64>>>(&args),
        "mutex-hashmap" => run::<Mutex<HashMap<u64, u64>>>(&args),
        "dashmap" => run::<DashMap<u64, u64>>(&args),
        _ => run::<SyncMap<u64, u64>>(&args),
    }
}

fn run<M: BenchMap>(args: &Args) {
    let shared = Arc::new(Shared {
        map: M::new(),
        next: AtomicU64::new(0),
        keys: args.keys,
        stop: AtomicBool::new(false),
    });
    // Fill and promote, so the run starts from a full read snapshot.
    for _ in 0..args.keys {
        shared.insert_new();
    }
    black_box(shared.map.range_sum());
    if args.filled == Filled::Say {
        eprintln!("syncmap-load: filled");
    }
    std::thread::sleep(args.start_delay);
    let before = stats::snapshot();
    eprintln!(
        "syncmap-load pid {} map {} preset {} threads {} keys {}",
        std::process::id(),
        M::NAME,
        args.preset.name(),
        args.threads,
        args.keys
    );
    let start = Instant::now();
    let handles: Vec<_> = (0..args.threads)
        .map(|i| {
            let s = shared.clone();
            let preset = args.preset;
            std::thread::Builder::new()
                .name(format!("load-{i}"))
                .spawn(move || worker(preset, i, &s))
                .expect("spawn worker")
        })
        .collect();
    std::thread::sleep(args.duration);
    shared.stop.store(true, Relaxed);
    let ops: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    #[cfg(feature = "ground-truth")]
    if let Some(path) = &args.ground_truth {
        let written = std::fs::File::create(path).and_then(|f| {
            let mut w = std::io::BufWriter::new(f);
            syncmap::ground_truth::dump(&mut w)?;
            std::io::Write::flush(&mut w)
        });
        if let Err(e) = written {
            eprintln!("syncmap-load: cannot write --ground-truth {path}: {e}");
            std::process::exit(1);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let after = stats::snapshot();
    let counters: Vec<String> = stats::NAMES
        .iter()
        .zip(before.iter().zip(after.iter()))
        .map(|(n, (b, a))| format!("\"{n}\": {}", a - b))
        .collect();
    let totals: Vec<String> = stats::NAMES
        .iter()
        .zip(after.iter())
        .map(|(n, a)| format!("\"{n}\": {a}"))
        .collect();
    println!(
        "{{\"map\": \"{}\", \"preset\": \"{}\", \"threads\": {}, \"keys\": {}, \"seconds\": {secs:.3}, \"ops\": {ops}, \"ops_per_sec\": {:.0}, \"counters\": {{{}}}, \"counters_since_start\": {{{}}}}}",
        M::NAME,
        args.preset.name(),
        args.threads,
        args.keys,
        ops as f64 / secs,
        counters.join(", "),
        totals.join(", ")
    );
    std::thread::sleep(args.linger);
}
