//! A throwaway MariaDB server for the root tests: a temp datadir, no TCP listener, a unix
//! socket in that dir, the synch instruments of performance_schema on; sysbench against it.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{text, Workload, REQUIRE_ROOT};

/// performance_schema's summary: instrument name → (waits, wait time in ns).
pub type Summary = BTreeMap<String, (u64, u64)>;

pub const MARIADBD: &str = "/usr/sbin/mariadbd";

/// A directory removed when dropped (after the processes in the same struct are killed).
pub struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running mariadbd; fields drop in order: the server is killed, then its dir removed.
pub struct Server {
    pub proc: Workload,
    pub sock: PathBuf,
    pub dir: Scratch,
}

/// True if every tool is installed; otherwise skips, or fails under `LOCKSCOPE_REQUIRE_ROOT`.
pub fn have_tools() -> bool {
    let missing: Vec<&str> = [
        (MARIADBD, "mariadb-server"),
        ("/usr/bin/mariadb-install-db", "mariadb-server"),
        ("/usr/bin/mariadb", "mariadb-client"),
        ("/usr/bin/sysbench", "sysbench"),
    ]
    .iter()
    .filter(|(bin, _)| !Path::new(bin).exists())
    .map(|(_, pkg)| *pkg)
    .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("MariaDB test tools missing (apt-get install {missing:?})");
    assert!(std::env::var_os(REQUIRE_ROOT).is_none(), "{why}");
    eprintln!("skipping: {why}");
    false
}

/// One statement through the client on the socket; its tab-separated output.
pub fn sql(sock: &Path, query: &str) -> String {
    let out = Command::new("mariadb")
        .arg("--no-defaults")
        .arg(format!("--socket={}", sock.display()))
        .args(["-uroot", "-N", "-B", "-e", query])
        .output()
        .expect("run the mariadb client");
    assert!(out.status.success(), "{query}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// A fresh datadir and a mariadbd on it with the synch instruments on, ready for queries.
pub fn start_server() -> Server {
    let dir =
        Scratch(std::env::temp_dir().join(format!("lockscope-it-mariadb-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let data = dir.0.join("data");
    let install = Command::new("mariadb-install-db")
        .args([
            "--no-defaults",
            "--user=root",
            "--auth-root-authentication-method=normal",
        ])
        .arg(format!("--datadir={}", data.display()))
        .output()
        .expect("run mariadb-install-db");
    assert!(
        install.status.success(),
        "mariadb-install-db: {}",
        text(&install.stderr)
    );
    let sock = dir.0.join("s.sock");
    let child = Command::new(MARIADBD)
        .args([
            "--no-defaults",
            "--user=root",
            "--skip-grant-tables",
            "--port=3307",
        ])
        .args(["--skip-networking", "--innodb-buffer-pool-size=256M"])
        .args([
            "--performance-schema=ON",
            "--performance-schema-instrument=wait/synch/%=ON",
        ])
        .arg("--performance-schema-consumer-events-waits-current=ON")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", sock.display()))
        .arg(format!("--pid-file={}", dir.0.join("m.pid").display()))
        .arg(format!("--log-error={}", dir.0.join("err.log").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mariadbd");
    let mut server = Server {
        proc: Workload(child),
        sock,
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", server.sock.display()))
            .args(["-uroot", "-e", "SELECT 1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if up {
            return server;
        }
        let exited = server.proc.0.try_wait().unwrap();
        if exited.is_some() || Instant::now() > deadline {
            let log = std::fs::read_to_string(server.dir.0.join("err.log")).unwrap_or_default();
            panic!("mariadbd did not come up ({exited:?}):\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn sysbench(sock: &Path, rest: &[&str]) -> Command {
    let mut c = Command::new("sysbench");
    c.args(["oltp_read_write", "--db-driver=mysql", "--mysql-user=root"])
        .arg(format!("--mysql-socket={}", sock.display()))
        .args(["--tables=4", "--table-size=10000"])
        .args(rest);
    c
}

/// `wait/synch/%` rows of the global summary: instrument → (waits, wait time in ns).
pub fn synch_waits(sock: &Path) -> Summary {
    sql(
        sock,
        "SELECT EVENT_NAME, COUNT_STAR, SUM_TIMER_WAIT FROM \
         performance_schema.events_waits_summary_global_by_event_name \
         WHERE EVENT_NAME LIKE 'wait/synch/%' AND COUNT_STAR > 0",
    )
    .lines()
    .filter_map(|l| {
        let mut f = l.split('\t');
        let name = f.next()?.to_string();
        let count = f.next()?.parse().ok()?;
        let ps: u64 = f.next()?.parse().ok()?;
        Some((name, (count, ps / 1000)))
    })
    .collect()
}

/// `after - before` per instrument: (waits, ns).
pub fn delta(before: &Summary, after: &Summary) -> Summary {
    after
        .iter()
        .map(|(k, &(c, t))| {
            let (c0, t0) = before.get(k).copied().unwrap_or_default();
            (k.clone(), (c.saturating_sub(c0), t.saturating_sub(t0)))
        })
        .collect()
}
