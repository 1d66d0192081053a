//! Moving schemas between registries with their ids: `slate schema export` reads every live
//! version of every subject (and the compatibility levels) from any Confluent-compatible
//! registry; `slate schema import` writes them into another one in IMPORT mode, each with its
//! original id and version, so records already on the topics (whose wire format names the id)
//! stay readable. Only the documented REST API: works from and to Confluent SR and slate's.
//!
//! Import order is by id, so a referenced schema (always registered before its referrer, hence
//! a lower id) exists when its referrer arrives. The target's global mode is set to IMPORT
//! (`force`) for the import and put back to what it was afterwards, also when the import fails
//! midway; an import is repeatable (each version that is already there as given is a no-op).

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::remote::SchemaRegistry;
use crate::registry::{ClientError, CompatibilityLevel, RegisteredVersion, SchemaReference};

/// The export file's `format`.
pub const FORMAT: &str = "slate-schemas/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    pub format: String,
    /// The global compatibility level of the source.
    pub compatibility: Option<CompatibilityLevel>,
    /// Subjects' own compatibility levels.
    #[serde(default)]
    pub subject_compatibility: Vec<(String, CompatibilityLevel)>,
    /// Every live version, ascending by id.
    pub versions: Vec<ExportedVersion>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedVersion {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<SchemaReference>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("registry: {0}")]
    Registry(#[from] ClientError),
    #[error("importing {subject} version {version} (id {id}): {error}")]
    Version { subject: String, version: u32, id: u32, error: ClientError },
    #[error("the export file's format is {0:?}, expected {FORMAT:?}")]
    Format(String),
}

#[derive(Deserialize)]
struct LevelResponse {
    #[serde(rename = "compatibilityLevel")]
    level: CompatibilityLevel,
}

#[derive(Deserialize)]
struct ModeResponse {
    mode: String,
}

/// Reads every live version and the compatibility levels of `from`.
pub async fn export(from: &SchemaRegistry) -> Result<Export, TransferError> {
    let c = &from.client;
    let subjects: Vec<String> = c.call(Method::GET, c.url(&["subjects"]), None).await?;
    let mut versions = Vec::new();
    let mut subject_compatibility = Vec::new();
    for subject in &subjects {
        for version in from.versions(subject).await? {
            let v: RegisteredVersion = from.version(subject, &version.to_string()).await?;
            versions.push(ExportedVersion { subject: v.subject, version: v.version, id: v.id, schema: v.schema, references: v.references });
        }
        match c.call::<LevelResponse>(Method::GET, c.url(&["config", subject]), None).await {
            Ok(level) => subject_compatibility.push((subject.clone(), level.level)),
            Err(ClientError::Rejected { error_code: 40408 | 40401, .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    versions.sort_by(|a, b| (a.id, &a.subject, a.version).cmp(&(b.id, &b.subject, b.version)));
    let compatibility = c.call::<LevelResponse>(Method::GET, c.url(&["config"]), None).await?.level;
    Ok(Export { format: FORMAT.into(), compatibility: Some(compatibility), subject_compatibility, versions })
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Imported {
    pub versions: usize,
    pub subjects: usize,
}

/// Writes `export` into `to` in IMPORT mode (see the module doc).
pub async fn import(to: &SchemaRegistry, export: &Export) -> Result<Imported, TransferError> {
    if export.format != FORMAT {
        return Err(TransferError::Format(export.format.clone()));
    }
    let c = &to.client;
    let previous: ModeResponse = c.call(Method::GET, c.url(&["mode"]), None).await?;
    let mut url = c.url(&["mode"]);
    url.query_pairs_mut().append_pair("force", "true");
    let _: serde_json::Value = c.call(Method::PUT, url, Some(json!({"mode": "IMPORT"}))).await?;
    let outcome = import_versions(to, export).await;
    let restored = c.call::<serde_json::Value>(Method::PUT, c.url(&["mode"]), Some(json!({"mode": previous.mode}))).await;
    let imported = outcome?;
    restored?;
    if let Some(level) = export.compatibility {
        let _: serde_json::Value = c.call(Method::PUT, c.url(&["config"]), Some(json!({"compatibility": level}))).await?;
    }
    for (subject, level) in &export.subject_compatibility {
        let _: serde_json::Value = c.call(Method::PUT, c.url(&["config", subject]), Some(json!({"compatibility": level}))).await?;
    }
    Ok(imported)
}

async fn import_versions(to: &SchemaRegistry, export: &Export) -> Result<Imported, TransferError> {
    let c = &to.client;
    let mut subjects = std::collections::BTreeSet::new();
    for v in &export.versions {
        let mut body = json!({"schema": v.schema, "schemaType": "AVRO", "id": v.id, "version": v.version});
        if !v.references.is_empty() {
            body["references"] = json!(v.references);
        }
        let url = c.url(&["subjects", &v.subject, "versions"]);
        c.call::<serde_json::Value>(Method::POST, url, Some(body)).await.map_err(|error| TransferError::Version {
            subject: v.subject.clone(),
            version: v.version,
            id: v.id,
            error,
        })?;
        subjects.insert(v.subject.as_str());
    }
    Ok(Imported { versions: export.versions.len(), subjects: subjects.len() })
}
