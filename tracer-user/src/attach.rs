//! attach: load the eBPF object aimed at one process and attach the futex tracepoints.
use anyhow::{anyhow, Context, Result};
use aya::programs::{trace_point::TracePointLinkId, TracePoint};
use aya::{Ebpf, EbpfLoader};
use tracer_common::{global, prog};

use crate::preflight::has_tracepoint;

/// The eBPF object, built by build.rs through aya-build.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lockscope"));

/// Loaded programs and their links; dropping it detaches everything.
pub struct Tracer {
    pub ebpf: Ebpf,
    links: Vec<(&'static str, TracePointLinkId)>,
    /// Tracepoints this kernel lacks (older kernels have no futex2 syscalls).
    pub missing: Vec<&'static str>,
}

pub fn attach(tgid: u32) -> Result<Tracer> {
    let mut ebpf = EbpfLoader::new()
        .override_global(global::TARGET_TGID, &tgid, true)
        .load(OBJECT)
        .context("loading the eBPF object")?;
    // Load (verify) everything before attaching anything: verification takes milliseconds, and
    // exits attached during that time would see calls whose entries nobody recorded.
    for (name, _) in prog::ATTACH_ORDER {
        program(&mut ebpf, name)?
            .load()
            .with_context(|| format!("the kernel rejected program {name}"))?;
    }
    let mut links = Vec::new();
    let mut missing = Vec::new();
    for (name, tracepoints) in prog::ATTACH_ORDER {
        let program = program(&mut ebpf, name)?;
        for &tp in tracepoints {
            if !has_tracepoint("syscalls", tp) {
                missing.push(tp);
                continue;
            }
            let link = program
                .attach("syscalls", tp)
                .with_context(|| format!("attaching {name} to syscalls:{tp}"))?;
            links.push((name, link));
        }
    }
    Ok(Tracer {
        ebpf,
        links,
        missing,
    })
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut TracePoint> {
    Ok(ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("eBPF object has no program {name}"))?
        .try_into()?)
}

impl Tracer {
    /// Stops event flow so the maps can be read as one consistent snapshot.
    pub fn detach(&mut self) -> Result<()> {
        for (name, link) in self.links.drain(..) {
            program(&mut self.ebpf, name)?.detach(link)?;
        }
        Ok(())
    }
}
