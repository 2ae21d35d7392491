//! hooks: which kernel hooks carry the futex events. BPF trampolines (fentry/fexit) on the
//! kernel's futex functions cost untraced processes nothing; the scheduler tracepoints
//! (`sched_switch`, `sched_waking`) cost them one lookup per context switch but see only waits
//! that slept; syscall tracepoints set the syscall-work flag on every task of the host while
//! attached, so every syscall on the machine pays a little. lockscope loads the trampolines
//! where the kernel allows them (the load is the feature probe), then the scheduler hooks,
//! then the tracepoints, saying why.
use anyhow::{anyhow, Result};
use aya::programs::{
    fentry::FEntryLinkId, fexit::FExitLinkId, tp_btf::BtfTracePointLinkId, BtfTracePoint, FEntry,
    FExit,
};
use aya::{Btf, Ebpf};
use tracer_common::prog;

/// `--hooks`: which kernel hooks to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookChoice {
    /// BPF trampolines where they load, else the scheduler hooks, else the syscall
    /// tracepoints.
    Auto,
    /// The scheduler hooks.
    Sched,
    /// The syscall tracepoints: also EAGAIN waits, timeouts and wakes that woke nobody.
    Syscalls,
}

/// The hooks in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hooks {
    /// BPF trampolines on the kernel's futex functions.
    Trampolines,
    /// `sched_switch` and `sched_waking`; `why` the trampolines were not used.
    Sched { why: String },
    /// Syscall tracepoints; `why` neither of the others was used.
    Tracepoints { why: String },
}

impl Hooks {
    /// The choice, from the trampoline probe's outcome.
    pub fn choose(probe: Result<()>) -> Hooks {
        match probe {
            Ok(()) => Hooks::Trampolines,
            Err(e) => Hooks::Tracepoints {
                why: format!(
                    "BPF trampolines unavailable: {}",
                    one_line(&format!("{e:#}"))
                ),
            },
        }
    }

    /// One line for the header.
    pub fn describe(&self) -> String {
        match self {
            Hooks::Trampolines => {
                "kernel hooks: BPF trampolines on the futex functions (no cost to other processes)"
                    .into()
            }
            Hooks::Sched { why } => format!(
                "kernel hooks: scheduler tracepoints sched_switch + sched_waking ({why}); no \
                 cost to other processes' syscalls; not counted on this path: EAGAIN waits, \
                 waits woken or timed out before they slept, wakes that woke nobody (--hooks \
                 syscalls counts them); a timed wait woken from outside a futex call counts as a timeout"
            ),
            Hooks::Tracepoints { why } => format!(
                "kernel hooks: syscall tracepoints ({why}); while tracing, every syscall on \
                 this host pays a little (see BENCHMARKS.md)"
            ),
        }
    }
}

/// Loads the scheduler programs (`tp_btf`): the feature probe for [`Hooks::Sched`]. They need
/// `task_struct.pid`'s offset (`pid_offset`, from the kernel's BTF) to know a woken task.
pub fn load_sched(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    pid_offset: &std::result::Result<u32, String>,
) -> Result<()> {
    let btf = btf.ok_or_else(no_btf)?;
    if let Err(e) = pid_offset {
        return Err(anyhow!(
            "task_struct.pid's offset not found in the kernel's BTF: {e}"
        ));
    }
    for (name, event) in prog::SCHED {
        btf_tp(ebpf, name)?
            .load(event, btf)
            .map_err(|e| anyhow!("tp_btf on {event}: {}", one_line(&e.to_string())))?;
    }
    Ok(())
}

/// Attaches the loaded scheduler programs: the switch (which ends waits) before the wake.
pub fn attach_sched(ebpf: &mut Ebpf) -> Result<Vec<TrampolineLink>> {
    let mut links = Vec::new();
    for (name, event) in prog::SCHED {
        let id = btf_tp(ebpf, name)?
            .attach()
            .map_err(|e| anyhow!("attaching tp_btf on {event}: {e}"))?;
        links.push(TrampolineLink::Sched(name, id));
    }
    Ok(links)
}

/// Why the BTF-based hooks cannot load: the kernel exposes no BTF.
fn no_btf() -> anyhow::Error {
    let e = Btf::from_sys_fs().err();
    anyhow!(
        "no kernel BTF ({})",
        e.map_or_else(|| "not readable".to_string(), |e| e.to_string())
    )
}

fn btf_tp<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut BtfTracePoint> {
    Ok(ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("eBPF object has no program {name}"))?
        .try_into()?)
}

/// The first line of an error chain, without the verifier log aya appends.
fn one_line(s: &str) -> String {
    let first = s.lines().next().unwrap_or("").trim();
    let short = first.split(". Verifier output").next().unwrap_or(first);
    crate::profile::term_safe(short).into_owned()
}

/// Loads every trampoline program: the feature probe. An error (this kernel refuses BPF
/// trampolines, or has no BTF) means the tracepoints are used.
pub fn load_trampolines(ebpf: &mut Ebpf, btf: Option<&Btf>) -> Result<()> {
    let btf = btf.ok_or_else(no_btf)?;
    for (entry, exit, function) in prog::TRAMPOLINES {
        fentry(ebpf, entry)?
            .load(function, btf)
            .map_err(|e| anyhow!("fentry on {function}: {e}"))?;
        fexit(ebpf, exit)?
            .load(function, btf)
            .map_err(|e| anyhow!("fexit on {function}: {e}"))?;
    }
    Ok(())
}

/// A BPF-link-based hook (trampoline or `tp_btf`), kept to detach it.
pub enum TrampolineLink {
    Entry(&'static str, FEntryLinkId),
    Exit(&'static str, FExitLinkId),
    Sched(&'static str, BtfTracePointLinkId),
}

/// Attaches the loaded trampolines: every exit before any entry, so each entry seen has its
/// exit seen too.
pub fn attach_trampolines(ebpf: &mut Ebpf) -> Result<Vec<TrampolineLink>> {
    let mut links = Vec::new();
    for (_, exit, function) in prog::TRAMPOLINES {
        let id = fexit(ebpf, exit)?
            .attach()
            .map_err(|e| anyhow!("attaching fexit on {function}: {e}"))?;
        links.push(TrampolineLink::Exit(exit, id));
    }
    for (entry, _, function) in prog::TRAMPOLINES {
        let id = fentry(ebpf, entry)?
            .attach()
            .map_err(|e| anyhow!("attaching fentry on {function}: {e}"))?;
        links.push(TrampolineLink::Entry(entry, id));
    }
    Ok(links)
}

/// Detaches trampoline links.
pub fn detach_trampolines(ebpf: &mut Ebpf, links: Vec<TrampolineLink>) -> Result<()> {
    for link in links {
        match link {
            TrampolineLink::Entry(name, id) => fentry(ebpf, name)?.detach(id)?,
            TrampolineLink::Exit(name, id) => fexit(ebpf, name)?.detach(id)?,
            TrampolineLink::Sched(name, id) => btf_tp(ebpf, name)?.detach(id)?,
        }
    }
    Ok(())
}

fn fentry<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut FEntry> {
    Ok(ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("eBPF object has no program {name}"))?
        .try_into()?)
}

fn fexit<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut FExit> {
    Ok(ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("eBPF object has no program {name}"))?
        .try_into()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_probe_chooses_the_tracepoints_and_says_why_in_one_line() {
        let refused = anyhow!(
            "fentry on do_futex: the BPF_PROG_LOAD syscall returned Permission denied (os \
             error 13). Verifier output: \n0: R1=ctx()\nprocessed 0 insns"
        );
        let h = Hooks::choose(Err(refused));
        let Hooks::Tracepoints { why } = &h else {
            panic!("{h:?}");
        };
        assert_eq!(
            why,
            "BPF trampolines unavailable: fentry on do_futex: the BPF_PROG_LOAD syscall returned Permission denied (os \
             error 13)"
        );
        let line = h.describe();
        assert!(
            !line.contains('\n') && line.contains("syscall tracepoints"),
            "{line}"
        );
        assert!(line.contains("every syscall on this host"), "{line}");
    }

    #[test]
    fn a_probe_that_loads_chooses_the_trampolines() {
        let h = Hooks::choose(Ok(()));
        assert_eq!(h, Hooks::Trampolines);
        assert!(h.describe().contains("no cost to other processes"));
    }

    #[test]
    fn no_kernel_btf_is_a_reason_too() {
        let h = Hooks::choose(Err(anyhow!("no kernel BTF (No such file or directory)")));
        assert!(h.describe().contains("no kernel BTF"), "{h:?}");
    }
}
