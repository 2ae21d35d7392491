//! Command line: clap definitions, converted at once into the plain options the engine uses.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

use tracer_common::Phase;

use crate::analyze::{GroupBy, SortKey, ViewOptions, Waits, Weight, DEFAULT_FRAMES, DEFAULT_TOP};
use crate::collect::{Follow, Progress};
use crate::collect::{GoSample, WindowShare};
use crate::commands::{Launch, RecordOptions, ReportOptions, TopOptions};
use crate::profile::{parse_duration, LockWrappers};
use crate::render::Format;
use crate::tracee::GoUprobes;
use crate::unwind::Unwind;

#[derive(Parser, Debug)]
#[command(
    name = "lockscope",
    version,
    about = "Trace lock contention (futex waits) in a running process, by user stack"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Record a process's lock waits (attach with --pid, or launch `-- CMD ARGS…`), print the
    /// hot stacks, save the profile.
    Record(RecordArgs),
    /// Print a saved profile again, without the process, in any format.
    Report(ReportArgs),
    /// A live, refreshing table of the hottest lock waits of a running process.
    Top(TopArgs),
    /// Run as a daemon: trace matching processes as they come and go, and serve Prometheus
    /// metrics and pprof profiles over HTTP.
    Agent(AgentArgs),
}

#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    /// Process to trace.
    #[arg(
        short,
        long,
        conflicts_with = "command",
        required_unless_present = "command"
    )]
    pub pid: Option<i64>,
    /// How long to record: 10s, 500ms, 2m, or plain seconds [default: 10s with --pid; until
    /// the command exits when launching]. Ctrl-C stops early and still saves.
    #[arg(short, long)]
    pub duration: Option<String>,
    /// Output file [default: lockscope-PID.json]. `.json` (or any other name) is the profile
    /// that `report` reads; `.svg`, `.folded`, `.csv`, `.pb.gz`/`.pprof` and `.txt` write that
    /// format instead.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Also trace the processes the command forks (and theirs), from their first instruction;
    /// their waits join the report. Each process's stacks are walked as --unwind chooses for
    /// its own executable.
    #[arg(long, requires = "command")]
    pub follow_forks: bool,
    #[command(flatten)]
    pub view: ViewArgs,
    /// No live progress line.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub probes: ProbeArgs,
    /// Go targets: follow only this percent of goroutine waits, chosen at random where each
    /// begins, and scale their rows up. Cuts what following every wait costs RWMutex-heavy
    /// code (see BENCHMARKS.md); the rows become estimates.
    #[arg(long, value_name = "PERCENT", conflicts_with = "follow_forks")]
    pub go_sample: Option<u8>,
    /// Go and tokio targets: attach the goroutine or async-wait probes only for 100 ms windows
    /// making up this percent of the time, and weight their rows back up. Their traps are most
    /// of what tracing a hot lock costs (see BENCHMARKS.md); the rows become estimates, and
    /// waits longer than a window are not seen.
    #[arg(
        long,
        value_name = "PERCENT",
        conflicts_with_all = ["follow_forks", "go_sample"]
    )]
    pub probe_windows: Option<u8>,
    #[command(flatten)]
    pub unwind: UnwindArgs,
    /// Launch this command and trace it from its first instruction; lockscope exits with its
    /// status.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `--unwind` and `--stack-bytes`.
#[derive(clap::Args, Debug)]
pub struct UnwindArgs {
    /// How user stacks are walked: `fp` (frame pointers, in the kernel: cheapest), `dwarf`
    /// (a copy of each waiting thread's stack, unwound in user space with the modules' CFI:
    /// full stacks without frame pointers), or `auto` (dwarf when the executable has no frame
    /// pointers).
    #[arg(long, value_enum, default_value_t = UnwindArg::Auto)]
    pub unwind: UnwindArg,
    /// Bytes of stack copied per wait in DWARF mode (1024 to 16384; deeper frames are cut).
    #[arg(long, default_value_t = tracer_common::SNAPSHOT_MAX_BYTES as u32)]
    pub stack_bytes: u32,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum UnwindArg {
    Fp,
    Dwarf,
    Auto,
}

impl UnwindArgs {
    fn options(&self) -> Result<Unwind> {
        let (lo, hi) = (
            tracer_common::SNAPSHOT_MIN_BYTES as u32,
            tracer_common::SNAPSHOT_MAX_BYTES as u32,
        );
        if !(lo..=hi).contains(&self.stack_bytes) {
            bail!(
                "--stack-bytes {} is out of range: {lo} to {hi}",
                self.stack_bytes
            );
        }
        Ok(match self.unwind {
            UnwindArg::Fp => Unwind::FramePointers,
            UnwindArg::Dwarf => Unwind::Dwarf(self.stack_bytes),
            UnwindArg::Auto => Unwind::Auto(self.stack_bytes),
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// Uprobes on the bundled map's phases: `heavy` (promotions and rebuilds: rare, cheap),
    /// `all` (also every read miss: exact traced miss counts, but a uprobe per miss slows
    /// miss-heavy programs several-fold; see BENCHMARKS.md), or `off`.
    #[arg(long, value_enum, default_value_t = PhaseProbesArg::Heavy)]
    pub phase_probes: PhaseProbesArg,
    /// Go targets: uprobes on the `sync` semaphore acquires time every goroutine blocked on a
    /// sync.Mutex or RWMutex (which parks without a futex call). `auto`: on for Go targets;
    /// `on`: fail if they cannot be placed; `off`: futex waits only.
    #[arg(long, value_enum, default_value_t = GoUprobesArg::Auto)]
    pub go_uprobes: GoUprobesArg,
    /// Kernel hooks: `auto`, `sched` or `syscalls` (costs and gaps: docs/sched-hooks.md).
    #[arg(long, value_enum, default_value_t = hooks_arg::HooksArg::Auto, env = "LOCKSCOPE_HOOKS")]
    pub hooks: hooks_arg::HooksArg,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoUprobesArg {
    Auto,
    On,
    Off,
}

impl From<GoUprobesArg> for GoUprobes {
    fn from(g: GoUprobesArg) -> Self {
        match g {
            GoUprobesArg::Auto => GoUprobes::Auto,
            GoUprobesArg::On => GoUprobes::On,
            GoUprobesArg::Off => GoUprobes::Off,
        }
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum PhaseProbesArg {
    Heavy,
    All,
    Off,
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// A profile written by `lockscope record`.
    pub profile: PathBuf,
    #[command(flatten)]
    pub view: ViewArgs,
    /// Output format [default: from -o's extension, else table].
    #[arg(short, long, value_enum)]
    pub format: Option<FormatArg>,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// Process to watch.
    #[arg(short, long)]
    pub pid: i64,
    /// Refresh interval.
    #[arg(short, long, default_value = "1s")]
    pub interval: String,
    /// First grouping (`b` cycles it live).
    #[arg(long, value_enum, default_value_t = ByArg::Stack)]
    pub by: ByArg,
    /// First sort key (`s` cycles it live).
    #[arg(long, value_enum, default_value_t = SortArg::Total)]
    pub sort: SortArg,
    /// Which waits: lock contention, idle waits (condition variables, parking, joins), or all.
    #[arg(long, value_enum, default_value_t = WaitsArg::Contention)]
    pub waits: WaitsArg,
    /// Functions matching this regex are lock code: the site is their caller (repeatable).
    #[arg(long, value_name = "REGEX")]
    pub lock_wrapper: Vec<String>,
    #[command(flatten)]
    pub probes: ProbeArgs,
    #[command(flatten)]
    pub unwind: UnwindArgs,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum FormatArg {
    Table,
    Csv,
    Json,
    Folded,
    Svg,
    Pprof,
}

/// `--waits`: which waits a view shows.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitsArg {
    /// Lock contention only: mutexes, rwlocks, Once races, condvar waiters re-taking the mutex.
    Contention,
    /// Threads idle until told: condition waits, parking, joins, barriers, semaphores, events.
    Idle,
    All,
}

impl From<WaitsArg> for Waits {
    fn from(w: WaitsArg) -> Self {
        match w {
            WaitsArg::Contention => Waits::Contention,
            WaitsArg::Idle => Waits::Idle,
            WaitsArg::All => Waits::All,
        }
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum ByArg {
    Stack,
    Function,
    Lock,
    Thread,
    Process,
    Category,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum SortArg {
    Total,
    Count,
    Max,
    Avg,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum WeightArg {
    Time,
    Count,
}

#[derive(clap::Args, Debug)]
pub struct ViewArgs {
    /// Rows per report: one per stack, innermost non-lock function, lock (futex word), thread,
    /// process (with --follow-forks), or category (bundled-map operation or lock primitive).
    #[arg(long, value_enum, default_value_t = ByArg::Stack)]
    pub by: ByArg,
    /// Order rows by total wait, number of waits, longest wait or average wait.
    #[arg(long, value_enum, default_value_t = SortArg::Total)]
    pub sort: SortArg,
    /// Rows to show (table, csv, json).
    #[arg(long, default_value_t = DEFAULT_TOP)]
    pub top: usize,
    /// Leave out rows with less total wait than this (e.g. 1ms).
    #[arg(long, value_name = "DURATION")]
    pub min_wait: Option<String>,
    /// Show every frame of each stack, not just the innermost ones.
    #[arg(long)]
    pub full_stacks: bool,
    /// A log2 histogram of single waits under each row (table; always in json).
    #[arg(long)]
    pub hist: bool,
    /// Flamegraph and folded weights: wait time or number of waits.
    #[arg(long, value_enum, default_value_t = WeightArg::Time)]
    pub weight: WeightArg,
    /// Which waits: lock contention, idle waits (condition variables, parking, joins), or all.
    #[arg(long, value_enum, default_value_t = WaitsArg::Contention)]
    pub waits: WaitsArg,
    /// Functions matching this regex are lock code, like pthread_mutex_lock: the lock site is
    /// their caller (repeatable; e.g. 'MyMutex::Lock').
    #[arg(long, value_name = "REGEX")]
    pub lock_wrapper: Vec<String>,
}

pub(crate) fn pid_of(pid: i64) -> Result<u32> {
    if pid <= 0 || pid > i64::from(i32::MAX) {
        bail!("--pid {pid} is not a process id");
    }
    Ok(pid as u32)
}

impl From<ByArg> for GroupBy {
    fn from(b: ByArg) -> Self {
        match b {
            ByArg::Stack => GroupBy::Stack,
            ByArg::Function => GroupBy::Function,
            ByArg::Lock => GroupBy::Lock,
            ByArg::Thread => GroupBy::Thread,
            ByArg::Process => GroupBy::Process,
            ByArg::Category => GroupBy::Category,
        }
    }
}

impl From<SortArg> for SortKey {
    fn from(s: SortArg) -> Self {
        match s {
            SortArg::Total => SortKey::Total,
            SortArg::Count => SortKey::Count,
            SortArg::Max => SortKey::Max,
            SortArg::Avg => SortKey::Avg,
        }
    }
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Table => Format::Table,
            FormatArg::Csv => Format::Csv,
            FormatArg::Json => Format::Json,
            FormatArg::Folded => Format::Folded,
            FormatArg::Svg => Format::Svg,
            FormatArg::Pprof => Format::Pprof,
        }
    }
}

impl ProbeArgs {
    pub(crate) fn phases(&self) -> Vec<Phase> {
        match self.phase_probes {
            PhaseProbesArg::Heavy => vec![Phase::Promote, Phase::Rebuild],
            PhaseProbesArg::All => Phase::ALL.to_vec(),
            PhaseProbesArg::Off => Vec::new(),
        }
    }
}

impl ViewArgs {
    fn options(&self) -> Result<ViewOptions> {
        Ok(ViewOptions {
            by: self.by.into(),
            sort: self.sort.into(),
            top: self.top,
            min_wait_ns: match &self.min_wait {
                Some(s) => parse_duration("--min-wait", s)?.as_nanos() as u64,
                None => 0,
            },
            max_frames: (!self.full_stacks).then_some(DEFAULT_FRAMES),
            hist: self.hist,
            weight: match self.weight {
                WeightArg::Time => Weight::WaitTime,
                WeightArg::Count => Weight::Count,
            },
            waits: self.waits.into(),
        })
    }
}

impl RecordArgs {
    pub fn options(&self) -> Result<RecordOptions> {
        let launch = match (self.pid, self.command.is_empty()) {
            (Some(pid), true) => Launch::Pid(pid_of(pid)?),
            (None, false) => Launch::Command(self.command.clone()),
            // clap enforces exactly one of them.
            _ => bail!("give --pid PID or -- CMD ARGS…, not both"),
        };
        let duration = match (&self.duration, &launch) {
            (Some(d), _) => Some(parse_duration("--duration", d)?),
            (None, Launch::Pid(_)) => Some(Duration::from_secs(10)),
            (None, Launch::Command(_)) => None,
        };
        Ok(RecordOptions {
            launch,
            duration,
            output_format: self.output.as_deref().and_then(Format::from_path),
            output: self.output.clone(),
            view: self.view.options()?,
            lock_wrappers: LockWrappers::new(&self.view.lock_wrapper)?,
            progress: if self.quiet {
                Progress::Quiet
            } else {
                Progress::Shown
            },
            phases: self.probes.phases(),
            unwind: self.unwind.options()?,
            go_uprobes: self.probes.go_uprobes.into(),
            hooks: self.probes.hooks.into(),
            go_sample: self.go_sample.map(GoSample::new).transpose()?,
            probe_windows: self.probe_windows.map(WindowShare::new).transpose()?,
            follow: if self.follow_forks {
                Follow::Forks
            } else {
                Follow::Off
            },
        })
    }
}

#[path = "cli_agent.rs"]
mod agent_args;
#[path = "cli_hooks.rs"]
mod hooks_arg;
#[path = "cli_views.rs"]
mod view_args;
pub use agent_args::AgentArgs;

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
