//! HTTP surface of the embedded registry: the Confluent Schema Registry REST API for AVRO.
//!
//! Responses are `application/vnd.schemaregistry.v1+json`, or `application/json` when that is
//! what the request's `Accept` asks for (as Confluent); errors are
//! `{"error_code": N, "message": "..."}` with the HTTP status = first three digits of N.
//! Request bodies are parsed from bytes whatever their content type (clients send
//! `application/vnd.schemaregistry.v1+json`, `application/json` or `application/octet-stream`).
//! Unknown body fields (`metadata`, `ruleSet`, ...) are ignored. Bodies above [`MAX_BODY_BYTES`]
//! are refused with 413 before anything is parsed or stored.
//!
//! Contexts (`context.rs`): subjects may be qualified (`:.ctx:subject`); `/schemas/ids/{id}`
//! reads the id in the context of its `subject` query parameter (the default context without
//! one); `/contexts/{ctx}/...` is the same API inside one context, so a client whose base URL
//! ends in `/contexts/.ctx` works there unchanged.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::SchemaReference;
use super::compat::CompatibilityLevel;
use super::context::{self, Qualified};
use super::error::RegistryError;
use super::mode::Mode;
use super::service::{Explicit, Registry, VersionSelector, VersionView};
use super::store::Store;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// The largest request body accepted (a schema with its envelope).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Shared state of the registry server.
#[derive(Clone)]
pub struct RegistryState {
    registry: Arc<Registry>,
    /// The exact `Authorization` header value required, when basic auth is on.
    expected_auth_opt: Option<Arc<str>>,
}

impl RegistryState {
    /// `default_compat` applies until a global level is stored through `PUT /config`.
    /// With `basic_auth` set, every request needs those credentials (else 401, 40101).
    pub fn new(store: impl Into<Store>, default_compat: CompatibilityLevel, basic_auth: Option<(String, String)>) -> Self {
        let expected_auth_opt = basic_auth.map(|(user, pass)| Arc::from(format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()))));
        RegistryState { registry: Arc::new(Registry::new(store.into(), default_compat)), expected_auth_opt }
    }
}

/// The registry's routes.
pub fn router(state: RegistryState) -> Router {
    let api = routes(state);
    // Routed outside the layers: the rewritten request goes through `api` with all of them.
    let inner = api.clone();
    api.route(
        "/contexts/{*rest}",
        any(move |request: Request| {
            let inner = inner.clone();
            async move { in_context(inner, request).await }
        }),
    )
}

/// `/contexts/.ctx/...` answered as the plain API inside that context; other paths under
/// `/contexts/` are 404 with the registry's error body.
async fn in_context(api: Router, request: Request) -> Response {
    let Some(rewritten) = context::rewrite_path(request.uri().path(), request.uri().query()) else {
        let path = request.uri().path().to_owned();
        let mut response = reply(
            json!({"error_code": 404, "message": format!("HTTP 404 Not Found: {path} (expected /contexts/.name/subjects/..., /schemas/..., /config or /mode)")}),
        );
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    let uri: axum::http::Uri = match rewritten.parse() {
        Ok(uri) => uri,
        Err(e) => return RegistryError::BadRequest(format!("context path: {e}")).into_response(),
    };
    // A fresh request: the outer route's path parameters must not reach the inner handlers.
    let (parts, body) = request.into_parts();
    let mut inner = Request::new(body);
    *inner.method_mut() = parts.method;
    *inner.uri_mut() = uri;
    *inner.version_mut() = parts.version;
    *inner.headers_mut() = parts.headers;
    match api.oneshot(inner).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

fn routes(state: RegistryState) -> Router {
    Router::new()
        .route("/", get(|| async { reply(json!({})) }))
        .route("/schemas/types", get(|| async { reply(json!(["AVRO"])) }))
        .route("/schemas/ids/{id}", get(get_schema))
        .route("/schemas/ids/{id}/schema", get(get_schema_raw))
        .route("/schemas/ids/{id}/versions", get(get_schema_versions))
        .route("/schemas/ids/{id}/subjects", get(get_schema_subjects))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(list_versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(get_version).delete(delete_version))
        .route("/subjects/{subject}/versions/{version}/schema", get(get_version_raw))
        .route("/subjects/{subject}/versions/{version}/referencedby", get(get_referenced_by))
        .route("/mode", get(get_global_mode).put(put_global_mode))
        .route("/contexts", get(list_contexts))
        .route("/mode/{subject}", get(get_mode).put(put_mode).delete(delete_mode))
        .route("/config", get(get_global_config).put(put_global_config).delete(delete_global_config))
        .route("/config/{subject}", get(get_config).put(put_config).delete(delete_config))
        .route("/compatibility/subjects/{subject}/versions", post(check_all))
        .route("/compatibility/subjects/{subject}/versions/{version}", post(check_version))
        .layer(middleware::from_fn_with_state(state.clone(), require_auth))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(negotiate))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: RegistryState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

type ApiResult = Result<Response, RegistryError>;
type Params = Query<HashMap<String, String>>;

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(error = %self, "schema registry request failed");
        }
        let mut response = reply(json!({"error_code": self.error_code(), "message": self.to_string()}));
        *response.status_mut() = status;
        response
    }
}

fn reply(body: Value) -> Response {
    with_content_type(body.to_string())
}

fn with_content_type(body: String) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// Answers `application/json` to a client that accepts it but not the registry's own type, and
/// turns the body-limit rejection into a registry error body.
async fn negotiate(request: Request, next: Next) -> Response {
    let accept = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let plain_json = accept.contains("application/json") && !accept.contains("application/vnd.schemaregistry");
    let mut response = next.run(request).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE
        && response.headers().get(header::CONTENT_TYPE).is_none_or(|v| v.as_bytes() != CONTENT_TYPE.as_bytes())
    {
        response = RegistryError::TooLarge(MAX_BODY_BYTES).into_response();
    }
    if plain_json && response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes() == CONTENT_TYPE.as_bytes()) {
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    response
}

async fn require_auth(State(state): State<RegistryState>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.expected_auth_opt else {
        return next.run(request).await;
    };
    let given = request.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
    if given == Some(expected.as_bytes()) {
        return next.run(request).await;
    }
    let mut response = RegistryError::Unauthorized.into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"slate-registry\""));
    response
}

/// Query flags arrive as `true`, `True` (Python) or `1`.
fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params.get(name).is_some_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
}

fn parse_id(id: &str) -> Result<u32, RegistryError> {
    id.parse().map_err(|_| RegistryError::SchemaNotFound(id.to_owned()))
}

#[derive(Deserialize)]
struct SchemaRequest {
    schema: Option<String>,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    references: Option<Vec<SchemaReference>>,
    /// IMPORT mode only.
    id: Option<u32>,
    /// IMPORT mode only.
    version: Option<u32>,
}

impl SchemaRequest {
    fn parse(body: &[u8]) -> Result<(String, Vec<SchemaReference>), RegistryError> {
        Self::parse_explicit(body).map(|(schema, references, _)| (schema, references))
    }

    /// A body that is not JSON is 400 (as Confluent); a missing or empty `schema`, or a type
    /// other than AVRO, is an invalid schema (422, 42201).
    fn parse_explicit(body: &[u8]) -> Result<(String, Vec<SchemaReference>, Explicit), RegistryError> {
        let request: SchemaRequest = serde_json::from_slice(body).map_err(|err| RegistryError::BadRequest(err.to_string()))?;
        let schema = request.schema.filter(|s| !s.trim().is_empty()).ok_or_else(|| RegistryError::InvalidSchema("empty schema".into()))?;
        match request.schema_type.as_deref() {
            None | Some("AVRO") => {
                Ok((schema, request.references.unwrap_or_default(), Explicit { id: request.id, version: request.version }))
            }
            Some(other) => Err(RegistryError::InvalidSchema(format!("unsupported schema type {other:?}: this registry serves AVRO only"))),
        }
    }
}

fn version_json(view: VersionView) -> Value {
    let mut body = json!({
        "subject": view.subject,
        "version": view.version,
        "id": view.id,
        "schema": view.schema,
    });
    if !view.references.is_empty() {
        body["references"] = json!(view.references);
    }
    body
}

/// The context `?subject=` names (`:.ctx:` or a subject in it); the default context without.
fn id_context(params: &HashMap<String, String>) -> Result<String, RegistryError> {
    params.get("subject").map_or(Ok(context::DEFAULT.to_owned()), |s| Ok(Qualified::parse(s)?.context))
}

async fn get_schema(State(state): State<RegistryState>, Path(id): Path<String>, params: Params) -> ApiResult {
    let (stored, references) = state.registry.schema(&id_context(&params)?, parse_id(&id)?).await?;
    let mut body = json!({"schema": stored.text});
    if !references.is_empty() {
        body["references"] = json!(references);
    }
    Ok(reply(body))
}

async fn get_schema_raw(State(state): State<RegistryState>, Path(id): Path<String>, params: Params) -> ApiResult {
    let (stored, _) = state.registry.schema(&id_context(&params)?, parse_id(&id)?).await?;
    Ok(with_content_type(stored.text))
}

async fn get_schema_versions(State(state): State<RegistryState>, Path(id): Path<String>, params: Params) -> ApiResult {
    let usages = state.registry.schema_versions(&id_context(&params)?, parse_id(&id)?, flag(&params, "deleted")).await?;
    let body: Vec<Value> = usages.into_iter().map(|(subject, version)| json!({"subject": subject, "version": version})).collect();
    Ok(reply(json!(body)))
}

async fn get_schema_subjects(State(state): State<RegistryState>, Path(id): Path<String>, params: Params) -> ApiResult {
    let usages = state.registry.schema_versions(&id_context(&params)?, parse_id(&id)?, flag(&params, "deleted")).await?;
    let mut subjects: Vec<String> = usages.into_iter().map(|(subject, _)| subject).collect();
    subjects.dedup();
    Ok(reply(json!(subjects)))
}

/// Every context's subjects; `subjectPrefix` keeps those starting with it (`:.ctx:` for one
/// context; an empty prefix, as Confluent, the default context's).
async fn list_subjects(State(state): State<RegistryState>, params: Params) -> ApiResult {
    let mut subjects = state.registry.subjects(flag(&params, "deleted")).await?;
    match params.get("subjectPrefix").map(String::as_str) {
        None => {}
        Some("" | ":.:") => subjects.retain(|s| context::context_of(s) == context::DEFAULT),
        Some(prefix) => subjects.retain(|s| s.starts_with(prefix)),
    }
    Ok(reply(json!(subjects)))
}

async fn list_contexts(State(state): State<RegistryState>) -> ApiResult {
    Ok(reply(json!(state.registry.contexts().await?)))
}

async fn lookup(State(state): State<RegistryState>, Path(subject): Path<String>, params: Params, body: Bytes) -> ApiResult {
    let (schema, references) = SchemaRequest::parse(&body)?;
    let view = state.registry.lookup(&subject, &schema, references, flag(&params, "deleted")).await?;
    Ok(reply(version_json(view)))
}

async fn delete_subject(State(state): State<RegistryState>, Path(subject): Path<String>, params: Params) -> ApiResult {
    let versions = state.registry.delete_subject(&subject, flag(&params, "permanent")).await?;
    Ok(reply(json!(versions)))
}

async fn list_versions(State(state): State<RegistryState>, Path(subject): Path<String>, params: Params) -> ApiResult {
    Ok(reply(json!(state.registry.versions(&subject, flag(&params, "deleted")).await?)))
}

async fn register(State(state): State<RegistryState>, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    let (schema, references, explicit) = SchemaRequest::parse_explicit(&body)?;
    let id = state.registry.register(&subject, &schema, references, explicit).await?;
    Ok(reply(json!({"id": id})))
}

async fn get_version(State(state): State<RegistryState>, Path((subject, version)): Path<(String, String)>, params: Params) -> ApiResult {
    let selector: VersionSelector = version.parse()?;
    let view = state.registry.version(&subject, selector, flag(&params, "deleted")).await?;
    Ok(reply(version_json(view)))
}

async fn get_version_raw(
    State(state): State<RegistryState>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    let selector: VersionSelector = version.parse()?;
    let view = state.registry.version(&subject, selector, flag(&params, "deleted")).await?;
    Ok(with_content_type(view.schema))
}

async fn delete_version(State(state): State<RegistryState>, Path((subject, version)): Path<(String, String)>, params: Params) -> ApiResult {
    let selector: VersionSelector = version.parse()?;
    let deleted = state.registry.delete_version(&subject, selector, flag(&params, "permanent")).await?;
    Ok(reply(json!(deleted)))
}

async fn get_referenced_by(State(state): State<RegistryState>, Path((subject, version)): Path<(String, String)>) -> ApiResult {
    let selector: VersionSelector = version.parse()?;
    Ok(reply(json!(state.registry.referenced_by(&subject, selector).await?)))
}

#[derive(Deserialize)]
struct ModeRequest {
    mode: String,
}

fn parse_mode(body: &[u8]) -> Result<Mode, RegistryError> {
    let request: ModeRequest = serde_json::from_slice(body).map_err(|err| RegistryError::BadRequest(err.to_string()))?;
    request.mode.parse()
}

async fn get_global_mode(State(state): State<RegistryState>) -> ApiResult {
    Ok(reply(json!({"mode": state.registry.mode(None, true).await?})))
}

async fn put_global_mode(State(state): State<RegistryState>, params: Params, body: Bytes) -> ApiResult {
    let mode = parse_mode(&body)?;
    state.registry.set_mode(None, mode, flag(&params, "force")).await?;
    Ok(reply(json!({"mode": mode})))
}

async fn get_mode(State(state): State<RegistryState>, Path(subject): Path<String>, params: Params) -> ApiResult {
    Ok(reply(json!({"mode": state.registry.mode(Some(&subject), flag(&params, "defaultToGlobal")).await?})))
}

async fn put_mode(State(state): State<RegistryState>, Path(subject): Path<String>, params: Params, body: Bytes) -> ApiResult {
    let mode = parse_mode(&body)?;
    state.registry.set_mode(Some(&subject), mode, flag(&params, "force")).await?;
    Ok(reply(json!({"mode": mode})))
}

async fn delete_mode(State(state): State<RegistryState>, Path(subject): Path<String>) -> ApiResult {
    Ok(reply(json!({"mode": state.registry.delete_mode(&subject).await?})))
}

#[derive(Deserialize)]
struct ConfigRequest {
    compatibility: String,
}

fn parse_level(body: &[u8]) -> Result<CompatibilityLevel, RegistryError> {
    let request: ConfigRequest = serde_json::from_slice(body).map_err(|err| RegistryError::BadRequest(err.to_string()))?;
    request.compatibility.parse()
}

async fn get_global_config(State(state): State<RegistryState>) -> ApiResult {
    let level = state.registry.level(None, true).await?;
    Ok(reply(json!({"compatibilityLevel": level})))
}

async fn put_global_config(State(state): State<RegistryState>, body: Bytes) -> ApiResult {
    let level = parse_level(&body)?;
    state.registry.set_level(None, level).await?;
    Ok(reply(json!({"compatibility": level})))
}

async fn delete_global_config(State(state): State<RegistryState>) -> ApiResult {
    let previous = state.registry.delete_level(None).await?;
    Ok(reply(json!({"compatibilityLevel": previous})))
}

async fn get_config(State(state): State<RegistryState>, Path(subject): Path<String>, params: Params) -> ApiResult {
    let level = state.registry.level(Some(&subject), flag(&params, "defaultToGlobal")).await?;
    Ok(reply(json!({"compatibilityLevel": level})))
}

async fn put_config(State(state): State<RegistryState>, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    let level = parse_level(&body)?;
    state.registry.set_level(Some(&subject), level).await?;
    Ok(reply(json!({"compatibility": level})))
}

async fn delete_config(State(state): State<RegistryState>, Path(subject): Path<String>) -> ApiResult {
    let previous = state.registry.delete_level(Some(&subject)).await?;
    Ok(reply(json!({"compatibilityLevel": previous})))
}

async fn check_all(State(state): State<RegistryState>, Path(subject): Path<String>, params: Params, body: Bytes) -> ApiResult {
    let (schema, references) = SchemaRequest::parse(&body)?;
    let messages = state.registry.check_compatibility(&subject, None, &schema, references).await?;
    Ok(compatibility_reply(messages, flag(&params, "verbose")))
}

async fn check_version(
    State(state): State<RegistryState>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
    body: Bytes,
) -> ApiResult {
    let selector: VersionSelector = version.parse()?;
    let (schema, references) = SchemaRequest::parse(&body)?;
    let messages = state.registry.check_compatibility(&subject, Some(selector), &schema, references).await?;
    Ok(compatibility_reply(messages, flag(&params, "verbose")))
}

fn compatibility_reply(messages: Vec<String>, verbose: bool) -> Response {
    let mut body = json!({"is_compatible": messages.is_empty()});
    if verbose {
        body["messages"] = json!(messages);
    }
    reply(body)
}

/// Standard base64 with padding (RFC 4648 §4), for the expected basic-auth header.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let bytes = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let triple = u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]);
        for position in 0..4 {
            if position <= chunk.len() {
                out.push(ALPHABET[(triple >> (18 - 6 * position) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}
