//! The clusters a [`super::Publisher`] writes to: the primary and, with `[kafka.standby]`, the
//! standby, each with a producer that is replaced when it can no longer be trusted.
//!
//! Failover rule: a publish on the primary whose events are not all acknowledged within
//! `kafka.standby.failover_after` (an error or no answer) sends those events to the standby, and
//! publishing stays there. After `kafka.standby.fail_back_after` on the standby, the next publish
//! asks the primary for metadata (2 s at most); if it answers, publishing returns to it through a
//! fresh producer (the old one may still hold events queued before the failover: they were
//! already published to the standby, so dropping them loses nothing), else the standby is kept for
//! another `fail_back_after`.

use crate::config::KafkaConfig;
use crate::kafka::{ProduceError, Producer};
use crate::metrics::{Metrics, label};
use rdkafka::producer::Producer as _;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long a fail-back probe waits for the primary's metadata.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One cluster and its current producer.
pub(crate) struct Cluster {
    pub name: String,
    kafka: KafkaConfig,
    /// The producer in use and its generation (bumped at each replacement).
    producer: RwLock<(u64, Producer)>,
    metrics: Metrics,
}

impl Cluster {
    pub fn new(name: impl Into<String>, kafka: KafkaConfig, metrics: Metrics) -> Result<Self, ProduceError> {
        let producer = Producer::try_new(&kafka, metrics.clone())?;
        Ok(Cluster { name: name.into(), kafka, producer: RwLock::new((0, producer)), metrics })
    }

    pub fn current(&self) -> (u64, Producer) {
        self.producer.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Swaps in a fresh producer unless generation `seen` was already replaced. Requests still
    /// holding the old one finish on it.
    pub fn replace(&self, seen: u64, why: &str) {
        let mut current = self.producer.write().unwrap_or_else(|e| e.into_inner());
        if current.0 != seen {
            return;
        }
        match Producer::try_new(&self.kafka, self.metrics.clone()) {
            Ok(fresh) => {
                *current = (seen + 1, fresh);
                self.metrics.publish_producer_restarts_total.inc();
                tracing::warn!(cluster = %self.name, why, "publishing through a fresh producer");
            }
            Err(e) => tracing::warn!(cluster = %self.name, error = %e, "cannot create a fresh producer; keeping the current one"),
        }
    }

    /// Whether the cluster answers a metadata request within [`PROBE_TIMEOUT`].
    async fn reachable(&self) -> bool {
        let (_, producer) = self.current();
        let client = producer.client().clone();
        tokio::task::spawn_blocking(move || client.client().fetch_metadata(None, PROBE_TIMEOUT).is_ok()).await.unwrap_or(false)
    }
}

/// The standby cluster and where publishing currently goes.
pub(crate) struct Standby {
    pub cluster: Cluster,
    pub failover_after: Duration,
    fail_back_after: Duration,
    /// Since when publishing is on the standby; `None`: on the primary.
    since: Mutex<Option<Instant>>,
    metrics: Metrics,
}

impl Standby {
    pub fn new(kafka: &KafkaConfig, metrics: Metrics) -> Result<Option<Self>, ProduceError> {
        let (Some(cfg), Some(cluster)) = (&kafka.standby, kafka.standby_cluster()) else { return Ok(None) };
        set_active(&metrics, "primary");
        Ok(Some(Standby {
            cluster: Cluster::new("standby", cluster, metrics.clone())?,
            failover_after: cfg.failover_after,
            fail_back_after: cfg.fail_back_after,
            since: Mutex::new(None),
            metrics,
        }))
    }

    fn since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.since.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this publish goes to the standby; probes `primary` once `fail_back_after` passed.
    pub async fn in_use(&self, primary: &Cluster) -> bool {
        let since = *self.since();
        match since {
            None => false,
            Some(t) if t.elapsed() < self.fail_back_after => true,
            Some(_) if primary.reachable().await => {
                *self.since() = None;
                primary.replace(primary.current().0, "failing back to the primary");
                self.metrics.publish_failovers_total.get_or_create(&label("to", "primary")).inc();
                set_active(&self.metrics, "primary");
                tracing::info!("the primary cluster answers again; publishing fails back to it");
                false
            }
            Some(_) => {
                *self.since() = Some(Instant::now());
                true
            }
        }
    }

    /// The primary did not acknowledge in time: publishing moves to the standby.
    pub fn fail_over(&self) {
        let mut since = self.since();
        if since.is_none() {
            *since = Some(Instant::now());
            self.metrics.publish_failovers_total.get_or_create(&label("to", "standby")).inc();
            set_active(&self.metrics, "standby");
            tracing::warn!(after = ?self.failover_after, "the primary cluster did not acknowledge in time; publishing fails over to the standby");
        }
    }
}

fn set_active(metrics: &Metrics, cluster: &str) {
    for c in ["primary", "standby"] {
        metrics.publish_active_cluster.get_or_create(&label("cluster", c)).set(i64::from(c == cluster));
    }
}
