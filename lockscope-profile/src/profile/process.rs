//! process: which process a row, a wake or a lock belongs to. A profile is one recorded
//! process (`meta.pid`) and, under `record --follow-forks`, the children it followed
//! (`processes`); rows of a child carry its pid, the recorded process's rows none.
use serde::{Deserialize, Serialize};

use super::{LockInfo, Profile, Unwinder, WaitRow, WakeRow};

/// A process `record --follow-forks` followed, whose rows were merged into the profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub comm: String,
    #[serde(default)]
    pub exe: Option<String>,
    /// How its stacks were walked (chosen from its own executable).
    pub unwind: Unwinder,
}

impl Profile {
    /// The process a wait row is from: its own pid, or the recorded process.
    pub fn pid_of_wait(&self, row: &WaitRow) -> u32 {
        row.pid.unwrap_or(self.meta.pid)
    }

    /// The process a wake row is from.
    pub fn pid_of_wake(&self, row: &WakeRow) -> u32 {
        row.pid.unwrap_or(self.meta.pid)
    }

    /// The command name of the recorded process or of a followed one.
    pub fn comm_of(&self, pid: u32) -> Option<&str> {
        if pid == self.meta.pid {
            return Some(&self.meta.comm);
        }
        self.processes
            .iter()
            .find(|p| p.pid == pid)
            .map(|p| p.comm.as_str())
    }

    /// `pid 1234 (stress-ng-mutex)`, or `pid 1234` for a process the profile does not name.
    pub fn process_label(&self, pid: u32) -> String {
        match self.comm_of(pid) {
            Some(comm) => format!("pid {pid} ({comm})"),
            None => format!("pid {pid}"),
        }
    }

    /// What the futex word at `uaddr` is, in the process `pid` (`None`: the recorded one).
    pub fn lock_info(&self, pid: Option<u32>, uaddr: u64) -> Option<&LockInfo> {
        self.locks.iter().find(|l| l.uaddr == uaddr && l.pid == pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::testing::sample;

    #[test]
    fn rows_say_their_process_and_round_trip() {
        let mut p = sample();
        let parent = p.meta.pid;
        let mut child = p.waits[0].clone();
        child.pid = Some(parent + 7);
        p.waits.push(child);
        p.processes.push(Process {
            pid: parent + 7,
            comm: "worker".into(),
            exe: None,
            unwind: Unwinder::Dwarf,
        });
        assert_eq!(p.pid_of_wait(&p.waits[0]), parent);
        assert_eq!(p.pid_of_wait(p.waits.last().unwrap()), parent + 7);
        assert_eq!(
            p.process_label(parent + 7),
            format!("pid {} (worker)", parent + 7)
        );
        assert_eq!(p.process_label(1), "pid 1");

        let text = serde_json::to_string(&p).unwrap();
        // The parent's rows carry no pid; the child's does.
        assert_eq!(text.matches("\"pid\":").count(), 3, "{text}");
        let back: Profile = serde_json::from_str(&text).unwrap();
        assert_eq!(back.waits.last().unwrap().pid, Some(parent + 7));
        assert_eq!(back.waits[0].pid, None);
        assert_eq!(back.processes, p.processes);
    }

    #[test]
    fn a_profile_without_children_is_written_as_before() {
        let p = sample();
        let text = serde_json::to_string(&p).unwrap();
        assert!(!text.contains("\"processes\""), "{text}");
        // meta.pid is the only pid.
        assert_eq!(text.matches("\"pid\":").count(), 1, "{text}");
        let back: Profile = serde_json::from_str(&text).unwrap();
        assert!(back.processes.is_empty());
        assert!(back.waits.iter().all(|w| w.pid.is_none()));
    }
}
