//! launch: starts `record -- CMD` held just before exec, so the probes are live before its
//! first instruction, then lets it run and collects its exit status.
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A forked child waiting at a pipe to exec the command.
pub struct Launched {
    pub pid: u32,
    /// The resolved program (what /proc/PID/exe will name).
    pub exe: PathBuf,
    pub program: String,
    /// Writing a byte here lets the child exec.
    go: Option<OwnedFd>,
    /// Closed by exec (CLOEXEC); carries errno if exec failed.
    exec_error: OwnedFd,
    reaped: bool,
}

/// `name` as execvp would find it: a path if it has a slash, else the first executable file of
/// that name on PATH.
pub fn resolve(name: &str) -> Result<PathBuf> {
    let is_exec = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        if !p.exists() {
            bail!("cannot run {name}: no such file");
        }
        if !is_exec(&p) {
            bail!("cannot run {name}: not an executable file");
        }
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_exec(p))
        .with_context(|| format!("cannot run {name}: not found in PATH"))
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two fds into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe2");
    }
    // SAFETY: both fds were just created and belong to nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Forks a child that waits for [`Launched::release`] before exec'ing `argv`.
pub fn spawn(argv: &[String]) -> Result<Launched> {
    let program = argv.first().context("no command to launch")?.clone();
    let exe = resolve(&program)?;
    let exe = exe.canonicalize().unwrap_or(exe);
    // Everything the child needs is built before fork: only async-signal-safe calls after it.
    let path = CString::new(exe.as_os_str().as_bytes()).context("command path has a NUL")?;
    let args: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .context("an argument has a NUL byte")?;
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    let (go_r, go_w) = pipe()?;
    let (err_r, err_w) = pipe()?;

    // SAFETY: fork has no memory-safety preconditions; the child below only calls
    // async-signal-safe functions (close, read, execv, write, _exit) on data prepared above.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        // SAFETY: async-signal-safe calls on fds and buffers that are valid in the child.
        unsafe {
            libc::close(go_w.as_raw_fd());
            libc::close(err_r.as_raw_fd());
            let mut b = 0u8;
            // EOF (lockscope gone) or error: do not run untraced.
            if libc::read(go_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1) != 1 {
                libc::_exit(127);
            }
            libc::execv(path.as_ptr(), arg_ptrs.as_ptr());
            let errno = *libc::__errno_location();
            libc::write(
                err_w.as_raw_fd(),
                (&errno as *const i32).cast(),
                std::mem::size_of::<i32>(),
            );
            libc::_exit(127);
        }
    }
    drop(go_r);
    drop(err_w);
    Ok(Launched {
        pid: pid as u32,
        exe,
        program,
        go: Some(go_w),
        exec_error: err_r,
        reaped: false,
    })
}

impl Launched {
    /// Lets the child exec; returns once it has (or says why it could not).
    pub fn release(&mut self) -> Result<()> {
        let go = self.go.take().context("already released")?;
        // SAFETY: writing one byte from a local to an fd we own.
        let n = unsafe { libc::write(go.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        if n != 1 {
            return Err(std::io::Error::last_os_error()).context("starting the command");
        }
        drop(go);
        let mut errno = [0u8; 4];
        let mut got = 0;
        while got < errno.len() {
            // SAFETY: reading into the rest of a local buffer from an fd we own.
            let n = unsafe {
                libc::read(
                    self.exec_error.as_raw_fd(),
                    errno[got..].as_mut_ptr().cast(),
                    errno.len() - got,
                )
            };
            if n <= 0 {
                break;
            }
            got += n as usize;
        }
        if got == errno.len() {
            let e = std::io::Error::from_raw_os_error(i32::from_ne_bytes(errno));
            let _ = self.wait();
            bail!("cannot run {}: {e}", self.program);
        }
        Ok(())
    }

    /// Waits for the command to end; its exit code, or 128 + signal number, as a shell does.
    pub fn wait(&mut self) -> Result<i32> {
        let mut status = 0;
        loop {
            // SAFETY: waitpid writes one int we own.
            let r = unsafe { libc::waitpid(self.pid as i32, &mut status, 0) };
            if r >= 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e).context("waiting for the command");
            }
        }
        self.reaped = true;
        Ok(if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else if libc::WIFSIGNALED(status) {
            128 + libc::WTERMSIG(status)
        } else {
            1
        })
    }
}

impl Drop for Launched {
    /// A child never released (attach failed) is killed; one released is left to run.
    fn drop(&mut self) {
        if self.go.is_some() && !self.reaped {
            // SAFETY: signalling and reaping our own child.
            unsafe {
                libc::kill(self.pid as i32, libc::SIGKILL);
                libc::waitpid(self.pid as i32, std::ptr::null_mut(), 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_resolve_like_execvp() {
        assert!(resolve("sh").unwrap().ends_with("sh"));
        let e = resolve("no-such-program-xyz").unwrap_err().to_string();
        assert_eq!(e, "cannot run no-such-program-xyz: not found in PATH");
        let plain = std::env::temp_dir().join(format!("lockscope-plain-{}", std::process::id()));
        std::fs::write(&plain, "not a program").unwrap();
        let e = resolve(plain.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.ends_with("not an executable file"), "{e}");
        std::fs::remove_file(plain).unwrap();
    }

    #[test]
    fn a_released_child_runs_and_its_status_comes_back() {
        let mut l = spawn(&["sh".into(), "-c".into(), "exit 7".into()]).unwrap();
        l.release().unwrap();
        assert_eq!(l.wait().unwrap(), 7);
        let mut k = spawn(&["sh".into(), "-c".into(), "kill -TERM $$".into()]).unwrap();
        k.release().unwrap();
        assert_eq!(k.wait().unwrap(), 128 + libc::SIGTERM);
    }

    #[test]
    fn an_unreleased_child_never_runs() {
        let dir = std::env::temp_dir().join(format!("lockscope-launch-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let l = spawn(&["sh".into(), "-c".into(), format!("touch {}", dir.display())]).unwrap();
        drop(l);
        assert!(!dir.exists());
    }
}
