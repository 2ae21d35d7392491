//! holder: the bundled-map phases a lock's holder can be running, as the profile stores
//! them per wait row (data only: `analyze/behind.rs` splits and names them).
use serde::{Deserialize, Serialize};

/// A bundled-map phase a lock's holder ran ([`tracer_common::Phase`]), named in the file by
/// its function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum HolderPhase {
    #[serde(rename = "miss_locked")]
    Miss,
    #[serde(rename = "promote")]
    Promote,
    #[serde(rename = "rebuild_dirty")]
    Rebuild,
}

impl From<tracer_common::Phase> for HolderPhase {
    fn from(p: tracer_common::Phase) -> Self {
        match p {
            tracer_common::Phase::Miss => HolderPhase::Miss,
            tracer_common::Phase::Promote => HolderPhase::Promote,
            tracer_common::Phase::Rebuild => HolderPhase::Rebuild,
        }
    }
}

impl HolderPhase {
    /// The phase function's name, as the file stores it (`rebuild_dirty`).
    pub fn function(self) -> &'static str {
        tracer_common::Phase::from(self).function()
    }

    /// From the phase function's name (profiles before the split stored it so).
    pub fn from_function(name: &str) -> Option<HolderPhase> {
        tracer_common::Phase::ALL
            .into_iter()
            .find(|p| p.function() == name)
            .map(HolderPhase::from)
    }
}

impl From<HolderPhase> for tracer_common::Phase {
    fn from(p: HolderPhase) -> Self {
        match p {
            HolderPhase::Miss => tracer_common::Phase::Miss,
            HolderPhase::Promote => tracer_common::Phase::Promote,
            HolderPhase::Rebuild => tracer_common::Phase::Rebuild,
        }
    }
}

/// The part of a wait row's time that one holder phase ran while its threads waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blamed {
    pub phase: HolderPhase,
    /// Waits with some time on this phase.
    pub waits: u64,
    pub ns: u64,
}
