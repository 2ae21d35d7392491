//! fastpath: the estimated share of Go `sync.Map`'s CPU time spent in lock-free reads, from
//! on-CPU samples of the target (the map keeps no counters of its own). A sampled estimate,
//! said to be one, with its binomial sampling error.
use serde::{Deserialize, Serialize};

/// Fewer samples inside the map than this: no share is given.
pub const MIN_SAMPLES: u64 = 30;

/// On-CPU samples of the target, sorted by where in `sync.Map` they landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastPath {
    /// Sampling frequency per CPU.
    pub hz: u64,
    /// All samples of the target's threads.
    pub samples: u64,
    /// Of those, samples whose user stack was not kept (not captured, or the map was full).
    pub unstacked: u64,
    /// Samples inside a `sync.(*Map)` method (time in a `Range` callback is the caller's).
    pub in_map: u64,
    /// Of those, inside `Load` or `Range` and in no lock acquire or release.
    pub lock_free: u64,
}

impl FastPath {
    /// The share in percent and its one-sigma sampling error in points (binomial,
    /// sqrt(p(1-p)/n)), with enough samples. The error uses p = (k+1)/(n+2), so a run whose
    /// samples all fall on one side is not given an error of zero.
    pub fn share(&self) -> Option<(f64, f64)> {
        if self.in_map < MIN_SAMPLES {
            return None;
        }
        let n = self.in_map as f64;
        let p = self.lock_free as f64 / n;
        let q = (self.lock_free as f64 + 1.0) / (n + 2.0);
        Some((100.0 * p, 100.0 * (q * (1.0 - q) / n).sqrt()))
    }

    /// The map section's line.
    pub fn line(&self) -> String {
        let lost = match self.unstacked {
            0 => String::new(),
            n => format!(
                "; {n} of the program's samples have no user stack (not captured, or the \
                 sample stack map was full)"
            ),
        };
        let line = match self.share() {
            Some((pct, err)) => format!(
                "reads: ~{pct:.0}% of the map's CPU time in lock-free reads (estimate from {} \
                 on-CPU samples in the map at {} Hz, of {} of the program's; ±{err:.1} points \
                 sampling error)",
                self.in_map, self.hz, self.samples
            ),
            None => format!(
                "reads: too few on-CPU samples in the map to estimate its lock-free read share \
                 ({} of the {MIN_SAMPLES} needed, at {} Hz; record longer)",
                self.in_map, self.hz
            ),
        };
        line + &lost
    }
}

/// The line when no sampling ran.
pub const NOT_SAMPLED: &str =
    "reads: lock-free read share not estimated (on-CPU sampling did not run)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_and_error_follow_the_binomial() {
        let f = FastPath {
            hz: 99,
            samples: 500,
            unstacked: 0,
            in_map: 400,
            lock_free: 372,
        };
        let (p, e) = f.share().unwrap();
        assert!((p - 93.0).abs() < 1e-9, "{p}");
        assert!(
            (e - 100.0 * (373.0 / 402.0 * (29.0 / 402.0) / 400.0f64).sqrt()).abs() < 1e-9,
            "{e}"
        );
        let line = f.line();
        assert!(
            line.contains("~93%") && line.contains("estimate") && line.contains("±1.3"),
            "{line}"
        );
    }

    #[test]
    fn all_samples_on_one_side_still_have_an_error() {
        let f = FastPath {
            hz: 99,
            samples: 200,
            unstacked: 0,
            in_map: 138,
            lock_free: 0,
        };
        let (p, e) = f.share().unwrap();
        assert_eq!(p, 0.0);
        assert!(e > 0.5 && e < 1.0, "{e}");
    }

    #[test]
    fn too_few_samples_give_no_number() {
        let f = FastPath {
            hz: 99,
            samples: 40,
            unstacked: 0,
            in_map: 12,
            lock_free: 12,
        };
        assert_eq!(f.share(), None);
        assert!(f.line().contains("too few"), "{}", f.line());
        assert!(!f.line().contains('%'), "{}", f.line());
    }
}
