//! `[shadow]`: the validator that compares a live pipeline with a shadow of it (`slate shadow
//! compare`, `slate run shadow`). A shadow is an ordinary enricher with its own
//! `enricher.group_id` and `enricher.output_topic_prefix` (and optionally sinks with their own
//! `sinks.topic_prefix`, database and index prefix): config only, nothing the live pipeline reads
//! changes. This section tells the validator where both sides are.

use super::ConfigError;
use super::SecretUrl;
use super::sections::invalid;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShadowConfig {
    /// The live pipeline's enriched topics, `<prefix><entity>.enriched`. Unset: this config's
    /// `enricher.output_topic_prefix`.
    pub live_prefix: Option<String>,
    /// The shadow enricher's `enricher.output_topic_prefix`.
    pub shadow_prefix: String,
    /// A key held by one side only, or at a newer version on one side, is only counted as
    /// missing (or stale) once the newer record is older than this: the two pipelines do not
    /// run in lockstep.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// Top-level fields (record fields, SQL columns, document fields) left out of the
    /// comparison: provenance that legitimately differs between two pipelines. SQL rows also
    /// leave out the sink's own `event_ts` and `updated_at`.
    pub ignore_fields: Vec<String>,
    /// Differing keys listed per entity in a report.
    pub samples: usize,
    /// `slate run shadow`: how often it compares.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Where `slate run shadow` serves `/metrics` (match rate) and `/health`.
    pub metrics_listen: Option<SocketAddr>,
    /// The shadow SQL sink's database (PostgreSQL), compared with `sinks.sql.database_url`.
    /// Unset: SQL rows are not compared.
    pub sql_url: Option<SecretUrl>,
    /// The shadow search sink's `index_prefix`, compared with `sinks.search.index_prefix` on
    /// `sinks.search.url`. Unset: search documents are not compared.
    pub index_prefix: Option<String>,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        Self {
            live_prefix: None,
            shadow_prefix: "shadow.".into(),
            grace: Duration::from_secs(30),
            ignore_fields: vec!["_meta".into()],
            samples: 10,
            interval: Duration::from_secs(30),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9468))),
            sql_url: None,
            index_prefix: None,
        }
    }
}

impl ShadowConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.shadow_prefix.is_empty() {
            return Err(invalid("shadow.shadow_prefix", "must not be empty; set it to the shadow enricher's output_topic_prefix"));
        }
        if self.interval.is_zero() {
            return Err(invalid("shadow.interval", "must be positive, e.g. \"30s\""));
        }
        if self.samples > 1000 {
            return Err(invalid("shadow.samples", "at most 1000 samples per entity"));
        }
        Ok(())
    }

    /// Checked by the validator only (a shadow enricher may load the same file with its own
    /// `output_topic_prefix`): the two sides must be different topics and indices.
    /// `live` is the live prefix in effect (see [`ShadowConfig::live_prefix`]).
    pub fn validate_sides(&self, live: &str, live_index_prefix: &str) -> Result<(), ConfigError> {
        if self.shadow_prefix == live {
            return Err(invalid(
                "shadow.shadow_prefix",
                format!(
                    "`{live}` is also the live prefix (shadow.live_prefix, else enricher.output_topic_prefix): a shadow \
                     writes topics of its own (e.g. \"shadow.\")"
                ),
            ));
        }
        if self.index_prefix.as_deref() == Some(live_index_prefix) {
            return Err(invalid(
                "shadow.index_prefix",
                format!("`{live_index_prefix}` is also sinks.search.index_prefix: the shadow search sink needs indices of its own"),
            ));
        }
        Ok(())
    }
}
