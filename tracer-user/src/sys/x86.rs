//! x86: the few x86-64 instruction facts lockscope reads from code bytes — whether a return
//! address follows a call, whether a function opens a frame, and (decoded with iced-x86, for
//! probe placement in Go code) where a function returns and where it calls another.
/// True if the bytes ending at a candidate return address end with an x86-64 call
/// instruction: `call rel32` (E8), or an indirect `call r/m` (FF /2) in its common forms.
pub fn preceded_by_call(before: &[u8]) -> bool {
    let n = before.len();
    let at = |back: usize| (back <= n).then(|| before[n - back]);
    let modrm_is_call = |m: u8| (m >> 3) & 7 == 2;
    // call rel32
    if at(5) == Some(0xE8) {
        return true;
    }
    // call reg (FF D0+r): mod=11
    if at(2) == Some(0xFF) && at(1).is_some_and(|m| m >> 6 == 3 && modrm_is_call(m)) {
        return true;
    }
    // call [reg] (mod=00, no SIB/disp), call [reg+disp8] (mod=01), call [rip+disp32]
    if at(2) == Some(0xFF)
        && at(1).is_some_and(|m| m >> 6 == 0 && modrm_is_call(m) && m & 7 != 4 && m & 7 != 5)
    {
        return true;
    }
    if at(3) == Some(0xFF) && at(2).is_some_and(|m| m >> 6 == 1 && modrm_is_call(m) && m & 7 != 4) {
        return true;
    }
    if at(4) == Some(0xFF) && at(3).is_some_and(|m| m >> 6 == 1 && modrm_is_call(m) && m & 7 == 4) {
        return true;
    }
    if at(6) == Some(0xFF) && at(5).is_some_and(|m| modrm_is_call(m) && (m == 0x15 || m >> 6 == 2))
    {
        return true;
    }
    false
}

/// True when `code` opens with `push rbp; mov rbp, rsp` (after an optional
/// `endbr64`).
pub fn opens_frame(code: &[u8]) -> bool {
    let body = match code.strip_prefix(&[0xf3, 0x0f, 0x1e, 0xfa]) {
        Some(rest) => rest,
        None => code,
    };
    body.starts_with(&[0x55, 0x48, 0x89, 0xe5])
}

/// True when `code` (a function's first bytes) sets up a frame pointer: `mov rbp, rsp` in
/// either encoding, at entry or a few instructions in (compilers schedule other instructions
/// between `push rbp` and it, or shrink-wrap the prologue past an early exit). Code built
/// without frame pointers uses rbp as a plain register and never moves rsp into it.
pub fn sets_up_frame(code: &[u8]) -> bool {
    opens_frame(code)
        || code
            .windows(3)
            .any(|w| w == [0x48, 0x89, 0xe5] || w == [0x48, 0x8b, 0xec])
}

/// Offsets (from the start of `code`, which sits at `ip`) of its `ret` instructions. Decoded
/// instruction by instruction: a C3 byte inside another instruction is not a return.
pub fn return_offsets(code: &[u8], ip: u64) -> Vec<u64> {
    decode(code, ip, |insn| insn.mnemonic() == iced_x86::Mnemonic::Ret)
}

/// Offsets of the jumps in `code` (at `ip`) that leave it (a tail call, an indirect jump):
/// a function left that way passes none of its `ret`s.
pub fn jumps_out(code: &[u8], ip: u64) -> Vec<u64> {
    let end = ip + code.len() as u64;
    decode(code, ip, |insn| {
        let call = insn.mnemonic() == iced_x86::Mnemonic::Call;
        if insn.op0_kind() == iced_x86::OpKind::NearBranch64 {
            // jmp, jcc, loop…: out of the function's bytes.
            !call && !(ip..end).contains(&insn.near_branch64())
        } else {
            // Indirect or far.
            insn.mnemonic() == iced_x86::Mnemonic::Jmp
        }
    })
}

/// Offsets of the direct calls to `target` in `code` (at `ip`).
pub fn call_offsets(code: &[u8], ip: u64, target: u64) -> Vec<u64> {
    decode(code, ip, |insn| {
        insn.mnemonic() == iced_x86::Mnemonic::Call
            && insn.op0_kind() == iced_x86::OpKind::NearBranch64
            && insn.near_branch64() == target
    })
}

/// Where a function's prologue leaves its return address, as an offset from the stack
/// pointer: the pushes and the first `sub rsp, imm` in its first few instructions (Go: after
/// the stack-bound check; Go 1.19 saves rbp inside the `sub`, Go 1.21+ pushes it first).
pub fn frame_size(code: &[u8], ip: u64) -> Option<u32> {
    let mut d = iced_x86::Decoder::with_ip(64, code, ip, iced_x86::DecoderOptions::NONE);
    let mut pushed = 0u32;
    for _ in 0..8 {
        if !d.can_decode() {
            break;
        }
        let insn = d.decode();
        if insn.mnemonic() == iced_x86::Mnemonic::Push {
            pushed += 8;
        }
        if insn.mnemonic() == iced_x86::Mnemonic::Sub
            && insn.op0_register() == iced_x86::Register::RSP
        {
            return u32::try_from(insn.immediate(1)).ok()?.checked_add(pushed);
        }
    }
    None
}

/// True if the code stores RAX at `[rsp + disp]` (Go spilling its first register argument).
pub fn stores_rax_at(code: &[u8], ip: u64, disp: u32) -> bool {
    !decode(code, ip, |insn| {
        insn.mnemonic() == iced_x86::Mnemonic::Mov
            && insn.op0_kind() == iced_x86::OpKind::Memory
            && insn.memory_base() == iced_x86::Register::RSP
            && insn.memory_index() == iced_x86::Register::None
            && insn.memory_displacement64() == u64::from(disp)
            && insn.op1_register() == iced_x86::Register::RAX
    })
    .is_empty()
}

/// Where `code` (at `ip`) calls a function with a closure it built on its stack, as Go
/// compiles `systemstack(func() { ... })`: `lea reg, [rip+F]` (F one of `closures`, the
/// closure's function), `mov [rsp+d], reg`, `mov [rsp+d+8], r` (its first captured variable),
/// `lea rax, [rsp+d]`, then only stores (`mov [rsp], rax`) and nops up to a direct `call`.
/// The offset of that call: there RAX points at the closure, and its first capture is at
/// RAX+8. Any other instruction in between (one that could change RAX or the slots) rejects
/// the site.
pub fn closure_call(code: &[u8], ip: u64, closures: &[u64]) -> Option<u64> {
    use iced_x86::{Mnemonic, OpKind, Register};
    let mut d = iced_x86::Decoder::with_ip(64, code, ip, iced_x86::DecoderOptions::NONE);
    let mut insns = Vec::new();
    while d.can_decode() {
        let at = d.position() as u64;
        insns.push((at, d.decode()));
    }
    let on_stack = |i: &iced_x86::Instruction| {
        (i.memory_base() == Register::RSP && i.memory_index() == Register::None)
            .then(|| i.memory_displacement64())
    };
    for (n, (_, lea)) in insns.iter().enumerate() {
        let loads_fn = lea.mnemonic() == Mnemonic::Lea
            && lea.is_ip_rel_memory_operand()
            && closures.contains(&lea.ip_rel_memory_address());
        if !loads_fn {
            continue;
        }
        let (mut base, mut captured, mut rax_at_closure) = (None, false, false);
        for (at, i) in &insns[n + 1..] {
            let store = i.mnemonic() == Mnemonic::Mov
                && i.op0_kind() == OpKind::Memory
                && i.op1_kind() == OpKind::Register;
            match (i.mnemonic(), on_stack(i)) {
                (Mnemonic::Mov, Some(disp)) if store && !rax_at_closure => {
                    if base.is_none() && i.op1_register() == lea.op0_register() {
                        base = Some(disp);
                    } else if base.map(|b| b + 8) == Some(disp) {
                        captured = true;
                    }
                }
                (Mnemonic::Mov, Some(_)) if store && i.op1_register() == Register::RAX => {}
                (Mnemonic::Lea, Some(disp))
                    if i.op0_register() == Register::RAX && base == Some(disp) =>
                {
                    rax_at_closure = true;
                }
                // Padding (the external linker's build aligns the call).
                (Mnemonic::Nop, _) => {}
                (Mnemonic::Call, _) if i.op0_kind() == OpKind::NearBranch64 => {
                    if rax_at_closure && captured {
                        return Some(*at);
                    }
                    break;
                }
                _ => break,
            }
        }
    }
    None
}

/// Offsets of every instruction of `code` (at `ip`), decoded one after another from its
/// start; `None` if an invalid encoding comes first (the bytes are not code from there).
pub fn instruction_starts(code: &[u8], ip: u64) -> Option<Vec<u64>> {
    let mut d = iced_x86::Decoder::with_ip(64, code, ip, iced_x86::DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        let at = d.position() as u64;
        if d.decode().is_invalid() {
            return None;
        }
        out.push(at);
    }
    Some(out)
}

/// Where a probe on a function that opens with a guard (`test`/`cmp` of registers and a
/// conditional jump, as `if n == 0 { return }` compiles) can go past it: the offset of the
/// `push rbp` the guard falls through to. The kernel's uprobes emulate a push, but must
/// single-step a `test` out of line, which costs the trap twice over. Nothing before that
/// point writes a register, so every argument is as at the entry; the calls the guard sends
/// away are not seen. `None` when `code` does not open so.
pub fn past_entry_guard(code: &[u8]) -> Option<u64> {
    use iced_x86::{Mnemonic, OpKind, Register};
    let mut d = iced_x86::Decoder::with_ip(64, code, 0, iced_x86::DecoderOptions::NONE);
    let mut guarded = false;
    for _ in 0..4 {
        if !d.can_decode() {
            return None;
        }
        let at = d.position() as u64;
        let i = d.decode();
        if i.is_invalid() {
            return None;
        }
        let flags_only = matches!(i.mnemonic(), Mnemonic::Test | Mnemonic::Cmp)
            && (0..i.op_count()).all(|n| {
                matches!(
                    i.op_kind(n),
                    OpKind::Register
                        | OpKind::Immediate8
                        | OpKind::Immediate32
                        | OpKind::Immediate8to32
                        | OpKind::Immediate8to64
                        | OpKind::Immediate32to64
                )
            });
        let jcc = matches!(
            i.mnemonic(),
            Mnemonic::Je
                | Mnemonic::Jne
                | Mnemonic::Jb
                | Mnemonic::Jae
                | Mnemonic::Jbe
                | Mnemonic::Ja
                | Mnemonic::Jl
                | Mnemonic::Jge
                | Mnemonic::Jle
                | Mnemonic::Jg
                | Mnemonic::Js
                | Mnemonic::Jns
        ) && i.op0_kind() == OpKind::NearBranch64;
        if flags_only || jcc {
            guarded = true;
            continue;
        }
        let push_rbp = i.mnemonic() == Mnemonic::Push && i.op0_register() == Register::RBP;
        return (guarded && push_rbp).then_some(at);
    }
    None
}

/// True when `code` opens as the Go compiler opens a function on amd64: the stack-bound check
/// against the goroutine in R14 (`cmp rsp, [r14+0x10]`, or `lea r12, [rsp-N]` then
/// `cmp r12, [r14+0x10]` for a large frame), or, without one (nosplit), `push rbp` or
/// `sub rsp, N`. Bytes in the middle of a function almost never open so.
pub fn opens_like_go_function(code: &[u8]) -> bool {
    let mut d = iced_x86::Decoder::with_ip(64, code, 0, iced_x86::DecoderOptions::NONE);
    let bound_check = |i: &iced_x86::Instruction, reg| {
        i.mnemonic() == iced_x86::Mnemonic::Cmp
            && i.op0_register() == reg
            && i.op1_kind() == iced_x86::OpKind::Memory
            && i.memory_base() == iced_x86::Register::R14
            && i.memory_displacement64() == 0x10
    };
    let first = d.decode();
    if first.is_invalid() {
        return false;
    }
    if bound_check(&first, iced_x86::Register::RSP) {
        return true;
    }
    if first.mnemonic() == iced_x86::Mnemonic::Lea
        && first.op0_register() == iced_x86::Register::R12
        && first.memory_base() == iced_x86::Register::RSP
    {
        return bound_check(&d.decode(), iced_x86::Register::R12);
    }
    (first.mnemonic() == iced_x86::Mnemonic::Push
        && first.op0_register() == iced_x86::Register::RBP)
        || (first.mnemonic() == iced_x86::Mnemonic::Sub
            && first.op0_register() == iced_x86::Register::RSP)
}

fn decode(code: &[u8], ip: u64, want: impl Fn(&iced_x86::Instruction) -> bool) -> Vec<u64> {
    let mut d = iced_x86::Decoder::with_ip(64, code, ip, iced_x86::DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        let at = d.position() as u64;
        if want(&d.decode()) {
            out.push(at);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_before_the_frame_is_stepped_over_and_nothing_else_is() {
        // tokio's Semaphore::release: test rsi,rsi; je +0x3b; push rbp; mov rbp,rsp
        let guarded = [0x48, 0x85, 0xf6, 0x74, 0x3b, 0x55, 0x48, 0x89, 0xe5];
        assert_eq!(past_entry_guard(&guarded), Some(5));
        // No guard: the entry itself is the place.
        assert_eq!(past_entry_guard(&[0x55, 0x48, 0x89, 0xe5]), None);
        // The guard falls through to a return, not a frame.
        assert_eq!(
            past_entry_guard(&[0x48, 0x85, 0xf6, 0x75, 0x3b, 0xc3]),
            None
        );
        // A memory compare is not a register-only guard.
        assert_eq!(
            past_entry_guard(&[0x48, 0x83, 0x3f, 0x00, 0x74, 0x3b, 0x55]),
            None
        );
    }

    #[test]
    fn shrink_wrapped_prologues_count() {
        // test edi, edi; je +x; push rbp; mov rbp, rsp
        assert!(sets_up_frame(&[
            0x85, 0xff, 0x74, 0x10, 0x55, 0x48, 0x89, 0xe5
        ]));
        // push rbp; mov rbp, rdi (rbp as a plain register): no frame
        assert!(!sets_up_frame(&[
            0x55, 0x48, 0x89, 0xfd, 0x53, 0x48, 0x83, 0xec
        ]));
    }

    #[test]
    fn call_encodings_are_recognised() {
        // call rel32
        assert!(preceded_by_call(&[0x90, 0x90, 0xE8, 1, 2, 3, 4]));
        // call rax / call r11 (41 FF D3)
        assert!(preceded_by_call(&[0, 0, 0, 0, 0, 0xFF, 0xD0]));
        assert!(preceded_by_call(&[0, 0, 0, 0, 0x41, 0xFF, 0xD3]));
        // call [rip+disp32]
        assert!(preceded_by_call(&[0, 0xFF, 0x15, 1, 2, 3, 4]));
        // call [rax+8]
        assert!(preceded_by_call(&[0, 0, 0, 0, 0xFF, 0x50, 0x08]));
        // call [rax]
        assert!(preceded_by_call(&[0, 0, 0, 0, 0, 0xFF, 0x10]));
        // A stack address or plain data: no call before it.
        assert!(!preceded_by_call(&[
            0x7f, 0xff, 0xff, 0xff, 0xe0, 0x10, 0x00
        ]));
        assert!(!preceded_by_call(&[0, 0, 0, 0, 0, 0, 0]));
        // jmp rax (FF E0) is not a call.
        assert!(!preceded_by_call(&[0, 0, 0, 0, 0, 0xFF, 0xE0]));
    }

    /// A frame walk through code without frame pointers reads whatever the stack holds: text
    /// ("ead erro"), non-canonical pointers, stack or heap addresses, small integers. The
    /// stack is cut at the first of them, and the cut is reported.
    #[test]
    fn prologue_bytes() {
        assert!(opens_frame(&[0x55, 0x48, 0x89, 0xe5, 0, 0, 0, 0]));
        assert!(opens_frame(&[
            0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5
        ]));
        assert!(!opens_frame(&[0x41, 0x57, 0x41, 0x56, 0, 0, 0, 0]));
        assert!(!opens_frame(&[0x55]));
    }

    #[test]
    fn return_instructions_are_found_by_decoding_not_byte_search() {
        // sub rsp,0x18 ; mov eax,0xc3 (a C3 byte that is not a ret) ; add rsp,0x18 ; ret ;
        // jmp back ; ret
        let code = [
            0x48, 0x83, 0xec, 0x18, 0xb8, 0xc3, 0x00, 0x00, 0x00, 0x48, 0x83, 0xc4, 0x18, 0xc3,
            0xeb, 0xf0, 0xc3,
        ];
        assert_eq!(return_offsets(&code, 0x1000), vec![13, 16]);
    }

    #[test]
    fn calls_to_one_target_are_found() {
        // At 0x1000: call 0x2000 ; call 0x3000 ; nop ; call 0x2000
        let rel = |at: u64, to: u64| ((to as i64 - (at as i64 + 5)) as i32).to_le_bytes();
        let mut code = vec![0xe8];
        code.extend(rel(0x1000, 0x2000));
        code.push(0xe8);
        code.extend(rel(0x1005, 0x3000));
        code.push(0x90);
        code.push(0xe8);
        code.extend(rel(0x100b, 0x2000));
        assert_eq!(call_offsets(&code, 0x1000, 0x2000), vec![0, 11]);
        assert_eq!(call_offsets(&code, 0x1000, 0x3000), vec![5]);
        assert!(call_offsets(&code, 0x1000, 0x4000).is_empty());
    }

    /// Go 1.24's `runtime.readyWithTime` from `mov rax, [rax]` (s.g) to its call of
    /// `systemstack` with the inlined `goready`'s closure, at 0x451f27; the closure's function
    /// is at 0x451f80.
    const READY_WITH_TIME_124: [u8; 39] = [
        0x48, 0x8b, 0x00, // mov rax, [rax]
        0x48, 0x8d, 0x0d, 0x4f, 0x00, 0x00, 0x00, // lea rcx, [rip+0x4f]
        0x48, 0x89, 0x4c, 0x24, 0x08, // mov [rsp+8], rcx
        0x48, 0x89, 0x44, 0x24, 0x10, // mov [rsp+0x10], rax
        0x48, 0x89, 0x5c, 0x24, 0x18, // mov [rsp+0x18], rbx
        0x48, 0x8d, 0x44, 0x24, 0x08, // lea rax, [rsp+8]
        0x48, 0x89, 0x04, 0x24, // mov [rsp], rax
        0xe8, 0xf2, 0x5e, 0x02, 0x00, // call systemstack
    ];

    #[test]
    fn a_call_with_a_stack_closure_is_found_only_in_its_exact_shape() {
        let code = &READY_WITH_TIME_124;
        assert_eq!(closure_call(code, 0x451f27, &[0x451f80]), Some(34));
        // Another closure function: not this site.
        assert_eq!(closure_call(code, 0x451f27, &[0x451f90]), None);
        // RAX overwritten between the closure's address and the call (mov rax, [rsp]).
        let mut clobbered = code.to_vec();
        clobbered[30..34].copy_from_slice(&[0x48, 0x8b, 0x04, 0x24]);
        assert_eq!(closure_call(&clobbered, 0x451f27, &[0x451f80]), None);
        // The external linker's build pads the call (nopl 0x0(%rax,%rax,1)): still found.
        let mut padded = code.to_vec();
        padded.splice(34..34, [0x0f, 0x1f, 0x44, 0x00, 0x00]);
        assert_eq!(closure_call(&padded, 0x451f27, &[0x451f80]), Some(39));
        // No capture stored at closure+8 (the gp store moved to +0x20).
        let mut uncaptured = code.to_vec();
        uncaptured[19] = 0x20;
        assert_eq!(closure_call(&uncaptured, 0x451f27, &[0x451f80]), None);
    }

    #[test]
    fn a_go_prologue_gives_its_frame_and_its_first_argument_spill() {
        // cmp rsp,[r14+0x10] ; jbe +0 ; sub rsp,0x60 ; mov [rsp+0x58],rbp ; mov [rsp+0x68],rax
        let code = [
            0x49, 0x3b, 0x66, 0x10, 0x76, 0x00, 0x48, 0x83, 0xec, 0x60, 0x48, 0x89, 0x6c, 0x24,
            0x58, 0x48, 0x89, 0x44, 0x24, 0x68,
        ];
        assert_eq!(frame_size(&code, 0x1000), Some(0x60));
        assert!(stores_rax_at(&code, 0x1000, 0x68));
        assert!(!stores_rax_at(&code, 0x1000, 0x58), "that is rbp");
        assert_eq!(frame_size(&[0xc3], 0x1000), None);
    }
}
