//! The one place the kernel programs' CPU architecture shows: **the eBPF side is x86-64 only.**
//!
//! Everything that reads a task's saved user registers takes its offsets from here: the
//! layout of the x86-64 `struct pt_regs` (arch/x86/include/asm/ptrace.h) that
//! `bpf_task_pt_regs` returns, and that a futex2 entry point gets as its one argument.
//! Other x86-64 facts live with their users and say so: the syscall numbers (`sched::regs`),
//! the `__x64_sys_*` trampoline targets (`trampoline`), the Go register ABI's R14/RAX
//! (`goroutine`, `phase`) and the uprobe argument in RDI (`phase`, `tokio`), read through
//! aya's x86-64 `pt_regs` binding. A port starts by giving this module a sibling per
//! architecture; until then any other target fails to build here instead of misreading
//! registers.
#[cfg(not(bpf_target_arch = "x86_64"))]
compile_error!(
    "tracer-ebpf reads x86-64 register layouts (see src/arch.rs): build it for an x86-64 host"
);

/// Word indexes in the x86-64 user `struct pt_regs`, saved at syscall entry.
pub mod word {
    pub const BP: usize = 4;
    pub const BX: usize = 5;
    pub const R10: usize = 7;
    pub const R8: usize = 9;
    pub const AX: usize = 10;
    pub const CX: usize = 11;
    pub const SI: usize = 13;
    pub const DI: usize = 14;
    /// The syscall number.
    pub const ORIG_AX: usize = 15;
    pub const IP: usize = 16;
    pub const CS: usize = 17;
    pub const SP: usize = 19;
}

/// The byte offset of `rdi` in the saved `struct pt_regs` (a trampoline's argument block).
pub const PT_REGS_DI: usize = word::DI * 8;

/// `__USER32_CS`: the code segment of a compat (ia32) task.
pub const USER32_CS: u64 = 0x23;

/// Word `word` of the saved user registers at `regs`, a `bpf_task_pt_regs` result: a plain load,
/// which the verifier checks against `struct pt_regs` in the kernel's BTF and the JIT guards
/// (a `bpf_probe_read_kernel` copy cost ~100 ns here; this, a few).
///
/// # Safety
/// `regs` must be what `bpf_task_pt_regs` returned, and `word` one of [`word`]'s indexes.
#[inline(always)]
pub unsafe fn user_reg(regs: *const u8, word: usize) -> u64 {
    // SAFETY: per the contract; the verifier rejects the program otherwise.
    unsafe { core::ptr::read_volatile(regs.add(word * 8).cast::<u64>()) }
}
