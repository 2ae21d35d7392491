//! x86: the few x86-64 instruction facts lockscope reads from code bytes — whether a return
//! address follows a call, whether a function opens a frame, and (through iced-x86, in
//! golang.rs's probe placement) where a function returns.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
