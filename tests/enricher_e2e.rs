//! The enricher end to end on the real broker, with the studio as source of truth and the
//! embedded registry: skewed load converges to the studio's final versions, read back by this
//! crate and by Python confluent-kafka's AvroDeserializer; fetches are far fewer than events.

mod common;
mod enricher_support;

use common::*;
use enricher_support::*;
use slate::metrics::Metrics;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn skewed_load_converges_to_the_source_of_truth() {
    let registry = TestRegistry::start().await;
    let mut cfg = pipeline_config(
        &registry.url,
        &[
            ov("studio.load.mutations_per_sec", 500),
            ov("studio.load.max_mutations", 600),
            ov("studio.num_productions", 12),
            ov("enricher.batch_max_wait", "\"100ms\""),
        ],
    );
    let studio_metrics = Metrics::new();
    let mut studio = slate::studio::server::start(&cfg, studio_metrics.clone()).await.expect("studio starts");
    use_studio(&mut cfg, &studio);
    let metrics = Metrics::new();
    let enricher = slate::enrich::start(&cfg, metrics.clone()).await.expect("enricher starts");

    let report = tokio::time::timeout(Duration::from_secs(60), studio.load_finished()).await.expect("load finishes");
    assert_eq!(report.failures, 0);
    let keys = changed_keys(&cfg, &studio_metrics).await;
    wait_converged(&cfg, &studio.studio, &keys, Duration::from_secs(90)).await;

    let consumed = counter(&metrics, "slate_enricher_consumed_total");
    let fetches = counter(&metrics, "slate_fetch_requests_total");
    assert!(consumed >= report.events_acked as f64, "consumed {consumed} of {} events", report.events_acked);
    assert!(fetches < consumed / 3.0, "batched, coalesced fetches: {fetches} requests for {consumed} events");
    assert!(counter(&metrics, "slate_enricher_coalesced_total") > 0.0);
    assert_eq!(counter(&metrics, "slate_dead_lettered_total"), 0.0);

    // A consumer nobody here wrote decodes the records through the registry.
    let topic = cfg.enricher.output_topic(slate::studio::kind::CASH_FLOW);
    let want = studio_state(&studio.studio, &keys.iter().filter(|(k, _)| *k == slate::studio::kind::CASH_FLOW).cloned().collect());
    let (ok, out, err) = run_command(
        tokio::process::Command::new(env("TEST_PYTHON")).args(["tests/py/read_avro.py", &kafka_bootstrap(), &topic, &registry.url, "30"]),
        Duration::from_secs(60),
    )
    .await;
    assert!(ok, "python AvroDeserializer failed:\n{out}\n{err}");
    let mut last = std::collections::BTreeMap::new();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        last.insert((slate::studio::kind::CASH_FLOW, v["key"].as_str().unwrap().to_string()), v["value"]["version"].as_i64());
        if let Some(value) = v["value"].as_object() {
            assert_eq!(value["_meta"]["change_type"], "UPDATE", "{line}");
            assert!(!value["months"].as_array().unwrap().is_empty(), "{line}");
        }
    }
    assert_eq!(last, want, "python's view of the cash-flow topic");

    enricher.shutdown().await;
    studio.shutdown().await;
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn avro_change_events_are_decoded_through_the_registry() {
    use slate::event::{ChangeEvent, ChangeType};
    let registry = TestRegistry::start().await;
    let mut cfg = pipeline_config(&registry.url, &[ov("studio.publish", false)]);
    let studio = slate::studio::server::start(&cfg, Metrics::new()).await.unwrap();
    use_studio(&mut cfg, &studio);
    let topic = slate::studio::kind::TALENT.changes_topic(&cfg.studio.topic_prefix);
    slate::kafka::ensure_topics(&cfg.kafka, std::slice::from_ref(&topic), 2, 1).await.unwrap();
    let metrics = Metrics::new();
    let enricher = slate::enrich::start(&cfg, metrics.clone()).await.unwrap();

    // A producer that speaks Avro: the ChangeEvent schema registered under <topic>-value.
    let client =
        slate::registry::RegistryClient::try_new(&registry.url, slate::registry::RegistryAuth::None, Duration::from_secs(5)).unwrap();
    let schema_id = client.register(&format!("{topic}-value"), slate::schemas::CHANGE_EVENT, &[]).await.unwrap();
    studio.studio.store.set_deal("tal-000001", "prod-000002", 123_456).unwrap();
    let event = ChangeEvent::new(ChangeType::Update, slate::studio::kind::TALENT, "tal-000001", slate::time::now_millis());
    let mut framed = vec![0u8];
    framed.extend_from_slice(&schema_id.to_be_bytes());
    framed.extend_from_slice(&slate::enrich::avro::change_event_datum(&event).unwrap());
    let producer = slate::kafka::Producer::try_new(&cfg.kafka, Metrics::new()).unwrap();
    producer.send(&topic, b"tal-000001", Some(&framed), None).await.unwrap();

    let keys: std::collections::BTreeSet<_> = [(slate::studio::kind::TALENT, "tal-000001".to_string())].into();
    wait_converged(&cfg, &studio.studio, &keys, Duration::from_secs(30)).await;
    assert_eq!(counter(&metrics, "slate_dead_lettered_total"), 0.0);
    enricher.shutdown().await;
    studio.shutdown().await;
    registry.stop().await;
}
