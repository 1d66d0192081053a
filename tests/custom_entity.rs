//! A finance team brings its own entity: `invoice`, defined only by a schema file and a config
//! block (no code in `src/`), served by a small source of its own (GraphQL, and gRPC through the
//! generic `json` body). It flows through the enricher into PostgreSQL (a table and a child table
//! created from the record, typed), search and the audit trail, and Python's `confluent-kafka`
//! `AvroDeserializer` reads the enriched topic.

mod common;
mod invoice_support;

use common::*;
use invoice_support::*;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use slate::config::{Config, SecretUrl};
use slate::enrich::fetch::{Fetch, Sources};
use slate::event::EntityName;
use slate::metrics::Metrics;
use slate::sink::{Sink, runner};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn an_entity_defined_by_a_schema_file_and_config_reaches_every_sink() {
    with_pg_database("slate_invoice", |db_url| async move { scenario(db_url).await }).await;
}

async fn scenario(db_url: String) {
    let schemas = std::env::temp_dir().join(unique("slate-invoice-schemas"));
    std::fs::create_dir_all(&schemas).unwrap();
    write_schema(&schemas);
    let audit_dir = std::env::temp_dir().join(unique("slate-invoice-audit"));
    let registry = TestRegistry::start().await;
    let (graphql_url, grpc_url, sources_guard) = start_sources().await;
    let input = format!("{}.", unique("billing"));
    let cfg: Config = Config::load(
        None,
        &[
            ov("kafka.bootstrap_servers", format!("\"{}\"", kafka_bootstrap())),
            ov("kafka.consumer.session_timeout", "\"6s\""),
            ov("catalogue.schemas_dir", format!("{:?}", schemas.display().to_string())),
            ov("catalogue.entities.invoice.aliases", "[\"bill\"]"),
            ov("registry.url", format!("\"{}\"", registry.url)),
            ov("sources.graphql_endpoint", format!("\"{graphql_url}\"")),
            ov("enricher.input_topic_prefix", format!("\"{input}\"")),
            ov("enricher.output_topic_prefix", format!("\"{}.\"", unique("out"))),
            ov("enricher.group_id", format!("\"{}\"", unique("enricher"))),
            ov("enricher.retry_topic", format!("\"{}\"", unique("retry"))),
            ov("enricher.dlq_topic", format!("\"{}\"", unique("dlq"))),
            ov("enricher.topic_partitions", 2),
            ov("enricher.batch_max_wait", "\"20ms\""),
        ],
    )
    .expect("a catalogue of one declared entity is valid config");
    let mut cfg = cfg;
    cfg.enricher.metrics_listen = None;
    cfg.sinks.topic_prefix = cfg.enricher.output_topic_prefix.clone();
    cfg.sinks.group_prefix = format!("{}-", unique("sink"));
    cfg.sinks.dlq_topic = unique("sink-dlq");
    cfg.sinks.sql.database_url = SecretUrl::new(db_url.clone());
    cfg.sinks.search.url = env("TEST_ES_URL");
    cfg.sinks.search.index_prefix = format!("{}-", unique("inv"));
    cfg.sinks.audit.dir = audit_dir.clone();
    let invoice = EntityName::lookup("invoice").unwrap();
    assert_eq!(cfg.entities().names(), [invoice], "only the declared entity: the studio's are not in this deployment");

    // The generic gRPC contract serves the same entity, field for field.
    let mut grpc_sources = cfg.sources.clone();
    grpc_sources.entities.insert(
        "invoice".into(),
        slate::config::EntitySourceConfig { protocol: Some(slate::config::Protocol::Grpc), ..Default::default() },
    );
    grpc_sources.grpc_endpoint = grpc_url;
    let ids: Vec<String> = (0..3).map(|n| format!("inv-{n}")).collect();
    let by_grpc = Sources::try_new(&grpc_sources, cfg.entities()).unwrap().fetch(invoice, &ids).await.unwrap();
    let by_graphql = Sources::try_new(&cfg.sources, cfg.entities()).unwrap().fetch(invoice, &ids).await.unwrap();
    let bodies =
        |r: &slate::enrich::fetch::FetchReply| r.found.iter().map(|f| (f.id.clone(), f.version, f.body.clone())).collect::<Vec<_>>();
    assert_eq!(bodies(&by_grpc), bodies(&by_graphql));

    let topic = invoice.changes_topic(&input);
    slate::kafka::ensure_topics(&cfg.kafka, std::slice::from_ref(&topic), 2, 1).await.unwrap();
    let enricher = slate::enrich::start(&cfg, Metrics::new()).await.expect("enricher starts with the declared catalogue");
    let sinks: Vec<Arc<dyn Sink>> = vec![
        slate::sink::sql::connect_any(&cfg.sinks.sql, cfg.entities()).await.expect("sql sink creates the invoice tables"),
        Arc::new(slate::sink::search::SearchSink::connect(&cfg.sinks.search, cfg.entities()).await.unwrap()),
        Arc::new(slate::sink::audit::AuditSink::new(&cfg.sinks.audit).unwrap()),
    ];
    let mut running = Vec::new();
    for s in sinks {
        running.push(runner::start(&cfg, s, Metrics::new()).await.unwrap());
    }

    // Events name the entity by an alias as well as by its name.
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", kafka_bootstrap()).create().unwrap();
    for n in 0..INVOICES {
        let entity = if n.is_multiple_of(2) { "invoice" } else { "bill" };
        let event = json!({"uuid": uuid::Uuid::new_v4(), "type": "UPDATE", "ts": 1_790_000_000_000i64 + n as i64, "entity": entity, "id": format!("inv-{n}")});
        let key = format!("inv-{n}");
        producer.send(FutureRecord::to(&topic).key(&key).payload(&event.to_string()), Duration::from_secs(10)).await.unwrap();
    }

    // PostgreSQL: a typed table and a child table, created from the record.
    let pool = sqlx::PgPool::connect(&db_url).await.unwrap();
    let live: i64 = until("every invoice row in SQL", Duration::from_secs(90), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM invoice WHERE NOT deleted AND version = 2").fetch_one(&pool).await.ok()?;
        (n == INVOICES as i64).then_some(n)
    })
    .await;
    assert_eq!(live, INVOICES as i64);
    let types: BTreeMap<String, String> = sqlx::query_as(
        "SELECT table_name::text || '.' || column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name IN ('invoice', 'invoice_line')",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    for (column, want) in [
        ("invoice.customer", "text"),
        ("invoice.note", "text"),
        ("invoice.status", "text"),
        ("invoice.issued_on", "date"),
        ("invoice.total_cents", "bigint"),
        ("invoice.paid", "boolean"),
        ("invoice.version", "bigint"),
        ("invoice_line.sku", "text"),
        ("invoice_line.cents", "bigint"),
        ("invoice_line.ordinal", "integer"),
    ] {
        assert_eq!(types.get(column).map(String::as_str), Some(want), "{column}: {types:?}");
    }
    let (note, issued, paid): (Option<String>, String, bool) =
        sqlx::query_as("SELECT note, issued_on::text, paid FROM invoice WHERE id = 'inv-4'").fetch_one(&pool).await.unwrap();
    assert_eq!((note, issued.as_str(), paid), (None, "2027-01-05", true));
    let lines: i64 = sqlx::query_scalar("SELECT count(*) FROM invoice_line").fetch_one(&pool).await.unwrap();
    assert_eq!(lines, 2 * INVOICES as i64);

    // Search: one document per invoice, mapped from the record.
    let http = reqwest::Client::new();
    let index = format!("{}/{}invoice", cfg.sinks.search.url, cfg.sinks.search.index_prefix);
    until("every invoice document in search", Duration::from_secs(60), || async {
        http.post(format!("{index}/_refresh")).send().await.ok()?;
        let count: Value = http.get(format!("{index}/_count")).send().await.ok()?.json().await.ok()?;
        (count["count"] == INVOICES).then_some(())
    })
    .await;
    let mapping: Value = http.get(format!("{index}/_mapping")).send().await.unwrap().json().await.unwrap();
    assert!(mapping.to_string().contains("\"issued_on\":{\"format\":\"strict_date\",\"type\":\"date\"}"), "{mapping}");

    // Audit: one row per event, read back with DuckDB.
    let sql = format!(
        "SELECT count(*) FROM read_parquet('{}/**/*.parquet', hive_partitioning=true) WHERE entity = 'invoice'",
        audit_dir.display()
    );
    let script = format!("import duckdb\nprint(duckdb.sql({sql:?}).fetchall()[0][0])");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out, err) =
            run_command(tokio::process::Command::new(env("TEST_PYTHON")).args(["-c", &script]), Duration::from_secs(60)).await;
        if ok && out.trim() == INVOICES.to_string() {
            break;
        }
        assert!(Instant::now() < deadline, "every invoice event in the audit trail within 60s: {out} {err}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A consumer with Confluent's own client reads the enriched topic.
    let out_topic = cfg.enricher.output_topic(invoice);
    let (ok, out, err) = run_command(
        tokio::process::Command::new(env("TEST_PYTHON")).args([
            "tests/py/read_avro.py",
            &kafka_bootstrap(),
            &out_topic,
            &registry.url,
            "30",
        ]),
        Duration::from_secs(60),
    )
    .await;
    assert!(ok, "{err}");
    let records: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(records.len() >= INVOICES, "{out}");
    let first = records.iter().find(|r| r["key"] == "inv-1").expect("inv-1 on the enriched topic");
    assert_eq!((first["value"]["note"].clone(), first["value"]["status"].clone()), (json!("net 30"), json!("OPEN")), "{first}");

    // Replay and verify, with the source's ids listing and without one (list_ids = false:
    // the enriched topic's and the sink's ids are used instead).
    let mut unlisted = cfg.clone();
    unlisted.sources.entities.insert("invoice".into(), slate::config::EntitySourceConfig { list_ids: Some(false), ..Default::default() });
    for (how, c) in [("listing", &cfg), ("no listing", &unlisted)] {
        let opts = slate::replay::ReplayOptions { entities: vec![], rate: 0, dry_run: false, quiet: true };
        let summary = slate::replay::run(c, &opts).await.unwrap_or_else(|e| panic!("replay with {how}: {e}"));
        assert_eq!((summary.listed, summary.published), (INVOICES as u64, INVOICES as u64), "replay with {how}");
        let held = slate::verify::held_sql(&pool, c.entities()).await.unwrap();
        let report = slate::verify::reconcile(c, &held, "sql", true).await.unwrap_or_else(|e| panic!("verify with {how}: {e}"));
        let drift = &report[&invoice];
        assert_eq!((drift.checked, drift.missing, drift.stale, drift.extra), (INVOICES, 0, 0, 0), "verify with {how}: {drift:?}");
    }

    for r in running {
        r.shutdown().await.unwrap();
    }
    enricher.shutdown().await;
    sources_guard.cancel();
    registry.stop().await;
    pool.close().await;
    std::fs::remove_dir_all(&schemas).ok();
    std::fs::remove_dir_all(&audit_dir).ok();
}
