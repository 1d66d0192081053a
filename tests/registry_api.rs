//! The embedded schema registry's Confluent REST API, against both stores (memory and
//! PostgreSQL from `TEST_DATABASE_URL`, one fresh database per test), plus the crate's
//! `RegistryClient` and the third-party `schema_registry_converter`.
//! Run through `tests/run` (it provides `TEST_DATABASE_URL`).

use std::future::Future;

use reqwest::{Method, Url};
use serde_json::{Value, json};
use slate::registry::{CompatibilityLevel, MemoryStore, PgStore, RegistryState, Store, router};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Clone, Copy)]
enum Backend {
    Memory,
    Postgres,
}

/// A fresh database on the `TEST_DATABASE_URL` server, dropped by `drop_db`.
struct TestDb {
    admin_url: String,
    name: String,
    url: String,
}

async fn create_db() -> TestDb {
    let admin_url =
        std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL is not set: run the suite through `tests/run` (it starts PostgreSQL)");
    let name = format!("slate_reg_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await.expect("connect to TEST_DATABASE_URL");
    admin.execute(AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create test database");
    let mut url = Url::parse(&admin_url).expect("TEST_DATABASE_URL is a url");
    url.set_path(&name);
    TestDb { admin_url, name, url: url.to_string() }
}

async fn drop_db(db: TestDb) {
    let mut admin = PgConnection::connect(&db.admin_url).await.expect("connect to TEST_DATABASE_URL");
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name);
    admin.execute(AssertSqlSafe(sql)).await.expect("drop test database");
}

/// A registry server on 127.0.0.1:0, stopped by `stop`.
struct TestServer {
    base: String,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(store: Store, auth: Option<(String, String)>) -> TestServer {
    start_app(router(RegistryState::new(store, CompatibilityLevel::Backward, auth))).await
}

async fn start_app(app: axum::Router) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(async { stopped.await.unwrap_or(()) }).await });
    TestServer { base, shutdown, task }
}

impl TestServer {
    async fn stop(self) {
        let _ = self.shutdown.send(());
        self.task.await.expect("server task").expect("server io");
    }
}

/// Runs `scenario` against a fresh server on `backend`, then stops it (and drops its database).
/// A failing scenario still stops the server and drops its database before the panic resumes.
async fn run<F, Fut>(backend: Backend, scenario: F)
where
    F: FnOnce(Api) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (store, db_opt): (Store, Option<TestDb>) = match backend {
        Backend::Memory => (MemoryStore::new().into(), None),
        Backend::Postgres => {
            let db = create_db().await;
            let store = PgStore::connect(&db.url).await.expect("connect PgStore");
            (store.into(), Some(db))
        }
    };
    let server = start(store, None).await;
    let outcome = tokio::spawn(scenario(Api::new(&server.base))).await;
    server.stop().await;
    if let Some(db) = db_opt {
        drop_db(db).await;
    }
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(base: &str) -> Self {
        Api { http: reqwest::Client::new(), base: base.to_owned() }
    }

    async fn call(&self, method: Method, path: &str, body_opt: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body_opt {
            request = request.header("content-type", "application/vnd.schemaregistry.v1+json").body(body.to_string());
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        if status != 401 {
            assert_eq!(response.headers()["content-type"], "application/vnd.schemaregistry.v1+json", "content type of {path}");
        }
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, None).await
    }

    async fn register(&self, subject: &str, schema: &str) -> (u16, Value) {
        self.post(&format!("/subjects/{subject}/versions"), json!({"schema": schema})).await
    }

    async fn register_ok(&self, subject: &str, schema: &str) -> u64 {
        let (status, body) = self.register(subject, schema).await;
        assert_eq!(status, 200, "register in {subject}: {body}");
        body["id"].as_u64().expect("id")
    }

    async fn set_level(&self, subject: &str, level: &str) {
        let (status, body) = self.put(&format!("/config/{subject}"), json!({"compatibility": level})).await;
        assert_eq!((status, body), (200, json!({"compatibility": level})));
    }
}

/// A record `R` with the given fields (JSON fragments).
fn record(fields: &[&str]) -> String {
    format!(r#"{{"type":"record","name":"R","namespace":"t","fields":[{}]}}"#, fields.join(","))
}

const A: &str = r#"{"name":"a","type":"int"}"#;
const B_DEFAULT: &str = r#"{"name":"b","type":"int","default":0}"#;
const B: &str = r#"{"name":"b","type":"int"}"#;

fn assert_error(response: (u16, Value), code: u64) {
    let (status, body) = response;
    assert_eq!(body["error_code"], json!(code), "body: {body}");
    assert_eq!(u64::from(status), if code >= 1000 { code / 100 } else { code }, "body: {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "body: {body}");
}

async fn register_versions_and_fetch(api: Api) {
    assert_eq!(api.get("/").await, (200, json!({})));
    let v1 = record(&[A]);
    let id1 = api.register_ok("s1", &v1).await;
    let spaced = v1.replace(',', " ,\n ");
    assert_eq!(api.register_ok("s1", &spaced).await, id1, "same schema, same id");
    assert_eq!(api.get("/subjects/s1/versions").await, (200, json!([1])), "no new version");
    let id2 = api.register_ok("s1", &record(&[A, B_DEFAULT])).await;
    assert_ne!(id1, id2);
    assert_eq!(api.register_ok("s2", &v1).await, id1, "global id reused across subjects");
    assert_eq!(api.get("/subjects").await, (200, json!(["s1", "s2"])));
    assert_eq!(api.get("/subjects/s1/versions").await, (200, json!([1, 2])));

    let (status, latest) = api.get("/subjects/s1/versions/latest").await;
    assert_eq!(status, 200);
    assert_eq!((latest["subject"].clone(), latest["version"].clone(), latest["id"].as_u64()), (json!("s1"), json!(2), Some(id2)));
    let (_, first) = api.get("/subjects/s1/versions/1").await;
    let schema: Value = serde_json::from_str(first["schema"].as_str().unwrap()).unwrap();
    assert_eq!(schema, serde_json::from_str::<Value>(&v1).unwrap());
    assert_eq!(api.get("/subjects/s1/versions/1/schema").await, (200, schema.clone()));

    let (status, by_id) = api.get(&format!("/schemas/ids/{id1}")).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(by_id["schema"].as_str().unwrap()).unwrap(), schema);
    assert!(by_id.get("schemaType").is_none() && by_id.get("references").is_none(), "{by_id}");
    let (_, usages) = api.get(&format!("/schemas/ids/{id1}/versions")).await;
    assert_eq!(usages, json!([{"subject": "s1", "version": 1}, {"subject": "s2", "version": 1}]));

    assert_error(api.get("/schemas/ids/9999").await, 40403);
    assert_error(api.get("/subjects/nope/versions").await, 40401);
    assert_error(api.get("/subjects/s1/versions/99").await, 40402);
    assert_error(api.get("/subjects/s1/versions/abc").await, 42202);
    assert_error(api.get("/subjects/s1/versions/0").await, 42202);
}

async fn lookup(api: Api) {
    let id = api.register_ok("s", &record(&[A])).await;
    let (status, found) = api.post("/subjects/s", json!({"schema": record(&[A])})).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!((found["subject"].clone(), found["version"].clone(), found["id"].as_u64()), (json!("s"), json!(1), Some(id)));
    assert_error(api.post("/subjects/s", json!({"schema": record(&[A, B])})).await, 40403);
    assert_error(api.post("/subjects/other", json!({"schema": record(&[A])})).await, 40401);
}

async fn backward_rejects_new_field_without_default(api: Api) {
    api.register_ok("s", &record(&[A])).await;
    assert_error(api.register("s", &record(&[A, B])).await, 409);
    assert_eq!(api.get("/subjects/s/versions").await, (200, json!([1])));
    api.register_ok("s", &record(&[A, B_DEFAULT])).await;
}

async fn forward_rejects_removing_field_without_default(api: Api) {
    api.set_level("s", "FORWARD").await;
    api.register_ok("s", &record(&[A, B])).await;
    assert_error(api.register("s", &record(&[A])).await, 409);
    api.register_ok("s", &record(&[A, B, r#"{"name":"c","type":"string"}"#])).await;
}

async fn full_requires_both_directions(api: Api) {
    api.set_level("s", "FULL").await;
    api.register_ok("s", &record(&[A])).await;
    assert_error(api.register("s", &record(&[A, B])).await, 409);
    api.register_ok("s", &record(&[A, B_DEFAULT])).await;
    // Drops b and adds c, both with defaults: readable in both directions.
    api.register_ok("s", &record(&[A, r#"{"name":"c","type":"long","default":1}"#])).await;
    assert_eq!(api.get("/subjects/s/versions").await, (200, json!([1, 2, 3])));
    assert_error(api.register("s", &record(&[r#"{"name":"c","type":"long","default":1}"#])).await, 409);
}

async fn transitive_checks_every_version(api: Api) {
    let v3 = record(&[A, B]);
    for (subject, level) in [("plain", "BACKWARD"), ("transitive", "BACKWARD_TRANSITIVE")] {
        api.set_level(subject, level).await;
        api.register_ok(subject, &record(&[A])).await;
        api.register_ok(subject, &record(&[A, B_DEFAULT])).await;
    }
    api.register_ok("plain", &v3).await;
    assert_error(api.register("transitive", &v3).await, 409);
}

async fn compatibility_endpoint(api: Api) {
    api.register_ok("s", &record(&[A])).await;
    let ok = json!({"schema": record(&[A, B_DEFAULT])});
    let bad = json!({"schema": record(&[A, B])});
    assert_eq!(api.post("/compatibility/subjects/s/versions/latest", ok.clone()).await, (200, json!({"is_compatible": true})));
    assert_eq!(api.post("/compatibility/subjects/s/versions/1", bad.clone()).await, (200, json!({"is_compatible": false})));
    let (_, verbose) = api.post("/compatibility/subjects/s/versions/latest?verbose=true", bad.clone()).await;
    assert_eq!(verbose["is_compatible"], json!(false));
    assert!(!verbose["messages"].as_array().unwrap().is_empty(), "{verbose}");
    let (_, verbose_ok) = api.post("/compatibility/subjects/s/versions/latest?verbose=True", ok.clone()).await;
    assert_eq!(verbose_ok, json!({"is_compatible": true, "messages": []}));
    assert_eq!(api.post("/compatibility/subjects/s/versions", bad.clone()).await, (200, json!({"is_compatible": false})));
    assert_error(api.post("/compatibility/subjects/s/versions/7", ok.clone()).await, 40402);
    assert_error(api.post("/compatibility/subjects/none/versions/1", ok).await, 40401);
    api.set_level("s", "NONE").await;
    assert_eq!(api.post("/compatibility/subjects/s/versions/latest", bad).await, (200, json!({"is_compatible": true})));
}

async fn soft_and_permanent_delete(api: Api) {
    api.set_level("s", "NONE").await;
    let id1 = api.register_ok("s", &record(&[A])).await;
    api.register_ok("s", &record(&[B])).await;
    assert_error(api.delete("/subjects/s/versions/1?permanent=true").await, 40407);
    assert_eq!(api.delete("/subjects/s/versions/1").await, (200, json!(1)));
    assert_error(api.get("/subjects/s/versions/1").await, 40402);
    assert_eq!(api.get("/subjects/s/versions/1?deleted=true").await.0, 200);
    assert_eq!(api.get("/subjects/s/versions").await, (200, json!([2])));
    assert_eq!(api.get("/subjects/s/versions?deleted=true").await, (200, json!([1, 2])));
    assert_error(api.post("/subjects/s", json!({"schema": record(&[A])})).await, 40403);
    assert_error(api.delete("/subjects/s/versions/1").await, 40406);
    assert_eq!(api.delete("/subjects/s/versions/1?permanent=true").await, (200, json!(1)));
    assert_error(api.get("/subjects/s/versions/1?deleted=true").await, 40402);
    assert_eq!(api.get(&format!("/schemas/ids/{id1}")).await.0, 200, "ids outlive versions");

    assert_error(api.delete("/subjects/s?permanent=true").await, 40405);
    assert_eq!(api.delete("/subjects/s").await, (200, json!([2])));
    assert_eq!(api.get("/subjects").await, (200, json!([])));
    assert_eq!(api.get("/subjects?deleted=true").await, (200, json!(["s"])));
    assert_error(api.get("/subjects/s/versions").await, 40401);
    assert_error(api.get("/subjects/s/versions/latest").await, 40401);
    assert_error(api.delete("/subjects/s").await, 40404);
    assert_eq!(api.delete("/subjects/s?permanent=true").await, (200, json!([2])));
    assert_eq!(api.get("/subjects?deleted=true").await, (200, json!([])));
    assert_error(api.delete("/subjects/s").await, 40401);

    let id = api.register_ok("t", &record(&[A])).await;
    api.delete("/subjects/t").await;
    assert_eq!(api.register_ok("t", &record(&[A])).await, id);
    assert_eq!(api.get("/subjects/t/versions").await, (200, json!([2])), "numbering continues");
}

async fn config(api: Api) {
    assert_eq!(api.get("/config").await, (200, json!({"compatibilityLevel": "BACKWARD"})));
    assert_eq!(api.put("/config", json!({"compatibility": "FULL"})).await, (200, json!({"compatibility": "FULL"})));
    assert_eq!(api.get("/config").await, (200, json!({"compatibilityLevel": "FULL"})));
    assert_error(api.get("/config/s").await, 40408);
    assert_eq!(api.get("/config/s?defaultToGlobal=true").await, (200, json!({"compatibilityLevel": "FULL"})));
    api.set_level("s", "NONE").await;
    assert_eq!(api.get("/config/s").await, (200, json!({"compatibilityLevel": "NONE"})));
    assert_error(api.put("/config/s", json!({"compatibility": "SIDEWAYS"})).await, 42203);
    assert_error(api.put("/config", json!({"compatibility": "SIDEWAYS"})).await, 42203);
    assert_eq!(api.delete("/config/s").await, (200, json!({"compatibilityLevel": "NONE"})));
    assert_error(api.get("/config/s").await, 40408);
    assert_error(api.delete("/config/unknown").await, 40401);
    assert_eq!(api.delete("/config").await, (200, json!({"compatibilityLevel": "FULL"})));
    assert_eq!(api.get("/config").await, (200, json!({"compatibilityLevel": "BACKWARD"})));
}

const MONEY: &str = r#"{"type":"record","name":"Money","namespace":"studio.finance","fields":[{"name":"cents","type":"long"},{"name":"currency","type":"string"}]}"#;
const PAYMENT: &str = r#"{"type":"record","name":"Payment","namespace":"studio.finance","fields":[{"name":"id","type":"string"},{"name":"amount","type":"Money"}]}"#;
const LEDGER: &str = r#"{"type":"record","name":"Ledger","namespace":"studio.finance","fields":[{"name":"payments","type":{"type":"array","items":"Payment"}}]}"#;

async fn references(api: Api) {
    api.register_ok("money", MONEY).await;
    let money_ref = json!([{"name": "studio.finance.Money", "subject": "money", "version": 1}]);
    assert_error(api.register("payment", PAYMENT).await, 42201);
    let missing = json!([{"name": "studio.finance.Money", "subject": "money", "version": 2}]);
    assert_error(api.post("/subjects/payment/versions", json!({"schema": PAYMENT, "references": missing})).await, 42201);
    let (status, body) =
        api.post("/subjects/payment/versions", json!({"schema": PAYMENT, "schemaType": "AVRO", "references": money_ref})).await;
    assert_eq!(status, 200, "{body}");
    let payment_id = body["id"].as_u64().unwrap();
    let (_, by_id) = api.get(&format!("/schemas/ids/{payment_id}")).await;
    assert_eq!(by_id["references"], money_ref);
    let (_, latest) = api.get("/subjects/payment/versions/latest").await;
    assert_eq!(latest["references"], money_ref);
    let (status, found) = api.post("/subjects/payment", json!({"schema": PAYMENT, "references": money_ref})).await;
    assert_eq!((status, found["id"].as_u64()), (200, Some(payment_id)));

    // Ledger names only Payment; Money is resolved through Payment's own references.
    let payment_ref = json!([{"name": "studio.finance.Payment", "subject": "payment", "version": 1}]);
    let (status, body) = api.post("/subjects/ledger/versions", json!({"schema": LEDGER, "references": payment_ref})).await;
    assert_eq!(status, 200, "{body}");
}

async fn invalid_schemas(api: Api) {
    let (status, body) = api.register("s", r#"{"type":"record","name":"R"}"#).await;
    assert_error((status, body.clone()), 42201);
    assert!(body["message"].as_str().unwrap().contains("invalid avro schema"), "{body}");
    assert_error(api.register("s", "{not json").await, 42201);
    assert_error(api.register("s", r#"{"type":"nope"}"#).await, 42201);
    assert_error(api.post("/subjects/s/versions", json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"})).await, 42201);
    assert_error(api.call(Method::POST, "/subjects/s/versions", Some(json!("just a string"))).await, 400);
    assert_error(api.get("/subjects/s/versions").await, 40401);
}

async fn concurrent_registrations_share_one_id(api: Api) {
    let schema = record(&[A]);
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let (api, schema) = (api.clone(), schema.clone());
            tokio::spawn(async move { api.register_ok(if n % 2 == 0 { "even" } else { "odd" }, &schema).await })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one id: {ids:?}");
    assert_eq!(api.get("/subjects/even/versions").await, (200, json!([1])));
    assert_eq!(api.get("/subjects/odd/versions").await, (200, json!([1])));
}

macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::run(super::Backend::Memory, super::$scenario).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::run(super::Backend::Postgres, super::$scenario).await })*
        }
    };
}

on_both_stores!(
    register_versions_and_fetch,
    lookup,
    backward_rejects_new_field_without_default,
    forward_rejects_removing_field_without_default,
    full_requires_both_directions,
    transitive_checks_every_version,
    compatibility_endpoint,
    soft_and_permanent_delete,
    config,
    references,
    invalid_schemas,
    concurrent_registrations_share_one_id,
);

/// Clients (ours and third-party) and basic auth; store-independent, memory store only.
#[path = "registry_api/clients.rs"]
mod clients;

/// Where Confluent's behaviour is subtle: references, modes, empty bodies, content types.
#[path = "registry_api/parity.rs"]
mod parity;

/// Schema contexts: per-context ids, the `/contexts/.ctx` prefix, context config and mode.
#[path = "registry_api/contexts.rs"]
mod contexts;
