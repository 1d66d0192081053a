//! The benchmark's workload and measurements: Zipf-skewed change events, a pre-produced backlog
//! or a steady offered rate, worker processes, and freshness read off the output topics.

use super::worker::{Mode, WorkerResult, WorkerSpec};
use super::{BenchError, WORKER_READY_TIMEOUT};
use crate::config::Config;
use crate::enrich::output::{H_EVENT_UUIDS, split_uuids};
use crate::event::{ChangeEvent, ChangeType, EntityName};
use crate::kafka::Producer;
use crate::metrics::Metrics;
use crate::studio::generator::Zipf;
use apache_avro::Schema;
use apache_avro::types::Value;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

const PARTITIONS: i32 = 3;

pub fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| Uuid::new_v4().simple().to_string()[..8].to_string())
}

/// Every studio key, shuffled once, sampled with Zipf skew (rank 0 hottest).
pub struct Keys {
    keys: Vec<(EntityName, String)>,
    zipf: Zipf,
    seed: u64,
}

impl Keys {
    pub fn new(studio: &crate::studio::Studio, exponent: f64, seed: u64) -> Self {
        let mut keys: Vec<(EntityName, String)> = crate::studio::kind::ALL
            .iter()
            .flat_map(|k| studio.store.list_ids(*k, None, usize::MAX).into_iter().map(move |id| (*k, id)))
            .collect();
        keys.shuffle(&mut StdRng::seed_from_u64(seed));
        let zipf = Zipf::new(keys.len(), exponent);
        Self { keys, zipf, seed }
    }

    fn events(&self, n: u64) -> impl Iterator<Item = (EntityName, String)> + '_ {
        let mut rng = StdRng::seed_from_u64(self.seed);
        (0..n).map(move |_| self.keys[self.zipf.sample(&mut rng)].clone())
    }
}

pub struct Registry {
    pub url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Registry {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

pub async fn start_registry() -> std::io::Result<Registry> {
    use crate::registry::{CompatibilityLevel, MemoryStore, RegistryState};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let state = RegistryState::new(MemoryStore::new(), CompatibilityLevel::Backward, None);
    let task = tokio::spawn(async move {
        let _ = crate::registry::serve(listener, state, async move {
            let _ = rx.await;
        })
        .await;
    });
    Ok(Registry { url, stop, task })
}

fn input_topics(spec: &WorkerSpec) -> Vec<String> {
    crate::studio::kind::ALL.iter().map(|k| k.changes_topic(&spec.input_prefix)).collect()
}

fn output_topics(spec: &WorkerSpec) -> Vec<String> {
    match spec.mode {
        Mode::Raw => vec![format!("{}raw", spec.output_prefix)],
        _ => crate::studio::kind::ALL.iter().map(|k| format!("{}{}.enriched", spec.output_prefix, k.as_str())).collect(),
    }
}

async fn produce(
    producer: &Producer,
    spec: &WorkerSpec,
    entity: EntityName,
    id: String,
) -> Result<(Uuid, i64, crate::kafka::DeliveryFuture), BenchError> {
    let event = ChangeEvent::new(ChangeType::Update, entity, id, crate::time::now_millis());
    let d = producer.enqueue(&entity.changes_topic(&spec.input_prefix), event.id.as_bytes(), Some(&event.to_json()), None).await?;
    Ok((event.uuid, event.ts, d))
}

/// A running worker process: its stdout lines arrive on `lines`.
struct WorkerProcess {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

fn spawn(exe: &std::path::Path, config_path: Option<&std::path::Path>, spec: &WorkerSpec) -> Result<WorkerProcess, BenchError> {
    let mut cmd = tokio::process::Command::new(exe);
    if let Some(p) = config_path {
        cmd.arg("--config").arg(p);
    }
    cmd.args(["--log", "warn", "bench", "worker", "--spec"]).arg(serde_json::to_string(spec).expect("spec serializes"));
    cmd.stdout(Stdio::piped()).stdin(Stdio::null()).kill_on_drop(true);
    let mut child =
        cmd.spawn().map_err(|e| BenchError::Worker { mode: spec.mode, message: format!("cannot spawn {}: {e}", exe.display()) })?;
    let stdout = child.stdout.take().expect("piped stdout");
    Ok(WorkerProcess { child, lines: BufReader::new(stdout).lines() })
}

impl WorkerProcess {
    async fn wait_ready(&mut self, mode: Mode) -> Result<(), BenchError> {
        let fail = |message: String| BenchError::Worker { mode, message };
        let line =
            tokio::time::timeout(WORKER_READY_TIMEOUT, self.lines.next_line()).await.map_err(|_| fail("not ready within 60s".into()))?;
        match line.map_err(|e| fail(e.to_string()))? {
            Some(l) if l == "ready" => Ok(()),
            other => Err(fail(format!("expected 'ready', got {other:?}"))),
        }
    }

    async fn result(mut self, mode: Mode, timeout: Duration) -> Result<WorkerResult, BenchError> {
        let fail = |message: String| BenchError::Worker { mode, message };
        let mut last = None;
        let read = async {
            while let Some(l) = self.lines.next_line().await.map_err(|e| fail(e.to_string()))? {
                last = Some(l);
            }
            Ok::<_, BenchError>(())
        };
        tokio::time::timeout(timeout, read).await.map_err(|_| fail(format!("no result within {timeout:?}")))??;
        let status = self.child.wait().await.map_err(|e| fail(e.to_string()))?;
        let line = last.ok_or_else(|| fail(format!("exited {status} without a result")))?;
        serde_json::from_str(&line).map_err(|e| fail(format!("exited {status}; last line {line:?}: {e}")))
    }
}

/// Pre-produces `spec.events` events, then lets a worker drain them.
pub async fn drain(
    cfg: &Config,
    config_path: Option<&std::path::Path>,
    exe: &std::path::Path,
    spec: WorkerSpec,
    keys: &Keys,
) -> Result<WorkerResult, BenchError> {
    crate::kafka::ensure_topics(&cfg.kafka, &input_topics(&spec), PARTITIONS, 1).await?;
    let producer = Producer::try_new(&cfg.kafka, Metrics::new())?;
    let mut pending = Vec::new();
    for (entity, id) in keys.events(spec.events) {
        pending.push(produce(&producer, &spec, entity, id).await?.2);
    }
    for p in pending {
        p.await?;
    }
    let worker = spawn(exe, config_path, &spec)?;
    worker.result(spec.mode, Duration::from_secs(spec.timeout_secs)).await
}

/// Event-to-readable-output latency of every event seen on the output topics.
#[derive(Debug, Clone, Default)]
pub struct Freshness {
    pub millis: Vec<f64>,
}

/// Offers `spec.events` events at `rate`/s to a ready worker and measures freshness.
pub async fn steady(
    cfg: &Config,
    config_path: Option<&std::path::Path>,
    exe: &std::path::Path,
    spec: WorkerSpec,
    keys: &Keys,
    rate: f64,
) -> Result<Freshness, BenchError> {
    crate::kafka::ensure_topics(&cfg.kafka, &input_topics(&spec), PARTITIONS, 1).await?;
    crate::kafka::ensure_topics(&cfg.kafka, &output_topics(&spec), cfg.enricher.topic_partitions, 1).await?;
    let sent: Arc<Mutex<HashMap<Uuid, i64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (kafka, topics, sent, stop, partitions) =
            (cfg.kafka.clone(), output_topics(&spec), sent.clone(), stop.clone(), cfg.enricher.topic_partitions);
        tokio::task::spawn_blocking(move || read_freshness(&kafka, &topics, partitions, &sent, &stop))
    };
    let mut worker = spawn(exe, config_path, &spec)?;
    worker.wait_ready(spec.mode).await?;
    let producer = Producer::try_new(&cfg.kafka, Metrics::new())?;
    let started = tokio::time::Instant::now();
    let mut pending = Vec::new();
    for (n, (entity, id)) in keys.events(spec.events).enumerate() {
        tokio::time::sleep_until(started + Duration::from_secs_f64(n as f64 / rate)).await;
        let (uuid, ts, d) = produce(&producer, &spec, entity, id).await?;
        sent.lock().expect("sent lock").insert(uuid, ts);
        pending.push(d);
    }
    for p in pending {
        p.await?;
    }
    let result = worker.result(spec.mode, Duration::from_secs(spec.timeout_secs)).await;
    // Give the reader a moment to see the last outputs, then stop it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let freshness = reader.await.expect("reader thread does not panic");
    result?;
    Ok(freshness)
}

fn read_freshness(
    kafka: &crate::config::KafkaConfig,
    topics: &[String],
    partitions: i32,
    sent: &Mutex<HashMap<Uuid, i64>>,
    stop: &AtomicBool,
) -> Freshness {
    let consumer: BaseConsumer = crate::kafka::base_config(kafka)
        .set("group.id", format!("bench-reader-{}", run_id()))
        .set("enable.auto.commit", "false")
        // The reader measures the pipeline, so it must not add a fetch wait of its own.
        .set("fetch.wait.max.ms", "5")
        .create()
        .expect("reader consumer");
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in 0..partitions {
            tpl.add_partition_offset(t, p, Offset::Beginning).expect("partition");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let catalogue = crate::catalogue::Catalogue::built_in();
    let schemas: HashMap<EntityName, Schema> = catalogue.iter().map(|e| (e.name, e.schema.clone())).collect();
    let mut out = Freshness::default();
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) else { continue };
        let arrived = crate::time::now_millis();
        let sent = sent.lock().expect("sent lock");
        out.millis.extend(uuids_of(&m, &schemas).iter().filter_map(|u| sent.get(u)).map(|ts| (arrived - ts) as f64));
    }
    out
}

fn uuids_of(m: &rdkafka::message::BorrowedMessage<'_>, schemas: &HashMap<EntityName, Schema>) -> Vec<Uuid> {
    if let Some(h) = m.headers().and_then(|h| h.iter().find(|h| h.key == H_EVENT_UUIDS)).and_then(|h| h.value) {
        return split_uuids(&String::from_utf8_lossy(h));
    }
    let Some(payload) = m.payload() else { return Vec::new() };
    if let Ok(e) = ChangeEvent::decode_json(payload, None, None) {
        return vec![e.uuid];
    }
    let schema = m.topic().rsplit('.').nth(1).and_then(|e| e.parse::<EntityName>().ok()).and_then(|e| schemas.get(&e));
    let (Some(schema), Ok((_, mut body))) = (schema, crate::enrich::avro::decode(payload)) else { return Vec::new() };
    let Ok(Value::Record(fields)) =
        apache_avro::reader::datum::GenericDatumReader::builder(schema).build().and_then(|r| r.read_value(&mut body))
    else {
        return Vec::new();
    };
    let Some((_, Value::Record(meta))) = fields.into_iter().find(|(n, _)| n == "_meta") else { return Vec::new() };
    let Some((_, Value::Array(items))) = meta.into_iter().find(|(n, _)| n == "coalesced_uuids") else { return Vec::new() };
    items.into_iter().filter_map(|v| if let Value::String(s) = v { s.parse().ok() } else { None }).collect()
}
