//! Every metric slate exports, in one place (Prometheus conventions: `_total` counters,
//! `_seconds` histograms, no high-cardinality labels such as entity ids).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// A gauge of fractional values (ratios, rates, seconds).
pub type FloatGauge = Gauge<f64, AtomicU64>;

/// Label set of one low-cardinality label (topic, entity, api, kind).
pub type Label1 = [(&'static str, String); 1];
/// Label set of two low-cardinality labels.
pub type Label2 = [(&'static str, String); 2];
/// Label set of three low-cardinality labels.
pub type Label3 = [(&'static str, String); 3];

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Messages acknowledged by the broker, by topic.
    pub produced_total: Family<Label1, Counter>,
    /// Times the producer's bounded in-memory buffer was full when a message was offered.
    pub producer_buffer_full_total: Counter,
    /// Messages the broker did not acknowledge (after librdkafka's own retries), by topic.
    pub producer_delivery_errors_total: Family<Label1, Counter>,
    /// Studio mutations applied, by entity.
    pub studio_mutations_total: Family<Label1, Counter>,
    /// Change events the studio could not publish after applying a mutation.
    pub studio_publish_failures_total: Counter,
    /// Studio read requests, by api (graphql|grpc) and entity.
    pub studio_reads_total: Family<Label2, Counter>,
    /// Ids requested in studio reads, by api and entity.
    pub studio_read_ids_total: Family<Label2, Counter>,
    /// Faults injected into studio reads, by kind (error|timeout).
    pub studio_injected_faults_total: Family<Label1, Counter>,
    /// Studio read latency including injected latency, by api.
    pub studio_read_seconds: Family<Label1, Histogram>,
    /// Input messages consumed by the enricher, by topic.
    pub enricher_consumed_total: Family<Label1, Counter>,
    /// Events skipped because their uuid was already processed.
    pub enricher_deduplicated_total: Counter,
    /// Events folded into another event's fetch (same entity and id in one batch).
    pub enricher_coalesced_total: Counter,
    /// Enriched records and tombstones acknowledged, by entity and kind (record|tombstone).
    pub enricher_emitted_total: Family<Label2, Counter>,
    /// Keys parked on the retry topic after failing fetches.
    pub enricher_retried_total: Counter,
    /// Outputs held back because the source answered an older version than this process
    /// already emitted for the key; the key is parked on the retry topic, never dropped.
    pub enricher_superseded_total: Counter,
    /// Messages sent to the dead-letter topic, by reason.
    pub dead_lettered_total: Family<Label1, Counter>,
    /// Batches that failed as a whole (broker or registry trouble) and were retried.
    pub enricher_batch_retries_total: Counter,
    /// Exactly-once batches, by outcome (committed|aborted).
    pub enricher_transactions_total: Family<Label1, Counter>,
    /// Bytes (input messages and their outputs) held by the batches in flight, per group.
    pub enricher_in_flight_bytes: Family<Label1, Gauge>,
    /// Source requests, by entity and outcome (ok|transient|permanent).
    pub fetch_requests_total: Family<Label2, Counter>,
    /// Ids per source request.
    pub fetch_ids_per_request: Histogram,
    /// Source request latency, by entity.
    pub fetch_seconds: Family<Label1, Histogram>,
    /// Events per enricher batch.
    pub enricher_batch_events: Histogram,
    /// Event timestamp to broker acknowledgement of the enriched record.
    pub enricher_freshness_seconds: Histogram,
    /// Consumer lag in messages, by consumer group, topic and partition (from librdkafka statistics).
    pub consumer_lag: Family<Label3, Gauge>,
    /// Input messages whose batch completed and whose offsets were stored.
    pub enricher_processed_total: Counter,
    /// Partitions assigned to this instance whose lag has not shrunk for `kafka.consumer.stall_after`, by group.
    pub consumer_stalled_partitions: Family<Label1, Gauge>,
    /// Stalled partitions of the whole group, whoever owns them (or nobody), by group.
    pub consumer_group_stalled_partitions: Family<Label1, Gauge>,
    /// The `/health` verdict; it travels with the metrics handle every role already has.
    pub health: crate::health::Health,
    /// Partitions currently assigned to the enricher's consumers, by group.
    pub consumer_assigned_partitions: Family<Label1, Gauge>,
    /// Records between the group's committed offsets and the partitions' ends, over every
    /// partition of the group's topics, whoever owns them (from the stall watch), by group.
    pub consumer_group_lag: Family<Label1, Gauge>,
    /// Time this instance's consume loop spent on batches, by group (see `kafka::capacity`).
    pub consumer_busy_seconds_total: Family<Label1, Counter<f64, AtomicU64>>,
    /// Busy fraction of the consume loop over the last window (0 idle … 1 saturated), by group.
    pub consumer_capacity_ratio: Family<Label1, FloatGauge>,
    /// Input records whose batch completed, per second over the last window, by group.
    pub consumer_records_per_second: Family<Label1, FloatGauge>,
    /// Age of the oldest input record not yet processed (0 when caught up), by group.
    pub consumer_lag_seconds: Family<Label1, FloatGauge>,
    /// Records applied by a sink, by sink.
    pub sink_written_total: Family<Label1, Counter>,
    /// Records a sink skipped because the target held that version or a newer one, by sink.
    pub sink_stale_total: Family<Label1, Counter>,
    /// Records a sink's target refused for good (dead-lettered), by sink.
    pub sink_rejected_total: Family<Label1, Counter>,
    /// Failed batch writes (target down or slow; the batch is retried), by sink.
    pub sink_errors_total: Family<Label1, Counter>,
    /// Time to write one batch, by sink.
    pub sink_batch_seconds: Family<Label1, Histogram>,
    /// Event timestamp to the sink's commit, by sink.
    pub sink_freshness_seconds: Family<Label1, Histogram>,
    /// 1 while a sink has halted an entity (a schema change its target cannot follow), by sink
    /// and entity.
    pub sink_halted: Family<Label2, Gauge>,
    /// Events published through `slate::publish` and acknowledged, by topic and partition.
    pub publish_events_total: Family<Label2, Counter>,
    /// Events refused before anything was queued (malformed, unknown entity, oversized), by reason.
    pub publish_refused_total: Family<Label1, Counter>,
    /// Events queued but not acknowledged (the caller got the error), by topic.
    pub publish_failed_total: Family<Label1, Counter>,
    /// Partitions an unordered stream currently avoids, by topic and reason.
    pub publish_partitions_skipped: Family<Label2, Gauge>,
    /// Producers replaced after events timed out (or at a fail-back).
    pub publish_producer_restarts_total: Counter,
    /// Switches between the primary and the standby cluster, by the cluster switched to.
    pub publish_failovers_total: Family<Label1, Counter>,
    /// 1 for the cluster publishing currently goes to (with `[kafka.standby]`).
    pub publish_active_cluster: Family<Label1, Gauge>,
    /// The most event bytes a publisher can hold unacknowledged (buffer size × event size limit):
    /// the worst case a crash of the publishing process leaves its callers to retry.
    pub publish_max_buffered_bytes: Gauge,
    /// Input events skipped because another pipeline owns their key (`enricher.rollout`).
    pub enricher_rollout_skipped_total: Counter,
    /// Outbox events acknowledged by their home region, by region.
    pub router_forwarded_total: Family<Label1, Counter>,
    /// Outbox events a home region did not acknowledge (sent again), by region.
    pub router_errors_total: Family<Label1, Counter>,
    /// Age of the oldest outbox event not yet forwarded; 0 when drained.
    pub router_pending_seconds: FloatGauge,
    /// Shadow validator: keys per store and state in the last comparison.
    pub shadow_keys: Family<Label2, Gauge>,
    /// Shadow validator: equal ÷ compared keys per store in the last comparison.
    pub shadow_match_ratio: Family<Label1, FloatGauge>,
    /// Shadow validator: entity-level differences in the last comparison.
    pub shadow_mismatches: Gauge,
    pub shadow_compares_total: Counter,
    pub shadow_compare_errors_total: Counter,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("slate");
        let m = Self {
            registry: Arc::new(Registry::default()),
            produced_total: Family::default(),
            producer_buffer_full_total: Counter::default(),
            producer_delivery_errors_total: Family::default(),
            studio_mutations_total: Family::default(),
            studio_publish_failures_total: Counter::default(),
            studio_reads_total: Family::default(),
            studio_read_ids_total: Family::default(),
            studio_injected_faults_total: Family::default(),
            studio_read_seconds: Family::new_with_constructor(latency_histogram),
            enricher_consumed_total: Family::default(),
            enricher_deduplicated_total: Counter::default(),
            enricher_coalesced_total: Counter::default(),
            enricher_emitted_total: Family::default(),
            enricher_retried_total: Counter::default(),
            enricher_superseded_total: Counter::default(),
            dead_lettered_total: Family::default(),
            enricher_batch_retries_total: Counter::default(),
            enricher_transactions_total: Family::default(),
            enricher_in_flight_bytes: Family::default(),
            fetch_requests_total: Family::default(),
            fetch_ids_per_request: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            fetch_seconds: Family::new_with_constructor(latency_histogram),
            enricher_batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            enricher_freshness_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            consumer_lag: Family::default(),
            enricher_processed_total: Counter::default(),
            consumer_assigned_partitions: Family::default(),
            consumer_group_lag: Family::default(),
            consumer_busy_seconds_total: Family::default(),
            consumer_capacity_ratio: Family::default(),
            consumer_records_per_second: Family::default(),
            consumer_lag_seconds: Family::default(),
            consumer_stalled_partitions: Family::default(),
            consumer_group_stalled_partitions: Family::default(),
            health: crate::health::Health::default(),
            sink_written_total: Family::default(),
            sink_stale_total: Family::default(),
            sink_rejected_total: Family::default(),
            sink_errors_total: Family::default(),
            sink_batch_seconds: Family::new_with_constructor(latency_histogram),
            sink_freshness_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 18))),
            sink_halted: Family::default(),
            publish_events_total: Family::default(),
            publish_refused_total: Family::default(),
            publish_failed_total: Family::default(),
            publish_partitions_skipped: Family::default(),
            publish_producer_restarts_total: Counter::default(),
            publish_failovers_total: Family::default(),
            publish_active_cluster: Family::default(),
            publish_max_buffered_bytes: Gauge::default(),
            enricher_rollout_skipped_total: Counter::default(),
            router_forwarded_total: Family::default(),
            router_errors_total: Family::default(),
            router_pending_seconds: FloatGauge::default(),
            shadow_keys: Family::default(),
            shadow_match_ratio: Family::default(),
            shadow_mismatches: Gauge::default(),
            shadow_compares_total: Counter::default(),
            shadow_compare_errors_total: Counter::default(),
        };
        r.register("produced", "Messages acknowledged by the broker", m.produced_total.clone());
        r.register(
            "producer_buffer_full",
            "Times the producer buffer was full when a message was offered",
            m.producer_buffer_full_total.clone(),
        );
        r.register("producer_delivery_errors", "Messages the broker did not acknowledge", m.producer_delivery_errors_total.clone());
        r.register("studio_mutations", "Studio mutations applied", m.studio_mutations_total.clone());
        r.register(
            "studio_publish_failures",
            "Change events the studio could not publish after a mutation",
            m.studio_publish_failures_total.clone(),
        );
        r.register("studio_reads", "Studio read requests", m.studio_reads_total.clone());
        r.register("studio_read_ids", "Ids requested in studio reads", m.studio_read_ids_total.clone());
        r.register("studio_injected_faults", "Faults injected into studio reads", m.studio_injected_faults_total.clone());
        r.register("studio_read_seconds", "Studio read latency including injected latency", m.studio_read_seconds.clone());
        r.register("enricher_consumed", "Input messages consumed by the enricher", m.enricher_consumed_total.clone());
        r.register("enricher_deduplicated", "Events skipped as already processed", m.enricher_deduplicated_total.clone());
        r.register("enricher_coalesced", "Events folded into another event's fetch", m.enricher_coalesced_total.clone());
        r.register("enricher_emitted", "Enriched records and tombstones acknowledged", m.enricher_emitted_total.clone());
        r.register("enricher_retried", "Keys parked on the retry topic", m.enricher_retried_total.clone());
        r.register(
            "enricher_superseded",
            "Outputs older than what was already emitted, parked on the retry topic instead",
            m.enricher_superseded_total.clone(),
        );
        r.register("dead_lettered", "Messages sent to the dead-letter topic", m.dead_lettered_total.clone());
        r.register("enricher_batch_retries", "Batches retried after broker or registry trouble", m.enricher_batch_retries_total.clone());
        r.register("enricher_transactions", "Exactly-once batch transactions, by outcome", m.enricher_transactions_total.clone());
        r.register("enricher_in_flight_bytes", "Bytes held by the enricher's batches in flight", m.enricher_in_flight_bytes.clone());
        r.register("fetch_requests", "Source requests", m.fetch_requests_total.clone());
        r.register("fetch_ids_per_request", "Ids per source request", m.fetch_ids_per_request.clone());
        r.register("fetch_seconds", "Source request latency", m.fetch_seconds.clone());
        r.register("enricher_batch_events", "Events per enricher batch", m.enricher_batch_events.clone());
        r.register(
            "enricher_freshness_seconds",
            "Event timestamp to acknowledgement of the enriched record",
            m.enricher_freshness_seconds.clone(),
        );
        r.register("consumer_lag", "Consumer lag in messages", m.consumer_lag.clone());
        r.register(
            "enricher_processed",
            "Input messages whose batch completed and whose offsets were stored",
            m.enricher_processed_total.clone(),
        );
        r.register("consumer_assigned_partitions", "Partitions assigned to the consumers", m.consumer_assigned_partitions.clone());
        r.register("consumer_group_lag", "Records not yet committed by the group, over all its partitions", m.consumer_group_lag.clone());
        r.register("consumer_busy_seconds", "Time the consume loop spent on batches", m.consumer_busy_seconds_total.clone());
        r.register("consumer_capacity_ratio", "Busy fraction of the consume loop over the last 10 s", m.consumer_capacity_ratio.clone());
        r.register(
            "consumer_records_per_second",
            "Input records processed per second over the last 10 s",
            m.consumer_records_per_second.clone(),
        );
        r.register("consumer_lag_seconds", "Age of the oldest input record not yet processed", m.consumer_lag_seconds.clone());
        r.register(
            "consumer_stalled_partitions",
            "Partitions of this instance whose lag has not shrunk for kafka.consumer.stall_after",
            m.consumer_stalled_partitions.clone(),
        );
        r.register(
            "consumer_group_stalled_partitions",
            "Stalled partitions of the whole consumer group, owned or not",
            m.consumer_group_stalled_partitions.clone(),
        );
        r.register("sink_written", "Records applied by a sink", m.sink_written_total.clone());
        r.register("sink_stale", "Records skipped as not newer than the target's", m.sink_stale_total.clone());
        r.register("sink_rejected", "Records the target refused for good", m.sink_rejected_total.clone());
        r.register("sink_errors", "Failed batch writes, retried", m.sink_errors_total.clone());
        r.register("sink_batch_seconds", "Time to write one batch", m.sink_batch_seconds.clone());
        r.register("sink_freshness_seconds", "Event timestamp to the sink's commit", m.sink_freshness_seconds.clone());
        r.register("sink_halted", "1 while a sink has halted an entity its target cannot follow", m.sink_halted.clone());
        r.register("publish_events", "Published events acknowledged by the broker", m.publish_events_total.clone());
        r.register("publish_refused", "Events refused before queueing, by reason", m.publish_refused_total.clone());
        r.register("publish_failed", "Published events the broker did not acknowledge", m.publish_failed_total.clone());
        r.register("publish_partitions_skipped", "Partitions an unordered stream avoids, by reason", m.publish_partitions_skipped.clone());
        r.register("publish_producer_restarts", "Producers replaced after events timed out", m.publish_producer_restarts_total.clone());
        r.register("publish_failovers", "Switches between the primary and the standby cluster", m.publish_failovers_total.clone());
        r.register("publish_active_cluster", "1 for the cluster publishing goes to", m.publish_active_cluster.clone());
        r.register(
            "publish_max_buffered_bytes",
            "Most event bytes a publisher holds unacknowledged (buffer size x event size limit)",
            m.publish_max_buffered_bytes.clone(),
        );
        r.register(
            "enricher_rollout_skipped",
            "Input events skipped because another pipeline owns their key",
            m.enricher_rollout_skipped_total.clone(),
        );
        r.register("router_forwarded", "Outbox events acknowledged by their home region", m.router_forwarded_total.clone());
        r.register("router_errors", "Outbox events a home region did not acknowledge", m.router_errors_total.clone());
        r.register("router_pending_seconds", "Age of the oldest outbox event not yet forwarded", m.router_pending_seconds.clone());
        r.register("shadow_keys", "Keys per store and state in the last shadow comparison", m.shadow_keys.clone());
        r.register("shadow_match_ratio", "Equal / compared keys per store in the last shadow comparison", m.shadow_match_ratio.clone());
        r.register("shadow_mismatches", "Entity-level differences in the last shadow comparison", m.shadow_mismatches.clone());
        r.register("shadow_compares", "Shadow comparisons completed", m.shadow_compares_total.clone());
        r.register(
            "shadow_compare_errors",
            "Shadow comparisons that failed (retried next interval)",
            m.shadow_compare_errors_total.clone(),
        );
        Self { registry: Arc::new(r), ..m }
    }

    /// Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub fn label(key: &'static str, value: impl Into<String>) -> Label1 {
    [(key, value.into())]
}

pub fn labels(k1: &'static str, v1: impl Into<String>, k2: &'static str, v2: impl Into<String>) -> Label2 {
    [(k1, v1.into()), (k2, v2.into())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let m = Metrics::new();
        m.produced_total.get_or_create(&label("topic", "t")).inc();
        m.studio_read_seconds.get_or_create(&label("api", "grpc")).observe(0.01);
        let text = m.encode();
        assert!(text.contains("slate_produced_total{topic=\"t\"} 1"), "{text}");
        assert!(text.contains("slate_studio_read_seconds_bucket"), "{text}");
    }
}
