//! The live keys of a compacted-style topic: keys whose newest message is not a tombstone.
//! `replay` uses it for entities whose source cannot list ids.

use super::base_config;
use crate::config::KafkaConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long reading a topic to its end may take before it fails.
const READ_LIMIT: Duration = Duration::from_secs(300);

/// Reads every partition of `topic` from the beginning to its current end (no consumer group,
/// nothing committed) and returns the keys whose newest message has a value, sorted.
pub async fn live_keys(cfg: &KafkaConfig, topic: &str) -> Result<Vec<String>, String> {
    let (cfg, topic) = (cfg.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || read(&cfg, &topic)).await.map_err(|e| e.to_string())?
}

fn read(cfg: &KafkaConfig, topic: &str) -> Result<Vec<String>, String> {
    let consumer: BaseConsumer = base_config(cfg)
        .set("group.id", "slate-live-keys")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| e.to_string())?;
    let partitions: Vec<i32> = metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout).map_err(|e| e.to_string())?;
        if high > low {
            ends.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Beginning).map_err(|e| e.to_string())?;
        }
    }
    let mut live: HashMap<String, bool> = HashMap::new();
    if !ends.is_empty() {
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
    }
    let deadline = Instant::now() + READ_LIMIT;
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("{topic} was not read to its end within {READ_LIMIT:?}"));
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else { continue };
        let m = m.map_err(|e| e.to_string())?;
        if let Some(key) = m.key() {
            live.insert(String::from_utf8_lossy(key).into_owned(), m.payload().is_some());
        }
        if ends.get(&m.partition()).is_some_and(|end| m.offset() + 1 >= *end) {
            ends.remove(&m.partition());
        }
    }
    let mut keys: Vec<String> = live.into_iter().filter(|(_, alive)| *alive).map(|(k, _)| k).collect();
    keys.sort();
    Ok(keys)
}
