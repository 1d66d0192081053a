//! The enricher under bad input, duplicates, reordering, source failures and a crash.

mod common;
mod enricher_support;

use common::*;
use enricher_support::*;
use slate::enrich::fetch::{Fetch, FetchError, FetchReply, Sources};
use slate::event::{ChangeEvent, ChangeType, EntityName};
use slate::kafka::Producer;
use slate::metrics::Metrics;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn header<'a>(headers: &'a [(String, String)], key: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_messages_go_to_the_dlq_with_reasons_and_the_rest_flows() {
    let registry = TestRegistry::start().await;
    let mut cfg = pipeline_config(&registry.url, &[ov("studio.publish", false)]);
    let studio = slate::studio::server::start(&cfg, Metrics::new()).await.unwrap();
    use_studio(&mut cfg, &studio);
    let topics: Vec<String> = slate::studio::kind::ALL.iter().map(|k| k.changes_topic(&cfg.studio.topic_prefix)).collect();
    slate::kafka::ensure_topics(&cfg.kafka, &topics, 2, 1).await.unwrap();
    let metrics = Metrics::new();
    let enricher = slate::enrich::start(&cfg, metrics.clone()).await.unwrap();
    let producer = Producer::try_new(&cfg.kafka, Metrics::new()).unwrap();
    let budgets = slate::studio::kind::BUDGET.changes_topic(&cfg.studio.topic_prefix);

    let valid = ChangeEvent::new(ChangeType::Update, slate::studio::kind::BUDGET, "bud-000002", slate::time::now_millis());
    let cdc = br#"{"before":null,"after":{"id":"bud-000003"},"op":"u","source":{"lsn":77,"table":"budgets"},"ts_ms":1700000000000}"#;
    let poison: Vec<(&str, Option<Vec<u8>>, &str)> = vec![
        ("garbage", Some(b"\xde\xad\xbe\xef not json".to_vec()), "not valid JSON"),
        ("oversized", Some(vec![b' '; 70_000]), "exceeds enricher.max_message_bytes"),
        (
            "unknown-entity",
            Some(br#"{"uuid":"0b9f4c7e-3d6a-4a53-9a53-2b8f1d8b0b11","type":"UPDATE","ts":1,"entity":"invoice","id":"1"}"#.to_vec()),
            "invoice",
        ),
        ("unknown-schema", Some(vec![0, 0, 0x0f, 0x42, 0x40, 1, 2, 3]), "writer schema 1000000"),
        ("tombstone", None, "tombstone"),
    ];
    for (key, payload, _) in &poison {
        producer.send(&budgets, key.as_bytes(), payload.as_deref(), None).await.unwrap();
    }
    producer.send(&budgets, b"bud-000002", Some(&valid.to_json()), None).await.unwrap();
    producer.send(&budgets, b"bud-000003", Some(cdc), None).await.unwrap();

    let dlq = cfg.enricher.dlq_topic.clone();
    let dead = tokio::task::spawn_blocking(move || read_n_with_headers(&dlq, 2, 5)).await.unwrap();
    for (key, _, reason_part) in &poison {
        let (_, headers) = dead.iter().find(|(k, _)| k == key.as_bytes()).unwrap_or_else(|| panic!("{key} not dead-lettered"));
        let reason = header(headers, "slate-dlq-reason").unwrap();
        assert!(reason.contains(reason_part), "{key}: reason {reason:?} should mention {reason_part:?}");
        assert_eq!(header(headers, "slate-dlq-stage"), Some("decode"));
        assert_eq!(header(headers, "slate-source-topic"), Some(budgets.as_str()));
        assert!(header(headers, "slate-source-offset").unwrap().parse::<i64>().is_ok());
    }
    // The valid JSON event and the CDC record after the poison were enriched.
    let keys: BTreeSet<_> =
        [(slate::studio::kind::BUDGET, "bud-000002".to_string()), (slate::studio::kind::BUDGET, "bud-000003".to_string())].into();
    wait_converged(&cfg, &studio.studio, &keys, Duration::from_secs(30)).await;
    assert_eq!(counter(&metrics, "slate_dead_lettered_total"), 5.0);
    enricher.shutdown().await;
    studio.shutdown().await;
    registry.stop().await;
}

/// Reads `n` messages with their headers.
type Keyed = (Vec<u8>, Vec<(String, String)>);

fn read_n_with_headers(topic: &str, partitions: i32, n: usize) -> Vec<Keyed> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = read_all(topic, partitions);
        if all.len() >= n {
            return all.into_iter().map(|(k, _, h)| (k, h)).collect();
        }
        assert!(Instant::now() < deadline, "{topic}: {} of {n} messages", all.len());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_and_reordering_converge_with_fewer_fetches() {
    let registry = TestRegistry::start().await;
    let mut cfg = pipeline_config(&registry.url, &[ov("studio.publish", false), ov("enricher.batch_max_wait", "\"300ms\"")]);
    let studio = slate::studio::server::start(&cfg, Metrics::new()).await.unwrap();
    use_studio(&mut cfg, &studio);
    let topics: Vec<String> = slate::studio::kind::ALL.iter().map(|k| k.changes_topic(&cfg.studio.topic_prefix)).collect();
    slate::kafka::ensure_topics(&cfg.kafka, &topics, 2, 1).await.unwrap();
    let metrics = Metrics::new();
    let enricher = slate::enrich::start(&cfg, metrics.clone()).await.unwrap();
    let producer = Producer::try_new(&cfg.kafka, Metrics::new()).unwrap();

    // Mutate without publishing, then publish events out of order (newest first) and twice.
    let store = &studio.studio.store;
    let mut events = Vec::new();
    for round in 0..5 {
        for n in 1..=5 {
            for change in store.set_budget_line(&format!("bud-{n:06}"), "POST", 1000 + round).unwrap() {
                events.push(ChangeEvent::new(change.change_type, change.entity, change.id, 1_700_000_000_000 + round));
            }
        }
    }
    events.reverse();
    let mut sent = 0;
    for e in events.iter().chain(events.iter()) {
        producer.send(&e.entity.changes_topic(&cfg.studio.topic_prefix), e.id.as_bytes(), Some(&e.to_json()), None).await.unwrap();
        sent += 1;
    }
    let keys: BTreeSet<_> = events.iter().map(|e| (e.entity, e.id.clone())).collect();
    wait_converged(&cfg, &studio.studio, &keys, Duration::from_secs(30)).await;
    wait_for("all events consumed", Duration::from_secs(30), || counter(&metrics, "slate_enricher_consumed_total") >= sent as f64).await;
    let fetched_ids = counter(&metrics, "slate_fetch_ids_per_request_sum");
    assert!(fetched_ids < sent as f64 / 2.0, "{fetched_ids} ids fetched for {sent} events");
    assert!(
        counter(&metrics, "slate_enricher_coalesced_total") + counter(&metrics, "slate_enricher_deduplicated_total")
            >= (sent - keys.len()) as f64 / 2.0
    );

    // A duplicate arriving in a later batch is skipped, not re-emitted.
    let before = counter(&metrics, "slate_enricher_emitted_total");
    let dup = &events[0];
    producer.send(&dup.entity.changes_topic(&cfg.studio.topic_prefix), dup.id.as_bytes(), Some(&dup.to_json()), None).await.unwrap();
    wait_for("the duplicate consumed", Duration::from_secs(30), || counter(&metrics, "slate_enricher_consumed_total") > sent as f64).await;
    wait_for("the duplicate's batch committed", Duration::from_secs(5), || counter(&metrics, "slate_enricher_deduplicated_total") >= 1.0)
        .await;
    assert_eq!(counter(&metrics, "slate_enricher_emitted_total"), before);
    enricher.shutdown().await;
    studio.shutdown().await;
    registry.stop().await;
}

/// Fails every fetch whose chunk holds `poisoned`, as a flaky source would; delegates the rest.
struct FailFor {
    inner: Sources,
    poisoned: String,
}

impl Fetch for FailFor {
    fn fetch<'a>(
        &'a self,
        entity: EntityName,
        ids: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<FetchReply, FetchError>> + Send + 'a>> {
        if ids.contains(&self.poisoned) {
            return Box::pin(async { Err(FetchError::Unavailable("injected by the test".into())) });
        }
        self.inner.fetch(entity, ids)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_key_is_parked_then_dead_lettered_without_stalling_the_rest() {
    let registry = TestRegistry::start().await;
    let mut cfg = pipeline_config(
        &registry.url,
        &[
            ov("studio.load.mutations_per_sec", 300),
            ov("studio.load.max_mutations", 200),
            ov("enricher.retry_delay", "\"300ms\""),
            ov("enricher.max_retry_rounds", 2),
            ov("enricher.fetch_attempts", 2),
            ov("enricher.fetch_backoff", "\"10ms\""),
        ],
    );
    let studio_metrics = Metrics::new();
    let mut studio = slate::studio::server::start(&cfg, studio_metrics.clone()).await.unwrap();
    use_studio(&mut cfg, &studio);
    // The hottest production's budget: it changes often, so it is always in some chunk.
    let poisoned = "bud-000001".to_string();
    let fetcher = Arc::new(FailFor {
        inner: Sources::try_new(&cfg.sources, &slate::catalogue::Catalogue::built_in()).unwrap(),
        poisoned: poisoned.clone(),
    });
    let metrics = Metrics::new();
    let enricher = slate::enrich::start_with(&cfg, metrics.clone(), fetcher).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), studio.load_finished()).await.unwrap();
    let mut keys = changed_keys(&cfg, &studio_metrics).await;
    assert!(keys.remove(&(slate::studio::kind::BUDGET, poisoned.clone())), "the load mode changed the poisoned budget");
    // Everything else converges, including keys that shared a chunk with the poisoned one
    // (they come back through the retry topic).
    wait_converged(&cfg, &studio.studio, &keys, Duration::from_secs(60)).await;
    wait_for("the poisoned key dead-lettered", Duration::from_secs(30), || counter(&metrics, "slate_dead_lettered_total") >= 1.0).await;
    let dlq = cfg.enricher.dlq_topic.clone();
    let dead = tokio::task::spawn_blocking(move || read_n_with_headers(&dlq, 2, 1)).await.unwrap();
    let (_, headers) = dead.iter().find(|(k, _)| k == poisoned.as_bytes()).expect("poisoned key in the DLQ");
    assert_eq!(header(headers, "slate-dlq-stage"), Some("retries_exhausted"));
    assert!(header(headers, "slate-dlq-reason").unwrap().contains("injected by the test"));
    assert!(counter(&metrics, "slate_enricher_retried_total") >= 2.0);
    enricher.shutdown().await;
    studio.shutdown().await;
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flaky_slow_source_is_enriched_eventually() {
    let registry = TestRegistry::start().await;
    let mut cfg = pipeline_config(
        &registry.url,
        &[
            ov("studio.load.mutations_per_sec", 300),
            ov("studio.load.max_mutations", 300),
            ov("studio.faults.error_rate", 0.2),
            ov("studio.faults.timeout_rate", 0.1),
            ov("studio.faults.timeout_delay", "\"2s\""),
            ov("sources.timeout", "\"300ms\""),
            ov("enricher.retry_delay", "\"300ms\""),
            ov("enricher.retry_delay_max", "\"1s\""),
            ov("enricher.max_retry_rounds", 20),
        ],
    );
    let studio_metrics = Metrics::new();
    let mut studio = slate::studio::server::start(&cfg, studio_metrics.clone()).await.unwrap();
    use_studio(&mut cfg, &studio);
    let metrics = Metrics::new();
    let enricher = slate::enrich::start(&cfg, metrics.clone()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), studio.load_finished()).await.unwrap();
    let keys = changed_keys(&cfg, &studio_metrics).await;
    wait_converged(&cfg, &studio.studio, &keys, Duration::from_secs(120)).await;
    let text = metrics.encode();
    assert!(
        counter(&metrics, "slate_enricher_retried_total") > 0.0 || text.contains("outcome=\"transient\""),
        "faults were injected and retried:\n{text}"
    );
    assert_eq!(counter(&metrics, "slate_dead_lettered_total"), 0.0);
    enricher.shutdown().await;
    studio.shutdown().await;
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_enricher_is_replaced_without_losing_a_key() {
    let registry = TestRegistry::start().await;
    let mut cfg = pipeline_config(&registry.url, &[ov("studio.load.mutations_per_sec", 200), ov("studio.load.max_mutations", 400)]);
    let studio_metrics = Metrics::new();
    let mut studio = slate::studio::server::start(&cfg, studio_metrics.clone()).await.unwrap();
    use_studio(&mut cfg, &studio);
    let first_metrics = Metrics::new();
    let first = slate::enrich::start(&cfg, first_metrics.clone()).await.unwrap();
    wait_for("the first enricher to make progress", Duration::from_secs(30), || {
        counter(&first_metrics, "slate_enricher_emitted_total") >= 50.0
    })
    .await;
    first.abort();
    let second = slate::enrich::start(&cfg, Metrics::new()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), studio.load_finished()).await.unwrap();
    let keys = changed_keys(&cfg, &studio_metrics).await;
    wait_converged(&cfg, &studio.studio, &keys, Duration::from_secs(90)).await;
    second.shutdown().await;
    studio.shutdown().await;
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_outage_at_start_is_waited_out() {
    // Reserve a port for a registry that is not up yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let mut cfg = pipeline_config(&url, &[ov("studio.publish", false)]);
    let studio = slate::studio::server::start(&cfg, Metrics::new()).await.unwrap();
    use_studio(&mut cfg, &studio);
    let topics: Vec<String> = slate::studio::kind::ALL.iter().map(|k| k.changes_topic(&cfg.studio.topic_prefix)).collect();
    slate::kafka::ensure_topics(&cfg.kafka, &topics, 2, 1).await.unwrap();
    let starting = tokio::spawn({
        let cfg = cfg.clone();
        async move { slate::enrich::start(&cfg, Metrics::new()).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!starting.is_finished(), "the enricher must wait for the registry, not fail");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let state =
        slate::registry::RegistryState::new(slate::registry::MemoryStore::new(), slate::registry::CompatibilityLevel::Backward, None);
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        slate::registry::serve(listener, state, async move {
            let _ = rx.await;
        })
        .await
        .unwrap()
    });
    let enricher =
        tokio::time::timeout(Duration::from_secs(60), starting).await.expect("starts once the registry is up").unwrap().expect("starts");
    let changes = studio.studio.store.set_payment_status("pay-000001", "VOID").unwrap();
    let producer = Producer::try_new(&cfg.kafka, Metrics::new()).unwrap();
    for c in &changes {
        let e = ChangeEvent::new(c.change_type, c.entity, c.id.clone(), slate::time::now_millis());
        producer.send(&c.entity.changes_topic(&cfg.studio.topic_prefix), c.id.as_bytes(), Some(&e.to_json()), None).await.unwrap();
    }
    let keys: BTreeSet<_> = changes.iter().map(|c| (c.entity, c.id.clone())).collect();
    wait_converged(&cfg, &studio.studio, &keys, Duration::from_secs(30)).await;
    enricher.shutdown().await;
    studio.shutdown().await;
    let _ = stop.send(());
    server.await.unwrap();
}
