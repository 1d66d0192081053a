//! Shadow pipelines (`[shadow]`, `slate shadow compare`): a live and a shadow enricher, each
//! with its own SQL database and search indices, on one studio load. The validator finds every
//! key equal on topics, rows and documents; then a wrong amount written to the shadow's topic
//! and a wrong row in its database are named with their field and delta; and a shadow with a
//! different entity set is reported once per entity, not as thousands of missing keys.

mod common;
mod enricher_support;

use common::*;
use enricher_support::*;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use slate::config::{Config, SecretUrl};
use slate::metrics::Metrics;
use slate::shadow::Validator;
use slate::shadow::compare::State;
use slate::sink::{Sink, runner};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_faithful_shadow_matches_and_each_difference_is_named() {
    with_pg_database("shadow_live", |live_db| async move {
        with_pg_database("shadow_shadow", move |shadow_db| scenario(live_db, shadow_db)).await;
    })
    .await;
}

/// The live pipeline's sinks config, and a shadow of it: own group, output prefix, sink groups,
/// database and index prefix. Config only.
fn shadow_of(live: &Config, db: &str) -> Config {
    let mut shadow = live.clone();
    shadow.enricher.group_id = unique("shadow");
    shadow.enricher.output_topic_prefix = format!("{}.", unique("shadow"));
    shadow.sinks.topic_prefix = shadow.enricher.output_topic_prefix.clone();
    shadow.sinks.group_prefix = format!("{}-", unique("shadow-sink"));
    shadow.sinks.sql.database_url = SecretUrl::new(db);
    shadow.sinks.search.index_prefix = format!("{}-", unique("shadow"));
    shadow
}

async fn start_sinks(cfg: &Config) -> Vec<runner::RunningSink> {
    let catalogue = cfg.entities().clone();
    let sinks: Vec<Arc<dyn Sink>> = vec![
        Arc::new(slate::sink::sql::SqlSink::connect(&cfg.sinks.sql, &catalogue).await.unwrap()),
        Arc::new(slate::sink::search::SearchSink::connect(&cfg.sinks.search, &catalogue).await.unwrap()),
    ];
    let mut running = Vec::new();
    for s in sinks {
        running.push(runner::start(cfg, s, Metrics::new()).await.unwrap());
    }
    running
}

async fn scenario(live_db: String, shadow_db: String) {
    let registry = TestRegistry::start().await;
    let mut live = pipeline_config(
        &registry.url,
        &[
            ov("studio.load.mutations_per_sec", 200),
            ov("studio.load.max_mutations", 300),
            ov("studio.num_productions", 8),
            ov("studio.snapshot_on_start", true),
        ],
    );
    let mut studio = slate::studio::server::start(&live, Metrics::new()).await.unwrap();
    use_studio(&mut live, &studio);
    sinks_behind_enricher(&mut live);
    live.sinks.sql.database_url = SecretUrl::new(&live_db);
    live.sinks.search.url = env("TEST_ES_URL");
    live.sinks.search.index_prefix = format!("{}-", unique("live"));
    let shadow = shadow_of(&live, &shadow_db);
    let mut validator_cfg = live.clone();
    validator_cfg.shadow.shadow_prefix = shadow.enricher.output_topic_prefix.clone();
    validator_cfg.shadow.sql_url = Some(SecretUrl::new(&shadow_db));
    validator_cfg.shadow.index_prefix = Some(shadow.sinks.search.index_prefix.clone());
    validator_cfg.shadow.grace = Duration::from_secs(5);

    let live_enricher = slate::enrich::start(&live, Metrics::new()).await.unwrap();
    let shadow_enricher = slate::enrich::start(&shadow, Metrics::new()).await.unwrap();
    let mut sinks = start_sinks(&live).await;
    sinks.extend(start_sinks(&shadow).await);
    tokio::time::timeout(Duration::from_secs(60), studio.load_finished()).await.expect("load finishes");

    let mut validator = Validator::new(&validator_cfg).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let report = loop {
        let r = validator.compare().await.expect("compare");
        let settled = ["topics", "sql", "search"].iter().all(|s| {
            let t = r.totals(s);
            t.get(&State::Equal).copied().unwrap_or(0) > 0 && t.keys().all(|k| *k == State::Equal)
        });
        if r.ok() && settled {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "live and shadow not equal on topics, rows and documents: {r:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let equal = report.totals("topics")[&State::Equal];
    println!(
        "faithful shadow: {equal} keys equal on the topics, {} rows, {} documents",
        report.totals("sql")[&State::Equal],
        report.totals("search")[&State::Equal]
    );
    assert_eq!(report.match_ratio("topics"), Some(1.0));
    let (code, out) = shadow_cli(&validator_cfg, &["--json"]).await;
    assert_eq!(code, 0, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["ok"], true, "{out}");

    // A wrong amount on the shadow's topic at the live version, and a wrong row in its database.
    let payment_topic = shadow.enricher.output_topic(slate::catalogue::example::PAYMENT);
    let (key, payload, headers) =
        read_all(&payment_topic, 2).into_iter().rev().find(|(_, p, _)| p.is_some()).expect("a shadow payment record");
    let id = String::from_utf8(key.clone()).unwrap();
    let tampered = add_to_amount(payload.as_deref().unwrap(), 50);
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", kafka_bootstrap()).create().unwrap();
    producer
        .send(FutureRecord::to(&payment_topic).key(&key).payload(&tampered).headers(owned(&headers)), Duration::from_secs(10))
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&shadow_db).await.unwrap();
    let row =
        sqlx::query("UPDATE production SET title = title || ' (shadow)' WHERE id = (SELECT min(id) FROM production WHERE NOT deleted)")
            .execute(&pool)
            .await
            .unwrap();
    assert_eq!(row.rows_affected(), 1);
    let (code, out) = shadow_cli(&validator_cfg, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("topics payment {id} different")) && out.contains("(+50)"), "the amount and its delta: {out}");
    assert!(out.contains("sql production") && out.contains("(shadow)"), "the renamed row: {out}");
    assert!(out.contains("shadow DIFFERS"), "{out}");

    // A shadow enriching other entities: two of the live topics, and one the catalogue lacks.
    let partial = format!("{}.", unique("partial"));
    copy_topic(&live.enricher.output_topic(slate::catalogue::example::PRODUCTION), &format!("{partial}production.enriched")).await;
    copy_topic(&live.enricher.output_topic(slate::catalogue::example::PAYMENT), &format!("{partial}payment.enriched")).await;
    slate::kafka::ensure_topics(&live.kafka, &[format!("{partial}invoice.enriched")], 1, 1).await.unwrap();
    // ... and whose schema adds a field: a production record written with it, at its version.
    let production_topic = format!("{partial}production.enriched");
    let (key, payload, headers) = read_all(&production_topic, 2).into_iter().rev().find(|(_, p, _)| p.is_some()).expect("a production");
    let with_rating = with_added_field(&registry.url, payload.as_deref().unwrap()).await;
    producer
        .send(FutureRecord::to(&production_topic).key(&key).payload(&with_rating).headers(owned(&headers)), Duration::from_secs(10))
        .await
        .unwrap();
    let mut partial_cfg = live.clone();
    partial_cfg.shadow.shadow_prefix = partial.clone();
    partial_cfg.shadow.grace = Duration::ZERO;
    let r = Validator::new(&partial_cfg).unwrap().compare().await.unwrap();
    let one_side: Vec<&String> = r.mismatches.iter().filter(|m| m.contains("is enriched on one side only")).collect();
    assert_eq!(one_side.len(), 4, "budget, cash_flow, schedule, talent: {:#?}", r.mismatches);
    assert!(
        r.mismatches.iter().any(|m| m.contains("invoice.enriched` names an entity this catalogue does not declare")),
        "{:#?}",
        r.mismatches
    );
    let compared: Vec<String> = r.entities.keys().map(|e| e.to_string()).collect();
    assert_eq!(compared, ["payment", "production"], "only the entities both sides enrich are compared");
    assert_eq!(r.totals("topics").keys().copied().collect::<Vec<_>>(), [State::Equal], "no key counted missing: {:?}", r.totals("topics"));
    let shape = &r.entities[&slate::catalogue::example::PRODUCTION].stores["topics"].shape;
    assert_eq!((shape.only_shadow.clone(), shape.retyped.len()), (vec!["rating".to_string()], 0), "the added field, named once");
    assert!(!r.ok());

    for s in sinks {
        s.shutdown().await.unwrap();
    }
    live_enricher.shutdown().await;
    shadow_enricher.shutdown().await;
    studio.shutdown().await;
    registry.stop().await;
}

/// The Confluent-framed Payment record with `amount` raised by `by`, same schema id.
fn add_to_amount(payload: &[u8], by: i64) -> Vec<u8> {
    use apache_avro::types::Value;
    let schema = slate::catalogue::Catalogue::example(slate::catalogue::example::PAYMENT).schema.clone();
    let value = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build().unwrap().read_value(&mut &payload[5..]).unwrap();
    let Value::Record(mut fields) = value else { panic!("a record") };
    for (name, v) in fields.iter_mut() {
        if name == "amount" {
            let Value::Long(a) = v else { panic!("amount is a long") };
            *v = Value::Long(*a + by);
        }
    }
    let mut out = payload[..5].to_vec();
    out.extend(
        apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()
            .unwrap()
            .write_value_to_vec(Value::Record(fields))
            .unwrap(),
    );
    out
}

fn owned(headers: &[(String, String)]) -> OwnedHeaders {
    headers.iter().fold(OwnedHeaders::new(), |hs, (k, v)| hs.insert(Header { key: k, value: Some(v.as_bytes()) }))
}

/// The Confluent-framed Production record re-written with a newer schema that adds an optional
/// `rating` (registered here), as a schema owner's change would make it.
async fn with_added_field(registry_url: &str, payload: &[u8]) -> Vec<u8> {
    use apache_avro::types::Value;
    let old = slate::catalogue::Catalogue::example(slate::catalogue::example::PRODUCTION).schema.clone();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/avro/Production.avsc")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["fields"].as_array_mut().unwrap().push(serde_json::json!({"name": "rating", "type": ["null", "string"], "default": null}));
    let newer = apache_avro::Schema::parse(&json).unwrap();
    let id = register(registry_url, &unique("production-rating"), &json).await as u32;
    let value = apache_avro::reader::datum::GenericDatumReader::builder(&old).build().unwrap().read_value(&mut &payload[5..]).unwrap();
    let Value::Record(mut fields) = value else { panic!("a record") };
    fields.push(("rating".into(), Value::Union(1, Box::new(Value::String("A".into())))));
    let mut out = vec![0];
    out.extend(id.to_be_bytes());
    out.extend(
        apache_avro::writer::datum::GenericDatumWriter::builder(&newer).build().unwrap().write_value_to_vec(Value::Record(fields)).unwrap(),
    );
    out
}

async fn copy_topic(from: &str, to: &str) {
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", kafka_bootstrap()).create().unwrap();
    for (key, payload, headers) in read_all(from, 2) {
        let mut record = FutureRecord::to(to).key(&key).headers(owned(&headers));
        if let Some(p) = &payload {
            record = record.payload(p);
        }
        producer.send(record, Duration::from_secs(10)).await.unwrap();
    }
}

/// Runs `slate shadow compare` (the binary) against `cfg`'s sides; (exit code, stdout + stderr).
async fn shadow_cli(cfg: &Config, extra: &[&str]) -> (i32, String) {
    let compare = ["shadow", "compare", "--shadow-prefix", &cfg.shadow.shadow_prefix, "--grace", "5s"];
    slate_cli(cfg, &[&compare[..], extra].concat()).await
}
