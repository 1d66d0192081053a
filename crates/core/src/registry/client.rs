//! Schema registry client. Uses only the documented Confluent REST API (`/subjects/...`,
//! `/schemas/ids/...`), so it works against Confluent SR, Karapace, Apicurio's ccompat API and
//! the embedded server alike. The base URL may carry a path prefix (Apicurio).
//!
//! Caching: `schema_by_id` results are kept for the client's lifetime, since an id always
//! names the same schema. Nothing else is cached: `latest` must observe new versions.
//!
//! Errors say transient (retry later: transport, timeout, 5xx, 408, 429) or permanent
//! (any other 4xx, carrying the registry's `error_code`; unusable responses) by variant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::json;

use super::SchemaReference;

const ACCEPT: &str = "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; qs=0.9, application/json; qs=0.5";
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// How the client authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    None,
    Basic { user: String, pass: String },
    Bearer(String),
}

/// A client-side registry error; the variant decides retry, never the message.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Transient: connect failure, timeout or broken response body.
    #[error("schema registry request to {url} failed: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// Transient: 5xx, 408 or 429.
    #[error("schema registry at {url} is unavailable: http {status}: {message}")]
    Unavailable { url: String, status: u16, message: String },
    /// Permanent: the registry refused the request (4xx) with this `error_code`.
    #[error("schema registry rejected request to {url}: http {status}, error_code {error_code}: {message}")]
    Rejected { url: String, status: u16, error_code: u32, message: String },
    /// Permanent: a 2xx response this client cannot use.
    #[error("unexpected schema registry response from {url}: {reason}")]
    InvalidResponse { url: String, reason: String },
    /// Permanent: the client could not be built.
    #[error("invalid schema registry client setting {setting:?}: {reason}")]
    InvalidConfig { setting: String, reason: String },
}

impl ClientError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transport { .. } | Self::Unavailable { .. })
    }

    /// The registry's `error_code` for a rejected request.
    pub fn error_code(&self) -> Option<u32> {
        match self {
            Self::Rejected { error_code, .. } => Some(*error_code),
            _ => None,
        }
    }
}

/// Calls `call` until it succeeds or fails permanently, waiting out transient errors (an
/// outage, a restart) with doubling backoff up to 30 s and a warning per retry. Never gives up
/// by itself: the caller bounds it by dropping the future (a shutdown signal, a cancel token).
pub async fn until_available<T, F, Fut>(what: &str, mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match call().await {
            Err(e) if e.is_transient() => {
                tracing::warn!(what, error = %e, retry_in = ?backoff, "schema registry unavailable; waiting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            done => return done,
        }
    }
}

/// A schema fetched by id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SchemaById {
    pub schema: String,
    #[serde(default)]
    pub references: Vec<SchemaReference>,
}

/// A subject version (`GET /subjects/{s}/versions/{v}`, lookup).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RegisteredVersion {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
    #[serde(default)]
    pub references: Vec<SchemaReference>,
}

#[derive(Deserialize)]
struct IdResponse {
    id: u32,
}

#[derive(Deserialize)]
struct ErrorBody {
    error_code: Option<u32>,
    message: Option<String>,
}

/// A Confluent REST API client with an id cache.
#[derive(Debug)]
pub struct RegistryClient {
    base: Url,
    auth: RegistryAuth,
    http: reqwest::Client,
    by_id: Mutex<HashMap<u32, Arc<SchemaById>>>,
}

impl RegistryClient {
    /// `timeout` bounds each request (connect included).
    pub fn try_new(base_url: &str, auth: RegistryAuth, timeout: Duration) -> Result<Self, ClientError> {
        let base =
            Url::parse(base_url).map_err(|err| ClientError::InvalidConfig { setting: base_url.to_owned(), reason: err.to_string() })?;
        if base.cannot_be_a_base() {
            return Err(ClientError::InvalidConfig { setting: base_url.to_owned(), reason: "not a base url".to_owned() });
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|err| ClientError::InvalidConfig { setting: "http client".to_owned(), reason: err.to_string() })?;
        Ok(RegistryClient { base, auth, http, by_id: Mutex::new(HashMap::new()) })
    }

    /// Registers `schema_json` under `subject` (or finds it); returns its global id.
    pub async fn register(&self, subject: &str, schema_json: &str, references: &[SchemaReference]) -> Result<u32, ClientError> {
        let url = self.url(&["subjects", subject, "versions"]);
        let body = schema_body(schema_json, references);
        let response: IdResponse = self.call(Method::POST, url, Some(body)).await?;
        Ok(response.id)
    }

    /// The schema with global id `id`; cached forever after the first success.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<SchemaById>, ClientError> {
        if let Some(found) = self.cache().get(&id) {
            return Ok(Arc::clone(found));
        }
        let url = self.url(&["schemas", "ids", &id.to_string()]);
        let fetched: Arc<SchemaById> = Arc::new(self.call(Method::GET, url, None).await?);
        self.cache().insert(id, Arc::clone(&fetched));
        Ok(fetched)
    }

    /// The id of `schema_json` if it is registered under `subject`; `None` when the subject
    /// or the schema is unknown (40401, 40403).
    pub async fn lookup(&self, subject: &str, schema_json: &str) -> Result<Option<u32>, ClientError> {
        let url = self.url(&["subjects", subject]);
        match self.call::<RegisteredVersion>(Method::POST, url, Some(schema_body(schema_json, &[]))).await {
            Ok(found) => Ok(Some(found.id)),
            Err(ClientError::Rejected { error_code: 40401 | 40403, .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The latest live version of `subject`.
    pub async fn latest(&self, subject: &str) -> Result<RegisteredVersion, ClientError> {
        let url = self.url(&["subjects", subject, "versions", "latest"]);
        self.call(Method::GET, url, None).await
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<SchemaById>>> {
        // Entries are inserted whole, so a poisoned cache is still consistent.
        self.by_id.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `base` + percent-encoded `segments` (a subject may contain `/` or spaces).
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// One documented-API call: JSON in and out, errors classified transient or permanent.
    pub(crate) async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        method: Method,
        url: Url,
        body_opt: Option<serde_json::Value>,
    ) -> Result<T, ClientError> {
        let url_text = url.to_string();
        let transport = |source| ClientError::Transport { url: url_text.clone(), source };
        let mut request = self.http.request(method, url.clone()).header(reqwest::header::ACCEPT, ACCEPT);
        request = match &self.auth {
            RegistryAuth::None => request,
            RegistryAuth::Basic { user, pass } => request.basic_auth(user, Some(pass)),
            RegistryAuth::Bearer(token) => request.bearer_auth(token),
        };
        if let Some(body) = body_opt {
            request = request.header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE).body(body.to_string());
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|err| ClientError::InvalidResponse { url: url_text.clone(), reason: format!("http {status}: {err}") });
        }
        Err(classify(url_text.clone(), status, &bytes))
    }
}

fn schema_body(schema_json: &str, references: &[SchemaReference]) -> serde_json::Value {
    let mut body = json!({"schema": schema_json});
    if !references.is_empty() {
        body["references"] = json!(references);
    }
    body
}

fn classify(url: String, status: StatusCode, body: &[u8]) -> ClientError {
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|error| error.message.clone())
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
    let transient = status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS;
    if transient {
        return ClientError::Unavailable { url, status: status.as_u16(), message };
    }
    // Registries without a JSON error body still get a code: the status, as Confluent does.
    let error_code = parsed.and_then(|error| error.error_code).unwrap_or(u32::from(status.as_u16()));
    ClientError::Rejected { url, status: status.as_u16(), error_code, message }
}
