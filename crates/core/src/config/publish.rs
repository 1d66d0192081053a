//! The `[publish]` section: how finance services hand ID-only events to slate (`slate publish`,
//! `slate run ingest`, or `slate::publish::Publisher` in Rust). Events go to the topics the
//! enricher reads (`enricher.input_topic_prefix` + `<entity>.changes`), so the two can never
//! disagree about where events live.

use super::sections::invalid;
use super::{ConfigError, Secret};
use crate::catalogue::{Catalogue, EntityName};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Entities whose event streams need no per-key order: their events go to a healthy
    /// partition (leader up, in-sync replica set full) instead of the key's partition. Safe for
    /// ID-only events (the enricher fetches the current state, sinks guard on the version), at
    /// the cost of per-key order on the change topic.
    pub unordered_entities: Vec<String>,
    /// How often partition health is re-read from the cluster metadata (unordered entities).
    #[serde(with = "humantime_serde")]
    pub metadata_refresh: Duration,
    /// Where `slate run ingest` serves `POST /events`, `/health` and `/metrics`.
    pub listen: SocketAddr,
    /// Most events one `POST /events` request may carry.
    pub max_request_events: usize,
    /// When set, `POST /events` needs `Authorization: Bearer <token>` (`/health` and
    /// `/metrics` stay open for probes and scrapers).
    pub bearer_token: Option<Secret>,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            unordered_entities: Vec::new(),
            metadata_refresh: Duration::from_secs(10),
            listen: SocketAddr::from(([127, 0, 0, 1], 8095)),
            max_request_events: 1_000,
            bearer_token: None,
        }
    }
}

impl PublishConfig {
    pub fn validate(&self, catalogue: &Catalogue) -> Result<(), ConfigError> {
        for name in &self.unordered_entities {
            let known = EntityName::lookup(name).ok().filter(|n| catalogue.contains(*n));
            if known.is_none() {
                let names: Vec<String> = catalogue.names().iter().map(ToString::to_string).collect();
                return Err(invalid(
                    "publish.unordered_entities",
                    format!("names `{name}`, which the catalogue does not declare; use one of: {}", names.join(", ")),
                ));
            }
        }
        if self.metadata_refresh < Duration::from_millis(100) {
            return Err(invalid("publish.metadata_refresh", "must be at least 100ms (it is a metadata request to the cluster)"));
        }
        if !(1..=100_000).contains(&self.max_request_events) {
            return Err(invalid("publish.max_request_events", "must be between 1 and 100000"));
        }
        Ok(())
    }

    /// The unordered entities, resolved (valid after [`Self::validate`]).
    pub fn unordered(&self) -> Vec<EntityName> {
        self.unordered_entities.iter().filter_map(|n| EntityName::lookup(n).ok()).collect()
    }
}
