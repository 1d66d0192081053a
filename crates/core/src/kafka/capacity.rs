//! How much of one instance a consume loop uses: the signal an autoscaler scales on.
//!
//! Lag alone cannot tell how far to scale *down* (an instance at zero lag may be 5% or 95%
//! busy), so every consume loop (the enricher's and each sink's) reports, per group:
//! - `slate_consumer_busy_seconds_total`: time spent on batches (decode, fetch, produce or
//!   write, offset store), so `rate(...)` is the busy fraction of the instance;
//! - `slate_consumer_capacity_ratio`: the same fraction over the last `WINDOW`, as a gauge for
//!   scalers that read one value (0 idle … 1 saturated);
//! - `slate_consumer_records_per_second`: input records whose batch completed, over `WINDOW`;
//! - `slate_consumer_lag_seconds`: age of the oldest input record not yet processed (its
//!   Kafka timestamp), 0 once the loop has caught up.
//!
//! A batch in progress counts as busy up to now, so a loop stuck on one long batch reads as
//! saturated and ageing, never as idle.

use crate::metrics::{Metrics, label};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The gauges' window; also how often they are recomputed.
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Capacity {
    group: String,
    metrics: Metrics,
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    /// Busy time of finished batches.
    busy: Duration,
    /// Start of the current busy period (at least one batch in progress).
    since: Option<Instant>,
    /// Batches in progress (several when batches are pipelined).
    open: usize,
    /// Records of finished batches.
    records: u64,
    /// Kafka timestamp (ms) of the oldest record not yet processed; `None` when caught up.
    oldest_ms: Option<i64>,
    /// Busy time and records at the start of the current window.
    window: (Instant, Duration, u64),
}

impl Capacity {
    /// Starts the window ticker; it stops with `cancel`.
    pub fn start(group: &str, metrics: Metrics, cancel: CancellationToken) -> Capacity {
        let now = Instant::now();
        let state = State { busy: Duration::ZERO, since: None, open: 0, records: 0, oldest_ms: None, window: (now, Duration::ZERO, 0) };
        let c = Capacity { group: group.to_string(), metrics, state: Arc::new(Mutex::new(state)) };
        let ticker = c.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + WINDOW, WINDOW);
            loop {
                tokio::select! {
                    _ = tick.tick() => ticker.tick(Instant::now(), crate::time::now_millis()),
                    _ = cancel.cancelled() => break,
                }
            }
        });
        c
    }

    /// A batch is about to be processed; `oldest_ms` is the smallest Kafka timestamp in it. The
    /// loop is busy while any batch is between `begin` and `end`.
    pub fn begin(&self, oldest_ms: Option<i64>) {
        let mut s = self.lock();
        // The oldest unprocessed record: this batch's, unless an older batch is still open.
        s.oldest_ms = match (s.open, s.oldest_ms, oldest_ms) {
            (0, prev, new) => new.or(prev),
            (_, Some(prev), Some(new)) => Some(prev.min(new)),
            (_, prev, new) => prev.or(new),
        };
        if s.open == 0 {
            s.since = Some(Instant::now());
        }
        s.open += 1;
    }

    /// The batch is done (stored or given up). `caught_up`: it was smaller than the batch limit,
    /// so nothing older than what arrives next is waiting.
    pub fn end(&self, records: usize, caught_up: bool) {
        let mut s = self.lock();
        s.open = s.open.saturating_sub(1);
        if s.open == 0
            && let Some(since) = s.since.take()
        {
            let spent = since.elapsed();
            s.busy += spent;
            self.metrics.consumer_busy_seconds_total.get_or_create(&label("group", self.group.clone())).inc_by(spent.as_secs_f64());
        }
        s.records += records as u64;
        if caught_up {
            s.oldest_ms = None;
        }
    }

    /// Recomputes the gauges over the window ending `now` and starts the next window.
    fn tick(&self, now: Instant, now_ms: i64) {
        let mut s = self.lock();
        let (ratio, per_sec) = s.window_rates(now);
        let lag = s.oldest_ms.map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0);
        let busy = s.busy_until(now);
        s.window = (now, busy, s.records);
        drop(s);
        let g = label("group", self.group.clone());
        self.metrics.consumer_capacity_ratio.get_or_create(&g).set(ratio);
        self.metrics.consumer_records_per_second.get_or_create(&g).set(per_sec);
        self.metrics.consumer_lag_seconds.get_or_create(&g).set(lag);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("capacity lock poisoned")
    }
}

impl State {
    fn busy_until(&self, now: Instant) -> Duration {
        self.busy + self.since.map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    /// (busy fraction, records per second) since the window started.
    fn window_rates(&self, now: Instant) -> (f64, f64) {
        let (start, busy0, records0) = self.window;
        let wall = now.saturating_duration_since(start).as_secs_f64();
        if wall <= 0.0 {
            return (0.0, 0.0);
        }
        let busy = self.busy_until(now).saturating_sub(busy0).as_secs_f64();
        ((busy / wall).min(1.0), (self.records - records0) as f64 / wall)
    }
}

/// The smallest Kafka timestamp of a batch (`None` when no message carries one).
pub fn oldest_timestamp(batch: &[rdkafka::message::OwnedMessage]) -> Option<i64> {
    use rdkafka::Message;
    batch.iter().filter_map(|m| m.timestamp().to_millis()).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(start: Instant) -> State {
        State { busy: Duration::ZERO, since: None, open: 0, records: 0, oldest_ms: None, window: (start, Duration::ZERO, 0) }
    }

    #[test]
    fn busy_fraction_and_rate_cover_the_window_including_a_batch_in_progress() {
        let t0 = Instant::now();
        let mut s = state(t0);
        s.busy = Duration::from_secs(2);
        s.records = 500;
        assert_eq!(s.window_rates(t0 + Duration::from_secs(10)), (0.2, 50.0));
        // A batch running for the last 5 s of the window counts as busy up to now.
        s.since = Some(t0 + Duration::from_secs(5));
        assert_eq!(s.window_rates(t0 + Duration::from_secs(10)), (0.7, 50.0));
        // A batch stuck for longer than the window reads as saturated, not idle.
        s.window = (t0 + Duration::from_secs(10), s.busy_until(t0 + Duration::from_secs(10)), 500);
        assert_eq!(s.window_rates(t0 + Duration::from_secs(20)), (1.0, 0.0));
    }

    #[tokio::test]
    async fn lag_ages_until_the_loop_catches_up() {
        let metrics = Metrics::new();
        let c = Capacity::start("g", metrics.clone(), CancellationToken::new());
        let gauge = |name: &str| {
            let text = metrics.encode();
            let line = text.lines().find(|l| l.starts_with(&format!("slate_consumer_{name}{{group=\"g\"}}"))).unwrap().to_string();
            line.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
        };
        c.begin(Some(1_000));
        c.end(100, false);
        c.tick(Instant::now(), 31_000);
        assert_eq!(gauge("lag_seconds"), 30.0, "a full batch: older records may still wait");
        c.begin(Some(20_000));
        c.end(10, true);
        c.tick(Instant::now(), 40_000);
        assert_eq!(gauge("lag_seconds"), 0.0);
        assert!(gauge("busy_seconds_total") >= 0.0);
    }
}
