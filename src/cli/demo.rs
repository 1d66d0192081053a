//! `slate demo`: everything in one process on embedded defaults (see `crate::demo`).

use super::shutdown_signal;
use crate::demo::{Demo, DemoOptions, broker::EmbeddedBroker};
use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Dashboard and analyst API listener (loopback by default; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the SQLite database and the Parquet audit tree are written. A previous demo's
    /// `slate.db` and `audit/` there are removed at start (the in-memory source starts over);
    /// they stay after exit for inspection.
    #[arg(long, default_value = "slate-demo")]
    pub data_dir: PathBuf,
    /// Also run the search sink against this Elasticsearch / OpenSearch URL.
    #[arg(long)]
    pub search_url: Option<String>,
    /// The studio's steady stream of finance mutations.
    #[arg(long, default_value_t = 20.0)]
    pub mutations_per_sec: f64,
    /// Seeded productions (each with a budget, schedule, cash flow, talent and payments).
    #[arg(long, default_value_t = 50)]
    pub productions: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let opts = DemoOptions {
        listen: args.listen,
        data_dir: args.data_dir,
        search_url: args.search_url,
        mutations_per_sec: args.mutations_per_sec,
        productions: args.productions,
        seed: args.seed,
    };
    // The broker outlives every client the demo creates: it is dropped after shutdown returns.
    let broker = EmbeddedBroker::start().context("cannot start the embedded broker")?;
    println!("starting slate demo (embedded broker at {}) …", broker.bootstrap_servers());
    let demo = Demo::start(&opts, &broker).await.context("cannot start the demo")?;
    let url = format!("http://{}", demo.dashboard_addr);
    println!();
    println!("  dashboard:        {url}/");
    println!("  analyst GraphQL:  {url}/graphql");
    println!("  metrics:          {url}/metrics");
    println!("  studio GraphQL:   {}  (the source of truth; try a mutation)", demo.studio_graphql);
    println!("  schema registry:  {}", demo.registry_url);
    println!("  SQL sink:         {}  (analyst views: budget_vs_actuals, cash_flow_by_month, …)", demo.sqlite_url);
    println!("  audit sink:       {}/  (Parquet, entity=…/dt=…/)", demo.audit_dir.display());
    println!("  sinks running:    {}", demo.sinks.join(", "));
    println!();
    println!("slate demo is running; Ctrl-C stops it.");
    let failed = tokio::select! {
        _ = shutdown_signal() => None,
        name = watch_sinks(&demo) => Some(name),
    };
    println!("stopping: studio, enricher (drain + commit), sinks (finish batch + commit), servers …");
    let outcome = demo.shutdown().await;
    drop(broker);
    if let Some(name) = failed {
        outcome.with_context(|| format!("the {name} sink stopped"))?;
        anyhow::bail!("the {name} sink stopped unexpectedly");
    }
    outcome.context("demo shutdown")?;
    println!("slate demo stopped cleanly.");
    Ok(())
}

async fn watch_sinks(demo: &Demo) -> &'static str {
    loop {
        if let Some(name) = demo.failed_sink() {
            return name;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
