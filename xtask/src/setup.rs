//! Prerequisites, pinned: everything that builds the eBPF side must agree on LLVM 22.
use anyhow::{bail, Result};

use crate::run::{apt_install, cmd, cmd_env, output, step};

/// The LLVM major version of the whole eBPF chain: nightly rustc emits its bitcode, and
/// bpf-linker (built against Debian's llvm-22-dev) must read it. LLVM 23 bitcode breaks a
/// LLVM 22 linker ("Invalid record").
pub const LLVM_MAJOR: u32 = 22;
pub const BPF_LINKER_VERSION: &str = "0.13.0";
/// Components of the pinned nightly the project uses, and why.
const NIGHTLY_COMPONENTS: [(&str, &str); 2] = [
    (
        "rust-src",
        "needed by -Z build-std=core for the eBPF programs",
    ),
    (
        "miri",
        "runs the bundled map's tests, and so arc-swap's unsafe code",
    ),
];
/// aya 0.14 (pinned in Cargo.toml) needs at least this stable rustc; aya 0.15+ would need 1.98.
const MIN_STABLE: (u32, u32) = (1, 95);

fn llvm_major(rustc_vv: &str) -> Option<u32> {
    rustc_vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.trim().parse().ok())
}

fn rustc_minor(rustc_vv: &str) -> Option<(u32, u32)> {
    let release = rustc_vv.lines().find_map(|l| l.strip_prefix("release: "))?;
    let mut parts = release.split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

pub fn run() -> Result<()> {
    step("checking the stable toolchain");
    let stable = output("rustc", &["-vV"]).unwrap_or_default();
    match rustc_minor(&stable) {
        Some(v) if v >= MIN_STABLE => eprintln!("    ok: rustc {}.{}", v.0, v.1),
        Some(v) => bail!(
            "rustc {}.{} is too old: lockscope needs {}.{} or newer (`rustup update stable`)",
            v.0,
            v.1,
            MIN_STABLE.0,
            MIN_STABLE.1
        ),
        None => bail!("cannot run rustc: install Rust with rustup"),
    }

    step(&format!(
        "checking the nightly toolchain (builds the eBPF programs; must use LLVM {LLVM_MAJOR})"
    ));
    let Some(nightly) = output("rustup", &["run", "nightly", "rustc", "-vV"]) else {
        bail!("no nightly toolchain: `rustup toolchain install nightly --component rust-src` (one whose `rustc -vV` says LLVM {LLVM_MAJOR})");
    };
    match llvm_major(&nightly) {
        Some(LLVM_MAJOR) => eprintln!("    ok: nightly uses LLVM {LLVM_MAJOR}"),
        Some(other) => bail!(
            "nightly rustc uses LLVM {other}, but bpf-linker is built against LLVM {LLVM_MAJOR}: install a nightly with LLVM {LLVM_MAJOR} (e.g. nightly-2026-05-19) as `nightly`"
        ),
        None => bail!("cannot read the LLVM version of nightly rustc"),
    }

    let installed = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .unwrap_or_default();
    for (component, why) in NIGHTLY_COMPONENTS {
        step(&format!("{component} for nightly ({why})"));
        if installed.lines().any(|l| l.starts_with(component)) {
            eprintln!("    ok: already installed");
        } else {
            cmd(
                "rustup",
                &["component", "add", component, "--toolchain", "nightly"],
            )?;
        }
    }

    step(&format!(
        "Debian's llvm-{LLVM_MAJOR}-dev (bpf-linker links against it)"
    ));
    let pkg = format!("llvm-{LLVM_MAJOR}-dev");
    let llvm_prefix = format!("/usr/lib/llvm-{LLVM_MAJOR}");
    let have_llvm = output("dpkg-query", &["-W", "-f=${Status}", &pkg])
        .is_some_and(|s| s.contains("install ok installed"));
    if have_llvm {
        eprintln!("    ok: {pkg} installed");
    } else {
        apt_install(&[&pkg, "libpolly-22-dev", "zlib1g-dev", "libzstd-dev"])?;
    }

    step(&format!(
        "bpf-linker {BPF_LINKER_VERSION} built against LLVM {LLVM_MAJOR}"
    ));
    let have = output("bpf-linker", &["--version"]).unwrap_or_default();
    let linked = linker_llvm_major();
    if have.trim() == format!("bpf-linker {BPF_LINKER_VERSION}") && linked == Some(LLVM_MAJOR) {
        eprintln!("    ok: {} (links libLLVM {LLVM_MAJOR})", have.trim());
    } else {
        if let Some(other) = linked.filter(|&m| m != LLVM_MAJOR) {
            eprintln!(
                "    found bpf-linker linked against LLVM {other}, want {LLVM_MAJOR}: rebuilding"
            );
        }
        if !have.is_empty() {
            eprintln!(
                "    found {}, want {BPF_LINKER_VERSION}: reinstalling",
                have.trim()
            );
        }
        let feature = format!("llvm-{LLVM_MAJOR}");
        cmd_env(
            "cargo",
            &[
                "install",
                "bpf-linker",
                "--locked",
                "--force",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                &feature,
            ],
            &[("LLVM_PREFIX", &llvm_prefix)],
        )?;
    }
    step("Debian's golang-go (`go tool pprof` reads lockscope's pprof output in the tests)");
    if output("go", &["version"]).is_some_and(|v| v.starts_with("go version")) {
        eprintln!(
            "    ok: {}",
            output("go", &["version"]).unwrap_or_default().trim()
        );
    } else {
        apt_install(&["golang-go"])?;
    }
    step("Debian's debuginfod and iproute2 (a local debuginfod server in its own network namespace, for the debug-file tests)");
    if output("debuginfod", &["--version"]).is_some() && output("ip", &["-V"]).is_some() {
        eprintln!("    ok: debuginfod and ip are installed");
    } else {
        apt_install(&["debuginfod", "iproute2"])?;
    }
    step("Debian's prometheus (the agent test starts its own server on 127.0.0.1 and scrapes the agent)");
    if output("prometheus", &["--version"]).is_some() {
        eprintln!("    ok: prometheus is installed");
    } else {
        apt_install(&["prometheus"])?;
    }
    step("real C/C++ and Python targets for the root tests and benchmarks (RocksDB's db_bench, CPython with symbols, g++, MariaDB, sysbench, stress-ng)");
    // The MariaDB test runs its own mariadbd (temp datadir, socket only); the package's
    // service is left as the system set it.
    let wanted = [
        ("db_bench", "rocksdb-tools"),
        ("python3.11d", "python3.11-dbg"),
        ("g++", "g++"),
        ("mariadbd", "mariadb-server"),
        ("sysbench", "sysbench"),
        ("stress-ng", "stress-ng"),
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(bin, _)| output("which", &[bin]).is_none_or(|p| p.trim().is_empty()))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        eprintln!(
            "    ok: db_bench, python3.11d, g++, mariadbd, sysbench and stress-ng are installed"
        );
    } else {
        apt_install(&missing)?;
    }
    crate::gomatrix::install()?;
    eprintln!("\nsetup complete");
    Ok(())
}

/// The LLVM major version the installed bpf-linker is dynamically linked against, read from
/// `ldd` (`libLLVM.so.22.1` or `libLLVM-22.so`); `--version` does not say.
fn linker_llvm_major() -> Option<u32> {
    let path = output("which", &["bpf-linker"])?;
    let ldd = output("ldd", &[path.trim()])?;
    libllvm_major(&ldd)
}

fn libllvm_major(ldd: &str) -> Option<u32> {
    ldd.lines().find_map(|l| {
        let name = l.split_whitespace().next()?;
        let v = name
            .strip_prefix("libLLVM.so.")
            .or_else(|| name.strip_prefix("libLLVM-"))?;
        v.split(['.', '-']).next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_versions_from_rustc_vv() {
        let vv = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\nrelease: 1.97.0-nightly\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(vv), Some(22));
        assert_eq!(rustc_minor(vv), Some((1, 97)));
        assert_eq!(llvm_major("release: 1.95.0\n"), None);
        let ldd = "\tlibc.so.6 => /lib/libc.so.6\n\tlibLLVM.so.22.1 => /usr/lib/llvm-22/lib/libLLVM.so.22.1 (0x7f)\n";
        assert_eq!(libllvm_major(ldd), Some(22));
        assert_eq!(libllvm_major("\tlibLLVM-23.so => /x (0x1)\n"), Some(23));
        assert_eq!(libllvm_major("\tlibc.so.6 => /lib/libc.so.6\n"), None);
    }
}
