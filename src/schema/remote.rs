//! The registry calls the schema tooling needs beyond `registry::RegistryClient`: a subject's
//! level, its versions, registration with the resulting version. Only the documented Confluent
//! REST API, so it works against Confluent SR, Karapace, Apicurio and `slate registry`.
//! Errors are `registry::ClientError`, classified transient or permanent the same way.

use std::time::Duration;

use apache_avro::Schema;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::json;

use super::{PriorVersion, SchemaError};
use crate::registry::{ClientError, CompatibilityLevel, RegisteredVersion, RegistryAuth};

const ACCEPT: &str = "application/vnd.schemaregistry.v1+json, application/json; qs=0.5";
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
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
    base: Url,
    auth: RegistryAuth,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct LevelResponse {
    #[serde(rename = "compatibilityLevel")]
    level: CompatibilityLevel,
}

#[derive(Deserialize)]
struct ErrorBody {
    error_code: Option<u32>,
    message: Option<String>,
}

impl SchemaRegistry {
    pub fn try_new(base_url: &str, auth: RegistryAuth, timeout: Duration) -> Result<SchemaRegistry, ClientError> {
        let invalid = |reason: String| ClientError::InvalidConfig { setting: base_url.to_owned(), reason };
        let base = Url::parse(base_url).map_err(|err| invalid(err.to_string()))?;
        if base.cannot_be_a_base() {
            return Err(invalid("not a base url".to_owned()));
        }
        let http = reqwest::Client::builder().timeout(timeout).build().map_err(|err| invalid(err.to_string()))?;
        Ok(SchemaRegistry { base, auth, http })
    }

    /// The subject's compatibility level, else the global one (`defaultToGlobal=true`).
    pub async fn level(&self, subject: &str) -> Result<CompatibilityLevel, ClientError> {
        let mut url = self.url(&["config", subject]);
        url.query_pairs_mut().append_pair("defaultToGlobal", "true");
        let response: LevelResponse = self.call(Method::GET, url, None).await?;
        Ok(response.level)
    }

    /// The live versions of `subject`, ascending; empty when the subject does not exist.
    pub async fn versions(&self, subject: &str) -> Result<Vec<u32>, ClientError> {
        match self.call::<Vec<u32>>(Method::GET, self.url(&["subjects", subject, "versions"]), None).await {
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
        self.call(Method::GET, self.url(&["subjects", subject, "versions", version]), None).await
    }

    /// Registers `schema` under `subject` (a no-op when it is already there) and returns the
    /// version and id it has.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<Registered, ClientError> {
        let body = json!({ "schema": schema });
        let _: serde_json::Value = self.call(Method::POST, self.url(&["subjects", subject, "versions"]), Some(body.clone())).await?;
        let found: RegisteredVersion = self.call(Method::POST, self.url(&["subjects", subject]), Some(body)).await?;
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

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        method: Method,
        url: Url,
        body: Option<serde_json::Value>,
    ) -> Result<T, ClientError> {
        let url_text = url.to_string();
        let transport = |source| ClientError::Transport { url: url_text.clone(), source };
        let mut request = self.http.request(method, url).header(reqwest::header::ACCEPT, ACCEPT);
        request = match &self.auth {
            RegistryAuth::None => request,
            RegistryAuth::Basic { user, pass } => request.basic_auth(user, Some(pass)),
            RegistryAuth::Bearer(token) => request.bearer_auth(token),
        };
        if let Some(body) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE).body(body.to_string());
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|err| ClientError::InvalidResponse { url: url_text.clone(), reason: format!("http {status}: {err}") });
        }
        let parsed = serde_json::from_slice::<ErrorBody>(&bytes).ok();
        let message = parsed
            .as_ref()
            .and_then(|error| error.message.clone())
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
        if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(ClientError::Unavailable { url: url_text, status: status.as_u16(), message });
        }
        let error_code = parsed.and_then(|error| error.error_code).unwrap_or(u32::from(status.as_u16()));
        Err(ClientError::Rejected { url: url_text, status: status.as_u16(), error_code, message })
    }
}
