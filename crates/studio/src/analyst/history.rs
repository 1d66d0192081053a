//! Entity history from the audit sink's Parquet tree (`<dir>/entity=<entity>/dt=<YYYY-MM-DD>/
//! *.parquet`, see `sink::audit`): every change event behind one id, newest first by event
//! timestamp, then Kafka offset.
//!
//! **Cost.** The tree has no index by id, so a lookup reads the entity's files, newest `dt`
//! directory first, and filters rows by id. It stops at the first directory whose whole day is
//! older than the oldest of the `first` rows already found (`dt` is the UTC day of `event_ts`, so
//! nothing in it or in any older directory could make the cut); an id with fewer than `first`
//! events (or none) reads every file of the entity. Plan for that with large trees (DuckDB over
//! the same files is the tool for bulk questions).
//!
//! **Memory.** At most `first` matching rows are kept (a bounded min-heap), plus the rows of the
//! one file being read (an audit file holds one Kafka offset window of one partition).
//!
//! **What is read.** Only `*.parquet` files; `.tmp-*` files (a writer's temp file or a crash's
//! leftover) and other dot files are skipped. A missing tree or entity directory is an empty
//! history; an unreadable or foreign file is an error naming it.

use super::model::AuditEvent;
use crate::event::EntityName;
use crate::sink::audit::{self, AuditError, AuditRow};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    File(#[from] AuditError),
}

/// A kept row, ordered by (event_ts, kafka_offset, event_uuid): newest is greatest.
struct Newest(AuditRow);

impl Newest {
    fn key(&self) -> (i64, i64, &str) {
        (self.0.event_ts, self.0.kafka_offset, &self.0.event_uuid)
    }
}

impl PartialEq for Newest {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Newest {}
impl PartialOrd for Newest {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Newest {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// The newest `first` events of `entity` `id` under `root`, newest first. Blocking IO: call it
/// from `spawn_blocking`.
pub fn read(root: &Path, entity: EntityName, id: &str, first: usize) -> Result<Vec<AuditEvent>, HistoryError> {
    let entity_dir = root.join(format!("entity={}", entity.as_str()));
    let mut days = match list(&entity_dir)? {
        Some(entries) => entries.into_iter().filter_map(|(name, path)| day_of(&name).map(|d| (d, path))).collect::<Vec<_>>(),
        None => return Ok(Vec::new()),
    };
    days.sort_by_key(|(day, _)| Reverse(*day));
    // Min-heap of the newest `first` rows: the root is the oldest kept.
    let mut kept: BinaryHeap<Reverse<Newest>> = BinaryHeap::with_capacity(first + 1);
    for (day, dir) in days {
        let day_end = (i64::from(day) + 1) * DAY_MS;
        if kept.len() >= first && kept.peek().is_some_and(|Reverse(oldest)| oldest.0.event_ts >= day_end) {
            break;
        }
        let Some(mut files) = list(&dir)? else { continue };
        files.retain(|(name, _)| name.ends_with(".parquet") && !name.starts_with('.'));
        files.sort();
        for (_, path) in files {
            for row in audit::read_file(&path)?.into_iter().filter(|r| r.id == id) {
                kept.push(Reverse(Newest(row)));
                if kept.len() > first {
                    kept.pop();
                }
            }
        }
    }
    // `into_sorted_vec` of `Reverse` is ascending in `Reverse`, i.e. newest first.
    Ok(kept.into_sorted_vec().into_iter().map(|Reverse(Newest(row))| event(row)).collect())
}

/// (file name, path) of a directory's entries; `None` if it does not exist.
fn list(dir: &Path) -> Result<Option<Vec<(String, PathBuf)>>, HistoryError> {
    let io = |source| HistoryError::Io { path: dir.to_path_buf(), source };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io)?;
        out.push((entry.file_name().to_string_lossy().into_owned(), entry.path()));
    }
    Ok(Some(out))
}

/// Days since 1970-01-01 of a `dt=YYYY-MM-DD` directory name.
fn day_of(name: &str) -> Option<i32> {
    crate::time::parse_date(name.strip_prefix("dt=")?)
}

fn event(row: AuditRow) -> AuditEvent {
    AuditEvent {
        event_uuid: row.event_uuid,
        change_type: row.change_type,
        event_ts: rfc3339_millis(row.event_ts),
        source_version: row.source_version,
        deleted: row.deleted,
        payload: row.payload,
        kafka_topic: row.kafka_topic,
        kafka_partition: row.kafka_partition,
        kafka_offset: row.kafka_offset,
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of epoch milliseconds.
pub fn rfc3339_millis(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let in_day = ms.rem_euclid(DAY_MS);
    let date = i32::try_from(days).map(crate::time::format_date).unwrap_or_else(|_| "out-of-range".into());
    let (h, m, s, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    format!("{date}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn only_day_directories_count() {
        assert_eq!(day_of("dt=1970-01-02"), Some(1));
        assert_eq!(day_of("dt=2026-02-30"), None);
        assert_eq!(day_of(".tmp-x"), None);
    }

    #[test]
    fn a_missing_tree_is_an_empty_history() {
        let root = std::env::temp_dir().join(format!("slate-analyst-none-{}", uuid::Uuid::new_v4().simple()));
        assert!(read(&root, crate::studio::kind::BUDGET, "bud-1", 10).unwrap().is_empty());
    }
}
