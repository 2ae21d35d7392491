//! session: what `record` and `top` (and, per process, the agent) do before any event is read —
//! recognise the target (Go, the bundled map), choose the unwinder, load and attach the eBPF
//! programs, place the phase and goroutine probes, and say what was set up.
use anyhow::Result;
use tracer_common::Phase;

use crate::attach::{self, Filter, Tracer};
use crate::collect::{
    Expected, Follow, GoSample, ProbeWindows, SnapshotDrain, WindowShare, Windowed,
};
use crate::profile::term_safe;
use crate::sys::{AttachPriority, Target};
use crate::tracee::{self, BundledMap, GoUprobes, TokioProbes};
use crate::unwind::{self, Unwind, UnwindMode, UnwindPlan};

/// What a session probes, from the command's options.
pub struct Probes<'a> {
    pub unwind: Unwind,
    pub phases: &'a [Phase],
    pub go_uprobes: GoUprobes,
    /// Follow only a share of the goroutine waits (`record --go-sample`).
    pub go_sample: Option<GoSample>,
    /// Attach the goroutine or tokio probes only a share of the time
    /// (`record --probe-windows`).
    pub windows: Option<WindowShare>,
    /// Forks: the kernel adds the processes the target forks to a traced set.
    pub follow: Follow,
    /// Which kernel hooks carry the futex events.
    pub hooks: attach::HookChoice,
}

impl<'a> Probes<'a> {
    /// Every goroutine wait followed, no forks (`top`, and each of the agent's processes).
    pub fn unsampled(
        unwind: Unwind,
        phases: &'a [Phase],
        go_uprobes: GoUprobes,
        hooks: attach::HookChoice,
    ) -> Probes<'a> {
        Probes {
            unwind,
            phases,
            go_uprobes,
            go_sample: None,
            windows: None,
            follow: Follow::Off,
            hooks,
        }
    }
}

/// Recognises what `target` runs: its Go version (set on it) and the bundled map, if probed.
pub fn recognise(target: &mut Target, probes: &Probes) -> Option<BundledMap> {
    let map = tracee::find_probed(target.exe.as_deref(), probes.phases);
    target.go = target.exe.as_deref().and_then(tracee::go_version);
    map
}

/// What a process's uprobes will be, worked out from its executable before anything is
/// attached: reading a large binary takes a while, and the window starts at attach.
pub struct ProbePlan {
    tokio: TokioProbes,
    go: Option<(std::path::PathBuf, tracee::GoPlan)>,
    /// DashMap's shard-lock slow paths, for lock hints.
    hints: Option<tracee::HintPoints>,
}

/// Plans one process's uprobes: tokio's async lock waits, and the goroutine probes.
pub fn plan_probes(target: &Target, probes: &Probes) -> Result<ProbePlan> {
    let tokio = match (target.exe.as_deref(), target.go.as_ref()) {
        (Some(exe), None) => tracee::tokio_probes(exe),
        _ => TokioProbes::Absent,
    };
    Ok(ProbePlan {
        tokio,
        go: tracee::goroutine_probes(target, probes.go_uprobes)?,
        hints: match (target.exe.as_deref(), target.go.as_ref()) {
            (Some(exe), None) => tracee::dashmap_hints(exe),
            _ => None,
        },
    })
}

/// What [`place`] placed.
pub struct Placed {
    /// Goroutine uprobes placed (0: not Go, or off).
    pub go_probes: usize,
    /// What was found of tokio.
    pub tokio: TokioProbes,
    /// `--probe-windows`: the goroutine or tokio probes, owned by their switch rather than
    /// the tracer.
    pub windows: Option<ProbeWindows>,
    /// The lock-hint probes placed, and where.
    pub hints: Option<tracee::HintPoints>,
}

/// Places one process's planned uprobes on a loaded tracer: the bundled map's phases, the
/// goroutine probes and tokio's.
pub fn place(
    tracer: &mut Tracer,
    target: &Target,
    map: Option<&BundledMap>,
    probes: &Probes,
    plan: ProbePlan,
) -> Result<Placed> {
    if let Some(m) = map {
        tracer.attach_phases(target.tgid, m)?;
    }
    let ProbePlan { tokio, go, hints } = plan;
    let pid = target.tgid;
    if let Some(h) = &hints {
        tracer.attach_lock_hints(pid, h)?;
    }
    // The set placed, and what `--probe-windows` switches.
    let (links, windowed) = match (&tokio, go) {
        (TokioProbes::Ready { exe, points, .. }, _) => (
            tracer.attach_tokio(pid, exe, points)?,
            Windowed::Tokio {
                pid,
                exe: exe.clone(),
                points: points.clone(),
            },
        ),
        (_, Some((exe, plan))) => {
            if let Some(sample) = probes.go_sample {
                tracer.set_go_sample(sample.threshold())?;
            }
            (
                tracer.attach_go(pid, &exe, &plan)?,
                Windowed::Go { pid, exe, plan },
            )
        }
        (_, None) => {
            return Ok(Placed {
                go_probes: 0,
                tokio,
                windows: None,
                hints,
            })
        }
    };
    let go_probes = match windowed {
        Windowed::Go { .. } => links.len(),
        Windowed::Tokio { .. } => 0,
    };
    let windows = match probes.windows {
        None => {
            tracer.keep_uprobes(links);
            None
        }
        Some(share) => Some(ProbeWindows::new(share, windowed, tracer.own_links(links)?)),
    };
    Ok(Placed {
        go_probes,
        tokio,
        windows,
        hints,
    })
}

/// A target with every probe live.
pub struct Session {
    pub target: Target,
    pub map: Option<BundledMap>,
    pub plan: UnwindPlan,
    pub tracer: Tracer,
    /// Goroutine uprobes placed (0: not Go, or off).
    pub go_probes: usize,
    /// The share of their waits they follow (`None`: all).
    pub go_sample: Option<GoSample>,
    /// What was found of tokio, and whether its async lock waits are probed.
    pub tokio: TokioProbes,
    /// `--probe-windows`: the switch of the goroutine or tokio probes.
    pub windows: Option<ProbeWindows>,
    /// The lock-hint probes placed (DashMap's shard locks).
    pub hints: Option<tracee::HintPoints>,
    /// DWARF and `fp+cfi` modes: the snapshot reader.
    pub snapshots: Option<SnapshotDrain>,
}

impl Session {
    /// Recognises `target`, attaches to it, and runs `after_load` (e.g. seeding the kernel's
    /// in-flight map) before any probe beyond the kernel hooks is placed; it returns the
    /// threads asleep at attach, whose stacks it found. DWARF mode's snapshot reader starts
    /// then, before the uprobes are placed. `boost` (the attach's raised priority) ends before
    /// that thread starts.
    pub fn start(
        mut target: Target,
        probes: &Probes,
        boost: Option<AttachPriority>,
        after_load: impl FnOnce(&mut Tracer) -> Result<Vec<Expected>>,
    ) -> Result<Session> {
        let map = recognise(&mut target, probes);
        let plan = unwind::choose(probes.unwind, &target);
        let uprobes = plan_probes(&target, probes)?;
        // DWARF mode's modules load now too: the snapshot reader starts the moment the
        // programs attach.
        let unwinder = match (probes.follow, plan.mode) {
            (Follow::Off, UnwindMode::FramePointers) => None,
            (Follow::Off, mode) => Some(SnapshotDrain::prepare(target.tgid, mode)),
            // Each child gets its own mode: a reader whenever any process may copy stacks.
            (Follow::Forks, mode) if probes.unwind.load_bytes() > 0 => {
                Some(SnapshotDrain::prepare_forks(target.tgid, mode))
            }
            (Follow::Forks, _) => None,
        };
        let mut tracer = match probes.follow {
            Follow::Off => {
                attach::attach(Filter::One(target.tgid), plan.snapshot_bytes, probes.hooks)?
            }
            Follow::Forks => {
                // Copies sized for any mode a child may choose; each process asks for its own.
                let bytes = probes.unwind.load_bytes();
                let mut t = attach::attach(Filter::Set, bytes, probes.hooks)?;
                t.add_target(target.tgid, plan.mode.target_flags())?;
                t.follow_forks()?;
                t
            }
        };
        let asleep = after_load(&mut tracer)?;
        drop(boost);
        let snapshots = match unwinder {
            None => None,
            Some(u) => Some(u.start(&mut tracer, asleep)?),
        };
        let Placed {
            go_probes,
            tokio,
            windows,
            hints,
        } = place(&mut tracer, &target, map.as_ref(), probes, uprobes)?;
        Ok(Session {
            target,
            map,
            plan,
            tracer,
            go_probes,
            go_sample: probes.go_sample.filter(|_| go_probes > 0),
            tokio,
            windows,
            hints,
            snapshots,
        })
    }

    /// `--probe-windows`: how the probes are switched, as a clause for the probes' line.
    fn windows_note(&self) -> String {
        self.windows.as_ref().map_or(String::new(), |w| {
            format!(
                ", attached {:?} of every {:?} (--probe-windows {})",
                crate::collect::PROBE_WINDOW,
                w.share().period(),
                w.share().percent()
            )
        })
    }

    /// One line per thing worth knowing about the setup, on stderr.
    pub fn announce(&self) {
        eprintln!("lockscope: {}", self.tracer.hooks.describe());
        if let (UnwindMode::FpCfi | UnwindMode::Dwarf, Some(why)) = (self.plan.mode, &self.plan.why)
        {
            eprintln!(
                "lockscope: unwinding {} ({why}; --unwind fp forces the frame walk)",
                self.plan.mode.name()
            );
        }
        for tp in &self.tracer.missing {
            eprintln!(
                "lockscope: this kernel has no syscalls:{tp} tracepoint; those calls are not traced"
            );
        }
        if self.go_probes > 0 {
            eprintln!(
                "lockscope: Go target ({}): {} uprobes time goroutines blocked on sync.Mutex/RWMutex{}",
                self.target.go.as_deref().unwrap_or("go"),
                self.go_probes,
                match self.go_sample {
                    Some(s) => format!(", following {}% of their waits (--go-sample)", s.percent()),
                    None => self.windows_note(),
                }
            );
        }
        match &self.tokio {
            TokioProbes::Absent => {}
            TokioProbes::Ready {
                version, points, ..
            } => eprintln!(
                "lockscope: tokio {}: {} uprobes ({}) time async waits on tokio::sync::{{Mutex, RwLock, Semaphore}} as `tokio acquire`{}",
                term_safe(version),
                points.count(),
                crate::profile::TokioTarget::describe(points.count(), points.inlined().as_ref()),
                self.windows_note()
            ),
            TokioProbes::Unprobeable { version, why } => eprintln!(
                "lockscope: tokio {}: async waits cannot be probed: {}",
                term_safe(version),
                term_safe(why)
            ),
        }
        if let Some(h) = &self.hints {
            eprintln!(
                "lockscope: DashMap: {} uprobes on dashmap::lock::RawRwLock::{{{}}} (entry and returns) name the shard each wait is for",
                h.count(),
                h.names()
            );
        }
        if let Some(s) = self.map.as_ref().and_then(|m| m.std.as_ref()) {
            let probed: Vec<&str> = s.phases.iter().map(|&(p, _)| s.kind.function(p)).collect();
            eprintln!(
                "lockscope: {} ({}): probing {}",
                s.kind.label(),
                term_safe(&s.version),
                if probed.is_empty() {
                    crate::tracee::none_probed(s.kind).to_string()
                } else {
                    probed.join(", ")
                }
            );
        }
        if let Some(m) = self
            .map
            .as_ref()
            .filter(|m| !m.phases.is_empty() || m.stats_offset.is_some())
        {
            eprintln!(
                "lockscope: found the bundled map in {}: {} phase probes{}",
                term_safe(&m.exe.display().to_string()),
                m.phases.len(),
                if m.stats_offset.is_some() {
                    ", counters readable"
                } else {
                    ""
                }
            );
        }
    }
}

/// Go's `sync.Map`: samples the target on-CPU (a perf event per CPU at
/// [`tracer_common::ONCPU_HZ`]) to estimate the map's lock-free read share. A failure costs
/// the estimate only, said in one line.
pub fn sample_std_map(session: &mut Session) {
    let Some(kind) = session
        .map
        .as_ref()
        .and_then(|m| m.std.as_ref())
        .map(|s| s.kind)
    else {
        return;
    };
    match session.tracer.attach_oncpu() {
        Ok(cpus) => eprintln!(
            "lockscope: {}: sampling on-CPU stacks at {} Hz on {cpus} CPUs to estimate its \
             lock-free read share",
            kind.label(),
            tracer_common::ONCPU_HZ
        ),
        Err(e) => eprintln!(
            "lockscope: no lock-free read estimate for {} ({e:#})",
            kind.label()
        ),
    }
}
