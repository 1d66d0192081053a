//! The stored artifacts of one side, read back whole: SQL rows (PostgreSQL, one table per
//! entity, every column) and search documents (`_source`). Child tables of array fields are not
//! compared; their parent row's version guards them.
//!
//! Rows and documents carry no arrival time of their own: each takes the Kafka timestamp of the
//! same key's record on the same side's topics (the sink follows them), so the grace period
//! means the same thing for every store. A key the topics do not hold counts as old.

use super::ShadowError;
use super::compare::{Observed, Side};
use crate::catalogue::Catalogue;
use crate::config::SearchSinkConfig;
use crate::event::EntityName;
use crate::sink::search::scan::Scanner;
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;

/// Columns of the SQL sink's own, left out of the comparison besides `shadow.ignore_fields`.
pub const SQL_SYSTEM_COLUMNS: [&str; 3] = ["deleted", "event_ts", "updated_at"];

fn observed(id_version: Option<(String, i64)>, value: Option<Map<String, Json>>, topics: Option<&Side>) -> Option<(String, Observed)> {
    let (id, version) = id_version?;
    let at_ms = topics.and_then(|t| t.get(&id)).map_or(0, |o| o.at_ms);
    Some((id, Observed { version: Some(version), value, at_ms }))
}

/// Every row of each entity table; a table that does not exist holds no rows.
pub async fn sql_side(
    pool: &sqlx::PgPool,
    catalogue: &Catalogue,
    topics: &BTreeMap<EntityName, Side>,
) -> Result<BTreeMap<EntityName, Side>, ShadowError> {
    use sqlx::Row;
    let mut out = BTreeMap::new();
    for entity in catalogue.names() {
        // Table names are the catalogue's snake_case entity names, never user input.
        let query = format!("SELECT to_jsonb(t)::text AS row FROM {} t", entity.as_str());
        let rows = match sqlx::query(sqlx::AssertSqlSafe(query)).fetch_all(pool).await {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
            Err(e) => return Err(ShadowError::Store { store: "sql", message: e.to_string() }),
        };
        let mut side = Side::new();
        for row in rows {
            let text: String = row.get("row");
            let Ok(Json::Object(map)) = serde_json::from_str::<Json>(&text) else { continue };
            let key = map.get("id").and_then(Json::as_str).map(str::to_string).zip(map.get("version").and_then(Json::as_i64));
            let deleted = map.get("deleted").and_then(Json::as_bool).unwrap_or(false);
            if let Some((id, o)) = observed(key, (!deleted).then_some(map), topics.get(&entity)) {
                side.insert(id, o);
            }
        }
        out.insert(entity, side);
    }
    Ok(out)
}

/// Every document of `<index_prefix><entity>` for each entity (deleted ones are gone).
pub async fn search_side(
    cfg: &SearchSinkConfig,
    index_prefix: &str,
    catalogue: &Catalogue,
    topics: &BTreeMap<EntityName, Side>,
) -> Result<BTreeMap<EntityName, Side>, ShadowError> {
    let err = |message: String| ShadowError::Store { store: "search", message };
    let scanner = Scanner::new(cfg).map_err(err)?;
    scanner.refresh(&format!("{index_prefix}*")).await.map_err(err)?;
    let mut out = BTreeMap::new();
    for entity in catalogue.names() {
        let mut side = Side::new();
        scanner
            .scan(&format!("{index_prefix}{}", entity.as_str()), None, |hit| {
                let Some(doc) = hit["_source"].as_object() else { return };
                let key = doc.get("id").and_then(Json::as_str).map(str::to_string).zip(doc.get("version").and_then(Json::as_i64));
                if let Some((id, o)) = observed(key, Some(doc.clone()), topics.get(&entity)) {
                    side.insert(id, o);
                }
            })
            .await
            .map_err(err)?;
        out.insert(entity, side);
    }
    Ok(out)
}
