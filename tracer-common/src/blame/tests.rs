//! The split on synthetic intervals, against the exact overlap computed directly.
use super::*;

const R: usize = Phase::Rebuild as usize;
const P: usize = Phase::Promote as usize;
const M: usize = Phase::Miss as usize;

/// One critical section: held `[acq, rel]`, with phase runs inside; `wakes` if released to
/// waiters (a futex wake, which flushes).
struct Section {
    acq: u64,
    rel: u64,
    runs: Vec<(Phase, u64, u64)>,
    wakes: bool,
}

fn overlap(a: (u64, u64), b: (u64, u64)) -> u64 {
    a.1.min(b.1).saturating_sub(a.0.max(b.0))
}

/// Replays `sections` (one runner per section) against waits `[ws, we]`, reading the clock at
/// each wait's start and end as the kernel does, and returns each wait's split.
fn replay(sections: &[Section], waits: &[(u64, u64)]) -> Vec<[u64; NUM_PHASES]> {
    #[derive(Clone, Copy)]
    enum Ev {
        Release(usize),
        WaitStart(usize),
        WaitEnd(usize),
    }
    let mut evs: Vec<(u64, u8, Ev)> = Vec::new();
    for (i, s) in sections.iter().enumerate() {
        if s.wakes {
            evs.push((s.rel, 1, Ev::Release(i)));
        }
    }
    for (i, w) in waits.iter().enumerate() {
        evs.push((w.0, 0, Ev::WaitStart(i)));
        evs.push((w.1, 2, Ev::WaitEnd(i)));
    }
    evs.sort_by_key(|e| (e.0, e.1));
    let mut lock = LockClock::default();
    // Runs not yet flushed, per section (each section is its own runner here).
    let pending: Vec<PhaseRuns> = sections
        .iter()
        .map(|s| {
            let mut p = PhaseRuns::default();
            for &(ph, a, b) in &s.runs {
                p.runs[ph as usize].add(a, b);
            }
            p
        })
        .collect();
    let mut reads = vec![ClockRead::default(); waits.len()];
    let mut out = vec![[0; NUM_PHASES]; waits.len()];
    for (_, _, ev) in evs {
        match ev {
            Ev::Release(i) => {
                // Each section is its own runner here: its first flush takes every run.
                lock.flush(&pending[i], 0);
            }
            Ev::WaitStart(i) => reads[i] = lock.read(),
            Ev::WaitEnd(i) => {
                out[i] = split(&lock, &reads[i], &[0; NUM_PHASES], waits[i].0, waits[i].1)
            }
        }
    }
    out
}

fn exact(sections: &[Section], w: (u64, u64), phase: Phase) -> u64 {
    sections
        .iter()
        .flat_map(|s| &s.runs)
        .filter(|r| r.0 == phase)
        .map(|r| overlap((r.1, r.2), w))
        .sum()
}

fn sec(acq: u64, rel: u64, runs: &[(Phase, u64, u64)]) -> Section {
    Section {
        acq,
        rel,
        runs: runs.to_vec(),
        wakes: true,
    }
}

#[test]
fn a_wait_inside_one_rebuild_gets_only_its_overlap() {
    // The holder rebuilds 100..1100; the wait starts at 1000 and is woken at the release.
    let s = [sec(90, 1200, &[(Phase::Rebuild, 100, 1100)])];
    let got = replay(&s, &[(1000, 1200)]);
    assert_eq!(got[0][R], 100);
    assert_eq!(got[0][P], 0);
}

#[test]
fn several_holders_and_runs_all_count() {
    let s = [
        sec(
            0,
            300,
            &[(Phase::Promote, 10, 20), (Phase::Rebuild, 20, 250)],
        ),
        sec(310, 500, &[(Phase::Rebuild, 320, 480)]),
        sec(505, 700, &[(Phase::Promote, 600, 610)]),
    ];
    let w = (100, 700);
    let got = replay(&s, &[w]);
    assert_eq!(got[0][R], exact(&s, w, Phase::Rebuild));
    assert_eq!(got[0][R], 150 + 160);
    assert_eq!(got[0][P], 10);
}

#[test]
fn runs_from_a_section_that_woke_nobody_are_not_blamed() {
    // The runner's first section (a rebuild) woke nobody; its later release flushes both.
    let s = [
        sec(0, 50, &[]),
        Section {
            acq: 60,
            rel: 200,
            runs: vec![(Phase::Rebuild, 70, 190)],
            wakes: false,
        },
        sec(
            300,
            400,
            &[(Phase::Rebuild, 310, 320), (Phase::Promote, 330, 340)],
        ),
    ];
    // Merge sections 1 and 2 into one runner: it flushes at 400.
    let merged = [
        sec(0, 50, &[]),
        sec(
            60,
            400,
            &[
                (Phase::Rebuild, 70, 190),
                (Phase::Rebuild, 310, 320),
                (Phase::Promote, 330, 340),
            ],
        ),
    ];
    let w = (305, 400);
    let got = replay(&merged, &[w]);
    assert_eq!(got[0][R], exact(&s, w, Phase::Rebuild));
    assert_eq!(got[0][P], 10);
}

#[test]
fn no_phase_means_no_blame_and_a_wait_ended_early_sees_no_unflushed_run() {
    let s = [
        sec(0, 100, &[]),
        sec(100, 400, &[(Phase::Rebuild, 150, 390)]),
    ];
    let got = replay(&s, &[(10, 100), (120, 200)]);
    assert_eq!(got[0], [0; NUM_PHASES]);
    // Ended at 200 while the rebuild still ran: not flushed yet, so nothing from the clock...
    assert_eq!(got[1], [0; NUM_PHASES]);
    // ...but the run in progress (since 150) counts for its part in the wait.
    let mut running = [0; NUM_PHASES];
    running[R] = 150;
    let lock = LockClock::default();
    let b = split(&lock, &lock.read(), &running, 120, 200);
    assert_eq!(b[R], 50);
    // A run that began after the wait ended counts nothing.
    running[R] = 250;
    assert_eq!(split(&lock, &lock.read(), &running, 120, 200)[R], 0);
}

#[test]
fn misses_take_the_rest_of_the_wait() {
    let s = [sec(
        0,
        100,
        &[(Phase::Miss, 40, 40), (Phase::Promote, 50, 60)],
    )];
    let got = replay(&s, &[(20, 100)]);
    assert_eq!(got[0][P], 10);
    assert_eq!(got[0][M], 70);
}

#[test]
fn random_handoffs_match_the_exact_overlap() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for _ in 0..500 {
        // Back-to-back sections, each with at most one run of each timed phase.
        let mut sections = Vec::new();
        let mut t = 1;
        for _ in 0..12 {
            let acq = t + rnd(20);
            let len = 10 + rnd(500);
            let mut runs = Vec::new();
            let mut c = acq + 1;
            for ph in [Phase::Promote, Phase::Rebuild] {
                if rnd(2) == 0 {
                    let a = c + rnd(10);
                    let b = a + 1 + rnd(len / 2);
                    if b < acq + len {
                        runs.push((ph, a, b));
                        c = b;
                    }
                }
            }
            sections.push(sec(acq, acq + len, &runs));
            t = acq + len;
        }
        // Waits start inside a section and end at a later release, within the ring.
        let mut waits = Vec::new();
        for _ in 0..6 {
            let i = rnd(sections.len() as u64) as usize;
            let s = &sections[i];
            let ws = s.acq + rnd(s.rel - s.acq);
            let j = i + rnd(FLUSH_RING as u64) as usize;
            let Some(e) = sections.get(j) else { continue };
            waits.push((ws, e.rel));
        }
        let got = replay(&sections, &waits);
        for (w, g) in waits.iter().zip(&got) {
            for ph in [Phase::Promote, Phase::Rebuild] {
                assert_eq!(
                    g[ph as usize],
                    exact(&sections, *w, ph),
                    "{ph:?} wait {w:?}"
                );
            }
            assert!(g.iter().sum::<u64>() <= w.1 - w.0);
        }
    }
}

#[test]
fn a_runner_flushes_each_run_once_per_lock() {
    // A rebuild 10..50; the runner wakes another lock at 60, then the map's at 100 and again
    // at 200 (both after the rebuild).
    let mut runs = PhaseRuns::default();
    runs.runs[R].add(10, 50);
    let mut map = LockClock::default();
    let mut other = LockClock::default();
    let at_start = map.read();
    other.flush(&runs, 0);
    map.flush(&runs, 0);
    runs.runs[P].add(150, 160);
    map.flush(&runs, 100);
    // A wait 20..200 overlapped the rebuild 30 ns and the promotion 10 ns, once each.
    let got = split(&map, &at_start, &[0; NUM_PHASES], 20, 200);
    assert_eq!((got[R], got[P]), (30, 10));
    assert_eq!(map.cum_ns[R], 40);
}

#[test]
fn old_runs_of_a_busy_runner_do_not_leak_into_a_later_flush() {
    // A runner promotes every 100 ns for a long time, flushing onto another lock each time;
    // then, once, onto the map's lock: only its last promotion (after `since`) counts.
    let mut runs = PhaseRuns::default();
    let mut other = LockClock::default();
    for i in 0..100u64 {
        runs.runs[P].add(i * 100, i * 100 + 10);
        other.flush(&runs, i * 100 + 5);
    }
    let mut map = LockClock::default();
    let at_start = map.read();
    map.flush(&runs, 9_895);
    assert_eq!(map.cum_ns[P], 10);
    assert_eq!(split(&map, &at_start, &[0; NUM_PHASES], 0, 20_000)[P], 10);
    // Two runs since: the earlier one is kept too.
    runs.runs[P].add(10_100, 10_110);
    runs.runs[P].add(10_200, 10_210);
    let at_start = map.read();
    map.flush(&runs, 10_050);
    assert_eq!(
        split(&map, &at_start, &[0; NUM_PHASES], 10_000, 20_000)[P],
        20
    );
}
