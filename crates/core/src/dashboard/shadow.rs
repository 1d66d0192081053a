//! The "live vs shadow" panel. A shadow pipeline (a second enricher, and optionally sinks, on the
//! same input in its own consumer groups and output prefix) is scraped into a [`History`] of its
//! own, so its counts never add to the live pipeline's; the same [`Stats`] computation then gives
//! each pipeline's enricher throughput and freshness, and the validator's gauges (`slate run
//! shadow`, scraped with the shadow side) say how far the two outputs agree, per source:
//!
//! - `slate_shadow_match_ratio{source}`: equal keys / compared keys, absent until the first
//!   comparison of that source;
//! - `slate_shadow_keys{source,state}`: keys per comparison state ([`KEY_STATES`]);
//! - `slate_shadow_compares_total`: comparisons made since the validator started.
//!
//! [`History`]: super::stats::History

use super::Target;
use super::scrape::Sample;
use super::stats::{ENRICHER_EMITTED, Freshness, Stats};
use serde::Serialize;
use std::collections::BTreeMap;

/// The validator's key states, in the order the page lists them. Every source shown carries all
/// of them (0 when the validator exports none), so the JSON has one shape.
pub const KEY_STATES: [&str; 7] = ["equal", "different", "pending", "missing_live", "missing_shadow", "stale_live", "stale_shadow"];

/// Sources in the order the page lists them; any other source the validator reports follows,
/// by name.
const SOURCES: [&str; 3] = ["topics", "sql", "search"];

/// One pipeline's row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Pipeline {
    /// `live` or `shadow`.
    pub pipeline: String,
    /// Records the enricher(s) emitted per second over the window; `None` until two snapshots.
    pub enricher_per_sec: Option<f64>,
    /// Per stage (the enricher, then each sink this pipeline runs), as in the live panel.
    pub freshness: Vec<Freshness>,
}

/// How far live and shadow agree on one source.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SourceMatch {
    pub source: String,
    /// Equal keys / compared keys, 0..=1; `None` until the validator compared this source. With
    /// several validators reporting, the lowest: the one that needs looking at.
    pub ratio: Option<f64>,
    /// Keys per state ([`KEY_STATES`]), summed over the validators.
    pub keys: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShadowStats {
    /// The live pipeline, then the shadow one.
    pub pipelines: Vec<Pipeline>,
    pub sources: Vec<SourceMatch>,
    /// Comparisons made since the validator(s) started.
    pub compares: f64,
    /// The shadow side's endpoints (its enricher, sinks and validator) and their last scrape.
    pub targets: Vec<Target>,
}

/// `live`: the live pipeline's stats; `shadow`: the shadow side's (`None` before its first
/// snapshot); `latest`: the shadow side's newest samples, where the validator's gauges are.
pub fn compare(live: &Stats, shadow: Option<&Stats>, latest: &[Sample], targets: Vec<Target>) -> ShadowStats {
    ShadowStats {
        pipelines: vec![pipeline("live", Some(live)), pipeline("shadow", shadow)],
        sources: sources(latest),
        compares: latest.iter().filter(|s| s.name == "slate_shadow_compares_total").map(|s| s.value).sum(),
        targets,
    }
}

fn pipeline(name: &str, stats: Option<&Stats>) -> Pipeline {
    let enricher_per_sec = stats.and_then(|s| s.stages.iter().find(|st| st.stage == ENRICHER_EMITTED)).and_then(|st| st.per_sec);
    Pipeline { pipeline: name.to_string(), enricher_per_sec, freshness: stats.map(|s| s.freshness.clone()).unwrap_or_default() }
}

fn sources(samples: &[Sample]) -> Vec<SourceMatch> {
    let mut out: BTreeMap<String, SourceMatch> = BTreeMap::new();
    for s in samples {
        let Some(source) = s.label("source") else { continue };
        match s.name.as_str() {
            "slate_shadow_match_ratio" => {
                let e = source_entry(&mut out, source);
                e.ratio = Some(e.ratio.map_or(s.value, |r| r.min(s.value)));
            }
            "slate_shadow_keys" => {
                let Some(state) = s.label("state") else { continue };
                *source_entry(&mut out, source).keys.entry(state.to_string()).or_insert(0.0) += s.value;
            }
            _ => {}
        }
    }
    let mut v: Vec<SourceMatch> = out.into_values().collect();
    let rank = |s: &SourceMatch| SOURCES.iter().position(|k| *k == s.source).unwrap_or(SOURCES.len());
    v.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.source.cmp(&b.source)));
    v
}

fn source_entry<'a>(out: &'a mut BTreeMap<String, SourceMatch>, source: &str) -> &'a mut SourceMatch {
    out.entry(source.to_string()).or_insert_with(|| SourceMatch {
        source: source.to_string(),
        ratio: None,
        keys: KEY_STATES.iter().map(|k| (k.to_string(), 0.0)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::stats::History;
    use serde_json::json;
    use std::time::{Duration, Instant};

    /// Two snapshots 2 s apart of each side; the live and the shadow enricher both export
    /// `slate_enricher_*` under the same names, so only separate histories keep them apart.
    const LIVE: [&str; 2] = [
        "slate_enricher_emitted_total{topic=\"t\"} 100\n\
         slate_enricher_freshness_seconds_bucket{le=\"0.1\"} 10\nslate_enricher_freshness_seconds_bucket{le=\"1.0\"} 10\n\
         slate_enricher_freshness_seconds_bucket{le=\"+Inf\"} 10\n",
        "slate_enricher_emitted_total{topic=\"t\"} 140\n\
         slate_enricher_freshness_seconds_bucket{le=\"0.1\"} 30\nslate_enricher_freshness_seconds_bucket{le=\"1.0\"} 30\n\
         slate_enricher_freshness_seconds_bucket{le=\"+Inf\"} 30\n",
    ];
    const SHADOW_SINK: &str = "slate_sink_freshness_seconds_count{sink=\"sql\"} 4\n\
                               slate_sink_freshness_seconds_bucket{sink=\"sql\",le=\"1.0\"} 4\n\
                               slate_sink_freshness_seconds_bucket{sink=\"sql\",le=\"+Inf\"} 4\n";
    const SHADOW: [&str; 2] = [
        "slate_enricher_emitted_total{topic=\"t\"} 40\n\
         slate_enricher_freshness_seconds_bucket{le=\"0.1\"} 0\nslate_enricher_freshness_seconds_bucket{le=\"1.0\"} 0\n\
         slate_enricher_freshness_seconds_bucket{le=\"+Inf\"} 0\n",
        "slate_enricher_emitted_total{topic=\"t\"} 50\n\
         slate_enricher_freshness_seconds_bucket{le=\"0.1\"} 0\nslate_enricher_freshness_seconds_bucket{le=\"1.0\"} 20\n\
         slate_enricher_freshness_seconds_bucket{le=\"+Inf\"} 20\n",
    ];
    /// The validator, as its `/metrics` reads after a few comparisons (search: none yet).
    const VALIDATOR: &str = "# TYPE slate_shadow_match_ratio gauge\n\
        slate_shadow_match_ratio{source=\"sql\"} 1\nslate_shadow_match_ratio{source=\"topics\"} 0.75\n\
        slate_shadow_keys{source=\"topics\",state=\"equal\"} 3\nslate_shadow_keys{source=\"topics\",state=\"different\"} 1\n\
        slate_shadow_keys{source=\"topics\",state=\"missing_shadow\"} 2\nslate_shadow_keys{source=\"sql\",state=\"equal\"} 8\n\
        slate_shadow_keys{source=\"search\",state=\"pending\"} 4\n\
        # TYPE slate_shadow_compares_total counter\nslate_shadow_compares_total 12\n";

    fn keys(set: &[(&str, f64)]) -> serde_json::Value {
        let mut all: BTreeMap<String, f64> = KEY_STATES.iter().map(|k| (k.to_string(), 0.0)).collect();
        for (k, v) in set {
            all.insert(k.to_string(), *v);
        }
        json!(all)
    }

    #[test]
    fn live_and_shadow_side_by_side_with_the_validators_match_ratio() {
        let t0 = Instant::now();
        let (mut live, mut shadow) = (History::default(), History::default());
        for (i, at) in [t0, t0 + Duration::from_secs(2)].into_iter().enumerate() {
            live.push(at, LIVE[i]);
            // The validator is scraped with the shadow side; only its newest values count.
            let validator = if i == 1 { VALIDATOR } else { "slate_shadow_match_ratio{source=\"sql\"} 0\n" };
            shadow.push(at, &format!("{}{SHADOW_SINK}{validator}", SHADOW[i]));
        }
        let live_stats = live.stats().unwrap();
        let down = Target { url: "http://validator:9470/metrics".into(), up: false, error: Some("refused".into()) };
        let got = compare(&live_stats, shadow.stats().as_ref(), shadow.latest(), vec![down]);

        let fresh = |stage: &str, p50: f64, p99: f64, n: f64| json!({ "stage": stage, "p50_ms": p50, "p99_ms": p99, "samples": n });
        let expected = json!({
            "pipelines": [
                // 40 more in 2 s; the window's 20 observations all ≤ 100 ms.
                { "pipeline": "live", "enricher_per_sec": 20.0, "freshness": [fresh("enricher", 50.0, 99.0, 20.0)] },
                // 10 more in 2 s, observations in (0.1, 1] s; the sink observed nothing in the
                // window, so its quantiles cover everything since start.
                { "pipeline": "shadow", "enricher_per_sec": 5.0,
                  "freshness": [fresh("enricher", 550.0, 991.0, 20.0), fresh("sink sql", 500.0, 990.0, 4.0)] },
            ],
            "sources": [
                { "source": "topics", "ratio": 0.75, "keys": keys(&[("equal", 3.0), ("different", 1.0), ("missing_shadow", 2.0)]) },
                { "source": "sql", "ratio": 1.0, "keys": keys(&[("equal", 8.0)]) },
                { "source": "search", "ratio": null, "keys": keys(&[("pending", 4.0)]) },
            ],
            "compares": 12.0,
            "targets": [{ "url": "http://validator:9470/metrics", "up": false, "error": "refused" }],
        });
        assert_eq!(serde_json::to_value(&got).unwrap(), expected);
    }

    #[test]
    fn several_validators_show_the_lowest_ratio_and_summed_keys() {
        let text = "slate_shadow_match_ratio{source=\"topics\"} 0.9\nslate_shadow_match_ratio{source=\"topics\"} 0.5\n\
                    slate_shadow_keys{source=\"topics\",state=\"different\"} 2\nslate_shadow_keys{source=\"topics\",state=\"different\"} 3\n\
                    slate_shadow_match_ratio{source=\"archive\"} 1\nslate_shadow_match_ratio{source=\"search\"} 1\n";
        let mut h = History::default();
        h.push(Instant::now(), text);
        let live = h.stats().unwrap();
        let got = compare(&live, None, h.latest(), vec![]);
        let order: Vec<&str> = got.sources.iter().map(|s| s.source.as_str()).collect();
        assert_eq!(order, ["topics", "search", "archive"], "known sources first, others after by name");
        assert_eq!(got.sources[0].ratio, Some(0.5));
        assert_eq!(got.sources[0].keys["different"], 5.0);
        assert_eq!(got.compares, 0.0);
        // No shadow snapshot yet, one live snapshot: no rates, and no shadow freshness rows.
        assert_eq!(got.pipelines[0].enricher_per_sec, None);
        assert_eq!(got.pipelines[1], Pipeline { pipeline: "shadow".into(), enricher_per_sec: None, freshness: vec![] });
    }
}
