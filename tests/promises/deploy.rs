//! Promises to the people who deploy it: every recipe of `deploy/README.md`, on the host it names,
//! serves every route docs/api.md's route table promises and runs ticks. Owns a model of each
//! recipe's host: which manifest it deploys (`--from`, else `spin.toml`), which components run
//! (a SpinApp's `components`, else all), which trigger types the host runs, how Spin picks a
//! route's component (an exact route before a wildcard, the longest prefix first), and what
//! fires the ticks (a cron trigger, or a scheduler calling `POST /collect`). Whether a component
//! answers a route is asked of its real entry (`routes::handle_api`, `routes::handle_collect`).
//! It does not run Spin: `scripts/e2e-spin` does, for `spin up`.

use std::collections::BTreeSet;
use std::path::Path;

use http::{Method, Request, StatusCode};
use lcw_fetcher::{cycle, routes};
use toml::{Table, Value};
use yaml_rust2::YamlLoader;

use crate::support::{LcwFake, NativeHost, block_on};

const TOKEN: &str = "deploy-recipe-token";

fn read(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn manifest(path: &str) -> Table {
    read(path)
        .parse()
        .unwrap_or_else(|e| panic!("{path} is not valid TOML: {e}"))
}

/// The hosts the recipes name, and the trigger types each runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum HostKind {
    /// `spin up`: its built-in HTTP and Redis triggers, and cron through the `trigger-cron`
    /// plugin the local recipe installs.
    SpinUp,
    /// SpinKube's containerd-shim-spin: HTTP, Redis, MQTT, SQS and command triggers; no cron
    /// (the shim's open issue #129).
    SpinKube,
    /// Akamai Functions: HTTP triggers; its own scheduler (`spin aka crons`) calls routes.
    Akamai,
}

impl HostKind {
    fn runs(self, trigger: &str) -> bool {
        let runs: &[&str] = match self {
            Self::SpinUp => &["http", "redis", "cron"],
            Self::SpinKube => &["http", "redis", "mqtt", "sqs", "command"],
            Self::Akamai => &["http"],
        };
        runs.contains(&trigger)
    }
}

/// One recipe: a section of deploy/README.md that deploys the app.
#[derive(Debug)]
struct Recipe {
    section: String,
    host: HostKind,
    manifest: String,
    /// `None`: every component of the manifest.
    components: Option<Vec<String>>,
    /// The path a scheduler of the host sends `POST` to every minute, if any.
    scheduled_post: Option<String>,
}

/// The shell commands of a Markdown section (fenced `sh` blocks), continuation lines joined.
fn commands(section: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut current = String::new();
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let line = line.split(" # ").next().unwrap_or("").trim();
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(line);
            commands.push(std::mem::take(&mut current));
        }
    }
    commands
}

/// The value after `flag` (`--from x` or `--from=x`) in `command`.
fn flag<'a>(command: &'a str, names: &[&str]) -> Option<&'a str> {
    let words: Vec<&str> = command.split_whitespace().collect();
    words.iter().enumerate().find_map(|(i, word)| {
        names.iter().find_map(|name| {
            if word == name {
                words.get(i + 1).copied()
            } else {
                word.strip_prefix(&format!("{name}="))
            }
        })
    })
}

/// The `components` a SpinApp file lists (`None` when it lists none: all run).
fn spinapp_components(path: &str) -> Option<Vec<String>> {
    let docs = YamlLoader::load_from_str(&read(path)).unwrap();
    let list = docs[0]["spec"]["components"].as_vec()?;
    Some(
        list.iter()
            .map(|c| c.as_str().expect("a component id").to_owned())
            .collect(),
    )
}

/// The path a Kubernetes CronJob's `curl -X POST` calls.
fn cronjob_post_path(path: &str) -> Option<String> {
    let docs = YamlLoader::load_from_str(&read(path)).unwrap();
    let container = &docs[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let script: Vec<&str> = container["command"]
        .as_vec()?
        .iter()
        .filter_map(|w| w.as_str())
        .collect();
    let script = script.join(" ");
    if !script.contains("-X POST") {
        return None;
    }
    let url = script
        .split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))?;
    let after_scheme = url.split_once("://")?.1;
    Some(format!("/{}", after_scheme.split_once('/')?.1))
}

fn recipe_of(section: &str) -> Option<Recipe> {
    let title = section.lines().next().unwrap_or("").to_owned();
    let commands = commands(section);
    let applied: Vec<&str> = commands
        .iter()
        .filter(|c| c.starts_with("kubectl apply"))
        .filter_map(|c| flag(c, &["-f"]))
        .collect();
    let deploying = commands.iter().find(|c| {
        c.starts_with("spin up")
            || c.starts_with("spin build --up")
            || c.starts_with("spin registry push")
            || c.starts_with("spin aka deploy")
    })?;
    let host = if deploying.starts_with("spin registry push") {
        HostKind::SpinKube
    } else if deploying.starts_with("spin aka deploy") {
        HostKind::Akamai
    } else {
        HostKind::SpinUp
    };
    let manifest = flag(deploying, &["--from", "-f", "--file"])
        .unwrap_or("spin.toml")
        .to_owned();
    let spinapp = applied.iter().find(|f| f.ends_with("spinapp.yaml"));
    let cronjob = applied.iter().find(|f| f.ends_with("cronjob.yaml"));
    let aka_cron = commands
        .iter()
        .find(|c| c.starts_with("spin aka crons create"))
        .and_then(|c| c.split_whitespace().last())
        .map(|p| p.trim_matches('"').to_owned());
    Some(Recipe {
        section: title,
        host,
        manifest,
        components: spinapp.and_then(|f| spinapp_components(f)),
        scheduled_post: cronjob.and_then(|f| cronjob_post_path(f)).or(aka_cron),
    })
}

/// Every recipe of deploy/README.md.
fn recipes() -> Vec<Recipe> {
    let readme = read("deploy/README.md");
    let recipes: Vec<Recipe> = readme
        .split("\n## ")
        .skip(1)
        .filter_map(recipe_of)
        .collect();
    // The model must know every host the guides deploy to.
    let hosts: BTreeSet<String> = recipes.iter().map(|r| format!("{:?}", r.host)).collect();
    assert_eq!(
        hosts,
        ["Akamai", "SpinKube", "SpinUp"].map(String::from).into(),
        "recipes found: {recipes:#?}"
    );
    recipes
}

/// The routes docs/api.md's route table promises: method and a concrete path.
fn promised_routes() -> Vec<(Method, String)> {
    let readme = read("docs/api.md");
    let table = readme
        .split("\n## Routes")
        .nth(1)
        .expect("docs/api.md has a ## Routes section");
    let mut routes = Vec::new();
    // The first table of the section, up to its first line that is not a row.
    let rows = table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'));
    for line in rows {
        let Some(cell) = line.strip_prefix("| `") else {
            continue;
        };
        let route = cell.split('`').next().unwrap();
        let (method, path) = route.split_once(' ').expect("`METHOD /path`");
        let path = path.split('?').next().unwrap().replace("{code}", "BTC");
        routes.push((method.parse().unwrap(), path));
    }
    assert!(routes.len() >= 10, "route table: {routes:?}");
    routes
}

/// The HTTP triggers of the running components: (route, component).
fn http_routes(manifest: &Table, running: &BTreeSet<String>) -> Vec<(String, String)> {
    let Some(http) = manifest
        .get("trigger")
        .and_then(|t| t.get("http"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    http.iter()
        .map(|t| {
            (
                t["route"].as_str().unwrap().to_owned(),
                t["component"].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(_, component)| running.contains(component))
        .collect()
}

/// Spin's choice among `routes` for `path`: the exact route, else the longest wildcard prefix.
fn route_for<'a>(routes: &'a [(String, String)], path: &str) -> Option<&'a str> {
    if let Some((_, component)) = routes.iter().find(|(route, _)| route == path) {
        return Some(component);
    }
    routes
        .iter()
        .filter_map(|(route, component)| {
            let prefix = route.strip_suffix("/...")?;
            let matches = path == prefix || path.starts_with(&format!("{prefix}/"));
            matches.then_some((prefix.len(), component.as_str()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, component)| component)
}

/// Whether `component`'s real entry answers `method path` as a route of its own (not 404).
/// With the admin token: without it the api answers 401 even for `/collect`, which it does not
/// serve (a `POST /collect` that reaches the collector runs a tick against the fake).
fn answers(host: &NativeHost, component: &str, method: &Method, path: &str) -> bool {
    let request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header("Authorization", format!("Bearer {TOKEN}"))
        .body(Vec::new())
        .unwrap();
    let response = match component {
        "api" => block_on(routes::handle_api(host, &request)),
        "collector" => block_on(routes::handle_collect(host, &request)),
        other => panic!("no entry known for component {other}"),
    };
    response.status() != StatusCode::NOT_FOUND
}

/// What is wrong with `recipe` on its host (empty: nothing).
fn faults(recipe: &Recipe, host: &NativeHost) -> Vec<String> {
    let manifest = manifest(&recipe.manifest);
    let components = manifest["component"].as_table().unwrap();
    let running: BTreeSet<String> = match &recipe.components {
        Some(list) => list.iter().cloned().collect(),
        None => components.keys().cloned().collect(),
    };
    let mut faults = Vec::new();
    for id in &running {
        if !components.contains_key(id) {
            faults.push(format!(
                "deploys component `{id}`, which {} lacks",
                recipe.manifest
            ));
        }
    }
    let mut cron_ticks = false;
    for (kind, triggers) in manifest["trigger"].as_table().unwrap() {
        for trigger in triggers.as_array().unwrap() {
            let component = trigger["component"].as_str().unwrap();
            if !running.contains(component) {
                continue;
            }
            if !recipe.host.runs(kind) {
                faults.push(format!(
                    "a `{kind}` trigger (component `{component}`), which {:?} does not run",
                    recipe.host
                ));
            } else if kind == "cron" {
                cron_ticks = true;
            }
        }
    }
    let routes = http_routes(&manifest, &running);
    let served = |method: &Method, path: &str| {
        route_for(&routes, path).is_some_and(|c| answers(host, c, method, path))
    };
    for (method, path) in promised_routes() {
        if !served(&method, &path) {
            let to = route_for(&routes, &path).unwrap_or("no component");
            faults.push(format!(
                "{method} {path} reaches {to}, which does not serve it"
            ));
        }
    }
    match &recipe.scheduled_post {
        Some(path) if !served(&Method::POST, path) => {
            faults.push(format!("its scheduler's POST {path} is not served"));
        }
        None if !cron_ticks => faults.push("nothing fires a tick".into()),
        _ => {}
    }
    faults
}

#[test]
fn every_recipe_serves_every_promised_route_and_runs_ticks_on_its_host() {
    let fake = LcwFake::start();
    let host = NativeHost::new(&[
        ("lcw_api_key", crate::support::lcw_fake::API_KEY.to_owned()),
        ("lcw_base_url", fake.base_url.clone()),
        ("admin_token", TOKEN.to_owned()),
        ("initial_history_hours", "0".to_owned()),
        ("backfill_calls_per_tick", "0".to_owned()),
    ]);
    let mut all = Vec::new();
    for recipe in recipes() {
        for fault in faults(&recipe, &host) {
            all.push(format!(
                "deploy/README.md `## {}` ({:?}, {}): {fault}",
                recipe.section, recipe.host, recipe.manifest
            ));
        }
    }
    assert!(all.is_empty(), "{}", all.join("\n"));
}

#[test]
fn the_model_finds_a_route_whose_component_is_not_deployed() {
    // The old SpinKube recipe: spin.toml with only the api running. `/collect` falls to the
    // api's catch-all, which answers 404.
    let fake = LcwFake::start();
    let host = NativeHost::new(&[
        ("lcw_api_key", crate::support::lcw_fake::API_KEY.to_owned()),
        ("lcw_base_url", fake.base_url.clone()),
        ("admin_token", TOKEN.to_owned()),
        ("initial_history_hours", "0".to_owned()),
        ("backfill_calls_per_tick", "0".to_owned()),
    ]);
    let recipe = Recipe {
        section: "old SpinKube".into(),
        host: HostKind::SpinKube,
        manifest: "spin.toml".into(),
        components: Some(vec!["api".into()]),
        scheduled_post: Some("/collect".into()),
    };
    let faults = faults(&recipe, &host);
    assert!(
        faults
            .iter()
            .any(|f| f.contains("POST /collect reaches api")),
        "{faults:?}"
    );
    // And spin.toml whole on SpinKube: its cron trigger cannot run there.
    let whole = Recipe {
        components: None,
        ..recipe
    };
    assert!(
        self::faults(&whole, &host)
            .iter()
            .any(|f| f.contains("`cron` trigger")),
        "spin.toml's cron trigger on SpinKube"
    );
}

#[test]
fn the_http_manifest_is_spin_toml_without_its_cron_trigger() {
    let full = manifest("spin.toml");
    let http = manifest("spin.http.toml");
    for key in [
        "spin_manifest_version",
        "application",
        "variables",
        "component",
    ] {
        assert_eq!(full.get(key), http.get(key), "spin.http.toml's `{key}`");
    }
    assert_eq!(
        http["trigger"]
            .as_table()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["http"],
        "spin.http.toml has HTTP triggers only"
    );
    assert_eq!(full["trigger"]["http"], http["trigger"]["http"]);
    // tests/repository/manifest.rs checks spin.toml's components against their crates; the same sources
    // and crates exist for this one.
    for (id, component) in http["component"].as_table().unwrap() {
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("components/{id}/Cargo.toml"))
                .is_file(),
            "component {id}"
        );
        assert!(component["source"].as_str().is_some(), "component {id}");
    }
}

#[test]
fn the_deploy_guide_states_the_lease_as_the_code_takes_it() {
    let margin = cycle::LEASE_MARGIN.as_secs();
    for doc in ["deploy/README.md", "docs/operations.md"] {
        let text = read(doc);
        let stated: Vec<&str> = text
            .match_indices("deadline + ")
            .map(|(i, _)| &text[i..])
            .collect();
        assert!(!stated.is_empty(), "{doc} states no lease length");
        for at in stated {
            let figure = at["deadline + ".len()..].split(' ').next().unwrap();
            assert_eq!(
                figure,
                margin.to_string(),
                "{doc}: `{}`, but a tick's lease lasts until its deadline + {margin} s (cycle::LEASE_MARGIN)",
                &at[..at.len().min(30)]
            );
        }
    }
}
