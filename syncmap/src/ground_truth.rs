//! Ground truth for lockscope's holder blame (the `ground-truth` feature; compiled out
//! otherwise). Each thread logs every wait for the map's lock that blocked (the try-lock
//! failed; from then until acquired) and every run of the `promote` and `rebuild_dirty`
//! phases, with monotonic-clock timestamps (`Instant`, CLOCK_MONOTONIC on Linux) as ns since
//! the first one. [`dump`] writes them all; a test then computes the exact overlap split
//! offline and compares it with lockscope's.
//!
//! Each thread appends to its own buffer (an uncontended mutex: only [`dump`] ever takes it
//! from another thread), so logging adds no contention of its own.
use std::cell::OnceCell;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// What an interval is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A wait for the map's lock that blocked, until the lock was taken.
    Wait,
    Promote,
    Rebuild,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Wait => "wait",
            Kind::Promote => crate::phase::PROMOTE,
            Kind::Rebuild => crate::phase::REBUILD,
        }
    }
}

type Log = Arc<Mutex<Vec<(Kind, u64, u64)>>>;

fn logs() -> &'static Mutex<Vec<Log>> {
    static LOGS: OnceLock<Mutex<Vec<Log>>> = OnceLock::new();
    LOGS.get_or_init(Default::default)
}

thread_local! {
    static MINE: OnceCell<Log> = const { OnceCell::new() };
}

/// ns since the first call in this process.
pub fn now() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Logs one interval of this thread.
pub fn record(kind: Kind, start: u64, end: u64) {
    MINE.with(|m| {
        let log = m.get_or_init(|| {
            let log = Log::default();
            logs()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(log.clone());
            log
        });
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((kind, start, end));
    });
}

/// Times a phase run: logged when dropped.
pub struct Span(Kind, u64);

impl Span {
    pub fn start(kind: Kind) -> Span {
        Span(kind, now())
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        record(self.0, self.1, now());
    }
}

/// Writes every thread's intervals so far, one per line: `thread kind start_ns end_ns`.
pub fn dump(out: &mut dyn Write) -> io::Result<()> {
    let logs = logs().lock().unwrap_or_else(|p| p.into_inner());
    for (thread, log) in logs.iter().enumerate() {
        for (kind, start, end) in log.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            writeln!(out, "{thread} {} {start} {end}", kind.name())?;
        }
    }
    Ok(())
}
