//! The enricher: ID-only change events in, the entity's CURRENT state fetched from its source of
//! truth, Avro records (Confluent wire format) out to `<output_topic_prefix><entity>.enriched`.
//!
//! Guarantees (each tested in `tests/enricher_*.rs`):
//! - At-least-once: a batch's offsets are stored only after every message it produced (records,
//!   tombstones, retry parcels, dead letters) is acknowledged by the broker (`acks=all`,
//!   idempotent producer); the commit is the last processed offset + 1 (`kafka::OffsetTracker`).
//! - Dedup by event uuid is an optimisation: a uuid is remembered only after its batch's offsets
//!   are stored. Correctness comes from the source versions every sink guards on.
//! - Per key: all events of one (entity, id) in a batch become one fetch and one output (the
//!   newest state); this process never emits an older version of a key after a newer one.
//! - Failures: transient fetch errors retry in the batch with jittered backoff; keys still
//!   failing are parked on the retry topic with a not-before time and the batch moves on; after
//!   `max_retry_rounds` they go to the dead-letter topic; retried keys are fetched one per
//!   request so one id a source chokes on cannot hold back its chunk-mates. A retried key is
//!   always fetched and emitted again, even when a newer event of it was emitted meanwhile, so
//!   its event uuids reach the audit trail (the sinks' version guards make the repeat a no-op);
//!   a fetched version older than one this process already emitted is parked again, never
//!   emitted out of order and never dropped. Not found at the source → tombstone. Bad input
//!   → dead-letter topic with the reason, stage and source coordinates in headers, counted.
//! - Broker or registry outages: the batch waits and retries with backoff; nothing is skipped.
//! - With `[kafka.standby]`, the input topics are consumed on both clusters (the outputs, retry
//!   and dead-letter topics live on the primary); a standby batch's offsets are stored on the
//!   standby only after its outputs are acknowledged by the primary.

pub mod avro;
pub mod batch;
pub mod consumer;
pub mod decode;
pub mod fetch;
pub mod output;
pub mod pipeline;
pub mod transactional;

use crate::config::{Config, Delivery, EnricherConfig, RegistryClientConfig};
use crate::event::EntityName;
use crate::kafka::{self, Producer, Transactions};
use crate::metrics::Metrics;
use crate::registry::{ClientError, RegistryAuth, RegistryClient};
use fetch::Fetch;
use pipeline::{OutputSchema, Pipeline};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Produce(#[from] kafka::ProduceError),
    #[error("schema registry: {0}")]
    Registry(#[from] ClientError),
    #[error("sources: {0}")]
    Sources(#[from] crate::config::ConfigError),
    #[error("cannot bind enricher.metrics_listen {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cancelled while waiting for the schema registry")]
    Cancelled,
    #[error("exactly-once delivery: {0}")]
    Transactions(#[from] kafka::TxnInitError),
}

pub fn registry_client(cfg: &RegistryClientConfig) -> Result<RegistryClient, ClientError> {
    let auth = match (&cfg.basic_auth, &cfg.bearer_token) {
        (Some(b), _) => RegistryAuth::Basic { user: b.username.clone(), pass: b.password.expose().to_string() },
        (None, Some(t)) => RegistryAuth::Bearer(t.expose().to_string()),
        (None, None) => RegistryAuth::None,
    };
    RegistryClient::try_new(&cfg.url, auth, cfg.timeout)
}

/// Registers (or finds) each entity's record under its subject, waiting out registry outages.
pub async fn output_schemas(
    cfg: &Config,
    registry: &RegistryClient,
    cancel: &CancellationToken,
) -> Result<HashMap<EntityName, OutputSchema>, StartError> {
    let mut out = HashMap::new();
    for entity in cfg.entities().iter() {
        let kind = entity.name;
        let topic = cfg.enricher.output_topic(kind);
        let text = entity.text.as_str();
        let subject = cfg.registry.subject_name_strategy.value_subject(&topic, &entity.record);
        let registering = crate::registry::client::until_available(&subject, || registry.register(&subject, text, &[]));
        let schema_id = tokio::select! {
            id = registering => id?,
            _ = cancel.cancelled() => return Err(StartError::Cancelled),
        };
        let schema = entity.schema.clone();
        tracing::info!(%subject, schema_id, "output schema registered");
        out.insert(kind, OutputSchema { topic, schema, schema_id });
    }
    Ok(out)
}

/// A started enricher. Call [`RunningEnricher::shutdown`] to drain, commit and stop.
pub struct RunningEnricher {
    pub metrics_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    failure: tokio::sync::watch::Receiver<Option<String>>,
}

impl RunningEnricher {
    /// Resolves when a consume loop stopped on an error it cannot go on from (exactly-once: a
    /// fenced producer); the enricher is stopping and its process should exit non-zero.
    pub async fn failed(&self) -> String {
        let mut rx = self.failure.clone();
        let seen = rx.wait_for(Option::is_some).await;
        match seen {
            Ok(v) => v.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }

    /// Stops consuming, finishes the batch in hand, commits, flushes and waits.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Stops without draining or committing, as a crash would (tests of at-least-once).
    pub fn abort(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the enricher with the configured sources.
pub async fn start(cfg: &Config, metrics: Metrics) -> Result<RunningEnricher, StartError> {
    let sources: Arc<dyn Fetch> = Arc::new(fetch::Sources::try_new(&cfg.sources, cfg.entities())?);
    start_with(cfg, metrics, sources).await
}

/// Starts the enricher with a given fetcher (tests substitute one at this seam).
pub async fn start_with(cfg: &Config, metrics: Metrics, sources: Arc<dyn Fetch>) -> Result<RunningEnricher, StartError> {
    avro::limit_allocations();
    let e = &cfg.enricher;
    let cancel = CancellationToken::new();
    if e.create_topics {
        let mut topics: Vec<String> = cfg.entities().names().into_iter().map(|k| e.output_topic(k)).collect();
        topics.push(e.retry_topic.clone());
        topics.push(e.dlq_topic.clone());
        kafka::ensure_topics(&cfg.kafka, &topics, e.topic_partitions, e.topic_replication).await?;
    }
    let registry = registry_client(&cfg.registry)?;
    let outputs = output_schemas(cfg, &registry, &cancel).await?;
    let txns = match e.delivery {
        Delivery::ExactlyOnce => Some(Transactions::init(&cfg.kafka, metrics.clone(), &e.transactional_id(), e.transaction_timeout).await?),
        Delivery::AtLeastOnce => None,
    };
    let producer = match &txns {
        Some(t) => t.producer(),
        None => Producer::try_new(&cfg.kafka, metrics.clone())?,
    };
    let pipeline = Arc::new(Pipeline::new(e.clone(), sources, producer.clone(), outputs, metrics.clone()));
    let transactional = txns.is_some();
    let main = Arc::new(consumer::create(&cfg.kafka, &e.group_id, &e.input_topics(cfg.entities()), transactional, metrics.clone())?);
    let retry_group = format!("{}.retry", e.group_id);
    let retry = Arc::new(consumer::create(&cfg.kafka, &retry_group, std::slice::from_ref(&e.retry_topic), transactional, metrics.clone())?);
    if !transactional {
        // Transactions end before the consumer polls again: nothing is in flight at a revoke.
        for c in [&main, &retry] {
            rdkafka::consumer::Consumer::context(&**c).flush_on_revoke(producer.clone());
        }
    }
    // With a standby cluster, the same input topics are read there too (same group id, on that
    // cluster's coordinator) and enriched into the primary's output topics by the same pipeline,
    // so events published to either cluster are enriched; the pipeline never emits an older
    // version of a key after a newer one, whichever cluster an event came through.
    let standby = match cfg.kafka.standby_cluster() {
        Some(kafka) => {
            let label = format!("{}@standby", e.group_id);
            let c =
                Arc::new(consumer::create_labelled(&kafka, &e.group_id, &label, &e.input_topics(cfg.entities()), false, metrics.clone())?);
            rdkafka::consumer::Consumer::context(&*c).flush_on_revoke(producer.clone());
            Some(c)
        }
        None => None,
    };
    let stall_after = cfg.kafka.consumer.stall_after;
    kafka::stall::spawn(&main, e.group_id.clone(), e.input_topics(cfg.entities()), stall_after, metrics.clone(), cancel.clone());
    // Parked keys wait on the retry topic until due: its lag may stand still that much longer.
    let retry_stall = if stall_after.is_zero() { stall_after } else { stall_after + e.retry_delay_max };
    kafka::stall::spawn(&retry, retry_group, vec![e.retry_topic.clone()], retry_stall, metrics.clone(), cancel.clone());
    let decoder = Arc::new(decode::InputDecoder::new(e, registry, cfg.entities().clone(), metrics.clone(), cancel.clone()));

    let mut tasks = Vec::new();
    let (failure_tx, failure) = tokio::sync::watch::channel(None);
    let failure_tx = Arc::new(failure_tx);
    let loops = Loops { pipeline, txns, cfg: e.clone(), metrics: metrics.clone(), cancel: cancel.clone(), failure: failure_tx };
    let d = decoder.clone();
    tasks.push(loops.spawn(main, move |batch| {
        let d = d.clone();
        async move { d.input_batch(batch).await }
    }));
    if let Some(standby) = standby {
        let d = decoder.clone();
        tasks.push(loops.spawn(standby, move |batch| {
            let d = d.clone();
            async move { d.input_batch(batch).await }
        }));
    }
    let c = cancel.clone();
    tasks.push(loops.spawn(retry, move |batch| {
        let c = c.clone();
        async move { decode::retry_batch(batch, &c).await }
    }));
    let metrics_addr = match e.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
            let bound = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
            let (m, c, health) = (metrics.clone(), cancel.clone(), metrics.health.clone());
            let app = axum::Router::new()
                .route("/metrics", axum::routing::get(move || async move { m.encode() }))
                .route("/health", axum::routing::get(move || async move { health.response() }));
            tasks.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(c.cancelled_owned()).await {
                    tracing::error!(error = %e, "enricher metrics server failed");
                }
            }));
            Some(bound)
        }
        None => None,
    };
    let flush = producer.clone();
    let c = cancel.clone();
    tasks.push(tokio::spawn(async move {
        c.cancelled().await;
        let _ = tokio::task::spawn_blocking(move || flush.flush(Duration::from_secs(10))).await;
    }));
    tracing::info!(topics = ?e.input_topics(cfg.entities()), group = %e.group_id, "enricher started");
    Ok(RunningEnricher { metrics_addr, cancel, tasks, failure })
}

/// What every consume loop of one enricher shares.
#[derive(Clone)]
struct Loops {
    pipeline: Arc<Pipeline>,
    txns: Option<Transactions>,
    cfg: EnricherConfig,
    metrics: Metrics,
    cancel: CancellationToken,
    failure: Arc<tokio::sync::watch::Sender<Option<String>>>,
}

impl Loops {
    /// Runs one consumer's loop: the pipelined at-least-once loop, or the transactional one.
    fn spawn<D, F>(&self, consumer: consumer::Shared, decode: D) -> JoinHandle<()>
    where
        D: Fn(Vec<rdkafka::message::OwnedMessage>) -> F + Send + 'static,
        F: std::future::Future<Output = Option<Vec<pipeline::Input>>> + Send,
    {
        let l = self.clone();
        tokio::spawn(async move {
            let Some(txns) = &l.txns else {
                return consumer::run(&consumer, &l.pipeline, &l.cfg, &l.metrics, l.cancel.clone(), decode).await;
            };
            if let Err(e) = transactional::run(&consumer, &l.pipeline, txns, &l.cfg, &l.metrics, l.cancel.clone(), decode).await {
                let group = rdkafka::consumer::Consumer::context(&*consumer).group().to_string();
                tracing::error!(error = %e, %group, "the exactly-once loop stopped; the enricher stops (its uncommitted batch is read again after a restart)");
                let hint = if matches!(e, transactional::BatchError::Txn(_)) {
                    format!(" (fenced: is another live instance using enricher.transactional_id {:?}?)", l.cfg.transactional_id())
                } else {
                    String::new()
                };
                l.failure.send_replace(Some(format!("consumer group {group}: {e}{hint}")));
                l.cancel.cancel();
            }
        })
    }
}
