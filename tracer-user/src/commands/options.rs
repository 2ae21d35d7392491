//! options: what each command needs, validated and free of the command line's types — the
//! engine's side of the samply pattern (cli/ turns clap's structs into these at once).
use crate::attach::HookChoice;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tracer_common::Phase;

use crate::analyze::{GroupBy, SortKey, ViewOptions, Waits};
use crate::collect::{Follow, Progress};
use crate::collect::{GoSample, WindowShare};
use crate::profile::LockWrappers;
use crate::render::Format;
use crate::tracee::GoUprobes;
use crate::unwind::Unwind;

/// How much to trace.
#[derive(Debug, Clone)]
pub enum Launch {
    /// Attach to a running process.
    Pid(u32),
    /// Start this command (program, then arguments) and trace it from exec.
    Command(Vec<String>),
}

/// What `record` needs, validated.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub launch: Launch,
    /// `None`: until the target exits (or Ctrl-C).
    pub duration: Option<Duration>,
    /// `None`: the default name, known once the pid is.
    pub output: Option<PathBuf>,
    /// `None`: the profile itself.
    pub output_format: Option<Format>,
    pub view: ViewOptions,
    /// `--lock-wrapper`: more functions that are lock code.
    pub lock_wrappers: LockWrappers,
    pub progress: Progress,
    /// Bundled-map phases to probe.
    pub phases: Vec<Phase>,
    pub unwind: Unwind,
    pub go_uprobes: GoUprobes,
    /// Only a share of goroutine waits followed.
    pub go_sample: Option<GoSample>,
    /// The goroutine or tokio probes attached only part of the time.
    pub probe_windows: Option<WindowShare>,
    pub follow: Follow,
    pub hooks: HookChoice,
}

/// What `report` needs, validated.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub profile: PathBuf,
    pub view: ViewOptions,
    pub lock_wrappers: LockWrappers,
    pub format: Format,
    pub output: Option<PathBuf>,
}

/// What `top` needs, validated.
#[derive(Debug, Clone)]
pub struct TopOptions {
    pub pid: u32,
    pub interval: Duration,
    pub by: GroupBy,
    pub sort: SortKey,
    pub waits: Waits,
    pub lock_wrappers: LockWrappers,
    pub phases: Vec<Phase>,
    pub unwind: Unwind,
    pub go_uprobes: GoUprobes,
    pub hooks: HookChoice,
}

/// What the agent traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    /// Every process (but the agent itself and kernel threads).
    All,
    /// Fixed pids, and processes whose command name, executable or cgroup matches.
    Match {
        pids: Vec<u32>,
        comms: Vec<String>,
        exes: Vec<PathBuf>,
        /// cgroup v2 paths: a process in one of them or below it.
        cgroups: Vec<String>,
    },
}

/// Where the agent serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    /// A unix socket, created here with mode 0600 (never replacing a file already there).
    Unix(PathBuf),
}

/// What `agent` needs, validated.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub listen: Listen,
    /// Requests (but `/healthz`) must carry `Authorization: Bearer <this>`.
    pub token: Option<String>,
    pub select: Select,
    /// `seconds=0` profiles cover the last whole window of this length.
    pub window: Duration,
    pub max_targets: usize,
    /// Lock sites per process with their own metric label.
    pub top_sites: usize,
    pub phases: Vec<Phase>,
    pub go_uprobes: GoUprobes,
    pub hooks: HookChoice,
    /// How each process's stacks are walked (`Auto`: chosen per executable).
    pub unwind: Unwind,
}
