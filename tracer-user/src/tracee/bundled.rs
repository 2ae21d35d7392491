//! The bundled map inside a target: where its phase functions are (to probe them) and where its
//! ground-truth counters live (to read them from outside, with no help from the program); and,
//! in a Go target, the standard library's `sync.Map` beside it (`stdmap`).
use std::collections::BTreeMap;
use std::fs::File;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use blazesym::inspect::{source::Elf, source::Source, Inspector};
use tracer_common::Phase;

use syncmap::stats::{Shard, Stats, EVENTS, MAGIC};

use super::stdmap::{self, StdSync};
use crate::profile::{MapCounter, MapKind};
use crate::sys::parse_regions;

/// Exported by the syncmap crate (`syncmap::stats::SYNCMAP_STATS`); its layout is read from
/// the crate's own types, never copied by hand.
pub const STATS_SYMBOL: &str = "SYNCMAP_STATS";
const SHARD_BYTES: usize = std::mem::size_of::<Shard>();
const HEADER_BYTES: u64 = std::mem::offset_of!(Stats, shards) as u64;

/// Where the bundled map's pieces are in one executable.
#[derive(Debug, Clone)]
pub struct BundledMap {
    pub exe: PathBuf,
    /// Every instantiation of each phase function (the map is generic), by file offset.
    pub phases: Vec<(Phase, u64)>,
    /// File offset of `SYNCMAP_STATS`, if the executable has it.
    pub stats_offset: Option<u64>,
    /// The Go port: each phase function's return instructions (file offsets), by its entry
    /// offset. Go phases are timed to these, never with uretprobes.
    pub go_returns: BTreeMap<u64, Vec<u64>>,
    /// Go's own `sync.Map`, if the target links it (its phase offsets' returns are in
    /// `go_returns` too).
    pub std: Option<StdSync>,
}

impl BundledMap {
    /// Every probed phase site: the map kind it belongs to, the phase, its file offset.
    pub fn sites(&self) -> impl Iterator<Item = (MapKind, Phase, u64)> + '_ {
        let std = self
            .std
            .iter()
            .flat_map(|s| s.phases.iter().map(|&(p, o)| (s.kind, p, o)));
        self.phases
            .iter()
            .map(|&(p, o)| (MapKind::Bundled, p, o))
            .chain(std)
    }

    /// The phases probed for a kind.
    pub fn probed(&self, kind: MapKind) -> impl Iterator<Item = Phase> + '_ {
        self.sites()
            .filter(move |&(k, ..)| k == kind)
            .map(|(_, p, _)| p)
    }
}

/// `syncmap::SyncMap<K,V>::promote` (Rust) or `…/syncmap.(*Map).promote` (Go) → the phase.
pub fn phase_of_symbol(demangled: &str) -> Option<Phase> {
    if let Some((_, method)) = demangled.split_once("syncmap.(*Map).") {
        return match method {
            "promote" => Some(Phase::Promote),
            "rebuildDirty" => Some(Phase::Rebuild),
            "missLocked" => Some(Phase::Miss),
            _ => None,
        };
    }
    let rest = demangled.strip_prefix("syncmap::SyncMap<")?;
    let method = rest.rsplit("::").next()?;
    Phase::ALL.into_iter().find(|p| p.function() == method)
}

/// The bundled map in a target's executable, if it has it, with only the `phases` asked for
/// (`--phase-probes`) left to probe. Unreadable symbols count as "not there".
pub fn find_probed(exe: Option<&Path>, phases: &[Phase]) -> Option<BundledMap> {
    let mut m = find(exe?).ok().flatten()?;
    m.phases.retain(|(p, _)| phases.contains(p));
    if let Some(s) = &mut m.std {
        s.phases.retain(|(p, _)| phases.contains(p));
    }
    Some(m)
}

/// Looks for the bundled map in `exe`; `None` if it is not there.
pub fn find(exe: &Path) -> Result<Option<BundledMap>> {
    let inspector = Inspector::new();
    let mut elf = Elf::new(exe);
    // The symbol table has what we need; DWARF would only slow this down.
    elf.debug_syms = false;
    let src = Source::Elf(elf);
    let mut phases = Vec::new();
    let mut stats_offset = None;
    let mut go_returns = BTreeMap::new();
    let bytes = std::fs::read(exe).ok();
    let mut go_returns_of = |off: u64, size: Option<usize>, addr: u64| {
        let code = bytes
            .as_deref()
            .and_then(|b| b.get(off as usize..off as usize + size.unwrap_or(0)));
        if let Some(code) = code {
            let rets = crate::sys::return_offsets(code, addr);
            go_returns.insert(off, rets.into_iter().map(|r| off + r).collect::<Vec<_>>());
        }
    };
    let mut std_syms: Vec<String> = Vec::new();
    let mut std_phases = Vec::new();
    inspector
        .for_each(&src, |sym| {
            // The Go port exports it as `<package path>.SYNCMAP_STATS`.
            if sym.name == STATS_SYMBOL
                || sym
                    .name
                    .strip_suffix(STATS_SYMBOL)
                    .is_some_and(|p| p.ends_with("syncmap."))
            {
                stats_offset = sym.file_offset;
            } else if sym.name.starts_with("sync.(*Map).") {
                if let (Some(p), Some(off)) = (stdmap::phase_of_symbol(&sym.name), sym.file_offset)
                {
                    std_phases.push((p, off));
                    go_returns_of(off, sym.size, sym.addr);
                }
                std_syms.push(sym.name.to_string());
            } else if sym.name.starts_with(stdmap::TRIE_PREFIX) {
                std_syms.push(sym.name.to_string());
            } else if sym.name.contains("syncmap") {
                let demangled = format!("{:#}", rustc_demangle::demangle(&sym.name));
                if let (Some(p), Some(off)) = (phase_of_symbol(&demangled), sym.file_offset) {
                    phases.push((p, off));
                    // A Go phase: find its return instructions in the function's code.
                    if demangled.contains("syncmap.(*Map).") {
                        go_returns_of(off, sym.size, sym.addr);
                    }
                }
            }
            ControlFlow::Continue(())
        })
        .with_context(|| format!("reading symbols of {}", exe.display()))?;
    phases.sort_unstable_by_key(|&(p, off)| (p, off));
    phases.dedup();
    // Go's own names: from the PC table, which a stripped build keeps and which also names
    // the `sync.(*Map)` methods Go 1.24+ inlines everywhere (no symbol has them there).
    if let Some(t) = bytes
        .as_deref()
        .and_then(crate::symbolize::GoTable::from_elf)
    {
        std_syms.extend(t.names_with_prefix("sync.(*Map)."));
        if std_phases.is_empty() {
            for (phase, off, f) in stripped_phases(&t, bytes.as_deref().unwrap_or_default()) {
                std_phases.push((phase, off));
                go_returns_of(off, usize::try_from(f.end - f.entry).ok(), f.entry);
            }
        }
    }
    std_syms.sort_unstable();
    std_syms.dedup();
    let std = find_std(exe, &std_syms, std_phases);
    if phases.is_empty() && stats_offset.is_none() && std.is_none() {
        return Ok(None);
    }
    Ok(Some(BundledMap {
        exe: exe.to_path_buf(),
        phases,
        stats_offset,
        go_returns,
        std,
    }))
}

/// The read/dirty `sync.Map`'s phase functions of a stripped build, from its PC table, each
/// only where its bytes open like a Go function (`probesafety`).
fn stripped_phases(
    t: &crate::symbolize::GoTable,
    file: &[u8],
) -> Vec<(Phase, u64, crate::symbolize::GoFunc)> {
    use object::{Object, ObjectSection};
    let Ok(obj) = object::File::parse(file) else {
        return Vec::new();
    };
    // The file offset of a virtual address.
    let offset = |addr: u64| {
        let s = obj
            .sections()
            .find(|s| s.address() <= addr && addr < s.address() + s.size())?;
        Some(s.file_range()?.0 + (addr - s.address()))
    };
    t.functions()
        .filter_map(|f| {
            let phase = stdmap::phase_of_symbol(&f.name)?;
            let off = offset(f.entry)?;
            let bytes = file.get(off as usize..(off + (f.end - f.entry)) as usize)?;
            let code = super::probesafety::Code {
                name: &f.name,
                offset: off,
                bytes,
            };
            code.check(off).ok()?;
            Some((phase, off, f))
        })
        .collect()
}

/// Go's `sync.Map` from the `sync.(*Map).` symbols of a Go executable and its version.
fn find_std(exe: &Path, syms: &[String], mut phases: Vec<(Phase, u64)>) -> Option<StdSync> {
    if syms.is_empty() {
        return None;
    }
    let version = super::golang::go_version(exe)?;
    let kind = stdmap::recognise(Some(&version), syms.iter().map(String::as_str))?;
    if kind == MapKind::StdHashTrie {
        // No promotion or rebuild exists: nothing is probed, whatever the names.
        phases.clear();
    }
    phases.sort_unstable();
    phases.dedup();
    let dirty_at = stdmap::dirty_offset(&version).unwrap_or(0);
    Some(StdSync {
        kind,
        version,
        phases,
        dirty_at,
    })
}

/// The address in `pid` of a file offset of `exe`'s writable data, from its memory maps.
/// Only writable mappings count: segments share file pages, so a read-only (RELRO) mapping
/// can cover the same file offset at a different address.
fn offset_to_addr(pid: u32, exe: &Path, offset: u64) -> Result<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .with_context(|| format!("reading /proc/{pid}/maps"))?;
    let want = exe.to_string_lossy();
    for r in parse_regions(&maps) {
        if !r.writable() || r.path != want {
            continue;
        }
        if offset >= r.offset && offset < r.offset + (r.end - r.start) {
            return Ok(r.start + (offset - r.offset));
        }
    }
    bail!("{} is not mapped in process {pid}", exe.display())
}

/// Every counter at zero: the map's state at exec.
pub fn zero_counters() -> BTreeMap<String, u64> {
    MapCounter::ALL
        .iter()
        .map(|c| (c.name().to_string(), 0))
        .collect()
}

/// Reads and sums the counters from the target's memory.
pub fn read_counters(pid: u32, map: &BundledMap) -> Result<BTreeMap<String, u64>> {
    let offset = map
        .stats_offset
        .context("the executable has no SYNCMAP_STATS symbol")?;
    let addr = offset_to_addr(pid, &map.exe, offset)?;
    let mem = File::open(format!("/proc/{pid}/mem"))
        .with_context(|| format!("opening /proc/{pid}/mem"))?;
    let mut header = [0u8; 24];
    mem.read_exact_at(&mut header, addr)
        .with_context(|| format!("reading {STATS_SYMBOL} in process {pid}"))?;
    let word = |i: usize| u64::from_le_bytes(header[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    let (magic, events, shards) = (word(0), word(1), word(2));
    if magic != MAGIC || events as usize != EVENTS || shards == 0 || shards > 4096 {
        bail!("{STATS_SYMBOL} in process {pid} has an unknown layout (magic {magic:#x}, {events} events)");
    }
    let mut block = vec![0u8; shards as usize * SHARD_BYTES];
    mem.read_exact_at(&mut block, addr + HEADER_BYTES)?;
    Ok(sum_shards(&block, events as usize))
}

/// Sums `events` u64 counters over 128-byte shards.
pub fn sum_shards(block: &[u8], events: usize) -> BTreeMap<String, u64> {
    let mut totals = vec![0u64; events];
    for shard in block.chunks_exact(SHARD_BYTES) {
        for (i, t) in totals.iter_mut().enumerate() {
            let b = &shard[i * 8..i * 8 + 8];
            *t += u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        }
    }
    MapCounter::ALL
        .iter()
        .zip(totals)
        .map(|(c, v)| (c.name().to_string(), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_functions_are_recognised_by_demangled_name() {
        assert_eq!(
            phase_of_symbol("syncmap::SyncMap<K,V>::promote"),
            Some(Phase::Promote)
        );
        assert_eq!(
            phase_of_symbol("syncmap::SyncMap<K,V>::rebuild_dirty"),
            Some(Phase::Rebuild)
        );
        assert_eq!(
            phase_of_symbol("syncmap::SyncMap<K,V>::miss_locked"),
            Some(Phase::Miss)
        );
        assert_eq!(phase_of_symbol("syncmap::SyncMap<K,V>::load"), None);
        assert_eq!(phase_of_symbol("other::SyncMap<K,V>::promote"), None);
    }

    #[test]
    fn probed_names_are_the_maps_own() {
        // lockscope probes functions by name; the map publishes those names.
        assert_eq!(Phase::Miss.function(), syncmap::phase::MISS);
        assert_eq!(Phase::Promote.function(), syncmap::phase::PROMOTE);
        assert_eq!(Phase::Rebuild.function(), syncmap::phase::REBUILD);
        assert_eq!(STATS_SYMBOL, "SYNCMAP_STATS");
        let _: &syncmap::stats::Stats = &syncmap::stats::SYNCMAP_STATS;
    }

    #[test]
    fn shards_sum_per_counter() {
        assert_eq!(SHARD_BYTES, 128);
        let mut block = vec![0u8; 2 * 128];
        block[0..8].copy_from_slice(&5u64.to_le_bytes()); // shard 0, fast_reads
        block[128..136].copy_from_slice(&7u64.to_le_bytes()); // shard 1, fast_reads
        block[128 + 24..128 + 32].copy_from_slice(&3u64.to_le_bytes()); // shard 1, index 3: promotions
        let s = sum_shards(&block, EVENTS);
        assert_eq!(s[MapCounter::FastRead.name()], 12);
        assert_eq!(s[MapCounter::Promotion.name()], 3);
        assert_eq!(s[MapCounter::Rebuild.name()], 0);
    }
}
