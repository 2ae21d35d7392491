//! Folds a profile's per-(stack, waker, futex, thread) wait rows into per-stack totals.
use std::collections::{BTreeSet, HashMap};

use tracer_common::HIST_BUCKETS;

use crate::profile::{Profile, WaitRow};

/// Contention at one stack, summed over threads, futexes and wakers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackTotal {
    /// `None`: waits whose stack was lost.
    pub stack: Option<usize>,
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    pub hist: Vec<u64>,
    pub threads: BTreeSet<u32>,
    pub locks: BTreeSet<u64>,
}

impl StackTotal {
    pub fn avg_ns(&self) -> u64 {
        self.total_ns.checked_div(self.count).unwrap_or(0)
    }
}

/// Whole-recording totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub waits: u64,
    pub wait_ns: u64,
    pub timeouts: u64,
    pub timeout_ns: u64,
    pub errors: u64,
}

pub fn totals(rows: &[WaitRow]) -> Totals {
    rows.iter().fold(Totals::default(), |mut t, r| {
        t.waits += r.count;
        t.wait_ns += r.total_ns;
        t.timeouts += r.timeouts;
        t.timeout_ns += r.timeout_ns;
        t.errors += r.errors;
        t
    })
}

/// Per-stack totals of waits that slept, hottest (most wait time) first; ties by count.
pub fn by_stack(profile: &Profile) -> Vec<StackTotal> {
    let mut acc: HashMap<Option<usize>, StackTotal> = HashMap::new();
    for r in profile.waits.iter().filter(|r| r.count > 0) {
        let t = acc.entry(r.stack).or_insert_with(|| StackTotal {
            stack: r.stack,
            count: 0,
            total_ns: 0,
            max_ns: 0,
            hist: vec![0; HIST_BUCKETS],
            threads: BTreeSet::new(),
            locks: BTreeSet::new(),
        });
        t.count += r.count;
        t.total_ns += r.total_ns;
        t.max_ns = t.max_ns.max(r.max_ns);
        for (a, b) in t.hist.iter_mut().zip(&r.hist) {
            *a += b;
        }
        t.threads.insert(r.tid);
        t.locks.insert(r.uaddr);
    }
    let mut out: Vec<StackTotal> = acc.into_values().collect();
    out.sort_by(|a, b| {
        b.total_ns
            .cmp(&a.total_ns)
            .then(b.count.cmp(&a.count))
            .then(a.stack.cmp(&b.stack))
    });
    out
}

/// Share of `part` in `whole`, in percent.
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::{row, sample};

    #[test]
    fn rows_fold_by_stack_hottest_first() {
        let p = sample();
        let s = by_stack(&p);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].stack, Some(0));
        assert_eq!(s[0].count, 4);
        assert_eq!(s[0].total_ns, 4_000_000);
        assert_eq!(s[0].max_ns, 2_000_000);
        assert_eq!(s[0].avg_ns(), 1_000_000);
        assert_eq!(s[0].threads.len(), 2);
        assert_eq!(s[0].hist.iter().sum::<u64>(), 4);
        assert_eq!(s[1].stack, Some(1));
        let t = totals(&p.waits);
        assert_eq!((t.waits, t.wait_ns), (6, 4_500_000));
        assert!((percent(s[0].total_ns, t.wait_ns) - 88.888).abs() < 0.01);
    }

    #[test]
    fn timeout_only_rows_are_not_contention() {
        let mut p = sample();
        let mut r = row(Some(1), 9, 0, 0, 0);
        r.timeouts = 5;
        r.timeout_ns = 9_000_000_000;
        p.waits = vec![r];
        assert!(by_stack(&p).is_empty());
        assert_eq!(totals(&p.waits).timeouts, 5);
        assert_eq!(percent(1, 0), 0.0);
    }
}
