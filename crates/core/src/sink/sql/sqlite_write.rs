//! The SQL of one batch on SQLite: one statement per record (SQLite has no arrays to `UNNEST`).
//! That is cheap here: SQLite runs in-process, so a statement costs no round trip, and sqlx caches
//! each prepared statement per connection (the texts are fixed per table). Statement text comes
//! only from the table plans of `plan.rs` (identifiers quoted); values are always bound.

use super::plan::{Child, Col, Column, Table};
use super::rows::{Cell, Row};
use sqlx::sqlite::SqliteArguments;
use sqlx::{AssertSqlSafe, SqliteConnection};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// The format of `event_ts` and `updated_at`: ISO-8601 UTC with milliseconds, as
/// `humantime::format_rfc3339_millis` writes it and SQLite's date functions read it.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, SqliteArguments>;

/// The statements of one entity table, built once per call of [`write_table`].
struct Statements {
    upsert: Arc<str>,
    mark_deleted: Arc<str>,
    insert_tombstone: Arc<str>,
}

impl Statements {
    fn new(t: &Table) -> Self {
        let names: Vec<&str> = t.columns.iter().map(|c| c.ident.as_str()).collect();
        let params: Vec<String> = (0..names.len()).map(|i| format!("?{}", i + 5)).collect();
        let sets: Vec<String> = names.iter().map(|n| format!("{n} = excluded.{n}")).collect();
        let nulls: Vec<String> = names.iter().map(|n| format!("{n} = NULL")).collect();
        let upsert = format!(
            "INSERT INTO {table} (id, version, deleted, event_ts, updated_at, {names}) \
             VALUES (?1, ?2, ?3, ?4, {NOW}, {params}) \
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, deleted = excluded.deleted, \
             event_ts = excluded.event_ts, updated_at = excluded.updated_at, {sets} \
             WHERE excluded.version > {table}.version \
             RETURNING id",
            table = t.name,
            names = names.join(", "),
            params = params.join(", "),
            sets = sets.join(", "),
        );
        let mark_deleted = format!(
            "UPDATE {table} SET deleted = 1, event_ts = ?2, updated_at = {NOW}, {nulls} \
             WHERE id = ?1 AND NOT deleted RETURNING id",
            table = t.name,
            nulls = nulls.join(", "),
        );
        let insert_tombstone = format!(
            "INSERT INTO {table} (id, version, deleted, event_ts) VALUES (?1, 0, 1, ?2) \
             ON CONFLICT (id) DO NOTHING RETURNING id",
            table = t.name,
        );
        Statements { upsert: upsert.into(), mark_deleted: mark_deleted.into(), insert_tombstone: insert_tombstone.into() }
    }
}

/// Writes `rows` (one per id, all of table `t`) on `conn` and returns how many were applied.
/// The caller owns the transaction.
pub(super) async fn write_table(conn: &mut SqliteConnection, t: &Table, rows: &[&Row]) -> Result<usize, sqlx::Error> {
    let statements = Statements::new(t);
    let mut applied: Vec<&Row> = Vec::new();
    for &row in rows {
        let hit = match row.version {
            Some(version) => upsert(conn, &statements, t, row, version).await?,
            None => unversioned_tombstone(conn, &statements, row).await?,
        };
        if hit {
            applied.push(row);
        }
    }
    for (k, child) in t.children.iter().enumerate() {
        replace_children(conn, child, k, &applied).await?;
    }
    Ok(applied.len())
}

/// The version guard: the row is inserted, or replaces the held one only with a strictly newer
/// version (an equal version is a duplicate, an older one is stale: `DO UPDATE … WHERE` then
/// changes nothing and `RETURNING` yields no row). A tombstone goes through the same statement
/// with `deleted = 1` and NULL business columns. Returns whether the row was applied.
async fn upsert(conn: &mut SqliteConnection, s: &Statements, t: &Table, row: &Row, version: i64) -> Result<bool, sqlx::Error> {
    let cells = row.live.as_ref().map(|l| l.cells.as_slice());
    let q = sqlx::query(AssertSqlSafe(s.upsert.clone())).bind(&row.id).bind(version).bind(row.live.is_none()).bind(event_ts(row.event_ms));
    Ok(bind_cells(q, &t.columns, cells).fetch_optional(&mut *conn).await?.is_some())
}

/// A tombstone of an id the source never had (no version to compare): a live row is marked
/// deleted keeping its version (so replayed updates up to that version stay stale); an unknown id
/// gets a tombstone at version 0 (any real version, which starts at 1, replaces it). An already
/// deleted row is left alone (counted stale).
async fn unversioned_tombstone(conn: &mut SqliteConnection, s: &Statements, row: &Row) -> Result<bool, sqlx::Error> {
    let ts = event_ts(row.event_ms);
    let marked = sqlx::query(AssertSqlSafe(s.mark_deleted.clone())).bind(&row.id).bind(&ts).fetch_optional(&mut *conn).await?;
    if marked.is_some() {
        return Ok(true);
    }
    let inserted = sqlx::query(AssertSqlSafe(s.insert_tombstone.clone())).bind(&row.id).bind(&ts).fetch_optional(&mut *conn).await?;
    Ok(inserted.is_some())
}

/// Replaces the child rows of every applied parent: the new elements for a live row, none for a
/// tombstone. Runs after the parent writes in the same transaction, which holds SQLite's write
/// lock (`BEGIN IMMEDIATE`), so no other writer interleaves.
async fn replace_children(conn: &mut SqliteConnection, child: &Child, k: usize, applied: &[&Row]) -> Result<(), sqlx::Error> {
    if applied.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = child.columns.iter().map(|c| c.ident.as_str()).collect();
    let params: Vec<String> = (0..names.len()).map(|i| format!("?{}", i + 3)).collect();
    let delete: Arc<str> = format!("DELETE FROM {} WHERE {} = ?1", child.table, child.parent_key).into();
    let insert: Arc<str> = format!(
        "INSERT INTO {table} ({parent}, ordinal, {names}) VALUES (?1, ?2, {params})",
        table = child.table,
        parent = child.parent_key,
        names = names.join(", "),
        params = params.join(", "),
    )
    .into();
    for row in applied {
        sqlx::query(AssertSqlSafe(delete.clone())).bind(&row.id).execute(&mut *conn).await?;
        let Some(live) = &row.live else { continue };
        for (ordinal, element) in live.children[k].iter().enumerate() {
            let q = sqlx::query(AssertSqlSafe(insert.clone())).bind(&row.id).bind(i64::try_from(ordinal).unwrap_or(i64::MAX));
            bind_cells(q, &child.columns, Some(element)).execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// Binds one value per column; no cells (a tombstone) binds NULLs of the column's type.
fn bind_cells<'q>(mut q: Query<'q>, columns: &[Column], cells: Option<&[Cell]>) -> Query<'q> {
    for (i, c) in columns.iter().enumerate() {
        q = match (cells.map(|c| &c[i]), c.col) {
            (Some(Cell::Int(n)), _) => q.bind(*n),
            (Some(Cell::Text(s)), _) => q.bind(s.clone()),
            (None, Col::BigInt | Col::Timestamp | Col::Bool) => q.bind(None::<i64>),
            (None, _) => q.bind(None::<String>),
        };
    }
    q
}

/// `event_ms` (epoch ms, 0 = unknown) as ISO-8601 UTC text, or NULL when unknown or past year
/// 9999 (which the format cannot hold). Formatted in Rust rather than with SQLite's
/// `strftime(…, 'unixepoch')`, whose float seconds can round a millisecond off.
fn event_ts(event_ms: i64) -> Option<String> {
    const END_OF_9999_MS: u64 = 253_402_300_800_000;
    let ms = u64::try_from(event_ms).ok().filter(|ms| (1..END_OF_9999_MS).contains(ms))?;
    let at = UNIX_EPOCH.checked_add(Duration::from_millis(ms))?;
    Some(humantime::format_rfc3339_millis(at).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ts_is_iso_utc_with_millis() {
        assert_eq!(event_ts(1_790_000_000_123).as_deref(), Some("2026-09-21T14:13:20.123Z"));
        assert_eq!(event_ts(0), None);
        assert_eq!(event_ts(-5), None);
        assert_eq!(event_ts(253_402_300_799_999).as_deref(), Some("9999-12-31T23:59:59.999Z"));
        assert_eq!(event_ts(253_402_300_800_000), None);
    }
}
