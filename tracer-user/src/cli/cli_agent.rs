//! `lockscope agent`'s command line (part of cli/, in its own file for size).
use std::path::PathBuf;

use anyhow::{bail, Result};

use super::{pid_of, ProbeArgs, UnwindArgs};
use crate::commands::{AgentOptions, Listen, Select};
use crate::profile::parse_duration;

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// Where to serve /metrics, /debug/pprof/contention, /targets and /healthz: ADDR:PORT, or
    /// unix:PATH for a unix socket only root can connect to (mode 0600; PATH must not exist).
    /// The endpoints show stacks of the traced processes: on TCP any local user can read
    /// them unless --token-file is given.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: String,
    /// Require `Authorization: Bearer TOKEN` (TOKEN: this file's first line) on every
    /// endpoint but /healthz. The file must not be readable by group or others.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
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
    /// Chosen per process as it is attached (`auto`: by its executable, like `record`).
    #[command(flatten)]
    pub unwind: UnwindArgs,
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
            listen: parse_listen(&self.listen)?,
            token: self.token_file.as_deref().map(read_token).transpose()?,
            select,
            window: parse_duration("--window", &self.window)?,
            max_targets: self
                .max_targets
                .clamp(1, tracer_common::MAX_TARGETS as usize),
            top_sites: self.top_sites,
            phases: self.probes.phases(),
            go_uprobes: self.probes.go_uprobes.into(),
            hooks: self.probes.hooks.into(),
            unwind: self.unwind.options()?,
        })
    }
}

/// `--listen`: `ADDR:PORT` or `unix:PATH` (an absolute path).
fn parse_listen(s: &str) -> Result<Listen> {
    if let Some(path) = s.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        if !path.is_absolute() || path.file_name().is_none() {
            bail!(
                "--listen {s}: give an absolute socket path, e.g. unix:/run/lockscope/agent.sock"
            );
        }
        return Ok(Listen::Unix(path));
    }
    s.parse().map(Listen::Tcp).map_err(|_| {
        anyhow::anyhow!("--listen {s}: give an address and port (e.g. 127.0.0.1:9464) or unix:PATH")
    })
}

/// The token in `--token-file`: its first line, from a file no one else may read.
fn read_token(path: &std::path::Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("--token-file {shown}: {e}"))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!("--token-file {shown}: readable by others; chmod 600 it");
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("--token-file {shown}: {e}"))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < 16 {
        bail!("--token-file {shown}: give a token of at least 16 characters on its first line");
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_an_address_or_a_unix_path() {
        assert_eq!(
            parse_listen("127.0.0.1:9464").unwrap(),
            Listen::Tcp("127.0.0.1:9464".parse().unwrap())
        );
        assert_eq!(
            parse_listen("unix:/run/l.sock").unwrap(),
            Listen::Unix("/run/l.sock".into())
        );
        assert!(parse_listen("unix:rel.sock").is_err());
        assert!(parse_listen("9464").is_err());
    }
}
