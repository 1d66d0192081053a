//! Confluent-compatible schema registry: client side and embedded server (AVRO only).
//!
//! Contracts:
//! - Ids are stable and never reused, unique within a schema context (`context.rs`; one id space
//!   for deployments that use no contexts). One schema (normalized text + references) has one
//!   id across the subjects of a context; registering it again in a subject returns the
//!   existing id and does not add a version. "Same" is defined in `schema.rs` (doc changes are
//!   new schemas).
//! - Versions count from 1 per subject and are never renumbered. Soft delete hides a version
//!   (visible with `?deleted=true`); permanent delete requires a prior soft delete, as Confluent.
//! - A registration is checked against the live versions under the subject's level, else the
//!   global level (stored, else the `RegistryState` default, BACKWARD unless configured).
//!   The check and the insert cannot interleave with another registration of the subject
//!   (optimistic retry on the max version, see `store.rs`).
//! - References name (name, subject, version) of other registered schemas; they are resolved
//!   recursively to parse and check the schema and are returned with it.
//! - The client (`client.rs`) uses only the documented Confluent REST API, so it works against
//!   Confluent SR, Karapace and Apicurio as well as this server; ids are cached forever.

pub mod client;
pub mod compat;
pub mod context;
mod error;
mod memory;
mod mode;
mod pg;
mod schema;
mod server;
mod service;
mod settings;
mod store;

use serde::{Deserialize, Serialize};

pub use client::{ClientError, RegisteredVersion, RegistryAuth, RegistryClient, SchemaById};
pub use compat::CompatibilityLevel;
pub use error::RegistryError;
pub use mode::Mode;
pub use pg::PgStore;
pub use server::{MAX_BODY_BYTES, RegistryState, router, serve};
pub use store::{MemoryStore, Store};

/// A reference from a schema to a named type registered under another subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SchemaReference {
    /// The referenced type's full name, as used inside the referencing schema.
    pub name: String,
    pub subject: String,
    pub version: u32,
}
