//! symbolize: raw addresses → module + file offset (+ build id) → functions, file and line.
//!
//! Works from the memory maps saved during recording and the files on disk, so stacks resolve
//! even after the target has exited.
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::rc::Rc;

use blazesym::symbolize::Symbolizer;

use super::symsource::{FetchMode, SymbolSources};
use crate::profile::{Frame, Module, Stack, Sym, Unnamed};
use crate::sys::{preceded_by_call, MapHistory};

/// A stack address, with the return-address-minus-one rule in the type: a return address
/// points after its call, possibly into the next function or line, so it is looked up one
/// byte earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Addr {
    /// The interrupted instruction itself (frame 0).
    Ip(u64),
    Return(u64),
}

impl Addr {
    pub fn raw(self) -> u64 {
        match self {
            Addr::Ip(a) | Addr::Return(a) => a,
        }
    }
    pub fn lookup(self) -> u64 {
        match self {
            Addr::Ip(a) => a,
            Addr::Return(a) => a.saturating_sub(1),
        }
    }
}

/// The frames of one kernel stack, with the caller of a frameless leaf put back: the kernel's
/// frame-pointer walk skips it, and `leaf_ret` (the word at the user SP) names it when it is a
/// genuine return address.
/// The lowest address code can live at: the first page is never mapped. A frame-pointer walk
/// that runs through code built without frame pointers reads garbage, often small numbers;
/// the stack is cut there rather than shown with bogus frames.
pub const MIN_CODE_ADDR: u64 = 0x1000;

pub fn frames_with_leaf(
    kernel: &[u64],
    leaf_ret: u64,
    mut leaf_ok: impl FnMut(u64) -> bool,
) -> Vec<Addr> {
    let valid = kernel
        .iter()
        .position(|&a| a < MIN_CODE_ADDR)
        .unwrap_or(kernel.len());
    let kernel = &kernel[..valid];
    let mut out = Vec::with_capacity(kernel.len() + 1);
    for (i, &a) in kernel.iter().enumerate() {
        out.push(if i == 0 { Addr::Ip(a) } else { Addr::Return(a) });
        if i == 0 && leaf_ret != 0 && kernel.get(1) != Some(&leaf_ret) && leaf_ok(leaf_ret) {
            out.push(Addr::Return(leaf_ret));
        }
    }
    out
}

/// An address and, when file-backed, its (module index, file offset).
type Located = (Addr, Option<(usize, u64)>);

/// Turns raw stacks into symbolized ones, sharing modules and lookups across all of them and
/// across calls (`top` symbolizes a few new stacks per refresh).
pub struct StackSymbolizer {
    maps: MapHistory,
    modules: Vec<Module>,
    module_index: HashMap<String, usize>,
    files: HashMap<usize, Option<File>>,
    symbolizer: Symbolizer,
    /// (module, lookup offset) → functions; empty when it did not resolve.
    resolved: HashMap<(usize, u64), Vec<Sym>>,
    /// Frames already checked by [`StackSymbolizer::cut_implausible`].
    plausible: HashMap<Addr, bool>,
    /// Each module's symbol source: its own tables, a debug file, debuginfod, `.gopclntab`.
    sources: SymbolSources,
    /// Names by build id, shared with other processes' symbolizers (the agent).
    shared: Option<SharedNames>,
    /// Offsets looked up in symbol sources (not found in a cache).
    pub lookups: u64,
}

/// Names found per (module build id, lookup offset), shared by the symbolizers of many
/// processes: a hundred processes of one binary are symbolized once. Only names are kept
/// (an offset nothing named may be named later by a debug file that lands).
pub type SharedNames = Rc<RefCell<HashMap<(String, u64), Vec<Sym>>>>;

/// The most names a [`SharedNames`] keeps; past it, new names stay per process.
const SHARED_NAMES_MAX: usize = 1 << 20;

/// Whether [`StackSymbolizer::cut_implausible`] cut a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    Whole,
    Cut,
}

impl StackSymbolizer {
    pub fn new(maps: MapHistory) -> Self {
        StackSymbolizer {
            maps,
            modules: Vec::new(),
            module_index: HashMap::new(),
            files: HashMap::new(),
            symbolizer: Symbolizer::new(),
            resolved: HashMap::new(),
            plausible: HashMap::new(),
            sources: SymbolSources::from_env(),
            shared: None,
            lookups: 0,
        }
    }

    /// Takes and gives names through `shared`, by build id.
    pub fn share_names(&mut self, shared: SharedNames) {
        self.shared = Some(shared);
    }

    /// The shared names of module `m` at `offset`, if another process's symbolizer found them.
    fn shared_names(&self, m: usize, offset: u64) -> Option<Vec<Sym>> {
        let id = self.modules[m].build_id.clone()?;
        self.shared.as_ref()?.borrow().get(&(id, offset)).cloned()
    }

    /// Never wait for a debuginfod fetch (`top`): frames stay unnamed until it lands.
    pub fn fetch_in_background(&mut self) {
        self.sources.set_mode(FetchMode::Background);
    }

    /// Per module, the frames of `stacks` nothing named, and what would name them.
    pub fn unnamed(&mut self, stacks: &[Stack]) -> Vec<Unnamed> {
        let mut count: HashMap<usize, u64> = HashMap::new();
        for f in stacks.iter().flat_map(|s| &s.frames) {
            if let (Some(m), true) = (f.module, f.syms.is_empty()) {
                *count.entry(m).or_default() += 1;
            }
        }
        let mut out: Vec<Unnamed> = count
            .into_iter()
            .map(|(m, frames)| {
                let path = self.modules[m].path.clone();
                Unnamed {
                    hint: self.sources.hint(&path),
                    module: path,
                    frames,
                }
            })
            .collect();
        out.sort_by(|a, b| b.frames.cmp(&a.frames).then(a.module.cmp(&b.module)));
        out
    }

    /// Newer memory maps (a live target loads libraries).
    pub fn set_maps(&mut self, maps: &MapHistory) {
        let before = self.maps.mappings.len();
        self.maps.merge(maps.mappings.clone());
        if self.maps.mappings.len() != before {
            // An address in no mapping before may be in a new one.
            self.plausible.retain(|_, ok| *ok);
        }
    }

    /// Every module any stack so far refers to, by the index frames carry.
    pub fn modules(&self) -> Vec<Module> {
        self.modules.clone()
    }

    fn module_of(&mut self, path: &str) -> usize {
        if let Some(&i) = self.module_index.get(path) {
            return i;
        }
        let build_id = blazesym::helper::read_elf_build_id(&std::path::Path::new(path))
            .ok()
            .flatten()
            .map(|id| id.iter().map(|b| format!("{b:02x}")).collect());
        let i = self.modules.len();
        self.modules.push(Module {
            path: path.to_string(),
            build_id,
        });
        self.module_index.insert(path.to_string(), i);
        i
    }

    /// Module index and file offset of an address, if it is in a file-backed mapping.
    fn locate(&mut self, addr: u64) -> Option<(usize, u64)> {
        let m = self.maps.lookup(addr)?;
        if !m.is_file() {
            return None;
        }
        let offset = addr - m.start + m.file_offset;
        let path = m.path.trim_end_matches(" (deleted)").to_string();
        Some((self.module_of(&path), offset))
    }

    /// Cuts a stack at its first impossible frame: an address in no executable mapping of the
    /// target (a non-canonical value, text or data read as a frame by a walk through code
    /// without frame pointers), or a return address in a file that does not follow a call.
    pub fn cut_implausible(&mut self, frames: &mut Vec<Addr>) -> Cut {
        let bad = frames.iter().position(|&a| !self.is_plausible(a));
        match bad {
            Some(i) => {
                frames.truncate(i);
                Cut::Cut
            }
            None => Cut::Whole,
        }
    }

    fn is_plausible(&mut self, a: Addr) -> bool {
        if let Some(&known) = self.plausible.get(&a) {
            return known;
        }
        let ok = match (a, self.maps.lookup(a.raw())) {
            (_, None) => false,
            // Code outside files (the vDSO, JIT code) has no bytes on disk to check.
            (Addr::Return(r), Some(m)) if m.is_file() => {
                self.code_before(r).is_some_and(|b| {
                    // Go starts every goroutine with `runtime.goexit`+1 as its first frame's
                    // return address: goexit opens with a one-byte NOP so that address lies
                    // inside it, and no call precedes it.
                    preceded_by_call(&b) || b[b.len() - 1] == 0x90
                })
            }
            (_, Some(_)) => true,
        };
        self.plausible.insert(a, ok);
        ok
    }

    /// Validates a leaf return address against the module's bytes on disk.
    pub fn is_return_address(&mut self, addr: u64) -> bool {
        self.code_before(addr).is_some_and(|b| preceded_by_call(&b))
    }

    /// The 7 bytes of the module file just before `addr` (enough for any call encoding).
    fn code_before(&mut self, addr: u64) -> Option<[u8; 7]> {
        let (module, offset) = self.locate(addr)?;
        let path = self.modules[module].path.clone();
        let file = self
            .files
            .entry(module)
            .or_insert_with(|| File::open(&path).ok())
            .as_ref()?;
        let mut before = [0u8; 7];
        let start = offset.checked_sub(before.len() as u64)?;
        file.read_exact_at(&mut before, start).ok()?;
        Some(before)
    }

    /// Symbolizes every stack in one batch per module.
    pub fn symbolize(&mut self, stacks: Vec<Vec<Addr>>) -> Vec<Stack> {
        // A debug file that arrived since: look that module up again.
        for path in self.sources.take_landed() {
            if let Some(&m) = self.module_index.get(&path) {
                self.resolved.retain(|&(rm, _), _| rm != m);
            }
        }
        let mut located: Vec<Vec<Located>> = Vec::with_capacity(stacks.len());
        let mut wanted: HashMap<usize, Vec<u64>> = HashMap::new();
        for s in &stacks {
            let mut row = Vec::with_capacity(s.len());
            for &a in s {
                let loc = self.locate(a.raw());
                if let Some((m, off)) = loc {
                    let key = off.saturating_sub(a.raw() - a.lookup());
                    if !self.resolved.contains_key(&(m, key)) {
                        match self.shared_names(m, key) {
                            Some(names) => {
                                self.resolved.insert((m, key), names);
                            }
                            None => wanted.entry(m).or_default().push(key),
                        }
                    }
                }
                row.push((a, loc));
            }
            located.push(row);
        }

        for m in wanted.keys() {
            self.sources.prepare(&self.modules[*m].path);
        }
        for (m, mut offsets) in wanted {
            offsets.sort_unstable();
            offsets.dedup();
            self.lookups += offsets.len() as u64;
            let found = self
                .sources
                .lookup(&self.symbolizer, &self.modules[m].path, &offsets);
            let share = self.shared.as_ref().zip(self.modules[m].build_id.as_ref());
            for (off, syms) in offsets.into_iter().zip(found) {
                if let Some((shared, id)) = share {
                    let mut shared = shared.borrow_mut();
                    if !syms.is_empty() && shared.len() < SHARED_NAMES_MAX {
                        shared.insert((id.clone(), off), syms.clone());
                    }
                }
                self.resolved.insert((m, off), syms);
            }
        }
        let resolved = &self.resolved;

        let out = located
            .into_iter()
            .map(|row| Stack {
                frames: row
                    .into_iter()
                    .map(|(a, loc)| Frame {
                        addr: a.raw(),
                        ret: matches!(a, Addr::Return(_)),
                        module: loc.map(|(m, _)| m),
                        offset: loc.map(|(_, o)| o),
                        syms: loc
                            .and_then(|(m, o)| {
                                resolved.get(&(m, o.saturating_sub(a.raw() - a.lookup())))
                            })
                            .cloned()
                            .unwrap_or_default(),
                    })
                    .collect(),
            })
            .collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_addresses_look_up_one_byte_back() {
        assert_eq!(Addr::Ip(0x1000).lookup(), 0x1000);
        assert_eq!(Addr::Return(0x1000).lookup(), 0xfff);
        assert_eq!(Addr::Return(0x1000).raw(), 0x1000);
    }

    #[test]
    fn garbage_frames_are_cut() {
        let mut maps = MapHistory::default();
        assert!(maps.refresh(std::process::id()));
        let mut sym = StackSymbolizer::new(maps);
        let ret = real_return_address();
        let text = u64::from_le_bytes(*b"ead erro");
        let noncanonical = 0x0c00_0056_16a4_9b9b_u64;
        let on_stack = 0u64;
        let stack = std::hint::black_box(&on_stack) as *const u64 as u64;
        let heap = Box::into_raw(Box::new(0u64));
        for junk in [text, noncanonical, stack, heap as u64, 0x10] {
            let mut frames = vec![
                Addr::Ip(ret),
                Addr::Return(ret),
                Addr::Return(junk),
                Addr::Return(ret),
            ];
            assert_eq!(sym.cut_implausible(&mut frames), Cut::Cut, "{junk:#x}");
            assert_eq!(frames.len(), 2, "{junk:#x}");
        }
        // SAFETY: the box leaked just above, freed once.
        drop(unsafe { Box::from_raw(heap) });
        let mut whole = vec![Addr::Ip(ret), Addr::Return(ret)];
        assert_eq!(sym.cut_implausible(&mut whole), Cut::Whole);
        assert_eq!(whole.len(), 2);
    }

    /// The return address of a real call in this binary (built with frame pointers).
    #[inline(never)]
    fn real_return_address() -> u64 {
        let ra: u64;
        // SAFETY: reads the return address this frame-pointer function saved at [rbp+8].
        unsafe { std::arch::asm!("mov {}, [rbp + 8]", out(reg) ra) };
        ra
    }

    /// Two processes of one binary: the second symbolizer takes every name from the first's
    /// through the build id, and looks nothing up itself.
    #[test]
    fn a_binary_is_symbolized_once_for_all_its_processes() {
        let mut maps = MapHistory::default();
        assert!(maps.refresh(std::process::id()));
        let shared = SharedNames::default();
        let stack = || {
            vec![vec![
                Addr::Ip(real_return_address()),
                Addr::Return(real_return_address()),
            ]]
        };
        let mut first = StackSymbolizer::new(maps.clone());
        first.share_names(shared.clone());
        let a = first.symbolize(stack());
        assert!(first.lookups > 0);
        assert!(!a[0].frames[0].syms.is_empty(), "{a:?}");
        let mut second = StackSymbolizer::new(maps);
        second.share_names(shared);
        let b = second.symbolize(stack());
        assert_eq!(second.lookups, 0);
        assert_eq!(a, b);
    }

    #[test]
    fn leaf_caller_is_inserted_once_and_only_when_valid() {
        let k = [0x1010, 0x1030, 0x1040];
        let f = frames_with_leaf(&k, 0x1020, |_| true);
        assert_eq!(
            f,
            vec![
                Addr::Ip(0x1010),
                Addr::Return(0x1020),
                Addr::Return(0x1030),
                Addr::Return(0x1040)
            ]
        );
        // The walk already has it (the leaf had a frame): no duplicate.
        assert_eq!(frames_with_leaf(&k, 0x1030, |_| true).len(), 3);
        // Not a return address: left out.
        assert_eq!(frames_with_leaf(&k, 0x1020, |_| false).len(), 3);
        // A walk through frameless code ends in garbage: cut at the first impossible address.
        let walked_off = [0x5000, 0x6000, 0x1, 0x7000];
        assert_eq!(frames_with_leaf(&walked_off, 0, |_| true).len(), 2);
        assert_eq!(frames_with_leaf(&k, 0, |_| true).len(), 3);
    }
}
