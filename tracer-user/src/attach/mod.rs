//! attach: loading the eBPF programs aimed at a process (or a set of them) and attaching
//! them (`load`), through whichever kernel hooks the kernel allows (`hooks`), with the kernel
//! side's rare diagnostics carried by aya-log (`klog`).
//!
//! Exposes the loaded `Tracer`, its filter and uprobes, and the log setup; it takes its probe
//! sites from `tracee` and knows nothing of collect or the commands.
mod hooks;
mod klog;
mod load;
#[cfg(test)]
mod object_tests;
mod oncpu;

pub(crate) use hooks::{HookChoice, Hooks};
pub(crate) use klog::init_from_env as init_log_from_env;
pub(crate) use load::{attach, Filter, ProbeLinks, Tracer, Uprobes};
