//! GraphQL fetcher: POST `{"query", "variables": {"ids": [...]}}` and read the entities at
//! `response_path` and the tombstones at `tombstones_path`.
//!
//! The default query is generated from the entity's Avro record, so a new field in the schema
//! is fetched without code: `id version` and every business field, records as sub-selections,
//! `_meta` excluded, plus the studio's `tombstones(entity, ids)` list.
//!
//! Classification: connection failures, timeouts, HTTP 408/429/5xx and GraphQL errors whose
//! every `extensions.code` is UNAVAILABLE or TIMEOUT are transient; other HTTP errors and
//! GraphQL errors are `Rejected`; a body that is not JSON or lacks the configured paths is a
//! `BadResponse`. Any GraphQL error fails the whole request: partial data is never used.

use super::{FetchError, FetchReply, Fetched, MAX_RESPONSE_BYTES, assemble};
use crate::catalogue::Entity;
use crate::config::{ConfigError, EntitySourceConfig, Secret, SourcesConfig};
use apache_avro::Schema;
use apache_avro::schema::{Name, RecordField, RecordSchema, ResolvedSchema};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

pub const DEFAULT_RESPONSE_PATH: &str = "data.items";
pub const DEFAULT_TOMBSTONES_PATH: &str = "data.tombstones";

/// Error codes (`extensions.code`) that mean "try again later".
const TRANSIENT_CODES: &[&str] = &["UNAVAILABLE", "TIMEOUT"];

pub struct GraphqlFetcher {
    client: reqwest::Client,
    endpoint: Url,
    query: String,
    response_path: String,
    tombstones_path: String,
    /// A custom query without a configured `tombstones_path` may select no tombstones: then
    /// the default path is read if present and ignored if absent.
    tombstones_required: bool,
    bearer_token: Option<Secret>,
    timeout: Duration,
}

/// The HTTP client shared by all GraphQL entities; `timeout` bounds each whole request.
pub(super) fn http_client(cfg: &SourcesConfig) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout)
        .build()
        .map_err(|e| ConfigError::Invalid { key: "sources".into(), message: format!("cannot build the HTTP client: {e}") })
}

impl GraphqlFetcher {
    pub fn try_new(
        catalogued: &Entity,
        cfg: &SourcesConfig,
        entity: &EntitySourceConfig,
        client: reqwest::Client,
    ) -> Result<Self, ConfigError> {
        let kind = catalogued.name;
        let (key, endpoint) = match &entity.endpoint {
            Some(e) => (format!("sources.entities.{kind}.endpoint"), e.as_str()),
            None => ("sources.graphql_endpoint".to_string(), cfg.graphql_endpoint.as_str()),
        };
        let endpoint =
            Url::parse(endpoint).map_err(|e| ConfigError::Invalid { key, message: format!("'{endpoint}' is not a URL: {e}") })?;
        Ok(Self {
            client,
            endpoint,
            query: entity.query.clone().unwrap_or_else(|| default_query(catalogued)),
            response_path: entity.response_path.clone().unwrap_or_else(|| DEFAULT_RESPONSE_PATH.into()),
            tombstones_path: entity.tombstones_path.clone().unwrap_or_else(|| DEFAULT_TOMBSTONES_PATH.into()),
            tombstones_required: entity.tombstones_path.is_some() || entity.query.is_none(),
            bearer_token: cfg.bearer_token.clone(),
            timeout: cfg.timeout,
        })
    }

    pub fn query(&self) -> &str {
        &self.query
    }

    pub async fn fetch(&self, ids: &[String]) -> Result<FetchReply, FetchError> {
        let body = json!({ "query": self.query, "variables": { "ids": ids } });
        let mut request = self.client.post(self.endpoint.clone()).json(&body);
        if let Some(token) = &self.bearer_token {
            request = request.bearer_auth(token.expose());
        }
        let mut response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let bytes = self.read_body(&mut response).await?;
        if status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(FetchError::Unavailable(format!("http {status}: {}", excerpt(&bytes))));
        }
        if !status.is_success() {
            return Err(FetchError::Rejected(format!("http {status}: {}", excerpt(&bytes))));
        }
        let doc: Value =
            serde_json::from_slice(&bytes).map_err(|e| FetchError::BadResponse(format!("body is not JSON ({e}): {}", excerpt(&bytes))))?;
        if let Some(errors) = doc.get("errors").and_then(Value::as_array).filter(|e| !e.is_empty()) {
            return Err(classify_errors(errors));
        }
        let items = match at_path(&doc, &self.response_path) {
            Some(Value::Array(items)) => items,
            Some(other) => return Err(FetchError::BadResponse(format!("`{}` is {}, not a list", self.response_path, kind_of(other)))),
            None => return Err(FetchError::BadResponse(format!("response_path `{}` is not in the response", self.response_path))),
        };
        let found = items.iter().map(parse_item).collect::<Result<Vec<_>, _>>()?;
        let path = &self.tombstones_path;
        let deleted = match at_path(&doc, path) {
            Some(Value::Array(list)) => list.iter().map(id_and_version).collect::<Result<Vec<_>, _>>()?,
            Some(other) => return Err(FetchError::BadResponse(format!("`{path}` is {}, not a list", kind_of(other)))),
            None if !self.tombstones_required => Vec::new(),
            None => return Err(FetchError::BadResponse(format!("tombstones_path `{path}` is not in the response"))),
        };
        let (found, deleted) = settle_overlap(found, deleted);
        assemble(ids, found, deleted, Vec::new())
    }

    fn transport_error(&self, e: reqwest::Error) -> FetchError {
        if e.is_timeout() {
            return FetchError::Timeout(self.timeout);
        }
        FetchError::Unavailable(error_chain(&e))
    }

    async fn read_body(&self, response: &mut reqwest::Response) -> Result<Vec<u8>, FetchError> {
        let too_big = || FetchError::BadResponse(format!("response body exceeds {MAX_RESPONSE_BYTES} bytes"));
        if response.content_length().is_some_and(|len| len > MAX_RESPONSE_BYTES as u64) {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport_error(e))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The default query of an entity, generated from its Avro record: `<name>s(ids: $ids)`
/// selecting every field but `_meta`, and `tombstones(entity: <name>, ids: $ids)`.
pub fn default_query(entity: &Entity) -> String {
    let kind = entity.name;
    let schema = &entity.schema;
    let resolved = ResolvedSchema::try_from(schema).expect("catalogue schemas resolve (they parsed)");
    let Schema::Record(record) = schema else { unreachable!("the catalogue holds records only") };
    let fields: Vec<&RecordField> = record.fields.iter().filter(|f| f.name != "_meta").collect();
    format!(
        "query($ids: [ID!]!) {{ items: {kind}s(ids: $ids) {{ {} }} tombstones: tombstones(entity: {kind}, ids: $ids) {{ id version }} }}",
        selection(&fields, resolved.get_names())
    )
}

fn selection(fields: &[&RecordField], names: &HashMap<Name, &Schema>) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|f| match record_of(&f.schema, names) {
            Some(r) => format!("{} {{ {} }}", f.name, selection(&r.fields.iter().collect::<Vec<_>>(), names)),
            None => f.name.clone(),
        })
        .collect();
    parts.join(" ")
}

/// The record a field selects into: itself, the items of an array, the non-null branch of a
/// nullable union.
fn record_of<'s>(schema: &'s Schema, names: &HashMap<Name, &'s Schema>) -> Option<&'s RecordSchema> {
    match schema {
        Schema::Record(r) => Some(r),
        Schema::Array(a) => record_of(&a.items, names),
        Schema::Union(u) => {
            let mut non_null = u.variants().iter().filter(|v| !matches!(v, Schema::Null));
            match (non_null.next(), non_null.next()) {
                (Some(only), None) => record_of(only, names),
                _ => None,
            }
        }
        Schema::Ref { name } => names.get(name).and_then(|s| record_of(s, names)),
        _ => None,
    }
}

fn classify_errors(errors: &[Value]) -> FetchError {
    let codes: Vec<&str> = errors.iter().map(|e| e.pointer("/extensions/code").and_then(Value::as_str).unwrap_or("")).collect();
    let mut messages: Vec<String> = Vec::new();
    for (e, code) in errors.iter().zip(&codes) {
        let message = e.get("message").and_then(Value::as_str).unwrap_or("(no message)");
        let message = if code.is_empty() { message.to_string() } else { format!("{code}: {message}") };
        if messages.len() < 3 && !messages.contains(&message) {
            messages.push(message);
        }
    }
    let summary = format!("graphql errors: {}", messages.join("; "));
    if codes.iter().all(|c| TRANSIENT_CODES.contains(c)) { FetchError::Unavailable(summary) } else { FetchError::Rejected(summary) }
}

/// Follows a dotted path through objects (and arrays, by numeric segment). `null` counts as absent.
fn at_path<'v>(doc: &'v Value, path: &str) -> Option<&'v Value> {
    let mut current = doc;
    for segment in path.split('.') {
        current = match current {
            Value::Object(map) => map.get(segment)?,
            Value::Array(list) => list.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    (!current.is_null()).then_some(current)
}

fn parse_item(item: &Value) -> Result<Fetched, FetchError> {
    if !item.is_object() {
        return Err(FetchError::BadResponse(format!("an entity is {}, not an object", kind_of(item))));
    }
    let (id, version) = id_and_version(item)?;
    Ok(Fetched { id, version, body: item.clone() })
}

fn id_and_version(item: &Value) -> Result<(String, i64), FetchError> {
    let id = match item.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(FetchError::BadResponse(format!("an entity has no string `id`: {}", excerpt(item.to_string().as_bytes())))),
    };
    let version = match item.get("version") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| FetchError::BadResponse(format!("entity '{id}' has no integer `version`")))?;
    Ok((id, version))
}

/// The studio answers `items` and `tombstones` with two reads; an id deleted (or re-created)
/// between them shows up in both. The higher version is the newer state; on a tie the delete wins.
fn settle_overlap(found: Vec<Fetched>, deleted: Vec<(String, i64)>) -> (Vec<Fetched>, Vec<(String, i64)>) {
    if deleted.is_empty() {
        return (found, deleted);
    }
    let deleted_at: HashMap<&str, i64> = deleted.iter().map(|(id, v)| (id.as_str(), *v)).collect();
    let found_at: HashMap<&str, i64> = found.iter().map(|f| (f.id.as_str(), f.version)).collect();
    let keep_deleted: Vec<bool> = deleted.iter().map(|(id, v)| found_at.get(id.as_str()).is_none_or(|f| v >= f)).collect();
    let keep_found: Vec<bool> = found.iter().map(|f| deleted_at.get(f.id.as_str()).is_none_or(|d| f.version > *d)).collect();
    let found = found.into_iter().zip(keep_found).filter_map(|(f, keep)| keep.then_some(f)).collect();
    let deleted = deleted.into_iter().zip(keep_deleted).filter_map(|(d, keep)| keep.then_some(d)).collect();
    (found, deleted)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]);
    if bytes.len() > 300 { format!("{text}…") } else { text.into_owned() }
}

/// reqwest's top-level message hides the cause ("error sending request"); include the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_query_selects_every_business_field() {
        assert_eq!(
            default_query(crate::catalogue::Catalogue::example(crate::catalogue::example::CASH_FLOW)),
            "query($ids: [ID!]!) { items: cash_flows(ids: $ids) { id version production_id currency months { month amount } total } \
             tombstones: tombstones(entity: cash_flow, ids: $ids) { id version } }"
        );
        let talent = default_query(crate::catalogue::Catalogue::example(crate::catalogue::example::TALENT));
        assert!(talent.contains("items: talents(ids: $ids) { id version name role deals { production_id fee currency } }"), "{talent}");
        let production = default_query(crate::catalogue::Catalogue::example(crate::catalogue::example::PRODUCTION));
        assert!(production.contains("budget_id schedule_id }") && !production.contains("_meta"), "{production}");
    }

    #[test]
    fn errors_are_transient_only_when_every_code_is() {
        let unavailable = json!({ "message": "down", "extensions": { "code": "UNAVAILABLE" } });
        let timeout = json!({ "message": "slow", "extensions": { "code": "TIMEOUT" } });
        let bad = json!({ "message": "Unknown field \"nope\"" });
        assert!(matches!(classify_errors(&[unavailable.clone(), timeout]), FetchError::Unavailable(_)));
        let err = classify_errors(&[unavailable, bad]);
        assert!(matches!(&err, FetchError::Rejected(m) if m.contains("UNAVAILABLE: down") && m.contains("nope")), "{err}");
    }

    #[test]
    fn paths_and_versions() {
        let doc = json!({ "data": { "items": [{ "id": "a", "version": "7" }, { "id": 5, "version": 2 }], "none": null } });
        assert!(at_path(&doc, "data.items.1.id").is_some());
        assert!(at_path(&doc, "data.none").is_none() && at_path(&doc, "data.nowhere").is_none());
        let items = at_path(&doc, "data.items").unwrap().as_array().unwrap();
        assert_eq!(parse_item(&items[0]).unwrap().version, 7);
        assert_eq!(parse_item(&items[1]).unwrap().id, "5");
        assert!(matches!(parse_item(&json!({ "id": "a", "version": 1.5 })), Err(FetchError::BadResponse(_))));
        assert!(matches!(parse_item(&json!({ "version": 1 })), Err(FetchError::BadResponse(_))));
    }

    #[test]
    fn overlap_keeps_the_newer_state() {
        let f = |id: &str, v| Fetched { id: id.into(), version: v, body: json!({}) };
        let (found, deleted) = settle_overlap(vec![f("a", 3), f("b", 5), f("c", 1)], vec![("a".into(), 4), ("b".into(), 4)]);
        assert_eq!(found.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(deleted, vec![("a".to_string(), 4)]);
    }
}
