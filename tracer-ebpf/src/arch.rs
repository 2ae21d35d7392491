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

/// Byte offsets of those registers in the saved `struct pt_regs`.
pub const PT_REGS_BP: usize = word::BP * 8;
pub const PT_REGS_BX: usize = word::BX * 8;
pub const PT_REGS_DI: usize = word::DI * 8;
pub const PT_REGS_IP: usize = word::IP * 8;
pub const PT_REGS_SP: usize = word::SP * 8;

/// `__USER32_CS`: the code segment of a compat (ia32) task.
pub const USER32_CS: u64 = 0x23;
