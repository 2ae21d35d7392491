//! `pprof`: a gzipped profile.proto (github.com/google/pprof/proto/profile.proto) with the
//! sample types of Go's contention profiles, `contentions/count` and `delay/nanoseconds`, so
//! `go tool pprof` and every pprof UI read it. Messages are prost derives of that schema.
use std::collections::HashMap;
use std::io::{self, Write};

use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message;

use super::{key_label, Render};
use crate::analyze::{shown_rows, Key, Waits};
use crate::profile::{Frame, Profile, Sym};

/// pprof of the waits a view selects (`--waits`).
pub struct Pprof {
    pub waits: Waits,
}

/// The profile.proto messages lockscope writes (field numbers from the schema).
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
        #[prost(int64, tag = "3")]
        pub num: i64,
        #[prost(int64, tag = "4")]
        pub num_unit: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(int64, tag = "6")]
        pub build_id: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        /// Innermost first: the last line is the function the others were inlined into.
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
    }
}

/// profile.proto's string table: index 0 is always "".
#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn id(&mut self, s: &str) -> i64 {
        if self.table.is_empty() {
            self.table.push(String::new());
            self.index.insert(String::new(), 0);
        }
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// The display name pprof gets: pprof shortens names by dropping `<…>` groups as C++
/// template arguments, which turns Rust's `<std::sys::…::Mutex>::lock` into `::lock`. The
/// qualified-path brackets are unwrapped first (`<T as Trait>::f` → `T::f`); the full name
/// stays in `system_name`.
pub fn pprof_name(name: &str) -> String {
    let Some(rest) = name.strip_prefix('<') else {
        return name.to_string();
    };
    let mut depth = 1usize;
    let mut close = None;
    for (i, c) in rest.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let Some(close) = close else {
        return name.to_string();
    };
    let inner = &rest[..close];
    // The self type of `T as Trait`: the " as " outside any brackets.
    let mut depth = 0usize;
    let mut self_ty = inner;
    for (i, c) in inner.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            ' ' if depth == 0 && inner[i..].starts_with(" as ") => {
                self_ty = &inner[..i];
                break;
            }
            _ => {}
        }
    }
    format!("{}{}", pprof_name(self_ty), &rest[close + 1..])
}

/// Builds the pprof message for a profile (public for tests).
pub fn build(profile: &Profile, waits: Waits) -> proto::Profile {
    let mut strings = Strings::default();
    strings.id("");
    let sample_type = vec![
        proto::ValueType {
            r#type: strings.id("contentions"),
            unit: strings.id("count"),
        },
        proto::ValueType {
            r#type: strings.id("delay"),
            unit: strings.id("nanoseconds"),
        },
    ];
    // Mappings: one per module, its range spanning the frames seen in it.
    let mut mapping: Vec<proto::Mapping> = profile
        .modules
        .iter()
        .enumerate()
        .map(|(i, m)| proto::Mapping {
            id: i as u64 + 1,
            memory_start: u64::MAX,
            memory_limit: 0,
            file_offset: 0,
            filename: strings.id(&m.path),
            build_id: m.build_id.as_deref().map_or(0, |b| strings.id(b)),
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
        })
        .collect();
    let mut functions: HashMap<(String, Option<String>), u64> = HashMap::new();
    let mut function = Vec::new();
    let mut locations: HashMap<u64, u64> = HashMap::new();
    let mut location = Vec::new();
    let mut location_of = |f: &Frame, strings: &mut Strings, mapping: &mut Vec<proto::Mapping>| {
        if let Some(&id) = locations.get(&f.addr) {
            return id;
        }
        let mapping_id = match (f.module, f.offset) {
            (Some(m), Some(off)) if m < mapping.len() => {
                let map = &mut mapping[m];
                let base = f.addr.wrapping_sub(off);
                map.memory_start = map.memory_start.min(base);
                map.memory_limit = map.memory_limit.max(f.addr.saturating_add(1));
                m as u64 + 1
            }
            _ => 0,
        };
        // A frame nothing named gets `module+0xoffset` as its function, as in every view.
        let unnamed = f.syms.is_empty().then(|| Sym {
            name: profile.unnamed_frame(f),
            file: None,
            line: None,
        });
        let line = f
            .syms
            .iter()
            .chain(unnamed.as_ref())
            .map(|s| {
                let key = (s.name.clone(), s.file.clone());
                let next = function.len() as u64 + 1;
                let function_id = *functions.entry(key).or_insert_with(|| {
                    function.push(proto::Function {
                        id: next,
                        name: strings.id(&pprof_name(&s.name)),
                        system_name: strings.id(&s.name),
                        filename: s.file.as_deref().map_or(0, |f| strings.id(f)),
                    });
                    next
                });
                proto::Line {
                    function_id,
                    line: i64::from(s.line.unwrap_or(0)),
                }
            })
            .collect();
        let id = location.len() as u64 + 1;
        location.push(proto::Location {
            id,
            mapping_id,
            address: f.addr,
            line,
        });
        locations.insert(f.addr, id);
        id
    };
    let (thread_key, tid_key, lock_key) =
        (strings.id("thread"), strings.id("tid"), strings.id("lock"));
    let mut sample = Vec::new();
    for (r, _) in shown_rows(profile, waits) {
        let frames = r.stack.and_then(|s| profile.stacks.get(s));
        let location_id = frames
            .map(|s| &s.frames[..])
            .unwrap_or(&[])
            .iter()
            .map(|f| location_of(f, &mut strings, &mut mapping))
            .collect();
        let address = key_label(&Key::Lock(r.pid, r.uaddr), profile);
        let lock = profile.lock_info(r.pid, r.uaddr).map_or_else(
            || address.clone(),
            |l| format!("{address} {}", l.describe()),
        );
        // Rows of a followed child say which process they are.
        let pid = r.pid.map(|pid| proto::Label {
            key: strings.id("pid"),
            num: i64::from(pid),
            ..Default::default()
        });
        sample.push(proto::Sample {
            location_id,
            value: vec![r.count as i64, r.total_ns as i64],
            label: [
                proto::Label {
                    key: thread_key,
                    str: strings.id(&key_label(&Key::Thread(r.tid), profile)),
                    ..Default::default()
                },
                proto::Label {
                    key: tid_key,
                    num: i64::from(r.tid),
                    ..Default::default()
                },
                proto::Label {
                    key: lock_key,
                    str: strings.id(&lock),
                    ..Default::default()
                },
            ]
            .into_iter()
            .chain(pid)
            .collect(),
        });
    }
    for m in &mut mapping {
        if m.memory_start > m.memory_limit {
            (m.memory_start, m.memory_limit) = (0, 0);
        }
    }
    let m = &profile.meta;
    let period_type = Some(proto::ValueType {
        r#type: strings.id("contentions"),
        unit: strings.id("count"),
    });
    let comment = vec![strings.id(&format!(
        "lockscope {}: futex waits of pid {} ({}), unwind {}",
        m.lockscope_version, m.pid, m.comm, m.unwind
    ))];
    let default_sample_type = strings.id("delay");
    proto::Profile {
        sample_type,
        sample,
        mapping,
        location,
        function,
        string_table: strings.table,
        time_nanos: (m.start_unix_ms as i64).saturating_mul(1_000_000),
        duration_nanos: m.duration_ns as i64,
        period_type,
        period: 1,
        comment,
        default_sample_type,
    }
}

impl Render for Pprof {
    fn render(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        let bytes = build(profile, self.waits).encode_to_vec();
        let mut gz = GzEncoder::new(out, Compression::default());
        gz.write_all(&bytes)?;
        gz.finish()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::sample;

    #[test]
    fn samples_locations_and_functions_are_linked() {
        let p = build(&sample(), Waits::Contention);
        let s = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(s(0), "");
        assert_eq!(s(p.sample_type[1].r#type), "delay");
        assert_eq!(s(p.sample_type[1].unit), "nanoseconds");
        assert_eq!(p.sample.len(), 3);
        let total: i64 = p.sample.iter().map(|x| x.value[1]).sum();
        assert_eq!(total, 4_500_000);
        // The inlined frame is one location with two lines, innermost first.
        let loc = p.location.iter().find(|l| l.line.len() == 2).unwrap();
        let f = |id: u64| s(p.function[id as usize - 1].name);
        assert_eq!(f(loc.line[0].function_id), "demo::hot");
        assert_eq!(f(loc.line[1].function_id), "demo::worker");
        assert_eq!(
            pprof_name("<std::sys::sync::mutex::futex::Mutex>::lock"),
            "std::sys::sync::mutex::futex::Mutex::lock"
        );
        assert_eq!(
            pprof_name("<alloc::boxed::Box<dyn FnOnce<()>> as core::ops::FnOnce<()>>::call_once"),
            "alloc::boxed::Box<dyn FnOnce<()>>::call_once"
        );
        assert_eq!(
            pprof_name("syncmap::SyncMap<K,V>::lock"),
            "syncmap::SyncMap<K,V>::lock"
        );
        // Round trip through the wire format.
        let back = proto::Profile::decode(&p.encode_to_vec()[..]).unwrap();
        assert_eq!(back, p);
    }
}
