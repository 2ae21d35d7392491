//! tokio: recognising tokio in a Rust executable and where its async lock waits are probed.
//! `tokio::sync::{Mutex, RwLock, Semaphore}` all acquire through `batch_semaphore::Acquire`,
//! a future that queues a waiter node inside itself and returns `Pending`. tokio compiles
//! `<Acquire as Future>::poll` and `<Acquire as Drop>::drop` out of line (callers in other
//! crates reach them through the GOT), so entry uprobes on those two functions see every
//! acquire. Each entry is checked against the bytes on disk before a probe goes there.
//! Where fat LTO inlined `poll` and left no out-of-line copy, it is probed at its DWARF
//! inline sites instead (`tokioinline`).
//!
//! The version comes from the crate path rustc leaves in panic locations
//! (`…/tokio-1.54.1/src/…`), which a `strip` keeps; the functions need the symbol table,
//! which it removes.
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use object::{Object, ObjectSection, ObjectSymbol};

use super::tokioinline::{inline_sites, InlineSite, Inlined};
use crate::profile::{InlineSites, ProbeWindows, TokioTarget};
use crate::sys::{instruction_starts, past_entry_guard};

/// The functions probed, by demangled name without the hash.
const POLL: &str = "<tokio::sync::batch_semaphore::Acquire as core::future::future::Future>::poll";
const DROP: &str = "<tokio::sync::batch_semaphore::Acquire as core::ops::drop::Drop>::drop";
/// Optional: the releasing side. Probed past its `if added == 0` guard where it has one (see
/// `sys::past_entry_guard`), before it locks the wait list: a trap inside
/// `add_permits_locked`, with that lock held, made every worker queue on it (4.9× slower
/// exact on `tokiolock`, against 3.3× here).
const RELEASE: &str = "tokio::sync::batch_semaphore::Semaphore::release";

/// Where `poll` is probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollAt {
    /// The out-of-line function's entry (file offset); `self` in RDI.
    Entry(u64),
    /// Its DWARF inline sites (fat LTO).
    Inline(Inlined),
}

/// File offsets of the probed entries, each checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokioPoints {
    pub poll: PollAt,
    pub drop: u64,
    /// `None`: no out-of-line `Semaphore::release`.
    pub release: Option<u64>,
    /// `Semaphore::release`'s DWARF inline sites, looked for where `poll` is inlined.
    pub release_inline: Vec<InlineSite>,
}

impl TokioPoints {
    /// How many uprobes these are.
    pub fn count(&self) -> usize {
        let polls = match &self.poll {
            PollAt::Entry(_) => 1,
            PollAt::Inline(i) => i.sites.len(),
        };
        polls + 1 + usize::from(self.release.is_some()) + self.release_inline.len()
    }

    /// The inline sites' counts, for the profile, when `poll` is inlined.
    pub fn inlined(&self) -> Option<InlineSites> {
        match &self.poll {
            PollAt::Entry(_) => None,
            PollAt::Inline(i) => Some(InlineSites {
                probed: i.sites.len(),
                found: i.found,
                skipped: i.skipped_why.clone(),
                release_sites: self.release_inline.len(),
            }),
        }
    }
}

/// What lockscope found of tokio in an executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokioProbes {
    /// No tokio in it.
    Absent,
    /// tokio is there, but its async waits cannot be probed, for the reason given.
    Unprobeable { version: String, why: String },
    /// The probe points, checked.
    Ready {
        version: String,
        exe: PathBuf,
        points: TokioPoints,
    },
}

impl TokioProbes {
    /// What a profile keeps of this: `None` when tokio is absent. `windows`: how the probes
    /// were switched on and off (`--probe-windows`), when they were.
    pub fn into_target(self, windows: Option<ProbeWindows>) -> Option<TokioTarget> {
        match self {
            TokioProbes::Absent => None,
            TokioProbes::Unprobeable { version, why } => Some(TokioTarget {
                version,
                probes: 0,
                unprobed: Some(why),
                windows: None,
                inlined: None,
            }),
            TokioProbes::Ready {
                version, points, ..
            } => Some(TokioTarget {
                version,
                probes: points.count(),
                unprobed: None,
                windows,
                inlined: points.inlined(),
            }),
        }
    }
}

/// Looks for tokio in `exe`: its version, and the two probe points.
pub fn tokio_probes(exe: &Path) -> TokioProbes {
    let Ok(file) = fs::read(exe) else {
        return TokioProbes::Absent;
    };
    let Some(version) = tokio_version(&file) else {
        return TokioProbes::Absent;
    };
    match points(&file) {
        Ok(points) => TokioProbes::Ready {
            version,
            exe: exe.to_path_buf(),
            points,
        },
        Err(e) => TokioProbes::Unprobeable {
            version,
            why: format!("{e:#}"),
        },
    }
}

/// The tokio version named by a crate path such as `/tokio-1.54.1/src/` in the file.
pub fn tokio_version(file: &[u8]) -> Option<String> {
    const NEEDLE: &[u8] = b"/tokio-";
    let mut at = 0;
    while let Some(i) = find(&file[at..], NEEDLE) {
        let start = at + i + NEEDLE.len();
        let rest = &file[start..file.len().min(start + 32)];
        let len = rest
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'.')
            .count();
        let v = &rest[..len];
        if len >= 5 && rest.get(len) == Some(&b'/') && v.iter().filter(|&&b| b == b'.').count() == 2
        {
            return Some(String::from_utf8_lossy(v).into_owned());
        }
        at = start;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The file offsets of the functions' entries, each checked to be where the symbol table
/// says, inside an executable section, with bytes that decode from there.
fn points(file: &[u8]) -> Result<TokioPoints> {
    let obj = object::File::parse(file).context("not an ELF file lockscope can read")?;
    if obj.symbol_table().is_none() {
        anyhow::bail!("the executable is stripped (no symbol table), so tokio's batch_semaphore functions cannot be found; build it without `strip` to trace them");
    }
    let find = |want: &str| entry_point(&obj, file, want);
    let (poll, release_inline) = match find(POLL) {
        Ok((at, _)) => (PollAt::Entry(at), Vec::new()),
        // The build inlined across crates (fat LTO): the guards' drops inline `release` too.
        Err(_) => (
            PollAt::Inline(inline_sites(&obj, file, POLL)?),
            inline_sites(&obj, file, RELEASE).map_or(Vec::new(), |r| r.sites),
        ),
    };
    Ok(TokioPoints {
        poll,
        release_inline,
        drop: find(DROP)?.0,
        release: find(RELEASE)
            .ok()
            .map(|(at, code)| at + past_entry_guard(code).unwrap_or(0)),
    })
}

/// The file offset and bytes of the out-of-line function whose demangled name (without the
/// hash) is `want`, checked to be where the symbol table says, inside an executable section,
/// with bytes that decode from its entry.
pub(crate) fn entry_point<'f>(
    obj: &object::File<'_>,
    file: &'f [u8],
    want: &str,
) -> Result<(u64, &'f [u8])> {
    let sym = obj
        .symbols()
        .find(|s| {
            s.size() > 0
                && s.name()
                    .is_ok_and(|n| format!("{:#}", rustc_demangle::demangle(n)) == want)
        })
        .with_context(|| {
            format!("no out-of-line `{want}` in the symbol table (inlined, or another layout)")
        })?;
    let section = obj
        .sections()
        .find(|s| s.address() <= sym.address() && sym.address() < s.address() + s.size())
        .with_context(|| format!("`{want}` lies in no section"))?;
    let executable = matches!(
        section.flags(),
        object::SectionFlags::Elf { sh_flags } if sh_flags & u64::from(object::elf::SHF_EXECINSTR) != 0
    );
    anyhow::ensure!(executable, "`{want}` is not in executable code");
    let (sec_off, _) = section.file_range().context("no file data")?;
    let offset = sec_off + (sym.address() - section.address());
    let bytes = file
        .get(offset as usize..(offset + sym.size()) as usize)
        .with_context(|| format!("`{want}` runs past the end of the file"))?;
    // The entry is the first instruction; the whole body must decode from it.
    anyhow::ensure!(
        instruction_starts(bytes, 0).is_some_and(|s| s.first() == Some(&0)),
        "`{want}`'s bytes do not decode as x86-64 code; no probe placed"
    );
    Ok((offset, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_from_a_crate_path() {
        let f = b"xx/home/.cargo/registry/src/x/tokio-macros-2.5.0/src/a.rs\0/r/tokio-1.54.1/src/sync/mutex.rs";
        assert_eq!(tokio_version(f).as_deref(), Some("1.54.1"));
        assert_eq!(tokio_version(b"/tokio-util/src/"), None);
    }
}
