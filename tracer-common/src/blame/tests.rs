//! The split on synthetic intervals, against the exact overlap computed directly.
use super::*;

const R: usize = Phase::Rebuild as usize;
const P: usize = Phase::Promote as usize;
const M: usize = Phase::Miss as usize;
const MAP: u64 = 0x1000;

fn overlap(a: (u64, u64), b: (u64, u64)) -> u64 {
    a.1.min(b.1).saturating_sub(a.0.max(b.0))
}

/// Replays phase runs `(phase, runner, start, end)` on one map's clock and splits each wait
/// `(waiter, start, end)` as the kernel does: a read at each wait's start and end.
fn replay(runs: &[(Phase, u64, u64, u64)], waits: &[(u64, u64, u64)]) -> Vec<[u64; NUM_PHASES]> {
    // (time, order at equal times, event): ends before begins before reads.
    #[derive(Clone, Copy)]
    enum Ev {
        Begin(usize),
        End(usize),
        WaitStart(usize),
        WaitEnd(usize),
    }
    let mut evs: Vec<(u64, u8, Ev)> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        evs.push((r.2, 1, Ev::Begin(i)));
        evs.push((r.3, 0, Ev::End(i)));
    }
    for (i, w) in waits.iter().enumerate() {
        evs.push((w.1, 2, Ev::WaitStart(i)));
        evs.push((w.2, 2, Ev::WaitEnd(i)));
    }
    evs.sort_by_key(|e| (e.0, e.1));
    let mut clock = MapClock::default();
    let mut reads = vec![ClockRead::default(); waits.len()];
    let mut out = vec![[0; NUM_PHASES]; waits.len()];
    for (t, _, ev) in evs {
        match ev {
            Ev::Begin(i) if runs[i].0.probes_return() => clock.began(runs[i].0, runs[i].1, t),
            Ev::Begin(_) => {}
            Ev::End(i) => clock.ended(runs[i].0, runs[i].1, runs[i].2, t),
            Ev::WaitStart(i) => reads[i] = clock.read(MAP, waits[i].0),
            Ev::WaitEnd(i) => {
                let now = clock.read(MAP, waits[i].0);
                out[i] = split(&reads[i], &now, waits[i].1, waits[i].2);
            }
        }
    }
    out
}

fn exact(runs: &[(Phase, u64, u64, u64)], w: (u64, u64, u64), phase: Phase) -> u64 {
    runs.iter()
        .filter(|r| r.0 == phase && r.1 != w.0)
        .map(|r| overlap((r.2, r.3), (w.1, w.2)))
        .sum()
}

#[test]
fn a_wait_inside_one_rebuild_gets_only_its_overlap() {
    let runs = [(Phase::Rebuild, 1, 100, 1100)];
    let got = replay(&runs, &[(2, 1000, 1200), (3, 50, 150), (4, 200, 300)]);
    assert_eq!(got[0][R], 100, "started inside, ended after");
    assert_eq!(
        got[1][R], 50,
        "ended inside: the run in progress counts its part"
    );
    assert_eq!(got[2][R], 100, "nested inside the run");
    assert_eq!(got[0][P], 0);
}

#[test]
fn several_holders_and_runs_all_count() {
    let runs = [
        (Phase::Promote, 1, 10, 20),
        (Phase::Rebuild, 1, 20, 250),
        (Phase::Rebuild, 2, 320, 480),
        (Phase::Promote, 3, 600, 610),
    ];
    let got = replay(&runs, &[(4, 100, 700)]);
    assert_eq!(got[0][R], 150 + 160);
    assert_eq!(got[0][P], 10);
}

#[test]
fn no_phase_means_no_blame_and_an_unknown_lock_none_either() {
    let got = replay(&[(Phase::Rebuild, 1, 500, 600)], &[(2, 10, 100)]);
    assert_eq!(got[0], [0; NUM_PHASES]);
    let mut clock = MapClock::default();
    let unknown = ClockRead::default();
    clock.ended(Phase::Rebuild, 1, 0, 100);
    assert_eq!(
        split(&unknown, &clock.read(MAP, 2), 0, 100),
        [0; NUM_PHASES]
    );
}

#[test]
fn misses_take_the_rest_of_the_wait() {
    let runs = [(Phase::Miss, 1, 40, 40), (Phase::Promote, 1, 50, 60)];
    let got = replay(&runs, &[(2, 20, 100)]);
    assert_eq!(got[0][P], 10);
    assert_eq!(got[0][M], 70);
}

#[test]
fn random_schedules_match_the_exact_overlap() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for _ in 0..500 {
        // One run at a time per phase (the map's lock), by runners 1..=4; promotions and
        // rebuilds never overlap each other either.
        let mut runs = Vec::new();
        let mut t = 1;
        for _ in 0..20 {
            t += 1 + rnd(50);
            let len = 1 + rnd(200);
            let ph = if rnd(3) == 0 {
                Phase::Promote
            } else {
                Phase::Rebuild
            };
            runs.push((ph, 1 + rnd(4), t, t + len));
            t += len;
        }
        let waits: Vec<(u64, u64, u64)> = (0..8)
            .map(|_| {
                let s = 1 + rnd(t);
                // Waiters are asleep, so never the runners.
                (5 + rnd(4), s, s + 1 + rnd(t / 2))
            })
            .collect();
        let got = replay(&runs, &waits);
        for (w, g) in waits.iter().zip(&got) {
            for ph in [Phase::Promote, Phase::Rebuild] {
                assert_eq!(g[ph as usize], exact(&runs, *w, ph), "{ph:?} wait {w:?}");
            }
        }
    }
}

#[test]
fn phase_cookies_round_trip_and_index_their_slot() {
    for phase in Phase::ALL {
        for slot in 0..MAP_SLOTS as u32 {
            let c = PhaseCookie {
                phase,
                slot,
                dirty_at: 24,
                lock_at: 4,
            };
            assert_eq!(PhaseCookie::decode(c.encode()), Some(c));
            assert!((c.stats_index() as usize) < NUM_PHASES * MAP_SLOTS);
        }
    }
    // The bundled map's cookies before slots were the phase alone: still read so.
    assert_eq!(
        PhaseCookie::decode(Phase::Rebuild as u64),
        Some(PhaseCookie {
            phase: Phase::Rebuild,
            slot: 0,
            dirty_at: 0,
            lock_at: 0
        })
    );
    assert_eq!(PhaseCookie::decode(9), None);
    assert_eq!(PhaseCookie::decode(2 | (7 << 8)), None);
}
