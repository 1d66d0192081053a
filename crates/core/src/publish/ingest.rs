//! `slate run ingest`: event ingest over HTTP for services that do not link a Kafka client.
//! A plain HTTP endpoint rather than a Kafka REST proxy: one request shape (the change event),
//! validated against the catalogue, answering only once the broker has the events.
//!
//! `POST /events` takes one event or a JSON array of at most `publish.max_request_events`:
//! - every event is checked first; if any is refused, nothing is published and the answer is
//!   422 listing each refused event's index and reason;
//! - 200 `{"acks": [{uuid, topic, partition, offset}, …]}` once the broker acknowledged every
//!   event (`acks=all`): from then on the events are durable in Kafka;
//! - 503 (with `Retry-After`) when some were not acknowledged: the body lists `acks` and
//!   `failed` (index, uuid, error); retrying the whole request is safe (a repeated uuid is
//!   dropped by the enricher, versions guard the sinks);
//! - 413 for a body over `max_request_events` × the event size limit, 400 for a body that is not
//!   JSON, 401 without the bearer token when `publish.bearer_token` is set.
//!
//! `GET /health` and `GET /metrics` serve the process' health and Prometheus metrics.

use super::{Ack, Publisher};
use crate::event::MAX_EVENT_BYTES;
use crate::metrics::Metrics;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::sync::Arc;

/// Largest request body, whatever `max_request_events` says.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone)]
struct Ingest {
    publisher: Arc<Publisher>,
    metrics: Metrics,
    max_events: usize,
    bearer_token: Option<Arc<str>>,
}

/// The ingest routes over `publisher`.
pub fn router(publisher: Arc<Publisher>, metrics: Metrics, max_events: usize, bearer_token: Option<&str>) -> Router {
    let state = Ingest { publisher, metrics, max_events, bearer_token: bearer_token.map(Arc::from) };
    let body_limit = max_events.saturating_mul(MAX_EVENT_BYTES).clamp(MAX_EVENT_BYTES, MAX_BODY_BYTES);
    Router::new()
        .route("/events", post(events))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_bearer))
        .route("/health", get(|State(s): State<Ingest>| async move { s.metrics.health.response() }))
        .route("/metrics", get(|State(s): State<Ingest>| async move { s.metrics.encode() }))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>, extra: Value) -> Response {
    let mut body = json!({"error": message.into()});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    (status, axum::Json(body)).into_response()
}

async fn require_bearer(State(s): State<Ingest>, request: Request, next: Next) -> Response {
    match &s.bearer_token {
        Some(token) if !crate::auth::bearer_authorized(request.headers(), token) => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "missing or invalid bearer token: send `Authorization: Bearer <publish.bearer_token>`",
                json!({}),
            );
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"slate-ingest\""));
            r
        }
        _ => next.run(request).await,
    }
}

async fn events(State(s): State<Ingest>, body: Bytes) -> Response {
    // Each event keeps its own bytes: checked as sent (size included), parsed once.
    let items: Vec<Box<RawValue>> = match serde_json::from_slice::<&RawValue>(&body) {
        Ok(raw) if raw.get().starts_with('[') => match serde_json::from_str(raw.get()) {
            Ok(items) => items,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}"), json!({})),
        },
        Ok(raw) if raw.get().starts_with('{') => vec![raw.to_owned()],
        Ok(_) => return error(StatusCode::BAD_REQUEST, "expected a change event (JSON object) or an array of them", json!({})),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}"), json!({})),
    };
    if items.is_empty() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "no events in the request", json!({}));
    }
    if items.len() > s.max_events {
        let message = format!("{} events in one request; publish.max_request_events is {}: split the request", items.len(), s.max_events);
        return error(StatusCode::PAYLOAD_TOO_LARGE, message, json!({}));
    }
    let mut checked = Vec::with_capacity(items.len());
    let mut refused = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match s.publisher.parse(item.get().as_bytes()) {
            Ok(event) => checked.push(event),
            Err(r) => refused.push(json!({"index": index, "reason": r.reason(), "message": r.to_string()})),
        }
    }
    if !refused.is_empty() {
        let message = format!("{} of {} events refused; nothing was published", refused.len(), items.len());
        return error(StatusCode::UNPROCESSABLE_ENTITY, message, json!({"refused": refused}));
    }
    let mut acks: Vec<Ack> = Vec::with_capacity(checked.len());
    let mut failed = Vec::new();
    for (index, (event, outcome)) in checked.iter().zip(s.publisher.publish(&checked).await).enumerate() {
        match outcome {
            Ok(ack) => acks.push(ack),
            Err(e) => failed.push(json!({"index": index, "uuid": event.uuid, "error": e.to_string()})),
        }
    }
    if failed.is_empty() {
        return (StatusCode::OK, axum::Json(json!({"acks": acks}))).into_response();
    }
    let message =
        format!("{} of {} events were not acknowledged by the broker; retry them (duplicates are harmless)", failed.len(), checked.len());
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message, json!({"acks": acks, "failed": failed}));
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Serves the ingest routes on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
