//! `slate verify`: drift between the sinks and the source of truth; `--repair` heals it.

use super::load_config;
use crate::event::EntityName;
use crate::verify::{self, EntityDrift};
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Which sinks to check.
    #[arg(long, value_enum, default_value = "all")]
    pub sink: Which,
    /// Re-publish a change event for every drifted id, so the pipeline heals it.
    #[arg(long)]
    pub repair: bool,
    /// Print the report as JSON (stdout holds only the JSON; progress goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// No progress output on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Which {
    All,
    Sql,
    Search,
}

/// Exit code 0 without drift, 1 with drift (after repairing, when asked).
pub async fn run(config_path: Option<&Path>, args: VerifyArgs) -> anyhow::Result<i32> {
    let config = load_config(config_path, Vec::new()).await?;
    let mut reports: BTreeMap<&str, BTreeMap<EntityName, EntityDrift>> = BTreeMap::new();
    if matches!(args.sink, Which::All | Which::Sql) {
        say(args.quiet, &format!("verify: reading the SQL sink ({})", config.sinks.sql.database_url.redacted()));
        let url = &config.sinks.sql.database_url;
        let held = if config.sinks.sql.is_sqlite() {
            // Not created if missing: a wrong path fails instead of reporting every id missing.
            let pool = sqlx::SqlitePool::connect(url.expose()).await.with_context(|| format!("cannot open {}", url.redacted()))?;
            verify::held_sqlite(&pool, config.entities()).await?
        } else {
            let pool = sqlx::PgPool::connect(url.expose()).await.with_context(|| format!("cannot open {}", url.redacted()))?;
            verify::held_sql(&pool, config.entities()).await?
        };
        say(args.quiet, "verify: comparing the SQL sink with the source of truth");
        reports.insert("sql", verify::reconcile(&config, &held, "sql", args.quiet).await?);
    }
    if matches!(args.sink, Which::All | Which::Search) {
        say(args.quiet, &format!("verify: reading the search sink ({})", config.sinks.search.url));
        let held = verify::held_search(&config.sinks.search, config.entities(), args.quiet).await?;
        say(args.quiet, "verify: comparing the search sink with the source of truth");
        reports.insert("search", verify::reconcile(&config, &held, "search", args.quiet).await?);
    }
    let drift: usize = reports.values().flat_map(|r| r.values()).map(EntityDrift::total).sum();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "drift": drift, "sinks": reports }))?);
    } else {
        print_table(&reports);
    }
    if args.repair && drift > 0 {
        // One event per drifted id, even when several sinks drift on it.
        let mut merged: BTreeMap<EntityName, EntityDrift> = BTreeMap::new();
        for report in reports.values() {
            for (entity, d) in report {
                let m = merged.entry(*entity).or_default();
                for item in &d.drifted {
                    if !m.drifted.iter().any(|(id, _)| *id == item.0) {
                        m.drifted.push(item.clone());
                    }
                }
            }
        }
        let n = verify::repair(&config, &merged, args.quiet).await?;
        eprintln!("verify: re-published {n} change events; run verify again once the pipeline caught up");
    }
    Ok(if drift == 0 { 0 } else { 1 })
}

/// A stage message on stderr, unless `--quiet`.
fn say(quiet: bool, message: &str) {
    if !quiet {
        eprintln!("{message}");
    }
}

fn print_table(reports: &BTreeMap<&str, BTreeMap<EntityName, EntityDrift>>) {
    println!("| sink | entity | checked | missing | stale | extra | sample ids |");
    println!("|---|---|---:|---:|---:|---:|---|");
    for (sink, report) in reports {
        for (entity, d) in report {
            let samples: Vec<String> = d.samples.iter().take(5).map(|(id, k)| format!("{id} ({k:?})").to_lowercase()).collect();
            println!("| {sink} | {entity} | {} | {} | {} | {} | {} |", d.checked, d.missing, d.stale, d.extra, samples.join(", "));
        }
    }
    let drift: usize = reports.values().flat_map(|r| r.values()).map(EntityDrift::total).sum();
    println!("\n{}", if drift == 0 { "no drift".to_string() } else { format!("drift: {drift} ids") });
}
