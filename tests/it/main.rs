//! Integration tests through the public API only.

#[cfg(feature = "cli")]
mod browser;
#[cfg(feature = "cli")]
mod cli;
mod collector;
#[cfg(feature = "http")]
mod http;
mod persist;
#[cfg(feature = "http")]
mod tools;
#[cfg(feature = "tracing-layer")]
mod tracing_layer;

use pgmigrator_metrics::TableProgress;

/// Three tables: a known estimate, another, and a never-analysed one.
pub fn three_tables() -> Vec<TableProgress> {
    vec![
        TableProgress::new("public", "users", 1000, 64 * 1024),
        TableProgress::new("public", "orders", 4000, 256 * 1024),
        TableProgress::new("public", "events", -1, 32 * 1024),
    ]
}
