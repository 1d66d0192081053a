//! The SQL sink on SQLite (temp-file databases, removed after each test) and, end to end, on the
//! real broker: version guards, tombstones, rejected records, the analyst views, a locked
//! database, backend selection by URL scheme, and convergence to the studio's versions.

mod common;
mod enricher_support;
mod sink_support;

use common::*;
use enricher_support::*;
use serde_json::json;
use sink_support::*;
use slate::config::{Config, SecretUrl, SqlSinkConfig};
use slate::event::EntityName;
use slate::metrics::Metrics;
use slate::sink::sql::{SqliteSink, connect_any};
use slate::sink::{Sink, SinkError, SinkRecord, WriteOutcome};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Connection, Executor, Row, SqliteConnection};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A database file in the temp dir, removed (with its WAL files) when dropped, also on panic.
struct TempDb {
    path: PathBuf,
}

impl TempDb {
    fn new() -> Self {
        Self { path: std::env::temp_dir().join(format!("slate-sqlite-{}.db", uuid::Uuid::new_v4().simple())) }
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

fn sql_config(url: &str) -> SqlSinkConfig {
    SqlSinkConfig {
        database_url: SecretUrl::new(url),
        max_connections: 4,
        refresh_interval: Duration::from_secs(30),
        migrations: Some("migrations/sqlite".into()),
        refresh_views: vec![],
    }
}

async fn write(sink: &dyn Sink, batch: &[SinkRecord]) -> WriteOutcome {
    sink.write(batch).await.expect("write succeeds")
}

fn outcome(applied: usize, stale: usize) -> WriteOutcome {
    WriteOutcome { applied, stale, ..WriteOutcome::default() }
}

/// (version, deleted, amount) of a payment row.
async fn payment_row(pool: &SqlitePool, id: &str) -> (i64, bool, Option<i64>) {
    let row =
        sqlx::query("SELECT version, deleted, amount FROM payment WHERE id = ?1").bind(id).fetch_one(pool).await.expect("payment row");
    (row.get("version"), row.get("deleted"), row.get("amount"))
}

#[tokio::test(flavor = "multi_thread")]
async fn version_guard_rejects_stale_duplicate_and_post_delete_writes() {
    let db = TempDb::new();
    let sink = SqliteSink::connect(&sql_config(&db.url()), &slate::catalogue::Catalogue::built_in()).await.expect("connect");
    SqliteSink::migrate(sink.pool(), &analyst_views()).await.expect("migrations are applied once, a second run is a no-op");
    let pool = sink.pool().clone();
    let p = |v, amount| payment("pay-1", v, "prod-1", amount, "PENDING", "USD");

    assert_eq!(write(&sink, &[p(3, 300)]).await, outcome(1, 0));
    assert_eq!(write(&sink, &[p(2, 200)]).await, outcome(0, 1), "older version is stale");
    assert_eq!(payment_row(&pool, "pay-1").await, (3, false, Some(300)));
    assert_eq!(write(&sink, &[p(3, 999)]).await, outcome(0, 1), "same version again is a duplicate");
    assert_eq!(payment_row(&pool, "pay-1").await, (3, false, Some(300)));
    let (event_ts, due): (String, String) =
        sqlx::query_as("SELECT event_ts, due_date FROM payment WHERE id = 'pay-1'").fetch_one(&pool).await.unwrap();
    assert_eq!((event_ts.as_str(), due.as_str()), ("2026-09-21T14:13:20.123Z", "2027-06-01"));

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
    let lines = |pool: SqlitePool| async move {
        sqlx::query_as::<_, (String, i64)>("SELECT category, amount FROM budget_line WHERE budget_id = 'bud-1' ORDER BY ordinal")
            .fetch_all(&pool)
            .await
            .unwrap()
    };
    write(&sink, &[budget("bud-1", 2, "prod-1", &[("POST", 5), ("MARKETING", 7)])]).await;
    assert_eq!(write(&sink, &[budget("bud-1", 1, "prod-1", &[("POST", 1)])]).await, outcome(0, 1));
    assert_eq!(lines(pool.clone()).await, vec![("POST".to_string(), 5), ("MARKETING".to_string(), 7)]);
    write(&sink, &[budget("bud-1", 3, "prod-1", &[("ABOVE_THE_LINE", 9)])]).await;
    assert_eq!(lines(pool.clone()).await, vec![("ABOVE_THE_LINE".to_string(), 9)]);
    write(&sink, &[tombstone(slate::studio::kind::BUDGET, "bud-1", Some(4))]).await;
    assert!(lines(pool.clone()).await.is_empty());

    // The file keeps everything: a new sink on it (migrations not re-applied) sees the rows.
    drop(sink);
    pool.close().await;
    let reopened = SqliteSink::connect(&sql_config(&db.url()), &slate::catalogue::Catalogue::built_in()).await.expect("reopen");
    let migrations: i64 = sqlx::query_scalar("SELECT count(*) FROM slate_sql_migrations").fetch_one(reopened.pool()).await.unwrap();
    assert_eq!(migrations, 2);
    assert_eq!(payment_row(reopened.pool(), "pay-2").await, (1, false, Some(10)));
    assert_eq!(write(&reopened, &[p(8, 800)]).await, outcome(0, 1), "the guard holds across restarts");
    reopened.pool().close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_records_are_rejected_without_failing_the_batch() {
    let db = TempDb::new();
    let sink = SqliteSink::connect(&sql_config(&db.url()), &slate::catalogue::Catalogue::built_in()).await.expect("connect");
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
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM payment UNION ALL SELECT id FROM production ORDER BY 1").fetch_all(sink.pool()).await.unwrap();
    assert_eq!(ids, vec!["pay-1", "prod-1"]);

    // A value only SQLite refuses (here a rule an operator added as a trigger; SQLite cannot add
    // a CHECK to an existing table): the batch is rewritten record by record and only that record
    // is rejected, including its child rows.
    sqlx::raw_sql(
        "CREATE TRIGGER non_negative BEFORE INSERT ON payment WHEN NEW.amount < 0 BEGIN SELECT RAISE(ABORT, 'non_negative'); END; \
         CREATE TRIGGER no_empty_category BEFORE INSERT ON budget_line WHEN NEW.category = '' BEGIN SELECT RAISE(ABORT, 'no_empty_category'); END;",
    )
    .execute(sink.pool())
    .await
    .unwrap();
    let batch = [
        payment("pay-4", 1, "prod-1", -5, "PAID", "USD"),
        payment("pay-5", 1, "prod-1", 5, "PAID", "USD"),
        budget("bud-1", 1, "prod-1", &[("POST", 5), ("", 1)]),
        budget("bud-2", 1, "prod-1", &[("POST", 5)]),
    ];
    let o = write(&sink, &batch).await;
    assert_eq!((o.applied, o.stale, o.rejected.len()), (2, 0, 2), "{o:?}");
    assert!(o.rejected[0].0 == 0 && o.rejected[0].1.contains("non_negative"), "{:?}", o.rejected);
    assert!(o.rejected[1].0 == 2 && o.rejected[1].1.contains("no_empty_category"), "{:?}", o.rejected);
    assert_eq!(payment_row(sink.pool(), "pay-5").await, (1, false, Some(5)));
    let budgets: Vec<String> = sqlx::query_scalar("SELECT id FROM budget ORDER BY 1").fetch_all(sink.pool()).await.unwrap();
    assert_eq!(budgets, vec!["bud-2"], "the refused budget's parent row is rolled back with its children");
    let lines: i64 = sqlx::query_scalar("SELECT count(*) FROM budget_line").fetch_one(sink.pool()).await.unwrap();
    assert_eq!(lines, 1);
    sink.pool().close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn views_answer_budget_vs_actuals_cash_flow_and_over_budget() {
    let db = TempDb::new();
    let sink = SqliteSink::connect(&sql_config(&db.url()), &slate::catalogue::Catalogue::built_in()).await.expect("connect");
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

    // Plain views: current as soon as the batch commits, no refresh. Numbers computed by hand:
    // (production, budget, paid, pending, projected, remaining).
    type Actuals = (String, i64, i64, i64, i64, i64);
    let read = |pool: SqlitePool| async move {
        sqlx::query_as::<_, Actuals>("SELECT production_id, budget, paid, pending, projected, remaining FROM budget_vs_actuals ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap()
    };
    assert_eq!(
        read(pool.clone()).await,
        vec![
            ("prod-1".to_string(), 1_000_000, 300_000, 250_000, 1_200_000, 450_000),
            ("prod-2".to_string(), 500_000, 400_000, 200_000, 450_000, -100_000),
            ("prod-3".to_string(), 1_000, 0, 0, 900, 1_000),
        ]
    );
    let columns: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info('budget_vs_actuals') ORDER BY cid").fetch_all(&pool).await.unwrap();
    assert_eq!(
        columns,
        ["production_id", "title", "status", "currency", "budget", "paid", "pending", "projected", "launch_date", "remaining"],
        "the PostgreSQL view's columns"
    );

    let over: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT production_id, committed_over_budget, projected_over_budget FROM over_budget_productions ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(over, vec![("prod-1".to_string(), -450_000, 200_000), ("prod-2".to_string(), 100_000, -50_000)]);

    let months = |pool: SqlitePool| async move {
        sqlx::query_as::<_, (String, i64, i64)>(
            "SELECT month, amount, cumulative FROM cash_flow_by_month WHERE production_id = 'prod-1' ORDER BY month",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let m = |s: &str, a, c| (s.to_string(), a, c);
    assert_eq!(
        months(pool.clone()).await,
        vec![m("2027-01-01", 400_000, 400_000), m("2027-02-01", 500_000, 900_000), m("2027-03-01", 300_000, 1_200_000)]
    );
    // The demo story: a later launch moves the projection; every view follows at once.
    write(&sink, &[cash_flow("cf-1", 2, "prod-1", &[("2027-02", 300_000), ("2027-04", 600_000)])]).await;
    assert_eq!(months(pool.clone()).await, vec![m("2027-02-01", 300_000, 300_000), m("2027-04-01", 600_000, 900_000)]);
    assert_eq!(read(pool.clone()).await[0].4, 900_000);
    let over: i64 =
        sqlx::query_scalar("SELECT count(*) FROM over_budget_productions WHERE production_id = 'prod-1'").fetch_one(&pool).await.unwrap();
    assert_eq!(over, 0, "prod-1 is back within budget");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn locked_database_is_unavailable_then_the_same_batch_succeeds() {
    let db = TempDb::new();
    let setup = SqliteSink::connect(&sql_config(&db.url()), &slate::catalogue::Catalogue::built_in()).await.expect("connect");
    setup.pool().close().await;
    let options = SqliteConnectOptions::from_str(&db.url()).unwrap().busy_timeout(Duration::from_millis(300));
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
    let sink = SqliteSink::from_pool(pool.clone());
    assert_eq!(write(&sink, &[payment("pay-1", 1, "prod-1", 10, "PENDING", "USD")]).await, outcome(1, 0));

    // Another writer (a second process, an analyst's session) holds SQLite's write lock.
    let mut other = SqliteConnection::connect(&db.url()).await.unwrap();
    other.execute("BEGIN IMMEDIATE").await.unwrap();
    let batch = [payment("pay-1", 2, "prod-1", 20, "PAID", "USD"), payment("pay-2", 1, "prod-1", 30, "PAID", "USD")];
    let started = Instant::now();
    let locked = tokio::time::timeout(Duration::from_secs(20), sink.write(&batch)).await.expect("bounded");
    assert!(matches!(locked, Err(SinkError::Unavailable(_))), "{locked:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(payment_row(&pool, "pay-1").await, (1, false, Some(10)), "nothing of the batch was written");

    other.execute("COMMIT").await.unwrap();
    assert_eq!(write(&sink, &batch).await, outcome(2, 0), "the retried batch applies in full");
    assert_eq!(payment_row(&pool, "pay-1").await, (2, false, Some(20)));
    assert_eq!(payment_row(&pool, "pay-2").await, (1, false, Some(30)));
    other.close().await.unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_url_scheme_selects_the_backend() {
    // The config accepts both schemes and nothing else.
    for (url, ok) in [("sqlite::memory:", true), ("sqlite://demo.db", true), ("postgres://db/x", true), ("mysql://db/x", false)] {
        let loaded = Config::load(None, &[ov("sinks.sql.database_url", format!("\"{url}\""))]);
        assert_eq!(loaded.is_ok(), ok, "{url}: {:?}", loaded.err());
    }

    // In memory: one database for the sink's lifetime, shared by its (single) connection.
    let sink = connect_any(&sql_config("sqlite::memory:"), &slate::catalogue::Catalogue::built_in()).await.expect("in-memory sqlite");
    assert_eq!(sink.name(), "sql");
    assert_eq!(write(sink.as_ref(), &[production("prod-1", 2, "USD")]).await, outcome(1, 0));
    assert_eq!(write(sink.as_ref(), &[production("prod-1", 1, "USD")]).await, outcome(0, 1));

    // A file in a directory that does not exist is a configuration error, not an outage.
    let missing = std::env::temp_dir().join(unique("no-such-dir")).join("x.db");
    let fatal = connect_any(&sql_config(&format!("sqlite://{}", missing.display())), &slate::catalogue::Catalogue::built_in()).await;
    assert!(matches!(fatal, Err(SinkError::Fatal(_))), "{:?}", fatal.err());
    // A postgres:// URL still goes to PostgreSQL (here unreachable: unavailable, retried).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let pg =
        connect_any(&sql_config(&format!("postgres://postgres@127.0.0.1:{port}/none")), &slate::catalogue::Catalogue::built_in()).await;
    assert!(matches!(pg, Err(SinkError::Unavailable(ref e)) if e.contains("postgresql")), "{:?}", pg.err());
}

/// (version, deleted) of every row of every entity table.
async fn sql_state(pool: &SqlitePool) -> BTreeMap<(EntityName, String), (i64, bool)> {
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

async fn wait_converged(pool: &SqlitePool, want: &BTreeMap<(EntityName, String), (i64, bool)>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = sql_state(pool).await;
        if &got == want {
            return;
        }
        if Instant::now() > deadline {
            let diff: Vec<_> = want.iter().filter(|(k, v)| got.get(*k) != Some(*v)).map(|(k, v)| (k, v, got.get(k))).take(5).collect();
            let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).take(5).collect();
            panic!("sqlite not converged within {within:?}: sample (key, want, got) {diff:?}; unexpected rows {extra:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Runs `slate verify --sink sql` (the binary) against the SQLite file; returns (exit code, output).
async fn verify_cli(cfg: &Config, extra: &[&str]) -> (i32, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_slate"));
    cmd.env("SLATE_KAFKA__BOOTSTRAP_SERVERS", &cfg.kafka.bootstrap_servers)
        .env("SLATE_SOURCES__GRAPHQL_ENDPOINT", &cfg.sources.graphql_endpoint)
        .env("SLATE_SOURCES__GRPC_ENDPOINT", &cfg.sources.grpc_endpoint)
        .env("SLATE_SINKS__SQL__DATABASE_URL", cfg.sinks.sql.database_url.expose())
        .env("SLATE_ENRICHER__INPUT_TOPIC_PREFIX", &cfg.enricher.input_topic_prefix)
        .args(["--log", "warn", "verify", "--sink", "sql"])
        .args(extra)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output()).await.expect("verify finishes").expect("verify runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn end_to_end_converges_to_the_studio_and_verify_finds_no_drift() {
    let db = TempDb::new();
    let registry = TestRegistry::start().await;
    let mut cfg = pipeline_config(
        &registry.url,
        &[
            ov("studio.load.mutations_per_sec", 150),
            ov("studio.load.max_mutations", 600),
            ov("studio.load.key_skew", "\"zipf:1.1\""),
            ov("studio.num_productions", 10),
            ov("studio.snapshot_on_start", true),
        ],
    );
    cfg.sinks.topic_prefix = cfg.enricher.output_topic_prefix.clone();
    cfg.sinks.group_prefix = format!("{}-", unique("sink"));
    cfg.sinks.dlq_topic = unique("sink-dlq");
    cfg.sinks.batch_max_events = 50;
    cfg.sinks.batch_max_wait = Duration::from_millis(20);
    cfg.sinks.metrics_listen = None;
    cfg.sinks.sql = sql_config(&db.url());
    let studio_metrics = Metrics::new();
    let mut studio = slate::studio::server::start(&cfg, studio_metrics.clone()).await.expect("studio starts");
    use_studio(&mut cfg, &studio);
    let enricher = slate::enrich::start(&cfg, Metrics::new()).await.expect("enricher starts");
    let sink: Arc<dyn Sink> = connect_any(&cfg.sinks.sql, &slate::catalogue::Catalogue::built_in()).await.expect("sqlite sink connects");
    let sink_metrics = Metrics::new();
    let running = slate::sink::runner::start(&cfg, sink.clone(), sink_metrics.clone()).await.expect("sink starts");
    // The test reads through its own pool, as an analyst would, while the sink writes (WAL).
    let pool = SqlitePool::connect(&db.url()).await.expect("reader pool");

    let report = tokio::time::timeout(Duration::from_secs(60), studio.load_finished()).await.expect("load finishes");
    assert_eq!(report.failures, 0);
    let keys = changed_keys(&cfg, &studio_metrics).await;
    let want = wanted(&studio.studio, &keys);
    assert!(want.values().any(|(_, deleted)| *deleted), "the load deleted some entities");
    wait_converged(&pool, &want, Duration::from_secs(120)).await;
    assert_eq!(counter(&sink_metrics, "slate_sink_rejected_total"), 0.0);
    assert!(counter(&sink_metrics, "slate_sink_written_total") > 0.0);

    // `slate verify` reads the same file through the CLI's SQLite path: clean, then a row lost
    // behind the pipeline's back is reported, `--repair` re-publishes it and the sink heals.
    let (code, out) = verify_cli(&cfg, &[]).await;
    assert_eq!(code, 0, "verify reports drift:\n{out}");
    assert!(out.contains("no drift") && out.contains("| sql | talent |"), "{out}");
    let lost = sqlx::query("DELETE FROM production WHERE id = 'prod-000002'").execute(&pool).await.unwrap();
    assert_eq!(lost.rows_affected(), 1);
    let (code, out) = verify_cli(&cfg, &["--repair"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("prod-000002 (missing)") && out.contains("re-published"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out) = verify_cli(&cfg, &[]).await;
        if code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "still drifting after the repair:\n{out}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    running.shutdown().await.expect("sink stops cleanly");
    enricher.shutdown().await;
    studio.shutdown().await;
    registry.stop().await;
    pool.close().await;
    drop(sink);
}

/// The analyst views the sink applies as the deployment's own migrations.
fn analyst_views() -> Vec<slate::sink::sql::migrations::Migration> {
    slate::sink::sql::migrations::read(Some(std::path::Path::new("migrations/sqlite"))).expect("the analyst views read")
}
