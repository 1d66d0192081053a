//! A consumer group's offsets, read and moved from outside the group: `slate group show` and
//! `slate group reset` (rebuild a sink from the enriched topic without touching the source).
//!
//! A reset commits offsets as a client that is not a member of the group (generation -1), which
//! Kafka accepts only while the group has no live members: moving offsets under a running member
//! would be overwritten by its next commit, or worse, skip what it has in flight. So a reset reads
//! the members first and refuses while there are any; the broker refuses the commit as well
//! (`UNKNOWN_MEMBER_ID`) if one joins in between, and that is reported the same way.
//!
//! Every call here blocks on the brokers (bounded by [`TIMEOUT`] each); async callers use
//! `spawn_blocking`.

use crate::config::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::Duration;

/// Bound of each broker request.
pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("group {group} has {} live member(s): {}; stop them first (a reset under a running member would be overwritten by its next commit)", members.len(), members.join(", "))]
    LiveMembers { group: String, members: Vec<String> },
    #[error("topic {topic} does not exist on the cluster; check --topic or the role's topic prefix")]
    NoSuchTopic { topic: String },
    #[error("topic {topic} has no partition {partition} (it has {count}); check --topic {topic}:…")]
    NoSuchPartition { topic: String, partition: i32, count: usize },
    #[error("the brokers did not confirm the reset: {topic}[{partition}] reads {found:?} after committing {wanted}")]
    NotConfirmed { topic: String, partition: i32, wanted: i64, found: Option<i64> },
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// Which group and which of its partitions: every partition of a topic unless some are named.
#[derive(Debug, Clone)]
pub struct Scope {
    pub group: String,
    pub topics: Vec<(String, Option<Vec<i32>>)>,
}

/// One partition as the brokers see it for a group.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PartitionOffsets {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset; `None` before its first commit.
    pub committed: Option<i64>,
    pub low: i64,
    pub high: i64,
}

impl PartitionOffsets {
    /// Where the group reads next: its committed offset, or the log start without one (and
    /// never before the log start: retention may have removed what it committed).
    pub fn position(&self) -> i64 {
        self.committed.unwrap_or(self.low).max(self.low)
    }

    pub fn lag(&self) -> i64 {
        (self.high - self.position()).max(0)
    }
}

/// Where a reset moves each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Earliest,
    Latest,
    /// This offset, clamped to the partition's [low, high] watermarks.
    Offset(i64),
    /// The first offset whose timestamp is at or after these epoch milliseconds; the high
    /// watermark when none is.
    Timestamp(i64),
}

/// One partition's planned move.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub from: Option<i64>,
    pub to: i64,
    pub low: i64,
    pub high: i64,
    /// Why `to` is not what was asked, e.g. an offset outside the watermarks.
    pub note: Option<String>,
}

impl Move {
    /// Records the group reads again (or skips, when negative) once it restarts here.
    pub fn lag_after(&self) -> i64 {
        self.high - self.to
    }
}

/// The moves for `target`. `by_time` holds the broker's answer for a timestamp target (`None`
/// for a partition with no message at or after it). Pure, so the rules are unit-tested.
pub fn plan(parts: &[PartitionOffsets], target: Target, by_time: &HashMap<(String, i32), Option<i64>>) -> Vec<Move> {
    parts
        .iter()
        .map(|p| {
            let (to, note) = match target {
                Target::Earliest => (p.low, None),
                Target::Latest => (p.high, None),
                Target::Offset(o) if o < p.low => (p.low, Some(format!("{o} is before the log start; moved to {}", p.low))),
                Target::Offset(o) if o > p.high => (p.high, Some(format!("{o} is past the end; moved to {}", p.high))),
                Target::Offset(o) => (o, None),
                Target::Timestamp(_) => match by_time.get(&(p.topic.clone(), p.partition)).copied().flatten() {
                    Some(o) => (o.clamp(p.low, p.high), None),
                    None => (p.high, Some("no message at or after the timestamp; moved to the end".into())),
                },
            };
            Move { topic: p.topic.clone(), partition: p.partition, from: p.committed, to, low: p.low, high: p.high, note }
        })
        .collect()
}

/// A client for `group` that never joins it: it reads and commits the group's offsets only.
pub fn client(cfg: &KafkaConfig, group: &str) -> Result<BaseConsumer, KafkaError> {
    let mut c = super::base_config(cfg);
    c.set("group.id", group).set("enable.auto.commit", "false").set("enable.auto.offset.store", "false");
    c.create()
}

/// The group's live members, as `client-id@host`.
pub fn members<C: Consumer<X>, X: ConsumerContext>(consumer: &C, group: &str) -> Result<Vec<String>, KafkaError> {
    let list = consumer.fetch_group_list(Some(group), TIMEOUT)?;
    Ok(list
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .flat_map(|g| g.members().iter().map(|m| format!("{}@{}", m.client_id(), m.client_host())))
        .collect())
}

/// Committed offsets and watermarks of the scope's partitions (every partition of a topic
/// unless the scope names some). An unknown topic or partition is an error, never an empty list.
pub fn offsets<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    topics: &[(String, Option<Vec<i32>>)],
) -> Result<Vec<PartitionOffsets>, GroupError> {
    let mut tpl = TopicPartitionList::new();
    for (topic, wanted) in topics {
        let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
        let t = metadata.topics().iter().find(|t| t.name() == topic);
        let ids: Vec<i32> = match t {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => t.partitions().iter().map(|p| p.id()).collect(),
            _ => return Err(GroupError::NoSuchTopic { topic: topic.clone() }),
        };
        match wanted {
            None => ids.iter().for_each(|&p| {
                tpl.add_partition(topic, p);
            }),
            Some(wanted) => {
                for &p in wanted {
                    if !ids.contains(&p) {
                        return Err(GroupError::NoSuchPartition { topic: topic.clone(), partition: p, count: ids.len() });
                    }
                    tpl.add_partition(topic, p);
                }
            }
        }
    }
    Ok(read(consumer, tpl)?)
}

/// The group's committed offset and the watermarks of each partition of `tpl`.
pub fn read<C: Consumer<X>, X: ConsumerContext>(consumer: &C, tpl: TopicPartitionList) -> Result<Vec<PartitionOffsets>, KafkaError> {
    let committed = consumer.committed_offsets(tpl, TIMEOUT)?;
    let mut out = Vec::new();
    for e in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(e.topic(), e.partition(), TIMEOUT)?;
        let committed = match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
        out.push(PartitionOffsets { topic: e.topic().to_string(), partition: e.partition(), committed, low, high });
    }
    Ok(out)
}

/// Reads the scope and plans the moves for `target`, refusing while the group has live members.
pub fn plan_reset(consumer: &BaseConsumer, scope: &Scope, target: Target) -> Result<Vec<Move>, GroupError> {
    refuse_live(consumer, &scope.group)?;
    let parts = offsets(consumer, &scope.topics)?;
    let mut by_time = HashMap::new();
    if let Target::Timestamp(ms) = target {
        let mut tpl = TopicPartitionList::new();
        for p in &parts {
            tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(ms))?;
        }
        for e in consumer.offsets_for_times(tpl, TIMEOUT)?.elements() {
            let found = match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            };
            by_time.insert((e.topic().to_string(), e.partition()), found);
        }
    }
    Ok(plan(&parts, target, &by_time))
}

/// Commits the moves and reads them back.
pub fn apply(consumer: &BaseConsumer, group: &str, moves: &[Move]) -> Result<(), GroupError> {
    refuse_live(consumer, group)?;
    let mut tpl = TopicPartitionList::new();
    for m in moves {
        tpl.add_partition_offset(&m.topic, m.partition, Offset::Offset(m.to))?;
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Err(KafkaError::ConsumerCommit(
            RDKafkaErrorCode::UnknownMemberId | RDKafkaErrorCode::IllegalGeneration | RDKafkaErrorCode::RebalanceInProgress,
        )) => {
            let members = members(consumer, group).unwrap_or_default();
            return Err(GroupError::LiveMembers { group: group.to_string(), members });
        }
        other => other?,
    }
    let mut check = TopicPartitionList::new();
    for m in moves {
        check.add_partition(&m.topic, m.partition);
    }
    let read = consumer.committed_offsets(check, TIMEOUT)?;
    for m in moves {
        let found = read.find_partition(&m.topic, m.partition).and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        });
        if found != Some(m.to) {
            return Err(GroupError::NotConfirmed { topic: m.topic.clone(), partition: m.partition, wanted: m.to, found });
        }
    }
    Ok(())
}

fn refuse_live(consumer: &BaseConsumer, group: &str) -> Result<(), GroupError> {
    let members = members(consumer, group)?;
    if members.is_empty() { Ok(()) } else { Err(GroupError::LiveMembers { group: group.to_string(), members }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(partition: i32, committed: Option<i64>, low: i64, high: i64) -> PartitionOffsets {
        PartitionOffsets { topic: "t".into(), partition, committed, low, high }
    }

    #[test]
    fn earliest_and_latest_follow_the_watermarks() {
        let parts = [p(0, Some(7), 2, 10), p(1, None, 0, 0)];
        let m = plan(&parts, Target::Earliest, &HashMap::new());
        assert_eq!((m[0].from, m[0].to, m[0].lag_after()), (Some(7), 2, 8));
        assert_eq!((m[1].from, m[1].to), (None, 0));
        let m = plan(&parts, Target::Latest, &HashMap::new());
        assert_eq!((m[0].to, m[0].lag_after()), (10, 0));
    }

    #[test]
    fn an_offset_outside_the_log_is_clamped_and_says_so() {
        let parts = [p(0, Some(7), 2, 10)];
        let m = plan(&parts, Target::Offset(5), &HashMap::new());
        assert_eq!((m[0].to, m[0].note.as_deref()), (5, None));
        let m = plan(&parts, Target::Offset(0), &HashMap::new());
        assert_eq!(m[0].to, 2);
        assert!(m[0].note.as_deref().unwrap().contains("before the log start"), "{m:?}");
        let m = plan(&parts, Target::Offset(99), &HashMap::new());
        assert_eq!(m[0].to, 10);
        assert!(m[0].note.as_deref().unwrap().contains("past the end"), "{m:?}");
    }

    #[test]
    fn a_timestamp_past_every_message_moves_to_the_end() {
        let parts = [p(0, Some(7), 2, 10), p(1, Some(1), 0, 4)];
        let by_time = HashMap::from([(("t".to_string(), 0), Some(6)), (("t".to_string(), 1), None)]);
        let m = plan(&parts, Target::Timestamp(1_700_000_000_000), &by_time);
        assert_eq!((m[0].to, m[0].note.is_none()), (6, true));
        assert_eq!(m[1].to, 4);
        assert!(m[1].note.as_deref().unwrap().contains("no message at or after"), "{m:?}");
    }

    #[test]
    fn position_never_precedes_the_log_start() {
        assert_eq!((p(0, Some(1), 5, 9).position(), p(0, Some(1), 5, 9).lag()), (5, 4));
        assert_eq!(p(0, None, 3, 3).lag(), 0);
    }
}
