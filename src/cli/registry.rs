//! `slate registry`: the embedded Confluent-compatible schema registry.

use super::{flag, load_config_without_subjects, shutdown_signal};
use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct RegistryArgs {
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

pub async fn run(config_path: Option<&Path>, args: RegistryArgs) -> anyhow::Result<()> {
    let flags = args.listen.map(|l| vec![flag("registry_server.listen", format!("\"{l}\""), "listen")]).unwrap_or_default();
    let config = load_config_without_subjects(config_path, flags)?;
    run_registry(&config.registry_server).await
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
