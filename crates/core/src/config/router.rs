//! `[router]`: publish locally, route asynchronously. Events of an entity whose home is another
//! region are published to a local outbox topic (never blocking on the remote region), and
//! `slate run router` forwards them to the home region's cluster, at least once.

use super::ConfigError;
use super::sections::invalid;
use crate::catalogue::{Catalogue, EntityName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// This deployment's region. Unset: no routing, every event goes to its local topic.
    pub region: Option<String>,
    /// Home region per entity; entities not listed live in this region.
    pub entity_regions: BTreeMap<String, String>,
    /// The other regions' clusters (reached with `[kafka]`'s TLS/SASL settings).
    pub regions: BTreeMap<String, RegionConfig>,
    /// Local topic of the events waiting to be forwarded (header `slate-home-region` names
    /// their region, `slate-home-topic` their topic there).
    pub outbox_topic: String,
    /// The router's consumer group on the local cluster.
    pub group_id: String,
    /// Most outbox events forwarded in one batch.
    pub batch_max_events: usize,
    /// First wait before a batch the home region did not acknowledge is sent again; doubles up
    /// to `max_backoff`.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Where `slate run router` serves `/metrics` and `/health`.
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub bootstrap_servers: String,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            region: None,
            entity_regions: BTreeMap::new(),
            regions: BTreeMap::new(),
            outbox_topic: "slate.outbox".into(),
            group_id: "slate-router".into(),
            batch_max_events: 500,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9467))),
        }
    }
}

impl RouterConfig {
    pub fn validate(&self, catalogue: &Catalogue) -> Result<(), ConfigError> {
        if self.region.is_none() && !self.entity_regions.is_empty() {
            return Err(invalid("router.region", "must name this deployment's region when router.entity_regions is set"));
        }
        for (entity, region) in &self.entity_regions {
            if !EntityName::lookup(entity).is_ok_and(|n| catalogue.contains(n)) {
                return Err(invalid(
                    &format!("router.entity_regions.{entity}"),
                    "names an entity the catalogue does not declare; use an entity name from [catalogue]",
                ));
            }
            if Some(region) != self.region.as_ref() && !self.regions.contains_key(region) {
                return Err(invalid(
                    &format!("router.entity_regions.{entity}"),
                    format!("region `{region}` has no cluster; add [router.regions.{region}] with its bootstrap_servers"),
                ));
            }
        }
        for (region, r) in &self.regions {
            if r.bootstrap_servers.trim().is_empty() {
                return Err(invalid(&format!("router.regions.{region}.bootstrap_servers"), "must list the region's brokers"));
            }
        }
        if self.outbox_topic.trim().is_empty() || self.group_id.trim().is_empty() {
            return Err(invalid("router.outbox_topic", "router.outbox_topic and router.group_id must not be empty"));
        }
        if self.batch_max_events == 0 || self.backoff.is_zero() || self.max_backoff < self.backoff {
            return Err(invalid("router.batch_max_events", "batch_max_events must be positive and 0 < backoff <= max_backoff"));
        }
        Ok(())
    }

    /// The home region of `entity`'s events when it is not this one.
    pub fn remote_home(&self, entity: EntityName) -> Option<&str> {
        let local = self.region.as_deref()?;
        let home = self.entity_regions.iter().find(|(e, _)| EntityName::lookup(e).is_ok_and(|n| n == entity))?.1;
        (home != local).then_some(home.as_str())
    }
}
