//! The command line: parse, load config, run the chosen role until Ctrl-C. The binary edge,
//! so errors are `anyhow` with context here and typed everywhere below. One file per command.

mod bench;
mod demo;
mod group;
mod publish;
mod registry;
mod replay;
mod run;
mod schema;
mod shadow;
mod studio;
mod verify;

use crate::catalogue::Subjects;
use crate::config::{Config, Override, env_overrides};
use clap::{Parser, Subcommand};
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
    /// Everything in one process on embedded defaults (in-process broker, registry, studio,
    /// enricher, SQLite and Parquet sinks) with the dashboard and analyst API; Ctrl-C stops it.
    Demo(demo::DemoArgs),
    /// Run the studio: the finance source of truth (GraphQL + gRPC) that publishes change events.
    Studio(studio::StudioArgs),
    /// Run the embedded Confluent-compatible schema registry.
    Registry(registry::RegistryArgs),
    /// Check, register, diff and document the Avro contracts in schemas/avro/.
    Schema(schema::SchemaArgs),
    /// Run a pipeline role.
    Run {
        #[command(subcommand)]
        role: run::Role,
    },
    /// Measure performance against baselines run alongside.
    Bench {
        #[command(subcommand)]
        bench: bench::Bench,
    },
    /// Reconcile the sinks with the source of truth; exits 1 on drift.
    Verify(verify::VerifyArgs),
    /// Publish ID-only change events (one from flags, or JSON lines); exits 1 if any failed.
    Publish(publish::PublishArgs),
    /// Compare a live pipeline with its shadow (`[shadow]`); exits 1 when they differ.
    Shadow {
        #[command(subcommand)]
        action: shadow::ShadowCommand,
    },
    /// Re-publish one UPDATE change event per live id, so every sink re-materializes.
    Replay(replay::ReplayArgs),
    /// A consumer group's offsets and lag; reset a stopped group to rebuild a sink from the log.
    Group {
        #[command(subcommand)]
        action: group::GroupCommand,
    },
    /// Inspect the effective configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
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

/// Loads the config for a command that reads entities: a catalogue entry naming a registry
/// subject is read from the registry first, waiting out an outage until Ctrl-C or SIGTERM.
pub async fn load_config(path: Option<&std::path::Path>, flags: Vec<Override>) -> anyhow::Result<Config> {
    let overrides = overrides(flags)?;
    let (catalogue, registry) = Config::catalogue_and_registry(path, &overrides)?;
    let subjects = if crate::catalogue::subjects::any(&catalogue.entities) {
        let client = crate::enrich::registry_client(&registry)?;
        tokio::select! {
            fetched = crate::catalogue::subjects::fetch(&client, &catalogue.entities) => fetched.map_err(|e| {
                anyhow::anyhow!("invalid config key `catalogue.entities.{}.subject`: {e}", e.entity)
            })?,
            _ = shutdown_signal() => anyhow::bail!("stopped while waiting for the schema registry to read the catalogue's subjects"),
        }
    } else {
        Subjects::none()
    };
    Ok(Config::load_with(path, &overrides, &subjects)?)
}

/// Loads the config for a command that reads no entities (the registry role, which must not
/// wait for itself): catalogue entries naming a subject are left out.
pub fn load_config_without_subjects(path: Option<&std::path::Path>, flags: Vec<Override>) -> anyhow::Result<Config> {
    Ok(Config::load_with(path, &overrides(flags)?, &Subjects::ignored())?)
}

fn overrides(flags: Vec<Override>) -> anyhow::Result<Vec<Override>> {
    let mut overrides = env_overrides(std::env::vars())?;
    overrides.extend(flags);
    Ok(overrides)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Config { action } => {
            let config = load_config(cli.config.as_deref(), Vec::new()).await?;
            match action {
                ConfigAction::Show => print!("{}", config.to_redacted_toml()),
                ConfigAction::Check => println!("config ok"),
            }
            Ok(())
        }
        Command::Demo(args) => demo::run(args).await,
        Command::Studio(args) => studio::run(cli.config.as_deref(), args).await,
        Command::Registry(args) => registry::run(cli.config.as_deref(), args).await,
        Command::Schema(args) => schema::run(cli.config.as_deref(), args).await,
        Command::Run { role } => run::run(cli.config.as_deref(), role).await,
        Command::Bench { bench } => bench::run(cli.config.as_deref(), bench).await,
        Command::Replay(args) => replay::run(cli.config.as_deref(), args).await,
        Command::Group { action } => {
            let code = group::run(cli.config.as_deref(), action).await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Publish(args) => {
            let code = publish::run(cli.config.as_deref(), args).await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Shadow { action } => {
            let code = shadow::run(cli.config.as_deref(), action).await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Verify(args) => {
            let code = verify::run(cli.config.as_deref(), args).await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
    }
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
