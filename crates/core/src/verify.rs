//! `slate verify`: reconciles what the sinks hold with the source of truth.
//!
//! For every entity the source's live ids and versions are listed (the studio's GraphQL
//! `ids` listing, then batched fetches through the configured sources); every id a sink holds
//! that the source does not list is fetched too, to tell deleted from unknown. Drift is:
//! - **missing**: live at the source, absent (or a tombstone) in the sink;
//! - **stale**: the sink holds an older version than the source;
//! - **extra**: live in the sink, deleted or unknown at the source.
//!
//! `--repair` publishes one change event per drifted id to the enricher's input topics, so the
//! normal pipeline heals the sinks (at-least-once and version guards make that safe). Listing
//! and publishing are shared with `slate replay` ([`crate::replay`]).

use crate::catalogue::Catalogue;
use crate::config::Config;
use crate::enrich::fetch::{Fetch, Sources};
use crate::event::{ChangeType, EntityName};
use crate::progress::Progress;
use crate::replay::{ReplayError, Republisher, SourceIds};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// What a sink holds for one id: its version, and whether that version is a tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub version: i64,
    pub deleted: bool,
}

/// The source's view of one id: `Some(version)` when live, `None` when deleted or unknown.
pub type Truth = Option<i64>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    Missing,
    Stale,
    Extra,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EntityDrift {
    pub checked: usize,
    pub missing: usize,
    pub stale: usize,
    pub extra: usize,
    /// Up to ten drifted ids, with their kind.
    pub samples: Vec<(String, DriftKind)>,
    #[serde(skip)]
    pub drifted: Vec<(String, DriftKind)>,
}

impl EntityDrift {
    pub fn total(&self) -> usize {
        self.missing + self.stale + self.extra
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("source: {0}")]
    Source(String),
    #[error("{sink} sink: {message}")]
    Sink { sink: &'static str, message: String },
    #[error(transparent)]
    Produce(#[from] crate::kafka::ProduceError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error("config: {0}")]
    Config(#[from] crate::config::ConfigError),
}

/// Compares one entity's sink contents with the source.
pub fn compare(truth: &HashMap<String, Truth>, held: &HashMap<String, Held>) -> EntityDrift {
    let mut d = EntityDrift::default();
    let mut ids: Vec<&String> = truth.keys().chain(held.keys()).collect();
    ids.sort();
    ids.dedup();
    for id in ids {
        d.checked += 1;
        let t = truth.get(id).copied().flatten();
        let h = held.get(id).filter(|h| !h.deleted);
        let kind = match (t, h) {
            (Some(_), None) => Some(DriftKind::Missing),
            (Some(v), Some(h)) if h.version < v => Some(DriftKind::Stale),
            (None, Some(_)) => Some(DriftKind::Extra),
            _ => None,
        };
        if let Some(kind) = kind {
            match kind {
                DriftKind::Missing => d.missing += 1,
                DriftKind::Stale => d.stale += 1,
                DriftKind::Extra => d.extra += 1,
            }
            if d.samples.len() < 10 {
                d.samples.push((id.clone(), kind));
            }
            d.drifted.push((id.clone(), kind));
        }
    }
    d
}

/// The source's truth for `ids` (batched fetches through the configured sources), counting
/// fetched ids on `progress`.
pub async fn source_truth(
    sources: &Sources,
    entity: EntityName,
    ids: &[String],
    chunk: usize,
    progress: &Progress,
) -> Result<HashMap<String, Truth>, VerifyError> {
    let mut out = HashMap::new();
    for part in ids.chunks(chunk.max(1)) {
        let reply = sources.fetch(entity, part).await.map_err(|e| VerifyError::Source(e.to_string()))?;
        out.extend(reply.found.into_iter().map(|f| (f.id, Some(f.version))));
        out.extend(reply.deleted.into_iter().map(|(id, _)| (id, None)));
        out.extend(reply.missing.into_iter().map(|id| (id, None)));
        progress.inc(part.len() as u64);
    }
    Ok(out)
}

/// Reconciles one sink's contents (`held`, per entity) with the source, with progress on stderr
/// per entity (ids listed, then versions fetched and compared), labelled with `sink`, unless
/// `quiet`.
pub async fn reconcile(
    cfg: &Config,
    held: &BTreeMap<EntityName, HashMap<String, Held>>,
    sink: &str,
    quiet: bool,
) -> Result<BTreeMap<EntityName, EntityDrift>, VerifyError> {
    let sources = Sources::try_new(&cfg.sources, cfg.entities())?;
    let lister = SourceIds::new(&cfg.sources)?;
    let mut report = BTreeMap::new();
    for entity in cfg.entities().names() {
        let empty = HashMap::new();
        let held = held.get(&entity).unwrap_or(&empty);
        let listing = Progress::stderr(format!("verify {sink} {entity}: source ids listed"), None, quiet);
        let mut ids = match lister.lists(entity) {
            true => lister.all(entity, &listing).await?,
            false => {
                if !quiet {
                    eprintln!(
                        "verify {sink} {entity}: the source lists no ids (sources.entities.{entity}.list_ids = false); \
                         checking only the {} ids the sink holds (an id it never received is not found)",
                        held.len()
                    );
                }
                Vec::new()
            }
        };
        ids.extend(held.keys().cloned());
        ids.sort();
        ids.dedup();
        let fetching = Progress::stderr(format!("verify {sink} {entity}: versions fetched"), Some(ids.len() as u64), quiet);
        let truth = source_truth(&sources, entity, &ids, cfg.enricher.max_ids_per_request, &fetching).await?;
        report.insert(entity, compare(&truth, held));
        fetching.finish();
    }
    Ok(report)
}

/// Publishes one change event per drifted id to the enricher's input topics (UPDATE for
/// missing and stale ids, DELETE for extra ones); returns how many the broker acknowledged.
/// Progress on stderr unless `quiet`.
pub async fn repair(cfg: &Config, drift: &BTreeMap<EntityName, EntityDrift>, quiet: bool) -> Result<usize, VerifyError> {
    let entities: Vec<EntityName> = drift.iter().filter(|(_, d)| !d.drifted.is_empty()).map(|(e, _)| *e).collect();
    if entities.is_empty() {
        return Ok(0);
    }
    let mut publisher = Republisher::connect(cfg, "slate-verify", &entities).await?;
    let total = drift.values().map(|d| d.drifted.len() as u64).sum();
    let progress = Progress::stderr("verify: repair events published", Some(total), quiet);
    publisher.set_progress(progress.clone());
    for (entity, d) in drift {
        for (id, kind) in &d.drifted {
            let t = if *kind == DriftKind::Extra { ChangeType::Delete } else { ChangeType::Update };
            publisher.publish(t, *entity, id).await?;
        }
    }
    publisher.flush().await?;
    progress.finish();
    Ok(publisher.published() as usize)
}

/// What the SQL sink holds: `id, version, deleted` of every row of each entity table.
pub async fn held_sql(pool: &sqlx::PgPool, catalogue: &Catalogue) -> Result<BTreeMap<EntityName, HashMap<String, Held>>, VerifyError> {
    use sqlx::Row;
    let mut out = BTreeMap::new();
    for entity in catalogue.names() {
        let rows = sqlx::query(sqlx::AssertSqlSafe(held_query(entity))).fetch_all(pool).await.map_err(sql_error)?;
        let held = rows.iter().map(|r| (r.get::<String, _>("id"), Held { version: r.get("version"), deleted: r.get("deleted") })).collect();
        out.insert(entity, held);
    }
    Ok(out)
}

/// [`held_sql`] for the SQL sink on SQLite (same tables; `deleted` is 0/1, read as a bool).
pub async fn held_sqlite(
    pool: &sqlx::SqlitePool,
    catalogue: &Catalogue,
) -> Result<BTreeMap<EntityName, HashMap<String, Held>>, VerifyError> {
    use sqlx::Row;
    let mut out = BTreeMap::new();
    for entity in catalogue.names() {
        let rows = sqlx::query(sqlx::AssertSqlSafe(held_query(entity))).fetch_all(pool).await.map_err(sql_error)?;
        let held = rows.iter().map(|r| (r.get::<String, _>("id"), Held { version: r.get("version"), deleted: r.get("deleted") })).collect();
        out.insert(entity, held);
    }
    Ok(out)
}

/// Table names are the fixed snake_case entity names, never user input.
fn held_query(entity: EntityName) -> String {
    format!("SELECT id, version, deleted FROM {}", entity.as_str())
}

fn sql_error(e: sqlx::Error) -> VerifyError {
    VerifyError::Sink { sink: "sql", message: e.to_string() }
}

/// What the search sink holds: every document's `id` and `version` (deleted documents are
/// gone from the index). Progress on stderr (documents read per entity) unless `quiet`.
pub async fn held_search(
    cfg: &crate::config::SearchSinkConfig,
    catalogue: &Catalogue,
    quiet: bool,
) -> Result<BTreeMap<EntityName, HashMap<String, Held>>, VerifyError> {
    let err = |message: String| VerifyError::Sink { sink: "search", message };
    let scanner = crate::sink::search::scan::Scanner::new(cfg).map_err(err)?;
    scanner.refresh(&format!("{}*", cfg.index_prefix)).await.map_err(err)?;
    let mut out = BTreeMap::new();
    for entity in catalogue.names() {
        let index = format!("{}{}", cfg.index_prefix, entity.as_str());
        let progress = Progress::stderr(format!("verify search {entity}: documents read"), None, quiet);
        let mut held = HashMap::new();
        scanner
            .scan(&index, Some(&["id", "version"]), |h| {
                progress.inc(1);
                if let (Some(id), Some(version)) = (h["_source"]["id"].as_str(), h["_source"]["version"].as_i64()) {
                    held.insert(id.to_string(), Held { version, deleted: false });
                }
            })
            .await
            .map_err(err)?;
        progress.finish();
        out.insert(entity, held);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_kinds() {
        let truth: HashMap<String, Truth> = [("a", Some(3)), ("b", Some(2)), ("c", None), ("d", Some(1)), ("e", None), ("f", Some(5))]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let held: HashMap<String, Held> = [
            ("a", Held { version: 3, deleted: false }),
            ("b", Held { version: 1, deleted: false }),
            ("c", Held { version: 4, deleted: false }),
            ("e", Held { version: 2, deleted: true }),
            ("f", Held { version: 6, deleted: true }),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let d = compare(&truth, &held);
        assert_eq!((d.checked, d.missing, d.stale, d.extra), (6, 2, 1, 1));
        assert_eq!(
            d.drifted,
            vec![
                ("b".into(), DriftKind::Stale),
                ("c".into(), DriftKind::Extra),
                ("d".into(), DriftKind::Missing),
                ("f".into(), DriftKind::Missing)
            ]
        );
    }
}
