//! testing: sample profiles and rows for tests, here and in tracer-user's unit tests (which
//! turn on the `test-support` feature through their dev-dependency).
use std::collections::BTreeMap;

use super::*;

pub fn sample() -> Profile {
    let sym = |name: &str, line| Sym {
        name: name.into(),
        file: Some("src/main.rs".into()),
        line: Some(line),
    };
    Profile {
        format: FORMAT.into(),
        version: VERSION,
        meta: Meta {
            pid: 42,
            comm: "demo".into(),
            exe: Some("/bin/demo".into()),
            start_unix_ms: 1,
            duration_ns: 2_000_000_000,
            attach_ns: 40_000_000,
            symbolize_ns: 1_000_000,
            stop: StopReason::Duration,
            unwind: Unwinder::FramePointers,
            unwind_note: None,
            hooks: None,
            unnamed: Vec::new(),
            kernel: "6.18".into(),
            lockscope_version: "0.1.0".into(),
        },
        counters: Counters {
            calls: 10,
            eagain: 2,
            ..Counters::default()
        },
        losses: Losses::default(),
        modules: vec![Module {
            path: "/bin/demo".into(),
            build_id: Some("abcd".into()),
        }],
        stacks: vec![
            Stack {
                frames: vec![
                    Frame {
                        addr: 0x1000,
                        ret: false,
                        module: Some(0),
                        offset: Some(0x100),
                        syms: vec![sym("syscall", 1)],
                    },
                    Frame {
                        addr: 0x2000,
                        ret: true,
                        module: Some(0),
                        offset: Some(0x200),
                        syms: vec![sym("demo::hot", 21), sym("demo::worker", 30)],
                    },
                ],
            },
            Stack {
                frames: vec![Frame {
                    addr: 0x3000,
                    ret: false,
                    module: None,
                    offset: None,
                    syms: vec![],
                }],
            },
        ],
        waits: vec![
            row(Some(0), 1, 3, 3_000_000, 2_000_000),
            row(Some(0), 2, 1, 1_000_000, 1_000_000),
            row(Some(1), 1, 2, 500_000, 400_000),
        ],
        wakes: vec![],
        threads: BTreeMap::from([(1, "worker-1".into())]),
        bundled: None,
        locks: vec![LockInfo {
            uaddr: 0x5000,
            pid: None,
            region: Region::Static,
            module: Some("/bin/demo".into()),
            symbol: Some("demo::LOCK".into()),
            shard: None,
        }],
        go: None,
        tokio: None,
        blocked: Vec::new(),
        lock_wrappers: Default::default(),
        processes: Vec::new(),
    }
}

/// A stack of one resolved function per frame, innermost first.
pub fn stack(names: &[&str]) -> Stack {
    Stack {
        frames: names
            .iter()
            .map(|n| Frame {
                addr: 1,
                ret: true,
                module: None,
                offset: None,
                syms: vec![Sym {
                    name: n.to_string(),
                    file: None,
                    line: None,
                }],
            })
            .collect(),
    }
}

pub fn row(stack: Option<usize>, tid: u32, count: u64, total: u64, max: u64) -> WaitRow {
    let mut hist = vec![0; tracer_common::HIST_BUCKETS];
    hist[tracer_common::hist_bucket(max)] = count;
    WaitRow {
        stack,
        waker_stack: None,
        uaddr: 0x5000,
        tid,
        pid: None,
        op: FutexOp::Wait,
        count,
        total_ns: total,
        max_ns: max,
        interrupted: 0,
        timeouts: 0,
        timeout_ns: 0,
        errors: 0,
        holder_phase: None,
        behind: vec![],
        covered_waits: 0,
        hist,
    }
}

/// The sample (pid 42 "demo", threads 1 and 2 on 0x5000) with a followed child, pid 43
/// "child" (frame-pointer unwinding), whose thread 10 waits 5 times, 9 ms, on the same address
/// 0x5000 and is woken by its thread 11.
pub fn sample_with_child() -> Profile {
    let mut p = sample();
    let mut r = row(Some(0), 10, 5, 9_000_000, 3_000_000);
    r.pid = Some(43);
    p.waits.push(r);
    p.wakes.push(WakeRow {
        stack: Some(0),
        uaddr: 0x5000,
        tid: 11,
        pid: Some(43),
        op: FutexOp::Wake,
        calls: 5,
        woken: 5,
        empty: 0,
    });
    p.processes.push(Process {
        pid: 43,
        comm: "child".into(),
        exe: Some("/bin/child".into()),
        unwind: Unwinder::FramePointers,
    });
    p
}
