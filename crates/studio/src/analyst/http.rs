//! HTTP for the analyst API: `POST /graphql` runs a query, `GET /graphql` serves GraphiQL,
//! `GET /health` checks the database.
//!
//! **Authentication.** With `api.bearer_token` set, every `/graphql` request (queries and the
//! GraphiQL page) needs `Authorization: Bearer <token>`; otherwise the answer is 401 with
//! `WWW-Authenticate: Bearer` and a GraphQL-shaped JSON error, before the body is read. The
//! token is compared without an early exit on the first differing byte, so response timing
//! reveals at most its length. `/health` stays open: it is what probes without credentials call,
//! and it returns no data.
//!
//! The router carries its own state and no fallback, so an embedding server (the demo) can
//! `merge` it. GraphiQL posts to `/graphql`, so mount it at the root.

use super::Analyst;
use super::schema::is_introspection_only;
use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

/// The API's routes: `/graphql` (POST queries, GET GraphiQL) and `/health`.
pub fn router(api: Analyst) -> Router {
    Router::new()
        .route("/graphql", get(graphiql).post(execute))
        .route_layer(middleware::from_fn_with_state(api.clone(), require_bearer))
        .route("/health", get(health))
        .with_state(api)
}

async fn execute(State(api): State<Analyst>, request: GraphQLRequest) -> GraphQLResponse {
    let request = request.into_inner();
    let schema = if is_introspection_only(&request.query) { &api.introspection } else { &api.schema };
    schema.execute(request).await.into()
}

async fn graphiql() -> Html<String> {
    Html(GraphiQLSource::build().endpoint("/graphql").title("slate analyst").finish())
}

/// 200 `ok` when the database answers, 503 with the reason otherwise.
async fn health(State(api): State<Analyst>) -> Response {
    match api.db.ping().await {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{} unavailable: {e}", api.db.backend())).into_response(),
    }
}

async fn require_bearer(State(api): State<Analyst>, request: Request, next: Next) -> Response {
    match &api.bearer_token {
        Some(token) if !slate_core::auth::bearer_authorized(request.headers(), token.expose()) => unauthorized(),
        _ => next.run(request).await,
    }
}

fn unauthorized() -> Response {
    let body = serde_json::json!({
        "data": null,
        "errors": [{
            "message": "missing or invalid bearer token: send `Authorization: Bearer <api.bearer_token>`",
            "extensions": { "code": "UNAUTHENTICATED" }
        }]
    });
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"slate-analyst\""));
    response
}
