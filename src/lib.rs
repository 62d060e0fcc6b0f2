//! # lcw_fetcher — Live Coin Watch market data into SQLite or InfluxDB, serverless
//!
//! The core library of lcw-fetcher: all logic, no runtime. It reaches the world only through the
//! ports in [`host`]; the Spin components (`components/collector`, `components/api`) are thin glue
//! that hand it a Spin-backed host ([`spin_host`], feature `spin`), and the tests hand it native
//! and simulated ones.
//!
//! Where each concern lives, lowest layer first (`docs/layers.toml`: a module imports only from
//! lower layers, which `tests/repository/architecture.rs` enforces):
//! - [`host`] — the ports (HTTP, key-value, SQL, variables, clocks, log);
//! - [`remote`] — what LCW and InfluxDB share: error classes, `Retry-After`, `User-Agent`;
//! - [`point`] — what flows between the stages: measurement, tags, typed fields, time;
//! - [`config`] — application variables into validated [`config::Settings`], and every settings
//!   type (TTLs, alert thresholds, InfluxDB); [`config::variables`] is the one table of them
//!   (name, default, secret, kind and limits, meaning) that the reader validates through and the
//!   docs and `spin.toml` are generated from;
//! - [`resilience`] — pure rules: retry backoff, circuit breaker, rate limiter, credit reserve;
//! - [`hedge`] — pure rules of hedged requests: the learnt delay, the gates of a second copy;
//! - [`sink`] — the seam of the sinks: the [`sink::Sink`] trait and the outcomes of a batch;
//! - [`sink::line_protocol`] — points into line protocol and back, and its gzip;
//! - [`state`] — key names of the stored documents and their JSON codec;
//! - [`lcw`] — the Live Coin Watch API: requests, typed responses, the client;
//! - [`sink::influxdb`], [`sink::spool`] — the InfluxDB sink (its write APIs, its `/status`
//!   part); lines waiting in the store;
//! - [`sink::sqlite`] — the embedded store: the SQLite sink, tables, migrations, upserts,
//!   retention, read queries, its `/status` part;
//! - [`lease`] — one tick at a time across processes sharing the store, one host per cron slot;
//! - [`guard`] — one LCW call through the resilience rules, with the tick's shared state;
//! - [`cache`] — answers kept in the store with their fetch time: TTL, LRU, statistics;
//! - [`schema`] — LCW answers into InfluxDB points (measurement, tag and field names);
//! - [`sink::delivery`] — delivery to any sink that loses nothing: retries, splitting,
//!   quarantine, spool; [`sink::registry`] — which sink serves which `SinkKind`;
//! - [`query`] — the query API over the embedded store: parameters, limits, JSON and CSV;
//! - [`source`] — one file per kind of LCW data behind one trait: endpoint, request body,
//!   reading, points; the registry of a live tick's sources;
//! - [`plan`] — what a tick fetches, and the credits the settings cost a day;
//! - [`backfill`] — gaps in the data found and filled from LCW's history;
//! - [`telemetry`] — tick history, timings and alerts; Prometheus text and JSON statistics;
//! - [`fetch`] — the LCW side of a tick: wanted answers from the cache or LCW, their points;
//! - [`cycle`] — one fetch cycle, start to finish, and the state document it carries over;
//! - [`page`] — the page at `/`: health, latest prices, the SVG chart;
//! - [`routes`] — the HTTP API.

pub mod backfill;
pub mod cache;
pub mod clock;
pub mod config;
pub mod cycle;
pub mod fetch;
pub mod guard;
pub mod hedge;
pub mod host;
pub mod lcw;
pub mod lease;
pub mod page;
pub mod plan;
pub mod point;
pub mod query;
pub mod remote;
pub mod resilience;
pub mod routes;
pub mod schema;
pub mod sink;
pub mod source;
pub mod state;
pub mod telemetry;

#[cfg(feature = "spin")]
pub mod spin_host;
