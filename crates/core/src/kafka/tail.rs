//! Reading partitions to their end without a consumer group (nothing joined, nothing committed:
//! a reader never moves anyone's offsets). Partitions are read from their beginning the first time
//! they are asked for, and on from where the last read stopped after that, so a [`Tail`] kept
//! between reads follows the topics. `replay` (the live keys of a topic) and the shadow validator
//! (both sides' enriched topics) read this way.
//!
//! "The end" is each partition's high watermark when the read starts. A broker may report a
//! watermark below the last record of its last batch (tansu does: 8 records written in one batch
//! read as watermark 1), so after the ends the records already fetched are drained until the
//! queue is idle (for at most [`DRAIN`]): otherwise they would wait for a next read that may
//! never poll.

use super::base_config;
use crate::config::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);
/// Longest drain of already-fetched records after the ends are reached.
pub const DRAIN: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("{partitions} partitions not read to their end within {limit:?}")]
    Slow { partitions: usize, limit: Duration },
}

pub struct Tail {
    consumer: BaseConsumer,
    assigned: HashSet<(String, i32)>,
    /// Next offset to read per partition.
    next: HashMap<(String, i32), i64>,
}

impl Tail {
    pub fn new(cfg: &KafkaConfig) -> Result<Self, KafkaError> {
        let consumer = base_config(cfg)
            .set("group.id", "slate-tail")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            // Never "latest": an offset reset (e.g. a partition assigned while empty) must not
            // jump past records.
            .set("auto.offset.reset", "earliest")
            .create()?;
        Ok(Self { consumer, assigned: HashSet::new(), next: HashMap::new() })
    }

    /// Every partition of the topics whose name passes `wanted`, from one metadata request.
    pub fn partitions(&self, wanted: impl Fn(&str) -> bool) -> Result<Vec<(String, i32)>, KafkaError> {
        let metadata = self.consumer.fetch_metadata(None, TIMEOUT)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| wanted(t.name()))
            .flat_map(|t| t.partitions().iter().map(move |p| (t.name().to_string(), p.id())))
            .collect())
    }

    /// Reads `partitions` to their ends as of now (blocking), passing every record to `each`.
    pub fn read_to_end(
        &mut self,
        partitions: &[(String, i32)],
        limit: Duration,
        mut each: impl FnMut(&BorrowedMessage),
    ) -> Result<(), TailError> {
        let mut new = TopicPartitionList::new();
        let mut ends: HashMap<(String, i32), i64> = HashMap::new();
        for key in partitions {
            let (low, high) = self.consumer.fetch_watermarks(&key.0, key.1, TIMEOUT)?;
            if self.assigned.insert(key.clone()) {
                new.add_partition_offset(&key.0, key.1, Offset::Beginning)?;
                self.next.insert(key.clone(), low);
            }
            if self.next.get(key).is_some_and(|n| *n < high) {
                ends.insert(key.clone(), high);
            }
        }
        if new.count() > 0 {
            self.consumer.incremental_assign(&new)?;
        }
        let deadline = Instant::now() + limit;
        let mut drain_until: Option<Instant> = None;
        loop {
            if ends.is_empty() && Instant::now() > *drain_until.get_or_insert_with(|| Instant::now() + DRAIN) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(TailError::Slow { partitions: ends.len(), limit });
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                None if ends.is_empty() => return Ok(()),
                // At an end (the EOF names no topic) or idle: the consumer's positions tell which
                // partitions are done, also past transaction markers that no record reports.
                None | Some(Err(KafkaError::PartitionEOF(_))) => {
                    for e in self.consumer.position()?.elements() {
                        if let Offset::Offset(at) = e.offset() {
                            let key = (e.topic().to_string(), e.partition());
                            if ends.get(&key).is_some_and(|end| at >= *end) {
                                ends.remove(&key);
                                self.next.insert(key, at);
                            }
                        }
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(m)) => {
                    let key = (m.topic().to_string(), m.partition());
                    if ends.get(&key).is_some_and(|end| m.offset() + 1 >= *end) {
                        ends.remove(&key);
                    }
                    self.next.insert(key, m.offset() + 1);
                    each(&m);
                }
            }
        }
    }
}
