//! The core's layers stay one-way: every module imports only from layers below its own.
//!
//! The table lives in `docs/layers.toml`; docs/architecture.md's "Layers" table must say the same.
//! Every `use` (grouped forms included) and every other `crate::`, `super::` or `self::` path of
//! every `.rs` file under `src/` is mapped to a module of the table. An import is reported, with
//! its file, line and path, when it runs upwards, between two modules of one layer, or to a module
//! the table does not know. `#[cfg(test)]` modules are checked like the rest. Paths in comments are
//! skipped; paths inside string literals are not expected in `src/` and would be reported.
//!
//! Layers order modules, not folders: `sink::line_protocol` sits low and `sink::delivery` high, so
//! a folder could still import a module that imports back into the folder (`sink::delivery` →
//! `lease` → `sink::line_protocol` passes every layer rule). The folder graph, every module
//! counted as its top-level name under `src/`, must have no circle either.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

const TABLE: &str = "docs/layers.toml";

#[derive(Debug, Deserialize)]
struct Table {
    layer: Vec<Layer>,
}

#[derive(Debug, Deserialize)]
struct Layer {
    name: String,
    modules: Vec<String>,
}

impl Table {
    fn load(root: &Path) -> Table {
        let text = std::fs::read_to_string(root.join(TABLE)).expect("docs/layers.toml");
        toml::from_str(&text).expect("docs/layers.toml parses")
    }

    /// The listed module a path belongs to (the longest listed prefix) and its layer index.
    fn module_of(&self, path: &[String]) -> Option<(String, usize)> {
        let mut best: Option<(String, usize, usize)> = None;
        for (index, layer) in self.layer.iter().enumerate() {
            for module in &layer.modules {
                let segments: Vec<&str> = module.split("::").collect();
                let matches = segments.len() <= path.len()
                    && segments.iter().zip(path).all(|(a, b)| *a == b.as_str());
                if matches && best.as_ref().is_none_or(|b| b.2 < segments.len()) {
                    best = Some((module.clone(), index, segments.len()));
                }
            }
        }
        best.map(|(module, index, _)| (module, index))
    }

    fn describe(&self, module: &str, index: usize) -> String {
        format!("{module} (layer {} {})", index + 1, self.layer[index].name)
    }

    /// The table as docs/architecture.md shows it.
    fn markdown(&self) -> String {
        let mut out = String::from("| layer | name | modules |\n|---|---|---|\n");
        for (index, layer) in self.layer.iter().enumerate() {
            let modules: Vec<String> = layer.modules.iter().map(|m| format!("`{m}`")).collect();
            out += &format!(
                "| {} | {} | {} |\n",
                index + 1,
                layer.name,
                modules.join(", ")
            );
        }
        out
    }
}

/// One import found in a file: where, as written, and the module path it resolves to.
#[derive(Debug, Clone)]
struct Import {
    line: usize,
    written: String,
    target: Vec<String>,
}

/// A broken rule, with the file and the import that break it.
#[derive(Debug)]
struct Violation {
    file: String,
    line: usize,
    written: String,
    why: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}` — {}",
            self.file, self.line, self.written, self.why
        )
    }
}

/// The module path of a file under `src/`: `src/sink/delivery.rs` is `sink::delivery`.
fn module_path(file: &str) -> Vec<String> {
    let rel = file.strip_prefix("src/").unwrap_or(file);
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut segments: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if matches!(segments.last().map(String::as_str), Some("mod" | "lib")) {
        segments.pop();
    }
    segments
}

/// Expands a use tree (`crate::{a, b::{c, self}}`) into full paths.
fn expand_use(tree: &str) -> Vec<String> {
    // `a as b` keeps `a`: mark renames before whitespace goes.
    let tree: String = tree
        .replace(" as ", "@")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let Some(open) = tree.find('{') else {
        let path = tree.split('@').next().unwrap_or(&tree);
        return vec![path.strip_suffix("::self").unwrap_or(path).to_owned()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    split_top_level(inner)
        .into_iter()
        .filter(|part| !part.is_empty())
        .flat_map(|part| expand_use(&format!("{prefix}{part}")))
        .collect()
}

/// Splits at commas that are not inside braces.
fn split_top_level(text: &str) -> Vec<String> {
    let (mut parts, mut current, mut depth) = (Vec::new(), String::new(), 0);
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

/// Resolves `crate::…`, `super::…` and `self::…` against the module the path appears in;
/// `None` for anything else (std, external crates, local names).
fn resolve(path: &str, here: &[String]) -> Option<Vec<String>> {
    let mut segments = path.split("::").filter(|s| !s.is_empty() && *s != "*");
    let mut resolved: Vec<String> = match segments.next()? {
        "crate" => Vec::new(),
        "self" => here.to_vec(),
        "super" => here[..here.len().saturating_sub(1)].to_vec(),
        _ => return None,
    };
    for segment in segments {
        match segment {
            "super" => {
                resolved.pop();
            }
            "self" => {}
            name => resolved.push(name.to_owned()),
        }
    }
    Some(resolved)
}

/// Every `crate::`/`super::`/`self::` path outside `use` items, as written.
fn inline_paths(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    for root in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = line[from..].find(root).map(|i| i + from) {
            let before = line[..at].chars().last();
            let end = line[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(line.len(), |i| at + i);
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                found.push(line[at..end].trim_end_matches(':').to_owned());
            }
            from = end.max(at + root.len());
        }
    }
    found
}

/// The indentation and name of a line opening an inline module (`mod tests {`).
fn inline_mod(line: &str) -> Option<(usize, String)> {
    let trimmed = line.trim_start();
    let rest = trimmed
        .strip_prefix("pub ")
        .or_else(|| trimmed.strip_prefix("pub(crate) "))
        .unwrap_or(trimmed);
    let name = rest.strip_prefix("mod ")?.strip_suffix(" {")?;
    Some((line.len() - trimmed.len(), name.to_owned()))
}

fn is_use_item(trimmed: &str) -> bool {
    ["use ", "pub use ", "pub(crate) use "]
        .iter()
        .any(|p| trimmed.starts_with(p))
}

/// All imports of one file's text; `file` is its path from the crate root (`src/…`).
fn imports_of(file: &str, text: &str) -> Vec<Import> {
    let module = module_path(file);
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if stack
            .last()
            .is_some_and(|(i, _)| *i == indent && trimmed == "}")
        {
            stack.pop();
        }
        if trimmed.starts_with("//") {
            continue;
        }
        let here: Vec<String> = module
            .iter()
            .cloned()
            .chain(stack.iter().map(|(_, n)| n.clone()))
            .collect();
        if let Some(opened) = inline_mod(line) {
            stack.push(opened);
        }
        if pending.is_none() && is_use_item(trimmed) {
            let body = trimmed.split_once("use ").map_or("", |(_, b)| b);
            pending = Some((index + 1, body.to_owned()));
        } else if let Some((_, body)) = pending.as_mut() {
            body.push_str(trimmed);
        } else {
            for written in inline_paths(line) {
                if let Some(target) = resolve(&written, &here) {
                    found.push(Import {
                        line: index + 1,
                        written,
                        target,
                    });
                }
            }
            continue;
        }
        if let Some((start, body)) = pending.take_if(|(_, b)| b.contains(';')) {
            let tree = body.split(';').next().unwrap_or("");
            for written in expand_use(tree) {
                if let Some(target) = resolve(&written, &here) {
                    found.push(Import {
                        line: start,
                        written,
                        target,
                    });
                }
            }
        }
    }
    found
}

/// The rule broken by one import of `file`, if any.
fn judge(table: &Table, file: &str, import: &Import) -> Option<String> {
    let from = table.module_of(&module_path(file));
    let to = table.module_of(&import.target);
    match (from, to) {
        (_, None) => Some(format!(
            "`{}` is no module of {TABLE} (name a listed module, not a re-export)",
            import.target.join("::")
        )),
        (None, Some(_)) => Some(format!("{file} is not in {TABLE}")),
        (Some((a, _)), Some((b, _))) if a == b => None,
        (Some((a, la)), Some((b, lb))) if lb == la => Some(format!(
            "{} imports {}: modules of one layer must not import each other",
            table.describe(&a, la),
            table.describe(&b, lb)
        )),
        (Some((a, la)), Some((b, lb))) if lb > la => Some(format!(
            "{} imports {}: a lower layer must not import a higher one",
            table.describe(&a, la),
            table.describe(&b, lb)
        )),
        _ => None,
    }
}

/// Every broken rule of one file.
fn check_file(table: &Table, file: &str, text: &str) -> Vec<Violation> {
    imports_of(file, text)
        .into_iter()
        .filter_map(|import| {
            judge(table, file, &import).map(|why| Violation {
                file: file.to_owned(),
                line: import.line,
                written: import.written,
                why,
            })
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src/") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(file path from the root, text)` of every `.rs` file under `root/src`.
fn sources(root: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

/// Distinct (importing module → imported module) pairs between different modules; a module the
/// table does not know counts as its top-level name, so older trees can be counted too.
fn import_pairs(table: &Table, files: &[(String, String)]) -> BTreeSet<(String, String)> {
    let name = |path: &[String]| {
        table
            .module_of(path)
            .map(|(m, _)| m)
            .or_else(|| path.first().cloned())
            .unwrap_or_default()
    };
    let mut pairs = BTreeSet::new();
    for (file, text) in files {
        let from = name(&module_path(file));
        for import in imports_of(file, text) {
            let to = name(&import.target);
            if from != to {
                pairs.insert((from.clone(), to));
            }
        }
    }
    pairs
}

/// The top-level name of a module: the folder or file under `src/` it lives in.
fn folder_of(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// A circle of the folder graph drawn from `pairs` (`a → b → … → a`), if there is one.
fn folder_circle(pairs: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, to) in pairs {
        let (from, to) = (folder_of(from), folder_of(to));
        if from != to {
            edges.entry(from).or_default().insert(to);
        }
    }
    // Depth-first, in name order so that the circle reported is the same on every run.
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        done: &mut BTreeSet<&'a str>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut circle: Vec<String> = path[at..].iter().map(|n| n.to_string()).collect();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, done, path) {
                return Some(circle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, &edges, &mut done, &mut Vec::new()))
}

fn root() -> PathBuf {
    std::env::var_os("LCW_ARCH_ROOT")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

#[test]
fn every_import_of_the_core_runs_to_a_lower_layer() {
    let table = Table::load(Path::new(env!("CARGO_MANIFEST_DIR")));
    let files = sources(&root());
    eprintln!(
        "cross-module imports: {}",
        import_pairs(&table, &files).len()
    );
    let violations: Vec<String> = files
        .iter()
        .flat_map(|(file, text)| check_file(&table, file, text))
        .map(|v| v.to_string())
        .collect();
    assert!(
        violations.is_empty(),
        "imports against {TABLE}:\n{}",
        violations.join("\n")
    );
}

#[test]
fn no_folder_imports_back_into_itself_through_another() {
    let table = Table::load(Path::new(env!("CARGO_MANIFEST_DIR")));
    let pairs = import_pairs(&table, &sources(&root()));
    let folders: BTreeSet<&str> = pairs.iter().map(|(from, _)| folder_of(from)).collect();
    eprintln!(
        "folders and files under src/ that import: {}",
        folders.len()
    );
    if let Some(circle) = folder_circle(&pairs) {
        panic!(
            "the folders under src/ import in a circle: {}",
            circle.join(" → ")
        );
    }
}

#[test]
fn every_source_file_and_listed_module_is_in_the_table_once() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let table = Table::load(&root);
    let listed: Vec<&String> = table.layer.iter().flat_map(|l| &l.modules).collect();
    let unique: BTreeSet<&String> = listed.iter().copied().collect();
    assert_eq!(
        listed.len(),
        unique.len(),
        "a module is listed twice in {TABLE}"
    );
    for module in listed {
        let base = root.join("src").join(module.replace("::", "/"));
        let exists = base.with_extension("rs").is_file() || base.join("mod.rs").is_file();
        assert!(
            exists,
            "{TABLE} lists `{module}`, which has no file under src/"
        );
    }
    for (file, text) in sources(&root) {
        let known = table.module_of(&module_path(&file)).is_some();
        // Namespace files (the crate root, `sink/mod.rs`) only declare modules.
        let namespace = imports_of(&file, &text).is_empty();
        assert!(known || namespace, "{file} is not in {TABLE}");
    }
}

#[test]
fn the_architecture_doc_shows_the_same_table() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let table = Table::load(&root);
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let expected = table.markdown();
    assert!(
        doc.contains(&expected),
        "docs/architecture.md must show the table of {TABLE}, exactly:\n{expected}"
    );
}

// The checker itself: it must be able to fail.

fn checked(file: &str, text: &str) -> Vec<String> {
    let table = Table::load(Path::new(env!("CARGO_MANIFEST_DIR")));
    check_file(&table, file, text)
        .iter()
        .map(|v| v.to_string())
        .collect()
}

#[test]
fn a_planted_back_import_is_reported_with_file_and_import() {
    let found = checked("src/config.rs", "//! Settings.\n\nuse crate::cycle::run;\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("src/config.rs:3: `crate::cycle::run`"),
        "{}",
        found[0]
    );
    assert!(
        found[0].contains("a lower layer must not import a higher one"),
        "{}",
        found[0]
    );
}

#[test]
fn grouped_and_multi_line_uses_are_read() {
    let text = "use crate::{\n    host::Variables,\n    telemetry::{self, Timing},\n};\n";
    let found = checked("src/config.rs", text);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .all(|f| f.starts_with("src/config.rs:1: `crate::telemetry")),
        "{found:?}"
    );
}

#[test]
fn same_layer_imports_are_reported() {
    let found = checked(
        "src/lcw.rs",
        "fn f() { crate::sink::influxdb::write::gzip(b\"\"); }\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("modules of one layer must not import each other"),
        "{}",
        found[0]
    );
}

#[test]
fn super_paths_resolve_from_their_module() {
    // From `sink::spool`, `super::delivery` is a sibling in a higher layer.
    assert_eq!(
        checked("src/sink/spool.rs", "use super::delivery::Sink;\n").len(),
        1
    );
    // Inside an inline `mod tests`, `super::*` is the file's own module.
    let own = "fn f() {}\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n";
    assert!(checked("src/sink/spool.rs", own).is_empty());
}

#[test]
fn re_exports_and_unknown_modules_are_reported_and_comments_are_not() {
    let found = checked("src/schema.rs", "use crate::influx::Point;\n");
    assert!(found[0].contains("is no module of"), "{found:?}");
    assert!(
        checked(
            "src/config.rs",
            "/// See [`crate::cycle::run`].\n// crate::routes\n"
        )
        .is_empty()
    );
}

#[test]
fn downward_imports_pass() {
    let text = "use crate::host::Host;\nuse crate::{config::Settings, remote::ErrorClass};\n";
    assert!(checked("src/lcw.rs", text).is_empty());
}

#[test]
fn a_planted_folder_circle_is_reported() {
    // Each import runs downwards by layer, yet the folders meet again: `b` imports `a::low`,
    // `a::high` imports `b`.
    let table = Table::load(Path::new(env!("CARGO_MANIFEST_DIR")));
    let files = [
        ("src/a/high.rs".to_owned(), "use crate::b::f;\n".to_owned()),
        ("src/b.rs".to_owned(), "use crate::a::low::g;\n".to_owned()),
        ("src/c.rs".to_owned(), "use crate::a::low::g;\n".to_owned()),
    ];
    let circle = folder_circle(&import_pairs(&table, &files));
    assert_eq!(circle, Some(vec!["a".into(), "b".into(), "a".into()]));
    // Without the way back there is none.
    assert_eq!(folder_circle(&import_pairs(&table, &files[1..])), None);
}
