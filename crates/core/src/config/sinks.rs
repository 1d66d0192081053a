//! The `[sinks]` section: the independent consumers of the enriched topics.

use super::sections::{invalid, validate_http_url};
use super::{ConfigError, Secret, SecretUrl};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinksConfig {
    /// Each sink's consumer group is `<group_prefix><sink>` (sql, search, audit).
    pub group_prefix: String,
    /// Enriched topics read: `<topic_prefix><entity>.enriched` (the enricher's output prefix).
    pub topic_prefix: String,
    /// Permanently rejected records go here, with the reason in headers.
    pub dlq_topic: String,
    pub batch_max_events: usize,
    #[serde(with = "humantime_serde")]
    pub batch_max_wait: Duration,
    /// First wait after a failed write; doubles up to `max_backoff` while the target stays down.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// `/metrics` and `/health` of a sink process (one listener serves every sink it runs).
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub sql: SqlSinkConfig,
    pub search: SearchSinkConfig,
    pub audit: AuditSinkConfig,
}

impl Default for SinksConfig {
    fn default() -> Self {
        Self {
            group_prefix: "slate-sink-".into(),
            topic_prefix: "slate.".into(),
            dlq_topic: "slate.dlq".into(),
            batch_max_events: 500,
            batch_max_wait: Duration::from_millis(100),
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            metrics_listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9465))),
            sql: SqlSinkConfig::default(),
            search: SearchSinkConfig::default(),
            audit: AuditSinkConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlSinkConfig {
    /// PostgreSQL (`postgres://…`) or SQLite (`sqlite://path.db`, `sqlite::memory:`): the
    /// scheme picks the backend (see `sink::sql::connect_any`).
    pub database_url: SecretUrl,
    pub max_connections: u32,
    /// How often `refresh_views` are refreshed (their staleness bound).
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// A directory of `NNNN_name.sql` files applied once each, in version order, after the
    /// catalogue's generated tables: the deployment's views, indexes, grants (`sink::sql::migrations`).
    pub migrations: Option<PathBuf>,
    /// Materialized views (created by `migrations`) the sink refreshes `CONCURRENTLY` every
    /// `refresh_interval`; PostgreSQL only (SQLite has plain views, always current).
    pub refresh_views: Vec<String>,
}

impl SqlSinkConfig {
    /// Whether `database_url` names SQLite rather than PostgreSQL.
    pub fn is_sqlite(&self) -> bool {
        self.database_url.expose().starts_with("sqlite:")
    }
}

impl Default for SqlSinkConfig {
    fn default() -> Self {
        Self {
            database_url: SecretUrl::new("postgres://postgres@127.0.0.1:5432/slate"),
            max_connections: 4,
            refresh_interval: Duration::from_secs(30),
            migrations: None,
            refresh_views: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSinkConfig {
    /// Elasticsearch or OpenSearch base URL.
    pub url: String,
    /// Documents of an entity go to index `<index_prefix><entity>`.
    pub index_prefix: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for SearchSinkConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9200".into(),
            index_prefix: "slate-".into(),
            username: None,
            password: None,
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSinkConfig {
    /// Root of the Hive-partitioned Parquet tree (`entity=…/dt=YYYY-MM-DD/`).
    pub dir: PathBuf,
}

impl Default for AuditSinkConfig {
    fn default() -> Self {
        Self { dir: PathBuf::from("slate-audit") }
    }
}

impl SinksConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100_000).contains(&self.batch_max_events) {
            return Err(invalid("sinks.batch_max_events", format!("{} is out of range; use 1..=100000", self.batch_max_events)));
        }
        if self.batch_max_wait.is_zero() {
            return Err(invalid("sinks.batch_max_wait", "must be positive, e.g. \"100ms\""));
        }
        if self.backoff.is_zero() || self.max_backoff < self.backoff {
            return Err(invalid("sinks.backoff", "must be positive and at most sinks.max_backoff"));
        }
        if self.dlq_topic.is_empty() {
            return Err(invalid("sinks.dlq_topic", "must not be empty"));
        }
        let url = self.sql.database_url.expose();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || self.sql.is_sqlite()) {
            return Err(invalid(
                "sinks.sql.database_url",
                format!(
                    "'{}' is neither a postgres:// nor a sqlite: URL (sqlite://path.db, sqlite::memory:)",
                    self.sql.database_url.redacted()
                ),
            ));
        }
        if self.sql.refresh_interval < Duration::from_secs(1) {
            return Err(invalid("sinks.sql.refresh_interval", "must be at least 1s; it bounds how stale the analyst views are"));
        }
        if let Some(dir) = &self.sql.migrations
            && !dir.is_dir()
        {
            return Err(invalid(
                "sinks.sql.migrations",
                format!("{} is not a directory; point it at a directory of NNNN_name.sql files, or remove the key", dir.display()),
            ));
        }
        if let Some(bad) = self.sql.refresh_views.iter().find(|v| !is_sql_name(v)) {
            return Err(invalid(
                "sinks.sql.refresh_views",
                format!("{bad:?} is not a view name; use [schema.]name of letters, digits and underscores"),
            ));
        }
        if self.sql.is_sqlite() && !self.sql.refresh_views.is_empty() {
            return Err(invalid(
                "sinks.sql.refresh_views",
                "SQLite has no materialized views (its views are always current); remove the key for a sqlite: database_url",
            ));
        }
        if self.sql.max_connections == 0 {
            return Err(invalid("sinks.sql.max_connections", "must be at least 1"));
        }
        validate_http_url("sinks.search.url", &self.search.url)?;
        if self.search.password.is_some() && self.search.username.is_none() {
            return Err(invalid("sinks.search.username", "a password is set without a username"));
        }
        if self.search.index_prefix.chars().any(|c| c.is_ascii_uppercase() || " \"*\\<|,>/?".contains(c)) {
            return Err(invalid(
                "sinks.search.index_prefix",
                format!("'{}' is not a valid index name prefix (lowercase, no spaces or \\\"*<|,>/?)", self.search.index_prefix),
            ));
        }
        Ok(())
    }
}

/// A plain or schema-qualified SQL identifier (no quoting needed, nothing to inject).
fn is_sql_name(name: &str) -> bool {
    let part = |p: &str| {
        p.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    match name.split_once('.') {
        Some((schema, view)) => part(schema) && part(view),
        None => part(name),
    }
}
