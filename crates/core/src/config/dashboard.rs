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
    /// Prometheus endpoints of a shadow pipeline (its enricher and sinks, in their own consumer
    /// groups) and of its validator (`slate run shadow`). Scraped like `metrics_urls` but summed
    /// apart, so the two pipelines never add up into one row; the page then shows a "Live vs
    /// shadow" panel (throughput, freshness and the validator's match rate per source). Empty
    /// (the default): no shadow pipeline, no panel. At most 64, http(s) like `metrics_urls`.
    pub shadow_metrics_urls: Vec<String>,
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
            shadow_metrics_urls: Vec::new(),
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
        validate_urls("dashboard.metrics_urls", &self.metrics_urls)?;
        validate_urls("dashboard.shadow_metrics_urls", &self.shadow_metrics_urls)?;
        if self.scrape_timeout.is_zero() || self.scrape_timeout > Duration::from_secs(30) {
            return Err(invalid("dashboard.scrape_timeout", "must be between 1ms and 30s"));
        }
        if let Some(url) = &self.analyst_url {
            validate_http_url("dashboard.analyst_url", url)?;
        }
        Ok(())
    }
}

/// At most [`MAX_URLS`] endpoints, each an http(s) URL with a host; errors name `key[i]`.
fn validate_urls(key: &str, urls: &[String]) -> Result<(), ConfigError> {
    if urls.len() > MAX_URLS {
        return Err(invalid(key, "lists more than 64 endpoints; point it at a Prometheus federation instead"));
    }
    for (i, url) in urls.iter().enumerate() {
        validate_http_url(&format!("{key}[{i}]"), url)?;
    }
    Ok(())
}

/// One scrape per endpoint per second: beyond this, a Prometheus federation is the better tool.
const MAX_URLS: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn with_shadow(urls: Vec<String>) -> Result<(), ConfigError> {
        DashboardConfig { shadow_metrics_urls: urls, ..DashboardConfig::default() }.validate()
    }

    #[test]
    fn shadow_metrics_urls_default_to_none_and_are_validated_like_metrics_urls() {
        assert!(DashboardConfig::default().shadow_metrics_urls.is_empty(), "no shadow panel unless asked for");
        assert!(with_shadow(vec![]).is_ok());
        assert!(with_shadow(vec!["https://shadow-enricher:9464/metrics".into()]).is_ok());
        let err = with_shadow(vec!["http://ok:1/metrics".into(), "validator:9470/metrics".into()]).expect_err("no scheme");
        assert!(err.to_string().contains("dashboard.shadow_metrics_urls[1]"), "{err}");
        let many = (0..65).map(|i| format!("http://h{i}:9464/metrics")).collect();
        let err = with_shadow(many).expect_err("too many");
        assert!(err.to_string().contains("dashboard.shadow_metrics_urls"), "{err}");
        assert!(with_shadow((0..64).map(|i| format!("http://h{i}:9464/metrics")).collect()).is_ok(), "64 is the limit, not 63");
    }
}
