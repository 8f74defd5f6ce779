//! The layering rule, checked: inside each folder of a crate's `src/`, files import downward only, so the `use`
//! lines among the files of one folder form no loop. A loop means two files that cannot be read (or changed) one
//! without the other; the fix is to move the shared piece down into a file both can import.
//!
//! How it reads the code: every top-level `use crate::…`, `use super::…` and `use self::…` (test code excluded) is
//! resolved to the file that defines the item, following `pub use` re-exports; a sub-folder counts as one node of
//! its parent folder. Re-exports in `mod.rs`/`lib.rs` are a folder's face, not a dependency, so they add no edge.
//! Paths written inline in code (without `use`) are not seen.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The source folders checked: the publishable crates and the examples' library.
const CRATES: &[&str] =
    &["kcl-core/src", "kcl-dynamo-lease/src", "kcl-postgres-lease/src", "kcl-admin/src", "kcl-examples/src"];

type ModPath = Vec<String>;

/// One `use` statement of a file, expanded into full paths.
struct UseLine {
    paths: Vec<Vec<String>>,
    reexport: bool,
}

/// A parsed source file.
struct File {
    /// `mod.rs`, `lib.rs` or `main.rs`: the file of a folder itself.
    folder_face: bool,
    uses: Vec<UseLine>,
}

/// True for files that hold tests only (they sit above everything they test).
fn is_test_file(path: &Path) -> bool {
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    name == "tests" || name == "proptests" || name.ends_with("_tests")
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            // `src/bin/` holds separate programs, each checked as its own root below.
            if path.file_name().is_some_and(|n| n == "bin") {
                continue;
            }
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !is_test_file(&path) {
            out.push(path);
        }
    }
}

/// The module path of a file under `root`: `a/b.rs` and `a/b/mod.rs` are `[a, b]`; `lib.rs`/`main.rs` are `[]`.
fn module_path(root: &Path, file: &Path) -> ModPath {
    let relative = file.strip_prefix(root).unwrap_or(file);
    let mut parts: Vec<String> = relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    let folder_face = stem == "mod" || parts.is_empty() && matches!(stem, "lib" | "main");
    if !folder_face {
        parts.push(stem.to_string());
    }
    parts
}

/// Expands a use tree (`a::{b, c::{d, e as f}, self}`) into full paths (aliases and globs keep their source path).
fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    if let Some(open) = tree.find('{') {
        let head: Vec<String> =
            tree[..open].split("::").map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        let mut base = prefix.to_vec();
        base.extend(head);
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut start = 0;
        for (i, ch) in inner.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&base, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&base, &inner[start..], out);
        return;
    }
    let tree = tree.split(" as ").next().unwrap_or(tree);
    let mut path = prefix.to_vec();
    for segment in tree.split("::").map(str::trim).filter(|s| !s.is_empty()) {
        if segment == "self" {
            continue;
        }
        path.push(segment.to_string());
    }
    out.push(path);
}

/// The top-level `use` statements of `text`, skipping those under `#[cfg(test)]` (indented ones are inside an inline
/// module, usually the tests).
fn parse_uses(text: &str) -> Vec<UseLine> {
    let mut uses = Vec::new();
    let mut lines = text.lines().peekable();
    let mut test_attribute = false;
    while let Some(line) = lines.next() {
        if line.starts_with("#[cfg(test)]") {
            test_attribute = true;
            continue;
        }
        let (reexport, rest) = if let Some(rest) = line.strip_prefix("use ") {
            (false, rest)
        } else if let Some(rest) = line.strip_prefix("pub use ") {
            (true, rest)
        } else if line.starts_with("pub(") && line.contains(") use ") {
            let at = line.find(") use ").unwrap_or(0);
            (true, &line[at + ") use ".len()..])
        } else {
            if !line.starts_with("#[") && !line.trim().is_empty() {
                test_attribute = false;
            }
            continue;
        };
        let mut statement = rest.to_string();
        while !statement.contains(';') {
            match lines.next() {
                Some(next) => {
                    statement.push(' ');
                    statement.push_str(next.trim());
                }
                None => break,
            }
        }
        let skip = std::mem::take(&mut test_attribute);
        if skip {
            continue;
        }
        let statement = statement.split(';').next().unwrap_or("");
        let mut paths = Vec::new();
        expand(&[], statement, &mut paths);
        uses.push(UseLine { paths, reexport });
    }
    uses
}

/// Paths written inline in code (`super::handoff::pass_on(…)`, `crate::telemetry::RETRIES`), outside comments and
/// before an inline test module.
fn parse_inline_paths(text: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("#[cfg(test)]")
            && lines.get(i + 1).is_some_and(|next| next.starts_with("mod ") && next.ends_with('{'))
        {
            break;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("//")
            || trimmed.starts_with("use ")
            || trimmed.starts_with("pub use ")
            || trimmed.starts_with("pub(") && trimmed.contains(") use ")
        {
            continue;
        }
        let code = line.split("//").next().unwrap_or("");
        for start in ["crate::", "super::", "self::"] {
            let mut from = 0;
            while let Some(at) = code[from..].find(start) {
                let at = from + at;
                from = at + start.len();
                let before = code[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == ':') {
                    continue;
                }
                let path: Vec<String> = code[at..]
                    .split("::")
                    .map(|segment| segment.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>())
                    .take_while(|segment| !segment.is_empty())
                    .collect();
                paths.push(path);
            }
        }
    }
    paths
}

/// One crate's (or binary's) files and how its module paths resolve.
struct Tree {
    files: BTreeMap<ModPath, File>,
}

impl Tree {
    fn load(root: &Path, entry: &Path) -> Tree {
        let mut paths = Vec::new();
        if entry.is_dir() {
            collect(entry, &mut paths);
        }
        let mut files = BTreeMap::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let folder_face = matches!(stem, "mod" | "lib" | "main");
            let module = module_path(root, &path);
            let mut uses = parse_uses(&text);
            uses.push(UseLine { paths: parse_inline_paths(&text), reexport: false });
            files.insert(module, File { folder_face, uses });
        }
        Tree { files }
    }

    /// The absolute path a use path of `module` names, or `None` for another crate.
    fn absolute(&self, module: &ModPath, path: &[String]) -> Option<Vec<String>> {
        let first = path.first()?;
        let mut base = match first.as_str() {
            "crate" => Vec::new(),
            "self" => module.clone(),
            "super" => {
                // `super` of `a/b.rs` is `a`; of `a/b/mod.rs` (module `a::b`) also `a`.
                let mut base = module.clone();
                base.pop();
                base
            }
            // A child module named without `self::` (allowed since the 2018 edition).
            _ if self.files.contains_key(&[module.as_slice(), &path[..1]].concat()) => {
                let mut base = module.clone();
                base.extend(path.iter().cloned());
                return Some(base);
            }
            _ => return None,
        };
        let mut rest = &path[1..];
        while rest.first().is_some_and(|s| s == "super") {
            base.pop();
            rest = &rest[1..];
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The module (file) that defines what `path` (absolute) names, following re-exports.
    fn resolve(&self, path: &[String], depth: usize) -> Option<ModPath> {
        if depth > 16 {
            return None;
        }
        // The deepest module that is a file.
        let mut module: ModPath = Vec::new();
        let mut i = 0;
        while i < path.len() {
            let mut next = module.clone();
            next.push(path[i].clone());
            if self.files.contains_key(&next) {
                module = next;
                i += 1;
            } else {
                break;
            }
        }
        let Some(item) = path.get(i) else { return Some(module) };
        if item == "*" {
            return Some(module);
        }
        // A re-export of `item` in that module's file.
        let file = self.files.get(&module)?;
        for line in file.uses.iter().filter(|l| l.reexport) {
            for target in &line.paths {
                if target.last() == Some(item) {
                    let absolute = self.absolute(&module, target)?;
                    return self.resolve(&absolute, depth + 1).or(Some(module));
                }
            }
        }
        Some(module)
    }

    /// Edges file → file (module paths), re-exports of folder faces excluded.
    fn edges(&self) -> BTreeSet<(ModPath, ModPath)> {
        let mut edges = BTreeSet::new();
        for (module, file) in &self.files {
            for line in &file.uses {
                if line.reexport && file.folder_face {
                    continue;
                }
                for path in &line.paths {
                    let Some(absolute) = self.absolute(module, path) else { continue };
                    let Some(target) = self.resolve(&absolute, 0) else { continue };
                    if &target != module {
                        edges.insert((module.clone(), target));
                    }
                }
            }
        }
        edges
    }

    /// Import loops among the files of each folder: a loop is reported as the folder and the files on it.
    fn loops(&self) -> Vec<String> {
        let edges = self.edges();
        let folders: BTreeSet<ModPath> =
            self.files.iter().filter(|(_, f)| f.folder_face).map(|(m, _)| m.clone()).collect();
        let mut found = Vec::new();
        for folder in folders {
            // Node of a module inside `folder`: its first segment below the folder (a sub-folder is one node);
            // the folder's own file is the node "mod".
            let node = |m: &ModPath| -> Option<String> {
                if !m.starts_with(&folder) {
                    return None;
                }
                Some(m.get(folder.len()).cloned().unwrap_or_else(|| "mod".to_string()))
            };
            let mut graph: HashMap<String, BTreeSet<String>> = HashMap::new();
            for (from, to) in &edges {
                if let (Some(a), Some(b)) = (node(from), node(to))
                    && a != b
                {
                    graph.entry(a).or_default().insert(b);
                }
            }
            for cycle in cycles(&graph) {
                let name = if folder.is_empty() { "<crate root>".to_string() } else { folder.join("/") };
                found.push(format!("{name}: {}", cycle.join(" → ")));
            }
        }
        found
    }
}

/// One cycle per strongly connected component of more than one node (Tarjan), each as a path that returns to its
/// start.
fn cycles(graph: &HashMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = graph.keys().chain(graph.values().flatten()).collect();
    let mut components: Vec<BTreeSet<String>> = Vec::new();
    // Kosaraju-free simple approach: node sets reachable both ways.
    let reach = |start: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start.clone()];
        while let Some(n) = stack.pop() {
            for next in graph.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: HashMap<&String, BTreeSet<String>> = nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut assigned = BTreeSet::new();
    for n in &nodes {
        if assigned.contains(*n) || !reachable[n].contains(*n) {
            continue;
        }
        let component: BTreeSet<String> = reachable[n].iter().filter(|m| reachable[m].contains(*n)).cloned().collect();
        assigned.extend(component.iter().cloned());
        components.push(component);
    }
    components
        .into_iter()
        .map(|component| {
            // A concrete loop through the component, for the message: walk to unvisited members, then back.
            let start = component.iter().next().cloned().unwrap_or_default();
            let mut path = vec![start.clone()];
            let mut current = start.clone();
            let mut visited = BTreeSet::from([start.clone()]);
            loop {
                let nexts = graph.get(&current).into_iter().flatten().filter(|m| component.contains(*m));
                let mut nexts: Vec<&String> = nexts.collect();
                nexts.sort_by_key(|m| visited.contains(*m));
                let Some(next) = nexts.first() else { break };
                path.push((*next).clone());
                if visited.contains(*next) {
                    break;
                }
                visited.insert((*next).clone());
                current = (*next).clone();
            }
            if path.len() <= component.len() {
                let members: Vec<&str> = component.iter().map(String::as_str).collect();
                path.push(format!("(all of: {})", members.join(", ")));
            }
            path
        })
        .collect()
}

#[test]
fn no_import_loop_inside_a_folder() {
    let workspace = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut loops = Vec::new();
    let mut checked = 0;
    for krate in CRATES {
        let root = workspace.join(krate);
        assert!(root.is_dir(), "{} is missing: update CRATES in this test", root.display());
        let tree = Tree::load(&root, &root);
        checked += tree.files.len();
        loops.extend(tree.loops().into_iter().map(|l| format!("{krate}: {l}")));
        // Each program under src/bin/ that is a folder is a crate root of its own.
        for entry in std::fs::read_dir(root.join("bin")).into_iter().flatten().flatten() {
            let bin = entry.path();
            if bin.is_dir() {
                let tree = Tree::load(&bin, &bin);
                checked += tree.files.len();
                loops.extend(tree.loops().into_iter().map(|l| format!("{}: {l}", bin.display())));
            }
        }
    }
    assert!(checked > 100, "only {checked} files read: is the layout what this test expects?");
    assert!(loops.is_empty(), "import loops (a folder's files must import downward only):\n{}", loops.join("\n"));
}

#[test]
fn the_checker_sees_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("stage")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod stage;\npub use stage::Top;\n").unwrap();
    std::fs::write(src.join("stage/mod.rs"), "mod a;\nmod b;\nmod low;\npub use a::Top;\n").unwrap();
    std::fs::write(src.join("stage/a.rs"), "use super::b::{helper, Other as O};\npub struct Top;\n").unwrap();
    std::fs::write(src.join("stage/b.rs"), "use crate::Top;\nuse super::low::*;\npub fn helper() {}\n").unwrap();
    std::fs::write(src.join("stage/low.rs"), "#[cfg(test)]\nuse super::a::Top;\npub struct Low;\n").unwrap();
    std::fs::write(src.join("stage/c.rs"), "// super::d::f()\nfn g() { super::d::f() }\n").unwrap();
    std::fs::write(
        src.join("stage/d.rs"),
        "fn f() {}\n#[cfg(test)]\nmod tests {\n    fn t() { super::super::c::g() }\n}\n",
    )
    .unwrap();
    std::fs::write(src.join("stage/e.rs"), "fn x() { super::f::y() }\n").unwrap();
    std::fs::write(src.join("stage/f.rs"), "fn y() { crate::stage::e::x() }\n").unwrap();
    let loops = Tree::load(src, src).loops();
    assert_eq!(loops, vec!["stage: a → b → a".to_string(), "stage: e → f → e".to_string()]);
    // Moving `Top` down and `x` into `f` removes the loops.
    std::fs::write(src.join("stage/b.rs"), "use super::low::Low;\npub fn helper() {}\n").unwrap();
    std::fs::write(src.join("stage/f.rs"), "fn y() { x() }\nfn x() {}\n").unwrap();
    assert!(Tree::load(src, src).loops().is_empty());
}
