//! The module graph points one way, and docs/architecture.md draws it as it
//! is: the top-level modules of `src/` and which of them each one uses
//! (`crate::NAME`), test-only code left out. A new dependency that closes a
//! cycle fails here, naming the cycle; one that is not in the document fails
//! until the document says it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Files of `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Module names declared test-only (`#[cfg(test)] mod NAME;`) in `source`.
fn test_only_modules(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut lines = source.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line == "#[cfg(test)]" {
            if let Some(next) = lines.next() {
                let declared = next.trim_start_matches("pub(crate) ").trim_start_matches("pub ");
                if let Some(name) = declared.strip_prefix("mod ").and_then(|rest| rest.strip_suffix(';')) {
                    names.push(name.to_owned());
                }
            }
        }
    }
    names
}

/// The code of a file without its test module (by convention, last).
fn without_tests(source: &str) -> &str {
    match source.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &source[..at],
        None => source,
    }
}

/// Every top-level module `source` names after `crate::`, including those in
/// a `use crate::{a, b::c}` group.
fn used_modules(source: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut used = BTreeSet::new();
    for (at, _) in source.match_indices("crate::") {
        // `some_crate::` is another crate.
        if source[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &source[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && depth == 0 && !c.is_whitespace() => {
                        used.insert(ident(&group[i..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            used.insert(ident(rest));
        }
    }
    used.retain(|m| !m.is_empty());
    used
}

/// Top-level modules reached by `super::` chains from the module at
/// `module` (its path below `src/`, e.g. `["rules", "compile"]`).
fn super_uses(source: &str, module: &[String]) -> BTreeSet<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut used = BTreeSet::new();
    let mut rest = source;
    while let Some(at) = rest.find("super::") {
        let before = rest[..at].chars().next_back();
        let mut tail = &rest[at..];
        rest = &rest[at + "super::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue; // the middle of a chain, counted from its start
        }
        let mut ups = 0;
        while let Some(after) = tail.strip_prefix("super::") {
            ups += 1;
            tail = after;
        }
        let Some(kept) = module.len().checked_sub(ups) else { continue };
        let name = ident(tail);
        let top = if kept == 0 { name } else { module[0].clone() };
        if !top.is_empty() {
            used.insert(top);
        }
    }
    used
}

fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut test_only = BTreeSet::new();
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        // `mod x;` in a/mod.rs or in a.rs names a/x.rs or a/x/.
        let owner = if file.file_name().is_some_and(|n| n == "mod.rs") { dir } else { file.with_extension("") };
        for name in test_only_modules(&source) {
            test_only.insert(owner.join(&name));
        }
    }
    let mut graph = Graph::new();
    for file in &files {
        let relative = file.strip_prefix(src).unwrap_or(file);
        let top = relative.iter().next().and_then(|c| c.to_str()).unwrap_or_default().trim_end_matches(".rs");
        if top == "main" || top == "lib" {
            continue;
        }
        if test_only.iter().any(|t| file.with_extension("") == *t || file.starts_with(t)) {
            continue;
        }
        let source = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // The module path: `a/b.rs` and `a/b/mod.rs` are both `a::b`.
        let mut module: Vec<String> =
            relative.with_extension("").iter().filter_map(|c| c.to_str()).map(str::to_owned).collect();
        if module.last().is_some_and(|last| last == "mod") {
            module.pop();
        }
        let code = without_tests(&source);
        let deps = graph.entry(top.to_owned()).or_default();
        deps.extend(used_modules(code).into_iter().chain(super_uses(code, &module)).filter(|m| m != top));
    }
    graph
}

/// A cycle through `graph`, if there is one, as the path around it.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(node: &str, graph: &Graph, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// The graph as docs/architecture.md writes it: the lines of its
/// ```text module-graph block, `module → dep dep …`.
fn documented_graph(doc: &str) -> Graph {
    let block = doc
        .split("```text module-graph\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/architecture.md has a ```text module-graph block");
    block
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (module, deps) = line.split_once('→').unwrap_or((line, ""));
            (module.trim().to_owned(), deps.split_whitespace().map(str::to_owned).collect())
        })
        .collect()
}

fn render(graph: &Graph) -> String {
    let width = graph.keys().map(String::len).max().unwrap_or(0);
    graph
        .iter()
        .map(|(module, deps)| {
            let deps = deps.iter().map(String::as_str).collect::<Vec<_>>().join(" ");
            format!("{module:width$} → {deps}").trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_module_graph_has_no_cycle_and_is_the_one_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = module_graph(&root.join("src"));
    assert!(graph.len() > 10, "found too few modules: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("the module graph has a cycle: {}", cycle.join(" → "));
    }
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).expect("docs/architecture.md");
    let documented = documented_graph(&doc);
    assert!(
        documented == graph,
        "docs/architecture.md's module-graph block is not the code's; the code's is:\n{}",
        render(&graph)
    );
}

#[test]
fn the_scanner_sees_grouped_uses_and_cycles() {
    let used =
        used_modules("use crate::{config::{self, Env}, queue::X};\nfn f() { crate::github::go(); other_crate::x(); }");
    assert_eq!(used, BTreeSet::from(["config".to_owned(), "github".to_owned(), "queue".to_owned()]));
    let mut graph = Graph::new();
    graph.insert("a".into(), BTreeSet::from(["b".into()]));
    graph.insert("b".into(), BTreeSet::from(["c".into()]));
    graph.insert("c".into(), BTreeSet::new());
    assert_eq!(find_cycle(&graph), None);
    let module = ["rules".to_owned(), "compile".to_owned()];
    let used =
        super_uses("use super::super::config::Env; use super::plan; fn f() { super::super::github::x() }", &module);
    assert_eq!(used, BTreeSet::from(["config".to_owned(), "github".to_owned(), "rules".to_owned()]));
    graph.get_mut("c").expect("c").insert("a".into());
    assert_eq!(find_cycle(&graph).map(|c| c.join(" ")), Some("a b c a".into()));
}
