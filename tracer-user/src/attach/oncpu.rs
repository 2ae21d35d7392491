//! oncpu: the on-CPU sampler behind the `sync.Map` fast-path estimate. One perf event per
//! online CPU on the software CPU clock at [`ONCPU_HZ`], system-wide, with the kernel program
//! keeping only the target's threads (its tgid filter); the links live as long as the loaded
//! object (dropping the tracer closes them).
use anyhow::{anyhow, Context, Result};
use aya::programs::perf_event::{
    PerfEvent, PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use aya::util::online_cpus;
use tracer_common::{prog, ONCPU_HZ};

use super::Tracer;

impl Tracer {
    /// Starts sampling on every online CPU. Returns the number of CPUs sampled.
    pub fn attach_oncpu(&mut self) -> Result<usize> {
        let cpus =
            online_cpus().map_err(|(what, e)| anyhow!("listing online CPUs ({what}: {e})"))?;
        let program: &mut PerfEvent = self
            .ebpf
            .program_mut(prog::ONCPU_SAMPLE)
            .ok_or_else(|| anyhow!("eBPF object has no program {}", prog::ONCPU_SAMPLE))?
            .try_into()?;
        program
            .load()
            .with_context(|| format!("the kernel rejected program {}", prog::ONCPU_SAMPLE))?;
        for &cpu in &cpus {
            program
                .attach(
                    PerfEventConfig::Software(SoftwareEvent::CpuClock),
                    PerfEventScope::AllProcessesOneCpu { cpu },
                    SamplePolicy::Frequency(ONCPU_HZ),
                    false,
                )
                .with_context(|| format!("sampling CPU {cpu} (perf_event_open)"))?;
        }
        Ok(cpus.len())
    }
}
