//! `slate run router`: forwards the local outbox (`router.outbox_topic`) to the events' home
//! regions. Publishers never wait on a remote region: they write locally (`crate::publish`),
//! and this role carries the events over.
//!
//! # Contract
//! - **At least once.** A batch's offsets are stored only after every one of its events was
//!   acknowledged by its home region's cluster (`acks=all`). A region that is down or slow gets
//!   the unacknowledged events again after a backoff (`router.backoff` doubling to
//!   `router.max_backoff`) until it acknowledges; nothing is skipped. A resent event may land
//!   after a later one of its key: ID-only events tolerate it (the enricher fetches the current
//!   state, the sinks guard on versions).
//!   A restart or a rebalance re-forwards from the committed offset: duplicates, never gaps
//!   (the enricher drops a repeated uuid, the sinks guard on versions).
//! - **Unroutable events are dead-lettered**, not dropped: an event without the
//!   `slate-home-region` / `slate-home-topic` headers, or naming a region with no cluster in
//!   `[router.regions]`, goes to `enricher.dlq_topic` with the reason in `slate-dlq-reason`
//!   (`slate_dead_lettered_total{reason}`).
//! - **Visible lag.** `slate_router_forwarded_total{region}`, `slate_router_errors_total{region}`,
//!   and `slate_router_pending_seconds`: the age of the oldest event not yet forwarded (0 when
//!   the outbox is drained), the freshness to alert on while a region is down.

use crate::config::Config;
use crate::enrich::consumer;
use crate::kafka::{DeliveryFuture, OffsetTracker, ProduceError, Producer};
use crate::metrics::{Metrics, label};
use crate::publish::cluster::Cluster;
use crate::publish::{HOME_REGION, HOME_TOPIC};
use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Produce(#[from] ProduceError),
    #[error("router.region is not set: nothing to route")]
    NoRegion,
}

/// One event sent: its index in the batch, its region and that region's producer generation
/// (none: dead-lettered locally), and its acknowledgement.
type Queued = (usize, Option<(String, u64)>, Result<DeliveryFuture, ProduceError>);

/// Where one outbox event goes.
enum Route {
    Forward { region: String, topic: String },
    DeadLetter(String),
}

struct Router {
    regions: BTreeMap<String, Cluster>,
    local: Producer,
    dlq_topic: String,
    metrics: Metrics,
}

/// Runs the router until `cancel`; the batch in hand is finished (or left uncommitted) first.
pub async fn run(cfg: &Config, metrics: Metrics, cancel: CancellationToken) -> Result<(), RouterError> {
    let r = &cfg.router;
    if r.region.is_none() {
        return Err(RouterError::NoRegion);
    }
    let mut regions = BTreeMap::new();
    for (name, region) in &r.regions {
        regions.insert(name.clone(), Cluster::new(name.clone(), cfg.kafka.on_cluster(&region.bootstrap_servers), metrics.clone())?);
    }
    let router =
        Router { regions, local: Producer::try_new(&cfg.kafka, metrics.clone())?, dlq_topic: cfg.enricher.dlq_topic.clone(), metrics };
    let consumer = consumer::create(&cfg.kafka, &r.group_id, std::slice::from_ref(&r.outbox_topic), false, router.metrics.clone())?;
    tracing::info!(outbox = %r.outbox_topic, group = %r.group_id, regions = ?r.regions.keys().collect::<Vec<_>>(), "router started");
    let mut tracker = OffsetTracker::new();
    while !cancel.is_cancelled() {
        let batch = consumer::collect(
            &consumer,
            &mut tracker,
            r.batch_max_events,
            Duration::from_millis(20),
            Some(Duration::from_secs(1)),
            &cancel,
        )
        .await;
        if batch.is_empty() {
            router.metrics.router_pending_seconds.set(0.0);
            continue;
        }
        for m in &batch {
            tracker.track(m.topic(), m.partition(), m.offset());
        }
        if router.forward(&batch, r, &cancel).await {
            for m in &batch {
                tracker.ack(m.topic(), m.partition(), m.offset());
            }
            consumer::store(&consumer, &mut tracker);
        }
    }
    consumer::commit_sync(&consumer);
    Ok(())
}

impl Router {
    fn route(&self, m: &OwnedMessage) -> Route {
        let header = |name: &str| {
            m.headers()
                .and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned()))
        };
        match (header(HOME_REGION), header(HOME_TOPIC)) {
            (Some(region), Some(topic)) if self.regions.contains_key(&region) => Route::Forward { region, topic },
            (Some(region), Some(_)) => Route::DeadLetter(format!("no cluster for home region `{region}` in [router.regions]")),
            _ => Route::DeadLetter(format!("outbox event without the {HOME_REGION} and {HOME_TOPIC} headers")),
        }
    }

    /// Forwards every event of `batch` until all are acknowledged (true), or `cancel` (false:
    /// the batch stays uncommitted and is read again).
    async fn forward(&self, batch: &[OwnedMessage], cfg: &crate::config::RouterConfig, cancel: &CancellationToken) -> bool {
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        let mut backoff = cfg.backoff;
        loop {
            let oldest = pending.iter().filter_map(|i| batch[*i].timestamp().to_millis()).min();
            if let Some(ts) = oldest {
                let age = (crate::time::now_millis() - ts).max(0) as f64 / 1000.0;
                self.metrics.router_pending_seconds.set(age);
            }
            pending = self.send(batch, &pending).await;
            if pending.is_empty() {
                return true;
            }
            tracing::warn!(unacknowledged = pending.len(), retry_in = ?backoff, "home region did not acknowledge; retrying");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = cancel.cancelled() => return false,
            }
            backoff = (backoff * 2).min(cfg.max_backoff);
        }
    }

    /// Sends `which` events of `batch` (in order) and answers those not acknowledged.
    async fn send(&self, batch: &[OwnedMessage], which: &[usize]) -> Vec<usize> {
        let mut inflight: Vec<Queued> = Vec::new();
        let generations: BTreeMap<&String, (u64, Producer)> = self.regions.iter().map(|(name, c)| (name, c.current())).collect();
        for &i in which {
            let m = &batch[i];
            let headers =
                m.headers().map(|h| h.iter().fold(OwnedHeaders::new(), |acc, h| acc.insert(Header { key: h.key, value: h.value })));
            let key = m.key().unwrap_or_default();
            let queued = match self.route(m) {
                Route::Forward { region, topic } => {
                    let (generation, producer) = &generations[&region];
                    let q = producer.enqueue(&topic, key, m.payload(), headers).await;
                    (Some((region, *generation)), q)
                }
                Route::DeadLetter(reason) => {
                    self.metrics.dead_lettered_total.get_or_create(&label("reason", "unroutable")).inc();
                    tracing::warn!(%reason, offset = m.offset(), partition = m.partition(), "dead-lettering an outbox event");
                    let h = headers.unwrap_or_default().insert(Header { key: "slate-dlq-reason", value: Some(reason.as_bytes()) });
                    (None, self.local.enqueue(&self.dlq_topic, key, m.payload(), Some(h)).await)
                }
            };
            inflight.push((i, queued.0, queued.1));
        }
        let mut failed = Vec::new();
        for (i, region, queued) in inflight {
            let outcome = match queued {
                Ok(delivery) => delivery.await.map(|_| ()),
                Err(e) => Err(e),
            };
            match (outcome, region) {
                (Ok(()), Some((region, _))) => {
                    self.metrics.router_forwarded_total.get_or_create(&label("region", region)).inc();
                }
                (Ok(()), None) => {}
                (Err(e), region) => {
                    if let Some((name, generation)) = &region {
                        self.metrics.router_errors_total.get_or_create(&label("region", name.clone())).inc();
                        if e.is_timeout() {
                            self.regions[name].replace(*generation, "forwarded events timed out");
                        }
                    }
                    tracing::debug!(error = %e, "outbox event not acknowledged");
                    failed.push(i);
                }
            }
        }
        failed
    }
}
