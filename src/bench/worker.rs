//! One measured run in its own process (so its peak RSS is its own): the slate enricher, the
//! naive design (one fetch and one acknowledged produce per event) or a raw consume→produce
//! pipe with no enrichment (the ceiling).

use crate::config::Config;
use crate::enrich::consumer::{self, EnrichConsumer};
use crate::enrich::fetch::{Fetch, Sources};
use crate::enrich::{avro, output_schemas, registry_client};
use crate::event::ChangeEvent;
use crate::kafka::{OffsetTracker, Producer};
use crate::metrics::{Metrics, label};
use rdkafka::Message;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Slate,
    /// The slate enricher with `enricher.delivery = "exactly_once"` (needs a broker with
    /// transactions).
    SlateExactlyOnce,
    Naive,
    Raw,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Slate => "slate",
            Mode::SlateExactlyOnce => "slate exactly_once",
            Mode::Naive => "naive",
            Mode::Raw => "raw",
        }
    }
}

/// What the parent asks a worker to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub mode: Mode,
    pub input_prefix: String,
    pub output_prefix: String,
    pub group: String,
    pub registry_url: String,
    pub graphql_endpoint: String,
    /// Stop after this many input events are processed.
    pub events: u64,
    pub timeout_secs: u64,
}

/// What a worker reports on its last stdout line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerResult {
    pub mode: Mode,
    pub processed: u64,
    /// From the first consumed event to the last processed one.
    pub elapsed_secs: f64,
    pub source_calls: u64,
    pub peak_rss_kib: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Enrich(#[from] crate::enrich::StartError),
    #[error(transparent)]
    Produce(#[from] crate::kafka::ProduceError),
    #[error("timed out after {0}s with {1} events processed")]
    Timeout(u64, u64),
}

pub fn configure(mut cfg: Config, spec: &WorkerSpec) -> Config {
    cfg.enricher.input_topic_prefix = spec.input_prefix.clone();
    cfg.enricher.topics = Vec::new();
    cfg.enricher.output_topic_prefix = spec.output_prefix.clone();
    cfg.enricher.group_id = spec.group.clone();
    cfg.enricher.retry_topic = format!("{}retry", spec.output_prefix);
    cfg.enricher.dlq_topic = format!("{}dlq", spec.output_prefix);
    cfg.enricher.metrics_listen = None;
    cfg.registry.url = spec.registry_url.clone();
    cfg.sources.graphql_endpoint = spec.graphql_endpoint.clone();
    cfg
}

/// Runs the spec; prints `ready` once partitions are assigned.
pub async fn run(cfg: Config, spec: WorkerSpec) -> Result<WorkerResult, WorkerError> {
    let cfg = configure(cfg, &spec);
    let metrics = Metrics::new();
    let deadline = Instant::now() + Duration::from_secs(spec.timeout_secs);
    let (elapsed, processed) = match spec.mode {
        Mode::Slate | Mode::SlateExactlyOnce => {
            let mut cfg = cfg;
            if spec.mode == Mode::SlateExactlyOnce {
                cfg.enricher.delivery = crate::config::Delivery::ExactlyOnce;
                cfg.enricher.transactional_id = Some(spec.group.clone());
            }
            let running = crate::enrich::start(&cfg, metrics.clone()).await?;
            let r = watch(&metrics, &spec, deadline).await;
            running.shutdown().await;
            r?
        }
        Mode::Naive => naive(&cfg, &spec, &metrics, deadline).await?,
        Mode::Raw => raw(&cfg, &spec, &metrics, deadline).await?,
    };
    let source_calls = metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("slate_fetch_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64;
    Ok(WorkerResult { mode: spec.mode, processed, elapsed_secs: elapsed.as_secs_f64(), source_calls, peak_rss_kib: peak_rss_kib() })
}

fn assigned(metrics: &Metrics, group: &str) -> bool {
    metrics.consumer_assigned_partitions.get_or_create(&label("group", group.to_string())).get() > 0
}

/// Waits for the slate enricher to process `spec.events`, timing from its first consumed event.
async fn watch(metrics: &Metrics, spec: &WorkerSpec, deadline: Instant) -> Result<(Duration, u64), WorkerError> {
    let mut ready = false;
    let mut first: Option<Instant> = None;
    loop {
        if !ready && assigned(metrics, &spec.group) {
            println!("ready");
            ready = true;
        }
        let consumed: u64 =
            input_topics(spec).into_iter().map(|t| metrics.enricher_consumed_total.get_or_create(&label("topic", t)).get()).sum();
        if first.is_none() && consumed > 0 {
            first = Some(Instant::now());
        }
        let processed = metrics.enricher_processed_total.get();
        if processed >= spec.events {
            return Ok((first.map(|f| f.elapsed()).unwrap_or_default(), processed));
        }
        if Instant::now() > deadline {
            return Err(WorkerError::Timeout(spec.timeout_secs, processed));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn input_topics(spec: &WorkerSpec) -> Vec<String> {
    crate::studio::kind::ALL.iter().map(|k| k.changes_topic(&spec.input_prefix)).collect()
}

/// The design slate replaces: per event, one fetch, one produce, wait for its ack, commit.
async fn naive(cfg: &Config, spec: &WorkerSpec, metrics: &Metrics, deadline: Instant) -> Result<(Duration, u64), WorkerError> {
    let topics: Vec<String> = crate::studio::kind::ALL.iter().map(|k| cfg.enricher.output_topic(*k)).collect();
    crate::kafka::ensure_topics(&cfg.kafka, &topics, cfg.enricher.topic_partitions, cfg.enricher.topic_replication).await?;
    let registry = registry_client(&cfg.registry).map_err(crate::enrich::StartError::from)?;
    let outputs = output_schemas(cfg, &registry, &CancellationToken::new()).await?;
    let sources = Sources::try_new(&cfg.sources, cfg.entities()).map_err(crate::enrich::StartError::from)?;
    let producer = Producer::try_new(&cfg.kafka, metrics.clone())?;
    let consumer = consumer::create(&cfg.kafka, &spec.group, &input_topics(spec), false, metrics.clone())?;
    let mut tracker = OffsetTracker::new();
    let (mut processed, mut first, mut ready) = (0u64, None::<Instant>, false);
    while processed < spec.events {
        if Instant::now() > deadline {
            return Err(WorkerError::Timeout(spec.timeout_secs, processed));
        }
        let m = tokio::select! {
            m = consumer.recv() => m?.detach(),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                if !ready && assigned(metrics, &spec.group) { println!("ready"); ready = true; }
                continue;
            }
        };
        first.get_or_insert_with(Instant::now);
        tracker.track(m.topic(), m.partition(), m.offset());
        if let Some(Ok(event)) = m.payload().map(|p| ChangeEvent::decode_json(p, m.key(), None)) {
            let ids = [event.id.clone()];
            let started = Instant::now();
            let reply = sources.fetch(event.entity, &ids).await;
            metrics
                .fetch_requests_total
                .get_or_create(&crate::metrics::labels(
                    "entity",
                    event.entity.as_str(),
                    "outcome",
                    if reply.is_ok() { "ok" } else { "error" },
                ))
                .inc();
            metrics.fetch_seconds.get_or_create(&label("entity", event.entity.as_str())).observe(started.elapsed().as_secs_f64());
            let out = &outputs[&event.entity];
            let payload = reply.ok().and_then(|r| r.found.into_iter().next()).and_then(|f| {
                let meta = avro::Meta {
                    event_uuid: event.uuid,
                    change_type: event.change_type,
                    event_ts: event.ts,
                    fetched_at: crate::time::now_millis(),
                    coalesced_uuids: vec![event.uuid],
                };
                avro::to_record(&out.schema, &f, &meta).and_then(|v| avro::encode(&out.schema, out.schema_id, v)).ok()
            });
            producer.send(&out.topic, event.id.as_bytes(), payload.as_deref(), None).await?;
        }
        tracker.ack(m.topic(), m.partition(), m.offset());
        consumer::store(&consumer, &mut tracker);
        processed += 1;
    }
    Ok((first.map(|f| f.elapsed()).unwrap_or_default(), processed))
}

/// The ceiling: batches piped from input to output unchanged, acknowledged, committed.
async fn raw(cfg: &Config, spec: &WorkerSpec, metrics: &Metrics, deadline: Instant) -> Result<(Duration, u64), WorkerError> {
    let out_topic = format!("{}raw", spec.output_prefix);
    crate::kafka::ensure_topics(
        &cfg.kafka,
        std::slice::from_ref(&out_topic),
        cfg.enricher.topic_partitions,
        cfg.enricher.topic_replication,
    )
    .await?;
    let producer = Producer::try_new(&cfg.kafka, metrics.clone())?;
    let consumer: EnrichConsumer = consumer::create(&cfg.kafka, &spec.group, &input_topics(spec), false, metrics.clone())?;
    let never = CancellationToken::new();
    let mut tracker = OffsetTracker::new();
    let (mut processed, mut first, mut ready) = (0u64, None::<Instant>, false);
    while processed < spec.events {
        if Instant::now() > deadline {
            return Err(WorkerError::Timeout(spec.timeout_secs, processed));
        }
        // Cancelling `collect` would lose the messages it holds, so readiness is checked
        // between batches, with a bounded wait for the first message.
        if !ready && assigned(metrics, &spec.group) {
            println!("ready");
            ready = true;
        }
        let timeout = CancellationToken::new();
        let t = timeout.clone();
        let guard = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            t.cancel();
        });
        let batch = consumer::collect(
            &consumer,
            &mut tracker,
            cfg.enricher.batch_max_events,
            cfg.enricher.batch_max_wait,
            None,
            if ready { &never } else { &timeout },
        )
        .await;
        guard.abort();
        if batch.is_empty() {
            continue;
        }
        first.get_or_insert_with(Instant::now);
        let mut pending = Vec::with_capacity(batch.len());
        for m in &batch {
            tracker.track(m.topic(), m.partition(), m.offset());
            pending.push(producer.enqueue(&out_topic, m.key().unwrap_or_default(), m.payload(), None).await?);
        }
        for p in pending {
            p.await?;
        }
        for m in &batch {
            tracker.ack(m.topic(), m.partition(), m.offset());
        }
        consumer::store(&consumer, &mut tracker);
        processed += batch.len() as u64;
    }
    Ok((first.map(|f| f.elapsed()).unwrap_or_default(), processed))
}

/// The process's peak resident set (VmHWM), in KiB; 0 where /proc is unavailable.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}
