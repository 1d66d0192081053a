//! One batch through the enricher: dedup → coalesce → batched fetch → Avro → produce.
//!
//! Contract: [`Pipeline::process`] returns `Ok` only when every message the batch produced
//! (enriched records, tombstones, retry parcels, dead letters) is acknowledged by the broker; only
//! then may the caller store the batch's offsets and call [`Pipeline::mark_seen`]. On `Err`
//! nothing may be committed: the caller retries the same batch (outputs may repeat; every sink
//! guards on the source version, so repeats are harmless).
//!
//! Per-key order: one process serializes "compare with the newest version emitted for this key,
//! then enqueue" under one lock, so the enriched topic never receives an older version of a key
//! after a newer one from this process.

use super::avro::{self, Meta};
use super::batch::{Incoming, Work, coalesce};
use super::fetch::{Fetch, FetchError, FetchReply};
use super::output::{self, Coordinates, DlqStage, Outgoing};
use crate::config::EnricherConfig;
use crate::event::EntityName;
use crate::kafka::{DeliveryFuture, ProduceError, Producer};
use crate::metrics::{Metrics, label, labels};
use apache_avro::Schema;
use rand::Rng;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use uuid::Uuid;

/// An input message, decoded or not.
#[derive(Debug)]
pub enum Input {
    Event(Incoming),
    /// Could not be decoded: goes to the dead-letter topic as it arrived.
    Undecodable {
        key: Vec<u8>,
        payload: Option<Vec<u8>>,
        reason: String,
        from: Coordinates,
    },
}

/// A batch whose outputs are all enqueued, not yet known to be acknowledged.
pub struct Sent {
    pending: Vec<Pending>,
    /// Key and payload bytes of every output, held until acknowledged.
    pub bytes: usize,
}

/// A batch whose outputs are all acknowledged: what [`Pipeline::count`] records once the batch
/// is final (its offsets stored, or its transaction committed).
pub struct Acked(Vec<OnAck>);

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("producing the batch's outputs failed: {0}")]
    Produce(#[from] ProduceError),
}

/// The Avro record of one entity's enriched topic.
pub struct OutputSchema {
    pub topic: String,
    pub schema: Schema,
    pub schema_id: u32,
}

pub struct Pipeline {
    cfg: EnricherConfig,
    sources: Arc<dyn Fetch>,
    producer: Producer,
    outputs: HashMap<EntityName, OutputSchema>,
    seen: moka::sync::Cache<Uuid, ()>,
    /// The newest version this process emitted per key.
    emitted: moka::sync::Cache<(EntityName, String), i64>,
    emit_lock: Mutex<()>,
    fetch_slots: Arc<Semaphore>,
    metrics: Metrics,
}

/// An enqueued message and what to record once it is acknowledged.
struct Pending {
    delivery: DeliveryFuture,
    on_ack: OnAck,
    bytes: usize,
}

enum OnAck {
    Emitted { entity: EntityName, tombstone: bool, event_ts: Vec<i64> },
    Retried,
    DeadLettered(DlqStage),
}

impl Pipeline {
    pub fn new(
        cfg: EnricherConfig,
        sources: Arc<dyn Fetch>,
        producer: Producer,
        outputs: HashMap<EntityName, OutputSchema>,
        metrics: Metrics,
    ) -> Self {
        Self {
            seen: moka::sync::Cache::builder().max_capacity(cfg.dedup_capacity).time_to_live(cfg.dedup_ttl).build(),
            emitted: moka::sync::Cache::builder()
                .max_capacity(cfg.dedup_capacity)
                .time_to_idle(cfg.dedup_ttl.max(Duration::from_secs(60)))
                .build(),
            emit_lock: Mutex::new(()),
            fetch_slots: Arc::new(Semaphore::new(cfg.max_concurrent_fetches)),
            cfg,
            sources,
            producer,
            outputs,
            metrics,
        }
    }

    /// Remembers the uuids of a committed batch so redeliveries are skipped.
    pub fn mark_seen(&self, inputs: &[Input]) {
        for input in inputs {
            if let Input::Event(i) = input {
                self.seen.insert(i.event.uuid, ());
            }
        }
    }

    /// Runs a batch to the end: [`Self::send`], then [`Self::acked`].
    pub async fn process(&self, inputs: &[Input]) -> Result<Acked, PipelineError> {
        let sent = self.send(inputs).await?;
        self.acked(sent).await
    }

    /// Awaits every acknowledgement of a sent batch. On `Err` the batch must be redone
    /// (`process`) before its offsets may be stored.
    pub async fn acked(&self, sent: Sent) -> Result<Acked, PipelineError> {
        let mut first_error = None;
        let mut acks = Vec::with_capacity(sent.pending.len());
        for p in sent.pending {
            match p.delivery.await {
                Ok(_) => acks.push(p.on_ack),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => Ok(Acked(acks)),
            Some(e) => Err(e.into()),
        }
    }

    /// Counts a final batch's outputs (emitted, retried, dead-lettered) and their freshness.
    pub fn count(&self, acked: Acked) {
        for on_ack in acked.0 {
            self.acknowledged(on_ack);
        }
    }

    /// Dedup, coalesce, fetch and enqueue every output of a batch; returns once all are handed
    /// to the producer (in order per key), before they are acknowledged.
    pub async fn send(&self, inputs: &[Input]) -> Result<Sent, PipelineError> {
        let mut pending = Vec::new();
        let mut events = Vec::new();
        for input in inputs {
            match input {
                Input::Event(i) if i.attempt == 0 && self.seen.contains_key(&i.event.uuid) => {
                    self.metrics.enricher_deduplicated_total.inc();
                }
                Input::Event(i) => events.push(i.clone()),
                Input::Undecodable { key, payload, reason, from } => {
                    let dl =
                        output::dead_letter(self.cfg.dlq_topic.clone(), key.clone(), payload.clone(), DlqStage::Decode, reason, from, &[]);
                    pending.push(self.enqueue(dl, OnAck::DeadLettered(DlqStage::Decode)).await?);
                }
            }
        }
        let works = coalesce(&events);
        self.metrics.enricher_coalesced_total.inc_by(events.len().saturating_sub(works.len()) as u64);
        let coordinates: HashMap<Uuid, Coordinates> = events
            .iter()
            .map(|i| (i.event.uuid, Coordinates { topic: i.topic.clone(), partition: i.partition, offset: i.offset }))
            .collect();

        let mut fetches = JoinSet::new();
        // Retried keys are fetched one per request: a key that poisons its chunk (a source
        // failing on one id) then fails alone instead of dragging its chunk-mates with it.
        let mut groups: HashMap<(EntityName, bool), Vec<Work>> = HashMap::new();
        for w in works {
            groups.entry((w.entity, w.attempt > 0)).or_default().push(w);
        }
        for ((entity, retried), works) in groups {
            let chunk_size = if retried { 1 } else { self.cfg.max_ids_per_request };
            for chunk in works.chunks(chunk_size) {
                let chunk = chunk.to_vec();
                let (sources, slots, metrics, cfg) =
                    (self.sources.clone(), self.fetch_slots.clone(), self.metrics.clone(), self.cfg.clone());
                fetches.spawn(async move {
                    let ids: Vec<String> = chunk.iter().map(|w| w.id.clone()).collect();
                    let result = fetch_with_retries(&*sources, &slots, &metrics, &cfg, entity, &ids).await;
                    (entity, chunk, result)
                });
            }
        }
        // Outputs of a chunk are enqueued as soon as that chunk is fetched, so a slow or failing
        // chunk does not delay the freshness of the others.
        while let Some(joined) = fetches.join_next().await {
            let (entity, chunk, result) = joined.expect("fetch tasks do not panic");
            for (work, outgoing, on_ack) in self.outputs_for(entity, chunk, result, &coordinates) {
                pending.push(self.enqueue_output(&work, outgoing, on_ack, &coordinates).await?);
            }
        }
        // On failure the caller redoes the batch; the versions remembered for its keys stay, so
        // the redo emits the same or newer versions only (equal ones are emitted again).
        let bytes = pending.iter().map(|p| p.bytes).sum();
        Ok(Sent { pending, bytes })
    }

    fn outputs_for(
        &self,
        entity: EntityName,
        chunk: Vec<Work>,
        result: Result<FetchReply, FetchError>,
        from: &HashMap<Uuid, Coordinates>,
    ) -> Vec<(Work, Outgoing, OnAck)> {
        let out = &self.outputs[&entity];
        let reply = match result {
            Ok(reply) => reply,
            Err(e) => return chunk.into_iter().map(|w| self.failed(w, &e, from)).collect(),
        };
        let mut found: HashMap<&str, &super::fetch::Fetched> = reply.found.iter().map(|f| (f.id.as_str(), f)).collect();
        let deleted: HashMap<&str, i64> = reply.deleted.iter().map(|(id, v)| (id.as_str(), *v)).collect();
        let fetched_at = crate::time::now_millis();
        chunk
            .into_iter()
            .map(|w| {
                let on_ack = |tombstone| OnAck::Emitted { entity, tombstone, event_ts: w.event_ts.clone() };
                if let Some(f) = found.remove(w.id.as_str()) {
                    let meta = Meta {
                        event_uuid: w.newest.uuid,
                        change_type: w.newest.change_type,
                        event_ts: w.newest.ts,
                        fetched_at,
                        coalesced_uuids: w.uuids.clone(),
                    };
                    match avro::to_record(&out.schema, f, &meta).and_then(|v| avro::encode(&out.schema, out.schema_id, v)) {
                        Ok(bytes) => {
                            let o = output::record(out.topic.clone(), entity, &w.id, f.version, &w.newest, bytes);
                            let ack = on_ack(false);
                            (w, o, ack)
                        }
                        Err(e) => self.dead(w, DlqStage::Encode, &e.to_string(), from),
                    }
                } else {
                    let version = deleted.get(w.id.as_str()).copied();
                    let o = output::tombstone(out.topic.clone(), entity, &w.id, version, &w.newest, &w.uuids);
                    let ack = on_ack(true);
                    (w, o, ack)
                }
            })
            .collect()
    }

    /// A key whose fetch failed: parked on the retry topic, or dead-lettered when the failure is
    /// permanent or the retry rounds are used up.
    fn failed(&self, w: Work, e: &FetchError, from: &HashMap<Uuid, Coordinates>) -> (Work, Outgoing, OnAck) {
        if !e.is_transient() {
            return self.dead(w, DlqStage::Fetch, &e.to_string(), from);
        }
        if w.attempt >= self.cfg.max_retry_rounds {
            let reason = format!("still failing after {} retry rounds: {e}", w.attempt);
            return self.dead(w, DlqStage::RetriesExhausted, &reason, from);
        }
        let not_before = crate::time::now_millis() + self.cfg.retry_delay_for(w.attempt + 1).as_millis() as i64;
        let parcel = output::retry_parcel(self.cfg.retry_topic.clone(), &w.newest, &w.uuids, w.attempt + 1, not_before, &e.to_string());
        (w, parcel, OnAck::Retried)
    }

    fn dead(&self, w: Work, stage: DlqStage, reason: &str, from: &HashMap<Uuid, Coordinates>) -> (Work, Outgoing, OnAck) {
        let coords = from.get(&w.newest.uuid).cloned().unwrap_or(Coordinates { topic: String::new(), partition: -1, offset: -1 });
        let dl = output::dead_letter(
            self.cfg.dlq_topic.clone(),
            w.id.as_bytes().to_vec(),
            Some(w.newest.to_json()),
            stage,
            reason,
            &coords,
            &w.uuids,
        );
        (w, dl, OnAck::DeadLettered(stage))
    }

    /// Enqueues an output, keeping this process's per-key order: a record older than the newest
    /// version already emitted for its key (a source answering from a lagging replica) is not
    /// emitted; the key is parked on the retry topic instead, so its events still reach the
    /// sinks and the audit trail once the source catches up. An equal version is emitted again
    /// (a retried event carries its own uuids; every sink guards on the version).
    async fn enqueue_output(
        &self,
        w: &Work,
        o: Outgoing,
        on_ack: OnAck,
        from: &HashMap<Uuid, Coordinates>,
    ) -> Result<Pending, PipelineError> {
        let OnAck::Emitted { .. } = on_ack else { return self.enqueue(o, on_ack).await };
        let version: Option<i64> = o.header(output::H_VERSION).and_then(|v| v.parse().ok());
        let _guard = self.emit_lock.lock().await;
        let key = (w.entity, w.id.clone());
        if let (Some(v), Some(prev)) = (version, self.emitted.get(&key))
            && v < prev
        {
            self.metrics.enricher_superseded_total.inc();
            let behind =
                FetchError::Unavailable(format!("source answered version {v}, older than version {prev} already emitted for this key"));
            let (_, parcel, on_ack) = self.failed(w.clone(), &behind, from);
            return self.enqueue(parcel, on_ack).await;
        }
        if let Some(v) = version {
            self.emitted.insert(key, v);
        }
        self.enqueue(o, on_ack).await
    }

    async fn enqueue(&self, o: Outgoing, on_ack: OnAck) -> Result<Pending, PipelineError> {
        let headers = o.owned_headers();
        let delivery = self.producer.enqueue(&o.topic, &o.key, o.payload.as_deref(), Some(headers)).await?;
        let bytes = o.key.len() + o.payload.as_ref().map_or(0, Vec::len);
        Ok(Pending { delivery, on_ack, bytes })
    }

    fn acknowledged(&self, on_ack: OnAck) {
        match on_ack {
            OnAck::Emitted { entity, tombstone, event_ts } => {
                let kind = if tombstone { "tombstone" } else { "record" };
                self.metrics.enricher_emitted_total.get_or_create(&labels("entity", entity.as_str(), "kind", kind)).inc();
                let now = crate::time::now_millis();
                for ts in event_ts {
                    self.metrics.enricher_freshness_seconds.observe((now - ts).max(0) as f64 / 1000.0);
                }
            }
            OnAck::Retried => {
                self.metrics.enricher_retried_total.inc();
            }
            OnAck::DeadLettered(stage) => {
                self.metrics.dead_lettered_total.get_or_create(&label("reason", stage.as_str())).inc();
            }
        }
    }
}

/// One chunk's fetch: transient failures are retried with jittered exponential backoff, at
/// most `fetch_attempts` tries in all; each try holds one of the bounded fetch slots.
async fn fetch_with_retries(
    sources: &dyn Fetch,
    slots: &Semaphore,
    metrics: &Metrics,
    cfg: &EnricherConfig,
    entity: EntityName,
    ids: &[String],
) -> Result<FetchReply, FetchError> {
    let mut attempt = 1;
    loop {
        let started = Instant::now();
        let result = {
            let _slot = slots.acquire().await.expect("fetch semaphore is never closed");
            sources.fetch(entity, ids).await
        };
        metrics.fetch_seconds.get_or_create(&label("entity", entity.as_str())).observe(started.elapsed().as_secs_f64());
        metrics.fetch_ids_per_request.observe(ids.len() as f64);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) if e.is_transient() => "transient",
            Err(_) => "permanent",
        };
        metrics.fetch_requests_total.get_or_create(&labels("entity", entity.as_str(), "outcome", outcome)).inc();
        match result {
            Err(e) if e.is_transient() && attempt < cfg.fetch_attempts => {
                let base = cfg.fetch_backoff.mul_f64(2f64.powi(attempt as i32 - 1));
                let jittered = base.mul_f64(rand::rng().random_range(0.5..1.5));
                tracing::debug!(%entity, attempt, error = %e, "fetch failed; backing off");
                tokio::time::sleep(jittered).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
