//! A throwaway MariaDB server for the root tests: a temp datadir, no TCP listener, a unix
//! socket in that dir, the synch instruments of performance_schema on; sysbench against it.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use testbed::mariadb::Instruments;

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
    let out = testbed::mariadb::client(sock)
        .args(["-N", "-B", "-e", query])
        .output()
        .expect("run the mariadb client");
    assert!(out.status.success(), "{query}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// A fresh datadir and a mariadbd on it with the synch instruments on, ready for queries
/// (started by the `testbed` crate, as the benchmarks start theirs).
pub fn start_server() -> Server {
    let dir =
        Scratch(std::env::temp_dir().join(format!("lockscope-it-mariadb-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let server = testbed::mariadb::start(&dir.0, Instruments::Synch, Duration::from_secs(30))
        .unwrap_or_else(|e| {
            let log = std::fs::read_to_string(dir.0.join("err.log")).unwrap_or_default();
            panic!("{e}\n{log}")
        });
    Server {
        proc: Workload(server.child),
        sock: server.sock,
        dir,
    }
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
