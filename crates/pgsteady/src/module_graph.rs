//! The library's modules form a tree of dependencies, not a web: no two top-level modules
//! reach into each other (issue 13: `pool` and `retry` used to import each other). This test
//! reads the sources, so a new cycle fails `cargo test` with the modules that form it.
//!
//! A module depends on another when its code (comments excluded) names `crate::other...`, or
//! names an item that `lib.rs` re-exports from `other` (`crate::{Error, Pool}`).
//!
//! One pair is allowed and documented: `error` and `classify`. An [`crate::Error`] carries the
//! [`crate::Reason`] it was classified with, and classification reads the reason and SQLSTATE
//! out of any error chain, ours included; splitting them would need a third module holding
//! both halves of one concept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ALLOWED: &[(&str, &str)] = &[("classify", "error")];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The source of a file or directory, comments stripped.
fn code(path: &Path) -> String {
    let mut out = String::new();
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.path());
        for entry in entries {
            out.push_str(&code(&entry.path()));
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        for line in std::fs::read_to_string(path).unwrap().lines() {
            let line = line.split("//").next().unwrap_or("");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn modules() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(src())
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let name = name.strip_suffix(".rs").unwrap_or(&name).to_owned();
            (name != "lib" && name != "module_graph").then_some(name)
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Item name -> the module `lib.rs` re-exports it from.
fn reexports(modules: &[String]) -> BTreeMap<String, String> {
    let lib = code(&src().join("lib.rs"));
    let mut map = BTreeMap::new();
    for stmt in lib.split(';') {
        let stmt = stmt.trim();
        let Some(rest) = stmt.strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        if !modules.iter().any(|m| m == module) {
            continue;
        }
        for item in items.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if !item.is_empty() && item.chars().next().unwrap().is_uppercase() {
                map.insert(item.to_owned(), module.to_owned());
            }
        }
    }
    map
}

/// The identifiers a piece of code names right after `crate::` (one, or a `{...}` group).
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push(name);
            }
        } else {
            out.push(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let items = reexports(&modules);
    let mut graph = BTreeMap::new();
    for module in &modules {
        let file = src().join(format!("{module}.rs"));
        let path = if file.exists() {
            file
        } else {
            src().join(module)
        };
        let deps: BTreeSet<String> = crate_paths(&code(&path))
            .into_iter()
            .filter_map(|name| {
                if modules.contains(&name) {
                    Some(name)
                } else {
                    items.get(&name).cloned()
                }
            })
            .filter(|dep| dep != module)
            .collect();
        graph.insert(module.clone(), deps);
    }
    graph
}

#[test]
fn no_two_library_modules_depend_on_each_other() {
    let graph = graph();
    let allowed = |a: &str, b: &str| {
        ALLOWED
            .iter()
            .any(|&(x, y)| (x, y) == (a, b) || (y, x) == (a, b))
    };
    // Every cycle goes through at least one edge; find them by reachability.
    let reaches = |from: &str, to: &str| -> bool {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(m) = stack.pop() {
            if m == to {
                return true;
            }
            if seen.insert(m.clone()) {
                for dep in &graph[&m] {
                    if !allowed(&m, dep) {
                        stack.push(dep.clone());
                    }
                }
            }
        }
        false
    };
    let mut cycles = Vec::new();
    for (module, deps) in &graph {
        for dep in deps {
            if !allowed(module, dep) && reaches(dep, module) {
                cycles.push(format!("{module} -> {dep} -> ... -> {module}"));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles: {cycles:#?}\ngraph: {graph:#?}"
    );
}

#[test]
fn the_check_sees_a_cycle_when_there_is_one() {
    // Negative control: the parser must find the dependencies it is meant to police.
    let graph = graph();
    assert!(graph["pool"].contains("connect"), "{graph:#?}");
    assert!(graph["readiness"].contains("pool"), "{graph:#?}");
    assert!(graph["error"].contains("classify"), "{graph:#?}");
    assert!(graph["classify"].contains("error"), "{graph:#?}");
    assert_eq!(
        crate_paths(
            "use crate::{Error, pool::Pool};\nlet x = crate::retry::RetryPolicy::default();"
        ),
        ["Error", "pool", "retry"]
    );
}
