//! deadlock: threads blocked for a whole recording, as the profile keeps them, and the cycles
//! of glibc mutex owners among them (a possible deadlock). Data and a pure function: the
//! renderers read it without depending on how blocked threads are found (`collect/blocked.rs`).
use serde::{Deserialize, Serialize};

use super::FutexOp;

/// A thread blocked for the whole recording, as saved in the profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    pub tid: u32,
    pub uaddr: u64,
    pub op: FutexOp,
    /// Index into the profile's stacks.
    pub stack: Option<usize>,
    /// The futex word's value at the end.
    pub word: Option<u32>,
    /// For a glibc mutex: the owner's tid, when it is a thread of the process.
    pub owner: Option<u32>,
    /// How long it was seen asleep (the whole recording, at least).
    pub seen_ns: u64,
}

/// Cycles of blocked threads each waiting on a mutex the next one owns, each as the tids in
/// wait order starting from the smallest; every cycle once.
pub fn deadlocks(blocked: &[Blocked]) -> Vec<Vec<u32>> {
    let next = |tid: u32| blocked.iter().find(|b| b.tid == tid).and_then(|b| b.owner);
    let mut cycles: Vec<Vec<u32>> = Vec::new();
    for b in blocked {
        let mut path = vec![b.tid];
        let mut at = b.tid;
        while let Some(o) = next(at) {
            if let Some(i) = path.iter().position(|&t| t == o) {
                let mut cycle = path[i..].to_vec();
                let min = (0..cycle.len()).min_by_key(|&j| cycle[j]).unwrap_or(0);
                cycle.rotate_left(min);
                if !cycles.contains(&cycle) {
                    cycles.push(cycle);
                }
                break;
            }
            path.push(o);
            at = o;
        }
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(tid: u32, owner: Option<u32>) -> Blocked {
        Blocked {
            tid,
            uaddr: u64::from(tid) * 0x40,
            op: FutexOp::Wait,
            stack: None,
            word: Some(2),
            owner,
            seen_ns: 1,
        }
    }

    #[test]
    fn owner_cycles_are_deadlocks_and_chains_are_not() {
        let two = [blocked(7, Some(5)), blocked(5, Some(7))];
        assert_eq!(deadlocks(&two), vec![vec![5, 7]]);
        let three = [
            blocked(3, Some(9)),
            blocked(9, Some(4)),
            blocked(4, Some(3)),
        ];
        assert_eq!(deadlocks(&three), vec![vec![3, 9, 4]]);
        // A waits on B, B is blocked on something nobody here holds: no cycle.
        let chain = [blocked(1, Some(2)), blocked(2, None), blocked(6, Some(8))];
        assert!(deadlocks(&chain).is_empty());
    }
}
