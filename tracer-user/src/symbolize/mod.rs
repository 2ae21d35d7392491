//! symbolize: raw addresses → module + file offset (+ build id) → functions, file and line
//! (`stacks`), and where each module's names come from (`symsource`): its own tables, a
//! separate debug file by build id or debuglink (`debuginfo`), a debuginfod server
//! (`debuginfod`), or a stripped Go executable's `.gopclntab` (`gopclntab`); and the lock
//! wrappers told from their code on disk (`wrappers`).
//!
//! Exposes the stack symbolizer and the Go PC table; it reads the profile's frame type and the
//! host facts, and nothing above.
mod callees;
mod debuginfo;
mod debuginfod;
mod gobase;
mod gopclntab;
mod stacks;
mod symsource;
mod wrappers;

pub(crate) use gopclntab::{GoFunc, GoTable};
pub(crate) use stacks::{frames_with_leaf, Addr, Cut, SharedNames, StackSymbolizer};
pub(crate) use wrappers::Forwarders;
