//! locks: says what a futex word is — a static's symbol in a module, or heap, stack or
//! anonymous memory — from the target's memory map and the modules' symbol tables.
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::path::Path;

use blazesym::inspect::source::{Elf, Source};
use blazesym::inspect::Inspector;
use blazesym::SymType;

use crate::profile::{LockInfo, Region as Memory};
use crate::sys::{load_segments, parse_regions, LoadSegment, Region};

/// A module as loaded: where its link-time addresses landed.
struct Loaded {
    path: String,
    /// Runtime address minus link-time address.
    bias: u64,
    segments: Vec<LoadSegment>,
}

impl Loaded {
    /// The link-time address of `addr` if it falls in one of the module's segments (which
    /// covers .bss, mapped anonymously after the file's last page).
    fn link_addr(&self, addr: u64) -> Option<u64> {
        let v = addr.checked_sub(self.bias)?;
        self.segments
            .iter()
            .any(|s| s.vaddr <= v && v < s.vaddr + s.memsz)
            .then_some(v)
    }
}

fn loaded_modules(regions: &[Region]) -> Vec<Loaded> {
    let mut seen: HashMap<&str, ()> = HashMap::new();
    let mut out = Vec::new();
    for r in regions {
        if !r.path.starts_with('/') || seen.insert(&r.path, ()).is_some() {
            continue;
        }
        // The mapping of the file's first page fixes the bias.
        let Some(first) = regions.iter().find(|q| q.path == r.path && q.offset == 0) else {
            continue;
        };
        let Ok(segments) = load_segments(Path::new(&r.path)) else {
            continue;
        };
        let Some(seg0) = segments.iter().find(|s| s.offset == 0) else {
            continue;
        };
        out.push(Loaded {
            path: r.path.clone(),
            bias: first.start.wrapping_sub(seg0.vaddr & !0xfff),
            segments,
        });
    }
    out
}

/// Data symbols of one module, sorted by address: (addr, size, demangled name).
fn data_symbols(path: &str) -> Vec<(u64, u64, String)> {
    let inspector = Inspector::new();
    let mut elf = Elf::new(path);
    elf.debug_syms = false;
    let mut out = Vec::new();
    let _ = inspector.for_each(&Source::Elf(elf), |sym| {
        if sym.sym_type == SymType::Variable {
            out.push((
                sym.addr,
                sym.size.unwrap_or(0) as u64,
                format!("{:#}", rustc_demangle::demangle(&sym.name)),
            ));
        }
        ControlFlow::Continue(())
    });
    out.sort_unstable();
    out
}

/// Describes each futex word from the text of the target's /proc/PID/maps (kept from the
/// recording, so this works after the target exits). Words it cannot place are "unknown".
pub fn describe(maps_text: &str, uaddrs: impl IntoIterator<Item = u64>) -> Vec<LockInfo> {
    let regions = parse_regions(maps_text);
    let modules = loaded_modules(&regions);
    let mut symbols: BTreeMap<usize, Vec<(u64, u64, String)>> = BTreeMap::new();
    let mut out = Vec::new();
    for uaddr in uaddrs {
        let region = regions.iter().find(|r| r.start <= uaddr && uaddr < r.end);
        let in_module = modules
            .iter()
            .enumerate()
            .find_map(|(i, m)| m.link_addr(uaddr).map(|v| (i, v)));
        let info = match (in_module, region) {
            (Some((i, v)), _) => {
                let syms = symbols
                    .entry(i)
                    .or_insert_with(|| data_symbols(&modules[i].path));
                // The last symbol starting at or before v, if v is inside it.
                let idx = syms.partition_point(|s| s.0 <= v);
                let symbol = idx
                    .checked_sub(1)
                    .map(|j| &syms[j])
                    .filter(|(a, size, _)| v < a + (*size).max(1))
                    .map(|(a, _, name)| {
                        if v == *a {
                            name.clone()
                        } else {
                            format!("{name}+{:#x}", v - a)
                        }
                    });
                LockInfo {
                    uaddr,
                    pid: None,
                    region: Memory::Static,
                    module: Some(modules[i].path.clone()),
                    symbol,
                    shard: None,
                }
            }
            (None, Some(r)) => LockInfo {
                uaddr,
                pid: None,
                region: match r.path.as_str() {
                    "[heap]" => Memory::Heap,
                    "[stack]" => Memory::MainStack,
                    "" => Memory::Anonymous,
                    _ => Memory::Mapped,
                },
                module: r.path.starts_with('/').then(|| r.path.clone()),
                symbol: None,
                shard: None,
            },
            (None, None) => LockInfo {
                uaddr,
                pid: None,
                region: Memory::Unknown,
                module: None,
                symbol: None,
                shard: None,
            },
        };
        out.push(info);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_static_in_this_test_binary_is_named() {
        static PROBE_LOCK: std::sync::Mutex<u64> = std::sync::Mutex::new(7);
        let boxed = Box::new(std::sync::Mutex::new(0u64));
        let on_stack = 5u64;
        let addr = |p: *const u8| p as u64;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let infos = describe(
            &maps,
            [
                addr((&PROBE_LOCK as *const std::sync::Mutex<u64>).cast()),
                addr((&*boxed as *const std::sync::Mutex<u64>).cast()),
                addr((&on_stack as *const u64).cast()),
                8,
            ],
        );
        assert_eq!(infos[0].region, Memory::Static);
        let name = infos[0].symbol.as_deref().unwrap_or_default();
        assert!(name.contains("PROBE_LOCK"), "{infos:?}");
        assert_ne!(infos[1].region, Memory::Static, "{infos:?}");
        assert_ne!(infos[2].region, Memory::Static, "{infos:?}");
        assert_eq!(infos[3].region, Memory::Unknown);
    }

    #[test]
    fn regions_parse_with_and_without_paths() {
        let r = parse_regions(
            "5555-6666 rw-p 00003000 fd:01 12 /bin/x\n7000-8000 rw-p 00000000 00:00 0\n9000-a000 rw-p 00000000 00:00 0 [heap]\n",
        );
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].offset, 0x3000);
        assert_eq!(r[1].path, "");
        assert_eq!(r[2].path, "[heap]");
    }
}
