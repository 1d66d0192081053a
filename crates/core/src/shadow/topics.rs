//! One side's enriched topics, followed: every partition of `<prefix><entity>.enriched` is read
//! from the beginning (no consumer group, nothing committed: the validator never moves a
//! pipeline's offsets), and each [`TopicSide::catch_up`] reads on to the ends measured when it
//! starts. The newest record per key is kept, decoded, as the side's [`Observed`] state.
//!
//! Memory: one decoded record per key and entity (the topics are keyed by entity id).

use super::ShadowError;
use super::compare::{Observed, Side};
use crate::catalogue::Catalogue;
use crate::config::KafkaConfig;
use crate::event::EntityName;
use crate::kafka::base_config;
use crate::registry::RegistryClient;
use crate::sink::record::{RecordDecoder, RecordError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one catch-up may take before it fails.
const READ_LIMIT: Duration = Duration::from_secs(300);
const TIMEOUT: Duration = Duration::from_secs(10);
/// Longest drain of already-fetched records after the ends are reached.
const DRAIN: Duration = Duration::from_secs(2);

pub struct TopicSide {
    prefix: String,
    /// `None` only while a blocking read holds it.
    consumer: Option<BaseConsumer>,
    assigned: HashSet<(String, i32)>,
    /// Next offset to read per partition.
    next: HashMap<(String, i32), i64>,
    decoder: RecordDecoder,
    catalogue: Arc<Catalogue>,
    /// The newest record per key, per entity.
    pub held: BTreeMap<EntityName, Side>,
    /// Records that could not be decoded, per entity (they stay out of the comparison).
    pub undecodable: BTreeMap<EntityName, usize>,
    /// Entities whose writer schema the catalogue's cannot read, with the reason.
    pub unreadable: BTreeMap<EntityName, String>,
    /// Entities with an enriched topic on this side.
    pub entities: BTreeSet<EntityName>,
    /// `<prefix>*.enriched` topics whose entity the catalogue does not declare.
    pub foreign: BTreeSet<String>,
}

impl TopicSide {
    pub fn new(kafka: &KafkaConfig, prefix: &str, registry: RegistryClient, catalogue: Arc<Catalogue>) -> Result<Self, ShadowError> {
        let consumer: BaseConsumer = base_config(kafka)
            .set("group.id", "slate-shadow-compare")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            // Never "latest": an offset reset (e.g. a partition assigned while empty) must not
            // jump past records, which would leave keys out of every later comparison.
            .set("auto.offset.reset", "earliest")
            .create()?;
        Ok(Self {
            prefix: prefix.to_string(),
            consumer: Some(consumer),
            assigned: HashSet::new(),
            next: HashMap::new(),
            decoder: RecordDecoder::new(prefix.to_string(), registry, catalogue.clone()),
            catalogue,
            held: BTreeMap::new(),
            undecodable: BTreeMap::new(),
            unreadable: BTreeMap::new(),
            entities: BTreeSet::new(),
            foreign: BTreeSet::new(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Reads every partition up to its end as of now (new topics and partitions included) and
    /// folds the records into [`TopicSide::held`].
    pub async fn catch_up(&mut self) -> Result<(), ShadowError> {
        let consumer = self.consumer.take().expect("one catch-up at a time");
        let (prefix, catalogue) = (self.prefix.clone(), self.catalogue.clone());
        let (mut assigned, mut next) = (std::mem::take(&mut self.assigned), std::mem::take(&mut self.next));
        let (consumer, assigned, next, read) = tokio::task::spawn_blocking(move || {
            let read = read_to_end(&consumer, &prefix, &catalogue, &mut assigned, &mut next);
            (consumer, assigned, next, read)
        })
        .await
        .expect("topic reader thread");
        (self.consumer, self.assigned, self.next) = (Some(consumer), assigned, next);
        let read = read?;
        self.entities = read.entities;
        self.foreign = read.foreign;
        for m in read.newest.into_values() {
            let at_ms = m.timestamp().to_millis().unwrap_or(0);
            match self.decoder.decode(&m).await {
                Ok(r) => {
                    let value = r.value.and_then(|v| match v {
                        serde_json::Value::Object(map) => Some(map),
                        _ => None,
                    });
                    self.held.entry(r.entity).or_default().insert(r.id, Observed { version: r.version, value, at_ms });
                }
                Err(RecordError::Unavailable(e)) => return Err(ShadowError::Registry(e)),
                Err(RecordError::Incompatible { entity, reason }) => {
                    self.unreadable.insert(entity, reason);
                }
                Err(RecordError::Bad(_)) => {
                    let entity = m.topic().strip_prefix(&self.prefix).and_then(|t| t.strip_suffix(".enriched"));
                    if let Some(entity) = entity.and_then(|e| EntityName::lookup(e).ok()) {
                        *self.undecodable.entry(entity).or_default() += 1;
                    }
                }
            }
        }
        Ok(())
    }
}

struct Read {
    newest: HashMap<(String, Vec<u8>), OwnedMessage>,
    entities: BTreeSet<EntityName>,
    foreign: BTreeSet<String>,
}

fn read_to_end(
    consumer: &BaseConsumer,
    prefix: &str,
    catalogue: &Catalogue,
    assigned: &mut HashSet<(String, i32)>,
    next: &mut HashMap<(String, i32), i64>,
) -> Result<Read, ShadowError> {
    let metadata = consumer.fetch_metadata(None, TIMEOUT)?;
    let (mut entities, mut foreign) = (BTreeSet::new(), BTreeSet::new());
    let mut new = TopicPartitionList::new();
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    for topic in metadata.topics() {
        let Some(entity) = topic.name().strip_prefix(prefix).and_then(|t| t.strip_suffix(".enriched")) else { continue };
        match EntityName::lookup(entity).ok().filter(|e| catalogue.contains(*e)) {
            Some(e) => entities.insert(e),
            None => {
                foreign.insert(topic.name().to_string());
                continue;
            }
        };
        for p in topic.partitions() {
            let key = (topic.name().to_string(), p.id());
            let (low, high) = consumer.fetch_watermarks(topic.name(), p.id(), TIMEOUT)?;
            if assigned.insert(key.clone()) {
                new.add_partition_offset(topic.name(), p.id(), Offset::Beginning)?;
                next.insert(key.clone(), low);
            }
            if next.get(&key).is_some_and(|n| *n < high) {
                ends.insert(key, high);
            }
        }
    }
    if new.count() > 0 {
        consumer.incremental_assign(&new)?;
    }
    let mut newest = HashMap::new();
    let deadline = Instant::now() + READ_LIMIT;
    // After the ends, records already fetched are drained until the queue is idle (for at most
    // DRAIN): a broker may report a high watermark below the last record of its last batch
    // (tansu does), and those records must not wait for the next catch-up, which may never poll.
    let mut drain_until: Option<Instant> = None;
    loop {
        if ends.is_empty() {
            let until = *drain_until.get_or_insert_with(|| Instant::now() + DRAIN);
            if Instant::now() > until {
                break;
            }
        }
        if Instant::now() > deadline {
            return Err(ShadowError::Slow(format!("{} partitions of `{prefix}*.enriched` not read to their end", ends.len())));
        }
        match consumer.poll(Duration::from_millis(100)) {
            None if ends.is_empty() => break,
            // At an end (the EOF names no topic) or idle: the consumer's positions tell which
            // partitions are done, also past transaction markers that no message reports.
            None | Some(Err(KafkaError::PartitionEOF(_))) => {
                for e in consumer.position()?.elements() {
                    if let Offset::Offset(at) = e.offset() {
                        let key = (e.topic().to_string(), e.partition());
                        if ends.get(&key).is_some_and(|end| at >= *end) {
                            ends.remove(&key);
                            next.insert(key, at);
                        }
                    }
                }
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => {
                let key = (m.topic().to_string(), m.partition());
                next.insert(key.clone(), m.offset() + 1);
                if ends.get(&key).is_some_and(|end| m.offset() + 1 >= *end) {
                    ends.remove(&key);
                }
                if let Some(k) = m.key() {
                    newest.insert((m.topic().to_string(), k.to_vec()), m.detach());
                }
            }
        }
    }
    Ok(Read { newest, entities, foreign })
}
