//! The SQL sink: enriched records → PostgreSQL tables analysts query, created and evolved from
//! the catalogue's records, plus the deployment's own SQL (views, indexes) on top of them.
//!
//! # Guarantees
//! - **Idempotent by id + source version.** Each entity has a table keyed by `id` with a
//!   `version` column; a write applies only if its version is strictly newer
//!   (`INSERT … ON CONFLICT (id) DO UPDATE … WHERE excluded.version > <table>.version`). A
//!   duplicate (equal version) or an older version is counted *stale* and changes nothing, so
//!   replays, duplicates and reordering converge to the source's newest state.
//! - **Tombstones keep their version.** A delete with a version (the version of the delete at the
//!   source) is written through the same guard as a row with `deleted = true` and NULL business
//!   columns; an update older than the delete is then stale, and a re-created id (the source
//!   continues its version sequence) replaces the tombstone. A tombstone *without* a version (the
//!   source never had the id) marks an existing live row deleted keeping its version, or inserts
//!   a tombstone at version 0 for an unknown id; an already deleted row is left as is.
//! - **One transaction per batch.** Either every applied record of a batch is committed or none
//!   is, and `Ok` is returned only after the commit; the runner stores offsets only then. If a
//!   commit's outcome is lost (connection drop), the retried batch finds its rows already at that
//!   version: stale, not doubled.
//! - **Within a batch** only the newest record per id is written (max version; an unversioned
//!   tombstone replaces what came before it in partition order); the others count as stale.
//! - **Bad data never poisons a batch.** Records are validated in Rust first (types, dates,
//!   NUL characters, key lengths) and rejected one by one with a reason (the runner dead-letters
//!   them). Should PostgreSQL still refuse a value (SQLSTATE class 22, 23, 54), the batch is
//!   rewritten with a savepoint per record and only the refused records are rejected.
//! - **A schema change the tables cannot follow halts only its entity** (see `tables.rs`): its
//!   records come back in [`WriteOutcome::halted`], unwritten, and the runner leaves them
//!   uncommitted and pauses the entity's partitions; the other entities are written.
//! - **Errors are classified where they arise**: connection and I/O errors, pool timeouts,
//!   serialization failures and deadlocks, admin shutdown, resource exhaustion →
//!   [`SinkError::Unavailable`] (the runner retries the same batch with backoff); anything else
//!   (authentication, missing tables, SQL bugs) → [`SinkError::Fatal`].
//!
//! # Schema (`plan.rs`, `tables.rs`)
//! Typed columns for the business fields (text, bigint, numeric, date; enums as text, so new
//! symbols need no migration). Arrays of records are child tables (`<entity>_<field minus s>`,
//! keyed by parent id + ordinal) rather than jsonb: analysts join and aggregate them with plain
//! SQL and indexes instead of `jsonb_array_elements`. Children are replaced whenever their parent
//! row is applied, in the same transaction, after the parent upsert has locked the row. The DDL
//! runs at [`SqlSink::connect`] under an advisory lock, so several sink processes may start at
//! once.
//!
//! # The deployment's SQL and refresh policy
//! `sinks.sql.migrations` names a directory of `NNNN_name.sql` files ([`migrations`]) applied
//! once each, after the generated tables, under the same lock, recorded in
//! `slate_sql_migrations`: the example's analyst views (`migrations/sql/`) come this way, and
//! nothing in the sink knows them. `sinks.sql.refresh_views` names materialized views a
//! background task refreshes `CONCURRENTLY` (readers never block) once at start and then every
//! `sinks.sql.refresh_interval`, so they lag the tables by at most that interval plus one
//! refresh (a zero interval disables the task; call [`SqlSink::refresh_views`] yourself).
//!
//! # SQLite
//! A `sqlite:` URL selects [`SqliteSink`] instead (the embedded demo): same tables, guarantees
//! and view names, plain views only. [`connect_any`] dispatches on the scheme.

pub mod migrations;
mod plan;
mod rows;
mod sqlite;
mod sqlite_write;
mod tables;
mod write;

pub use sqlite::SqliteSink;

use super::{Sink, SinkError, SinkRecord, WriteOutcome};
use crate::catalogue::{Catalogue, EntityName};
use crate::config::SqlSinkConfig;
use rows::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tables::Tables;
use tokio::task::JoinHandle;

/// Arbitrary constant key of the advisory lock serializing the sink's DDL ("slatesql").
const DDL_LOCK_KEY: i64 = 0x736c_6174_6573_716c;
/// How long a write waits for a pooled connection before the batch counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

use tables::Plans;

/// Creates or evolves `tables` in one transaction under the DDL lock; answers the entities whose
/// tables conflict with the database (left unaltered; the others are committed).
async fn apply_ddl(pool: &PgPool, tables: &[Arc<plan::Table>]) -> Result<Vec<(EntityName, String)>, SinkError> {
    let mut tx = pool.begin().await.map_err(classify)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(DDL_LOCK_KEY).execute(&mut *tx).await.map_err(classify)?;
    let mut conflicts = Vec::new();
    for t in tables {
        if let Err(reason) = tables::apply_pg(&mut tx, t).await? {
            conflicts.push((t.entity, reason));
        }
    }
    tx.commit().await.map_err(classify)?;
    Ok(conflicts)
}

/// Connects the backend `cfg.database_url` names: SQLite for `sqlite:` URLs, PostgreSQL
/// otherwise (config validation admits only those two), with each backend's error contract.
pub async fn connect_any(cfg: &SqlSinkConfig, catalogue: &Catalogue) -> Result<Arc<dyn Sink>, SinkError> {
    if cfg.is_sqlite() {
        return Ok(Arc::new(SqliteSink::connect(cfg, catalogue).await?));
    }
    Ok(Arc::new(SqlSink::connect(cfg, catalogue).await?))
}

/// Writes enriched records to PostgreSQL. Dropping it stops its view refresher.
pub struct SqlSink {
    pool: PgPool,
    tables: Tables,
    /// `sinks.sql.refresh_views`.
    refresh: Arc<[String]>,
    refresher: Option<JoinHandle<()>>,
}

impl SqlSink {
    /// Connects, creates (or evolves) the catalogue's tables from its records, applies the
    /// deployment's migrations (`sinks.sql.migrations`, after the tables, see [`migrations`]) and
    /// starts the refresher of `sinks.sql.refresh_views`. An unreachable database is
    /// [`SinkError::Unavailable`] (the caller may retry); bad credentials, an unreadable
    /// migrations directory or a failing migration are [`SinkError::Fatal`].
    pub async fn connect(cfg: &SqlSinkConfig, catalogue: &Catalogue) -> Result<SqlSink, SinkError> {
        let own = migrations::read(cfg.migrations.as_deref())?;
        let pool = PgPoolOptions::new()
            .max_connections(cfg.max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(cfg.database_url.expose())
            .await
            .map_err(classify)?;
        let tables = Tables::of(catalogue)?;
        for (entity, reason) in apply_ddl(&pool, &tables.all()).await? {
            tables.halt(entity, reason);
        }
        Self::migrate(&pool, &own).await?;
        let refresh: Arc<[String]> = cfg.refresh_views.clone().into();
        let refresher = (!refresh.is_empty() && !cfg.refresh_interval.is_zero())
            .then(|| tokio::spawn(refresh_forever(pool.clone(), refresh.clone(), cfg.refresh_interval)));
        Ok(SqlSink { pool, tables, refresh, refresher })
    }

    /// A sink of the built-in catalogue on an existing pool, without DDL or refresher (tests;
    /// see [`Self::migrate`]).
    pub fn from_pool(pool: PgPool) -> SqlSink {
        let tables = Tables::of(&Catalogue::built_in()).expect("the built-in catalogue has SQL plans (tested)");
        SqlSink { pool, tables, refresh: Arc::from([]), refresher: None }
    }

    /// Applies the `migrations` not yet recorded in `slate_sql_migrations`, under the DDL lock
    /// (several sink processes may start at once), in one transaction.
    pub async fn migrate(pool: &PgPool, migrations: &[migrations::Migration]) -> Result<(), SinkError> {
        let mut tx = pool.begin().await.map_err(classify)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(DDL_LOCK_KEY).execute(&mut *tx).await.map_err(classify)?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS slate_sql_migrations \
             (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        let done: Vec<i32> = sqlx::query_scalar("SELECT version FROM slate_sql_migrations").fetch_all(&mut *tx).await.map_err(classify)?;
        for m in migrations.iter().filter(|m| !done.contains(&m.version)) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(m.sql.as_str()))
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(e).context(format_args!("sql migration {} ({})", m.version, m.name)))?;
            sqlx::query("INSERT INTO slate_sql_migrations (version, name) VALUES ($1, $2)")
                .bind(m.version)
                .bind(&m.name)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            tracing::info!(version = m.version, name = %m.name, "applied sql sink migration");
        }
        tx.commit().await.map_err(classify)
    }

    /// Refreshes the materialized views now.
    pub async fn refresh_views(&self) -> Result<(), SinkError> {
        refresh(&self.pool, &self.refresh).await
    }

    pub fn pool(&self) -> &PgPool {
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
                tracing::warn!(error = %e, "postgresql refused a validated record; rewriting the batch record by record");
                self.write_isolated(winners, &plans).await?
            }
            Err(e) => return Err(classify(e)),
        };
        Ok(prepared.finish(applied, refused))
    }

    /// The whole batch in one transaction; tables in a fixed order, ids sorted, so concurrent
    /// writers (two instances during a rebalance) lock rows in the same order.
    async fn write_all(&self, winners: &[Row], plans: &Plans) -> Result<usize, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut applied = 0;
        // Winners come sorted by entity: one pass per entity table.
        for of_kind in winners.chunk_by(|a, b| a.kind == b.kind) {
            let of_kind: Vec<&Row> = of_kind.iter().collect();
            let table = &plans[&of_kind[0].kind];
            applied += write::write_table(&mut tx, table, &of_kind).await?;
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// The fallback when PostgreSQL refused a value: still one transaction, one savepoint per
    /// record; refused records are returned as rejections, the rest commits.
    async fn write_isolated(&self, winners: &[Row], plans: &Plans) -> Result<(usize, Vec<(usize, String)>), SinkError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let (mut applied, mut refused) = (0, Vec::new());
        for row in winners {
            sqlx::query("SAVEPOINT slate_record").execute(&mut *tx).await.map_err(classify)?;
            match write::write_table(&mut tx, &plans[&row.kind], &[row]).await {
                Ok(n) => {
                    applied += n;
                    sqlx::query("RELEASE SAVEPOINT slate_record").execute(&mut *tx).await.map_err(classify)?;
                }
                Err(e) if is_data_error(&e) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT slate_record").execute(&mut *tx).await.map_err(classify)?;
                    refused.push((row.index, format!("postgresql refused the record: {e}")));
                }
                Err(e) => return Err(classify(e)),
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok((applied, refused))
    }
}

impl Drop for SqlSink {
    fn drop(&mut self) {
        if let Some(task) = &self.refresher {
            task.abort();
        }
    }
}

impl Sink for SqlSink {
    fn name(&self) -> &'static str {
        "sql"
    }

    fn write<'a>(&'a self, batch: &'a [SinkRecord]) -> Pin<Box<dyn Future<Output = Result<WriteOutcome, SinkError>> + Send + 'a>> {
        Box::pin(self.write_batch(batch))
    }
}

/// `REFRESH MATERIALIZED VIEW CONCURRENTLY` each of `views` (readers never block; each view
/// needs a unique index). The names were checked as SQL identifiers by the config.
async fn refresh(pool: &PgPool, views: &[String]) -> Result<(), SinkError> {
    for view in views {
        let statement = format!("REFRESH MATERIALIZED VIEW CONCURRENTLY {view}");
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(pool).await.map_err(classify)?;
    }
    Ok(())
}

/// Refreshes at start, then every `every` (measured from the start of the previous refresh; a
/// refresh longer than `every` delays the next one instead of overlapping it).
async fn refresh_forever(pool: PgPool, views: Arc<[String]>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = Instant::now();
        match refresh(&pool, &views).await {
            Ok(()) => tracing::debug!(took = ?started.elapsed(), "refreshed sql sink views"),
            Err(e) => tracing::warn!(error = %e, "refreshing sql sink views failed; views stay stale until the next attempt"),
        }
    }
}

/// SQLSTATEs worth retrying: 08 connection exception, 40 transaction rollback (serialization
/// failure, deadlock), 53 insufficient resources, 57 operator intervention (admin shutdown,
/// cannot connect now, statement timeout), 58 system error, 55P03 lock not available, 25P03
/// idle-in-transaction timeout.
fn transient_sqlstate(code: &str) -> bool {
    matches!(code.get(..2), Some("08" | "40" | "53" | "57" | "58")) || matches!(code, "55P03" | "25P03")
}

/// A value PostgreSQL refused (class 22 data exception, 23 integrity violation, 54 program
/// limit such as an oversized index entry): the record's fault, not the target's.
fn is_data_error(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else { return false };
    matches!(db.code().as_deref().and_then(|c| c.get(..2)), Some("22" | "23" | "54"))
}

fn classify(e: sqlx::Error) -> SinkError {
    use sqlx::Error as E;
    match &e {
        E::Io(_) | E::Tls(_) | E::Protocol(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::BeginFailed => {
            SinkError::Unavailable(format!("postgresql: {e}"))
        }
        E::Database(db) if db.code().is_some_and(|c| transient_sqlstate(&c)) => SinkError::Unavailable(format!("postgresql: {e}")),
        _ => SinkError::Fatal(format!("postgresql: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified() {
        for code in ["08006", "40001", "40P01", "53300", "57P01", "55P03"] {
            assert!(transient_sqlstate(code), "{code}");
        }
        for code in ["42P01", "28P01", "22007", "23505"] {
            assert!(!transient_sqlstate(code), "{code}");
        }
        assert!(matches!(classify(sqlx::Error::PoolTimedOut), SinkError::Unavailable(_)));
        assert!(matches!(classify(sqlx::Error::RowNotFound), SinkError::Fatal(_)));
    }
}
