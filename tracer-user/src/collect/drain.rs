//! drain: the snapshot ring read on a thread of its own, from the moment the programs are
//! attached, for one process or many (each with its own maps and unwinder, added as it is
//! traced and removed when it is dropped). Read from the recording loop, the ring (then ~500 snapshots, a few ms of a
//! lock storm) filled while the rest of the probes were placed, the modules loaded or the
//! profile built (`top`), and those waits lost their stacks.
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aya::maps::{HashMap as BpfHashMap, IterableMap, Map, MapData};
use tracer_common::{map, StackFrames};

pub use super::snapshots::ProcUnwind;
use super::snapshots::{Drained, Snapshots, StackMap, Unknown};
use crate::attach::Tracer;
use crate::symbolize::Addr;
use crate::unwind::UnwindMode;

/// Snapshot rows: waits by kernel key and unwound stack.
pub use super::snapshots::SnapshotRows;

/// A thread asleep at attach: its tid, the start its seeded wait was given, its stack.
pub type Expected = (u32, u64, Vec<Addr>);

/// The longest the thread sleeps between looks when the ring does not wake it (it does past
/// `SNAPSHOT_RING_WAKE_BYTES`): ~400 snapshots at 40k waits/s.
const POLL: Duration = Duration::from_millis(10);
/// Snapshots unwound per hold of the lock, so `rows` is never kept waiting long.
const BATCH: usize = 1024;
/// How often the thread re-reads each process's mappings for libraries loaded since.
const MAPS_EVERY: Duration = Duration::from_secs(1);

/// The snapshot reader's thread; dropping it stops the thread.
pub struct SnapshotDrain {
    shared: Arc<Mutex<Snapshots>>,
    stop: Arc<AtomicBool>,
    /// Set on an exec of the one target: the thread forgets the old image's modules before
    /// its next read.
    exec: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The reader's nice value. It is the ring's only consumer, and a starved reader loses
/// stacks: under MariaDB with 16 sysbench clients on 2 cores, at nice 0 it waited runnable for
/// 30-40% of the recording (up to 86% of some 100 ms), and one run in about a dozen filled the
/// ring and dropped ~850 snapshots. Its work is bounded by the rate of snapshots.
const READER_NICE: libc::c_int = -10;

/// Puts the calling thread at [`READER_NICE`]; without the privilege (`CAP_SYS_NICE`) it
/// keeps its nice value.
fn raise_priority() {
    // SAFETY: plain syscalls on the calling thread's own tid; no memory is passed.
    let _ = unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            libc::gettid() as libc::id_t,
            READER_NICE,
        )
    };
}

/// The reader's processes, their modules loaded before the programs are (the module files of
/// a large server take a while to read).
pub struct PreparedDrain {
    /// The one target (`record`, `top`), whose exec [`SnapshotDrain::exec_happened`] reports.
    primary: Option<u32>,
    procs: Vec<(u32, ProcUnwind)>,
    unknown: Unknown,
}

impl SnapshotDrain {
    /// Loads the modules `pid` has mapped, for [`PreparedDrain::start`].
    pub fn prepare(pid: u32, mode: UnwindMode) -> PreparedDrain {
        PreparedDrain {
            primary: Some(pid),
            procs: vec![(pid, ProcUnwind::load(pid, mode))],
            unknown: Unknown::Count,
        }
    }

    /// A reader for many processes, none yet: each is [`SnapshotDrain::add`]ed as it is
    /// traced. Snapshots of any other process are counted ([`SnapshotDrain::unattributed`]).
    pub fn prepare_set() -> PreparedDrain {
        PreparedDrain {
            primary: None,
            procs: Vec::new(),
            unknown: Unknown::Count,
        }
    }

    /// `record --follow-forks`: `pid` (unwound as `mode` says) and the processes it forks,
    /// each [`SnapshotDrain::add`]ed when it is seen; a child's snapshots from before that
    /// (sent as its parent's, whose mode it inherits in the kernel) are unwound in its
    /// parent's mode.
    pub fn prepare_forks(pid: u32, mode: UnwindMode) -> PreparedDrain {
        let copies = mode != UnwindMode::FramePointers;
        PreparedDrain {
            primary: Some(pid),
            procs: match copies {
                true => vec![(pid, ProcUnwind::load(pid, mode))],
                false => Vec::new(),
            },
            unknown: match copies {
                true => Unknown::Adopt { mode, parent: pid },
                false => Unknown::Count,
            },
        }
    }

    /// Loads the modules `pid` has mapped, for [`SnapshotDrain::add`] (slow for a large
    /// process: done without holding the reader).
    pub fn load(pid: u32, mode: UnwindMode) -> ProcUnwind {
        ProcUnwind::load(pid, mode)
    }
}

impl PreparedDrain {
    /// Takes the ring out of `tracer` and starts reading it. `asleep` are the threads of the
    /// one target asleep at attach, whose waits' stacks come from the scan, not a snapshot.
    pub fn start(self, tracer: &mut Tracer, asleep: Vec<Expected>) -> Result<SnapshotDrain> {
        let PreparedDrain {
            primary,
            procs,
            unknown,
        } = self;
        let mut snapshots = Snapshots::take(tracer, unknown)?;
        snapshots.procs.extend(procs);
        if let Some(pid) = primary {
            for (tid, start, frames) in asleep {
                snapshots.expect(pid, tid, start, frames);
            }
        }
        snapshots.stacks =
            Some(own_stack_map(tracer).context("a second handle on the STACKS map")?);
        let shared = Arc::new(Mutex::new(snapshots));
        let stop = Arc::new(AtomicBool::new(false));
        let exec = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("lockscope-unwind".into())
            .spawn({
                let flags = Flags {
                    stop: stop.clone(),
                    exec: exec.clone(),
                };
                let shared = shared.clone();
                move || {
                    raise_priority();
                    run(&shared, &flags, primary)
                }
            })
            .context("starting the snapshot thread")?;
        Ok(SnapshotDrain {
            shared,
            stop,
            exec,
            thread: Some(thread),
        })
    }
}

impl SnapshotDrain {
    /// The one target exec'd (a launched command's own exec included): its modules are new.
    pub fn exec_happened(&self) {
        self.exec.store(true, Ordering::Release);
    }

    /// Unwinds `pid`'s snapshots from now on, as `proc` says (replacing how it was unwound:
    /// a new image; its rows so far stay).
    pub fn add(&self, pid: u32, proc: ProcUnwind) {
        lock(&self.shared).procs.insert(pid, proc);
    }

    /// Stops unwinding `pid` and forgets its rows.
    pub fn remove(&self, pid: u32) {
        lock(&self.shared).remove(pid);
    }

    /// The rows so far, of every process (the fleet gives each its own by the process the
    /// kernel saw the wait in).
    pub fn rows(&self) -> SnapshotRows {
        merged(lock(&self.shared).rows.clone())
    }

    /// Unwinds every snapshot in the ring now, on the caller's thread, for at most `limit`.
    /// The kernel sends a wait's snapshot before it adds the wait to its row: after rows read
    /// from the kernel, this makes the snapshot rows cover at least the same waits (a reader
    /// behind would leave the newest waits under their frame-walk stacks for that read).
    pub fn catch_up(&self, limit: Duration) {
        let t0 = Instant::now();
        while lock(&self.shared).drain(BATCH) == Drained::More && t0.elapsed() < limit {}
    }

    /// Snapshots of processes the reader was not told of (counted, not unwound).
    pub fn unattributed(&self) -> u64 {
        lock(&self.shared).unattributed
    }

    /// Reads what is left in the ring (call after the programs are detached), stops the
    /// thread and returns every row, of every process.
    pub fn finish(mut self) -> SnapshotRows {
        self.stop_thread();
        merged(std::mem::take(&mut lock(&self.shared).rows))
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Rows of many processes as one set (their keys differ: each names its thread).
fn merged(by_process: HashMap<u32, SnapshotRows>) -> SnapshotRows {
    let mut out = SnapshotRows::new();
    for rows in by_process.into_values() {
        for (k, v) in rows {
            out.entry(k).or_default().merge(&v);
        }
    }
    out
}

impl Drop for SnapshotDrain {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// The lock, even if a panic on the thread poisoned it (the rows stay consistent: each
/// snapshot is added whole or not at all).
fn lock(shared: &Mutex<Snapshots>) -> MutexGuard<'_, Snapshots> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the recording tells the thread.
struct Flags {
    stop: Arc<AtomicBool>,
    exec: Arc<AtomicBool>,
}

fn run(shared: &Mutex<Snapshots>, flags: &Flags, primary: Option<u32>) {
    let fd = lock(shared).ring.as_fd().as_raw_fd();
    let mut maps_at = Instant::now();
    loop {
        if flags.exec.swap(false, Ordering::AcqRel) {
            if let Some(pid) = primary {
                if let Some(p) = lock(shared).procs.get_mut(&pid) {
                    p.reset(pid);
                }
            }
        }
        // Read before draining: once set, the programs are gone and this drain is the last.
        let last = flags.stop.load(Ordering::Acquire);
        let drained = lock(shared).drain(BATCH);
        if drained == Drained::More {
            continue;
        }
        if last {
            return;
        }
        if maps_at.elapsed() >= MAPS_EVERY {
            maps_at = Instant::now();
            // One process per hold of the lock, so the readers of rows wait for one at most.
            let pids: Vec<u32> = lock(shared).procs.keys().copied().collect();
            for pid in pids {
                if let Some(p) = lock(shared).procs.get_mut(&pid) {
                    p.refresh(pid);
                }
            }
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the ring's fd, which `shared` keeps open; a failure
        // or timeout only means another look.
        unsafe { libc::poll(&mut pfd, 1, POLL.as_millis() as i32) };
    }
}

/// A handle of the thread's own on the kernel's frame-pointer walks.
fn own_stack_map(tracer: &Tracer) -> Result<StackMap> {
    let shared = tracer.ebpf.map(map::STACKS).context("no STACKS map")?;
    let borrowed: BpfHashMap<&MapData, u64, StackFrames> = BpfHashMap::try_from(shared)?;
    let fd = borrowed.map().fd().as_fd().try_clone_to_owned()?;
    let data = MapData::from_fd(fd)?;
    Ok(BpfHashMap::try_from(Map::from_map_data(data)?)?)
}
