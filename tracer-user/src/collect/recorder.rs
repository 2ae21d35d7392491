//! recorder: the recording engine as `record` and `top` drive it: one target (and, with
//! `--follow-forks`, what it forks) as members of a [`Fleet`], the engine the agent drives for
//! its many processes — rows read once and split by process, hand-offs taken once, each
//! member's maps, thread names and unwound snapshots. Beside the fleet it owns the loaded
//! tracer, the exec the target may make (the bundled map is probed again in the new image),
//! the forks it follows, and the bundled map's counter window. A driver calls `tick` every
//! [`TICK`] and reads `rows` whenever it wants a profile, or lets `run` tick until a stop;
//! `finish` detaches and reads the last rows of every member.
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::unix::AsyncFd;
use tracer_common::{Counter, Phase};

use super::children::Children;
use super::exec::ExecWatch;
use super::gosample::{self, GoSample};
use super::lockshards::Retry;
use super::read::{in_flight, read_counters, read_phases};
use super::windows::{self, ProbeWindows};
use super::{
    oncpu, Fleet, Follow, Identity, Joining, MapWindow, NewStacks, Raw, Since, Snapshot,
    SnapshotDrain, StopSignals, Strangers, Take,
};
use crate::attach::Tracer;
use crate::profile::{fmt_count, StopReason};
use crate::sys::Target;
use crate::tracee::{self, BundledMap};
use crate::unwind::{Unwind, UnwindPlan};

/// How often a driver ticks: the progress line, and the map and thread refreshes.
pub const TICK: Duration = Duration::from_millis(250);
/// Memory maps are re-read every this many ticks (cheap, but not free for huge processes).
const MAPS_EVERY: u32 = 4;

/// Whether the recording began at the target's exec (`record -- CMD`) or attached to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    FromExec,
    Attached,
}

/// What the recorder follows, from the session that attached.
pub struct Setup {
    pub target: Target,
    /// How the target's stacks are walked.
    pub plan: UnwindPlan,
    pub start: Start,
    /// The bundled map found in the target, its probes attached.
    pub map: Option<BundledMap>,
    /// Phases to probe if the target execs into an image with the bundled map.
    pub phases: Vec<Phase>,
    pub follow: Follow,
    /// `--go-sample`: the kernel followed this share of goroutine waits.
    pub go_sample: Option<GoSample>,
    /// `--probe-windows`: the goroutine or tokio probes, switched on for a window of each
    /// period.
    pub windows: Option<ProbeWindows>,
    /// DWARF and `fp+cfi` modes: the snapshot reader, running since the programs attached.
    pub snapshots: Option<SnapshotDrain>,
    /// `--unwind`: followed children choose their mode from it.
    pub unwind: Unwind,
}

/// When `run` stops, besides the target's exit.
pub struct Until {
    /// `None`: until the target exits (a week is the longest `--duration` takes).
    pub duration: Option<Duration>,
    /// Listened for since the command began.
    pub stops: StopSignals,
    pub progress: Progress,
}

/// Whether `run` keeps a progress line on a terminal's stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Shown,
    Quiet,
}

/// The bundled map's counters and traced totals at the window's start and last tick.
#[derive(Default)]
struct Window {
    start: Option<Snapshot>,
    last: Option<Snapshot>,
}

/// What a finished recording read: the target's rows, each followed child's, and the tracer
/// (dropping it releases the phase probes; see `Tracer::detach`).
pub struct Finished {
    pub raw: Raw,
    pub children: Vec<(Target, UnwindPlan, Raw)>,
    pub tracer: Tracer,
}

pub struct Recorder {
    tracer: Tracer,
    pid: u32,
    /// The target and the children followed: their rows, maps, threads and snapshots.
    fleet: Fleet<()>,
    map: Option<BundledMap>,
    phases: Vec<Phase>,
    follow: Follow,
    children: Children,
    go_sample: Option<GoSample>,
    windows: Option<ProbeWindows>,
    new_stacks: NewStacks,
    exec: ExecWatch,
    became: Option<Identity>,
    window: Window,
    exited: AsyncFd<OwnedFd>,
    ticks: u32,
    started: Instant,
    /// What happened that the user should hear of (an exec followed), for the driver to show.
    notes: Vec<String>,
}

impl Recorder {
    /// Starts recording now that every probe is live (inside a Tokio runtime context).
    pub fn new(mut tracer: Tracer, setup: Setup) -> Result<Recorder> {
        let Setup {
            target,
            plan,
            start,
            map,
            phases,
            follow,
            go_sample,
            windows,
            snapshots,
            unwind,
        } = setup;
        let pid = target.tgid;
        let exited = super::pidfd(pid)?;
        let new_stacks = NewStacks::take(&mut tracer)?;
        // A child that lived and ended between two reads keeps its rows, under its pid.
        let strangers = match follow {
            Follow::Forks => Strangers::Join {
                ext: || (),
                parent: pid,
            },
            Follow::Off => Strangers::Lost,
        };
        let mut fleet = Fleet::new(tracer.hooks.clone(), strangers);
        fleet.drain = snapshots;
        let exe = target.exe.clone();
        fleet.join(Joining::now(target, None, plan, ()));
        let mut r = Recorder {
            tracer,
            pid,
            fleet,
            map: None,
            phases,
            follow,
            children: Children::new(unwind),
            go_sample,
            windows,
            new_stacks,
            exec: ExecWatch::new(pid, exe),
            became: None,
            window: Window::default(),
            exited,
            ticks: 0,
            started: Instant::now(),
            notes: Vec::new(),
        };
        if let Some(m) = map {
            // A process traced from exec starts with every counter and traced total at zero.
            let first = match start {
                Start::FromExec => Ok(Snapshot {
                    counters: tracee::zero_counters(),
                    phases: Default::default(),
                }),
                Start::Attached => r.snapshot(&m),
            };
            match first {
                Ok(s) => r.window.start = Some(s),
                Err(e) => eprintln!("lockscope: cannot read the bundled map's counters ({e:#}); reporting traced counts only"),
            }
            r.window.last = r.window.start.clone();
            r.map = Some(m);
        }
        Ok(r)
    }

    pub fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    /// The bundled map probed now (after an exec, the new image's).
    pub fn map(&self) -> Option<&BundledMap> {
        self.map.as_ref()
    }

    /// What the user should hear of since the last call, one line each (made terminal-safe).
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Whether the target has exited (its pidfd is readable).
    pub fn target_exited(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.exited.get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, a zero timeout; poll only writes `revents`.
        unsafe { libc::poll(&mut p, 1, 0) > 0 }
    }

    /// The map's counters (Go's sync.Map keeps none) and the traced phase totals, now.
    fn snapshot(&self, m: &BundledMap) -> Result<Snapshot> {
        Ok(Snapshot {
            counters: match m.stats_offset {
                Some(_) => tracee::read_counters(self.pid, m)?,
                None => BTreeMap::new(),
            },
            phases: read_phases(&self.tracer)?,
        })
    }

    /// Reads the stacks the kernel stored since the last call; re-reads the maps if one has
    /// an address they do not cover (a library loaded since the last tick).
    pub fn take_new_stacks(&mut self) {
        if let Some(m) = self.fleet.members.get_mut(&self.pid) {
            self.new_stacks.check(self.pid, &mut m.maps, &self.tracer);
        }
    }

    /// One tick's upkeep: the kernel's log, followed forks, an exec, maps and thread names,
    /// and the map's counters.
    pub fn tick(&mut self) {
        self.ticks += 1;
        self.tracer.flush_logs();
        if self.follow == Follow::Forks {
            self.children
                .refresh(&mut self.tracer, self.pid, &mut self.fleet);
        }
        if let Some(id) = self.exec.check(self.pid) {
            self.exec_happened(id);
        }
        if self.ticks.is_multiple_of(MAPS_EVERY) {
            self.fleet.watch();
        }
        self.read_shards(Retry::NewOnly);
        if let (Some(m), Some(_)) = (&self.map, &self.window.start) {
            if let Ok(s) = self.snapshot(m) {
                self.window.last = Some(s);
            }
        }
    }

    /// The shards of the hinted locks new since the last read (see `LockShards`).
    fn read_shards(&mut self, again: Retry) {
        let members = &self.fleet.members;
        let traced = |t| members.contains_key(&t);
        self.fleet.shards.read(&self.tracer, again, traced);
    }

    /// The target exec'd: its maps are read again and the new image's bundled map is probed
    /// from now on, its window starting when the probes are live, like an attach.
    fn exec_happened(&mut self, id: Identity) {
        if let Some(s) = &self.fleet.drain {
            s.exec_happened();
        }
        self.notes.push(format!(
            "pid {} exec'd {}; following it",
            self.pid,
            crate::profile::term_safe(&id.exe.display().to_string())
        ));
        self.fleet.watch();
        if let Some(m) = tracee::find_probed(Some(&id.exe), &self.phases) {
            match self.tracer.attach_phases(self.pid, &m) {
                Ok(_) => {
                    self.window.start = self.snapshot(&m).ok();
                    self.window.last = self.window.start.clone();
                    self.map = Some(m);
                }
                Err(e) => self
                    .notes
                    .push(format!("cannot probe the bundled map after exec ({e:#})")),
            }
        }
        self.became = Some(id);
    }

    /// Ticks until the duration ends, a stop signal comes or the target exits.
    pub async fn run(&mut self, until: Until) -> Result<StopReason> {
        let Until {
            duration,
            mut stops,
            progress,
        } = until;
        let deadline =
            tokio::time::Instant::now() + duration.unwrap_or(Duration::from_secs(7 * 24 * 3600));
        let mut tick = tokio::time::interval(TICK);
        let show = progress == Progress::Shown && std::io::stderr().is_terminal();
        let mut last = (Instant::now(), 0u64);
        let stop = loop {
            let switch = self
                .windows
                .as_ref()
                .map_or(deadline, |w| w.next_switch().into());
            tokio::select! {
                _ = tokio::time::sleep_until(switch), if self.windows.is_some() => {
                    if let Some(note) = self.windows.as_mut().and_then(|w| w.switch(&mut self.tracer)) {
                        self.notes.push(note);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break StopReason::Duration,
                // A closed terminal, or a signal a supervisor sends, saves it like Ctrl-C.
                () = stops.recv() => break StopReason::Interrupted,
                _ = self.exited.readable() => break StopReason::TargetExited,
                Ok(()) = self.new_stacks.ready() => self.take_new_stacks(),
                _ = tick.tick() => {
                    self.tick();
                    for note in self.take_notes() {
                        if show {
                            eprint!("\r\x1b[2K");
                        }
                        eprintln!("lockscope: {note}");
                    }
                    if show {
                        last = self.show_progress(last)?;
                    }
                }
            }
        };
        if show {
            eprint!("\r\x1b[2K");
        }
        Ok(stop)
    }

    /// Rewrites the progress line; returns when it was drawn and the waits counted then.
    fn show_progress(&self, (at, slept_then): (Instant, u64)) -> Result<(Instant, u64)> {
        let slept = read_counters(&self.tracer)?[Counter::Slept as usize];
        let now = Instant::now();
        let dt = now.duration_since(at).as_secs_f64().max(1e-3);
        let rate = slept.saturating_sub(slept_then) as f64 / dt;
        eprint!(
            "\r\x1b[2K  recording pid {}: {:>6.1}s  waits {:>10}  rate {:>9}/s",
            self.pid,
            self.started.elapsed().as_secs_f64(),
            fmt_count(slept),
            fmt_count(rate as u64),
        );
        let _ = std::io::stderr().flush();
        Ok((now, slept))
    }

    /// Every row so far, the probes still live (`top`'s refresh): the kernel's rows paired
    /// with the unwound snapshots as `finish` pairs them. The map's window is left for the end.
    pub fn rows(&mut self, stop: StopReason) -> Result<Raw> {
        self.fleet.read(&mut self.tracer, Take::Aged)?;
        self.target_rows(stop, self.started.elapsed())
    }

    /// The target's rows as the fleet last read them, with what only one process has: the
    /// waits in flight, the phase totals, the sampled goroutine rows scaled.
    fn target_rows(&self, stop: StopReason, elapsed: Duration) -> Result<Raw> {
        let mut raw = self
            .fleet
            .raw(self.pid, Since::Attach)
            .context("the target is no member of its own recording")?;
        raw.stop = stop;
        raw.elapsed = elapsed;
        (raw.still_waiting, raw.longest_unfinished_ns) = in_flight(&self.tracer)?;
        raw.phases = read_phases(&self.tracer)?;
        raw.go_sampled = self.go_sample.map(GoSample::record);
        if let Some(s) = &raw.go_sampled {
            gosample::scale_rows(&mut raw.waits, s);
        }
        if let Some(w) = &self.windows {
            let record = w.record();
            windows::scale_rows(&mut raw.waits, w.op(), &record, elapsed);
            raw.windows = Some(record);
        }
        Ok(raw)
    }

    /// Detaches the probes and reads the last rows: the map's window, what the target exec'd
    /// into, and the children followed, each with its own rows.
    pub fn finish(mut self, stop: StopReason) -> Result<Finished> {
        let elapsed = self.started.elapsed();
        // One last look at the maps in case a library appeared since the last tick.
        let mut end_exact = false;
        self.read_shards(Retry::Failed);
        if stop != StopReason::TargetExited {
            self.fleet.watch();
            if let (Some(m), Some(_)) = (&self.map, &self.window.start) {
                if let Ok(s) = self.snapshot(m) {
                    self.window.last = Some(s);
                    end_exact = true;
                }
            }
        }
        if self.follow == Follow::Forks {
            self.children
                .refresh(&mut self.tracer, self.pid, &mut self.fleet);
        }
        if let Some(w) = &mut self.windows {
            w.close();
        }
        self.tracer.detach()?;
        self.tracer.flush_logs();
        // Snapshots of the last waits, sent before the programs went away.
        let snapshots = self.fleet.drain.take().map(SnapshotDrain::finish);
        // No waker can come now: every hand-off left is taken, with no waker.
        self.fleet.read(&mut self.tracer, Take::All)?;
        if let Some(rows) = snapshots {
            self.fleet.take_snapshots(rows);
        }
        let mut raw = self.target_rows(stop, elapsed)?;
        raw.oncpu = oncpu::read_samples(&self.tracer)?;
        let Window { start, last } = std::mem::take(&mut self.window);
        if let (Some(end), true) = (&last, end_exact) {
            // The stop instant, not later: the probes keep firing until they are detached.
            raw.phases = end.phases;
        }
        raw.map_window = start.zip(last).map(|(start, end)| MapWindow {
            start,
            end,
            end_exact,
        });
        raw.map = self.map.take();
        raw.exec = self.became.take();
        let children = self
            .fleet
            .members
            .iter()
            .filter(|(&pid, _)| pid != self.pid)
            .filter_map(|(&pid, m)| {
                let mut r = self.fleet.raw(pid, Since::Attach)?;
                r.stop = stop;
                r.elapsed = elapsed;
                Some((m.target.clone(), m.plan.clone(), r))
            })
            .collect();
        Ok(Finished {
            raw,
            children,
            tracer: self.tracer,
        })
    }
}
