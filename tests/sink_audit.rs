//! The audit sink: one Parquet row per event uuid, Hive-partitioned by entity and UTC day, read
//! back with DuckDB (a reader slate did not write); replays with other batch boundaries never
//! duplicate a row; IO failures are transient and name the path; and end to end on the real
//! broker, every event the studio published appears exactly once, also after a full replay.

mod common;
mod enricher_support;

use common::*;
use enricher_support::*;
use serde_json::{Value, json};
use slate::config::AuditSinkConfig;
use slate::event::{ChangeEvent, ChangeType, EntityName};
use slate::metrics::Metrics;
use slate::sink::audit::AuditSink;
use slate::sink::{Sink, SinkError, SinkRecord, WriteOutcome};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A fresh directory under the system temp dir, removed when dropped (also on a failed test).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("slate-audit"));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sink(dir: &Path) -> AuditSink {
    AuditSink::new(&AuditSinkConfig { dir: dir.to_path_buf() }).expect("audit sink")
}

/// Runs `sql` with DuckDB over the tree (view `audit`); `None` while the tree has no file yet.
async fn try_query(dir: &Path, sql: &str) -> Option<Vec<Value>> {
    let (ok, out, err) = run_command(
        tokio::process::Command::new(env("TEST_PYTHON")).args(["tests/py/audit_query.py", dir.to_str().unwrap(), sql]),
        Duration::from_secs(60),
    )
    .await;
    if !ok && err.contains("no parquet file") {
        return None;
    }
    assert!(ok, "duckdb query failed: {sql}\n{out}\n{err}");
    Some(out.lines().map(|l| serde_json::from_str(l).expect("json row")).collect())
}

async fn query(dir: &Path, sql: &str) -> Vec<Value> {
    try_query(dir, sql).await.expect("the audit tree has files")
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn record(entity: EntityName, id: &str, (partition, offset): (i32, i64), uuids: &[Uuid], event_ts: i64) -> SinkRecord {
    SinkRecord {
        writer: None,
        entity,
        id: id.into(),
        version: Some(offset + 1),
        value: Some(json!({"id": id, "version": offset + 1, "title": "The Ledger"})),
        change_type: ChangeType::Update,
        event_ts,
        event_uuids: uuids.to_vec(),
        topic: format!("slate.{}.enriched", entity.as_str()),
        partition,
        offset,
    }
}

// 2026-01-15T00:00:00Z
const DAY: i64 = 1_768_435_200_000;
const MS_PER_DAY: i64 = 86_400_000;

#[tokio::test]
async fn rows_per_uuid_partitioned_by_entity_and_day_with_tombstones() {
    let dir = TempDir::new();
    let audit = sink(&dir.0);
    let u: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
    let mut tombstone = record(slate::studio::kind::PRODUCTION, "prod-2", (0, 7), &u[4..5], DAY + MS_PER_DAY - 1);
    (tombstone.value, tombstone.version, tombstone.change_type) = (None, Some(9), ChangeType::Delete);
    let mut no_uuid = record(slate::studio::kind::BUDGET, "bud-9", (1, 8), &[], DAY);
    no_uuid.event_uuids.clear();
    let batch = vec![
        record(slate::studio::kind::BUDGET, "bud-1", (1, 5), &u[0..3], DAY + 10 * 3_600_000),
        record(slate::studio::kind::PRODUCTION, "prod-1", (0, 6), &u[3..4], DAY + MS_PER_DAY),
        tombstone,
        no_uuid,
    ];
    let outcome = audit.write(&batch).await.expect("write");
    assert_eq!((outcome.applied, outcome.stale), (3, 0));
    assert_eq!(outcome.rejected.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![3], "a record without uuid is rejected");

    assert_eq!(
        files(&dir.0),
        vec![
            "entity=budget/dt=2026-01-15/slate.budget.enriched-p1-o0-999.parquet",
            "entity=production/dt=2026-01-15/slate.production.enriched-p0-o0-999.parquet",
            "entity=production/dt=2026-01-16/slate.production.enriched-p0-o0-999.parquet",
        ],
        "layout entity=/dt= with window-named files and no temp files"
    );
    let types: BTreeMap<String, String> = query(&dir.0, "DESCRIBE SELECT * FROM audit")
        .await
        .into_iter()
        .map(|r| (r["column_name"].as_str().unwrap().into(), r["column_type"].as_str().unwrap().into()))
        .collect();
    for (col, ty) in [
        ("event_uuid", "VARCHAR"),
        ("event_ts", "TIMESTAMP WITH TIME ZONE"),
        ("written_at", "TIMESTAMP WITH TIME ZONE"),
        ("source_version", "BIGINT"),
        ("deleted", "BOOLEAN"),
        ("payload", "VARCHAR"),
        ("kafka_partition", "INTEGER"),
        ("kafka_offset", "BIGINT"),
        ("dt", "DATE"),
    ] {
        assert_eq!(types.get(col).map(String::as_str), Some(ty), "column {col} in {types:?}");
    }

    let rows = query(
        &dir.0,
        "SELECT event_uuid, entity, CAST(dt AS VARCHAR) AS dt, id, change_type, epoch_ms(event_ts) AS ts, source_version, deleted, \
         payload, kafka_topic, kafka_partition, kafka_offset FROM audit ORDER BY kafka_offset, event_uuid",
    )
    .await;
    assert_eq!(rows.len(), 5, "3 coalesced uuids + 1 + 1 tombstone: {rows:#?}");
    let bud: Vec<&Value> = rows.iter().filter(|r| r["id"] == "bud-1").collect();
    let mut bud_uuids: Vec<&str> = bud.iter().map(|r| r["event_uuid"].as_str().unwrap()).collect();
    bud_uuids.sort();
    let mut want: Vec<String> = u[0..3].iter().map(Uuid::to_string).collect();
    want.sort();
    assert_eq!(bud_uuids, want);
    for r in &bud {
        assert_eq!(
            (r["entity"].as_str(), r["dt"].as_str(), r["change_type"].as_str()),
            (Some("budget"), Some("2026-01-15"), Some("UPDATE"))
        );
        assert_eq!(
            (r["kafka_topic"].as_str(), r["kafka_partition"].as_i64(), r["kafka_offset"].as_i64()),
            (Some("slate.budget.enriched"), Some(1), Some(5))
        );
        assert_eq!(r["source_version"], 6);
        assert_eq!(r["deleted"], false);
        assert_eq!(r["ts"], DAY + 10 * 3_600_000);
        let payload: Value = serde_json::from_str(r["payload"].as_str().unwrap()).unwrap();
        assert_eq!(payload, json!({"id": "bud-1", "version": 6, "title": "The Ledger"}));
    }
    let prod1 = rows.iter().find(|r| r["id"] == "prod-1").unwrap();
    assert_eq!(prod1["dt"], "2026-01-16", "midnight UTC starts the next day");
    let gone = rows.iter().find(|r| r["id"] == "prod-2").unwrap();
    assert_eq!(gone["dt"], "2026-01-15", "the last millisecond of a day stays in it");
    assert_eq!(
        (gone["deleted"].as_bool(), gone["change_type"].as_str(), gone["source_version"].as_i64()),
        (Some(true), Some("DELETE"), Some(9))
    );
    assert!(gone["payload"].is_null(), "a tombstone has no payload: {gone}");
}

/// Records of two partitions whose offsets cross a window boundary (1000), 1-3 uuids each,
/// event days alternating.
fn replay_workload() -> Vec<SinkRecord> {
    let mut out = Vec::new();
    for offset in 960..1040 {
        for partition in [0, 3] {
            let n = 1 + (offset as usize + partition as usize) % 3;
            let uuids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
            let kind = if offset % 2 == 0 { slate::studio::kind::CASH_FLOW } else { slate::studio::kind::PAYMENT };
            let mut r = record(kind, &format!("id-{}", offset % 7), (partition, offset), &uuids, DAY + (offset % 3) * MS_PER_DAY);
            // One topic per entity, as on Kafka.
            r.topic = "slate.mixed.enriched".into();
            out.push(r);
        }
    }
    out
}

async fn write_in_batches(audit: &AuditSink, records: &[SinkRecord], size: usize) -> WriteOutcome {
    let mut total = WriteOutcome::default();
    for chunk in records.chunks(size) {
        let o = audit.write(chunk).await.expect("write");
        assert!(o.rejected.is_empty(), "{:?}", o.rejected);
        total.applied += o.applied;
        total.stale += o.stale;
    }
    total
}

async fn audited(dir: &Path) -> (usize, BTreeMap<String, i64>) {
    let rows = query(dir, "SELECT event_uuid, epoch_ms(written_at) AS w FROM audit").await;
    let set = rows.iter().map(|r| (r["event_uuid"].as_str().unwrap().to_string(), r["w"].as_i64().unwrap())).collect();
    (rows.len(), set)
}

#[tokio::test]
async fn replays_with_other_batch_boundaries_never_duplicate_rows() {
    let dir = TempDir::new();
    let records = replay_workload();
    let uuids_of = |rs: &[SinkRecord]| rs.iter().flat_map(|r| r.event_uuids.iter().map(Uuid::to_string)).collect::<BTreeSet<_>>();

    // First run stops after 90 records in batches of 7 (a crash before the last commits) ...
    let first = write_in_batches(&sink(&dir.0), &records[..90], 7).await;
    assert_eq!((first.applied, first.stale), (90, 0));
    let (n, seen) = audited(&dir.0).await;
    assert_eq!((n, seen.keys().cloned().collect::<BTreeSet<_>>()), (seen.len(), uuids_of(&records[..90])));

    // ... the next resumes from an older commit with batches of 13, overlapping the first run.
    let resumed = write_in_batches(&sink(&dir.0), &records[60..], 13).await;
    assert_eq!((resumed.applied, resumed.stale), (records.len() - 90, 30), "the overlap is recognized as already written");
    let (n, before_replays) = audited(&dir.0).await;
    assert_eq!(n, before_replays.len(), "no duplicate event_uuid after an overlapping resume");
    assert_eq!(before_replays.keys().cloned().collect::<BTreeSet<_>>(), uuids_of(&records));

    // Full replays (new consumer groups) with other boundaries, including one single batch.
    for size in [5, 11, records.len()] {
        let replay = write_in_batches(&sink(&dir.0), &records, size).await;
        assert_eq!((replay.applied, replay.stale), (0, records.len()), "batches of {size}");
    }
    let (n, after) = audited(&dir.0).await;
    assert_eq!(n, after.len(), "no duplicate event_uuid after replays");
    assert_eq!(after, before_replays, "replays rewrite nothing: same rows, same written_at");
    let dup = query(&dir.0, "SELECT kafka_offset, event_uuid, count(*) AS c FROM audit GROUP BY ALL HAVING c > 1").await;
    assert!(dup.is_empty(), "{dup:?}");
    // Offsets 960..1040 of each partition: two windows, per day directory.
    let names = files(&dir.0);
    assert!(names.iter().all(|f| f.ends_with(".parquet") && !f.contains(".tmp-")), "{names:?}");
    assert!(names.iter().any(|f| f.ends_with("slate.mixed.enriched-p3-o1000-1999.parquet")), "{names:?}");
    assert!(names.iter().any(|f| f.ends_with("slate.mixed.enriched-p0-o0-999.parquet")), "{names:?}");
}

#[tokio::test]
async fn io_errors_are_transient_and_name_the_path() {
    let dir = TempDir::new();
    let audit = sink(&dir.0);
    let batch = [record(slate::studio::kind::BUDGET, "bud-1", (0, 1), &[Uuid::new_v4()], DAY)];

    // A file where the partition directory must go (as root, permissions cannot be used).
    let blocker = dir.0.join("entity=budget");
    std::fs::write(&blocker, b"in the way").unwrap();
    match audit.write(&batch).await {
        Err(SinkError::Unavailable(msg)) => assert!(msg.contains(&*blocker.to_string_lossy()), "{msg}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    std::fs::remove_file(&blocker).unwrap();
    assert_eq!(audit.write(&batch).await.expect("recovers").applied, 1);

    // An unreadable file in the tree is not silently overwritten.
    let file = dir.0.join("entity=budget/dt=2026-01-15/slate.budget.enriched-p0-o0-999.parquet");
    std::fs::write(&file, b"not parquet").unwrap();
    match audit.write(&batch).await {
        Err(SinkError::Unavailable(msg)) => assert!(msg.contains(&*file.to_string_lossy()), "{msg}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"not parquet");
}

/// Every event uuid published on the studio's change topics.
fn published_uuids(cfg: &slate::config::Config, studio_metrics: &Metrics) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for kind in slate::studio::kind::ALL {
        let topic = kind.changes_topic(&cfg.studio.topic_prefix);
        let n = studio_metrics.produced_total.get_or_create(&slate::metrics::label("topic", topic.clone())).get() as usize;
        for (key, payload) in read_n(&topic, cfg.studio.topic_partitions, n, Duration::from_secs(30)) {
            let e = ChangeEvent::decode_json(&payload.expect("event"), Some(&key), Some(kind)).expect("studio events decode");
            out.insert(e.uuid.to_string());
        }
    }
    out
}

/// Waits until the sink has handled `records` records (applied + stale), bounded.
async fn wait_handled(metrics: &Metrics, records: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let handled = counter(metrics, "slate_sink_written_total") + counter(metrics, "slate_sink_stale_total");
        if handled >= records as f64 {
            return;
        }
        assert!(Instant::now() < deadline, "audit sink handled {handled} of {records} records within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pipeline_events_land_once_and_a_replay_adds_nothing() {
    let dir = TempDir::new();
    let registry = TestRegistry::start().await;
    let mut cfg = pipeline_config(
        &registry.url,
        &[
            ov("studio.load.mutations_per_sec", 400),
            ov("studio.load.max_mutations", 300),
            ov("studio.load.key_skew", "\"zipf:1.1\""),
            ov("studio.num_productions", 8),
            ov("enricher.batch_max_wait", "\"100ms\""),
            ov("sinks.group_prefix", format!("\"{}-\"", unique("audit"))),
            ov("sinks.dlq_topic", format!("\"{}\"", unique("sink-dlq"))),
            ov("sinks.batch_max_events", 50),
            ov("sinks.batch_max_wait", "\"50ms\""),
        ],
    );
    cfg.sinks.topic_prefix = cfg.enricher.output_topic_prefix.clone();
    cfg.sinks.metrics_listen = None;
    cfg.sinks.audit.dir = dir.0.clone();
    let studio_metrics = Metrics::new();
    let mut studio = slate::studio::server::start(&cfg, studio_metrics.clone()).await.expect("studio starts");
    use_studio(&mut cfg, &studio);
    let metrics = Metrics::new();
    let enricher = slate::enrich::start(&cfg, metrics.clone()).await.expect("enricher starts");
    let sink_metrics = Metrics::new();
    let audit = slate::sink::runner::start(&cfg, Arc::new(AuditSink::new(&cfg.sinks.audit).unwrap()), sink_metrics.clone())
        .await
        .expect("audit sink starts");

    let report = tokio::time::timeout(Duration::from_secs(60), studio.load_finished()).await.expect("load finishes");
    assert_eq!(report.failures, 0);
    // Deletes too, so tombstones reach the audit trail.
    let payments = studio.studio.store.list_ids(slate::studio::kind::PAYMENT, None, 3);
    assert!(!payments.is_empty(), "the load created payments");
    for id in &payments {
        let changes = studio.studio.store.delete_payment(id).expect("delete");
        studio.studio.publish(&changes).await.expect("publish delete");
    }
    let published = tokio::task::spawn_blocking({
        let (cfg, m) = (cfg.clone(), studio_metrics.clone());
        move || published_uuids(&cfg, &m)
    })
    .await
    .unwrap();
    assert!(published.len() >= report.events_acked as usize, "{} uuids for {} acked events", published.len(), report.events_acked);

    let count_sql = "SELECT count(*) AS n, count(DISTINCT event_uuid) AS d FROM audit";
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = try_query(&dir.0, count_sql).await.map(|r| r[0]["n"].as_u64().unwrap() as usize).unwrap_or(0);
        if n >= published.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {} event rows audited within 120s (superseded {}, dead-lettered {})",
            published.len(),
            counter(&metrics, "slate_enricher_superseded_total"),
            counter(&metrics, "slate_dead_lettered_total")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    audit.shutdown().await.expect("audit sink stops cleanly");
    // No event was dropped as superseded (it would have no row), none dead-lettered.
    assert_eq!(counter(&metrics, "slate_enricher_superseded_total"), 0.0);
    assert_eq!(counter(&metrics, "slate_dead_lettered_total"), 0.0);
    assert_eq!(counter(&sink_metrics, "slate_sink_rejected_total"), 0.0);

    let check = |label: &'static str| {
        let (dir, published, prefix) = (dir.0.clone(), published.clone(), cfg.enricher.output_topic_prefix.clone());
        async move {
            let c = query(&dir, count_sql).await;
            assert_eq!((c[0]["n"].as_u64(), c[0]["d"].as_u64()), (Some(published.len() as u64), Some(published.len() as u64)), "{label}");
            let audited: BTreeSet<String> =
                query(&dir, "SELECT event_uuid FROM audit").await.iter().map(|r| r["event_uuid"].as_str().unwrap().to_string()).collect();
            assert_eq!(audited, published, "{label}: exactly the published event uuids");
            let deletes = query(&dir, "SELECT count(*) AS n FROM audit WHERE deleted AND payload IS NULL AND change_type = 'DELETE'").await;
            assert!(deletes[0]["n"].as_u64().unwrap() >= 1, "{label}: tombstones audited");
            let coalesced = query(
                &dir,
                "SELECT count(*) AS n FROM (SELECT kafka_topic, kafka_partition, kafka_offset FROM audit GROUP BY ALL HAVING count(*) > 1)",
            )
            .await;
            assert!(coalesced[0]["n"].as_u64().unwrap() >= 1, "{label}: a record that coalesced events gives one row per event");
            let sql = format!("SELECT count(*) AS n FROM audit WHERE kafka_topic <> '{prefix}' || entity || '.enriched'");
            assert_eq!(query(&dir, &sql).await[0]["n"], 0, "{label}: rows carry their topic");
        }
    };
    check("first run").await;

    // Replay everything with a new consumer group and other batch boundaries.
    let enriched: usize = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        move || slate::studio::kind::ALL.iter().map(|k| read_all(&cfg.enricher.output_topic(*k), cfg.enricher.topic_partitions).len()).sum()
    })
    .await
    .unwrap();
    let mut replay_cfg = cfg.clone();
    replay_cfg.sinks.group_prefix = format!("{}-", unique("audit-replay"));
    replay_cfg.sinks.batch_max_events = 7;
    let replay_metrics = Metrics::new();
    let replay = slate::sink::runner::start(&replay_cfg, Arc::new(AuditSink::new(&cfg.sinks.audit).unwrap()), replay_metrics.clone())
        .await
        .expect("replay sink starts");
    wait_handled(&replay_metrics, enriched, Duration::from_secs(120)).await;
    replay.shutdown().await.expect("replay sink stops cleanly");
    assert_eq!(counter(&replay_metrics, "slate_sink_written_total"), 0.0, "a replay adds no row");
    assert_eq!(counter(&replay_metrics, "slate_sink_stale_total"), enriched as f64);
    check("after replay").await;
    assert!(files(&dir.0).iter().all(|f| f.ends_with(".parquet")), "no temp file left");

    enricher.shutdown().await;
    studio.shutdown().await;
    registry.stop().await;
}
