//! `slate bench …`: benchmarks that print ratios against baselines measured in the same run.

use super::load_config;
use crate::bench::{self, EnrichBenchArgs, worker};
use anyhow::Context as _;
use std::path::Path;

#[derive(clap::Subcommand, Debug)]
pub enum Bench {
    /// The enricher vs a naive one-fetch-per-event design vs a raw consume→produce pipe.
    Enrich(EnrichBenchArgs),
    /// One measured run (started by `bench enrich`; prints `ready` and a JSON result).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        spec: String,
    },
}

pub async fn run(config_path: Option<&Path>, cmd: Bench) -> anyhow::Result<()> {
    let config = load_config(config_path, Vec::new()).await?;
    match cmd {
        Bench::Enrich(args) => {
            let exe = std::env::current_exe().context("cannot find the slate binary for the worker processes")?;
            let reports = bench::run_enrich(&config, config_path, &args, &exe).await.context("benchmark failed")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                print!("{}", bench::report::table(&reports, &args));
            }
            Ok(())
        }
        Bench::Worker { spec } => {
            let spec: worker::WorkerSpec = serde_json::from_str(&spec).context("invalid worker spec")?;
            let result = worker::run(config, spec).await?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
    }
}
