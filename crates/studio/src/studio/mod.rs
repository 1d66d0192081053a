//! The studio: the source of truth that slate enriches from, for demos, tests and benchmarks.
//!
//! It stores the six finance entities in memory (seeded deterministically), serves batched reads
//! over GraphQL (`/graphql`) and gRPC (`BatchGet`) with the same data and versions, and publishes
//! an ID-only [`ChangeEvent`] per touched entity to `<topic_prefix><entity>.changes`, keyed by id.
//!
//! Contract: a mutation is applied first, then its events are published and acknowledged before
//! the mutation call returns. If publishing fails the state has still changed: the error is
//! returned to the caller and counted (`slate_studio_publish_failures_total`); `slate verify
//! --repair` re-publishes drifted ids. (A production service would use an outbox instead.)

pub mod faults;
pub mod generator;
pub mod graphql;
pub mod grpc;
pub mod kind;
pub mod load;
pub mod model;
pub mod server;
pub mod store;

use crate::config::StudioConfig;
use crate::event::{ChangeEvent, EntityName};
use crate::kafka::{ProduceError, Producer};
use crate::metrics::{Metrics, label, labels};
use faults::{Fault, Faults};
use rdkafka::message::{Header, OwnedHeaders};
use std::sync::Arc;
use std::time::Instant;
use store::{BatchRead, Change, Store};

/// Largest batch one read request may ask for; bigger requests are rejected, not truncated.
pub const MAX_IDS_PER_READ: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Fault(#[from] Fault),
    #[error("{0} ids requested; at most {MAX_IDS_PER_READ} per request")]
    TooMany(usize),
}

pub struct Studio {
    pub store: Store,
    pub faults: Faults,
    producer: Option<Producer>,
    topic_prefix: String,
    metrics: Metrics,
}

impl Studio {
    /// A seeded studio. `producer = None` serves reads and applies mutations without publishing.
    pub fn new(cfg: &StudioConfig, producer: Option<Producer>, metrics: Metrics) -> Result<Arc<Self>, store::StudioError> {
        let store = Store::new();
        generator::seed(&store, cfg.num_productions, cfg.seed)?;
        Ok(Arc::new(Self {
            store,
            faults: Faults::new(cfg.faults.clone(), cfg.seed, metrics.clone()),
            producer,
            topic_prefix: cfg.topic_prefix.clone(),
            metrics,
        }))
    }

    pub fn topic(&self, kind: EntityName) -> String {
        kind.changes_topic(&self.topic_prefix)
    }

    /// A batched read through the fault injector, as both APIs serve it.
    pub async fn read(&self, api: &'static str, kind: EntityName, ids: &[String]) -> Result<BatchRead, ReadError> {
        if ids.len() > MAX_IDS_PER_READ {
            return Err(ReadError::TooMany(ids.len()));
        }
        let started = Instant::now();
        self.metrics.studio_reads_total.get_or_create(&labels("api", api, "entity", kind.as_str())).inc();
        self.metrics.studio_read_ids_total.get_or_create(&labels("api", api, "entity", kind.as_str())).inc_by(ids.len() as u64);
        let outcome = self.faults.inject().await;
        self.metrics.studio_read_seconds.get_or_create(&label("api", api)).observe(started.elapsed().as_secs_f64());
        outcome?;
        Ok(self.store.batch_get(kind, ids))
    }

    /// Enqueues one change event per change, in order, and returns the acknowledgement futures.
    /// Counts the mutation per entity.
    pub async fn enqueue(&self, changes: &[Change]) -> Result<Vec<crate::kafka::DeliveryFuture>, ProduceError> {
        for c in changes {
            self.metrics.studio_mutations_total.get_or_create(&label("entity", c.entity.as_str())).inc();
        }
        let Some(producer) = &self.producer else { return Ok(Vec::new()) };
        let trace = traceparent();
        let now = now_millis();
        let mut pending = Vec::with_capacity(changes.len());
        for c in changes {
            let mut event = ChangeEvent::new(c.change_type, c.entity, c.id.clone(), now);
            event.source = Some("studio".into());
            event.version = Some(c.version);
            event.trace = Some(trace.clone());
            let headers = OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(trace.as_bytes()) });
            match producer.enqueue(&self.topic(c.entity), c.id.as_bytes(), Some(&event.to_json()), Some(headers)).await {
                Ok(f) => pending.push(f),
                Err(e) => {
                    self.metrics.studio_publish_failures_total.inc();
                    return Err(e);
                }
            }
        }
        Ok(pending)
    }

    /// Publishes a CREATE event for every live entity at its current version (an initial
    /// snapshot), in bounded chunks, and waits for the acknowledgements.
    pub async fn publish_snapshot(&self) -> Result<(), ProduceError> {
        for kind in kind::ALL {
            let mut after: Option<String> = None;
            loop {
                let ids = self.store.list_ids(kind, after.as_deref(), MAX_IDS_PER_READ);
                let Some(last) = ids.last().cloned() else { break };
                let read = self.store.batch_get(kind, &ids);
                let changes: Vec<Change> = read
                    .found
                    .into_iter()
                    .map(|(id, version, _)| Change { entity: kind, id, change_type: crate::event::ChangeType::Create, version })
                    .collect();
                self.publish(&changes).await?;
                after = Some(last);
            }
        }
        Ok(())
    }

    /// Publishes the events of one mutation and waits until the broker acknowledged all of them.
    pub async fn publish(&self, changes: &[Change]) -> Result<(), ProduceError> {
        for delivery in self.enqueue(changes).await? {
            if let Err(e) = delivery.await {
                self.metrics.studio_publish_failures_total.inc();
                return Err(e);
            }
        }
        Ok(())
    }
}

pub use crate::time::now_millis;

/// A fresh W3C traceparent (`00-<trace id>-<span id>-01`) for one mutation.
fn traceparent() -> String {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}
