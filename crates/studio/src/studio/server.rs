//! Runs the studio: HTTP (GraphQL, `/metrics`, `/health`, `/admin/faults`), gRPC and load mode.

use super::kind;
use super::{Studio, graphql, grpc, load};
use crate::config::{Config, FaultConfig};
use crate::kafka::{self, Producer};
use crate::metrics::Metrics;
use async_graphql::http::GraphiQLSource;
use async_graphql_axum::GraphQL;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind {what} to {addr}: {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot create the change topics: {0}")]
    Topics(#[source] rdkafka::error::KafkaError),
    #[error(transparent)]
    Producer(#[from] kafka::ProduceError),
    #[error("cannot seed the studio: {0}")]
    Seed(#[from] super::store::StudioError),
}

/// A started studio. Dropping it does not stop it: call [`RunningStudio::shutdown`].
pub struct RunningStudio {
    pub studio: Arc<Studio>,
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    load: Option<JoinHandle<load::LoadReport>>,
}

impl RunningStudio {
    /// Resolves when load mode finished (immediately if load mode is off).
    pub async fn load_finished(&mut self) -> load::LoadReport {
        match self.load.take() {
            Some(handle) => handle.await.unwrap_or_default(),
            None => load::LoadReport::default(),
        }
    }

    /// Stops the servers and load mode and waits for them.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(load) = self.load.take() {
            let _ = load.await;
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }

    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// Seeds the studio, creates its topics (when publishing), binds both listeners and starts
/// serving. Listeners bind the configured addresses (127.0.0.1 by default; port 0 picks one).
pub async fn start(cfg: &Config, metrics: Metrics) -> Result<RunningStudio, StartError> {
    let s = &cfg.studio;
    let producer = if s.publish {
        if s.create_topics {
            let topics: Vec<String> = kind::ALL.iter().map(|k| k.changes_topic(&s.topic_prefix)).collect();
            kafka::ensure_topics(&cfg.kafka, &topics, s.topic_partitions, s.topic_replication).await.map_err(StartError::Topics)?;
        }
        Some(Producer::try_new(&cfg.kafka, metrics.clone())?)
    } else {
        None
    };
    let studio = Studio::new(s, producer, metrics.clone())?;
    if s.publish && s.snapshot_on_start {
        studio.publish_snapshot().await?;
    }
    let http = TcpListener::bind(s.http_listen).await.map_err(|source| StartError::Bind {
        what: "studio.http_listen",
        addr: s.http_listen,
        source,
    })?;
    let grpc = TcpListener::bind(s.grpc_listen).await.map_err(|source| StartError::Bind {
        what: "studio.grpc_listen",
        addr: s.grpc_listen,
        source,
    })?;
    let (http_addr, grpc_addr) = (http.local_addr().expect("bound"), grpc.local_addr().expect("bound"));
    let cancel = CancellationToken::new();

    let app = router(studio.clone(), metrics);
    let c = cancel.clone();
    let http_task = tokio::spawn(async move {
        if let Err(e) = axum::serve(http, app).with_graceful_shutdown(c.cancelled_owned()).await {
            tracing::error!(error = %e, "studio http server failed");
        }
    });
    let c = cancel.clone();
    let svc = grpc::GrpcService::new(studio.clone());
    let grpc_task = tokio::spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(grpc);
        if let Err(e) =
            tonic::transport::Server::builder().add_service(svc).serve_with_incoming_shutdown(incoming, c.cancelled_owned()).await
        {
            tracing::error!(error = %e, "studio grpc server failed");
        }
    });
    let load = (s.load.mutations_per_sec > 0.0).then(|| {
        let (studio, cfg, c) = (studio.clone(), s.clone(), cancel.clone());
        tokio::spawn(async move { load::run(studio, &cfg, c).await })
    });
    tracing::info!(%http_addr, %grpc_addr, graphql = %format!("http://{http_addr}/graphql"), "studio started");
    Ok(RunningStudio { studio, http_addr, grpc_addr, cancel, tasks: vec![http_task, grpc_task], load })
}

fn router(studio: Arc<Studio>, metrics: Metrics) -> Router {
    let schema = graphql::schema(studio.clone());
    Router::new()
        .route("/graphql", get(graphiql).post_service(GraphQL::new(schema)))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(move || async move { metrics.encode() }))
        .route("/admin/faults", get(get_faults).put(put_faults))
        .with_state(studio)
}

async fn graphiql() -> Html<String> {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
}

async fn get_faults(State(studio): State<Arc<Studio>>) -> Json<FaultConfig> {
    Json(studio.faults.config())
}

/// Replaces the fault settings; the body is the `[studio.faults]` section as JSON.
async fn put_faults(State(studio): State<Arc<Studio>>, body: axum::body::Bytes) -> impl IntoResponse {
    let parsed: Result<crate::config::Config, _> = serde_json::from_slice::<serde_json::Value>(&body)
        .map_err(|e| e.to_string())
        .and_then(|faults| serde_json::from_value(serde_json::json!({ "studio": { "faults": faults } })).map_err(|e| e.to_string()));
    match parsed.and_then(|c| c.validate().map(|_| c).map_err(|e| e.to_string())) {
        Ok(c) => {
            studio.faults.set(c.studio.faults.clone());
            (StatusCode::OK, Json(serde_json::to_value(c.studio.faults).expect("serializes")))
        }
        Err(e) => (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": e }))),
    }
}
