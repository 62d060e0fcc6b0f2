//! The files generated from the variable table (`lcw_fetcher::config::variables`): the table of
//! `docs/configuration.md`, the `[variables]` of `spin.toml` and `spin.http.toml` and each of
//! their `[component.<id>.variables]`. Each generated region sits between two marker lines
//! (`BEGIN GENERATED <region>` … `END GENERATED <region>`); the prose around them is
//! hand-written. A file that differs from what the table generates fails here, and
//! `LCW_REGENERATE=1` rewrites it.

use std::path::{Path, PathBuf};

use lcw_fetcher::config::{MEANINGS, VARIABLES, Variable};

/// What regenerates the files, as the failure says it.
const COMMAND: &str = "LCW_REGENERATE=1 cargo test --test repository generated::";

/// The files with generated regions.
const FILES: [&str; 3] = ["docs/configuration.md", "spin.toml", "spin.http.toml"];

fn path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn rows() -> impl Iterator<Item = (&'static Variable, &'static str)> {
    assert_eq!(VARIABLES.len(), MEANINGS.len());
    VARIABLES.iter().zip(MEANINGS.iter().copied())
}

/// The markdown table of `docs/configuration.md`.
fn docs_table() -> String {
    let mut out = String::from("| variable | default | allowed | meaning |\n|---|---|---|---|\n");
    for (row, meaning) in rows() {
        let default = match row.default {
            None => "**required**".to_owned(),
            Some("") => "empty".to_owned(),
            Some(value) => format!("`{value}`"),
        };
        let secret = if row.secret { " (secret)" } else { "" };
        out += &format!(
            "| `{}` | {default} | {} | {meaning}{secret} |\n",
            row.name,
            row.kind.allowed()
        );
    }
    out
}

/// The width names are padded to in the TOML tables, so their values line up.
fn name_width() -> usize {
    VARIABLES.iter().map(|v| v.name.len()).max().unwrap_or(0)
}

fn toml_string(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `[variables]`: each declared with its default (or required) and secrecy, its meaning as a
/// comment (without markdown's backticks).
fn manifest_declarations() -> String {
    let width = name_width();
    let mut out = String::new();
    for (row, meaning) in rows() {
        let mut fields = match row.default {
            None => vec!["required = true".to_owned()],
            Some(default) => vec![format!("default = {}", toml_string(default))],
        };
        if row.secret {
            fields.push("secret = true".to_owned());
        }
        out += &format!(
            "{:width$} = {{ {} }}  # {}\n",
            row.name,
            fields.join(", "),
            meaning.replace('`', "")
        );
    }
    out
}

/// `[component.<id>.variables]`: every application variable handed to the component.
fn component_mappings() -> String {
    let width = name_width();
    VARIABLES
        .iter()
        .map(|row| format!("{:width$} = \"{{{{ {} }}}}\"\n", row.name, row.name))
        .collect()
}

/// The text of a region, by its name.
fn region(name: &str) -> Option<String> {
    match name {
        "variables" => Some(manifest_declarations()),
        "configuration" => Some(docs_table()),
        _ if name.starts_with("component.") && name.ends_with(".variables") => {
            Some(component_mappings())
        }
        _ => None,
    }
}

/// `text` with every generated region rewritten, and the regions' names; an error names a
/// marker without its end, or a region no generator knows.
fn regenerate(text: &str) -> Result<(String, Vec<String>), String> {
    let mut out = String::with_capacity(text.len());
    let mut names = Vec::new();
    let mut lines = text.split_inclusive('\n');
    while let Some(line) = lines.next() {
        out += line;
        let Some((_, rest)) = line.split_once("BEGIN GENERATED ") else {
            continue;
        };
        let name = rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        out += &region(&name).ok_or_else(|| format!("no generator makes region `{name}`"))?;
        let end = format!("END GENERATED {name}");
        let end_line = lines
            .by_ref()
            .find(|l| l.contains(&end))
            .ok_or_else(|| format!("region `{name}` has no `{end}` line"))?;
        out += end_line;
        names.push(name);
    }
    Ok((out, names))
}

/// The first line where two texts part, for the failure message.
fn first_difference(found: &str, expected: &str) -> String {
    let mut expected_lines = expected.lines();
    for (i, line) in found.lines().enumerate() {
        let wanted = expected_lines.next().unwrap_or("<end of file>");
        if line != wanted {
            return format!("line {}: found\n  {line}\nexpected\n  {wanted}", i + 1);
        }
    }
    let more = expected_lines.next().unwrap_or("");
    format!("the file ends where the table goes on with\n  {more}")
}

#[test]
fn the_generated_files_are_what_the_variable_table_makes() {
    let rewrite = std::env::var_os("LCW_REGENERATE").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for file in FILES {
        let text = std::fs::read_to_string(path(file)).unwrap();
        let (expected, names) = regenerate(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!names.is_empty(), "{file} has no generated region");
        if expected == text {
            continue;
        }
        if rewrite {
            std::fs::write(path(file), &expected).unwrap();
            eprintln!("rewrote {file}");
        } else {
            stale.push(format!("{file}, {}", first_difference(&text, &expected)));
        }
    }
    assert!(
        stale.is_empty(),
        "generated from src/config/variables.rs and since edited, or the table changed: \
         run `{COMMAND}`\n{}",
        stale.join("\n")
    );
}

#[test]
fn each_manifest_generates_its_variables_and_every_components_mapping() {
    for file in ["spin.toml", "spin.http.toml"] {
        let text = std::fs::read_to_string(path(file)).unwrap();
        let manifest: toml::Table = text.parse().unwrap();
        let mut wanted = vec!["variables".to_owned()];
        for id in manifest["component"].as_table().unwrap().keys() {
            wanted.push(format!("component.{id}.variables"));
        }
        let (_, mut names) = regenerate(&text).unwrap();
        names.sort();
        wanted.sort();
        assert_eq!(names, wanted, "{file}: the generated regions");
    }
    let page = std::fs::read_to_string(path("docs/configuration.md")).unwrap();
    assert_eq!(regenerate(&page).unwrap().1, ["configuration"]);
}

#[test]
fn a_hand_edit_inside_a_region_is_undone_and_prose_outside_is_kept() {
    let text = "# prose\n# BEGIN GENERATED variables (from the table)\nlcw_api_key = 1\n\
                # END GENERATED variables\nafter\n";
    let (out, names) = regenerate(text).unwrap();
    assert_eq!(names, ["variables"]);
    assert!(out.starts_with("# prose\n# BEGIN GENERATED variables (from the table)\n"));
    assert!(out.ends_with("# END GENERATED variables\nafter\n"), "{out}");
    assert!(!out.contains("lcw_api_key = 1"), "{out}");
    assert!(out.contains("lcw_api_key               = { required = true, secret = true }"));
    let unknown = regenerate("<!-- BEGIN GENERATED readme -->\n").unwrap_err();
    assert!(unknown.contains("`readme`"), "{unknown}");
    let open = regenerate("# BEGIN GENERATED variables\nx\n").unwrap_err();
    assert!(open.contains("END GENERATED variables"), "{open}");
}
