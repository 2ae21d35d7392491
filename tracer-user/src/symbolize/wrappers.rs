//! wrappers: lock wrappers found from their code on disk. A function such as RocksDB's
//! `port::Mutex::Lock()` checks `pthread_mutex_lock`'s result, so it keeps its own frame and
//! would become "the lock site" for every caller. Here a stack's first frames outside the
//! known lock code are read from their ELF file. A small function only forwards to the lock,
//! and is counted as lock code (`Profile::lock_wrappers`), when:
//! - every call it makes takes a lock or sleeps for one, apart from an error path that ends
//!   in a call that never returns (`abort`, `__stack_chk_fail`, `std::__throw_system_error`);
//! - it has no loop of its own (a loop waits for something itself);
//! - it releases nothing (lock, work, unlock is a lock site, not a wrapper).
//!
//! Verdicts are cached per module and function.
use std::collections::HashMap;

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use object::read::elf::ElfFile64;
use object::{
    Endianness, Object, ObjectSegment, ObjectSymbol, ObjectSymbolTable, RelocationTarget,
    SymbolKind,
};

use super::callees::{demangle, is_lock_primitive, never_returns, releases};
use crate::profile::{is_lock_code, Profile};

/// Larger functions do more than forward (RocksDB's `Mutex::Lock()` is 0x9a bytes).
const MAX_WRAPPER_BYTES: u64 = 0x200;
/// A wrapper of a wrapper of a lock is still a wrapper; deeper chains are not followed.
const MAX_DEPTH: u32 = 3;

/// Lock wrappers' verdicts, cached across profiles (a `top` refresh reuses them).
#[derive(Default)]
pub struct Forwarders {
    files: HashMap<String, Option<ElfCode>>,
    verdicts: HashMap<(String, u64), bool>,
}

impl Forwarders {
    /// Adds to `profile.lock_wrappers` each function that only forwards to a lock primitive,
    /// among the frames from a stack's innermost up to the first that is not lock code.
    pub fn mark(&mut self, profile: &mut Profile) {
        let mut found = Vec::new();
        for stack in &profile.stacks {
            for f in &stack.frames {
                let Some(first) = f.syms.iter().position(|s| !is_lock_code(profile, &s.name))
                else {
                    continue;
                };
                // Only the frame's own (outermost, not inlined) function has code of its own.
                let own = f.syms.len() - 1;
                let module = f.module.and_then(|m| profile.modules.get(m));
                let (true, Some(module), Some(offset)) = (first == own, module, f.offset) else {
                    break;
                };
                let offset = if f.ret {
                    offset.saturating_sub(1)
                } else {
                    offset
                };
                if !self.is_forwarder(&module.path, offset) {
                    break;
                }
                found.push(f.syms[own].name.clone());
            }
        }
        profile.lock_wrappers.extend(found);
    }

    /// Whether the function holding file offset `offset` of `path` only forwards to a lock.
    fn is_forwarder(&mut self, path: &str, offset: u64) -> bool {
        let code = self
            .files
            .entry(path.to_string())
            .or_insert_with(|| ElfCode::read(path));
        let Some(code) = code.as_ref() else {
            return false;
        };
        let Some(func) = code.vaddr_of(offset).and_then(|a| code.function_at(a)) else {
            return false;
        };
        *self
            .verdicts
            .entry((path.to_string(), func.addr))
            .or_insert_with(|| code.forwards(func, 0))
    }
}

#[derive(Debug, Clone, Copy)]
struct Func {
    addr: u64,
    size: u64,
}

/// What a verdict needs of one ELF file: its code, its functions, and its GOT slots' names.
struct ElfCode {
    data: Vec<u8>,
    /// (vaddr, file offset, file size) of each loadable segment.
    segments: Vec<(u64, u64, u64)>,
    /// Function symbols by address: (addr, size, mangled name).
    funcs: Vec<(u64, u64, String)>,
    by_name: HashMap<String, usize>,
    /// GOT slot → imported symbol name (jump slots and GLOB_DAT).
    got: HashMap<u64, String>,
}

impl ElfCode {
    fn read(path: &str) -> Option<ElfCode> {
        let data = read_regular_file(path)?;
        let elf = ElfFile64::<Endianness>::parse(&*data).ok()?;
        let segments: Vec<(u64, u64, u64)> = elf
            .segments()
            .map(|s| {
                let (off, size) = s.file_range();
                (s.address(), off, size)
            })
            .filter(|s| s.2 > 0)
            .collect();
        let mut funcs: Vec<(u64, u64, String)> = elf
            .symbols()
            .chain(elf.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0 && s.address() > 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
            .collect();
        funcs.sort();
        funcs.dedup_by_key(|f| f.0);
        let mut got = HashMap::new();
        let dynsym = elf.dynamic_symbol_table();
        for (slot, r) in elf.dynamic_relocations().into_iter().flatten() {
            let RelocationTarget::Symbol(i) = r.target() else {
                continue;
            };
            if let Some(name) = dynsym
                .as_ref()
                .and_then(|t| t.symbol_by_index(i).ok())
                .and_then(|s| s.name().ok())
            {
                got.insert(slot, name.to_string());
            }
        }
        drop(elf);
        let by_name = funcs
            .iter()
            .enumerate()
            .map(|(i, f)| (f.2.clone(), i))
            .collect();
        Some(ElfCode {
            data,
            segments,
            funcs,
            by_name,
            got,
        })
    }

    fn vaddr_of(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|&&(_, off, size)| (off..off + size).contains(&offset))
            .map(|&(va, off, _)| va + (offset - off))
    }

    fn bytes(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let &(va, off, size) = self
            .segments
            .iter()
            .find(|&&(va, _, size)| (va..va + size).contains(&addr))?;
        let start = off + (addr - va);
        let end = (start + len).min(off + size);
        self.data.get(start as usize..end as usize)
    }

    fn function_at(&self, addr: u64) -> Option<Func> {
        let i = self.funcs.partition_point(|f| f.0 <= addr).checked_sub(1)?;
        let (a, size, _) = self.funcs[i];
        (addr < a + size).then_some(Func { addr: a, size })
    }

    /// The name a call to `target` reaches: a function here, or the import behind a PLT stub.
    fn callee(&self, target: u64) -> Option<(String, Option<Func>)> {
        if let Ok(i) = self.funcs.binary_search_by_key(&target, |f| f.0) {
            let (a, size, ref name) = self.funcs[i];
            return Some((name.clone(), Some(Func { addr: a, size })));
        }
        // A PLT stub: [endbr64] [bnd] jmp [rip+disp] → a GOT slot.
        let code = self.bytes(target, 16)?;
        let mut d = Decoder::with_ip(64, code, target, DecoderOptions::NONE);
        for _ in 0..2 {
            let insn = d.decode();
            if insn.mnemonic() == Mnemonic::Jmp && insn.is_ip_rel_memory_operand() {
                let name = self.got.get(&insn.ip_rel_memory_address())?.clone();
                let local = self.by_name.get(&name).map(|&i| Func {
                    addr: self.funcs[i].0,
                    size: self.funcs[i].1,
                });
                return Some((name, local));
            }
            if insn.mnemonic() != Mnemonic::Endbr64 {
                break;
            }
        }
        None
    }

    /// The verdict on one function (see the module doc).
    fn forwards(&self, func: Func, depth: u32) -> bool {
        if func.size > MAX_WRAPPER_BYTES || depth > MAX_DEPTH {
            return false;
        }
        let Some(code) = self.bytes(func.addr, func.size) else {
            return false;
        };
        let insns: Vec<Instruction> = Decoder::with_ip(64, code, func.addr, DecoderOptions::NONE)
            .into_iter()
            .collect();
        let inside = |t: u64| (func.addr..func.addr + func.size).contains(&t);
        let mut locks = 0;
        for (i, insn) in insns.iter().enumerate() {
            // A loop (a branch back) does work of its own: waiting for an event, spinning.
            if matches!(
                flow(insn),
                FlowControl::UnconditionalBranch | FlowControl::Other
            ) && inside(insn.near_branch_target())
                && insn.near_branch_target() <= insn.ip()
            {
                return false;
            }
            let target = match flow(insn) {
                FlowControl::Call | FlowControl::IndirectCall => self.call_target(insn),
                FlowControl::UnconditionalBranch if !inside(insn.near_branch_target()) => {
                    // A jump out: a tail call, or the function's cold part (an error path).
                    match self.callee(insn.near_branch_target()) {
                        Some((name, f)) => match self.kind(&name, f, depth) {
                            Callee::Lock => {
                                locks += 1;
                                continue;
                            }
                            _ if name.ends_with(".cold") => continue,
                            _ => return false,
                        },
                        None => continue,
                    }
                }
                FlowControl::IndirectBranch => return false,
                _ => continue,
            };
            let Some((name, f)) = target else {
                return false;
            };
            match self.kind(&name, f, depth) {
                Callee::Lock => locks += 1,
                Callee::NoReturn => {}
                Callee::Other if on_error_path(&insns[i + 1..], self, depth) => {}
                Callee::Other => return false,
            }
        }
        locks > 0
    }

    fn call_target(&self, insn: &Instruction) -> Option<(String, Option<Func>)> {
        match insn.op0_kind() {
            OpKind::NearBranch64 => self.callee(insn.near_branch64()),
            OpKind::Memory if insn.memory_base() == Register::RIP => self
                .got
                .get(&insn.ip_rel_memory_address())
                .map(|n| (n.clone(), None)),
            _ => None,
        }
    }

    fn kind(&self, mangled: &str, local: Option<Func>, depth: u32) -> Callee {
        let name = demangle(mangled);
        let name = name.split('@').next().unwrap_or(&name);
        // A function that also releases (unlock, wake) holds the lock for work of its own: it
        // is where the lock was taken, not a wrapper around taking it.
        if releases(name) {
            return Callee::Other;
        }
        if is_lock_primitive(name) {
            return Callee::Lock;
        }
        if never_returns(name) {
            return Callee::NoReturn;
        }
        match local {
            Some(f) if self.forwards(f, depth + 1) => Callee::Lock,
            _ => Callee::Other,
        }
    }
}

/// How an instruction moves control, from its mnemonic and operands (the decoder's own
/// flow-control table needs a feature this build leaves out).
enum FlowControl {
    Next,
    Call,
    IndirectCall,
    UnconditionalBranch,
    IndirectBranch,
    Other,
}

fn flow(insn: &Instruction) -> FlowControl {
    let direct = matches!(
        insn.op0_kind(),
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
    );
    match insn.mnemonic() {
        Mnemonic::Call if direct => FlowControl::Call,
        Mnemonic::Call => FlowControl::IndirectCall,
        Mnemonic::Jmp if direct => FlowControl::UnconditionalBranch,
        Mnemonic::Jmp => FlowControl::IndirectBranch,
        Mnemonic::Ret | Mnemonic::Int3 | Mnemonic::Ud2 | Mnemonic::Hlt => FlowControl::Other,
        _ if direct => FlowControl::Other,
        _ => FlowControl::Next,
    }
}

/// Files larger than this are not read for wrappers (a 100 MB C++ server is well under it).
const MAX_FILE_BYTES: u64 = 1 << 30;

/// A module's bytes, only if it is a regular file of sane size: the path comes from the
/// target's maps, so it may since have been replaced by a FIFO (opened without blocking) or
/// something huge.
fn read_regular_file(path: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return None;
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut data).ok()?;
    Some(data)
}

enum Callee {
    Lock,
    NoReturn,
    Other,
}

/// True when the straight-line code after a call reaches a call that never returns before
/// any branch or return: the call was on the way to `abort()` (printing why, freeing a string).
fn on_error_path(after: &[Instruction], code: &ElfCode, depth: u32) -> bool {
    for insn in after {
        match flow(insn) {
            FlowControl::Next => {}
            FlowControl::Call | FlowControl::IndirectCall => match code.call_target(insn) {
                Some((name, f)) => match code.kind(&name, f, depth) {
                    Callee::NoReturn => return true,
                    Callee::Other => {}
                    Callee::Lock => return false,
                },
                None => return false,
            },
            _ => return false,
        }
    }
    false
}
