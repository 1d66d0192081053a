//! `[kafka.standby]`: a warm standby cluster. Producers (`slate::publish`) fail over to it when
//! the primary stops acknowledging and fail back once it answers again; the enricher consumes the
//! same input topics on both clusters, so nothing published to either is missed. The standby is
//! reached with the primary's security settings (TLS, SASL) and client id.

use super::ConfigError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StandbyConfig {
    /// Comma-separated `host:port` list of the standby cluster.
    pub bootstrap_servers: String,
    /// How long a publish waits for the primary's acknowledgements before it sends the events
    /// not yet acknowledged to the standby (and later publishes go there).
    #[serde(with = "humantime_serde", default = "default_failover_after")]
    pub failover_after: Duration,
    /// How long publishing stays on the standby before the primary is asked (a metadata request)
    /// whether it is back; publishing returns to it when it answers.
    #[serde(with = "humantime_serde", default = "default_fail_back_after")]
    pub fail_back_after: Duration,
}

fn default_failover_after() -> Duration {
    Duration::from_secs(5)
}

fn default_fail_back_after() -> Duration {
    Duration::from_secs(30)
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), message: message.into() }
}

impl StandbyConfig {
    /// Checks against the primary's bootstrap servers and message timeout.
    pub(super) fn validate(&self, primary_bootstrap: &str, message_timeout: Duration) -> Result<(), ConfigError> {
        if self.bootstrap_servers.trim().is_empty() || self.bootstrap_servers == primary_bootstrap {
            return Err(invalid(
                "kafka.standby.bootstrap_servers",
                "must name the standby cluster's brokers, not be empty or the primary's kafka.bootstrap_servers",
            ));
        }
        if self.failover_after < Duration::from_millis(100) || self.failover_after >= message_timeout {
            return Err(invalid(
                "kafka.standby.failover_after",
                format!("must be at least 100ms and below kafka.producer.message_timeout ({message_timeout:?})"),
            ));
        }
        if self.fail_back_after < Duration::from_secs(1) {
            return Err(invalid("kafka.standby.fail_back_after", "must be at least 1s (each fail-back asks the primary for metadata)"));
        }
        Ok(())
    }
}
