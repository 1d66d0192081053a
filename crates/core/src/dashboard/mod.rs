//! The live dashboard: one HTML page (`/`, no build step, no external assets) polling
//! `/api/stats`, which turns Prometheus metrics into per-stage throughput, consumer lag,
//! freshness p50/p99 per stage, dead letters and retries over a sliding window.
//!
//! Two sources, one page: the demo reads its own process's metrics ([`Dashboard::local`]);
//! `slate run dashboard` scrapes the `/metrics` of separately deployed roles
//! ([`Dashboard::remote`]) and adds them up, so replicas of a role sum into one row. A role that
//! does not answer is listed as down with the error (its numbers then drop out of the totals
//! until it is back, rather than the page silently showing less).
//!
//! With `dashboard.shadow_metrics_urls` set, a shadow pipeline and its validator are scraped the
//! same way into a second history, never summed with the live one, and `/api/stats` carries a
//! `shadow` object (see [`shadow`]); without, `shadow` is `null` and the page shows no panel.
//!
//! A sampler task snapshots the metrics once a second ([`SAMPLE_EVERY`]) whether or not anyone
//! is looking, so rates do not depend on how many browsers poll. The page also drives the demo's
//! launch-date panel when the server mounts `/api/demo/*` (see `crate::demo`), and hides that
//! panel otherwise.

pub mod scrape;
pub mod shadow;
pub mod stats;

use crate::config::DashboardConfig;
use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

const PAGE: &str = include_str!("page.html");

enum Source {
    Local(Box<Metrics>),
    Remote { client: reqwest::Client, urls: Vec<String> },
}

/// One scraped endpoint and how its last scrape went.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Target {
    pub url: String,
    pub up: bool,
    pub error: Option<String>,
}

/// Where the page's header links point (`None`: not served here).
#[derive(Debug, Clone, Serialize)]
pub struct Links {
    pub analyst: Option<String>,
    pub metrics: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Response {
    #[serde(flatten)]
    pub stats: stats::Stats,
    /// Scraped endpoints (empty when the dashboard reads its own process).
    pub targets: Vec<Target>,
    pub links: Links,
    /// Live vs shadow; `null` when no shadow endpoints are configured.
    pub shadow: Option<shadow::ShadowStats>,
}

pub struct Dashboard {
    source: Source,
    links: Links,
    history: Mutex<stats::History>,
    targets: Mutex<Vec<Target>>,
    shadow: Option<Shadow>,
}

/// The shadow side: scraped with the live side's client on the same tick, summed on its own.
struct Shadow {
    urls: Vec<String>,
    history: Mutex<stats::History>,
    targets: Mutex<Vec<Target>>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the scrape client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

impl Dashboard {
    /// Over this process's metrics; the analyst API is served alongside at `/graphql`. Call
    /// [`Dashboard::spawn_sampler`] to start (its first sample is immediate).
    pub fn local(metrics: Metrics) -> Arc<Self> {
        let links = Links { analyst: Some("/graphql".into()), metrics: Some("/metrics".into()) };
        Self::new(Source::Local(Box::new(metrics)), links, None)
    }

    /// Over the configured roles' `/metrics`; call [`Dashboard::spawn_sampler`] to start.
    pub fn remote(cfg: &DashboardConfig) -> Result<Arc<Self>, ClientError> {
        let client = reqwest::Client::builder().timeout(cfg.scrape_timeout).build()?;
        let links = Links { analyst: cfg.analyst_url.clone(), metrics: None };
        let shadow = (!cfg.shadow_metrics_urls.is_empty()).then(|| Shadow {
            urls: cfg.shadow_metrics_urls.clone(),
            history: Mutex::new(stats::History::default()),
            targets: Mutex::new(Vec::new()),
        });
        Ok(Self::new(Source::Remote { client, urls: cfg.metrics_urls.clone() }, links, shadow))
    }

    fn new(source: Source, links: Links, shadow: Option<Shadow>) -> Arc<Self> {
        let (history, targets) = (Mutex::new(stats::History::default()), Mutex::new(Vec::new()));
        Arc::new(Self { source, links, history, targets, shadow })
    }

    fn local_text(&self) -> String {
        match &self.source {
            Source::Local(m) => m.encode(),
            Source::Remote { .. } => String::new(),
        }
    }

    /// One snapshot: this process's metrics, or every endpoint (live and shadow) scraped
    /// concurrently; both sides' snapshots carry the same instant.
    pub async fn sample(&self) {
        let (text, shadow) = match &self.source {
            Source::Local(m) => (m.encode(), None),
            Source::Remote { client, urls } => {
                let shadow = async {
                    match &self.shadow {
                        Some(s) => Some(scrape_all(client, &s.urls).await),
                        None => None,
                    }
                };
                let ((text, targets), shadow) = tokio::join!(scrape_all(client, urls), shadow);
                *self.targets.lock().expect("targets lock poisoned") = targets;
                (text, shadow)
            }
        };
        let at = Instant::now();
        self.history.lock().expect("history lock poisoned").push(at, &text);
        if let (Some(side), Some((text, targets))) = (&self.shadow, shadow) {
            side.history.lock().expect("shadow history lock poisoned").push(at, &text);
            *side.targets.lock().expect("shadow targets lock poisoned") = targets;
        }
    }

    pub fn stats(&self) -> Option<Response> {
        let stats = self.history.lock().expect("history lock poisoned").stats()?;
        let targets = self.targets.lock().expect("targets lock poisoned").clone();
        let shadow = self.shadow.as_ref().map(|side| {
            let history = side.history.lock().expect("shadow history lock poisoned");
            let targets = side.targets.lock().expect("shadow targets lock poisoned").clone();
            shadow::compare(&stats, history.stats().as_ref(), history.latest(), targets)
        });
        Some(Response { stats, targets, links: self.links.clone(), shadow })
    }

    /// Samples every [`SAMPLE_EVERY`] until `cancel`.
    pub fn spawn_sampler(self: &Arc<Self>, cancel: CancellationToken) -> JoinHandle<()> {
        let d = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => d.sample().await,
                    _ = cancel.cancelled() => return,
                }
            }
        })
    }
}

/// Metrics bodies are small (a few hundred series); anything larger is not a slate endpoint.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Every URL concurrently: the bodies of those that answered, concatenated (so replicas add
/// up), and each URL's outcome in configuration order.
async fn scrape_all(client: &reqwest::Client, urls: &[String]) -> (String, Vec<Target>) {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, url) in urls.iter().enumerate() {
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move { (i, scrape_one(&client, &url).await) });
    }
    let mut results = vec![Err("not scraped".to_string()); urls.len()];
    while let Some(Ok((i, r))) = tasks.join_next().await {
        results[i] = r;
    }
    let mut text = String::new();
    let mut targets = Vec::with_capacity(urls.len());
    for (url, r) in urls.iter().zip(results) {
        match r {
            Ok(body) => {
                text.push_str(&body);
                text.push('\n');
                targets.push(Target { url: url.clone(), up: true, error: None });
            }
            Err(e) => targets.push(Target { url: url.clone(), up: false, error: Some(e) }),
        }
    }
    (text, targets)
}

async fn scrape_one(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let body = response.text().await.map_err(|e| e.to_string())?;
    if body.len() > MAX_BODY {
        return Err(format!("body of {} bytes is not a slate /metrics page", body.len()));
    }
    Ok(body)
}

/// `/` (the page), `/api/stats` (JSON), and `/metrics` (this process's, local mode only).
pub fn router(dashboard: Arc<Dashboard>) -> Router {
    let mut r = Router::new().route("/", get(|| async { Html(PAGE) })).route("/api/stats", get(stats_json));
    if matches!(dashboard.source, Source::Local(_)) {
        r = r.route("/metrics", get(metrics_text));
    }
    r.with_state(dashboard)
}

async fn stats_json(State(d): State<Arc<Dashboard>>) -> impl IntoResponse {
    match d.stats() {
        Some(s) => (StatusCode::OK, axum::Json(serde_json::to_value(s).expect("stats serialize"))),
        None => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "error": "no metrics sampled yet" }))),
    }
}

async fn metrics_text(State(d): State<Arc<Dashboard>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], d.local_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shadow_is_null_without_shadow_endpoints_and_listed_apart_with_them() {
        let local = Dashboard::local(Metrics::new());
        local.sample().await;
        let json = serde_json::to_value(local.stats().expect("sampled")).unwrap();
        assert_eq!(json.get("shadow"), Some(&serde_json::Value::Null), "present, and null: {json}");

        // Nothing listens on port 1: every endpoint is down, yet the shadow side has its own rows.
        let cfg = DashboardConfig {
            metrics_urls: vec!["http://127.0.0.1:1/live".into()],
            shadow_metrics_urls: vec!["http://127.0.0.1:1/shadow".into(), "http://127.0.0.1:1/validator".into()],
            scrape_timeout: Duration::from_millis(500),
            ..DashboardConfig::default()
        };
        let remote = Dashboard::remote(&cfg).unwrap();
        remote.sample().await;
        let stats = remote.stats().expect("sampled");
        assert_eq!(stats.targets.iter().map(|t| t.url.as_str()).collect::<Vec<_>>(), ["http://127.0.0.1:1/live"]);
        let shadow = stats.shadow.expect("shadow configured");
        let down: Vec<_> = shadow.targets.iter().map(|t| (t.url.as_str(), t.up)).collect();
        assert_eq!(down, [("http://127.0.0.1:1/shadow", false), ("http://127.0.0.1:1/validator", false)]);
        assert_eq!(shadow.pipelines.iter().map(|p| p.pipeline.as_str()).collect::<Vec<_>>(), ["live", "shadow"]);
        assert!(shadow.sources.is_empty(), "no validator answered: {:?}", shadow.sources);
    }
}
