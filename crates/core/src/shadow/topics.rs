//! One side's enriched topics, followed through a [`crate::kafka::tail::Tail`]: every partition
//! of `<prefix><entity>.enriched` is read from the beginning (no consumer group, nothing
//! committed: the validator never moves a pipeline's offsets), and each
//! [`TopicSide::catch_up`] reads on to the ends measured when it starts. The newest record per key is kept, decoded, as the side's [`Observed`] state.
//!
//! Memory: one decoded record per key and entity (the topics are keyed by entity id).

use super::ShadowError;
use super::compare::{Observed, Side};
use crate::catalogue::Catalogue;
use crate::config::KafkaConfig;
use crate::event::EntityName;
use crate::kafka::tail::{Tail, TailError};
use crate::registry::RegistryClient;
use crate::sink::record::{RecordDecoder, RecordError};
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// How long one catch-up may take before it fails.
const READ_LIMIT: Duration = Duration::from_secs(300);

pub struct TopicSide {
    prefix: String,
    /// `None` only while a blocking read holds it.
    tail: Option<Tail>,
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
        Ok(Self {
            prefix: prefix.to_string(),
            tail: Some(Tail::new(kafka)?),
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

    /// The entity a topic of this side names, if it is `<prefix><entity>.enriched`.
    fn entity_of(prefix: &str, topic: &str) -> Option<Result<EntityName, ()>> {
        let name = topic.strip_prefix(prefix)?.strip_suffix(".enriched")?;
        Some(EntityName::lookup(name).map_err(drop))
    }

    /// Reads every partition up to its end as of now (new topics and partitions included) and
    /// folds the newest record per key into [`TopicSide::held`].
    pub async fn catch_up(&mut self) -> Result<(), ShadowError> {
        let mut tail = self.tail.take().expect("one catch-up at a time");
        let (prefix, catalogue) = (self.prefix.clone(), self.catalogue.clone());
        let (tail, read) = tokio::task::spawn_blocking(move || {
            let read = read_newest(&mut tail, &prefix, &catalogue);
            (tail, read)
        })
        .await
        .expect("topic reader thread");
        self.tail = Some(tail);
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
                    if let Some(Ok(entity)) = Self::entity_of(&self.prefix, m.topic()) {
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

/// The side's enriched topics, sorted into the catalogue's entities and foreign ones, and the
/// newest record per key of the entities' topics.
fn read_newest(tail: &mut Tail, prefix: &str, catalogue: &Catalogue) -> Result<Read, ShadowError> {
    let (mut entities, mut foreign) = (BTreeSet::new(), BTreeSet::new());
    let mut partitions = Vec::new();
    for (topic, partition) in tail.partitions(|t| TopicSide::entity_of(prefix, t).is_some())? {
        match TopicSide::entity_of(prefix, &topic) {
            Some(Ok(e)) if catalogue.contains(e) => {
                entities.insert(e);
                partitions.push((topic, partition));
            }
            _ => {
                foreign.insert(topic);
            }
        }
    }
    let mut newest = HashMap::new();
    tail.read_to_end(&partitions, READ_LIMIT, |m| {
        if let Some(k) = m.key() {
            newest.insert((m.topic().to_string(), k.to_vec()), m.detach());
        }
    })
    .map_err(|e| match e {
        TailError::Kafka(e) => ShadowError::Kafka(e),
        slow @ TailError::Slow { .. } => ShadowError::Slow(format!("`{prefix}*.enriched`: {slow}")),
    })?;
    Ok(Read { newest, entities, foreign })
}
