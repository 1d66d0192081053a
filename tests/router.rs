//! Publish locally, route asynchronously (`[router]`, `slate::router`): two brokers as two
//! regions, "us" (the test broker, local) and "eu" (noida-db, whose data survives a clean stop).
//! Payments live in eu. While eu is down for 30 s, publishing in us never blocks; the router
//! catches up once eu is back, and every payment event is on eu's topic (duplicates allowed,
//! gaps not). An outbox event without routing headers is dead-lettered with the reason.

mod common;

use common::*;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use slate::config::Config;
use slate::event::ChangeEvent;
use slate::metrics::Metrics;
use slate::publish::Publisher;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 2;
const ROUNDS: usize = 40;
const STOP_AT: usize = 4;
const RESTART_AT: usize = 34;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_remote_outage_never_blocks_local_publishing_and_the_router_catches_up() {
    let mut eu = Noida::start().await;
    let q = |v: String| format!("\"{v}\"");
    let cfg = Config::load(
        None,
        &[
            ov("kafka.bootstrap_servers", q(kafka_bootstrap())),
            ov("kafka.consumer.session_timeout", q("6s".into())),
            ov("kafka.producer.message_timeout", q("5s".into())),
            ov("enricher.input_topic_prefix", q(format!("{}.", unique("rt")))),
            ov("enricher.dlq_topic", q(unique("dlq"))),
            ov("router.region", q("us".into())),
            ov("router.entity_regions.payment", q("eu".into())),
            ov("router.regions.eu.bootstrap_servers", q(eu.bootstrap.clone())),
            ov("router.outbox_topic", q(unique("outbox"))),
            ov("router.group_id", q(unique("router"))),
            ov("router.backoff", q("200ms".into())),
            ov("router.max_backoff", q("2s".into())),
        ],
    )
    .expect("test config is valid");
    let (payment, budget) =
        (format!("{}payment.changes", cfg.enricher.input_topic_prefix), format!("{}budget.changes", cfg.enricher.input_topic_prefix));
    let local = [cfg.router.outbox_topic.clone(), cfg.enricher.dlq_topic.clone(), budget.clone()];
    slate::kafka::ensure_topics(&cfg.kafka, &local, PARTITIONS, 1).await.unwrap();
    let eu_kafka = cfg.kafka.on_cluster(&eu.bootstrap);
    slate::kafka::ensure_topics(&eu_kafka, std::slice::from_ref(&payment), PARTITIONS, 1).await.unwrap();

    let router_metrics = Metrics::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let router = tokio::spawn({
        let (cfg, m, c) = (cfg.clone(), router_metrics.clone(), cancel.clone());
        async move { slate::router::run(&cfg, m, c).await }
    });

    // An outbox event without routing headers (someone else's producer) is dead-lettered.
    let raw: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", kafka_bootstrap()).create().unwrap();
    raw.send(FutureRecord::<str, str>::to(&cfg.router.outbox_topic).key("x").payload("{}"), Duration::from_secs(10)).await.unwrap();

    let publisher = Publisher::new(&cfg, Metrics::new()).unwrap();
    let (mut payments, mut slowest) = (Vec::new(), Duration::ZERO);
    for round in 0..ROUNDS {
        if round == STOP_AT {
            eu.stop().await;
        }
        if round == RESTART_AT {
            eu.restart().await;
        }
        let events: Vec<ChangeEvent> = (0..5)
            .map(|i| json!({"type": "UPDATE", "entity": "payment", "id": format!("pay-{round}-{i}")}))
            .chain([json!({"type": "UPDATE", "entity": "budget", "id": format!("b-{round}")})])
            .map(|raw| publisher.parse(raw.to_string().as_bytes()).unwrap())
            .collect();
        let started = Instant::now();
        // Waiting on eu would fail these after kafka.producer.message_timeout: each must be
        // acknowledged by the local cluster.
        for (event, outcome) in events.iter().zip(publisher.publish(&events).await) {
            let ack = outcome.unwrap_or_else(|e| panic!("round {round}: a local publish failed: {e}"));
            let expected = if event.entity.as_str() == "payment" { &cfg.router.outbox_topic } else { &budget };
            assert_eq!(&ack.topic, expected, "payments go to the outbox, budgets to their own topic");
            if event.entity.as_str() == "payment" {
                payments.push(event.uuid.to_string());
            }
        }
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(metric_sum(&router_metrics, "slate_router_errors_total{region=\"eu\"}") > 0.0, "the outage was seen by the router");

    let eu_reader = Reader { bootstrap: eu.bootstrap.clone(), isolation: "read_committed" };
    let counts = until("every payment forwarded to eu", Duration::from_secs(120), || {
        let (reader, topic, wanted) = (eu_reader.clone(), payment.clone(), payments.clone());
        async move {
            let on_eu = tokio::task::spawn_blocking(move || read_all_on(&reader, &topic, PARTITIONS)).await.unwrap();
            let mut counts: HashMap<String, usize> = HashMap::new();
            for (key, body, _) in on_eu {
                let e = ChangeEvent::decode_json(&body.unwrap(), Some(&key), None).expect("a forwarded event decodes");
                assert_eq!(e.entity.as_str(), "payment");
                *counts.entry(e.uuid.to_string()).or_default() += 1;
            }
            wanted.iter().all(|u| counts.contains_key(u)).then_some(counts)
        }
    })
    .await;
    let duplicates = counts.values().filter(|n| **n > 1).count();
    assert_eq!(counts.len(), payments.len(), "nothing but the published payments reached eu");
    let forwarded = metric_sum(&router_metrics, "slate_router_forwarded_total{region=\"eu\"}");
    assert!(forwarded >= payments.len() as f64, "forwarded {forwarded} of {}", payments.len());

    let dead: Vec<_> = read_all(&cfg.enricher.dlq_topic, PARTITIONS);
    assert_eq!(dead.len(), 1, "the header-less outbox event is dead-lettered");
    assert!(dead[0].2.iter().any(|(k, v)| k == "slate-dlq-reason" && v.contains("slate-home-region")), "{:?}", dead[0].2);
    let local_budget = read_all(&budget, PARTITIONS);
    assert_eq!(local_budget.len(), ROUNDS, "budgets stay local");
    until("the router drained its outbox", Duration::from_secs(30), || async {
        (metric_sum(&router_metrics, "slate_router_pending_seconds") == 0.0).then_some(())
    })
    .await;
    println!(
        "{} payments published in us during a {}-round eu outage: all on eu ({duplicates} delivered twice), slowest local round {slowest:?}",
        payments.len(),
        RESTART_AT - STOP_AT
    );
    cancel.cancel();
    router.await.unwrap().unwrap();
}
