//! The library's module graph stays a stack of layers: this test reads every `use` and
//! every `crate::`/`super::`/`self::` path in `src/` and fails on a module that imports from
//! a layer above it, or on a cycle among the modules of any one folder.
//!
//! The layers, bottom up, are the top-level modules of `src/lib.rs`:
//! `model` (values) → `core` (the state machine) → `link` (sockets and tasks) → `api`
//! (what applications hold). A module and its own submodules count as one room: `core` may
//! use `core::mesh` and `core::mesh::relay` may use `super::Core`; siblings such as
//! `core::mesh::relay` and `core::mesh::subs` may use one another in one direction only.

#![allow(clippy::unwrap_used)] // a test: it fails loudly

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The top-level modules, lowest layer first.
const LAYERS: [&str; 4] = ["model", "core", "link", "api"];

/// A module path below the crate root, e.g. `["core", "mesh", "relay"]`.
type ModPath = Vec<String>;

/// One reference from a file to a module.
struct Reference {
    from: ModPath,
    to: ModPath,
    line: usize,
    file: PathBuf,
}

#[test]
fn modules_import_downward_only_and_no_folder_has_an_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&src);
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut references = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let text = strip_comments_and_strings(&fs::read_to_string(file).unwrap());
        for (line, path) in paths_in(&text) {
            if let Some(to) = resolve(&module, &path, &modules) {
                references.push(Reference {
                    from: module.clone(),
                    to,
                    line,
                    file: file.clone(),
                });
            }
        }
    }
    assert!(
        references.len() > 100,
        "the scan found too few references to be reading the code: {}",
        references.len()
    );

    // Edges between siblings: the first modules where the two paths part.
    let mut edges: BTreeMap<(ModPath, String, String), Vec<String>> = BTreeMap::new();
    for r in &references {
        let common = r.from.iter().zip(&r.to).take_while(|(a, b)| a == b).count();
        if common == r.from.len() || common == r.to.len() {
            continue; // a module and its own ancestor or descendant
        }
        let key = (
            r.from[..common].to_vec(),
            r.from[common].clone(),
            r.to[common].clone(),
        );
        let file = r.file.strip_prefix(&src).unwrap_or(&r.file);
        let evidence = format!("src/{}:{} uses {}", file.display(), r.line, r.to.join("::"));
        edges.entry(key).or_default().push(evidence);
    }

    let mut problems = Vec::new();
    // The layers: nothing at the top level points upward.
    for ((parent, from, to), evidence) in &edges {
        let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
        if parent.is_empty()
            && let (Some(f), Some(t)) = (rank(from), rank(to))
            && t > f
        {
            problems.push(format!(
                "{from} (layer {f}) uses {to} (layer {t}), a layer above it: {}",
                evidence[0]
            ));
        }
    }
    // Each folder: its modules' graph has no cycle.
    let mut by_parent: BTreeMap<&ModPath, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
    for (parent, from, to) in edges.keys() {
        by_parent
            .entry(parent)
            .or_default()
            .entry(from.as_str())
            .or_default()
            .insert(to.as_str());
    }
    for (parent, graph) in &by_parent {
        if let Some(cycle) = find_cycle(graph) {
            let steps: Vec<String> = cycle
                .windows(2)
                .map(|w| {
                    let key = ((*parent).clone(), w[0].to_owned(), w[1].to_owned());
                    edges[&key][0].clone()
                })
                .collect();
            problems.push(format!(
                "import cycle in crate::{}: {} ({})",
                parent.join("::"),
                cycle.join(" -> "),
                steps.join("; ")
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// `src/lib.rs` is the root, `src/a/mod.rs` and `src/a.rs` are `a`, `src/a/b.rs` is `a::b`.
fn module_of(src: &Path, file: &Path) -> ModPath {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: ModPath = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The text with comments and the contents of string literals blanked (lines kept), so that
/// paths in docs and messages are not taken for imports.
fn strip_comments_and_strings(text: &str) -> String {
    let bytes: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < bytes.len() && bytes[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            while i + 1 < bytes.len() && !(bytes[i] == '*' && bytes[i + 1] == '/') {
                if bytes[i] == '\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < bytes.len() && bytes[i] != '"' {
                if bytes[i] == '\\' {
                    i += 1;
                } else if bytes[i] == '\n' {
                    out.push('\n');
                }
                i += 1;
            }
            out.push('"');
            i += 1;
        } else if c == '\'' && next.is_some_and(|n| n != '\\') && bytes.get(i + 2) == Some(&'\'') {
            // A character literal such as '"' or '{'.
            out.push_str("' '");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Every path that may name a module: the paths of `use` items (with their braces expanded)
/// and every `crate::…`, `super::…` and `self::…` path elsewhere. With the line it is on.
fn paths_in(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    let mut rest = 0;
    while let Some(at) = find_word(text, "use", rest) {
        let end = text[at..].find(';').map_or(text.len(), |e| at + e);
        let tree = text[at + 3..end].trim();
        let tree = tree.strip_prefix("pub(crate)").unwrap_or(tree).trim();
        for path in expand(tree) {
            found.push((line_of(at), path));
        }
        rest = end;
    }
    for root in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(pos) = text[from..].find(root) {
            let start = from + pos;
            from = start + root.len();
            let before = text[..start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String = text[start..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            found.push((line_of(start), split(&path)));
        }
    }
    found
}

/// The position of `word` as a whole word (a keyword starting an item) at or after `from`.
fn find_word(text: &str, word: &str, from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(pos) = text[at..].find(word) {
        let start = at + pos;
        let before = text[..start].chars().next_back();
        let after = text[start + word.len()..].chars().next();
        let boundary = |c: Option<char>| !c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if boundary(before) && after.is_some_and(char::is_whitespace) {
            return Some(start);
        }
        at = start + word.len();
    }
    None
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e` (as segment lists).
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(&tree);
        return vec![split(path.split("as").next().unwrap_or(path))];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.len().saturating_sub(1)];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(&format!("{prefix}{p}")))
        .collect()
}

fn split(path: &str) -> Vec<String> {
    path.split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The module a path from `module` names (its longest prefix that is a module), if it is a
/// module of this crate.
fn resolve(module: &ModPath, path: &[String], modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    let mut base: ModPath;
    let mut segments = path;
    match segments.first().map(String::as_str) {
        Some("crate") => {
            base = Vec::new();
            segments = &segments[1..];
        }
        Some("self") => {
            base = module.clone();
            segments = &segments[1..];
        }
        Some("super") => {
            base = module.clone();
            while segments.first().map(String::as_str) == Some("super") {
                base.pop()?;
                segments = &segments[1..];
            }
        }
        Some(first) => {
            // A path that starts with a child module's name (`use mesh::Mesh;` in `core`).
            let mut child = module.clone();
            child.push(first.to_owned());
            if !modules.contains(&child) {
                return None;
            }
            base = module.clone();
        }
        None => return None,
    }
    let mut resolved = base;
    for segment in segments {
        let mut next = resolved.clone();
        next.push(segment.clone());
        if !modules.contains(&next) {
            break;
        }
        resolved = next;
    }
    Some(resolved)
}

/// A cycle in a directed graph, as the list of its nodes (first repeated last), if any.
fn find_cycle<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Option<Vec<&'a str>> {
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node);
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn the_scan_sees_the_kinds_of_import_it_checks() {
    let text = strip_comments_and_strings(
        "use crate::{a::B, c::{d::E, F}};\n// use crate::hidden;\nlet s = \"crate::no\";\nx = super::super::g::H;\n",
    );
    let paths: BTreeSet<String> = paths_in(&text)
        .into_iter()
        .map(|(_, p)| p.join("::"))
        .collect();
    let expected = [
        "crate",
        "crate::a::B",
        "crate::c::F",
        "crate::c::d::E",
        "super::super::g::H",
    ];
    assert_eq!(paths, expected.iter().map(|p| (*p).to_owned()).collect());
    let modules: BTreeSet<ModPath> = [
        vec![],
        vec!["a".into()],
        vec!["g".into()],
        vec!["x".into(), "y".into()],
    ]
    .into_iter()
    .collect();
    let from: ModPath = vec!["x".into(), "y".into()];
    let g = Some(vec!["g".to_owned()]);
    assert_eq!(resolve(&from, &split("super::super::g::H"), &modules), g);
    let a = Some(vec!["a".to_owned()]);
    assert_eq!(resolve(&from, &split("crate::a::B"), &modules), a);
    assert_eq!(resolve(&from, &split("std::sync::Arc"), &modules), None);
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    graph.entry("p").or_default().insert("q");
    graph.entry("q").or_default().insert("r");
    assert_eq!(find_cycle(&graph), None);
    graph.entry("r").or_default().insert("p");
    assert_eq!(find_cycle(&graph), Some(vec!["p", "q", "r", "p"]));
}
