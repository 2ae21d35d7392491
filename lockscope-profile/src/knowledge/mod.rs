//! knowledge: what lockscope knows of the runtimes and maps it meets, as pure functions of a
//! profile's stacks and fields (no kernel, no /proc, no files of the target): Go's futex wait
//! classes (`gowait`), CPython's GIL (`python`), and how the report names the maps' phases and
//! sections (`mapnames`). tracer-user's `tracee` re-exports these beside what it reads from
//! the live target.
mod gowait;
mod mapnames;
mod python;

pub use gowait::{classify as classify_go_wait, cut_at_scheduler, GoWait};
pub use mapnames::{function_name, heading, none_probed, not_traced, TRIE_SEMA_OFFSET};
pub use python::{fold_gil_timeouts, python_version, waits_for_gil};
