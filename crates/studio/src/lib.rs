//! slate-studio: the example deployment. A studio's source of truth for six finance entities
//! (GraphQL and gRPC, with faults and load), the analyst GraphQL API over the SQL sink's views
//! and the one-command demo, built on `slate-core` as any deployment would be.

pub mod analyst;
pub mod demo;
pub mod studio;

// The platform's modules under their own names, so paths read `crate::config::…` here as in
// slate-core.
use slate_core::{catalogue, config, dashboard, enrich, event, kafka, metrics, proto, registry, sink, time};
