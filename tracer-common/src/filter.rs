//! Which processes the kernel programs trace: one tgid, or a set of them.

/// `TARGET_TGID` value meaning "trace the processes in the `TARGETS` map" (no real tgid: pids
/// stop at 2^22).
pub const TGID_SET: u32 = u32::MAX;
/// The most processes the `TARGETS` set holds.
pub const MAX_TARGETS: u32 = 4096;
