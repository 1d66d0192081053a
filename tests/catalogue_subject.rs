//! A catalogue entry whose record is a registry subject's latest version
//! (`[catalogue.entities.invoice] subject = "…"`) instead of a schema file: the schema owner
//! registers the record, `slate` reads it at start (waiting while the registry is down), and a
//! new version registered later reaches the SQL sink as a new column after a restart.

mod common;
mod invoice_support;

use common::*;
use invoice_support::*;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use slate::catalogue::subjects;
use slate::config::{Config, Override};
use slate::event::EntityName;
use slate::metrics::Metrics;
use slate::sink::runner;
use std::process::Command;
use std::time::Duration;

/// What every `slate` command that reads entities does: read the subjects, then the config.
async fn load(overrides: &[Override]) -> Config {
    let (catalogue, registry) = Config::catalogue_and_registry(None, overrides).unwrap();
    let client = slate::enrich::registry_client(&registry).unwrap();
    let fetched = subjects::fetch(&client, &catalogue.entities).await.unwrap();
    let mut cfg = Config::load_with(None, overrides, &fetched).unwrap();
    cfg.enricher.metrics_listen = None;
    cfg
}

fn slate(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_slate")).arg("-c").arg(config).args(args).env("SLATE_LOG", "warn").output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn config_check_reads_the_subject_and_names_a_missing_one() {
    let registry = TestRegistry::start().await;
    let subject = unique("acme-invoice");
    register(&registry.url, &subject, &invoice_schema()).await;
    let dir = std::env::temp_dir().join(unique("slate-subject-cfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, subject: &str| {
        let path = dir.join(name);
        let text = format!("[registry]\nurl = \"{}\"\n\n[catalogue.entities.invoice]\nsubject = \"{subject}\"\n", registry.url);
        std::fs::write(&path, text).unwrap();
        path
    };

    let good = write("good.toml", &subject);
    let check = tokio::task::spawn_blocking(move || slate(&good, &["config", "check"])).await.unwrap();
    assert!(check.status.success(), "config check: {}", String::from_utf8_lossy(&check.stderr));
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "config ok");

    let missing = write("missing.toml", "nobody-registered-this");
    let check = tokio::task::spawn_blocking(move || slate(&missing, &["config", "check"])).await.unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "a missing subject fails the check: {stderr}");
    for part in ["catalogue.entities.invoice.subject", "nobody-registered-this", "register the record first"] {
        assert!(stderr.contains(part), "the error names {part:?}: {stderr}");
    }

    // A library caller that did not read the registry is told what to call.
    let plain = Config::load(None, &[ov("catalogue.entities.invoice.subject", format!("\"{subject}\""))]);
    let error = plain.expect_err("Config::load cannot resolve a subject entry").to_string();
    assert!(error.contains("catalogue.entities.invoice.subject"), "{error}");

    registry.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_waits_for_the_registry_then_reads_the_subject() {
    // The registry's port is chosen now; the registry itself starts only after a while.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let subject = unique("acme-invoice");
    let overrides = [ov("registry.url", format!("\"http://{addr}\"")), ov("catalogue.entities.invoice.subject", format!("\"{subject}\""))];
    let (catalogue, registry_cfg) = Config::catalogue_and_registry(None, &overrides).unwrap();
    let client = slate::enrich::registry_client(&registry_cfg).unwrap();
    let fetch = tokio::spawn(async move { subjects::fetch(&client, &catalogue.entities).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!fetch.is_finished(), "an unreachable registry is waited for, not an error");

    let registry = TestRegistry::on(tokio::net::TcpListener::bind(addr).await.unwrap());
    register(&registry.url, &subject, &invoice_schema()).await;
    let fetched = tokio::time::timeout(Duration::from_secs(30), fetch).await.expect("read once the registry is up").unwrap();
    let cfg = Config::load_with(None, &overrides, &fetched.expect("the subject is read")).unwrap();
    let invoice = EntityName::lookup("invoice").unwrap();
    assert_eq!(cfg.entities().names(), [invoice]);
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_subject_version_reaches_sql_after_a_restart() {
    with_pg_database("slate_subject", |db_url| async move { evolution(db_url).await }).await;
}

async fn evolution(db_url: String) {
    let registry = TestRegistry::start().await;
    let (graphql_url, _grpc_url, sources_guard) = start_sources().await;
    let subject = unique("acme-invoice");
    let v1 = invoice_schema();
    register(&registry.url, &subject, &v1).await;
    let input = format!("{}.", unique("billing"));
    let output = format!("{}.", unique("out"));
    let overrides = vec![
        ov("kafka.bootstrap_servers", format!("\"{}\"", kafka_bootstrap())),
        ov("kafka.consumer.session_timeout", "\"6s\""),
        ov("catalogue.entities.invoice.subject", format!("\"{subject}\"")),
        ov("registry.url", format!("\"{}\"", registry.url)),
        ov("sources.graphql_endpoint", format!("\"{graphql_url}\"")),
        ov("enricher.input_topic_prefix", format!("\"{input}\"")),
        ov("enricher.output_topic_prefix", format!("\"{output}\"")),
        ov("enricher.group_id", format!("\"{}\"", unique("enricher"))),
        ov("enricher.retry_topic", format!("\"{}\"", unique("retry"))),
        ov("enricher.dlq_topic", format!("\"{}\"", unique("dlq"))),
        ov("enricher.topic_partitions", 2),
        ov("enricher.batch_max_wait", "\"20ms\""),
        ov("sinks.topic_prefix", format!("\"{output}\"")),
        ov("sinks.group_prefix", format!("\"{}-\"", unique("sink"))),
        ov("sinks.dlq_topic", format!("\"{}\"", unique("sink-dlq"))),
        ov("sinks.sql.database_url", format!("\"{db_url}\"")),
    ];
    let cfg = load(&overrides).await;
    let invoice = EntityName::lookup("invoice").unwrap();
    let topic = invoice.changes_topic(&input);
    slate::kafka::ensure_topics(&cfg.kafka, std::slice::from_ref(&topic), 2, 1).await.unwrap();
    let enricher = slate::enrich::start(&cfg, Metrics::new()).await.expect("enricher starts with the subject's record");
    let sql = slate::sink::sql::connect_any(&cfg.sinks.sql, cfg.entities()).await.expect("sql sink creates the invoice table");
    let sink = runner::start(&cfg, sql, Metrics::new()).await.unwrap();

    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", kafka_bootstrap()).create().unwrap();
    let publish = |range: std::ops::Range<usize>| {
        let (producer, topic) = (producer.clone(), topic.clone());
        async move {
            for n in range {
                let event = json!({"uuid": uuid::Uuid::new_v4(), "type": "UPDATE", "ts": 1_790_000_000_000i64 + n as i64, "entity": "invoice", "id": format!("inv-{n}")});
                let key = format!("inv-{n}");
                producer.send(FutureRecord::to(&topic).key(&key).payload(&event.to_string()), Duration::from_secs(10)).await.unwrap();
            }
        }
    };
    let half = INVOICES / 2;
    publish(0..half).await;
    let pool = sqlx::PgPool::connect(&db_url).await.unwrap();
    until("the first invoices in SQL", Duration::from_secs(90), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM invoice").fetch_one(&pool).await.ok()?;
        (n == half as i64).then_some(())
    })
    .await;
    let po_column = "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() \
                     AND table_name = 'invoice' AND column_name = 'po'";
    let columns: i64 = sqlx::query_scalar(po_column).fetch_one(&pool).await.unwrap();
    assert_eq!(columns, 0, "version 1 of the subject has no po");

    // The schema owner registers version 2 (a new optional field); the enricher picks it up on
    // its next start, and the sink adds the column when the first record carrying it arrives.
    let mut v2 = v1.clone();
    let fields = v2["fields"].as_array_mut().unwrap();
    fields.insert(fields.len() - 1, json!({"name": "po", "type": ["null", "string"], "default": null}));
    register(&registry.url, &subject, &v2).await;
    enricher.shutdown().await;
    let cfg = load(&overrides).await;
    let enricher = slate::enrich::start(&cfg, Metrics::new()).await.expect("enricher restarts with version 2");
    publish(half..INVOICES).await;
    until("the later invoices with their po", Duration::from_secs(90), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM invoice WHERE po IS NOT NULL").fetch_one(&pool).await.ok()?;
        (n == (INVOICES - half) as i64).then_some(())
    })
    .await;
    let rows: Vec<(String, Option<String>)> = sqlx::query_as("SELECT id, po FROM invoice ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(rows.len(), INVOICES);
    for (id, po) in rows {
        let n: usize = id.strip_prefix("inv-").unwrap().parse().unwrap();
        let want = (n >= half).then(|| format!("PO-{n}"));
        assert_eq!(po, want, "{id}: rows written under version 1 keep NULL, later ones carry po");
    }

    sink.shutdown().await.unwrap();
    enricher.shutdown().await;
    sources_guard.cancel();
    registry.stop().await;
    pool.close().await;
}
