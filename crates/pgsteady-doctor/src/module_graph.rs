//! No two files of this crate import each other, directly or around a circle: each file is a
//! module (the crate is flat), and a file depends on another when its code (comments
//! excluded) names `crate::other` or lists `other` in `use crate::{...}`. The test reads the
//! sources, so a new circle fails `cargo test` naming the files that form it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Code without `//` comments (doc comments included: they may name modules in prose).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `text` names through `crate::`.
fn uses(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let code = code(text);
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group
                .split('}')
                .next()
                .unwrap_or("")
                .split(',')
                .map(|n| n.trim().split("::").next().unwrap_or("").trim())
                .collect(),
            None => vec![
                rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or(""),
            ],
        };
        out.extend(
            names
                .into_iter()
                .filter(|n| modules.contains(*n))
                .map(str::to_owned),
        );
    }
    out
}

/// A circle in `graph`, as the modules on it, if there is one.
fn circle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_file_imports_another_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files: Vec<_> = std::fs::read_dir(&src)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|p| p.file_stem()?.to_str().map(str::to_owned))
        .filter(|m| m != "lib")
        .collect();
    let mut graph = Graph::new();
    for file in &files {
        let name = file.file_stem().unwrap().to_str().unwrap().to_owned();
        if name == "lib" || name == "module_graph" {
            continue;
        }
        let mut deps = uses(&std::fs::read_to_string(file).unwrap(), &modules);
        deps.remove(&name);
        graph.insert(name, deps);
    }
    assert!(graph.len() > 10, "read the sources: {graph:?}");
    assert!(graph["host"].contains("session"), "{graph:?}");
    assert_eq!(circle(&graph), None, "{graph:?}");
}

/// Negative control: the reader sees both forms of a dependency, and the search finds a
/// circle of three.
#[test]
fn a_circle_is_found() {
    let modules: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
    let text = "use crate::{b, x::Y};\n// crate::c in a comment\nfn f() { crate::c::g() }";
    assert_eq!(uses(text, &modules), ["b", "c"].map(String::from).into());
    let mut graph = Graph::new();
    graph.insert("a".into(), ["b".to_owned()].into());
    graph.insert("b".into(), ["c".to_owned()].into());
    graph.insert("c".into(), BTreeSet::new());
    assert_eq!(circle(&graph), None);
    graph.insert("c".into(), ["a".to_owned()].into());
    assert_eq!(circle(&graph).map(|c| c.len()), Some(3));
}
