//! Goroutine-level waits in Go targets: what the uprobes on the `sync` semaphore keep per
//! goroutine, and which goroutine each probe point names.
use crate::{ClockRead, NUM_PHASES};

/// A goroutine in a `sync` semaphore acquire, by its `g` (R14 under Go's register ABI): what
/// the entry uprobe saw, for the return-instruction uprobes to finish.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GoCall {
    pub start_ns: u64,
    pub stack_id: u64,
    pub leaf_ret: u64,
    /// The semaphore's address (first argument, RAX).
    pub uaddr: u64,
    /// When the scheduler made the goroutine runnable again (`runtime.ready`); 0 until then.
    /// The wait ends here, as in Go's block profile: the run-queue delay after it is
    /// scheduling latency, not time spent waiting for the lock.
    pub ready_ns: u64,
    /// The semaphore's phase clock when the acquire began.
    pub clock: ClockRead,
    /// Per [`Phase`], the ns its holders ran that phase during the wait (set when readied).
    pub blamed: [u64; NUM_PHASES],
    /// When the goroutine first parked (`runtime.park_m`); 0 until then. The wait starts
    /// here: before it the goroutine still runs, and the entry probe's own trap return (a
    /// point where the kernel may preempt the thread for a whole time slice) is not waiting.
    pub park_ns: u64,
}

/// Where a goroutine probe finds the goroutine it is about; user space passes it as the
/// attach cookie, so one program serves the precise probe point and its fallback.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoRef {
    /// The first argument (RAX) is the `*g`: `runtime.ready(gp)`, `runtime.park_m(gp)`.
    GInRax = 0,
    /// The running goroutine (R14 under the register ABI): the call to `gopark` inside
    /// `runtime.semacquire1`, reached only by a goroutine that parks on a semaphore.
    Current = 1,
    /// RAX points at a closure whose first captured word is the `*g`: `readyWithTime`'s call
    /// of `systemstack` with the closure of its inlined `goready(gp)` (Go 1.21+), laid out
    /// `{fn, gp, traceskip}`, so `gp` is at RAX+8.
    ClosureGInRax = 2,
}

impl GoRef {
    #[inline(always)]
    pub fn from_u64(v: u64) -> GoRef {
        if v == GoRef::Current as u64 {
            GoRef::Current
        } else if v == GoRef::ClosureGInRax as u64 {
            GoRef::ClosureGInRax
        } else {
            GoRef::GInRax
        }
    }
}

/// Where a semaphore acquire takes its goroutine's stack; user space passes it as the entry
/// probe's attach cookie.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoStack {
    /// At the acquire's entry: the park is probed only scheduler-wide, off the goroutine's
    /// stack.
    AtEntry = 0,
    /// At the semaphore code's call to gopark: only acquires that really park pay for it.
    AtPark = 1,
}

impl GoStack {
    #[inline(always)]
    pub fn from_u64(v: u64) -> GoStack {
        if v == GoStack::AtPark as u64 {
            GoStack::AtPark
        } else {
            GoStack::AtEntry
        }
    }
}

/// Return addresses into the `sync` acquires from their call of the semaphore code: a park
/// whose frame returns elsewhere (a WaitGroup, the runtime's own semaphores) is not traced.
pub const GO_CALLER_SLOTS: u32 = 8;

/// The semaphore code's frame, for the precise park probe: where the return address and the
/// spilled semaphore address sit above the stack pointer. Packed into the attach cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoFrame {
    /// Bytes from SP to the return address (the frame's size).
    pub ret_at: u32,
    /// Bytes from SP to the spilled first argument (the semaphore's address).
    pub sema_at: u32,
}

impl GoFrame {
    pub fn cookie(self) -> u64 {
        (u64::from(self.ret_at) << 32) | u64::from(self.sema_at)
    }

    #[inline(always)]
    pub fn from_cookie(c: u64) -> GoFrame {
        GoFrame {
            ret_at: (c >> 32) as u32,
            sema_at: c as u32,
        }
    }
}
