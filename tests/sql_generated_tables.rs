//! The SQL sink's tables come from the catalogue's records, on PostgreSQL and SQLite alike:
//! created at connect, a column added when a newer writer schema brings an optional field, and
//! a changed type halting that entity only (named field, nothing of it written, the other
//! entities still written).

mod common;
mod sink_support;

use apache_avro::Schema;
use common::*;
use serde_json::{Value, json};
use sink_support::rec;
use slate::catalogue::{Catalogue, EntityName, EntitySpec, Subjects};
use slate::config::{SecretUrl, SqlSinkConfig};
use slate::sink::{Sink, SinkRecord, WriteOutcome};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn record_json(extra: &[Value]) -> String {
    let production: Value = serde_json::from_str(&std::fs::read_to_string("schemas/avro/Production.avsc").unwrap()).unwrap();
    let meta = production["fields"].as_array().unwrap().iter().find(|f| f["name"] == "_meta").unwrap().clone();
    let mut fields = vec![
        json!({"name": "id", "type": "string"}),
        json!({"name": "version", "type": "long"}),
        json!({"name": "total_cents", "type": "long"}),
        json!({"name": "issued_on", "type": {"type": "int", "logicalType": "date"}}),
        json!({"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
            {"name": "sku", "type": "string"}]}}, "default": []}),
    ];
    fields.extend(extra.iter().cloned());
    fields.push(meta);
    json!({"type": "record", "name": "Ledger", "namespace": "acme", "fields": fields}).to_string()
}

/// `ledger`, and `memo` (another entity of the same deployment).
fn catalogue(dir: &std::path::Path) -> Arc<Catalogue> {
    std::fs::write(dir.join("Ledger.avsc"), record_json(&[])).unwrap();
    std::fs::write(dir.join("Memo.avsc"), record_json(&[]).replace("\"Ledger\"", "\"Memo\"").replace("\"Line\"", "\"MemoLine\"")).unwrap();
    let specs = BTreeMap::from([("ledger".to_string(), EntitySpec::default()), ("memo".to_string(), EntitySpec::default())]);
    Arc::new(Catalogue::load(dir, &specs, &Subjects::none()).unwrap())
}

fn leaked(text: String) -> &'static Schema {
    Box::leak(Box::new(Schema::parse_str(&text).unwrap()))
}

fn ledger(id: &str, version: i64, extra: Value, writer: Option<&'static Schema>) -> SinkRecord {
    let mut value = json!({"id": id, "version": version, "total_cents": 1200, "issued_on": "2027-03-04", "lines": [{"sku": "A"}]});
    value.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    SinkRecord { writer, ..rec(EntityName::lookup("ledger").unwrap(), id, Some(version), Some(value)) }
}

fn memo(id: &str) -> SinkRecord {
    SinkRecord { entity: EntityName::lookup("memo").unwrap(), ..ledger(id, 1, json!({}), None) }
}

/// Writes v1, then a v2 record adding `po`, then a v3 record making `total_cents` a string
/// beside a `memo` record, then a v1 ledger record; returns the last two outcomes.
async fn evolve(sink: &dyn Sink) -> (WriteOutcome, WriteOutcome) {
    let v1 = sink.write(&[ledger("l-1", 1, json!({}), None)]).await.expect("v1 row");
    assert_eq!(v1.applied, 1);
    let v2 = leaked(record_json(&[json!({"name": "po", "type": ["null", "string"], "default": null})]));
    let out = sink.write(&[ledger("l-2", 1, json!({"po": "PO-7"}), Some(v2))]).await.expect("v2 row after ADD COLUMN");
    assert_eq!(out.applied, 1, "{out:?}");
    let v3 = leaked(record_json(&[]).replace(r#"{"name":"total_cents","type":"long"}"#, r#"{"name":"total_cents","type":"string"}"#));
    let mut bad = ledger("l-3", 1, json!({}), Some(v3));
    bad.value.as_mut().unwrap()["total_cents"] = json!("lots");
    let halted = sink.write(&[bad, memo("m-1")]).await.expect("a changed type halts its entity, not the sink");
    let after = sink.write(&[ledger("l-4", 1, json!({}), None), memo("m-2")]).await.expect("the halt lasts");
    (halted, after)
}

fn assert_halts_only_the_ledger((halted, after): &(WriteOutcome, WriteOutcome)) {
    let ledger = EntityName::lookup("ledger").unwrap();
    for out in [halted, after] {
        assert_eq!((out.applied, out.stale, out.rejected.len()), (1, 0, 0), "only the memo is written: {out:?}");
        assert_eq!(out.halted.len(), 1, "{out:?}");
        let (entity, message) = &out.halted[0];
        assert_eq!(*entity, ledger);
        assert!(message.contains("entity `ledger`") && message.contains("total_cents") && message.contains("restart"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_tables_are_created_and_evolved_from_the_record() {
    with_pg_database("slate_gen", |url| async move {
        let dir = std::env::temp_dir().join(unique("slate-gen"));
        std::fs::create_dir_all(&dir).unwrap();
        // The deployment's own SQL, applied after the generated tables: a view over one of them.
        let own = dir.join("sql");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(
            own.join("0001_totals.sql"),
            "CREATE VIEW ledger_totals AS SELECT count(*) AS n, sum(total_cents)::bigint AS cents FROM ledger WHERE NOT deleted",
        )
        .unwrap();
        let cfg = SqlSinkConfig {
            database_url: SecretUrl::new(url.clone()),
            max_connections: 2,
            refresh_interval: Duration::ZERO,
            migrations: Some(own),
            ..SqlSinkConfig::default()
        };
        let sink = slate::sink::sql::connect_any(&cfg, &catalogue(&dir)).await.unwrap();
        assert_halts_only_the_ledger(&evolve(sink.as_ref()).await);
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let memos: i64 = sqlx::query_scalar("SELECT count(*) FROM memo").fetch_one(&pool).await.unwrap();
        assert_eq!(memos, 2);
        let rows: Vec<(String, Option<String>, String)> =
            sqlx::query_as("SELECT id, po, issued_on::text FROM ledger ORDER BY id").fetch_all(&pool).await.unwrap();
        assert_eq!(rows, [("l-1".into(), None, "2027-03-04".into()), ("l-2".into(), Some("PO-7".into()), "2027-03-04".into())]);
        let lines: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_line").fetch_one(&pool).await.unwrap();
        assert_eq!(lines, 2);
        let views: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_views WHERE viewname = 'cash_flow_by_month'").fetch_one(&pool).await.unwrap();
        assert_eq!(views, 0, "the example views come only when configured");
        let totals: (i64, Option<i64>) = sqlx::query_as("SELECT n, cents FROM ledger_totals").fetch_one(&pool).await.unwrap();
        assert_eq!(totals, (2, Some(2400)), "the deployment's view reads the generated table");
        pool.close().await;
        std::fs::remove_dir_all(&dir).ok();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_tables_are_created_and_evolved_from_the_record() {
    let dir = std::env::temp_dir().join(unique("slate-gen"));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("gen.db").display());
    let cfg = SqlSinkConfig {
        database_url: SecretUrl::new(url.clone()),
        max_connections: 2,
        refresh_interval: Duration::ZERO,
        ..SqlSinkConfig::default()
    };
    let sink = slate::sink::sql::connect_any(&cfg, &catalogue(&dir)).await.unwrap();
    assert_halts_only_the_ledger(&evolve(sink.as_ref()).await);
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let memos: i64 = sqlx::query_scalar("SELECT count(*) FROM memo").fetch_one(&pool).await.unwrap();
    assert_eq!(memos, 2);
    let rows: Vec<(String, Option<String>, i64)> =
        sqlx::query_as("SELECT id, po, total_cents FROM ledger ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(rows, [("l-1".into(), None, 1200), ("l-2".into(), Some("PO-7".into()), 1200)]);
    let types: Vec<(String, String)> =
        sqlx::query_as("SELECT name, type FROM pragma_table_info('ledger') ORDER BY cid").fetch_all(&pool).await.unwrap();
    assert!(types.contains(&("po".into(), "TEXT".into())) && types.contains(&("total_cents".into(), "INTEGER".into())), "{types:?}");
    pool.close().await;
    std::fs::remove_dir_all(&dir).ok();
}
