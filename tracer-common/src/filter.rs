//! Which processes the kernel programs trace: one tgid, or a set of them.

/// `TARGET_TGID` value meaning "trace the processes in the `TARGETS` map" (no real tgid: pids
/// stop at 2^22).
pub const TGID_SET: u32 = u32::MAX;
/// The most processes the `TARGETS` set holds.
pub const MAX_TARGETS: u32 = 4096;

/// A `TARGETS` value: what a traced process wants beside its frame-pointer walks. Set by user
/// space per process as it is added; a process forked by a traced one inherits its parent's.
pub type TargetFlags = u8;
/// Frame-pointer walks only: no stack copies (`--unwind fp`).
pub const TARGET_FP: TargetFlags = 1;
/// `fp+cfi`: a copy of at most [`crate::SNAPSHOT_SMALL_BYTES`] per wait that slept.
pub const TARGET_SNAP_SMALL: TargetFlags = 2;
/// `dwarf`: a copy of the load-time snapshot size per wait that slept.
pub const TARGET_SNAP_FULL: TargetFlags = 3;
