//! Input decoding: raw Kafka messages into pipeline inputs.
//!
//! Accepted on the input topics: a JSON ChangeEvent, a Debezium-style CDC envelope, or an Avro
//! ChangeEvent in the Confluent wire format (writer schema fetched from the registry by id,
//! read with the embedded ChangeEvent schema (see `avro::decode_change_event`), so producers may evolve it compatibly). Anything
//! else becomes an [`Input::Undecodable`] with the reason; nothing panics, nothing is dropped.
//! A registry that cannot be reached is not the message's fault: decoding waits and retries.

use super::avro;
use super::batch::Incoming;
use super::output::{self, Coordinates};
use super::pipeline::Input;
use crate::catalogue::Catalogue;
use crate::event::{ChangeEvent, DecodeError, EntityName};
use crate::registry::RegistryClient;
use apache_avro::Schema;
use rdkafka::Message;
use rdkafka::message::{Headers, OwnedMessage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct InputDecoder {
    input_prefix: String,
    /// `enricher.rollout`: events of keys another pipeline owns are skipped.
    rollout: Option<crate::config::RolloutConfig>,
    metrics: crate::metrics::Metrics,
    max_bytes: usize,
    registry: RegistryClient,
    catalogue: Arc<Catalogue>,
    writers: Mutex<HashMap<u32, Arc<Schema>>>,
    cancel: CancellationToken,
}

enum Failure {
    /// The message is bad: dead-letter it with this reason.
    Bad(String),
    /// The registry is unreachable: try again later.
    Unavailable(String),
}

impl InputDecoder {
    pub fn new(
        cfg: &crate::config::EnricherConfig,
        registry: RegistryClient,
        catalogue: Arc<Catalogue>,
        metrics: crate::metrics::Metrics,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            input_prefix: cfg.input_topic_prefix.clone(),
            rollout: cfg.rollout.clone(),
            metrics,
            max_bytes: cfg.max_message_bytes,
            registry,
            catalogue,
            writers: Mutex::new(HashMap::new()),
            cancel,
        }
    }

    /// Decodes a batch from the input topics; `None` if cancelled while the registry was down.
    pub async fn input_batch(&self, batch: Vec<OwnedMessage>) -> Option<Vec<Input>> {
        let mut out = Vec::with_capacity(batch.len());
        for m in batch {
            let mut backoff = Duration::from_millis(200);
            loop {
                match self.decode(&m).await {
                    // A name another catalogue of this process registered is still unknown here.
                    Ok(event) if !self.catalogue.contains(event.entity) => {
                        out.push(undecodable(&m, DecodeError::UnknownEntity(event.entity.to_string()).to_string()));
                        break;
                    }
                    // Another pipeline's key: acknowledged with the batch, not processed.
                    Ok(event) if self.rollout.as_ref().is_some_and(|r| !r.owns(event.entity.as_str(), &event.id)) => {
                        self.metrics.enricher_rollout_skipped_total.inc();
                        break;
                    }
                    Ok(event) => {
                        out.push(Input::Event(Incoming {
                            event,
                            topic: m.topic().into(),
                            partition: m.partition(),
                            offset: m.offset(),
                            attempt: 0,
                            carried_uuids: vec![],
                        }));
                        break;
                    }
                    Err(Failure::Bad(reason)) => {
                        out.push(undecodable(&m, reason));
                        break;
                    }
                    Err(Failure::Unavailable(reason)) => {
                        tracing::warn!(%reason, retry_in = ?backoff, "schema registry unavailable; decoding waits");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = self.cancel.cancelled() => return None,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        }
        Some(out)
    }

    async fn decode(&self, m: &OwnedMessage) -> Result<ChangeEvent, Failure> {
        let Some(payload) = m.payload() else { return Err(Failure::Bad("tombstone (null value) on an input topic".into())) };
        if payload.len() > self.max_bytes {
            return Err(Failure::Bad(format!(
                "payload of {} bytes exceeds enricher.max_message_bytes = {}",
                payload.len(),
                self.max_bytes
            )));
        }
        if payload.first() == Some(&0) {
            return self.decode_avro(payload).await;
        }
        let hint = entity_of_topic(m.topic(), &self.input_prefix);
        ChangeEvent::decode_json(payload, m.key(), hint).map_err(|e| Failure::Bad(e.to_string()))
    }

    async fn decode_avro(&self, payload: &[u8]) -> Result<ChangeEvent, Failure> {
        let (id, body) = avro::decode(payload).map_err(|e| Failure::Bad(e.to_string()))?;
        let cached = self.writers.lock().expect("writer cache lock poisoned").get(&id).cloned();
        let writer = match cached {
            Some(w) => w,
            None => {
                let fetched = self.registry.schema_by_id(id).await.map_err(|e| {
                    if e.is_transient() { Failure::Unavailable(e.to_string()) } else { Failure::Bad(format!("writer schema {id}: {e}")) }
                })?;
                let schema = Arc::new(
                    Schema::parse_str(&fetched.schema).map_err(|e| Failure::Bad(format!("writer schema {id} does not parse: {e}")))?,
                );
                self.writers.lock().expect("writer cache lock poisoned").insert(id, schema.clone());
                schema
            }
        };
        avro::decode_change_event(&writer, body).map_err(|e| Failure::Bad(e.to_string()))
    }
}

/// Decodes a batch read from the retry topic, after waiting until its latest parcel is due.
pub async fn retry_batch(batch: Vec<OwnedMessage>, cancel: &CancellationToken) -> Option<Vec<Input>> {
    let due = batch.iter().filter_map(|m| header(m, output::H_NOT_BEFORE)?.parse::<i64>().ok()).max().unwrap_or(0);
    let wait = due - crate::time::now_millis();
    if wait > 0 {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
            _ = cancel.cancelled() => return None,
        }
    }
    Some(batch.iter().map(decode_parcel).collect())
}

fn decode_parcel(m: &OwnedMessage) -> Input {
    let attempt = header(m, output::H_ATTEMPT).and_then(|a| a.parse::<u32>().ok());
    let event = m.payload().map(|p| ChangeEvent::decode_json(p, m.key(), None));
    match (attempt, event) {
        (Some(attempt), Some(Ok(event))) => {
            let carried_uuids = header(m, output::H_EVENT_UUIDS).map(|h| output::split_uuids(&h)).unwrap_or_default();
            Input::Event(Incoming { event, topic: m.topic().into(), partition: m.partition(), offset: m.offset(), attempt, carried_uuids })
        }
        (None, _) => undecodable(m, format!("retry parcel without a valid {} header", output::H_ATTEMPT)),
        (_, None) => undecodable(m, "retry parcel without a payload".into()),
        (_, Some(Err(e))) => undecodable(m, format!("retry parcel: {e}")),
    }
}

fn undecodable(m: &OwnedMessage, reason: String) -> Input {
    Input::Undecodable {
        key: m.key().unwrap_or_default().to_vec(),
        payload: m.payload().map(<[u8]>::to_vec),
        reason,
        from: Coordinates { topic: m.topic().into(), partition: m.partition(), offset: m.offset() },
    }
}

fn header(m: &OwnedMessage, key: &str) -> Option<String> {
    let headers = m.headers()?;
    headers.iter().find(|h| h.key == key).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// `studio.cash_flow.changes` → CashFlow, when the topic follows `<prefix><entity>.changes`.
pub fn entity_of_topic(topic: &str, prefix: &str) -> Option<EntityName> {
    topic.strip_prefix(prefix)?.strip_suffix(".changes")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_the_entity() {
        assert_eq!(entity_of_topic("studio.cash_flow.changes", "studio."), Some(crate::catalogue::example::CASH_FLOW));
        assert_eq!(entity_of_topic("other.cash_flow.changes", "studio."), None);
        assert_eq!(entity_of_topic("studio.invoice.changes", "studio."), None);
    }
}
