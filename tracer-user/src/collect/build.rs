//! build: the one place a profile is made. The kernel's rows are symbolized and assembled
//! (`assemble`); everything else a driver knows comes in typed (`Inputs`): how stacks were
//! walked, how long attaching took, which hooks and probes carried the events, the threads
//! still blocked at the end, the user's lock wrappers. `record`, `top` and the agent build
//! with it, and nothing is patched into a profile afterwards.
use crate::attach::Hooks;
use crate::collect::blocked::{add_to_profile as add_blocked, Asleep};
use crate::collect::Raw;
use crate::profile::{Blocked, LockWrappers, Profile, TokioTarget};
use crate::symbolize::{Forwarders, StackSymbolizer};
use crate::sys::{MapHistory, Target};
use crate::tracee::BundledMap;
use crate::unwind::UnwindPlan;

/// What a profile says beside the kernel's rows.
pub struct Inputs<'a> {
    pub target: &'a Target,
    /// When the recording (or the agent's trace of the process) began.
    pub start_unix_ms: u64,
    /// The bundled map or Go `sync.Map` found in it, its probes attached.
    pub map: Option<&'a BundledMap>,
    /// How its stacks were walked, and why.
    pub plan: &'a UnwindPlan,
    /// From the command's start until every probe was live.
    pub attach_ns: u64,
    /// Which kernel hooks carried the futex events.
    pub hooks: &'a Hooks,
    /// Goroutine uprobes placed (0: not Go, or off).
    pub go_probes: usize,
    /// What was found of tokio.
    pub tokio: Option<TokioTarget>,
    /// Threads asleep since before attach and still asleep at the end (`record` on a pid).
    pub blocked: Vec<(Asleep, Blocked)>,
    /// `--lock-wrapper`: functions the user says are lock code.
    pub wrappers: &'a LockWrappers,
}

/// What names one process's profiles, kept from build to build (`top` and the agent build
/// many): its symbolizer and the lock wrappers found in its code.
pub struct Namer {
    pub sym: StackSymbolizer,
    forwarders: Forwarders,
}

impl Namer {
    pub fn new(sym: StackSymbolizer) -> Namer {
        Namer {
            sym,
            forwarders: Forwarders::default(),
        }
    }

    /// A namer for a process whose maps were read once (a followed child's).
    pub fn for_maps(maps: &MapHistory) -> Namer {
        Namer::new(StackSymbolizer::new(maps.clone()))
    }

    /// Offsets its symbolizer looked up itself.
    pub fn lookups(&self) -> u64 {
        self.sym.lookups
    }
}

/// The profile of `raw`, whole.
pub fn build(raw: Raw, mut inputs: Inputs, namer: &mut Namer) -> Profile {
    let blocked = std::mem::take(&mut inputs.blocked);
    let mut profile = super::assemble::assemble(raw, &inputs, &mut namer.sym);
    if !blocked.is_empty() {
        add_blocked(&mut profile, blocked, &mut namer.sym);
    }
    namer.forwarders.mark(&mut profile);
    inputs.wrappers.mark(&mut profile);
    profile
}
