//! `spin.toml`, `runtime-config.toml` and the README checked against the code: the variables the
//! code reads, the artifacts the builds produce, the cron expression, the shared store.

use std::path::Path;

use lcw_fetcher::config::VARIABLES;
use toml::{Table, Value};

fn read_toml(name: &str) -> Table {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{name} is not valid TOML: {e}"))
}

fn table<'a>(value: &'a Value, what: &str) -> &'a Table {
    value
        .as_table()
        .unwrap_or_else(|| panic!("{what} is not a table"))
}

fn components(manifest: &Table) -> &Table {
    table(&manifest["component"], "[component]")
}

#[test]
fn every_variable_the_code_reads_is_declared_with_the_same_default() {
    let manifest = read_toml("spin.toml");
    let declared = table(&manifest["variables"], "[variables]");
    let names: Vec<&str> = VARIABLES.iter().map(|v| v.name).collect();
    let mut declared_names: Vec<&str> = declared.keys().map(String::as_str).collect();
    declared_names.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(
        declared_names, expected,
        "[variables] must declare exactly what src/config/variables.rs lists"
    );

    for spec in VARIABLES {
        let entry = table(&declared[spec.name], spec.name);
        let secret = entry
            .get("secret")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        assert_eq!(secret, spec.secret, "`{}`: secret", spec.name);
        match spec.default {
            None => {
                assert_eq!(
                    entry.get("required").and_then(Value::as_bool),
                    Some(true),
                    "`{}` must be required",
                    spec.name
                );
                assert!(
                    entry.get("default").is_none(),
                    "`{}`: required and a default",
                    spec.name
                );
            }
            Some(default) => assert_eq!(
                entry.get("default").and_then(Value::as_str),
                Some(default),
                "`{}`: default differs from src/config/variables.rs",
                spec.name
            ),
        }
    }
}

#[test]
fn every_component_maps_every_variable_and_shares_the_default_store() {
    let manifest = read_toml("spin.toml");
    for (id, component) in components(&manifest) {
        let variables = table(
            &component["variables"],
            &format!("[component.{id}.variables]"),
        );
        for spec in VARIABLES {
            assert_eq!(
                variables.get(spec.name).and_then(Value::as_str),
                Some(format!("{{{{ {} }}}}", spec.name).as_str()),
                "[component.{id}.variables] must map `{}`",
                spec.name
            );
        }
        let stores = component["key_value_stores"].as_array().unwrap();
        assert_eq!(stores, &[Value::from("default")], "component {id}");
        let databases = component["sqlite_databases"].as_array();
        assert_eq!(
            databases.map(Vec::as_slice),
            Some(&[Value::from("default")][..]),
            "component {id} must share the default SQLite database"
        );
    }
}

#[test]
fn sources_are_the_artifacts_of_the_build_commands() {
    let manifest = read_toml("spin.toml");
    for (id, component) in components(&manifest) {
        let cargo = read_toml(&format!("components/{id}/Cargo.toml"));
        let package = cargo["package"]["name"].as_str().unwrap();
        let crate_types = cargo["lib"]["crate-type"].as_array().unwrap();
        assert!(
            crate_types.contains(&Value::from("cdylib")),
            "{package} must be a cdylib"
        );
        let artifact = format!(
            "target/wasm32-wasip2/release/{}.wasm",
            package.replace('-', "_")
        );
        assert_eq!(
            component["source"].as_str(),
            Some(artifact.as_str()),
            "component {id}"
        );
        let build = table(&component["build"], "build");
        assert_eq!(
            build["command"].as_str(),
            Some(format!("cargo build --target wasm32-wasip2 --release -p {package}").as_str()),
            "component {id}"
        );
        let watch: Vec<&str> = build["watch"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        assert!(
            watch.contains(&"src/**/*.rs"),
            "component {id} must rebuild when the core changes"
        );
        assert!(
            watch.contains(&format!("components/{id}/src/**/*.rs").as_str()),
            "component {id}"
        );
    }
}

#[test]
fn triggers_are_a_six_field_cron_a_catch_all_route_and_the_collectors_route() {
    let manifest = read_toml("spin.toml");
    let crons = manifest["trigger"]["cron"].as_array().unwrap();
    assert_eq!(crons.len(), 1);
    assert_eq!(crons[0]["component"].as_str(), Some("collector"));
    let expression = crons[0]["cron_expression"].as_str().unwrap();
    let fields: Vec<&str> = expression.split_whitespace().collect();
    assert_eq!(
        fields.len(),
        6,
        "the cron plugin wants six fields, seconds first: {expression}"
    );
    assert!(
        fields
            .iter()
            .all(|f| f.chars().all(|c| c.is_ascii_digit() || "*/,-".contains(c))),
        "{expression}"
    );
    assert_eq!(fields[0], "0", "one tick per minute, at second 0");

    let http = manifest["trigger"]["http"].as_array().unwrap();
    assert_eq!(http[0]["component"].as_str(), Some("api"));
    assert_eq!(http[0]["route"].as_str(), Some("/..."));
    // `POST /collect` runs the tick in the collector component (routes::handle_collect), so the
    // api component carries no fetch cycle; an exact route wins over the catch-all.
    assert_eq!(http.len(), 2);
    assert_eq!(http[1]["component"].as_str(), Some("collector"));
    assert_eq!(http[1]["route"].as_str(), Some("/collect"));
}

#[test]
fn both_components_may_reach_exactly_the_configured_urls() {
    let manifest = read_toml("spin.toml");
    for id in ["collector", "api"] {
        let hosts = components(&manifest)[id]["allowed_outbound_hosts"]
            .as_array()
            .unwrap();
        assert_eq!(
            hosts,
            &[
                Value::from("{{ lcw_base_url }}"),
                Value::from("{{ influx_url }}")
            ],
            "component {id}"
        );
    }
}

#[test]
fn runtime_config_shares_one_file_store() {
    let runtime = read_toml("runtime-config.toml");
    let store = &runtime["key_value_store"]["default"];
    assert_eq!(store["type"].as_str(), Some("spin"));
    let path = store["path"].as_str().unwrap();
    assert!(
        path.starts_with(".spin/") && path.ends_with(".db"),
        "{path}"
    );
    // Both processes must open the same database file, and not the key-value store's.
    let database = &runtime["sqlite_database"]["default"];
    assert_eq!(database["type"].as_str(), Some("spin"));
    let data = database["path"].as_str().unwrap();
    assert!(
        data.starts_with(".spin/") && data.ends_with(".db"),
        "{data}"
    );
    assert_ne!(data, path);
}

/// `docs/configuration.md` is the variable table, row for row: the same names in the same order,
/// the same defaults (`**required**` for none, `empty` for an empty one), "(secret)" on exactly
/// the secrets. A variable the code adds, drops or changes without the page fails here.
#[test]
fn the_configuration_page_is_the_variable_table_row_for_row() {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let rows: Vec<(String, String, bool)> = page
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.strip_prefix("| `")?.splitn(3, " | ").collect();
            let [name, default, meaning] = cells[..] else {
                return None;
            };
            Some((
                name.trim_end_matches('`').to_owned(),
                default.to_owned(),
                meaning.trim_end_matches(" |").ends_with("(secret)"),
            ))
        })
        .collect();
    let expected: Vec<(String, String, bool)> = VARIABLES
        .iter()
        .map(|spec| {
            let default = match spec.default {
                None => "**required**".to_owned(),
                Some("") => "empty".to_owned(),
                Some(value) => format!("`{value}`"),
            };
            (spec.name.to_owned(), default, spec.secret)
        })
        .collect();
    assert_eq!(rows, expected);
}

#[test]
fn the_readme_holds_the_two_commands_and_points_to_the_configuration() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(readme.contains("spin build --up"));
    assert!(readme.contains("scripts/test-all"));
    assert!(readme.contains("(docs/configuration.md)"));
    let ci =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/run")).unwrap();
    assert!(
        ci.contains("scripts/test-all"),
        ".ci/run must run the README's test command"
    );
}
