//! elf: the facts about an ELF file several stages need, read with the `object` crate and
//! without loading the whole file (a program's debug info can be hundreds of megabytes).
use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};
use object::elf::PT_LOAD;
use object::read::elf::{ElfFile64, ProgramHeader};
use object::Endianness;

/// A loadable segment: its file range and the link-time addresses it covers (`memsz` reaches
/// past the file for `.bss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    pub offset: u64,
    pub filesz: u64,
    pub vaddr: u64,
    pub memsz: u64,
}

/// The PT_LOAD segments of the 64-bit ELF file at `path`.
pub fn load_segments(path: &Path) -> Result<Vec<LoadSegment>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let cache = object::ReadCache::new(file);
    let elf = ElfFile64::<Endianness, _>::parse(&cache)
        .with_context(|| format!("{} is not a 64-bit ELF file", path.display()))?;
    let endian = elf.endian();
    Ok(elf
        .elf_program_headers()
        .iter()
        .filter(|p| p.p_type(endian) == PT_LOAD)
        .map(|p| LoadSegment {
            offset: p.p_offset(endian),
            filesz: p.p_filesz(endian),
            vaddr: p.p_vaddr(endian),
            memsz: p.p_memsz(endian),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_binary_has_a_text_and_a_data_segment() {
        let segs = load_segments(&std::env::current_exe().unwrap()).unwrap();
        assert!(segs.len() >= 2, "{segs:?}");
        assert!(segs.iter().any(|s| s.offset == 0));
        assert!(segs.iter().all(|s| s.memsz >= s.filesz));
        assert!(load_segments(Path::new("/proc/self/status")).is_err());
    }
}
