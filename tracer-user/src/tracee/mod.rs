//! tracee: what lockscope knows of the traced process's runtimes and maps. Go executables
//! (`golang`: recognising them, naming their futex waits; `goprobes`: where the goroutine
//! probes go, `goready` their ready side; `probesafety`: that each lands on an instruction
//! of the function it names),
//! the bundled map and Go's `sync.Map` inside it (`bundled`, `stdmap`, and the hash trie's
//! nodes: `trie`), what a futex word is (`locks`: a static, the heap, a stack), tokio's
//! async lock waits (`tokioprobes`; `tokioinline`: `Acquire::poll`'s DWARF inline sites), and DashMap's shard locks (`dashprobes`: where their slow
//! paths are probed; `dashshard`: which shard a lock is). The pure naming pieces (Go wait classes, CPython's GIL,
//! the maps' section names) live in `lockscope_profile::knowledge` and are re-exported here.
//!
//! Exposes those findings as plain data for attach and collect; it loads nothing into the
//! kernel and knows nothing of the commands.
mod bundled;
mod dashprobes;
mod dashshard;
mod golang;
mod goprobes;
mod goready;
mod locks;
mod mapsample;
mod probesafety;
mod stdmap;
mod tokioinline;
mod tokioprobes;
mod trie;

pub(crate) use bundled::{find_probed, read_counters, zero_counters, BundledMap};
pub(crate) use dashprobes::{dashmap_hints, HintPoints};
pub(crate) use dashshard::dash_shard;
pub(crate) use golang::{go_version, GoUprobes};
pub(crate) use goprobes::{goroutine_probes, GoPlan};
pub(crate) use locks::describe as describe_lock;
pub(crate) use lockscope_profile::knowledge::{
    classify_go_wait, cut_at_scheduler, fold_gil_timeouts, none_probed, GoWait,
};
pub(crate) use mapsample::{classify as classify_map_sample, InMap};
pub(crate) use stdmap::SEMA_OFFSET;
pub(crate) use tokioprobes::{tokio_probes, PollAt, TokioPoints, TokioProbes};
pub(crate) use trie::node_depths;
