//! The `[dashboard]` section: `slate run dashboard`, the live page over the `/metrics` of
//! separately deployed roles (the demo serves the same page over its own process's metrics).

use super::ConfigError;
use super::sections::{invalid, validate_http_url};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    pub listen: SocketAddr,
    /// Prometheus endpoints of the roles to show (enricher, sinks, studio), scraped every second
    /// and added up: several replicas of a role sum into one row.
    pub metrics_urls: Vec<String>,
    /// Per scrape; a role that does not answer in time is shown as down.
    #[serde(with = "humantime_serde")]
    pub scrape_timeout: Duration,
    /// Linked from the page header when set (the analyst API's `/graphql`).
    pub analyst_url: Option<String>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8089)),
            metrics_urls: vec!["http://127.0.0.1:9464/metrics".into(), "http://127.0.0.1:9465/metrics".into()],
            scrape_timeout: Duration::from_secs(2),
            analyst_url: None,
        }
    }
}

impl DashboardConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.metrics_urls.is_empty() {
            return Err(invalid("dashboard.metrics_urls", "is empty; list the /metrics URLs of the roles to show"));
        }
        if self.metrics_urls.len() > 64 {
            return Err(invalid("dashboard.metrics_urls", "lists more than 64 endpoints; point it at a Prometheus federation instead"));
        }
        for (i, url) in self.metrics_urls.iter().enumerate() {
            validate_http_url(&format!("dashboard.metrics_urls[{i}]"), url)?;
        }
        if self.scrape_timeout.is_zero() || self.scrape_timeout > Duration::from_secs(30) {
            return Err(invalid("dashboard.scrape_timeout", "must be between 1ms and 30s"));
        }
        if let Some(url) = &self.analyst_url {
            validate_http_url("dashboard.analyst_url", url)?;
        }
        Ok(())
    }
}
