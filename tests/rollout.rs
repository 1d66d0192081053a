//! Percentage rollout by key (`enricher.rollout`): two enricher pipelines, "old" and "new", each
//! its own consumer group, read the same change topics under a studio load; "new" owns 30% of
//! the keys by hash. Each writes its own output topics here, so ownership can be read back:
//! every key's records are on exactly its owner's topics, each pipeline skipped the other's
//! events, and together they hold every changed key at the source's current version.

mod common;
mod enricher_support;

use common::*;
use enricher_support::*;
use slate::config::{Config, RolloutConfig};
use slate::metrics::Metrics;
use std::collections::BTreeMap;
use std::time::Duration;

const NEW_FROM: u32 = 7_000;

fn pipeline(base: &Config, name: &str) -> Config {
    let mut cfg = base.clone();
    cfg.enricher.group_id = unique(&format!("rollout-{name}"));
    cfg.enricher.output_topic_prefix = format!("{}.", unique(&format!("out-{name}")));
    cfg.enricher.rollout = Some(RolloutConfig {
        salt: "it".into(),
        pipeline: name.into(),
        slices: BTreeMap::from([("old".into(), [0, NEW_FROM]), ("new".into(), [NEW_FROM, 10_000])]),
    });
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pipelines_split_the_keys_by_hash_and_together_converge() {
    let registry = TestRegistry::start().await;
    let mut base = pipeline_config(
        &registry.url,
        &[
            ov("studio.load.mutations_per_sec", 100),
            ov("studio.load.max_mutations", 300),
            ov("studio.num_productions", 12),
            ov("studio.snapshot_on_start", true),
        ],
    );
    let studio_metrics = Metrics::new();
    let mut studio = slate::studio::server::start(&base, studio_metrics.clone()).await.unwrap();
    use_studio(&mut base, &studio);
    let (old, new) = (pipeline(&base, "old"), pipeline(&base, "new"));
    let (old_metrics, new_metrics) = (Metrics::new(), Metrics::new());
    let old_enricher = slate::enrich::start(&old, old_metrics.clone()).await.unwrap();
    let new_enricher = slate::enrich::start(&new, new_metrics.clone()).await.unwrap();

    let report = tokio::time::timeout(Duration::from_secs(60), studio.load_finished()).await.expect("load finishes");
    assert_eq!(report.failures, 0);
    let keys = changed_keys(&base, &studio_metrics).await;
    let owner = |(entity, id): &(slate::event::EntityName, String)| {
        if slate::config::slot("it", entity.as_str(), id) >= NEW_FROM { "new" } else { "old" }
    };
    let want = studio_state(&studio.studio, &keys);
    let (on_old, on_new) = until("both pipelines together hold every key at its source version", Duration::from_secs(90), || {
        let (old, new, want) = (old.clone(), new.clone(), want.clone());
        async move {
            let (on_old, on_new) = tokio::task::spawn_blocking(move || (enriched_state(&old), enriched_state(&new))).await.unwrap();
            let together: BTreeMap<_, _> = on_old.iter().chain(on_new.iter()).map(|(k, v)| (k.clone(), *v)).collect();
            want.iter().all(|(k, v)| together.get(k) == Some(v)).then_some((on_old, on_new))
        }
    })
    .await;
    let misplaced: Vec<_> = on_old.keys().filter(|k| owner(k) != "old").chain(on_new.keys().filter(|k| owner(k) != "new")).collect();
    assert!(misplaced.is_empty(), "keys enriched by a pipeline that does not own them: {misplaced:?}");
    let new_share = keys.iter().filter(|k| owner(k) == "new").count() as f64 / keys.len() as f64;
    assert!(!on_old.is_empty() && !on_new.is_empty(), "both pipelines own keys ({:.0}% new)", new_share * 100.0);
    let skipped = |m: &Metrics| counter(m, "slate_enricher_rollout_skipped_total");
    assert!(skipped(&old_metrics) > 0.0 && skipped(&new_metrics) > 0.0, "each skipped the other's events");
    println!(
        "{} keys: {} enriched by old, {} by new ({:.0}% of keys, slice 30%); skipped {} / {} events",
        keys.len(),
        on_old.len(),
        on_new.len(),
        new_share * 100.0,
        skipped(&old_metrics),
        skipped(&new_metrics)
    );
    old_enricher.shutdown().await;
    new_enricher.shutdown().await;
    studio.shutdown().await;
    registry.stop().await;
}
