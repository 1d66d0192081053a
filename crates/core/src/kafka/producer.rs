//! The producer wrapper every slate component publishes through.
//!
//! Contract: a message is either acknowledged by the broker (and counted in
//! `slate_produced_total`) or its caller gets a [`ProduceError`]; nothing is dropped silently.
//! The in-memory buffer is bounded (`kafka.producer.buffer_max_messages`): when it is full the
//! producer waits for space up to `buffer_full_timeout`, counting each overflow, then fails.

use crate::config::KafkaConfig;
use crate::metrics::{Metrics, label};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use std::future::Future;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("cannot create the Kafka producer: {0}")]
    Create(#[source] KafkaError),
    #[error("producer buffer stayed full for {0:?}; the broker is slower than the publish rate")]
    BufferFull(Duration),
    #[error("broker did not acknowledge the message to {topic}: {source}")]
    Delivery { topic: String, source: KafkaError },
    #[error("cannot enqueue a message to {topic}: {source}")]
    Enqueue { topic: String, source: KafkaError },
    /// The caller stopped waiting (the message may still be delivered later).
    #[error("not acknowledged within {0:?}")]
    NotAcknowledgedIn(Duration),
}

impl ProduceError {
    /// The broker did not acknowledge within `kafka.producer.message_timeout`.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Delivery { source, .. } | Self::Enqueue { source, .. }
            if source.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut))
    }

    /// Whether retrying the same message later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Create(_) => false,
            Self::BufferFull(_) | Self::NotAcknowledgedIn(_) => true,
            Self::Delivery { source, .. } | Self::Enqueue { source, .. } => !matches!(
                source.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::MessageSizeTooLarge
                        | RDKafkaErrorCode::InvalidMessage
                        | RDKafkaErrorCode::TopicAuthorizationFailed
                        | RDKafkaErrorCode::UnknownTopicOrPartition
                )
            ),
        }
    }
}

/// Resolves when the broker acknowledged (partition, offset) or the delivery failed.
pub type DeliveryFuture = std::pin::Pin<Box<dyn Future<Output = Result<(i32, i64), ProduceError>> + Send>>;

#[derive(Clone)]
pub struct Producer {
    pub(super) inner: FutureProducer,
    metrics: Metrics,
    buffer_wait: Duration,
}

impl Producer {
    pub fn try_new(cfg: &KafkaConfig, metrics: Metrics) -> Result<Self, ProduceError> {
        Self::with_config(super::producer_config(cfg), cfg, metrics)
    }

    pub(super) fn with_config(config: rdkafka::ClientConfig, cfg: &KafkaConfig, metrics: Metrics) -> Result<Self, ProduceError> {
        let inner: FutureProducer = config.create().map_err(ProduceError::Create)?;
        Ok(Self { inner, metrics, buffer_wait: cfg.producer.buffer_full_timeout })
    }

    /// The librdkafka producer (metadata reads).
    pub(crate) fn client(&self) -> &FutureProducer {
        &self.inner
    }

    /// Puts one message in the buffer, in call order (so per-partition order follows call order),
    /// and returns the future of its acknowledgement. `payload = None` produces a tombstone.
    pub async fn enqueue(
        &self,
        topic: &str,
        key: &[u8],
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) -> Result<DeliveryFuture, ProduceError> {
        self.enqueue_to(topic, None, key, payload, headers).await
    }

    /// [`Self::enqueue`] to an explicit `partition` (`None`: the key's partition).
    pub async fn enqueue_to(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) -> Result<DeliveryFuture, ProduceError> {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).key(key);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        let started = Instant::now();
        let mut counted = false;
        let delivery = loop {
            match self.inner.send_result(record) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    if !counted {
                        self.metrics.producer_buffer_full_total.inc();
                        tracing::warn!(topic, "producer buffer full; waiting for broker acknowledgements");
                        counted = true;
                    }
                    if started.elapsed() >= self.buffer_wait {
                        return Err(ProduceError::BufferFull(self.buffer_wait));
                    }
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((source, _)) => return Err(ProduceError::Enqueue { topic: topic.to_string(), source }),
            }
        };
        let topic = topic.to_string();
        let metrics = self.metrics.clone();
        Ok(Box::pin(async move {
            let outcome = match delivery.await {
                Ok(Ok(delivered)) => Ok((delivered.partition, delivered.offset)),
                Ok(Err((source, _))) => Err(ProduceError::Delivery { topic: topic.clone(), source }),
                Err(_canceled) => Err(ProduceError::Delivery { topic: topic.clone(), source: KafkaError::Canceled }),
            };
            match &outcome {
                Ok(_) => metrics.produced_total.get_or_create(&label("topic", topic)).inc(),
                Err(e) => {
                    metrics.producer_delivery_errors_total.get_or_create(&label("topic", topic)).inc();
                    tracing::warn!(error = %e, "delivery failed");
                    0
                }
            };
            outcome
        }))
    }

    /// Enqueues and waits for the broker's acknowledgement.
    pub async fn send(
        &self,
        topic: &str,
        key: &[u8],
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) -> Result<(i32, i64), ProduceError> {
        self.enqueue(topic, key, payload, headers).await?.await
    }

    /// Waits until everything buffered is acknowledged or `timeout` passes (shutdown path).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner.flush(timeout)
    }
}
