//! Unit tests of profile; the sample profiles other modules' tests use are `testing`'s.
use super::read::longest_string;
use super::*;
use std::fs;
use std::path::PathBuf;

pub use super::testing::{row, sample, stack};

fn tmpdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "lockscope-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn string_lengths_are_measured_without_parsing() {
    assert_eq!(longest_string(br#"{"a":"xyz","b":["12345"]}"#), 5);
    // Escapes count as written; an escaped quote does not end the string.
    assert_eq!(longest_string(br#"["ab\"cd"]"#), 6);
    // An unterminated string still counts.
    assert_eq!(longest_string(br#"{"k":"abcdefgh"#), 8);
    assert_eq!(longest_string(b"[1,2,3]"), 0);
}

#[test]
fn bad_files_get_one_clear_error() {
    let d = tmpdir().join("bad");
    fs::create_dir_all(&d).unwrap();
    let missing = load(&d.join("nope.json")).unwrap_err().to_string();
    assert!(missing.starts_with("no profile at"), "{missing}");

    let full = serde_json::to_string(&sample()).unwrap();
    let trunc = d.join("trunc.json");
    fs::write(&trunc, &full[..full.len() / 2]).unwrap();
    let e = load(&trunc).unwrap_err().to_string();
    assert!(e.contains("corrupt or truncated"), "{e}");

    let other = d.join("other.json");
    fs::write(&other, r#"{"hello": 1}"#).unwrap();
    assert!(load(&other)
        .unwrap_err()
        .to_string()
        .ends_with("is not a lockscope profile"));

    let newer = d.join("newer.json");
    fs::write(&newer, full.replace("\"version\":1", "\"version\":99")).unwrap();
    let e = load(&newer).unwrap_err().to_string();
    assert!(e.contains("newer than this lockscope"), "{e}");
    fs::remove_dir_all(d).unwrap();
}
