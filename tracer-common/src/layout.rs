//! Compile-time layout checks of every type that crosses the kernel/user boundary as raw
//! bytes. They run wherever this crate compiles: on the host, and inside the eBPF object's
//! bpfel-unknown-none build, so both sides are held to the same sizes.
//!
//! Each size is the sum of the type's fields: equal means no implicit padding (a hash map
//! key with a hole would hash uninitialised bytes; a value with one could not be `Pod`).
//! Each alignment is 8, the BPF side's widest load.
use core::mem::{align_of, size_of};

use crate::{
    ClockRead, GoCall, Handoff, HandoffKey, InFlight, LastWaker, MapClock, PhaseStats, SchedWait,
    Scratch, SmallStackSnapshot, SnapshotHeader, StackFrames, StackSnapshot, WaitKey, WaitStats,
    WakeKey, WakeStats, HIST_BUCKETS, MAX_STACK_DEPTH, NUM_PHASES, SNAPSHOT_MAX_BYTES,
    SNAPSHOT_SMALL_BYTES,
};
use crate::{TargetFlags, TARGET_FP, TARGET_SNAP_FULL, TARGET_SNAP_SMALL};

/// `size_of::<T>() == size` and `align_of::<T>() == 8`, at compile time.
macro_rules! layout {
    ($t:ty, $size:expr) => {
        const _: () = assert!(
            size_of::<$t>() == $size,
            concat!("layout of ", stringify!($t))
        );
        const _: () = assert!(
            align_of::<$t>() == 8,
            concat!("alignment of ", stringify!($t))
        );
    };
}

const U64: usize = 8;
const U32: usize = 4;
const PHASES: usize = NUM_PHASES * U64;

// Map keys: hashed byte for byte by the kernel.
layout!(WaitKey, 4 * U64 + 4 * U32);
layout!(WakeKey, 3 * U64 + 2 * U32);
layout!(HandoffKey, U64 + 2 * U32);

// Map values and records.
layout!(WaitStats, 8 * U64 + 2 * PHASES + HIST_BUCKETS * U64);
layout!(WakeStats, 4 * U64);
layout!(ClockRead, U64 + 3 * PHASES);
layout!(MapClock, 4 * PHASES);
layout!(InFlight, 2 * U64 + 2 * U32 + size_of::<ClockRead>());
layout!(LastWaker, 2 * U64 + 2 * U32);
layout!(StackFrames, 2 * U32 + MAX_STACK_DEPTH * U64);
layout!(Scratch, size_of::<StackFrames>() + size_of::<WaitStats>());
layout!(PhaseStats, 6 * U64);
layout!(
    GoCall,
    4 * U64 + U64 + size_of::<ClockRead>() + PHASES + U64
);
layout!(Handoff, size_of::<WaitKey>() + 2 * U64 + PHASES + 2 * U32);
layout!(SchedWait, 4 * U64 + 6 * U32);
layout!(SnapshotHeader, size_of::<WaitKey>() + 4 * U64 + 4 * U32);
layout!(
    StackSnapshot,
    size_of::<SnapshotHeader>() + SNAPSHOT_MAX_BYTES
);
layout!(
    SmallStackSnapshot,
    size_of::<SnapshotHeader>() + SNAPSHOT_SMALL_BYTES
);

// The sizes user space has long relied on, spelled out once.
const _: () = assert!(size_of::<WaitKey>() == 48 && size_of::<WakeKey>() == 32);
const _: () = assert!(size_of::<StackFrames>() == 1024);

// `TARGETS` values: one byte, and every value a traced process can have is nonzero and distinct.
const _: () = assert!(size_of::<TargetFlags>() == 1);
const _: () = assert!(
    TARGET_FP != 0
        && TARGET_SNAP_SMALL != 0
        && TARGET_SNAP_FULL != 0
        && TARGET_FP != TARGET_SNAP_SMALL
        && TARGET_SNAP_SMALL != TARGET_SNAP_FULL
        && TARGET_FP != TARGET_SNAP_FULL
);
