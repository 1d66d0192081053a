//! slate: studio-finance event enrichment.
//!
//! Data flows one way: studio services publish ID-only change events, the enricher fetches the
//! current state from the source of truth and emits Avro records, and independent sinks write
//! them idempotently. See `README.md` for the architecture and the delivery guarantees.

pub mod analyst;
pub mod bench;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod enrich;
pub mod event;
pub mod health;
pub mod kafka;
pub mod metrics;
pub mod progress;
pub mod proto;
pub mod registry;
pub mod replay;
pub mod schema;
pub mod schemas;
pub mod sink;
pub mod studio;
pub mod time;
pub mod verify;
