//! The options of the commands that only read and show: `report` and `top`.
use anyhow::Result;

use super::*;

impl ReportArgs {
    pub fn options(&self) -> Result<ReportOptions> {
        let format = self
            .format
            .map(Format::from)
            .or_else(|| self.output.as_deref().and_then(Format::from_path))
            .unwrap_or(Format::Table);
        Ok(ReportOptions {
            profile: self.profile.clone(),
            view: self.view.options()?,
            lock_wrappers: LockWrappers::new(&self.view.lock_wrapper)?,
            format,
            output: self.output.clone(),
        })
    }
}

impl TopArgs {
    pub fn options(&self) -> Result<TopOptions> {
        Ok(TopOptions {
            pid: pid_of(self.pid)?,
            interval: parse_duration("--interval", &self.interval)?,
            by: self.by.into(),
            sort: self.sort.into(),
            waits: self.waits.into(),
            lock_wrappers: LockWrappers::new(&self.lock_wrapper)?,
            phases: self.probes.phases(),
            unwind: self.unwind.options()?,
            go_uprobes: self.probes.go_uprobes.into(),
            hooks: self.probes.hooks.into(),
        })
    }
}
