//! The analyst API's read-only handle on the SQL sink's database: PostgreSQL or SQLite, chosen by
//! the URL's scheme like the sink does, with one SQL text per query for both backends.
//!
//! Contracts:
//! - **Read-only.** PostgreSQL sessions start with `default_transaction_read_only = on`; SQLite
//!   connections run `PRAGMA query_only = ON` and never create the file. The API cannot change
//!   what the sink wrote, whatever a query does.
//! - **Portable SQL.** Statements use `$1`-style parameters (both drivers accept them) and cast
//!   every computed value to a type both decode the same way: sums and differences to `BIGINT`
//!   (PostgreSQL sums are NUMERIC), dates to `TEXT` (PostgreSQL `DATE`, SQLite already text;
//!   `DateStyle` is pinned to ISO so both read `YYYY-MM-DD`).
//! - **The sink owns the schema.** [`Db::connect`] checks the three analyst views exist and
//!   otherwise fails with [`AnalystError::NoTables`]; it never migrates.

use super::AnalystError;
use crate::config::SecretUrl;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Row as _, SqlSafeStr};
use std::str::FromStr;
use std::time::Duration;

/// How long a query waits for a pooled connection before it fails as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SQLite reader waits on a lock (a checkpoint by the sink) before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The views the API reads; the sink's migrations create them.
const VIEWS: [&str; 3] = ["budget_vs_actuals", "over_budget_productions", "cash_flow_by_month"];

/// A pool on the SQL sink's database. Cloning shares the pool.
#[derive(Clone, Debug)]
pub enum Db {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

/// A value bound to a `$n` parameter.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(Option<String>),
    Int(i64),
}

/// Typed column access over either backend's row, so one mapping function serves both.
pub(crate) trait Columns {
    fn text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;

    /// A column the query guarantees non-null (a key, a COALESCE, a count).
    fn required_text(&self, column: &str) -> Result<String, sqlx::Error> {
        self.text(column)?.ok_or_else(|| null_in(column))
    }

    fn required_int(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.int(column)?.ok_or_else(|| null_in(column))
    }
}

fn null_in(column: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: column.to_string(), source: "unexpected NULL".into() }
}

impl Columns for PgRow {
    fn text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(column)
    }
    fn int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(column)
    }
}

impl Columns for SqliteRow {
    fn text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(column)
    }
    fn int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(column)
    }
}

impl Db {
    /// Connects to `url` (`postgres://…` or `sqlite:…`) read-only and checks the sink's views
    /// are there. Unreachable → [`AnalystError::Unavailable`] (worth waiting for); a SQLite file
    /// that does not exist yet or a database without the views → [`AnalystError::NoTables`].
    pub async fn connect(url: &SecretUrl, max_connections: u32) -> Result<Db, AnalystError> {
        let raw = url.expose();
        let db = if raw.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(raw)
                .map_err(|e| AnalystError::InvalidUrl { url: url.redacted(), reason: e.to_string() })?
                .create_if_missing(false)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .pragma("query_only", "ON");
            let in_memory = raw.starts_with("sqlite::memory:") || raw.contains("mode=memory");
            if !in_memory && !options.get_filename().exists() {
                return Err(AnalystError::NoTables { url: url.redacted() });
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(|e| connect_error(url, e))?;
            Db::Sqlite(pool)
        } else {
            let options = PgConnectOptions::from_str(raw)
                .map_err(|e| AnalystError::InvalidUrl { url: url.redacted(), reason: e.to_string() })?
                .application_name("slate-analyst")
                .options([("default_transaction_read_only", "on"), ("DateStyle", "ISO")]);
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(|e| connect_error(url, e))?;
            Db::Pg(pool)
        };
        if !db.has_views().await.map_err(|e| connect_error(url, e))? {
            return Err(AnalystError::NoTables { url: url.redacted() });
        }
        Ok(db)
    }

    /// Whether every analyst view exists.
    pub async fn has_views(&self) -> Result<bool, sqlx::Error> {
        match self {
            Db::Pg(pool) => {
                sqlx::query_scalar(
                    "SELECT to_regclass('budget_vs_actuals') IS NOT NULL AND to_regclass('over_budget_productions') IS NOT NULL \
                     AND to_regclass('cash_flow_by_month') IS NOT NULL",
                )
                .fetch_one(pool)
                .await
            }
            Db::Sqlite(pool) => {
                let found: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'view' AND name IN ($1, $2, $3)")
                    .bind(VIEWS[0])
                    .bind(VIEWS[1])
                    .bind(VIEWS[2])
                    .fetch_one(pool)
                    .await?;
                Ok(found == VIEWS.len() as i64)
            }
        }
    }

    /// A round trip to the database (`/health`).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match self {
            Db::Pg(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            Db::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Db::Pg(_) => "postgresql",
            Db::Sqlite(_) => "sqlite",
        }
    }

    /// Runs `sql` with `binds` on whichever pool this is, mapping each row with `map`.
    pub(crate) async fn fetch<T>(
        &self,
        sql: impl SqlSafeStr,
        binds: &[Bind],
        map: fn(&dyn Columns) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, sqlx::Error> {
        match self {
            Db::Pg(pool) => {
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = match b {
                        Bind::Text(t) => q.bind(t.clone()),
                        Bind::Int(i) => q.bind(*i),
                    };
                }
                q.fetch_all(pool).await?.iter().map(|r| map(r)).collect()
            }
            Db::Sqlite(pool) => {
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = match b {
                        Bind::Text(t) => q.bind(t.clone()),
                        Bind::Int(i) => q.bind(*i),
                    };
                }
                q.fetch_all(pool).await?.iter().map(|r| map(r)).collect()
            }
        }
    }
}

/// Whether a database error is worth waiting out: the server is not there (yet), is starting or
/// shutting down, or is out of resources. Everything else (credentials, a missing database, a
/// corrupt file) needs an operator.
pub(crate) fn is_transient(e: &sqlx::Error) -> bool {
    use sqlx::Error as E;
    match e {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => true,
        E::Database(db) => db.code().is_some_and(|code| {
            // PostgreSQL SQLSTATE classes 08 (connection), 53 (resources), 57 (operator
            // intervention: starting up, shutting down); SQLite SQLITE_BUSY/SQLITE_LOCKED.
            matches!(code.get(..2), Some("08" | "53" | "57")) || matches!(code.parse::<i32>().map(|c| c & 0xff), Ok(5 | 6))
        }),
        _ => false,
    }
}

fn connect_error(url: &SecretUrl, source: sqlx::Error) -> AnalystError {
    if is_transient(&source) {
        AnalystError::Unavailable { url: url.redacted(), source }
    } else {
        AnalystError::Database { url: url.redacted(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_told_apart() {
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(is_transient(&sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
    }

    #[tokio::test]
    async fn a_missing_sqlite_file_is_not_created() {
        let path = std::env::temp_dir().join(format!("slate-analyst-missing-{}.db", uuid::Uuid::new_v4().simple()));
        let url = SecretUrl::new(format!("sqlite://{}", path.display()));
        let err = Db::connect(&url, 1).await.expect_err("no database yet");
        assert!(matches!(err, AnalystError::NoTables { .. }), "{err}");
        assert!(err.to_string().contains("start `slate run sink sql` first"), "{err}");
        assert!(!path.exists(), "the API must not create the sink's database");
    }
}
