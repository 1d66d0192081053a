//! `slate demo`: the whole pipeline in one process on embedded defaults, for a first look.
//!
//! What runs, all bound to 127.0.0.1: an in-process Kafka-protocol broker ([`broker`]), the
//! embedded schema registry (in memory), the studio (GraphQL + gRPC, seeded, publishing a steady
//! stream of finance mutations after an initial snapshot), the enricher, the SQL sink on SQLite
//! and the audit sink on Parquet under the data directory (plus the search sink when a search
//! URL is given), and one HTTP server with the dashboard (`/`), the analyst GraphQL API
//! (`/graphql`) and `/metrics`. These are the same components `slate studio`, `slate registry`,
//! `slate run …` start separately; the demo only wires them to each other and shares one metrics
//! registry, so the dashboard sees every stage.
//!
//! **Data directory.** The broker and the studio live in memory, so every start is a new world
//! whose versions begin at 1 again; rows a previous run left in the SQLite database would carry
//! higher versions and the sinks' version guard would (rightly) refuse every new write as stale.
//! So a start first removes what an earlier demo wrote there (`slate.db*` and `audit/`), and
//! nothing else in the directory.
//!
//! Shutdown ([`Demo::shutdown`]) runs downstream-last: the studio stops mutating, the enricher
//! drains and commits, the sinks finish their batch and commit, then the servers stop. The data
//! directory (SQLite database, Parquet tree) stays for inspection; the broker's topics do not
//! (the next start re-snapshots, and the sinks' version guards make the replay harmless).

pub mod broker;
pub mod launch;

use crate::config::{Config, ConfigError, Override};
use crate::dashboard::Dashboard;
use crate::enrich::RunningEnricher;
use crate::metrics::Metrics;
use crate::sink::Sink;
use crate::sink::runner::{self, RunningSink};
use crate::studio::server::RunningStudio;
use broker::EmbeddedBroker;
use launch::LaunchControl;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The dashboard / analyst API listener.
    pub listen: SocketAddr,
    /// SQLite database and Parquet audit tree go here.
    pub data_dir: PathBuf,
    /// Also run the search sink against this Elasticsearch / OpenSearch URL.
    pub search_url: Option<String>,
    /// The studio's steady mutation rate.
    pub mutations_per_sec: f64,
    pub productions: usize,
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot prepare the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("embedded broker: {0}")]
    Broker(#[from] rdkafka::error::KafkaError),
    #[error("cannot bind {what} {addr}: {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("studio: {0}")]
    Studio(#[from] crate::studio::server::StartError),
    #[error("featured production: {0}")]
    Launch(#[from] launch::LaunchError),
    #[error("enricher: {0}")]
    Enricher(#[from] crate::enrich::StartError),
    #[error("{sink} sink: {message}")]
    Sink { sink: &'static str, message: String },
    #[error("analyst API: {0}")]
    Analyst(#[from] crate::analyst::AnalystError),
}

/// A running demo. Holds no reference to the broker: the caller keeps the [`EmbeddedBroker`]
/// alive until [`Demo::shutdown`] has returned.
pub struct Demo {
    pub dashboard_addr: SocketAddr,
    pub studio_graphql: String,
    pub registry_url: String,
    pub sqlite_url: String,
    pub audit_dir: PathBuf,
    pub sinks: Vec<&'static str>,
    studio: RunningStudio,
    enricher: RunningEnricher,
    running_sinks: Vec<(&'static str, RunningSink)>,
    cancel: CancellationToken,
    servers: Vec<JoinHandle<()>>,
}

fn ov(key: &str, value: impl std::fmt::Display) -> Override {
    Override { key: key.into(), value: value.to_string(), origin: "slate demo".into() }
}

fn quoted(s: impl AsRef<str>) -> String {
    toml::Value::String(s.as_ref().to_string()).to_string()
}

/// The demo's configuration: defaults, pointed at the embedded services and the data directory.
pub fn config(opts: &DemoOptions, bootstrap: &str, registry_url: &str) -> Result<Config, ConfigError> {
    let db = opts.data_dir.join("slate.db");
    let mut o = vec![
        ov("kafka.bootstrap_servers", quoted(bootstrap)),
        ov("registry.url", quoted(registry_url)),
        ov("studio.http_listen", quoted("127.0.0.1:0")),
        ov("studio.grpc_listen", quoted("127.0.0.1:0")),
        ov("studio.snapshot_on_start", true),
        ov("studio.num_productions", opts.productions),
        ov("studio.seed", opts.seed),
        ov("studio.load.mutations_per_sec", format!("{:?}", opts.mutations_per_sec)),
        ov("sinks.sql.database_url", quoted(format!("sqlite://{}", db.display()))),
        ov("sinks.audit.dir", quoted(opts.data_dir.join("audit").display().to_string())),
        ov("sinks.sql.migrations", quoted(opts.data_dir.join("sql").display().to_string())),
    ];
    if let Some(url) = &opts.search_url {
        o.push(ov("sinks.search.url", quoted(url)));
    }
    // The analyst views, as the deployment's own SQL (the demo runs from anywhere: embedded).
    crate::analyst::views::write_to(&opts.data_dir.join("sql"), true).map_err(|e| ConfigError::Invalid {
        key: "sinks.sql.migrations".into(),
        message: format!("cannot write the analyst views: {e}"),
    })?;
    let mut cfg = Config::load(None, &o)?;
    // One HTTP server serves every metric of the process (the dashboard's /metrics).
    cfg.enricher.metrics_listen = None;
    cfg.sinks.metrics_listen = None;
    Ok(cfg)
}

/// Every topic the demo's components use (the mock broker has no CreateTopics API).
pub fn topics(cfg: &Config) -> Vec<String> {
    let mut t: Vec<String> = crate::studio::kind::ALL.iter().map(|k| k.changes_topic(&cfg.studio.topic_prefix)).collect();
    t.extend(crate::studio::kind::ALL.iter().map(|k| cfg.enricher.output_topic(*k)));
    t.extend([cfg.enricher.retry_topic.clone(), cfg.enricher.dlq_topic.clone(), cfg.sinks.dlq_topic.clone()]);
    t.sort();
    t.dedup();
    t
}

impl Demo {
    pub async fn start(opts: &DemoOptions, broker: &EmbeddedBroker) -> Result<Demo, DemoError> {
        // Bound first, so a taken port fails before anything else starts.
        let listener = tokio::net::TcpListener::bind(opts.listen).await.map_err(|source| DemoError::Bind {
            what: "the dashboard on",
            addr: opts.listen,
            source,
        })?;
        reset_data_dir(&opts.data_dir)?;
        let cancel = CancellationToken::new();
        let mut servers = Vec::new();
        let metrics = Metrics::new();

        let registry_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let registry_listener = tokio::net::TcpListener::bind(registry_addr).await.map_err(|source| DemoError::Bind {
            what: "the embedded registry on",
            addr: registry_addr,
            source,
        })?;
        let registry_url = format!("http://{}", registry_listener.local_addr().expect("bound"));
        let state =
            crate::registry::RegistryState::new(crate::registry::MemoryStore::new(), crate::registry::CompatibilityLevel::Backward, None);
        let c = cancel.clone();
        servers.push(tokio::spawn(async move {
            if let Err(e) = crate::registry::serve(registry_listener, state, c.cancelled_owned()).await {
                tracing::error!(error = %e, "embedded registry failed");
            }
        }));

        let mut cfg = config(opts, &broker.bootstrap_servers(), &registry_url)?;
        broker.create_topics(&topics(&cfg), cfg.studio.topic_partitions.max(cfg.enricher.topic_partitions))?;

        let studio = crate::studio::server::start(&cfg, metrics.clone()).await?;
        let today = (crate::time::now_millis() / 86_400_000) as i32;
        let control = Arc::new(LaunchControl::create(studio.studio.clone(), today).await?);
        cfg.sources.graphql_endpoint = format!("http://{}/graphql", studio.http_addr);
        cfg.sources.grpc_endpoint = format!("http://{}", studio.grpc_addr);
        let enricher = crate::enrich::start(&cfg, metrics.clone()).await?;

        let mut running_sinks = Vec::new();
        let sql = crate::sink::sql::connect_any(&cfg.sinks.sql, cfg.entities()).await.map_err(|e| sink_error("sql", e))?;
        running_sinks.push(("sql", start_sink(&cfg, sql, &metrics, "sql").await?));
        let audit = crate::sink::audit::AuditSink::new(&cfg.sinks.audit).map_err(|e| sink_error("audit", e))?;
        running_sinks.push(("audit", start_sink(&cfg, Arc::new(audit), &metrics, "audit").await?));
        if opts.search_url.is_some() {
            let search =
                crate::sink::search::SearchSink::connect(&cfg.sinks.search, cfg.entities()).await.map_err(|e| sink_error("search", e))?;
            running_sinks.push(("search", start_sink(&cfg, Arc::new(search), &metrics, "search").await?));
        }

        let analyst = crate::analyst::Analyst::connect(&cfg).await?;
        let dashboard = Dashboard::local(metrics.clone());
        servers.push(dashboard.spawn_sampler(cancel.clone()));
        let app = crate::dashboard::router(dashboard).merge(crate::analyst::router(analyst)).merge(launch::router(control));
        let dashboard_addr = listener.local_addr().expect("bound");
        let c = cancel.clone();
        servers.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(c.cancelled_owned()).await {
                tracing::error!(error = %e, "dashboard server failed");
            }
        }));

        Ok(Demo {
            dashboard_addr,
            studio_graphql: format!("http://{}/graphql", studio.http_addr),
            registry_url,
            sqlite_url: cfg.sinks.sql.database_url.expose().to_string(),
            audit_dir: cfg.sinks.audit.dir.clone(),
            sinks: running_sinks.iter().map(|(n, _)| *n).collect(),
            studio,
            enricher,
            running_sinks,
            cancel,
            servers,
        })
    }

    /// Whether a sink stopped by itself (a fatal error); the caller should shut down.
    pub fn failed_sink(&self) -> Option<&'static str> {
        self.running_sinks.iter().find(|(_, s)| s.is_finished()).map(|(n, _)| *n)
    }

    /// Stops downstream-last (see the module doc); returns the first sink error, if any.
    pub async fn shutdown(self) -> Result<(), DemoError> {
        self.studio.shutdown().await;
        self.enricher.shutdown().await;
        let mut first_error = None;
        for (name, sink) in self.running_sinks {
            if let Err(e) = sink.shutdown().await {
                first_error.get_or_insert(DemoError::Sink { sink: name, message: e.to_string() });
            }
        }
        self.cancel.cancel();
        for s in self.servers {
            let _ = s.await;
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Creates `dir` and removes what an earlier demo wrote there (see the module doc).
fn reset_data_dir(dir: &std::path::Path) -> Result<(), DemoError> {
    let fail = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| DemoError::DataDir { path, source }
    };
    std::fs::create_dir_all(dir).map_err(fail(dir))?;
    for name in ["slate.db", "slate.db-wal", "slate.db-shm", "slate.db-journal"] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(&path)(e)),
            _ => {}
        }
    }
    let audit = dir.join("audit");
    match std::fs::remove_dir_all(&audit) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(fail(&audit)(e)),
        _ => Ok(()),
    }
}

fn sink_error(sink: &'static str, e: impl std::fmt::Display) -> DemoError {
    DemoError::Sink { sink, message: e.to_string() }
}

async fn start_sink(cfg: &Config, sink: Arc<dyn Sink>, metrics: &Metrics, name: &'static str) -> Result<RunningSink, DemoError> {
    runner::start(cfg, sink, metrics.clone()).await.map_err(|e| sink_error(name, e))
}
