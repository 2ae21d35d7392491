//! Unit tests of debuginfo: build-id paths, debuglink reading and its CRC check.
use super::*;

#[test]
fn build_id_paths_split_the_first_byte_off() {
    let p = build_id_path(Path::new("/usr/lib/debug"), "93ac61ec5a8eb139").unwrap();
    assert_eq!(
        p,
        Path::new("/usr/lib/debug/.build-id/93/ac61ec5a8eb139.debug")
    );
    assert!(build_id_path(Path::new("/r"), "9").is_none());
    assert!(build_id_path(Path::new("/r"), "../../etc").is_none());
}

#[test]
fn debuglinks_parse_with_their_padding() {
    // "app.debug\0" is 10 bytes: two bytes of padding, then the CRC.
    let mut d = b"app.debug\0\0\0".to_vec();
    d.extend(0xdead_beefu32.to_le_bytes());
    assert_eq!(
        parse_debuglink(&d),
        Some(DebugLink {
            name: "app.debug".into(),
            crc: 0xdead_beef
        })
    );
    // A name that would climb out of the search directories, or no CRC: refused.
    let mut bad = b"../x\0\0\0\0".to_vec();
    bad.extend(1u32.to_le_bytes());
    assert_eq!(parse_debuglink(&bad), None);
    assert_eq!(parse_debuglink(b"app.debug\0\0\0"), None);
}

#[test]
fn debuglink_candidates_follow_gdbs_order() {
    let c = debuglink_candidates(
        Path::new("/opt/app/bin/app"),
        "app.debug",
        &[PathBuf::from("/usr/lib/debug")],
    );
    assert_eq!(
        c,
        [
            PathBuf::from("/opt/app/bin/app.debug"),
            PathBuf::from("/opt/app/bin/.debug/app.debug"),
            PathBuf::from("/usr/lib/debug/opt/app/bin/app.debug"),
        ]
    );
}

#[test]
fn a_debuglink_is_followed_only_when_its_crc_matches() {
    let dir = std::env::temp_dir().join(format!("lockscope-debuglink-{}", std::process::id()));
    std::fs::create_dir_all(dir.join(".debug")).unwrap();
    let module = dir.join("app");
    std::fs::write(&module, b"not really elf").unwrap();
    let debug = dir.join(".debug/app.debug");
    std::fs::write(&debug, b"debug contents").unwrap();
    // The CRC gdb's gnu_debuglink_crc32 gives for these bytes (zlib's CRC-32).
    let crc = file_crc32(&debug).unwrap();
    assert_eq!(crc, crc32fast::hash(b"debug contents"));
    let mut facts = ModuleFacts {
        debuglink: Some(DebugLink {
            name: "app.debug".into(),
            crc,
        }),
        ..ModuleFacts::default()
    };
    assert_eq!(
        facts.local_debug_file(&module, &[]),
        Some((debug.clone(), Found::DebugLink))
    );
    facts.debuglink.as_mut().unwrap().crc ^= 1;
    assert_eq!(facts.local_debug_file(&module, &[]), None);
    // By build id first, under the given root.
    let id = "abcdef0123456789";
    let by_id = build_id_path(&dir, id).unwrap();
    std::fs::create_dir_all(by_id.parent().unwrap()).unwrap();
    std::fs::write(&by_id, b"x").unwrap();
    facts.build_id = Some(id.into());
    assert_eq!(
        facts.local_debug_file(&module, std::slice::from_ref(&dir)),
        Some((by_id, Found::BuildId))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn file_offsets_map_to_addresses_through_the_load_segments() {
    // This test binary itself: its entry point's file offset and address agree through the
    // program headers.
    let exe = std::env::current_exe().unwrap();
    let facts = ModuleFacts::read(&exe);
    assert!(facts.self_named, "a test binary has .symtab");
    let data = std::fs::read(&exe).unwrap();
    let obj = object::File::parse(&*data).unwrap();
    let text = obj.section_by_name(".text").unwrap();
    let (off, _) = text.file_range().unwrap();
    assert_eq!(facts.vaddr_of(off + 0x10), Some(text.address() + 0x10));
    assert_eq!(facts.vaddr_of(u64::MAX - 1), None);
}
