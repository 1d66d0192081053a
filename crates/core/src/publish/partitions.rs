//! Healthy-partition choice for unordered event streams (`publish.unordered_entities`).
//!
//! A partition is healthy when it has a leader and its in-sync replica set is full; events of
//! an unordered stream go round-robin over the healthy partitions, so a partition whose leader
//! is gone or whose replicas lag (where an `acks=all` write waits, or fails under
//! `min.insync.replicas`) gets none. When no partition is healthy, the ones with a leader are
//! used (under-replicated beats unavailable); when none has a leader, the choice is left to the
//! producer (key partitioning), whose delivery error then reaches the caller.
//!
//! Health is read from the cluster metadata at most every `publish.metadata_refresh` per topic;
//! a failed read keeps the last known health.

use crate::metrics::{Metrics, labels};
use rdkafka::producer::{FutureProducer, Producer as _};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long one metadata read may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// One partition as the cluster metadata describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    pub id: i32,
    /// Broker id of the leader, negative when there is none.
    pub leader: i32,
    pub replicas: usize,
    pub isr: usize,
}

/// Why a partition gets no events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    NoLeader,
    UnderReplicated,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NoLeader => "no_leader",
            Skip::UnderReplicated => "under_replicated",
        }
    }
}

/// The partitions to use (ascending) and the ones skipped with the reason.
pub fn choose(partitions: &[PartitionInfo]) -> (Vec<i32>, Vec<(i32, Skip)>) {
    let mut skipped = Vec::new();
    let mut healthy = Vec::new();
    for p in partitions {
        if p.leader < 0 {
            skipped.push((p.id, Skip::NoLeader));
        } else if p.isr < p.replicas {
            skipped.push((p.id, Skip::UnderReplicated));
        } else {
            healthy.push(p.id);
        }
    }
    if healthy.is_empty() {
        // Under-replicated beats unavailable: use every partition that has a leader.
        healthy = partitions.iter().filter(|p| p.leader >= 0).map(|p| p.id).collect();
        skipped.retain(|(_, why)| *why == Skip::NoLeader);
    }
    healthy.sort_unstable();
    (healthy, skipped)
}

struct Known {
    usable: Arc<[i32]>,
    read_at: Instant,
}

/// Per-topic health, refreshed from metadata, and a round-robin cursor.
pub struct Picker {
    client: FutureProducer,
    refresh: Duration,
    known: Mutex<HashMap<String, Known>>,
    cursor: AtomicUsize,
    metrics: Metrics,
}

impl Picker {
    pub fn new(client: FutureProducer, refresh: Duration, metrics: Metrics) -> Self {
        Picker { client, refresh, known: Mutex::new(HashMap::new()), cursor: AtomicUsize::new(0), metrics }
    }

    /// The partition of `topic` the next unordered event goes to; `None` leaves it to the
    /// producer's partitioner.
    pub async fn pick(&self, topic: &str) -> Option<i32> {
        let usable = self.usable(topic).await?;
        if usable.is_empty() {
            return None;
        }
        Some(usable[self.cursor.fetch_add(1, Ordering::Relaxed) % usable.len()])
    }

    async fn usable(&self, topic: &str) -> Option<Arc<[i32]>> {
        let mut known = self.known.lock().await;
        if let Some(k) = known.get(topic)
            && k.read_at.elapsed() < self.refresh
        {
            return Some(k.usable.clone());
        }
        match self.read(topic).await {
            Ok(partitions) => {
                let (usable, skipped) = choose(&partitions);
                for why in [Skip::NoLeader, Skip::UnderReplicated] {
                    let n = skipped.iter().filter(|(_, w)| *w == why).count();
                    self.metrics.publish_partitions_skipped.get_or_create(&labels("topic", topic, "reason", why.as_str())).set(n as i64);
                }
                if !skipped.is_empty() {
                    tracing::warn!(topic, ?skipped, "publishing around unhealthy partitions");
                }
                let usable: Arc<[i32]> = usable.into();
                known.insert(topic.to_owned(), Known { usable: usable.clone(), read_at: Instant::now() });
                Some(usable)
            }
            Err(e) => {
                tracing::warn!(topic, error = %e, "cannot read partition health; keeping the last known");
                known.get(topic).map(|k| k.usable.clone())
            }
        }
    }

    async fn read(&self, topic: &str) -> Result<Vec<PartitionInfo>, rdkafka::error::KafkaError> {
        let (client, name) = (self.client.clone(), topic.to_owned());
        let metadata = tokio::task::spawn_blocking(move || client.client().fetch_metadata(Some(&name), METADATA_TIMEOUT))
            .await
            .expect("metadata read does not panic")?;
        let partitions = metadata.topics().iter().filter(|t| t.name() == topic && t.error().is_none()).flat_map(|t| t.partitions());
        Ok(partitions.map(|p| PartitionInfo { id: p.id(), leader: p.leader(), replicas: p.replicas().len(), isr: p.isr().len() }).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: i32, leader: i32, replicas: usize, isr: usize) -> PartitionInfo {
        PartitionInfo { id, leader, replicas, isr }
    }

    #[test]
    fn unhealthy_partitions_are_skipped_with_the_reason() {
        let (usable, skipped) = choose(&[p(2, 1, 3, 3), p(0, 1, 3, 3), p(1, -1, 3, 0), p(3, 2, 3, 2)]);
        assert_eq!(usable, vec![0, 2]);
        assert_eq!(skipped, vec![(1, Skip::NoLeader), (3, Skip::UnderReplicated)]);
    }

    #[test]
    fn with_nothing_healthy_a_leader_is_enough_and_with_no_leader_nothing_is_chosen() {
        let (usable, skipped) = choose(&[p(0, 1, 3, 1), p(1, -1, 3, 0), p(2, 2, 3, 2)]);
        assert_eq!((usable, skipped), (vec![0, 2], vec![(1, Skip::NoLeader)]));
        let (usable, _) = choose(&[p(0, -1, 1, 0)]);
        assert!(usable.is_empty());
    }
}
