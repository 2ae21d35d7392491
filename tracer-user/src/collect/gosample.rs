//! gosample: `record --go-sample PERCENT`. Every goroutine wait the precise probes see costs
//! three uprobe traps in the goroutine's critical path (the semaphore's slow path, its wake, its
//! way out), and in RWMutex-heavy code that is most of the run. Sampled, the goroutine probes
//! are attached for one window of every [`PERIOD`] and removed between windows, so the traps
//! (and their cost) happen mostly in that share of the time. The kernel programs count a wait
//! only if it began and was readied inside one window (`GO_WINDOW`, exact monotonic times;
//! the kernel takes up to a few hundred ms to remove a probe, and the window does not wait
//! for it), and the goroutine rows are scaled by recorded time ÷ window time, so they stay
//! comparable with the futex rows. Waits longer than a window are never seen, and one of length L is seen with
//! probability (window − L) ÷ period: the estimate runs low by about L ÷ window for long waits.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tracer_common::{OpKind, WaitKey, WaitStats};

use crate::attach::{Tracer, Uprobes};
use crate::profile::GoSampled;
use crate::sys::monotonic_ns;
use crate::tracee::GoPlan;

/// One sampling period: a window of probes, then a gap.
pub const PERIOD: Duration = Duration::from_secs(1);

/// The share of time the goroutine probes are attached, in percent (1–100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoSample {
    percent: u8,
}

impl GoSample {
    pub fn new(percent: u8) -> Result<GoSample> {
        if !(1..=100).contains(&percent) {
            bail!("--go-sample takes a percent of time from 1 to 100, not {percent}");
        }
        Ok(GoSample { percent })
    }

    pub fn percent(self) -> u8 {
        self.percent
    }

    /// How long the probes stay attached in each [`PERIOD`].
    pub fn window(self) -> Duration {
        PERIOD * u32::from(self.percent) / 100
    }
}

/// Attaches and removes one process's goroutine probes on the sampling clock, and sets the
/// kernel's window to match.
pub struct GoSampler {
    pid: u32,
    exe: PathBuf,
    plan: GoPlan,
    sample: GoSample,
    /// The probes while a window is open, and the window (monotonic ns).
    live: Option<(u64, u64, Uprobes)>,
    /// When the current window or gap ends.
    next: Instant,
    probed_ns: u64,
    windows: u32,
    started_ns: u64,
}

impl GoSampler {
    /// Takes over `probes`, just attached: the first window opens now.
    pub fn new(
        tracer: &mut Tracer,
        pid: u32,
        (exe, plan): (PathBuf, GoPlan),
        sample: GoSample,
        probes: Uprobes,
    ) -> Result<Self> {
        let mut s = GoSampler {
            pid,
            exe,
            plan,
            sample,
            live: None,
            next: Instant::now(),
            probed_ns: 0,
            windows: 0,
            started_ns: monotonic_ns(),
        };
        s.open(tracer, probes)?;
        Ok(s)
    }

    pub fn sample(&self) -> GoSample {
        self.sample
    }

    /// When [`GoSampler::toggle`] is due.
    pub fn due(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.next)
    }

    /// No more windows (the target no longer takes probes): what was probed so far stands.
    pub fn halt(&mut self) {
        self.next = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    }

    fn open(&mut self, tracer: &mut Tracer, probes: Uprobes) -> Result<()> {
        // The window runs from when every probe is live; the kernel closes it on time.
        let open = monotonic_ns();
        let close = open + self.sample.window().as_nanos() as u64;
        tracer.set_go_window(open, close)?;
        self.live = Some((open, close, probes));
        self.windows += 1;
        self.next = Instant::now() + self.sample.window();
        Ok(())
    }

    /// Removes the probes once their window has closed, or attaches them for the next one.
    pub fn toggle(&mut self, tracer: &mut Tracer) -> Result<()> {
        match self.live.take() {
            Some((open, close, probes)) => {
                self.probed_ns += close - open;
                tracer.release_uprobes(probes)?;
                self.next = Instant::now() + PERIOD.saturating_sub(self.sample.window());
            }
            None => {
                let probes = tracer.attach_go(self.pid, &self.exe, &self.plan)?;
                self.open(tracer, probes)?;
            }
        }
        Ok(())
    }

    /// Ends sampling at the stop of the recording: what was probed, for the report. An open
    /// window closes now.
    pub fn finish(mut self, tracer: &mut Tracer) -> GoSampled {
        let now = monotonic_ns();
        if let Some((open, close, probes)) = self.live.take() {
            let close = close.min(now);
            self.probed_ns += close.saturating_sub(open);
            let _ = tracer.set_go_window(open, close);
            if let Err(e) = tracer.release_uprobes(probes) {
                eprintln!("lockscope: {e:#}");
            }
        }
        GoSampled {
            percent: self.sample.percent,
            window_ms: self.sample.window().as_millis() as u64,
            period_ms: PERIOD.as_millis() as u64,
            windows: self.windows,
            probed_ns: self.probed_ns,
            recorded_ns: now.saturating_sub(self.started_ns),
        }
    }
}

/// Scales the goroutine rows up to the whole recording (times and counts; a longest wait
/// stays what was seen).
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
    fn percents_outside_1_to_100_are_refused_and_windows_follow_the_percent() {
        assert!(GoSample::new(0).is_err());
        assert!(GoSample::new(101).is_err());
        assert_eq!(
            GoSample::new(10).unwrap().window(),
            Duration::from_millis(100)
        );
        assert_eq!(GoSample::new(100).unwrap().window(), PERIOD);
    }

    #[test]
    fn only_goroutine_rows_are_scaled_and_the_longest_wait_is_kept() {
        let key = |kind: OpKind| WaitKey {
            stack_id: 1,
            waker_id: 0,
            uaddr: 0,
            leaf_ret: 0,
            tid: 1,
            kind: kind as u32,
            flags: 0,
            _pad: 0,
        };
        let mut s = WaitStats::default();
        s.add_wait(1_000, &Default::default(), tracer_common::Outcome::Woken);
        s.add_wait(3_000, &Default::default(), tracer_common::Outcome::Woken);
        let mut rows = vec![(key(OpKind::GoSemacquire), s), (key(OpKind::Wait), s)];
        let sampled = GoSampled {
            percent: 10,
            window_ms: 50,
            period_ms: 500,
            windows: 4,
            probed_ns: 200_000_000,
            recorded_ns: 2_000_000_000,
        };
        scale_rows(&mut rows, &sampled);
        assert_eq!(
            (rows[0].1.count, rows[0].1.total_ns, rows[0].1.max_ns),
            (20, 40_000, 3_000)
        );
        assert_eq!(rows[0].1.hist.iter().sum::<u64>(), 20);
        assert_eq!(rows[1].1, s);
    }
}
