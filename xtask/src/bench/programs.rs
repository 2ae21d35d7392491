//! programs: the real programs `cargo xtask bench` measures beside its own storms, each by its
//! own throughput figure — RocksDB's `db_bench` readrandom (ops/s), `stress-ng --mutex 4`
//! (bogo ops/s, real time) and MariaDB under sysbench oltp_read_write (TPS).
//!
//! Each run's tracer attaches before the measured interval begins:
//! - db_bench runs readrandom twice in one process; the tracer attaches by pid during the first
//!   (the warm-up, at least `START_DELAY_S` long) and the second is the measurement;
//! - MariaDB is started (and sysbench's tables prepared) once; each run attaches to the server by
//!   pid, then runs sysbench;
//! - stress-ng's workers are processes forked two levels below the command, so no pid exists
//!   to attach to beforehand: lockscope launches it (`record --follow-forks -- stress-ng …`,
//!   each child unwound as its executable needs), bpftrace follows the workers' task name.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use testbed::mariadb::Instruments;

use super::tracers::{start_tracer, start_tracer_on, wait_rusage, Scope, Tracer};
use super::{finish, read_lockscope, Sample, Target, START_DELAY_S};

/// Rows of keys db_bench fills once and reads.
const DB_KEYS: &str = "300000";
/// stress-ng's mutex workers' task name (each a process with its own threads).
const STRESS_COMM: &str = "stress-ng-mutex";

/// A directory removed when dropped.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    fn new(tmp: &Path, what: &str) -> Result<Self> {
        let dir = tmp.join(format!("lockscope-bench-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A real program measured as one row of the table.
pub(crate) enum Program {
    DbBench(Scratch),
    StressNg,
    Mariadb(Mariadb),
}

/// Runs a command quietly; fails with its stderr's last line.
fn quiet(c: &mut Command) -> Result<()> {
    let out = c.stdout(Stdio::null()).output()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "{:?} failed ({}): {}",
            c.get_program(),
            out.status,
            err.lines().last().unwrap_or("")
        );
    }
    Ok(())
}

/// The whole seconds a program runs for a run of `secs`, at least `min`.
fn whole(secs: f64, min: f64) -> u64 {
    secs.max(min).ceil() as u64
}

impl Program {
    /// db_bench's database, filled once (fillseq) in a temp dir.
    pub(crate) fn db_bench(tmp: &Path) -> Result<Program> {
        let dir = Scratch::new(tmp, "rocksdb")?;
        quiet(Command::new("db_bench").args([
            "--benchmarks=fillseq",
            &format!("--num={DB_KEYS}"),
            &format!("--db={}", dir.0.display()),
        ]))
        .context("db_bench fillseq (apt-get install rocksdb-tools)")?;
        Ok(Program::DbBench(dir))
    }

    /// Seconds the program does its work in one run of `secs` (for per-second rates).
    pub(crate) fn active_s(&self, secs: f64) -> f64 {
        match self {
            Program::DbBench(_) => 2.0 * whole(secs, START_DELAY_S) as f64,
            Program::StressNg => whole(secs, 1.0) as f64,
            Program::Mariadb(_) => whole(secs, MARIADB_MIN_S) as f64,
        }
    }

    /// One run under `tracer`; None where the tracer cannot run on the program.
    pub(crate) fn run(
        &self,
        tracer: Tracer,
        lockscope: &Path,
        tmp: &Path,
        secs: f64,
    ) -> Result<Option<Sample>> {
        let profile = tmp.join("bench-profile.json");
        let _ = std::fs::remove_file(&profile);
        match self {
            Program::DbBench(dir) => db_bench(&dir.0, tracer, lockscope, &profile, secs).map(Some),
            Program::StressNg => stress_ng(tracer, lockscope, tmp, &profile, secs),
            Program::Mariadb(m) => m.run(tracer, lockscope, &profile, secs).map(Some),
        }
    }
}

/// readrandom twice: the tracer attaches during the first, the second is measured.
fn db_bench(
    dir: &Path,
    tracer: Tracer,
    lockscope: &Path,
    profile: &Path,
    secs: f64,
) -> Result<Sample> {
    let t0 = Instant::now();
    let child = Command::new("db_bench")
        .args([
            "--use_existing_db=1",
            "--benchmarks=readrandom,readrandom",
            "--threads=8",
            "--cache_size=8388608",
            "--cache_numshardbits=0",
            &format!("--num={DB_KEYS}"),
            &format!("--duration={}", whole(secs, START_DELAY_S)),
            &format!("--db={}", dir.display()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting db_bench (apt-get install rocksdb-tools)")?;
    let traced = attach(tracer, child.id(), lockscope, profile)?;
    if t0.elapsed().as_secs_f64() > START_DELAY_S {
        bail!(
            "{} attached after db_bench's warm-up had ended",
            tracer.label()
        );
    }
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "readrandom   :       3.254 micros/op 307253 ops/sec 3.000 seconds …"
    let rates: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("readrandom"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let i = f.iter().position(|w| *w == "ops/sec")?;
            f.get(i.checked_sub(1)?)?.parse().ok()
        })
        .collect();
    if rates.len() != 2 {
        bail!("db_bench printed {} readrandom results, not 2", rates.len());
    }
    finish(tracer, traced, profile, rates[1], Target::Exited)
}

/// Starts `tracer` on `pid` (nothing for untraced runs).
fn attach(
    tracer: Tracer,
    pid: u32,
    lockscope: &Path,
    profile: &Path,
) -> Result<Option<(super::tracers::Running, Instant)>> {
    if tracer == Tracer::None {
        return Ok(None);
    }
    Ok(Some((
        start_tracer(tracer, pid, lockscope, profile)?,
        Instant::now(),
    )))
}

fn stress_ng(
    tracer: Tracer,
    lockscope: &Path,
    tmp: &Path,
    profile: &Path,
    secs: f64,
) -> Result<Option<Sample>> {
    let yaml = tmp.join("lockscope-bench-stress-ng.yaml");
    let _ = std::fs::remove_file(&yaml);
    let t = format!("{}s", whole(secs, 1.0));
    let args = ["--mutex", "4", "--timeout", &t, "--metrics-brief", "--yaml"];
    let stress = || -> Command {
        let mut c = Command::new("stress-ng");
        c.args(args).arg(&yaml);
        c
    };
    let mut lockscope_run = None;
    let mut traced = None;
    match tracer {
        Tracer::None => quiet(&mut stress())?,
        t if t.is_lockscope() => {
            let started = Instant::now();
            let child = Command::new(lockscope)
                .args(["record", "--quiet", "--follow-forks", "-o"])
                .arg(profile)
                .args(t.lockscope_flags())
                .arg("--")
                .arg("stress-ng")
                .args(args)
                .arg(&yaml)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let (status, usage) = wait_rusage(&child)?;
            if status != 0 {
                bail!("lockscope record -- stress-ng failed (wait status {status})");
            }
            let wall = started.elapsed().as_secs_f64();
            let mut run = read_lockscope(profile, &usage, wall)?;
            // wait4's usage includes the command lockscope launched and reaped.
            run.cpu_s = f64::NAN;
            lockscope_run = Some(run);
        }
        t => {
            let r = start_tracer_on(t, Scope::Comm(STRESS_COMM), lockscope, profile)?;
            traced = Some((r, Instant::now()));
            quiet(&mut stress())?;
        }
    }
    let text = std::fs::read_to_string(&yaml).context("stress-ng wrote no --yaml metrics")?;
    let _ = std::fs::remove_file(&yaml);
    let rate: f64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("bogo-ops-per-second-real-time:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no bogo-ops-per-second-real-time in stress-ng's metrics")?;
    let mut sample = finish(tracer, traced, profile, rate, Target::Exited)?;
    if lockscope_run.is_some() {
        sample.lockscope = lockscope_run;
    }
    Ok(Some(sample))
}

/// sysbench's run length at least (TPS over shorter runs swings too much).
const MARIADB_MIN_S: f64 = 5.0;

/// A private mariadbd on a temp datadir, reachable only by its unix socket, with sysbench's
/// tables prepared. Fields drop in order: the server is stopped, then its dir removed.
pub(crate) struct Mariadb {
    server: Child,
    sock: PathBuf,
    _dir: Scratch,
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        // SAFETY: signalling our own child; mariadbd shuts down cleanly on SIGTERM.
        unsafe { libc::kill(self.server.id() as i32, libc::SIGTERM) };
        let _ = self.server.wait();
    }
}

impl Mariadb {
    pub(crate) fn start(tmp: &Path) -> Result<Program> {
        let dir = Scratch::new(tmp, "mariadb")?;
        let server = testbed::mariadb::start(&dir.0, Instruments::Off, Duration::from_secs(60))
            .map_err(|e| anyhow!("{e} (apt-get install mariadb-server mariadb-client)"))?;
        let m = Mariadb {
            server: server.child,
            sock: server.sock,
            _dir: dir,
        };
        m.sql("CREATE DATABASE sbtest")?;
        quiet(&mut m.sysbench(&["prepare"]))
            .context("sysbench prepare (apt-get install sysbench)")?;
        Ok(Program::Mariadb(m))
    }

    fn sql(&self, query: &str) -> Result<()> {
        quiet(testbed::mariadb::client(&self.sock).args(["-e", query]))
    }

    fn sysbench(&self, rest: &[&str]) -> Command {
        testbed::mariadb::sysbench(&self.sock, rest)
    }

    /// sysbench against the running server, the tracer attached to it first: TPS.
    fn run(&self, tracer: Tracer, lockscope: &Path, profile: &Path, secs: f64) -> Result<Sample> {
        let traced = attach(tracer, self.server.id(), lockscope, profile)?;
        let time = format!("--time={}", whole(secs, MARIADB_MIN_S));
        let out = self
            .sysbench(&["run", "--threads=16", &time])
            .stderr(Stdio::null())
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "    transactions:                        1234   (246.50 per sec.)"
        let tps: f64 = text
            .lines()
            .find(|l| l.trim_start().starts_with("transactions:"))
            .and_then(|l| l.split('(').nth(1)?.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("sysbench printed no TPS ({})", out.status))?;
        finish(tracer, traced, profile, tps, Target::Running)
    }
}
