//! Kafka transactions for exactly-once delivery: one transactional producer per instance,
//! shared by the enricher's consume loops, each transaction held by one loop at a time.
//!
//! Contract: between [`Transactions::begin`] and [`Txn::commit`] the holder produces through
//! [`Txn::producer`] and adds its consumer offsets with [`Txn::send_offsets`]; all of it becomes
//! visible to `read_committed` consumers at once, or (abort, timeout, crash) none of it. librdkafka's
//! transaction calls block, so each runs on the blocking pool.

use super::Producer;
use crate::config::KafkaConfig;
use crate::metrics::Metrics;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

#[derive(Debug, thiserror::Error)]
#[error("{op} failed: {source}")]
pub struct TxnError {
    op: &'static str,
    #[source]
    source: KafkaError,
}

impl TxnError {
    /// The producer can no longer be used: another instance took over its `transactional.id`
    /// (fenced) or the broker refused it for good.
    pub fn is_fatal(&self) -> bool {
        match &self.source {
            KafkaError::Transaction(e) => e.is_fatal(),
            _ => false,
        }
    }

    /// The same call may succeed if made again (e.g. a commit whose reply timed out).
    pub fn is_retriable(&self) -> bool {
        match &self.source {
            KafkaError::Transaction(e) => e.is_retriable(),
            _ => false,
        }
    }
}

/// The instance's transactional producer.
#[derive(Clone)]
pub struct Transactions {
    producer: Producer,
    turn: Arc<Mutex<()>>,
    timeout: Duration,
}

/// One open transaction; dropping it without commit or abort leaves it to the broker's
/// transaction timeout, so callers always end it.
pub struct Txn<'a> {
    producer: &'a Producer,
    timeout: Duration,
    _turn: MutexGuard<'a, ()>,
}

impl Transactions {
    /// Creates the producer with `transactional.id = id` and registers it with the broker,
    /// which aborts any transaction a previous holder of the id left open and fences that holder.
    pub async fn init(cfg: &KafkaConfig, metrics: Metrics, id: &str, txn_timeout: Duration) -> Result<Self, TxnInitError> {
        let mut config = super::producer_config(cfg);
        config.set("transactional.id", id).set("transaction.timeout.ms", txn_timeout.as_millis().to_string());
        let producer = Producer::with_config(config, cfg, metrics).map_err(TxnInitError::Create)?;
        let timeout = cfg.producer.message_timeout.max(Duration::from_secs(10));
        let p = producer.inner.clone();
        blocking(move || p.init_transactions(timeout)).await.map_err(|source| TxnInitError::Init { id: id.to_string(), source })?;
        tracing::info!(transactional_id = id, "transactional producer ready");
        Ok(Self { producer, turn: Arc::new(Mutex::new(())), timeout })
    }

    /// The producer (for the pipeline; it must only produce inside a transaction).
    pub fn producer(&self) -> Producer {
        self.producer.clone()
    }

    /// Waits for the producer's turn and opens a transaction.
    pub async fn begin(&self) -> Result<Txn<'_>, TxnError> {
        let turn = self.turn.lock().await;
        let p = self.producer.inner.clone();
        blocking(move || p.begin_transaction()).await.map_err(|source| TxnError { op: "begin_transaction", source })?;
        Ok(Txn { producer: &self.producer, timeout: self.timeout, _turn: turn })
    }
}

impl Txn<'_> {
    /// Commits `offsets` (next offset to read per partition) for the consumer group of `group`
    /// as part of this transaction.
    pub async fn send_offsets(&self, offsets: TopicPartitionList, group: ConsumerGroupMetadata) -> Result<(), TxnError> {
        let (p, timeout) = (self.producer.inner.clone(), self.timeout);
        blocking(move || p.send_offsets_to_transaction(&offsets, &group, timeout))
            .await
            .map_err(|source| TxnError { op: "send_offsets_to_transaction", source })
    }

    /// Flushes and commits. A retriable failure is retried here; on any other the caller aborts.
    pub async fn commit(&self) -> Result<(), TxnError> {
        until_not_retriable("commit_transaction", self.producer, self.timeout, |p, t| p.commit_transaction(t)).await
    }

    /// Aborts: nothing produced in this transaction becomes visible, no offset moves.
    pub async fn abort(self) -> Result<(), TxnError> {
        until_not_retriable("abort_transaction", self.producer, self.timeout, |p, t| p.abort_transaction(t)).await
    }
}

/// Runs a transaction call until it succeeds or fails with an error that is not retriable.
async fn until_not_retriable(
    op: &'static str,
    producer: &Producer,
    timeout: Duration,
    call: fn(&rdkafka::producer::FutureProducer, Duration) -> Result<(), KafkaError>,
) -> Result<(), TxnError> {
    loop {
        let p = producer.inner.clone();
        match blocking(move || call(&p, timeout)).await {
            Ok(()) => return Ok(()),
            Err(source) => {
                let e = TxnError { op, source };
                if !e.is_retriable() {
                    return Err(e);
                }
                tracing::warn!(error = %e, "{op} failed; retrying it");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TxnInitError {
    #[error(transparent)]
    Create(super::ProduceError),
    #[error("cannot register transactional.id {id:?} with the broker (does it support transactions?): {source}")]
    Init { id: String, source: KafkaError },
}

/// Between two tries of a commit or abort the broker refused as retriable.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, KafkaError> + Send + 'static) -> Result<T, KafkaError> {
    tokio::task::spawn_blocking(f).await.expect("transaction calls do not panic")
}
