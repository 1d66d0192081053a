//! The live keys of a compacted-style topic: keys whose newest message is not a tombstone.
//! `replay` uses it for entities whose source cannot list ids.

use super::tail::Tail;
use crate::config::KafkaConfig;
use rdkafka::Message;
use std::collections::HashMap;
use std::time::Duration;

/// How long reading a topic to its end may take before it fails.
const READ_LIMIT: Duration = Duration::from_secs(300);

/// Reads every partition of `topic` from the beginning to its current end (no consumer group,
/// nothing committed) and returns the keys whose newest message has a value, sorted.
pub async fn live_keys(cfg: &KafkaConfig, topic: &str) -> Result<Vec<String>, String> {
    let (cfg, topic) = (cfg.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || read(&cfg, &topic)).await.map_err(|e| e.to_string())?
}

fn read(cfg: &KafkaConfig, topic: &str) -> Result<Vec<String>, String> {
    let mut tail = Tail::new(cfg).map_err(|e| e.to_string())?;
    let partitions = tail.partitions(|t| t == topic).map_err(|e| e.to_string())?;
    let mut live: HashMap<String, bool> = HashMap::new();
    tail.read_to_end(&partitions, READ_LIMIT, |m| {
        if let Some(key) = m.key() {
            live.insert(String::from_utf8_lossy(key).into_owned(), m.payload().is_some());
        }
    })
    .map_err(|e| format!("{topic}: {e}"))?;
    let mut keys: Vec<String> = live.into_iter().filter(|(_, alive)| *alive).map(|(k, _)| k).collect();
    keys.sort();
    Ok(keys)
}
