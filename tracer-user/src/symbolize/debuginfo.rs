//! debuginfo: what a module can be symbolized from, and where its separate debug file is.
//!
//! A stripped module has no `.symtab`; its names live in a debug file found, in order, by build
//! id (`ROOT/.build-id/xx/rest.debug`) or by `.gnu_debuglink` (beside the module, in its
//! `.debug/` directory, then `ROOT/<module's directory>/`; the link's CRC32 must match). ROOT
//! is `/usr/lib/debug`, or the directories in `LOCKSCOPE_DEBUG_ROOT` (colon-separated) when
//! that is set. A debug file made by `objcopy --only-keep-debug` keeps the module's addresses
//! but not its file layout (its code sections are NOBITS), so module file offsets are turned
//! into virtual addresses with the module's own program headers before a debug file is asked.
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use object::elf::PT_LOAD;
use object::read::elf::{ElfFile64, ProgramHeader};
use object::{Endianness, Object, ObjectSection};

/// Environment variable naming the debug roots (colon-separated) instead of /usr/lib/debug.
pub const DEBUG_ROOT_ENV: &str = "LOCKSCOPE_DEBUG_ROOT";

/// The debug roots searched, in order.
pub fn debug_roots() -> Vec<PathBuf> {
    match std::env::var_os(DEBUG_ROOT_ENV) {
        Some(v) if !v.is_empty() => std::env::split_paths(&v).collect(),
        _ => vec![PathBuf::from("/usr/lib/debug")],
    }
}

/// `ROOT/.build-id/xx/rest.debug` for a hex build id; `None` for one too short to split.
pub fn build_id_path(root: &Path, build_id: &str) -> Option<PathBuf> {
    if build_id.len() < 4 || !build_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (head, rest) = build_id.split_at(2);
    Some(
        root.join(".build-id")
            .join(head)
            .join(format!("{rest}.debug")),
    )
}

/// A `.gnu_debuglink`: the debug file's name and the CRC32 of its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugLink {
    pub name: String,
    pub crc: u32,
}

/// Parses `.gnu_debuglink` contents: a NUL-terminated name, padding to 4 bytes, the CRC.
pub fn parse_debuglink(data: &[u8]) -> Option<DebugLink> {
    let end = data.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&data[..end]).ok()?;
    // The name may not climb out of the directories it is looked up in.
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let at = (end + 1).div_ceil(4) * 4;
    let crc = u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?);
    Some(DebugLink {
        name: name.to_string(),
        crc,
    })
}

/// Where a debug link's file may be, in the order gdb looks.
pub fn debuglink_candidates(module: &Path, name: &str, roots: &[PathBuf]) -> Vec<PathBuf> {
    let dir = module.parent().unwrap_or(Path::new("/"));
    let mut out = vec![dir.join(name), dir.join(".debug").join(name)];
    let rel = dir.strip_prefix("/").unwrap_or(dir);
    out.extend(roots.iter().map(|r| r.join(rel).join(name)));
    out
}

/// CRC32 (the zlib polynomial, as `.gnu_debuglink` uses) of a file's contents.
pub fn file_crc32(path: &Path) -> Option<u32> {
    let mut f = File::open(path).ok()?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Some(h.finalize()),
            Ok(n) => h.update(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// How a debug file was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    BuildId,
    DebugLink,
    Debuginfod,
}

impl Found {
    pub fn name(self) -> &'static str {
        match self {
            Found::BuildId => "build id",
            Found::DebugLink => ".gnu_debuglink",
            Found::Debuginfod => "debuginfod",
        }
    }
}

/// What one module file offers for naming its code, read once.
#[derive(Debug, Clone, Default)]
pub struct ModuleFacts {
    /// It has `.symtab` or DWARF of its own: no debug file is needed.
    pub self_named: bool,
    pub build_id: Option<String>,
    pub debuglink: Option<DebugLink>,
    /// A Go executable's PC table (`.gopclntab`) is present.
    pub gopclntab: bool,
    /// PT_LOAD segments: (file offset, file size, virtual address).
    loads: Vec<(u64, u64, u64)>,
}

impl ModuleFacts {
    /// Reads the facts of the ELF file at `path` (a default, naming nothing, if unreadable).
    pub fn read(path: &Path) -> ModuleFacts {
        let Ok(file) = File::open(path) else {
            return ModuleFacts::default();
        };
        let cache = object::ReadCache::new(file);
        let Ok(elf) = ElfFile64::<Endianness, _>::parse(&cache) else {
            return ModuleFacts::default();
        };
        let endian = elf.endian();
        let loads = elf
            .elf_program_headers()
            .iter()
            .filter(|p| p.p_type(endian) == PT_LOAD)
            .map(|p| (p.p_offset(endian), p.p_filesz(endian), p.p_vaddr(endian)))
            .collect();
        let has = |name: &str| elf.section_by_name(name).is_some();
        ModuleFacts {
            self_named: has(".symtab") || has(".debug_info"),
            build_id: elf
                .build_id()
                .ok()
                .flatten()
                .map(|id| id.iter().map(|b| format!("{b:02x}")).collect()),
            debuglink: elf
                .section_by_name(".gnu_debuglink")
                .and_then(|s| s.data().ok())
                .and_then(parse_debuglink),
            gopclntab: has(".gopclntab"),
            loads,
        }
    }

    /// The virtual address (as linked) of a file offset, from the loadable segments.
    pub fn vaddr_of(&self, offset: u64) -> Option<u64> {
        self.loads
            .iter()
            .find(|&&(off, size, _)| offset >= off && offset < off + size)
            .map(|&(off, _, vaddr)| offset - off + vaddr)
    }

    /// This module's debug file on this machine, and how it was found.
    pub fn local_debug_file(&self, module: &Path, roots: &[PathBuf]) -> Option<(PathBuf, Found)> {
        if let Some(id) = &self.build_id {
            let by_id = roots.iter().filter_map(|r| build_id_path(r, id));
            for p in by_id {
                if p.is_file() {
                    return Some((p, Found::BuildId));
                }
            }
        }
        let link = self.debuglink.as_ref()?;
        debuglink_candidates(module, &link.name, roots)
            .into_iter()
            .filter(|p| p != module && p.is_file())
            .find(|p| file_crc32(p) == Some(link.crc))
            .map(|p| (p, Found::DebugLink))
    }
}

#[cfg(test)]
#[path = "debuginfo_tests.rs"]
mod tests;
