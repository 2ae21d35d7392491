//! identity: which program a pid is running, so the agent notices when it changes under it —
//! an exec (a new executable file behind /proc/PID/exe), a pid reused by a new process (a new
//! start time) — and the executable to read when the path it was started from is gone or now
//! names another file (an in-place upgrade): `/proc/PID/exe`, which opens the very file the
//! process runs, deleted or not.
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One process as first seen: its start time and the file it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ident {
    /// Clock ticks after boot at which the process started (/proc/PID/stat field 22).
    start: u64,
    /// Device and inode of the executable it runs.
    exe: (u64, u64),
}

impl Ident {
    /// `None` when the process is gone (or its executable cannot be looked at).
    pub fn of(pid: u32) -> Option<Ident> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the comm's ')': state is field 3, so field 22 is the 20th after it.
        let start = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(19)?
            .parse()
            .ok()?;
        let m = fs::metadata(format!("/proc/{pid}/exe")).ok()?;
        Some(Ident {
            start,
            exe: (m.dev(), m.ino()),
        })
    }
}

/// How a traced pid stands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Same,
    /// The process exec'd another executable.
    Exec,
    /// The pid now belongs to another process.
    Reused,
    /// Gone, or unreadable.
    Gone,
}

impl Change {
    pub fn of(pid: u32, was: &Ident) -> Change {
        match Ident::of(pid) {
            None => Change::Gone,
            Some(now) if now.start != was.start => Change::Reused,
            Some(now) if now.exe != was.exe => Change::Exec,
            Some(_) => Change::Same,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Change::Same => "same",
            Change::Exec => "exec'd",
            Change::Reused => "pid reused",
            Change::Gone => "exited",
        }
    }
}

/// The path to read `pid`'s executable through: `exe` when it still names the file the
/// process runs, else `/proc/PID/exe` (deleted, replaced, or renamed since the start).
pub fn live_exe(pid: u32, exe: &Path) -> PathBuf {
    let running = format!("/proc/{pid}/exe");
    let same = match (fs::metadata(exe), fs::metadata(&running)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    if same {
        exe.to_path_buf()
    } else {
        PathBuf::from(running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_the_same_and_its_exe_is_its_path() {
        let me = std::process::id();
        let id = Ident::of(me).unwrap();
        assert_eq!(Change::of(me, &id), Change::Same);
        let exe = fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(live_exe(me, &exe), exe);
        assert_eq!(
            live_exe(me, Path::new("/nonexistent/x (deleted)")),
            PathBuf::from(format!("/proc/{me}/exe"))
        );
        let other = Ident {
            start: id.start + 1,
            ..id
        };
        assert_eq!(Change::of(me, &other), Change::Reused);
        let other = Ident { exe: (0, 0), ..id };
        assert_eq!(Change::of(me, &other), Change::Exec);
    }
}
