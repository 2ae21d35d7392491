//! behind: what a lock's holder was doing while threads waited — the bundled-map phases a
//! wait row's time is split across (as stored in the profile), and how the report names them.
use std::collections::BTreeMap;

use crate::profile::{Bundled, HolderPhase, MapCounter, WaitRow};

/// Waits and their time, summed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Share {
    pub waits: u64,
    pub wait_ns: u64,
}

/// What a lock's holder was doing while a thread waited: a bundled-map phase, or anything
/// else it did under the lock (ran other code, or was descheduled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Behind {
    Phase(HolderPhase),
    OtherWork,
}

/// How a [`Behind`] reads in the report.
pub fn behind_label(b: Behind) -> &'static str {
    match b {
        Behind::Phase(HolderPhase::Rebuild) => "dirty rebuild (O(n) copy)",
        Behind::Phase(HolderPhase::Promote) => "promotion (O(1) swap)",
        Behind::Phase(HolderPhase::Miss) => "read misses",
        Behind::OtherWork => "other work under the lock",
    }
}

impl Behind {
    pub fn label(self) -> &'static str {
        behind_label(self)
    }
}

/// A wait row's time split by what the holder did: each phase's share, and the rest as other
/// work. Profiles from before the split blamed a row's whole time on one phase.
pub fn split_row(r: &WaitRow) -> Vec<(Behind, Share)> {
    let legacy = r
        .holder_phase
        .as_deref()
        .and_then(HolderPhase::from_function)
        .filter(|_| r.behind.is_empty());
    if let Some(p) = legacy {
        return vec![(
            Behind::Phase(p),
            Share {
                waits: r.count,
                wait_ns: r.total_ns,
            },
        )];
    }
    let mut out: Vec<(Behind, Share)> = r
        .behind
        .iter()
        .map(|b| {
            (
                Behind::Phase(b.phase),
                Share {
                    waits: b.waits,
                    wait_ns: b.ns,
                },
            )
        })
        .collect();
    let blamed: u64 = r.behind.iter().map(|b| b.ns).sum();
    let rest = Share {
        waits: r.count.saturating_sub(r.covered_waits),
        wait_ns: r.total_ns.saturating_sub(blamed),
    };
    if rest.wait_ns > 0 {
        out.push((Behind::OtherWork, rest));
    }
    out
}

/// Of the map's operations that took its lock, the share that missed the snapshot (its own
/// counters); `None` without counters.
pub fn locked_miss_fraction(b: &Bundled) -> Option<f64> {
    b.counters.as_ref()?;
    let get = |c: MapCounter| b.counter(c).unwrap_or(0);
    let locked =
        get(MapCounter::SlowLoad) + get(MapCounter::SlowStore) + get(MapCounter::SlowDelete);
    (locked > 0).then(|| (get(MapCounter::ReadMiss) as f64 / locked as f64).min(1.0))
}

/// A miss is an instant, so the kernel gives "read misses" the rest of every wait during which
/// a holder missed; but those holders also did other work. Keeps `fraction` of that time (the
/// share of locked operations that missed) as read misses and moves the rest to other work.
pub fn weigh_misses(m: &mut BTreeMap<Behind, Share>, fraction: f64) {
    let Some(miss) = m.get_mut(&Behind::Phase(HolderPhase::Miss)) else {
        return;
    };
    let keep = (miss.wait_ns as f64 * fraction).round() as u64;
    let moved = miss.wait_ns - keep.min(miss.wait_ns);
    miss.wait_ns -= moved;
    if miss.wait_ns == 0 {
        m.remove(&Behind::Phase(HolderPhase::Miss));
    }
    if moved > 0 {
        m.entry(Behind::OtherWork).or_default().wait_ns += moved;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::row;
    use crate::profile::Blamed;

    #[test]
    fn a_row_is_split_into_its_phases_and_the_rest() {
        let mut r = row(Some(0), 1, 3, 10_000, 6_000);
        r.behind = vec![
            Blamed {
                phase: HolderPhase::Rebuild,
                waits: 2,
                ns: 6_000,
            },
            Blamed {
                phase: HolderPhase::Promote,
                waits: 1,
                ns: 1_000,
            },
        ];
        r.covered_waits = 1;
        let parts = split_row(&r);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2].0, Behind::OtherWork);
        assert_eq!(
            parts[2].1,
            Share {
                waits: 2,
                wait_ns: 3_000
            }
        );
        let total: u64 = parts.iter().map(|(_, s)| s.wait_ns).sum();
        assert_eq!(total, r.total_ns);
    }

    #[test]
    fn miss_time_is_weighed_by_the_share_of_locked_operations_that_missed() {
        let mut m = BTreeMap::from([
            (
                Behind::Phase(HolderPhase::Miss),
                Share {
                    waits: 4,
                    wait_ns: 1_000,
                },
            ),
            (
                Behind::OtherWork,
                Share {
                    waits: 1,
                    wait_ns: 500,
                },
            ),
        ]);
        weigh_misses(&mut m, 0.25);
        assert_eq!(m[&Behind::Phase(HolderPhase::Miss)].wait_ns, 250);
        assert_eq!(m[&Behind::OtherWork].wait_ns, 1_250);
        weigh_misses(&mut m, 0.0);
        assert!(!m.contains_key(&Behind::Phase(HolderPhase::Miss)));
        assert_eq!(m[&Behind::OtherWork].wait_ns, 1_500);
    }

    #[test]
    fn profiles_before_the_split_blame_a_whole_row_on_its_phase() {
        let mut r = row(Some(0), 1, 3, 10_000, 6_000);
        r.holder_phase = Some("rebuild_dirty".into());
        assert_eq!(
            split_row(&r),
            [(
                Behind::Phase(HolderPhase::Rebuild),
                Share {
                    waits: 3,
                    wait_ns: 10_000
                }
            )]
        );
        assert_eq!(
            HolderPhase::from_function("promote"),
            Some(HolderPhase::Promote)
        );
        assert_eq!(HolderPhase::from_function("nope"), None);
    }
}
