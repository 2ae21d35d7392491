//! The Go side: the bundled map's Go port (`go/syncmap`) and its workload
//! (`go/cmd/syncmap-load-go`), built with Debian's Go (installed by `setup`) into target/go.
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::run::{root, step};

/// Go's caches live in the build tree, so a fresh machine or a root shell without HOME works.
fn go(args: &[&str]) -> Result<()> {
    let dir = root().join("go");
    let target = root().join("target/go");
    eprintln!("    $ (cd go && go {})", args.join(" "));
    let status = Command::new("go")
        .args(args)
        .current_dir(&dir)
        .env("GOCACHE", target.join("cache"))
        .env("GOPATH", target.join("path"))
        .env("GOFLAGS", "-mod=mod")
        // Standard library only: nothing to fetch, and nothing may be fetched.
        .env("GOPROXY", "off")
        .status()
        .context("running go (cargo xtask setup installs Debian's golang-go)")?;
    if !status.success() {
        bail!("go {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Builds the Go workload; returns its path.
pub fn build() -> Result<PathBuf> {
    step("the Go workload: target/go/syncmap-load-go");
    let out = root().join("target/go/syncmap-load-go");
    let out_s = out.to_str().context("path")?;
    go(&["build", "-o", out_s, "./cmd/syncmap-load-go"])?;
    // A plain sync.Map cache, for the stdlib sync.Map test (tests/stdmap.rs).
    step("a plain Go sync.Map cache: target/go/gocache");
    let cache = root().join("target/go/gocache");
    go(&[
        "build",
        "-o",
        cache.to_str().context("path")?,
        "./cmd/gocache",
    ])?;
    Ok(out)
}

/// Builds the Go workload with the map's ground-truth log (tag groundtruth), for the holder
/// blame test; returns its path.
pub fn build_ground_truth() -> Result<PathBuf> {
    step("the Go workload with its ground-truth log: target/go/syncmap-load-go-gt");
    let out = root().join("target/go/syncmap-load-go-gt");
    let out_s = out.to_str().context("path")?;
    go(&[
        "build",
        "-tags",
        "groundtruth",
        "-o",
        out_s,
        "./cmd/syncmap-load-go",
    ])?;
    Ok(out)
}

/// gofmt, vet, and the Go map's tests under the race detector.
pub fn test() -> Result<()> {
    step("the Go map: gofmt, go vet, go test -race");
    let unformatted = Command::new("gofmt")
        .args(["-l", "."])
        .current_dir(root().join("go"))
        .output()
        .context("running gofmt")?;
    if !unformatted.stdout.is_empty() {
        bail!(
            "gofmt wants to reformat: {}",
            String::from_utf8_lossy(&unformatted.stdout).trim()
        );
    }
    go(&["vet", "./..."])?;
    go(&["test", "-race", "-count=1", "./..."])
}
