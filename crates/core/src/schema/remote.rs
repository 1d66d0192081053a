//! The registry calls the schema tooling needs beyond `registry::RegistryClient`: a subject's
//! level, its versions, registration with the resulting version. Only the documented Confluent
//! REST API, so it works against Confluent SR, Karapace, Apicurio and `slate registry`.
//! Errors are `registry::ClientError`, classified transient or permanent the same way.

use std::time::Duration;

use apache_avro::Schema;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{PriorVersion, SchemaError};
use crate::registry::{ClientError, CompatibilityLevel, RegisteredVersion, RegistryAuth, RegistryClient};

/// Reference chains deeper than this are treated as a cycle.
const MAX_REFERENCE_DEPTH: usize = 16;

/// A registered schema: where it lives and its global id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub subject: String,
    pub version: u32,
    pub id: u32,
}

#[derive(Debug)]
pub struct SchemaRegistry {
    pub(super) client: RegistryClient,
}

#[derive(Deserialize)]
struct LevelResponse {
    #[serde(rename = "compatibilityLevel")]
    level: CompatibilityLevel,
}

impl SchemaRegistry {
    pub fn try_new(base_url: &str, auth: RegistryAuth, timeout: Duration) -> Result<SchemaRegistry, ClientError> {
        Ok(SchemaRegistry { client: RegistryClient::try_new(base_url, auth, timeout)? })
    }

    /// The subject's compatibility level, else the global one (`defaultToGlobal=true`).
    pub async fn level(&self, subject: &str) -> Result<CompatibilityLevel, ClientError> {
        let mut url = self.client.url(&["config", subject]);
        url.query_pairs_mut().append_pair("defaultToGlobal", "true");
        let response: LevelResponse = self.client.call(Method::GET, url, None).await?;
        Ok(response.level)
    }

    /// The live versions of `subject`, ascending; empty when the subject does not exist.
    pub async fn versions(&self, subject: &str) -> Result<Vec<u32>, ClientError> {
        match self.client.call::<Vec<u32>>(Method::GET, self.client.url(&["subjects", subject, "versions"]), None).await {
            Ok(mut versions) => {
                versions.sort_unstable();
                Ok(versions)
            }
            Err(ClientError::Rejected { error_code: 40401, .. }) => Ok(Vec::new()),
            Err(err) => Err(err),
        }
    }

    /// One version: a number, or `latest`.
    pub async fn version(&self, subject: &str, version: &str) -> Result<RegisteredVersion, ClientError> {
        self.client.call(Method::GET, self.client.url(&["subjects", subject, "versions", version]), None).await
    }

    /// Registers `schema` under `subject` (a no-op when it is already there) and returns the
    /// version and id it has.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<Registered, ClientError> {
        let body = json!({ "schema": schema });
        let _: serde_json::Value =
            self.client.call(Method::POST, self.client.url(&["subjects", subject, "versions"]), Some(body.clone())).await?;
        let found: RegisteredVersion = self.client.call(Method::POST, self.client.url(&["subjects", subject]), Some(body)).await?;
        Ok(Registered { subject: found.subject, version: found.version, id: found.id })
    }

    /// The versions a new schema for `subject` is checked against, newest first: the latest
    /// only, or all live versions when `transitive`.
    pub async fn prior_versions(&self, subject: &str, transitive: bool) -> Result<Vec<PriorVersion>, SchemaError> {
        let mut numbers = self.versions(subject).await?;
        numbers.reverse();
        if !transitive {
            numbers.truncate(1);
        }
        let mut priors = Vec::with_capacity(numbers.len());
        for number in numbers {
            let (schema, _) = self.parsed(subject, &number.to_string()).await?;
            priors.push(PriorVersion { number, label: format!("version {number}"), schema });
        }
        Ok(priors)
    }

    /// A version parsed with its references resolved; also returns its raw registry record.
    pub async fn parsed(&self, subject: &str, version: &str) -> Result<(Schema, RegisteredVersion), SchemaError> {
        let found = self.version(subject, version).await?;
        let mut dependencies = Vec::new();
        let mut pending: Vec<(crate::registry::SchemaReference, usize)> = found.references.iter().cloned().map(|r| (r, 1)).collect();
        while let Some((reference, depth)) = pending.pop() {
            if depth > MAX_REFERENCE_DEPTH {
                return Err(SchemaError::UnknownVersion { subject: reference.subject, version: "(reference cycle)".to_owned() });
            }
            let dependency = self.version(&reference.subject, &reference.version.to_string()).await?;
            pending.extend(dependency.references.iter().cloned().map(|r| (r, depth + 1)));
            dependencies.push(dependency.schema);
        }
        let parsed = if dependencies.is_empty() {
            Schema::parse_str(&found.schema)
        } else {
            dependencies.reverse();
            Schema::parse_str_with_list(&found.schema, &dependencies).map(|(schema, _)| schema)
        };
        let schema = parsed.map_err(|err| SchemaError::InvalidHistory {
            path: subject.into(),
            label: format!("registered version {}", found.version),
            message: err.to_string(),
        })?;
        Ok((schema, found))
    }
}
