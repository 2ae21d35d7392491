//! golang: Go targets. A goroutine blocked on a sync.Mutex parks in the Go scheduler without
//! a futex call; the futex waits of a Go process are OS threads: idle ones parking, runtime
//! locks (`runtime.lock2`), GC and stop-the-world handshakes. This module recognises Go
//! executables, names those classes, and keeps idle parking out of the contention rows.
use std::path::Path;

use anyhow::{bail, Context, Result};
use object::{Object, ObjectSection, ObjectSymbol};

use crate::profile::Stack;

/// A Go executable's toolchain version (`go1.19.8`) from its `.go.buildinfo` section.
pub fn go_version(exe: &Path) -> Option<String> {
    let file = std::fs::read(exe).ok()?;
    let obj = object::File::parse(&*file).ok()?;
    let data = obj.section_by_name(".go.buildinfo")?.data().ok()?;
    // "\xff Go buildinf:" (14 bytes), pointer size, flags; flag 2: strings inline after the
    // 32-byte header, each a uvarint length then bytes (Go 1.18+).
    if !data.starts_with(b"\xff Go buildinf:") {
        return None;
    }
    if data.get(15).is_some_and(|f| f & 2 != 0) {
        let (len, n) = uvarint(data.get(32..)?)?;
        let start = 32 + n;
        let v = data.get(start..start + len as usize)?;
        return Some(String::from_utf8_lossy(v).into_owned());
    }
    // Older layouts point at the string instead; the section still says it is Go.
    Some("go (version not inline)".into())
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The `sync` semaphore acquires a goroutine blocks in: Mutex and RWMutex slow paths (the
/// RWMutex ones are separate functions from Go 1.20).
pub const SEMA_FUNCTIONS: [&str; 3] = [
    "sync.runtime_SemacquireMutex",
    "sync.runtime_SemacquireRWMutexR",
    "sync.runtime_SemacquireRWMutex",
];

/// The scheduler function that makes a goroutine runnable (`runtime.ready(gp, ...)`).
pub const READY_FUNCTION: &str = "runtime.ready";

/// A `sync.Mutex` unlock with waiters: where holder blame ties a mutex to a map.
pub const UNLOCK_FUNCTION: &str = "sync.(*Mutex).unlockSlow";

/// Where a goroutine parks (`runtime.park_m(gp)`): its wait starts there.
pub const PARK_FUNCTION: &str = "runtime.park_m";

/// Functions probed at entry only.
const ENTRY_ONLY: [&str; 3] = [READY_FUNCTION, UNLOCK_FUNCTION, PARK_FUNCTION];

/// Where to probe one function: its entry and each return instruction, as file offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbePoints {
    pub function: String,
    pub entry: u64,
    pub returns: Vec<u64>,
}

/// Entry and return-instruction offsets of the `sync` semaphore acquires in a Go executable,
/// found by disassembling each function (uretprobes corrupt Go's movable stacks).
pub fn sema_probe_points(exe: &Path) -> Result<Vec<ProbePoints>> {
    let file = std::fs::read(exe).with_context(|| format!("reading {}", exe.display()))?;
    let obj = object::File::parse(&*file).with_context(|| format!("parsing {}", exe.display()))?;
    let wanted = |name: &str| ENTRY_ONLY.contains(&name) || SEMA_FUNCTIONS.contains(&name);
    // (name, address, size): from .symtab, or from .gopclntab in a stripped executable.
    let mut functions: Vec<(String, u64, u64)> = obj
        .symbols()
        .filter_map(|sym| {
            let name = sym.name().ok()?;
            (wanted(name) && sym.size() > 0).then(|| (name.to_string(), sym.address(), sym.size()))
        })
        .collect();
    if obj.symbol_table().is_none() {
        if let Some(table) = crate::gopclntab::GoTable::open(exe) {
            functions = table
                .functions()
                .filter(|f| wanted(&f.name))
                .map(|f| (f.name, f.entry, f.end - f.entry))
                .collect();
        }
    }
    let mut out = Vec::new();
    for (name, address, size) in functions {
        let name = name.as_str();
        let entry_only = ENTRY_ONLY.contains(&name);
        let section = obj
            .sections()
            .find(|s| s.address() <= address && address < s.address() + s.size())
            .with_context(|| format!("{name} has no section"))?;
        let (sec_off, _) = section
            .file_range()
            .with_context(|| format!("{name}: no file data"))?;
        let entry = sec_off + (address - section.address());
        if entry_only {
            // The moment a waiting goroutine is made runnable, or a mutex is released to
            // waiters.
            out.push(ProbePoints {
                function: name.to_string(),
                entry,
                returns: Vec::new(),
            });
            continue;
        }
        let code = file
            .get(entry as usize..(entry + size) as usize)
            .with_context(|| format!("{name} lies outside the file"))?;
        let returns = return_offsets(code, address)
            .into_iter()
            .map(|o| entry + o)
            .collect::<Vec<_>>();
        if returns.is_empty() {
            bail!("{name} has no return instruction to probe");
        }
        out.push(ProbePoints {
            function: name.to_string(),
            entry,
            returns,
        });
    }
    Ok(out)
}

/// Offsets of the `ret` instructions in a function's machine code.
pub fn return_offsets(code: &[u8], ip: u64) -> Vec<u64> {
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};
    let mut d = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        let at = d.position() as u64;
        let insn = d.decode();
        if insn.mnemonic() == Mnemonic::Ret {
            out.push(at);
        }
    }
    out
}

/// Where to place the goroutine probes on a Go target as `--go-uprobes` asks: the executable
/// and the probe points, or `None` (off, or not Go and not required).
pub fn goroutine_probes(
    target: &crate::procfs::Target,
    mode: GoUprobes,
) -> Result<Option<(std::path::PathBuf, Vec<ProbePoints>)>> {
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
        Ok(p)
            if p.iter()
                .any(|x| SEMA_FUNCTIONS.contains(&x.function.as_str())) =>
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

/// What an OS thread of a Go process was doing in a futex wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoWait {
    /// An M with no goroutine to run, parked by the scheduler: not lock contention.
    IdleThread,
    /// Contention on a runtime-internal lock.
    RuntimeLock,
    /// GC or stop-the-world coordination (waiting for other Ms to reach a safe point).
    StopTheWorld,
    Other,
}

impl GoWait {
    pub fn label(self) -> &'static str {
        match self {
            GoWait::IdleThread => "Go idle thread parking (not contention)",
            GoWait::RuntimeLock => "Go runtime lock (runtime.lock2)",
            GoWait::StopTheWorld => "Go GC / stop-the-world handshake",
            GoWait::Other => "Go runtime futex wait",
        }
    }
}

/// Classifies a Go futex wait by the runtime functions on its stack, innermost first.
pub fn classify(stack: Option<&Stack>) -> GoWait {
    let Some(stack) = stack else {
        return GoWait::Other;
    };
    for name in crate::frames::function_names(stack) {
        match name {
            "runtime.lock2" | "runtime.lockWithRank" => return GoWait::RuntimeLock,
            // An M without work, and the runtime's own monitor threads between rounds.
            "runtime.mPark"
            | "runtime.stopm"
            | "runtime.stoplockedm"
            | "runtime.startlockedm"
            | "runtime.sysmon"
            | "runtime.templateThread" => return GoWait::IdleThread,
            "runtime.forEachP"
            | "runtime.stopTheWorldWithSema"
            | "runtime.gcMarkDone"
            | "runtime.gcMarkTermination" => return GoWait::StopTheWorld,
            _ => {}
        }
    }
    GoWait::Other
}

/// Frames past `runtime.mcall` belong to whichever goroutine last ran on this thread, not to
/// the thread's wait: the frame-pointer chain runs on into its stack. `runtime.mstart` and
/// `runtime.rt0_go` start an M's system stack; past them is whatever was in memory. Cut there.
pub fn cut_at_scheduler(stack: &mut Stack) {
    const ROOTS: [&str; 3] = ["runtime.mcall", "runtime.mstart", "runtime.rt0_go"];
    if let Some(i) = stack
        .frames
        .iter()
        .position(|f| f.syms.iter().any(|s| ROOTS.contains(&s.name.as_str())))
    {
        stack.frames.truncate(i + 1);
    }
}

/// Goroutine uprobes on a Go target (`--go-uprobes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoUprobes {
    /// On for Go targets, quietly off for others.
    Auto,
    /// Required: fail if they cannot be placed.
    On,
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::stack;

    #[test]
    fn go_waits_are_classified_and_cut_at_mcall() {
        let mut idle = stack(&[
            "runtime.futex",
            "runtime.notesleep",
            "runtime.mPark",
            "runtime.stopm",
            "runtime.findRunnable",
            "runtime.schedule",
            "runtime.park_m",
            "runtime.mcall",
            "sync.(*Mutex).lockSlow",
            "main.lockSite",
        ]);
        assert_eq!(classify(Some(&idle)), GoWait::IdleThread);
        cut_at_scheduler(&mut idle);
        assert_eq!(
            idle.frames.len(),
            8,
            "the parked goroutine's frames are not this wait's"
        );
        let lock = stack(&[
            "runtime.futex",
            "runtime.futexsleep",
            "runtime.lock2",
            "runtime.lockWithRank",
        ]);
        assert_eq!(classify(Some(&lock)), GoWait::RuntimeLock);
        let mut sysmon = stack(&[
            "runtime.futex",
            "runtime.sysmon",
            "runtime.mstart",
            "runtime.execute",
        ]);
        assert_eq!(classify(Some(&sysmon)), GoWait::IdleThread);
        cut_at_scheduler(&mut sysmon);
        assert_eq!(
            sysmon.frames.len(),
            3,
            "nothing past the system stack's root"
        );
        let stw = stack(&["runtime.futex", "runtime.notetsleep", "runtime.forEachP"]);
        assert_eq!(classify(Some(&stw)), GoWait::StopTheWorld);
        assert_eq!(classify(None), GoWait::Other);
    }

    #[test]
    fn return_instructions_are_found_by_decoding_not_byte_search() {
        // sub rsp,0x18 ; mov eax,0xc3 (a C3 byte that is not a ret) ; add rsp,0x18 ; ret ;
        // jmp back ; ret
        let code = [
            0x48, 0x83, 0xec, 0x18, 0xb8, 0xc3, 0x00, 0x00, 0x00, 0x48, 0x83, 0xc4, 0x18, 0xc3,
            0xeb, 0xf0, 0xc3,
        ];
        assert_eq!(return_offsets(&code, 0x1000), vec![13, 16]);
    }

    #[test]
    fn the_go_workload_is_recognised_if_built() {
        // Built by `cargo xtask test` (and build-go); this test binary is not Go.
        let me = std::env::current_exe().unwrap();
        assert_eq!(go_version(&me), None);
        let go = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/go/syncmap-load-go");
        if go.exists() {
            let v = go_version(&go).unwrap();
            assert!(v.starts_with("go1."), "{v}");
            let points = sema_probe_points(&go).unwrap();
            assert!(
                points
                    .iter()
                    .any(|p| p.function == "sync.runtime_SemacquireMutex"),
                "{points:?}"
            );
            assert!(points
                .iter()
                .filter(|p| !ENTRY_ONLY.contains(&p.function.as_str()))
                .all(|p| !p.returns.is_empty()));
            for f in ENTRY_ONLY {
                assert!(points.iter().any(|p| p.function == f), "{f} not found");
            }
        }
    }
}
