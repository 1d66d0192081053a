//! What the dashboard shows, computed from metric snapshots: per-stage throughput, consumer lag,
//! freshness quantiles per stage, dead letters and retries.
//!
//! Rates and quantiles are over a sliding window: the difference between the newest snapshot and
//! the oldest one still inside [`WINDOW`]. Counters and histogram buckets only grow, so the
//! difference is exactly what happened in the window; until a second snapshot exists, quantiles
//! cover everything since start and rates are unknown (`None`).

use super::scrape::{self, Sample};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// How far back rates and quantiles look.
pub const WINDOW: Duration = Duration::from_secs(30);

/// Metric snapshots, newest last; bounded by age (and by a hard count, whatever the cadence).
#[derive(Default)]
pub struct History {
    snapshots: VecDeque<(Instant, Vec<Sample>)>,
}

const MAX_SNAPSHOTS: usize = 256;

impl History {
    pub fn push(&mut self, at: Instant, exposition: &str) {
        self.snapshots.push_back((at, scrape::parse(exposition)));
        // Keep one snapshot at or beyond the window's edge so the window is always full.
        while self.snapshots.len() > 2 && at.duration_since(self.snapshots[1].0) >= WINDOW {
            self.snapshots.pop_front();
        }
        while self.snapshots.len() > MAX_SNAPSHOTS {
            self.snapshots.pop_front();
        }
    }

    /// The newest snapshot's samples (empty before the first): gauges are read as they are now.
    pub fn latest(&self) -> &[Sample] {
        self.snapshots.back().map(|(_, s)| s.as_slice()).unwrap_or_default()
    }

    pub fn stats(&self) -> Option<Stats> {
        let (now_at, now) = self.snapshots.back()?;
        let (then_at, then) = self.snapshots.front()?;
        let secs = now_at.duration_since(*then_at).as_secs_f64();
        Some(compute(now, (secs > 0.0).then_some((then.as_slice(), secs))))
    }
}

/// The stage whose rate is the enricher's throughput: records it wrote to the enriched topic.
pub const ENRICHER_EMITTED: &str = "enricher emitted";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stage {
    pub stage: String,
    /// Since the process started.
    pub total: f64,
    /// Per second over the window; `None` until two snapshots exist.
    pub per_sec: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Freshness {
    pub stage: String,
    /// Event timestamp at the producer to the stage's acknowledged write, in milliseconds.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Observations the quantiles are computed from.
    pub samples: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stats {
    pub window_secs: f64,
    pub stages: Vec<Stage>,
    /// Messages behind the log end, summed over partitions, per consumer group.
    pub lag: BTreeMap<String, f64>,
    /// Stalled partitions per consumer group (lag not shrinking, see `kafka::stall`).
    pub stalled: BTreeMap<String, Stalled>,
    pub freshness: Vec<Freshness>,
    /// Dead-lettered messages since start, by reason.
    pub dead_lettered: BTreeMap<String, f64>,
    /// Keys parked on the retry topic since start.
    pub retried: f64,
    /// Records the sinks' targets refused for good (also dead-lettered), by sink.
    pub sink_rejected: BTreeMap<String, f64>,
    /// Failed sink batch writes (retried), by sink.
    pub sink_errors: BTreeMap<String, f64>,
    /// Failed source requests (transient or permanent) since start.
    pub fetch_failures: f64,
}

/// Stalled partitions of one group: `owned` summed over the instances (each counts its own),
/// `group` the largest group-wide count any instance reports (each sees the whole group); more
/// group-wide than owned means stalled partitions no reporting instance owns.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stalled {
    pub owned: f64,
    pub group: f64,
}

fn stalled(samples: &[Sample]) -> BTreeMap<String, Stalled> {
    let mut out: BTreeMap<String, Stalled> = BTreeMap::new();
    for (name, own) in [("slate_consumer_stalled_partitions", true), ("slate_consumer_group_stalled_partitions", false)] {
        for s in samples.iter().filter(|s| s.name == name) {
            let Some(group) = s.label("group") else { continue };
            let e = out.entry(group.to_string()).or_insert(Stalled { owned: 0.0, group: 0.0 });
            if own {
                e.owned += s.value;
            } else {
                e.group = e.group.max(s.value);
            }
        }
    }
    out
}

fn sum(samples: &[Sample], name: &str, filter: impl Fn(&Sample) -> bool) -> f64 {
    samples.iter().filter(|s| s.name == name && filter(s)).fold(0.0, |acc, s| acc + s.value)
}

fn by_label(samples: &[Sample], name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == name) {
        if let Some(v) = s.label(label) {
            *out.entry(v.to_string()).or_insert(0.0) += s.value;
        }
    }
    out
}

fn compute(now: &[Sample], then: Option<(&[Sample], f64)>) -> Stats {
    let sinks: Vec<String> = {
        let mut names: Vec<String> = now
            .iter()
            .filter(|s| s.name == "slate_sink_written_total" || s.name == "slate_sink_freshness_seconds_count")
            .filter_map(|s| s.label("sink").map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        names
    };
    type Filter = Box<dyn Fn(&Sample) -> bool>;
    let mut counted: Vec<(String, &str, Filter)> = vec![
        ("source changes".into(), "slate_studio_mutations_total", Box::new(|_: &Sample| true)),
        ("enricher consumed".into(), "slate_enricher_consumed_total", Box::new(|_: &Sample| true)),
        (ENRICHER_EMITTED.into(), "slate_enricher_emitted_total", Box::new(|_: &Sample| true)),
    ];
    for sink in &sinks {
        let owned = sink.clone();
        counted.push((format!("sink {sink}"), "slate_sink_written_total", Box::new(move |s: &Sample| s.label("sink") == Some(&owned))));
    }
    let stages = counted
        .iter()
        .map(|(stage, name, filter)| {
            let total = sum(now, name, filter);
            let per_sec = then.map(|(then, secs)| ((total - sum(then, name, filter)) / secs).max(0.0));
            Stage { stage: stage.clone(), total, per_sec }
        })
        .collect();

    let mut freshness = vec![freshness_of("enricher", now, then.map(|t| t.0), "slate_enricher_freshness_seconds", |_| true)];
    for sink in &sinks {
        let f = freshness_of(&format!("sink {sink}"), now, then.map(|t| t.0), "slate_sink_freshness_seconds", |s| {
            s.label("sink") == Some(sink.as_str())
        });
        freshness.push(f);
    }
    Stats {
        window_secs: then.map(|t| t.1).unwrap_or(0.0),
        stages,
        lag: by_label(now, "slate_consumer_lag", "group"),
        stalled: stalled(now),
        freshness,
        dead_lettered: by_label(now, "slate_dead_lettered_total", "reason"),
        retried: sum(now, "slate_enricher_retried_total", |_| true),
        sink_rejected: by_label(now, "slate_sink_rejected_total", "sink"),
        sink_errors: by_label(now, "slate_sink_errors_total", "sink"),
        fetch_failures: sum(now, "slate_fetch_requests_total", |s| s.label("outcome").is_some_and(|o| o != "ok")),
    }
}

/// Quantiles of the observations made inside the window (bucket counts now minus then); with no
/// observation in the window, of everything since start, so a quiet pipeline still shows its
/// last known freshness rather than nothing.
fn freshness_of(stage: &str, now: &[Sample], then: Option<&[Sample]>, name: &str, filter: impl Fn(&Sample) -> bool) -> Freshness {
    let current = scrape::buckets(now, name, &filter);
    let mut window = current.clone();
    if let Some(then) = then {
        let earlier = scrape::buckets(then, name, &filter);
        if earlier.len() == current.len() {
            for (w, e) in window.iter_mut().zip(&earlier) {
                // A restarted process starts its counts over: never a negative count.
                w.1 = (w.1 - e.1).max(0.0);
            }
        }
    }
    let chosen = if window.last().is_some_and(|b| b.1 > 0.0) { window } else { current };
    let ms = |q| scrape::quantile(q, &chosen).map(|s| (s * 1000.0 * 10.0).round() / 10.0);
    Freshness { stage: stage.to_string(), p50_ms: ms(0.5), p99_ms: ms(0.99), samples: chosen.last().map(|b| b.1).unwrap_or(0.0) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, label};

    #[test]
    fn rates_and_window_quantiles_from_two_snapshots() {
        let m = Metrics::new();
        let t0 = Instant::now();
        let mut h = History::default();
        m.sink_written_total.get_or_create(&label("sink", "sql")).inc_by(10);
        m.sink_freshness_seconds.get_or_create(&label("sink", "sql")).observe(5.0);
        h.push(t0, &m.encode());
        let first = h.stats().unwrap();
        assert_eq!(first.stages.iter().find(|s| s.stage == "sink sql").unwrap().per_sec, None);

        m.sink_written_total.get_or_create(&label("sink", "sql")).inc_by(20);
        for _ in 0..100 {
            m.sink_freshness_seconds.get_or_create(&label("sink", "sql")).observe(0.010);
        }
        m.dead_lettered_total.get_or_create(&label("reason", "malformed")).inc();
        h.push(t0 + Duration::from_secs(2), &m.encode());
        let s = h.stats().unwrap();
        assert_eq!(s.window_secs, 2.0);
        let sql = s.stages.iter().find(|s| s.stage == "sink sql").unwrap();
        assert_eq!((sql.total, sql.per_sec), (30.0, Some(10.0)));
        let f = s.freshness.iter().find(|f| f.stage == "sink sql").unwrap();
        // The 5 s observation is outside the window: p99 stays in the 10 ms bucket.
        assert_eq!(f.samples, 100.0);
        assert!(f.p99_ms.unwrap() <= 16.0, "{f:?}");
        assert_eq!(s.dead_lettered.get("malformed"), Some(&1.0));
    }

    #[test]
    fn stalled_partitions_sum_owned_and_take_the_group_view_once() {
        let text = "slate_consumer_stalled_partitions{group=\"g\"} 1\nslate_consumer_group_stalled_partitions{group=\"g\"} 3\n\
                    slate_consumer_stalled_partitions{group=\"g\"} 1\nslate_consumer_group_stalled_partitions{group=\"g\"} 3\n";
        let mut h = History::default();
        h.push(Instant::now(), text);
        let s = h.stats().unwrap();
        assert_eq!(s.stalled.get("g"), Some(&Stalled { owned: 2.0, group: 3.0 }), "two replicas own one each; one is nobody's");
    }

    #[test]
    fn history_is_bounded_by_the_window() {
        let m = Metrics::new();
        let t0 = Instant::now();
        let mut h = History::default();
        for i in 0..100 {
            h.push(t0 + Duration::from_secs(i), &m.encode());
        }
        assert!(h.snapshots.len() <= WINDOW.as_secs() as usize + 2, "{}", h.snapshots.len());
        assert_eq!(h.stats().unwrap().window_secs, WINDOW.as_secs_f64());
    }
}
