//! The consume → write → commit loop every sink runs.

use super::record::{RecordDecoder, RecordError, SinkRecord};
use super::{Sink, SinkError};
use crate::catalogue::{Catalogue, EntityName};
use crate::config::{Config, SinksConfig};
use crate::enrich::consumer::{self, EnrichConsumer};
use crate::enrich::output::{self, Coordinates, DlqStage};
use crate::kafka::capacity::{self, Capacity};
use crate::kafka::{OffsetTracker, Producer};
use crate::metrics::{Metrics, label};
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Produce(#[from] crate::kafka::ProduceError),
    #[error("schema registry: {0}")]
    Registry(#[from] crate::registry::ClientError),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// A running sink; [`RunningSink::shutdown`] finishes the batch in hand and commits.
pub struct RunningSink {
    cancel: CancellationToken,
    task: JoinHandle<Result<(), RunError>>,
}

impl RunningSink {
    pub async fn shutdown(self) -> Result<(), RunError> {
        self.cancel.cancel();
        self.task.await.unwrap_or(Ok(()))
    }

    /// Stops at once without committing, as a crash would (tests).
    pub fn abort(self) {
        self.task.abort();
    }

    /// Resolves if the sink stops by itself (a fatal error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Topics a sink reads: one per catalogue entity.
pub fn topics(cfg: &SinksConfig, catalogue: &Catalogue) -> Vec<String> {
    catalogue.iter().map(|e| format!("{}{}.enriched", cfg.topic_prefix, e.name)).collect()
}

/// Starts `sink` in its consumer group `<group_prefix><name>`.
pub async fn start(cfg: &Config, sink: Arc<dyn Sink>, metrics: Metrics) -> Result<RunningSink, RunError> {
    let s = cfg.sinks.clone();
    let topics = topics(&s, cfg.entities());
    crate::kafka::ensure_topics(&cfg.kafka, &topics, cfg.enricher.topic_partitions, cfg.enricher.topic_replication).await?;
    crate::kafka::ensure_topics(
        &cfg.kafka,
        std::slice::from_ref(&s.dlq_topic),
        cfg.enricher.topic_partitions,
        cfg.enricher.topic_replication,
    )
    .await?;
    let group = format!("{}{}", s.group_prefix, sink.name());
    let consumer = Arc::new(consumer::create(&cfg.kafka, &group, &topics, false, metrics.clone())?);
    let producer = Producer::try_new(&cfg.kafka, metrics.clone())?;
    let decoder = RecordDecoder::new(s.topic_prefix.clone(), crate::enrich::registry_client(&cfg.registry)?, cfg.entities().clone());
    let cancel = CancellationToken::new();
    crate::kafka::stall::spawn(&consumer, group, topics, cfg.kafka.consumer.stall_after, metrics.clone(), cancel.clone());
    let c = cancel.clone();
    let task = tokio::spawn(async move { run(&consumer, &*sink, &decoder, &producer, &s, &metrics, c).await });
    Ok(RunningSink { cancel, task })
}

async fn run(
    consumer: &EnrichConsumer,
    sink: &dyn Sink,
    decoder: &RecordDecoder,
    producer: &Producer,
    cfg: &SinksConfig,
    metrics: &Metrics,
    cancel: CancellationToken,
) -> Result<(), RunError> {
    let name = sink.name();
    let mut tracker = OffsetTracker::new();
    let mut halted = Halted::default();
    let capacity = Capacity::start(rdkafka::consumer::Consumer::context(consumer).group(), metrics.clone(), cancel.clone());
    while !cancel.is_cancelled() {
        let mut batch = consumer::collect(consumer, &mut tracker, cfg.batch_max_events, cfg.batch_max_wait, None, &cancel).await;
        // Fetched before the pause took effect (or after a rebalance): left untracked, so the
        // halted partition's commit stays before its first unwritten record.
        batch.retain(|m| !halted.topics.contains(m.topic()));
        if batch.is_empty() {
            halted.pause(consumer);
            continue;
        }
        let caught_up = batch.len() < cfg.batch_max_events;
        capacity.begin(capacity::oldest_timestamp(&batch));
        for m in &batch {
            tracker.track(m.topic(), m.partition(), m.offset());
        }
        let Some((mut records, bad, incompatible)) = decode_all(decoder, &batch, cfg, &cancel).await else { break };
        for (entity, reason) in &incompatible {
            halted.add(cfg, name, *entity, reason, metrics);
        }
        records.retain(|r| !halted.topics.contains(&r.topic));
        let mut backoff = cfg.backoff;
        let outcome = loop {
            let started = Instant::now();
            match sink.write(&records).await {
                Ok(o) => {
                    metrics.sink_batch_seconds.get_or_create(&label("sink", name)).observe(started.elapsed().as_secs_f64());
                    break o;
                }
                Err(SinkError::Unavailable(e)) => {
                    metrics.sink_errors_total.get_or_create(&label("sink", name)).inc();
                    tracing::warn!(sink = name, error = %e, retry_in = ?backoff, "write failed; retrying the batch, nothing is committed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = cancel.cancelled() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(cfg.max_backoff);
                }
                Err(fatal) => return Err(fatal.into()),
            }
        };
        let mut dead: Vec<(Dead, DlqStage)> = bad.into_iter().map(|d| (d, DlqStage::Decode)).collect();
        for (i, reason) in &outcome.rejected {
            let r = &records[*i];
            let payload = batch
                .iter()
                .find(|m| m.topic() == r.topic && m.partition() == r.partition && m.offset() == r.offset)
                .and_then(|m| m.payload().map(<[u8]>::to_vec));
            let from = Coordinates { topic: r.topic.clone(), partition: r.partition, offset: r.offset };
            dead.push(((r.id.as_bytes().to_vec(), payload, format!("{name} sink rejected: {reason}"), from), DlqStage::SinkRejected));
        }
        let mut pending = Vec::new();
        for ((key, payload, reason, from), stage) in &dead {
            let dl = output::dead_letter(cfg.dlq_topic.clone(), key.clone(), payload.clone(), *stage, reason, from, &[]);
            pending.push(producer.enqueue(&dl.topic, &dl.key, dl.payload.as_deref(), Some(dl.owned_headers())).await?);
        }
        for p in pending {
            p.await?;
        }
        metrics.sink_written_total.get_or_create(&label("sink", name)).inc_by(outcome.applied as u64);
        metrics.sink_stale_total.get_or_create(&label("sink", name)).inc_by(outcome.stale as u64);
        metrics.sink_rejected_total.get_or_create(&label("sink", name)).inc_by(dead.len() as u64);
        for ((_, _, reason, _), _) in &dead {
            tracing::warn!(sink = name, %reason, "dead-lettered");
        }
        let now = crate::time::now_millis();
        for r in records.iter().filter(|r| r.event_ts > 0) {
            metrics.sink_freshness_seconds.get_or_create(&label("sink", name)).observe((now - r.event_ts).max(0) as f64 / 1000.0);
        }
        for (entity, reason) in &outcome.halted {
            halted.add(cfg, name, *entity, reason, metrics);
        }
        for m in batch.iter().filter(|m| !halted.topics.contains(m.topic())) {
            tracker.ack(m.topic(), m.partition(), m.offset());
        }
        consumer::store(consumer, &mut tracker);
        halted.pause(consumer);
        capacity.end(batch.len(), caught_up);
    }
    let _ = rdkafka::consumer::Consumer::commit_consumer_state(consumer, rdkafka::consumer::CommitMode::Sync);
    Ok(())
}

type Dead = (Vec<u8>, Option<Vec<u8>>, String, Coordinates);

/// The enriched topics of the entities the sink halted: never acked, their partitions paused
/// (again after every rebalance, since a new assignment starts unpaused), until a restart.
#[derive(Default)]
struct Halted {
    topics: std::collections::BTreeSet<String>,
}

impl Halted {
    fn add(&mut self, cfg: &SinksConfig, sink: &'static str, entity: EntityName, reason: &str, metrics: &Metrics) {
        if self.topics.insert(format!("{}{entity}.enriched", cfg.topic_prefix)) {
            tracing::error!(sink, %entity, %reason, "entity halted: its partitions are paused and left uncommitted; the other entities go on");
            metrics.health.set(&format!("{sink} sink: {entity}"), format!("{sink} sink halted `{entity}`: {reason}"));
            metrics.sink_halted.get_or_create(&[("sink", sink.to_string()), ("entity", entity.to_string())]).set(1);
        }
    }

    fn pause(&self, consumer: &EnrichConsumer) {
        use rdkafka::consumer::Consumer;
        if self.topics.is_empty() {
            return;
        }
        let Ok(assigned) = consumer.assignment() else { return };
        let mut tpl = rdkafka::TopicPartitionList::new();
        for e in assigned.elements().iter().filter(|e| self.topics.contains(e.topic())) {
            tpl.add_partition(e.topic(), e.partition());
        }
        if tpl.count() > 0
            && let Err(e) = consumer.pause(&tpl)
        {
            tracing::warn!(error = %e, "pausing halted partitions failed; their records are still left unwritten");
        }
    }
}

/// Decodes a batch; undecodable messages come back separately for the dead-letter topic, and
/// entities whose writer schema this sink cannot read, to be halted. `None` when cancelled while
/// the registry was unreachable.
async fn decode_all(
    decoder: &RecordDecoder,
    batch: &[OwnedMessage],
    cfg: &SinksConfig,
    cancel: &CancellationToken,
) -> Option<(Vec<SinkRecord>, Vec<Dead>, Vec<(EntityName, String)>)> {
    let (mut records, mut bad, mut incompatible) = (Vec::new(), Vec::new(), Vec::new());
    for m in batch {
        let mut backoff = cfg.backoff;
        loop {
            match decoder.decode(m).await {
                Ok(r) => records.push(r),
                Err(RecordError::Bad(reason)) => bad.push((
                    m.key().unwrap_or_default().to_vec(),
                    m.payload().map(<[u8]>::to_vec),
                    reason,
                    Coordinates { topic: m.topic().to_string(), partition: m.partition(), offset: m.offset() },
                )),
                Err(RecordError::Incompatible { entity, reason }) => incompatible.push((entity, reason)),
                Err(RecordError::Unavailable(e)) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "schema registry unavailable; sink waits");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = cancel.cancelled() => return None,
                    }
                    backoff = (backoff * 2).min(cfg.max_backoff);
                    continue;
                }
            }
            break;
        }
    }
    Some((records, bad, incompatible))
}

/// For tests: how long to wait for a sink to settle.
pub const SETTLE: Duration = Duration::from_secs(60);
