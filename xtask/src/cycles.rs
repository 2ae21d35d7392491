//! `cargo xtask cycles`: the import graph of tracer-user's top-level modules, lockscope-profile's
//! and xtask's, and any cycle in them. A module is a file or folder directly under src/
//! (tracer-user's folders are the pipeline's stages: cli, commands, attach, collect, …;
//! lockscope-profile's are profile, knowledge, analyze, render); it depends on another when
//! any of its files names `crate::other`. xtask's `bench/` folder is checked one level down too
//! (its files name each other as `super::x` or `crate::bench::x`), so no benchmark and its
//! helpers import each other back. A cycle means two modules know each other, so neither can
//! be read, tested or moved alone. `cargo xtask test` fails on one.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::run::root;

/// Top-level module → the top-level modules it names.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file under `src` belongs to (`src/a.rs`, `src/a/…` → `a`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (name != "main" && name != "lib" && name != "mod").then_some(name)
}

/// Every `PREFIXNAME` in `text` for each of `prefixes` (e.g. `crate::`), comments left out.
fn refs(text: &str, prefixes: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in prefixes {
        prefixed_refs(text, prefix, &mut out);
    }
    out
}

fn prefixed_refs(text: &str, prefix: &str, out: &mut BTreeSet<String>) {
    let group = format!("{prefix}{{");
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            rest = &rest[i + prefix.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
        // `use crate::{a, b::c}` names several.
        if let Some(i) = code.find(&group) {
            let inner = &code[i + group.len()..];
            for part in inner.split([',', '}']) {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
}

/// The graph of the modules directly under `src`, where a file names another module as
/// `PREFIXNAME` for one of `prefixes`.
fn graph_with(src: &Path, prefixes: &[&str]) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(src, f)).collect();
    let mut g: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for f in &files {
        let Some(m) = module_of(src, f) else { continue };
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for r in refs(&text, prefixes) {
            if r != m && modules.contains(&r) {
                g.entry(m.clone()).or_default().insert(r);
            }
        }
    }
    g
}

/// The strongly connected components with more than one module (Tarjan).
pub fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// The shortest closed path through the modules of one cycle (first module repeated at the
/// end): usually the one back-edge to undo.
fn shortest_loop(g: &Graph, cycle: &[String]) -> Vec<String> {
    let mut best: Vec<String> = Vec::new();
    for start in cycle {
        // Breadth-first from `start` inside the cycle, back to `start`.
        let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.as_str()]);
        let mut found = None;
        while let Some(v) = queue.pop_front() {
            for w in g.get(v).into_iter().flatten() {
                if !cycle.contains(w) {
                    continue;
                }
                if w == start {
                    found = Some(v);
                    break;
                }
                if !prev.contains_key(w.as_str()) {
                    prev.insert(w, v);
                    queue.push_back(w);
                }
            }
            if found.is_some() {
                break;
            }
        }
        let Some(mut v) = found else { continue };
        let mut path = vec![start.clone()];
        while v != start {
            path.push(v.to_string());
            v = prev[v];
        }
        path.push(start.clone());
        path.reverse();
        if best.is_empty() || path.len() < best.len() {
            best = path;
        }
    }
    best
}

/// How many of the graph's modules are folders, and which are single files.
fn folders_and_files(src: &Path, g: &Graph) -> (usize, Vec<String>) {
    let (folders, files): (Vec<&String>, Vec<&String>) =
        g.keys().partition(|m| src.join(m).is_dir());
    (
        folders.len(),
        files.into_iter().map(|m| format!("{m}.rs")).collect(),
    )
}

/// One import graph checked: where its files are, how it is named, and how its files name
/// each other.
struct Tree {
    dir: &'static str,
    prefixes: &'static [&'static str],
}

const TREES: [Tree; 4] = [
    Tree {
        dir: "tracer-user/src",
        prefixes: &["crate::"],
    },
    Tree {
        dir: "lockscope-profile/src",
        prefixes: &["crate::"],
    },
    Tree {
        dir: "xtask/src",
        prefixes: &["crate::"],
    },
    Tree {
        dir: "xtask/src/bench",
        prefixes: &["super::", "crate::bench::"],
    },
];

pub fn run() -> Result<()> {
    let mut found = 0;
    for tree in &TREES {
        found += check(&root().join(tree.dir), tree)?;
    }
    if found > 0 {
        bail!(
            "{found} import cycle(s) among the modules above: move the shared piece down a level"
        );
    }
    Ok(())
}

/// Prints one tree's graph and its cycles; returns how many cycles.
fn check(src: &Path, tree: &Tree) -> Result<usize> {
    if !src.is_dir() {
        bail!(
            "{} is missing: run xtask from the lockscope checkout",
            src.display()
        );
    }
    let g = graph_with(src, tree.prefixes);
    let found = cycles(&g);
    let (folders, files) = folders_and_files(src, &g);
    let edges: usize = g.values().map(BTreeSet::len).sum();
    eprintln!(
        "    {}: {} modules ({folders} folders; files: {}), {edges} edges",
        tree.dir,
        g.len(),
        files.join(", ")
    );
    if found.is_empty() {
        eprintln!("    ok: no import cycle among them");
        return Ok(0);
    }
    for c in &found {
        let edges: Vec<String> = c
            .iter()
            .flat_map(|a| {
                g[a].iter()
                    .filter(|b| c.contains(b))
                    .map(move |b| format!("{a} → {b}"))
            })
            .collect();
        eprintln!("    cycle: {} ({})", c.join(", "), edges.join(", "));
        eprintln!(
            "    shortest loop in it: {}",
            shortest_loop(&g, c).join(" → ")
        );
    }
    Ok(found.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(edges: &[(&str, &str)]) -> Graph {
        let mut g = Graph::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    }

    #[test]
    fn cycles_are_found_and_chains_are_not() {
        assert!(cycles(&g(&[("a", "b"), ("b", "c")])).is_empty());
        assert_eq!(
            cycles(&g(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])),
            vec![vec!["a".to_string(), "b".into(), "c".into()]]
        );
    }

    #[test]
    fn folders_are_one_module_each_and_main_is_none() {
        let src = std::env::temp_dir().join(format!("xtask-cycles-{}", std::process::id()));
        let write = |rel: &str, text: &str| {
            let p = src.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("main.rs", "mod low; mod high; use crate::high::x;");
        write("high/mod.rs", "mod inner;");
        write("high/inner.rs", "use crate::low::Y; use crate::high::Z;");
        write("low/mod.rs", "");
        write("low/deep/leaf.rs", "fn f() { crate::tool::g() }");
        write("tool.rs", "// crate::high is only named in a comment");
        let g = graph_with(&src, &["crate::"]);
        let (folders, files) = folders_and_files(&src, &g);
        std::fs::remove_dir_all(&src).unwrap();
        let edges: Vec<(&str, &str)> = g
            .iter()
            .flat_map(|(a, bs)| bs.iter().map(move |b| (a.as_str(), b.as_str())))
            .collect();
        assert_eq!(edges, vec![("high", "low"), ("low", "tool")]);
        assert_eq!((folders, files), (2, vec!["tool.rs".to_string()]));
        assert!(cycles(&g).is_empty());
    }

    #[test]
    fn the_shortest_loop_names_the_back_edge() {
        let g = g(&[
            ("cli", "commands"),
            ("commands", "render"),
            ("render", "analyze"),
            ("analyze", "profile"),
            ("commands", "profile"),
            ("profile", "commands"),
        ]);
        let c = cycles(&g);
        assert_eq!(c.len(), 1);
        assert_eq!(
            shortest_loop(&g, &c[0]),
            vec!["commands", "profile", "commands"]
        );
    }

    #[test]
    fn sibling_files_naming_each_other_through_super_are_a_cycle() {
        let src = std::env::temp_dir().join(format!("xtask-cycles-super-{}", std::process::id()));
        std::fs::create_dir_all(&src).unwrap();
        let write = |rel: &str, text: &str| std::fs::write(src.join(rel), text).unwrap();
        write("mod.rs", "pub mod a; pub mod b; mod helpers;");
        write("a.rs", "use super::{helpers, median};");
        write("b.rs", "use crate::bench::a::run;");
        write("helpers.rs", "");
        let ok = graph_with(&src, &["super::", "crate::bench::"]);
        write("a.rs", "use super::b::run; use super::helpers::x;");
        let looped = graph_with(&src, &["super::", "crate::bench::"]);
        std::fs::remove_dir_all(&src).unwrap();
        assert!(cycles(&ok).is_empty(), "{ok:?}");
        assert_eq!(ok["b"], BTreeSet::from(["a".to_string()]));
        assert_eq!(cycles(&looped), vec![vec!["a".to_string(), "b".into()]]);
    }

    #[test]
    fn references_are_read_from_paths_and_use_groups() {
        let r = refs(
            "use crate::{attach, bundled::X};\nlet x = crate::render::f(); // crate::nope\n",
            &["crate::"],
        );
        assert_eq!(
            r.into_iter().collect::<Vec<_>>(),
            vec!["attach", "bundled", "render"]
        );
    }
}
