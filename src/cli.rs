//! The command line: parse, load config, run the chosen role until Ctrl-C. The binary edge,
//! so errors are `anyhow` with context here and typed everywhere below.

use crate::config::{Config, Override, env_overrides};
use crate::metrics::Metrics;
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "slate", version, about = "Studio-finance event enrichment: ID-only events in, current state as Avro out")]
pub struct Cli {
    /// Config file (TOML). `SLATE_<SECTION>__<KEY>` env vars override it.
    #[arg(long, short, global = true, env = "SLATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. `info` or `slate=debug`.
    #[arg(long, global = true, env = "SLATE_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the studio: the finance source of truth (GraphQL + gRPC) that publishes change events.
    Studio(StudioArgs),
    /// Run the embedded Confluent-compatible schema registry.
    Registry(RegistryArgs),
    /// Inspect the effective configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(clap::Args, Debug)]
pub struct StudioArgs {
    /// Steady mutation rate of load mode (0 = off).
    #[arg(long)]
    pub mutations_per_sec: Option<f64>,
    /// Keys load mode mutates: "uniform" or "zipf:S", e.g. "zipf:1.1".
    #[arg(long)]
    pub key_skew: Option<String>,
    /// Stop load mode after this many mutations.
    #[arg(long)]
    pub max_mutations: Option<u64>,
    /// Data generator seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of seeded productions.
    #[arg(long)]
    pub productions: Option<usize>,
    /// Serve reads and apply mutations without publishing change events.
    #[arg(long)]
    pub no_publish: bool,
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    #[arg(long)]
    pub grpc_listen: Option<SocketAddr>,
}

#[derive(clap::Args, Debug)]
pub struct RegistryArgs {
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

#[derive(Subcommand, Debug)]
pub enum ConfigAction {
    /// Print the effective config (file + env + defaults) with secrets redacted.
    Show,
    /// Validate the config and exit 0, or print what is wrong and exit 1.
    Check,
}

fn flag(key: &str, value: impl ToString, name: &str) -> Override {
    Override { key: key.into(), value: value.to_string(), origin: format!("--{name}") }
}

impl StudioArgs {
    fn overrides(&self) -> Vec<Override> {
        let mut o = Vec::new();
        if let Some(v) = self.mutations_per_sec {
            o.push(flag("studio.load.mutations_per_sec", v, "mutations-per-sec"));
        }
        if let Some(v) = &self.key_skew {
            o.push(flag("studio.load.key_skew", format!("\"{v}\""), "key-skew"));
        }
        if let Some(v) = self.max_mutations {
            o.push(flag("studio.load.max_mutations", v, "max-mutations"));
        }
        if let Some(v) = self.seed {
            o.push(flag("studio.seed", v, "seed"));
        }
        if let Some(v) = self.productions {
            o.push(flag("studio.num_productions", v, "productions"));
        }
        if self.no_publish {
            o.push(flag("studio.publish", false, "no-publish"));
        }
        if let Some(v) = self.http_listen {
            o.push(flag("studio.http_listen", format!("\"{v}\""), "http-listen"));
        }
        if let Some(v) = self.grpc_listen {
            o.push(flag("studio.grpc_listen", format!("\"{v}\""), "grpc-listen"));
        }
        o
    }
}

pub fn load_config(path: Option<&std::path::Path>, flags: Vec<Override>) -> anyhow::Result<Config> {
    let mut overrides = env_overrides(std::env::vars())?;
    overrides.extend(flags);
    Ok(Config::load(path, &overrides)?)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Config { action } => {
            let config = load_config(cli.config.as_deref(), Vec::new())?;
            match action {
                ConfigAction::Show => print!("{}", config.to_redacted_toml()),
                ConfigAction::Check => println!("config ok"),
            }
            Ok(())
        }
        Command::Studio(args) => {
            let config = load_config(cli.config.as_deref(), args.overrides())?;
            run_studio(config).await
        }
        Command::Registry(args) => {
            let flags = args.listen.map(|l| vec![flag("registry_server.listen", format!("\"{l}\""), "listen")]).unwrap_or_default();
            let config = load_config(cli.config.as_deref(), flags)?;
            run_registry(&config.registry_server).await
        }
    }
}

async fn run_studio(config: Config) -> anyhow::Result<()> {
    let mut running = crate::studio::server::start(&config, Metrics::new()).await.context("cannot start the studio")?;
    println!("studio GraphQL: http://{}/graphql", running.http_addr);
    println!("studio gRPC:    {} (studio.finance.v1.StudioSource/BatchGet)", running.grpc_addr);
    let bounded_load = config.studio.load.mutations_per_sec > 0.0 && config.studio.load.max_mutations > 0;
    if bounded_load {
        tokio::select! {
            report = running.load_finished() => println!("load finished: {} mutations, {} events acknowledged, {} failures", report.mutations, report.events_acked, report.failures),
            _ = shutdown_signal() => {}
        }
    } else {
        shutdown_signal().await;
    }
    running.shutdown().await;
    Ok(())
}

async fn run_registry(cfg: &crate::config::RegistryServerConfig) -> anyhow::Result<()> {
    use crate::config::RegistryStorage;
    use crate::registry::{CompatibilityLevel, MemoryStore, PgStore, RegistryState, Store};
    let level: CompatibilityLevel = cfg.default_compatibility.parse().map_err(|_| anyhow::anyhow!("validated at load"))?;
    let store: Store = match cfg.storage {
        RegistryStorage::Memory => MemoryStore::new().into(),
        RegistryStorage::Postgres => {
            let url = cfg.database_url.as_ref().context("validated at load: postgres storage has a database_url")?;
            PgStore::connect(url.expose()).await.with_context(|| format!("cannot open registry storage at {}", url.redacted()))?.into()
        }
    };
    let auth = cfg.basic_auth.as_ref().map(|a| (a.username.clone(), a.password.expose().to_string()));
    let listener =
        tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("cannot bind registry_server.listen {}", cfg.listen))?;
    println!("schema registry: http://{} (storage: {:?}, default compatibility: {level})", listener.local_addr()?, cfg.storage);
    crate::registry::serve(listener, RegistryState::new(store, level, auth), shutdown_signal()).await.context("schema registry failed")
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
