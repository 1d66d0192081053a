//! The producer side: finance services hand slate their ID-only change events here, from Rust
//! ([`Publisher`]), from scripts (`slate publish`) or over HTTP (`slate run ingest`, [`ingest`]).
//!
//! # Contract
//! - **Refused before queueing.** An event is parsed and checked first ([`Publisher::parse`]):
//!   malformed JSON, unknown fields, a missing or bad field, an entity the catalogue does not
//!   declare, an empty or oversized id, a payload over [`MAX_EVENT_BYTES`]. A refused event is
//!   never queued; the error names the field and the fix, and `slate_publish_refused_total`
//!   counts it by reason.
//! - **Acknowledged or failed, never lost silently.** [`Publisher::publish`] answers one outcome
//!   per event: an [`Ack`] once the broker acknowledged it (`acks=all`, idempotent producer), or
//!   the error (`slate_publish_failed_total`). The producer's buffer is bounded
//!   (`kafka.producer.buffer_max_messages`); when it is full a publish waits up to
//!   `kafka.producer.buffer_full_timeout`, then fails. The worst case held in memory is
//!   therefore `buffer_max_messages` events of at most [`MAX_EVENT_BYTES`], for at most
//!   `kafka.producer.message_timeout`; none of it is dropped without its caller being told.
//! - **Keyed by id.** Events go to `enricher.input_topic_prefix<entity>.changes` keyed by the
//!   entity id, so one id's events stay in order on one partition. Entities listed in
//!   `publish.unordered_entities` go round-robin to healthy partitions instead
//!   ([`partitions`]); order does not matter to ID-only events, whose enrichment fetches the
//!   current state and whose sinks guard on the source version.
//! - A retried publish may duplicate an event (at-least-once); the enricher drops a repeated
//!   uuid and the sinks' version guards make any duplicate harmless.
//! - **A timed-out producer is replaced.** After an event timed out, an idempotent producer
//!   must re-establish its producer id with the broker; a broker that cannot (seen with
//!   noida-db after a crash) leaves it timing out forever. So once a publish saw a timeout, the
//!   next one goes through a fresh producer (`slate_publish_producer_restarts_total`); requests
//!   still using the old one finish on it, so nothing in flight is cut off.
//! - **Publish locally, route asynchronously** (`[router]`): an entity whose home is another
//!   region is published to the local outbox topic, acknowledged by the local cluster, and
//!   forwarded by `slate run router` (`crate::router`); a remote region's outage never blocks
//!   publishing.
//! - **Standby cluster** (`[kafka.standby]`, `cluster.rs`): events the primary does not
//!   acknowledge within `failover_after` go to the standby, where publishing stays until the
//!   primary answers again; the enricher reads both clusters. An event may then exist on both
//!   (the primary may still deliver what it had queued): the enricher drops the repeated uuid
//!   and the sinks' version guards absorb the rest.

pub(crate) mod cluster;
pub mod ingest;
pub mod partitions;

use crate::catalogue::{Catalogue, EntityName};
use crate::config::Config;
use crate::event::{ChangeEvent, ChangeType, MAX_EVENT_BYTES, MAX_ID_BYTES};
use crate::kafka::{DeliveryFuture, ProduceError, Producer};
use crate::metrics::{Metrics, label, labels};
use cluster::{Cluster, Standby};
use rdkafka::message::{Header, OwnedHeaders};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use uuid::Uuid;

/// Header naming an outbox event's home region (read by `crate::router`).
pub const HOME_REGION: &str = "slate-home-region";
/// Header naming an outbox event's topic in its home region.
pub const HOME_TOPIC: &str = "slate-home-topic";

/// Why an event was refused before it was queued. The message names the field and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error("event of {len} bytes exceeds the {max}-byte limit; publish the entity id only, not its state")]
    Oversized { len: usize, max: usize },
    #[error(
        "not a change event: {0}; expected {{\"type\": \"CREATE|UPDATE|DELETE\", \"entity\": \"<name>\", \"id\": \"<id>\"}} (uuid and ts optional)"
    )]
    Malformed(String),
    #[error("unknown entity `{entity}`: the catalogue declares {known}")]
    UnknownEntity { entity: String, known: String },
    #[error("field `{field}` {message}")]
    Invalid { field: &'static str, message: String },
}

impl Refused {
    /// The `reason` label of `slate_publish_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::Oversized { .. } => "oversized",
            Refused::Malformed(_) => "malformed",
            Refused::UnknownEntity { .. } => "unknown_entity",
            Refused::Invalid { .. } => "invalid_field",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Produce(#[from] ProduceError),
}

/// A broker acknowledgement of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub uuid: Uuid,
    /// `primary`, or `standby` when the event went to the standby cluster.
    pub cluster: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// What a caller submits: a [`ChangeEvent`] whose `uuid` and `ts` may be left out (a fresh
/// uuid and the current time are filled in).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Submitted {
    uuid: Option<Uuid>,
    #[serde(rename = "type")]
    change_type: ChangeType,
    ts: Option<i64>,
    entity: String,
    id: String,
    source: Option<String>,
    version: Option<i64>,
    trace: Option<String>,
}

/// Publishes change events for the entities of one catalogue (see the module doc).
pub struct Publisher {
    primary: Cluster,
    standby: Option<Standby>,
    catalogue: Arc<Catalogue>,
    topic_prefix: String,
    unordered: HashSet<EntityName>,
    picker: partitions::Picker,
    router: crate::config::RouterConfig,
    metrics: Metrics,
}

impl Publisher {
    pub fn new(config: &Config, metrics: Metrics) -> Result<Self, PublishError> {
        let primary = Cluster::new("primary", config.kafka.clone(), metrics.clone())?;
        let worst_case = i64::from(config.kafka.producer.buffer_max_messages).saturating_mul(MAX_EVENT_BYTES as i64);
        metrics.publish_max_buffered_bytes.set(worst_case);
        let picker = partitions::Picker::new(primary.current().1.client().clone(), config.publish.metadata_refresh, metrics.clone());
        Ok(Publisher {
            primary,
            standby: Standby::new(&config.kafka, metrics.clone())?,
            catalogue: config.entities().clone(),
            topic_prefix: config.enricher.input_topic_prefix.clone(),
            unordered: config.publish.unordered().into_iter().collect(),
            picker,
            router: config.router.clone(),
            metrics,
        })
    }

    /// The topic `entity`'s events go to.
    pub fn topic(&self, entity: EntityName) -> String {
        entity.changes_topic(&self.topic_prefix)
    }

    /// Parses and checks one submitted event (JSON); a refusal is counted.
    pub fn parse(&self, raw: &[u8]) -> Result<ChangeEvent, Refused> {
        self.counted(self.parse_unchecked(raw))
    }

    /// Checks an event built in code; a refusal is counted.
    pub fn check(&self, event: ChangeEvent) -> Result<ChangeEvent, Refused> {
        self.counted(self.checked(event))
    }

    fn counted(&self, outcome: Result<ChangeEvent, Refused>) -> Result<ChangeEvent, Refused> {
        if let Err(refused) = &outcome {
            self.metrics.publish_refused_total.get_or_create(&label("reason", refused.reason())).inc();
        }
        outcome
    }

    fn parse_unchecked(&self, raw: &[u8]) -> Result<ChangeEvent, Refused> {
        if raw.len() > MAX_EVENT_BYTES {
            return Err(Refused::Oversized { len: raw.len(), max: MAX_EVENT_BYTES });
        }
        let s: Submitted = serde_json::from_slice(raw).map_err(|e| Refused::Malformed(e.to_string()))?;
        let entity = EntityName::lookup(&s.entity).ok().filter(|n| self.catalogue.contains(*n)).ok_or_else(|| self.unknown(&s.entity))?;
        self.checked(ChangeEvent {
            uuid: s.uuid.unwrap_or_else(Uuid::new_v4),
            change_type: s.change_type,
            ts: s.ts.unwrap_or_else(crate::time::now_millis),
            entity,
            id: s.id,
            source: s.source,
            version: s.version,
            trace: s.trace,
        })
    }

    fn checked(&self, event: ChangeEvent) -> Result<ChangeEvent, Refused> {
        if !self.catalogue.contains(event.entity) {
            return Err(self.unknown(event.entity.as_str()));
        }
        if event.id.trim().is_empty() {
            return Err(Refused::Invalid { field: "id", message: "is empty; give the entity's id at its source".into() });
        }
        if event.id.len() > MAX_ID_BYTES {
            return Err(Refused::Invalid { field: "id", message: format!("is {} bytes; ids are at most {MAX_ID_BYTES}", event.id.len()) });
        }
        if event.ts < 0 {
            return Err(Refused::Invalid {
                field: "ts",
                message: format!("{} is before 1970; use milliseconds since the epoch", event.ts),
            });
        }
        let len = event.to_json().len();
        if len > MAX_EVENT_BYTES {
            return Err(Refused::Oversized { len, max: MAX_EVENT_BYTES });
        }
        Ok(event)
    }

    fn unknown(&self, entity: &str) -> Refused {
        let known: Vec<String> = self.catalogue.names().iter().map(ToString::to_string).collect();
        Refused::UnknownEntity { entity: entity.to_owned(), known: known.join(", ") }
    }

    /// Queues `events` in order and waits for every acknowledgement: one outcome per event, in
    /// the same order. Events must come from [`Self::parse`] or [`Self::check`]. With a standby,
    /// events the primary did not acknowledge within `failover_after` are sent to the standby
    /// (see `cluster.rs`).
    pub async fn publish(&self, events: &[ChangeEvent]) -> Vec<Result<Ack, PublishError>> {
        let mut outcomes = match &self.standby {
            None => self.send(&self.primary, events, None).await,
            Some(standby) if standby.in_use(&self.primary).await => self.send(&standby.cluster, events, None).await,
            Some(standby) => {
                let mut outcomes = self.send(&self.primary, events, Some(standby.failover_after)).await;
                let unacknowledged: Vec<usize> = (0..outcomes.len()).filter(|i| outcomes[*i].is_err()).collect();
                if !unacknowledged.is_empty() {
                    standby.fail_over();
                    let again: Vec<ChangeEvent> = unacknowledged.iter().map(|i| events[*i].clone()).collect();
                    for (i, outcome) in unacknowledged.into_iter().zip(self.send(&standby.cluster, &again, None).await) {
                        outcomes[i] = outcome;
                    }
                }
                outcomes
            }
        };
        for (event, outcome) in events.iter().zip(&mut outcomes) {
            match outcome {
                Ok(ack) => {
                    let partition = ack.partition.to_string();
                    self.metrics.publish_events_total.get_or_create(&labels("topic", ack.topic.clone(), "partition", partition)).inc();
                }
                Err(_) => {
                    self.metrics.publish_failed_total.get_or_create(&label("topic", self.topic(event.entity))).inc();
                }
            }
        }
        outcomes
    }

    /// Publishes `events` on `cluster`, waiting for each acknowledgement at most `wait` (else
    /// the message timeout). A producer that saw a message time out is replaced.
    async fn send(&self, cluster: &Cluster, events: &[ChangeEvent], wait: Option<std::time::Duration>) -> Vec<Result<Ack, PublishError>> {
        let (generation, producer) = cluster.current();
        let on_primary = std::ptr::eq(cluster, &self.primary);
        let mut pending: Vec<Result<(String, DeliveryFuture), PublishError>> = Vec::with_capacity(events.len());
        for e in events {
            pending.push(self.enqueue(&producer, e, on_primary).await);
        }
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        let mut outcomes = Vec::with_capacity(events.len());
        for (event, queued) in events.iter().zip(pending) {
            let outcome = match queued {
                Ok((topic, delivery)) => {
                    let delivered = match deadline {
                        Some(d) => tokio::time::timeout_at(d, delivery)
                            .await
                            .unwrap_or(Err(ProduceError::NotAcknowledgedIn(wait.unwrap_or_default()))),
                        None => delivery.await,
                    };
                    delivered
                        .map(|(partition, offset)| Ack { uuid: event.uuid, cluster: cluster.name.clone(), topic, partition, offset })
                        .map_err(PublishError::from)
                }
                Err(e) => Err(e),
            };
            outcomes.push(outcome);
        }
        if outcomes.iter().any(|o| matches!(o, Err(PublishError::Produce(e)) if e.is_timeout())) {
            cluster.replace(generation, "events timed out");
        }
        outcomes
    }

    /// Queues one event. An event whose home is another region goes to the local outbox
    /// (`[router]`) with headers naming its region and its topic there; an unordered entity's
    /// event picks a healthy partition on the primary (on the standby, its key's partition).
    async fn enqueue(&self, producer: &Producer, event: &ChangeEvent, on_primary: bool) -> Result<(String, DeliveryFuture), PublishError> {
        let home_topic = self.topic(event.entity);
        let mut headers = OwnedHeaders::new();
        let (topic, partition) = match self.router.remote_home(event.entity) {
            Some(region) => {
                headers = headers
                    .insert(Header { key: HOME_REGION, value: Some(region.as_bytes()) })
                    .insert(Header { key: HOME_TOPIC, value: Some(home_topic.as_bytes()) });
                (self.router.outbox_topic.clone(), None)
            }
            None if on_primary && self.unordered.contains(&event.entity) => {
                let partition = self.picker.pick(&home_topic).await;
                (home_topic, partition)
            }
            None => (home_topic, None),
        };
        if let Some(t) = &event.trace {
            headers = headers.insert(Header { key: "traceparent", value: Some(t.as_bytes()) });
        }
        let delivery = producer.enqueue_to(&topic, partition, event.id.as_bytes(), Some(&event.to_json()), Some(headers)).await?;
        Ok((topic, delivery))
    }
}
