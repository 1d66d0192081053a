//! slate: studio-finance event enrichment.
//!
//! Data flows one way: services publish ID-only change events, the enricher fetches the
//! current state from the source of truth and emits Avro records, and independent sinks write
//! them idempotently. See `README.md` for the architecture and the delivery guarantees.
//!
//! This crate is the command line. The platform is `slate-core` (`crates/core`), which knows no
//! entity; the studio example (its source of truth, analyst API and demo) is `slate-studio`
//! (`crates/studio`), built on the platform like any deployment. Both are re-exported here, so
//! `slate::enrich` and `slate::studio` name the same modules as in their crates.

pub use slate_core::*;
pub use slate_studio::{analyst, demo, studio};

pub mod bench;
pub mod cli;
