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

use super::gobase::{bytes_from, go_base};

/// Go 1.18–1.19 and Go 1.20+ headers (the layout this reader knows is the same for both).
const MAGICS: [u32; 2] = [0xffff_fff0, 0xffff_fff1];

/// The pcdata table whose value at a PC is its index in the inline tree (-1: not inlined).
const PCDATA_INL_TREE_INDEX: u32 = 2;
/// The funcdata slot of the inline tree.
const FUNCDATA_INL_TREE: usize = 3;
/// Inlining deeper than this is taken as a corrupt table.
const MAX_INLINE_DEPTH: usize = 64;

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
    inline: Option<InlineTree>,
}

/// The funcdata the inline tree lives in: the bytes from `moduledata.gofunc` on.
struct InlineTree {
    data: Vec<u8>,
    /// `inlinedCall`: 20 bytes in Go 1.18–1.19 (parent, funcID, file, line, func, parentPc),
    /// 16 from Go 1.20 (funcID, nameOff, parentPc, startLine).
    entry_size: usize,
}

impl GoTable {
    /// The table of the ELF file at `path`, if it has one this reader understands, based where
    /// the runtime bases it (`gobase`), with its inline tree when the module data is found.
    pub fn open(path: &Path) -> Option<GoTable> {
        GoTable::from_elf(&std::fs::read(path).ok()?)
    }

    /// The table of an ELF file's bytes (as [`GoTable::open`]).
    pub fn from_elf(file: &[u8]) -> Option<GoTable> {
        let obj = object::File::parse(file).ok()?;
        let section = obj.section_by_name(".gopclntab")?;
        let data = section.data().ok()?.to_vec();
        let magic = u32::from_le_bytes(data.get(0..4)?.try_into().ok()?);
        let base = go_base(file, section.address(), magic)?;
        let mut table = GoTable::parse(data, Some(base.text))?;
        table.inline = base
            .gofunc
            .and_then(|g| bytes_from(file, g))
            .map(|data| InlineTree {
                data,
                entry_size: if magic == MAGICS[0] { 20 } else { 16 },
            });
        Some(table)
    }

    /// Parses a table; `text` is the base of its entry offsets when known from outside it
    /// (else the header's `textStart`).
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
            inline: None,
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

    /// Every name in the function name table that starts with `prefix`: compiled functions
    /// and functions inlined somewhere (a program that calls `sync.(*Map).Store` keeps that
    /// name here even where no such function is compiled).
    pub fn names_with_prefix(&self, prefix: &str) -> Vec<String> {
        let table = self
            .data
            .get(self.funcnames..self.cutab)
            .unwrap_or_default();
        let mut out: Vec<String> = table
            .split(|&b| b == 0)
            .filter(|n| n.starts_with(prefix.as_bytes()))
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every function, in entry order.
    pub fn functions(&self) -> impl Iterator<Item = GoFunc> + '_ {
        (0..self.nfunc).filter_map(|i| self.function(i))
    }

    /// The index of the function containing virtual address `addr`.
    fn index_of(&self, addr: u64) -> Option<usize> {
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
        (addr < self.text_start + u64::from(self.functab(i + 1)?.0)).then_some(i)
    }

    /// The function containing virtual address `addr` (the compiled one, outermost), with its
    /// file and line when the pc-value tables give them.
    #[cfg(test)]
    pub fn lookup(&self, addr: u64) -> Option<GoFunc> {
        self.frames(addr).pop()
    }

    /// The frames at virtual address `addr`, innermost first: the calls inlined there (from
    /// the inline tree, when the module data gave its base), then the compiled function; each
    /// with its file and line. Inside inlined code whose tree is not known, the compiled
    /// function alone, without a line (the line tables give the inlined callee's).
    pub fn frames(&self, addr: u64) -> Vec<GoFunc> {
        let mut out = Vec::new();
        let Some((i, phys)) = self
            .index_of(addr)
            .and_then(|i| Some((i, self.function(i)?)))
        else {
            return out;
        };
        let Some(func) = self.functab(i).map(|(_, off)| self.pcln + off as usize) else {
            return out;
        };
        // _func fields after entryoff: nameoff, args, deferreturn, pcsp, pcfile, pcln,
        // npcdata, cuOffset (4 bytes each); nfuncdata is its last byte.
        let field = |n: usize| self.u32_at(func + 4 * n);
        let npcdata = field(7).unwrap_or(0);
        let index_table = (npcdata > PCDATA_INL_TREE_INDEX)
            .then(|| self.u32_at(func + self.func_size + 4 * PCDATA_INL_TREE_INDEX as usize))
            .flatten();
        let nfuncdata = self
            .data
            .get(func + self.func_size - 1)
            .copied()
            .unwrap_or(0);
        let tree = self.inline.as_ref().and_then(|t| {
            let slot = func + self.func_size + 4 * (npcdata as usize + FUNCDATA_INL_TREE);
            let off = self.u32_at(slot).filter(|&o| o != u32::MAX)?;
            (usize::from(nfuncdata) > FUNCDATA_INL_TREE).then_some((t, off as usize))
        });
        let mut pc = addr;
        for _ in 0..MAX_INLINE_DEPTH {
            let (file, line) = self.position(func, phys.entry, pc);
            let ix = index_table
                .and_then(|t| self.pc_value(t, phys.entry, pc))
                .and_then(|ix| usize::try_from(ix).ok());
            let Some(ix) = ix else {
                out.push(GoFunc { file, line, ..phys });
                return out;
            };
            let Some((name, parent_pc)) = tree.and_then(|(t, off)| self.inlined_call(t, off, ix))
            else {
                out.push(phys);
                return out;
            };
            out.push(GoFunc {
                name,
                file,
                line,
                ..phys.clone()
            });
            pc = phys.entry + u64::from(parent_pc);
        }
        out
    }

    /// Entry `ix` of an inline tree at `off` from gofunc: the inlined function's name and the
    /// offset from the compiled function's entry of an instruction at its call site.
    fn inlined_call(&self, tree: &InlineTree, off: usize, ix: usize) -> Option<(String, u32)> {
        let at = off.checked_add(ix.checked_mul(tree.entry_size)?)?;
        let word = |n: usize| -> Option<u32> {
            let b = tree.data.get(at + n..at + n + 4)?;
            Some(u32::from_le_bytes(b.try_into().ok()?))
        };
        let (name_at, parent_at) = if tree.entry_size == 20 {
            (12, 16)
        } else {
            (4, 8)
        };
        let name = self.cstr(self.funcnames + word(name_at)? as usize)?;
        Some((name.to_string(), word(parent_at)?))
    }

    /// The file and line at `pc` of the function whose `_func` is at `func`.
    fn position(&self, func: usize, entry: u64, pc: u64) -> (Option<String>, Option<u32>) {
        let field = |n: usize| self.u32_at(func + 4 * n);
        let line = field(6).and_then(|t| self.pc_value(t, entry, pc));
        let file = field(5)
            .and_then(|t| self.pc_value(t, entry, pc))
            .and_then(|fileno| {
                let cu = field(8)? as usize;
                let fileoff = self.u32_at(self.cutab + 4 * (cu + usize::try_from(fileno).ok()?))?;
                (fileoff != u32::MAX)
                    .then(|| self.cstr(self.filetab + fileoff as usize))
                    .flatten()
            });
        (
            file.map(str::to_string),
            line.and_then(|l| u32::try_from(l).ok()),
        )
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
