//! windows: `record --probe-windows PERCENT`. A runtime's uprobes (tokio's, or the goroutine
//! probes) trap on every wait, and in a program that lives on one hot lock the traps alone are
//! most of the traced cost (a bpftrace script that only counts tokio's polls slows such a
//! program 1.6×). Sampling inside the kernel cannot help, as it runs after the trap: here the
//! probes themselves are attached for one [`WINDOW`] of each period (PERCENT of the time) and
//! taken off between.
//!
//! A wait is seen when it begins and ends in one window, so a wait of d ns is seen with
//! probability Σ max(0, Wᵢ − d) / T over the windows Wᵢ of a recording of T ns. Each row is
//! weighted back by the inverse of that chance, bucket by bucket of its histogram (the
//! Horvitz–Thompson estimate), with d capped at half a window so one near-window-long wait
//! cannot blow a row up: waits over half a window are under-counted, and those longer than a
//! window are never seen.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tracer_common::{bucket_floor_ns, OpKind, WaitKey, WaitStats};

use crate::attach::{ProbeLinks, Tracer};
use crate::profile::ProbeWindows as WindowsRecord;
use crate::tracee::{GoPlan, TokioPoints};

/// How long the probes stay attached each period.
pub const WINDOW: Duration = Duration::from_millis(100);

/// The share of the time the probes are attached, in percent (1–100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowShare {
    percent: u8,
}

impl WindowShare {
    pub fn new(percent: u8) -> Result<WindowShare> {
        if !(1..=100).contains(&percent) {
            bail!("--probe-windows takes a percent of the time from 1 to 100, not {percent}");
        }
        Ok(WindowShare { percent })
    }

    pub fn percent(self) -> u8 {
        self.percent
    }

    /// A window opens every this long.
    pub fn period(self) -> Duration {
        WINDOW * 100 / u32::from(self.percent)
    }
}

/// The probes switched, and where they go in one process.
pub enum Windowed {
    /// tokio's async-wait probes.
    Tokio {
        pid: u32,
        exe: PathBuf,
        points: TokioPoints,
    },
    /// The goroutine probes.
    Go {
        pid: u32,
        exe: PathBuf,
        plan: GoPlan,
    },
}

impl Windowed {
    /// The rows these probes make.
    pub fn op(&self) -> OpKind {
        match self {
            Windowed::Tokio { .. } => OpKind::TokioAcquire,
            Windowed::Go { .. } => OpKind::GoSemacquire,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Windowed::Tokio { .. } => "tokio's probes",
            Windowed::Go { .. } => "the goroutine probes",
        }
    }
}

/// A runtime's probes switched on for one window of each period.
pub struct ProbeWindows {
    share: WindowShare,
    probes: Windowed,
    /// The probes while a window is open.
    links: Option<ProbeLinks>,
    /// When the open window opened, or the next opens.
    at: Instant,
    /// Windows closed, and their summed length.
    closed: u64,
    closed_len: Duration,
    /// Why switching stopped, once it did (the probes stay off).
    failed: Option<String>,
}

impl ProbeWindows {
    /// Starts with the first window open: the session has just placed `links`.
    pub fn new(share: WindowShare, probes: Windowed, links: ProbeLinks) -> ProbeWindows {
        ProbeWindows {
            share,
            probes,
            links: Some(links),
            at: Instant::now(),
            closed: 0,
            closed_len: Duration::ZERO,
            failed: None,
        }
    }

    /// When the probes are next switched (far off once switching has failed).
    pub fn next_switch(&self) -> Instant {
        match (&self.failed, &self.links) {
            (Some(_), _) => self.at + Duration::from_secs(365 * 24 * 3600),
            (None, Some(_)) => self.at + WINDOW,
            (None, None) => self.at,
        }
    }

    /// Closes the open window, or opens the next. Returns a line for the user when the probes
    /// could not be placed again (the process gone, or its executable replaced).
    pub fn switch(&mut self, tracer: &mut Tracer) -> Option<String> {
        if self.failed.is_some() {
            return None;
        }
        match self.links.take() {
            Some(links) => {
                self.close_with(links);
                None
            }
            None => match self.open(tracer) {
                Ok(links) => {
                    self.links = Some(links);
                    self.at = Instant::now();
                    None
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    self.failed = Some(why.clone());
                    Some(format!(
                        "{} could not be placed again ({why}); their waits are no longer sampled",
                        self.probes.name()
                    ))
                }
            },
        }
    }

    fn close_with(&mut self, links: ProbeLinks) {
        // The window ends when the breakpoints go, which is as the detach begins.
        self.closed += 1;
        self.closed_len += self.at.elapsed();
        self.at += self.share.period();
        links.detach_in_background();
    }

    fn open(&self, tracer: &mut Tracer) -> Result<ProbeLinks> {
        // The last window's waits still open when it closed must not pair with this one's.
        let probes = match &self.probes {
            Windowed::Tokio { pid, exe, points } => {
                tracer.clear_tokio_inflight()?;
                tracer.attach_tokio(*pid, exe, points)?
            }
            Windowed::Go { pid, exe, plan } => {
                tracer.clear_go_inflight()?;
                tracer.attach_go(*pid, exe, plan)?
            }
        };
        tracer.own_links(probes)
    }

    /// Closes the open window, if one is: the recording stops.
    pub fn close(&mut self) {
        if let Some(links) = self.links.take() {
            self.close_with(links);
        }
    }

    pub fn share(&self) -> WindowShare {
        self.share
    }

    /// The rows these windows' probes make.
    pub fn op(&self) -> OpKind {
        self.probes.op()
    }

    /// The windows so far, the open one as long as it has been.
    pub fn record(&self) -> WindowsRecord {
        let (n, len) = match &self.links {
            Some(_) => (self.closed + 1, self.closed_len + self.at.elapsed()),
            None => (self.closed, self.closed_len),
        };
        WindowsRecord {
            percent: self.share.percent,
            window_ns: len.as_nanos() as u64 / n.max(1),
            windows: n,
        }
    }
}

/// Weights the rows of op `op` of a recording `elapsed` long up to every wait, bucket by
/// bucket of their histograms (see the module's note). The longest wait stays what was seen.
pub fn scale_rows(
    waits: &mut [(WaitKey, WaitStats)],
    op: OpKind,
    sampled: &WindowsRecord,
    elapsed: Duration,
) {
    let (w, n) = (sampled.window_ns as f64, sampled.windows as f64);
    let t = elapsed.as_nanos() as f64;
    if w <= 0.0 || n <= 0.0 {
        return;
    }
    let cap = sampled.weighted_up_to_ns() as f64;
    // A bucket's waits taken at its geometric middle.
    let weight = |b: usize| -> (f64, f64) {
        let d = (bucket_floor_ns(b) as f64 * std::f64::consts::SQRT_2).min(cap);
        ((t / (n * (w - d))).max(1.0), d)
    };
    for (k, s) in waits.iter_mut() {
        if k.kind != op as u32 || s.count == 0 {
            continue;
        }
        let (mut count, mut seen_time, mut est_time) = (0.0, 0.0, 0.0);
        for (b, c) in s.hist.iter_mut().enumerate() {
            let (wt, d) = weight(b);
            let seen = *c as f64;
            count += seen * wt;
            seen_time += seen * d;
            est_time += seen * d * wt;
            *c = (seen * wt).round() as u64;
        }
        // Time scales as the buckets' time does; count as the buckets' counts.
        let time_factor = if seen_time > 0.0 {
            est_time / seen_time
        } else {
            count / s.count as f64
        };
        let count_factor = count / s.count as f64;
        let by = |x: &mut u64, f: f64| *x = (*x as f64 * f).round() as u64;
        by(&mut s.total_ns, time_factor);
        for x in [&mut s.count, &mut s.interrupted, &mut s.covered] {
            by(x, count_factor);
        }
        s.blamed_ns.iter_mut().for_each(|x| by(x, time_factor));
        s.blamed_waits.iter_mut().for_each(|x| by(x, count_factor));
    }
}

#[cfg(test)]
#[path = "windows_tests.rs"]
pub(crate) mod tests;
