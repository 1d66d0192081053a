//! The audit sink: every event uuid behind every enriched record becomes one row of a
//! Hive-partitioned Parquet tree, the durable "what happened, when, from which Kafka message"
//! trail (`slate run sink audit`).
//!
//! **Layout.** `<dir>/entity=<entity>/dt=<YYYY-MM-DD>/<topic>-p<partition>-o<start>-<end>.parquet`,
//! `dt` being the UTC day of the record's event timestamp. Columns: `event_uuid`, `entity`, `id`,
//! `change_type`, `event_ts` (timestamp ms, UTC), `source_version` (nullable), `deleted`,
//! `payload` (the record as JSON; null for a tombstone), `kafka_topic`, `kafka_partition`,
//! `kafka_offset`, `written_at` (timestamp ms of the first write of the row). A record that
//! coalesced N events gives N rows with the same payload. Query it with e.g. DuckDB:
//! `read_parquet('<dir>/**/*.parquet', hive_partitioning = true)`.
//!
//! **File names and idempotent replays.** A file holds the rows of one Kafka partition whose
//! offsets fall in one fixed window of [`OFFSETS_PER_FILE`] offsets (`start` = offset rounded down
//! to the window, `end` = `start + OFFSETS_PER_FILE - 1`), within one `dt` directory. The name
//! depends only on the data (topic, partition, window, and the event day through the directory),
//! never on how the consumer happened to batch it: naming files after each batch's first and
//! last offset would give a replay with other batch boundaries overlapping files under other
//! names, i.e. duplicate rows. A batch that touches a window reads the window's file back,
//! adds the rows it does not hold yet (row identity: `kafka_offset` + `event_uuid`, which a replay
//! of the same message reproduces), and replaces the file. So any replay — same or different
//! batch sizes, from offset 0 or from the last commit, any number of times — leaves each row
//! exactly once. A batch whose rows are all present already rewrites nothing and counts them as
//! stale. The window size is part of the on-disk format: changing it would name the same offsets
//! differently. (A uuid the enricher emitted twice, at two offsets, is two deliveries and gives
//! two rows with different `kafka_offset`; the enricher does that only when it re-runs a batch.)
//!
//! **Atomicity.** Files are written to `.tmp-<name>.<random>` in the target directory (a name the
//! `*.parquet` glob does not match), fsynced, then renamed over the final name: a reader sees the
//! old or the new complete file, never a partial one. A crash can leave a `.tmp-*` file behind;
//! readers ignore it and it is safe to delete.
//!
//! **Durability.** After the rename the directory is fsynced, as is the parent of every directory
//! created, before [`Sink::write`] returns `Ok`; only then does the shared loop store the batch's
//! offsets. IO errors (disk full, permissions, an unreadable file in the tree) are
//! [`SinkError::Unavailable`] naming the path: the loop retries the batch with backoff and
//! commits nothing meanwhile. A record that cannot be audited (no event uuid, an event timestamp
//! outside years 1970..=9999, impossible Kafka coordinates) is rejected to the dead-letter topic.
//!
//! **Writers.** A read-merge-replace of a file assumes one writer per Kafka partition, which the
//! consumer group gives; within a process every write holds one lock, so two sinks on one
//! directory (a replay group beside the live one) cannot lose each other's rows.

mod file;

pub use file::AuditRow;

use super::{Sink, SinkError, SinkRecord, WriteOutcome};
use crate::config::AuditSinkConfig;
use file::FileError;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;

/// Offsets per file window; part of the on-disk format (see the module doc).
pub const OFFSETS_PER_FILE: i64 = 1000;

/// 9999-12-31T23:59:59.999Z: the last instant a `dt=YYYY-MM-DD` directory can name.
const MAX_EVENT_TS: i64 = 253_402_300_799_999;

/// Serializes read-merge-replace cycles of every audit sink in this process.
static WRITE_LOCK: Mutex<()> = Mutex::new(());

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit directory: {0}")]
    File(#[from] FileError),
}

pub struct AuditSink {
    root: PathBuf,
}

impl AuditSink {
    /// Creates the root directory (durably) if needed.
    pub fn new(cfg: &AuditSinkConfig) -> Result<Self, AuditError> {
        ensure_dir(&cfg.dir)?;
        Ok(Self { root: cfg.dir.clone() })
    }

    /// The root of the Parquet tree.
    pub fn dir(&self) -> &Path {
        &self.root
    }
}

impl Sink for AuditSink {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn write<'a>(&'a self, batch: &'a [SinkRecord]) -> Pin<Box<dyn Future<Output = Result<WriteOutcome, SinkError>> + Send + 'a>> {
        Box::pin(async move {
            let plan = plan(batch, crate::time::now_millis());
            let num_valid = batch.len() - plan.rejected.len();
            let root = self.root.clone();
            let files = plan.files;
            let fresh = tokio::task::spawn_blocking(move || write_files(&root, files))
                .await
                .map_err(|e| SinkError::Fatal(format!("audit writer panicked: {e}")))?
                .map_err(|e| SinkError::Unavailable(format!("audit write failed: {e}")))?;
            Ok(WriteOutcome { applied: fresh.len(), stale: num_valid - fresh.len(), rejected: plan.rejected, halted: Vec::new() })
        })
    }
}

/// Reads every row of one audit file (blocking IO): for readers of the tree, such as the
/// analyst API's entity history. Errors name the file.
pub fn read_file(path: &Path) -> Result<Vec<AuditRow>, AuditError> {
    Ok(file::read(path)?)
}

/// One target file: `<entity=…>/<dt=…>/<topic>-p<partition>-o<start>-<end>.parquet`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct FileKey {
    entity: &'static str,
    dt: String,
    topic: String,
    partition: i32,
    window: i64,
}

impl FileKey {
    fn path(&self, root: &Path) -> PathBuf {
        let start = self.window * OFFSETS_PER_FILE;
        root.join(format!("entity={}", self.entity)).join(format!("dt={}", self.dt)).join(format!(
            "{}-p{}-o{}-{}.parquet",
            self.topic,
            self.partition,
            start,
            start + OFFSETS_PER_FILE - 1
        ))
    }
}

/// Rows per file, each tagged with the index of its record in the batch.
type Files = BTreeMap<FileKey, Vec<(usize, AuditRow)>>;

struct Plan {
    files: Files,
    rejected: Vec<(usize, String)>,
}

fn plan(batch: &[SinkRecord], now: i64) -> Plan {
    let mut files = Files::new();
    let mut rejected = Vec::new();
    for (i, r) in batch.iter().enumerate() {
        match rows_of(r, now) {
            Ok((key, rows)) => files.entry(key).or_default().extend(rows.into_iter().map(|row| (i, row))),
            Err(reason) => rejected.push((i, reason)),
        }
    }
    Plan { files, rejected }
}

/// The rows of one record (one per distinct event uuid) and the file they belong to.
fn rows_of(r: &SinkRecord, now: i64) -> Result<(FileKey, Vec<AuditRow>), String> {
    if r.event_uuids.is_empty() {
        return Err("no event uuid: an audit row needs one".into());
    }
    if !(0..=MAX_EVENT_TS).contains(&r.event_ts) {
        return Err(format!("event_ts {} is outside years 1970..=9999", r.event_ts));
    }
    if r.topic.is_empty() || !r.topic.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        return Err(format!("topic '{}' is not a Kafka topic name", r.topic));
    }
    if r.partition < 0 || r.offset < 0 {
        return Err(format!("invalid Kafka coordinates: partition {} offset {}", r.partition, r.offset));
    }
    let days = i32::try_from(r.event_ts.div_euclid(86_400_000)).expect("bounded by MAX_EVENT_TS");
    let key = FileKey {
        entity: r.entity.as_str(),
        dt: crate::time::format_date(days),
        topic: r.topic.clone(),
        partition: r.partition,
        window: r.offset / OFFSETS_PER_FILE,
    };
    let payload = r.value.as_ref().map(|v| v.to_string());
    let uuids: BTreeSet<String> = r.event_uuids.iter().map(ToString::to_string).collect();
    let rows = uuids
        .into_iter()
        .map(|event_uuid| AuditRow {
            event_uuid,
            entity: r.entity.as_str().to_string(),
            id: r.id.clone(),
            change_type: r.change_type.as_str().to_string(),
            event_ts: r.event_ts,
            source_version: r.version,
            deleted: r.value.is_none(),
            payload: payload.clone(),
            kafka_topic: r.topic.clone(),
            kafka_partition: r.partition,
            kafka_offset: r.offset,
            written_at: now,
        })
        .collect();
    Ok((key, rows))
}

/// Merges each file's new rows into what it holds and replaces it; returns the indices of the
/// records that added at least one row. Blocking IO: run it off the async workers.
fn write_files(root: &Path, files: Files) -> Result<BTreeSet<usize>, FileError> {
    let _guard = WRITE_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut fresh = BTreeSet::new();
    for (key, new_rows) in files {
        let path = key.path(root);
        ensure_dir(path.parent().expect("partition directory"))?;
        let existing = match file::read(&path) {
            Ok(rows) => rows,
            Err(FileError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut rows: BTreeMap<(i64, String), AuditRow> = existing.into_iter().map(|r| (r.key(), r)).collect();
        let mut changed = false;
        for (i, row) in new_rows {
            if let std::collections::btree_map::Entry::Vacant(slot) = rows.entry(row.key()) {
                slot.insert(row);
                fresh.insert(i);
                changed = true;
            }
        }
        if !changed {
            continue;
        }
        let rows: Vec<AuditRow> = rows.into_values().collect();
        let bytes = file::encode(&rows).map_err(|source| FileError::Parquet { path: path.clone(), source })?;
        file::replace(&path, &bytes)?;
    }
    Ok(fresh)
}

/// Creates `dir` and its missing ancestors, fsyncing the parent of each one created so the new
/// entries survive a crash.
fn ensure_dir(dir: &Path) -> Result<(), FileError> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    ensure_dir(parent)?;
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(file::io(dir)(e)),
    }
    file::sync_dir(parent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ChangeType;
    use uuid::Uuid;

    fn record(offset: i64, uuids: &[u128], event_ts: i64) -> SinkRecord {
        SinkRecord {
            writer: None,
            entity: crate::catalogue::example::BUDGET,
            id: "bud-1".into(),
            version: Some(3),
            value: Some(serde_json::json!({"id": "bud-1", "version": 3})),
            change_type: ChangeType::Update,
            event_ts,
            event_uuids: uuids.iter().map(|u| Uuid::from_u128(*u)).collect(),
            topic: "slate.budget.enriched".into(),
            partition: 2,
            offset,
        }
    }

    #[test]
    fn file_names_depend_on_the_offset_window_not_the_batch() {
        // 2023-11-14T22:13:20Z
        let (key, rows) = rows_of(&record(1999, &[2, 1, 2], 1_700_000_000_000), 5).unwrap();
        assert_eq!(key.path(Path::new("/a")), Path::new("/a/entity=budget/dt=2023-11-14/slate.budget.enriched-p2-o1000-1999.parquet"));
        assert_eq!(rows.len(), 2, "one row per distinct uuid");
        assert_eq!(rows_of(&record(2000, &[1], 1_700_000_000_000), 5).unwrap().0.window, 2);
    }

    #[test]
    fn unauditable_records_are_rejected() {
        let p = plan(&[record(0, &[], 1), record(1, &[1], -1), record(2, &[1], MAX_EVENT_TS + 1), record(3, &[1], 0)], 0);
        let rejected: Vec<usize> = p.rejected.iter().map(|(i, _)| *i).collect();
        assert_eq!(rejected, vec![0, 1, 2]);
        assert_eq!(p.files.values().map(Vec::len).sum::<usize>(), 1);
    }
}
