//! `[kafka.consumer]`: how every slate consumer group member behaves (the enricher's, its
//! retry consumer's and each sink's); checked with the rest of `[kafka]` in `sections.rs`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// How long the group waits for a silent member before rebalancing its partitions.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Longest a member may go between polls before it leaves the group
    /// (`max.poll.interval.ms`). It is also the rebalance timeout the member announces: how
    /// long the coordinator may wait for members to rejoin a rebalance, so a member killed
    /// during one can hold the whole group up to this long on brokers that wait it out.
    #[serde(with = "humantime_serde")]
    pub max_poll_interval: Duration,
    /// Longest a broker may hold a fetch waiting for data (`fetch.wait.max.ms`): a latency
    /// floor when traffic is light. librdkafka's default is 500ms; slate favours freshness.
    #[serde(with = "humantime_serde")]
    pub fetch_wait_max: Duration,
    /// A partition whose lag stays above zero while the group's committed offset does not move
    /// for this long is stalled: counted in `slate_consumer_stalled_partitions` and `/health`
    /// answers 503. `0s` turns the watch off. The retry topic's consumer allows
    /// `enricher.retry_delay_max` more, since it holds parked keys until they are due.
    #[serde(with = "humantime_serde")]
    pub stall_after: Duration,
    /// How the group spreads partitions over its members (`partition.assignment.strategy`).
    pub assignment: Assignment,
    /// Static group membership (KIP-345, `group.instance.id`) for every group this process
    /// joins: set it to a name stable across restarts of one instance and unique among live
    /// ones (a StatefulSet pod's name). A restart within `session_timeout` then takes its
    /// partitions back at once, without a rebalance of the group; an instance that stops (even
    /// cleanly) keeps its partitions until `session_timeout` passes. Unset: dynamic membership.
    pub group_instance_id: Option<String>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_secs(10),
            max_poll_interval: Duration::from_secs(300),
            fetch_wait_max: Duration::from_millis(100),
            stall_after: Duration::from_secs(120),
            assignment: Assignment::CooperativeSticky,
            group_instance_id: None,
        }
    }
}

/// The partition assignor of every slate consumer group.
///
/// `cooperative-sticky` (the default) moves only the partitions that must move when a member
/// joins or leaves (KIP-429): the others keep being consumed through the rebalance, where the
/// eager assignors stop the whole group and may shuffle every partition. Every member of one
/// group must use the same value; changing it on a running group needs a full restart of the
/// group (or a rolling one through a list both assignors share, which slate does not offer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Assignment {
    CooperativeSticky,
    Range,
    #[serde(rename = "roundrobin")]
    RoundRobin,
}

impl Assignment {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Assignment::CooperativeSticky => "cooperative-sticky",
            Assignment::Range => "range",
            Assignment::RoundRobin => "roundrobin",
        }
    }
}
