//! A schema owner adds an optional field to `Production` and a producer writes records with that
//! newer writer schema (its id in the wire format). The search and audit sinks, built with the
//! older embedded schema, keep the new field: it is in the search document's `_source` and in
//! the audit payload (read with DuckDB), not dropped by Avro schema resolution; the SQL sink adds
//! the column before the first row carrying it (older rows keep NULL).

mod common;

use common::*;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use slate::config::AuditSinkConfig;
use slate::enrich::avro::{self, Meta};
use slate::enrich::fetch::Fetched;
use slate::event::ChangeType;
use slate::metrics::Metrics;
use slate::sink::{Sink, runner};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `Production` with one more optional field, as a schema owner would add it.
fn production_v2() -> String {
    let mut schema: Value = serde_json::from_str(&slate::catalogue::Catalogue::example(slate::studio::kind::PRODUCTION).text).unwrap();
    let fields = schema["fields"].as_array_mut().unwrap();
    let at = fields.iter().position(|f| f["name"] == "_meta").unwrap();
    fields.insert(at, json!({"name": "rating", "type": ["null", "string"], "default": null, "doc": "Audience rating."}));
    schema.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_field_of_a_newer_writer_reaches_sql_search_and_audit() {
    with_pg_database("slate_wide", |url| async move { scenario(url).await }).await;
}

async fn scenario(db_url: String) {
    let registry = TestRegistry::start().await;
    let mut cfg = studio_config(&[ov("registry.url", format!("\"{}\"", registry.url)), ov("enricher.topic_partitions", 1)]);
    cfg.sinks.topic_prefix = format!("{}.", unique("wide"));
    cfg.sinks.group_prefix = format!("{}-", unique("group"));
    cfg.sinks.dlq_topic = unique("dlq");
    cfg.sinks.search.url = env("TEST_ES_URL");
    cfg.sinks.search.index_prefix = format!("{}-", unique("wide"));
    let audit_dir = std::env::temp_dir().join(unique("slate-wide-audit"));
    let topic = format!("{}production.enriched", cfg.sinks.topic_prefix);

    cfg.sinks.sql.database_url = slate::config::SecretUrl::new(db_url.clone());
    let text = production_v2();
    let client = slate::enrich::registry_client(&cfg.registry).unwrap();
    let v1 = slate::catalogue::Catalogue::example(slate::studio::kind::PRODUCTION);
    let id_v1 = client.register(&format!("{topic}-value"), &v1.text, &[]).await.unwrap();
    let id = client.register(&format!("{topic}-value"), &text, &[]).await.unwrap();
    assert_ne!(id, id_v1, "v2 is a new version of the subject (BACKWARD compatible)");
    let schema = apache_avro::Schema::parse_str(&text).unwrap();
    let body = json!({"title": "Wide", "status": "DEVELOPMENT", "genre": "drama", "currency": "USD", "budget_id": null,
        "schedule_id": null, "rating": "PG-13"});
    let fetched = Fetched { id: "prod-wide".into(), version: 3, body };
    let uuid = uuid::Uuid::new_v4();
    let meta = Meta {
        event_uuid: uuid,
        change_type: ChangeType::Update,
        event_ts: 1_790_000_000_000,
        fetched_at: 1_790_000_000_100,
        coalesced_uuids: vec![uuid],
    };
    let payload = avro::encode(&schema, id, avro::to_record(&schema, &fetched, &meta).unwrap()).unwrap();
    let old = Fetched { id: "prod-old".into(), version: 1, body: fetched.body.clone() };
    let old_payload = avro::encode(&v1.schema, id_v1, avro::to_record(&v1.schema, &old, &meta).unwrap()).unwrap();

    let sinks: Vec<Arc<dyn Sink>> = vec![
        slate::sink::sql::connect_any(&cfg.sinks.sql, &slate::catalogue::Catalogue::built_in()).await.unwrap(),
        Arc::new(slate::sink::search::SearchSink::connect(&cfg.sinks.search, &slate::catalogue::Catalogue::built_in()).await.unwrap()),
        Arc::new(slate::sink::audit::AuditSink::new(&AuditSinkConfig { dir: audit_dir.clone() }).unwrap()),
    ];
    let mut running = Vec::new();
    for s in sinks {
        running.push(runner::start(&cfg, s, Metrics::new()).await.unwrap());
    }
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", kafka_bootstrap()).create().unwrap();
    let headers = OwnedHeaders::new()
        .insert(Header { key: "slate-entity", value: Some("production") })
        .insert(Header { key: "slate-version", value: Some("3") })
        .insert(Header { key: "slate-change-type", value: Some("UPDATE") });
    let old_headers = OwnedHeaders::new()
        .insert(Header { key: "slate-entity", value: Some("production") })
        .insert(Header { key: "slate-version", value: Some("1") })
        .insert(Header { key: "slate-change-type", value: Some("UPDATE") });
    producer
        .send(FutureRecord::to(&topic).key("prod-old").payload(&old_payload).headers(old_headers), Duration::from_secs(10))
        .await
        .unwrap();
    producer.send(FutureRecord::to(&topic).key("prod-wide").payload(&payload).headers(headers), Duration::from_secs(10)).await.unwrap();

    // SQL: the sink added the column before the first row carrying it; the older row has NULL.
    let pool = sqlx::PgPool::connect(&db_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows: Vec<(String, Option<String>)> = loop {
        let rows = sqlx::query_as("SELECT id, rating FROM production ORDER BY id").fetch_all(&pool).await;
        if let Ok(rows) = &rows
            && rows.len() == 2
        {
            break rows.clone();
        }
        assert!(Instant::now() < deadline, "no SQL rows within 60s: {rows:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(rows, [("prod-old".to_string(), None), ("prod-wide".to_string(), Some("PG-13".to_string()))]);
    let (data_type,): (String,) =
        sqlx::query_as("SELECT data_type::text FROM information_schema.columns WHERE table_name = 'production' AND column_name = 'rating'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(data_type, "text");
    pool.close().await;

    let http = reqwest::Client::new();
    let doc_url = format!("{}/{}production/_doc/prod-wide", cfg.sinks.search.url, cfg.sinks.search.index_prefix);
    let deadline = Instant::now() + Duration::from_secs(60);
    let doc = loop {
        let r = http.get(&doc_url).send().await.unwrap();
        if r.status().is_success() {
            break r.json::<Value>().await.unwrap();
        }
        assert!(Instant::now() < deadline, "no search document within 60s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(doc["_source"]["rating"], "PG-13", "{doc}");
    assert_eq!(doc["_source"]["title"], "Wide", "{doc}");
    // The new field was mapped before the document was written: it is indexed, not only stored.
    let mapping_url = format!("{}/{}production/_mapping", cfg.sinks.search.url, cfg.sinks.search.index_prefix);
    let mapping: Value = http.get(&mapping_url).send().await.unwrap().json().await.unwrap();
    let properties = mapping.as_object().unwrap().values().next().unwrap()["mappings"]["properties"].clone();
    assert_eq!(properties["rating"]["type"], "keyword", "{mapping}");

    let sql =
        format!("SELECT payload FROM read_parquet('{}/**/*.parquet', hive_partitioning=true) WHERE id = 'prod-wide'", audit_dir.display());
    let script = format!("import duckdb, json\nfor (p,) in duckdb.sql({sql:?}).fetchall(): print(p)");
    let deadline = Instant::now() + Duration::from_secs(60);
    let payload = loop {
        let (ok, out, _) =
            run_command(tokio::process::Command::new(env("TEST_PYTHON")).args(["-c", &script]), Duration::from_secs(60)).await;
        if ok && !out.trim().is_empty() {
            break out;
        }
        assert!(Instant::now() < deadline, "no audit row within 60s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let row: Value = serde_json::from_str(payload.trim()).unwrap();
    assert_eq!((row["rating"].clone(), row["version"].clone()), (json!("PG-13"), json!(3)), "{row}");

    for r in running {
        r.shutdown().await.unwrap();
    }
    registry.stop().await;
    std::fs::remove_dir_all(&audit_dir).ok();
}
