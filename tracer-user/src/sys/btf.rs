//! btf: one fact from the kernel's own BTF (`/sys/kernel/btf/vmlinux`) that aya does not expose:
//! the byte offset of a struct's member. The scheduler hooks read `task_struct.pid` of a task
//! the hook is handed (not `current`), by that offset.
//!
//! The format (include/uapi/linux/btf.h): a header, then the type section (each type a
//! `btf_type` of three u32 — name offset, info, size/type — followed by data whose length its
//! kind fixes), then the string section.
use std::path::Path;

use anyhow::{bail, Context, Result};

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;

/// The kernel's BTF, read once.
pub fn vmlinux() -> Result<Vec<u8>> {
    let path = Path::new("/sys/kernel/btf/vmlinux");
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The byte offset of `member` in the first complete struct named `name` in the BTF `data`.
pub fn member_offset(data: &[u8], name: &str, member: &str) -> Result<u32> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
    };
    let magic = data.get(0..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    if magic != Some(MAGIC) {
        bail!("not BTF (no 0xeb9f magic; only little-endian BTF is read)");
    }
    let short = || anyhow::anyhow!("BTF cut short");
    let hdr_len = u32_at(4).ok_or_else(short)? as usize;
    let (type_off, type_len) = (u32_at(8).ok_or_else(short)?, u32_at(12).ok_or_else(short)?);
    let str_off = u32_at(16).ok_or_else(short)? as usize;
    let types = hdr_len + type_off as usize;
    let strings = hdr_len + str_off;
    let string = |off: u32| -> &[u8] {
        let s = data.get(strings + off as usize..).unwrap_or(&[]);
        &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
    };
    let end = types + type_len as usize;
    let mut at = types;
    while at + 12 <= end {
        let (name_off, info) = (
            u32_at(at).ok_or_else(short)?,
            u32_at(at + 4).ok_or_else(short)?,
        );
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let kflag = info >> 31 == 1;
        if kind == KIND_STRUCT && vlen > 0 && string(name_off) == name.as_bytes() {
            for m in 0..vlen {
                let rec = at + 12 + m * 12;
                if string(u32_at(rec).ok_or_else(short)?) == member.as_bytes() {
                    let bits = u32_at(rec + 8).ok_or_else(short)?;
                    // With kflag the high byte is a bitfield's size; a bitfield has no byte offset.
                    let bit_offset = if kflag { bits & 0x00ff_ffff } else { bits };
                    if bit_offset % 8 != 0 {
                        bail!("{name}.{member} is a bitfield");
                    }
                    return Ok(bit_offset / 8);
                }
            }
            bail!("struct {name} has no member {member}");
        }
        at += 12 + extra(kind, vlen).with_context(|| format!("BTF kind {kind} unknown"))?;
    }
    bail!("no struct {name} in the BTF")
}

/// The bytes that follow a `btf_type` of `kind` with `vlen` entries.
fn extra(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        // INT, VAR, DECL_TAG: one u32.
        1 | 14 | 17 => 4,
        // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG: nothing.
        2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
        // ARRAY: elem type, index type, count.
        3 => 12,
        // STRUCT, UNION, DATASEC, ENUM64: 12 bytes per entry.
        4 | 5 | 15 | 19 => 12 * vlen,
        // ENUM, FUNC_PROTO: 8 bytes per entry.
        6 | 13 => 8 * vlen,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob: an INT, then `struct task_struct { int state; int pid; int tgid; }`.
    fn blob(kflag: bool) -> Vec<u8> {
        let strings = b"\0int\0task_struct\0state\0pid\0tgid\0".to_vec();
        let mut types = Vec::new();
        let mut push = |v: u32| types.extend_from_slice(&v.to_le_bytes());
        // INT "int": size 4, encoding word.
        push(1);
        push(1 << 24);
        push(4);
        push(32);
        // STRUCT "task_struct", 3 members.
        push(5);
        push((4 << 24) | 3 | if kflag { 1 << 31 } else { 0 });
        push(12);
        for (name, bits) in [(17u32, 0u32), (23, 32), (27, 64)] {
            push(name);
            push(1);
            push(bits);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for v in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn finds_a_member_and_says_what_is_missing() {
        for kflag in [false, true] {
            let b = blob(kflag);
            assert_eq!(member_offset(&b, "task_struct", "pid").unwrap(), 4);
            assert_eq!(member_offset(&b, "task_struct", "tgid").unwrap(), 8);
            let e = member_offset(&b, "task_struct", "comm").unwrap_err();
            assert_eq!(e.to_string(), "struct task_struct has no member comm");
            let e = member_offset(&b, "mm_struct", "pid").unwrap_err();
            assert_eq!(e.to_string(), "no struct mm_struct in the BTF");
        }
        assert!(member_offset(b"junk", "task_struct", "pid").is_err());
    }

    #[test]
    fn the_running_kernel_has_pid_then_tgid() {
        let Ok(b) = vmlinux() else {
            return;
        };
        let pid = member_offset(&b, "task_struct", "pid").unwrap();
        assert_eq!(member_offset(&b, "task_struct", "tgid").unwrap(), pid + 4);
        assert!(pid > 0, "{pid}");
    }
}
