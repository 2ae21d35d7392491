//! Root integration tests of symbol sources for stripped programs: the debug file found by
//! build id, by `.gnu_debuglink`, or served by a real local debuginfod; a stripped Rust release
//! build; a stripped Go build named from `.gopclntab`; and what the report says when nothing
//! names a frame.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lockscope_profile::profile::Profile;

use common::typed::hottest_names;
use common::*;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = tmp(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Splits `bin`'s symbols and debug info into `bin.debug` (`objcopy --only-keep-debug`), then
/// strips `bin` (`strip -s`), as distributions ship programs. Returns the debug file.
fn split_and_strip(bin: &Path) -> PathBuf {
    let debug = bin.with_extension("debug");
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(bin)
        .arg(&debug));
    run(Command::new("strip").arg("-s").arg(bin));
    let sections = run(Command::new("readelf").arg("-S").arg(bin));
    assert!(!sections.contains(".symtab"), "strip left .symtab");
    debug
}

/// The GNU build id of an ELF file, in hex.
fn build_id(bin: &Path) -> String {
    run(Command::new("readelf").arg("-n").arg(bin))
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .expect("a build id note")
        .trim()
        .to_string()
}

/// Puts `debug` where a debug root keeps it by build id: `ROOT/.build-id/xx/rest.debug`.
fn install_by_build_id(root: &Path, id: &str, debug: &Path) {
    let dir = root.join(".build-id").join(&id[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(debug, dir.join(format!("{}.debug", &id[2..]))).unwrap();
}

/// `workloads/c/pthread_contend.c` built `-O2 -g -fomit-frame-pointer`, then split and
/// stripped. Returns (binary, debug file).
fn stripped_c(dir: &Path) -> (PathBuf, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads/c/pthread_contend.c");
    let bin = dir.join("pthread_contend");
    run(Command::new("gcc")
        .args(["-O2", "-g", "-fomit-frame-pointer", "-pthread", "-o"])
        .arg(&bin)
        .arg(&src));
    let debug = split_and_strip(&bin);
    (bin, debug)
}

const C_ARGS: [&str; 2] = ["4", "1"];
/// DWARF unwinding, explicitly: these programs have no frame pointers.
const DWARF: [&str; 2] = ["--unwind", "dwarf"];

/// lockscope with its debug root set to `root` (so the machine's /usr/lib/debug is not used
/// for the program under test) and no debuginfod server.
fn lockscope_with_root(root: &Path) -> Command {
    let mut cmd = lockscope();
    cmd.env("LOCKSCOPE_DEBUG_ROOT", root)
        .env_remove("DEBUGINFOD_URLS")
        .env("NO_COLOR", "1");
    cmd
}

/// The C program's lock site is named and its stacks reach the thread entry.
fn assert_c_named(p: &Profile, out: &str) {
    assert_eq!(blamed(out), "contended_site", "{out}");
    let names = hottest_names(p);
    for want in ["contended_site", "worker", "start_thread"] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing: {names:#?}"
        );
    }
    assert!(
        !out.contains("unnamed in pthread_contend"),
        "program frames left unnamed: {out}"
    );
}

#[test]
fn a_debug_file_by_build_id_names_a_stripped_program_and_its_absence_is_reported() {
    if !can_trace() {
        return;
    }
    let dir = scratch("by-build-id");
    let (bin, debug) = stripped_c(&dir);
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let id = build_id(&bin);

    // Without the debug file: the lock site is the program's address, never a named
    // function further out, and the header says what would name it.
    let (_, out) = launch_with(lockscope_with_root(&root), "c-none", &bin, &C_ARGS, &DWARF);
    let p = launched("c-none");
    let site = blamed(&out);
    assert!(site.starts_with("pthread_contend+0x"), "{out}");
    let want = format!(
        "frames unnamed in pthread_contend: put its debug file at {}/.build-id/{}/{}.debug (or set DEBUGINFOD_URLS)",
        root.display(),
        &id[..2],
        &id[2..]
    );
    assert!(out.contains(&want), "want '{want}' in: {out}");
    let unnamed = &p.meta.unnamed[0];
    assert!(unnamed.module.ends_with("/pthread_contend"), "{unnamed:?}");
    assert!(unnamed.frames > 0, "{unnamed:?}");
    // Every view names the same unnamed site: --by function, and "mostly at" by category.
    let profile = tmp("unused").with_file_name("c-none.json");
    let by_function = run(lockscope()
        .arg("report")
        .arg(&profile)
        .args(["--by", "function"]));
    // The first row under the column header (a header line can start with "1 " too).
    let first_row = by_function
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("#  "))
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_default();
    assert!(
        first_row.ends_with(&site),
        "want the ▶ site {site} first in:\n{by_function}\nrecorded as:\n{out}"
    );
    let by_category = run(lockscope()
        .arg("report")
        .arg(&profile)
        .args(["--by", "category"]));
    assert!(
        by_category.contains(&format!("mostly at {site}")),
        "{by_category}"
    );
    let folded = run(lockscope()
        .arg("report")
        .arg(&profile)
        .args(["--format", "folded"]));
    assert!(folded.contains(&format!(";{site};")), "{folded}");
    // `report` of the saved profile repeats the header line.
    let table = run(lockscope().arg("report").arg(&profile));
    assert!(table.contains(&want), "{table}");

    // With it under the debug root by build id: named, down to start_thread.
    install_by_build_id(&root, &id, &debug);
    let (_, out) = launch_with(
        lockscope_with_root(&root),
        "c-build-id",
        &bin,
        &C_ARGS,
        &DWARF,
    );
    let p = launched("c-build-id");
    assert_c_named(&p, &out);
}

#[test]
fn a_gnu_debuglink_beside_the_program_names_it() {
    if !can_trace() {
        return;
    }
    let dir = scratch("debuglink");
    let (bin, debug) = stripped_c(&dir);
    // The link names the debug file and carries its CRC; the file sits beside the program.
    run(Command::new("objcopy")
        .arg(format!("--add-gnu-debuglink={}", debug.display()))
        .arg(&bin));
    let empty_root = dir.join("root");
    std::fs::create_dir_all(&empty_root).unwrap();
    let (_, out) = launch_with(
        lockscope_with_root(&empty_root),
        "c-debuglink",
        &bin,
        &C_ARGS,
        &DWARF,
    );
    let p = launched("c-debuglink");
    assert_c_named(&p, &out);
}

/// A real debuginfod (`debuginfod -F DIR`) in a network namespace of its own, so it listens on
/// nothing but that namespace's loopback (0.188 has no option to bind one address).
struct Debuginfod(Child);

const DEBUGINFOD_PORT: u16 = 8002;

impl Debuginfod {
    fn start(dir: &Path) -> Debuginfod {
        let script = format!(
            "ip link set lo up && exec debuginfod -F {} -p {DEBUGINFOD_PORT} -d {} -t 0 -g 0",
            dir.join("srv").display(),
            dir.join("debuginfod.sqlite").display()
        );
        let child = Command::new("unshare")
            .args(["--net", "--", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare and debuginfod (cargo xtask setup installs debuginfod)");
        Debuginfod(child)
    }

    /// A command run inside the server's network namespace.
    fn inside(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/proc/{}/ns/net", self.0.id()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Waits until the server has indexed `id` and serves it (the first scan takes a moment).
    fn wait_for(&mut self, id: &str) {
        let probe = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{DEBUGINFOD_PORT} && printf 'GET /buildid/{id}/debuginfo HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3"
        );
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                panic!("debuginfod exited: {status}");
            }
            let out = self.inside("bash").args(["-c", &probe]).output().unwrap();
            if text(&out.stdout).contains(" 200 ") {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "debuginfod never served {id}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Debuginfod {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_local_debuginfod_serves_the_debug_file() {
    if !can_trace() {
        return;
    }
    let dir = scratch("debuginfod");
    let (bin, debug) = stripped_c(&dir);
    std::fs::create_dir_all(dir.join("srv")).unwrap();
    std::fs::copy(&debug, dir.join("srv/pthread_contend.debug")).unwrap();
    let id = build_id(&bin);
    let mut server = Debuginfod::start(&dir);
    server.wait_for(&id);
    // From outside its namespace the server cannot be reached at all.
    let outside = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], DEBUGINFOD_PORT).into(),
        Duration::from_millis(500),
    );
    assert!(
        outside.is_err(),
        "debuginfod is reachable outside its namespace"
    );

    let empty_root = dir.join("root");
    std::fs::create_dir_all(&empty_root).unwrap();
    let cache = dir.join("cache");
    let mut cmd = server.inside(env!("CARGO_BIN_EXE_lockscope"));
    cmd.env("LOCKSCOPE_DEBUG_ROOT", &empty_root)
        .env(
            "DEBUGINFOD_URLS",
            format!("http://127.0.0.1:{DEBUGINFOD_PORT}"),
        )
        .env("XDG_CACHE_HOME", &cache)
        .env("NO_COLOR", "1");
    let (_, out) = launch_with(cmd, "c-debuginfod", &bin, &C_ARGS, &DWARF);
    let p = launched("c-debuginfod");
    assert_c_named(&p, &out);
    // The download is cached by build id.
    let cached = cache.join(format!("lockscope/debuginfod/{id}.debug"));
    assert_eq!(
        std::fs::read(&cached).expect("cached debug file"),
        std::fs::read(&debug).unwrap()
    );
}

#[test]
fn a_stripped_rust_release_build_is_named_from_its_debug_file() {
    if !can_trace() {
        return;
    }
    let dir = scratch("rust-stripped");
    let bin = dir.join("lockdemo");
    std::fs::copy(nofp_bin("lockdemo"), &bin).unwrap();
    let debug = split_and_strip(&bin);
    let root = dir.join("root");
    install_by_build_id(&root, &build_id(&bin), &debug);
    let args = ["contended", "--threads", "4", "--seconds", "1"];
    let (_, out) = launch_with(
        lockscope_with_root(&root),
        "rust-stripped",
        &bin,
        &args,
        &DWARF,
    );
    let p = launched("rust-stripped");
    assert_eq!(blamed(&out), "lockdemo::contended_lock_site", "{out}");
    assert!(
        hottest_names(&p).iter().any(|n| n == "start_thread"),
        "{out}"
    );
}

#[test]
fn a_stripped_go_build_is_named_from_gopclntab() {
    if !can_trace() {
        return;
    }
    let dir = scratch("go-stripped");
    let bin = dir.join("syncmap-load-go");
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/go");
    run(Command::new("go")
        .args(["build", "-ldflags=-s -w", "-o"])
        .arg(&bin)
        .arg("./cmd/syncmap-load-go")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../go"))
        .env("GOCACHE", target.join("cache"))
        .env("GOPATH", target.join("path"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off"));
    let sections = run(Command::new("readelf").arg("-S").arg(&bin));
    assert!(!sections.contains(".symtab") && sections.contains(".gopclntab"));
    let args = ["--preset", "miss-storm", "--duration", "1", "--linger", "0"];
    // Go keeps frame pointers; its goroutine probes are found in .gopclntab too.
    let (_, out) = launch("go-stripped", &bin, &args, &["--unwind", "fp"]);
    let p = launched("go-stripped");
    assert!(
        p.go.as_ref().is_some_and(|g| g.goroutine_probes > 0),
        "no goroutine probes on a stripped Go binary: {out}"
    );
    let site = blamed(&out);
    assert!(
        site == "lockscope.dev/go/syncmap.(*Map).loadMiss"
            || site == "lockscope.dev/go/syncmap.(*Map).slowStore",
        "{out}"
    );
    let names = hottest_names(&p);
    assert!(names.iter().any(|n| n == "main.worker"), "{names:#?}");
    assert!(!out.contains("unnamed in syncmap-load-go"), "{out}");
}
