//! gopclntab: function names (and lines) of a stripped Go executable from its `.gopclntab`.
//!
//! `go build -ldflags='-s -w'` drops `.symtab` and DWARF, but the runtime's own PC table stays:
//! Go needs it for tracebacks. The Go 1.18+ layout (runtime/symtab.go): a `pcHeader` (magic,
//! min instruction size, pointer size, function count, `textStart`, then offsets of the name,
//! compilation-unit, file, pc-value and function tables from the header), a function table of
//! `(entryoff, funcoff)` pairs with entries relative to the start of text, and each `_func`
//! (entry offset, name offset, …, `pcfile`, `pcln`, …, `cuOffset`).
use std::path::Path;

use object::{Object, ObjectSection};

/// Go 1.18–1.19 and Go 1.20+ headers (the layout this reader knows is the same for both).
const MAGICS: [u32; 2] = [0xffff_fff0, 0xffff_fff1];

/// The pcdata table whose value at a PC is its index in the inline tree (-1: not inlined).
const PCDATA_INL_TREE_INDEX: u32 = 2;

/// A function found in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoFunc {
    pub name: String,
    /// Entry address (virtual, as linked) and the next function's entry.
    pub entry: u64,
    pub end: u64,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// A module's `.gopclntab`, parsed enough to look functions up by address.
pub struct GoTable {
    data: Vec<u8>,
    /// Size of `_func` before its pcdata offsets: 40 bytes (Go 1.18–1.19), 44 (1.20+ adds
    /// `startLine`).
    func_size: usize,
    quantum: u32,
    nfunc: usize,
    text_start: u64,
    funcnames: usize,
    cutab: usize,
    filetab: usize,
    pctab: usize,
    pcln: usize,
}

impl GoTable {
    /// The table of the ELF file at `path`, if it has one this reader understands.
    pub fn open(path: &Path) -> Option<GoTable> {
        let file = std::fs::File::open(path).ok()?;
        let cache = object::ReadCache::new(file);
        let obj = object::File::parse(&cache).ok()?;
        let section = obj.section_by_name(".gopclntab")?;
        // debug/gosym uses the start of .text rather than textStart, which a position-
        // independent build leaves to be relocated at run time.
        let text = obj.section_by_name(".text").map(|s| s.address());
        GoTable::parse(section.data().ok()?.to_vec(), text)
    }

    /// Parses a table; `text` is the address of `.text` when known.
    pub fn parse(data: Vec<u8>, text: Option<u64>) -> Option<GoTable> {
        let magic = u32::from_le_bytes(data.get(0..4)?.try_into().ok()?);
        if !MAGICS.contains(&magic) || data.get(7) != Some(&8) {
            return None;
        }
        let word = |i: usize| -> Option<u64> {
            let at = 8 + 8 * i;
            Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
        };
        let quantum = u32::from(*data.get(6)?);
        let nfunc = usize::try_from(word(0)?).ok()?;
        let header_text = word(2)?;
        let off = |i: usize| usize::try_from(word(i).ok_or(())?).map_err(|_| ());
        let table = GoTable {
            func_size: if magic == MAGICS[0] { 40 } else { 44 },
            quantum,
            nfunc,
            text_start: text.filter(|&t| t != 0).unwrap_or(header_text),
            funcnames: off(3).ok()?,
            cutab: off(4).ok()?,
            filetab: off(5).ok()?,
            pctab: off(6).ok()?,
            pcln: off(7).ok()?,
            data,
        };
        // The function table must fit: nfunc + 1 pairs (the last gives the end of text).
        let fits = table.pcln.checked_add((nfunc + 1) * 8)? <= table.data.len();
        fits.then_some(table)
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(
            self.data.get(at..at + 4)?.try_into().ok()?,
        ))
    }

    /// (entry offset from text, offset of `_func` from the function table) of entry `i`.
    fn functab(&self, i: usize) -> Option<(u32, u32)> {
        let at = self.pcln + i * 8;
        Some((self.u32_at(at)?, self.u32_at(at + 4)?))
    }

    fn cstr(&self, at: usize) -> Option<&str> {
        let bytes = self.data.get(at..)?;
        let end = bytes.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&bytes[..end]).ok()
    }

    /// The function at index `i` (entry order), without its line.
    pub fn function(&self, i: usize) -> Option<GoFunc> {
        let (entryoff, funcoff) = self.functab(i)?;
        let (next, _) = self.functab(i + 1)?;
        let func = self.pcln + funcoff as usize;
        let nameoff = self.u32_at(func + 4)?;
        let name = self.cstr(self.funcnames + nameoff as usize)?;
        Some(GoFunc {
            name: name.to_string(),
            entry: self.text_start + u64::from(entryoff),
            end: self.text_start + u64::from(next),
            file: None,
            line: None,
        })
    }

    /// Every function, in entry order.
    pub fn functions(&self) -> impl Iterator<Item = GoFunc> + '_ {
        (0..self.nfunc).filter_map(|i| self.function(i))
    }

    /// The function containing virtual address `addr`, with its file and line when the
    /// pc-value tables give them.
    pub fn lookup(&self, addr: u64) -> Option<GoFunc> {
        let rel = u32::try_from(addr.checked_sub(self.text_start)?).ok()?;
        // The last entry whose start is ≤ rel (entry nfunc marks the end of text).
        let (mut lo, mut hi) = (0usize, self.nfunc);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.functab(mid)?.0 <= rel {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let i = lo.checked_sub(1)?;
        let mut f = self.function(i)?;
        if addr >= f.end {
            return None;
        }
        let func = self.pcln + self.functab(i)?.1 as usize;
        // _func fields after entryoff: nameoff, args, deferreturn, pcsp, pcfile, pcln,
        // npcdata, cuOffset (4 bytes each).
        let field = |n: usize| self.u32_at(func + 4 * n);
        // Inside code inlined from another function, the line tables give the inlined
        // callee's file and line (Go records the call chain in a funcdata table this reader
        // does not follow): the function's own line is not known there, so none is given.
        let inline_table = field(7)
            .filter(|&npcdata| npcdata > PCDATA_INL_TREE_INDEX)
            .and_then(|_| self.u32_at(func + self.func_size + 4 * PCDATA_INL_TREE_INDEX as usize));
        let inlined = inline_table
            .and_then(|t| self.pc_value(t, f.entry, addr))
            .is_some_and(|ix| ix >= 0);
        if inlined {
            return Some(f);
        }
        let line = field(6).and_then(|t| self.pc_value(t, f.entry, addr));
        let file = field(5)
            .and_then(|t| self.pc_value(t, f.entry, addr))
            .and_then(|fileno| {
                let cu = field(8)? as usize;
                let fileoff = self.u32_at(self.cutab + 4 * (cu + usize::try_from(fileno).ok()?))?;
                (fileoff != u32::MAX)
                    .then(|| self.cstr(self.filetab + fileoff as usize))
                    .flatten()
            });
        f.line = line.and_then(|l| u32::try_from(l).ok());
        f.file = file.map(str::to_string);
        Some(f)
    }

    /// Runs the pc-value table at `pctab + table` from `entry` to the value at `target`.
    fn pc_value(&self, table: u32, entry: u64, target: u64) -> Option<i32> {
        if table == 0 {
            return None;
        }
        let mut p = self.data.get(self.pctab + table as usize..)?;
        let (mut pc, mut val, mut first) = (entry, -1i32, true);
        loop {
            let (uvdelta, n) = varint(p)?;
            p = &p[n..];
            if uvdelta == 0 && !first {
                return None;
            }
            first = false;
            let vdelta = if uvdelta & 1 != 0 {
                !(uvdelta >> 1) as i32
            } else {
                (uvdelta >> 1) as i32
            };
            let (pcdelta, n) = varint(p)?;
            p = &p[n..];
            pc += u64::from(pcdelta) * u64::from(self.quantum);
            val = val.wrapping_add(vdelta);
            if target < pc {
                return Some(val);
            }
        }
    }
}

/// Go's unsigned varint (7 bits a byte, low first); the value and the bytes it took.
fn varint(b: &[u8]) -> Option<(u32, usize)> {
    let mut v = 0u32;
    for (i, &byte) in b.iter().enumerate().take(5) {
        v |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
#[path = "gopclntab_tests.rs"]
mod tests;
