//! aggregate: folds a profile's per-(stack, waker, futex, thread) wait rows into the groups a
//! report shows (by stack, function, lock, thread, process or category), filtered and sorted.
use std::collections::{BTreeSet, HashMap};

use tracer_common::HIST_BUCKETS;

use super::attribute::category_of;
use super::waitclass::{classify_on, event_words, WaitClass, Waits, WordUse};
use crate::profile::{blamed_function, FutexOp, Profile, WaitRow};

/// What one report row stands for (`--by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupBy {
    /// One row per distinct stack.
    #[default]
    Stack,
    /// The innermost frame outside the lock implementation: where the program took the lock.
    Function,
    /// The futex word (one lock).
    Lock,
    Thread,
    /// The process (`record --follow-forks` records several).
    Process,
    /// What the waiter was doing: a bundled-map operation, or which lock primitive.
    Category,
}

impl GroupBy {
    pub const ALL: [GroupBy; 6] = [
        GroupBy::Stack,
        GroupBy::Function,
        GroupBy::Lock,
        GroupBy::Thread,
        GroupBy::Process,
        GroupBy::Category,
    ];
    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Stack => "stack",
            GroupBy::Function => "function",
            GroupBy::Lock => "lock",
            GroupBy::Thread => "thread",
            GroupBy::Process => "process",
            GroupBy::Category => "category",
        }
    }
}

/// Row order (`--sort`), perf's keys; always descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Total,
    Count,
    Max,
    Avg,
}

impl SortKey {
    pub const ALL: [SortKey; 4] = [SortKey::Total, SortKey::Count, SortKey::Max, SortKey::Avg];
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Total => "total",
            SortKey::Count => "count",
            SortKey::Max => "max",
            SortKey::Avg => "avg",
        }
    }
}

/// The identity of a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// `None`: waits whose stack was lost.
    Stack(Option<usize>),
    Function(String),
    /// A futex word in a process (`None`: the recorded one; forked children share its
    /// addresses, so the address alone is not one lock).
    Lock(Option<u32>, u64),
    Thread(u32),
    /// A process by pid.
    Process(u32),
    Category(String),
}

/// Contention summed over every row that shares a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub key: Key,
    /// What its waits were (groups never mix classes).
    pub class: WaitClass,
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    /// Log2 histogram of single waits (see `tracer_common::hist_bucket`).
    pub hist: Vec<u64>,
    pub threads: BTreeSet<u32>,
    /// Futex words, per process as `Key::Lock` has them.
    pub locks: BTreeSet<(Option<u32>, u64)>,
    /// The stack with the most wait time in this group: what a table shows for it.
    pub hottest_stack: Option<usize>,
}

impl Group {
    pub fn avg_ns(&self) -> u64 {
        self.total_ns.checked_div(self.count).unwrap_or(0)
    }

    fn sort_value(&self, key: SortKey) -> u64 {
        match key {
            SortKey::Total => self.total_ns,
            SortKey::Count => self.count,
            SortKey::Max => self.max_ns,
            SortKey::Avg => self.avg_ns(),
        }
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

pub fn totals<'a>(rows: impl IntoIterator<Item = &'a WaitRow>) -> Totals {
    rows.into_iter().fold(Totals::default(), |mut t, r| {
        t.waits += r.count;
        t.wait_ns += r.total_ns;
        t.timeouts += r.timeouts;
        t.timeout_ns += r.timeout_ns;
        t.errors += r.errors;
        t
    })
}

/// What a report shows and how: the domain form of `--by`, `--sort`, `--top` and the rest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewOptions {
    pub by: GroupBy,
    pub sort: SortKey,
    pub top: usize,
    /// Groups with less total wait than this are left out.
    pub min_wait_ns: u64,
    /// `None` shows every frame.
    pub max_frames: Option<usize>,
    /// A log2 histogram of single waits under each row.
    pub hist: bool,
    /// Flamegraph and folded weights: wait time, or number of waits.
    pub weight: Weight,
    /// Which waits: lock contention (default), idle waits, or all.
    pub waits: Waits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Weight {
    #[default]
    WaitTime,
    Count,
}

/// Frames shown per stack unless `--full-stacks`.
pub const DEFAULT_FRAMES: usize = 8;
/// Rows shown unless `--top`.
pub const DEFAULT_TOP: usize = 10;

impl Default for ViewOptions {
    fn default() -> Self {
        ViewOptions {
            by: GroupBy::Stack,
            sort: SortKey::Total,
            top: DEFAULT_TOP,
            min_wait_ns: 0,
            max_frames: Some(DEFAULT_FRAMES),
            hist: false,
            weight: Weight::WaitTime,
            waits: Waits::Contention,
        }
    }
}

/// The rows of a report: every group with waits and at least `min_wait_ns` of wait, in the
/// view's order (ties: more wait time, more waits, then key). Not cut at `top`: renderers
/// say how many more there are.
pub fn groups(profile: &Profile, view: &ViewOptions) -> Vec<Group> {
    let mut keys: HashMap<Option<usize>, Key> = HashMap::new();
    // Per (class, key): the group, and its wait time per stack (to find the hottest).
    type Acc = (Group, HashMap<Option<usize>, u64>);
    let mut acc: HashMap<(WaitClass, Key), Acc> = HashMap::new();
    for (r, class) in shown_rows(profile, view.waits) {
        let key = match view.by {
            GroupBy::Stack => Key::Stack(r.stack),
            GroupBy::Lock => Key::Lock(r.pid, r.uaddr),
            GroupBy::Thread => Key::Thread(r.tid),
            GroupBy::Process => Key::Process(profile.pid_of_wait(r)),
            GroupBy::Function => keys
                .entry(r.stack)
                .or_insert_with(|| {
                    let stack = r.stack.and_then(|s| profile.stacks.get(s));
                    Key::Function(blamed_function(profile, stack))
                })
                .clone(),
            GroupBy::Category => Key::Category(category_of(
                profile,
                r.stack.and_then(|s| profile.stacks.get(s)),
                r.op,
            )),
        };
        let (g, per_stack) = acc.entry((class, key.clone())).or_insert_with(|| {
            (
                Group {
                    key,
                    class,
                    count: 0,
                    total_ns: 0,
                    max_ns: 0,
                    hist: vec![0; HIST_BUCKETS],
                    threads: BTreeSet::new(),
                    locks: BTreeSet::new(),
                    hottest_stack: None,
                },
                HashMap::new(),
            )
        });
        g.count += r.count;
        g.total_ns += r.total_ns;
        g.max_ns = g.max_ns.max(r.max_ns);
        for (a, b) in g.hist.iter_mut().zip(&r.hist) {
            *a += b;
        }
        g.threads.insert(r.tid);
        g.locks.insert((r.pid, r.uaddr));
        *per_stack.entry(r.stack).or_default() += r.total_ns;
    }
    let mut out: Vec<Group> = acc
        .into_values()
        .map(|(mut g, per_stack)| {
            g.hottest_stack = per_stack
                .into_iter()
                .max_by_key(|&(s, ns)| (ns, std::cmp::Reverse(s)))
                .and_then(|(s, _)| s);
            g
        })
        .filter(|g| g.total_ns >= view.min_wait_ns)
        .collect();
    out.sort_by(|a, b| {
        b.sort_value(view.sort)
            .cmp(&a.sort_value(view.sort))
            .then(b.total_ns.cmp(&a.total_ns))
            .then(b.count.cmp(&a.count))
            .then(a.key.cmp(&b.key))
            .then(a.class.cmp(&b.class))
    });
    out
}

/// The wait rows a view shows (they slept, and their class is selected), with their class.
/// Classes are computed once per (stack, op).
pub fn shown_rows(profile: &Profile, waits: Waits) -> Vec<(&WaitRow, WaitClass)> {
    let mut cache: HashMap<(Option<usize>, FutexOp, WordUse), WaitClass> = HashMap::new();
    let events = event_words(profile);
    profile
        .waits
        .iter()
        .filter(|r| r.count > 0)
        .map(|r| {
            let word = if events.contains(&(r.pid, r.uaddr)) {
                WordUse::Event
            } else {
                WordUse::Other
            };
            let class = *cache.entry((r.stack, r.op, word)).or_insert_with(|| {
                classify_on(r.stack.and_then(|s| profile.stacks.get(s)), r.op, word)
            });
            (r, class)
        })
        .filter(|(_, c)| waits.includes(*c))
        .collect()
}

/// Totals over the rows a view shows.
pub fn shown_totals(profile: &Profile, waits: Waits) -> Totals {
    totals(shown_rows(profile, waits).into_iter().map(|(r, _)| r))
}

/// Timed-out waits over every row of the profile, whatever its class, and rows whose waits
/// all timed out (they slept and were never woken, so no view lists them): the header's
/// "not counted as contention" count, equal to the sum over the profile's rows.
pub fn timeout_totals(profile: &Profile) -> Totals {
    totals(&profile.waits)
}

#[cfg(test)]
#[path = "aggregate_process_tests.rs"]
mod process_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::percent;
    use crate::profile::tests::{row, sample};

    fn by(by: GroupBy, sort: SortKey) -> ViewOptions {
        ViewOptions {
            by,
            sort,
            ..ViewOptions::default()
        }
    }

    #[test]
    fn rows_fold_by_stack_hottest_first() {
        let p = sample();
        let s = groups(&p, &ViewOptions::default());
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].key, Key::Stack(Some(0)));
        assert_eq!(s[0].count, 4);
        assert_eq!(s[0].total_ns, 4_000_000);
        assert_eq!(s[0].max_ns, 2_000_000);
        assert_eq!(s[0].avg_ns(), 1_000_000);
        assert_eq!(s[0].threads.len(), 2);
        assert_eq!(s[0].hist.iter().sum::<u64>(), 4);
        assert_eq!(s[1].key, Key::Stack(Some(1)));
        let t = totals(&p.waits);
        assert_eq!((t.waits, t.wait_ns), (6, 4_500_000));
        assert!((percent(s[0].total_ns, t.wait_ns) - 88.888).abs() < 0.01);
    }

    #[test]
    fn every_sort_key_orders_descending() {
        let mut p = sample();
        // stack 1: fewer waits but the longest single wait and the highest average.
        p.waits.push(row(Some(1), 7, 1, 9_000_000, 9_000_000));
        let order = |k| -> Vec<Key> {
            groups(&p, &by(GroupBy::Stack, k))
                .into_iter()
                .map(|g| g.key)
                .collect()
        };
        let (s0, s1) = (Key::Stack(Some(0)), Key::Stack(Some(1)));
        assert_eq!(order(SortKey::Total), vec![s1.clone(), s0.clone()]);
        assert_eq!(order(SortKey::Count), vec![s0.clone(), s1.clone()]);
        assert_eq!(order(SortKey::Max), vec![s1.clone(), s0.clone()]);
        assert_eq!(order(SortKey::Avg), vec![s1, s0]);
    }

    #[test]
    fn other_keys_group_across_stacks() {
        let p = sample();
        let threads = groups(&p, &by(GroupBy::Thread, SortKey::Total));
        assert_eq!(threads.len(), 2);
        assert_eq!(threads[0].key, Key::Thread(1));
        assert_eq!(threads[0].total_ns, 3_500_000);
        assert_eq!(threads[0].hottest_stack, Some(0));
        let locks = groups(&p, &by(GroupBy::Lock, SortKey::Total));
        assert_eq!(locks.len(), 1);
        assert_eq!(locks[0].count, 6);
        let funcs = groups(&p, &by(GroupBy::Function, SortKey::Total));
        assert_eq!(funcs[0].key, Key::Function("demo::hot".into()));
        // An unresolved frame is named by its address.
        assert_eq!(funcs[1].key, Key::Function("0x3000".into()));
        let cats = groups(&p, &by(GroupBy::Category, SortKey::Total));
        assert!(!cats.is_empty());
    }

    #[test]
    fn min_wait_drops_small_groups() {
        let p = sample();
        let view = ViewOptions {
            min_wait_ns: 1_000_000,
            ..ViewOptions::default()
        };
        let g = groups(&p, &view);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].key, Key::Stack(Some(0)));
    }

    #[test]
    fn timeout_only_rows_are_not_contention() {
        let mut p = sample();
        let mut r = row(Some(1), 9, 0, 0, 0);
        r.timeouts = 5;
        r.timeout_ns = 9_000_000_000;
        p.waits = vec![r];
        assert!(groups(&p, &ViewOptions::default()).is_empty());
        assert_eq!(totals(&p.waits).timeouts, 5);
        assert_eq!(percent(1, 0), 0.0);
    }
}
