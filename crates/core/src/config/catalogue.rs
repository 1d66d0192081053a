//! `[catalogue]`: the entities of this deployment (see [`crate::catalogue`]).

use super::ConfigError;
use super::sections::invalid;
use crate::catalogue::{Catalogue, EntitySpec, Subjects};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogueConfig {
    /// Where relative `schema` paths of `entities` are read from.
    pub schemas_dir: PathBuf,
    /// `[catalogue.entities.<name>]`, one per entity. Empty: the built-in example catalogue
    /// (the studio's six records), so the demo runs with no files.
    pub entities: BTreeMap<String, EntitySpec>,
}

impl Default for CatalogueConfig {
    fn default() -> Self {
        Self { schemas_dir: "schemas/avro".into(), entities: BTreeMap::new() }
    }
}

impl CatalogueConfig {
    /// Reads and checks the declared records (or returns the built-in catalogue); records of
    /// subject entries come from `subjects`.
    pub fn build(&self, subjects: &Subjects) -> Result<Arc<Catalogue>, ConfigError> {
        if self.entities.is_empty() {
            return Ok(Catalogue::built_in());
        }
        Catalogue::load(&self.schemas_dir, &self.entities, subjects).map(Arc::new).map_err(|e| {
            let key = if self.entities.get(&e.entity).is_some_and(|s| s.subject.is_some()) { "subject" } else { "schema" };
            invalid(&format!("catalogue.entities.{}.{key}", e.entity), e.to_string())
        })
    }
}

/// The built catalogue held by [`super::Config`]; the built-in one until a config declares its own.
#[derive(Debug, Clone)]
pub(super) struct Built(pub Arc<Catalogue>);

impl Default for Built {
    fn default() -> Self {
        Built(Catalogue::built_in())
    }
}
