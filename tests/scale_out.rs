//! Scale-out on Kafka consumer groups, proven with real processes while partitions move.
//!
//! Under a steady studio load over six partitions per topic, three `slate run enricher`
//! processes share one group and two `slate run sink sql` processes share another. The group
//! membership changes step by step: one enricher, then three; one SIGKILLed; one stopped with
//! SIGTERM; one added back (and the same moves for the two SQL sinks). Each step waits until
//! the group has spread every partition over exactly the live members (read from each
//! process's `slate_consumer_assigned_partitions`), then until the load has moved on.
//!
//! At the end:
//! - every changed key's last enriched record is the source's current version, and every SQL
//!   row is too;
//! - every published event uuid reached an enriched topic (a batch in flight on a revoked or
//!   killed owner was redone by the next; dedup never made a new owner skip one);
//! - read in order, **no key's version ever goes back** on an enriched topic, across every
//!   change of owner.

mod chaos_support;
mod common;
mod enricher_support;

use chaos_support::*;
use common::*;
use enricher_support::*;
use slate::metrics::Metrics;
use std::time::Duration;

const PARTITIONS: i32 = 6;
const MUTATIONS_PER_SEC: u64 = 30;
const MAX_MUTATIONS: u64 = 2400;
/// Each topic set has six topics (one per entity) of `PARTITIONS` partitions.
const GROUP_PARTITIONS: i64 = 6 * PARTITIONS as i64;

#[tokio::test(flavor = "multi_thread")]
async fn partitions_move_between_live_instances_without_loss_or_going_back() {
    with_pg_database("slate_scale", scenario).await;
}

async fn scenario(db_url: String) {
    let registry = TestRegistry::start().await;
    let cfg = pipeline_config(
        &registry.url,
        &[
            ov("studio.load.mutations_per_sec", MUTATIONS_PER_SEC),
            ov("studio.load.max_mutations", MAX_MUTATIONS),
            ov("studio.num_productions", 30),
            ov("studio.snapshot_on_start", true),
            ov("studio.topic_partitions", PARTITIONS),
            ov("enricher.topic_partitions", PARTITIONS),
        ],
    );
    let studio_metrics = Metrics::new();
    let mut studio = slate::studio::server::start(&cfg, studio_metrics.clone()).await.unwrap();
    let dir = std::env::temp_dir().join(unique("slate-scale"));
    std::fs::create_dir_all(&dir).unwrap();
    let out_prefix = cfg.enricher.output_topic_prefix.clone();
    let sink_groups = format!("{}-", unique("sink"));
    let graphql = format!("http://{}/graphql", studio.http_addr);
    let sinks = [
        ("SINKS__GROUP_PREFIX", sink_groups.clone()),
        ("SINKS__TOPIC_PREFIX", out_prefix.clone()),
        ("SINKS__DLQ_TOPIC", cfg.enricher.dlq_topic.clone()),
        ("SINKS__SQL__DATABASE_URL", db_url.clone()),
    ];
    let vars = enricher_env(&cfg, &kafka_bootstrap(), &graphql, &sinks);
    let enricher = |name| member(name, &["run", "enricher"], &vars, "SLATE_ENRICHER__METRICS_LISTEN", &dir);
    let sql = |name| member(name, &["run", "sink", "sql"], &vars, "SLATE_SINKS__METRICS_LISTEN", &dir);
    let (mut e1, mut e2, mut e3) = (enricher("enricher-1"), enricher("enricher-2"), enricher("enricher-3"));
    let (mut s1, mut s2) = (sql("sql-1"), sql("sql-2"));
    let (eg, sg) = (cfg.enricher.group_id.clone(), format!("{sink_groups}sql"));
    println!("roles log to {}", dir.display());

    let http = reqwest::Client::new();
    let produced = || counter(&studio_metrics, "slate_produced_total");
    // Between two moves the load goes on for a while, so every move meets batches in flight.
    let load_moves_on = |step: &'static str| {
        let mark = produced();
        until(step, Duration::from_secs(60), move || async move { (produced() >= mark + 90.0).then_some(()) })
    };

    e1.role.start();
    balanced(&http, &eg, GROUP_PARTITIONS, &mut [&mut e1], "one enricher").await;
    s1.role.start();
    balanced(&http, &sg, GROUP_PARTITIONS, &mut [&mut s1], "one sql sink").await;
    load_moves_on("load before scaling out").await;

    e2.role.start();
    e3.role.start();
    s2.role.start();
    balanced(&http, &eg, GROUP_PARTITIONS, &mut [&mut e1, &mut e2, &mut e3], "three enrichers").await;
    balanced(&http, &sg, GROUP_PARTITIONS, &mut [&mut s1, &mut s2], "two sql sinks").await;
    load_moves_on("load on three enrichers").await;
    // The autoscaling signal: under load every member reports its rate and how busy it is.
    for m in [&e1, &e2, &e3] {
        let (rate, busy) = until(&format!("{} reports its load", m.role.name), Duration::from_secs(30), || async {
            let rate = gauge(&http, m.port, "slate_consumer_records_per_second", &eg).await?;
            let busy = gauge(&http, m.port, "slate_consumer_capacity_ratio", &eg).await?;
            (rate > 0.0 && busy > 0.0 && busy <= 1.0).then_some((rate, busy))
        })
        .await;
        println!("{}: {rate:.1} records/s, capacity ratio {busy:.3}", m.role.name);
    }

    e2.role.kill().await;
    s2.role.kill().await;
    balanced(&http, &eg, GROUP_PARTITIONS, &mut [&mut e1, &mut e3], "enricher-2 SIGKILLed").await;
    balanced(&http, &sg, GROUP_PARTITIONS, &mut [&mut s1], "sql-2 SIGKILLed").await;
    load_moves_on("load after the kill").await;

    e3.role.stop().await;
    s2.role.start();
    balanced(&http, &eg, GROUP_PARTITIONS, &mut [&mut e1], "enricher-3 stopped").await;
    balanced(&http, &sg, GROUP_PARTITIONS, &mut [&mut s1, &mut s2], "sql-2 back").await;
    load_moves_on("load on one enricher").await;

    e2.role.start();
    s1.role.stop().await;
    balanced(&http, &eg, GROUP_PARTITIONS, &mut [&mut e1, &mut e2], "enricher-2 back").await;
    balanced(&http, &sg, GROUP_PARTITIONS, &mut [&mut s2], "sql-1 stopped").await;
    let loaded = produced();
    let report = tokio::time::timeout(Duration::from_secs(120), studio.load_finished()).await.expect("load finishes");
    println!("load finished: {report:?}; {loaded} of the messages were published before the last move");

    for m in [&mut e1, &mut e2, &mut s2] {
        if let Some(status) = m.role.exited() {
            panic!("{} exited by itself ({status}):\n{}", m.role.name, m.role.log_tail(40));
        }
    }
    let keys = changed_keys(&cfg, &studio_metrics).await;
    wait_converged(&cfg, &studio.studio, &keys, Duration::from_secs(120)).await;
    let want = studio_state(&studio.studio, &keys);
    let rows = until("every SQL row at the source's version", Duration::from_secs(120), || async {
        let sql = sql_state(&db_url).await;
        let wrong: Vec<String> = want
            .iter()
            .filter_map(|((kind, id), v)| {
                let row = sql.get(kind).and_then(|t| t.get(id));
                let ok = match (v, row) {
                    (Some(v), Some((held, deleted))) => held == v && !deleted,
                    (None, None) | (None, Some((_, true))) => true,
                    _ => false,
                };
                (!ok).then(|| format!("{kind} {id}: source {v:?}, row {row:?}"))
            })
            .collect();
        if wrong.is_empty() { Some(sql.values().map(|t| t.len()).sum::<usize>()) } else { None }
    })
    .await;

    let Audit { events, records, redelivered } = assert_nothing_lost_or_reordered(&cfg, PARTITIONS).await;
    println!(
        "{events} events, {} keys, {records} enriched records read in order, none going back; {rows} SQL rows at the source's version; \
         {redelivered} events delivered more than once (at-least-once across owner changes)",
        keys.len()
    );

    for m in [&mut e1, &mut e2, &mut s2] {
        m.role.stop().await;
    }
    studio.shutdown().await;
    registry.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}
