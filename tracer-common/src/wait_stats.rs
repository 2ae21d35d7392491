//! The wait aggregate and its arithmetic, written once: the kernel adds each finished wait
//! ([`WaitStats::add_wait`]), user space sums the CPUs' copies ([`WaitStats::merge`]) and takes
//! what the DWARF snapshots explain out of a row ([`WaitStats::minus`]).
use crate::{blame::NUM_PHASES, hist_bucket, Outcome, HIST_BUCKETS};

/// Wait aggregate value (per CPU in the kernel; user space sums the CPUs).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitStats {
    /// Waits that blocked and were woken (or interrupted after blocking).
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    /// Of `count`, waits ended by a signal (EINTR) rather than a wake.
    pub interrupted: u64,
    /// Waits that ended with ETIMEDOUT: counted apart from contention.
    pub timeouts: u64,
    pub timeout_ns: u64,
    /// Waits that failed for another reason (EFAULT, EINVAL, EDEADLK, ...).
    pub errors: u64,
    /// Of `count`, waits whose whole time is blamed on holder phases (no other work).
    pub covered: u64,
    /// Of `total_ns`, the ns each holder phase ran while these threads waited (see
    /// [`blame::split`]), indexed by [`Phase`].
    pub blamed_ns: [u64; NUM_PHASES],
    /// Of `count`, the waits with some time blamed on each phase.
    pub blamed_waits: [u64; NUM_PHASES],
    pub hist: [u64; HIST_BUCKETS],
}

impl Default for WaitStats {
    fn default() -> Self {
        Self {
            count: 0,
            total_ns: 0,
            max_ns: 0,
            interrupted: 0,
            timeouts: 0,
            timeout_ns: 0,
            errors: 0,
            covered: 0,
            blamed_ns: [0; NUM_PHASES],
            blamed_waits: [0; NUM_PHASES],
            hist: [0; HIST_BUCKETS],
        }
    }
}

impl WaitStats {
    /// Adds one finished wait of `waited` ns that ended with `outcome`, with the ns each holder
    /// phase ran during it. Only waits that slept and were woken or interrupted are
    /// contention; timeouts and errors are counted apart.
    #[inline(always)]
    pub fn add_wait(&mut self, waited: u64, blamed: &[u64; NUM_PHASES], outcome: Outcome) {
        match outcome {
            Outcome::Woken | Outcome::Interrupted => {
                self.count += 1;
                self.total_ns += waited;
                if waited > self.max_ns {
                    self.max_ns = waited;
                }
                if let Some(slot) = self.hist.get_mut(hist_bucket(waited)) {
                    *slot += 1;
                }
                if outcome == Outcome::Interrupted {
                    self.interrupted += 1;
                }
                // An index loop: the BPF target wants bounded, simple loops.
                let mut i = 0;
                let mut sum = 0;
                while i < NUM_PHASES {
                    if blamed[i] > 0 {
                        self.blamed_ns[i] += blamed[i];
                        self.blamed_waits[i] += 1;
                        sum += blamed[i];
                    }
                    i += 1;
                }
                if sum >= waited && waited > 0 {
                    self.covered += 1;
                }
            }
            Outcome::TimedOut => {
                self.timeouts += 1;
                self.timeout_ns += waited;
            }
            Outcome::Error | Outcome::Again => self.errors += 1,
        }
    }

    /// Adds another aggregate of the same row (another CPU's copy, another window).
    pub fn merge(&mut self, v: &WaitStats) {
        self.count += v.count;
        self.total_ns += v.total_ns;
        self.max_ns = self.max_ns.max(v.max_ns);
        self.interrupted += v.interrupted;
        self.timeouts += v.timeouts;
        self.timeout_ns += v.timeout_ns;
        self.errors += v.errors;
        self.covered += v.covered;
        for i in 0..NUM_PHASES {
            self.blamed_ns[i] += v.blamed_ns[i];
            self.blamed_waits[i] += v.blamed_waits[i];
        }
        for (a, b) in self.hist.iter_mut().zip(v.hist.iter()) {
            *a += b;
        }
    }

    /// What is left of this row's waits once `part` of them is accounted for elsewhere: counts,
    /// time and histogram, saturating at zero. The maximum cannot be split, so it stays unless
    /// nothing is left. Holder blame stays whole: callers scale it by the time share.
    pub fn minus(&self, part: &WaitStats) -> WaitStats {
        let mut r = *self;
        r.count = self.count.saturating_sub(part.count);
        r.total_ns = self.total_ns.saturating_sub(part.total_ns);
        r.timeouts = self.timeouts.saturating_sub(part.timeouts);
        r.timeout_ns = self.timeout_ns.saturating_sub(part.timeout_ns);
        for (a, b) in r.hist.iter_mut().zip(part.hist.iter()) {
            *a = a.saturating_sub(*b);
        }
        if r.count == 0 {
            r.max_ns = 0;
        }
        r
    }
}
