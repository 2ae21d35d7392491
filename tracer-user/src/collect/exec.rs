//! exec: notices when the target replaces its image (`execve`) during a recording, so the
//! report names what ran last and the bundled map's probes follow it into the new image.
use std::path::PathBuf;

/// What the target became after an exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub exe: PathBuf,
    pub comm: String,
}

/// The target's executable as last seen.
pub struct ExecWatch {
    exe: Option<PathBuf>,
}

impl ExecWatch {
    /// Watches `pid`, which runs `known` as far as the caller knows (a launched command's
    /// program may have exec'd again before the recording began: `sh -c 'exec prog'`, a
    /// script's interpreter, a version manager's shim), else what it runs now.
    pub fn new(pid: u32, known: Option<PathBuf>) -> ExecWatch {
        ExecWatch {
            exe: known.or_else(|| exe_of(pid)),
        }
    }

    /// The new identity if the target exec'd since the last call.
    pub fn check(&mut self, pid: u32) -> Option<Identity> {
        let now = exe_of(pid)?;
        if self.exe.as_ref() == Some(&now) {
            return None;
        }
        self.exe = Some(now.clone());
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim_end().to_string())
            .unwrap_or_default();
        Some(Identity { exe: now, comm })
    }
}

fn exe_of(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}
