//! Stall detection for a consumer group: a partition whose lag stays above zero while the
//! group's committed offset does not move for `stall_after` is *stalled*.
//!
//! The watch runs beside the consume loop on its own timer and asks the brokers directly
//! (committed offsets of the group, watermarks of every partition of its topics), so it sees a
//! loop that stopped polling (a write retried forever, a hung target) as well as a partition
//! nobody consumes (unassigned after a rebalance, or its owner gone quiet): in both the committed
//! offset stands still while messages wait. Each instance reports
//! - `slate_consumer_stalled_partitions{group}`: stalled partitions assigned to *this* instance;
//!   any makes `/health` answer 503 "degraded";
//! - `slate_consumer_group_stalled_partitions{group}`: stalled partitions of the whole group,
//!   whoever owns them. Greater than the sum of the instances' own counts means a stalled
//!   partition that no running instance owns.

use super::group::{self, PartitionOffsets};
use crate::metrics::{Metrics, label};
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One partition as the brokers see it, and whether this instance owns it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: PartitionOffsets,
    /// Assigned to this instance.
    pub mine: bool,
}

impl Sample {
    fn position(&self) -> i64 {
        self.at.position()
    }

    pub fn lag(&self) -> i64 {
        self.at.lag()
    }
}

/// A stalled partition: its lag and how long its committed offset has not moved.
#[derive(Debug, Clone, PartialEq)]
pub struct Stalled {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
    pub still_for: Duration,
    pub mine: bool,
}

/// Remembers since when each partition's committed offset has not moved while it lagged.
#[derive(Debug)]
pub struct Watch {
    after: Duration,
    since: HashMap<(String, i32), (i64, Instant)>,
}

impl Watch {
    pub fn new(after: Duration) -> Self {
        Self { after, since: HashMap::new() }
    }

    /// The stalled partitions after this sample (taken at `now`).
    pub fn observe(&mut self, now: Instant, samples: &[Sample]) -> Vec<Stalled> {
        let mut out = Vec::new();
        let mut present = HashSet::new();
        for s in samples {
            let key = (s.at.topic.clone(), s.at.partition);
            present.insert(key.clone());
            if s.lag() == 0 {
                self.since.remove(&key);
                continue;
            }
            let entry = self.since.entry(key).or_insert((s.position(), now));
            if entry.0 != s.position() {
                *entry = (s.position(), now);
            }
            let still_for = now.saturating_duration_since(entry.1);
            if still_for >= self.after {
                out.push(Stalled { topic: s.at.topic.clone(), partition: s.at.partition, lag: s.lag(), still_for, mine: s.mine });
            }
        }
        self.since.retain(|k, _| present.contains(k));
        out
    }
}

/// Watches `consumer`'s group until `cancel` or until the consumer is dropped (the watch holds
/// no strong reference, so a crashed or aborted loop does not keep its group membership alive).
/// A zero `after` disables the watch.
pub fn spawn<C, X>(consumer: &Arc<C>, group: String, topics: Vec<String>, after: Duration, metrics: Metrics, cancel: CancellationToken)
where
    C: Consumer<X> + Send + Sync + 'static,
    X: ConsumerContext + 'static,
{
    if after.is_zero() {
        return;
    }
    let every = (after / 6).clamp(Duration::from_secs(1), Duration::from_secs(10));
    let consumer = Arc::downgrade(consumer);
    tokio::spawn(async move {
        let mut watch = Watch::new(after);
        let mut tick = tokio::time::interval(every);
        let mut last_sampled = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = cancel.cancelled() => break,
            }
            let Some(c) = consumer.upgrade() else { break };
            let t = topics.clone();
            let samples = match tokio::task::spawn_blocking(move || sample(&*c, &t)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    match unreadable(&group, last_sampled.elapsed(), after, &e.to_string()) {
                        Some(reason) => {
                            tracing::warn!(%group, error = %e, "stall watch: committed offsets unreadable");
                            metrics.health.set(&group, reason);
                        }
                        None => tracing::debug!(%group, error = %e, "stall watch: brokers did not answer; next round"),
                    }
                    continue;
                }
                Err(_) => break,
            };
            last_sampled = Instant::now();
            metrics.consumer_group_lag.get_or_create(&label("group", group.clone())).set(samples.iter().map(Sample::lag).sum());
            let stalled = watch.observe(last_sampled, &samples);
            report(&group, &stalled, &metrics);
        }
        metrics.consumer_stalled_partitions.get_or_create(&label("group", group.clone())).set(0);
        metrics.health.clear(&group);
    });
}

/// The `/health` reason once the group's offsets have been unreadable for `after`: a watch that
/// cannot see is itself a problem (a group coordinator that stopped answering looks exactly like
/// this), never a silent healthy.
fn unreadable(group: &str, since: Duration, after: Duration, error: &str) -> Option<String> {
    (since >= after).then(|| format!("group {group}: committed offsets unreadable for {}s: {error}", since.as_secs()))
}

fn report(group: &str, stalled: &[Stalled], metrics: &Metrics) {
    let mine: Vec<&Stalled> = stalled.iter().filter(|s| s.mine).collect();
    metrics.consumer_stalled_partitions.get_or_create(&label("group", group.to_string())).set(mine.len() as i64);
    metrics.consumer_group_stalled_partitions.get_or_create(&label("group", group.to_string())).set(stalled.len() as i64);
    let describe = |s: &&Stalled| format!("{}[{}] lag {} for {}s", s.topic, s.partition, s.lag, s.still_for.as_secs());
    if mine.is_empty() {
        metrics.health.clear(group);
    } else {
        let what: Vec<String> = mine.iter().map(describe).collect();
        tracing::warn!(group, partitions = %what.join(", "), "consumer stalled: lag is not shrinking");
        metrics.health.set(group, format!("group {group}: {} stalled partition(s): {}", mine.len(), what.join(", ")));
    }
    let unowned: Vec<String> = stalled.iter().filter(|s| !s.mine).map(|s| describe(&s)).collect();
    if !unowned.is_empty() {
        tracing::info!(group, partitions = %unowned.join(", "), "stalled partitions owned by another instance or by none");
    }
}

/// Committed offsets and watermarks of every partition of `topics` (blocking calls). A topic
/// the cluster does not list has no partitions to watch.
fn sample<C: Consumer<X>, X: ConsumerContext>(consumer: &C, topics: &[String]) -> Result<Vec<Sample>, KafkaError> {
    let mine: HashSet<(String, i32)> = consumer.assignment()?.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), group::TIMEOUT)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition(t.name(), p.id());
            }
        }
    }
    Ok(group::read(consumer, tpl)?.into_iter().map(|at| Sample { mine: mine.contains(&(at.topic.clone(), at.partition)), at }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_offsets_degrade_health_after_the_threshold() {
        let after = Duration::from_secs(120);
        assert_eq!(unreadable("g", Duration::from_secs(119), after, "timed out"), None);
        let reason = unreadable("g", Duration::from_secs(130), after, "OffsetFetch timed out").unwrap();
        assert!(reason.contains("group g") && reason.contains("unreadable for 130s") && reason.contains("OffsetFetch"), "{reason}");
    }

    fn s(partition: i32, committed: Option<i64>, high: i64, mine: bool) -> Sample {
        Sample { at: PartitionOffsets { topic: "t".into(), partition, committed, low: 0, high }, mine }
    }

    #[test]
    fn lag_without_progress_for_the_threshold_is_a_stall() {
        let mut w = Watch::new(Duration::from_secs(30));
        let t0 = Instant::now();
        assert!(w.observe(t0, &[s(0, Some(5), 10, true)]).is_empty(), "lag alone is not a stall");
        assert!(w.observe(t0 + Duration::from_secs(29), &[s(0, Some(5), 12, true)]).is_empty());
        let stalled = w.observe(t0 + Duration::from_secs(31), &[s(0, Some(5), 12, true)]);
        assert_eq!(stalled.len(), 1);
        assert_eq!((stalled[0].lag, stalled[0].still_for.as_secs(), stalled[0].mine), (7, 31, true));
    }

    #[test]
    fn progress_or_no_lag_resets_the_clock() {
        let mut w = Watch::new(Duration::from_secs(30));
        let t0 = Instant::now();
        w.observe(t0, &[s(0, Some(5), 10, true), s(1, Some(3), 3, true)]);
        // Partition 0 moved (committed 5 → 8), partition 1 has nothing to read.
        assert!(w.observe(t0 + Duration::from_secs(31), &[s(0, Some(8), 10, true), s(1, Some(3), 3, true)]).is_empty());
        assert!(w.observe(t0 + Duration::from_secs(60), &[s(0, Some(8), 10, true), s(1, Some(3), 3, true)]).is_empty());
        assert_eq!(w.observe(t0 + Duration::from_secs(62), &[s(0, Some(8), 10, true)]).len(), 1);
    }

    #[test]
    fn a_partition_nobody_committed_counts_from_its_low_watermark() {
        let mut w = Watch::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let never = Sample { at: PartitionOffsets { topic: "t".into(), partition: 2, committed: None, low: 4, high: 9 }, mine: false };
        assert_eq!(never.lag(), 5);
        w.observe(t0, std::slice::from_ref(&never));
        let stalled = w.observe(t0 + Duration::from_secs(2), &[never]);
        assert_eq!(stalled.len(), 1);
        assert!(!stalled[0].mine, "unowned here: counted for the group, not for this instance's health");
        let empty = Sample { at: PartitionOffsets { topic: "t".into(), partition: 3, committed: None, low: 7, high: 7 }, mine: false };
        assert_eq!(empty.lag(), 0, "an empty or fully retained-away partition has no lag");
    }
}
