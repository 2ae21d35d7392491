//! listen: where the agent's HTTP server accepts connections — TCP, or a unix socket created
//! here with mode 0600 — and the connection cap: at most [`MAX_CONNECTIONS`] open at once;
//! past it, the oldest connection not inside a request (one idling, or dribbling its headers)
//! is closed for the new one, so slow or idle clients cannot starve `/healthz`.
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::AbortHandle;

use crate::commands::Listen;

/// Connections served at once; the unit's `LimitNOFILE` leaves room above it.
pub const MAX_CONNECTIONS: usize = 256;

/// A bound listener.
pub enum Listener {
    Tcp(TcpListener),
    /// The socket, and its path with the inode created here (unlinked on drop if still ours).
    Unix(UnixListener, PathBuf, u64),
}

/// An accepted connection.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + 'static> Stream for T {}

impl Listener {
    pub async fn bind(listen: &Listen) -> Result<Listener> {
        match listen {
            Listen::Tcp(addr) => Ok(Listener::Tcp(TcpListener::bind(addr).await.with_context(
                || format!("listening on {addr} (is another agent running there?)"),
            )?)),
            Listen::Unix(path) => bind_unix(path),
        }
    }

    /// Where it listens, for the log line.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "tcp".into(), |a| format!("http://{a}")),
            Listener::Unix(_, path, _) => format!("unix:{}", path.display()),
        }
    }

    pub async fn accept(&self) -> std::io::Result<Box<dyn Stream>> {
        Ok(match self {
            Listener::Tcp(l) => Box::new(l.accept().await?.0),
            Listener::Unix(l, ..) => Box::new(l.accept().await?.0),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Unlinks the socket only if the path still names the one created here.
        if let Listener::Unix(_, path, ino) = self {
            if std::fs::symlink_metadata(&*path).is_ok_and(|m| m.ino() == *ino) {
                let _ = std::fs::remove_file(&*path);
            }
        }
    }
}

/// Binds a unix socket at `path`, which must not exist (bind(2) never replaces a file or
/// follows a symlink there), in a directory only root may write to; the socket is created
/// with mode 0600 (the umask is narrowed around the bind, so it is never more open).
fn bind_unix(path: &Path) -> Result<Listener> {
    let shown = path.display();
    let dir = path.parent().unwrap_or(Path::new("/"));
    let d =
        std::fs::metadata(dir).with_context(|| format!("--listen unix:{shown}: its directory"))?;
    if d.uid() != 0 || d.mode() & 0o022 != 0 {
        bail!("--listen unix:{shown}: {} must be owned by root and writable by root only (e.g. /run/lockscope)", dir.display());
    }
    if let Ok(m) = std::fs::symlink_metadata(path) {
        let what = if m.file_type().is_socket() {
            "a socket (a previous agent's? remove it)"
        } else {
            "a file that is not this agent's"
        };
        bail!("--listen unix:{shown}: already exists, {what}");
    }
    // SAFETY: umask only swaps the process's file mode mask; restored right after the bind.
    let old = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let std_listener = bound.with_context(|| format!("--listen unix:{shown}"))?;
    std_listener.set_nonblocking(true)?;
    let ino = std::fs::symlink_metadata(path)?.ino();
    Ok(Listener::Unix(
        UnixListener::from_std(std_listener)?,
        path.to_path_buf(),
        ino,
    ))
}

/// One open connection: whether it is inside a request, and how to close it.
type Open = (Rc<Cell<bool>>, AbortHandle);

/// The open connections, oldest first.
#[derive(Default)]
pub struct Conns {
    next: Cell<u64>,
    open: RefCell<BTreeMap<u64, Open>>,
}

/// Marks its connection busy while a request is being answered.
pub struct Busy(Rc<Cell<bool>>);

impl Busy {
    pub fn enter(flag: &Rc<Cell<bool>>) -> Busy {
        flag.set(true);
        Busy(flag.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// Removes its connection from [`Conns`] when the connection's task ends or is aborted.
pub struct Registered(Rc<Conns>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut open) = self.0.open.try_borrow_mut() {
            open.remove(&self.1);
        }
    }
}

impl Conns {
    /// Makes room for one more connection: closes the oldest one not inside a request when
    /// the cap is reached. False when every open connection is busy (refuse the new one).
    pub fn make_room(&self) -> bool {
        let mut open = self.open.borrow_mut();
        if open.len() < MAX_CONNECTIONS {
            return true;
        }
        let idle = open
            .iter()
            .find(|(_, (busy, _))| !busy.get())
            .map(|(&id, _)| id);
        match idle {
            Some(id) => {
                if let Some((_, abort)) = open.remove(&id) {
                    abort.abort();
                }
                true
            }
            None => false,
        }
    }

    /// A new connection's id, flag and guard; call [`Conns::started`] with its task.
    pub fn open(self: &Rc<Self>) -> (u64, Rc<Cell<bool>>, Registered) {
        let id = self.next.get();
        self.next.set(id + 1);
        (id, Rc::new(Cell::new(false)), Registered(self.clone(), id))
    }

    pub fn started(&self, id: u64, busy: Rc<Cell<bool>>, abort: AbortHandle) {
        self.open.borrow_mut().insert(id, (busy, abort));
    }
}

/// How long a client may take to send a request's headers (from connecting, or from the end
/// of its previous request) before the connection is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
