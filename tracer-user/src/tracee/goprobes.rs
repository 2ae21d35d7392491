//! goprobes: where the goroutine probes go in a Go executable. A goroutine blocked on a
//! `sync.Mutex` or `RWMutex` parks inside a `sync` semaphore acquire, with no futex call. The
//! probes sit at the acquire's entry and returns, where the semaphore code parks a goroutine
//! (not every park in the scheduler), and where the scheduler readies one. The fast paths (no
//! semaphore at all) hit no probe, nor do other goroutines' parks (channels, timers, network).
//! Where the semaphore code's park is not found (another Go version's code), every park is
//! probed instead, at a higher cost.
//!
//! The ready side (`goready`) is `runtime.readyWithTime`'s hand-over to `goready`, where only
//! semaphore and `sync.Cond` waiters are readied; `runtime.ready` (every goroutine) only where
//! that is not found.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use object::{Object, ObjectSection, ObjectSymbol};
use tracer_common::{prog, GoFrame, GoRef, GoStack, GO_CALLER_SLOTS};

use super::golang::GoUprobes;
use super::goready::ready_points;
use crate::sys::{call_offsets, frame_size, return_offsets, stores_rax_at};

/// The `sync` semaphore acquires a goroutine blocks in: Mutex and RWMutex slow paths (the
/// RWMutex ones are separate functions from Go 1.20; from Go 1.24 `sync.Mutex` wraps
/// `internal/sync.Mutex`, whose slow path has its own acquire).
pub const SEMA_FUNCTIONS: [&str; 4] = [
    "sync.runtime_SemacquireMutex",
    "internal/sync.runtime_SemacquireMutex",
    "sync.runtime_SemacquireRWMutexR",
    "sync.runtime_SemacquireRWMutex",
];
/// The semaphore code that parks the goroutine (it calls `gopark`).
const PARKER: &str = "runtime.semacquire1";
const GOPARK: [&str; 2] = ["runtime.gopark", "runtime.goparkunlock"];
/// The semaphore code's slow path: the lock at the top of its queue-and-park loop (just after
/// Go's block profile starts its clock), and its last call, parked or not.
const LOOP_LOCK: [&str; 2] = ["runtime.lock2", "runtime.lockWithRank"];
const RELEASE: &str = "runtime.releaseSudog";
/// Length of a direct `call rel32`: the return address follows it.
const CALL_LEN: u64 = 5;
/// Every goroutine parked: the fallback for the semaphore code's own park.
const PARK_ANY: &str = "runtime.park_m";

/// What a goroutine probe point does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoProbe {
    /// A semaphore acquire's entry (its return instructions end the wait), and where its
    /// stack is taken.
    Acquire(GoStack),
    /// The call to `gopark` in the semaphore code: the running goroutine parks.
    ParkSite,
    /// `runtime.park_m(gp)`: any goroutine parks (fallback for [`GoProbe::ParkSite`]).
    ParkAny,
    /// The semaphore release's call to `goready(gp)` (in `readyWithTime`; Go 1.19).
    ReadySite,
    /// `readyWithTime`'s call to `systemstack` with its inlined `goready(gp)`'s closure
    /// (Go 1.21+): `gp` is the closure's first capture.
    ReadyClosure,
    /// `runtime.ready(gp)`: any goroutine made runnable (fallback for the two above).
    ReadyAny,
    /// Precise mode: the top of the semaphore code's queue-and-park loop, with its frame's
    /// layout. Begins a `sync` acquire's wait; nothing else is probed on the way in.
    SemaPark(GoFrame),
    /// Precise mode: the semaphore code's call to releaseSudog, on its way out: ends it.
    SemaDone,
}

impl GoProbe {
    /// The eBPF program, and the cookie that tells it where its goroutine is.
    pub fn program(self) -> (&'static str, Option<u64>) {
        let cookie = |r: GoRef| Some(r as u64);
        match self {
            GoProbe::Acquire(at) => (prog::GO_SEMA_ENTER, Some(at as u64)),
            GoProbe::ParkSite => (prog::GO_PARK, cookie(GoRef::Current)),
            GoProbe::ParkAny => (prog::GO_PARK, cookie(GoRef::GInRax)),
            GoProbe::ReadySite | GoProbe::ReadyAny => (prog::GO_READY, cookie(GoRef::GInRax)),
            GoProbe::ReadyClosure => (prog::GO_READY, cookie(GoRef::ClosureGInRax)),
            GoProbe::SemaPark(frame) => (prog::GO_SEMA_PARK, Some(frame.cookie())),
            GoProbe::SemaDone => (prog::GO_SEMA_EXIT, None),
        }
    }
}

/// One probe point: where it is (file offsets) and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbePoints {
    pub probe: GoProbe,
    /// The function the point is in, for messages.
    pub function: String,
    pub entry: u64,
    /// [`GoProbe::Acquire`] only: the return instructions (never uretprobes on Go: they
    /// corrupt its movable stacks).
    pub returns: Vec<u64>,
}

/// A function's code: its address, and its bytes' file offset and length.
pub struct Function {
    pub address: u64,
    pub offset: u64,
    pub size: u64,
}

/// The functions goroutine probing needs, by name, from `.symtab` or (stripped) `.gopclntab`.
fn functions(exe: &Path, file: &[u8]) -> Result<HashMap<String, Function>> {
    let obj = object::File::parse(file).with_context(|| format!("parsing {}", exe.display()))?;
    let wanted = |name: &str| {
        SEMA_FUNCTIONS.contains(&name)
            || GOPARK.contains(&name)
            || LOOP_LOCK.contains(&name)
            || [PARKER, PARK_ANY, RELEASE].contains(&name)
            || super::goready::wanted(name)
    };
    let mut found: Vec<(String, u64, u64)> = obj
        .symbols()
        .filter_map(|sym| {
            let name = sym.name().ok()?;
            (wanted(name) && sym.size() > 0).then(|| (name.to_string(), sym.address(), sym.size()))
        })
        .collect();
    if obj.symbol_table().is_none() {
        if let Some(table) = crate::symbolize::GoTable::open(exe) {
            found = table
                .functions()
                .filter(|f| wanted(&f.name))
                .map(|f| (f.name, f.entry, f.end - f.entry))
                .collect();
        }
    }
    let mut out = HashMap::new();
    for (name, address, size) in found {
        let section = obj
            .sections()
            .find(|s| s.address() <= address && address < s.address() + s.size())
            .with_context(|| format!("{name} has no section"))?;
        let (sec_off, _) = section
            .file_range()
            .with_context(|| format!("{name}: no file data"))?;
        let offset = sec_off + (address - section.address());
        out.insert(
            name,
            Function {
                address,
                offset,
                size,
            },
        );
    }
    Ok(out)
}

/// Where the goroutine probes go: the points, and (precise mode) the addresses in the process
/// of the returns into the `sync` acquires that a traced park must come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoPlan {
    pub points: Vec<ProbePoints>,
    pub callers: Vec<u64>,
}

/// The semaphore code's layout, when disassembly finds all of it: one probe per park and one
/// on the way out then replace the acquires' entry and return-instruction probes.
struct Precise {
    frame: GoFrame,
    parks: Vec<u64>,
    dones: Vec<u64>,
    callers: Vec<u64>,
}

/// Where code of `exe` runs in the process: a non-PIE executable at its link addresses; a PIE
/// one where `pid` mapped it (not yet known before the target's exec: then `None`).
struct Placement<'a> {
    exe: &'a Path,
    pie: bool,
    pid: Option<u32>,
}

impl Placement<'_> {
    /// Runtime addresses of (link address, file offset) pairs.
    fn resolve(&self, at: &[(u64, u64)]) -> Option<Vec<u64>> {
        if !self.pie {
            return Some(at.iter().map(|a| a.0).collect());
        }
        let offsets: Vec<u64> = at.iter().map(|a| a.1).collect();
        code_addresses(self.pid?, self.exe, &offsets).ok()
    }
}

fn precise(
    funcs: &HashMap<String, Function>,
    file: &[u8],
    placement: &Placement,
) -> Option<Precise> {
    let code = |f: &Function| file.get(f.offset as usize..(f.offset + f.size) as usize);
    let parker = funcs.get(PARKER)?;
    let body = code(parker)?;
    let ret_at = frame_size(body, parker.address)?;
    // Under Go's register ABI the first argument (the semaphore) is spilled just above the
    // return address; the precise probe reads it there.
    let sema_at = ret_at + 8;
    if !stores_rax_at(body, parker.address, sema_at) {
        return None;
    }
    let calls = |name: &str| {
        funcs
            .get(name)
            .map(|t| call_offsets(body, parker.address, t.address))
            .unwrap_or_default()
    };
    let parks: Vec<u64> = LOOP_LOCK.iter().flat_map(|n| calls(n)).collect();
    let dones = calls(RELEASE);
    let mut returns = Vec::new();
    for f in SEMA_FUNCTIONS.iter().filter_map(|n| funcs.get(*n)) {
        let at = call_offsets(code(f)?, f.address, parker.address);
        returns.extend(
            at.into_iter()
                .map(|o| (f.address + o + CALL_LEN, f.offset + o + CALL_LEN)),
        );
    }
    let callers = placement.resolve(&returns)?;
    let complete = !parks.is_empty() && !dones.is_empty() && !callers.is_empty();
    (complete && callers.len() <= GO_CALLER_SLOTS as usize).then(|| Precise {
        frame: GoFrame { ret_at, sema_at },
        parks: parks.into_iter().map(|o| parker.offset + o).collect(),
        dones: dones.into_iter().map(|o| parker.offset + o).collect(),
        callers,
    })
}

/// Every goroutine probe point in a Go executable, found by symbol and by disassembly, for
/// process `pid` (`None`: no process yet, as before a launched target's exec).
pub fn sema_probe_points(exe: &Path, pid: Option<u32>) -> Result<GoPlan> {
    let file = std::fs::read(exe).with_context(|| format!("reading {}", exe.display()))?;
    let funcs = functions(exe, &file)?;
    let placement = Placement {
        exe,
        pie: object::File::parse(&*file)
            .map(|o| o.kind() != object::ObjectKind::Executable)
            .unwrap_or(true),
        pid,
    };
    let code = |f: &Function| -> Result<&[u8]> {
        file.get(f.offset as usize..(f.offset + f.size) as usize)
            .context("a function lies outside the file")
    };
    let point = |probe, name: &str, entry| ProbePoints {
        probe,
        function: name.to_string(),
        entry,
        returns: Vec::new(),
    };
    let mut out = Vec::new();
    let mut callers = Vec::new();
    if let Some(p) = precise(&funcs, &file, &placement) {
        out.extend(
            p.parks
                .iter()
                .map(|&o| point(GoProbe::SemaPark(p.frame), PARKER, o)),
        );
        out.extend(p.dones.iter().map(|&o| point(GoProbe::SemaDone, PARKER, o)));
        callers = p.callers;
    } else {
        // Parks: the semaphore code's own calls to gopark, else every park.
        let mut sites = Vec::new();
        if let Some(parker) = funcs.get(PARKER) {
            for target in GOPARK.iter().filter_map(|n| funcs.get(*n)) {
                sites.extend(call_offsets(code(parker)?, parker.address, target.address));
            }
            sites.sort_unstable();
            out.extend(
                sites
                    .iter()
                    .map(|s| point(GoProbe::ParkSite, PARKER, parker.offset + s)),
            );
        }
        // The stack is taken where the goroutine parks if that point is on its own stack.
        let stack_at = if sites.is_empty() {
            GoStack::AtEntry
        } else {
            GoStack::AtPark
        };
        for name in SEMA_FUNCTIONS {
            let Some(f) = funcs.get(name) else { continue };
            let returns: Vec<u64> = return_offsets(code(f)?, f.address)
                .into_iter()
                .map(|o| f.offset + o)
                .collect();
            if returns.is_empty() {
                bail!("{name} has no return instruction to probe");
            }
            out.push(ProbePoints {
                returns,
                ..point(GoProbe::Acquire(stack_at), name, f.offset)
            });
        }
        if sites.is_empty() {
            if let Some(f) = funcs.get(PARK_ANY) {
                out.push(point(GoProbe::ParkAny, PARK_ANY, f.offset));
            }
        }
    }
    out.extend(
        ready_points(&funcs, &file)?
            .into_iter()
            .map(|(probe, name, at)| point(probe, name, at)),
    );
    verify(&funcs, &file, &out)?;
    Ok(GoPlan {
        points: out,
        callers,
    })
}

/// Every point must be an instruction boundary of a function whose entry opens like Go code
/// (`probesafety`): one that is not refuses the whole plan, and the target is left untouched.
fn verify(funcs: &HashMap<String, Function>, file: &[u8], points: &[ProbePoints]) -> Result<()> {
    for p in points {
        let f = funcs
            .get(&p.function)
            .with_context(|| format!("refusing a goroutine probe in {}: not found", p.function))?;
        let bytes = file
            .get(f.offset as usize..(f.offset + f.size) as usize)
            .context("a function lies outside the file")?;
        let code = super::probesafety::Code {
            name: &p.function,
            offset: f.offset,
            bytes,
        };
        for &at in std::iter::once(&p.entry).chain(&p.returns) {
            code.check(at)?;
        }
    }
    Ok(())
}

/// The addresses in process `pid` of file offsets in its executable's code.
pub fn code_addresses(pid: u32, exe: &Path, offsets: &[u64]) -> Result<Vec<u64>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .with_context(|| format!("reading /proc/{pid}/maps"))?;
    let regions = crate::sys::parse_regions(&maps);
    let want = exe.to_string_lossy();
    offsets
        .iter()
        .map(|&o| {
            regions
                .iter()
                .find(|r| {
                    r.path == want
                        && r.perms.contains('x')
                        && o >= r.offset
                        && o < r.offset + (r.end - r.start)
                })
                .map(|r| r.start + (o - r.offset))
                .with_context(|| format!("{} is not mapped in process {pid}", exe.display()))
        })
        .collect()
}

/// Where to place the goroutine probes on a Go target as `--go-uprobes` asks: the executable
/// and the probe points, or `None` (off, or not Go and not required).
pub fn goroutine_probes(
    target: &crate::sys::Target,
    mode: GoUprobes,
) -> Result<Option<(PathBuf, GoPlan)>> {
    let (Some(_), Some(exe)) = (&target.go, &target.exe) else {
        if mode == GoUprobes::On {
            bail!("--go-uprobes on: {} is not a Go program", target.comm);
        }
        return Ok(None);
    };
    if mode == GoUprobes::Off {
        return Ok(None);
    }
    match sema_probe_points(exe, Some(target.tgid)) {
        Ok(p)
            if p.points
                .iter()
                .any(|x| matches!(x.probe, GoProbe::Acquire(_) | GoProbe::SemaPark(_))) =>
        {
            Ok(Some((exe.clone(), p)))
        }
        Ok(_) if mode == GoUprobes::Auto => Ok(None),
        Ok(_) => bail!(
            "--go-uprobes on: {} has no sync semaphore functions (stripped?)",
            exe.display()
        ),
        Err(e) if mode == GoUprobes::Auto => {
            eprintln!("lockscope: no goroutine-level tracing ({e:#})");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_go_workload_gets_precise_points_if_built() {
        // Built by `cargo xtask test` (and build-go); this test binary is not Go.
        let go = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/go/syncmap-load-go");
        if !go.exists() {
            return;
        }
        let plan = sema_probe_points(&go, None).unwrap();
        let has = |f: &dyn Fn(GoProbe) -> bool| plan.points.iter().any(|x| f(x.probe));
        // Go 1.19's semacquire1: a 0x60-byte frame with the semaphore spilled above it, one
        // call each to lock2 and releaseSudog; called by sync.runtime_SemacquireMutex.
        assert!(
            has(&|p| p
                == GoProbe::SemaPark(GoFrame {
                    ret_at: 0x60,
                    sema_at: 0x68
                })),
            "{plan:?}"
        );
        assert!(has(&|p| p == GoProbe::SemaDone), "{plan:?}");
        assert!(!has(&|p| matches!(p, GoProbe::Acquire(_))), "{plan:?}");
        assert!(has(&|p| p == GoProbe::ReadySite) && !has(&|p| p == GoProbe::ReadyAny));
        assert!(!plan.callers.is_empty(), "{plan:?}");
    }
}
