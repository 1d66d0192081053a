//! Fault injection on the read APIs, load mode, and the producer's bounded buffer and
//! delivery errors, against the real broker.

mod common;

use common::*;
use slate::event::ChangeEvent;
use slate::kafka::{ProduceError, Producer};
use slate::metrics::Metrics;
use slate::proto::{BatchGetRequest, studio_source_client::StudioSourceClient};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn injected_faults_reach_both_apis_and_can_be_cleared_at_runtime() {
    let cfg = studio_config(&[ov("studio.faults.error_rate", 1.0), ov("studio.publish", false)]);
    let metrics = Metrics::new();
    let studio = slate::studio::server::start(&cfg, metrics.clone()).await.expect("studio starts");
    let http = reqwest::Client::new();

    let r = graphql(&http, studio.http_addr, r#"{ budgets(ids: ["bud-000001"]) { id } }"#).await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "UNAVAILABLE", "{r}");
    let mut client = StudioSourceClient::connect(format!("http://{}", studio.grpc_addr)).await.unwrap();
    let status =
        client.batch_get(BatchGetRequest { entity: "budget".into(), ids: vec!["bud-000001".into()] }).await.expect_err("fault injected");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    // Mutations are never faulted: they drive the tests.
    let m =
        graphql(&http, studio.http_addr, r#"mutation { set_budget_line(budget_id: "bud-000001", category: "POST", amount: 1) { id } }"#)
            .await;
    assert!(m.get("errors").is_none(), "{m}");

    // Switch to pure latency at runtime; the read now succeeds and takes at least that long.
    let put = http
        .put(format!("http://{}/admin/faults", studio.http_addr))
        .body(r#"{"latency": "150ms", "error_rate": 0.0}"#)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.text().await.unwrap());
    let started = Instant::now();
    let reply =
        client.batch_get(BatchGetRequest { entity: "budget".into(), ids: vec!["bud-000001".into()] }).await.expect("no fault").into_inner();
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(reply.found[0].version, 2);
    // Invalid fault settings are rejected with the key named.
    let bad = http.put(format!("http://{}/admin/faults", studio.http_addr)).body(r#"{"error_rate": 3}"#).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("studio.faults.error_rate"));
    // Oversized batches are refused, not truncated.
    let too_many: Vec<String> = (0..1001).map(|i| format!("bud-{i}")).collect();
    let status = client.batch_get(BatchGetRequest { entity: "budget".into(), ids: too_many }).await.expect_err("too many ids");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let status = client.batch_get(BatchGetRequest { entity: "invoice".into(), ids: vec![] }).await.expect_err("unknown entity");
    assert!(status.message().contains("invoice"), "{status:?}");

    let text = http.get(format!("http://{}/metrics", studio.http_addr)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("slate_studio_injected_faults_total{kind=\"error\"} 2"), "{text}");
    assert!(text.contains("slate_studio_reads_total{api=\"grpc\",entity=\"budget\"}"), "{text}");
    studio.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn load_mode_publishes_every_mutation_with_skewed_keys() {
    let cfg = studio_config(&[
        ov("studio.load.mutations_per_sec", 400),
        ov("studio.load.max_mutations", 300),
        ov("studio.load.key_skew", "\"zipf:1.1\""),
        ov("studio.num_productions", 20),
    ]);
    let metrics = Metrics::new();
    let mut studio = slate::studio::server::start(&cfg, metrics.clone()).await.expect("studio starts");
    let report = tokio::time::timeout(Duration::from_secs(60), studio.load_finished()).await.expect("load finishes");
    assert_eq!(report.mutations, 300);
    assert_eq!(report.failures, 0);
    assert!(report.events_acked >= 300, "{report:?}");

    // Every acknowledged event is on Kafka, and hot productions dominate.
    let mut per_production: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    let mut counts = HashMap::new();
    for kind in slate::studio::kind::ALL {
        let topic = kind.changes_topic(&cfg.studio.topic_prefix);
        let acked = metrics.produced_total.get_or_create(&slate::metrics::label("topic", topic.clone())).get() as usize;
        counts.insert(kind, acked);
        if acked == 0 {
            continue;
        }
        for (_, payload) in read_n(&topic, 2, acked, Duration::from_secs(30)) {
            let e = ChangeEvent::decode_json(&payload.unwrap(), None, None).unwrap();
            total += 1;
            if matches!(kind, slate::studio::kind::BUDGET | slate::studio::kind::SCHEDULE | slate::studio::kind::CASH_FLOW) {
                *per_production.entry(e.id.split('-').nth(1).unwrap().to_string()).or_default() += 1;
            }
        }
    }
    assert_eq!(total as u64, report.events_acked, "{counts:?}");
    let hottest = per_production.get("000001").copied().unwrap_or(0);
    let coldest = per_production.get("000020").copied().unwrap_or(0);
    assert!(hottest > 3 * coldest.max(1), "zipf skew: rank 1 {hottest} vs rank 20 {coldest}");
    studio.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn full_buffer_is_counted_and_waited_out_never_dropped() {
    let cfg = studio_config(&[ov("kafka.producer.buffer_max_messages", 1), ov("kafka.producer.linger", "\"20ms\"")]);
    let metrics = Metrics::new();
    let topic = unique("it-buffer");
    slate::kafka::ensure_topics(&cfg.kafka, std::slice::from_ref(&topic), 1, 1).await.unwrap();
    let producer = Producer::try_new(&cfg.kafka, metrics.clone()).unwrap();
    let mut pending = Vec::new();
    for i in 0..20 {
        pending.push(producer.enqueue(&topic, format!("k{i}").as_bytes(), Some(b"v"), None).await.expect("waits for space"));
    }
    for p in pending {
        p.await.expect("acknowledged");
    }
    assert!(metrics.producer_buffer_full_total.get() > 0, "a 1-message buffer must overflow with 20 messages");
    let msgs = read_n(&topic, 1, 20, Duration::from_secs(30));
    let keys: Vec<_> = msgs.iter().map(|(k, _)| String::from_utf8(k.clone()).unwrap()).collect();
    assert_eq!(keys, (0..20).map(|i| format!("k{i}")).collect::<Vec<_>>(), "order kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_broker_surfaces_delivery_and_buffer_errors() {
    // Nothing listens on a port we just bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = slate::config::Config::load(
        None,
        &[
            ov("kafka.bootstrap_servers", format!("\"127.0.0.1:{port}\"")),
            ov("kafka.producer.message_timeout", "\"3s\""),
            ov("kafka.producer.buffer_full_timeout", "\"200ms\""),
            ov("kafka.producer.buffer_max_messages", 1),
        ],
    )
    .unwrap();
    let metrics = Metrics::new();
    let producer = Producer::try_new(&cfg.kafka, metrics.clone()).unwrap();
    let first = producer.enqueue("t", b"k", Some(b"v"), None).await.expect("buffer has room");
    let second = producer.enqueue("t", b"k", Some(b"v"), None).await;
    assert!(matches!(second, Err(ProduceError::BufferFull(_))), "{:?}", second.err());
    let err = first.await.expect_err("no broker, no ack");
    assert!(matches!(err, ProduceError::Delivery { .. }) && err.is_transient(), "{err:?}");
    assert_eq!(metrics.producer_delivery_errors_total.get_or_create(&slate::metrics::label("topic", "t")).get(), 1);
    assert_eq!(metrics.producer_buffer_full_total.get(), 1);
}
