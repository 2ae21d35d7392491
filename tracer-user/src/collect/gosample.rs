//! gosample: `record --go-sample PERCENT`. Following a goroutine wait costs the program the
//! kernel programs' work at each of its probes (taking the waiter's stack, the in-flight map,
//! the row update), and in RWMutex-heavy code that is most of the traced run's cost; the
//! probes' traps alone cost little. Sampled, the kernel follows each wait with probability
//! PERCENT/100, chosen at random where the wait begins: a chosen wait is followed whole, so
//! long waits are as likely to be seen as short ones, and the others cost only the traps and
//! a map lookup. The goroutine rows are then scaled by 100/PERCENT, so they stay comparable
//! with the futex rows; their error is that of a binomial sample (about 1/√n relative for a
//! row that kept n waits).
use anyhow::{bail, Result};
use tracer_common::{OpKind, WaitKey, WaitStats};

use crate::profile::GoSampled;

/// The share of goroutine waits followed, in percent (1–100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoSample {
    percent: u8,
}

impl GoSample {
    pub fn new(percent: u8) -> Result<GoSample> {
        if !(1..=100).contains(&percent) {
            bail!("--go-sample takes a percent of goroutine waits from 1 to 100, not {percent}");
        }
        Ok(GoSample { percent })
    }

    pub fn percent(self) -> u8 {
        self.percent
    }

    /// The kernel's threshold on a random u32 (0: every wait).
    pub fn threshold(self) -> u32 {
        match self.percent {
            100 => 0,
            p => ((u64::from(p) << 32) / 100) as u32,
        }
    }

    /// For the profile.
    pub fn record(self) -> GoSampled {
        GoSampled {
            percent: self.percent,
        }
    }
}

/// Scales the goroutine rows up to every wait (times and counts; a longest wait stays what
/// was seen).
pub fn scale_rows(waits: &mut [(WaitKey, WaitStats)], sampled: &GoSampled) {
    let factor = sampled.scale();
    let scale = |x: &mut u64| *x = (*x as f64 * factor).round() as u64;
    for (k, s) in waits.iter_mut() {
        if k.kind != OpKind::GoSemacquire as u32 {
            continue;
        }
        for x in [
            &mut s.count,
            &mut s.total_ns,
            &mut s.interrupted,
            &mut s.timeouts,
            &mut s.timeout_ns,
            &mut s.errors,
            &mut s.covered,
        ] {
            scale(x);
        }
        s.blamed_ns.iter_mut().for_each(scale);
        s.blamed_waits.iter_mut().for_each(scale);
        s.hist.iter_mut().for_each(scale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percents_outside_1_to_100_are_refused_and_thresholds_follow_the_percent() {
        assert!(GoSample::new(0).is_err());
        assert!(GoSample::new(101).is_err());
        assert_eq!(GoSample::new(100).unwrap().threshold(), 0);
        assert_eq!(GoSample::new(50).unwrap().threshold(), 1 << 31);
        let ten = GoSample::new(10).unwrap().threshold();
        assert!((429_496_729..=429_496_730).contains(&ten), "{ten}");
    }

    #[test]
    fn only_goroutine_rows_are_scaled_and_the_longest_wait_is_kept() {
        let key = crate::collect::windows::tests::key;
        let mut s = WaitStats::default();
        s.add_wait(1_000, &Default::default(), tracer_common::Outcome::Woken);
        s.add_wait(3_000, &Default::default(), tracer_common::Outcome::Woken);
        let mut rows = vec![(key(OpKind::GoSemacquire), s), (key(OpKind::Wait), s)];
        scale_rows(&mut rows, &GoSample::new(10).unwrap().record());
        assert_eq!(
            (rows[0].1.count, rows[0].1.total_ns, rows[0].1.max_ns),
            (20, 40_000, 3_000)
        );
        assert_eq!(rows[0].1.hist.iter().sum::<u64>(), 20);
        assert_eq!(rows[1].1, s);
    }
}
