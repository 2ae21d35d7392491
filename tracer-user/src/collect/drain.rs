//! drain: DWARF mode's snapshot ring read on a thread of its own, from the moment the programs
//! are attached. Read from the recording loop, the ring (then ~500 snapshots, a few ms of a
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
use tracer_common::{map, StackFrames, WaitKey, WaitStats};

use super::snapshots::{Drained, Snapshots, StackMap};
use crate::attach::Tracer;
use crate::symbolize::Addr;
use crate::sys::MapHistory;
use crate::unwind::{SnapshotUnwinder, UnwindMode};

/// Snapshot rows: waits by kernel key and unwound stack.
pub type SnapshotRows = HashMap<(WaitKey, Vec<Addr>), WaitStats>;

/// A thread asleep at attach: its tid, the start its seeded wait was given, its stack.
pub type Expected = (u32, u64, Vec<Addr>);

/// The longest the thread sleeps between looks when the ring does not wake it (it does past
/// `SNAPSHOT_RING_WAKE_BYTES`): ~400 snapshots at 40k waits/s.
const POLL: Duration = Duration::from_millis(10);
/// Snapshots unwound per hold of the lock, so `rows` is never kept waiting long.
const BATCH: usize = 1024;
/// How often the thread re-reads the target's mappings for libraries loaded since.
const MAPS_EVERY: Duration = Duration::from_secs(1);

/// The snapshot reader's thread; dropping it stops the thread.
pub struct SnapshotDrain {
    shared: Arc<Mutex<Snapshots>>,
    stop: Arc<AtomicBool>,
    /// Set on an exec: the thread forgets the old image's modules before its next read.
    exec: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The reader's unwinder, its modules loaded before the programs are (the module files of a
/// large server take a while to read).
pub struct PreparedDrain {
    pid: u32,
    mode: UnwindMode,
    maps: MapHistory,
    unwinder: SnapshotUnwinder,
}

impl SnapshotDrain {
    /// Loads the modules `pid` has mapped, for [`PreparedDrain::start`].
    pub fn prepare(pid: u32, mode: UnwindMode) -> PreparedDrain {
        let mut maps = MapHistory::default();
        maps.refresh(pid);
        let mut unwinder = SnapshotUnwinder::default();
        unwinder.update(&maps);
        PreparedDrain {
            pid,
            mode,
            maps,
            unwinder,
        }
    }
}

impl PreparedDrain {
    /// Takes the ring out of `tracer` and starts reading it. `asleep` are the threads asleep
    /// at attach, whose waits' stacks come from the scan, not from a snapshot.
    pub fn start(self, tracer: &mut Tracer, asleep: Vec<Expected>) -> Result<SnapshotDrain> {
        let PreparedDrain {
            pid,
            mode,
            maps,
            unwinder,
        } = self;
        let mut snapshots = Snapshots::take(tracer, unwinder, mode)?;
        for (tid, start, frames) in asleep {
            snapshots.expect(tid, start, frames);
        }
        let stacks = own_stack_map(tracer).context("a second handle on the STACKS map")?;
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
                move || run(&shared, &flags, pid, maps, &stacks)
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
    /// The target exec'd (a launched command's own exec included): its modules are new.
    pub fn exec_happened(&self) {
        self.exec.store(true, Ordering::Release);
    }

    /// The rows so far (`top`'s refreshes).
    pub fn rows(&self) -> SnapshotRows {
        lock(&self.shared).rows.clone()
    }

    /// Reads what is left in the ring (call after the programs are detached), stops the
    /// thread and returns every row.
    pub fn finish(mut self) -> SnapshotRows {
        self.stop_thread();
        std::mem::take(&mut lock(&self.shared).rows)
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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

fn run(
    shared: &Mutex<Snapshots>,
    flags: &Flags,
    pid: u32,
    mut maps: MapHistory,
    stacks: &StackMap,
) {
    let fd = lock(shared).ring.as_fd().as_raw_fd();
    let mut maps_at = Instant::now();
    loop {
        if flags.exec.swap(false, Ordering::AcqRel) {
            maps = MapHistory::default();
            maps.refresh(pid);
            lock(shared).reset_modules(&maps);
        }
        // Read before draining: once set, the programs are gone and this drain is the last.
        let last = flags.stop.load(Ordering::Acquire);
        let drained = lock(shared).drain(pid, &mut maps, Some(stacks), BATCH);
        if drained == Drained::More {
            continue;
        }
        if last {
            return;
        }
        if maps_at.elapsed() >= MAPS_EVERY {
            maps_at = Instant::now();
            maps.refresh(pid);
            lock(shared).update_modules(&maps);
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
