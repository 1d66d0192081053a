//! `slate studio`: run the source of truth until Ctrl-C (or until bounded load mode ends).

use super::{flag, load_config, shutdown_signal};
use crate::config::{Config, Override};
use crate::metrics::Metrics;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::Path;

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

pub async fn run(config_path: Option<&Path>, args: StudioArgs) -> anyhow::Result<()> {
    let config = load_config(config_path, args.overrides()).await?;
    run_studio(config).await
}

async fn run_studio(config: Config) -> anyhow::Result<()> {
    let mut running = crate::studio::server::start(&config, Metrics::new()).await.context("cannot start the studio")?;
    println!("studio GraphQL: http://{}/graphql", running.http_addr);
    println!("studio gRPC:    {} (studio.finance.v1.StudioSource/BatchGet)", running.grpc_addr);
    // The studio is the source of truth: it keeps serving after a bounded load mode ends.
    let bounded_load = config.studio.load.mutations_per_sec > 0.0 && config.studio.load.max_mutations > 0;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    if bounded_load {
        tokio::select! {
            report = running.load_finished() => println!("load finished: {} mutations, {} events acknowledged, {} failures; still serving", report.mutations, report.events_acked, report.failures),
            _ = &mut shutdown => {
                running.shutdown().await;
                return Ok(());
            }
        }
    }
    shutdown.await;
    running.shutdown().await;
    Ok(())
}
