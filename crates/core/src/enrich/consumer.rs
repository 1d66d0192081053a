//! The consume loop shared by the input topics and the retry topic: collect a batch, send it
//! through the pipeline, and store its offsets once every effect is acknowledged; the next
//! batch is collected and sent while the previous one's acknowledgements are outstanding
//! (`enricher.max_in_flight_batches`, see [`run`]).
//!
//! Offsets are stored explicitly (`enable.auto.offset.store=false`) and committed by librdkafka's
//! auto-commit timer, on partition revocation and synchronously at shutdown. A batch that fails
//! (broker or registry outage) is retried with backoff, never skipped; while it is retried the
//! consumer does not poll, which is the backpressure. Messages of partitions revoked while a
//! batch was being collected are dropped from it uncommitted: their new owner reads them again.

use super::pipeline::{Input, Pipeline, PipelineError, Sent};
use crate::config::KafkaConfig;
use crate::kafka::capacity::{self, Capacity};
use crate::kafka::{OffsetTracker, Producer, base_config};
use crate::metrics::Metrics;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientContext, Message, Offset, Statistics, TopicPartitionList};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Records revoked partitions and exports consumer lag from librdkafka statistics.
pub struct Context {
    revoked: Mutex<Vec<(String, i32)>>,
    /// The group id, or `<group>@standby` for a member on the standby cluster: the `group`
    /// label of this consumer's metrics.
    group: String,
    metrics: Metrics,
    /// The producer of batches in flight (see [`Context::flush_on_revoke`]).
    flush: OnceLock<Producer>,
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                if partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .get_or_create(&[("group", self.group.clone()), ("topic", topic.clone()), ("partition", partition.to_string())])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl Context {
    /// The consumer group this consumer is a member of, as its metrics label it.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Before any partition is revoked, everything `producer` has enqueued is delivered. With
    /// batches in flight (pipelining) their outputs may still sit in the producer's queue when
    /// a rebalance starts; flushed inside the revoke callback, they reach the broker before the
    /// partitions' next owner can produce newer versions of the same keys. (Their offsets are
    /// not stored yet, so the next owner redoes them: at-least-once, never out of order.)
    pub fn flush_on_revoke(&self, producer: Producer) {
        let _ = self.flush.set(producer);
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut revoked = self.revoked.lock().expect("revoked lock poisoned");
            revoked.extend(tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())));
            tracing::info!(partitions = tpl.count(), "partitions revoked");
            if let Some(producer) = self.flush.get()
                && let Err(e) = producer.flush(REVOKE_FLUSH_TIMEOUT)
            {
                tracing::warn!(error = %e, "outputs in flight not all delivered before the revoke; the next owner may emit before them");
            }
        }
    }

    /// The gauge shows the whole assignment: a cooperative rebalance hands over only the
    /// partitions that move, so the callback's list is a difference, not the assignment.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Error(e) = rebalance {
            tracing::warn!(error = %e, "rebalance failed");
        }
        let assigned = consumer.assignment().map_or(0, |tpl| tpl.count() as i64);
        self.metrics.consumer_assigned_partitions.get_or_create(&crate::metrics::label("group", self.group.clone())).set(assigned);
    }
}

pub type EnrichConsumer = StreamConsumer<Context>;

/// Longest a revoke waits for in-flight outputs to be delivered (the group's rebalance waits
/// with it; librdkafka's `message.timeout.ms` bounds each message anyway).
const REVOKE_FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// A consumer in `group_id` that stores offsets only when told to. With `transactional`, it
/// commits nothing itself: its offsets go into the producer's transactions.
pub fn create(
    kafka: &KafkaConfig,
    group_id: &str,
    topics: &[String],
    transactional: bool,
    metrics: Metrics,
) -> Result<EnrichConsumer, KafkaError> {
    create_labelled(kafka, group_id, group_id, topics, transactional, metrics)
}

/// [`create`], with `label` as the `group` label of its metrics (two members of one group id
/// on two clusters must not share gauges).
pub fn create_labelled(
    kafka: &KafkaConfig,
    group_id: &str,
    label: &str,
    topics: &[String],
    transactional: bool,
    metrics: Metrics,
) -> Result<EnrichConsumer, KafkaError> {
    let mut c = base_config(kafka);
    c.set("group.id", group_id)
        .set("enable.auto.commit", if transactional { "false" } else { "true" })
        // Input written by transactional producers (our own retry parcels, in exactly-once
        // mode) is read only once committed; librdkafka's default, stated because it matters.
        .set("isolation.level", "read_committed")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", kafka.consumer.session_timeout.as_millis().to_string())
        .set("max.poll.interval.ms", kafka.consumer.max_poll_interval.as_millis().to_string())
        .set("fetch.wait.max.ms", kafka.consumer.fetch_wait_max.as_millis().to_string())
        .set("partition.assignment.strategy", kafka.consumer.assignment.as_librdkafka())
        .set("statistics.interval.ms", "5000");
    if let Some(id) = &kafka.consumer.group_instance_id {
        c.set("group.instance.id", id);
    }
    let consumer: EnrichConsumer =
        c.create_with_context(Context { revoked: Mutex::new(Vec::new()), group: label.to_string(), metrics, flush: OnceLock::new() })?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names)?;
    Ok(consumer)
}

/// Collects up to `max` messages: waits for the first, then at most `max_wait` for the rest.
///
/// Rebalance callbacks run inside `recv`, so after each `recv` the batch is checked against the
/// partitions revoked meanwhile: messages of a revoked partition received *before* the revoke
/// are dropped (uncommitted; whoever owns the partition next reads them again from the
/// committed offset) and the tracker forgets the partition. Messages received *after* the
/// revoke belong to the current assignment (librdkafka discards fetches of an older one) and
/// are kept even when the partition was revoked and assigned back to this consumer: dropping
/// those would lose them, since the consumer's position has already moved past them.
///
/// `first_within` bounds the wait for the first message (none: wait until one arrives).
pub async fn collect(
    consumer: &EnrichConsumer,
    tracker: &mut OffsetTracker,
    max: usize,
    max_wait: Duration,
    first_within: Option<Duration>,
    cancel: &CancellationToken,
) -> Vec<OwnedMessage> {
    let mut out = Vec::new();
    let idle = async {
        match first_within {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let first = tokio::select! {
        m = consumer.recv() => m,
        _ = idle => {
            drop_revoked(consumer, tracker, &mut out);
            return out;
        }
        _ = cancel.cancelled() => return out,
    };
    drop_revoked(consumer, tracker, &mut out);
    push(&mut out, first).await;
    let deadline = tokio::time::Instant::now() + max_wait;
    while out.len() < max {
        tokio::select! {
            m = consumer.recv() => {
                drop_revoked(consumer, tracker, &mut out);
                push(&mut out, m).await;
            }
            _ = tokio::time::sleep_until(deadline) => break,
            _ = cancel.cancelled() => break,
        }
    }
    // A recv cancelled by the deadline may still have served a rebalance.
    drop_revoked(consumer, tracker, &mut out);
    out
}

async fn push(out: &mut Vec<OwnedMessage>, m: Result<rdkafka::message::BorrowedMessage<'_>, KafkaError>) {
    match m {
        Ok(m) => out.push(m.detach()),
        Err(e) => {
            // librdkafka retries on its own; a persistent error shows up here repeatedly.
            tracing::warn!(error = %e, "consumer error");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A batch whose outputs are enqueued, awaiting their acknowledgements.
struct InFlight {
    coords: Vec<(String, i32, i64)>,
    inputs: Vec<Input>,
    sent: Sent,
    caught_up: bool,
    /// Input and output bytes this batch holds until it settles.
    bytes: usize,
}

/// Runs batches until `cancel` fires, then settles what is in flight and commits synchronously.
/// `decode` turns a batch of raw messages into pipeline inputs; it may wait (e.g. for the
/// registry) and fails only when cancelled.
///
/// Pipelining: up to `enricher.max_in_flight_batches` batches are sent (every output
/// enqueued, in order per key) before the oldest one's acknowledgements are awaited, so the
/// next batch is collected and fetched while the broker acknowledges the previous one. Batches
/// settle in order; each one's offsets are stored when all of its outputs are acknowledged (the
/// tracker never lets a partition's commit pass an unsettled offset). A batch whose
/// acknowledgements fail is redone as a whole before anything after it settles.
pub async fn run<D, F>(
    consumer: &EnrichConsumer,
    pipeline: &Pipeline,
    cfg: &crate::config::EnricherConfig,
    metrics: &Metrics,
    cancel: CancellationToken,
    decode: D,
) where
    D: Fn(Vec<OwnedMessage>) -> F,
    F: Future<Output = Option<Vec<Input>>>,
{
    let mut tracker = OffsetTracker::new();
    let capacity = Capacity::start(consumer.context().group(), metrics.clone(), cancel.clone());
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    while !cancel.is_cancelled() {
        let held: usize = in_flight.iter().map(|b| b.bytes).sum();
        metrics
            .enricher_in_flight_bytes
            .get_or_create(&crate::metrics::label("group", consumer.context().group().to_string()))
            .set(held as i64);
        // Both caps: a batch count, and bytes (large records fill memory long before 4 × 1000
        // of them); one batch always goes, so a single huge batch cannot stall the loop.
        if in_flight.len() < cfg.max_in_flight_batches && (in_flight.is_empty() || held < cfg.max_in_flight_bytes) {
            // With batches in flight, new input is awaited only briefly before the oldest settles.
            let first_within = (!in_flight.is_empty()).then_some(cfg.batch_max_wait);
            let batch = collect(consumer, &mut tracker, cfg.batch_max_events, cfg.batch_max_wait, first_within, &cancel).await;
            if !batch.is_empty() {
                let caught_up = batch.len() < cfg.batch_max_events;
                capacity.begin(capacity::oldest_timestamp(&batch));
                metrics.enricher_batch_events.observe(batch.len() as f64);
                for m in &batch {
                    metrics.enricher_consumed_total.get_or_create(&crate::metrics::label("topic", m.topic().to_string())).inc();
                    tracker.track(m.topic(), m.partition(), m.offset());
                }
                let coords: Vec<(String, i32, i64)> = batch.iter().map(|m| (m.topic().to_string(), m.partition(), m.offset())).collect();
                let input_bytes: usize = batch.iter().map(|m| m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len)).sum();
                let Some(inputs) = decode(batch).await else { break };
                let Some(sent) = send(pipeline, &inputs, metrics, &cancel).await else { break };
                let bytes = input_bytes + sent.bytes;
                in_flight.push_back(InFlight { coords, inputs, sent, caught_up, bytes });
                continue;
            }
        }
        let Some(oldest) = in_flight.pop_front() else { continue };
        if !settle(consumer, pipeline, &mut tracker, &capacity, metrics, &cancel, oldest).await {
            break;
        }
    }
    // Stopping: what was sent is awaited (bounded by the producer's message timeout), so its
    // offsets are committed and the next owner does not redo it.
    while let Some(oldest) = in_flight.pop_front() {
        if !settle(consumer, pipeline, &mut tracker, &capacity, metrics, &cancel, oldest).await {
            break;
        }
    }
    commit_sync(consumer);
}

/// Sends a batch, retrying with backoff while the producer refuses it; `None` when cancelled.
async fn send(pipeline: &Pipeline, inputs: &[Input], metrics: &Metrics, cancel: &CancellationToken) -> Option<Sent> {
    let first = pipeline.send(inputs).await;
    until_ok(first, "sending the batch failed; retrying it", metrics, cancel, || pipeline.send(inputs)).await
}

/// Awaits a sent batch's acknowledgements (redoing the batch until they all succeed), then
/// stores its offsets and remembers its uuids. `false` when cancelled before it settled.
async fn settle(
    consumer: &EnrichConsumer,
    pipeline: &Pipeline,
    tracker: &mut OffsetTracker,
    capacity: &Capacity,
    metrics: &Metrics,
    cancel: &CancellationToken,
    batch: InFlight,
) -> bool {
    let first = pipeline.acked(batch.sent).await;
    let Some(acked) = until_ok(first, "batch failed; redoing it", metrics, cancel, || pipeline.process(&batch.inputs)).await else {
        return false;
    };
    pipeline.count(acked);
    for (topic, partition, offset) in &batch.coords {
        tracker.ack(topic, *partition, *offset);
    }
    store(consumer, tracker);
    pipeline.mark_seen(&batch.inputs);
    metrics.enricher_processed_total.inc_by(batch.coords.len() as u64);
    capacity.end(batch.coords.len(), batch.caught_up);
    true
}

/// A batch-level outcome retried with backoff (200 ms doubling to 30 s) until it succeeds;
/// nothing is committed meanwhile. `None` when cancelled first.
pub(super) async fn until_ok<T, F, Fut>(
    mut outcome: Result<T, PipelineError>,
    what: &str,
    metrics: &Metrics,
    cancel: &CancellationToken,
    mut again: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PipelineError>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        let e = match outcome {
            Ok(v) => return Some(v),
            Err(e) => e,
        };
        metrics.enricher_batch_retries_total.inc();
        tracing::warn!(error = %e, retry_in = ?backoff, "{what}, nothing is committed");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = cancel.cancelled() => return None,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
        outcome = again().await;
    }
}

/// Drops the messages of partitions revoked since the last call (see [`collect`]).
fn drop_revoked(consumer: &EnrichConsumer, tracker: &mut OffsetTracker, batch: &mut Vec<OwnedMessage>) {
    let revoked: Vec<(String, i32)> = std::mem::take(&mut *consumer.context().revoked.lock().expect("revoked lock poisoned"));
    if revoked.is_empty() {
        return;
    }
    for (topic, partition) in &revoked {
        tracker.forget(topic, *partition);
    }
    let before = batch.len();
    batch.retain(|m| !revoked.iter().any(|(t, p)| t == m.topic() && *p == m.partition()));
    if batch.len() < before {
        tracing::info!(dropped = before - batch.len(), "dropped messages received before their partition was revoked; they are read again");
    }
}

/// Stores the longest fully acknowledged prefix of each partition (the offset contract).
pub fn store(consumer: &EnrichConsumer, tracker: &mut OffsetTracker) {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, next) in tracker.take_committable() {
        if let Err(e) = tpl.add_partition_offset(&topic, partition, Offset::Offset(next)) {
            tracing::warn!(%topic, partition, error = %e, "cannot store offset");
        }
    }
    if tpl.count() > 0
        && let Err(e) = consumer.store_offsets(&tpl)
    {
        // A partition revoked since the batch was collected: its new owner reprocesses it.
        tracing::warn!(error = %e, "storing offsets failed");
    }
}

/// Commits the stored offsets now (at shutdown), waiting for the broker's answer.
pub(crate) fn commit_sync(consumer: &EnrichConsumer) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "final commit failed; the next owner may reprocess some events"),
    }
}

/// For tests and tools: the group's committed offsets of `topic`.
pub fn committed(consumer: &EnrichConsumer, timeout: Duration) -> Result<Vec<(String, i32, Offset)>, KafkaError> {
    let tpl = consumer.committed(timeout)?;
    Ok(tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition(), e.offset())).collect())
}

pub type Shared = Arc<EnrichConsumer>;
