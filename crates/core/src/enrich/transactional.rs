//! The exactly-once consume loop (`enricher.delivery = "exactly_once"`): each batch's outputs
//! (enriched records, tombstones, retry parcels, dead letters) and the consumer's offsets past
//! the batch are committed in one Kafka transaction (KIP-447: the offsets carry the consumer's
//! group metadata, so a member that lost its partitions in a rebalance cannot commit them).
//!
//! Contract: a batch is final only when its transaction commits. When anything fails before
//! that (a delivery, the offsets, the commit, the broker's transaction timeout) the transaction
//! is aborted, the consumer is sought back to the batch's first offsets and the batch is read
//! and done again; a `read_committed` reader never sees the aborted attempt. A crash leaves
//! the transaction open until the instance restarts with the same `transactional.id` (which
//! aborts it) or the broker's transaction timeout does. One batch per transaction, so batches
//! are not pipelined in this mode. A fenced producer (another live instance with the same
//! `transactional.id`) or a failed seek stops the loop with an error: continuing could skip
//! input, and the uncommitted batch is read again after a restart.

use super::consumer::{EnrichConsumer, collect};
use super::pipeline::{Acked, Input, Pipeline, PipelineError};
use crate::kafka::capacity::{self, Capacity};
use crate::kafka::{OffsetTracker, Transactions, Txn, TxnError};
use crate::metrics::{Metrics, label};
use rdkafka::consumer::Consumer;
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Txn(#[from] TxnError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("cannot seek {topic}[{partition}] back to {offset} after an aborted transaction: {source}")]
    Seek { topic: String, partition: i32, offset: i64, source: rdkafka::error::KafkaError },
}

impl BatchError {
    /// The loop must stop: going on could skip input or fight another instance.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::Txn(e) => e.is_fatal(),
            Self::Pipeline(_) => false,
            Self::Seek { .. } => true,
        }
    }
}

/// Per partition of a batch: its first offset and the next offset to read after it.
#[derive(Debug, Default, PartialEq)]
struct Span(BTreeMap<(String, i32), (i64, i64)>);

impl Span {
    fn of(batch: &[OwnedMessage]) -> Self {
        let mut span = BTreeMap::new();
        for m in batch {
            let e = span.entry((m.topic().to_string(), m.partition())).or_insert((m.offset(), m.offset() + 1));
            e.0 = e.0.min(m.offset());
            e.1 = e.1.max(m.offset() + 1);
        }
        Self(span)
    }

    fn commit_offsets(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), (_, next)) in &self.0 {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)).expect("a non-negative offset");
        }
        tpl
    }
}

/// Runs transactional batches until `cancel` fires (the batch in hand is committed first).
/// `Err` only for a fatal error (see the module doc); the caller stops the enricher.
pub async fn run<D, F>(
    consumer: &EnrichConsumer,
    pipeline: &Pipeline,
    txns: &Transactions,
    cfg: &crate::config::EnricherConfig,
    metrics: &Metrics,
    cancel: CancellationToken,
    decode: D,
) -> Result<(), BatchError>
where
    D: Fn(Vec<OwnedMessage>) -> F,
    F: Future<Output = Option<Vec<Input>>>,
{
    // Only for `collect`'s bookkeeping of revoked partitions: offsets go into transactions.
    let mut tracker = OffsetTracker::new();
    let capacity = Capacity::start(consumer.context().group(), metrics.clone(), cancel.clone());
    let mut backoff = Duration::from_millis(200);
    while !cancel.is_cancelled() {
        let batch = collect(consumer, &mut tracker, cfg.batch_max_events, cfg.batch_max_wait, None, &cancel).await;
        if batch.is_empty() {
            continue;
        }
        let caught_up = batch.len() < cfg.batch_max_events;
        capacity.begin(capacity::oldest_timestamp(&batch));
        metrics.enricher_batch_events.observe(batch.len() as f64);
        for m in &batch {
            metrics.enricher_consumed_total.get_or_create(&label("topic", m.topic().to_string())).inc();
        }
        let (span, records) = (Span::of(&batch), batch.len());
        let Some(inputs) = decode(batch).await else {
            capacity.end(0, false);
            break;
        };
        match transact(consumer, pipeline, txns, &span, &inputs).await {
            Ok(acked) => {
                pipeline.count(acked);
                pipeline.mark_seen(&inputs);
                metrics.enricher_processed_total.inc_by(records as u64);
                metrics.enricher_transactions_total.get_or_create(&label("outcome", "committed")).inc();
                capacity.end(records, caught_up);
                backoff = Duration::from_millis(200);
            }
            Err(e) => {
                capacity.end(0, false);
                metrics.enricher_transactions_total.get_or_create(&label("outcome", "aborted")).inc();
                if e.is_fatal() {
                    return Err(e);
                }
                metrics.enricher_batch_retries_total.inc();
                tracing::warn!(error = %e, retry_in = ?backoff, "transaction aborted; the batch is read and done again");
                rewind(consumer, &span)?;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    Ok(())
}

/// One batch in one transaction: committed (`Ok`), or aborted (`Err`, unless the producer is
/// fenced, when there is nothing left to abort).
async fn transact(
    consumer: &EnrichConsumer,
    pipeline: &Pipeline,
    txns: &Transactions,
    span: &Span,
    inputs: &[Input],
) -> Result<Acked, BatchError> {
    let txn = txns.begin().await?;
    match attempt(consumer, pipeline, &txn, span, inputs).await {
        Ok(acked) => Ok(acked),
        Err(e) if e.is_fatal() => Err(e),
        Err(e) => {
            txn.abort().await?;
            Err(e)
        }
    }
}

async fn attempt(
    consumer: &EnrichConsumer,
    pipeline: &Pipeline,
    txn: &Txn<'_>,
    span: &Span,
    inputs: &[Input],
) -> Result<Acked, BatchError> {
    let sent = pipeline.send(inputs).await?;
    let acked = pipeline.acked(sent).await?;
    let group = consumer.group_metadata().expect("a consumer with a group.id has group metadata");
    txn.send_offsets(span.commit_offsets(), group).await?;
    txn.commit().await?;
    Ok(acked)
}

/// Moves the consumer back to the batch's first offsets, so the aborted batch is read again
/// (librdkafka drops what it had prefetched for those partitions).
fn rewind(consumer: &EnrichConsumer, span: &Span) -> Result<(), BatchError> {
    for ((topic, partition), (first, _)) in &span.0 {
        consumer.seek(topic, *partition, Offset::Offset(*first), Duration::from_secs(10)).map_err(|source| BatchError::Seek {
            topic: topic.clone(),
            partition: *partition,
            offset: *first,
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn msg(topic: &str, partition: i32, offset: i64) -> OwnedMessage {
        OwnedMessage::new(None, None, topic.to_string(), Timestamp::NotAvailable, partition, offset, None)
    }

    #[test]
    fn a_span_holds_each_partitions_first_offset_and_the_commit_after_its_last() {
        let batch = [msg("a", 0, 7), msg("a", 1, 3), msg("a", 0, 8), msg("b", 0, 0), msg("a", 0, 9)];
        let span = Span::of(&batch);
        assert_eq!(span.0[&("a".to_string(), 0)], (7, 10));
        assert_eq!(span.0[&("a".to_string(), 1)], (3, 4));
        let tpl = span.commit_offsets();
        assert_eq!(tpl.find_partition("a", 0).unwrap().offset(), Offset::Offset(10));
        assert_eq!(tpl.find_partition("b", 0).unwrap().offset(), Offset::Offset(1));
    }
}
