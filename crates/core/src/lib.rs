//! slate-core: the platform. Entities are data (the catalogue); the enricher turns ID-only
//! change events into Avro records of their current state; the sinks write them idempotently;
//! the embedded schema registry, `replay` and `verify` work for any entity. Nothing here
//! imports the studio example (`slate-studio`).

pub mod auth;
pub mod catalogue;
pub mod config;
pub mod dashboard;
pub mod enrich;
pub mod event;
pub mod health;
pub mod kafka;
pub mod metrics;
pub mod progress;
pub mod proto;
pub mod publish;
pub mod registry;
pub mod replay;
pub mod router;
pub mod schema;
pub mod schemas;
pub mod shadow;
pub mod sink;
pub mod time;
pub mod verify;
