//! `slate replay`: re-publish one UPDATE change event per live id so every sink converges again.

use super::load_config;
use crate::event::EntityName;
use crate::replay::{self, ReplayOptions, ReplaySummary};
use anyhow::Context as _;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Entity to replay (repeatable): production, talent, schedule, budget, cash_flow, payment.
    /// Default: all six.
    #[arg(long = "entity", value_name = "ENTITY")]
    pub entities: Vec<EntityName>,
    /// At most this many events per second (token bucket); 0 = unlimited.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub rate: u64,
    /// List and count the ids only; publish nothing (no broker needed).
    #[arg(long)]
    pub dry_run: bool,
    /// Print the summary as one JSON object on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// No progress output on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

pub async fn run(config_path: Option<&Path>, args: ReplayArgs) -> anyhow::Result<()> {
    let config = load_config(config_path, Vec::new()).await?;
    let opts = ReplayOptions { entities: args.entities, rate: args.rate, dry_run: args.dry_run, quiet: args.quiet };
    let summary = replay::run(&config, &opts).await.context("replay failed")?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print!("{}", table(&summary));
    }
    Ok(())
}

fn table(s: &ReplaySummary) -> String {
    let mut out = String::from("| entity | listed | published |\n|---|---:|---:|\n");
    for (entity, c) in &s.entities {
        out.push_str(&format!("| {entity} | {} | {} |\n", c.listed, c.published));
    }
    let secs = s.elapsed_ms as f64 / 1000.0;
    if s.dry_run {
        out.push_str(&format!("\ndry run: {} ids listed in {secs:.1}s; nothing published\n", s.listed));
    } else {
        out.push_str(&format!(
            "\n{} change events published and acknowledged in {secs:.1}s; the enricher re-fetches each id and every sink converges\n",
            s.published
        ));
    }
    out
}
