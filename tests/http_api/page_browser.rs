//! The page at `/` in a real headless browser (Debian's `chromium`), served by the loopback test
//! server over the real core: a tick against the LCW fake fills the store, the browser loads the
//! page, and its DOM must hold the price table, the SVG chart's path and the collector's health —
//! with a hostile coin name shown as text, never run.

use crate::support;

use std::process::Command;
use std::sync::Arc;

use lcw_fetcher::cycle;
use lcw_fetcher::host::Clock as _;
use lcw_fetcher::sink::sqlite::Db;
use lcw_fetcher::telemetry::history::Outcome;
use serde_json::json;
use support::http_server::TestServer;
use support::lcw_fake::{API_KEY, fixture_json};
use support::{LcwFake, NativeHost, Reply, block_on};

/// The DOM of `url` after the page loaded, as headless Chromium prints it.
fn dump_dom(url: &str) -> String {
    chromium(url, "--dump-dom")
}

/// Runs headless Chromium on `url` with `action` (`--dump-dom`, `--screenshot=…`); its stdout.
fn chromium(url: &str, action: &str) -> String {
    let chromium = support::influxd::which("chromium").unwrap_or_else(|| {
        panic!("`chromium` not found: install Debian's `chromium` package (scripts/test-all does it when run as root)")
    });
    let profile = std::env::temp_dir().join(format!(
        "lcw-chromium-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=900,1300",
            &format!("--user-data-dir={}", profile.display()),
            action,
            url,
        ])
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_page_shows_prices_a_chart_and_health_in_a_real_browser() {
    let fake = LcwFake::start();
    let mut coins = fixture_json("coins_list.json");
    coins[1]["name"] = json!("<script>document.title='owned'</script><img src=x onerror=alert(1)>");
    fake.respond(
        "/coins/list",
        Reply::json(200, serde_json::to_vec(&coins).unwrap()),
    );
    let host = NativeHost::new(&[
        ("lcw_api_key", API_KEY),
        ("lcw_base_url", fake.base_url.as_str()),
        ("cycle_deadline_ms", "20000"),
    ]);
    let record = block_on(cycle::run(&host));
    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    // Earlier prices of BTC for the chart: every 5 minutes of the last 3 hours.
    let now = host.unix_millis();
    let mut lines = String::new();
    for i in 1..36i64 {
        lines.push_str(&format!(
            "cryptocurrency_data,code=BTC,currency=USD rate={} {}\n",
            60_000.0 + (i * 7 % 11) as f64 * 25.0,
            now - i * 300_000
        ));
    }
    block_on(async {
        Db::open(&host)
            .await
            .unwrap()
            .write_points(&crate::support::points(&lines))
            .await
            .unwrap()
    });

    let server = TestServer::start(Arc::new(host));
    let dom = dump_dom(&format!("{}/", server.base_url));
    // For a person to look at: LCW_PAGE_SCREENSHOT=/tmp/page.png cargo test --test http_api page_browser::
    if let Some(path) = std::env::var_os("LCW_PAGE_SCREENSHOT") {
        chromium(
            &format!("{}/", server.base_url),
            &format!("--screenshot={}", std::path::Path::new(&path).display()),
        );
    }

    // Health, rendered on the server.
    assert!(dom.contains("id=\"outcome\">success<"), "{dom}");
    assert!(dom.contains("id=\"breaker\">closed<"), "{dom}");
    assert!(dom.contains("id=\"spool\">0 points<"), "{dom}");
    assert!(dom.contains("id=\"sink\">sqlite<"), "{dom}");
    assert!(dom.contains("id=\"last-tick\">20"), "{dom}");
    // The table: one row per coin, by rank.
    let btc = dom.find("<tr data-code=\"BTC\">").expect("a BTC row");
    let eth = dom.find("<tr data-code=\"ETH\">").expect("an ETH row");
    assert!(btc < eth, "by rank");
    assert!(dom.contains("<tr data-code=\"GRIN\">"), "{dom}");
    assert!(dom.contains(" %</td>"), "a 24 h change: {dom}");
    // The chart of the first coin: an SVG path through its 36 prices.
    let at = dom
        .find("id=\"price-line\" d=\"M")
        .expect("the chart's path");
    let path = &dom[at..dom[at..].find("\" fill").unwrap() + at];
    assert!(path.matches(" L").count() >= 30, "{path}");
    // The hostile name is text: no element was made of it, no script of it ran.
    assert!(
        dom.contains(
            "&lt;script&gt;document.title='owned'&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
        ),
        "{dom}"
    );
    assert!(
        dom.contains("<title>lcw-fetcher</title>"),
        "the title is untouched"
    );
    assert!(!dom.contains("<img"), "{dom}");
    // Nothing is loaded from elsewhere.
    for external in ["src=\"http", "href=\"http", "@import", "url("] {
        assert!(!dom.contains(external), "{external} in {dom}");
    }

    // Another coin and range through the form's parameters.
    let dom = dump_dom(&format!("{}/?coin=eth&range=7d", server.base_url));
    assert!(
        dom.contains("<option value=\"ETH\" selected=\"\">ETH</option>"),
        "{dom}"
    );
    assert!(
        dom.contains("<option value=\"7d\" selected=\"\">7d</option>"),
        "{dom}"
    );
    assert!(
        dom.contains("id=\"price-line\" d=\"M"),
        "one point is a path too: {dom}"
    );
}
