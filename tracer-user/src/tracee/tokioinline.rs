//! tokioinline: tokio's `<batch_semaphore::Acquire as Future>::poll` where fat LTO inlined it
//! into the user's async fns and left no out-of-line copy. Each inline instance in the
//! executable's DWARF (`DW_TAG_inlined_subroutine` whose abstract origin is `poll`) becomes a
//! probe site: its entry pc (`DW_AT_entry_pc`, else `DW_AT_low_pc`, else its first range),
//! checked to start an instruction of the function around it, and where its `self` parameter
//! (the `Acquire`'s address) is at that pc, from the inlined formal parameter's
//! `DW_AT_location`: a register, or the word at a register plus an offset. A site whose
//! `self` is anywhere else (no location, as `debug = "limited"` leaves it, or a composite
//! expression) is skipped and counted. `Semaphore::release`, which the same builds inline into
//! the guards' drops, is found the same way (its `self` is the semaphore).
use std::borrow::Cow;

use anyhow::{bail, Context, Result};
use gimli::{AttributeValue, EndianSlice, Operation, RunTimeEndian, UnitSectionOffset};
use object::{Object, ObjectSection, ObjectSymbol};
use tracer_common::SELF_IN_MEMORY;

use crate::sys::instruction_starts;

/// Where `self` is at an inline site's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfAt {
    /// In DWARF x86-64 register n (0–15).
    Reg(u16),
    /// The word at register n plus the offset.
    Mem(u16, i32),
}

/// The word of x86-64 `struct pt_regs` that holds DWARF register n (0–15): rax, rdx, rcx,
/// rbx, rsi, rdi, rbp, rsp, r8–r15.
const PT_REGS_WORD: [u64; 16] = [10, 12, 11, 5, 13, 14, 4, 19, 9, 8, 7, 6, 3, 2, 1, 0];

impl SelfAt {
    /// The attach cookie `tokio_poll_at` reads (see `tracer_common::SELF_IN_MEMORY`).
    pub fn cookie(self) -> u64 {
        let word = |r: u16| PT_REGS_WORD[usize::from(r) & 15];
        match self {
            SelfAt::Reg(r) => word(r),
            SelfAt::Mem(r, off) => word(r) | SELF_IN_MEMORY | (u64::from(off as u32) << 32),
        }
    }
}

/// One inline instance of `poll`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InlineSite {
    /// File offset of its entry pc.
    pub offset: u64,
    pub self_at: SelfAt,
}

/// A function's inline instances: those probed, and how many DWARF has in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inlined {
    pub sites: Vec<InlineSite>,
    pub found: usize,
    /// Why the first skipped site was skipped (`None`: none was).
    pub skipped_why: Option<String>,
}

type R<'a> = EndianSlice<'a, RunTimeEndian>;
type Dwarf<'a> = gimli::Dwarf<R<'a>>;
type Unit<'a> = gimli::Unit<R<'a>>;
type Die<'a> = gimli::DebuggingInformationEntry<R<'a>>;

/// The inline sites of the function whose linkage name demangles (without its hash) to
/// `want`. Errors when the executable has no DWARF, no inline instance of it, or none whose
/// `self` can be read at its entry (with the reason).
pub fn inline_sites(obj: &object::File<'_>, file: &[u8], want: &str) -> Result<Inlined> {
    if obj.section_by_name(".debug_info").is_none() {
        bail!("`{want}` is inlined (fat LTO?) and the executable has no DWARF (.debug_info) to find its inline sites; build with `debug = 2` (and without `strip`) to trace them");
    }
    let endian = RunTimeEndian::Little;
    let load = |id: gimli::SectionId| -> Result<Cow<'_, [u8]>> {
        Ok(match obj.section_by_name(id.name()) {
            Some(s) => s
                .uncompressed_data()
                .with_context(|| format!("reading {}", id.name()))?,
            None => Cow::Borrowed(&[][..]),
        })
    };
    let owned = gimli::DwarfSections::load(load)?;
    let dwarf = owned.borrow(|s| EndianSlice::new(s, endian));
    let (origins, selves) = poll_subprograms(&dwarf, want)?;
    if origins.is_empty() {
        bail!("no out-of-line `{want}` in the symbol table, and no DWARF entry for it (another layout)");
    }
    let mut out = Inlined {
        sites: Vec::new(),
        found: 0,
        skipped_why: None,
    };
    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        let unit = dwarf.unit(header)?;
        let mut cursor = unit.entries();
        // (depth, entry pc) of the inline instance whose children are being read.
        let mut open: Option<(isize, u64)> = None;
        while let Some(e) = cursor.next_dfs()? {
            if let Some((depth, pc)) = open {
                if e.depth() <= depth {
                    skip(&mut out, "DWARF gives no location of its `self` (built with `debug = \"limited\"` or less?); build with `debug = 2` to trace it");
                    open = None;
                } else if e.tag() == gimli::DW_TAG_formal_parameter
                    && e.depth() == depth + 1
                    && e.attr_value(gimli::DW_AT_abstract_origin)
                        .and_then(|v| global(&unit, v))
                        .is_some_and(|o| selves.contains(&o))
                {
                    match self_at(&dwarf, &unit, e, pc).and_then(|s| checked(obj, file, pc, s)) {
                        Ok(site) => out.sites.push(site),
                        Err(why) => skip(&mut out, &format!("{why:#}")),
                    }
                    open = None;
                    continue;
                }
            }
            if e.tag() != gimli::DW_TAG_inlined_subroutine {
                continue;
            }
            let Some(origin) = e
                .attr_value(gimli::DW_AT_abstract_origin)
                .and_then(|v| global(&unit, v))
            else {
                continue;
            };
            if !origins.contains(&origin) {
                continue;
            }
            out.found += 1;
            match entry_pc(&dwarf, &unit, e)? {
                Some(pc) => open = Some((e.depth(), pc)),
                None => skip(&mut out, "its DWARF entry has no address"),
            }
        }
        if open.is_some() {
            skip(&mut out, "DWARF gives no location of its `self`");
        }
    }
    if out.found == 0 {
        bail!("`{want}` has no out-of-line copy and no DWARF inline sites (another layout)");
    }
    if out.sites.is_empty() {
        bail!(
            "`{want}` is inlined (fat LTO?) at {} DWARF inline site(s), and none can be probed: {}",
            out.found,
            out.skipped_why.as_deref().unwrap_or("no reason recorded")
        );
    }
    Ok(out)
}

fn skip(out: &mut Inlined, why: &str) {
    out.skipped_why.get_or_insert_with(|| why.to_string());
}

/// The section offsets of the subprogram DIEs of `want` (the inline sites' abstract
/// origins), and of their `self` parameters.
type Origins = (Vec<UnitSectionOffset>, Vec<UnitSectionOffset>);

fn poll_subprograms(dwarf: &Dwarf<'_>, want: &str) -> Result<Origins> {
    let (mut subs, mut selves) = (Vec::new(), Vec::new());
    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        let unit = dwarf.unit(header)?;
        let mut cursor = unit.entries();
        // The depth of the matching subprogram whose children are being read.
        let mut inside: Option<isize> = None;
        while let Some(e) = cursor.next_dfs()? {
            let name = |at| {
                e.attr_value(at)
                    .and_then(|v| dwarf.attr_string(&unit, v).ok())
                    .map(|n| String::from_utf8_lossy(n.slice()).into_owned())
            };
            if let Some(depth) = inside {
                if e.depth() <= depth {
                    inside = None;
                } else {
                    if e.depth() == depth + 1
                        && e.tag() == gimli::DW_TAG_formal_parameter
                        && name(gimli::DW_AT_name).as_deref() == Some("self")
                    {
                        selves.push(e.offset().to_unit_section_offset(&unit.header));
                    }
                    continue;
                }
            }
            if e.tag() != gimli::DW_TAG_subprogram {
                continue;
            }
            // An abstract instance often names itself only through its declaration.
            let Some(linkage) = name(gimli::DW_AT_linkage_name).or_else(|| {
                let decl = match e.attr_value(gimli::DW_AT_specification)? {
                    AttributeValue::UnitRef(o) => o,
                    AttributeValue::DebugInfoRef(o) => o.to_unit_offset(&unit.header)?,
                    _ => return None,
                };
                let d = unit.entry(decl).ok()?;
                let v = dwarf.attr_string(&unit, d.attr_value(gimli::DW_AT_linkage_name)?);
                Some(String::from_utf8_lossy(v.ok()?.slice()).into_owned())
            }) else {
                continue;
            };
            if format!("{:#}", rustc_demangle::demangle(&linkage)) == want {
                subs.push(e.offset().to_unit_section_offset(&unit.header));
                inside = Some(e.depth());
            }
        }
    }
    Ok((subs, selves))
}

/// A DIE reference as a section-wide offset.
fn global(unit: &Unit<'_>, v: AttributeValue<R<'_>>) -> Option<UnitSectionOffset> {
    match v {
        AttributeValue::UnitRef(o) => Some(o.to_unit_section_offset(&unit.header)),
        AttributeValue::DebugInfoRef(o) => Some(UnitSectionOffset(o.0)),
        _ => None,
    }
}

/// The inline instance's entry pc: `DW_AT_entry_pc`, else `DW_AT_low_pc`, else the start of
/// its first range.
fn entry_pc<'a>(dwarf: &Dwarf<'a>, unit: &Unit<'a>, e: &Die<'a>) -> Result<Option<u64>> {
    for at in [gimli::DW_AT_entry_pc, gimli::DW_AT_low_pc] {
        if let Some(v) = e.attr_value(at) {
            if let Some(pc) = dwarf.attr_address(unit, v)? {
                return Ok(Some(pc));
            }
        }
    }
    let mut ranges = dwarf.die_ranges(unit, e)?;
    Ok(ranges.next()?.map(|r| r.begin))
}

/// Where the parameter `e` is at `pc`: a register, or the word at a register plus an offset.
fn self_at<'a>(dwarf: &Dwarf<'a>, unit: &Unit<'a>, e: &Die<'a>, pc: u64) -> Result<SelfAt> {
    let expr = match e.attr_value(gimli::DW_AT_location) {
        None => bail!("DWARF gives no location of its `self` (built with `debug = \"limited\"` or less?); build with `debug = 2` to trace it"),
        Some(AttributeValue::Exprloc(x)) => x,
        Some(v) => {
            let mut list = dwarf
                .attr_locations(unit, v)?
                .context("`self`'s location is neither an expression nor a location list")?;
            let mut found = None;
            while let Some(l) = list.next()? {
                if l.range.begin <= pc && pc < l.range.end {
                    found = Some(l.data);
                    break;
                }
            }
            found.with_context(|| format!("`self` has no location at the site's entry {pc:#x}"))?
        }
    };
    let mut ops = expr.operations(unit.encoding());
    let first = ops.next()?;
    let at = match first {
        Some(Operation::Register { register }) if register.0 < 16 => SelfAt::Reg(register.0),
        Some(Operation::RegisterOffset {
            register, offset, ..
        }) if register.0 < 16 => SelfAt::Mem(
            register.0,
            i32::try_from(offset).context("`self`'s stack offset does not fit 32 bits")?,
        ),
        other => {
            bail!("`self` is not in a register or at a register plus an offset there ({other:?})")
        }
    };
    if ops.next()?.is_some() {
        bail!("`self`'s location at the site's entry is a composite DWARF expression");
    }
    Ok(at)
}

/// The site at `pc`, checked: inside a function symbol in an executable section, and the
/// start of one of its instructions decoded from the function's entry.
fn checked(obj: &object::File<'_>, file: &[u8], pc: u64, self_at: SelfAt) -> Result<InlineSite> {
    let sym = obj
        .symbols()
        .find(|s| {
            s.kind() == object::SymbolKind::Text && s.address() <= pc && pc < s.address() + s.size()
        })
        .with_context(|| format!("its entry {pc:#x} lies in no function symbol"))?;
    let section = obj
        .sections()
        .find(|s| s.address() <= sym.address() && sym.address() < s.address() + s.size())
        .context("its function lies in no section")?;
    let executable = matches!(
        section.flags(),
        object::SectionFlags::Elf { sh_flags } if sh_flags & u64::from(object::elf::SHF_EXECINSTR) != 0
    );
    anyhow::ensure!(executable, "its function is not in executable code");
    let (sec_off, _) = section.file_range().context("no file data")?;
    let start = sec_off + (sym.address() - section.address());
    let bytes = file
        .get(start as usize..(start + sym.size()) as usize)
        .context("its function runs past the end of the file")?;
    let starts = instruction_starts(bytes, 0).context("its function does not decode as x86-64")?;
    let at = pc - sym.address();
    anyhow::ensure!(
        starts.binary_search(&at).is_ok(),
        "its entry {pc:#x} is not an instruction boundary of its function"
    );
    Ok(InlineSite {
        offset: start + at,
        self_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_say_where_self_is() {
        // rdi is pt_regs word 14, rbp word 4.
        assert_eq!(SelfAt::Reg(5).cookie(), 14);
        let c = SelfAt::Mem(6, -120).cookie();
        assert_eq!(c & 0xff, 4);
        assert_ne!(c & SELF_IN_MEMORY, 0);
        assert_eq!((c >> 32) as i32, -120);
    }
}
