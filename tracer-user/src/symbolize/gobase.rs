//! gobase: where a Go executable's PC table is based, read from the ELF file as the runtime
//! reads it. The runtime looks a PC up as `pc - moduledata.text`; `pcHeader.textStart` carries
//! the same address. Neither is the start of the `.text` section in a binary linked by the
//! external linker: there C start-up code comes first (`.text` at 0x401020, `runtime.text` at
//! 0x401120 in a `-linkmode=external` build), so a `.text`-based reading names every function
//! one off. In a position-independent build those words are left zero in the file and carry
//! their value as a dynamic relocation's addend, so every read goes through the relocations.
//!
//! From Go 1.26 the header no longer carries `textStart` (it is zero), so the module data is
//! the source: `runtime.firstmoduledata`, found in a stripped binary as the word that points at
//! the PC header. It also gives `gofunc`, the base of the funcdata
//! offsets, which the inline tree needs.
use std::collections::HashMap;

use object::read::elf::ElfFile64;
use object::{Object, ObjectSection, ObjectSymbol};

/// `moduledata.text`: after the PC header pointer, six slices (24 bytes each), findfunctab,
/// minpc and maxpc.
const MODULEDATA_TEXT: u64 = 8 + 6 * 24 + 3 * 8;
/// Where `moduledata.gofunc` has been: Go 1.18–1.19 (after text … enoptrbss, end, gcdata,
/// gcbss, types, etypes, rodata), Go 1.20–1.26 (covctrs and ecovctrs added), Go 1.27
/// (typedesclen, itaboffset and itabsize added). The word before it is always `rodata`, in
/// `.rodata` (its start, or just past the C start-up's read-only data under the external
/// linker): the layout whose `rodata` word lies there is the one this binary has.
const MODULEDATA_GOFUNC_118: u64 = MODULEDATA_TEXT + 16 * 8;
const MODULEDATA_GOFUNC_120: u64 = MODULEDATA_GOFUNC_118 + 2 * 8;
const MODULEDATA_GOFUNC_127: u64 = MODULEDATA_GOFUNC_120 + 3 * 8;
/// `pcHeader.textStart`: after magic (4), pad (2), minLC (1), ptrSize (1), nfunc, nfiles.
const HEADER_TEXT_START: u64 = 24;
const R_X86_64_RELATIVE: u32 = 8;

/// Where the PC table's offsets start, and how that was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoBase {
    /// The address function entry offsets are relative to (`runtime.text`).
    pub text: u64,
    /// `moduledata.gofunc`, when the module data was found.
    pub gofunc: Option<u64>,
}

/// Reads pointer-sized words of the file at virtual addresses, as relocated at load time.
struct Words<'a> {
    elf: &'a ElfFile64<'a>,
    /// Dynamic relocations that set a word to a link-time address: where → the address.
    relocated: HashMap<u64, u64>,
}

impl<'a> Words<'a> {
    fn new(elf: &'a ElfFile64<'a>) -> Words<'a> {
        let mut relocated = HashMap::new();
        if let Some(relocs) = elf.dynamic_relocations() {
            for (at, r) in relocs {
                let kind = match r.flags() {
                    object::RelocationFlags::Elf { r_type } => r_type,
                    _ => continue,
                };
                if kind == R_X86_64_RELATIVE {
                    relocated.insert(at, r.addend() as u64);
                }
            }
        }
        Words { elf, relocated }
    }

    /// The word at `addr`: a relocation's addend if one sets it, else the file's bytes.
    fn word(&self, addr: u64) -> Option<u64> {
        if let Some(&v) = self.relocated.get(&addr) {
            return Some(v);
        }
        let s = self
            .elf
            .sections()
            .find(|s| s.address() <= addr && addr + 8 <= s.address() + s.size())?;
        let data = s.data().ok()?;
        let at = usize::try_from(addr - s.address()).ok()?;
        Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
    }
}

/// The module data's address: `runtime.firstmoduledata` by symbol, else the 8-aligned word
/// whose value is the PC header's address (`moduledata.pcHeader`), in the section Go 1.26+
/// gives the module data (`.go.module`), else in `.noptrdata` or `.data`.
fn moduledata(elf: &ElfFile64<'_>, words: &Words<'_>, header: u64) -> Option<u64> {
    if let Some(sym) = elf
        .symbols()
        .find(|s| s.name() == Ok("runtime.firstmoduledata"))
    {
        return Some(sym.address());
    }
    [".go.module", ".noptrdata", ".data"]
        .iter()
        .find_map(|name| {
            let section = elf.section_by_name(name)?;
            let start = section.address().next_multiple_of(8);
            let end = section.address() + section.size();
            (start..end.saturating_sub(8))
                .step_by(8)
                .find(|&a| words.word(a) == Some(header))
        })
}

/// The base of `exe`'s PC table (`.gopclntab` at `header`, with `magic`), or `None` when no
/// source names it.
pub fn go_base(file: &[u8], header: u64, magic: u32) -> Option<GoBase> {
    let elf = ElfFile64::<object::Endianness>::parse(file).ok()?;
    if !elf.is_little_endian() {
        return None;
    }
    let words = Words::new(&elf);
    // The module data is checked by its next word: the function name table's address.
    let names = words.word(header + 32).map(|o| header + o);
    let md = moduledata(&elf, &words, header).filter(|&m| words.word(m + 8) == names);
    let md_text = md.and_then(|m| words.word(m + MODULEDATA_TEXT));
    let header_text = words.word(header + HEADER_TEXT_START).filter(|&t| t != 0);
    let symbol_text = elf
        .symbols()
        .find(|s| s.name() == Ok("runtime.text"))
        .map(|s| s.address());
    // The runtime's own base first; the header's copy of it; the symbol.
    let text = md_text
        .filter(|&t| t != 0)
        .or(header_text)
        .or(symbol_text)?;
    let layouts: &[u64] = if magic == 0xffff_fff0 {
        &[MODULEDATA_GOFUNC_118]
    } else {
        &[MODULEDATA_GOFUNC_120, MODULEDATA_GOFUNC_127]
    };
    let rodata = elf
        .section_by_name(".rodata")
        .map(|s| s.address()..s.address() + s.size());
    let in_a_section = |a: u64| {
        elf.sections()
            .any(|s| s.address() != 0 && (s.address()..s.address() + s.size()).contains(&a))
    };
    let gofunc = md.zip(rodata).and_then(|(m, rodata)| {
        layouts
            .iter()
            .find(|&&at| words.word(m + at - 8).is_some_and(|r| rodata.contains(&r)))
            .and_then(|&at| words.word(m + at))
            .filter(|&g| in_a_section(g))
    });
    Some(GoBase { text, gofunc })
}

/// The bytes of the file from virtual address `addr` to the end of its section.
pub fn bytes_from(file: &[u8], addr: u64) -> Option<Vec<u8>> {
    let obj = object::File::parse(file).ok()?;
    let s = obj
        .sections()
        .find(|s| s.address() <= addr && addr < s.address() + s.size())?;
    let data = s.data().ok()?;
    Some(
        data.get(usize::try_from(addr - s.address()).ok()?..)?
            .to_vec(),
    )
}
