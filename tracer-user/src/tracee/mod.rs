//! tracee: what lockscope knows of the traced process's runtimes and maps. Go executables
//! (`golang`: recognising them, naming their futex waits; `goprobes`: where the goroutine
//! probes go, `goready` their ready side; `probesafety`: that each lands on an instruction
//! of the function it names),
//! the bundled map and Go's `sync.Map` inside it (`bundled`, `stdmap`, and the hash trie's
//! nodes: `trie`), what a futex word is (`locks`: a static, the heap, a stack), and CPython's
//! GIL (`python`), and tokio's async lock waits (`tokioprobes`).
//!
//! Exposes those findings as plain data for attach, collect and analyze; it loads nothing
//! into the kernel and knows nothing of the commands.
mod bundled;
mod golang;
mod goprobes;
mod goready;
mod locks;
mod mapsample;
mod probesafety;
mod python;
mod stdmap;
mod tokioprobes;
mod trie;

pub(crate) use bundled::{find_probed, read_counters, zero_counters, BundledMap};
pub(crate) use golang::{
    classify as classify_go_wait, cut_at_scheduler, go_version, GoUprobes, GoWait,
};
pub(crate) use goprobes::{goroutine_probes, GoPlan};
pub(crate) use locks::describe as describe_lock;
pub(crate) use mapsample::{classify as classify_map_sample, InMap};
pub(crate) use python::{fold_gil_timeouts, python_version, waits_for_gil};
pub(crate) use stdmap::{function_name, heading, none_probed, not_traced, SEMA_OFFSET};
pub(crate) use tokioprobes::{tokio_probes, TokioProbes};
pub(crate) use trie::{node_depths, TRIE_SEMA_OFFSET};
