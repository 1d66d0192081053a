//! The `[studio]` section: the demo/test source of truth, its faults and its load mode.

use super::ConfigError;
use super::sections::invalid;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// `slate studio`: the demo/test source of truth.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StudioConfig {
    /// HTTP listener: GraphQL at `/graphql`, `/metrics`, `/health`.
    pub http_listen: SocketAddr,
    pub grpc_listen: SocketAddr,
    /// Seed of the data generator and of the load mode: the same seed gives the same data.
    pub seed: u64,
    pub num_productions: usize,
    /// Whether mutations publish change events to Kafka.
    pub publish: bool,
    /// At start, publish a CREATE event for every seeded entity (like a CDC initial snapshot),
    /// so downstream sinks start complete instead of holding only what changes later.
    pub snapshot_on_start: bool,
    /// Change events go to `<topic_prefix><entity>.changes`.
    pub topic_prefix: String,
    /// Create the change topics at start if missing (brokers like tansu do not auto-create).
    pub create_topics: bool,
    pub topic_partitions: i32,
    pub topic_replication: i32,
    pub faults: FaultConfig,
    pub load: LoadConfig,
}

impl Default for StudioConfig {
    fn default() -> Self {
        Self {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            seed: 42,
            num_productions: 20,
            publish: true,
            snapshot_on_start: false,
            topic_prefix: "studio.".into(),
            create_topics: true,
            topic_partitions: 3,
            topic_replication: 1,
            faults: FaultConfig::default(),
            load: LoadConfig::default(),
        }
    }
}

impl StudioConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.num_productions == 0 || self.num_productions > 1_000_000 {
            return Err(invalid("studio.num_productions", format!("{} is out of range; use 1..=1000000", self.num_productions)));
        }
        if self.topic_prefix.is_empty() || !self.topic_prefix.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            return Err(invalid(
                "studio.topic_prefix",
                format!("'{}' is not a valid topic prefix; use letters, digits, '.', '_' or '-'", self.topic_prefix),
            ));
        }
        if self.topic_partitions < 1 {
            return Err(invalid("studio.topic_partitions", "must be at least 1"));
        }
        if self.topic_replication < 1 {
            return Err(invalid("studio.topic_replication", "must be at least 1"));
        }
        self.faults.validate()?;
        self.load.validate()
    }
}

/// Fault injection on the studio's read APIs (GraphQL queries, gRPC BatchGet), for benchmarks
/// and fault tests. Mutations are never faulted: they are the test driver.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Uniform extra latency in `[0, jitter]`.
    #[serde(with = "humantime_serde")]
    pub jitter: Duration,
    /// Fraction of reads answered with an error (GraphQL error / gRPC UNAVAILABLE).
    pub error_rate: f64,
    /// Fraction of reads that hang for `timeout_delay` before answering with an error.
    pub timeout_rate: f64,
    #[serde(with = "humantime_serde")]
    pub timeout_delay: Duration,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self { latency: Duration::ZERO, jitter: Duration::ZERO, error_rate: 0.0, timeout_rate: 0.0, timeout_delay: Duration::from_secs(30) }
    }
}

impl FaultConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, rate) in [("studio.faults.error_rate", self.error_rate), ("studio.faults.timeout_rate", self.timeout_rate)] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(invalid(key, format!("{rate} is not a fraction; use a value in 0.0..=1.0")));
            }
        }
        if self.error_rate + self.timeout_rate > 1.0 {
            return Err(invalid("studio.faults", "error_rate + timeout_rate must not exceed 1.0"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadConfig {
    /// Steady mutation rate of the load mode; 0 turns it off.
    pub mutations_per_sec: f64,
    /// Which keys the load mode mutates: "uniform" or "zipf:S" with exponent S > 0 (e.g. "zipf:1.1").
    pub key_skew: String,
    /// Stop after this many mutations (0 = run until shutdown).
    pub max_mutations: u64,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self { mutations_per_sec: 0.0, key_skew: "zipf:1.1".into(), max_mutations: 0 }
    }
}

impl LoadConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1_000_000.0).contains(&self.mutations_per_sec) {
            return Err(invalid("studio.load.mutations_per_sec", format!("{} is out of range; use 0..=1000000", self.mutations_per_sec)));
        }
        self.key_skew.parse::<KeySkew>().map_err(|e| invalid("studio.load.key_skew", e))?;
        Ok(())
    }

    pub fn skew(&self) -> KeySkew {
        self.key_skew.parse().expect("validated at load")
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeySkew {
    Uniform,
    Zipf(f64),
}

impl std::str::FromStr for KeySkew {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "uniform" {
            return Ok(Self::Uniform);
        }
        let bad = || format!("'{s}' is not a key skew; use \"uniform\" or \"zipf:S\" with S > 0, e.g. \"zipf:1.1\"");
        let exponent = s.strip_prefix("zipf:").ok_or_else(bad)?.parse::<f64>().map_err(|_| bad())?;
        if !(exponent > 0.0 && exponent.is_finite()) {
            return Err(bad());
        }
        Ok(Self::Zipf(exponent))
    }
}
