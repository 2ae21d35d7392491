//! unwind: DWARF mode's user side — turns a stack snapshot (ip, sp, bp and a copy of the stack)
//! into return addresses with framehop, from each mapped module's `.eh_frame`/`.debug_frame`
//! (parsed once per module and cached), falling back to frame pointers where CFI is missing.
//! `choose` picks the mode (`--unwind auto`), `prologue` reads whether code keeps frame
//! pointers, and `stitch` joins a CFI unwind that ran out of copied stack to the kernel's
//! frame-pointer walk.
mod choose;
mod prologue;
mod stitch;

pub use choose::{choose, PlanCache, Unwind, UnwindMode, UnwindPlan};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::{Arc, Mutex, OnceLock, Weak};
pub use stitch::{stitch, Join};

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder};
use object::{Object, ObjectSection, ObjectSegment};

use crate::symbolize::Addr;
use crate::sys::MapHistory;

/// Most frames kept per stack, as in frame-pointer mode.
pub const MAX_FRAMES: usize = tracer_common::MAX_STACK_DEPTH;

type Bytes = Arc<[u8]>;

/// A shared slice of a module file: framehop takes section data by value, and one file read
/// serves all of a module's sections.
#[derive(Clone)]
pub struct Section {
    file: Bytes,
    range: std::ops::Range<usize>,
}

impl std::ops::Deref for Section {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.file[self.range.clone()]
    }
}

/// How a CFI walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ended {
    /// At the outermost frame (or the frame limit).
    Complete,
    /// Before it: the copied stack ran out, or a frame could not be unwound.
    Early,
}

/// Unwinds snapshots of one process. Modules are added as addresses in them show up.
pub struct SnapshotUnwinder {
    unwinder: UnwinderX86_64<Section>,
    cache: CacheX86_64,
    /// (path, first mapped address) of modules already added, or known to be unusable.
    added: HashSet<(String, u64)>,
}

impl Default for SnapshotUnwinder {
    fn default() -> Self {
        SnapshotUnwinder {
            unwinder: UnwinderX86_64::new(),
            cache: CacheX86_64::new(),
            added: HashSet::new(),
        }
    }
}

/// The address range, load bias and path of one file as mapped.
struct Mapped {
    path: String,
    range: std::ops::Range<u64>,
    /// One executable mapping: its start and the file offset mapped there.
    start: u64,
    file_offset: u64,
}

fn mapped_modules(maps: &MapHistory) -> Vec<Mapped> {
    let mut by_path: HashMap<&str, Mapped> = HashMap::new();
    for m in maps.mappings.iter().filter(|m| m.is_file()) {
        let path = m.path.trim_end_matches(" (deleted)");
        let e = by_path.entry(path).or_insert_with(|| Mapped {
            path: path.to_string(),
            range: m.start..m.end,
            start: m.start,
            file_offset: m.file_offset,
        });
        e.range.start = e.range.start.min(m.start);
        e.range.end = e.range.end.max(m.end);
    }
    by_path.into_values().collect()
}

/// A file's identity: device, inode, size and modification time.
type FileId = (u64, u64, u64, i64, i64);

/// The bytes of a module file, shared by every unwinder that maps it. The agent unwinds many
/// processes of the same binaries (every `sleep` maps the same libc), and each held its own
/// copy: 51 idle targets took 97 MiB more than none. Held weakly: a file no unwinder uses
/// any more is freed. Identified from the open file, so a file replaced at the same path is
/// read afresh.
fn read_shared(path: &str) -> Option<Bytes> {
    static FILES: OnceLock<Mutex<HashMap<FileId, Weak<[u8]>>>> = OnceLock::new();
    // The path comes from the target's maps: never block on a FIFO planted there, and read
    // only regular files.
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok().filter(|m| m.is_file())?;
    let id = (
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
    );
    let files = FILES.get_or_init(Default::default);
    if let Some(bytes) = files.lock().ok()?.get(&id).and_then(Weak::upgrade) {
        return Some(bytes);
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut buf).ok()?;
    let bytes: Bytes = buf.into();
    let mut files = files.lock().ok()?;
    files.retain(|_, w| w.strong_count() > 0);
    files.insert(id, Arc::downgrade(&bytes));
    Some(bytes)
}

/// framehop's view of one ELF file mapped at `m`.
fn load_module(m: &Mapped) -> Option<Module<Section>> {
    let file = read_shared(&m.path)?;
    let obj = object::File::parse(&*file).ok()?;
    let section = |name: &str| -> Option<(std::ops::Range<u64>, Section)> {
        let s = obj.section_by_name(name)?;
        let (off, size) = s.file_range()?;
        Some((
            s.address()..s.address() + s.size(),
            Section {
                file: file.clone(),
                range: off as usize..(off + size) as usize,
            },
        ))
    };
    // The load bias. The kernel maps a segment from the page holding its file offset to the
    // page holding its address, so the executable mapping's start is page_down(p_vaddr) of
    // the executable segment whose page_down(p_offset) is the mapping's offset. (lld gives
    // segments different address-offset deltas, so no one delta fits the whole file.)
    let seg = obj.segments().find(|s| {
        let (off, _) = s.file_range();
        let exec = matches!(s.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & 1 != 0);
        exec && off & !0xfff == m.file_offset
    })?;
    let bias = m.start.wrapping_sub(seg.address() & !0xfff);
    let (text_svma, text) = section(".text").unzip();
    let (eh_frame_svma, eh_frame) = section(".eh_frame").unzip();
    let (eh_frame_hdr_svma, eh_frame_hdr) = section(".eh_frame_hdr").unzip();
    let (got_svma, _) = section(".got").unzip();
    let debug_frame = section(".debug_frame").map(|(_, d)| d);
    let info = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma,
        text,
        got_svma,
        eh_frame_svma,
        eh_frame,
        eh_frame_hdr_svma,
        eh_frame_hdr,
        debug_frame,
        stubs_svma: None,
        stub_helper_svma: None,
        unwind_info: None,
        text_segment_svma: None,
        text_segment: None,
    };
    Some(Module::new(m.path.clone(), m.range.clone(), bias, info))
}

impl SnapshotUnwinder {
    /// Adds every module of `maps` not added yet.
    pub fn update(&mut self, maps: &MapHistory) {
        for m in mapped_modules(maps) {
            if !self.added.insert((m.path.clone(), m.range.start)) {
                continue;
            }
            if let Some(module) = load_module(&m) {
                self.unwinder.add_module(module);
            }
        }
    }

    /// The frames of one snapshot, innermost first: the interrupted instruction, then return
    /// addresses (`stack` is a copy of user memory from `sp` up), and whether the walk reached
    /// the stack's end or stopped early (the copy ran out, or a frame could not be unwound).
    pub fn unwind_ended(&mut self, ip: u64, sp: u64, bp: u64, stack: &[u8]) -> (Vec<Addr>, Ended) {
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            let off = addr.checked_sub(sp).ok_or(())? as usize;
            let bytes = stack.get(off..off + 8).ok_or(())?;
            Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
        };
        let mut frames = Vec::new();
        let mut it = self.unwinder.iter_frames(
            ip,
            UnwindRegsX86_64::new(ip, sp, bp),
            &mut self.cache,
            &mut read_stack,
        );
        let ended = loop {
            if frames.len() >= MAX_FRAMES {
                break Ended::Complete;
            }
            match it.next() {
                Ok(Some(FrameAddress::InstructionPointer(a))) => frames.push(Addr::Ip(a)),
                Ok(Some(FrameAddress::ReturnAddress(a))) => frames.push(Addr::Return(a.get())),
                Ok(None) => break Ended::Complete,
                // Past what the snapshot holds, or a frame with no usable rule.
                Err(_) => break Ended::Early,
            }
        };
        (frames, ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_mapping_one_file_share_its_bytes() {
        let exe = std::env::current_exe().unwrap();
        let path = exe.to_str().unwrap();
        let a = read_shared(path).unwrap();
        let b = read_shared(path).unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "one copy of a file, however many map it"
        );
        assert!(
            read_shared("/dev/null").is_none(),
            "only regular files are read"
        );
    }

    /// Unwinds this very thread from a copy of its own stack, as the kernel would send it.
    #[test]
    #[inline(never)]
    fn unwinds_a_snapshot_of_this_thread() {
        let mut maps = MapHistory::default();
        assert!(maps.refresh(std::process::id()));
        let mut u = SnapshotUnwinder::default();
        u.update(&maps);
        let (ip, sp, bp): (u64, u64, u64);
        // SAFETY: reads the current registers into locals; touches no memory.
        unsafe {
            std::arch::asm!(
                "lea {ip}, [rip]",
                "mov {sp}, rsp",
                "mov {bp}, rbp",
                ip = out(reg) ip,
                sp = out(reg) sp,
                bp = out(reg) bp,
            );
        }
        // As the kernel does: copy up to 16 KiB, but not past the end of the stack mapping.
        let maps_text = fs::read_to_string("/proc/self/maps").unwrap();
        let end = maps_text
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.split_once('-'))
            .map(|(a, b)| {
                (
                    u64::from_str_radix(a, 16).unwrap(),
                    u64::from_str_radix(b, 16).unwrap(),
                )
            })
            .find(|&(a, b)| a <= sp && sp < b)
            .unwrap()
            .1;
        let len = (end - sp).min(16384) as usize;
        // SAFETY: [sp, sp+len) lies inside this thread's own stack mapping, read while this
        // frame is alive.
        let copy = unsafe { std::slice::from_raw_parts(sp as *const u8, len) }.to_vec();
        let (frames, _) = u.unwind_ended(ip, sp, bp, &copy);
        assert!(frames.len() >= 3, "{frames:?}");
        assert!(matches!(frames[0], Addr::Ip(_)));
        assert!(frames[1..].iter().all(|f| matches!(f, Addr::Return(_))));
        // Every frame is code of some mapped module.
        for f in &frames {
            assert!(maps.lookup(f.raw()).is_some(), "{f:?} not in any mapping");
        }
    }
}
