//! read: loading a profile file as a root tool must — a regular file of bounded size whose
//! strings are bounded, checked before anything is parsed, and whose totals fit in 64 bits.
use std::fs;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Result};

use super::{Profile, FORMAT, VERSION};

/// The largest profile `report` reads (`LOCKSCOPE_MAX_PROFILE_BYTES` overrides it).
pub const MAX_PROFILE_BYTES: u64 = 512 << 20;
/// The longest string a profile may hold: symbol names, paths and thread names are far
/// shorter; a longer one is a crafted or damaged file, refused before it is parsed.
pub const MAX_STRING_BYTES: usize = 64 << 10;

fn max_profile_bytes() -> u64 {
    std::env::var("LOCKSCOPE_MAX_PROFILE_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MAX_PROFILE_BYTES)
}

/// The length of the longest JSON string in `text` (escapes counted as written).
pub fn longest_string(text: &[u8]) -> usize {
    let (mut longest, mut len, mut inside, mut escaped) = (0, 0, false, false);
    for &b in text {
        if !inside {
            if b == b'"' {
                inside = true;
                len = 0;
            }
            continue;
        }
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            inside = false;
            longest = longest.max(len);
            continue;
        }
        len += 1;
    }
    longest.max(if inside { len } else { 0 })
}

/// Reads a profile: a regular file of bounded size whose strings are bounded, checked before
/// anything is parsed. Every failure is one line that says nothing of the contents of a file
/// the caller could not read.
pub fn load(path: &Path) -> Result<Profile> {
    let cannot = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("no profile at {}", path.display()),
        std::io::ErrorKind::PermissionDenied => {
            anyhow::anyhow!("cannot read {}: permission denied", path.display())
        }
        _ => anyhow::anyhow!("cannot read {}: {e}", path.display()),
    };
    let file = fs::File::open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        bail!("cannot read {}: not a regular file", path.display());
    }
    let cap = max_profile_bytes();
    if meta.len() > cap {
        bail!(
            "{} is {} MiB, more than the {} MiB a profile may be (set LOCKSCOPE_MAX_PROFILE_BYTES to raise it)",
            path.display(),
            meta.len() >> 20,
            cap >> 20
        );
    }
    let mut text = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1).read_to_end(&mut text).map_err(cannot)?;
    if text.len() as u64 > cap {
        bail!(
            "{} grew past {} MiB while being read",
            path.display(),
            cap >> 20
        );
    }
    parse(&text, path)
}

/// Parses a profile's bytes (`path` names it in errors): strings bounded first, then the
/// format, the version and the structure.
pub fn parse(text: &[u8], path: &Path) -> Result<Profile> {
    if longest_string(text) > MAX_STRING_BYTES {
        bail!(
            "{} is a damaged lockscope profile: a string longer than {} KiB",
            path.display(),
            MAX_STRING_BYTES >> 10
        );
    }
    let value: serde_json::Value = serde_json::from_slice(text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a lockscope profile (corrupt or truncated: {e})",
            path.display()
        )
    })?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        bail!("{} is not a lockscope profile", path.display());
    }
    let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
    if version > u64::from(VERSION) {
        bail!(
            "{} is profile version {version}, newer than this lockscope reads (up to {VERSION}): upgrade lockscope",
            path.display()
        );
    }
    let p: Profile = serde_json::from_value(value)
        .map_err(|e| anyhow::anyhow!("{} is a damaged lockscope profile: {e}", path.display()))?;
    if !p.sums_fit() {
        bail!(
            "{} is a damaged lockscope profile: its counts add up past 2^64",
            path.display()
        );
    }
    Ok(p)
}

impl Profile {
    /// Whether every total a report adds up fits in 64 bits (a recorded profile's always do;
    /// a crafted one's need not, and reports sum them).
    fn sums_fit(&self) -> bool {
        fn add(acc: &mut [u64], vals: impl IntoIterator<Item = u64>) -> Option<()> {
            for (a, v) in acc.iter_mut().zip(vals) {
                *a = a.checked_add(v)?;
            }
            Some(())
        }
        let mut waits = [0u64; 7];
        let mut hist = vec![0u64; tracer_common::HIST_BUCKETS];
        let mut wakes = [0u64; 3];
        let ok = self.waits.iter().try_for_each(|r| {
            add(
                &mut waits,
                [
                    r.count,
                    r.total_ns,
                    r.max_ns,
                    r.interrupted,
                    r.timeouts,
                    r.timeout_ns,
                    r.errors,
                ],
            )?;
            add(&mut hist, r.hist.iter().copied())
        });
        ok.is_some()
            && self
                .wakes
                .iter()
                .try_for_each(|r| add(&mut wakes, [r.calls, r.woken, r.empty]))
                .is_some()
    }
}
