//! # lcw_fetcher — Live Coin Watch market data into InfluxDB, serverless
//!
//! The core library of lcw-fetcher: all logic, no runtime. It reaches the world only through the
//! ports in [`host`]; the Spin components (`components/collector`, `components/api`) are thin glue
//! that hand it a Spin-backed host ([`spin_host`], feature `spin`), and the tests hand it native
//! and simulated ones.
//!
//! Where each concern lives:
//! - [`host`] — the ports (HTTP, key-value, variables, clocks, log);
//! - [`config`] — application variables into validated [`config::Settings`];
//! - [`lcw`] — the Live Coin Watch API: requests, typed responses, error classes;
//! - [`resilience`] — pure rules: retry backoff, circuit breaker, rate limiter, credit reserve;
//! - [`guard`] — one LCW call through those rules, with the tick's shared state;
//! - [`plan`] — what a tick fetches, and the credits the settings cost a day;
//! - [`cache`] — answers kept in the store with their fetch time: TTL, LRU, statistics;
//! - [`lease`] — one tick at a time across processes sharing the store;
//! - [`schema`] — LCW answers into InfluxDB points (measurement, tag and field names);
//! - [`influx`] — line protocol and the InfluxDB write APIs;
//! - [`state`] — documents in the key-value store;
//! - [`cycle`] — one fetch cycle, start to finish;
//! - [`telemetry`] — Prometheus text and JSON statistics from the stored state;
//! - [`routes`] — the HTTP API.

pub mod cache;
pub mod config;
pub mod cycle;
pub mod guard;
pub mod host;
pub mod influx;
pub mod lcw;
pub mod lease;
pub mod plan;
pub mod remote;
pub mod resilience;
pub mod routes;
pub mod schema;
pub mod state;
pub mod telemetry;

#[cfg(feature = "spin")]
pub mod spin_host;
