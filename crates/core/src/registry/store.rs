//! Registry storage: an in-memory store (embedded demo, tests) and PostgreSQL (`pg.rs`).
//!
//! Contracts shared by both stores (the same integration suite runs against each):
//! - a schema is identified by (context, normalized text, references json); `schema_id` returns
//!   the existing id for a known triple and allocates the context's next id otherwise,
//!   atomically, so concurrent registrations of one schema get one id. Ids are unique within a
//!   context (`context.rs`) and never reused. Subjects are stored canonical (qualified outside
//!   the default context), so a subject's context is part of its name.
//! - versions of a subject are numbered from 1 and never renumbered; a new version is
//!   `max(existing, including soft-deleted) + 1`.
//! - `insert_version` is the only write that can race with a compatibility check: it takes the
//!   max version the caller checked against and reports `Conflict` if the subject moved on.

use super::compat::CompatibilityLevel;
use super::error::RegistryError;
pub use super::memory::MemoryStore;
use super::mode::Mode;
use super::pg::PgStore;

/// One version row of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRow {
    pub version: u32,
    pub schema_id: u32,
    pub deleted: bool,
}

/// A stored schema: normalized text and its references as stored (JSON array text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchema {
    pub id: u32,
    pub text: String,
    pub references_json: String,
}

/// Outcome of `insert_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted(u32),
    /// The schema already is a live version of the subject (a concurrent registration won).
    Existing(u32),
    /// The subject's max version is not the one the caller checked against.
    Conflict,
}

/// The registry's storage, chosen at start-up.
#[derive(Debug)]
pub enum Store {
    Memory(MemoryStore),
    Postgres(PgStore),
}

impl From<MemoryStore> for Store {
    fn from(store: MemoryStore) -> Self {
        Store::Memory(store)
    }
}

impl From<PgStore> for Store {
    fn from(store: PgStore) -> Self {
        Store::Postgres(store)
    }
}

type Result<T> = std::result::Result<T, RegistryError>;

impl Store {
    pub async fn schema_id(&self, context: &str, text: &str, references_json: &str) -> Result<u32> {
        match self {
            Store::Memory(store) => Ok(store.schema_id(context, text, references_json)),
            Store::Postgres(store) => store.schema_id(context, text, references_json).await,
        }
    }

    /// The id of a known schema, without allocating one.
    pub async fn find_schema_id(&self, context: &str, text: &str, references_json: &str) -> Result<Option<u32>> {
        match self {
            Store::Memory(store) => Ok(store.find_schema_id(context, text, references_json)),
            Store::Postgres(store) => store.find_schema_id(context, text, references_json).await,
        }
    }

    pub async fn schema_by_id(&self, context: &str, id: u32) -> Result<Option<StoredSchema>> {
        match self {
            Store::Memory(store) => Ok(store.schema_by_id(context, id)),
            Store::Postgres(store) => store.schema_by_id(context, id).await,
        }
    }

    /// Subjects with at least one version; with `include_deleted` false, at least one live one.
    pub async fn subjects(&self, include_deleted: bool) -> Result<Vec<String>> {
        match self {
            Store::Memory(store) => Ok(store.subjects(include_deleted)),
            Store::Postgres(store) => store.subjects(include_deleted).await,
        }
    }

    /// Every version row of `subject` (soft-deleted included), ascending by version.
    pub async fn versions(&self, subject: &str) -> Result<Vec<VersionRow>> {
        match self {
            Store::Memory(store) => Ok(store.versions(subject)),
            Store::Postgres(store) => store.versions(subject).await,
        }
    }

    /// (subject, version) pairs of `context` that use its schema `id`, soft-deleted included.
    pub async fn usages(&self, context: &str, id: u32) -> Result<Vec<(String, VersionRow)>> {
        match self {
            Store::Memory(store) => Ok(store.usages(context, id)),
            Store::Postgres(store) => store.usages(context, id).await,
        }
    }

    pub async fn insert_version(&self, subject: &str, schema_id: u32, checked_max_opt: Option<u32>) -> Result<InsertOutcome> {
        match self {
            Store::Memory(store) => Ok(store.insert_version(subject, schema_id, checked_max_opt)),
            Store::Postgres(store) => store.insert_version(subject, schema_id, checked_max_opt).await,
        }
    }

    /// Marks the given versions soft-deleted.
    pub async fn soft_delete(&self, subject: &str, versions: &[u32]) -> Result<()> {
        match self {
            Store::Memory(store) => {
                store.soft_delete(subject, versions);
                Ok(())
            }
            Store::Postgres(store) => store.soft_delete(subject, versions).await,
        }
    }

    /// Removes the given versions, only those already soft-deleted.
    pub async fn hard_delete(&self, subject: &str, versions: &[u32]) -> Result<()> {
        match self {
            Store::Memory(store) => {
                store.hard_delete(subject, versions);
                Ok(())
            }
            Store::Postgres(store) => store.hard_delete(subject, versions).await,
        }
    }

    /// The configured level of `subject_opt` (`None` = global), if one was set.
    pub async fn config(&self, subject_opt: Option<&str>) -> Result<Option<CompatibilityLevel>> {
        let key = subject_opt.unwrap_or("");
        match self {
            Store::Memory(store) => Ok(store.config(key)),
            Store::Postgres(store) => store.config(key).await,
        }
    }

    pub async fn set_config(&self, subject_opt: Option<&str>, level: CompatibilityLevel) -> Result<()> {
        let key = subject_opt.unwrap_or("");
        match self {
            Store::Memory(store) => {
                store.set_config(key, level);
                Ok(())
            }
            Store::Postgres(store) => store.set_config(key, level).await,
        }
    }

    /// Removes the configured level; returns the removed one.
    pub async fn delete_config(&self, subject_opt: Option<&str>) -> Result<Option<CompatibilityLevel>> {
        let key = subject_opt.unwrap_or("");
        match self {
            Store::Memory(store) => Ok(store.delete_config(key)),
            Store::Postgres(store) => store.delete_config(key).await,
        }
    }

    /// (context, schema) of every schema whose references text mentions `subject` (a superset of
    /// those referencing it; the caller parses and matches exactly).
    pub async fn schemas_mentioning(&self, subject: &str) -> Result<Vec<(String, StoredSchema)>> {
        match self {
            Store::Memory(store) => Ok(store.schemas_mentioning(subject)),
            Store::Postgres(store) => store.schemas_mentioning(subject).await,
        }
    }

    /// Stores a schema under an explicit id (IMPORT mode). The id must be free or already hold
    /// this very schema; the schema must not be stored under another id of `context`. Later
    /// allocated ids continue above the highest id stored in the context.
    pub async fn insert_schema_with_id(&self, context: &str, id: u32, text: &str, references_json: &str) -> Result<()> {
        match self {
            Store::Memory(store) => store.insert_schema_with_id(context, id, text, references_json),
            Store::Postgres(store) => store.insert_schema_with_id(context, id, text, references_json).await,
        }
    }

    /// Adds `version` of `subject` holding `schema_id` (IMPORT mode); the version must be free.
    pub async fn insert_version_at(&self, subject: &str, version: u32, schema_id: u32) -> Result<()> {
        match self {
            Store::Memory(store) => store.insert_version_at(subject, version, schema_id),
            Store::Postgres(store) => store.insert_version_at(subject, version, schema_id).await,
        }
    }

    /// The configured mode of `subject_opt` (`None` = global), if one was set.
    pub async fn mode(&self, subject_opt: Option<&str>) -> Result<Option<Mode>> {
        let key = subject_opt.unwrap_or("");
        match self {
            Store::Memory(store) => Ok(store.mode(key)),
            Store::Postgres(store) => store.mode(key).await,
        }
    }

    pub async fn set_mode(&self, subject_opt: Option<&str>, mode: Mode) -> Result<()> {
        let key = subject_opt.unwrap_or("");
        match self {
            Store::Memory(store) => {
                store.set_mode(key, mode);
                Ok(())
            }
            Store::Postgres(store) => store.set_mode(key, mode).await,
        }
    }

    /// Removes the configured mode; returns the removed one.
    pub async fn delete_mode(&self, subject_opt: Option<&str>) -> Result<Option<Mode>> {
        let key = subject_opt.unwrap_or("");
        match self {
            Store::Memory(store) => Ok(store.delete_mode(key)),
            Store::Postgres(store) => store.delete_mode(key).await,
        }
    }
}
