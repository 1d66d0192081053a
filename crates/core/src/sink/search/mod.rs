//! The search sink: enriched records → Elasticsearch / OpenSearch through the HTTP API.
//!
//! **Layout.** One index per entity, `<index_prefix><entity>` (`slate-production`, …), created at
//! start with an explicit mapping derived from the Avro contract ([`mapping`]); an index that
//! already exists gets the mapping merged in (`PUT <index>/_mapping`), and an incompatible one
//! stops the sink at start. A newer writer schema's fields are merged in before its first
//! document; a merge the target refuses halts that entity only ([`WriteOutcome::halted`]). A document is the record as the sinks see it (Avro field names, dates
//! `YYYY-MM-DD`, timestamps epoch ms), `_meta` included.
//!
//! **Idempotency lives in the data.** `_id` = entity id, `version` = the source-of-truth version,
//! `version_type=external`: the target applies a write only when its version is higher than the
//! one it holds. A 409 (version conflict) therefore means "this version or a newer one is already
//! there": counted as stale, never an error. Tombstones delete with the version of the delete, so
//! an older state cannot remove a newer document; a tombstone without a version (an id the source
//! never had) is a plain delete. Replays, duplicates, reordering and retried batches all converge
//! to the newest version. Never the Kafka offset as version: a replay into a new topic would
//! break it.
//!
//! **Deletes rely on the target.** After a versioned delete, real Elasticsearch keeps a delete
//! tombstone for `index.gc_deletes` (60 s by default): an older index request arriving meanwhile
//! gets a 409. After that window, or on a target without tombstones, an older state can
//! re-create a deleted document until the delete is replayed too. noida-db's Elasticsearch API
//! (the test target) keeps no delete tombstone at all: it accepts a stale index after a delete.
//! The pipeline does not depend on it: per key, the enriched topic is ordered and the sink
//! writes in that order, so a replay from any offset ends with the delete again.
//!
//! **Per-item results**, one by one ([`bulk`]): 2xx → applied; 409 → stale; a delete answered
//! 404 → applied (already absent); 429 or 5xx on any item → the whole batch is retried
//! ([`SinkError::Unavailable`]; safe, thanks to external versions: what was applied comes back
//! as stale); any other 4xx (a value that does not fit the mapping, …) → rejected with the
//! target's reason, dead-lettered by the runner while the rest of the batch stands.
//!
//! **Request errors**: connection refused, timeout (`sinks.search.timeout`), 408, 429 and 5xx →
//! [`SinkError::Unavailable`] (the runner backs off and writes the batch again); 401/403 →
//! [`SinkError::Fatal`] naming `sinks.search.username` / `sinks.search.password`.
//!
//! **Bounded.** One `_bulk` request in flight per sink; a batch whose NDJSON exceeds ~10 MiB is
//! split into several requests sent one after the other.
//!
//! **Durability and visibility.** `_bulk` answers after the write is in the translog (durable with
//! Elasticsearch's default `index.translog.durability=request`), so `Ok` means applied records
//! survive a target crash. Bulk requests use `refresh=false`: documents become searchable at the
//! index's next refresh (`index.refresh_interval`, 1 s by default), not when the batch commits;
//! a `GET <index>/_doc/<id>` sees them at once.

pub mod bulk;
pub mod mapping;
pub mod scan;

use super::{Sink, SinkError, SinkRecord, WriteOutcome};
use crate::catalogue::{Catalogue, Entity};
use crate::config::SearchSinkConfig;
use crate::event::EntityName;
use bulk::Verdict;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// Writes enriched records to a search index, idempotently (see the module doc).
pub struct SearchSink {
    http: reqwest::Client,
    /// The entities whose indices this sink writes.
    catalogue: Arc<Catalogue>,
    /// Writer schemas whose fields are mapped already (by address: codecs leak their writer).
    mapped: Mutex<HashSet<usize>>,
    /// Entities whose newer writer schema the index mapping refused (see [`WriteOutcome::halted`]).
    halted: Mutex<BTreeMap<EntityName, String>>,
    base: String,
    index_prefix: String,
    auth: Option<(String, Option<String>)>,
    max_bulk_bytes: usize,
}

impl std::fmt::Debug for SearchSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchSink").field("url", &self.base).field("index_prefix", &self.index_prefix).finish_non_exhaustive()
    }
}

impl SearchSink {
    /// Builds the client and creates (or updates) the mapping of every entity's index.
    /// Unreachable target → `Unavailable` (the caller may retry); bad credentials or an
    /// incompatible existing mapping → `Fatal`.
    pub async fn connect(cfg: &SearchSinkConfig, catalogue: &Arc<Catalogue>) -> Result<Self, SinkError> {
        let mut sink = Self::try_new(cfg)?;
        sink.catalogue = catalogue.clone();
        for entity in catalogue.iter() {
            sink.ensure_index(entity).await?;
        }
        Ok(sink)
    }

    /// The client alone, without a request to the target (use [`SearchSink::connect`] to run).
    pub fn try_new(cfg: &SearchSinkConfig) -> Result<Self, SinkError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(std::time::Duration::from_secs(10)))
            .build()
            .map_err(|e| SinkError::Fatal(format!("search HTTP client: {e}")))?;
        Ok(Self {
            http,
            catalogue: Catalogue::built_in(),
            mapped: Mutex::new(HashSet::new()),
            halted: Mutex::new(BTreeMap::new()),
            base: cfg.url.trim_end_matches('/').to_string(),
            index_prefix: cfg.index_prefix.clone(),
            auth: cfg.username.clone().map(|u| (u, cfg.password.as_ref().map(|p| p.expose().to_string()))),
            max_bulk_bytes: bulk::MAX_BULK_BYTES,
        })
    }

    /// Bounds one `_bulk` request body (default [`bulk::MAX_BULK_BYTES`]); a larger batch is split.
    pub fn with_max_bulk_bytes(mut self, bytes: usize) -> Self {
        self.max_bulk_bytes = bytes.max(1);
        self
    }

    /// The index holding the documents of `kind`.
    pub fn index(&self, kind: EntityName) -> String {
        bulk::index_name(&self.index_prefix, kind)
    }

    async fn ensure_index(&self, entity: &Entity) -> Result<(), SinkError> {
        let index = self.index(entity.name);
        let mappings = mapping::mappings(entity);
        let create = serde_json::json!({ "mappings": mappings });
        let (status, body) = self.send(self.http.put(format!("{}/{index}", self.base)).json(&create)).await?;
        if status.is_success() {
            tracing::info!(%index, "search index created");
            return Ok(());
        }
        if error_type(&body).as_deref() != Some("resource_already_exists_exception") {
            return Err(SinkError::Fatal(format!("cannot create index {index}: HTTP {status}: {}", describe(&body))));
        }
        // Existing index: merge the mapping in. New fields are added; a changed type is refused.
        let (status, body) = self.send(self.http.put(format!("{}/{index}/_mapping", self.base)).json(&mappings)).await?;
        if status.is_success() {
            return Ok(());
        }
        Err(SinkError::Fatal(format!(
            "index {index} exists with a mapping incompatible with {}: {}; reindex it or use another sinks.search.index_prefix",
            entity.record,
            describe(&body)
        )))
    }

    /// Merges the fields of writer schemas not seen yet into their index's mapping, before the
    /// first document carrying them is written (so they are indexed, not only kept in `_source`).
    /// A mapping the target refuses (a field whose type changed) halts that entity.
    async fn map_new_fields(&self, batch: &[SinkRecord]) -> Result<(), SinkError> {
        let mut done = Vec::new();
        for r in batch {
            let Some(writer) = r.writer else { continue };
            let key = writer as *const apache_avro::Schema as usize;
            if done.contains(&key)
                || self.mapped.lock().unwrap_or_else(|e| e.into_inner()).contains(&key)
                || self.halted.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&r.entity)
            {
                continue;
            }
            done.push(key);
            let Some(entity) = self.catalogue.get(r.entity) else { continue };
            let schema = serde_json::to_value(writer).map_err(|e| SinkError::Fatal(format!("writer schema of {}: {e}", r.entity)))?;
            let index = self.index(r.entity);
            let body = mapping::of_record(entity, &schema);
            let (status, answer) = self.send(self.http.put(format!("{}/{index}/_mapping", self.base)).json(&body)).await?;
            if !status.is_success() {
                let reason = format!(
                    "search sink, entity `{}`: index {index} refused the mapping of a newer writer schema of {}: {}; reindex it \
                     (or use another sinks.search.index_prefix) and restart the sink: nothing of `{}` is committed until then",
                    r.entity,
                    entity.record,
                    describe(&answer),
                    r.entity
                );
                tracing::error!(entity = %r.entity, %reason, "search sink halted this entity; the others go on");
                self.halted.lock().unwrap_or_else(|e| e.into_inner()).insert(r.entity, reason);
            }
        }
        self.mapped.lock().unwrap_or_else(|e| e.into_inner()).extend(done);
        Ok(())
    }

    /// Writes `batch` with `_bulk` (one request per ~10 MiB, sent in order). See the module doc
    /// for how each item and each request error is classified.
    pub async fn write_batch(&self, batch: &[SinkRecord]) -> Result<WriteOutcome, SinkError> {
        self.map_new_fields(batch).await?;
        let halted = self.halted.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (chunks, refused) = bulk::build(batch, &self.index_prefix, self.max_bulk_bytes, |r| !halted.contains_key(&r.entity));
        let mut outcome = WriteOutcome { rejected: refused, ..WriteOutcome::default() };
        outcome.halted = halted.into_iter().filter(|(e, _)| batch.iter().any(|r| r.entity == *e)).collect();
        for chunk in chunks {
            let num_actions = chunk.records.len();
            let request = self
                .http
                .post(format!("{}/_bulk?refresh=false", self.base))
                .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                .body(chunk.body);
            let (status, body) = self.send(request).await?;
            if !status.is_success() {
                // Our request itself is refused (413 too large, 400 malformed): retrying cannot help.
                return Err(SinkError::Fatal(format!("_bulk of {num_actions} actions refused: HTTP {status}: {}", describe(&body))));
            }
            let items = bulk::parse_response(&body, &chunk.records).map_err(SinkError::Unavailable)?;
            let mut retry = None;
            for (i, verdict) in items {
                match verdict {
                    Verdict::Applied => outcome.applied += 1,
                    Verdict::Stale => outcome.stale += 1,
                    Verdict::Rejected(reason) => outcome.rejected.push((i, reason)),
                    Verdict::Retry(reason) => {
                        retry.get_or_insert(reason);
                    }
                }
            }
            if let Some(reason) = retry {
                return Err(SinkError::Unavailable(format!("_bulk items not written, the batch is retried: {reason}")));
            }
        }
        outcome.rejected.sort_by_key(|(i, _)| *i);
        Ok(outcome)
    }

    /// Sends a request with credentials; transient failures and auth failures become errors,
    /// every other answer (2xx and the remaining 4xx) comes back to the caller.
    async fn send(&self, request: RequestBuilder) -> Result<(StatusCode, Vec<u8>), SinkError> {
        let request = match &self.auth {
            Some((user, pass)) => request.basic_auth(user, pass.as_deref()),
            None => request,
        };
        let response = request.send().await.map_err(|e| SinkError::Unavailable(format!("search target {}: {e}", self.base)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| SinkError::Unavailable(format!("search target {}: reading the answer: {e}", self.base)))?
            .to_vec();
        match status {
            StatusCode::UNAUTHORIZED => Err(SinkError::Fatal(format!(
                "search target {} refused the credentials (HTTP 401): {}; check sinks.search.username and sinks.search.password",
                self.base,
                describe(&body)
            ))),
            StatusCode::FORBIDDEN => Err(SinkError::Fatal(format!(
                "search target {} denied access (HTTP 403): {}; the user in sinks.search.username/sinks.search.password needs \
                 create_index and write on {}*",
                self.base,
                describe(&body),
                self.index_prefix
            ))),
            s if s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                Err(SinkError::Unavailable(format!("search target {}: HTTP {s}: {}", self.base, describe(&body))))
            }
            _ => Ok((status, body)),
        }
    }
}

impl Sink for SearchSink {
    fn name(&self) -> &'static str {
        "search"
    }

    fn write<'a>(&'a self, batch: &'a [SinkRecord]) -> Pin<Box<dyn Future<Output = Result<WriteOutcome, SinkError>> + Send + 'a>> {
        Box::pin(self.write_batch(batch))
    }
}

fn error_type(body: &[u8]) -> Option<String> {
    let v: Json = serde_json::from_slice(body).ok()?;
    v.get("error")?.get("type")?.as_str().map(str::to_string)
}

/// A short description of an error answer: Elasticsearch's `type: reason`, or the start of the body.
fn describe(body: &[u8]) -> String {
    match serde_json::from_slice::<Json>(body) {
        Ok(v) if v.get("error").is_some() => bulk::reason(v.get("error")),
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() { "empty body".into() } else { text.chars().take(300).collect() }
        }
    }
}
