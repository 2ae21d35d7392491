//! prologue: does a module's code keep frame pointers? Read from the first bytes of its
//! functions (`push rbp; mov rbp, rsp`), found from `.symtab` when it has one and otherwise
//! from the function starts `.eh_frame_hdr` lists — which stripped binaries keep, since the
//! C++/Rust unwinder needs them.
use std::fs;
use std::path::Path;

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

use crate::sys::sets_up_frame;

/// How far into a function a frame set-up is looked for.
const PROLOGUE_BYTES: usize = 64;

/// Where the function starts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartsFrom {
    /// Named functions (the crate's own when it is Rust).
    Symbols,
    /// `.eh_frame_hdr`'s table: every function with CFI, unnamed.
    EhFrame,
}

/// How many of a module's functions open with a frame-pointer prologue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prologues {
    pub with_frame: usize,
    pub functions: usize,
    pub from: StartsFrom,
}

impl Prologues {
    /// With frame pointers most functions set one up (leaf functions and the C runtime's
    /// stubs may not); without them only the few that need a frame for variable-size stack
    /// allocations. Named functions: a majority decides.
    pub fn keeps_frame_pointers(&self) -> bool {
        match self.from {
            StartsFrom::Symbols => self.functions > 0 && self.with_frame * 2 > self.functions,
            // Unnamed, a program's own functions cannot be told from its runtime's, and Rust's
            // prebuilt std keeps frame pointers in a crate built without them (stripped
            // workloads here: 58-71% of functions with a frame built without, 78-82% with).
            // Only nine in ten counts; below that, DWARF is the safe choice.
            StartsFrom::EhFrame => self.functions > 0 && self.with_frame * 10 >= self.functions * 9,
        }
    }

    pub fn describe(&self) -> String {
        let from = match self.from {
            StartsFrom::Symbols => "symbols",
            StartsFrom::EhFrame => ".eh_frame (no symbols)",
        };
        format!(
            "{} of {} functions set up a frame, read from {from}",
            self.with_frame, self.functions
        )
    }
}

/// The file bytes at virtual address `vaddr` (through the segment that maps it).
fn bytes_at<'a>(
    obj: &object::File<'a>,
    file: &'a [u8],
    vaddr: u64,
    len: usize,
) -> Option<&'a [u8]> {
    let seg = obj
        .segments()
        .find(|s| s.address() <= vaddr && vaddr + len as u64 <= s.address() + s.size())?;
    let (off, size) = seg.file_range();
    let rel = vaddr - seg.address();
    if rel + len as u64 > size {
        return None;
    }
    file.get((off + rel) as usize..(off + rel) as usize + len)
}

/// Reads an `.eh_frame_hdr` search table: the start address of every function with CFI.
/// Only the encodings every toolchain emits are read (udata4 count, datarel sdata4 table);
/// anything else gives `None`.
pub fn eh_frame_hdr_starts(hdr: &[u8], hdr_addr: u64) -> Option<Vec<u64>> {
    const DW_EH_PE_UDATA4: u8 = 0x03;
    const DW_EH_PE_DATAREL_SDATA4: u8 = 0x3b;
    let (&version, rest) = hdr.split_first()?;
    let [ptr_enc, count_enc, table_enc, ..] = *rest else {
        return None;
    };
    if version != 1 || count_enc != DW_EH_PE_UDATA4 || table_enc != DW_EH_PE_DATAREL_SDATA4 {
        return None;
    }
    // eh_frame_ptr's size follows its encoding's low nibble (sdata4/udata4 are 4 bytes).
    let ptr_len = match ptr_enc & 0x0f {
        0x03 | 0x0b => 4,
        0x04 | 0x0c => 8,
        _ => return None,
    };
    let at = 4 + ptr_len;
    let count = u32::from_le_bytes(hdr.get(at..at + 4)?.try_into().ok()?) as usize;
    let table = hdr.get(at + 4..)?;
    if table.len() < count.checked_mul(8)? {
        return None;
    }
    Some(
        table
            .chunks_exact(8)
            .take(count)
            .map(|e| {
                let rel = i32::from_le_bytes([e[0], e[1], e[2], e[3]]);
                hdr_addr.wrapping_add(rel as i64 as u64)
            })
            .collect(),
    )
}

/// Counts frame-pointer prologues in a module. For an executable named like a Rust crate,
/// only that crate's own functions and `main` count: Rust's prebuilt std and dependencies keep
/// frame pointers whatever the crate was built with. `None` if unreadable or no functions.
pub fn prologues(path: &Path) -> Option<Prologues> {
    let file = fs::read(path).ok()?;
    let obj = object::File::parse(&*file).ok()?;
    by_symbols(path, &obj, &file).or_else(|| by_eh_frame(&obj, &file))
}

fn by_symbols(path: &Path, obj: &object::File<'_>, file: &[u8]) -> Option<Prologues> {
    let krate = path.file_stem()?.to_string_lossy().replace('-', "_");
    // A Rust crate's own functions (`main` counts with them); a C program has none, and then
    // every function outside the runtime counts.
    let own = |n: &str| {
        n.trim_start_matches('<')
            .strip_prefix(krate.as_str())
            .is_some_and(|r| r.starts_with("::"))
    };
    let runtime = |n: &str| {
        let n = n.trim_start_matches('<');
        [
            "std::", "core::", "alloc::", "__rust", "rust_", "_start", "__libc", "_init", "_fini",
        ]
        .iter()
        .any(|p| n.starts_with(p))
    };
    // (has the prologue, is own code) for every function with a body.
    let mut seen = Vec::new();
    for sym in obj.symbols() {
        if sym.kind() != object::SymbolKind::Text || sym.size() < 16 || sym.is_undefined() {
            continue;
        }
        let demangled = format!("{:#}", rustc_demangle::demangle(sym.name().unwrap_or("")));
        if runtime(&demangled) {
            continue;
        }
        let len = (sym.size() as usize).min(PROLOGUE_BYTES);
        let Some(head) = bytes_at(obj, file, sym.address(), len) else {
            continue;
        };
        seen.push((sets_up_frame(head), own(&demangled) || demangled == "main"));
    }
    // `main` alone does not make a program Rust.
    let rust = seen.iter().filter(|(_, o)| *o).count() > 1;
    let mine: Vec<bool> = if rust {
        seen.iter().filter(|(_, o)| *o).map(|(p, _)| *p).collect()
    } else {
        Vec::new()
    };
    let pool: Vec<bool> = if mine.is_empty() {
        seen.iter().map(|(p, _)| *p).collect()
    } else {
        mine
    };
    (!pool.is_empty()).then(|| Prologues {
        with_frame: pool.iter().filter(|p| **p).count(),
        functions: pool.len(),
        from: StartsFrom::Symbols,
    })
}

fn by_eh_frame(obj: &object::File<'_>, file: &[u8]) -> Option<Prologues> {
    let hdr = obj.section_by_name(".eh_frame_hdr")?;
    let starts = eh_frame_hdr_starts(hdr.data().ok()?, hdr.address())?;
    let text = obj.section_by_name(".text")?;
    let in_text = text.address()..text.address() + text.size();
    let mut p = Prologues {
        with_frame: 0,
        functions: 0,
        from: StartsFrom::EhFrame,
    };
    let starts: Vec<u64> = starts.into_iter().filter(|s| in_text.contains(s)).collect();
    for (i, &start) in starts.iter().enumerate() {
        // Up to the next function's start: a shrink-wrapped prologue comes a few bytes in.
        let next = starts.get(i + 1).copied().unwrap_or(in_text.end).max(start);
        let len = ((next - start) as usize).clamp(8, PROLOGUE_BYTES);
        if let Some(head) =
            bytes_at(obj, file, start, len).or_else(|| bytes_at(obj, file, start, 8))
        {
            p.functions += 1;
            p.with_frame += usize::from(sets_up_frame(head));
        }
    }
    (p.functions > 0).then_some(p)
}

/// Whether the exported function `name` of a shared library opens a frame. `None` if the
/// library or the symbol cannot be read.
pub fn export_opens_frame(lib: &Path, name: &str) -> Option<bool> {
    let file = fs::read(lib).ok()?;
    let obj = object::File::parse(&*file).ok()?;
    let sym = obj
        .dynamic_symbols()
        .find(|s| !s.is_undefined() && s.name().is_ok_and(|n| n == name))?;
    let len = (sym.size() as usize).clamp(8, PROLOGUE_BYTES);
    Some(sets_up_frame(bytes_at(&obj, &file, sym.address(), len)?))
}

/// The undefined dynamic symbols an executable imports.
pub fn imports(exe: &Path) -> Vec<String> {
    let Ok(file) = fs::read(exe) else {
        return Vec::new();
    };
    let Ok(obj) = object::File::parse(&*file) else {
        return Vec::new();
    };
    obj.dynamic_symbols()
        .filter(|s| s.is_undefined())
        .filter_map(|s| s.name().ok().map(String::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary is built with frame pointers (the workspace forces them).
    #[test]
    fn this_binary_keeps_frame_pointers() {
        let me = std::env::current_exe().unwrap();
        let p = prologues(&me).unwrap();
        assert_eq!(p.from, StartsFrom::Symbols);
        assert!(p.keeps_frame_pointers(), "{p:?}");
        assert!(prologues(Path::new("/nonexistent")).is_none());
    }

    #[test]
    fn eh_frame_hdr_tables_are_read() {
        // version 1, pcrel|sdata4 pointer, udata4 count, datarel|sdata4 table; 2 entries.
        let mut hdr = vec![1, 0x1b, 0x03, 0x3b];
        hdr.extend_from_slice(&100i32.to_le_bytes());
        hdr.extend_from_slice(&2u32.to_le_bytes());
        for (start, fde) in [(-0x100i32, 0x10i32), (-0x80, 0x20)] {
            hdr.extend_from_slice(&start.to_le_bytes());
            hdr.extend_from_slice(&fde.to_le_bytes());
        }
        assert_eq!(
            eh_frame_hdr_starts(&hdr, 0x2000),
            Some(vec![0x1f00, 0x1f80])
        );
        // A count larger than the table, or an encoding we do not read: nothing.
        let mut short = hdr.clone();
        short[8] = 9;
        assert_eq!(eh_frame_hdr_starts(&short, 0x2000), None);
        let mut odd = hdr;
        odd[3] = 0x1b;
        assert_eq!(eh_frame_hdr_starts(&odd, 0x2000), None);
    }

    /// glibc's own shared object has a dynamic symbol table with pthread_mutex_lock.
    #[test]
    fn exports_of_libc_are_found() {
        let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
        if libc.exists() {
            assert!(export_opens_frame(libc, "pthread_mutex_lock").is_some());
            assert!(export_opens_frame(libc, "no_such_function_xyz").is_none());
        }
    }
}
