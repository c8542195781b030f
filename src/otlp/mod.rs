//! OpenTelemetry (OTLP/HTTP, protobuf) export of every metric family: the
//! same families as `GET /metrics`, pushed to a Collector, Mimir,
//! Prometheus's OTLP receiver or a vendor.

mod config;
mod encode;
mod export;
mod send;
