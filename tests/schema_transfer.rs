//! `slate schema export` and `slate schema import` (the binary) move schemas between two
//! registries with their ids, versions, references and compatibility levels: from an in-memory
//! registry into one on PostgreSQL that already holds a subject; a conflicting id fails the
//! import with the subject, version and id named, and the target's mode is put back.

mod common;

use common::*;
use serde_json::{Value, json};
use slate::registry::{CompatibilityLevel, MemoryStore, PgStore, RegistryState, Store, serve};
use std::time::Duration;

struct Server {
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(store: Store) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let state = RegistryState::new(store, CompatibilityLevel::Backward, None);
    let task = tokio::spawn(serve(listener, state, async move {
        let _ = rx.await;
    }));
    Server { url, stop, task }
}

impl Server {
    async fn shutdown(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        request = request.header("content-type", "application/vnd.schemaregistry.v1+json").body(b.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn register(base: &str, subject: &str, body: Value) -> u64 {
    let (status, reply) = call(reqwest::Method::POST, format!("{base}/subjects/{subject}/versions"), Some(body)).await;
    assert_eq!(status, 200, "{subject}: {reply}");
    reply["id"].as_u64().unwrap()
}

async fn slate(args: &[&str]) -> (bool, String, String) {
    run_command(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_slate")).args(["--log", "warn", "schema"]).args(args),
        Duration::from_secs(60),
    )
    .await
}

const MONEY: &str = r#"{"type":"record","name":"Money","namespace":"t.x","fields":[{"name":"cents","type":"long"}]}"#;
const FEE: &str = r#"{"type":"record","name":"Fee","namespace":"t.x","fields":[{"name":"amount","type":"t.x.Money"}]}"#;
const R1: &str = r#"{"type":"record","name":"R","namespace":"t.x","fields":[{"name":"a","type":"int"}]}"#;
const R2: &str =
    r#"{"type":"record","name":"R","namespace":"t.x","fields":[{"name":"a","type":"int"},{"name":"b","type":"int","default":0}]}"#;
const OTHER: &str = r#"{"type":"record","name":"Other","namespace":"t.x","fields":[{"name":"o","type":"string"}]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn export_then_import_keeps_ids_versions_references_and_levels() {
    with_pg_database("slate_transfer", |db_url| async move {
        let source = start(MemoryStore::new().into()).await;
        let s = source.url.clone();
        // Ids in the source start with unrelated schemas so they differ from the target's.
        register(&s, "scratch", json!({"schema": OTHER})).await;
        let money = register(&s, "money", json!({"schema": MONEY})).await;
        let refs = json!([{"name": "t.x.Money", "subject": "money", "version": 1}]);
        let fee = register(&s, "fee", json!({"schema": FEE, "references": refs})).await;
        let r1 = register(&s, "r", json!({"schema": R1})).await;
        let r2 = register(&s, "r", json!({"schema": R2})).await;
        call(reqwest::Method::PUT, format!("{s}/config/r"), Some(json!({"compatibility": "FULL"}))).await;
        call(reqwest::Method::DELETE, format!("{s}/subjects/scratch"), None).await;

        let target = start(PgStore::connect(&db_url).await.unwrap().into()).await;
        let t = target.url.clone();
        register(&t, "already-there", json!({"schema": r#"{"type":"record","name":"Pre","fields":[]}"#})).await;

        let file = std::env::temp_dir().join(format!("{}.json", unique("slate-export")));
        let out = file.display().to_string();
        let (ok, _, err) = slate(&["export", "--registry", &s, "--out", &out]).await;
        assert!(ok, "{err}");
        assert!(err.contains("exported 4 version(s) of 3 subject(s)"), "{err}");
        let (ok, stdout, err) = slate(&["import", &out, "--registry", &t]).await;
        assert!(ok, "{err}");
        assert!(stdout.contains("imported 4 version(s) of 3 subject(s)"), "{stdout}");

        for (subject, version, id) in [("money", 1, money), ("fee", 1, fee), ("r", 1, r1), ("r", 2, r2)] {
            let (_, got) = call(reqwest::Method::GET, format!("{t}/subjects/{subject}/versions/{version}"), None).await;
            let (_, want) = call(reqwest::Method::GET, format!("{s}/subjects/{subject}/versions/{version}"), None).await;
            assert_eq!(got["id"].as_u64(), Some(id), "{subject} v{version}: {got}");
            assert_eq!((got["schema"].clone(), got["references"].clone()), (want["schema"].clone(), want["references"].clone()));
        }
        assert_eq!(call(reqwest::Method::GET, format!("{t}/subjects/money/versions/1/referencedby"), None).await, (200, json!([fee])));
        assert_eq!(call(reqwest::Method::GET, format!("{t}/config/r"), None).await, (200, json!({"compatibilityLevel": "FULL"})));
        assert_eq!(call(reqwest::Method::GET, format!("{t}/mode"), None).await, (200, json!({"mode": "READWRITE"})));
        assert_eq!(call(reqwest::Method::GET, format!("{t}/subjects/scratch/versions"), None).await.0, 404, "deleted versions stay behind");
        let fresh = register(&t, "new", json!({"schema": r#"{"type":"record","name":"New","fields":[]}"#})).await;
        assert!(fresh > r2, "ids allocated after an import continue above the imported ones: {fresh}");
        let (ok, again, err) = slate(&["import", &out, "--registry", &t]).await;
        assert!(ok && again.contains("imported 4"), "an import is repeatable: {again}{err}");

        // A target where an imported id already holds another schema: refused, named, mode restored.
        let clash = start(MemoryStore::new().into()).await;
        let c = clash.url.clone();
        for n in 0..4 {
            register(&c, &format!("c{n}"), json!({"schema": format!(r#"{{"type":"record","name":"C{n}","fields":[]}}"#)})).await;
        }
        let (ok, _, err) = slate(&["import", &out, "--registry", &c]).await;
        assert!(!ok, "the clash must fail");
        assert!(err.contains(&format!("version 1 (id {money})")) && err.contains("42207"), "{err}");
        assert_eq!(call(reqwest::Method::GET, format!("{c}/mode"), None).await, (200, json!({"mode": "READWRITE"})));

        std::fs::remove_file(&file).ok();
        for server in [source, target, clash] {
            server.shutdown().await;
        }
    })
    .await;
}
