//! tokiolock: 64 tasks on a 4-worker tokio runtime serialize on one `tokio::sync::Mutex`
//! in `update_session`, holding it briefly (a short spin, then `yield_now`), for SECONDS.
//! Each task measures every acquire's wait itself (an `Instant` before `.lock().await` and
//! after), so a tracer's async-wait total can be checked against the program's own.
//!
//!   tokiolock SECONDS
//!
//! Prints `{"acquires":N,"wait_ns":W,"tasks":64}` at exit.
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// Number of tasks contending for the one mutex.
const TASKS: u64 = 64;

/// Arithmetic held under the lock, so waiters pile up.
#[inline(never)]
fn spin(n: u64, rounds: u64) -> u64 {
    let mut x = n;
    for i in 0..rounds {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

/// Takes the session lock, updates it, and returns how long the acquire waited (ns).
#[inline(never)]
async fn update_session(session: &Mutex<u64>) -> u64 {
    let before = Instant::now();
    let mut s = session.lock().await;
    let waited = before.elapsed().as_nanos() as u64;
    *s = spin(*s, 2000);
    tokio::task::yield_now().await;
    waited
}

/// One task: update the session until told to stop; adds its waits to the totals.
async fn worker(session: Arc<Mutex<u64>>, stop: Arc<AtomicBool>, totals: Arc<[AtomicU64; 2]>) {
    let (mut n, mut wait) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        wait += update_session(&session).await;
        n += 1;
    }
    totals[0].fetch_add(n, Ordering::Relaxed);
    totals[1].fetch_add(wait, Ordering::Relaxed);
}

fn main() {
    let secs: f64 = match std::env::args().nth(1).map(|s| s.parse()) {
        None => 3.0,
        Some(Ok(s)) if s > 0.0 => s,
        Some(_) => {
            eprintln!("usage: tokiolock SECONDS (a positive number)");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let totals = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    rt.block_on(async {
        let session = Arc::new(Mutex::new(0u64));
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..TASKS)
            .map(|_| tokio::spawn(worker(session.clone(), stop.clone(), totals.clone())))
            .collect();
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.await.expect("task");
        }
    });
    println!(
        "{{\"acquires\":{},\"wait_ns\":{},\"tasks\":{}}}",
        totals[0].load(Ordering::Relaxed),
        totals[1].load(Ordering::Relaxed),
        TASKS
    );
}
