//! Catalogue entries whose record is a registry subject's latest version
//! (`[catalogue.entities.<name>] subject = "…"`), read once at start like a schema file.
//!
//! Contract: a role that reads entities starts only with every declared subject fetched; while
//! the registry is unreachable it waits (a warning per retry, until a shutdown signal), since
//! starting without an entity would dead-letter that entity's events. A subject that does not
//! exist, or whose schema uses references, is refused naming the entity, the subject and the fix.

use super::{CatalogueError, EntitySpec};
use crate::registry::RegistryClient;
use crate::registry::client::until_available;
use std::collections::BTreeMap;

/// One fetched record: its text and where it came from (subject, version, id).
#[derive(Debug, Clone)]
pub struct SubjectSchema {
    pub text: String,
    pub origin: String,
}

/// The fetched records by entity name, handed to [`super::Catalogue::load`].
#[derive(Debug, Clone, Default)]
pub struct Subjects {
    by_entity: BTreeMap<String, SubjectSchema>,
    /// Leave unfetched subject entries out instead of refusing them: only for commands that read
    /// no entities (the registry role must not wait for itself).
    ignore_unfetched: bool,
}

impl Subjects {
    /// Nothing fetched: a subject entry is refused (the caller did not read the registry).
    pub fn none() -> Subjects {
        Subjects::default()
    }

    /// For commands that read no entities: subject entries are left out of the catalogue.
    pub fn ignored() -> Subjects {
        Subjects { by_entity: BTreeMap::new(), ignore_unfetched: true }
    }

    #[cfg(test)]
    pub(super) fn of(entity: &str, text: &str, origin: &str) -> Subjects {
        let fetched = SubjectSchema { text: text.into(), origin: origin.into() };
        Subjects { by_entity: BTreeMap::from([(entity.to_string(), fetched)]), ignore_unfetched: false }
    }

    pub(super) fn get(&self, entity: &str) -> Option<&SubjectSchema> {
        self.by_entity.get(entity)
    }

    pub(super) fn ignores_unfetched(&self) -> bool {
        self.ignore_unfetched
    }
}

/// Whether any entry names a subject (only then does a start need the registry).
pub fn any(specs: &BTreeMap<String, EntitySpec>) -> bool {
    specs.values().any(|s| s.subject.is_some())
}

/// Reads the latest version of every declared subject, waiting out registry outages.
pub async fn fetch(registry: &RegistryClient, specs: &BTreeMap<String, EntitySpec>) -> Result<Subjects, CatalogueError> {
    let mut by_entity = BTreeMap::new();
    for (name, spec) in specs {
        let Some(subject) = &spec.subject else { continue };
        let fail = |message: String| CatalogueError { entity: name.clone(), file: format!("registry subject {subject}"), message };
        let latest = match until_available(subject, || registry.latest(subject)).await {
            Ok(latest) => latest,
            Err(e) if e.error_code() == Some(40401) || e.error_code() == Some(40402) => {
                return Err(fail(format!(
                    "the registry has no live version of this subject; register the record first \
                     (`slate schema register`, or any Confluent client), or fix catalogue.entities.{name}.subject"
                )));
            }
            Err(e) => return Err(fail(format!("cannot read the subject's latest version: {e}"))),
        };
        if !latest.references.is_empty() {
            return Err(fail(format!(
                "version {} uses schema references, which a catalogue record cannot have yet; inline the referenced types \
                 or use a schema file (catalogue.entities.{name}.schema)",
                latest.version
            )));
        }
        let origin = format!("registry subject {subject} version {} (id {})", latest.version, latest.id);
        tracing::info!(entity = %name, %origin, "catalogue record read from the registry");
        by_entity.insert(name.clone(), SubjectSchema { text: latest.schema, origin });
    }
    Ok(Subjects { by_entity, ignore_unfetched: false })
}
