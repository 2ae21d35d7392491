//! Command line: clap definitions, converted at once into the plain options the engine uses.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

use tracer_common::Phase;

use crate::units::parse_duration;

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
    /// Attach to a running process, record its lock waits, print the hot stacks.
    Record(RecordArgs),
    /// Print a saved profile again, without the process.
    Report(ReportArgs),
}

#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    /// Process to trace.
    #[arg(short, long)]
    pub pid: i64,
    /// How long to record: 10s, 500ms, 2m, or plain seconds. Ctrl-C stops early and still saves.
    #[arg(short, long, default_value = "10s")]
    pub duration: String,
    /// Profile file to write [default: lockscope-PID.json].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub view: ViewArgs,
    /// No live progress line.
    #[arg(short, long)]
    pub quiet: bool,
    /// Uprobes on the bundled map's phases: `heavy` (promotions and rebuilds: rare, cheap),
    /// `all` (also every read miss: exact traced miss counts, but a uprobe per miss slows
    /// miss-heavy programs several-fold; see BENCHMARKS.md), or `off`.
    #[arg(long, value_enum, default_value_t = PhaseProbesArg::Heavy)]
    pub phase_probes: PhaseProbesArg,
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
}

#[derive(clap::Args, Debug)]
pub struct ViewArgs {
    /// Stacks to show.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Show every frame of each stack, not just the innermost ones.
    #[arg(long)]
    pub full_stacks: bool,
}

/// What `record` needs, validated.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub pid: u32,
    pub duration: Duration,
    pub output: PathBuf,
    pub view: ViewOptions,
    pub progress: bool,
    /// Bundled-map phases to probe.
    pub phases: Vec<Phase>,
}

#[derive(Debug, Clone, Copy)]
pub struct ViewOptions {
    pub top: usize,
    /// `None` shows every frame.
    pub max_frames: Option<usize>,
}

/// Frames shown per stack unless `--full-stacks`.
pub const DEFAULT_FRAMES: usize = 8;

impl ViewArgs {
    fn options(&self) -> ViewOptions {
        ViewOptions {
            top: self.top,
            max_frames: (!self.full_stacks).then_some(DEFAULT_FRAMES),
        }
    }
}

impl RecordArgs {
    pub fn options(&self) -> Result<RecordOptions> {
        if self.pid <= 0 || self.pid > i64::from(i32::MAX) {
            bail!("--pid {} is not a process id", self.pid);
        }
        let pid = self.pid as u32;
        let duration = parse_duration(&self.duration)?;
        Ok(RecordOptions {
            pid,
            duration,
            output: self
                .output
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("lockscope-{pid}.json"))),
            view: self.view.options(),
            progress: !self.quiet,
            phases: match self.phase_probes {
                PhaseProbesArg::Heavy => vec![Phase::Promote, Phase::Rebuild],
                PhaseProbesArg::All => Phase::ALL.to_vec(),
                PhaseProbesArg::Off => Vec::new(),
            },
        })
    }
}

impl ReportArgs {
    pub fn view(&self) -> ViewOptions {
        self.view.options()
    }
}
