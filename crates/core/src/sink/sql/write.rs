//! The SQL of one batch: set-based statements per entity table (`UNNEST` of one array per
//! column), so a batch of hundreds of records costs a few round trips per entity, not one per
//! record. Statement text comes only from the table plans of `plan.rs` (identifiers quoted).

use super::plan::{Child, Col, Column, Table};
use super::rows::{Cell, Row};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, PgConnection, Postgres, Row as _};
use std::collections::HashSet;

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// `event_ms` (epoch ms, 0 = unknown) as a timestamptz.
const EVENT_TS: &str = "CASE WHEN u.event_ms > 0 THEN to_timestamp(u.event_ms::float8 / 1000) END";

/// Writes `rows` (one per id, all of table `t`) on `conn` and returns how many were applied.
/// The caller owns the transaction.
pub(super) async fn write_table(conn: &mut PgConnection, t: &Table, rows: &[&Row]) -> Result<usize, sqlx::Error> {
    let (versioned, unversioned): (Vec<&Row>, Vec<&Row>) = rows.iter().partition(|r| r.version.is_some());
    let mut applied = HashSet::new();
    if !versioned.is_empty() {
        applied.extend(upsert(conn, t, &versioned).await?);
    }
    if !unversioned.is_empty() {
        applied.extend(unversioned_tombstones(conn, t, &unversioned).await?);
    }
    if !applied.is_empty() {
        for (k, child) in t.children.iter().enumerate() {
            replace_children(conn, child, k, rows, &applied).await?;
        }
    }
    Ok(applied.len())
}

/// The version guard: a row is inserted, or replaced only by a strictly newer version (an equal
/// version is a duplicate, an older one is stale). Tombstones go through the same statement with
/// `deleted = true` and NULL business columns. Returns the ids applied.
async fn upsert(conn: &mut PgConnection, t: &Table, rows: &[&Row]) -> Result<Vec<String>, sqlx::Error> {
    let names: Vec<&str> = t.columns.iter().map(|c| c.ident.as_str()).collect();
    let params: Vec<String> = t.columns.iter().enumerate().map(|(i, c)| format!("${}::{}", i + 5, c.col.bind_type())).collect();
    let selects: Vec<String> = t.columns.iter().map(|c| c.col.select_expr(&c.ident)).collect();
    let sets: Vec<String> = names.iter().map(|n| format!("{n} = excluded.{n}")).collect();
    let sql = format!(
        "INSERT INTO {table} (id, version, deleted, event_ts, {names}) \
         SELECT u.id, u.version, u.deleted, {EVENT_TS}, {selects} \
         FROM UNNEST($1::text[], $2::int8[], $3::bool[], $4::int8[], {params}) AS u(id, version, deleted, event_ms, {names}) \
         ON CONFLICT (id) DO UPDATE SET version = excluded.version, deleted = excluded.deleted, \
         event_ts = excluded.event_ts, updated_at = now(), {sets} \
         WHERE excluded.version > {table}.version \
         RETURNING id",
        table = t.name,
        names = names.join(", "),
        selects = selects.join(", "),
        params = params.join(", "),
        sets = sets.join(", "),
    );
    let q = sqlx::query(AssertSqlSafe(sql))
        .bind(rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.version.unwrap_or_default()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.live.is_none()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.event_ms).collect::<Vec<_>>());
    let cells: Vec<Option<&[Cell]>> = rows.iter().map(|r| r.live.as_ref().map(|l| l.cells.as_slice())).collect();
    ids(bind_cells(q, &t.columns, &cells).fetch_all(&mut *conn).await?)
}

/// Tombstones of ids the source never had (no version to compare): an existing live row is
/// marked deleted keeping its version (so replayed updates up to that version stay stale); an
/// unknown id gets a tombstone at version 0 (any real version, which starts at 1, replaces it).
/// An already deleted row is left alone (counted stale).
async fn unversioned_tombstones(conn: &mut PgConnection, t: &Table, rows: &[&Row]) -> Result<Vec<String>, sqlx::Error> {
    let ids_bind: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let ms_bind: Vec<i64> = rows.iter().map(|r| r.event_ms).collect();
    let nulls: Vec<String> = t.columns.iter().map(|c| format!("{} = NULL", c.ident)).collect();
    let update = format!(
        "UPDATE {table} SET deleted = TRUE, event_ts = {EVENT_TS}, updated_at = now(), {nulls} \
         FROM UNNEST($1::text[], $2::int8[]) AS u(id, event_ms) \
         WHERE {table}.id = u.id AND NOT {table}.deleted RETURNING {table}.id",
        table = t.name,
        nulls = nulls.join(", "),
    );
    let mut applied = ids(sqlx::query(AssertSqlSafe(update)).bind(&ids_bind).bind(&ms_bind).fetch_all(&mut *conn).await?)?;
    let insert = format!(
        "INSERT INTO {table} (id, version, deleted, event_ts) \
         SELECT u.id, 0, TRUE, {EVENT_TS} FROM UNNEST($1::text[], $2::int8[]) AS u(id, event_ms) \
         ON CONFLICT (id) DO NOTHING RETURNING id",
        table = t.name,
    );
    applied.extend(ids(sqlx::query(AssertSqlSafe(insert)).bind(&ids_bind).bind(&ms_bind).fetch_all(&mut *conn).await?)?);
    Ok(applied)
}

/// Replaces the child rows of every applied parent: the new elements for a live row, none for a
/// tombstone. Runs after the parent upsert in the same transaction, so the parent row lock
/// serializes concurrent writers of one id.
async fn replace_children(
    conn: &mut PgConnection,
    child: &Child,
    k: usize,
    rows: &[&Row],
    applied: &HashSet<String>,
) -> Result<(), sqlx::Error> {
    let parents: Vec<String> = applied.iter().cloned().collect();
    let delete = format!("DELETE FROM {} WHERE {} = ANY($1::text[])", child.table, child.parent_key);
    sqlx::query(AssertSqlSafe(delete)).bind(parents).execute(&mut *conn).await?;
    let (mut parent_ids, mut ordinals, mut cells) = (Vec::new(), Vec::new(), Vec::new());
    for r in rows.iter().filter(|r| applied.contains(&r.id)) {
        let Some(live) = &r.live else { continue };
        for (i, element) in live.children[k].iter().enumerate() {
            parent_ids.push(r.id.clone());
            ordinals.push(i32::try_from(i).unwrap_or(i32::MAX));
            cells.push(Some(element.as_slice()));
        }
    }
    if parent_ids.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = child.columns.iter().map(|c| c.ident.as_str()).collect();
    let params: Vec<String> = child.columns.iter().enumerate().map(|(i, c)| format!("${}::{}", i + 3, c.col.bind_type())).collect();
    let selects: Vec<String> = child.columns.iter().map(|c| c.col.select_expr(&c.ident)).collect();
    let insert = format!(
        "INSERT INTO {table} ({parent}, ordinal, {names}) SELECT u.parent, u.ordinal, {selects} \
         FROM UNNEST($1::text[], $2::int4[], {params}) AS u(parent, ordinal, {names})",
        table = child.table,
        parent = child.parent_key,
        names = names.join(", "),
        selects = selects.join(", "),
        params = params.join(", "),
    );
    let q = sqlx::query(AssertSqlSafe(insert)).bind(parent_ids).bind(ordinals);
    bind_cells(q, &child.columns, &cells).execute(&mut *conn).await?;
    Ok(())
}

/// Binds one array per column; a row without cells (a tombstone) contributes NULLs.
fn bind_cells<'q>(mut q: PgQuery<'q>, columns: &[Column], rows: &[Option<&[Cell]>]) -> PgQuery<'q> {
    for (i, c) in columns.iter().enumerate() {
        if matches!(c.col, Col::BigInt | Col::Timestamp) {
            let v: Vec<Option<i64>> = rows
                .iter()
                .map(|r| match r.map(|cells| &cells[i]) {
                    Some(Cell::Int(n)) => Some(*n),
                    _ => None,
                })
                .collect();
            q = q.bind(v);
        } else {
            let v: Vec<Option<String>> = rows
                .iter()
                .map(|r| match r.map(|cells| &cells[i]) {
                    Some(Cell::Text(s)) => s.clone(),
                    _ => None,
                })
                .collect();
            q = q.bind(v);
        }
    }
    q
}

fn ids(rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<String>, sqlx::Error> {
    rows.iter().map(|r| r.try_get::<String, _>(0)).collect()
}
