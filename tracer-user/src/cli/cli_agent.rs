//! `lockscope agent`'s command line (part of cli/, in its own file for size).
use std::path::PathBuf;

use anyhow::{bail, Result};

use super::{pid_of, ProbeArgs};
use crate::commands::{AgentOptions, Select};
use crate::profile::parse_duration;

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// Where to serve /metrics, /debug/pprof/contention, /targets and /healthz.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: String,
    /// Trace this process (repeatable).
    #[arg(short, long)]
    pub pid: Vec<i64>,
    /// Trace processes with this command name, as they start (repeatable).
    #[arg(long)]
    pub comm: Vec<String>,
    /// Trace processes running this executable, as they start (repeatable).
    #[arg(long)]
    pub exe: Vec<PathBuf>,
    /// Trace processes in this cgroup (v2 path, e.g. /system.slice/x.service) or below it,
    /// as they start (repeatable).
    #[arg(long)]
    pub cgroup: Vec<String>,
    /// Trace every process (up to --max-targets).
    #[arg(long, conflicts_with_all = ["pid", "comm", "exe", "cgroup"])]
    pub all: bool,
    /// `/debug/pprof/contention?seconds=0` serves the last window of this length.
    #[arg(long, default_value = "60s")]
    pub window: String,
    /// Most processes traced at once; the rest are counted as lost (reason="target_cap").
    #[arg(long, default_value_t = 256)]
    pub max_targets: usize,
    /// Lock sites per process with their own `site` label; the rest are site="other".
    #[arg(long, default_value_t = 20)]
    pub top_sites: usize,
    #[command(flatten)]
    pub probes: ProbeArgs,
}

impl AgentArgs {
    pub fn options(&self) -> Result<AgentOptions> {
        let select = if self.all {
            Select::All
        } else if self.pid.is_empty()
            && self.comm.is_empty()
            && self.exe.is_empty()
            && self.cgroup.is_empty()
        {
            bail!("say what to trace: --pid PID, --comm NAME, --exe PATH, --cgroup PATH or --all");
        } else {
            Select::Match {
                pids: self.pid.iter().map(|&p| pid_of(p)).collect::<Result<_>>()?,
                comms: self.comm.clone(),
                exes: self.exe.clone(),
                cgroups: self
                    .cgroup
                    .iter()
                    .map(|c| c.trim_end_matches('/').to_string())
                    .collect(),
            }
        };
        Ok(AgentOptions {
            listen: self.listen.parse().map_err(|_| {
                anyhow::anyhow!(
                    "--listen {}: give an address and port, e.g. 127.0.0.1:9464",
                    self.listen
                )
            })?,
            select,
            window: parse_duration("--window", &self.window)?,
            max_targets: self
                .max_targets
                .clamp(1, tracer_common::MAX_TARGETS as usize),
            top_sites: self.top_sites,
            phases: self.probes.phases(),
            go_uprobes: self.probes.go_uprobes.into(),
            hooks: self.probes.hooks.into(),
        })
    }
}
