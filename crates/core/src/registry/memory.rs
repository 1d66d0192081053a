//! The in-memory store (embedded demo, tests): the contracts of `store.rs`, lost on restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::compat::CompatibilityLevel;
use super::context::context_of;
use super::error::RegistryError;
use super::mode::Mode;
use super::store::{InsertOutcome, StoredSchema, VersionRow};

/// Process-local store; everything is lost on restart.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
}

/// (context, id) and (context, text, references json): ids are per context.
#[derive(Debug, Default)]
struct MemoryInner {
    schemas: BTreeMap<(String, u32), StoredSchema>,
    ids: HashMap<(String, String, String), u32>,
    subjects: BTreeMap<String, Vec<VersionRow>>,
    configs: HashMap<String, CompatibilityLevel>,
    modes: HashMap<String, Mode>,
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

    pub(super) fn schema_id(&self, context: &str, text: &str, references_json: &str) -> u32 {
        let mut inner = self.lock();
        let key = identity(context, text, references_json);
        if let Some(id) = inner.ids.get(&key) {
            return *id;
        }
        let id =
            inner.schemas.range((context.to_owned(), 0)..=(context.to_owned(), u32::MAX)).next_back().map_or(0, |((_, id), _)| *id) + 1;
        inner.schemas.insert((context.to_owned(), id), StoredSchema { id, text: key.1.clone(), references_json: key.2.clone() });
        inner.ids.insert(key, id);
        id
    }

    pub(super) fn find_schema_id(&self, context: &str, text: &str, references_json: &str) -> Option<u32> {
        self.lock().ids.get(&identity(context, text, references_json)).copied()
    }

    pub(super) fn schema_by_id(&self, context: &str, id: u32) -> Option<StoredSchema> {
        self.lock().schemas.get(&(context.to_owned(), id)).cloned()
    }

    pub(super) fn subjects(&self, include_deleted: bool) -> Vec<String> {
        self.lock()
            .subjects
            .iter()
            .filter(|(_, rows)| rows.iter().any(|row| include_deleted || !row.deleted))
            .map(|(subject, _)| subject.clone())
            .collect()
    }

    pub(super) fn versions(&self, subject: &str) -> Vec<VersionRow> {
        self.lock().subjects.get(subject).cloned().unwrap_or_default()
    }

    pub(super) fn usages(&self, context: &str, id: u32) -> Vec<(String, VersionRow)> {
        let inner = self.lock();
        let mut found = Vec::new();
        for (subject, rows) in inner.subjects.iter().filter(|(subject, _)| context_of(subject) == context) {
            for row in rows.iter().filter(|row| row.schema_id == id) {
                found.push((subject.clone(), *row));
            }
        }
        found
    }

    pub(super) fn insert_version(&self, subject: &str, schema_id: u32, checked_max_opt: Option<u32>) -> InsertOutcome {
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

    pub(super) fn soft_delete(&self, subject: &str, versions: &[u32]) {
        if let Some(rows) = self.lock().subjects.get_mut(subject) {
            rows.iter_mut().filter(|row| versions.contains(&row.version)).for_each(|row| row.deleted = true);
        }
    }

    pub(super) fn hard_delete(&self, subject: &str, versions: &[u32]) {
        let mut inner = self.lock();
        if let Some(rows) = inner.subjects.get_mut(subject) {
            rows.retain(|row| !(row.deleted && versions.contains(&row.version)));
            if rows.is_empty() {
                inner.subjects.remove(subject);
            }
        }
    }

    pub(super) fn config(&self, key: &str) -> Option<CompatibilityLevel> {
        self.lock().configs.get(key).copied()
    }

    pub(super) fn set_config(&self, key: &str, level: CompatibilityLevel) {
        self.lock().configs.insert(key.to_owned(), level);
    }

    pub(super) fn delete_config(&self, key: &str) -> Option<CompatibilityLevel> {
        self.lock().configs.remove(key)
    }

    pub(super) fn schemas_mentioning(&self, subject: &str) -> Vec<(String, StoredSchema)> {
        let inner = self.lock();
        inner.schemas.iter().filter(|(_, s)| s.references_json.contains(subject)).map(|((c, _), s)| (c.clone(), s.clone())).collect()
    }

    pub(super) fn insert_schema_with_id(&self, context: &str, id: u32, text: &str, references_json: &str) -> Result<(), RegistryError> {
        let mut inner = self.lock();
        let key = identity(context, text, references_json);
        match (inner.schemas.get(&(context.to_owned(), id)), inner.ids.get(&key)) {
            (Some(held), _) if held.text == text && held.references_json == references_json => Ok(()),
            (Some(_), _) => Err(RegistryError::IdDoesNotMatch(format!("id {id} already holds another schema"))),
            (None, Some(other)) => Err(RegistryError::IdDoesNotMatch(format!("this schema is already stored with id {other}, not {id}"))),
            (None, None) => {
                inner.schemas.insert((context.to_owned(), id), StoredSchema { id, text: key.1.clone(), references_json: key.2.clone() });
                inner.ids.insert(key, id);
                Ok(())
            }
        }
    }

    pub(super) fn insert_version_at(&self, subject: &str, version: u32, schema_id: u32) -> Result<(), RegistryError> {
        let mut inner = self.lock();
        let rows = inner.subjects.entry(subject.to_owned()).or_default();
        match rows.iter().find(|row| row.version == version) {
            Some(row) if row.schema_id == schema_id => Ok(()),
            Some(row) => Err(RegistryError::IdDoesNotMatch(format!(
                "version {version} of subject {subject:?} already holds schema {}, not {schema_id}",
                row.schema_id
            ))),
            None => {
                rows.push(VersionRow { version, schema_id, deleted: false });
                rows.sort_by_key(|row| row.version);
                Ok(())
            }
        }
    }

    pub(super) fn mode(&self, key: &str) -> Option<Mode> {
        self.lock().modes.get(key).copied()
    }

    pub(super) fn set_mode(&self, key: &str, mode: Mode) {
        self.lock().modes.insert(key.to_owned(), mode);
    }

    pub(super) fn delete_mode(&self, key: &str) -> Option<Mode> {
        self.lock().modes.remove(key)
    }
}

fn identity(context: &str, text: &str, references_json: &str) -> (String, String, String) {
    (context.to_owned(), text.to_owned(), references_json.to_owned())
}
