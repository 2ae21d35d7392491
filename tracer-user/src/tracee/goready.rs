//! goready: where the goroutine probes see a semaphore waiter made runnable. The wait ends in
//! `runtime.readyWithTime(s, traceskip)`, which the semaphore release (`semrelease1`) and
//! `sync.Cond`'s notify paths call, and nothing else: just after Go's block profile stops its
//! clock (`s.releasetime = cputicks()`) it calls `goready(s.g, traceskip)`.
//!
//! - Go 1.19: that is a direct call, probed at the call (the kernel emulates a call; no
//!   single-step), the goroutine in RAX.
//! - Go 1.21+ inline `goready` there: `readyWithTime` calls `systemstack` with the closure
//!   `{goready.func1, gp, traceskip}` built on its stack, RAX pointing at it. That call is
//!   probed, the goroutine read from the closure (RAX+8); the closure's shape is checked in the
//!   code bytes (`closure_call`) before the probe is placed.
//! - Neither found: `runtime.ready(gp)`, which runs for every goroutine made runnable
//!   (channels, timers, the network poller too) and costs far more on a busy program.
use anyhow::{Context, Result};
use std::collections::HashMap;

use super::goprobes::{Function, GoProbe};
use crate::sys::{call_offsets, closure_call};

/// Readies a semaphore (or `sync.Cond`) waiter.
pub const READY_SEMA: &str = "runtime.readyWithTime";
/// Called by `READY_SEMA` where it is not inlined (Go 1.19).
pub const GOREADY: &str = "runtime.goready";
/// Every goroutine made runnable: the fallback.
pub const READY_ANY: &str = "runtime.ready";
/// The closure function of an inlined `goready` (`runtime.readyWithTime.goready.func1`;
/// Go 1.27 shares one body between call sites, named `_.goready.func1`).
const GOREADY_CLOSURE: &str = ".goready.func1";

/// True for the functions the ready side needs found.
pub fn wanted(name: &str) -> bool {
    [READY_SEMA, GOREADY, READY_ANY].contains(&name) || name.ends_with(GOREADY_CLOSURE)
}

/// The ready probe points: (probe, function, file offset).
pub fn ready_points(
    funcs: &HashMap<String, Function>,
    file: &[u8],
) -> Result<Vec<(GoProbe, &'static str, u64)>> {
    let code = |f: &Function| -> Result<&[u8]> {
        file.get(f.offset as usize..(f.offset + f.size) as usize)
            .context("a function lies outside the file")
    };
    if let Some(f) = funcs.get(READY_SEMA) {
        if let Some(t) = funcs.get(GOREADY) {
            let sites = call_offsets(code(f)?, f.address, t.address);
            if !sites.is_empty() {
                return Ok(sites
                    .into_iter()
                    .map(|o| (GoProbe::ReadySite, READY_SEMA, f.offset + o))
                    .collect());
            }
        }
        let closures: Vec<u64> = funcs
            .iter()
            .filter(|(n, _)| n.ends_with(GOREADY_CLOSURE))
            .map(|(_, c)| c.address)
            .collect();
        if let Some(o) = closure_call(code(f)?, f.address, &closures) {
            return Ok(vec![(GoProbe::ReadyClosure, READY_SEMA, f.offset + o)]);
        }
    }
    Ok(funcs
        .get(READY_ANY)
        .map(|f| vec![(GoProbe::ReadyAny, READY_ANY, f.offset)])
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::goprobes::sema_probe_points;
    use super::*;

    /// Every build of the Go matrix (`cargo xtask build-go`), stripped ones included, gets a
    /// ready probe only where semaphore and Cond waiters are readied: the call to goready on
    /// 1.19, the goready closure's systemstack call on 1.21+; never `runtime.ready`.
    #[test]
    fn every_matrix_build_is_readied_at_its_semaphore_release() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/go/matrix");
        let Ok(builds) = std::fs::read_dir(&dir) else {
            return;
        };
        for build in builds.filter_map(|e| Some(e.ok()?.path())) {
            let bin = build.join("sync.test");
            if !bin.exists() {
                continue;
            }
            let plan = sema_probe_points(&bin, None).unwrap();
            let ready: Vec<GoProbe> = plan
                .points
                .iter()
                .map(|p| p.probe)
                .filter(|p| {
                    matches!(
                        p,
                        GoProbe::ReadySite | GoProbe::ReadyClosure | GoProbe::ReadyAny
                    )
                })
                .collect();
            let want = if build.to_string_lossy().contains("go1.19") {
                GoProbe::ReadySite
            } else {
                GoProbe::ReadyClosure
            };
            assert_eq!(ready, vec![want], "{}", build.display());
        }
    }
}
