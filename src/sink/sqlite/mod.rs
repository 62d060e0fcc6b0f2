//! The embedded SQLite store: a sink, and the store the query API and the page read.

mod db;

pub use db::*;
