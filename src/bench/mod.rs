//! `slate bench enrich`: the enricher against the naive design and a raw pipe, in one run, on a
//! real broker with the studio as source (fixed fetch latency, Zipf-skewed keys).
//!
//! Each mode runs in its own worker process (so peak RSS is its own) twice: a *drain* of a
//! pre-produced backlog (throughput, source calls per event) and a *steady* offered load that
//! every mode can sustain (freshness: event timestamp → enriched record readable by a consumer).
//! Every measurement is repeated; the report quotes medians and ratios measured in the same run.

pub mod report;
pub mod worker;
mod workload;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::progress::Progress;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use worker::{Mode, WorkerResult, WorkerSpec};

#[derive(Debug, Clone, clap::Args)]
pub struct EnrichBenchArgs {
    /// Backlog drained by the slate and raw modes.
    #[arg(long, default_value_t = 20_000)]
    pub events: u64,
    /// Backlog drained by the naive mode (it is slow; throughput is a rate, so this is fair).
    #[arg(long, default_value_t = 1_000)]
    pub naive_events: u64,
    /// Offered rate of the steady phase, events/s (every mode must sustain it).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Length of the steady phase.
    #[arg(long, default_value_t = 5)]
    pub steady_secs: u64,
    /// Source latency injected into every fetch.
    #[arg(long, default_value = "2ms")]
    pub latency: humantime::Duration,
    /// Zipf exponent of the keys.
    #[arg(long, default_value_t = 1.1)]
    pub zipf: f64,
    /// Productions in the studio (keys: about eight per production over six entities).
    #[arg(long, default_value_t = 200)]
    pub productions: usize,
    /// Repetitions; the report quotes medians.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Also run the enricher with `enricher.delivery = "exactly_once"` (the broker must support
    /// transactions), reported as its own mode against the same raw pipe.
    #[arg(long)]
    pub exactly_once: bool,
    /// Print the report as JSON instead of a table (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// No progress output on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// One mode's measurements, medians over the repetitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModeReport {
    pub mode: Mode,
    pub drained_events: u64,
    pub events_per_sec: f64,
    pub source_calls_per_event: f64,
    pub freshness_p50_ms: f64,
    pub freshness_p99_ms: f64,
    pub peak_rss_mib: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot start {0}: {1}")]
    Start(&'static str, String),
    #[error("worker {mode:?} failed: {message}")]
    Worker { mode: Mode, message: String },
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Produce(#[from] crate::kafka::ProduceError),
}

/// Runs the whole benchmark; `exe` is the slate binary (workers are `slate bench worker`).
pub async fn run_enrich(
    cfg: &Config,
    config_path: Option<&std::path::Path>,
    args: &EnrichBenchArgs,
    exe: &std::path::Path,
) -> Result<Vec<ModeReport>, BenchError> {
    let registry = workload::start_registry().await.map_err(|e| BenchError::Start("registry", e.to_string()))?;
    let mut studio_cfg = cfg.clone();
    studio_cfg.studio.publish = false;
    studio_cfg.studio.http_listen = "127.0.0.1:0".parse().expect("literal address");
    studio_cfg.studio.grpc_listen = "127.0.0.1:0".parse().expect("literal address");
    studio_cfg.studio.num_productions = args.productions;
    studio_cfg.studio.faults.latency = *args.latency;
    let studio = crate::studio::server::start(&studio_cfg, Metrics::new()).await.map_err(|e| BenchError::Start("studio", e.to_string()))?;
    let keys = workload::Keys::new(&studio.studio, args.zipf, 7);
    let mut runs: Vec<(Mode, WorkerResult, workload::Freshness)> = Vec::new();
    // Two phases (drain, steady) per mode per round.
    let modes: Vec<Mode> =
        [Mode::Raw, Mode::Naive, Mode::Slate].into_iter().chain(args.exactly_once.then_some(Mode::SlateExactlyOnce)).collect();
    let progress = Progress::stderr("bench enrich", Some((args.repeat * modes.len() * 2) as u64), args.quiet);
    for round in 0..args.repeat {
        for &mode in &modes {
            let events = if mode == Mode::Naive { args.naive_events } else { args.events };
            let spec = |phase: &str, events: u64| WorkerSpec {
                mode,
                input_prefix: format!("bench-{}-{phase}-{round}-{:?}.", workload::run_id(), mode).to_lowercase(),
                output_prefix: format!("bench-{}-{phase}-{round}-{:?}-out.", workload::run_id(), mode).to_lowercase(),
                group: format!("bench-{}-{phase}-{round}-{:?}", workload::run_id(), mode).to_lowercase(),
                registry_url: registry.url.clone(),
                graphql_endpoint: format!("http://{}/graphql", studio.http_addr),
                events,
                timeout_secs: 600,
            };
            let round_of = format!("bench enrich round {}/{} {}", round + 1, args.repeat, mode.name());
            progress.set_label(format!("{round_of}: draining {events} events; phases done"));
            let drain = workload::drain(cfg, config_path, exe, spec("drain", events), &keys).await?;
            progress.inc(1);
            let steady_events = (args.rate * args.steady_secs as f64).round() as u64;
            progress.set_label(format!("{round_of}: steady {} events/s for {}s; phases done", args.rate, args.steady_secs));
            let fresh = workload::steady(cfg, config_path, exe, spec("steady", steady_events), &keys, args.rate).await?;
            progress.inc(1);
            runs.push((mode, drain, fresh));
        }
    }
    progress.set_label("bench enrich: phases done");
    progress.finish();
    studio.shutdown().await;
    registry.stop().await;
    let order = [Mode::Slate, Mode::SlateExactlyOnce, Mode::Naive, Mode::Raw];
    Ok(order.into_iter().filter(|m| modes.contains(m)).map(|m| report::summarize(m, &runs)).collect())
}

/// Default per-call timeout guard for waiting on worker output.
pub(crate) const WORKER_READY_TIMEOUT: Duration = Duration::from_secs(60);
