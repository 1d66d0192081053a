//! The `[enricher]` and `[sources]` sections: how change events become enriched records, and
//! where the current state of each entity is fetched from.

use super::sections::invalid;
use super::{ConfigError, Secret};
use crate::catalogue::{Catalogue, EntityName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnricherConfig {
    pub group_id: String,
    /// Input topics. Empty means `<input_topic_prefix><entity>.changes` for all six entities.
    pub topics: Vec<String>,
    pub input_topic_prefix: String,
    /// Enriched records go to `<output_topic_prefix><entity>.enriched`.
    pub output_topic_prefix: String,
    pub retry_topic: String,
    pub dlq_topic: String,
    /// Create output, retry and dead-letter topics at start if missing.
    pub create_topics: bool,
    pub topic_partitions: i32,
    pub topic_replication: i32,
    /// A batch closes at this many events...
    pub batch_max_events: usize,
    /// ...or this long after its first event, whichever comes first.
    #[serde(with = "humantime_serde")]
    pub batch_max_wait: Duration,
    /// Batches whose outputs are enqueued but not yet all acknowledged, per consumer: the next
    /// batch is collected and fetched while the previous one's acknowledgements are awaited.
    /// In-flight input is bounded by this × `batch_max_events`. 1 = one batch at a time.
    pub max_in_flight_batches: usize,
    /// No further batch is started while the batches in flight hold this many bytes (input
    /// messages plus their outputs, keys and payloads) or more; the oldest settles first.
    pub max_in_flight_bytes: usize,
    /// How long a processed event uuid is remembered for deduplication.
    #[serde(with = "humantime_serde")]
    pub dedup_ttl: Duration,
    pub dedup_capacity: u64,
    /// Ids per source request (chunk size of a batched fetch).
    pub max_ids_per_request: usize,
    /// Source requests in flight at once, over all entities.
    pub max_concurrent_fetches: usize,
    /// Attempts of a failing fetch within a batch, with jittered exponential backoff.
    pub fetch_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub fetch_backoff: Duration,
    /// Delay before a key parked on the retry topic is fetched again; it doubles each round,
    /// up to `retry_delay_max`, so a source outage of many minutes does not dead-letter keys.
    #[serde(with = "humantime_serde")]
    pub retry_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_delay_max: Duration,
    /// Rounds through the retry topic before a key goes to the dead-letter topic.
    pub max_retry_rounds: u32,
    /// Largest input message accepted; bigger ones are dead-lettered.
    pub max_message_bytes: usize,
    /// Prometheus `/metrics` and `/health` listener of the enricher.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `at_least_once` (default) or `exactly_once` (see [`Delivery`]).
    pub delivery: Delivery,
    /// Exactly-once only: this instance's `transactional.id`. It must be stable across restarts
    /// of one instance (a restart then aborts the transaction its predecessor left open) and
    /// unique among live instances (a second user of the id fences the first). Unset:
    /// `<group_id>-<hostname>`, right for one instance per host or pod.
    pub transactional_id: Option<String>,
    /// Exactly-once only: the broker aborts a transaction left open this long (a crashed
    /// instance's, when no restart with the same id aborts it first); `read_committed`
    /// consumers of the enriched topics wait at most this long behind it.
    #[serde(with = "humantime_serde")]
    pub transaction_timeout: Duration,
    /// Percentage rollout by key between pipelines (`rollout.rs`); unset: every key.
    pub rollout: Option<super::RolloutConfig>,
}

/// The host's name (`HOSTNAME`, else the kernel's): a pod's name under Kubernetes.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// How the enricher's outputs and its consumer offsets reach Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Offsets are stored after every output is acknowledged; a crash repeats the outputs of
    /// the batches in flight (the sinks' version guards absorb the repeats). Pipelined.
    #[default]
    AtLeastOnce,
    /// Each batch's outputs (records, tombstones, retry parcels, dead letters) and its consumer
    /// offsets are committed in one Kafka transaction: a `read_committed` consumer sees every
    /// output once. One batch per transaction, so no pipelining.
    ExactlyOnce,
}

impl Default for EnricherConfig {
    fn default() -> Self {
        Self {
            group_id: "slate-enricher".into(),
            topics: Vec::new(),
            input_topic_prefix: "studio.".into(),
            output_topic_prefix: "slate.".into(),
            retry_topic: "slate.retry".into(),
            dlq_topic: "slate.dlq".into(),
            create_topics: true,
            topic_partitions: 3,
            topic_replication: 1,
            batch_max_events: 1000,
            batch_max_wait: Duration::from_millis(50),
            max_in_flight_batches: 4,
            max_in_flight_bytes: 64 * 1024 * 1024,
            dedup_ttl: Duration::from_secs(600),
            dedup_capacity: 1_000_000,
            max_ids_per_request: 200,
            max_concurrent_fetches: 8,
            fetch_attempts: 3,
            fetch_backoff: Duration::from_millis(50),
            retry_delay: Duration::from_secs(5),
            retry_delay_max: Duration::from_secs(600),
            max_retry_rounds: 10,
            max_message_bytes: crate::event::MAX_EVENT_BYTES,
            metrics_listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9464))),
            delivery: Delivery::AtLeastOnce,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
            rollout: None,
        }
    }
}

impl EnricherConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("enricher.group_id", &self.group_id),
            ("enricher.retry_topic", &self.retry_topic),
            ("enricher.dlq_topic", &self.dlq_topic),
            ("enricher.output_topic_prefix", &self.output_topic_prefix),
        ] {
            if value.is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        let ranges: [(&str, usize, usize, usize); 6] = [
            ("enricher.batch_max_events", self.batch_max_events, 1, 100_000),
            ("enricher.max_in_flight_batches", self.max_in_flight_batches, 1, 16),
            ("enricher.max_in_flight_bytes", self.max_in_flight_bytes, 1024 * 1024, 4 * 1024 * 1024 * 1024),
            ("enricher.max_ids_per_request", self.max_ids_per_request, 1, 10_000),
            ("enricher.max_concurrent_fetches", self.max_concurrent_fetches, 1, 1024),
            ("enricher.max_message_bytes", self.max_message_bytes, 64, 16 * 1024 * 1024),
        ];
        for (key, value, lo, hi) in ranges {
            if !(lo..=hi).contains(&value) {
                return Err(invalid(key, format!("{value} is out of range; use {lo}..={hi}")));
            }
        }
        if self.fetch_attempts == 0 {
            return Err(invalid("enricher.fetch_attempts", "must be at least 1 (1 = no retry within a batch)"));
        }
        if self.retry_delay.is_zero() || self.retry_delay_max < self.retry_delay {
            return Err(invalid("enricher.retry_delay", "must be positive and at most enricher.retry_delay_max"));
        }
        if self.batch_max_wait.is_zero() {
            return Err(invalid("enricher.batch_max_wait", "must be positive, e.g. \"50ms\""));
        }
        if self.topic_partitions < 1 || self.topic_replication < 1 {
            return Err(invalid("enricher.topic_partitions", "partitions and replication must be at least 1"));
        }
        if let Some(rollout) = &self.rollout {
            rollout.validate()?;
        }
        if self.transactional_id.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("enricher.transactional_id", "must not be empty; leave it unset for <group_id>-<hostname>"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(900)).contains(&self.transaction_timeout) {
            return Err(invalid(
                "enricher.transaction_timeout",
                "is out of range; use 1s..=15m (brokers cap it at transaction.max.timeout.ms)",
            ));
        }
        Ok(())
    }

    /// The `transactional.id` of this instance (exactly-once delivery).
    pub fn transactional_id(&self) -> String {
        match &self.transactional_id {
            Some(id) => id.clone(),
            None => format!("{}-{}", self.group_id, hostname()),
        }
    }

    /// The input topics: configured, or `<input_topic_prefix><entity>.changes` per entity.
    pub fn input_topics(&self, catalogue: &Catalogue) -> Vec<String> {
        if !self.topics.is_empty() {
            return self.topics.clone();
        }
        catalogue.iter().map(|e| e.name.changes_topic(&self.input_topic_prefix)).collect()
    }

    /// How long a key entering retry round `round` (1-based) waits: `retry_delay` doubled per
    /// earlier round, capped at `retry_delay_max`.
    pub fn retry_delay_for(&self, round: u32) -> Duration {
        let doublings = round.saturating_sub(1).min(30);
        self.retry_delay.saturating_mul(1u32 << doublings).min(self.retry_delay_max)
    }

    /// `<output_topic_prefix><entity>.enriched`.
    pub fn output_topic(&self, kind: EntityName) -> String {
        format!("{}{}.enriched", self.output_topic_prefix, kind.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Graphql,
    Grpc,
}

/// Where current state comes from. Every entity uses the defaults unless `[sources.entities.<entity>]`
/// overrides them, so pointing slate at your own services needs config, not code.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    pub protocol: Protocol,
    pub graphql_endpoint: String,
    /// gRPC endpoint as a URL, e.g. "http://127.0.0.1:50051".
    pub grpc_endpoint: String,
    /// Per request, including connection setup.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer …` (GraphQL) or `authorization` metadata (gRPC).
    pub bearer_token: Option<Secret>,
    /// Keyed by entity name; every key must name an entity of the catalogue.
    pub entities: BTreeMap<String, EntitySourceConfig>,
}

impl Default for SourcesConfig {
    fn default() -> Self {
        Self {
            protocol: Protocol::Graphql,
            graphql_endpoint: "http://127.0.0.1:8090/graphql".into(),
            grpc_endpoint: "http://127.0.0.1:50051".into(),
            timeout: Duration::from_secs(5),
            bearer_token: None,
            entities: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EntitySourceConfig {
    pub protocol: Option<Protocol>,
    /// Overrides `graphql_endpoint` or `grpc_endpoint` for this entity.
    pub endpoint: Option<String>,
    /// GraphQL document taking `$ids: [ID!]!`; default: generated from the entity's Avro record.
    pub query: Option<String>,
    /// Dotted path to the list of entities in the GraphQL response, e.g. "data.cash_flows".
    pub response_path: Option<String>,
    /// Dotted path to a list of `{id, version}` tombstones in the response, if the source has one.
    pub tombstones_path: Option<String>,
    /// Full gRPC method path; default "/studio.finance.v1.StudioSource/BatchGet".
    pub grpc_method: Option<String>,
    /// How `replay` and `verify` list every live id. Default: the GraphQL query
    /// `ids(entity: $entity, after: $after, first: $first)` at the entity's GraphQL endpoint;
    /// `false`: the source has no listing, and replay and verify use the ids the enriched topic
    /// and the sinks already hold (and say so).
    pub list_ids: Option<bool>,
    /// GraphQL document listing ids, taking `$after: ID` (the last id of the previous page, null
    /// first) and `$first: Int!` (the page size), answering ids in ascending order.
    pub ids_query: Option<String>,
    /// Dotted path to the list of ids in the `ids_query` response; default "data.ids".
    pub ids_path: Option<String>,
}

impl SourcesConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        super::sections::validate_http_url("sources.graphql_endpoint", &self.graphql_endpoint)?;
        super::sections::validate_http_url("sources.grpc_endpoint", &self.grpc_endpoint)?;
        if self.timeout.is_zero() {
            return Err(invalid("sources.timeout", "must be positive, e.g. \"5s\""));
        }
        for (kind, e) in &self.entities {
            if let Some(endpoint) = &e.endpoint {
                super::sections::validate_http_url(&format!("sources.entities.{kind}.endpoint"), endpoint)?;
            }
            if let Some(q) = &e.query
                && !q.contains("$ids")
            {
                return Err(invalid(&format!("sources.entities.{kind}.query"), "must declare and use the variable $ids: [ID!]!"));
            }
            if let Some(q) = &e.ids_query
                && !(q.contains("$after") && q.contains("$first"))
            {
                return Err(invalid(
                    &format!("sources.entities.{kind}.ids_query"),
                    "must declare and use the variables $after: ID and $first: Int!",
                ));
            }
            if e.list_ids == Some(false) && e.ids_query.is_some() {
                return Err(invalid(&format!("sources.entities.{kind}.ids_query"), "is set while list_ids = false; remove one of them"));
            }
            if let Some(m) = &e.grpc_method
                && !(m.starts_with('/') && m[1..].contains('/'))
            {
                return Err(invalid(
                    &format!("sources.entities.{kind}.grpc_method"),
                    format!("'{m}' is not a method path like \"/package.Service/Method\""),
                ));
            }
        }
        Ok(())
    }

    /// Every `[sources.entities.<name>]` names a catalogue entity (a typo would otherwise
    /// silently leave that entity on the defaults).
    pub(super) fn validate_entities(&self, catalogue: &Catalogue) -> Result<(), ConfigError> {
        for name in self.entities.keys() {
            if !catalogue.iter().any(|e| e.name.as_str() == name) {
                let known: Vec<&str> = catalogue.iter().map(|e| e.name.as_str()).collect();
                return Err(invalid(
                    &format!("sources.entities.{name}"),
                    format!(
                        "no entity `{name}` in the catalogue (it has: {}); fix the name or declare it under [catalogue.entities.{name}]",
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The source options of an entity (defaults when it has no `[sources.entities.<name>]`).
    pub fn entity(&self, kind: EntityName) -> EntitySourceConfig {
        self.entities.get(kind.as_str()).cloned().unwrap_or_default()
    }

    /// The effective protocol of an entity.
    pub fn protocol_of(&self, kind: EntityName) -> Protocol {
        self.entities.get(kind.as_str()).and_then(|e| e.protocol).unwrap_or(self.protocol)
    }
}
