//! Unit tests of output.
use super::*;
use std::os::unix::fs::{symlink, PermissionsExt};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lockscope-out-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn write(path: &Path, text: &str) -> Result<()> {
    let text = text.to_string();
    PendingOutput::reserve_for("report", path)?
        .commit_with(move |w| Ok(w.write_all(text.as_bytes())?))
}

#[test]
fn round_trip() {
    let d = tmpdir("round-trip");
    let path = d.join("p.json");
    let out = PendingOutput::reserve_for("profile", &path).unwrap();
    let p = crate::profile::tests::sample();
    out.commit(&p).unwrap();
    let back = crate::profile::load(&path).unwrap();
    assert_eq!(
        serde_json::to_value(&back).unwrap(),
        serde_json::to_value(&p).unwrap()
    );
    // No temporary file is left beside it.
    assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
    fs::remove_dir_all(d).unwrap();
}

#[test]
fn unwritable_output_fails_before_anything_is_written() {
    let e = PendingOutput::reserve_for("profile", Path::new("/nonexistent-dir/p.json"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("cannot write profile to /nonexistent-dir/p.json"),
        "{e}"
    );
    let d = tmpdir("dir");
    let e = PendingOutput::reserve_for("profile", &d)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("is a directory"), "{e}");
}

/// New files are private; replaced files keep their mode; nothing is left beside them.
#[test]
fn modes_are_private_or_kept() {
    let d = tmpdir("modes");
    let new = d.join("new.json");
    write(&new, "a").unwrap();
    assert_eq!(fs::metadata(&new).unwrap().mode() & 0o777, 0o600);
    let shared = d.join("shared.txt");
    fs::write(&shared, "old").unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o640)).unwrap();
    write(&shared, "new").unwrap();
    assert_eq!(fs::read_to_string(&shared).unwrap(), "new");
    assert_eq!(fs::metadata(&shared).unwrap().mode() & 0o777, 0o640);
    assert_eq!(fs::read_dir(&d).unwrap().count(), 2, "a temporary was left");
    // Abandoned: nothing appears at all.
    PendingOutput::reserve_for("profile", &d.join("never.json"))
        .unwrap()
        .abandon();
    assert_eq!(fs::read_dir(&d).unwrap().count(), 2);
    fs::remove_dir_all(d).unwrap();
}

/// A symlink at -o is refused, and what it points to is untouched.
#[test]
fn symlinks_are_refused() {
    let d = tmpdir("link");
    let victim = d.join("victim");
    fs::write(&victim, "precious").unwrap();
    let link = d.join("out.json");
    symlink(&victim, &link).unwrap();
    let e = write(&link, "overwritten").unwrap_err().to_string();
    assert!(e.contains("symbolic link"), "{e}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    fs::remove_dir_all(d).unwrap();
}

/// A FIFO with a reader is written in place and stays a FIFO; one without fails at once.
#[test]
fn fifos_are_written_in_place() {
    let d = tmpdir("fifo");
    let fifo = d.join("pipe");
    let c = cstr(&fifo).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let e = write(&fifo, "x").unwrap_err().to_string();
    assert!(e.contains("no reader"), "{e}");
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read_to_string(fifo).unwrap())
    };
    // The reader's open blocks until a writer opens; retry until it is there.
    let mut out = Err(anyhow::anyhow!("never tried"));
    for _ in 0..200 {
        out = write(&fifo, "through the pipe");
        if out.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    out.unwrap();
    assert_eq!(reader.join().unwrap(), "through the pipe");
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    fs::remove_dir_all(d).unwrap();
}

/// A character device (a private /dev/null made with mknod when root) is written, never
/// replaced by a regular file.
#[test]
fn character_devices_are_written_not_replaced() {
    let d = tmpdir("chr");
    let dev = d.join("null");
    let c = cstr(&dev).unwrap();
    // SAFETY: mknod with a NUL-terminated path; makeded(1, 3) is the null device.
    let made = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    if made != 0 {
        // `cargo xtask test` runs as root and sets this: there the test must not skip.
        assert!(
            std::env::var_os("LOCKSCOPE_REQUIRE_ROOT").is_none(),
            "mknod failed under LOCKSCOPE_REQUIRE_ROOT: {}",
            std::io::Error::last_os_error()
        );
        eprintln!("skipping: mknod needs root");
        return;
    }
    write(&dev, "discarded").unwrap();
    assert!(fs::symlink_metadata(&dev)
        .unwrap()
        .file_type()
        .is_char_device());
    fs::remove_dir_all(d).unwrap();
}
