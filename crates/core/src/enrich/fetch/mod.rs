//! Batched fetch of the CURRENT state of entities from their source of truth.
//!
//! Contract of one fetch (one request for one chunk of ids of one entity): every requested id
//! appears exactly once in the reply, in `found` (current state and source version), `deleted`
//! (the version of the delete) or `missing` (the source never had it); an id the source omits
//! is `missing`. Each list follows the order of the request, so replies compare equal whatever
//! order the source answered in. An id the source returns that was not requested, or returns
//! twice, is a [`FetchError::BadResponse`]: such a source cannot be trusted for that chunk.
//!
//! Bodies are JSON objects keyed by the Avro record's field names (dates as `YYYY-MM-DD`), the
//! same shape from both protocols, so one generic conversion (`enrich::avro`) serves both.
//! Chunking, concurrency limits and retries belong to the caller; the variant of a
//! [`FetchError`] says whether a retry can help.

pub mod graphql;
pub mod grpc;

use crate::catalogue::Catalogue;
use crate::config::{ConfigError, Protocol, SourcesConfig};
use crate::event::EntityName;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// One live entity as the source returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub id: String,
    pub version: i64,
    /// A JSON object whose keys are the Avro record's field names (business fields; may also
    /// hold `id` and `version`, which [`Fetched::id`] and [`Fetched::version`] override).
    pub body: serde_json::Value,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchReply {
    pub found: Vec<Fetched>,
    /// (id, version of the delete).
    pub deleted: Vec<(String, i64)>,
    pub missing: Vec<String>,
}

/// Why a fetch failed. Transient variants may succeed on retry; permanent ones will not.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Transient: no answer within the configured timeout.
    #[error("source request timed out after {0:?}")]
    Timeout(Duration),
    /// Transient: connection failure, 5xx/429, or the source said it is unavailable.
    #[error("source unavailable: {0}")]
    Unavailable(String),
    /// Permanent: the source refused this request (bad query, bad argument, too many ids).
    #[error("source rejected the request: {0}")]
    Rejected(String),
    /// Permanent: the source answered with something that breaks the fetch contract.
    #[error("bad response from source: {0}")]
    BadResponse(String),
}

impl FetchError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Timeout(_) | Self::Unavailable(_))
    }
}

/// The seam between the enricher and its sources; tests substitute a fake.
pub trait Fetch: Send + Sync {
    /// One request for one chunk of ids of one entity (the caller chunks, bounds concurrency
    /// and retries).
    fn fetch<'a>(
        &'a self,
        entity: EntityName,
        ids: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<FetchReply, FetchError>> + Send + 'a>>;
}

/// Largest response body accepted from a source (GraphQL body, gRPC message).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The fetcher of every entity, built from `[sources]`.
pub struct Sources {
    entities: HashMap<EntityName, EntitySource>,
}

enum EntitySource {
    Graphql(graphql::GraphqlFetcher),
    Grpc(grpc::GrpcFetcher),
}

impl Sources {
    /// Builds one fetcher per entity with its effective protocol, endpoint, query and paths.
    /// One HTTP client serves all GraphQL entities and one lazily connected gRPC channel serves
    /// each distinct gRPC endpoint; nothing connects until the first fetch. Must run inside a
    /// Tokio runtime when any entity uses gRPC (the channel spawns its worker task).
    pub fn try_new(cfg: &SourcesConfig, catalogue: &Catalogue) -> Result<Self, ConfigError> {
        let mut http = None;
        let mut channels = HashMap::new();
        let mut entities = HashMap::new();
        for catalogued in catalogue.iter() {
            let kind = catalogued.name;
            let entity_cfg = cfg.entity(kind);
            let source = match cfg.protocol_of(kind) {
                Protocol::Graphql => {
                    let client = match &http {
                        Some(client) => reqwest::Client::clone(client),
                        None => http.insert(graphql::http_client(cfg)?).clone(),
                    };
                    EntitySource::Graphql(graphql::GraphqlFetcher::try_new(catalogued, cfg, &entity_cfg, client)?)
                }
                Protocol::Grpc => {
                    let endpoint = entity_cfg.endpoint.clone().unwrap_or_else(|| cfg.grpc_endpoint.clone());
                    let channel = match channels.get(&endpoint) {
                        Some(channel) => tonic::transport::Channel::clone(channel),
                        None => {
                            let key = if entity_cfg.endpoint.is_some() {
                                format!("sources.entities.{kind}.endpoint")
                            } else {
                                "sources.grpc_endpoint".into()
                            };
                            let channel = grpc::lazy_channel(&key, &endpoint, cfg.timeout)?;
                            channels.insert(endpoint, channel.clone());
                            channel
                        }
                    };
                    EntitySource::Grpc(grpc::GrpcFetcher::try_new(kind, cfg, &entity_cfg, channel)?)
                }
            };
            entities.insert(kind, source);
        }
        Ok(Self { entities })
    }

    async fn fetch_one(&self, entity: EntityName, ids: &[String]) -> Result<FetchReply, FetchError> {
        match self.entities.get(&entity) {
            Some(EntitySource::Graphql(f)) => f.fetch(ids).await,
            Some(EntitySource::Grpc(f)) => f.fetch(ids).await,
            None => Err(FetchError::Rejected(format!("no source configured for {entity}"))),
        }
    }
}

impl Fetch for Sources {
    fn fetch<'a>(
        &'a self,
        entity: EntityName,
        ids: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<FetchReply, FetchError>> + Send + 'a>> {
        Box::pin(self.fetch_one(entity, ids))
    }
}

/// Checks a source's answer against the request and orders it like the request. `missing` is
/// what the source said was missing; requested ids it did not mention at all are added to it.
pub(crate) fn assemble(
    requested: &[String],
    found: Vec<Fetched>,
    deleted: Vec<(String, i64)>,
    missing: Vec<String>,
) -> Result<FetchReply, FetchError> {
    let position: HashMap<&str, usize> = requested.iter().enumerate().rev().map(|(i, id)| (id.as_str(), i)).collect();
    let mut seen = HashSet::with_capacity(requested.len());
    let mut claim = |id: &str| -> Result<usize, FetchError> {
        let Some(&pos) = position.get(id) else {
            return Err(FetchError::BadResponse(format!("returned id '{id}' that was not requested")));
        };
        if !seen.insert(pos) {
            return Err(FetchError::BadResponse(format!("returned id '{id}' more than once")));
        }
        Ok(pos)
    };
    let mut found: Vec<(usize, Fetched)> = found.into_iter().map(|f| Ok((claim(&f.id)?, f))).collect::<Result<_, FetchError>>()?;
    let mut deleted: Vec<(usize, (String, i64))> = deleted.into_iter().map(|d| Ok((claim(&d.0)?, d))).collect::<Result<_, FetchError>>()?;
    for id in &missing {
        claim(id)?;
    }
    found.sort_by_key(|(pos, _)| *pos);
    deleted.sort_by_key(|(pos, _)| *pos);
    let answered: HashSet<usize> = found.iter().map(|(pos, _)| *pos).chain(deleted.iter().map(|(pos, _)| *pos)).collect();
    let missing = requested
        .iter()
        .enumerate()
        .filter(|(i, id)| position[id.as_str()] == *i && !answered.contains(i))
        .map(|(_, id)| id.clone())
        .collect();
    Ok(FetchReply { found: found.into_iter().map(|(_, f)| f).collect(), deleted: deleted.into_iter().map(|(_, d)| d).collect(), missing })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn fetched(id: &str, version: i64) -> Fetched {
        Fetched { id: id.into(), version, body: json!({ "id": id }) }
    }

    #[test]
    fn reply_follows_request_order_and_fills_missing() {
        let requested = ids(&["a", "b", "c", "d", "e"]);
        let reply = assemble(&requested, vec![fetched("d", 4), fetched("a", 1)], vec![("c".into(), 9)], ids(&["e"])).unwrap();
        assert_eq!(reply.found.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["a", "d"]);
        assert_eq!(reply.deleted, vec![("c".to_string(), 9)]);
        assert_eq!(reply.missing, ids(&["b", "e"]));
    }

    #[test]
    fn duplicate_requested_ids_are_answered_once() {
        let reply = assemble(&ids(&["a", "a", "b"]), vec![fetched("a", 1)], vec![], vec![]).unwrap();
        assert_eq!((reply.found.len(), reply.missing.clone()), (1, ids(&["b"])));
    }

    #[test]
    fn unrequested_or_repeated_ids_are_bad_responses() {
        let requested = ids(&["a", "b"]);
        for (found, deleted, missing) in [
            (vec![fetched("x", 1)], vec![], vec![]),
            (vec![fetched("a", 1), fetched("a", 2)], vec![], vec![]),
            (vec![fetched("a", 1)], vec![("a".to_string(), 2)], vec![]),
            (vec![], vec![("b".to_string(), 2)], ids(&["b"])),
            (vec![], vec![], ids(&["z"])),
        ] {
            let err = assemble(&requested, found, deleted, missing).unwrap_err();
            assert!(matches!(err, FetchError::BadResponse(_)), "{err}");
            assert!(!err.is_transient());
        }
    }

    #[test]
    fn transient_variants() {
        assert!(FetchError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(FetchError::Unavailable("x".into()).is_transient());
        assert!(!FetchError::Rejected("x".into()).is_transient());
    }
}
