//! Chaos: the studio publishes under load while the enricher and the sinks run as real processes
//! that are SIGKILLed and restarted at random moments, PostgreSQL and the search target are cut
//! away behind a proxy, the source fails and times out, and poison messages arrive. After a
//! bounded quiet period every sink must equal the source of truth for every id, and every
//! published event uuid must be in the audit trail once per enriched delivery of it.
//!
//! The check reads PostgreSQL, the search index, the topics and the audit Parquet (DuckDB)
//! itself; it does not use `slate verify`. On failure it prints each consumer group's committed
//! offsets against the end of its topics, telling "stuck" (behind) from "lost" (at the end while
//! data is missing), and the tail of each role's log.
//!
//! Knobs: `TEST_CHAOS_REPS` (default 3 repetitions, each with its own seed, topics, database;
//! all run, the test fails at the end naming the failed seeds),
//! `TEST_CHAOS_SEED` (replay a failing seed), `TEST_CHAOS_SLATE_BIN` (run another build's roles).

mod chaos_support;
mod common;
mod enricher_support;

use chaos_support::*;
use common::*;
use enricher_support::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::producer::{FutureProducer, FutureRecord};
use slate::event::EntityName;
use slate::metrics::Metrics;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 3;
const MUTATIONS_PER_SEC: u64 = 60;
const LOAD_SECS: u64 = 30;
const POISON: usize = 40;
const QUIET: Duration = Duration::from_secs(150);

#[tokio::test(flavor = "multi_thread")]
async fn every_sink_converges_after_kills_and_outages() {
    let reps: u64 = std::env::var("TEST_CHAOS_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let seed: u64 = std::env::var("TEST_CHAOS_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    // Every repetition runs even after one fails, so a run tells how often the scenario fails.
    let mut failed = Vec::new();
    for rep in 0..reps {
        let seed = seed.wrapping_add(rep);
        println!("chaos repetition {}/{reps}: TEST_CHAOS_SEED={seed}", rep + 1);
        if tokio::spawn(with_pg_database("slate_chaos", move |db| repetition(seed, db))).await.is_err() {
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "{} of {reps} chaos repetitions failed (seeds {failed:?}; their reports are above)", failed.len());
}

async fn repetition(seed: u64, db_url: String) {
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let registry = TestRegistry::start().await;
    let cfg = pipeline_config(
        &registry.url,
        &[
            ov("studio.load.mutations_per_sec", MUTATIONS_PER_SEC),
            ov("studio.load.max_mutations", MUTATIONS_PER_SEC * LOAD_SECS),
            ov("studio.num_productions", 30),
            ov("studio.snapshot_on_start", true),
            ov("studio.topic_partitions", PARTITIONS),
            ov("enricher.topic_partitions", PARTITIONS),
        ],
    );
    let mut studio = slate::studio::server::start(&cfg, Metrics::new()).await.unwrap();
    let dir = std::env::temp_dir().join(unique("slate-chaos"));
    std::fs::create_dir_all(&dir).unwrap();
    let audit_dir = dir.join("audit");
    let es_url = env("TEST_ES_URL");
    let pg = reqwest::Url::parse(&db_url).unwrap();
    let pg_proxy = Proxy::start(format!("{}:{}", pg.host_str().unwrap(), pg.port().unwrap_or(5432))).await;
    let es = reqwest::Url::parse(&es_url).unwrap();
    let es_proxy = Proxy::start(format!("{}:{}", es.host_str().unwrap(), es.port().unwrap_or(9200))).await;
    let mut proxied_db = pg.clone();
    proxied_db.set_host(Some("127.0.0.1")).unwrap();
    proxied_db.set_port(Some(pg_proxy.addr.port())).unwrap();

    let out_prefix = cfg.enricher.output_topic_prefix.clone();
    let (index_prefix, sink_groups) = (format!("{}-", unique("chaos")), format!("{}-", unique("sink")));
    let vars: Vec<(String, String)> = [
        ("KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap()),
        ("KAFKA__CONSUMER__SESSION_TIMEOUT", "6s".into()),
        ("REGISTRY__URL", registry.url.clone()),
        ("SOURCES__GRAPHQL_ENDPOINT", format!("http://{}/graphql", studio.http_addr)),
        ("SOURCES__TIMEOUT", "2s".into()),
        ("ENRICHER__GROUP_ID", cfg.enricher.group_id.clone()),
        ("ENRICHER__INPUT_TOPIC_PREFIX", cfg.studio.topic_prefix.clone()),
        ("ENRICHER__OUTPUT_TOPIC_PREFIX", out_prefix.clone()),
        ("ENRICHER__RETRY_TOPIC", cfg.enricher.retry_topic.clone()),
        ("ENRICHER__DLQ_TOPIC", cfg.enricher.dlq_topic.clone()),
        ("ENRICHER__TOPIC_PARTITIONS", PARTITIONS.to_string()),
        ("ENRICHER__BATCH_MAX_WAIT", "20ms".into()),
        ("ENRICHER__RETRY_DELAY", "1s".into()),
        ("ENRICHER__RETRY_DELAY_MAX", "8s".into()),
        ("ENRICHER__METRICS_LISTEN", "127.0.0.1:0".into()),
        ("SINKS__GROUP_PREFIX", sink_groups.clone()),
        ("SINKS__TOPIC_PREFIX", out_prefix.clone()),
        ("SINKS__DLQ_TOPIC", cfg.enricher.dlq_topic.clone()),
        ("SINKS__MAX_BACKOFF", "2s".into()),
        ("SINKS__METRICS_LISTEN", "127.0.0.1:0".into()),
        ("SINKS__SQL__DATABASE_URL", proxied_db.to_string()),
        ("SINKS__SQL__REFRESH_INTERVAL", "5s".into()),
        ("SINKS__SEARCH__URL", format!("http://{}", es_proxy.addr)),
        ("SINKS__SEARCH__INDEX_PREFIX", index_prefix.clone()),
        ("SINKS__SEARCH__TIMEOUT", "5s".into()),
        ("SINKS__AUDIT__DIR", audit_dir.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("SLATE_{k}"), v))
    .collect();
    // Two enrichers and two SQL sinks share their groups (scale-out), so a kill also moves
    // partitions between live instances, not only from a dead one to its replacement.
    let mut roles = [
        Role::new("enricher-1", &["run", "enricher"], vars.clone(), &dir),
        Role::new("enricher-2", &["run", "enricher"], vars.clone(), &dir),
        Role::new("sql-1", &["run", "sink", "sql"], vars.clone(), &dir),
        Role::new("sql-2", &["run", "sink", "sql"], vars.clone(), &dir),
        Role::new("search", &["run", "sink", "search"], vars.clone(), &dir),
        Role::new("audit", &["run", "sink", "audit"], vars.clone(), &dir),
    ];
    roles.iter_mut().for_each(Role::start);

    // Outages at random moments of the load, each bounded in time.
    let faults_url = format!("http://{}/admin/faults", studio.http_addr);
    let at = |rng: &mut StdRng| Duration::from_millis(rng.random_range(3_000..LOAD_SECS * 700));
    let (faults_at, pg_at, es_at) = (at(&mut rng), at(&mut rng), at(&mut rng));
    let outages = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let put = |body: serde_json::Value| http.put(&faults_url).json(&body).send();
        let faults = async {
            tokio::time::sleep(faults_at).await;
            put(serde_json::json!({"error_rate": 0.3, "timeout_rate": 0.1, "timeout_delay": "3s"})).await.unwrap();
            tokio::time::sleep(Duration::from_secs(8)).await;
            put(serde_json::json!({})).await.unwrap();
        };
        let pg_cut = async {
            tokio::time::sleep(pg_at).await;
            pg_proxy.set_cut(true);
            tokio::time::sleep(Duration::from_secs(15)).await;
            pg_proxy.set_cut(false);
        };
        let es_cut = async {
            tokio::time::sleep(es_at).await;
            es_proxy.set_cut(true);
            tokio::time::sleep(Duration::from_secs(10)).await;
            es_proxy.set_cut(false);
        };
        tokio::join!(faults, pg_cut, es_cut);
        (pg_proxy, es_proxy)
    });

    // SIGKILLs at random 2–5 s intervals, each role restarted 1–2 s later; poison on the way.
    println!("roles log to {}", dir.display());
    let load_end = Instant::now() + Duration::from_secs(LOAD_SECS);
    let mut kills: BTreeMap<&str, u32> = BTreeMap::new();
    let mut poisoned = false;
    while Instant::now() < load_end {
        tokio::time::sleep(Duration::from_millis(rng.random_range(2_000..5_000))).await;
        let victim = [0, 0, 1, 1, 2, 2, 3, 3, 4, 5][rng.random_range(0..10)];
        roles[victim].kill().await;
        *kills.entry(roles[victim].name).or_default() += 1;
        if !poisoned {
            publish_poison(&cfg.studio.topic_prefix).await;
            poisoned = true;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(1_000..2_000))).await;
        roles[victim].start();
    }
    if !poisoned {
        publish_poison(&cfg.studio.topic_prefix).await;
    }
    let report = tokio::time::timeout(Duration::from_secs(60), studio.load_finished()).await.expect("load finishes");
    let (pg_proxy, es_proxy) = outages.await.unwrap();
    println!(
        "load done after {:?}: {report:?}; kills {kills:?}; faults at {faults_at:?}, PostgreSQL cut at {pg_at:?}, search cut at {es_at:?}",
        started.elapsed()
    );

    let quiet_from = Instant::now();
    let outcome = loop {
        for r in roles.iter_mut() {
            if let Some(status) = r.exited() {
                panic!("{} exited by itself ({status}):\n{}", r.name, r.log_tail(40));
            }
        }
        let problems = check(&cfg, &studio.studio, &db_url, &es_url, &index_prefix, &audit_dir).await;
        if problems.is_empty() {
            break Ok(quiet_from.elapsed());
        }
        if quiet_from.elapsed() > QUIET {
            break Err(problems);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    if let Err(problems) = outcome {
        let topics = |suffix: &str, prefix: &str| -> Vec<String> {
            slate::studio::kind::ALL.iter().map(|k| format!("{prefix}{}.{suffix}", k.as_str())).collect()
        };
        let mut diag = String::new();
        for (group, topics) in [
            (cfg.enricher.group_id.clone(), topics("changes", &cfg.studio.topic_prefix)),
            (format!("{sink_groups}sql"), topics("enriched", &out_prefix)),
            (format!("{sink_groups}search"), topics("enriched", &out_prefix)),
            (format!("{sink_groups}audit"), topics("enriched", &out_prefix)),
        ] {
            let name = group.clone();
            let progress = tokio::task::spawn_blocking(move || group_progress(&group, &topics, PARTITIONS)).await.unwrap();
            let behind: Vec<String> =
                progress.iter().filter(|(_, _, c, e)| c < e).map(|(t, p, c, e)| format!("{t}[{p}] {c}/{e}")).collect();
            diag += &format!("\n  {name}: ");
            diag += &if behind.is_empty() {
                "committed to the end of every partition: anything this group's sink lacks was LOST".to_string()
            } else {
                format!("behind (STUCK), committed/end: {}", behind.join(", "))
            };
        }
        let logs: String = roles.iter().map(|r| format!("\n--- {} (started {}×):\n{}", r.name, r.starts, r.log_tail(15))).collect();
        panic!("TEST_CHAOS_SEED={seed}: not converged {QUIET:?} after the load:\n  {}\ngroups:{diag}\nlogs:{logs}", problems.join("\n  "));
    }
    println!("converged {:?} after the load (TEST_CHAOS_SEED={seed})", outcome.unwrap());
    for r in roles.iter_mut() {
        r.stop().await;
    }
    drop((pg_proxy, es_proxy));
    studio.shutdown().await;
    registry.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}

async fn publish_poison(prefix: &str) {
    let producer: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", kafka_bootstrap()).create().expect("poison producer");
    for i in 0..POISON {
        let topic = slate::studio::kind::ALL[i % slate::studio::kind::ALL.len()].changes_topic(prefix);
        let payload = match i % 4 {
            0 => "not json".to_string(),
            1 => r#"{"uuid":"not-a-uuid","type":"UPDATE"}"#.to_string(),
            2 => format!(r#"{{"uuid":"{}","type":"EXPLODE","ts":1,"entity":"payment","id":"x"}}"#, uuid::Uuid::new_v4()),
            _ => "\u{0}\u{1}\u{2}".repeat(i),
        };
        let key = format!("poison-{i}");
        let record = FutureRecord::to(&topic).key(&key).payload(&payload).partition((i as i32) % PARTITIONS);
        producer.send(record, Duration::from_secs(10)).await.expect("poison published");
    }
}

/// What differs from the source of truth, one line per kind of problem with samples.
async fn check(
    cfg: &slate::config::Config,
    studio: &slate::studio::Studio,
    db_url: &str,
    es_url: &str,
    index_prefix: &str,
    audit_dir: &std::path::Path,
) -> Vec<String> {
    let (prefix, out) = (cfg.studio.topic_prefix.clone(), cfg.enricher.output_topic_prefix.clone());
    let (events, poison) = tokio::task::spawn_blocking(move || published(&prefix, PARTITIONS)).await.unwrap();
    let delivered = tokio::task::spawn_blocking(move || deliveries(&out, PARTITIONS)).await.unwrap();
    let (sql, search, audit) = (sql_state(db_url).await, search_state(es_url, index_prefix).await, audit_rows(audit_dir).await);
    let mut problems: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut note = |what: String, sample: String| problems.entry(what).or_default().push(sample);
    if poison != POISON {
        note(format!("{poison} undecodable messages on the change topics, expected {POISON}"), String::new());
    }
    let mut ids: BTreeMap<EntityName, HashSet<String>> = BTreeMap::new();
    for e in &events {
        ids.entry(e.entity).or_default().insert(e.id.clone());
    }
    for (kind, ids) in &ids {
        let ids: Vec<String> = ids.iter().cloned().collect();
        let read = studio.store.batch_get(*kind, &ids);
        let live: HashMap<&str, i64> = read.found.iter().map(|(id, v, _)| (id.as_str(), *v)).collect();
        for id in &ids {
            let (rows, docs) = (&sql[kind], &search[kind]);
            match (live.get(id.as_str()), rows.get(id)) {
                (Some(_), None) => note(format!("sql {kind} missing"), id.clone()),
                (Some(v), Some((held, deleted))) if held != v || *deleted => {
                    note(format!("sql {kind} stale"), format!("{id} v{held}≠v{v}"))
                }
                (None, Some((_, false))) => note(format!("sql {kind} extra (deleted at source)"), id.clone()),
                _ => {}
            }
            match (live.get(id.as_str()), docs.get(id)) {
                (Some(_), None) => note(format!("search {kind} missing"), id.clone()),
                (Some(v), Some(held)) if held != v => note(format!("search {kind} stale"), format!("{id} v{held}≠v{v}")),
                (None, Some(_)) => note(format!("search {kind} extra (deleted at source)"), id.clone()),
                _ => {}
            }
        }
    }
    let published: HashSet<&str> = events.iter().map(|e| e.uuid.as_str()).collect();
    for e in &events {
        let (d, a) = (delivered.get(&e.uuid).copied().unwrap_or(0), audit.get(&e.uuid).copied().unwrap_or(0));
        if d == 0 {
            note("event uuids never on an enriched topic".into(), format!("{} {} {}", e.entity, e.id, e.uuid));
        } else if a < d {
            note("audit rows missing (fewer rows than deliveries)".into(), format!("{} {}: {a}/{d}", e.id, e.uuid));
        } else if a > d {
            note("audit rows duplicated (more rows than deliveries)".into(), format!("{} {}: {a}/{d}", e.id, e.uuid));
        }
    }
    let strangers = audit.keys().filter(|u| !published.contains(u.as_str())).count();
    if strangers > 0 {
        note(format!("{strangers} audit uuids that were never published"), String::new());
    }
    problems
        .into_iter()
        .map(|(what, samples)| format!("{what}: {} (e.g. {})", samples.len(), samples[..samples.len().min(5)].join(", ")))
        .collect()
}
