//! golang: Go targets. A goroutine blocked on a sync.Mutex parks in the Go scheduler without
//! a futex call; the futex waits of a Go process are OS threads: idle ones parking, runtime
//! locks (`runtime.lock2`), GC and stop-the-world handshakes. This module recognises Go
//! executables and holds the `--go-uprobes` choice; naming those classes and cutting the
//! stacks at the scheduler is pure knowledge in `lockscope_profile::knowledge::gowait`.
use std::path::Path;

use object::{Object, ObjectSection};

/// A Go executable's toolchain version (`go1.19.8`) from its `.go.buildinfo` section.
pub fn go_version(exe: &Path) -> Option<String> {
    let file = std::fs::read(exe).ok()?;
    let obj = object::File::parse(&*file).ok()?;
    let data = obj.section_by_name(".go.buildinfo")?.data().ok()?;
    // "\xff Go buildinf:" (14 bytes), pointer size, flags; flag 2: strings inline after the
    // 32-byte header, each a uvarint length then bytes (Go 1.18+).
    if !data.starts_with(b"\xff Go buildinf:") {
        return None;
    }
    if data.get(15).is_some_and(|f| f & 2 != 0) {
        let (len, n) = uvarint(data.get(32..)?)?;
        let start = 32 + n;
        let v = data.get(start..start + len as usize)?;
        return Some(String::from_utf8_lossy(v).into_owned());
    }
    // Older layouts point at the string instead; the section still says it is Go.
    Some("go (version not inline)".into())
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Goroutine uprobes on a Go target (`--go-uprobes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoUprobes {
    /// On for Go targets, quietly off for others.
    Auto,
    /// Required: fail if they cannot be placed.
    On,
    Off,
}
