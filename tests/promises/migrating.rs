//! The promise `docs/MIGRATING.md` makes to whoever moves from the Python service: its metric
//! tables are what `GET /metrics` renders. Owns the reading of those tables (every `lcw_…`
//! family, label and listed label value of the "ours" column) and the check against a
//! `/metrics` answer of the real route after ticks that touch every family; it does not judge
//! the prose.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use lcw_fetcher::{cycle, routes};

use crate::support::lcw_fake::fixture_json;
use crate::support::native_host::SharedKv;
use crate::support::{Influx, LcwFake, NativeHost, Reply, block_on, variables_for};

/// The original's families (jrbgit/lcw-fetch, `src/lcw_fetcher/utils/metrics.py`).
const ORIGINAL_FAMILIES: [&str; 13] = [
    "lcw_operation_duration_seconds",
    "lcw_operations_total",
    "lcw_api_calls_total",
    "lcw_api_response_duration_seconds",
    "lcw_cache_operations_total",
    "lcw_cache_size_entries",
    "lcw_database_operations_total",
    "lcw_database_response_duration_seconds",
    "lcw_system_resources",
    "lcw_fetch_cycles_total",
    "lcw_fetch_cycle_duration_seconds",
    "lcw_data_points_stored_total",
    "lcw_app_info",
];

/// A family as a document names it: labels, each with the values it lists (empty: any).
type Named = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// The cells of a Markdown table row (`\|` inside a cell is a `|` of its text).
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cells.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    cells.iter().map(|c| c.trim().to_owned()).collect()
}

/// Every `lcw_…` code span of `cell`: `family{label,label="a|b"}`.
fn families_in(cell: &str, into: &mut Named) {
    for span in cell.split('`').skip(1).step_by(2) {
        if !span.starts_with("lcw_") {
            continue;
        }
        let (family, labels) = match span.split_once('{') {
            Some((family, rest)) => (family, rest.strip_suffix('}').expect("a closing brace")),
            None => (span, ""),
        };
        let entry = into.entry(family.to_owned()).or_default();
        for label in split_labels(labels) {
            let (name, listed) = label.split_once('=').unwrap_or((label.as_str(), ""));
            let values = entry.entry(name.to_owned()).or_default();
            values.extend(
                listed
                    .trim_matches('"')
                    .split('|')
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned),
            );
        }
    }
}

/// `a,b="x|y"` → `a`, `b="x|y"` (commas inside quotes stay).
fn split_labels(labels: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut current = String::new();
    for c in labels.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The families of MIGRATING's `## Metrics` tables: the "ours" columns, and the "original" one.
fn migrating_tables() -> (Named, Named) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/MIGRATING.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let section = text
        .split("\n## Metrics")
        .nth(1)
        .expect("docs/MIGRATING.md has a ## Metrics section");
    let section = section.split("\n## ").next().unwrap();
    let (mut ours, mut original) = (Named::new(), Named::new());
    let mut header: Vec<String> = Vec::new();
    for line in section.lines() {
        if !line.starts_with('|') {
            header.clear();
            continue;
        }
        let row = cells(line);
        if header.is_empty() {
            header = row;
            continue;
        }
        if row.iter().all(|c| c.chars().all(|ch| ch == '-')) {
            continue;
        }
        for (title, cell) in header.iter().zip(&row) {
            if title.starts_with("ours") {
                families_in(cell, &mut ours);
            } else if title.starts_with("original") {
                // The first span names the family; others describe its exposition.
                let first = cell.split('`').nth(1).unwrap_or("");
                families_in(&format!("`{first}`"), &mut original);
            }
        }
    }
    (ours, original)
}

/// What a `/metrics` text holds: family → label → values seen.
fn rendered(text: &str) -> Named {
    let mut families = Named::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            current = rest.split(' ').next().unwrap().to_owned();
            families.entry(current.clone()).or_default();
        } else if !line.starts_with('#') && !line.is_empty() {
            let labels = line
                .split_once('{')
                .map(|(_, rest)| rest.rsplit_once('}').unwrap().0)
                .unwrap_or("");
            let family = families.get_mut(&current).unwrap();
            for pair in split_labels(labels) {
                let (name, value) = pair.split_once('=').unwrap();
                if name == "le" {
                    continue;
                }
                family
                    .entry(name.to_owned())
                    .or_default()
                    .insert(value.trim_matches('"').to_owned());
            }
        }
    }
    families
}

/// `/metrics` of the api after ticks that reach every family: one good, one with a failing
/// endpoint and an unreadable list element, one a minute later; InfluxDB a real one.
fn metrics_after_ticks() -> String {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let variables = variables_for(&fake, &influx);
    let kv = SharedKv::default();
    let mut coins = fixture_json("coins_list.json");
    coins
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"code": null, "rate": 2.0}));
    for (i, at) in [0u64, 61, 122].into_iter().enumerate() {
        if i == 1 {
            fake.respond("/overview", Reply::documented_error(503));
            fake.respond("/coins/list", Reply::json(200, coins.to_string()));
        } else {
            fake.restore("/overview");
            fake.restore("/coins/list");
        }
        let host = NativeHost::with_kv(&variables, kv.clone());
        host.advance(Duration::from_secs(at));
        block_on(cycle::run(&host));
    }
    let api = NativeHost::with_kv(&variables, kv);
    let request = Request::builder()
        .method(Method::GET)
        .uri("/metrics")
        .body(Vec::new())
        .unwrap();
    let response = block_on(routes::handle_api(&api, &request));
    assert_eq!(response.status(), StatusCode::OK);
    String::from_utf8(response.into_body()).unwrap()
}

#[test]
fn migratings_metric_tables_are_what_metrics_renders() {
    let (ours, original) = migrating_tables();
    let text = metrics_after_ticks();
    let rendered = rendered(&text);
    let mut wrong = Vec::new();
    for (family, labels) in &ours {
        let Some(seen) = rendered.get(family) else {
            wrong.push(format!("`{family}` is not rendered"));
            continue;
        };
        for (label, values) in labels {
            let Some(seen_values) = seen.get(label) else {
                wrong.push(format!("`{family}` has no label `{label}`"));
                continue;
            };
            for value in values.difference(seen_values) {
                wrong.push(format!("`{family}{{{label}=\"{value}\"}}` is not rendered"));
            }
        }
        for label in seen.keys().filter(|l| !labels.contains_key(*l)) {
            wrong.push(format!(
                "`{family}` renders label `{label}`, which MIGRATING omits"
            ));
        }
    }
    for family in rendered.keys().filter(|f| !ours.contains_key(*f)) {
        wrong.push(format!(
            "`{family}` is rendered but in no table of MIGRATING"
        ));
    }
    let original: BTreeSet<&str> = original.keys().map(String::as_str).collect();
    for family in ORIGINAL_FAMILIES.iter().filter(|f| !original.contains(*f)) {
        wrong.push(format!("the original's `{family}` has no row"));
    }
    assert!(wrong.is_empty(), "{}\n\n{text}", wrong.join("\n"));
}

#[test]
fn the_table_reader_sees_families_labels_and_values() {
    let mut named = Named::new();
    families_in(
        r#"`lcw_x_total{status="a|b",endpoint}` and `other` and `lcw_y`"#,
        &mut named,
    );
    assert_eq!(named.len(), 2);
    assert_eq!(
        named["lcw_x_total"]["status"],
        ["a", "b"].map(String::from).into()
    );
    assert!(named["lcw_x_total"]["endpoint"].is_empty());
    assert!(named["lcw_y"].is_empty());
    assert_eq!(cells(r"| `a\|b` | c |"), ["`a|b`", "c"]);
}
