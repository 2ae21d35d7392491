//! Unit tests of symsource: a background debuginfod fetch and the frames it names later.
use super::*;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::mpsc::{channel, Sender};

use object::{Object, ObjectSection, ObjectSymbol};

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loopback debuginfod stand-in that answers its one request with `body` only once the
/// test says so.
fn gated_server(body: Vec<u8>) -> (String, Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (open, gate) = channel::<()>();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&conn).read_line(&mut line).unwrap();
        let _ = gate.recv();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = conn.write_all(head.as_bytes());
        let _ = conn.write_all(&body);
    });
    (url, open)
}

#[test]
fn a_background_fetch_leaves_frames_unnamed_until_it_lands() {
    let dir = std::env::temp_dir().join(format!("lockscope-symsource-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("prog.c");
    std::fs::write(
        &src,
        "__attribute__((noinline)) int named_here(int x) { return x * 3 + 1; }\n\
         int main(int c, char **v) { (void)v; return named_here(c); }\n",
    )
    .unwrap();
    let prog = dir.join("prog");
    let debug = dir.join("prog.debug");
    run(Command::new("gcc")
        .args(["-O1", "-g", "-o"])
        .arg(&prog)
        .arg(&src));
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&prog)
        .arg(&debug));
    run(Command::new("strip").arg("-s").arg(&prog));
    // named_here's file offset in the stripped program, from the debug file's symbol.
    let dbg_bytes = std::fs::read(&debug).unwrap();
    let dbg = object::File::parse(&*dbg_bytes).unwrap();
    let addr = dbg
        .symbols()
        .find(|s| s.name() == Ok("named_here"))
        .unwrap()
        .address();
    let prog_bytes = std::fs::read(&prog).unwrap();
    let obj = object::File::parse(&*prog_bytes).unwrap();
    let text = obj.section_by_name(".text").unwrap();
    let offset = text.file_range().unwrap().0 + (addr - text.address()) + 2;

    let facts = ModuleFacts::read(&prog);
    let (url, open) = gated_server(dbg_bytes.clone());
    let cache = dir.join("cache");
    let mut sources = SymbolSources {
        roots: vec![dir.join("no-root")],
        debuginfod: Some(Debuginfod {
            urls: vec![url],
            cache: cache.clone(),
            timeout: Duration::from_secs(10),
        }),
        mode: FetchMode::Background,
        entries: HashMap::new(),
        landed: Vec::new(),
    };
    let path = prog.to_str().unwrap();
    let symbolizer = Symbolizer::new();
    // The server has not answered: the lookup returns at once, unnamed, and says why.
    let t = std::time::Instant::now();
    assert!(sources.lookup(&symbolizer, path, &[offset])[0].is_empty());
    assert!(t.elapsed() < Duration::from_secs(2), "the lookup waited");
    assert!(sources.hint(path).contains("fetch still running"));
    assert!(sources.take_landed().is_empty());
    open.send(()).unwrap();
    let start = std::time::Instant::now();
    while sources.take_landed().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the fetch never landed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let named = sources.lookup(&symbolizer, path, &[offset]);
    assert_eq!(named[0][0].name, "named_here");
    let id = facts.build_id.unwrap();
    assert!(cache.join(format!("{id}.debug")).is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
