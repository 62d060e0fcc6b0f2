//! The operations kit in `deploy/` against the code: every file parses and has what its reader
//! needs, every name a dashboard queries is one the code writes (InfluxDB) or exports
//! (Prometheus), and promtool accepts the scrape config and the alert rules and passes their
//! unit tests.

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use lcw_fetcher::config::VARIABLES;
use lcw_fetcher::lcw::{Coin, Exchange, Overview};
use lcw_fetcher::{schema, telemetry};
use serde_json::Value;
use support::lcw_fake::fixture;
use support::sim::{Profile, SimHost, World, our_tick, our_variables};
use yaml_rust2::{Yaml, YamlLoader};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

fn yaml(path: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path))
        .unwrap_or_else(|e| panic!("deploy/{path} is not YAML: {e}"))
}

fn text(y: &Yaml) -> &str {
    y.as_str()
        .unwrap_or_else(|| panic!("expected a string, found {y:?}"))
}

fn promtool(args: &[&str]) {
    let promtool =
        support::influxd::which("promtool").expect("promtool (Debian's prometheus package)");
    let output = Command::new(promtool)
        .args(args)
        .current_dir(deploy("prometheus"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn promtool_accepts_the_config_and_the_rules_and_their_tests_pass() {
    promtool(&["check", "config", "prometheus.yml"]);
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts.test.yml"]);
}

#[test]
fn the_alerts_cover_every_condition_of_the_runbook() {
    let rules = &yaml("prometheus/alerts.yml")[0]["groups"][0]["rules"];
    let names: BTreeSet<&str> = rules
        .as_vec()
        .unwrap()
        .iter()
        .map(|r| text(&r["alert"]))
        .collect();
    for alert in [
        "LcwOperationSlow",
        "LcwOperationCritical",
        "LcwTickErrorRate",
        "LcwCacheHitRateLow",
        "LcwNoSuccessfulTick",
        "LcwCircuitBreakerOpen",
        "LcwCreditsBelowReserve",
        "LcwSpoolGrowing",
        "LcwQuarantineNonZero",
    ] {
        assert!(names.contains(alert), "{alert} missing");
    }
    let tested = read("prometheus/alerts.test.yml");
    let covered = names
        .iter()
        .filter(|n| tested.contains(&format!("alertname: {n}")))
        .count();
    assert_eq!(
        covered,
        names.len(),
        "every alert rule has a promtool unit test that makes it fire"
    );
}

#[test]
fn kubernetes_manifests_have_what_kubernetes_and_spinkube_need() {
    let variables: BTreeSet<&str> = VARIABLES.iter().map(|v| v.name).collect();
    for file in [
        "kubernetes/spinapp.yaml",
        "kubernetes/collect-cronjob.yaml",
        "kubernetes/secret.example.yaml",
    ] {
        for doc in yaml(file) {
            for key in ["apiVersion", "kind"] {
                assert!(doc[key].as_str().is_some(), "{file}: {key}");
            }
            assert!(
                doc["metadata"]["name"].as_str().is_some(),
                "{file}: metadata.name"
            );
        }
    }
    let app = &yaml("kubernetes/spinapp.yaml")[0];
    assert_eq!(text(&app["kind"]), "SpinApp");
    assert_eq!(text(&app["spec"]["executor"]), "containerd-shim-spin");
    assert!(app["spec"]["image"].as_str().is_some());
    for variable in app["spec"]["variables"].as_vec().unwrap() {
        let name = text(&variable["name"]);
        assert!(
            variables.contains(name),
            "spinapp.yaml sets `{name}`, which the code does not read"
        );
    }
    let store = &app["spec"]["runtimeConfig"]["keyValueStores"][0];
    assert_eq!(
        (text(&store["name"]), text(&store["type"])),
        ("default", "redis")
    );

    let secret = &yaml("kubernetes/secret.example.yaml")[0];
    for key in ["lcw_api_key", "influx_token", "admin_token", "redis_url"] {
        assert!(
            secret["stringData"][key].as_str().is_some(),
            "secret lacks {key}"
        );
    }
    let job = &yaml("kubernetes/collect-cronjob.yaml")[0];
    assert_eq!(text(&job["spec"]["schedule"]), "* * * * *");
    assert_eq!(text(&job["spec"]["concurrencyPolicy"]), "Forbid");
    let container = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let command: Vec<&str> = container["command"]
        .as_vec()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    let script = command.join(" ");
    for part in [
        "-X POST",
        "/collect",
        "Authorization: Bearer $ADMIN_TOKEN",
        "--fail",
    ] {
        assert!(
            script.contains(part),
            "the CronJob's command lacks `{part}`: {script}"
        );
    }
    assert_eq!(
        text(&container["env"][0]["valueFrom"]["secretKeyRef"]["key"]),
        "admin_token"
    );
}

#[test]
fn the_vault_recipe_is_a_valid_runtime_config() {
    let config: toml::Table = read("vault/runtime-config.toml").parse().unwrap();
    let provider = &config["variables_provider"].as_array().unwrap()[0];
    assert_eq!(provider["type"].as_str(), Some("vault"));
    for key in ["url", "token", "mount", "prefix"] {
        assert!(provider.get(key).is_some(), "vault provider lacks {key}");
    }
    assert_eq!(
        config["key_value_store"]["default"]["type"].as_str(),
        Some("redis")
    );
}

fn dashboards() -> Vec<(String, Value)> {
    [
        "market-influxql.json",
        "market-flux.json",
        "collector-health.json",
    ]
    .iter()
    .map(|name| {
        let json = serde_json::from_str(&read(&format!("grafana/dashboards/{name}"))).unwrap();
        ((*name).to_owned(), json)
    })
    .collect()
}

/// Every query or expression of a dashboard: panels' targets and templating variables.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let q = target["query"]
                .as_str()
                .or(target["expr"].as_str())
                .unwrap();
            out.push((
                target["datasource"]["uid"].as_str().unwrap().to_owned(),
                q.to_owned(),
            ));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        out.push((
            variable["datasource"]["uid"].as_str().unwrap().to_owned(),
            variable["query"].as_str().unwrap().to_owned(),
        ));
    }
    out
}

#[test]
fn grafana_provisioning_names_every_data_source_the_dashboards_use() {
    let sources = &yaml("grafana/provisioning/datasources/lcw.yaml")[0]["datasources"];
    let uids: BTreeSet<&str> = sources
        .as_vec()
        .unwrap()
        .iter()
        .map(|s| text(&s["uid"]))
        .collect();
    for source in sources.as_vec().unwrap() {
        for key in ["name", "type", "url"] {
            assert!(source[key].as_str().is_some(), "data source lacks {key}");
        }
    }
    for (name, dashboard) in dashboards() {
        assert!(dashboard["uid"].as_str().is_some() && dashboard["title"].as_str().is_some());
        for (uid, _) in queries(&dashboard) {
            assert!(
                uids.contains(uid.as_str()),
                "{name} uses data source {uid}, which is not provisioned"
            );
        }
    }
    let provider = &yaml("grafana/provisioning/dashboards/lcw.yaml")[0]["providers"][0];
    assert!(provider["options"]["path"].as_str().is_some());
}

/// Measurements, tags and fields the code writes, from the richest documented answers.
fn written_names() -> BTreeSet<String> {
    let mut coin: Coin = serde_json::from_slice(&fixture("coins_contract.json")).unwrap();
    coin.total_supply = Some(1.0);
    coin.max_supply = Some(1.0);
    let exchange: Vec<Exchange> = serde_json::from_slice(&fixture("exchanges_list.json")).unwrap();
    let overview: Overview = serde_json::from_slice(&fixture("overview.json")).unwrap();
    let points = [
        schema::coin_point(&coin, "USD", 0),
        schema::exchange_point(&exchange[0], "USD", 0),
        schema::overview_point(&overview, "USD", 0),
    ];
    let mut names = BTreeSet::new();
    for p in points {
        names.insert(p.measurement.to_string());
        names.extend(p.tags.iter().map(|(k, _)| k.to_string()));
        names.extend(p.fields.iter().map(|(k, _)| k.to_string()));
    }
    names
}

#[test]
fn market_dashboards_query_only_what_the_code_writes() {
    let written = written_names();
    let mut checked = 0;
    for (name, dashboard) in dashboards() {
        for (uid, query) in queries(&dashboard) {
            let identifiers = match uid.as_str() {
                "lcw-influxql" => quoted_identifiers(&query),
                "lcw-flux" => flux_identifiers(&query),
                _ => continue,
            };
            for identifier in identifiers {
                assert!(
                    written.contains(&identifier),
                    "{name}: `{identifier}` is not written by the code, in {query}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 30, "only {checked} names checked");
}

/// Double-quoted identifiers of an InfluxQL query, except aliases (`AS "name"`).
fn quoted_identifiers(query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = query;
    while let Some(start) = rest.find('"') {
        let Some(len) = rest[start + 1..].find('"') else {
            break;
        };
        let identifier = &rest[start + 1..start + 1 + len];
        if !rest[..start].trim_end().ends_with(" AS") {
            out.push(identifier.to_owned());
        }
        rest = &rest[start + len + 2..];
    }
    out
}

/// `_measurement == "x"`, `_field == "y"` and `r.tag` of a Flux query.
fn flux_identifiers(query: &str) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["_measurement == \"", "_field == \""] {
        for piece in query.split(key).skip(1) {
            out.push(piece.split('"').next().unwrap().to_owned());
        }
    }
    for piece in query.split("r.").skip(1) {
        let name: String = piece
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.starts_with('_') && !name.is_empty() {
            out.push(name);
        }
    }
    out.extend(
        query
            .split("tag: \"")
            .skip(1)
            .map(|p| p.split('"').next().unwrap().to_owned()),
    );
    out
}

/// Sample names of a `/metrics` rendered after simulated ticks, an outage among them.
fn exported_names() -> BTreeSet<String> {
    let world = World::new(Profile::SEED, 11);
    let variables = our_variables();
    for n in 0..15 {
        world.lcw_outage.set((5..9).contains(&n));
        our_tick(&world, &variables, n);
    }
    let host = SimHost::new(&world, &variables);
    let snapshot = world
        .clock
        .run(lcw_fetcher::cycle::load_snapshot(&host))
        .unwrap();
    let text = telemetry::prometheus::render(&snapshot).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

/// The `lcw_…` metric names a PromQL text mentions.
fn metric_names(promql: &str) -> Vec<String> {
    promql
        .split("lcw_")
        .skip(1)
        .map(|piece| {
            let rest: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            format!("lcw_{rest}")
        })
        .collect()
}

#[test]
fn the_health_dashboard_and_the_alerts_query_only_exported_metrics() {
    let exported = exported_names();
    let mut checked = 0;
    for (name, dashboard) in dashboards() {
        for (uid, query) in queries(&dashboard) {
            if uid == "lcw-prometheus" {
                for metric in metric_names(&query) {
                    assert!(
                        exported.contains(&metric),
                        "{name}: `{metric}` is not exported (exported: {exported:?})"
                    );
                    checked += 1;
                }
            }
        }
    }
    for metric in metric_names(&read("prometheus/alerts.yml")) {
        assert!(
            exported.contains(&metric),
            "alerts.yml: `{metric}` is not exported"
        );
        checked += 1;
    }
    assert!(checked > 20, "only {checked} names checked");
}
