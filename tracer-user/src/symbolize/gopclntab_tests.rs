//! Unit tests of gopclntab on hand-built Go 1.18-layout tables.
use super::*;

/// A Go 1.18-layout table built by hand: two functions at text+0x0 and text+0x40 (text ends at
/// 0x100), the second with a line table (line 10 for 0x10 bytes, then 12), a file table, and
/// code inlined from another function in its last 0x10 bytes.
fn synthetic(text: u64) -> Vec<u8> {
    let names = b"main.first\0main.second\0".to_vec();
    let cutab: Vec<u8> = [0u32, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
    let filetab = b"a.go\0\0\0/src/m.go\0".to_vec();
    // pc-value tables: offset 0 is "none". Line table at 1: value -1+11 = 10 for pc <
    // entry+0x10, then +2 = 12 until entry+0x30. File table: value -1+2 = 1 (cutab[1] = 7,
    // "/src/m.go") for the whole function.
    // Inline-tree index at 9: -1 (not inlined) until entry+0x30, then 0.
    let pctab = vec![0u8, 22, 0x10, 4, 0x30, 0, 4, 0x40, 0, 0, 0x30, 2, 0x10, 0];
    let (lines_at, files_at, inline_at) = (1u32, 6u32, 9u32);
    let header = 8 + 8 * 8;
    let funcnames = header;
    let cu = funcnames + names.len();
    let files = cu + cutab.len();
    let pc = files + filetab.len();
    let pcln = pc + pctab.len();
    let mut functab = Vec::new();
    let mut funcs = Vec::new();
    let func_base = 3 * 8;
    for (i, (entry, nameoff, pcfile, pcln_t, npcdata)) in [
        (0u32, 0u32, 0u32, 0u32, 0u32),
        (0x40, 11, files_at, lines_at, 3),
    ]
    .into_iter()
    .enumerate()
    {
        let funcoff = (func_base + i * 52) as u32;
        functab.extend(entry.to_le_bytes());
        functab.extend(funcoff.to_le_bytes());
        let mut f = Vec::new();
        for v in [entry, nameoff, 0, 0, 0, pcfile, pcln_t, npcdata, 0] {
            f.extend(v.to_le_bytes());
        }
        // funcID, flag, pad, nfuncdata; then the pcdata table offsets.
        f.resize(40, 0);
        for v in [0, 0, if npcdata > 0 { inline_at } else { 0 }] {
            f.extend(v.to_le_bytes());
        }
        funcs.extend(f);
    }
    functab.extend(0x100u32.to_le_bytes());
    functab.extend(0u32.to_le_bytes());
    let mut d = Vec::new();
    d.extend(0xffff_fff0u32.to_le_bytes());
    d.extend([0, 0, 1, 8]);
    for v in [
        2u64,
        2,
        text,
        funcnames as u64,
        cu as u64,
        files as u64,
        pc as u64,
        pcln as u64,
    ] {
        d.extend(v.to_le_bytes());
    }
    d.extend(names);
    d.extend(cutab);
    d.extend(filetab);
    d.extend(pctab);
    d.extend(functab);
    d.extend(funcs);
    d
}

#[test]
fn functions_are_found_by_address_with_their_lines() {
    let t = GoTable::parse(synthetic(0x40_1000), None).expect("parses");
    let names: Vec<String> = t.functions().map(|f| f.name).collect();
    assert_eq!(names, ["main.first", "main.second"]);
    let f = t.lookup(0x40_1000 + 0x3f).unwrap();
    assert_eq!(
        (f.name.as_str(), f.entry, f.end),
        ("main.first", 0x40_1000, 0x40_1040)
    );
    assert_eq!(f.line, None);
    let s = t.lookup(0x40_1000 + 0x45).unwrap();
    assert_eq!(s.name, "main.second");
    assert_eq!(s.line, Some(10));
    assert_eq!(s.file.as_deref(), Some("/src/m.go"));
    assert_eq!(t.lookup(0x40_1000 + 0x55).unwrap().line, Some(12));
    // In inlined code the line tables give the callee's line: none is claimed for this one.
    let inl = t.lookup(0x40_1000 + 0x75).unwrap();
    assert_eq!(
        (inl.name.as_str(), inl.line, inl.file),
        ("main.second", None, None)
    );
    // Before text, and past its end: nothing.
    assert!(t.lookup(0x40_0fff).is_none());
    assert!(t.lookup(0x40_1100).is_none());
}

#[test]
fn text_start_comes_from_the_text_section_when_known() {
    // A position-independent build leaves textStart unrelocated (0) in the file.
    let t = GoTable::parse(synthetic(0), Some(0x2000)).unwrap();
    assert_eq!(t.lookup(0x2041).unwrap().name, "main.second");
}

#[test]
fn other_data_is_refused() {
    assert!(GoTable::parse(vec![0; 200], None).is_none());
    let mut short = synthetic(0x1000);
    short.truncate(100);
    assert!(GoTable::parse(short, None).is_none());
}
