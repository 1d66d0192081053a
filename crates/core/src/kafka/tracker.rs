//! Which offset of each partition may be committed.
//!
//! Kafka's committed offset is the *next* offset to read, so after processing offsets 0..=41 of
//! a partition the commit is 42 (last + 1). An offset becomes committable only when it and every
//! offset before it (of those tracked) are acknowledged: effects may complete out of order, the
//! commit never skips an unfinished one.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: BTreeMap<(String, i32), Partition>,
}

#[derive(Debug, Default)]
struct Partition {
    /// Tracked offsets not yet acknowledged.
    pending: BTreeSet<i64>,
    /// Highest offset ever tracked.
    highest: Option<i64>,
    /// The commit already handed out, so it is not handed out twice.
    committed: Option<i64>,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts tracking a consumed message.
    pub fn track(&mut self, topic: &str, partition: i32, offset: i64) {
        let p = self.partitions.entry((topic.to_string(), partition)).or_default();
        p.pending.insert(offset);
        p.highest = Some(p.highest.map_or(offset, |h| h.max(offset)));
    }

    /// Marks a message's effects as durable.
    pub fn ack(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&(topic.to_string(), partition)) {
            p.pending.remove(&offset);
        }
    }

    /// New commit offsets (next offset to read) of partitions whose committable position moved.
    pub fn take_committable(&mut self) -> Vec<(String, i32, i64)> {
        let mut out = Vec::new();
        for ((topic, partition), p) in &mut self.partitions {
            let Some(highest) = p.highest else { continue };
            let next = match p.pending.first() {
                Some(&lowest_pending) => lowest_pending,
                None => highest + 1,
            };
            if p.committed.is_none_or(|c| next > c) {
                p.committed = Some(next);
                out.push((topic.clone(), *partition, next));
            }
        }
        out
    }

    /// Forgets a partition (revoked): its offsets are the new owner's to commit.
    pub fn forget(&mut self, topic: &str, partition: i32) {
        self.partitions.remove(&(topic.to_string(), partition));
    }

    pub fn num_pending(&self) -> usize {
        self.partitions.values().map(|p| p.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_is_last_processed_plus_one() {
        let mut t = OffsetTracker::new();
        for o in 0..=41 {
            t.track("t", 0, o);
        }
        for o in 0..=41 {
            t.ack("t", 0, o);
        }
        assert_eq!(t.take_committable(), vec![("t".to_string(), 0, 42)]);
        assert!(t.take_committable().is_empty(), "the same commit is not handed out twice");
    }

    #[test]
    fn an_unfinished_offset_holds_back_the_commit() {
        let mut t = OffsetTracker::new();
        for o in 10..15 {
            t.track("t", 3, o);
        }
        for o in [10, 11, 13, 14] {
            t.ack("t", 3, o);
        }
        assert_eq!(t.take_committable(), vec![("t".to_string(), 3, 12)]);
        t.ack("t", 3, 12);
        assert_eq!(t.take_committable(), vec![("t".to_string(), 3, 15)]);
        assert_eq!(t.num_pending(), 0);
    }

    #[test]
    fn partitions_are_independent_and_forgettable() {
        let mut t = OffsetTracker::new();
        t.track("a", 0, 5);
        t.track("a", 1, 7);
        t.ack("a", 1, 7);
        assert_eq!(t.take_committable(), vec![("a".to_string(), 0, 5), ("a".to_string(), 1, 8)]);
        t.forget("a", 0);
        assert_eq!(t.num_pending(), 0);
    }
}
