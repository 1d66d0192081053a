//! Percentage rollout by key (`enricher.rollout`).
//!
//! 1. Two enricher pipelines, "old" and "new", each its own consumer group, read the same change
//!    topics under a studio load; "new" owns 30% of the keys by hash. Each writes its own output
//!    topics here, so ownership can be read back: every key's records are on exactly its owner's
//!    topics, each pipeline skipped the other's events, and together they hold every changed key
//!    at the source's current version.
//! 2. The live move: both write the live topics, read by the SQL and search sinks, while "new"
//!    goes 0 → 1 → 50 → 100% and back to 0 under load, by restarts in the documented order, with
//!    the shadow validator running against a reference pipeline that enriches every key.

mod common;
mod enricher_support;

use common::*;
use enricher_support::*;
use slate::config::{Config, RolloutConfig, SecretUrl};
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

fn table(name: &str, new_bp: u32) -> RolloutConfig {
    RolloutConfig {
        salt: "move".into(),
        pipeline: name.into(),
        slices: BTreeMap::from([("old".into(), [0, 10_000 - new_bp]), ("new".into(), [10_000 - new_bp, 10_000])]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moving_the_rollout_under_load_skips_no_key() {
    with_pg_database("rollout_move", |db| async move { live_move(db).await }).await;
}

async fn live_move(db: String) {
    let registry = TestRegistry::start().await;
    let mut live = pipeline_config(
        &registry.url,
        &[
            ov("studio.load.mutations_per_sec", 80),
            ov("studio.load.max_mutations", 2400),
            ov("studio.num_productions", 10),
            ov("studio.snapshot_on_start", true),
        ],
    );
    let studio_metrics = Metrics::new();
    let mut studio = slate::studio::server::start(&live, studio_metrics.clone()).await.unwrap();
    use_studio(&mut live, &studio);
    sinks_behind_enricher(&mut live);
    live.sinks.sql.database_url = SecretUrl::new(&db);
    live.sinks.search.url = env("TEST_ES_URL");
    live.sinks.search.index_prefix = format!("{}-", unique("move"));
    // The reference: the old version alone on every key, as a shadow.
    let mut reference = live.clone();
    reference.enricher.group_id = unique("reference");
    reference.enricher.output_topic_prefix = format!("{}.", unique("reference"));
    let mut validator = live.clone();
    validator.shadow.shadow_prefix = reference.enricher.output_topic_prefix.clone();
    validator.shadow.grace = Duration::from_secs(10);
    validator.shadow.interval = Duration::from_millis(500);
    let pipeline_cfg = |name: &str, new_bp: u32| {
        let mut cfg = live.clone();
        cfg.enricher.group_id = format!("{}-{name}", live.enricher.group_id);
        cfg.enricher.rollout = Some(table(name, new_bp));
        cfg
    };

    let reference_enricher = slate::enrich::start(&reference, Metrics::new()).await.unwrap();
    let (v_metrics, cancel) = (Metrics::new(), tokio_util::sync::CancellationToken::new());
    let v_task = {
        let (v, m, c) = (validator.clone(), v_metrics.clone(), cancel.clone());
        tokio::spawn(async move { slate::shadow::role::run(&v, m, c).await })
    };
    let catalogue = live.entities().clone();
    let sinks: Vec<std::sync::Arc<dyn slate::sink::Sink>> = vec![
        std::sync::Arc::new(slate::sink::sql::SqlSink::connect(&live.sinks.sql, &catalogue).await.unwrap()),
        std::sync::Arc::new(slate::sink::search::SearchSink::connect(&live.sinks.search, &catalogue).await.unwrap()),
    ];
    let mut running_sinks = Vec::new();
    for s in sinks {
        running_sinks.push(slate::sink::runner::start(&live, s, Metrics::new()).await.unwrap());
    }
    let mut pipes = BTreeMap::new();
    for name in ["old", "new"] {
        pipes.insert(name, slate::enrich::start(&pipeline_cfg(name, 0), Metrics::new()).await.unwrap());
    }
    let mut at = 0;
    for target in [100, 5_000, 10_000, 0] {
        // Pacing only: the load runs on between the moves.
        tokio::time::sleep(Duration::from_secs(3)).await;
        // The pipeline that gains keys restarts first; the one that loses them only once it has
        // committed past where the gaining one restarted from, so no event is skipped by both.
        let (gainer, loser) = if target > at { ("new", "old") } else { ("old", "new") };
        pipes.remove(gainer).unwrap().shutdown().await;
        pipes.insert(gainer, slate::enrich::start(&pipeline_cfg(gainer, target), Metrics::new()).await.unwrap());
        handover(&live, &pipeline_cfg(loser, target).enricher.group_id, &pipeline_cfg(gainer, target).enricher.group_id).await;
        pipes.remove(loser).unwrap().shutdown().await;
        pipes.insert(loser, slate::enrich::start(&pipeline_cfg(loser, target), Metrics::new()).await.unwrap());
        println!("rollout moved {at} -> {target} basis points to `new`");
        at = target;
    }
    let report = tokio::time::timeout(Duration::from_secs(90), studio.load_finished()).await.expect("load finishes");
    assert_eq!(report.failures, 0);

    // No key skipped: the live topics end at the source's version for every changed key, and
    // both sinks hold the source's current state (verify: no drift).
    let keys = changed_keys(&live, &studio_metrics).await;
    wait_converged(&live, &studio.studio, &keys, Duration::from_secs(120)).await;
    until_clean(&live, &[], Duration::from_secs(120)).await;
    // The validator, running through every move, ends with every key equal to the reference.
    let n = keys.len() as f64;
    let (ratio, equal) = until("the validator reports the rollout equal to the reference", Duration::from_secs(90), || {
        let text = v_metrics.encode();
        async move {
            let value = |line: &str| text.lines().find(|l| l.starts_with(line)).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
            let ratio = value("slate_shadow_match_ratio{source=\"topics\"}")?;
            let equal = value("slate_shadow_keys{source=\"topics\",state=\"equal\"}")?;
            let others: f64 = ["different", "pending", "missing_live", "missing_shadow", "stale_live", "stale_shadow"]
                .iter()
                .filter_map(|s| value(&format!("slate_shadow_keys{{source=\"topics\",state=\"{s}\"}}")))
                .sum();
            (ratio == 1.0 && others == 0.0 && equal >= n).then_some((ratio, equal))
        }
    })
    .await;
    println!(
        "{} changed keys converged in the topics, SQL and search; validator: {equal} keys equal, match ratio {ratio} after {} comparisons",
        keys.len(),
        counter(&v_metrics, "slate_shadow_compares_total")
    );
    cancel.cancel();
    v_task.await.unwrap().unwrap();
    for s in running_sinks {
        s.shutdown().await.unwrap();
    }
    for (_, p) in pipes {
        p.shutdown().await;
    }
    reference_enricher.shutdown().await;
    studio.shutdown().await;
    registry.stop().await;
}

/// `slate group show --wait --past`: the losing pipeline's group commits past the gaining one's.
async fn handover(cfg: &Config, loser_group: &str, gainer_group: &str) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_slate"));
    cmd.env("SLATE_KAFKA__BOOTSTRAP_SERVERS", &cfg.kafka.bootstrap_servers)
        .env("SLATE_ENRICHER__GROUP_ID", loser_group)
        .env("SLATE_ENRICHER__INPUT_TOPIC_PREFIX", &cfg.enricher.input_topic_prefix)
        .args(["--log", "warn", "group", "show", "--role", "enricher", "--wait", "--past", gainer_group, "--timeout", "90s"])
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output()).await.expect("group show finishes").expect("group show runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{loser_group} did not commit past {gainer_group}: {text}");
    assert!(text.contains(&format!("behind group {gainer_group}")), "{text}");
}
