//! The `[api]` section: the analyst GraphQL API (`slate run api`, and the demo's `/graphql`),
//! read-only over the SQL sink's database and the audit sink's Parquet tree.

use super::sections::invalid;
use super::{ConfigError, Secret, SecretUrl};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Where `/graphql` (POST queries, GET GraphiQL) and `/health` listen.
    pub listen: SocketAddr,
    /// The SQL sink's database; unset means `sinks.sql.database_url`.
    pub database_url: Option<SecretUrl>,
    /// The audit sink's Parquet tree (entity history); unset means `sinks.audit.dir`.
    pub audit_dir: Option<PathBuf>,
    /// When set, every request needs `Authorization: Bearer <token>`.
    pub bearer_token: Option<Secret>,
    /// Deepest query nesting accepted.
    pub max_depth: usize,
    /// Highest query complexity accepted (every field costs 1; list fields cost per item asked).
    pub max_complexity: usize,
    /// Largest `first` a paginated field accepts.
    pub max_page_size: usize,
    pub max_connections: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8088)),
            database_url: None,
            audit_dir: None,
            bearer_token: None,
            max_depth: 8,
            max_complexity: 5_000,
            max_page_size: 500,
            max_connections: 4,
        }
    }
}

impl ApiConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(2..=64).contains(&self.max_depth) {
            return Err(invalid("api.max_depth", format!("{} is out of range; use 2..=64", self.max_depth)));
        }
        if self.max_complexity < 10 {
            return Err(invalid("api.max_complexity", "must be at least 10"));
        }
        if !(1..=10_000).contains(&self.max_page_size) {
            return Err(invalid("api.max_page_size", format!("{} is out of range; use 1..=10000", self.max_page_size)));
        }
        if self.max_connections == 0 {
            return Err(invalid("api.max_connections", "must be at least 1"));
        }
        if let Some(url) = &self.database_url {
            let u = url.expose();
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://") || u.starts_with("sqlite:")) {
                return Err(invalid(
                    "api.database_url",
                    format!(
                        "'{}' is neither a postgres:// nor a sqlite: URL; or leave it unset to use sinks.sql.database_url",
                        url.redacted()
                    ),
                ));
            }
        }
        if self.bearer_token.as_ref().is_some_and(|t| t.expose().len() < 16) {
            return Err(invalid(
                "api.bearer_token",
                "is shorter than 16 characters; use a long random token (e.g. `openssl rand -hex 32`)",
            ));
        }
        Ok(())
    }
}
