//! Unit tests of debuginfod: a fetch lands in the cache once; silent servers time out.
use super::*;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A loopback HTTP server answering `/buildid/ID/debuginfo` with `body` for `id` and 404
/// otherwise (or never answering, when `silent`); counts the requests it got.
fn serve(id: &'static str, body: &'static [u8], silent: Silence) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            counted.fetch_add(1, Ordering::SeqCst);
            if silent == Silence::NeverAnswer {
                held.push(conn);
                continue;
            }
            let mut line = String::new();
            BufReader::new(&conn).read_line(&mut line).unwrap();
            let wanted = format!("GET /buildid/{id}/debuginfo ");
            let reply = if line.starts_with(&wanted) {
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(body);
                r
            } else {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            };
            let _ = conn.write_all(&reply);
        }
    });
    (url, hits)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Silence {
    Answer,
    NeverAnswer,
}

fn client(url: &str, name: &str) -> Debuginfod {
    let cache = std::env::temp_dir().join(format!("lockscope-dbgd-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    Debuginfod {
        urls: vec![url.to_string()],
        cache,
        timeout: Duration::from_secs(2),
    }
}

#[test]
fn a_fetch_lands_in_the_cache_and_is_not_asked_again() {
    let (url, hits) = serve("abcd1234", b"\x7fELF debug bytes", Silence::Answer);
    let c = client(&url, "hit");
    assert_eq!(c.cached("abcd1234"), Cached::Unknown);
    let path = c.spawn("abcd1234").recv().unwrap().expect("fetched");
    assert_eq!(std::fs::read(&path).unwrap(), b"\x7fELF debug bytes");
    assert_eq!(c.cached("abcd1234"), Cached::Hit(path.clone()));
    assert_eq!(c.fetch("abcd1234").unwrap(), path);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the second fetch asked the server"
    );
    // Unknown ids: 404, remembered as a miss.
    let err = c.fetch("ffff0000").unwrap_err();
    assert!(err.contains("not on http://127.0.0.1"), "{err}");
    assert_eq!(c.cached("ffff0000"), Cached::Miss);
    assert!(c.fetch("ffff0000").unwrap_err().contains("cached miss"));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let _ = std::fs::remove_dir_all(&c.cache);
}

#[test]
fn a_silent_server_times_out_and_https_is_skipped() {
    let (url, _) = serve("abcd1234", b"", Silence::NeverAnswer);
    let mut c = client(&url, "silent");
    c.timeout = Duration::from_millis(300);
    let t = std::time::Instant::now();
    let err = c.fetch("abcd1234").unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert!(err.starts_with(&url), "{err}");
    // A timeout is not a miss: it is asked again next time.
    assert_eq!(c.cached("abcd1234"), Cached::Unknown);
    c.urls = vec!["https://debuginfod.example".into()];
    assert!(c
        .fetch("abcd1234")
        .unwrap_err()
        .contains("only plain http://"));
    let _ = std::fs::remove_dir_all(&c.cache);
}
