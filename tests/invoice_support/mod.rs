//! The `invoice` entity a finance team brings (tests/custom_entity.rs, tests/catalogue_subject.rs):
//! its Avro record and a small source of truth serving it over GraphQL and gRPC.
#![allow(dead_code)]

use axum::extract::State;
use axum::{Json, Router, routing::post};
use serde_json::{Value, json};
use slate::proto::{self, entity::Body, studio_source_server::StudioSourceServer};
use std::path::Path;

pub const INVOICES: usize = 12;

/// The team's record: several Avro types, a nullable field, an enum, a date, money as a long in
/// minor units and an array of line records.
pub fn write_schema(dir: &Path) {
    std::fs::write(dir.join("Invoice.avsc"), invoice_schema().to_string()).unwrap();
}

pub fn invoice_schema() -> Value {
    let production: Value = serde_json::from_str(&std::fs::read_to_string("schemas/avro/Production.avsc").unwrap()).unwrap();
    let meta = production["fields"].as_array().unwrap().iter().find(|f| f["name"] == "_meta").unwrap().clone();
    let schema = json!({"type": "record", "name": "Invoice", "namespace": "acme.billing", "doc": "An invoice to a customer.",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "version", "type": "long"},
        {"name": "customer", "type": "string"},
        {"name": "note", "type": ["null", "string"], "default": null},
        {"name": "status", "type": {"type": "enum", "name": "InvoiceStatus", "symbols": ["OPEN", "PAID", "VOID"]}},
        {"name": "issued_on", "type": {"type": "int", "logicalType": "date"}},
        {"name": "total_cents", "type": "long"},
        {"name": "paid", "type": "boolean"},
        {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "InvoiceLine", "fields": [
            {"name": "sku", "type": "string"}, {"name": "cents", "type": "long"}]}}, "default": []},
        meta,
    ]});
    schema
}

/// The team's source of truth: every invoice at version 2. It already serves `po`, a field only
/// the record's second version (in the registry subject scenario) declares.
pub fn invoice(n: usize) -> Value {
    json!({"id": format!("inv-{n}"), "version": 2, "po": format!("PO-{n}"), "customer": format!("cust-{}", n % 3), "note": if n.is_multiple_of(2) { json!(null) } else { json!("net 30") },
        "status": "OPEN", "issued_on": format!("2027-01-{:02}", n + 1), "total_cents": 1000 + n as i64, "paid": n.is_multiple_of(4),
        "lines": [{"sku": "A", "cents": 1000}, {"sku": "B", "cents": n as i64}]})
}

pub fn lookup(ids: &[String]) -> Vec<Value> {
    ids.iter().filter_map(|id| id.strip_prefix("inv-")?.parse::<usize>().ok().filter(|n| *n < INVOICES).map(invoice)).collect()
}

/// Answers the fetch query and the conventional ids listing `ids(entity, after, first)`.
pub async fn graphql(State(()): State<()>, Json(req): Json<Value>) -> Json<Value> {
    if req["query"].as_str().is_some_and(|q| q.contains("ids(")) {
        let after = req["variables"]["after"].as_str().map(String::from);
        let first = req["variables"]["first"].as_u64().unwrap_or(100) as usize;
        let mut all: Vec<String> = (0..INVOICES).map(|n| format!("inv-{n}")).collect();
        all.sort();
        let page: Vec<String> = all.into_iter().filter(|id| after.as_ref().is_none_or(|a| id > a)).take(first).collect();
        return Json(json!({"data": {"ids": page}}));
    }
    let ids: Vec<String> = req["variables"]["ids"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect();
    Json(json!({"data": {"items": lookup(&ids), "tombstones": []}}))
}

pub struct GrpcSource;

#[tonic::async_trait]
impl proto::studio_source_server::StudioSource for GrpcSource {
    async fn batch_get(
        &self,
        request: tonic::Request<proto::BatchGetRequest>,
    ) -> Result<tonic::Response<proto::BatchGetResponse>, tonic::Status> {
        let req = request.into_inner();
        assert_eq!(req.entity, "invoice");
        let found = lookup(&req.ids)
            .into_iter()
            .map(|v| proto::Entity {
                id: v["id"].as_str().unwrap().into(),
                version: v["version"].as_i64().unwrap(),
                body: Some(Body::Json(v.to_string())),
            })
            .collect();
        Ok(tonic::Response::new(proto::BatchGetResponse { found, missing_ids: vec![], deleted: vec![] }))
    }
}

/// Starts both sources on loopback; returns their addresses and a guard stopping them.
pub async fn start_sources() -> (String, String, tokio_util::sync::CancellationToken) {
    let cancel = tokio_util::sync::CancellationToken::new();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http_addr, grpc_addr) = (http.local_addr().unwrap(), grpc.local_addr().unwrap());
    let app = Router::new().route("/graphql", post(graphql)).with_state(());
    let c = cancel.clone();
    tokio::spawn(async move { axum::serve(http, app).with_graceful_shutdown(c.cancelled_owned()).await });
    let c = cancel.clone();
    tokio::spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(grpc);
        tonic::transport::Server::builder()
            .add_service(StudioSourceServer::new(GrpcSource))
            .serve_with_incoming_shutdown(incoming, c.cancelled_owned())
            .await
    });
    (format!("http://{http_addr}/graphql"), format!("http://{grpc_addr}"), cancel)
}
