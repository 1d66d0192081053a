//! Helpers of the analyst API tests: databases seeded through the real SQL sinks, the API served
//! on a loopback port, GraphQL over HTTP with reqwest.
#![allow(dead_code)]

use crate::common::{ov, unique};
use crate::sink_support::*;
use serde_json::{Value as Json, json};
use slate::analyst::{Analyst, router};
use slate::config::{Config, Override};
use slate::sink::{Sink, SinkRecord};
use std::path::PathBuf;

/// A path in the temp dir (a SQLite file or an audit tree), removed when dropped, also on panic.
pub struct TempPath(pub PathBuf);

impl TempPath {
    pub fn new(prefix: &str) -> Self {
        Self(std::env::temp_dir().join(unique(prefix)))
    }

    pub fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

/// A config whose API reads `database_url` and `audit_dir`, plus `extra` overrides.
pub fn api_config(database_url: &str, audit_dir: &std::path::Path, extra: &[Override]) -> Config {
    let mut o = vec![ov("api.database_url", format!("\"{database_url}\"")), ov("api.audit_dir", format!("\"{}\"", audit_dir.display()))];
    o.extend_from_slice(extra);
    Config::load(None, &o).expect("test config is valid")
}

/// Connects the API with `cfg` and serves its router on a free loopback port; returns the base
/// url. The server lives as long as the test's runtime.
pub async fn serve(cfg: &Config) -> String {
    let api = Analyst::connect(cfg).await.expect("analyst connects");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(api)).await.expect("serve") });
    format!("http://{addr}")
}

/// POSTs `query` and returns (status, body).
pub async fn post(base: &str, query: &str, token: Option<&str>) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Json) {
    let mut request = reqwest::Client::new().post(format!("{base}/graphql")).json(&json!({ "query": query }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.json().await.expect("json body"))
}

/// The whole response of a query expected to answer 200.
pub async fn gql(base: &str, query: &str) -> Json {
    let (status, _, body) = post(base, query, None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The `data` of a query that must succeed.
pub async fn data(base: &str, query: &str) -> Json {
    let body = gql(base, query).await;
    assert!(body.get("errors").is_none(), "query failed: {query}\n{body}");
    body["data"].clone()
}

/// The error messages of a query that must fail.
pub async fn errors(base: &str, query: &str) -> Vec<String> {
    let body = gql(base, query).await;
    let errors = body["errors"].as_array().unwrap_or_else(|| panic!("expected errors for {query}, got {body}"));
    errors.iter().map(|e| e["message"].as_str().unwrap_or_default().to_string()).collect()
}

fn with(mut r: SinkRecord, field: &str, value: Json) -> SinkRecord {
    r.value.as_mut().expect("a live record")[field] = value;
    r
}

fn schedule(id: &str, production: &str, launch: &str) -> SinkRecord {
    let value = json!({"id": id, "version": 1, "production_id": production, "start_date": "2026-01-05", "launch_date": launch});
    rec(slate::studio::kind::SCHEDULE, id, Some(1), Some(value))
}

/// The data the core tests expect, written through a real sink (so the real migrations and
/// version guards are in play). All amounts in cents; see `check_core_numbers` for the sums.
///
/// - prod-a (USD): budget 1,000,000; PAID 300,000, PENDING 250,000, a VOID and a EUR payment
///   that do not count; projection 400k/500k/300k (2027-01..03) = 1,200,000, over budget by
///   projection; a EUR projection of 70,000 in 2027-01 (not in prod-a's USD numbers); launch
///   2027-06-15.
/// - prod-b (USD): budget 500,000; PAID 100,000; projection 200k (2027-02) + 100k (2027-04); within
///   budget; no schedule.
/// - prod-c (USD, RELEASED): no budget, no projection; PENDING 7,000.
/// - prod-d: deleted (tombstone); its budget and its 999,999 projection must appear nowhere.
pub fn core_batch() -> Vec<SinkRecord> {
    let eur_flow = with(cash_flow("cf-a-eur", 1, "prod-a", &[("2027-01", 70_000)]), "currency", json!("EUR"));
    vec![
        production("prod-a", 1, "USD"),
        budget("bud-a", 1, "prod-a", &[("ABOVE_THE_LINE", 600_000), ("POST", 400_000)]),
        cash_flow("cf-a", 1, "prod-a", &[("2027-01", 400_000), ("2027-02", 500_000), ("2027-03", 300_000)]),
        eur_flow,
        payment("pay-a1", 1, "prod-a", 300_000, "PAID", "USD"),
        payment("pay-a2", 1, "prod-a", 250_000, "PENDING", "USD"),
        payment("pay-a3", 1, "prod-a", 999, "VOID", "USD"),
        payment("pay-a4", 1, "prod-a", 50_000, "PAID", "EUR"),
        schedule("sch-a", "prod-a", "2027-06-15"),
        production("prod-b", 1, "USD"),
        budget("bud-b", 1, "prod-b", &[("PRODUCTION", 500_000)]),
        cash_flow("cf-b", 1, "prod-b", &[("2027-02", 200_000), ("2027-04", 100_000)]),
        payment("pay-b1", 1, "prod-b", 100_000, "PAID", "USD"),
        with(production("prod-c", 1, "USD"), "status", json!("RELEASED")),
        payment("pay-c1", 1, "prod-c", 7_000, "PENDING", "USD"),
        production("prod-d", 1, "USD"),
        budget("bud-d", 1, "prod-d", &[("POST", 10)]),
        cash_flow("cf-d", 1, "prod-d", &[("2027-01", 999_999)]),
    ]
}

/// Writes the core batch, then deletes prod-d (a later batch, as the sink would see it).
pub async fn seed_core(sink: &dyn Sink) {
    let outcome = sink.write(&core_batch()).await.expect("seed");
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
    sink.write(&[tombstone(slate::studio::kind::PRODUCTION, "prod-d", Some(2))]).await.expect("delete prod-d");
}

/// prod-1 and prod-2, nothing else: for tests about the API rather than the numbers.
pub fn two_productions() -> Vec<SinkRecord> {
    vec![production("prod-1", 1, "USD"), production("prod-2", 1, "USD")]
}
