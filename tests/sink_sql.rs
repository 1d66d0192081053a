//! The SQL sink against real PostgreSQL (`TEST_DATABASE_URL`, one fresh database per test) and,
//! end to end, the real broker: version guards, tombstones, rejected records, the analyst views,
//! an unreachable database and an outage, a crashed sink and a full replay.

mod common;
mod enricher_support;
mod sink_support;

use common::*;
use enricher_support::*;
use serde_json::json;
use sink_support::*;
use slate::config::{SecretUrl, SqlSinkConfig};
use slate::event::EntityName;
use slate::metrics::Metrics;
use slate::sink::sql::SqlSink;
use slate::sink::{Sink, SinkError, SinkRecord, WriteOutcome};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn sql_config(url: &str, refresh: Duration) -> SqlSinkConfig {
    SqlSinkConfig {
        database_url: SecretUrl::new(url),
        max_connections: 4,
        refresh_interval: refresh,
        migrations: Some("migrations/sql".into()),
        refresh_views: vec!["budget_vs_actuals".into()],
    }
}

async fn write(sink: &SqlSink, batch: &[SinkRecord]) -> WriteOutcome {
    sink.write(batch).await.expect("write succeeds")
}

fn outcome(applied: usize, stale: usize) -> WriteOutcome {
    WriteOutcome { applied, stale, ..WriteOutcome::default() }
}

/// (version, deleted, amount) of a payment row.
async fn payment_row(pool: &PgPool, id: &str) -> (i64, bool, Option<i64>) {
    let row =
        sqlx::query("SELECT version, deleted, amount FROM payment WHERE id = $1").bind(id).fetch_one(pool).await.expect("payment row");
    (row.get("version"), row.get("deleted"), row.get("amount"))
}

#[tokio::test(flavor = "multi_thread")]
async fn version_guard_rejects_stale_duplicate_and_post_delete_writes() {
    with_pg_database("slate_sql", |url| async move {
        let sink = SqlSink::connect(&sql_config(&url, Duration::ZERO), &slate::catalogue::Catalogue::built_in()).await.expect("connect");
        SqlSink::migrate(sink.pool(), &analyst_views()).await.expect("migrations are applied once, a second run is a no-op");
        let pool = sink.pool().clone();
        let p = |v, amount| payment("pay-1", v, "prod-1", amount, "PENDING", "USD");

        assert_eq!(write(&sink, &[p(3, 300)]).await, outcome(1, 0));
        assert_eq!(write(&sink, &[p(2, 200)]).await, outcome(0, 1), "older version is stale");
        assert_eq!(payment_row(&pool, "pay-1").await, (3, false, Some(300)));
        assert_eq!(write(&sink, &[p(3, 999)]).await, outcome(0, 1), "same version again is a duplicate");
        assert_eq!(payment_row(&pool, "pay-1").await, (3, false, Some(300)));

        assert_eq!(write(&sink, &[tombstone(slate::studio::kind::PAYMENT, "pay-1", Some(4))]).await, outcome(1, 0));
        assert_eq!(payment_row(&pool, "pay-1").await, (4, true, None), "versioned tombstone row");
        assert_eq!(write(&sink, &[p(3, 300)]).await, outcome(0, 1), "update older than the delete");
        assert_eq!(payment_row(&pool, "pay-1").await, (4, true, None));
        assert_eq!(write(&sink, &[p(5, 500)]).await, outcome(1, 0), "re-created with a newer version");
        assert_eq!(payment_row(&pool, "pay-1").await, (5, false, Some(500)));

        // In one batch only the newest version per id is written; the rest count as stale.
        assert_eq!(write(&sink, &[p(7, 700), p(6, 600), p(8, 800), p(8, 800)]).await, outcome(1, 3));
        assert_eq!(payment_row(&pool, "pay-1").await, (8, false, Some(800)));

        // Without a version (the source never had the id): a live row is marked deleted at its
        // version; an unknown id gets a tombstone at version 0 that any real version replaces.
        let unknown = || tombstone(slate::studio::kind::PAYMENT, "pay-2", None);
        assert_eq!(write(&sink, &[tombstone(slate::studio::kind::PAYMENT, "pay-1", None), unknown()]).await, outcome(2, 0));
        assert_eq!(payment_row(&pool, "pay-1").await, (8, true, None));
        assert_eq!(payment_row(&pool, "pay-2").await, (0, true, None));
        assert_eq!(write(&sink, &[p(8, 800), unknown()]).await, outcome(0, 2));
        assert_eq!(write(&sink, &[payment("pay-2", 1, "prod-1", 10, "PAID", "USD")]).await, outcome(1, 0));
        assert_eq!(payment_row(&pool, "pay-2").await, (1, false, Some(10)));

        // Child rows follow their parent: replaced by a newer version, kept on a stale one,
        // removed by a tombstone.
        let lines = |pool: PgPool| async move {
            let rows = sqlx::query("SELECT category, amount FROM budget_line WHERE budget_id = 'bud-1' ORDER BY ordinal")
                .fetch_all(&pool)
                .await
                .unwrap();
            rows.iter().map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1))).collect::<Vec<_>>()
        };
        write(&sink, &[budget("bud-1", 2, "prod-1", &[("POST", 5), ("MARKETING", 7)])]).await;
        assert_eq!(write(&sink, &[budget("bud-1", 1, "prod-1", &[("POST", 1)])]).await, outcome(0, 1));
        assert_eq!(lines(pool.clone()).await, vec![("POST".to_string(), 5), ("MARKETING".to_string(), 7)]);
        write(&sink, &[budget("bud-1", 3, "prod-1", &[("ABOVE_THE_LINE", 9)])]).await;
        assert_eq!(lines(pool.clone()).await, vec![("ABOVE_THE_LINE".to_string(), 9)]);
        write(&sink, &[tombstone(slate::studio::kind::BUDGET, "bud-1", Some(4))]).await;
        assert!(lines(pool.clone()).await.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_records_are_rejected_without_failing_the_batch() {
    with_pg_database("slate_sql", |url| async move {
        let sink = SqlSink::connect(&sql_config(&url, Duration::ZERO), &slate::catalogue::Catalogue::built_in()).await.expect("connect");
        let mut bad_date = payment("pay-2", 1, "prod-1", 10, "PAID", "USD");
        bad_date.value.as_mut().unwrap()["due_date"] = json!("2027-02-30");
        let mut bad_amount = payment("pay-3", 1, "prod-1", 10, "PAID", "USD");
        bad_amount.value.as_mut().unwrap()["amount"] = json!("ten dollars");
        let mut nul = production("prod-2", 1, "USD");
        nul.value.as_mut().unwrap()["title"] = json!("bad\u{0}title");
        let batch = [
            payment("pay-1", 1, "prod-1", 10, "PAID", "USD"),
            bad_date,
            bad_amount,
            production("prod-1", 1, "USD"),
            nul,
            tombstone(slate::studio::kind::TALENT, "", Some(1)),
        ];
        let o = write(&sink, &batch).await;
        assert_eq!((o.applied, o.stale), (2, 0));
        let rejected: Vec<usize> = o.rejected.iter().map(|(i, _)| *i).collect();
        assert_eq!(rejected, vec![1, 2, 4, 5], "{:?}", o.rejected);
        assert!(o.rejected[0].1.contains("due_date"), "{:?}", o.rejected[0]);
        assert!(o.rejected[1].1.contains("amount"), "{:?}", o.rejected[1]);
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM payment UNION ALL SELECT id FROM production ORDER BY 1")
            .fetch_all(sink.pool())
            .await
            .unwrap();
        assert_eq!(ids, vec!["pay-1", "prod-1"]);

        // A value only PostgreSQL refuses (here a constraint an operator added): the batch is
        // rewritten record by record and only that record is rejected.
        sqlx::query("ALTER TABLE payment ADD CONSTRAINT non_negative CHECK (amount >= 0)").execute(sink.pool()).await.unwrap();
        let o = write(&sink, &[payment("pay-4", 1, "prod-1", -5, "PAID", "USD"), payment("pay-5", 1, "prod-1", 5, "PAID", "USD")]).await;
        assert_eq!((o.applied, o.stale, o.rejected.len()), (1, 0, 1), "{o:?}");
        assert!(o.rejected[0].0 == 0 && o.rejected[0].1.contains("non_negative"), "{:?}", o.rejected);
        assert_eq!(payment_row(sink.pool(), "pay-5").await, (1, false, Some(5)));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn views_answer_budget_vs_actuals_cash_flow_and_over_budget() {
    with_pg_database("slate_sql", |url| async move {
        // A short refresh interval: the background refresher must make the data visible.
        let sink = SqlSink::connect(&sql_config(&url, Duration::from_millis(200)), &slate::catalogue::Catalogue::built_in()).await.expect("connect");
        let pool = sink.pool().clone();
        let batch = vec![
            production("prod-1", 1, "USD"),
            budget("bud-1", 1, "prod-1", &[("ABOVE_THE_LINE", 600_000), ("POST", 400_000)]),
            cash_flow("cf-1", 1, "prod-1", &[("2027-01", 400_000), ("2027-02", 500_000), ("2027-03", 300_000)]),
            payment("pay-1", 1, "prod-1", 300_000, "PAID", "USD"),
            payment("pay-2", 1, "prod-1", 250_000, "PENDING", "USD"),
            payment("pay-3", 1, "prod-1", 999, "VOID", "USD"),
            payment("pay-4", 1, "prod-1", 100_000, "PAID", "USD"),
            tombstone(slate::studio::kind::PAYMENT, "pay-4", Some(2)),
            payment("pay-5", 1, "prod-1", 50_000, "PAID", "EUR"),
            production("prod-2", 1, "USD"),
            budget("bud-2", 1, "prod-2", &[("PRODUCTION", 500_000)]),
            cash_flow("cf-2", 1, "prod-2", &[("2027-05", 450_000)]),
            payment("pay-6", 1, "prod-2", 400_000, "PAID", "USD"),
            payment("pay-7", 1, "prod-2", 200_000, "PENDING", "USD"),
            production("prod-3", 1, "USD"),
            budget("bud-3", 1, "prod-3", &[("POST", 1_000)]),
            cash_flow("cf-3", 1, "prod-3", &[("2027-01", 900)]),
            production("prod-4", 1, "USD"),
            budget("bud-4", 1, "prod-4", &[("POST", 10)]),
            tombstone(slate::studio::kind::PRODUCTION, "prod-4", Some(2)),
        ];
        let o = write(&sink, &batch).await;
        assert_eq!((o.applied, o.stale, o.rejected.len()), (18, 2, 0), "two rows superseded in the batch");

        // (production, budget, paid, pending, projected, remaining), computed by hand.
        let want = vec![
            ("prod-1".to_string(), 1_000_000, 300_000, 250_000, 1_200_000, 450_000),
            ("prod-2".to_string(), 500_000, 400_000, 200_000, 450_000, -100_000),
            ("prod-3".to_string(), 1_000, 0, 0, 900, 1_000),
        ];
        let read = |pool: PgPool| async move {
            sqlx::query("SELECT production_id, budget, paid, pending, projected, remaining FROM budget_vs_actuals ORDER BY 1")
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1), r.get::<i64, _>(2), r.get::<i64, _>(3), r.get::<i64, _>(4), r.get::<i64, _>(5)))
                .collect::<Vec<_>>()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while read(pool.clone()).await != want {
            assert!(Instant::now() < deadline, "budget_vs_actuals not refreshed in time: {:?}", read(pool.clone()).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let over: Vec<(String, i64, i64)> =
            sqlx::query("SELECT production_id, committed_over_budget, projected_over_budget FROM over_budget_productions ORDER BY 1")
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
        assert_eq!(over, vec![("prod-1".to_string(), -450_000, 200_000), ("prod-2".to_string(), 100_000, -50_000)]);

        let months = |pool: PgPool| async move {
            sqlx::query("SELECT to_char(month, 'YYYY-MM-DD'), amount, cumulative FROM cash_flow_by_month WHERE production_id = 'prod-1' ORDER BY month")
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1), r.get::<i64, _>(2)))
                .collect::<Vec<_>>()
        };
        let m = |s: &str, a, c| (s.to_string(), a, c);
        assert_eq!(
            months(pool.clone()).await,
            vec![m("2027-01-01", 400_000, 400_000), m("2027-02-01", 500_000, 900_000), m("2027-03-01", 300_000, 1_200_000)]
        );
        // The demo story: a later launch moves the projection; the plain view follows at once.
        write(&sink, &[cash_flow("cf-1", 2, "prod-1", &[("2027-02", 300_000), ("2027-04", 600_000)])]).await;
        assert_eq!(months(pool.clone()).await, vec![m("2027-02-01", 300_000, 300_000), m("2027-04-01", 600_000, 900_000)]);
        sink.refresh_views().await.expect("manual refresh");
        assert_eq!(read(pool.clone()).await[0].4, 900_000);
        let over: i64 = sqlx::query_scalar("SELECT count(*) FROM over_budget_productions WHERE production_id = 'prod-1'")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(over, 0, "prod-1 is back within budget");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_database_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(&format!("postgres://postgres@127.0.0.1:{port}/none"))
        .expect("lazy pool");
    let sink = SqlSink::from_pool(pool);
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(20), sink.write(&[production("prod-1", 1, "USD")])).await.expect("bounded");
    assert!(matches!(result, Err(SinkError::Unavailable(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let connect = SqlSink::connect(
        &sql_config(&format!("postgres://postgres@127.0.0.1:{port}/none"), Duration::ZERO),
        &slate::catalogue::Catalogue::built_in(),
    )
    .await;
    assert!(matches!(connect, Err(SinkError::Unavailable(_))), "connect: {:?}", connect.err());
}

/// A TCP proxy to PostgreSQL that can be taken down: down, it cuts open connections and drops
/// new ones at once, as a database restart or a network partition would.
struct FlakyProxy {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FlakyProxy {
    async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (up2, conns2) = (up.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue;
                }
                let target = target.clone();
                conns2.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Self { addr, up, conns, accept }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            self.conns.lock().unwrap().drain(..).for_each(|c| c.abort());
        }
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.set_up(false);
        self.accept.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn database_outage_is_unavailable_then_the_same_batch_succeeds() {
    with_pg_database("slate_sql", |url| async move {
        let direct = reqwest::Url::parse(&url).unwrap();
        let proxy = FlakyProxy::start(format!("{}:{}", direct.host_str().unwrap(), direct.port().unwrap_or(5432))).await;
        let mut proxied = direct.clone();
        proxied.set_host(Some("127.0.0.1")).unwrap();
        proxied.set_port(Some(proxy.addr.port())).unwrap();
        let pool = PgPoolOptions::new().max_connections(2).acquire_timeout(Duration::from_secs(2)).connect(proxied.as_str()).await.unwrap();
        SqlSink::migrate(&pool, &analyst_views()).await.expect("migrations");
        let sink = SqlSink::from_pool(pool.clone());
        assert_eq!(write(&sink, &[payment("pay-1", 1, "prod-1", 10, "PENDING", "USD")]).await, outcome(1, 0));

        proxy.set_up(false);
        let batch = [payment("pay-1", 2, "prod-1", 20, "PAID", "USD"), payment("pay-2", 1, "prod-1", 30, "PAID", "USD")];
        let down = tokio::time::timeout(Duration::from_secs(20), sink.write(&batch)).await.expect("bounded");
        assert!(matches!(down, Err(SinkError::Unavailable(_))), "{down:?}");

        proxy.set_up(true);
        assert_eq!(write(&sink, &batch).await, outcome(2, 0), "the retried batch applies in full");
        assert_eq!(payment_row(&pool, "pay-1").await, (2, false, Some(20)));
        assert_eq!(payment_row(&pool, "pay-2").await, (1, false, Some(30)));
        pool.close().await;
    })
    .await;
}

/// (version, deleted) of every row of every entity table.
async fn sql_state(pool: &PgPool) -> BTreeMap<(EntityName, String), (i64, bool)> {
    let mut out = BTreeMap::new();
    for kind in slate::studio::kind::ALL {
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT id, version, deleted FROM {}", kind.as_str()))).fetch_all(pool).await.unwrap();
        for r in rows {
            out.insert((kind, r.get::<String, _>(0)), (r.get::<i64, _>(1), r.get::<bool, _>(2)));
        }
    }
    out
}

/// What the tables must hold for `keys`: the studio's current version, or its tombstone.
fn wanted(
    studio: &slate::studio::Studio,
    keys: &std::collections::BTreeSet<(EntityName, String)>,
) -> BTreeMap<(EntityName, String), (i64, bool)> {
    keys.iter()
        .map(|(kind, id)| {
            let read = studio.store.batch_get(*kind, std::slice::from_ref(id));
            let state = match (read.found.first(), read.deleted.first()) {
                (Some((_, v, _)), _) => (*v, false),
                (None, Some((_, v))) => (*v, true),
                (None, None) => (0, true),
            };
            ((*kind, id.clone()), state)
        })
        .collect()
}

async fn wait_sql_converged(pool: &PgPool, want: &BTreeMap<(EntityName, String), (i64, bool)>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = sql_state(pool).await;
        if &got == want {
            return;
        }
        if Instant::now() > deadline {
            let diff: Vec<_> = want.iter().filter(|(k, v)| got.get(*k) != Some(*v)).map(|(k, v)| (k, v, got.get(k))).take(5).collect();
            let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).take(5).collect();
            panic!("sql not converged within {within:?}: sample (key, want, got) {diff:?}; unexpected rows {extra:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn end_to_end_converges_after_a_crash_and_a_replay_changes_nothing() {
    with_pg_database("slate_sql", |url| async move {
        let registry = TestRegistry::start().await;
        let mut cfg = pipeline_config(
            &registry.url,
            &[
                ov("studio.load.mutations_per_sec", 150),
                ov("studio.load.max_mutations", 900),
                ov("studio.load.key_skew", "\"zipf:1.1\""),
                ov("studio.num_productions", 12),
            ],
        );
        cfg.sinks.topic_prefix = cfg.enricher.output_topic_prefix.clone();
        cfg.sinks.group_prefix = format!("{}-", unique("sink"));
        cfg.sinks.dlq_topic = unique("sink-dlq");
        cfg.sinks.batch_max_events = 50;
        cfg.sinks.batch_max_wait = Duration::from_millis(20);
        cfg.sinks.metrics_listen = None;
        cfg.sinks.sql = sql_config(&url, Duration::from_secs(1));
        let studio_metrics = Metrics::new();
        let mut studio = slate::studio::server::start(&cfg, studio_metrics.clone()).await.expect("studio starts");
        use_studio(&mut cfg, &studio);
        let enricher = slate::enrich::start(&cfg, Metrics::new()).await.expect("enricher starts");
        let sink = Arc::new(SqlSink::connect(&cfg.sinks.sql, &slate::catalogue::Catalogue::built_in()).await.expect("sql sink connects"));
        let pool = sink.pool().clone();

        // A sink crashes mid-stream (no commit), a new one in the same group takes over.
        let first_metrics = Metrics::new();
        let first = slate::sink::runner::start(&cfg, sink.clone(), first_metrics.clone()).await.expect("sink starts");
        wait_for("the first sink to write", Duration::from_secs(60), || counter(&first_metrics, "slate_sink_written_total") > 0.0).await;
        first.abort();
        let second_metrics = Metrics::new();
        let second = slate::sink::runner::start(&cfg, sink.clone(), second_metrics.clone()).await.expect("sink restarts");

        let report = tokio::time::timeout(Duration::from_secs(60), studio.load_finished()).await.expect("load finishes");
        assert_eq!(report.failures, 0);
        let keys = changed_keys(&cfg, &studio_metrics).await;
        let want = wanted(&studio.studio, &keys);
        assert!(want.values().any(|(_, deleted)| *deleted), "the load deleted some payments");
        wait_sql_converged(&pool, &want, Duration::from_secs(120)).await;
        assert_eq!(counter(&second_metrics, "slate_sink_rejected_total"), 0.0);
        assert!(counter(&second_metrics, "slate_sink_written_total") > 0.0, "the crash left work for the second sink");
        second.shutdown().await.expect("sink stops cleanly");

        // Replay everything from offset 0 in a new group: nothing changes, everything is stale.
        let num_enriched: usize = tokio::task::spawn_blocking({
            let cfg = cfg.clone();
            move || {
                slate::studio::kind::ALL.iter().map(|k| read_all(&cfg.enricher.output_topic(*k), cfg.enricher.topic_partitions).len()).sum()
            }
        })
        .await
        .unwrap();
        cfg.sinks.group_prefix = format!("{}-", unique("replay"));
        let replay_metrics = Metrics::new();
        let replay = slate::sink::runner::start(&cfg, sink.clone(), replay_metrics.clone()).await.expect("replay starts");
        let seen = |m: &Metrics| counter(m, "slate_sink_written_total") + counter(m, "slate_sink_stale_total");
        wait_for("the replay to read every enriched record", Duration::from_secs(90), || seen(&replay_metrics) >= num_enriched as f64)
            .await;
        assert_eq!(counter(&replay_metrics, "slate_sink_written_total"), 0.0, "a replay applies nothing");
        assert!(counter(&replay_metrics, "slate_sink_stale_total") > 0.0);
        assert_eq!(sql_state(&pool).await, want, "state unchanged by the replay");
        replay.shutdown().await.expect("replay stops cleanly");

        enricher.shutdown().await;
        studio.shutdown().await;
        registry.stop().await;
        drop(sink);
        pool.close().await;
    })
    .await;
}

/// The analyst views the sink applies as the deployment's own migrations.
fn analyst_views() -> Vec<slate::sink::sql::migrations::Migration> {
    slate::sink::sql::migrations::read(Some(std::path::Path::new("migrations/sql"))).expect("the analyst views read")
}
