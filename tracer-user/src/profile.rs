//! The versioned profile file: everything needed to print the report again without the process.
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub use crate::behind::{Blamed, HolderPhase};

pub const FORMAT: &str = "lockscope-profile";
/// Bump on any change an older reader would misread.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub format: String,
    pub version: u32,
    pub meta: Meta,
    pub counters: Counters,
    pub losses: Losses,
    /// Files the stacks' frames live in.
    pub modules: Vec<Module>,
    /// Distinct symbolized stacks; rows refer to them by index.
    pub stacks: Vec<Stack>,
    pub waits: Vec<WaitRow>,
    pub wakes: Vec<WakeRow>,
    /// Thread names by tid, as seen while recording.
    pub threads: BTreeMap<u32, String>,
    /// The bundled map, when the target uses it: its phases as traced and its own counters.
    #[serde(default)]
    pub bundled: Option<Bundled>,
    /// What each futex word waited on is, where it could be told.
    #[serde(default)]
    pub locks: Vec<LockInfo>,
    /// Go targets: the toolchain, and the idle-thread parking left out of the rows.
    #[serde(default)]
    pub go: Option<GoTarget>,
}

/// A Go target's futex waits are OS threads. Idle ones parking in the scheduler are not lock
/// contention; they are summed here rather than listed as rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoTarget {
    pub version: String,
    /// Uprobes timing goroutines blocked in `sync` (0: futex waits only).
    #[serde(default)]
    pub goroutine_probes: usize,
    pub idle_waits: u64,
    pub idle_ns: u64,
}

/// A futex word, placed in the target's memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub uaddr: u64,
    /// `static`, `heap`, `anonymous memory (...)`, `unknown`, ...
    pub region: String,
    /// The file it lives in, for statics.
    pub module: Option<String>,
    /// The static's symbol (`+0x..` when inside it).
    pub symbol: Option<String>,
}

impl LockInfo {
    /// One phrase: `static lockdemo::SHARED_LOCK (lockdemo)`, `heap`.
    pub fn describe(&self) -> String {
        let module = self
            .module
            .as_deref()
            .map(|m| m.rsplit('/').next().unwrap_or(m));
        match (&self.symbol, module) {
            (Some(s), Some(m)) => format!("static {s} ({m})"),
            (None, Some(m)) if self.region == "static" => format!("static data in {m}"),
            _ => self.region.clone(),
        }
    }
}

impl Profile {
    pub fn lock_info(&self, uaddr: u64) -> Option<&LockInfo> {
        self.locks.iter().find(|l| l.uaddr == uaddr)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundled {
    pub exe: String,
    /// Uprobes attached to phase functions.
    pub probes: usize,
    /// The phase functions probed (`--phase-probes`).
    #[serde(default)]
    pub probed: Vec<String>,
    /// Traced phase totals, by phase function name.
    pub phases: Vec<PhaseRow>,
    /// The map's own counters over the checked window (end minus start), if readable.
    pub counters: Option<BTreeMap<String, u64>>,
    /// False when the target exited first and the window ends at the last periodic read.
    pub counters_exact: bool,
    /// Traced counts against the map's own counters, over the same window.
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub what: String,
    pub traced: u64,
    pub counted: u64,
}

impl Check {
    /// Relative difference, in percent of the counted value.
    pub fn error_percent(&self) -> f64 {
        if self.counted == 0 {
            if self.traced == 0 {
                0.0
            } else {
                100.0
            }
        } else {
            (self.traced as f64 - self.counted as f64).abs() * 100.0 / self.counted as f64
        }
    }
}

impl Bundled {
    /// Share of loads served from the snapshot without locking, in percent, from the map's
    /// own counters (no per-read probe: a uprobe costs ~100x a fast read).
    pub fn fast_read_percent(&self) -> Option<f64> {
        let c = self.counters.as_ref()?;
        let fast = *c.get("fast_reads")?;
        let slow = *c.get("slow_loads")?;
        (fast + slow > 0).then(|| fast as f64 * 100.0 / (fast + slow) as f64)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseRow {
    pub phase: String,
    pub calls: u64,
    pub returns: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    /// Entries copied, for rebuilds.
    pub items: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub pid: u32,
    pub comm: String,
    pub exe: Option<String>,
    pub start_unix_ms: u64,
    pub duration_ns: u64,
    /// From lockscope's start to the tracepoints being live.
    pub attach_ns: u64,
    /// Time spent symbolizing every stack after the recording.
    #[serde(default)]
    pub symbolize_ns: u64,
    pub stop: StopReason,
    /// `fp` or `dwarf`.
    pub unwind: String,
    /// Why, when `--unwind auto` chose: e.g. "auto: lockdemo has no frame pointers".
    #[serde(default)]
    pub unwind_note: Option<String>,
    pub kernel: String,
    pub lockscope_version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    Duration,
    Interrupted,
    TargetExited,
}

impl StopReason {
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::Duration => "duration reached",
            StopReason::Interrupted => "interrupted",
            StopReason::TargetExited => "target exited",
        }
    }
}

/// Event counts that are not contention rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Futex calls the target made.
    pub calls: u64,
    pub wait_calls: u64,
    pub wake_calls: u64,
    /// Waits that returned EAGAIN at once: the word changed before the thread slept.
    pub eagain: u64,
    /// Exits seen with no entry: calls already in progress when tracing began.
    pub in_flight_at_start: u64,
    /// Waits still blocked when recording stopped, and the longest of them so far.
    pub still_waiting_at_end: u64,
    pub longest_unfinished_ns: u64,
}

/// Everything the kernel side had to drop. Rows are exact only when all are zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Losses {
    /// Events whose stack could not be captured (kept under an unknown stack).
    pub stack_errors: u64,
    /// Events whose stack did not fit the stack map (kept under an unknown stack).
    pub stack_map_full: u64,
    /// Waits dropped: the wait aggregate map was full.
    pub wait_map_full: u64,
    /// Wakes dropped: the wake aggregate map was full.
    pub wake_map_full: u64,
    /// Calls dropped: too many threads in futex calls at once.
    pub inflight_full: u64,
    /// Waker updates dropped (pairing of waiters with wakers degrades).
    pub waker_map_full: u64,
    /// DWARF mode: waits whose stack snapshot was dropped (ring buffer full); they keep their
    /// frame-pointer stack.
    #[serde(default)]
    pub snapshots_dropped: u64,
    /// DWARF mode: snapshots sent without stack bytes (the stack could not be read).
    #[serde(default)]
    pub snapshot_read_errors: u64,
}

impl Losses {
    /// Events not counted at all.
    pub fn events(&self) -> u64 {
        self.wait_map_full + self.wake_map_full + self.inflight_full
    }
    /// Events counted without their stack.
    pub fn stacks(&self) -> u64 {
        self.stack_errors + self.stack_map_full + self.snapshots_dropped + self.snapshot_read_errors
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    pub path: String,
    /// GNU build id, hex.
    pub build_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stack {
    /// Innermost first.
    pub frames: Vec<Frame>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// The raw address the kernel reported.
    pub addr: u64,
    /// True for a return address (every frame but the interrupted instruction): it points
    /// after the call, so it is looked up one byte earlier.
    pub ret: bool,
    pub module: Option<usize>,
    /// Offset of `addr` in the module file.
    pub offset: Option<u64>,
    /// Functions at this address, innermost (inlined) first; empty when unresolved.
    pub syms: Vec<Sym>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sym {
    pub name: String,
    pub file: Option<String>,
    pub line: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitRow {
    /// Index into `stacks`; `None` when the stack was lost.
    pub stack: Option<usize>,
    /// The last waker of this futex before the wait ended, if seen.
    pub waker_stack: Option<usize>,
    pub uaddr: u64,
    pub tid: u32,
    pub op: String,
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    pub interrupted: u64,
    pub timeouts: u64,
    pub timeout_ns: u64,
    pub errors: u64,
    /// Profiles recorded before waits were split: the one phase (`rebuild_dirty`, ...) the
    /// whole wait time of the row was blamed on. Read, never written.
    #[serde(default, skip_serializing)]
    pub holder_phase: Option<String>,
    /// Of this row's wait time, what each holder phase ran while it waited (bundled map).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<Blamed>,
    /// Of `count`, waits whose whole time went to holder phases.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub covered_waits: u64,
    /// Log2 histogram of wait ns (see `tracer_common::HIST_BUCKETS`).
    pub hist: Vec<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WakeRow {
    pub stack: Option<usize>,
    pub uaddr: u64,
    pub tid: u32,
    pub op: String,
    pub calls: u64,
    pub woken: u64,
    pub empty: u64,
}

/// A profile file reserved before tracing starts, so an unwritable path fails before attach
/// and a crash never leaves a half-written profile under the final name.
pub struct PendingOutput {
    /// What is written, for errors: "profile", "report".
    what: &'static str,
    path: PathBuf,
    tmp: PathBuf,
    file: File,
}

impl PendingOutput {
    pub fn reserve_for(what: &'static str, path: &Path) -> Result<PendingOutput> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if path.is_dir() {
            bail!(
                "cannot write {what} to {}: it is a directory",
                path.display()
            );
        }
        let name = path
            .file_name()
            .with_context(|| format!("cannot write {what} to {}: no file name", path.display()))?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::create(&tmp)
            .map_err(|e| anyhow::anyhow!("cannot write {what} to {}: {e}", path.display()))?;
        // Nothing has been written yet; an unwritable directory was the only question.
        Ok(PendingOutput {
            what,
            path: path.to_path_buf(),
            tmp,
            file,
        })
    }

    pub fn commit(self, profile: &Profile) -> Result<()> {
        self.commit_with(|w| Ok(serde_json::to_writer(w, profile)?))
    }

    /// Writes whatever `write` produces (a rendered format) and moves it into place.
    pub fn commit_with(self, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
        let mut w = BufWriter::new(&self.file);
        if let Err(e) = write(&mut w).and_then(|()| Ok(w.flush()?)) {
            drop(w);
            let _ = fs::remove_file(&self.tmp);
            return Err(e.context(format!(
                "cannot write {} to {}",
                self.what,
                self.path.display()
            )));
        }
        drop(w);
        self.file.sync_all()?;
        fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("cannot write {} to {}", self.what, self.path.display()))?;
        Ok(())
    }

    /// Removes the reservation (nothing recorded, nothing to keep).
    pub fn abandon(self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

pub fn load(path: &Path) -> Result<Profile> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("no profile at {}", path.display())
        }
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    };
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
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
    serde_json::from_value(value)
        .map_err(|e| anyhow::anyhow!("{} is a damaged lockscope profile: {e}", path.display()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> Profile {
        let sym = |name: &str, line| Sym {
            name: name.into(),
            file: Some("src/main.rs".into()),
            line: Some(line),
        };
        Profile {
            format: FORMAT.into(),
            version: VERSION,
            meta: Meta {
                pid: 42,
                comm: "demo".into(),
                exe: Some("/bin/demo".into()),
                start_unix_ms: 1,
                duration_ns: 2_000_000_000,
                attach_ns: 40_000_000,
                symbolize_ns: 1_000_000,
                stop: StopReason::Duration,
                unwind: "fp".into(),
                unwind_note: None,
                kernel: "6.18".into(),
                lockscope_version: "0.1.0".into(),
            },
            counters: Counters {
                calls: 10,
                eagain: 2,
                ..Counters::default()
            },
            losses: Losses::default(),
            modules: vec![Module {
                path: "/bin/demo".into(),
                build_id: Some("abcd".into()),
            }],
            stacks: vec![
                Stack {
                    frames: vec![
                        Frame {
                            addr: 0x1000,
                            ret: false,
                            module: Some(0),
                            offset: Some(0x100),
                            syms: vec![sym("syscall", 1)],
                        },
                        Frame {
                            addr: 0x2000,
                            ret: true,
                            module: Some(0),
                            offset: Some(0x200),
                            syms: vec![sym("demo::hot", 21), sym("demo::worker", 30)],
                        },
                    ],
                },
                Stack {
                    frames: vec![Frame {
                        addr: 0x3000,
                        ret: false,
                        module: None,
                        offset: None,
                        syms: vec![],
                    }],
                },
            ],
            waits: vec![
                row(Some(0), 1, 3, 3_000_000, 2_000_000),
                row(Some(0), 2, 1, 1_000_000, 1_000_000),
                row(Some(1), 1, 2, 500_000, 400_000),
            ],
            wakes: vec![],
            threads: BTreeMap::from([(1, "worker-1".into())]),
            bundled: None,
            locks: vec![LockInfo {
                uaddr: 0x5000,
                region: "static".into(),
                module: Some("/bin/demo".into()),
                symbol: Some("demo::LOCK".into()),
            }],
            go: None,
        }
    }

    /// A stack of one resolved function per frame, innermost first.
    pub fn stack(names: &[&str]) -> Stack {
        Stack {
            frames: names
                .iter()
                .map(|n| Frame {
                    addr: 1,
                    ret: true,
                    module: None,
                    offset: None,
                    syms: vec![Sym {
                        name: n.to_string(),
                        file: None,
                        line: None,
                    }],
                })
                .collect(),
        }
    }

    pub fn row(stack: Option<usize>, tid: u32, count: u64, total: u64, max: u64) -> WaitRow {
        let mut hist = vec![0; tracer_common::HIST_BUCKETS];
        hist[tracer_common::hist_bucket(max)] = count;
        WaitRow {
            stack,
            waker_stack: None,
            uaddr: 0x5000,
            tid,
            op: "FUTEX_WAIT".into(),
            count,
            total_ns: total,
            max_ns: max,
            interrupted: 0,
            timeouts: 0,
            timeout_ns: 0,
            errors: 0,
            holder_phase: None,
            behind: vec![],
            covered_waits: 0,
            hist,
        }
    }

    fn tmpdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "lockscope-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip() {
        let d = tmpdir();
        let path = d.join("p.json");
        let out = PendingOutput::reserve_for("profile", &path).unwrap();
        let p = sample();
        out.commit(&p).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&p).unwrap()
        );
        // No temporary file is left beside it.
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn bad_files_get_one_clear_error() {
        let d = tmpdir().join("bad");
        fs::create_dir_all(&d).unwrap();
        let missing = load(&d.join("nope.json")).unwrap_err().to_string();
        assert!(missing.starts_with("no profile at"), "{missing}");

        let full = serde_json::to_string(&sample()).unwrap();
        let trunc = d.join("trunc.json");
        fs::write(&trunc, &full[..full.len() / 2]).unwrap();
        let e = load(&trunc).unwrap_err().to_string();
        assert!(e.contains("corrupt or truncated"), "{e}");

        let other = d.join("other.json");
        fs::write(&other, r#"{"hello": 1}"#).unwrap();
        assert!(load(&other)
            .unwrap_err()
            .to_string()
            .ends_with("is not a lockscope profile"));

        let newer = d.join("newer.json");
        fs::write(&newer, full.replace("\"version\":1", "\"version\":99")).unwrap();
        let e = load(&newer).unwrap_err().to_string();
        assert!(e.contains("newer than this lockscope"), "{e}");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn unwritable_output_fails_before_anything_is_written() {
        let e = PendingOutput::reserve_for("profile", Path::new("/nonexistent-dir/p.json"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("cannot write profile to /nonexistent-dir/p.json"),
            "{e}"
        );
        let d = tmpdir();
        let e = PendingOutput::reserve_for("profile", &d)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("is a directory"), "{e}");
    }
}
