//! Exactly-once delivery to Kafka (`enricher.delivery = "exactly_once"`) on noida-db, whose
//! Kafka API has transactions and `read_committed` (tansu's transactions are incomplete).
//!
//! Under a steady studio load, a `slate run enricher` process is SIGKILLed and restarted again
//! and again. The source is slow and fetched a few ids per request, one request at a time, so
//! most of a transaction's life is spent with some of its outputs already on the broker: a kill
//! then leaves an open transaction behind, which the restarted instance (same
//! `transactional.id`) aborts. At the end:
//! - a `read_committed` reader finds **every** published event uuid on the enriched topics, and
//!   each **exactly once** (at-least-once would repeat the killed batches' outputs);
//! - a `read_uncommitted` reader finds more outputs than that: the aborted attempts, which shows
//!   the kills did hit open transactions (otherwise the first point would prove nothing).

mod chaos_support;
mod common;
mod enricher_support;

use chaos_support::*;
use common::*;
use enricher_support::*;
use slate::metrics::Metrics;
use std::collections::HashMap;
use std::time::Duration;

const PARTITIONS: i32 = 3;
const KILLS: usize = 6;

/// A counter of the role's own `/metrics` (None: not serving yet).
async fn role_counter(http: &reqwest::Client, port: u16, series: &str) -> Option<f64> {
    let text = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_transaction_every_output_is_read_committed_exactly_once() {
    let noida = Noida::start().await;
    let registry = TestRegistry::start().await;
    let cfg = pipeline_config(
        &registry.url,
        &[
            ov("kafka.bootstrap_servers", format!("\"{}\"", noida.bootstrap)),
            ov("studio.load.mutations_per_sec", 20),
            ov("studio.load.max_mutations", 300),
            ov("studio.num_productions", 10),
            ov("studio.snapshot_on_start", true),
            ov("studio.topic_partitions", PARTITIONS),
            ov("studio.faults.latency", "\"60ms\""),
            ov("enricher.topic_partitions", PARTITIONS),
        ],
    );
    let studio_metrics = Metrics::new();
    let mut studio = slate::studio::server::start(&cfg, studio_metrics.clone()).await.unwrap();
    let dir = TempDir(std::env::temp_dir().join(unique("slate-eos")));
    std::fs::create_dir_all(&dir.0).unwrap();
    let port = free_port();
    let extra = [
        // noida-db never expires a SIGKILLed member's session; a restart with the same static
        // membership id takes its place at once (which is what static membership is for).
        ("KAFKA__CONSUMER__GROUP_INSTANCE_ID", unique("eos-instance")),
        ("ENRICHER__BATCH_MAX_EVENTS", "40".into()),
        ("ENRICHER__MAX_IDS_PER_REQUEST", "3".into()),
        ("ENRICHER__MAX_CONCURRENT_FETCHES", "1".into()),
        ("ENRICHER__DELIVERY", "exactly_once".into()),
        ("ENRICHER__TRANSACTIONAL_ID", unique("eos-enricher")),
        ("ENRICHER__METRICS_LISTEN", format!("127.0.0.1:{port}")),
    ];
    let vars = enricher_env(&cfg, &noida.bootstrap, &format!("http://{}/graphql", studio.http_addr), &extra);
    let mut enricher = Role::new("enricher", &["run", "enricher"], vars, &dir.0);
    let http = reqwest::Client::new();
    // Counted once a batch is final: in this mode, once its transaction committed.
    let committed = "slate_enricher_processed_total";

    for kill in 1..=KILLS {
        enricher.start();
        // Each incarnation commits before it dies, so the load moves on between kills; the
        // kill itself lands at a random point of a later transaction.
        let started = std::time::Instant::now();
        while role_counter(&http, port, committed).await.is_none_or(|n| n == 0.0) {
            if let Some(status) = enricher.exited() {
                panic!("the enricher exited by itself ({status}):\n{}", enricher.log_tail(40));
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "incarnation {kill} committed nothing within 60s:\n{}",
                enricher.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(100..700))).await;
        enricher.kill().await;
    }
    enricher.start();
    let report = tokio::time::timeout(Duration::from_secs(120), studio.load_finished()).await.expect("load finishes");
    println!("load finished: {report:?}");

    let committed_reader = Reader { bootstrap: noida.bootstrap.clone(), isolation: "read_committed" };
    let (prefix, from) = (cfg.studio.topic_prefix.clone(), committed_reader.clone());
    let (events, poison) = tokio::task::spawn_blocking(move || published_on(&from, &prefix, PARTITIONS)).await.unwrap();
    assert_eq!(poison, 0, "the studio publishes only valid events");
    let out = cfg.enricher.output_topic_prefix.clone();
    let started = std::time::Instant::now();
    let delivered: HashMap<String, usize> = loop {
        if let Some(status) = enricher.exited() {
            panic!("the enricher exited by itself ({status}):\n{}", enricher.log_tail(40));
        }
        let (from, out) = (committed_reader.clone(), out.clone());
        let delivered = tokio::task::spawn_blocking(move || deliveries_on(&from, &out, PARTITIONS)).await.unwrap();
        let missing = events.iter().filter(|e| !delivered.contains_key(&e.uuid)).count();
        if missing == 0 {
            break delivered;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "{missing} of {} published events never reached an enriched topic within 180s:\n{}",
            events.len(),
            enricher.log_tail(40)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let repeated: Vec<(&String, &usize)> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "{} event uuids were read committed more than once, e.g. {:?}",
        repeated.len(),
        &repeated[..repeated.len().min(5)]
    );

    let (from, out) =
        (Reader { bootstrap: noida.bootstrap.clone(), isolation: "read_uncommitted" }, cfg.enricher.output_topic_prefix.clone());
    let everything = tokio::task::spawn_blocking(move || deliveries_on(&from, &out, PARTITIONS)).await.unwrap();
    let (committed_total, all_total): (usize, usize) = (delivered.values().sum(), everything.values().sum());
    assert!(
        all_total > committed_total,
        "no kill left an aborted attempt on the broker ({all_total} outputs read uncommitted, {committed_total} committed): \
         the kills never hit an open transaction, so exactly-once was not put to the test"
    );
    println!(
        "{} events, {KILLS} kills: each read committed exactly once; {} aborted outputs visible only to read_uncommitted",
        events.len(),
        all_total - committed_total
    );

    enricher.stop().await;
    studio.shutdown().await;
    registry.stop().await;
}
