//! The live dashboard: one HTML page (`/`, no build step, no external assets) polling
//! `/api/stats`, which turns the process's metrics into per-stage throughput, consumer lag,
//! freshness p50/p99 per stage, dead letters and retries over a sliding window.
//!
//! A sampler task snapshots the metrics once a second ([`SAMPLE_EVERY`]) whether or not anyone
//! is looking, so rates do not depend on how many browsers poll. The page also drives the demo's
//! launch-date panel when the server mounts `/api/demo/*` (see `crate::demo`), and hides that
//! panel otherwise.

pub mod scrape;
pub mod stats;

use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

const PAGE: &str = include_str!("page.html");

pub struct Dashboard {
    metrics: Metrics,
    history: Mutex<stats::History>,
}

impl Dashboard {
    pub fn new(metrics: Metrics) -> Arc<Self> {
        let d = Arc::new(Self { metrics, history: Mutex::new(stats::History::default()) });
        d.sample();
        d
    }

    fn sample(&self) {
        let text = self.metrics.encode();
        self.history.lock().expect("history lock poisoned").push(Instant::now(), &text);
    }

    pub fn stats(&self) -> Option<stats::Stats> {
        self.history.lock().expect("history lock poisoned").stats()
    }

    /// Samples every [`SAMPLE_EVERY`] until `cancel`.
    pub fn spawn_sampler(self: &Arc<Self>, cancel: CancellationToken) -> JoinHandle<()> {
        let d = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => d.sample(),
                    _ = cancel.cancelled() => return,
                }
            }
        })
    }
}

/// `/` (the page), `/api/stats` (JSON) and `/metrics` (Prometheus text of this process).
pub fn router(dashboard: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/stats", get(stats_json))
        .route("/metrics", get(metrics_text))
        .with_state(dashboard)
}

async fn stats_json(State(d): State<Arc<Dashboard>>) -> impl IntoResponse {
    match d.stats() {
        Some(s) => (StatusCode::OK, axum::Json(serde_json::to_value(s).expect("stats serialize"))),
        None => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "error": "no metrics sampled yet" }))),
    }
}

async fn metrics_text(State(d): State<Arc<Dashboard>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], d.metrics.encode())
}
