//! Registry storage: an in-memory store (embedded demo, tests) and PostgreSQL (`pg.rs`).
//!
//! Contracts shared by both stores (the same integration suite runs against each):
//! - a schema is identified by (normalized text, references json); `schema_id` returns the
//!   existing id for a known pair and allocates a new global id otherwise, atomically, so
//!   concurrent registrations of one schema get one id. Ids are never reused.
//! - versions of a subject are numbered from 1 and never renumbered; a new version is
//!   `max(existing, including soft-deleted) + 1`.
//! - `insert_version` is the only write that can race with a compatibility check: it takes the
//!   max version the caller checked against and reports `Conflict` if the subject moved on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::compat::CompatibilityLevel;
use super::error::RegistryError;
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
    pub async fn schema_id(&self, text: &str, references_json: &str) -> Result<u32> {
        match self {
            Store::Memory(store) => Ok(store.schema_id(text, references_json)),
            Store::Postgres(store) => store.schema_id(text, references_json).await,
        }
    }

    /// The id of a known schema, without allocating one.
    pub async fn find_schema_id(&self, text: &str, references_json: &str) -> Result<Option<u32>> {
        match self {
            Store::Memory(store) => Ok(store.find_schema_id(text, references_json)),
            Store::Postgres(store) => store.find_schema_id(text, references_json).await,
        }
    }

    pub async fn schema_by_id(&self, id: u32) -> Result<Option<StoredSchema>> {
        match self {
            Store::Memory(store) => Ok(store.schema_by_id(id)),
            Store::Postgres(store) => store.schema_by_id(id).await,
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

    /// (subject, version) pairs that use schema `id`, soft-deleted included.
    pub async fn usages(&self, id: u32) -> Result<Vec<(String, VersionRow)>> {
        match self {
            Store::Memory(store) => Ok(store.usages(id)),
            Store::Postgres(store) => store.usages(id).await,
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
}

/// Process-local store; everything is lost on restart.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    /// Index = id - 1.
    schemas: Vec<StoredSchema>,
    ids: HashMap<(String, String), u32>,
    subjects: BTreeMap<String, Vec<VersionRow>>,
    configs: HashMap<String, CompatibilityLevel>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // A panic while holding the lock cannot leave a half-written entry behind (every
        // write is a single push/insert), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn schema_id(&self, text: &str, references_json: &str) -> u32 {
        let mut inner = self.lock();
        let key = (text.to_owned(), references_json.to_owned());
        if let Some(id) = inner.ids.get(&key) {
            return *id;
        }
        let id = inner.schemas.len() as u32 + 1;
        inner.schemas.push(StoredSchema { id, text: key.0.clone(), references_json: key.1.clone() });
        inner.ids.insert(key, id);
        id
    }

    fn find_schema_id(&self, text: &str, references_json: &str) -> Option<u32> {
        let key = (text.to_owned(), references_json.to_owned());
        self.lock().ids.get(&key).copied()
    }

    fn schema_by_id(&self, id: u32) -> Option<StoredSchema> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.lock().schemas.get(index).cloned()
    }

    fn subjects(&self, include_deleted: bool) -> Vec<String> {
        self.lock()
            .subjects
            .iter()
            .filter(|(_, rows)| rows.iter().any(|row| include_deleted || !row.deleted))
            .map(|(subject, _)| subject.clone())
            .collect()
    }

    fn versions(&self, subject: &str) -> Vec<VersionRow> {
        self.lock().subjects.get(subject).cloned().unwrap_or_default()
    }

    fn usages(&self, id: u32) -> Vec<(String, VersionRow)> {
        let inner = self.lock();
        let mut found = Vec::new();
        for (subject, rows) in &inner.subjects {
            for row in rows.iter().filter(|row| row.schema_id == id) {
                found.push((subject.clone(), *row));
            }
        }
        found
    }

    fn insert_version(&self, subject: &str, schema_id: u32, checked_max_opt: Option<u32>) -> InsertOutcome {
        let mut inner = self.lock();
        let rows = inner.subjects.entry(subject.to_owned()).or_default();
        if let Some(row) = rows.iter().find(|row| row.schema_id == schema_id && !row.deleted) {
            return InsertOutcome::Existing(row.version);
        }
        let max_opt = rows.last().map(|row| row.version);
        if max_opt != checked_max_opt {
            return InsertOutcome::Conflict;
        }
        let version = max_opt.unwrap_or(0) + 1;
        rows.push(VersionRow { version, schema_id, deleted: false });
        InsertOutcome::Inserted(version)
    }

    fn soft_delete(&self, subject: &str, versions: &[u32]) {
        if let Some(rows) = self.lock().subjects.get_mut(subject) {
            rows.iter_mut().filter(|row| versions.contains(&row.version)).for_each(|row| row.deleted = true);
        }
    }

    fn hard_delete(&self, subject: &str, versions: &[u32]) {
        let mut inner = self.lock();
        if let Some(rows) = inner.subjects.get_mut(subject) {
            rows.retain(|row| !(row.deleted && versions.contains(&row.version)));
            if rows.is_empty() {
                inner.subjects.remove(subject);
            }
        }
    }

    fn config(&self, key: &str) -> Option<CompatibilityLevel> {
        self.lock().configs.get(key).copied()
    }

    fn set_config(&self, key: &str, level: CompatibilityLevel) {
        self.lock().configs.insert(key.to_owned(), level);
    }

    fn delete_config(&self, key: &str) -> Option<CompatibilityLevel> {
        self.lock().configs.remove(key)
    }
}
