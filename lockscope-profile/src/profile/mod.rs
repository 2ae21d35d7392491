//! profile: the data model and its versioned file: everything needed to print the report again
//! without the process. Beside it, the data the profile stores (`holder` blame, `deadlock`s,
//! the `MapKind`), the frame helpers every stage shares (`frames`: lock internals, the lock
//! site), terminal-safe strings (`sanitize`), safe `-o` writing (`output`) and `units`.
//!
//! Exposes the model's types, `load`, and those helpers; it names no other folder.
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

mod counters;
mod deadlock;
mod fastpath;
mod fields;
mod frames;
mod holder;
mod map_kind;
mod output;
mod process;
mod sanitize;
mod shard;
mod units;

pub use counters::{Counters, Losses};
pub use deadlock::{deadlocks, Blocked};
pub use fastpath::{FastPath, NOT_SAMPLED as FAST_PATH_NOT_SAMPLED};
pub use fields::{FutexOp, InlineSites, ProbeWindows, Region, TokioTarget, Unwinder};
pub use frames::{blamed_function, function_names, is_known_wrapper, is_lock_code, LockWrappers};
pub use holder::{Blamed, HolderPhase};
pub use map_kind::MapKind;
pub use output::{Limited, PendingOutput};
pub use process::Process;
pub use sanitize::{for_terminal, term_safe};
pub use shard::LockShard;
/// The bundled map's own counters; a profile stores each under its `name()`.
pub use syncmap::stats::Event as MapCounter;
pub use units::{fmt_count, fmt_ns, parse_duration, percent};

pub const FORMAT: &str = "lockscope-profile";
/// Bump on any change an older reader would misread.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub format: String,
    pub version: u32,
    pub meta: Meta,
    pub counters: Counters,
    pub losses: Losses,
    /// Files the stacks' frames live in.
    pub modules: Vec<Module>,
    /// Distinct symbolized stacks; rows refer to them by index.
    pub stacks: Vec<Stack>,
    pub waits: Vec<WaitRow>,
    pub wakes: Vec<WakeRow>,
    /// Thread names by tid, as seen while recording.
    pub threads: BTreeMap<u32, String>,
    /// The bundled map, when the target uses it: its phases as traced and its own counters.
    #[serde(default)]
    pub bundled: Option<Bundled>,
    /// What each futex word waited on is, where it could be told.
    #[serde(default)]
    pub locks: Vec<LockInfo>,
    /// Go targets: the toolchain, and the idle-thread parking left out of the rows.
    #[serde(default)]
    pub go: Option<GoTarget>,
    /// tokio targets: the version, and whether its async lock waits were probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokio: Option<TokioTarget>,
    /// Threads asleep in a futex wait from before attach to the end (`--pid` only).
    #[serde(default)]
    pub blocked: Vec<self::deadlock::Blocked>,
    /// Functions counted as lock code beyond the built-in list: wrappers that only forward to
    /// a lock primitive (read from their code on disk) and `--lock-wrapper` matches.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub lock_wrappers: BTreeSet<String>,
    /// The processes `record --follow-forks` followed: rows with a `pid` are theirs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<Process>,
}

/// A Go target's futex waits are OS threads. Idle ones parking in the scheduler are not lock
/// contention; they are summed here rather than listed as rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoTarget {
    pub version: String,
    /// Uprobes timing goroutines blocked in `sync` (0: futex waits only).
    #[serde(default)]
    pub goroutine_probes: usize,
    pub idle_waits: u64,
    pub idle_ns: u64,
    /// `--go-sample`: the goroutine probes were attached part of the time, and the goroutine
    /// rows are estimates scaled up from what they saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled: Option<GoSampled>,
    /// `--probe-windows`: the goroutine probes were attached part of the time, and the
    /// goroutine rows are estimates weighted up from what they saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<ProbeWindows>,
}

/// How the goroutine waits were sampled (`record --go-sample`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoSampled {
    /// The share of waits followed, chosen at random where each began.
    pub percent: u8,
}

impl GoSampled {
    /// What the goroutine rows were multiplied by.
    pub fn scale(&self) -> f64 {
        100.0 / f64::from(self.percent.max(1))
    }
}

/// A futex word, placed in the target's memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub uaddr: u64,
    /// The followed process it is in (`None`: the recorded process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The kind of memory it is in: `static`, `heap`, `anonymous memory (...)`, ...
    pub region: Region,
    /// The file it lives in, for statics.
    pub module: Option<String>,
    /// The static's symbol (`+0x..` when inside it).
    pub symbol: Option<String>,
    /// Its shard, when it is a sharded map's shard lock (DashMap's, named by a lock hint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<LockShard>,
}

impl LockInfo {
    /// One phrase: `static lockdemo::SHARED_LOCK (lockdemo)`, `heap`.
    pub fn describe(&self) -> String {
        if let Some(s) = &self.shard {
            return s.describe(self.uaddr);
        }
        let module = self
            .module
            .as_deref()
            .map(|m| m.rsplit('/').next().unwrap_or(m));
        match (&self.symbol, module) {
            (Some(s), Some(m)) => format!("static {s} ({m})"),
            (None, Some(m)) if self.region == Region::Static => format!("static data in {m}"),
            _ => self.region.label().to_string(),
        }
    }
}

impl Profile {
    /// How a frame no symbol named is shown in every view: `module+0xoffset` (the module's
    /// file name and the file offset, stable across runs), or the bare address outside files.
    pub fn unnamed_frame(&self, frame: &Frame) -> String {
        let module = frame
            .module
            .and_then(|m| self.modules.get(m))
            .map(|m| m.path.rsplit('/').next().unwrap_or(&m.path));
        match (module, frame.offset) {
            (Some(m), Some(o)) => format!("{m}+{o:#x}"),
            _ => format!("{:#x}", frame.addr),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundled {
    /// Which map this explains: the bundled map, or Go's own `sync.Map` (profiles before
    /// there was a choice are the bundled map's).
    #[serde(default, skip_serializing_if = "MapKind::is_bundled")]
    pub kind: MapKind,
    pub exe: String,
    /// Uprobes attached to phase functions.
    pub probes: usize,
    /// The phase functions probed (`--phase-probes`).
    #[serde(default)]
    pub probed: Vec<String>,
    /// Traced phase totals, by phase function name.
    pub phases: Vec<PhaseRow>,
    /// The map's own counters over the checked window (end minus start), if readable.
    pub counters: Option<BTreeMap<String, u64>>,
    /// False when the target exited first and the window ends at the last periodic read.
    pub counters_exact: bool,
    /// Traced counts against the map's own counters, over the same window.
    pub checks: Vec<Check>,
    /// Go's `sync.Map`: the Go release it came with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go_version: Option<String>,
    /// The hash-trie `sync.Map` (Go 1.24+): the depth of each node goroutines waited on, by
    /// the semaphore address its rows keep, as read from the live target (0: the root).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trie_nodes: Vec<TrieNode>,
    /// Go's `sync.Map`: the lock-free read share estimated from on-CPU samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_path: Option<FastPath>,
}

/// A hash-trie node goroutines waited on: its mutex's semaphore and its depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrieNode {
    pub sema: u64,
    pub depth: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub what: String,
    pub traced: u64,
    pub counted: u64,
}

impl Check {
    /// Relative difference, in percent of the counted value.
    pub fn error_percent(&self) -> f64 {
        if self.counted == 0 {
            if self.traced == 0 {
                0.0
            } else {
                100.0
            }
        } else {
            (self.traced as f64 - self.counted as f64).abs() * 100.0 / self.counted as f64
        }
    }
}

impl Bundled {
    /// One of the map's own counters; `None` without counters or without that one.
    pub fn counter(&self, c: MapCounter) -> Option<u64> {
        self.counters.as_ref()?.get(c.name()).copied()
    }

    /// Share of loads served from the snapshot without locking, in percent, from the map's
    /// own counters (no per-read probe: a uprobe costs ~100x a fast read).
    pub fn fast_read_percent(&self) -> Option<f64> {
        let fast = self.counter(MapCounter::FastRead)?;
        let slow = self.counter(MapCounter::SlowLoad)?;
        (fast + slow > 0).then(|| fast as f64 * 100.0 / (fast + slow) as f64)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseRow {
    /// Stored by its function's name (`promote`, `rebuild_dirty`, `miss_locked`).
    pub phase: HolderPhase,
    pub calls: u64,
    pub returns: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    /// Entries copied, for rebuilds.
    pub items: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub pid: u32,
    pub comm: String,
    pub exe: Option<String>,
    pub start_unix_ms: u64,
    pub duration_ns: u64,
    /// From lockscope's start to the tracepoints being live.
    pub attach_ns: u64,
    /// Time spent symbolizing every stack after the recording.
    #[serde(default)]
    pub symbolize_ns: u64,
    pub stop: StopReason,
    /// `fp`, `fp+cfi` or `dwarf`.
    pub unwind: Unwinder,
    /// Why, when `--unwind auto` chose: e.g. "auto: lockdemo has no frame pointers".
    #[serde(default)]
    pub unwind_note: Option<String>,
    /// Which kernel hooks carried the futex events, and what that path does not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<String>,
    /// Per module, frames no symbol source named, and what would name them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unnamed: Vec<Unnamed>,
    pub kernel: String,
    pub lockscope_version: String,
}

/// Frames of one module that stayed unnamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unnamed {
    pub module: String,
    pub frames: u64,
    /// What would name them: "install memcached-dbgsym (or set DEBUGINFOD_URLS)".
    pub hint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    Duration,
    Interrupted,
    TargetExited,
}

impl StopReason {
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::Duration => "duration reached",
            StopReason::Interrupted => "interrupted",
            StopReason::TargetExited => "target exited",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    pub path: String,
    /// GNU build id, hex.
    pub build_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stack {
    /// Innermost first.
    pub frames: Vec<Frame>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// The raw address the kernel reported.
    pub addr: u64,
    /// True for a return address (every frame but the interrupted instruction): it points
    /// after the call, so it is looked up one byte earlier.
    pub ret: bool,
    pub module: Option<usize>,
    /// Offset of `addr` in the module file.
    pub offset: Option<u64>,
    /// Functions at this address, innermost (inlined) first; empty when unresolved.
    pub syms: Vec<Sym>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sym {
    pub name: String,
    pub file: Option<String>,
    pub line: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitRow {
    /// Index into `stacks`; `None` when the stack was lost.
    pub stack: Option<usize>,
    /// The last waker of this futex before the wait ended, if seen.
    pub waker_stack: Option<usize>,
    pub uaddr: u64,
    pub tid: u32,
    /// The followed process this row is from (`None`: the recorded process, `meta.pid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub op: FutexOp,
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    pub interrupted: u64,
    pub timeouts: u64,
    pub timeout_ns: u64,
    pub errors: u64,
    /// Profiles recorded before waits were split: the one phase (`rebuild_dirty`, ...) the
    /// whole wait time of the row was blamed on. Read, and written back only when it was
    /// read (so a re-rendered old profile keeps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_phase: Option<String>,
    /// Of this row's wait time, what each holder phase ran while it waited (bundled map).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<Blamed>,
    /// Of `count`, waits whose whole time went to holder phases.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub covered_waits: u64,
    /// Log2 histogram of wait ns (see `tracer_common::HIST_BUCKETS`).
    pub hist: Vec<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WakeRow {
    pub stack: Option<usize>,
    pub uaddr: u64,
    pub tid: u32,
    /// The followed process this row is from (`None`: the recorded process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub op: FutexOp,
    pub calls: u64,
    pub woken: u64,
    pub empty: u64,
}

mod read;
pub use read::{load, parse};

#[cfg(any(test, feature = "test-support"))]
pub mod testing;
#[cfg(test)]
pub mod tests;
