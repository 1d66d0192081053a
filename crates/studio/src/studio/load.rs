//! Load mode: mutates the studio at a steady rate with skewed keys, publishing as it goes.
//!
//! The rate is kept by a schedule (mutation n is due at n / rate seconds), not by sleeping a
//! fixed gap, so slow acknowledgements do not lower it until the bound on in-flight
//! acknowledgements is reached; then the loop waits (backpressure), it never drops.

use super::Studio;
use super::generator::{Zipf, random_mutation};
use crate::config::{KeySkew, StudioConfig};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Acknowledgements awaited concurrently before the load loop waits for one.
const MAX_IN_FLIGHT: usize = 4096;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoadReport {
    pub mutations: u64,
    pub events_acked: u64,
    pub failures: u64,
}

/// Runs until `cancel` fires or `max_mutations` (if non-zero) were applied, then waits for the
/// outstanding acknowledgements.
pub async fn run(studio: Arc<Studio>, cfg: &StudioConfig, cancel: CancellationToken) -> LoadReport {
    let rate = cfg.load.mutations_per_sec;
    let mut report = LoadReport::default();
    if rate <= 0.0 {
        return report;
    }
    let zipf = match cfg.load.skew() {
        KeySkew::Uniform => Zipf::uniform(cfg.num_productions),
        KeySkew::Zipf(s) => Zipf::new(cfg.num_productions, s),
    };
    let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(1));
    let mut acks: JoinSet<Result<(), crate::kafka::ProduceError>> = JoinSet::new();
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'outer: loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        while report.mutations < due {
            if cfg.load.max_mutations > 0 && report.mutations >= cfg.load.max_mutations {
                break 'outer;
            }
            let rank = zipf.sample(&mut rng);
            report.mutations += 1;
            let changes = match random_mutation(&studio.store, &mut rng, rank) {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "load mutation rejected");
                    continue;
                }
            };
            match studio.enqueue(&changes).await {
                Ok(deliveries) => {
                    for d in deliveries {
                        while acks.len() >= MAX_IN_FLIGHT {
                            collect(acks.join_next().await, &mut report);
                        }
                        acks.spawn(async move { d.await.map(|_| ()) });
                    }
                }
                Err(e) => {
                    report.failures += 1;
                    tracing::warn!(error = %e, "load mode could not publish");
                }
            }
            while let Some(done) = acks.try_join_next() {
                collect(Some(done), &mut report);
            }
        }
    }
    while let Some(done) = acks.join_next().await {
        collect(Some(done), &mut report);
    }
    tracing::info!(?report, "load finished");
    report
}

fn collect(done: Option<Result<Result<(), crate::kafka::ProduceError>, tokio::task::JoinError>>, report: &mut LoadReport) {
    match done {
        Some(Ok(Ok(()))) => report.events_acked += 1,
        Some(Ok(Err(_))) | Some(Err(_)) => report.failures += 1,
        None => {}
    }
}
