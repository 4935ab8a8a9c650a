//! The crate's shape, checked: imports between top-level modules point down a declared layer
//! order and never form a cycle, and the library never writes the process environment. The
//! layers and why they are in this order are in `ARCHITECTURE.md`; a new module must be placed
//! in [`LAYERS`] before this test passes.
//!
//! Imports are read from the source text (`crate::module` paths and `use crate::{…}` groups),
//! leaving out test-only code (`#[cfg(test)]` items and files): a test may reach any layer to
//! build its inputs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules, bottom layer first. A module may import from its own layer (as long as
/// no cycle forms) and from any layer below, never from one above.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "error", "fsutil", "limits", "json", "rng", "alloc", "threads", "faults", "clock",
            "process",
        ],
    ),
    (
        "values",
        &[
            "config",
            "trace",
            "schedule",
            "fingerprint",
            "stats",
            "kernels",
        ],
    ),
    (
        "producers",
        &[
            "params",
            "attention",
            "model",
            "optim",
            "data",
            "train",
            "import",
            "external",
        ],
    ),
    (
        "orchestration",
        &["experiment", "runner", "golden", "speed"],
    ),
    ("comparison", &["compare"]),
    ("reporting", &["report"]),
    ("verdict", &["gate", "calibrate"]),
    ("interface", &["cli"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Returns the module names `lib.rs` declares (`mod x;`, `pub mod x;`, `pub(crate) mod x;`).
fn declared_modules(lib: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in lib.lines().filter_map(|l| l.trim().strip_suffix(';')) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [.., "mod", name] = words.as_slice() {
            out.insert(name.to_string());
        }
    }
    out
}

/// Maps items `lib.rs` re-exports (`pub use gate::{check, …};`) to the module they come from, so
/// that `crate::Error` counts as an import of `error`.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stmt in lib.split(';') {
        let Some(path) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let mut words = path
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty());
        let Some(module) = words.next() else { continue };
        for item in words {
            out.insert(item.to_string(), module.to_string());
        }
    }
    out
}

/// Returns every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("src is readable").flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out
}

/// Returns `text` without comment lines and without `#[cfg(test)]` items, plus the files of
/// `#[cfg(test)] mod name;` declarations (which are test code too).
fn production_code(path: &Path, text: &str) -> (String, Vec<PathBuf>) {
    let children = match path.file_name().and_then(|n| n.to_str()) {
        Some("mod.rs") | Some("lib.rs") => path.parent().expect("in src").to_path_buf(),
        _ => path.with_extension(""),
    };
    let lines: Vec<&str> = (text.lines())
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    let (mut code, mut test_files) = (String::new(), Vec::new());
    let mut i = 0;
    while i < lines.len() {
        if is_test_gate(lines[i]) {
            let item = lines.get(i + 1).map_or("", |l| l.trim());
            if let Some(name) = item.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
                test_files.push(children.join(format!("{name}.rs")));
                test_files.push(children.join(name).join("mod.rs"));
                i += 2;
                continue;
            }
            // Skip the item: up to the line where its braces balance.
            let mut depth = 0i64;
            let mut opened = false;
            i += 1;
            while i < lines.len() {
                for ch in lines[i].chars() {
                    match ch {
                        '{' => (depth, opened) = (depth + 1, true),
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                i += 1;
                if (opened && depth <= 0) || (!opened && lines[i - 1].trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        code.push_str(lines[i]);
        code.push('\n');
        i += 1;
    }
    (code, test_files)
}

/// Returns whether `line` is a `#[cfg(…)]` that compiles only under test (`#[cfg(test)]`,
/// `#[cfg(all(test, target_os = "linux"))]`).
fn is_test_gate(line: &str) -> bool {
    let l = line.trim();
    l.starts_with("#[cfg(") && l.contains("test") && !l.contains("not(test")
}

/// Returns the first path segment after every `crate::` in `code`, and every first-level name
/// in `use crate::{…}` groups.
fn crate_references(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].ends_with('$') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut name = String::new();
            let mut expecting = true;
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 1 => break,
                    '}' => depth -= 1,
                    ',' if depth == 1 => expecting = true,
                    c if depth == 1 && expecting && (c.is_alphanumeric() || c == '_') => {
                        name.push(c)
                    }
                    _ if !name.is_empty() => {
                        out.push(std::mem::take(&mut name));
                        expecting = false;
                    }
                    _ => {}
                }
            }
            if !name.is_empty() {
                out.push(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

/// Returns the production code of every source file: test-only files left out, and
/// `#[cfg(test)]` items and comments cut from the others.
fn production_files() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut test_only = BTreeSet::new();
    for path in rust_files(&src()) {
        let text = std::fs::read_to_string(&path).expect("source is readable");
        let (code, tests) = production_code(&path, &text);
        test_only.extend(tests);
        files.push((path, code));
    }
    files.retain(|(p, _)| !test_only.contains(p));
    files
}

/// The import graph between top-level modules: `from → {to → files that import it}`.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn import_graph() -> (BTreeSet<String>, Graph) {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs is readable");
    let modules = declared_modules(&lib);
    let reexports = root_reexports(&lib);
    let mut graph = Graph::new();
    for (path, code) in production_files() {
        let rel = path.strip_prefix(src()).expect("under src");
        let first = rel.components().next().expect("non-empty path");
        let from = (first.as_os_str().to_string_lossy())
            .trim_end_matches(".rs")
            .to_string();
        if !modules.contains(&from) {
            continue; // lib.rs, main.rs
        }
        for name in crate_references(&code) {
            let to = match reexports.get(&name) {
                Some(m) if !modules.contains(&name) => m.clone(),
                _ => name,
            };
            if to != from && modules.contains(&to) {
                (graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default())
                .insert(rel.display().to_string());
            }
        }
    }
    (modules, graph)
}

fn layer_of(module: &str) -> Option<(usize, &'static str)> {
    LAYERS
        .iter()
        .enumerate()
        .find(|(_, (_, ms))| ms.contains(&module))
        .map(|(i, (name, _))| (i, *name))
}

/// Returns one cycle of `graph` as `a → b → … → a`, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|m| m.keys()) {
            if let Some(c) = visit(next, graph, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

#[test]
fn every_module_has_a_layer() {
    let (modules, _) = import_graph();
    let unplaced: Vec<&String> = modules.iter().filter(|m| layer_of(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "modules without a layer in tests/architecture.rs (and ARCHITECTURE.md): {unplaced:?}"
    );
}

#[test]
fn imports_never_point_up_a_layer() {
    let (_, graph) = import_graph();
    let mut violations = Vec::new();
    for (from, tos) in &graph {
        for (to, files) in tos {
            if let (Some((lf, nf)), Some((lt, nt))) = (layer_of(from), layer_of(to)) {
                if lt > lf {
                    violations.push(format!("{from} ({nf}) imports {to} ({nt}) in {files:?}"));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "upward imports:\n{}",
        violations.join("\n")
    );
}

#[test]
fn modules_import_each_other_without_a_cycle() {
    let (_, graph) = import_graph();
    if let Some(cycle) = find_cycle(&graph) {
        let files: Vec<String> = cycle
            .windows(2)
            .map(|w| format!("{} → {}: {:?}", w[0], w[1], graph[&w[0]][&w[1]]))
            .collect();
        panic!("import cycle {}\n{}", cycle.join(" → "), files.join("\n"));
    }
}

#[test]
fn the_cycle_finder_sees_a_two_module_cycle() {
    // The shape of the old `config` ↔ `faults` pair.
    let mut g = Graph::new();
    let edge = |to: &str| BTreeMap::from([(to.to_string(), BTreeSet::new())]);
    g.insert("config".into(), edge("faults"));
    g.insert("faults".into(), edge("config"));
    assert_eq!(
        find_cycle(&g),
        Some(vec!["config".into(), "faults".into(), "config".into()])
    );
}

#[test]
fn references_are_read_from_paths_and_use_groups_but_not_tests_or_comments() {
    let text = "use crate::{error::{Error, Result}, trace::Trace};\n\
                // crate::gate in a comment\n\
                fn f() { crate::limits::read(); }\n\
                #[cfg(test)]\n\
                mod tests {\n    use crate::compare;\n}\n";
    let (code, _) = production_code(Path::new("src/x.rs"), text);
    assert_eq!(crate_references(&code), ["error", "trace", "limits"]);
}

#[test]
fn only_the_binary_writes_the_process_environment() {
    // Another thread (a parallel test, candle reading RAYON_NUM_THREADS) may read it meanwhile.
    let writers: Vec<String> = (production_files().into_iter())
        .filter(|(path, _)| *path != src().join("main.rs"))
        .filter(|(_, code)| code.contains("env::set_var") || code.contains("env::remove_var"))
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(
        writers.is_empty(),
        "library code writes the environment: {writers:?}"
    );
}
