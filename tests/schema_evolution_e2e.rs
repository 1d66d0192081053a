//! A schema owner evolves a contract and nobody writes code. Two entities of one deployment,
//! `invoice` and `credit`, defined by schema files, served by their own source:
//! 1. v1 flows to PostgreSQL.
//! 2. v2 adds an optional field: `slate schema check` passes, the restarted enricher registers and
//!    emits it, the running sinks (built with v1) add the SQL column, map it in search and keep it
//!    in the audit trail; older rows keep NULL; a Python consumer with the v1 reader still reads.
//! 3. v3 changes a field's type: `slate schema check` and the registry refuse it. Forced through
//!    (the subject's compatibility set to NONE), it halts the SQL sink for `invoice` only: the
//!    record stays unwritten and uncommitted, `/health` names the field, `credit` goes on.
//! 4. Restarted with v3 before the table is migrated, the SQL sink halts `invoice` at connect;
//!    once the operator migrates the column and restarts it, the held record is written.

mod common;

use axum::extract::State;
use axum::{Json, Router, routing::post};
use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use slate::config::{Config, SecretUrl};
use slate::event::EntityName;
use slate::metrics::Metrics;
use slate::sink::{Sink, runner};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

const INVOICES: usize = 4;
const WAIT: Duration = Duration::from_secs(90);

fn meta() -> Value {
    let production: Value = serde_json::from_str(&std::fs::read_to_string("schemas/avro/Production.avsc").unwrap()).unwrap();
    production["fields"].as_array().unwrap().iter().find(|f| f["name"] == "_meta").unwrap().clone()
}

/// `Invoice` as of contract version `v`: v2 adds `po`, v3 makes `total_cents` a string.
fn invoice_schema(v: u8) -> String {
    let total = if v >= 3 { "string" } else { "long" };
    let mut fields = vec![
        json!({"name": "id", "type": "string"}),
        json!({"name": "version", "type": "long"}),
        json!({"name": "customer", "type": "string"}),
        json!({"name": "total_cents", "type": total}),
    ];
    if v >= 2 {
        fields.push(json!({"name": "po", "type": ["null", "string"], "default": null, "doc": "Purchase order."}));
    }
    fields.push(meta());
    json!({"type": "record", "name": "Invoice", "namespace": "acme.billing", "doc": "An invoice.", "fields": fields}).to_string()
}

fn write_schemas(dir: &Path, v: u8) {
    std::fs::write(dir.join("Invoice.avsc"), invoice_schema(v)).unwrap();
    let credit = json!({"type": "record", "name": "Credit", "namespace": "acme.billing", "doc": "A credit note.", "fields": [
        {"name": "id", "type": "string"}, {"name": "version", "type": "long"}, {"name": "amount_cents", "type": "long"}, meta()]});
    std::fs::write(dir.join("Credit.avsc"), credit.to_string()).unwrap();
}

/// The source of truth, at generation `g` of the data: every entity at version `g`, shaped as
/// contract version `g` describes it.
async fn graphql(State(generation): State<Arc<AtomicU8>>, Json(req): Json<Value>) -> Json<Value> {
    let g = generation.load(Ordering::SeqCst);
    let ids = req["variables"]["ids"].as_array().cloned().unwrap_or_default();
    let invoices = req["query"].as_str().is_some_and(|q| q.contains("items: invoices("));
    let items: Vec<Value> = ids
        .iter()
        .filter_map(Value::as_str)
        .map(|id| {
            let n: i64 = id.rsplit('-').next().unwrap().parse().unwrap();
            if !invoices {
                return json!({"id": id, "version": g, "amount_cents": 5 * n});
            }
            let mut v = json!({"id": id, "version": g, "customer": "acme",
                "total_cents": if g >= 3 { json!(format!("{n}00")) } else { json!(n * 100) }});
            if g >= 2 {
                v["po"] = json!(format!("PO-{n}"));
            }
            v
        })
        .collect();
    Json(json!({"data": {"items": items, "tombstones": []}}))
}

async fn start_source(generation: Arc<AtomicU8>) -> (String, tokio_util::sync::CancellationToken) {
    let cancel = tokio_util::sync::CancellationToken::new();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap();
    let app = Router::new().route("/graphql", post(graphql)).with_state(generation);
    let c = cancel.clone();
    tokio::spawn(async move { axum::serve(http, app).with_graceful_shutdown(c.cancelled_owned()).await });
    (format!("http://{addr}/graphql"), cancel)
}

/// `slate -c <config> schema check --dir <schemas>`: (passed, stdout + stderr).
async fn schema_check(config: &Path, schemas: &Path) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_slate"));
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("SLATE_")) {
        cmd.env_remove(key);
    }
    cmd.arg("-c").arg(config).args(["schema", "check", "--dir"]).arg(schemas);
    let (ok, out, err) = run_command(&mut cmd, Duration::from_secs(60)).await;
    (ok, format!("{out}{err}"))
}

/// The enriched topic read by Python's `confluent-kafka`, optionally with a reader schema file.
async fn read_with_python(topic: &str, registry: &str, reader: Option<&Path>) -> Vec<Value> {
    let mut cmd = tokio::process::Command::new(env("TEST_PYTHON"));
    cmd.args(["tests/py/read_avro.py", &kafka_bootstrap(), topic, registry, "30"]);
    if let Some(reader) = reader {
        cmd.arg(reader);
    }
    let (ok, out, err) = run_command(&mut cmd, Duration::from_secs(60)).await;
    assert!(ok, "{err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_contract_evolves_through_every_sink_and_an_incompatible_change_halts_only_its_entity() {
    with_pg_database("slate_evolve", |db_url| async move { scenario(db_url).await }).await;
}

async fn scenario(db_url: String) {
    let schemas = std::env::temp_dir().join(unique("slate-evolve-schemas"));
    std::fs::create_dir_all(&schemas).unwrap();
    write_schemas(&schemas, 1);
    let audit_dir = std::env::temp_dir().join(unique("slate-evolve-audit"));
    let registry = TestRegistry::start().await;
    let generation = Arc::new(AtomicU8::new(1));
    let (graphql_url, source_guard) = start_source(generation.clone()).await;
    let (input, output) = (format!("{}.", unique("billing")), format!("{}.", unique("out")));
    let toml = format!(
        "[kafka]\nbootstrap_servers = {bootstrap:?}\n[kafka.consumer]\nsession_timeout = \"6s\"\n\
         [registry]\nurl = {registry:?}\n[sources]\ngraphql_endpoint = {graphql_url:?}\n\
         [catalogue]\nschemas_dir = {dir:?}\n[catalogue.entities.invoice]\n[catalogue.entities.credit]\n\
         [enricher]\ninput_topic_prefix = {input:?}\noutput_topic_prefix = {output:?}\ngroup_id = {group:?}\n\
         retry_topic = {retry:?}\ndlq_topic = {dlq:?}\ntopic_partitions = 1\nbatch_max_wait = \"20ms\"\n",
        bootstrap = kafka_bootstrap(),
        registry = registry.url,
        dir = schemas.display().to_string(),
        group = unique("enricher"),
        retry = unique("retry"),
        dlq = unique("dlq"),
    );
    let config_file = schemas.with_extension("toml");
    std::fs::write(&config_file, toml).unwrap();
    let (sink_group_prefix, sink_dlq, index_prefix) = (format!("{}-", unique("sink")), unique("sink-dlq"), format!("{}-", unique("inv")));
    // The deployment's config, read again after each schema change (the catalogue is read at start).
    let load = || -> Config {
        let mut cfg = Config::load(Some(&config_file), &[]).expect("valid config");
        cfg.enricher.metrics_listen = None;
        cfg.sinks.topic_prefix = output.clone();
        cfg.sinks.group_prefix = sink_group_prefix.clone();
        cfg.sinks.dlq_topic = sink_dlq.clone();
        cfg.sinks.sql.database_url = SecretUrl::new(db_url.clone());
        cfg.sinks.search.url = env("TEST_ES_URL");
        cfg.sinks.search.index_prefix = index_prefix.clone();
        cfg.sinks.audit.dir = audit_dir.clone();
        cfg
    };
    let v1 = load();
    let (invoice, credit) = (EntityName::lookup("invoice").unwrap(), EntityName::lookup("credit").unwrap());
    for entity in [invoice, credit] {
        slate::kafka::ensure_topics(&v1.kafka, &[entity.changes_topic(&input)], 1, 1).await.unwrap();
    }
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", kafka_bootstrap()).create().unwrap();
    let publish = async |entity: EntityName, id: String| {
        let event =
            json!({"uuid": uuid::Uuid::new_v4(), "type": "UPDATE", "ts": 1_790_000_000_000i64, "entity": entity.as_str(), "id": id});
        let topic = entity.changes_topic(&input);
        producer.send(FutureRecord::to(&topic).key(&id).payload(&event.to_string()), Duration::from_secs(10)).await.unwrap();
    };

    // 1. v1 everywhere.
    let enricher = slate::enrich::start(&v1, Metrics::new()).await.expect("enricher starts on v1");
    let sql_metrics = Metrics::new();
    let sql =
        runner::start(&v1, slate::sink::sql::connect_any(&v1.sinks.sql, v1.entities()).await.unwrap(), sql_metrics.clone()).await.unwrap();
    let others: Vec<Arc<dyn Sink>> = vec![
        Arc::new(slate::sink::search::SearchSink::connect(&v1.sinks.search, v1.entities()).await.unwrap()),
        Arc::new(slate::sink::audit::AuditSink::new(&v1.sinks.audit).unwrap()),
    ];
    let mut running = Vec::new();
    for s in others {
        running.push(runner::start(&v1, s, Metrics::new()).await.unwrap());
    }
    for n in 0..INVOICES {
        publish(invoice, format!("inv-{n}")).await;
    }
    publish(credit, "cr-0".into()).await;
    let pool = sqlx::PgPool::connect(&db_url).await.unwrap();
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.ok() }
    };
    until("v1 rows in SQL", WAIT, || async {
        let (i, c) = (count("SELECT count(*) FROM invoice WHERE version = 1").await?, count("SELECT count(*) FROM credit").await?);
        (i == INVOICES as i64 && c == 1).then_some(())
    })
    .await;

    // 2. v2 adds an optional field with a default.
    write_schemas(&schemas, 2);
    let (ok, out) = schema_check(&config_file, &schemas).await;
    assert!(ok && out.contains("schema check(s) passed"), "v2 is BACKWARD compatible: {out}");
    enricher.shutdown().await;
    generation.store(2, Ordering::SeqCst);
    let v2 = load();
    let enricher = slate::enrich::start(&v2, Metrics::new()).await.expect("enricher registers v2 and starts");
    publish(invoice, "inv-0".into()).await;
    publish(invoice, "inv-1".into()).await;
    let rows: Vec<(String, i64, Option<String>)> = until("v2 rows in SQL", WAIT, || async {
        let rows: Vec<(String, i64, Option<String>)> =
            sqlx::query_as("SELECT id, version, po FROM invoice ORDER BY id").fetch_all(&pool).await.ok()?;
        (rows.iter().filter(|r| r.1 == 2).count() == 2).then_some(rows)
    })
    .await;
    assert_eq!(
        rows,
        [
            ("inv-0".into(), 2, Some("PO-0".into())),
            ("inv-1".into(), 2, Some("PO-1".into())),
            ("inv-2".into(), 1, None),
            ("inv-3".into(), 1, None)
        ],
        "the column was added; older rows keep NULL"
    );
    let http = reqwest::Client::new();
    let index = format!("{}/{index_prefix}invoice", v2.sinks.search.url);
    let doc: Value = until("the v2 search document", WAIT, || async {
        let doc: Value = http.get(format!("{index}/_doc/inv-0")).send().await.ok()?.json().await.ok()?;
        (doc["_source"]["version"] == 2).then_some(doc)
    })
    .await;
    assert_eq!(doc["_source"]["po"], "PO-0", "{doc}");
    let mapping: Value = http.get(format!("{index}/_mapping")).send().await.unwrap().json().await.unwrap();
    let properties = mapping.as_object().unwrap().values().next().unwrap()["mappings"]["properties"].clone();
    assert_eq!(properties["po"]["type"], "keyword", "mapped before the first document carrying it: {mapping}");
    let query = format!(
        "SELECT payload FROM read_parquet('{}/**/*.parquet', hive_partitioning=true) WHERE id = 'inv-0' AND source_version = 2",
        audit_dir.display()
    );
    let script = format!("import duckdb\nfor (p,) in duckdb.sql({query:?}).fetchall(): print(p)");
    let payload: Value = until("the v2 audit row", WAIT, || async {
        let (ok, out, _) =
            run_command(tokio::process::Command::new(env("TEST_PYTHON")).args(["-c", &script]), Duration::from_secs(60)).await;
        ok.then(|| out.lines().next().and_then(|l| serde_json::from_str(l).ok())).flatten()
    })
    .await;
    assert_eq!(payload["po"], "PO-0", "{payload}");
    let out_topic = v2.enricher.output_topic(invoice);
    let v1_file = schemas.join("reader-v1.json");
    std::fs::write(&v1_file, invoice_schema(1)).unwrap();
    let is_v2 = |r: &&Value| r["key"] == "inv-0" && r["value"]["version"] == 2;
    let by_writer = read_with_python(&out_topic, &registry.url, None).await;
    assert_eq!(by_writer.iter().find(is_v2).expect("inv-0 v2 on the topic")["value"]["po"], "PO-0");
    let by_v1_reader = read_with_python(&out_topic, &registry.url, Some(&v1_file)).await;
    let old_view = by_v1_reader.iter().find(is_v2).expect("a v1 reader reads the v2 record");
    assert!(old_view["value"].get("po").is_none() && old_view["value"]["customer"] == "acme", "{old_view}");

    // 3. v3 changes a field's type: refused by the check and by the registry.
    write_schemas(&schemas, 3);
    let (ok, out) = schema_check(&config_file, &schemas).await;
    assert!(!ok && out.contains("total_cents"), "v3 is refused naming the field: {out}");
    enricher.shutdown().await;
    generation.store(3, Ordering::SeqCst);
    let v3 = load();
    let refused = slate::enrich::start(&v3, Metrics::new()).await.err().expect("the registry refuses v3");
    assert!(refused.to_string().to_lowercase().contains("incompatible"), "{refused}");
    // Forced through, as a schema owner overriding the registry would.
    let subject = format!("{out_topic}-value");
    let put = http.put(format!("{}/config/{subject}", registry.url)).json(&json!({"compatibility": "NONE"})).send().await.unwrap();
    assert!(put.status().is_success());
    let enricher = slate::enrich::start(&v3, Metrics::new()).await.expect("v3 registered under NONE");
    publish(invoice, "inv-2".into()).await;
    publish(credit, "cr-0".into()).await;
    until("credit at v3 in SQL while invoice is halted", WAIT, || async {
        (count("SELECT count(*) FROM credit WHERE version = 3").await? == 1).then_some(())
    })
    .await;
    let problem =
        until("the halt on /health", WAIT, || async { sql_metrics.health.problems().into_iter().find(|p| p.contains("total_cents")) })
            .await;
    assert!(problem.contains("`invoice`") && problem.contains("total_cents") && problem.contains("restart"), "{problem}");
    assert_eq!(sql_metrics.sink_halted.get_or_create(&[("sink", "sql".into()), ("entity", "invoice".into())]).get(), 1);
    assert!(!sql.is_finished(), "the sink goes on for the other entities");
    assert_eq!(count("SELECT max(version) FROM invoice WHERE id = 'inv-2'").await, Some(1), "nothing of invoice written");
    sql.shutdown().await.unwrap();
    let records = read_all(&out_topic, 1);
    let held = records
        .iter()
        .position(|(key, _, headers)| key == b"inv-2" && headers.iter().any(|(k, v)| k == "slate-version" && v == "3"))
        .expect("inv-2 v3 on the enriched topic");
    let committed = committed_offset(&format!("{sink_group_prefix}sql"), &out_topic);
    assert!(committed <= held as i64, "the halted record is not committed: committed {committed}, record at {held}");

    // 4. Restarted with the v3 contract but the table not migrated, the sink halts `invoice` at
    // connect (the column's type); migrated and restarted, it writes the held record.
    let early = Metrics::new();
    let sql = runner::start(&v3, slate::sink::sql::connect_any(&v3.sinks.sql, v3.entities()).await.unwrap(), early.clone()).await.unwrap();
    publish(credit, "cr-1".into()).await;
    until("cr-1 in SQL", WAIT, || async { (count("SELECT count(*) FROM credit WHERE id = 'cr-1'").await? == 1).then_some(()) }).await;
    let problem =
        until("the table conflict on /health", WAIT, || async { early.health.problems().into_iter().find(|p| p.contains("by hand")) })
            .await;
    assert!(problem.contains("total_cents") && problem.contains("bigint"), "{problem}");
    assert_eq!(count("SELECT max(version) FROM invoice WHERE id = 'inv-2'").await, Some(1));
    sql.shutdown().await.unwrap();
    sqlx::query("ALTER TABLE invoice ALTER COLUMN total_cents TYPE text").execute(&pool).await.unwrap();
    let sql = runner::start(&v3, slate::sink::sql::connect_any(&v3.sinks.sql, v3.entities()).await.unwrap(), Metrics::new()).await.unwrap();
    let total: String = until("inv-2 at v3 after the fix", WAIT, || async {
        sqlx::query_scalar("SELECT total_cents FROM invoice WHERE id = 'inv-2' AND version = 3").fetch_one(&pool).await.ok()
    })
    .await;
    assert_eq!(total, "200");

    sql.shutdown().await.unwrap();
    for r in running {
        r.shutdown().await.unwrap();
    }
    enricher.shutdown().await;
    source_guard.cancel();
    registry.stop().await;
    pool.close().await;
    std::fs::remove_dir_all(&schemas).ok();
    std::fs::remove_file(&config_file).ok();
    std::fs::remove_dir_all(&audit_dir).ok();
}

fn committed_offset(group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", kafka_bootstrap()).set("group.id", group).create().unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    match committed.elements()[0].offset() {
        rdkafka::Offset::Offset(o) => o,
        _ => 0,
    }
}
