//! output: writes a profile or report where `-o` says, as a root tool must.
//!
//! - A regular file (or a new name) is replaced atomically: the data goes to an unnamed
//!   `O_TMPFILE` in the same directory (no name another user could plant a symlink at), is
//!   synced, linked in under a fresh `O_EXCL` name and renamed over the target. An existing
//!   file keeps its mode; a new one gets 0600 (narrowed by the umask), and belongs to the
//!   invoking user when lockscope runs under sudo.
//! - A character device or FIFO (`/dev/null`, `/dev/stdout`, a pipe someone reads) is written
//!   in place, never replaced. `-` is standard output.
//! - A symbolic link at `-o` is refused: say the real path.
use std::ffi::{CString, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::profile::Profile;

/// Where the bytes go.
enum Sink {
    Stdout,
    /// A device or FIFO, opened now and written in place.
    InPlace(File),
    /// A regular file (existing or new), replaced atomically at commit.
    Replace {
        /// The temporary's name, where the filesystem has no `O_TMPFILE` (first: it is
        /// dropped, and unlinked, while `dir` is still open).
        staged: Option<Staged>,
        dir: OwnedFd,
        name: OsString,
        tmp: File,
    },
}

/// A named temporary, removed unless committed.
struct Staged {
    dir: i32,
    name: CString,
    committed: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            // SAFETY: unlinkat of our own temporary's name in a directory fd still open (the
            // fd is dropped after this, as a later field of the same sink).
            unsafe { libc::unlinkat(self.dir, self.name.as_ptr(), 0) };
        }
    }
}

/// An output reserved before tracing starts, so an unwritable path fails before attach and a
/// crash never leaves a half-written file under the final name.
pub struct PendingOutput {
    /// What is written, for errors: "profile", "report".
    what: &'static str,
    path: PathBuf,
    sink: Sink,
}

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).context("path has a NUL byte")
}

/// The uid and gid of the user who ran `sudo`, when lockscope runs as root through it.
fn sudo_owner() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let uid = std::env::var("SUDO_UID").ok()?.parse().ok()?;
    let gid = std::env::var("SUDO_GID").ok()?.parse().ok()?;
    Some((uid, gid))
}

/// An unnamed file in `dir` (`O_TMPFILE`): nothing to clean up if lockscope dies.
fn unnamed_in(dir: &OwnedFd, mode: u32) -> std::io::Result<File> {
    let dot = c".";
    // SAFETY: openat on a directory fd we own, with a NUL-terminated path; the new fd is ours.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            dot.as_ptr(),
            libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC,
            mode,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

impl PendingOutput {
    pub fn reserve_for(what: &'static str, path: &Path) -> Result<PendingOutput> {
        let fail =
            |why: String| anyhow::anyhow!("cannot write {what} to {}: {why}", path.display());
        if path.as_os_str() == "-" {
            return Ok(PendingOutput {
                what,
                path: path.into(),
                sink: Sink::Stdout,
            });
        }
        let existing = match fs::symlink_metadata(path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(fail(e.to_string())),
        };
        let mode = match &existing {
            Some(m) if m.file_type().is_symlink() => {
                return Err(fail(
                    "it is a symbolic link (give the path it points to)".into(),
                ))
            }
            Some(m) if m.is_dir() => return Err(fail("it is a directory".into())),
            Some(m) if m.file_type().is_char_device() || m.file_type().is_fifo() => {
                // O_NONBLOCK: a FIFO nobody reads fails now (ENXIO) instead of hanging.
                let f = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(path)
                    .map_err(|e| match e.raw_os_error() {
                        Some(libc::ENXIO) => fail("a FIFO with no reader".into()),
                        _ => fail(e.to_string()),
                    })?;
                // SAFETY: fcntl on an fd we own; clears O_NONBLOCK for plain blocking writes.
                unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, 0) };
                return Ok(PendingOutput {
                    what,
                    path: path.into(),
                    sink: Sink::InPlace(f),
                });
            }
            Some(m) if !m.is_file() => {
                return Err(fail("not a regular file, device or FIFO".into()))
            }
            Some(m) => m.mode() & 0o7777,
            None => 0o600,
        };
        let dir_path = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| fail("no file name".into()))?
            .to_os_string();
        let dir_c = cstr(&dir_path)?;
        // SAFETY: open with a NUL-terminated path; the fd is ours.
        let dfd = unsafe {
            libc::open(
                dir_c.as_ptr(),
                libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if dfd < 0 {
            return Err(fail(std::io::Error::last_os_error().to_string()));
        }
        // SAFETY: a fresh fd owned by nothing else.
        let dir = unsafe { OwnedFd::from_raw_fd(dfd) };
        let (tmp, staged) = match unnamed_in(&dir, 0o600) {
            Ok(f) => (f, None),
            // A filesystem without O_TMPFILE: a fresh name, created exclusively, never
            // through a symlink, removed if lockscope stops before committing.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                let (f, n) = named_in(&dir, &name).map_err(|e| fail(e.to_string()))?;
                (f, Some(n))
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        // The umask narrows the mode of a new file, as for any file a program creates; an
        // existing file keeps the mode it has.
        let mode = if existing.is_some() {
            mode
        } else {
            // SAFETY: umask has no preconditions; set back at once.
            let mask = unsafe {
                let m = libc::umask(0o077);
                libc::umask(m);
                m
            };
            mode & !mask
        };
        // SAFETY: fchmod on an fd we own.
        unsafe { libc::fchmod(tmp.as_raw_fd(), mode) };
        let owner = match &existing {
            Some(m) => Some((m.uid(), m.gid())),
            None => sudo_owner(),
        };
        if let Some((uid, gid)) = owner {
            // SAFETY: fchown on an fd we own; failing (not root) leaves lockscope the owner.
            unsafe { libc::fchown(tmp.as_raw_fd(), uid, gid) };
        }
        Ok(PendingOutput {
            what,
            path: path.into(),
            sink: Sink::Replace {
                staged: staged.map(|n| Staged {
                    dir: dir.as_raw_fd(),
                    name: n,
                    committed: false,
                }),
                dir,
                name,
                tmp,
            },
        })
    }

    pub fn commit(self, profile: &Profile) -> Result<()> {
        self.commit_with(|w| Ok(serde_json::to_writer(w, profile)?))
    }

    /// Writes whatever `write` produces (a rendered format) and moves it into place.
    pub fn commit_with(self, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
        let context = || format!("cannot write {} to {}", self.what, self.path.display());
        match self.sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                write(&mut out)
                    .and_then(|()| Ok(out.flush()?))
                    .with_context(context)
            }
            Sink::InPlace(f) => {
                let mut w = BufWriter::new(f);
                write(&mut w)
                    .and_then(|()| Ok(w.flush()?))
                    .with_context(context)
            }
            Sink::Replace {
                dir,
                name,
                tmp,
                mut staged,
            } => {
                let mut w = BufWriter::new(&tmp);
                write(&mut w)
                    .and_then(|()| Ok(w.flush()?))
                    .with_context(context)?;
                drop(w);
                tmp.sync_all().with_context(context)?;
                let placed = match &mut staged {
                    Some(st) => rename_in(&dir, &st.name, &name).map(|()| st.committed = true),
                    None => link_into_place(&dir, &name, &tmp),
                };
                // The staged name (if any) goes before the directory fd it refers to.
                drop(staged);
                drop(dir);
                placed.with_context(context)
            }
        }
    }

    /// Drops the reservation (nothing recorded, nothing to keep): an unnamed file vanishes.
    pub fn abandon(self) {}
}

/// A writer that refuses to write more than `left` bytes: a report's size stays proportional
/// to the profile it renders, however the profile was crafted.
pub struct Limited<W> {
    pub inner: W,
    pub left: u64,
}

impl<W: Write> Write for Limited<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(std::io::Error::other(
                "the report would be more than 64 times the size of its profile: narrow it with --top or --min-wait",
            ));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Creates `.NAME.lockscope-PID-N` exclusively (never through a symlink) in `dir`.
fn named_in(dir: &OwnedFd, name: &OsString) -> std::io::Result<(File, CString)> {
    for attempt in 0..16u32 {
        let staged = staged_name(name, attempt)?;
        // SAFETY: openat on a directory fd we own, NUL-terminated name; the fd is ours.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                staged.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd >= 0 {
            // SAFETY: a fresh fd owned by nothing else.
            return Ok((unsafe { File::from_raw_fd(fd) }, staged));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    Err(std::io::Error::other("no free temporary name"))
}

fn staged_name(name: &OsString, attempt: u32) -> std::io::Result<CString> {
    CString::new(
        [
            b".",
            name.as_bytes(),
            format!(".lockscope-{}-{attempt}", std::process::id()).as_bytes(),
        ]
        .concat(),
    )
    .map_err(std::io::Error::other)
}

fn rename_in(dir: &OwnedFd, from: &CString, to: &OsString) -> Result<()> {
    let target = CString::new(to.as_bytes())?;
    // SAFETY: renameat within one directory fd we own, NUL-terminated names.
    let rc = unsafe {
        libc::renameat(
            dir.as_raw_fd(),
            from.as_ptr(),
            dir.as_raw_fd(),
            target.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// Gives the unnamed file a fresh name (`O_EXCL` semantics: linkat never replaces), then
/// renames it over `name`.
fn link_into_place(dir: &OwnedFd, name: &OsString, tmp: &File) -> Result<()> {
    let from = CString::new(format!("/proc/self/fd/{}", tmp.as_raw_fd()))?;
    for attempt in 0..16u32 {
        let staged = staged_name(name, attempt)?;
        // SAFETY: linkat with NUL-terminated paths and fds we own; AT_SYMLINK_FOLLOW resolves
        // the /proc magic link to the open file itself.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                dir.as_raw_fd(),
                staged.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EEXIST) {
                continue;
            }
            return Err(e.into());
        }
        if let Err(e) = rename_in(dir, &staged, name) {
            // SAFETY: unlinkat of the name we just created, in our directory fd.
            unsafe { libc::unlinkat(dir.as_raw_fd(), staged.as_ptr(), 0) };
            return Err(e);
        }
        return Ok(());
    }
    bail!("no free temporary name")
}

#[cfg(test)]
#[path = "output_tests.rs"]
mod tests;
