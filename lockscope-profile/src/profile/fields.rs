//! fields: the profile's enumerated fields — a row's futex op, the unwinder a recording used,
//! and the kind of memory a futex word lives in. Each is stored in the file under the exact
//! string earlier versions wrote (`serde(rename)`, as `holder.rs` does for phases), so the
//! format is unchanged; code compares variants, never strings.
use std::fmt;

use serde::{Deserialize, Serialize};
use tracer_common::OpKind;

/// A wait or wake row's operation ([`tracer_common::OpKind`]), named in the file as
/// `OpKind::name` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FutexOp {
    #[serde(rename = "FUTEX_WAIT")]
    Wait,
    #[serde(rename = "FUTEX_WAIT_BITSET")]
    WaitBitset,
    #[serde(rename = "FUTEX_LOCK_PI")]
    LockPi,
    #[serde(rename = "FUTEX_WAIT_REQUEUE_PI")]
    WaitRequeuePi,
    /// futex2 `futex_wait(2)`.
    #[serde(rename = "futex_wait")]
    Wait2,
    /// futex2 `futex_waitv(2)`.
    #[serde(rename = "futex_waitv")]
    Waitv,
    /// A goroutine blocked in Go's semaphore code (no futex call; timed by uprobes).
    #[serde(rename = "go semacquire")]
    GoSemacquire,
    /// A tokio task waiting in `batch_semaphore` (no futex call; timed by uprobes).
    #[serde(rename = "tokio acquire")]
    TokioAcquire,
    #[serde(rename = "FUTEX_WAKE")]
    Wake,
    #[serde(rename = "FUTEX_WAKE_BITSET")]
    WakeBitset,
    #[serde(rename = "FUTEX_WAKE_OP")]
    WakeOp,
    #[serde(rename = "FUTEX_REQUEUE")]
    Requeue,
    #[serde(rename = "FUTEX_UNLOCK_PI")]
    UnlockPi,
    /// futex2 `futex_wake(2)`.
    #[serde(rename = "futex_wake")]
    Wake2,
    /// A kind number no `OpKind` has (the kernel side never stores one; kept, not dropped).
    #[serde(rename = "unknown op")]
    Unknown,
}

/// tokio in the target: its version, and the async-wait probes (`tokio acquire` rows) placed,
/// or why none could be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokioTarget {
    pub version: String,
    /// Uprobes timing async lock waits (0: none placed).
    pub probes: usize,
    /// Why the async waits could not be probed, when they were not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unprobed: Option<String>,
    /// `--probe-windows`: the probes were attached part of the time, and the `tokio acquire`
    /// rows are estimates weighted up from what they saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<ProbeWindows>,
    /// `Acquire::poll` was inlined (fat LTO), and probed at its DWARF inline sites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inlined: Option<InlineSites>,
}

/// `Acquire::poll`'s DWARF inline sites: how many there are, how many were probed, and why
/// the others were not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineSites {
    pub probed: usize,
    pub found: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// `Semaphore::release`'s inline sites probed as well.
    #[serde(default)]
    pub release_sites: usize,
}

impl TokioTarget {
    /// What `probes` uprobes are (3 with the releasing side, 2 without), with `poll` out of
    /// line.
    pub fn probe_list(probes: usize) -> &'static str {
        if probes >= 3 {
            "batch_semaphore's Acquire poll and drop, and Semaphore::release for the releasing side"
        } else {
            "batch_semaphore's Acquire poll and drop; no out-of-line Semaphore::release, so no releasing side"
        }
    }

    /// What the `probes` uprobes are, `poll` out of line or at `inlined`'s sites.
    pub fn describe(probes: usize, inlined: Option<&InlineSites>) -> String {
        let Some(i) = inlined else {
            return Self::probe_list(probes).to_string();
        };
        let skipped = match (&i.skipped, i.found - i.probed.min(i.found)) {
            (_, 0) => String::new(),
            (Some(why), n) => format!("; {n} skipped: {why}"),
            (None, n) => format!("; {n} skipped"),
        };
        let out_of_line = probes.saturating_sub(i.probed + 1 + i.release_sites) > 0;
        let release = match (out_of_line, i.release_sites) {
            (false, 0) => "no Semaphore::release found, so no releasing side".to_string(),
            (true, 0) => "and Semaphore::release for the releasing side".to_string(),
            (o, n) => format!(
                "and Semaphore::release at {n} inline sites{} for the releasing side",
                if o { " and out of line" } else { "" }
            ),
        };
        format!(
            "batch_semaphore's Acquire::poll, inlined (fat LTO), at {} of {} DWARF inline sites{skipped}; Acquire's drop; {release}",
            i.probed, i.found
        )
    }
}

/// How a runtime's waits were sampled (`record --probe-windows`): its uprobes (tokio's, or the
/// goroutine probes) were attached for one window of each period, and each wait seen whole
/// (begun and ended inside one window) was weighted by the inverse of the chance that a window
/// held it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeWindows {
    /// The share of the time the probes were attached.
    pub percent: u8,
    /// The windows' mean length (ns).
    pub window_ns: u64,
    /// Windows opened.
    pub windows: u64,
}

impl ProbeWindows {
    /// Waits longer than this are counted short: their weight is capped at its.
    pub fn weighted_up_to_ns(&self) -> u64 {
        self.window_ns / 2
    }
}

impl From<OpKind> for FutexOp {
    fn from(k: OpKind) -> Self {
        match k {
            OpKind::Wait => FutexOp::Wait,
            OpKind::WaitBitset => FutexOp::WaitBitset,
            OpKind::LockPi => FutexOp::LockPi,
            OpKind::WaitRequeuePi => FutexOp::WaitRequeuePi,
            OpKind::Wait2 => FutexOp::Wait2,
            OpKind::Waitv => FutexOp::Waitv,
            OpKind::GoSemacquire => FutexOp::GoSemacquire,
            OpKind::TokioAcquire => FutexOp::TokioAcquire,
            OpKind::Wake => FutexOp::Wake,
            OpKind::WakeBitset => FutexOp::WakeBitset,
            OpKind::WakeOp => FutexOp::WakeOp,
            OpKind::Requeue => FutexOp::Requeue,
            OpKind::UnlockPi => FutexOp::UnlockPi,
            OpKind::Wake2 => FutexOp::Wake2,
        }
    }
}

impl FutexOp {
    /// From the kind number the kernel side stores.
    pub fn from_kind(kind: u32) -> FutexOp {
        OpKind::from_u32(kind).map_or(FutexOp::Unknown, FutexOp::from)
    }

    /// The name the file stores and the reports print (`FUTEX_WAIT`, `go semacquire`).
    pub fn name(self) -> &'static str {
        match self {
            FutexOp::Wait => OpKind::Wait.name(),
            FutexOp::WaitBitset => OpKind::WaitBitset.name(),
            FutexOp::LockPi => OpKind::LockPi.name(),
            FutexOp::WaitRequeuePi => OpKind::WaitRequeuePi.name(),
            FutexOp::Wait2 => OpKind::Wait2.name(),
            FutexOp::Waitv => OpKind::Waitv.name(),
            FutexOp::GoSemacquire => OpKind::GoSemacquire.name(),
            FutexOp::TokioAcquire => OpKind::TokioAcquire.name(),
            FutexOp::Wake => OpKind::Wake.name(),
            FutexOp::WakeBitset => OpKind::WakeBitset.name(),
            FutexOp::WakeOp => OpKind::WakeOp.name(),
            FutexOp::Requeue => OpKind::Requeue.name(),
            FutexOp::UnlockPi => OpKind::UnlockPi.name(),
            FutexOp::Wake2 => OpKind::Wake2.name(),
            FutexOp::Unknown => "unknown op",
        }
    }
}

impl fmt::Display for FutexOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a recording's wait stacks were walked (`--unwind`, or what `auto` chose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Unwinder {
    /// The kernel's frame-pointer walk.
    #[serde(rename = "fp")]
    FramePointers,
    /// CFI through the frameless top of the stack, joined to the frame-pointer walk.
    #[serde(rename = "fp+cfi")]
    FpCfi,
    /// DWARF CFI over a copy of the user stack.
    #[serde(rename = "dwarf")]
    Dwarf,
}

impl Unwinder {
    pub fn name(self) -> &'static str {
        match self {
            Unwinder::FramePointers => "fp",
            Unwinder::FpCfi => "fp+cfi",
            Unwinder::Dwarf => "dwarf",
        }
    }
}

impl fmt::Display for Unwinder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What memory a futex word lives in, from the target's memory maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Region {
    /// A module's data (`.data`, `.bss`): named by its symbol where one covers it.
    #[serde(rename = "static")]
    Static,
    #[serde(rename = "heap")]
    Heap,
    #[serde(rename = "main thread's stack")]
    MainStack,
    /// A mapping without a file: a malloc arena or a thread's stack.
    #[serde(rename = "anonymous memory (heap arena or thread stack)")]
    Anonymous,
    /// Another mapping (a file, `[vdso]`, ...).
    #[serde(rename = "mapped memory")]
    Mapped,
    /// In no mapping read while recording.
    #[serde(rename = "unknown")]
    Unknown,
}

impl Region {
    /// How the report names it (the string the file stores).
    pub fn label(self) -> &'static str {
        match self {
            Region::Static => "static",
            Region::Heap => "heap",
            Region::MainStack => "main thread's stack",
            Region::Anonymous => "anonymous memory (heap arena or thread stack)",
            Region::Mapped => "mapped memory",
            Region::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file stores each variant under the name the code prints, and reads it back.
    #[test]
    fn each_field_is_stored_under_its_printed_name() {
        for k in OpKind::ALL {
            let op = FutexOp::from(k);
            assert_eq!(op.name(), k.name());
            let json = serde_json::to_string(&op).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
            assert_eq!(serde_json::from_str::<FutexOp>(&json).unwrap(), op);
            assert_eq!(FutexOp::from_kind(k as u32), op);
        }
        assert_eq!(FutexOp::from_kind(7777), FutexOp::Unknown);
        for u in [Unwinder::FramePointers, Unwinder::FpCfi, Unwinder::Dwarf] {
            assert_eq!(serde_json::to_string(&u).unwrap(), format!("\"{u}\""));
        }
        for r in [
            Region::Static,
            Region::Heap,
            Region::MainStack,
            Region::Anonymous,
            Region::Mapped,
            Region::Unknown,
        ] {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{r}\""));
            assert_eq!(serde_json::from_str::<Region>(&json).unwrap(), r);
        }
    }

    /// The checked-in profiles read into the typed fields and write each back as it was.
    #[test]
    fn checked_in_profiles_keep_their_field_strings() {
        use serde_json::Value;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read(&path).unwrap();
            let before: Value = serde_json::from_slice(&text).unwrap();
            let p = crate::profile::parse(&text, &path).unwrap();
            let after = serde_json::to_value(&p).unwrap();
            let field = |v: &Value, list: &str, key: &str| -> Vec<Value> {
                v[list]
                    .as_array()
                    .map(|rows| rows.iter().map(|r| r[key].clone()).collect())
                    .unwrap_or_default()
            };
            for (list, key) in [("waits", "op"), ("wakes", "op"), ("locks", "region")] {
                assert_eq!(
                    field(&before, list, key),
                    field(&after, list, key),
                    "{list}.{key}"
                );
                seen += field(&before, list, key).len();
            }
            assert_eq!(before["meta"]["unwind"], after["meta"]["unwind"]);
            assert_eq!(
                field(&before["bundled"], "phases", "phase"),
                field(&after["bundled"], "phases", "phase")
            );
        }
        assert!(seen > 0, "no rows in {}", dir.display());
    }
}
