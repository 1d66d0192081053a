//! `slate run shadow`: the validator as a long-running role. It follows both sides and compares
//! every `shadow.interval`, exporting the outcome for the dashboard and alerts:
//! `slate_shadow_keys{source,state}`, `slate_shadow_match_ratio{source}` (equal ÷ compared),
//! `slate_shadow_mismatches` (entity-level differences) and `slate_shadow_compares_total`. A
//! comparison that fails (broker, registry or store down) is counted in
//! `slate_shadow_compare_errors_total` and tried again at the next interval.

use super::{Report, ShadowError, Validator};
use crate::config::Config;
use crate::metrics::{Metrics, label, labels};
use tokio_util::sync::CancellationToken;

pub async fn run(config: &Config, metrics: Metrics, cancel: CancellationToken) -> Result<(), ShadowError> {
    let mut validator = Validator::new(config)?;
    loop {
        let started = std::time::Instant::now();
        tokio::select! {
            outcome = validator.compare() => match outcome {
                Ok(report) => {
                    record(&metrics, &report);
                    let topics = report.totals("topics");
                    tracing::info!(
                        ok = report.ok(),
                        match_ratio = ?report.match_ratio("topics"),
                        keys = ?topics,
                        mismatches = report.mismatches.len(),
                        took_ms = started.elapsed().as_millis() as u64,
                        "shadow compared"
                    );
                }
                Err(e) => {
                    metrics.shadow_compare_errors_total.inc();
                    tracing::warn!(error = %e, retry_in = ?config.shadow.interval, "shadow comparison failed");
                }
            },
            _ = cancel.cancelled() => return Ok(()),
        }
        tokio::select! {
            _ = tokio::time::sleep(config.shadow.interval) => {}
            _ = cancel.cancelled() => return Ok(()),
        }
    }
}

/// Sets the gauges to this report (every state of every compared store, zeros included, so a
/// state that emptied reads 0 rather than its last value).
pub fn record(metrics: &Metrics, report: &Report) {
    for store in report.stores() {
        let totals = report.totals(store);
        for state in super::compare::State::ALL {
            metrics
                .shadow_keys
                .get_or_create(&labels("source", store, "state", state.as_str()))
                .set(totals.get(&state).copied().unwrap_or(0) as i64);
        }
        if let Some(ratio) = report.match_ratio(store) {
            metrics.shadow_match_ratio.get_or_create(&label("source", store)).set(ratio);
        }
    }
    metrics.shadow_mismatches.set(report.mismatches.len() as i64);
    metrics.shadow_compares_total.inc();
}
