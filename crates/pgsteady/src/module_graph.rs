//! No import circle between the files of any crate of the workspace: the modules of each
//! crate form a tree of dependencies, not a web. This test parses every crate's sources
//! (`syn`), so a new circle fails `cargo test` (and CI) naming the files that form it.
//!
//! Each crate root (`src/lib.rs`, `src/main.rs`, `src/bin/*.rs` of every member under
//! `crates/` and `examples/`) is followed through its `mod name;` declarations to every file.
//! A file depends on another when its code names a path into it: `crate::`, `super::`,
//! `self::`, a child module, or a name a `use` of the file brought in; in `use` trees and in
//! code alike (macro bodies are not read). A path to an item that a module re-exports (`pub
//! use`, any visibility) counts for the file that defines it, as far as the re-exports can be
//! followed, and a re-export itself is no dependency: `lib.rs` listing its `pub use` lines
//! does not depend on every module.
//!
//! Two files are in a circle when each reaches the other. The circles of [`KNOWN`] are
//! reported but tolerated; the list is meant to be emptied, not grown.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Circles still to remove, each the sorted files of one circle relative to the workspace
/// root; when a circle is gone its entry must go too (the test says so), so the list can
/// only shrink. One is left: `pool/mod.rs`, whose `Pool` methods hand their work to
/// functions of `run.rs`, `transaction.rs` and `ping.rs` that take the `Pool` back (and
/// `config.rs` names `Pool` for its doc links).
const KNOWN: &[&[&str]] = &[&[
    "crates/pgsteady/src/pool/config.rs",
    "crates/pgsteady/src/pool/mod.rs",
    "crates/pgsteady/src/pool/ping.rs",
    "crates/pgsteady/src/pool/run.rs",
    "crates/pgsteady/src/pool/transaction.rs",
]];

/// The workspace root: this crate is `crates/pgsteady`.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every crate root of the workspace's members: `(crate, root file)`.
fn crate_roots(root: &Path) -> Vec<(String, PathBuf)> {
    let mut roots = Vec::new();
    for group in ["crates", "examples"] {
        let Ok(entries) = std::fs::read_dir(root.join(group)) else {
            continue;
        };
        let mut members: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        members.sort();
        for member in members {
            let name = member.file_name().unwrap().to_string_lossy().into_owned();
            for file in ["src/lib.rs", "src/main.rs"] {
                let path = member.join(file);
                if path.is_file() {
                    roots.push((format!("{name} ({file})"), path));
                }
            }
            if let Ok(bins) = std::fs::read_dir(member.join("src/bin")) {
                let mut bins: Vec<PathBuf> = bins.flatten().map(|e| e.path()).collect();
                bins.sort();
                for bin in bins
                    .into_iter()
                    .filter(|p| p.extension().is_some_and(|e| e == "rs"))
                {
                    roots.push((format!("{name} ({})", bin.display()), bin));
                }
            }
        }
    }
    roots
}

/// One parsed file of a crate: its module path and what its `use` trees and code name.
#[derive(Debug, Default)]
struct FileModule {
    file: PathBuf,
    /// Child modules declared in the file (`mod x;` and inline `mod x { .. }`).
    children: BTreeSet<String>,
    /// Names a private `use` brings in -> the path it names, as written.
    aliases: BTreeMap<String, Vec<String>>,
    /// Names a `pub use` (any visibility) brings in -> the path it names.
    reexports: BTreeMap<String, Vec<String>>,
    /// Every path the file's code names (at least two segments), with how many inline
    /// modules deep it was written; the private `use` trees included.
    paths: Vec<(usize, Vec<String>)>,
}

/// Flattens a `use` tree into `(name brought in, path)`; a glob brings in `*`.
fn use_tree(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<(String, Vec<String>)>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_tree(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut path = prefix.clone();
            path.push(n.ident.to_string());
            let name = if n.ident == "self" {
                prefix.last().cloned().unwrap_or_default()
            } else {
                n.ident.to_string()
            };
            if n.ident == "self" {
                path.pop();
            }
            out.push((name, path));
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            if r.ident != "self" {
                path.push(r.ident.to_string());
            }
            out.push((r.rename.to_string(), path));
        }
        syn::UseTree::Glob(_) => out.push(("*".to_owned(), prefix.clone())),
        syn::UseTree::Group(g) => {
            for tree in &g.items {
                use_tree(tree, prefix, out);
            }
        }
    }
}

/// Collects one file's declarations and paths.
struct Collector<'a> {
    module: &'a mut FileModule,
    /// Inline modules entered (`mod tests { .. }`).
    depth: usize,
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if self.depth == 0 {
            self.module.children.insert(m.ident.to_string());
        }
        if let Some((_, items)) = &m.content {
            self.depth += 1;
            for item in items {
                self.visit_item(item);
            }
            self.depth -= 1;
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut names = Vec::new();
        use_tree(&u.tree, &mut Vec::new(), &mut names);
        let public = !matches!(u.vis, syn::Visibility::Inherited);
        for (name, path) in names {
            if public && self.depth == 0 {
                self.module.reexports.insert(name, path);
            } else {
                if self.depth == 0 && name != "*" {
                    self.module.aliases.insert(name, path.clone());
                }
                self.module.paths.push((self.depth, path));
            }
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.segments.len() >= 2 {
            let segments = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.module.paths.push((self.depth, segments));
        }
        syn::visit::visit_path(self, path);
    }
}

/// One crate: every file reached from its root, by module path.
#[derive(Debug, Default)]
struct Crate {
    modules: BTreeMap<Vec<String>, FileModule>,
}

impl Crate {
    /// Parses `root` and every file its `mod` declarations reach.
    fn load(root: &Path) -> Result<Crate, String> {
        let mut krate = Crate::default();
        let mut todo = vec![(Vec::new(), root.to_path_buf())];
        while let Some((path, file)) = todo.pop() {
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let ast = syn::parse_file(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            let mut module = FileModule {
                file: file.clone(),
                ..FileModule::default()
            };
            Collector {
                module: &mut module,
                depth: 0,
            }
            .visit_file(&ast);
            // A file's children live next to it (lib.rs, main.rs, mod.rs) or in a directory
            // of its name (a.rs -> a/).
            let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
            let dir = file.parent().unwrap().to_path_buf();
            let dir = if ["lib", "main", "mod"].contains(&stem.as_str()) || path.is_empty() {
                dir
            } else {
                dir.join(&stem)
            };
            for item in &ast.items {
                let syn::Item::Mod(m) = item else { continue };
                if m.content.is_some() {
                    continue;
                }
                let name = m.ident.to_string();
                let explicit = m.attrs.iter().find_map(|a| match &a.meta {
                    syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
                        syn::Expr::Lit(syn::ExprLit {
                            lit: syn::Lit::Str(s),
                            ..
                        }) => Some(dir.join(s.value())),
                        _ => None,
                    },
                    _ => None,
                });
                let child = explicit
                    .or_else(|| Some(dir.join(format!("{name}.rs"))).filter(|p| p.is_file()))
                    .unwrap_or_else(|| dir.join(&name).join("mod.rs"));
                let mut child_path = path.clone();
                child_path.push(name);
                todo.push((child_path, child));
            }
            krate.modules.insert(path, module);
        }
        Ok(krate)
    }

    /// The absolute module path a path written in `at` (inline `depth` deep) names, or
    /// `None` for another crate's or a local item's.
    fn absolute(&self, at: &[String], depth: usize, path: &[String]) -> Option<Vec<String>> {
        let module = &self.modules[at];
        let first = path.first()?;
        match first.as_str() {
            "crate" => Some(path[1..].to_vec()),
            "self" => Some(at.iter().chain(&path[1..]).cloned().collect()),
            "super" => {
                // Inside an inline module, the first `super`s leave it for the file.
                let mut base = at.to_vec();
                let mut inline = depth;
                let mut rest = path;
                while rest.first().is_some_and(|s| s == "super") {
                    if inline > 0 {
                        inline -= 1;
                    } else {
                        base.pop()?;
                    }
                    rest = &rest[1..];
                }
                Some(base.into_iter().chain(rest.iter().cloned()).collect())
            }
            name if depth == 0 && module.children.contains(name) => {
                Some(at.iter().chain(path).cloned().collect())
            }
            name => {
                let target = module.aliases.get(name).or(module.reexports.get(name))?;
                if target.first() == Some(first) {
                    return None;
                }
                let target = self.absolute(at, 0, target)?;
                Some(
                    target
                        .into_iter()
                        .chain(path[1..].iter().cloned())
                        .collect(),
                )
            }
        }
    }

    /// The file that defines what an absolute path names: the longest module prefix, then
    /// through that module's re-exports.
    fn file_of(&self, mut path: Vec<String>) -> Option<Vec<String>> {
        for _ in 0..8 {
            let len = (0..=path.len())
                .rev()
                .find(|n| self.modules.contains_key(&path[..*n]))?;
            let module = path[..len].to_vec();
            let Some(next) = path.get(len) else {
                return Some(module);
            };
            match self.modules[&module].reexports.get(next) {
                Some(target) => {
                    let target = self.absolute(&module, 0, target)?;
                    path = target
                        .into_iter()
                        .chain(path[len + 1..].iter().cloned())
                        .collect();
                }
                None => return Some(module),
            }
        }
        None
    }

    /// File -> the files it depends on (by module path).
    fn graph(&self) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
        let mut graph = BTreeMap::new();
        for (at, module) in &self.modules {
            let deps: BTreeSet<Vec<String>> = module
                .paths
                .iter()
                .filter_map(|(depth, path)| self.absolute(at, *depth, path))
                .filter_map(|path| self.file_of(path))
                .filter(|dep| dep != at)
                .collect();
            graph.insert(at.clone(), deps);
        }
        graph
    }

    /// The circles: groups of two or more files each reaching every other.
    fn circles(&self) -> Vec<Vec<PathBuf>> {
        let graph = self.graph();
        let reach = |from: &Vec<String>| {
            let mut seen = BTreeSet::new();
            let mut stack = vec![from.clone()];
            while let Some(m) = stack.pop() {
                if seen.insert(m.clone()) {
                    stack.extend(graph[&m].iter().cloned());
                }
            }
            seen
        };
        let reaches: BTreeMap<_, _> = graph.keys().map(|m| (m.clone(), reach(m))).collect();
        let mut done = BTreeSet::new();
        let mut circles = Vec::new();
        for m in graph.keys() {
            if done.contains(m) {
                continue;
            }
            let circle: Vec<&Vec<String>> = reaches[m]
                .iter()
                .filter(|other| reaches[*other].contains(m))
                .collect();
            done.extend(circle.iter().map(|c| (*c).clone()));
            if circle.len() > 1 {
                let mut files: Vec<PathBuf> = circle
                    .iter()
                    .map(|c| self.modules[*c].file.clone())
                    .collect();
                files.sort();
                circles.push(files);
            }
        }
        circles
    }
}

/// Every circle in the workspace, each as sorted paths relative to `root`.
fn workspace_circles(root: &Path) -> Vec<Vec<String>> {
    let root = root.canonicalize().unwrap();
    let mut all = Vec::new();
    for (name, file) in crate_roots(&root) {
        let krate = Crate::load(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
        for circle in krate.circles() {
            all.push(
                circle
                    .iter()
                    .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
                    .collect(),
            );
        }
    }
    all.sort();
    all.dedup();
    all
}

#[test]
fn no_file_of_any_crate_is_in_an_import_circle() {
    // A packaged copy of this crate (crates.io, a vendored tree) has no workspace around it.
    if !workspace().join("crates/pgsteady/src/lib.rs").is_file() {
        eprintln!("skipped: not inside the pgsteady workspace");
        return;
    }
    let circles = workspace_circles(&workspace());
    let known: Vec<Vec<String>> = KNOWN
        .iter()
        .map(|c| c.iter().map(|f| (*f).to_owned()).collect())
        .collect();
    let new: Vec<&Vec<String>> = circles.iter().filter(|c| !known.contains(c)).collect();
    let gone: Vec<&Vec<String>> = known.iter().filter(|c| !circles.contains(c)).collect();
    for circle in circles.iter().filter(|c| known.contains(c)) {
        eprintln!("known import circle (to remove): {circle:?}");
    }
    assert!(new.is_empty(), "import circles between files: {new:#?}");
    assert!(gone.is_empty(), "gone, remove from KNOWN: {gone:#?}");
}

/// Negative control: a synthetic crate whose files form circles through `super::`,
/// `crate::`, a child module and a re-export must be reported; its acyclic part must not.
#[test]
fn the_check_reports_a_circle_in_a_synthetic_tree() {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    // pool/conn.rs and pool/gate.rs import each other (super::); pool/mod.rs re-exports
    // Conn, which is not a dependency; leaf.rs is imported by all and imports none of them;
    // a.rs reaches b.rs through a `use crate::b`, b.rs reaches a.rs through a re-export
    // in lib.rs (`crate::A`).
    write(
        "crates/demo/src/lib.rs",
        "mod a;\nmod b;\nmod leaf;\nmod pool;\npub use a::A;\n",
    );
    write(
        "crates/demo/src/a.rs",
        "use crate::b;\npub struct A;\nfn f() { b::g(); crate::leaf::h(); }\n",
    );
    write(
        "crates/demo/src/b.rs",
        "pub fn g() -> crate::A { crate::A }\n",
    );
    write(
        "crates/demo/src/leaf.rs",
        "pub fn h() {}\n#[cfg(test)]\nmod tests { use super::*; }\n",
    );
    write(
        "crates/demo/src/pool/mod.rs",
        "mod conn;\nmod gate;\npub use conn::Conn;\nfn p() { crate::leaf::h(); }\n",
    );
    write(
        "crates/demo/src/pool/conn.rs",
        "pub struct Conn;\nfn c() { super::gate::open(); }\n",
    );
    write(
        "crates/demo/src/pool/gate.rs",
        "use super::Conn;\npub fn open() -> Option<Conn> { None }\n",
    );
    let circles = workspace_circles(dir.path());
    assert_eq!(
        circles,
        [
            vec!["crates/demo/src/a.rs", "crates/demo/src/b.rs"],
            vec![
                "crates/demo/src/pool/conn.rs",
                "crates/demo/src/pool/gate.rs"
            ],
        ],
    );
    // Without the back edges, nothing.
    write("crates/demo/src/b.rs", "pub fn g() {}\n");
    write("crates/demo/src/pool/conn.rs", "pub struct Conn;\n");
    assert_eq!(workspace_circles(dir.path()), Vec::<Vec<String>>::new());
}
