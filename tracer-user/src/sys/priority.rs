//! priority: the attach runs at a raised scheduling priority. Attaching is ~100 ms of CPU
//! (parsing kernel BTF, creating maps, the verifier), but on a host whose cores are saturated
//! by the very threads being traced, a nice-0 thread gets a fraction of a core and the attach
//! stretched to 1–2 s. The boost lasts until the kernel hooks are live and covers only the
//! attaching thread: it ends before the snapshot reader's thread starts, and a launched
//! command is forked before it begins.
use std::io;

/// The nice value the attach runs at (or the caller's, if already lower).
const ATTACH_NICE: i32 = -10;

/// A raised priority for the calling thread, restored on drop.
pub struct AttachPriority {
    tid: libc::id_t,
    was: i32,
}

impl AttachPriority {
    /// Raises the calling thread's priority to [`ATTACH_NICE`]. `None` when it already runs
    /// at that priority or higher, or the kernel refuses (no CAP_SYS_NICE): the attach then
    /// runs as it is, only slower under load.
    pub fn raise() -> Option<AttachPriority> {
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() } as libc::id_t;
        let was = nice_of(tid).ok()?;
        if was <= ATTACH_NICE {
            return None;
        }
        set_nice(tid, ATTACH_NICE).ok()?;
        Some(AttachPriority { tid, was })
    }
}

impl Drop for AttachPriority {
    fn drop(&mut self) {
        // Lowering one's own priority needs no privilege, so this cannot be refused.
        let _ = set_nice(self.tid, self.was);
    }
}

fn nice_of(tid: libc::id_t) -> io::Result<i32> {
    // getpriority returns the nice value, and -1 is a valid one: errno tells the two apart.
    // SAFETY: errno is thread-local; writing it is how getpriority's error is detected.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: plain syscall wrapper on a thread id of this process.
    let n = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
    if n == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(0) {
            return Err(e);
        }
    }
    Ok(n)
}

fn set_nice(tid: libc::id_t, nice: i32) -> io::Result<()> {
    // SAFETY: plain syscall wrapper on a thread id of this process.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boost_is_undone_on_drop() {
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() } as libc::id_t;
        let before = nice_of(tid).unwrap();
        {
            let boost = AttachPriority::raise();
            if boost.is_some() {
                assert_eq!(nice_of(tid).unwrap(), ATTACH_NICE);
            }
        }
        assert_eq!(nice_of(tid).unwrap(), before);
    }
}
