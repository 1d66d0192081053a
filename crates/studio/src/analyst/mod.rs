//! The analyst GraphQL API (`slate run api`, and mounted by the demo): read-only queries over
//! what the SQL sink builds (`budget_vs_actuals`, `over_budget_productions`,
//! `cash_flow_by_month`, on PostgreSQL or SQLite) and entity history from the audit sink's
//! Parquet tree.
//!
//! # Contracts
//! - **Read-only.** Nothing here writes: database sessions are read-only (see `db.rs`), the
//!   audit tree is only listed and read. The API never migrates; it needs the views the SQL sink
//!   applies from [`views`] (`sinks.sql.migrations`) and says so ([`AnalystError::NoTables`])
//!   when they are missing.
//! - **Freshness is the sink's.** On PostgreSQL, production numbers come from a materialized view
//!   the sink refreshes (`sinks.sql.refresh_views`) every `sinks.sql.refresh_interval`; cash flow is always current; SQLite
//!   views are always current. History shows what the audit sink has durably written.
//! - **Bounded work per request.** Depth and complexity limits refuse abusive queries before they
//!   run, `first` is capped by `api.max_page_size`, pagination is keyset (no OFFSET scans), the
//!   pool has `api.max_connections` connections, and a history lookup keeps at most `first` rows.
//!   Introspection-only queries (GraphiQL's) get a deeper depth limit; they never touch data.
//! - **Mountable.** [`router`] has no fallback and no global state: merge it into any server.
//!
//! # Schema (camelCase)
//! `productions(first, after, status)` and `overBudget(first, after)` → `ProductionConnection`
//! (`edges { cursor node }`, `nodes`, `pageInfo { hasNextPage endCursor }`, `totalCount`);
//! `production(id)`; `cashFlowByMonth(productionId, currency, from, to)`;
//! `history(entity, id, first)`. The SDL: `Analyst::schema().sdl()`.

mod db;
mod history;
mod http;
mod model;
mod queries;
mod schema;
pub mod views;

pub use db::Db;
pub use http::router;
pub use schema::AnalystSchema;

use crate::config::{ApiConfig, Config, Secret, SecretUrl};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum AnalystError {
    /// The database cannot be reached (yet): worth retrying with backoff.
    #[error("database {url} unavailable: {source}")]
    Unavailable { url: String, source: sqlx::Error },
    /// The database answered but refused us (credentials, no such database, not a database).
    #[error("database {url}: {source}")]
    Database { url: String, source: sqlx::Error },
    #[error("invalid database url '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The sink has not created its tables and views there yet.
    #[error(
        "no SQL sink tables in {url}; start `slate run sink sql` first, with sinks.sql.migrations set to the analyst views \
         (migrations/sql, or migrations/sqlite for SQLite) and sinks.sql.refresh_views = [\"budget_vs_actuals\"] on PostgreSQL"
    )]
    NoTables { url: String },
}

impl AnalystError {
    /// Whether waiting may help (the database is down or starting), as opposed to needing an
    /// operator.
    pub fn is_transient(&self) -> bool {
        matches!(self, AnalystError::Unavailable { .. })
    }
}

/// What resolvers share: the pool, the audit tree, the page size cap.
pub(crate) struct Store {
    db: Db,
    audit_dir: PathBuf,
    max_page_size: usize,
}

/// A ready API: the schema with its data and limits, and the bearer token. Cloning is cheap.
#[derive(Clone)]
pub struct Analyst {
    schema: AnalystSchema,
    /// The same schema with the deeper depth limit of introspection-only queries (GraphiQL).
    introspection: AnalystSchema,
    db: Db,
    bearer_token: Option<Secret>,
}

impl Analyst {
    /// Connects to `api.database_url` (default `sinks.sql.database_url`) and reads history from
    /// `api.audit_dir` (default `sinks.audit.dir`; a tree that does not exist yet is an empty
    /// history).
    pub async fn connect(cfg: &Config) -> Result<Analyst, AnalystError> {
        let url: &SecretUrl = cfg.api.database_url.as_ref().unwrap_or(&cfg.sinks.sql.database_url);
        let db = Db::connect(url, cfg.api.max_connections).await?;
        let audit_dir = cfg.api.audit_dir.clone().unwrap_or_else(|| cfg.sinks.audit.dir.clone());
        Ok(Analyst::from_db(db, audit_dir, &cfg.api))
    }

    /// An API over an existing pool (e.g. one the embedding process already holds); the
    /// database url and pool size of `api` are not used.
    pub fn from_db(db: Db, audit_dir: PathBuf, api: &ApiConfig) -> Analyst {
        let store = Arc::new(Store { db: db.clone(), audit_dir, max_page_size: api.max_page_size });
        Analyst {
            schema: schema::build(store.clone(), api.max_depth, api.max_complexity),
            introspection: schema::build(store, schema::INTROSPECTION_MAX_DEPTH.max(api.max_depth), api.max_complexity),
            db,
            bearer_token: api.bearer_token.clone(),
        }
    }

    pub fn schema(&self) -> &AnalystSchema {
        &self.schema
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}
