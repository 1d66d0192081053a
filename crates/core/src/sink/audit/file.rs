//! One audit Parquet file: its schema, encoding with the low-level column writer, reading it
//! back with the row reader, and the atomic, durable replacement of a file on disk.

use parquet::basic::Compression;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use parquet::schema::parser::parse_message_type;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file schema. Column order is the order of [`AuditRow`]'s fields; `entity` is stored in
/// the file as well as in the `entity=` directory so a file read on its own is complete.
const SCHEMA: &str = "
message slate_audit {
  required binary event_uuid (STRING);
  required binary entity (STRING);
  required binary id (STRING);
  required binary change_type (STRING);
  required int64 event_ts (TIMESTAMP(MILLIS,true));
  optional int64 source_version;
  required boolean deleted;
  optional binary payload (STRING);
  required binary kafka_topic (STRING);
  required int32 kafka_partition;
  required int64 kafka_offset;
  required int64 written_at (TIMESTAMP(MILLIS,true));
}";

/// One audit row: one event uuid of one enriched record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub event_uuid: String,
    pub entity: String,
    pub id: String,
    pub change_type: String,
    /// Epoch ms, UTC.
    pub event_ts: i64,
    pub source_version: Option<i64>,
    pub deleted: bool,
    /// The record as JSON; `None` for a tombstone.
    pub payload: Option<String>,
    pub kafka_topic: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    /// When the row was first written (epoch ms); a rewrite keeps it.
    pub written_at: i64,
}

impl AuditRow {
    /// The identity of a row: a replay of the same Kafka message yields the same keys.
    pub fn key(&self) -> (i64, String) {
        (self.kafka_offset, self.event_uuid.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: parquet: {source}")]
    Parquet { path: PathBuf, source: ParquetError },
    #[error("{path}: not an audit file: {reason}; move it out of the audit tree")]
    Foreign { path: PathBuf, reason: String },
}

pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io { path: path.to_path_buf(), source }
}

fn pq(path: &Path) -> impl FnOnce(ParquetError) -> FileError + '_ {
    move |source| FileError::Parquet { path: path.to_path_buf(), source }
}

/// Encodes `rows` as one Parquet file (one row group, Snappy) in memory.
pub fn encode(rows: &[AuditRow]) -> Result<Vec<u8>, ParquetError> {
    let schema = Arc::new(parse_message_type(SCHEMA)?);
    let props = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
    let mut writer = SerializedFileWriter::new(Vec::new(), schema, props)?;
    let mut group = writer.next_row_group()?;
    let strings = |f: fn(&AuditRow) -> &str| rows.iter().map(|r| ByteArray::from(f(r))).collect::<Vec<_>>();
    let mut column = 0;
    while let Some(mut col) = group.next_column()? {
        match column {
            0 => col.typed::<ByteArrayType>().write_batch(&strings(|r| &r.event_uuid), None, None)?,
            1 => col.typed::<ByteArrayType>().write_batch(&strings(|r| &r.entity), None, None)?,
            2 => col.typed::<ByteArrayType>().write_batch(&strings(|r| &r.id), None, None)?,
            3 => col.typed::<ByteArrayType>().write_batch(&strings(|r| &r.change_type), None, None)?,
            4 => col.typed::<Int64Type>().write_batch(&rows.iter().map(|r| r.event_ts).collect::<Vec<_>>(), None, None)?,
            5 => {
                let values: Vec<i64> = rows.iter().filter_map(|r| r.source_version).collect();
                let defs: Vec<i16> = rows.iter().map(|r| i16::from(r.source_version.is_some())).collect();
                col.typed::<Int64Type>().write_batch(&values, Some(&defs), None)?
            }
            6 => col.typed::<BoolType>().write_batch(&rows.iter().map(|r| r.deleted).collect::<Vec<_>>(), None, None)?,
            7 => {
                let values: Vec<ByteArray> = rows.iter().filter_map(|r| r.payload.as_deref().map(ByteArray::from)).collect();
                let defs: Vec<i16> = rows.iter().map(|r| i16::from(r.payload.is_some())).collect();
                col.typed::<ByteArrayType>().write_batch(&values, Some(&defs), None)?
            }
            8 => col.typed::<ByteArrayType>().write_batch(&strings(|r| &r.kafka_topic), None, None)?,
            9 => col.typed::<Int32Type>().write_batch(&rows.iter().map(|r| r.kafka_partition).collect::<Vec<_>>(), None, None)?,
            10 => col.typed::<Int64Type>().write_batch(&rows.iter().map(|r| r.kafka_offset).collect::<Vec<_>>(), None, None)?,
            11 => col.typed::<Int64Type>().write_batch(&rows.iter().map(|r| r.written_at).collect::<Vec<_>>(), None, None)?,
            n => return Err(ParquetError::General(format!("audit schema has no column {n}"))),
        };
        col.close()?;
        column += 1;
    }
    group.close()?;
    writer.into_inner()
}

/// Reads every row of an audit file.
pub fn read(path: &Path) -> Result<Vec<AuditRow>, FileError> {
    let file = File::open(path).map_err(io(path))?;
    let reader = SerializedFileReader::new(file).map_err(pq(path))?;
    let mut rows = Vec::with_capacity(reader.metadata().file_metadata().num_rows().max(0) as usize);
    for row in reader.into_iter() {
        let row = row.map_err(pq(path))?;
        rows.push(from_fields(row.into_columns()).map_err(|reason| FileError::Foreign { path: path.to_path_buf(), reason })?);
    }
    Ok(rows)
}

fn from_fields(fields: Vec<(String, Field)>) -> Result<AuditRow, String> {
    let mut row = AuditRow {
        event_uuid: String::new(),
        entity: String::new(),
        id: String::new(),
        change_type: String::new(),
        event_ts: 0,
        source_version: None,
        deleted: false,
        payload: None,
        kafka_topic: String::new(),
        kafka_partition: 0,
        kafka_offset: 0,
        written_at: 0,
    };
    let mut seen = 0;
    for (name, value) in fields {
        let unexpected = |v: &Field| format!("column {name} holds {v:?}");
        match (name.as_str(), value) {
            ("event_uuid", Field::Str(s)) => row.event_uuid = s,
            ("entity", Field::Str(s)) => row.entity = s,
            ("id", Field::Str(s)) => row.id = s,
            ("change_type", Field::Str(s)) => row.change_type = s,
            ("event_ts", Field::TimestampMillis(t)) => row.event_ts = t,
            ("source_version", Field::Long(v)) => row.source_version = Some(v),
            ("source_version", Field::Null) => row.source_version = None,
            ("deleted", Field::Bool(b)) => row.deleted = b,
            ("payload", Field::Str(s)) => row.payload = Some(s),
            ("payload", Field::Null) => row.payload = None,
            ("kafka_topic", Field::Str(s)) => row.kafka_topic = s,
            ("kafka_partition", Field::Int(p)) => row.kafka_partition = p,
            ("kafka_offset", Field::Long(o)) => row.kafka_offset = o,
            ("written_at", Field::TimestampMillis(t)) => row.written_at = t,
            (_, v) => return Err(unexpected(&v)),
        }
        seen += 1;
    }
    if seen != 12 {
        return Err(format!("{seen} columns instead of 12"));
    }
    Ok(row)
}

/// Replaces `path` with `bytes` atomically and durably: write a temp file in the same directory
/// (a dot name without the `.parquet` suffix, so `*.parquet` globs never see it), fsync it,
/// rename it over `path`, fsync the directory. Readers see the old file or the new one, never a
/// partial one; after `Ok` the new file survives a crash or power loss.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let dir = path.parent().expect("audit files live in a partition directory");
    let name = path.file_name().expect("audit file name").to_string_lossy();
    let tmp = dir.join(format!(".tmp-{name}.{}", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    })();
    if written.is_err() {
        // Best effort: a leftover temp file is invisible to readers and overwritten by no one.
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_dir(dir)
}

/// Makes the directory's entries (a rename, a new subdirectory) durable.
pub fn sync_dir(dir: &Path) -> Result<(), FileError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(offset: i64, uuid: &str, payload: Option<&str>) -> AuditRow {
        AuditRow {
            event_uuid: uuid.into(),
            entity: "budget".into(),
            id: "bud-1".into(),
            change_type: "UPDATE".into(),
            event_ts: 1_700_000_000_123,
            source_version: payload.map(|_| 7),
            deleted: payload.is_none(),
            payload: payload.map(str::to_string),
            kafka_topic: "slate.budget.enriched".into(),
            kafka_partition: 1,
            kafka_offset: offset,
            written_at: 1_700_000_001_000,
        }
    }

    #[test]
    fn rows_round_trip_through_a_file_including_nulls() {
        let dir = std::env::temp_dir().join(format!("slate-audit-unit-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t-p1-o0-999.parquet");
        let rows = vec![row(3, "a", Some("{\"x\":1}")), row(4, "b", None)];
        replace(&path, &encode(&rows).unwrap()).unwrap();
        assert_eq!(read(&path).unwrap(), rows);
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("t-p1-o0-999.parquet")], "no temp file left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
