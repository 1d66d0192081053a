//! `slate replay`: re-materializes everything. For each chosen entity every live id is listed at
//! the source of truth and one UPDATE change event per id is published to the enricher's input
//! topic, so the normal pipeline fetches the current state again and every sink converges (safe:
//! sinks are idempotent by id + version). For a new sink, a rebuilt sink target, or a schema
//! change that needs every record re-emitted.
//!
//! The building blocks are shared with `slate verify --repair`: [`SourceIds`] pages through each
//! entity's GraphQL ids listing (`sources.entities.<name>.ids_query`), and [`Republisher`] publishes change events through the
//! producer of [`crate::kafka`], counting an event only once the broker acknowledged it.

use crate::config::{Config, KafkaConfig, SourcesConfig};
use crate::event::{ChangeEvent, ChangeType, EntityName};
use crate::kafka::{DeliveryFuture, ProduceError, Producer};
use crate::progress::Progress;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Ids per page of a source's ids listing (`$first`): sources must serve pages this large.
pub const PAGE: usize = 1000;
/// Unacknowledged events at most; beyond, publishing waits for the oldest acknowledgement.
const MAX_IN_FLIGHT: usize = 10_000;
/// How long the broker has to answer the metadata request that checks it is reachable.
const BROKER_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot list {entity} ids at {url}: {message}")]
    Source { entity: EntityName, url: String, message: String },
    #[error("cannot reach the Kafka broker at {servers} (kafka.bootstrap_servers): {message}")]
    Broker { servers: String, message: String },
    #[error(
        "topic {topic} does not exist; the enricher reads <enricher.input_topic_prefix><entity>.changes (prefix {prefix:?}), created by the studio or your producers"
    )]
    MissingTopic { topic: String, prefix: String },
    #[error("topic {topic} is not among enricher.topics, so the enricher would never read what is published there")]
    NotAnInput { topic: String },
    #[error("{source} ({published} events were acknowledged before the failure)")]
    Publish { published: u64, source: ProduceError },
}

/// Pages through the live ids of an entity with its GraphQL ids listing (by default the query
/// `ids(entity, after, first)`), in ascending order.
pub struct SourceIds {
    http: reqwest::Client,
    sources: SourcesConfig,
}

impl SourceIds {
    pub fn new(sources: &SourcesConfig) -> Result<Self, ReplayError> {
        let http = reqwest::Client::builder().timeout(sources.timeout).build().map_err(|e| ReplayError::Source {
            entity: EntityName::from_static("(any)"),
            url: sources.graphql_endpoint.clone(),
            message: e.to_string(),
        })?;
        Ok(Self { http, sources: sources.clone() })
    }

    /// Whether the source of `entity` can list its ids (`sources.entities.<name>.list_ids`).
    pub fn lists(&self, entity: EntityName) -> bool {
        self.sources.entity(entity).list_ids != Some(false)
    }

    /// Up to [`PAGE`] ids after `after`; fewer means the listing is complete.
    pub async fn page(&self, entity: EntityName, after: Option<&str>) -> Result<Vec<String>, ReplayError> {
        let e = self.sources.entity(entity);
        let url = e.endpoint.as_ref().filter(|_| self.sources.protocol_of(entity) == crate::config::Protocol::Graphql);
        let url = url.unwrap_or(&self.sources.graphql_endpoint);
        let fail = |message: String| ReplayError::Source { entity, url: url.clone(), message };
        let default_query = "query($entity: Entity!, $after: ID, $first: Int!) { ids(entity: $entity, after: $after, first: $first) }";
        let query = e.ids_query.as_deref().unwrap_or(default_query);
        let body = serde_json::json!({ "query": query, "variables": { "entity": entity.as_str(), "after": after, "first": PAGE } });
        let mut req = self.http.post(url).json(&body);
        if let Some(t) = &self.sources.bearer_token {
            req = req.bearer_auth(t.expose());
        }
        let resp = req.send().await.and_then(|r| r.error_for_status()).map_err(|e| fail(error_chain(&e)))?;
        let reply: serde_json::Value = resp.json().await.map_err(|e| fail(format!("invalid reply: {e}")))?;
        let path = e.ids_path.as_deref().unwrap_or("data.ids");
        let ids = path
            .split('.')
            .try_fold(&reply, |v, key| v.get(key))
            .and_then(|v| v.as_array())
            .ok_or_else(|| fail(format!("no list at {path} in the reply; errors: {}", reply["errors"])))?;
        Ok(ids.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
    }

    /// Every live id of `entity`, counting each page on `progress`.
    pub async fn all(&self, entity: EntityName, progress: &Progress) -> Result<Vec<String>, ReplayError> {
        let mut ids: Vec<String> = Vec::new();
        loop {
            let page = self.page(entity, ids.last().map(String::as_str)).await?;
            let done = page.len() < PAGE;
            progress.inc(page.len() as u64);
            ids.extend(page);
            if done {
                progress.finish();
                return Ok(ids);
            }
        }
    }
}

/// The error and its causes (reqwest hides "connection refused" in the source chain).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_str = c.to_string();
        if !s.contains(&c_str) {
            s.push_str(": ");
            s.push_str(&c_str);
        }
        cause = c.source();
    }
    s
}

/// The enricher's input topic for `entity`, checked against `enricher.topics` when set.
pub fn input_topic(cfg: &Config, entity: EntityName) -> Result<String, ReplayError> {
    let topic = entity.changes_topic(&cfg.enricher.input_topic_prefix);
    if !cfg.enricher.topics.is_empty() && !cfg.enricher.topics.contains(&topic) {
        return Err(ReplayError::NotAnInput { topic });
    }
    Ok(topic)
}

/// Fails unless the broker answers a metadata request and every topic in `topics` exists
/// (listing all topics never auto-creates one).
pub async fn check_broker(kafka: &KafkaConfig, topics: &[String], prefix: &str) -> Result<(), ReplayError> {
    let (kafka, topics, prefix) = (kafka.clone(), topics.to_vec(), prefix.to_string());
    let servers = kafka.bootstrap_servers.clone();
    let fail = move |message: String| ReplayError::Broker { servers: servers.clone(), message };
    tokio::task::spawn_blocking(move || {
        use rdkafka::producer::Producer as _;
        let client: rdkafka::producer::BaseProducer = crate::kafka::base_config(&kafka).create().map_err(|e| fail(e.to_string()))?;
        let md = client.client().fetch_metadata(None, BROKER_CHECK_TIMEOUT).map_err(|e| fail(e.to_string()))?;
        match topics.into_iter().find(|t| !md.topics().iter().any(|m| m.name() == t)) {
            Some(topic) => Err(ReplayError::MissingTopic { topic, prefix }),
            None => Ok(()),
        }
    })
    .await
    .unwrap_or_else(|e| Err(ReplayError::Broker { servers: "?".into(), message: format!("metadata check panicked: {e}") }))
}

/// Publishes change events to the enricher's input topics. Event uuids are derived from a
/// per-run namespace and (entity, id, type): one run never publishes two uuids for the same
/// change (the enricher's dedup drops a retried one), while a later run is never mistaken for
/// an earlier one. An event counts as published only once the broker acknowledged it.
pub struct Republisher {
    producer: Producer,
    prefix: String,
    run: Uuid,
    source: &'static str,
    in_flight: VecDeque<(EntityName, DeliveryFuture)>,
    acked: BTreeMap<EntityName, u64>,
    progress: Progress,
}

impl Republisher {
    /// Checks the broker and the input topics of `entities`, then creates the producer.
    /// `source` goes into every event's `source` field (e.g. "slate-replay").
    pub async fn connect(cfg: &Config, source: &'static str, entities: &[EntityName]) -> Result<Self, ReplayError> {
        let topics = entities.iter().map(|e| input_topic(cfg, *e)).collect::<Result<Vec<_>, _>>()?;
        check_broker(&cfg.kafka, &topics, &cfg.enricher.input_topic_prefix).await?;
        let producer = Producer::try_new(&cfg.kafka, crate::metrics::Metrics::new())
            .map_err(|source| ReplayError::Publish { published: 0, source })?;
        Ok(Self {
            producer,
            prefix: cfg.enricher.input_topic_prefix.clone(),
            run: Uuid::new_v4(),
            source,
            in_flight: VecDeque::new(),
            acked: BTreeMap::new(),
            progress: Progress::hidden(),
        })
    }

    /// Where acknowledgements are counted from now on.
    pub fn set_progress(&mut self, progress: Progress) {
        self.progress = progress;
    }

    /// The event published for (entity, id, type) in this run.
    pub fn event(&self, change_type: ChangeType, entity: EntityName, id: &str) -> ChangeEvent {
        let mut event = ChangeEvent::new(change_type, entity, id, crate::time::now_millis());
        event.uuid = event_uuid(&self.run, change_type, entity, id);
        event.source = Some(self.source.to_string());
        event
    }

    /// Enqueues one event (keyed by id); waits for acknowledgements when too many are pending.
    pub async fn publish(&mut self, change_type: ChangeType, entity: EntityName, id: &str) -> Result<(), ReplayError> {
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            self.ack_oldest().await?;
        }
        let event = self.event(change_type, entity, id);
        let topic = entity.changes_topic(&self.prefix);
        let delivery = match self.producer.enqueue(&topic, id.as_bytes(), Some(&event.to_json()), None).await {
            Ok(d) => d,
            Err(source) => return Err(ReplayError::Publish { published: self.published(), source }),
        };
        self.in_flight.push_back((entity, delivery));
        self.collect_ready()
    }

    /// Counts the acknowledgements that already arrived, without waiting.
    fn collect_ready(&mut self) -> Result<(), ReplayError> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        while let Some((entity, delivery)) = self.in_flight.front_mut() {
            let entity = *entity;
            match delivery.as_mut().poll(&mut cx) {
                std::task::Poll::Pending => return Ok(()),
                std::task::Poll::Ready(outcome) => {
                    self.in_flight.pop_front();
                    self.count(entity, outcome)?;
                }
            }
        }
        Ok(())
    }

    async fn ack_oldest(&mut self) -> Result<(), ReplayError> {
        if let Some((entity, delivery)) = self.in_flight.pop_front() {
            let outcome = delivery.await;
            self.count(entity, outcome)?;
        }
        Ok(())
    }

    fn count(&mut self, entity: EntityName, outcome: Result<(i32, i64), ProduceError>) -> Result<(), ReplayError> {
        match outcome {
            Ok(_) => {
                *self.acked.entry(entity).or_default() += 1;
                self.progress.inc(1);
                Ok(())
            }
            Err(source) => Err(ReplayError::Publish { published: self.published(), source }),
        }
    }

    /// Waits until every enqueued event is acknowledged (or one failed).
    pub async fn flush(&mut self) -> Result<(), ReplayError> {
        while !self.in_flight.is_empty() {
            self.ack_oldest().await?;
        }
        Ok(())
    }

    /// Acknowledged events so far, per entity.
    pub fn acked(&self) -> &BTreeMap<EntityName, u64> {
        &self.acked
    }

    pub fn published(&self) -> u64 {
        self.acked.values().sum()
    }
}

/// The uuid of the (entity, id, type) change in the run named `run`.
pub fn event_uuid(run: &Uuid, change_type: ChangeType, entity: EntityName, id: &str) -> Uuid {
    Uuid::new_v5(run, format!("{entity}/{}/{id}", change_type.as_str()).as_bytes())
}

/// A token bucket: `per_sec` tokens a second, at most a tenth of a second's worth (and at least
/// one) saved up, so a replay never bursts more than that into the enricher.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// `None` for 0 (unlimited).
    pub fn new(per_sec: u64) -> Option<Self> {
        (per_sec > 0).then(|| {
            let burst = (per_sec as f64 / 10.0).max(1.0);
            Self { per_sec: per_sec as f64, burst, tokens: burst, last: Duration::ZERO }
        })
    }

    /// Takes one token at `now` (time since any fixed origin) and returns how long to wait
    /// before using it; waits are reserved, so consecutive calls space out at the rate.
    pub fn take(&mut self, now: Duration) -> Duration {
        let gained = now.saturating_sub(self.last).as_secs_f64() * self.per_sec;
        self.last = self.last.max(now);
        self.tokens = (self.tokens + gained).min(self.burst) - 1.0;
        if self.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-self.tokens / self.per_sec) }
    }
}

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Entities in order; empty means every entity of the catalogue.
    pub entities: Vec<EntityName>,
    /// Events per second at most; 0 = unlimited.
    pub rate: u64,
    /// List and count only; publish nothing (and need no broker).
    pub dry_run: bool,
    /// No progress on stderr.
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EntityCounts {
    pub listed: u64,
    pub published: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplaySummary {
    pub dry_run: bool,
    /// The rate cap, events/s (0 = unlimited).
    pub rate: u64,
    pub entities: BTreeMap<EntityName, EntityCounts>,
    pub listed: u64,
    pub published: u64,
    pub elapsed_ms: u64,
}

/// Lists and re-publishes every id of the chosen entities, entity by entity; returns once every
/// event is acknowledged.
pub async fn run(cfg: &Config, opts: &ReplayOptions) -> Result<ReplaySummary, ReplayError> {
    let started = Instant::now();
    let mut entities: Vec<EntityName> = if opts.entities.is_empty() { cfg.entities().names() } else { Vec::new() };
    for e in &opts.entities {
        if !entities.contains(e) {
            entities.push(*e);
        }
    }
    let lister = SourceIds::new(&cfg.sources)?;
    let mut publisher = match opts.dry_run {
        true => None,
        false => Some(Republisher::connect(cfg, "slate-replay", &entities).await?),
    };
    let mut bucket = TokenBucket::new(opts.rate);
    let mut counts = BTreeMap::new();
    for entity in entities {
        let listing = Progress::stderr(format!("replay {entity}: ids listed"), None, opts.quiet);
        let ids = match lister.lists(entity) {
            true => lister.all(entity, &listing).await?,
            false => {
                let topic = cfg.enricher.output_topic(entity);
                let ids = crate::kafka::live_keys(&cfg.kafka, &topic).await.map_err(|message| ReplayError::Broker {
                    servers: cfg.kafka.bootstrap_servers.clone(),
                    message: format!("reading the ids of {topic}: {message}"),
                })?;
                if !opts.quiet {
                    eprintln!(
                        "replay {entity}: the source lists no ids (sources.entities.{entity}.list_ids = false); \
                         using the {} live ids of {topic}",
                        ids.len()
                    );
                }
                ids
            }
        };
        let mut c = EntityCounts { listed: ids.len() as u64, published: 0 };
        if let Some(p) = publisher.as_mut() {
            let progress = Progress::stderr(format!("replay {entity}: events published"), Some(c.listed), opts.quiet);
            p.set_progress(progress.clone());
            for id in &ids {
                if let Some(b) = bucket.as_mut() {
                    let wait = b.take(started.elapsed());
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                }
                p.publish(ChangeType::Update, entity, id).await?;
            }
            p.flush().await?;
            progress.finish();
            c.published = p.acked().get(&entity).copied().unwrap_or(0);
        }
        counts.insert(entity, c);
    }
    Ok(ReplaySummary {
        dry_run: opts.dry_run,
        rate: opts.rate,
        listed: counts.values().map(|c| c.listed).sum(),
        published: counts.values().map(|c| c.published).sum(),
        entities: counts,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_spaces_events_at_the_rate_after_a_small_burst() {
        let ms = Duration::from_millis;
        let mut b = TokenBucket::new(10).unwrap();
        assert_eq!(b.take(ms(0)), Duration::ZERO, "one token saved up (a tenth of a second at 10/s)");
        assert_eq!(b.take(ms(0)), ms(100));
        assert_eq!(b.take(ms(0)), ms(200), "waits are reserved");
        // After sleeping as told, the next event waits one interval more.
        assert_eq!(b.take(ms(200)), ms(100));
        // A long pause refills at most the burst.
        assert_eq!(b.take(ms(10_000)), Duration::ZERO);
        assert_eq!(b.take(ms(10_000)), ms(100));
        assert!(TokenBucket::new(0).is_none(), "0 = unlimited");
    }

    #[test]
    fn a_simulated_replay_keeps_to_the_rate() {
        let mut b = TokenBucket::new(500).unwrap();
        let mut now = Duration::ZERO;
        for _ in 0..1000 {
            now += b.take(now);
        }
        // 50 saved-up tokens go at once, the other 950 at 500/s.
        let want = 950.0 / 500.0;
        assert!((now.as_secs_f64() - want).abs() < 0.01, "{now:?}");
    }

    #[test]
    fn uuids_are_stable_within_a_run_and_differ_between_runs() {
        let (run, other) = (Uuid::new_v4(), Uuid::new_v4());
        let u = |run: &Uuid, t, e, id| event_uuid(run, t, e, id);
        let p = crate::catalogue::example::PRODUCTION;
        assert_eq!(u(&run, ChangeType::Update, p, "prod-1"), u(&run, ChangeType::Update, p, "prod-1"));
        assert_ne!(u(&run, ChangeType::Update, p, "prod-1"), u(&run, ChangeType::Update, p, "prod-2"));
        assert_ne!(u(&run, ChangeType::Update, p, "prod-1"), u(&run, ChangeType::Delete, p, "prod-1"));
        assert_ne!(u(&run, ChangeType::Update, p, "prod-1"), u(&run, ChangeType::Update, crate::catalogue::example::TALENT, "prod-1"));
        assert_ne!(u(&run, ChangeType::Update, p, "prod-1"), u(&other, ChangeType::Update, p, "prod-1"));
    }
}
