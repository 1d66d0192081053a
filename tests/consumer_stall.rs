//! A consumer whose lag does not shrink is reported: `slate_consumer_stalled_partitions` counts
//! its partition and `/health` turns degraded; once it makes progress again both clear. Real
//! broker; the sink's target is a fake that can be switched off (the sink seam).

mod common;

use common::*;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use slate::metrics::Metrics;
use slate::sink::{Sink, SinkError, SinkRecord, WriteOutcome, runner};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

struct Switchable {
    down: AtomicBool,
}

impl Sink for Switchable {
    fn name(&self) -> &'static str {
        "probe"
    }

    fn write<'a>(&'a self, batch: &'a [SinkRecord]) -> Pin<Box<dyn Future<Output = Result<WriteOutcome, SinkError>> + Send + 'a>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(SinkError::Unavailable("switched off by the test".into()));
            }
            Ok(WriteOutcome { applied: batch.len(), ..WriteOutcome::default() })
        })
    }
}

async fn until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn gauge(metrics: &Metrics, name: &str, group: &str) -> Option<f64> {
    let prefix = format!("{name}{{group=\"{group}\"}} ");
    metrics.encode().lines().find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_making_no_progress_is_reported_stalled_until_it_recovers() {
    let registry = TestRegistry::start().await;
    let mut cfg = studio_config(&[
        ov("registry.url", format!("\"{}\"", registry.url)),
        ov("kafka.consumer.stall_after", "\"2s\""),
        ov("kafka.consumer.session_timeout", "\"6s\""),
        ov("enricher.topic_partitions", 1),
    ]);
    cfg.sinks.topic_prefix = format!("{}.", unique("stall"));
    cfg.sinks.group_prefix = format!("{}-", unique("group"));
    cfg.sinks.dlq_topic = unique("dlq");
    cfg.sinks.backoff = Duration::from_millis(100);
    cfg.sinks.max_backoff = Duration::from_millis(200);
    let group = format!("{}probe", cfg.sinks.group_prefix);
    let sink = Arc::new(Switchable { down: AtomicBool::new(true) });
    let metrics = Metrics::new();
    let running = runner::start(&cfg, sink.clone(), metrics.clone()).await.unwrap();

    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", kafka_bootstrap()).create().unwrap();
    let topic = format!("{}payment.enriched", cfg.sinks.topic_prefix);
    for i in 0..3 {
        let uuids = uuid::Uuid::new_v4().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "slate-version", value: Some("1") })
            .insert(Header { key: "slate-change-type", value: Some("DELETE") })
            .insert(Header { key: "slate-event-uuids", value: Some(uuids.as_str()) })
            .insert(Header { key: "slate-event-ts", value: Some("1790000000000") });
        let key = format!("pay-{i}");
        producer.send(FutureRecord::<String, [u8]>::to(&topic).key(&key).headers(headers), Duration::from_secs(10)).await.unwrap();
    }

    // The target refuses every batch: the lag stands still, the partition is stalled.
    until("stalled partition reported", Duration::from_secs(60), || {
        gauge(&metrics, "slate_consumer_stalled_partitions", &group) == Some(1.0)
    })
    .await;
    let (code, body) = metrics.health.response();
    assert_eq!(code.as_u16(), 503, "{body}");
    assert!(body.contains(&group) && body.contains("stalled partition") && body.contains(&format!("{topic}[0] lag 3")), "{body}");
    assert_eq!(gauge(&metrics, "slate_consumer_group_stalled_partitions", &group), Some(1.0));

    // The target is back: the batch is written, committed, the lag drains and health clears.
    sink.down.store(false, Ordering::SeqCst);
    until("health back to ok", Duration::from_secs(60), || metrics.health.response().0.as_u16() == 200).await;
    assert_eq!(gauge(&metrics, "slate_consumer_stalled_partitions", &group), Some(0.0));
    running.shutdown().await.unwrap();
    registry.stop().await;
}
