//! symsource: where each module's names come from, and the lookups against it.
//!
//! In order: the module's own `.symtab`/DWARF; a separate debug file found by build id or
//! `.gnu_debuglink` (debuginfo.rs); one fetched from a debuginfod server (debuginfod.rs); and
//! otherwise what the module still has: `.dynsym`, and a Go executable's `.gopclntab`. Frames a
//! debug file does not cover fall back to the module's own tables. When nothing names a
//! module's frames, `hint` says what would (the Debian `-dbgsym` package, a debug file path, or
//! `DEBUGINFOD_URLS`).
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

use blazesym::symbolize::{source::Elf, source::Source, Input, Symbolized, Symbolizer};

use super::debuginfo::{build_id_path, debug_roots, Found, ModuleFacts};
use super::debuginfod::Debuginfod;
use super::gopclntab::GoTable;
use crate::profile::Sym;

/// Whether lookups wait for a debuginfod fetch: `record` symbolizes after the recording and
/// waits (each fetch is bounded by its timeout); `top` never stalls a refresh for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchMode {
    Wait,
    Background,
}

enum Source_ {
    /// The module's own symbols (and, for Go, its PC table).
    Own,
    DebugFile(PathBuf, Found),
    Fetching(Receiver<Result<PathBuf, String>>),
    /// Why no server gave a debug file.
    FetchFailed(String),
}

struct Entry {
    facts: ModuleFacts,
    source: Source_,
    go: Option<Option<GoTable>>,
    package: Option<Option<String>>,
}

/// Chooses and remembers a symbol source per module path.
pub struct SymbolSources {
    roots: Vec<PathBuf>,
    debuginfod: Option<Debuginfod>,
    mode: FetchMode,
    entries: HashMap<String, Entry>,
    /// Modules whose background fetch has landed since `take_landed` was last called.
    landed: Vec<String>,
}

/// Longest a `Wait` lookup waits beyond the fetch's own timeout.
const WAIT_SLACK: Duration = Duration::from_secs(5);

impl SymbolSources {
    /// Debug roots and debuginfod servers from the environment.
    pub fn from_env() -> Self {
        SymbolSources {
            roots: debug_roots(),
            debuginfod: Debuginfod::from_env(),
            mode: FetchMode::Wait,
            entries: HashMap::new(),
            landed: Vec::new(),
        }
    }

    pub fn set_mode(&mut self, mode: FetchMode) {
        self.mode = mode;
    }

    /// Reads a module's facts and picks its source; starts a debuginfod fetch when that is
    /// the only way left to name it. Calling this for every module first lets the fetches run
    /// side by side.
    pub fn prepare(&mut self, path: &str) {
        if self.entries.contains_key(path) {
            return;
        }
        let facts = ModuleFacts::read(Path::new(path));
        let source = if facts.self_named {
            Source_::Own
        } else if let Some((p, how)) = facts.local_debug_file(Path::new(path), &self.roots) {
            Source_::DebugFile(p, how)
        } else {
            match (&self.debuginfod, &facts.build_id) {
                (Some(d), Some(id)) => Source_::Fetching(d.spawn(id)),
                _ => Source_::Own,
            }
        };
        self.entries.insert(
            path.to_string(),
            Entry {
                facts,
                source,
                go: None,
                package: None,
            },
        );
    }

    /// Settles a finished (or, in `Wait` mode, any) fetch of `path`.
    fn settle(&mut self, path: &str) {
        let mode = self.mode;
        let limit = self.debuginfod.as_ref().map(|d| d.timeout + WAIT_SLACK);
        let Some(e) = self.entries.get_mut(path) else {
            return;
        };
        let Source_::Fetching(rx) = &e.source else {
            return;
        };
        let got = match (mode, limit) {
            (FetchMode::Wait, Some(limit)) => rx.recv_timeout(limit).map_err(|e| match e {
                RecvTimeoutError::Timeout => "debuginfod fetch timed out".to_string(),
                RecvTimeoutError::Disconnected => "debuginfod fetch failed".to_string(),
            }),
            _ => match rx.try_recv() {
                Ok(r) => Ok(r),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => Err("debuginfod fetch failed".to_string()),
            },
        };
        e.source = match got.and_then(|r| r) {
            Ok(p) => {
                self.landed.push(path.to_string());
                Source_::DebugFile(p, Found::Debuginfod)
            }
            Err(why) => Source_::FetchFailed(why),
        };
    }

    /// Modules whose debug file arrived since the last call: their earlier lookups (made
    /// without it) should be redone.
    pub fn take_landed(&mut self) -> Vec<String> {
        let paths: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.source, Source_::Fetching(_)))
            .map(|(p, _)| p.clone())
            .collect();
        for p in paths {
            self.settle(&p);
        }
        std::mem::take(&mut self.landed)
    }

    /// Names of each file offset in module `path`, innermost function first (empty when
    /// nothing names it).
    pub fn lookup(
        &mut self,
        symbolizer: &Symbolizer,
        path: &str,
        offsets: &[u64],
    ) -> Vec<Vec<Sym>> {
        self.prepare(path);
        self.settle(path);
        let e = self.entries.get_mut(path).expect("prepared");
        let mut out: Vec<Vec<Sym>> = vec![Vec::new(); offsets.len()];
        if let Source_::DebugFile(debug, _) = &e.source {
            let (at, vaddrs): (Vec<usize>, Vec<u64>) = offsets
                .iter()
                .enumerate()
                .filter_map(|(i, &o)| e.facts.vaddr_of(o).map(|v| (i, v)))
                .unzip();
            let src = Source::Elf(Elf::new(debug));
            let found = symbolizer
                .symbolize(&src, Input::VirtOffset(&vaddrs))
                .unwrap_or_default();
            for (i, r) in at.into_iter().zip(found) {
                if let Symbolized::Sym(sym) = r {
                    out[i] = syms_innermost_first(&sym);
                }
            }
        }
        let (at, rest): (Vec<usize>, Vec<u64>) = offsets
            .iter()
            .enumerate()
            .filter(|(i, _)| out[*i].is_empty())
            .map(|(i, &o)| (i, o))
            .unzip();
        if !rest.is_empty() {
            let src = Source::Elf(Elf::new(path));
            let found = symbolizer
                .symbolize(&src, Input::FileOffset(&rest))
                .unwrap_or_default();
            for (i, r) in at.into_iter().zip(found) {
                if let Symbolized::Sym(sym) = r {
                    out[i] = syms_innermost_first(&sym);
                }
            }
        }
        if e.facts.gopclntab && !e.facts.self_named {
            let table = e.go.get_or_insert_with(|| GoTable::open(Path::new(path)));
            if let Some(t) = table {
                for (i, &o) in offsets.iter().enumerate() {
                    if !out[i].is_empty() {
                        continue;
                    }
                    if let Some(v) = e.facts.vaddr_of(o) {
                        out[i] = t
                            .frames(v)
                            .into_iter()
                            .map(|f| Sym {
                                name: f.name,
                                file: f.file,
                                line: f.line,
                            })
                            .collect();
                    }
                }
            }
        }
        out
    }

    /// What would name a module's unnamed frames, for the header.
    pub fn hint(&mut self, path: &str) -> String {
        self.prepare(path);
        let root = self.roots.first().cloned().unwrap_or_default();
        let servers = self.debuginfod.is_some();
        let e = self.entries.get_mut(path).expect("prepared");
        match &e.source {
            Source_::DebugFile(p, how) => {
                return format!(
                    "its debug file ({}, by {}) does not cover them",
                    p.display(),
                    how.name()
                )
            }
            Source_::Own if e.facts.self_named => {
                return "its symbol table does not cover them".into()
            }
            _ => {}
        }
        let package = e
            .package
            .get_or_insert_with(|| debian_package(Path::new(path)))
            .clone();
        let install = match (package, &e.facts.build_id) {
            (Some(p), _) => format!("install {p}-dbgsym"),
            (None, Some(id)) => match build_id_path(&root, id) {
                Some(at) => format!("put its debug file at {}", at.display()),
                None => "rebuild it with symbols".into(),
            },
            (None, None) => "rebuild it with symbols".into(),
        };
        let remote = match &e.source {
            _ if e.facts.build_id.is_none() => String::new(),
            Source_::Fetching(_) => " (debuginfod fetch still running)".into(),
            Source_::FetchFailed(why) => format!(" (debuginfod: {why})"),
            _ if !servers => " (or set DEBUGINFOD_URLS)".into(),
            _ => String::new(),
        };
        format!("{install}{remote}")
    }
}

/// The Debian package that installed `path` (`dpkg -S`), trying the path without `/usr` too
/// (merged-/usr systems list libraries under `/lib`).
fn debian_package(path: &Path) -> Option<String> {
    let s = path.to_str()?;
    let alt = s.strip_prefix("/usr").map(str::to_string);
    std::iter::once(s.to_string()).chain(alt).find_map(|p| {
        let out = std::process::Command::new("dpkg")
            .args(["-S", &p])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let (pkgs, _) = text.lines().next()?.split_once(": ")?;
        let pkg = pkgs.split(", ").next()?;
        Some(pkg.split(':').next()?.to_string())
    })
}

/// blazesym reports a function `f` with the calls inlined into it, outermost first (`[g, h]`),
/// each with its own location in its own source (checked here: `f`'s code info is the line in
/// `f`). Innermost first: h, g, f.
fn syms_innermost_first(sym: &blazesym::symbolize::Sym<'_>) -> Vec<Sym> {
    let make = |name: &str, ci: Option<&blazesym::symbolize::CodeInfo<'_>>| Sym {
        name: name.to_string(),
        file: ci.map(|c| c.file.to_string_lossy().into_owned()),
        line: ci.and_then(|c| c.line),
    };
    sym.inlined
        .iter()
        .rev()
        .map(|f| make(&f.name, f.code_info.as_ref()))
        .chain(std::iter::once(make(&sym.name, sym.code_info.as_deref())))
        .collect()
}

#[cfg(test)]
#[path = "symsource_tests.rs"]
mod tests;
