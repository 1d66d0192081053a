//! `slate run <role>`: run one pipeline role until Ctrl-C/SIGTERM, then drain and commit.

use super::{load_config, shutdown_signal};
use crate::metrics::Metrics;
use anyhow::Context as _;
use std::path::Path;

#[derive(clap::Subcommand, Debug)]
pub enum Role {
    /// Consume change events, fetch current state, produce Avro records.
    Enricher,
}

pub async fn run(config_path: Option<&Path>, role: Role) -> anyhow::Result<()> {
    let config = load_config(config_path, Vec::new())?;
    match role {
        Role::Enricher => {
            let running = crate::enrich::start(&config, Metrics::new()).await.context("cannot start the enricher")?;
            if let Some(addr) = running.metrics_addr {
                println!("enricher metrics: http://{addr}/metrics");
            }
            shutdown_signal().await;
            running.shutdown().await;
            Ok(())
        }
    }
}
