//! goprobes: where the goroutine probes go in a Go executable. A goroutine blocked on a
//! `sync.Mutex` or `RWMutex` parks inside a `sync` semaphore acquire, with no futex call. The
//! probes sit at the acquire's entry and returns, where the semaphore code parks a goroutine
//! (not every park in the scheduler), and where the scheduler readies one. The fast paths (no
//! semaphore at all) hit no probe, nor do other goroutines' parks (channels, timers, network).
//! Where the semaphore code's park is not found (another Go version's code), every park is
//! probed instead, at a higher cost.
//!
//! The ready side stays `runtime.ready`: a probe on `runtime.readyWithTime` (semaphore and
//! `sync.Cond` releases only) was tried, and its waits came out 15% shorter than Go's block
//! profile on `BenchmarkRWMutexWrite100`, while `runtime.ready` agrees to 0.3%.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use object::{Object, ObjectSection, ObjectSymbol};
use tracer_common::{prog, GoRef, GoStack};

use crate::golang::GoUprobes;
use crate::x86::{call_offsets, return_offsets};

/// The `sync` semaphore acquires a goroutine blocks in: Mutex and RWMutex slow paths (the
/// RWMutex ones are separate functions from Go 1.20).
pub const SEMA_FUNCTIONS: [&str; 3] = [
    "sync.runtime_SemacquireMutex",
    "sync.runtime_SemacquireRWMutexR",
    "sync.runtime_SemacquireRWMutex",
];
/// The semaphore code that parks the goroutine (it calls `gopark`).
const PARKER: &str = "runtime.semacquire1";
const GOPARK: [&str; 2] = ["runtime.gopark", "runtime.goparkunlock"];
/// Every goroutine made runnable.
const READY_ANY: &str = "runtime.ready";
/// Every goroutine parked: the fallback for the semaphore code's own park.
const PARK_ANY: &str = "runtime.park_m";
/// A `sync.Mutex` unlock with waiters: where holder blame ties a mutex to a map.
const UNLOCK: &str = "sync.(*Mutex).unlockSlow";

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
    /// `runtime.ready(gp)`: a goroutine made runnable.
    ReadyAny,
    /// A mutex unlock with waiters: needed only to tie a mutex to a map's phases.
    Unlock,
}

impl GoProbe {
    /// The eBPF program, and the cookie that tells it where its goroutine is.
    pub fn program(self) -> (&'static str, Option<u64>) {
        let cookie = |r: GoRef| Some(r as u64);
        match self {
            GoProbe::Acquire(at) => (prog::GO_SEMA_ENTER, Some(at as u64)),
            GoProbe::ParkSite => (prog::GO_PARK, cookie(GoRef::Current)),
            GoProbe::ParkAny => (prog::GO_PARK, cookie(GoRef::GInRax)),
            GoProbe::ReadyAny => (prog::GO_READY, cookie(GoRef::GInRax)),
            GoProbe::Unlock => (prog::GO_UNLOCK, None),
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
struct Function {
    address: u64,
    offset: u64,
    size: u64,
}

/// The functions goroutine probing needs, by name, from `.symtab` or (stripped) `.gopclntab`.
fn functions(exe: &Path, file: &[u8]) -> Result<HashMap<String, Function>> {
    let obj = object::File::parse(file).with_context(|| format!("parsing {}", exe.display()))?;
    let wanted = |name: &str| {
        SEMA_FUNCTIONS.contains(&name)
            || GOPARK.contains(&name)
            || [PARKER, READY_ANY, PARK_ANY, UNLOCK].contains(&name)
    };
    let mut found: Vec<(String, u64, u64)> = obj
        .symbols()
        .filter_map(|sym| {
            let name = sym.name().ok()?;
            (wanted(name) && sym.size() > 0).then(|| (name.to_string(), sym.address(), sym.size()))
        })
        .collect();
    if obj.symbol_table().is_none() {
        if let Some(table) = crate::gopclntab::GoTable::open(exe) {
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

/// Every goroutine probe point in a Go executable, found by symbol and by disassembly.
pub fn sema_probe_points(exe: &Path) -> Result<Vec<ProbePoints>> {
    let file = std::fs::read(exe).with_context(|| format!("reading {}", exe.display()))?;
    let funcs = functions(exe, &file)?;
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
    // Parks: the semaphore code's own calls to gopark, else every park.
    let mut sites = Vec::new();
    if let Some(parker) = funcs.get(PARKER) {
        for target in GOPARK.iter().filter_map(|n| funcs.get(*n)) {
            sites.extend(call_offsets(code(parker)?, parker.address, target.address));
        }
        sites.sort_unstable();
    }
    // The stack is taken where the goroutine parks if that point is on its own stack.
    let stack_at = if sites.is_empty() {
        GoStack::AtEntry
    } else {
        GoStack::AtPark
    };
    let mut out = Vec::new();
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
    if let Some(parker) = funcs.get(PARKER) {
        for s in &sites {
            out.push(point(GoProbe::ParkSite, PARKER, parker.offset + s));
        }
    }
    if sites.is_empty() {
        if let Some(f) = funcs.get(PARK_ANY) {
            out.push(point(GoProbe::ParkAny, PARK_ANY, f.offset));
        }
    }
    if let Some(f) = funcs.get(READY_ANY) {
        out.push(point(GoProbe::ReadyAny, READY_ANY, f.offset));
    }
    if let Some(f) = funcs.get(UNLOCK) {
        out.push(point(GoProbe::Unlock, UNLOCK, f.offset));
    }
    Ok(out)
}

/// Where to place the goroutine probes on a Go target as `--go-uprobes` asks: the executable
/// and the probe points, or `None` (off, or not Go and not required).
pub fn goroutine_probes(
    target: &crate::procfs::Target,
    mode: GoUprobes,
) -> Result<Option<(PathBuf, Vec<ProbePoints>)>> {
    let (Some(_), Some(exe)) = (&target.go, &target.exe) else {
        if mode == GoUprobes::On {
            bail!("--go-uprobes on: {} is not a Go program", target.comm);
        }
        return Ok(None);
    };
    if mode == GoUprobes::Off {
        return Ok(None);
    }
    match sema_probe_points(exe) {
        Ok(p) if p.iter().any(|x| matches!(x.probe, GoProbe::Acquire(_))) => {
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
        let points = sema_probe_points(&go).unwrap();
        let has = |p: GoProbe| points.iter().any(|x| x.probe == p);
        assert!(
            points
                .iter()
                .any(|p| p.function == "sync.runtime_SemacquireMutex"),
            "{points:?}"
        );
        assert!(points
            .iter()
            .filter(|p| matches!(p.probe, GoProbe::Acquire(_)))
            .all(|p| !p.returns.is_empty() && p.probe == GoProbe::Acquire(GoStack::AtPark)));
        // Go 1.19: semacquire1 calls gopark, so the scheduler-wide park is not probed.
        assert!(
            has(GoProbe::ParkSite) && has(GoProbe::ReadyAny),
            "{points:?}"
        );
        assert!(!has(GoProbe::ParkAny), "{points:?}");
        assert!(has(GoProbe::Unlock), "{points:?}");
    }
}
