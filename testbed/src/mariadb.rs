//! A throwaway MariaDB server: a fresh datadir under a given directory, no TCP listener, a unix
//! socket in that directory, no grant tables; sysbench `oltp_read_write` commands against it.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether performance_schema's synch instruments are on (a reference for the tests; off for
/// benchmarks, where they would cost the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instruments {
    Synch,
    Off,
}

/// A running mariadbd. Stopping it is the caller's (tests kill it, benchmarks send SIGTERM).
pub struct Server {
    pub child: Child,
    pub sock: PathBuf,
}

/// `mariadb --no-defaults --socket=SOCK -uroot ARGS…`.
pub fn client(sock: &Path) -> Command {
    let mut c = Command::new("mariadb");
    c.arg("--no-defaults")
        .arg(format!("--socket={}", sock.display()))
        .arg("-uroot");
    c
}

/// `sysbench oltp_read_write` on the server's socket (4 tables of 10,000 rows), then `rest`.
pub fn sysbench(sock: &Path, rest: &[&str]) -> Command {
    let mut c = Command::new("sysbench");
    c.args(["oltp_read_write", "--db-driver=mysql", "--mysql-user=root"])
        .arg(format!("--mysql-socket={}", sock.display()))
        .args(["--tables=4", "--table-size=10000"])
        .args(rest);
    c
}

/// Installs a datadir in `dir` (which must exist and be empty of a previous server), starts
/// mariadbd on it and returns once it answers a query, at most `limit` later. Its log is
/// `dir/err.log`.
pub fn start(dir: &Path, instruments: Instruments, limit: Duration) -> Result<Server, String> {
    let data = dir.join("data");
    let install = Command::new("mariadb-install-db")
        .args([
            "--no-defaults",
            "--user=root",
            "--auth-root-authentication-method=normal",
        ])
        .arg(format!("--datadir={}", data.display()))
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("mariadb-install-db (apt-get install mariadb-server): {e}"))?;
    if !install.status.success() {
        let err = String::from_utf8_lossy(&install.stderr);
        return Err(format!(
            "mariadb-install-db failed ({}): {}",
            install.status,
            err.lines().last().unwrap_or("")
        ));
    }
    let sock = dir.join("s.sock");
    let mut cmd = Command::new("mariadbd");
    cmd.args(["--no-defaults", "--user=root", "--skip-grant-tables"])
        .args(["--skip-networking", "--innodb-buffer-pool-size=256M"]);
    if instruments == Instruments::Synch {
        cmd.args([
            "--performance-schema=ON",
            "--performance-schema-instrument=wait/synch/%=ON",
            "--performance-schema-consumer-events-waits-current=ON",
        ]);
    }
    let child = cmd
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", sock.display()))
        .arg(format!("--pid-file={}", dir.join("m.pid").display()))
        .arg(format!("--log-error={}", dir.join("err.log").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting mariadbd: {e}"))?;
    let mut server = Server { child, sock };
    let t0 = Instant::now();
    loop {
        let up = client(&server.sock)
            .args(["-e", "SELECT 1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if up {
            return Ok(server);
        }
        let exited = server.child.try_wait().ok().flatten();
        if exited.is_some() || t0.elapsed() > limit {
            let _ = server.child.kill();
            let _ = server.child.wait();
            return Err(format!(
                "mariadbd did not come up ({exited:?}): see its log {}",
                dir.join("err.log").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
