//! `slate run <role>`: run one pipeline role until Ctrl-C/SIGTERM, then drain and commit.

use super::{load_config, shutdown_signal};
use crate::metrics::Metrics;
use crate::sink::{Sink, runner};
use anyhow::Context as _;
use std::path::Path;
use std::sync::Arc;

#[derive(clap::Subcommand, Debug)]
pub enum Role {
    /// Consume change events, fetch current state, produce Avro records.
    Enricher,
    /// Consume the enriched topics into a target (each sink is its own consumer group).
    Sink {
        #[arg(value_enum)]
        sink: SinkName,
    },
    /// Serve the analyst GraphQL API over the SQL sink's database and the audit tree (`[api]`).
    Api,
    /// Serve the live dashboard over the roles' `/metrics` (`[dashboard]`).
    Dashboard,
    /// Accept change events over HTTP (`POST /events`, `[publish]`), answering once the broker
    /// acknowledged them.
    Ingest,
    /// Forward the local outbox to the events' home regions (`[router]`), at least once.
    Router,
    /// Compare the live pipeline with its shadow every `shadow.interval`, exporting the match
    /// rate on `/metrics` (`[shadow]`).
    Shadow,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum SinkName {
    /// PostgreSQL or SQLite tables (upsert guarded by version) and analyst views.
    Sql,
    /// Elasticsearch / OpenSearch via `_bulk` with external versions.
    Search,
    /// Hive-partitioned Parquet, one row per event uuid.
    Audit,
}

pub async fn run(config_path: Option<&Path>, role: Role) -> anyhow::Result<()> {
    let config = load_config(config_path, Vec::new()).await?;
    let metrics = Metrics::new();
    match role {
        Role::Enricher => {
            let running = crate::enrich::start(&config, metrics).await.context("cannot start the enricher")?;
            if let Some(addr) = running.metrics_addr {
                println!("enricher metrics: http://{addr}/metrics");
            }
            let failed = tokio::select! {
                _ = shutdown_signal() => None,
                reason = running.failed() => Some(reason),
            };
            running.shutdown().await;
            match failed {
                None => Ok(()),
                Some(reason) => anyhow::bail!("the enricher stopped: {reason}"),
            }
        }
        Role::Sink { sink } => {
            let target: Arc<dyn Sink> = match sink {
                SinkName::Sql => {
                    let what = config.sinks.sql.database_url.redacted();
                    until_available(&what, &config.sinks, || crate::sink::sql::connect_any(&config.sinks.sql, config.entities())).await?
                }
                SinkName::Search => {
                    let what = config.sinks.search.url.clone();
                    Arc::new(
                        until_available(&what, &config.sinks, || {
                            crate::sink::search::SearchSink::connect(&config.sinks.search, config.entities())
                        })
                        .await?,
                    )
                }
                SinkName::Audit => Arc::new(
                    crate::sink::audit::AuditSink::new(&config.sinks.audit)
                        .with_context(|| format!("cannot use {}", config.sinks.audit.dir.display()))?,
                ),
            };
            let metrics_server = serve_metrics(config.sinks.metrics_listen, metrics.clone(), "sinks.metrics_listen", "sink").await?;
            let running = runner::start(&config, target, metrics).await.context("cannot start the sink")?;
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = wait_finished(&running) => {}
            }
            let outcome = running.shutdown().await;
            if let Some((stop, task)) = metrics_server {
                let _ = stop.send(());
                let _ = task.await;
            }
            outcome.context("sink stopped")
        }
        Role::Api => serve_api(&config).await,
        Role::Dashboard => serve_dashboard(&config.dashboard).await,
        Role::Ingest => serve_ingest(&config, metrics).await,
        Role::Router => {
            cancellable(config.router.metrics_listen, metrics, "router.metrics_listen", "router", |m, c| crate::router::run(&config, m, c))
                .await
        }
        Role::Shadow => {
            cancellable(config.shadow.metrics_listen, metrics, "shadow.metrics_listen", "shadow validator", |m, c| {
                crate::shadow::role::run(&config, m, c)
            })
            .await
        }
    }
}

/// Runs a role that stops when cancelled (on Ctrl-C/SIGTERM), with `/metrics` and `/health`
/// served beside it on `listen` (config key `key`).
async fn cancellable<F, Fut, E>(listen: Option<std::net::SocketAddr>, metrics: Metrics, key: &str, role: &str, run: F) -> anyhow::Result<()>
where
    F: FnOnce(Metrics, tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let metrics_server = serve_metrics(listen, metrics.clone(), key, role).await?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        c.cancel();
    });
    let outcome = run(metrics, cancel).await.with_context(|| format!("the {role} stopped"));
    if let Some((stop, task)) = metrics_server {
        let _ = stop.send(());
        let _ = task.await;
    }
    outcome
}

/// Serves `POST /events` on `publish.listen` until Ctrl-C/SIGTERM; requests in flight finish
/// (each answers after its acknowledgements) before the process exits.
async fn serve_ingest(config: &crate::config::Config, metrics: Metrics) -> anyhow::Result<()> {
    use crate::publish::{Publisher, ingest};
    let publisher = Arc::new(Publisher::new(config, metrics.clone()).context("cannot create the Kafka producer")?);
    let p = &config.publish;
    let listener = tokio::net::TcpListener::bind(p.listen).await.with_context(|| format!("cannot bind publish.listen {}", p.listen))?;
    println!("event ingest: http://{}/events", listener.local_addr()?);
    let app = ingest::router(publisher, metrics, p.max_request_events, p.bearer_token.as_ref().map(|t| t.expose()));
    ingest::serve(listener, app, shutdown_signal()).await.context("event ingest server failed")
}

/// Scrapes `dashboard.metrics_urls` every second and serves the page on `dashboard.listen`
/// until Ctrl-C/SIGTERM. Roles that are down are shown as down; the dashboard keeps running.
async fn serve_dashboard(cfg: &crate::config::DashboardConfig) -> anyhow::Result<()> {
    let dashboard = crate::dashboard::Dashboard::remote(cfg)?;
    let listener =
        tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("cannot bind dashboard.listen {}", cfg.listen))?;
    println!("dashboard: http://{}/ (scraping {} endpoint(s))", listener.local_addr()?, cfg.metrics_urls.len());
    let cancel = tokio_util::sync::CancellationToken::new();
    let sampler = dashboard.spawn_sampler(cancel.clone());
    let served = axum::serve(listener, crate::dashboard::router(dashboard)).with_graceful_shutdown(shutdown_signal()).await;
    cancel.cancel();
    let _ = sampler.await;
    served.context("dashboard server failed")
}

/// Connects (waiting out a database that is not up yet, with the sinks' backoff), then serves
/// `/graphql` and `/health` on `api.listen` until Ctrl-C/SIGTERM, finishing in-flight requests.
async fn serve_api(config: &crate::config::Config) -> anyhow::Result<()> {
    let mut backoff = config.sinks.backoff;
    let api = loop {
        match crate::analyst::Analyst::connect(config).await {
            Ok(api) => break api,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, retry_in = ?backoff, "analyst database unavailable; waiting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown_signal() => anyhow::bail!("interrupted while waiting for the analyst database"),
                }
                backoff = (backoff * 2).min(config.sinks.max_backoff);
            }
            Err(e) => return Err(e).context("cannot start the analyst API"),
        }
    };
    let listener =
        tokio::net::TcpListener::bind(config.api.listen).await.with_context(|| format!("cannot bind api.listen {}", config.api.listen))?;
    println!("analyst GraphQL: http://{}/graphql", listener.local_addr()?);
    axum::serve(listener, crate::analyst::router(api)).with_graceful_shutdown(shutdown_signal()).await.context("analyst API server failed")
}

/// Connects, waiting out a target that is not up yet (with the sinks' backoff); a fatal error
/// (bad credentials, incompatible schema) stops at once.
async fn until_available<T, F, Fut>(what: &str, cfg: &crate::config::SinksConfig, connect: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::sink::SinkError>>,
{
    let mut backoff = cfg.backoff;
    loop {
        match connect().await {
            Ok(t) => return Ok(t),
            Err(crate::sink::SinkError::Unavailable(e)) => {
                tracing::warn!(target = what, error = %e, retry_in = ?backoff, "sink target unavailable; waiting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown_signal() => anyhow::bail!("interrupted while waiting for {what}"),
                }
                backoff = (backoff * 2).min(cfg.max_backoff);
            }
            Err(e) => return Err(e).with_context(|| format!("cannot use {what}")),
        }
    }
}

async fn wait_finished(running: &runner::RunningSink) {
    while !running.is_finished() {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

type MetricsServer = Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>;

/// `/metrics` and `/health` of a sink or router process on `addr` (config key `key`).
async fn serve_metrics(addr: Option<std::net::SocketAddr>, metrics: Metrics, key: &str, role: &str) -> anyhow::Result<MetricsServer> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot bind {key} {addr}"))?;
    println!("{role} metrics: http://{}/metrics", listener.local_addr()?);
    let health = metrics.health.clone();
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(move || async move { metrics.encode() }))
        .route("/health", axum::routing::get(move || async move { health.response() }));
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    Ok(Some((stop, task)))
}
