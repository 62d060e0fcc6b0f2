//! The page at `/`: one self-contained HTML document — collector health, the latest prices with
//! their 24 h change, and a price chart drawn as inline SVG.
//!
//! Owns the markup. Everything is rendered on the server, so the page works without JavaScript;
//! the little script there only submits the chart's form when a select changes. Nothing is
//! loaded from elsewhere (no scripts, fonts, styles or images: the route's Content-Security-Policy
//! forbids them), and every value from the data is escaped: coin names come from LCW and are
//! untrusted. It must not query anything but through `query`, nor read state but the snapshot it
//! is given.

use std::fmt::Write as _;

use crate::config::{Settings, SinkKind};
use crate::host::Host;
use crate::query::{self, Params, QueryError, Rows};
use crate::sink::sqlite;
use crate::telemetry::Snapshot;

/// The ranges the chart offers, with their `from` offsets.
pub const RANGES: [&str; 3] = ["24h", "7d", "30d"];
/// Rows of the price table at most.
pub const TABLE_ROWS: usize = 100;
/// The Content-Security-Policy of the page: nothing from anywhere else.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 240.0;
const PAD: f64 = 8.0;

/// Escapes text for HTML content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole page. `settings` is `None` when they are invalid (the health part still renders).
pub async fn render<H: Host>(
    host: &H,
    settings: Option<&Settings>,
    snapshot: &Snapshot,
    query_string: Option<&str>,
) -> String {
    let params = Params::parse(query_string);
    let mut html = String::with_capacity(32 * 1024);
    html.push_str(HEAD);
    html.push_str("<main><h1>lcw-fetcher</h1>");
    health(&mut html, settings, snapshot, host.unix_millis());

    match settings {
        Some(settings) if settings.sink == SinkKind::Sqlite => {
            let coins = query::latest_coins(host, &settings.currency).await;
            let range = params
                .get("range")
                .and_then(|r| RANGES.iter().find(|known| **known == r))
                .copied()
                .unwrap_or(RANGES[0]);
            let chosen = match params.get("coin").map(query::coin_code) {
                Some(Ok(code)) => Some(code),
                Some(Err(_)) | None => coins
                    .as_ref()
                    .ok()
                    .and_then(|rows| rows.text(0, "code"))
                    .map(str::to_owned),
            };
            chart(&mut html, host, settings, &coins, chosen.as_deref(), range).await;
            table(&mut html, &coins, &settings.currency);
        }
        Some(_) => html.push_str(
            "<section id=\"data\"><p>sink = influxdb: the data is in InfluxDB. The price table and the chart read the embedded store (sink = sqlite).</p></section>",
        ),
        None => html.push_str(
            "<section id=\"data\"><p>The settings are invalid (see /status): no data to show.</p></section>",
        ),
    }
    html.push_str(SCRIPT);
    html.push_str("</main></body></html>\n");
    html
}

fn health(html: &mut String, settings: Option<&Settings>, snapshot: &Snapshot, now_ms: i64) {
    let last = snapshot.history.recent.back();
    let item = |html: &mut String, id: &str, label: &str, value: &str| {
        let _ = write!(
            html,
            "<div><dt>{label}</dt><dd id=\"{id}\">{}</dd></div>",
            escape(value)
        );
    };
    html.push_str("<section id=\"health\"><h2>Collector</h2><dl>");
    match last {
        Some(record) => {
            item(
                html,
                "last-tick",
                "last tick",
                &format!(
                    "{} ({} s ago)",
                    query::iso(record.started_at_ms),
                    now_ms.saturating_sub(record.started_at_ms).max(0) / 1000
                ),
            );
            item(html, "outcome", "outcome", record.outcome.as_str());
        }
        None => {
            item(html, "last-tick", "last tick", "none yet");
            item(html, "outcome", "outcome", "—");
        }
    }
    item(
        html,
        "breaker",
        "breaker",
        snapshot.resilience.breaker.name(),
    );
    item(
        html,
        "spool",
        "spool",
        &format!("{} points", snapshot.sink.spool_points),
    );
    let credits = snapshot.resilience.credits.as_ref().map_or_else(
        || "unknown".to_owned(),
        |c| format!("{} of {}", c.remaining, c.limit),
    );
    item(html, "credits", "credits left today", &credits);
    let sink = settings.map_or("settings invalid", |s| s.sink.as_str());
    item(html, "sink", "sink", sink);
    if let Some(error) = &snapshot.sink.last_error {
        item(html, "sink-error", "last sink error", error);
    }
    html.push_str("</dl></section>");
}

async fn chart<H: Host>(
    html: &mut String,
    host: &H,
    settings: &Settings,
    coins: &Result<Rows, QueryError>,
    chosen: Option<&str>,
    range: &str,
) {
    html.push_str("<section id=\"chart\"><h2>Price</h2><form method=\"get\" action=\"/\"><label>coin <select name=\"coin\">");
    let mut listed = false;
    if let Ok(rows) = coins {
        for i in 0..rows.rows.len().min(TABLE_ROWS) {
            let Some(code) = rows.text(i, "code") else {
                continue;
            };
            let selected = if Some(code) == chosen {
                listed = true;
                " selected"
            } else {
                ""
            };
            let _ = write!(
                html,
                "<option value=\"{0}\"{selected}>{0}</option>",
                escape(code)
            );
        }
    }
    if let (false, Some(code)) = (listed, chosen) {
        let _ = write!(
            html,
            "<option value=\"{0}\" selected>{0}</option>",
            escape(code)
        );
    }
    html.push_str("</select></label> <label>range <select name=\"range\">");
    for r in RANGES {
        let selected = if r == range { " selected" } else { "" };
        let _ = write!(html, "<option value=\"{r}\"{selected}>{r}</option>");
    }
    html.push_str("</select></label> <button type=\"submit\">show</button></form>");

    let Some(code) = chosen else {
        html.push_str("<p id=\"chart-empty\">No data yet.</p></section>");
        return;
    };
    let params = Params::parse(Some(&format!("from=-{range}")));
    let series = match query::range(&params, host.unix_millis()) {
        Ok(r) => query::series(host, &sqlite::COINS, &[&settings.currency, code], "rate", r)
            .await
            .map(|rows| (rows, r)),
        Err(e) => Err(e),
    };
    match series {
        Ok((rows, r)) if !rows.rows.is_empty() => {
            svg(html, code, &settings.currency, &rows, r);
        }
        Ok(_) => {
            let _ = write!(
                html,
                "<p id=\"chart-empty\">No prices of {} in the last {range}.</p>",
                escape(code)
            );
        }
        Err(e) => {
            let _ = write!(html, "<p id=\"chart-error\">{}</p>", escape(&e.message));
        }
    }
    html.push_str("</section>");
}

/// The series as a line of each bucket's last price, scaled into the view box.
fn svg(html: &mut String, code: &str, currency: &str, rows: &Rows, range: query::Range) {
    let points: Vec<(i64, f64)> = (0..rows.rows.len())
        .filter_map(|i| {
            let t = match rows.get(i, "time_ms")? {
                crate::host::SqlValue::Integer(t) => *t,
                _ => return None,
            };
            Some((t, rows.real(i, "last")?))
        })
        .collect();
    let low = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let high = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let span_y = if high > low { high - low } else { 1.0 };
    let span_x = (range.to_ms - range.from_ms).max(1) as f64;
    let mut d = String::new();
    for (i, (t, v)) in points.iter().enumerate() {
        let x = PAD + (t - range.from_ms) as f64 / span_x * (WIDTH - 2.0 * PAD);
        let y = HEIGHT - PAD - (v - low) / span_y * (HEIGHT - 2.0 * PAD);
        let _ = write!(d, "{}{x:.1},{y:.1}", if i == 0 { "M" } else { " L" });
    }
    let _ = write!(
        html,
        "<figure><svg id=\"price-chart\" role=\"img\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"100%\" aria-label=\"{title}\"><title>{title}</title>\
         <rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#fafafa\"/>\
         <path id=\"price-line\" d=\"{d}\" fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"1.5\"/></svg>\
         <figcaption>high <span id=\"chart-high\">{high}</span> · low <span id=\"chart-low\">{low}</span> {cur} · {from} to {to} · {n} points of {step} s</figcaption></figure>",
        title = escape(&format!("{code} in {currency}")),
        high = price(high),
        low = price(low),
        cur = escape(currency),
        from = query::iso(range.from_ms),
        to = query::iso(range.to_ms),
        n = points.len(),
        step = range.step_ms / 1000,
    );
}

fn table(html: &mut String, coins: &Result<Rows, QueryError>, currency: &str) {
    html.push_str("<section id=\"prices\"><h2>Latest prices</h2>");
    let rows = match coins {
        Ok(rows) if !rows.rows.is_empty() => rows,
        Ok(_) => {
            html.push_str("<p id=\"prices-empty\">No prices yet: the collector writes them once a minute.</p></section>");
            return;
        }
        Err(e) => {
            let _ = write!(
                html,
                "<p id=\"prices-error\">{}</p></section>",
                escape(&e.message)
            );
            return;
        }
    };
    let _ = write!(
        html,
        "<table id=\"coins\"><thead><tr><th>#</th><th>code</th><th>name</th><th>price ({})</th><th>24 h</th><th>market cap</th><th>as of</th></tr></thead><tbody>",
        escape(currency)
    );
    for i in 0..rows.rows.len().min(TABLE_ROWS) {
        let code = rows.text(i, "code").unwrap_or("");
        let change = rows.real(i, "change_24h");
        let class = match change {
            Some(c) if c > 0.0 => "up",
            Some(c) if c < 0.0 => "down",
            _ => "flat",
        };
        let _ = write!(
            html,
            "<tr data-code=\"{code}\"><td>{rank}</td><td><a href=\"/?coin={code}\">{code}</a></td><td>{name}</td><td class=\"num\">{rate}</td><td class=\"num {class}\">{change}</td><td class=\"num\">{cap}</td><td>{time}</td></tr>",
            code = escape(code),
            rank = rows
                .real(i, "rank")
                .map_or(String::new(), |r| format!("{r}")),
            name = escape(rows.text(i, "name").unwrap_or("")),
            rate = rows.real(i, "rate").map_or(String::new(), price),
            change = change.map_or(String::new(), |c| format!("{c:+.2} %")),
            cap = rows
                .real(i, "market_cap")
                .map_or(String::new(), |c| format!("{c:.0}")),
            time = escape(rows.text(i, "time").unwrap_or("")),
        );
    }
    html.push_str("</tbody></table></section>");
}

/// A price with as many decimals as its size needs.
fn price(value: f64) -> String {
    let decimals = match value.abs() {
        v if v >= 1000.0 => 2,
        v if v >= 1.0 => 4,
        v if v >= 0.01 => 6,
        _ => 10,
    };
    format!("{value:.decimals$}")
}

const HEAD: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>lcw-fetcher</title><style>\
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fff}main{max-width:820px;margin:0 auto;padding:1em}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}dl{display:flex;flex-wrap:wrap;gap:.5em 2em}dl div{min-width:10em}dt{color:#666;font-size:.85em}dd{margin:0;font-weight:600}\
table{border-collapse:collapse;width:100%}th,td{padding:.25em .5em;border-bottom:1px solid #eee;text-align:left}.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
.up{color:#1a7f37}.down{color:#cf222e}figure{margin:0}figcaption{color:#666;font-size:.85em}\
</style></head><body>";

/// Submits the chart's form on a change; without JavaScript its button does the same.
const SCRIPT: &str = "<script>for(const s of document.querySelectorAll('#chart select')){s.addEventListener('change',()=>s.form.submit());}</script>";
