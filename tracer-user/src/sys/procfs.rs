//! What lockscope reads from /proc about the target: its state, memory maps and thread names.
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// `PF_KTHREAD` from include/linux/sched.h: the task is a kernel thread.
const PF_KTHREAD: u64 = 0x0020_0000;

#[derive(Debug, Clone)]
pub struct TaskStat {
    pub comm: String,
    pub state: char,
    pub flags: u64,
}

/// Parses `/proc/PID/stat`. The command name is in parentheses and may itself contain
/// spaces and parentheses, so the fields are found from the last ')'.
pub fn parse_stat(text: &str) -> Result<TaskStat> {
    let open = text.find('(').context("no '(' in stat")?;
    let close = text.rfind(')').context("no ')' in stat")?;
    let comm = text[open + 1..close].to_string();
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // After the comm: state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8) flags(9).
    let state = rest
        .first()
        .and_then(|s| s.chars().next())
        .context("no state in stat")?;
    let flags = rest
        .get(6)
        .context("no flags in stat")?
        .parse()
        .context("bad flags in stat")?;
    Ok(TaskStat { comm, state, flags })
}

impl TaskStat {
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }
}

/// The process a PID names, checked to be traceable: alive, not a zombie, not a kernel thread.
#[derive(Debug, Clone)]
pub struct Target {
    /// Thread group id: what the kernel side filters on.
    pub tgid: u32,
    pub comm: String,
    pub exe: Option<PathBuf>,
    /// The Go toolchain that built the executable (`go1.19.8`), for Go targets.
    pub go: Option<String>,
}

pub fn target(pid: u32) -> Result<Target> {
    let stat = match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => parse_stat(&s)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("no process with PID {pid}")
        }
        Err(e) => bail!("cannot read /proc/{pid}/stat: {e}"),
    };
    if stat.is_kernel_thread() {
        bail!(
            "PID {pid} ({}) is a kernel thread: it makes no futex calls to trace",
            stat.comm
        );
    }
    // A leader that called pthread_exit is a zombie while its other threads run on: that
    // process is alive, read through one of its live threads.
    let live = if stat.is_zombie() {
        match live_task(pid) {
            Some(t) => t,
            None => bail!(
                "PID {pid} ({}) is a zombie: it has exited and runs no more",
                stat.comm
            ),
        }
    } else {
        pid
    };
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let tgid = status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(pid);
    let comm = if tgid == pid {
        stat.comm
    } else {
        fs::read_to_string(format!("/proc/{tgid}/comm"))
            .map(|s| s.trim_end().to_string())
            .unwrap_or(stat.comm)
    };
    Ok(Target {
        tgid,
        comm,
        exe: fs::read_link(format!("/proc/{tgid}/exe"))
            .or_else(|_| fs::read_link(format!("/proc/{tgid}/task/{live}/exe")))
            .ok()
            .map(|e| host_path(tgid, &e)),
        go: None,
    })
}

/// A thread of process `pid` that has not exited (the leader may have: its /proc entries for
/// the address space are then empty, while every other thread's are whole).
pub fn live_task(pid: u32) -> Option<u32> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|tid| {
            fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
                .ok()
                .and_then(|s| parse_stat(&s).ok())
                .is_some_and(|st| !st.is_zombie())
        })
}

/// One line of /proc/PID/maps that can hold code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    /// Backing file, or a pseudo name such as `[vdso]`.
    pub path: String,
}

impl Mapping {
    pub fn is_file(&self) -> bool {
        self.path.starts_with('/')
    }
}

/// One line of /proc/PID/maps, any permissions: the one parser of that file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    /// `rwxp` as the kernel prints them.
    pub perms: String,
    pub offset: u64,
    /// Empty for anonymous memory.
    pub path: String,
}

impl Region {
    pub fn writable(&self) -> bool {
        self.perms.contains('w')
    }
    pub fn executable(&self) -> bool {
        self.perms.contains('x')
    }
}

/// Every mapping in the text of /proc/PID/maps.
pub fn parse_regions(text: &str) -> Vec<Region> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (start, end) = f.next()?.split_once('-')?;
            let perms = f.next()?.to_string();
            let offset = u64::from_str_radix(f.next()?, 16).ok()?;
            let (_dev, _inode) = (f.next()?, f.next()?);
            Some(Region {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                perms,
                offset,
                path: f.collect::<Vec<_>>().join(" "),
            })
        })
        .collect()
}

/// Executable mappings from the text of /proc/PID/maps.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    parse_regions(text)
        .into_iter()
        .filter(Region::executable)
        .map(|r| Mapping {
            start: r.start,
            end: r.end,
            file_offset: r.offset,
            path: if r.path.is_empty() {
                "[anon]".into()
            } else {
                r.path
            },
        })
        .collect()
}

/// Every executable mapping the target has had while we watched, so stacks still resolve
/// after a library is unloaded or the process exits.
#[derive(Debug, Default, Clone)]
pub struct MapHistory {
    /// Oldest first; a later mapping of the same range wins a lookup.
    pub mappings: Vec<Mapping>,
    /// The whole of /proc/PID/maps as last read (data mappings too, to name locks).
    pub last_text: String,
}

impl MapHistory {
    /// Re-reads /proc/PID/maps. Returns false if the process is gone.
    pub fn refresh(&mut self, pid: u32) -> bool {
        let Ok(mut text) = fs::read_to_string(format!("/proc/{pid}/maps")) else {
            return false;
        };
        if text.is_empty() {
            // The leader has exited (its maps are empty); a live thread shares the mm.
            match live_task(pid)
                .and_then(|t| fs::read_to_string(format!("/proc/{pid}/task/{t}/maps")).ok())
            {
                Some(t) => text = t,
                None => return false,
            }
        }
        let mut now = parse_maps(&text);
        let ids = file_ids(&text);
        for m in now.iter_mut().filter(|m| m.is_file()) {
            let host = host_path(pid, Path::new(&m.path));
            m.path = match ids.get(&m.start) {
                // Deleted, or replaced since it was mapped (an upgrade in place): the file
                // the process maps, while it lives.
                Some(&id) if replaced(&host, id) => {
                    format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end)
                }
                _ => host.to_string_lossy().into_owned(),
            };
        }
        self.merge(now);
        self.last_text = text;
        true
    }

    pub fn merge(&mut self, now: Vec<Mapping>) {
        for m in now {
            if !self.mappings.contains(&m) {
                self.mappings.push(m);
            }
        }
    }

    pub fn lookup(&self, addr: u64) -> Option<&Mapping> {
        self.mappings
            .iter()
            .rev()
            .find(|m| m.start <= addr && addr < m.end)
    }
}

/// A mapped file's device (major, minor) and inode, as /proc/PID/maps shows them.
type FileId = (u32, u32, u64);

/// Start address → device and inode of each file mapping in the text of /proc/PID/maps.
fn file_ids(text: &str) -> HashMap<u64, FileId> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let start = u64::from_str_radix(f.next()?.split_once('-')?.0, 16).ok()?;
            let (major, minor) = f.nth(2)?.split_once(':')?;
            let ino: u64 = f.next()?.parse().ok()?;
            let dev = (
                u32::from_str_radix(major, 16).ok()?,
                u32::from_str_radix(minor, 16).ok()?,
            );
            (ino != 0).then_some((start, (dev.0, dev.1, ino)))
        })
        .collect()
}

/// Whether `path` no longer names the mapped file `id`: gone, or another file on the same
/// device (replaced in place). A different device is not taken as replaced: overlay
/// filesystems show the lower file's device and inode in /proc/PID/maps.
fn replaced(path: &Path, id: FileId) -> bool {
    use std::os::unix::fs::MetadataExt;
    match fs::metadata(path) {
        Err(_) => true,
        Ok(m) => {
            let dev = m.dev();
            (libc::major(dev), libc::minor(dev)) == (id.0, id.1) && m.ino() != id.2
        }
    }
}

/// A file as process `pid` names it, reachable from here: `path` itself when it is the same
/// file here, else the same path under `/proc/PID/root` (a process in a container, or in its
/// own mount namespace, whose files are not where the host has them).
pub fn host_path(pid: u32, path: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let Ok(rel) = path.strip_prefix("/") else {
        return path.to_path_buf();
    };
    let inside = Path::new(&format!("/proc/{pid}/root")).join(rel);
    match (fs::metadata(path), fs::metadata(&inside)) {
        (Ok(here), Ok(there)) if here.dev() == there.dev() && here.ino() == there.ino() => {
            path.to_path_buf()
        }
        (_, Ok(_)) => inside,
        _ => path.to_path_buf(),
    }
}

/// The cgroup v2 path of a process (`0::/system.slice/x.service` → that path), or "".
pub fn cgroup(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("")
        .to_string()
}

/// Thread names of a process, by tid.
pub fn thread_names(pid: u32, into: &mut BTreeMap<u32, String>) {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Ok(name) = fs::read_to_string(entry.path().join("comm")) {
            into.insert(tid, name.trim_end().to_string());
        }
    }
}

/// Now, on the clock the kernel programs read (`bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own. CLOCK_MONOTONIC is bpf_ktime_get_ns's
    // clock, so the two can be subtracted.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A file the process sees where the host does keeps its path; one that does not exist
    /// here is not rewritten to anything.
    #[test]
    fn a_mapped_file_is_replaced_only_when_its_path_names_another_file() {
        let text = fs::read_to_string("/proc/self/maps").unwrap();
        let exe = fs::read_link("/proc/self/exe").unwrap();
        let (start, id) = parse_maps(&text)
            .into_iter()
            .find(|m| Path::new(&m.path) == exe)
            .map(|m| (m.start, file_ids(&text)[&m.start]))
            .unwrap();
        assert!(start > 0);
        assert!(!replaced(&exe, id));
        assert!(replaced(&exe, (id.0, id.1, id.2 + 1)));
        assert!(
            !replaced(&exe, (id.0 + 1, id.1, id.2 + 1)),
            "another device: overlay"
        );
        assert!(replaced(Path::new("/nonexistent/x (deleted)"), id));
    }

    #[test]
    fn host_paths_stay_as_they_are_in_our_own_namespace() {
        let me = std::process::id();
        let exe = fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(host_path(me, &exe), exe);
        let none = Path::new("/no/such/lockscope/file");
        assert_eq!(host_path(me, none), none);
        assert_eq!(host_path(me, Path::new("[vdso]")), Path::new("[vdso]"));
    }

    /// A target with no executable, for tests of what is built from one.
    pub fn target() -> Target {
        Target {
            tgid: 1,
            comm: "t".into(),
            exe: None,
            go: None,
        }
    }

    #[test]
    fn stat_with_odd_comm() {
        let s = "1234 (my (weird) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0";
        let st = parse_stat(s).unwrap();
        assert_eq!(st.comm, "my (weird) prog");
        assert_eq!(st.state, 'S');
        assert_eq!(st.flags, 4194560);
        assert!(!st.is_kernel_thread());
        let k = parse_stat("2 (kthreadd) S 0 0 0 0 -1 2129984 0 0").unwrap();
        assert!(k.is_kernel_thread());
        assert!(parse_stat("9 (x) Z 1 1 1 0 -1 4194316 0")
            .unwrap()
            .is_zombie());
    }

    #[test]
    fn maps_keep_only_code() {
        let text = "\
55d0a000-55d0b000 r--p 00000000 fd:01 123 /usr/bin/prog
55d0b000-55d0f000 r-xp 00001000 fd:01 123 /usr/bin/prog
7f00000-7f01000 rw-p 00000000 00:00 0
7fff1000-7fff3000 r-xp 00000000 00:00 0 [vdso]
7e000000-7e001000 r-xp 00000000 00:00 0
7d000000-7d100000 r-xp 00002000 fd:01 77 /opt/my app/lib.so";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 4);
        assert_eq!(maps[0].file_offset, 0x1000);
        assert_eq!(maps[0].path, "/usr/bin/prog");
        assert_eq!(maps[1].path, "[vdso]");
        assert_eq!(maps[2].path, "[anon]");
        assert_eq!(maps[3].path, "/opt/my app/lib.so");
        let mut h = MapHistory::default();
        h.merge(maps.clone());
        h.merge(maps);
        assert_eq!(h.mappings.len(), 4);
        assert_eq!(h.lookup(0x55d0b010).unwrap().path, "/usr/bin/prog");
        assert!(h.lookup(0x55d0a010).is_none());
    }
}
