//! discover: which processes the agent traces, found by polling /proc (every second): a
//! process that matches is attached at the next poll after it starts, and dropped at the
//! first poll after it exits. Polling needs no extra kernel program and sees every way a
//! process can start (fork+exec, exec alone, a container runtime's clone).
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

pub use crate::commands::options::Select;
use crate::sys::parse_stat;

/// What one /proc entry says about a process, for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub pid: u32,
    pub comm: String,
    pub exe: Option<PathBuf>,
    /// cgroup v2 path, read only when matching needs it.
    pub cgroup: Option<String>,
}

impl Select {
    pub fn matches(&self, p: &Seen) -> bool {
        match self {
            Select::All => true,
            Select::Match {
                pids,
                comms,
                exes,
                cgroups,
            } => {
                pids.contains(&p.pid)
                    || comms.contains(&p.comm)
                    || p.exe
                        .as_deref()
                        .is_some_and(|e| exes.iter().any(|x| x == e))
                    || p.cgroup
                        .as_deref()
                        .is_some_and(|c| cgroups.iter().any(|g| in_cgroup(c, g)))
            }
        }
    }

    /// Whether matching needs each process's executable (a readlink per process per poll).
    fn needs_exe(&self) -> bool {
        matches!(self, Select::Match { exes, .. } if !exes.is_empty())
    }

    /// Whether matching needs each process's cgroup (a read per process per poll).
    fn needs_cgroup(&self) -> bool {
        matches!(self, Select::Match { cgroups, .. } if !cgroups.is_empty())
    }
}

/// Whether cgroup `c` is `group` or below it (`/a/b` is in `/a`, `/ab` is not).
fn in_cgroup(c: &str, group: &str) -> bool {
    group.is_empty()
        || c.strip_prefix(group)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The processes now running that `select` matches, by pid (the agent itself left out).
pub fn scan(select: &Select) -> BTreeSet<u32> {
    let me = std::process::id();
    let Ok(dir) = fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| seen(Path::new("/proc"), pid, select))
        .filter(|p| select.matches(p))
        .map(|p| p.pid)
        .collect()
}

/// Reads one process's entry; `None` for kernel threads, zombies and processes gone already.
fn seen(proc: &Path, pid: u32, select: &Select) -> Option<Seen> {
    let stat = parse_stat(&fs::read_to_string(proc.join(format!("{pid}/stat"))).ok()?).ok()?;
    if stat.is_kernel_thread() || stat.is_zombie() {
        return None;
    }
    let exe = select
        .needs_exe()
        .then(|| fs::read_link(proc.join(format!("{pid}/exe"))).ok())
        .flatten();
    Some(Seen {
        pid,
        comm: stat.comm,
        exe,
        cgroup: select.needs_cgroup().then(|| crate::sys::cgroup(pid)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, comm: &str, exe: Option<&str>) -> Seen {
        Seen {
            pid,
            comm: comm.into(),
            exe: exe.map(PathBuf::from),
            cgroup: Some("/system.slice/web.service".into()),
        }
    }

    #[test]
    fn a_process_matches_by_pid_comm_or_exe() {
        let s = Select::Match {
            pids: vec![7],
            comms: vec!["lockdemo".into()],
            exes: vec!["/usr/bin/pigz".into()],
            cgroups: vec![],
        };
        assert!(s.matches(&p(7, "x", None)));
        assert!(s.matches(&p(8, "lockdemo", None)));
        assert!(s.matches(&p(9, "y", Some("/usr/bin/pigz"))));
        assert!(!s.matches(&p(10, "lockdemo2", Some("/usr/bin/gzip"))));
        assert!(Select::All.matches(&p(10, "anything", None)));
        let group = |g: &str| Select::Match {
            pids: vec![],
            comms: vec![],
            exes: vec![],
            cgroups: vec![g.into()],
        };
        assert!(group("/system.slice").matches(&p(11, "x", None)));
        assert!(group("/system.slice/web.service").matches(&p(11, "x", None)));
        assert!(!group("/system.slice/web").matches(&p(11, "x", None)));
        assert!(!group("/user.slice").matches(&p(11, "x", None)));
    }

    /// The scan reads the real /proc: this test process is there, and the agent (here, the
    /// test binary itself) never matches itself.
    #[test]
    fn the_scan_finds_processes_by_comm_but_never_itself() {
        let me = std::process::id();
        let comm = fs::read_to_string("/proc/self/comm").unwrap();
        let by_comm = Select::Match {
            pids: vec![],
            comms: vec![comm.trim_end().into()],
            exes: vec![],
            cgroups: vec![],
        };
        assert!(!scan(&by_comm).contains(&me));
        let init = Select::Match {
            pids: vec![1],
            comms: vec![],
            exes: vec![],
            cgroups: vec![],
        };
        assert_eq!(scan(&init), BTreeSet::from([1]));
    }
}
