//! attach: load the eBPF object aimed at one process (or a set of them) and attach the futex
//! tracepoints.
use std::num::NonZeroU32;

use anyhow::{anyhow, Context, Result};
use aya::maps::HashMap as BpfHashMap;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope};
use aya::programs::{trace_point::TracePointLinkId, TracePoint, UProbe};
use aya::{Btf, Ebpf, EbpfLoader};
use tracer_common::{
    global, map, prog, PhaseCookie, TargetFlags, SNAPSHOT_RING_BYTES, SNAPSHOT_RING_OFF_BYTES,
    TGID_SET,
};

use super::hooks::{self, HookChoice, Hooks, TrampolineLink};
use super::klog::{self, KernelLog};
use crate::sys::has_tracepoint;
use crate::tracee::BundledMap;

#[path = "probe_sets.rs"]
mod probe_sets;
pub use probe_sets::ProbeLinks;

/// The eBPF object, built by build.rs through aya-build.
pub(super) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lockscope"));

/// Loaded programs and their links; dropping it detaches everything.
pub struct Tracer {
    pub ebpf: Ebpf,
    links: Vec<(&'static str, TracePointLinkId)>,
    trampolines: Vec<TrampolineLink>,
    uprobes: Vec<(&'static str, UProbeLinkId)>,
    /// Tracepoints this kernel lacks (older kernels have no futex2 syscalls).
    pub missing: Vec<&'static str>,
    /// Which kernel hooks carry the futex events.
    pub hooks: Hooks,
    /// The programs' rare diagnostics (`RUST_LOG`).
    log: KernelLog,
}

/// Which processes the kernel programs trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// One process: the cheapest filter.
    One(u32),
    /// The processes added with [`Tracer::add_target`] (none at first).
    Set,
}

/// Uprobes placed for one process, detached together when it goes.
#[derive(Default)]
pub struct Uprobes(Vec<(&'static str, UProbeLinkId)>);

impl Uprobes {
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Loads and attaches for `filter`'s processes through the hooks `choice` allows.
/// `snapshot_bytes` > 0 turns on DWARF mode: a stack snapshot of that many bytes for every wait
/// that slept.
pub fn attach(filter: Filter, snapshot_bytes: u32, choice: HookChoice) -> Result<Tracer> {
    let tgid = match filter {
        Filter::One(tgid) => tgid,
        Filter::Set => TGID_SET,
    };
    let level = klog::kernel_level();
    // Parsed once: the loader's relocations and the trampoline and scheduler loads all need
    // it, and a parse of vmlinux's BTF costs tens of milliseconds.
    let btf = Btf::from_sys_fs().ok();
    // The scheduler hooks find a woken task's tid by it (0, and no scheduler hooks, without).
    let pid_offset = crate::sys::vmlinux_btf()
        .and_then(|b| crate::sys::member_offset(&b, "task_struct", "pid"))
        .map_err(|e| format!("{e:#}"));
    let mut ebpf = EbpfLoader::new()
        .btf(btf.as_ref())
        .override_global(global::TARGET_TGID, &tgid, true)
        .override_global(
            global::TASK_PID_OFFSET,
            pid_offset.as_ref().unwrap_or(&0),
            true,
        )
        .override_global(global::SNAPSHOT_BYTES, &snapshot_bytes, true)
        .override_global(global::USER_MIN_ADDR, &user_min_addr(), true)
        .override_global(aya_log::LEVEL, &level, false)
        .map_max_entries(map::SNAPSHOTS, snapshot_ring_bytes(snapshot_bytes))
        .load(OBJECT)
        .context("loading the eBPF object")?;
    let log = KernelLog::open(&mut ebpf, level);
    // Load (verify) every hook program before attaching any: verification takes
    // milliseconds, and exits attached during that time would see calls whose entries nobody
    // recorded. Uprobe programs load when a process needs them (`load_uprobes`).
    let hooks = select(&mut ebpf, choice, btf.as_ref(), &pid_offset)?;
    if matches!(hooks, Hooks::Tracepoints { .. }) {
        for (name, _) in prog::ATTACH_ORDER {
            program(&mut ebpf, name)?
                .load()
                .with_context(|| format!("the kernel rejected program {name}"))?;
        }
    }
    let mut links = Vec::new();
    let mut missing = Vec::new();
    let trampolines = match hooks {
        Hooks::Trampolines => hooks::attach_trampolines(&mut ebpf)?,
        Hooks::Sched { .. } => hooks::attach_sched(&mut ebpf)?,
        Hooks::Tracepoints { .. } => Vec::new(),
    };
    let tracepoints = match hooks {
        Hooks::Tracepoints { .. } => &prog::ATTACH_ORDER[..],
        _ => &[],
    };
    for &(name, tracepoints) in tracepoints {
        let program = program(&mut ebpf, name)?;
        for &tp in tracepoints {
            if !has_tracepoint("syscalls", tp) {
                missing.push(tp);
                continue;
            }
            let link = program
                .attach("syscalls", tp)
                .with_context(|| format!("attaching {name} to syscalls:{tp}"))?;
            links.push((name, link));
        }
    }
    Ok(Tracer {
        ebpf,
        links,
        trampolines,
        uprobes: Vec::new(),
        missing,
        hooks,
        log,
    })
}

/// The snapshot ring's size: full only when snapshots are on.
fn snapshot_ring_bytes(snapshot_bytes: u32) -> u32 {
    match snapshot_bytes {
        0 => SNAPSHOT_RING_OFF_BYTES as u32,
        _ => SNAPSHOT_RING_BYTES as u32,
    }
}

/// Whether `auto` picks the scheduler hooks when trampolines do not load (the root tests of
/// pairing, holder blame, classify, stacks, record, DWARF and Go pass on both paths).
const AUTO_PICKS_SCHED: bool = true;

/// Loads the programs of the hooks `choice` asks for (the load is the feature probe).
fn select(
    ebpf: &mut Ebpf,
    choice: HookChoice,
    btf: Option<&Btf>,
    pid_offset: &std::result::Result<u32, String>,
) -> Result<Hooks> {
    match choice {
        HookChoice::Syscalls => Ok(Hooks::Tracepoints {
            why: "--hooks syscalls".into(),
        }),
        HookChoice::Sched => {
            hooks::load_sched(ebpf, btf, pid_offset).context(
                "--hooks sched: the scheduler programs did not load; use --hooks syscalls",
            )?;
            Ok(Hooks::Sched {
                why: "--hooks sched".into(),
            })
        }
        HookChoice::Auto => {
            let why = match Hooks::choose(hooks::load_trampolines(ebpf, btf)) {
                Hooks::Tracepoints { why } => why,
                chosen => return Ok(chosen),
            };
            if !AUTO_PICKS_SCHED {
                return Ok(Hooks::Tracepoints { why });
            }
            Ok(match hooks::load_sched(ebpf, btf, pid_offset) {
                Ok(()) => Hooks::Sched { why },
                Err(e) => Hooks::Tracepoints {
                    why: format!("{why}; scheduler hooks unavailable: {e:#}"),
                },
            })
        }
    }
}

impl Tracer {
    /// Lets waits read the phase clocks: called once phase or goroutine probes are attached
    /// (until then no lock word belongs to a map, and waits skip the lookups).
    pub fn enable_phase_clocks(&mut self) -> Result<()> {
        let mut on: aya::maps::Array<_, u32> = aya::maps::Array::try_from(
            self.ebpf
                .map_mut(tracer_common::map::PHASES_ON)
                .context("PHASES_ON map")?,
        )?;
        on.set(0, 1, 0).context("switching phase clocks on")
    }
}

fn uprobe<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut UProbe> {
    Ok(ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("eBPF object has no program {name}"))?
        .try_into()?)
}

/// Loads (verifies) the uprobe programs `names` not loaded yet, all before any is attached:
/// an entry probe must never fire without its exit probe in place to end its call. Each
/// verification costs milliseconds, so a process gets only the programs it needs.
fn load_uprobes(ebpf: &mut Ebpf, names: impl IntoIterator<Item = &'static str>) -> Result<()> {
    for name in names {
        let program = uprobe(ebpf, name)?;
        if program.fd().is_err() {
            program
                .load()
                .with_context(|| format!("the kernel rejected program {name}"))?;
        }
    }
    Ok(())
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut TracePoint> {
    Ok(ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("eBPF object has no program {name}"))?
        .try_into()?)
}

impl Tracer {
    /// Probes the `sync` semaphore acquires of a Go executable: each entry, and each return
    /// instruction (never uretprobes: Go moves goroutine stacks). Returns the probes attached,
    /// which the caller keeps ([`Tracer::keep_uprobes`]) or releases.
    pub fn attach_go(
        &mut self,
        pid: u32,
        exe: &std::path::Path,
        plan: &crate::tracee::GoPlan,
    ) -> Result<Uprobes> {
        let scope = UProbeScope::OneProcess(NonZeroU32::new(pid).context("pid 0")?);
        // Before any probe fires: where a traced park's frame must return to.
        let mut slots: aya::maps::Array<_, u64> = aya::maps::Array::try_from(
            self.ebpf
                .map_mut(tracer_common::map::GO_CALLERS)
                .context("GO_CALLERS map")?,
        )?;
        for (i, a) in plan.callers.iter().enumerate() {
            slots.set(i as u32, a, 0)?;
        }
        let sites: Vec<_> = plan
            .points
            .iter()
            .flat_map(|p| {
                let (entry, cookie) = p.probe.program();
                std::iter::once((p, entry, cookie, p.entry)).chain(
                    p.returns
                        .iter()
                        .map(move |&r| (p, prog::GO_SEMA_EXIT, None, r)),
                )
            })
            .collect();
        load_uprobes(&mut self.ebpf, sites.iter().map(|s| s.1))?;
        let mut placed = Uprobes::default();
        for (p, name, cookie, offset) in sites {
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(offset),
                cookie,
            };
            let link = uprobe(&mut self.ebpf, name)?
                .attach(point, exe, scope)
                .with_context(|| format!("probing {} in {}", p.function, exe.display()))?;
            placed.0.push((name, link));
        }
        Ok(placed)
    }

    /// Keeps `probes` until the process goes ([`Tracer::take_uprobes`]) or the tracer is dropped.
    pub fn keep_uprobes(&mut self, probes: Uprobes) {
        self.uprobes.extend(probes.0);
    }

    /// Probes every instantiation of the bundled map's phase functions in `pid`, and Go's
    /// `sync.Map`'s (each kind counted in its own slot). Returns how
    /// many probes were attached.
    pub fn attach_phases(&mut self, pid: u32, map: &BundledMap) -> Result<usize> {
        let scope = UProbeScope::OneProcess(NonZeroU32::new(pid).context("pid 0")?);
        let mut all = Vec::new();
        for (kind, phase, offset) in map.sites() {
            let go = map.go_returns.get(&offset);
            let std = map.std.as_ref().filter(|_| !kind.is_bundled());
            let cookie = PhaseCookie {
                phase,
                slot: kind.slot(),
                dirty_at: std.map_or(0, |s| s.dirty_at),
                // Both Go maps hold their sync.Mutex first: the semaphore is tied to the map
                // at its first phase run (an unlockSlow probe did this once, at 25x the cost
                // on contended Go maps).
                lock_at: if go.is_some() || std.is_some() {
                    crate::tracee::SEMA_OFFSET
                } else {
                    0
                },
            };
            let mut sites = vec![(
                if go.is_some() {
                    prog::GO_PHASE_ENTER
                } else {
                    prog::PHASE_ENTER
                },
                offset,
            )];
            if phase.probes_return() {
                match go {
                    // Go: each return instruction, never a uretprobe.
                    Some(rets) => sites.extend(rets.iter().map(|&r| (prog::GO_PHASE_EXIT, r))),
                    None => sites.push((prog::PHASE_EXIT, offset)),
                }
            }
            // Returns before the entry: a call that enters while the probes go in then always
            // has its return seen (a hot phase missed a few returns the other way round).
            sites.rotate_left(1);
            all.extend(
                sites
                    .into_iter()
                    .map(|(name, at)| (kind, phase, cookie, name, at)),
            );
        }
        load_uprobes(&mut self.ebpf, all.iter().map(|s| s.3))?;
        for (kind, phase, cookie, name, at) in all {
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(at),
                cookie: Some(cookie.encode()),
            };
            let link = uprobe(&mut self.ebpf, name)?
                .attach(point, &map.exe, scope)
                .with_context(|| {
                    format!("probing {} in {}", kind.function(phase), map.exe.display())
                })?;
            self.uprobes.push((name, link));
        }
        self.enable_phase_clocks()?;
        Ok(self.uprobes.len())
    }

    /// Set mode: traces process `tgid` from now on, with stack copies as `flags` say
    /// (`tracer_common::TARGET_*`; copies only if the object was loaded with a snapshot size).
    /// Also changes the flags of a process already traced (a followed child, once seen).
    pub fn add_target(&mut self, tgid: u32, flags: TargetFlags) -> Result<()> {
        let mut set: BpfHashMap<_, u32, TargetFlags> =
            BpfHashMap::try_from(self.ebpf.map_mut(map::TARGETS).context("TARGETS map")?)?;
        set.insert(tgid, flags, 0).with_context(|| {
            format!(
                "adding pid {tgid} to the traced set (it holds {} at most)",
                tracer_common::MAX_TARGETS
            )
        })
    }

    /// Set mode: stops tracing process `tgid` (no error if it was not traced).
    pub fn remove_target(&mut self, tgid: u32) -> Result<()> {
        let mut set: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(self.ebpf.map_mut(map::TARGETS).context("TARGETS map")?)?;
        match set.remove(&tgid) {
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            other => Ok(other?),
        }
    }

    /// Set mode: processes forked by traced processes are traced too (added by the kernel as
    /// they are forked). Stops with [`Tracer::detach`].
    pub fn follow_forks(&mut self) -> Result<()> {
        let program = program(&mut self.ebpf, prog::FOLLOW_FORK)?;
        program
            .load()
            .with_context(|| format!("the kernel rejected program {}", prog::FOLLOW_FORK))?;
        let link = program
            .attach("task", "task_newtask")
            .context("attaching to task:task_newtask (to follow forks)")?;
        self.links.push((prog::FOLLOW_FORK, link));
        Ok(())
    }

    /// Set mode: the processes traced now.
    pub fn targets(&self) -> Result<Vec<u32>> {
        let set: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(self.ebpf.map(map::TARGETS).context("TARGETS map")?)?;
        Ok(set.keys().filter_map(|k| k.ok()).collect())
    }

    /// The uprobes placed since the last call: one process's, to detach when it goes.
    pub fn take_uprobes(&mut self) -> Uprobes {
        Uprobes(std::mem::take(&mut self.uprobes))
    }

    /// Detaches one process's uprobes.
    pub fn detach_uprobes(&mut self, probes: Uprobes) -> Result<()> {
        for (name, link) in probes.0 {
            uprobe(&mut self.ebpf, name)?.detach(link)?;
        }
        Ok(())
    }

    /// Stops the futex event flow so the maps can be read as one consistent snapshot. Phase
    /// uprobes stay until the tracer is dropped: each takes ~90 ms to detach (an RCU grace
    /// period), their totals were already snapshotted at the stop instant, and the report
    /// should not wait on them.
    /// Prints the programs' diagnostics logged since the last call (`RUST_LOG`).
    pub fn flush_logs(&mut self) {
        self.log.flush();
    }

    pub fn detach(&mut self) -> Result<()> {
        for (name, link) in self.links.drain(..) {
            program(&mut self.ebpf, name)?.detach(link)?;
        }
        hooks::detach_trampolines(&mut self.ebpf, std::mem::take(&mut self.trampolines))
    }
}

/// The lowest user address that can be mapped (`vm.mmap_min_addr`); 0 (no floor) when it
/// cannot be read.
fn user_min_addr() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/mmap_min_addr")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}
