//! The SQL sink on SQLite (`sinks.sql.database_url = "sqlite://path.db"` or `"sqlite::memory:"`),
//! for the embedded demo: the same tables, guarantees and views as the PostgreSQL sink
//! ([`super::SqlSink`]), with SQLite's means. [`super::connect_any`] picks the backend by scheme.
//!
//! # Guarantees (as on PostgreSQL)
//! - **Idempotent by id + source version**: `INSERT … ON CONFLICT (id) DO UPDATE … WHERE
//!   excluded.version > <table>.version` (SQLite ≥ 3.24; the bundled one is far newer). Equal or
//!   older versions are counted stale and change nothing.
//! - **Versioned tombstones**, unversioned tombstones, re-creation and the newest-per-id choice
//!   within a batch behave exactly as documented in [`super`]; validation (`rows.rs`) is shared.
//! - **One transaction per batch**, begun `IMMEDIATE`: it takes SQLite's single write lock up
//!   front, waiting up to [`BUSY_TIMEOUT`] for another writer (a second sink process, an analyst's
//!   write), so a transaction never fails halfway on a lock upgrade. `Ok` only after `COMMIT`.
//! - **Bad data never poisons a batch**: records are validated in Rust first; should SQLite
//!   still refuse a value (a constraint, a trigger's `RAISE(ABORT)`, a too-big value), the batch is
//!   rewritten with a savepoint per record and only the refused records are rejected.
//! - **Errors are classified where they arise**: busy/locked, I/O errors, a full disk, out of
//!   memory, pool timeouts → [`SinkError::Unavailable`] (the runner retries the batch); anything
//!   else (a path that cannot be opened, a corrupt or foreign file, SQL bugs) → [`SinkError::Fatal`].
//!
//! # Storage
//! A file database is opened in WAL mode (analysts read while the sink writes) with
//! `synchronous = FULL` (SQLite's default: a committed batch survives a power cut, which the
//! runner's "offsets only after a durable write" relies on), created if missing. `sqlite::memory:`
//! lives as long as the sink: its pool keeps exactly one connection open forever (a shared-cache
//! in-memory database vanishes with its last connection).
//!
//! # Schema and the deployment's SQL
//! STRICT tables with the PostgreSQL tables' names and columns; dates are `YYYY-MM-DD` text
//! (checked), timestamps ISO-8601 UTC text, booleans 0/1. `sinks.sql.migrations` (for SQLite:
//! SQLite's dialect; the example's analyst views are `migrations/sqlite/`, plain views, always
//! current) is applied at [`SqliteSink::connect`] after the generated tables, in one
//! `BEGIN IMMEDIATE` transaction (serializing concurrent starts), recorded in
//! `slate_sql_migrations`.

use super::rows::{self, Row};
use super::sqlite_write;
use super::tables::{self, Tables};
use crate::catalogue::{Catalogue, EntityName};
use crate::config::SqlSinkConfig;
use crate::sink::{Sink, SinkError, SinkRecord, WriteOutcome};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

/// How long a transaction waits for SQLite's write lock before the batch counts as unavailable.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a write waits for a pooled connection before the batch counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Takes the write lock at `BEGIN`, so the batch cannot hit `SQLITE_BUSY` halfway through.
const BEGIN: &str = "BEGIN IMMEDIATE";

/// Creates or evolves `tables` in one `BEGIN IMMEDIATE` transaction.
async fn apply_ddl(pool: &SqlitePool, tables: &[std::sync::Arc<super::plan::Table>]) -> Result<Vec<(EntityName, String)>, SinkError> {
    let mut tx = pool.begin_with(BEGIN).await.map_err(classify)?;
    let mut conflicts = Vec::new();
    for t in tables {
        if let Err(reason) = tables::apply_sqlite(&mut tx, t, classify).await? {
            conflicts.push((t.entity, reason));
        }
    }
    tx.commit().await.map_err(classify)?;
    Ok(conflicts)
}

/// Writes enriched records to a SQLite database.
pub struct SqliteSink {
    pool: SqlitePool,
    tables: Tables,
}

impl SqliteSink {
    /// Opens (creating if missing) the database `cfg.database_url` names and applies the
    /// catalogue's tables (created or evolved from its records), then the deployment's
    /// migrations (`sinks.sql.migrations`, see [`super::migrations`]). A malformed URL, a path
    /// that cannot be opened or an unreadable migrations directory is [`SinkError::Fatal`] (an
    /// operator must fix the config); a locked database is [`SinkError::Unavailable`].
    pub async fn connect(cfg: &SqlSinkConfig, catalogue: &Catalogue) -> Result<SqliteSink, SinkError> {
        let own = super::migrations::read(cfg.migrations.as_deref())?;
        let url = cfg.database_url.expose();
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| SinkError::Fatal(format!("sqlite: invalid database_url '{}': {e}", cfg.database_url.redacted())))?
            .create_if_missing(true)
            .busy_timeout(BUSY_TIMEOUT);
        let in_memory = url.starts_with("sqlite::memory:") || url.contains("mode=memory");
        let pool = if in_memory {
            // One connection, never closed: the database lives exactly as long as the pool.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
        } else {
            SqlitePoolOptions::new()
                .max_connections(cfg.max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options.journal_mode(SqliteJournalMode::Wal))
                .await
        }
        .map_err(classify)?;
        let tables = Tables::of(catalogue)?;
        for (entity, reason) in apply_ddl(&pool, &tables.all()).await? {
            tables.halt(entity, reason);
        }
        Self::migrate(&pool, &own).await?;
        Ok(SqliteSink { pool, tables })
    }

    /// A sink of the built-in catalogue on an existing pool, without DDL (tests; see
    /// [`Self::migrate`]).
    pub fn from_pool(pool: SqlitePool) -> SqliteSink {
        let tables = Tables::of(&Catalogue::built_in()).expect("the built-in catalogue has SQL plans (tested)");
        SqliteSink { pool, tables }
    }

    /// Applies the `migrations` not yet recorded in `slate_sql_migrations`, in one transaction.
    pub async fn migrate(pool: &SqlitePool, migrations: &[super::migrations::Migration]) -> Result<(), SinkError> {
        let mut tx = pool.begin_with(BEGIN).await.map_err(classify)?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS slate_sql_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
             applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))) STRICT",
        )
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        let done: Vec<i32> = sqlx::query_scalar("SELECT version FROM slate_sql_migrations").fetch_all(&mut *tx).await.map_err(classify)?;
        for m in migrations.iter().filter(|m| !done.contains(&m.version)) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(m.sql.as_str()))
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(e).context(format_args!("sqlite migration {} ({})", m.version, m.name)))?;
            sqlx::query("INSERT INTO slate_sql_migrations (version, name) VALUES (?1, ?2)")
                .bind(m.version)
                .bind(&m.name)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            tracing::info!(version = m.version, name = %m.name, "applied sqlite sink migration");
        }
        tx.commit().await.map_err(classify)
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn write_batch(&self, batch: &[SinkRecord]) -> Result<WriteOutcome, SinkError> {
        let (plans, halted) = self.tables.evolve(batch, async |grown| apply_ddl(&self.pool, grown).await).await?;
        let prepared = rows::prepare(batch, &plans, &halted);
        if prepared.winners.is_empty() {
            return Ok(prepared.outcome);
        }
        let winners = &prepared.winners;
        let (applied, refused) = match self.write_all(winners, &plans).await {
            Ok(applied) => (applied, Vec::new()),
            Err(e) if is_data_error(&e) => {
                tracing::warn!(error = %e, "sqlite refused a validated record; rewriting the batch record by record");
                self.write_isolated(winners, &plans).await?
            }
            Err(e) => return Err(classify(e)),
        };
        Ok(prepared.finish(applied, refused))
    }

    /// The whole batch in one transaction, tables in a fixed order.
    async fn write_all(&self, winners: &[Row], plans: &tables::Plans) -> Result<usize, sqlx::Error> {
        let mut tx = self.pool.begin_with(BEGIN).await?;
        let mut applied = 0;
        // Winners come sorted by entity: one pass per entity table.
        for of_kind in winners.chunk_by(|a, b| a.kind == b.kind) {
            let of_kind: Vec<&Row> = of_kind.iter().collect();
            let table = &plans[&of_kind[0].kind];
            applied += sqlite_write::write_table(&mut tx, table, &of_kind).await?;
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// The fallback when SQLite refused a value: still one transaction, one savepoint per
    /// record; refused records are returned as rejections, the rest commits. (A refused
    /// statement is undone by SQLite itself; the savepoint also undoes the record's earlier
    /// statements, e.g. a parent row whose child insert failed.)
    async fn write_isolated(&self, winners: &[Row], plans: &tables::Plans) -> Result<(usize, Vec<(usize, String)>), SinkError> {
        let mut tx = self.pool.begin_with(BEGIN).await.map_err(classify)?;
        let (mut applied, mut refused) = (0, Vec::new());
        for row in winners {
            sqlx::query("SAVEPOINT slate_record").execute(&mut *tx).await.map_err(classify)?;
            match sqlite_write::write_table(&mut tx, &plans[&row.kind], &[row]).await {
                Ok(n) => {
                    applied += n;
                    sqlx::query("RELEASE SAVEPOINT slate_record").execute(&mut *tx).await.map_err(classify)?;
                }
                Err(e) if is_data_error(&e) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT slate_record").execute(&mut *tx).await.map_err(classify)?;
                    sqlx::query("RELEASE SAVEPOINT slate_record").execute(&mut *tx).await.map_err(classify)?;
                    refused.push((row.index, format!("sqlite refused the record: {e}")));
                }
                Err(e) => return Err(classify(e)),
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok((applied, refused))
    }
}

impl Sink for SqliteSink {
    /// The role's name, as for PostgreSQL: `slate run sink sql` is one consumer group whichever
    /// database it writes to (point it at a new database with a new `sinks.group_prefix`).
    fn name(&self) -> &'static str {
        "sql"
    }

    fn write<'a>(&'a self, batch: &'a [SinkRecord]) -> Pin<Box<dyn Future<Output = Result<WriteOutcome, SinkError>> + Send + 'a>> {
        Box::pin(self.write_batch(batch))
    }
}

// SQLite primary result codes (the low byte of the extended code sqlx reports).
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_NOMEM: i32 = 7;
const SQLITE_IOERR: i32 = 10;
const SQLITE_FULL: i32 = 13;
const SQLITE_PROTOCOL: i32 = 15;
const SQLITE_TOOBIG: i32 = 18;
const SQLITE_CONSTRAINT: i32 = 19;
const SQLITE_MISMATCH: i32 = 20;
const SQLITE_RANGE: i32 = 25;

fn primary_code(e: &sqlx::Error) -> Option<i32> {
    let sqlx::Error::Database(db) = e else { return None };
    db.code()?.parse::<i32>().ok().map(|extended| extended & 0xff)
}

/// Worth retrying: another writer holds the lock (busy, locked), the storage failed (I/O error,
/// disk full), memory ran out, or the WAL lock protocol raced.
fn transient_code(code: i32) -> bool {
    matches!(code, SQLITE_BUSY | SQLITE_LOCKED | SQLITE_NOMEM | SQLITE_IOERR | SQLITE_FULL | SQLITE_PROTOCOL)
}

/// A value SQLite refused (a constraint or trigger, a value too big, a type mismatch in a STRICT
/// table, a bad parameter): the record's fault, not the target's.
fn is_data_error(e: &sqlx::Error) -> bool {
    matches!(primary_code(e), Some(SQLITE_CONSTRAINT | SQLITE_TOOBIG | SQLITE_MISMATCH | SQLITE_RANGE))
}

fn classify(e: sqlx::Error) -> SinkError {
    use sqlx::Error as E;
    match &e {
        E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::BeginFailed => SinkError::Unavailable(format!("sqlite: {e}")),
        _ if primary_code(&e).is_some_and(transient_code) => SinkError::Unavailable(format!("sqlite: {e}")),
        _ => SinkError::Fatal(format!("sqlite: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes_are_classified() {
        // Extended codes: SQLITE_BUSY_SNAPSHOT, SQLITE_LOCKED_SHAREDCACHE, SQLITE_IOERR_WRITE.
        for code in [5, 517, 6, 262, 10, 778, 13] {
            assert!(transient_code(code & 0xff), "{code}");
        }
        // SQLITE_ERROR, SQLITE_CANTOPEN, SQLITE_CORRUPT, SQLITE_NOTADB, SQLITE_CONSTRAINT_CHECK.
        for code in [1, 14, 11, 26, 275] {
            assert!(!transient_code(code & 0xff), "{code}");
        }
        assert!(matches!(classify(sqlx::Error::PoolTimedOut), SinkError::Unavailable(_)));
        assert!(matches!(classify(sqlx::Error::RowNotFound), SinkError::Fatal(_)));
    }
}
