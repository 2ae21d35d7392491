//! Futex operation classification, shared so the kernel filter and the reports agree.

/// `futex(2)` op bits that modify the command rather than select it.
pub const FUTEX_PRIVATE_FLAG: u32 = 128;
pub const FUTEX_CLOCK_REALTIME: u32 = 256;
const FUTEX_CMD_MASK: u32 = !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);

// futex(2) commands (include/uapi/linux/futex.h).
const FUTEX_WAIT: u32 = 0;
const FUTEX_WAKE: u32 = 1;
const FUTEX_REQUEUE: u32 = 3;
const FUTEX_CMP_REQUEUE: u32 = 4;
const FUTEX_WAKE_OP: u32 = 5;
const FUTEX_LOCK_PI: u32 = 6;
const FUTEX_UNLOCK_PI: u32 = 7;
const FUTEX_WAIT_BITSET: u32 = 9;
const FUTEX_WAKE_BITSET: u32 = 10;
const FUTEX_WAIT_REQUEUE_PI: u32 = 11;
const FUTEX_CMP_REQUEUE_PI: u32 = 12;
const FUTEX_LOCK_PI2: u32 = 13;

/// What a futex call does, as far as contention is concerned. Ops that neither block nor wake
/// (FUTEX_FD, TRYLOCK_PI) are not traced at all.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    Wait = 0,
    WaitBitset = 1,
    LockPi = 2,
    WaitRequeuePi = 3,
    /// futex2 `futex_wait(2)`.
    Wait2 = 4,
    /// futex2 `futex_waitv(2)`; the first futex of the vector is recorded.
    Waitv = 5,
    /// Not a futex: a goroutine blocked in Go's `sync.runtime_SemacquireMutex` (sync.Mutex and
    /// RWMutex slow paths park the goroutine without a futex call). Timed by uprobes.
    GoSemacquire = 8,
    /// Not a futex: a tokio task waiting in `batch_semaphore` (`tokio::sync::{Mutex, RwLock,
    /// Semaphore}`) parks no thread. Timed by uprobes on `Acquire`'s poll and drop.
    TokioAcquire = 9,
    Wake = 16,
    WakeBitset = 17,
    WakeOp = 18,
    Requeue = 19,
    UnlockPi = 20,
    /// futex2 `futex_wake(2)`.
    Wake2 = 21,
}

impl OpKind {
    pub const ALL: [OpKind; 14] = [
        OpKind::Wait,
        OpKind::WaitBitset,
        OpKind::LockPi,
        OpKind::WaitRequeuePi,
        OpKind::Wait2,
        OpKind::Waitv,
        OpKind::GoSemacquire,
        OpKind::TokioAcquire,
        OpKind::Wake,
        OpKind::WakeBitset,
        OpKind::WakeOp,
        OpKind::Requeue,
        OpKind::UnlockPi,
        OpKind::Wake2,
    ];

    /// True for ops that can put the caller to sleep.
    #[inline(always)]
    pub fn is_wait(self) -> bool {
        is_wait_kind(self as u32)
    }

    pub fn from_u32(v: u32) -> Option<OpKind> {
        let mut i = 0;
        while i < Self::ALL.len() {
            if Self::ALL[i] as u32 == v {
                return Some(Self::ALL[i]);
            }
            i += 1;
        }
        None
    }

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Wait => "FUTEX_WAIT",
            OpKind::WaitBitset => "FUTEX_WAIT_BITSET",
            OpKind::LockPi => "FUTEX_LOCK_PI",
            OpKind::WaitRequeuePi => "FUTEX_WAIT_REQUEUE_PI",
            OpKind::Wait2 => "futex_wait",
            OpKind::Waitv => "futex_waitv",
            OpKind::GoSemacquire => "go semacquire",
            OpKind::TokioAcquire => "tokio acquire",
            OpKind::Wake => "FUTEX_WAKE",
            OpKind::WakeBitset => "FUTEX_WAKE_BITSET",
            OpKind::WakeOp => "FUTEX_WAKE_OP",
            OpKind::Requeue => "FUTEX_REQUEUE",
            OpKind::UnlockPi => "FUTEX_UNLOCK_PI",
            OpKind::Wake2 => "futex_wake",
        }
    }
}

/// [`OpKind::is_wait`] on the raw `u32` the maps store: waits are numbered below the wakes.
#[inline(always)]
pub fn is_wait_kind(kind: u32) -> bool {
    kind < OpKind::Wake as u32
}

/// The in-flight kind of a call whose op lockscope ignores: its exit is dropped quietly.
pub const IGNORED_OP: u32 = u32::MAX;

/// Classifies a `futex(2)` op argument; `None` for ops lockscope ignores.
#[inline(always)]
pub fn classify_futex_op(op: u32) -> Option<OpKind> {
    match op & FUTEX_CMD_MASK {
        FUTEX_WAIT => Some(OpKind::Wait),
        FUTEX_WAIT_BITSET => Some(OpKind::WaitBitset),
        FUTEX_LOCK_PI | FUTEX_LOCK_PI2 => Some(OpKind::LockPi),
        FUTEX_WAIT_REQUEUE_PI => Some(OpKind::WaitRequeuePi),
        FUTEX_WAKE => Some(OpKind::Wake),
        FUTEX_WAKE_BITSET => Some(OpKind::WakeBitset),
        FUTEX_WAKE_OP => Some(OpKind::WakeOp),
        FUTEX_REQUEUE | FUTEX_CMP_REQUEUE | FUTEX_CMP_REQUEUE_PI => Some(OpKind::Requeue),
        FUTEX_UNLOCK_PI => Some(OpKind::UnlockPi),
        _ => None,
    }
}

const EINTR: i64 = 4;
const EAGAIN: i64 = 11;
const ETIMEDOUT: i64 = 110;
/// Kernel-internal restart codes a tracepoint can see before the signal path rewrites them.
const ERESTARTSYS: i64 = 512;
const ERESTART_RESTARTBLOCK: i64 = 516;

/// How a wait call ended, from its return value.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Slept and was woken (or, for LOCK_PI, acquired the lock). futex_waitv returns the index
    /// of the futex that woke it.
    Woken,
    /// The futex word no longer held the expected value: returned at once, never slept.
    Again,
    TimedOut,
    /// Slept, then a signal ended the wait.
    Interrupted,
    Error,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Woken,
        Outcome::Again,
        Outcome::TimedOut,
        Outcome::Interrupted,
        Outcome::Error,
    ];

    /// Its index in a map value.
    #[inline(always)]
    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// The outcome a map value stored; an unknown value reads as an error.
    #[inline(always)]
    pub fn from_u32(v: u32) -> Outcome {
        let mut i = 0;
        while i < Self::ALL.len() {
            if Self::ALL[i] as u32 == v {
                return Self::ALL[i];
            }
            i += 1;
        }
        Outcome::Error
    }

    #[inline(always)]
    pub fn of_wait(ret: i64) -> Outcome {
        if ret >= 0 {
            return Outcome::Woken;
        }
        match -ret {
            EAGAIN => Outcome::Again,
            ETIMEDOUT => Outcome::TimedOut,
            EINTR | ERESTARTSYS | ERESTART_RESTARTBLOCK => Outcome::Interrupted,
            _ => Outcome::Error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_ops_ignoring_modifier_bits() {
        // What Rust std's Mutex uses: FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG.
        assert_eq!(classify_futex_op(9 | 128), Some(OpKind::WaitBitset));
        // glibc pthread / Go: FUTEX_WAIT(_PRIVATE).
        assert_eq!(classify_futex_op(0), Some(OpKind::Wait));
        assert_eq!(classify_futex_op(128), Some(OpKind::Wait));
        assert_eq!(classify_futex_op(9 | 128 | 256), Some(OpKind::WaitBitset));
        assert_eq!(classify_futex_op(1 | 128), Some(OpKind::Wake));
        assert_eq!(classify_futex_op(6), Some(OpKind::LockPi));
        assert_eq!(classify_futex_op(13 | 128), Some(OpKind::LockPi));
        assert_eq!(classify_futex_op(11), Some(OpKind::WaitRequeuePi));
        assert_eq!(classify_futex_op(4), Some(OpKind::Requeue));
        // FUTEX_FD and TRYLOCK_PI neither block nor wake.
        assert_eq!(classify_futex_op(2), None);
        assert_eq!(classify_futex_op(8), None);
        assert_eq!(classify_futex_op(99), None);
    }

    #[test]
    fn wait_and_wake_kinds_are_split() {
        for k in OpKind::ALL {
            assert_eq!(OpKind::from_u32(k as u32), Some(k));
            let waits = matches!(
                k,
                OpKind::Wait
                    | OpKind::WaitBitset
                    | OpKind::LockPi
                    | OpKind::WaitRequeuePi
                    | OpKind::Wait2
                    | OpKind::Waitv
                    | OpKind::GoSemacquire
                    | OpKind::TokioAcquire
            );
            assert_eq!(k.is_wait(), waits, "{k:?}");
        }
        assert_eq!(OpKind::from_u32(7), None);
    }

    #[test]
    fn outcomes_from_return_values() {
        assert_eq!(Outcome::of_wait(0), Outcome::Woken);
        assert_eq!(Outcome::of_wait(3), Outcome::Woken);
        assert_eq!(Outcome::of_wait(-11), Outcome::Again);
        assert_eq!(Outcome::of_wait(-110), Outcome::TimedOut);
        assert_eq!(Outcome::of_wait(-4), Outcome::Interrupted);
        assert_eq!(Outcome::of_wait(-512), Outcome::Interrupted);
        assert_eq!(Outcome::of_wait(-14), Outcome::Error);
        for o in Outcome::ALL {
            assert_eq!(Outcome::from_u32(o.as_u32()), o);
        }
        assert_eq!(Outcome::from_u32(99), Outcome::Error);
    }
}
