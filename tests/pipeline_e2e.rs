//! The whole pipeline on real services: studio (skewed load with deletes) → enricher → the SQL,
//! search and audit sinks → `slate verify` reports zero drift; then drift made behind the
//! pipeline's back is reported, `--repair` heals it, and verify is clean again.

mod common;
mod enricher_support;

use common::*;
use enricher_support::*;
use slate::config::SecretUrl;
use slate::metrics::Metrics;
use slate::sink::{Sink, runner};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn studio_to_all_sinks_converges_and_verify_repairs_drift() {
    let admin_url = env("TEST_DATABASE_URL");
    let db = format!("slate_e2e_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    admin.execute(AssertSqlSafe(format!("CREATE DATABASE {db}"))).await.unwrap();
    let mut db_url = reqwest::Url::parse(&admin_url).unwrap();
    db_url.set_path(&db);
    let audit_dir = std::env::temp_dir().join(unique("slate-audit"));
    // The scenario runs in its own task so the database and files are removed even if it fails.
    let outcome = tokio::spawn(scenario(db_url, audit_dir.clone())).await;
    admin.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))).await.unwrap();
    std::fs::remove_dir_all(audit_dir).ok();
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
}

async fn scenario(db_url: reqwest::Url, audit_dir: std::path::PathBuf) {
    let registry = TestRegistry::start().await;
    let mut cfg = pipeline_config(
        &registry.url,
        &[
            ov("studio.load.mutations_per_sec", 300),
            ov("studio.load.max_mutations", 400),
            ov("studio.num_productions", 10),
            ov("studio.snapshot_on_start", true),
        ],
    );
    sinks_behind_enricher(&mut cfg);
    cfg.sinks.sql.database_url = SecretUrl::new(db_url.as_str());
    cfg.sinks.sql.refresh_interval = Duration::from_secs(1);
    cfg.sinks.sql.migrations = Some("migrations/sql".into());
    cfg.sinks.sql.refresh_views = vec!["budget_vs_actuals".into()];
    cfg.sinks.search.url = env("TEST_ES_URL");
    cfg.sinks.search.index_prefix = format!("{}-", unique("e2e"));
    cfg.sinks.audit.dir = audit_dir.clone();
    let mut studio = slate::studio::server::start(&cfg, Metrics::new()).await.unwrap();
    use_studio(&mut cfg, &studio);
    let enricher = slate::enrich::start(&cfg, Metrics::new()).await.unwrap();
    let sinks: Vec<Arc<dyn Sink>> = vec![
        Arc::new(slate::sink::sql::SqlSink::connect(&cfg.sinks.sql, &slate::catalogue::Catalogue::built_in()).await.unwrap()),
        Arc::new(slate::sink::search::SearchSink::connect(&cfg.sinks.search, &slate::catalogue::Catalogue::built_in()).await.unwrap()),
        Arc::new(slate::sink::audit::AuditSink::new(&cfg.sinks.audit).unwrap()),
    ];
    let mut running = Vec::new();
    for s in sinks {
        running.push(runner::start(&cfg, s, Metrics::new()).await.unwrap());
    }
    tokio::time::timeout(Duration::from_secs(60), studio.load_finished()).await.unwrap();
    let out = until_clean(&cfg, &[], Duration::from_secs(90)).await;
    assert!(out.contains("| sql | payment |") && out.contains("| search | production |"), "{out}");

    // Drift behind the pipeline's back: a row lost in SQL, and a source change never published.
    let pool = sqlx::PgPool::connect(db_url.as_str()).await.unwrap();
    let lost = sqlx::query("DELETE FROM production WHERE id = 'prod-000002'").execute(&pool).await.unwrap();
    assert_eq!(lost.rows_affected(), 1);
    studio.studio.store.update_production("prod-000003", Some("Renamed Quietly".into()), None).unwrap();
    let (code, out) = verify_cli(&cfg, &["--sink", "sql"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("prod-000002 (missing)") && out.contains("prod-000003 (stale)"), "{out}");
    let (code, out) = verify_cli(&cfg, &["--repair"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("re-published"), "{out}");
    until_clean(&cfg, &[], Duration::from_secs(60)).await;

    for r in running {
        r.shutdown().await.unwrap();
    }
    enricher.shutdown().await;
    studio.shutdown().await;
    registry.stop().await;
    pool.close().await;
}
