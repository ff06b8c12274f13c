//! The control plane's module structure, checked from its sources: no module imports from a
//! module that depends on it (no cycles between modules other than a module and its own
//! submodules), nothing imports from the crate root (`lib.rs` keeps the router and
//! `Application`, not shared definitions), and no source file outgrows one sitting.
//!
//! Imports are read from `use crate::…` / `use super::…` trees and from `crate::…` paths in code
//! (comments are skipped); each path is resolved to the deepest module file it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest source file, in lines (test files `tests.rs` excepted: they have their own bound).
const MAX_SOURCE_LINES: usize = 520;
/// Longest test file, in lines.
const MAX_TEST_LINES: usize = 620;

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|entry| entry.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file (`store/sql/mod.rs` → `["store", "sql"]`), or `None` for
/// the binary and for test-only files.
fn module_of(src: &Path, file: &Path) -> Option<Vec<String>> {
    let relative = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    if last == "main.rs" && parts.is_empty() {
        return None;
    }
    if last == "tests.rs" || parts.iter().any(|part| part == "tests") {
        return None;
    }
    match last.as_str() {
        "lib.rs" | "mod.rs" => {}
        other => parts.push(other.trim_end_matches(".rs").to_owned()),
    }
    Some(parts)
}

/// The code of a file without its comments (line comments and doc comments).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string literal (a URL) is kept only when a quote precedes it.
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path (as segments, starting with `crate`, `super` or `self`) named by the file's `use`
/// trees and by `crate::` paths in its code.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let boundary = i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_');
        let starts = ["crate::", "super::", "self::"]
            .iter()
            .find(|prefix| rest.starts_with(&prefix[..prefix.len().min(rest.len())]))
            .filter(|prefix| {
                let text: String = bytes[i..bytes.len().min(i + prefix.len())].iter().collect();
                text == **prefix
            });
        if let (true, Some(prefix)) = (boundary, starts) {
            let head = prefix.trim_end_matches("::").to_owned();
            i += prefix.len();
            let (tree, next) = read_tree(&bytes, i);
            for mut tail in tree {
                let mut path = vec![head.clone()];
                path.append(&mut tail);
                paths.push(path);
            }
            i = next;
        } else {
            i += 1;
        }
    }
    paths
}

/// Reads a use tree at `i` (`a::b::{c, d::e}` or a plain path); every leaf path, and where it
/// ends.
fn read_tree(chars: &[char], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    loop {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i < chars.len() && chars[i] == '{' {
            i += 1;
            let mut leaves = Vec::new();
            loop {
                while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                    i += 1;
                }
                if i >= chars.len() || chars[i] == '}' {
                    i += 1;
                    break;
                }
                let (inner, next) = read_tree(chars, i);
                for mut leaf in inner {
                    let mut path = prefix.clone();
                    path.append(&mut leaf);
                    leaves.push(path);
                }
                i = next;
                // Skip an `as name` and anything else up to the separator.
                while i < chars.len() && chars[i] != ',' && chars[i] != '}' {
                    i += 1;
                }
            }
            return (leaves, i);
        }
        let start = i;
        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        if start == i {
            return (vec![prefix], i);
        }
        prefix.push(chars[start..i].iter().collect());
        if i + 1 < chars.len() && chars[i] == ':' && chars[i + 1] == ':' {
            i += 2;
        } else {
            return (vec![prefix], i);
        }
    }
}

/// The deepest known module a path from `module` names (`None`: outside the crate's modules).
fn resolve(
    module: &[String],
    path: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let mut absolute: Vec<String> = Vec::new();
    let mut segments = path.iter();
    match segments.next()?.as_str() {
        "crate" => {}
        "self" => absolute.extend_from_slice(module),
        "super" => {
            absolute.extend_from_slice(module);
            absolute.pop()?;
        }
        _ => return None,
    }
    let mut rest: Vec<&String> = segments.collect();
    while rest.first().is_some_and(|segment| *segment == "super") {
        absolute.pop()?;
        rest.remove(0);
    }
    let mut deepest = absolute.clone();
    for segment in rest {
        absolute.push(segment.clone());
        if modules.contains(&absolute) {
            deepest = absolute.clone();
        } else {
            break;
        }
    }
    Some(deepest)
}

fn is_within(inner: &[String], outer: &[String]) -> bool {
    inner.len() >= outer.len() && inner[..outer.len()] == *outer
}

struct Graph {
    /// Module → the modules it imports from (not its own ancestors or descendants).
    imports: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    /// `(module, path)` of every import from the crate root.
    from_root: Vec<(String, String)>,
}

fn read_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    source_files(src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .filter_map(|file| module_of(src, file).map(|module| (module, file.clone())))
        .collect();
    let known: BTreeSet<Vec<String>> = modules.keys().cloned().collect();
    let mut graph = Graph {
        imports: BTreeMap::new(),
        from_root: Vec::new(),
    };
    for (module, file) in &modules {
        let code = code_of(&std::fs::read_to_string(file).expect("read source"));
        let targets = graph.imports.entry(module.clone()).or_default();
        for path in paths_in(&code) {
            // `use super::*` in a file's inline tests: the file itself.
            if path.len() == 1 {
                continue;
            }
            let Some(target) = resolve(module, &path, &known) else {
                continue;
            };
            if target.is_empty() && !module.is_empty() {
                graph.from_root.push((module.join("::"), path.join("::")));
            }
            if !is_within(&target, module) && !is_within(module, &target) {
                targets.insert(target);
            }
        }
    }
    graph
}

/// A cycle through the module `start` (a file, or a folder with every file in it), if any: the
/// modules on it, in order. An import of a module counts as a dependency on every file in it (a
/// `mod.rs` re-exports what its submodules define); imports within `start` do not count.
fn cycle_from(graph: &Graph, start: &[String]) -> Option<Vec<String>> {
    let outside = |module: &Vec<String>| !is_within(module, start);
    let mut stack: Vec<(Vec<String>, Vec<String>)> = graph
        .imports
        .keys()
        .filter(|file| is_within(file, start))
        .map(|file| (file.clone(), vec![file.join("::")]))
        .collect();
    let mut seen = BTreeSet::new();
    while let Some((module, trail)) = stack.pop() {
        let leaving = !outside(&module);
        for target in graph.imports.get(&module).into_iter().flatten() {
            // Imports from the root are another test's concern.
            if target.is_empty() || (leaving && !outside(target)) {
                continue;
            }
            if !leaving && (is_within(target, start) || is_within(start, target)) {
                let mut cycle = trail.clone();
                cycle.push(target.join("::"));
                return Some(cycle);
            }
            for file in graph.imports.keys().filter(|file| is_within(file, target)) {
                if outside(file) && seen.insert(file.clone()) {
                    let mut longer = trail.clone();
                    longer.push(file.join("::"));
                    stack.push((file.clone(), longer));
                }
            }
        }
    }
    None
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_imports_from_a_module_that_depends_on_it() {
    let graph = read_graph(&src_dir());
    assert!(graph.imports.len() > 20, "the sources were read");
    let cycles: Vec<String> = graph
        .imports
        .keys()
        .filter_map(|module| cycle_from(&graph, module))
        .map(|cycle| cycle.join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn nothing_imports_from_the_crate_root() {
    let graph = read_graph(&src_dir());
    assert!(
        graph.from_root.is_empty(),
        "imports of lib.rs's own items (move them to the module they belong to): {:?}",
        graph.from_root
    );
}

#[test]
fn source_files_fit_one_sitting() {
    let mut files = Vec::new();
    source_files(&src_dir(), &mut files);
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    source_files(&tests, &mut files);
    let too_long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let lines = std::fs::read_to_string(file).expect("read").lines().count();
            let is_test = file.starts_with(&tests) || file.ends_with("tests.rs");
            let bound = if is_test {
                MAX_TEST_LINES
            } else {
                MAX_SOURCE_LINES
            };
            (lines > bound).then(|| format!("{} ({lines} lines, bound {bound})", file.display()))
        })
        .collect();
    assert!(too_long.is_empty(), "files too long: {too_long:?}");
}

#[test]
fn the_checker_finds_a_cycle_and_an_import_from_the_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path();
    std::fs::create_dir_all(src.join("a")).expect("dir");
    std::fs::write(
        src.join("lib.rs"),
        "pub mod a; pub mod b; pub const X: u8 = 1;",
    )
    .expect("lib");
    std::fs::write(
        src.join("a/mod.rs"),
        "//! uses b\nuse crate::b::Thing; // crate::c in a comment\npub mod inner;",
    )
    .expect("a");
    std::fs::write(src.join("a/inner.rs"), "use super::super::X;").expect("inner");
    std::fs::write(
        src.join("b.rs"),
        "use crate::{a::inner::{self as i}, X as _};",
    )
    .expect("b");
    let graph = read_graph(src);
    // b imports a::inner, which imports nothing but the root: no cycle through b or a::inner.
    assert_eq!(cycle_from(&graph, &["b".to_owned()]), None);
    // a imports b, b imports a::inner (in a): a cycle through a.
    let cycle = cycle_from(&graph, &["a".to_owned()]).expect("a -> b -> a::inner");
    assert_eq!(cycle, ["a", "b", "a::inner"]);
    assert!(
        graph
            .from_root
            .iter()
            .any(|(module, _)| module == "a::inner")
    );
    assert!(graph.from_root.iter().any(|(module, _)| module == "b"));
}
