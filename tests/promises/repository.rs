//! The repository is whole by itself: a clone with nothing beside it runs its tests, benches and
//! scripts, and its documents point only at files it holds. Owns the scan of every text file of
//! the repository for a relative path climbing out of it (`..` then a name beside the repository); it does not judge URLs or absolute
//! paths a person chooses (`/tmp/...` in a command line).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// Directories no test reads for sources: git's own, build outputs, Spin's local state.
const SKIPPED_DIRS: [&str; 3] = [".git", "target", ".spin"];

/// Every text file of the repository, relative to its root.
fn text_files(root: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(root.join(&dir))
            .unwrap_or_else(|e| panic!("{}: {e}", root.join(&dir).display()));
        for entry in entries {
            let entry = entry.unwrap();
            let rel = dir.join(entry.file_name());
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                if !SKIPPED_DIRS.contains(&entry.file_name().to_str().unwrap_or("")) {
                    dirs.push(rel);
                }
            } else if kind.is_file() {
                // Binary files (gzip documents of tests/fixtures/release-*) name no paths.
                if let Ok(text) = std::fs::read_to_string(root.join(&rel)) {
                    files.push((rel, text));
                }
            }
        }
    }
    files
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// Every relative path in `text` that climbs (`../`), with its line number.
fn climbing_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut from = 0;
        while let Some(at) = line[from..].find("../").map(|i| i + from) {
            let start = line[..at]
                .rfind(|c: char| !is_path_char(c))
                .map_or(0, |i| i + 1);
            let end = line[at..]
                .find(|c: char| !is_path_char(c))
                .map_or(line.len(), |i| i + at);
            found.push((n + 1, line[start..end].trim_end_matches('.').to_owned()));
            from = end.max(at + 3);
        }
    }
    found
}

/// `path` joined to `base` (both relative to the root), or `None` when it climbs out of the root.
fn resolve(base: &Path, path: &str) -> Option<PathBuf> {
    let joined = base.join(path);
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in joined.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

/// The climbing paths of the repository that name nothing inside it, read from the file's
/// directory (`#[path]`, Markdown links) or from the root (`CARGO_MANIFEST_DIR`, scripts that
/// `cd` to it).
fn paths_leaving(root: &Path) -> Vec<String> {
    let mut leaving = Vec::new();
    for (file, text) in text_files(root) {
        let dir = file.parent().unwrap_or(Path::new(""));
        for (line, path) in climbing_paths(&text) {
            let inside = [dir, Path::new("")]
                .iter()
                .any(|base| resolve(base, &path).is_some_and(|p| root.join(p).exists()));
            if !inside {
                leaving.push(format!("{}:{line}: {path}", file.display()));
            }
        }
    }
    leaving.sort();
    leaving
}

#[test]
fn no_file_of_the_repository_refers_to_a_path_outside_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let leaving = paths_leaving(root);
    assert!(
        leaving.is_empty(),
        "these paths leave the repository (a clone with nothing beside it lacks them; keep \
         what they name inside it):\n{}",
        leaving.join("\n")
    );
}

#[test]
fn the_scan_sees_a_path_to_a_directory_beside_the_repository() {
    // Built, not written, so that this file itself names no such path.
    let sibling = format!("{}/sibling-of-the-repository/fixtures", "..");
    let line = format!("let dir = root.join(\"{sibling}\");");
    let found = climbing_paths(&line);
    assert_eq!(found, [(1, sibling.clone())]);
    assert_eq!(resolve(Path::new(""), &sibling), None);
    let from_tests = resolve(Path::new("tests/support"), &sibling).unwrap();
    assert!(
        !Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(from_tests)
            .exists()
    );
    // A path that climbs but stays inside is kept: benches/ reading tests/support.
    let bench = format!("{}/tests/support/lcw_fake.rs", "..");
    assert_eq!(
        resolve(Path::new("benches"), &bench),
        Some(PathBuf::from("tests/support/lcw_fake.rs"))
    );
}

/// The LCW samples the test and bench sources name: literal names given to `fixture` and
/// `fixture_json`, `error_<status>.json` of each `documented_error` status, and the fake's
/// answer of each endpoint.
fn named_fixtures(root: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (file, text) in text_files(root) {
        if !(file.starts_with("tests") || file.starts_with("benches")) {
            continue;
        }
        for call in ["fixture(\"", "fixture_json(\""] {
            for (at, _) in text.match_indices(call) {
                let rest = &text[at + call.len()..];
                names.insert(rest[..rest.find('"').unwrap()].to_owned());
            }
        }
        for (at, _) in text.match_indices("documented_error(") {
            let digits: String = text[at + "documented_error(".len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if !digits.is_empty() {
                names.insert(format!("error_{digits}.json"));
            }
        }
    }
    for path in crate::support::lcw_fake::TICK_PATHS.iter().chain(&[
        "/overview/history",
        "/coins/single",
        "/coins/single/history",
        "/coins/contract",
        "/exchanges/single",
        "/fiats/all",
        "/platforms/all",
    ]) {
        names.insert(
            crate::support::lcw_fake::fixture_for(path)
                .unwrap()
                .to_owned(),
        );
    }
    names
}

#[test]
fn every_lcw_fixture_the_tests_name_is_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let names = named_fixtures(root);
    assert!(names.contains("error_503.json"), "{names:?}");
    let dir = root.join("tests/fixtures/lcw");
    for name in names {
        let file = dir.join(&name);
        let body = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        serde_json::from_slice::<serde_json::Value>(&body)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
    }
}
