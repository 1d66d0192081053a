//! Schema contexts, as Confluent: `:.ctx:subject` names, one id space per context, the
//! `/contexts/.ctx/...` URL prefix, context-level config and mode, references resolved in the
//! referencing context, and clients whose base URL is a context.

use super::*;

const FIN: &str = ":.finance:";

/// The schema text of a response, as JSON (the registry answers its normalized form).
fn schema_of(body: &Value) -> Value {
    serde_json::from_str(body["schema"].as_str().expect("schema")).expect("schema is JSON")
}

fn parsed(schema: &str) -> Value {
    serde_json::from_str(schema).unwrap()
}

fn set(value: Value) -> std::collections::BTreeSet<String> {
    value.as_array().expect("array").iter().map(|v| v.as_str().expect("string").to_owned()).collect()
}

async fn ids_are_per_context(api: Api) {
    assert_eq!(api.register_ok("s", &record(&[A])).await, 1);
    assert_eq!(api.register_ok("t", &record(&[B])).await, 2);
    // Its own id space: the first schema of `.finance` is 1, though its text is id 2 by default.
    assert_eq!(api.register_ok(":.finance:s", &record(&[B])).await, 1);
    assert_eq!(api.register_ok(":.finance:u", &record(&[A])).await, 2);

    let (_, by_default) = api.get("/schemas/ids/1").await;
    assert_eq!(schema_of(&by_default), parsed(&record(&[A])));
    for path in ["/schemas/ids/1?subject=:.finance:", "/schemas/ids/1?subject=:.finance:s", "/contexts/.finance/schemas/ids/1"] {
        let (status, body) = api.get(path).await;
        assert_eq!((status, schema_of(&body)), (200, parsed(&record(&[B]))), "{path}");
    }
    assert_error(api.get("/schemas/ids/3?subject=:.finance:").await, 40403);
    assert_eq!(api.get("/schemas/ids/1/versions").await, (200, json!([{"subject": "s", "version": 1}])));
    assert_eq!(api.get("/contexts/.finance/schemas/ids/1/subjects").await, (200, json!([":.finance:s"])));

    assert_eq!(api.get("/contexts").await, (200, json!([".", ".finance"])));
    assert_eq!(set(api.get("/subjects").await.1), set(json!(["s", "t", ":.finance:s", ":.finance:u"])));
    assert_eq!(set(api.get("/subjects?subjectPrefix=").await.1), set(json!(["s", "t"])));
    assert_eq!(set(api.get("/subjects?subjectPrefix=:.finance:").await.1), set(json!([":.finance:s", ":.finance:u"])));
    assert_eq!(set(api.get("/contexts/.finance/subjects").await.1), set(json!([":.finance:s", ":.finance:u"])));

    let (_, v) = api.get("/contexts/.finance/subjects/s/versions/latest").await;
    assert_eq!((v["subject"].clone(), v["id"].clone(), v["version"].clone()), (json!(":.finance:s"), json!(1), json!(1)));
    let (_, plain) = api.get("/subjects/:.:s/versions/1").await;
    assert_eq!((plain["subject"].clone(), plain["id"].clone()), (json!("s"), json!(1)), "`:.:s` is the default context's s");
    let (status, found) = api.post("/contexts/.finance/subjects/s", json!({"schema": record(&[B])})).await;
    assert_eq!((status, found["id"].clone()), (200, json!(1)), "lookup inside the context: {found}");
    assert_error(api.post("/subjects/s", json!({"schema": record(&[B])})).await, 40403);

    // Deleting in one context leaves the other's same-named subject alone.
    assert_eq!(api.delete("/contexts/.finance/subjects/s").await, (200, json!([1])));
    assert_eq!(api.get("/subjects/s/versions").await, (200, json!([1])));
}

async fn context_levels_and_modes(api: Api) {
    assert_eq!(api.put(&format!("/config/{FIN}"), json!({"compatibility": "NONE"})).await, (200, json!({"compatibility": "NONE"})));
    assert_eq!(api.get("/contexts/.finance/config").await, (200, json!({"compatibilityLevel": "NONE"})));
    // B without a default cannot read A's data: refused under BACKWARD, accepted in `.finance`.
    api.register_ok("s", &record(&[A])).await;
    assert_error(api.register("s", &record(&[B])).await, 409);
    api.register_ok(":.finance:s", &record(&[A])).await;
    api.register_ok(":.finance:s", &record(&[B])).await;
    assert_error(api.get("/config/:.finance:s").await, 40408);
    assert_eq!(api.get("/config/:.finance:s?defaultToGlobal=true").await, (200, json!({"compatibilityLevel": "NONE"})));
    assert_eq!(api.get("/config/s?defaultToGlobal=true").await, (200, json!({"compatibilityLevel": "BACKWARD"})));
    // A subject's own level still wins over its context's.
    api.set_level(":.finance:s", "FULL").await;
    assert_error(api.register(":.finance:s", &record(&[r#"{"name":"c","type":"int"}"#])).await, 409);

    assert_eq!(api.put("/contexts/.finance/mode", json!({"mode": "READONLY"})).await, (200, json!({"mode": "READONLY"})));
    assert_eq!(api.get("/mode/:.finance:t?defaultToGlobal=true").await, (200, json!({"mode": "READONLY"})));
    assert_error(api.register(":.finance:t", &record(&[A])).await, 42205);
    api.register_ok("t", &record(&[A])).await;
    assert_eq!(api.get("/mode").await, (200, json!({"mode": "READWRITE"})), "the global mode is untouched");
}

async fn references_resolve_in_their_context(api: Api) {
    let refs = json!([{"name": "studio.finance.Money", "subject": "money", "version": 1}]);
    api.register_ok(":.finance:money", MONEY).await;
    let (status, body) = api.post("/contexts/.finance/subjects/payment/versions", json!({"schema": PAYMENT, "references": refs})).await;
    assert_eq!(status, 200, "{body}");
    let payment = body["id"].clone();
    // No `money` in the default context: the same reference does not resolve there.
    assert_error(api.post("/subjects/payment/versions", json!({"schema": PAYMENT, "references": refs})).await, 42201);
    assert_eq!(api.get("/subjects/:.finance:money/versions/1/referencedby").await, (200, json!([payment])));
    assert_error(api.delete("/subjects/:.finance:money/versions/1").await, 42206);
    let (_, got) = api.get("/subjects/:.finance:payment/versions/1").await;
    assert_eq!(got["references"], refs, "references come back as written");
}

async fn malformed_context_names_are_refused(api: Api) {
    for subject in [":finance:s", ":.fin%20ance:s", ":.finance", ":.finance:"] {
        let (status, body) = api.register(subject, &record(&[A])).await;
        assert_error((status, body.clone()), 42208);
        assert!(body["message"].as_str().unwrap().contains(":."), "the message shows the form: {body}");
    }
    assert_error(api.get("/contexts/finance/subjects").await, 404);
    assert_eq!(api.get("/subjects").await, (200, json!([])), "nothing was stored");
    assert_eq!(api.get("/contexts").await, (200, json!(["."])));
}

on_both_stores!(ids_are_per_context, context_levels_and_modes, references_resolve_in_their_context, malformed_context_names_are_refused,);

/// A client (ours) whose base URL is a context registers and reads there, and a wire-format id
/// it wrote means its context's schema, not the default context's.
#[tokio::test]
async fn a_client_based_in_a_context_stays_in_it() {
    let server = start(MemoryStore::new().into(), None).await;
    let timeout = std::time::Duration::from_secs(5);
    let plain = slate::registry::RegistryClient::try_new(&server.base, slate::registry::RegistryAuth::None, timeout).unwrap();
    let finance = slate::registry::RegistryClient::try_new(
        &format!("{}/contexts/.finance", server.base),
        slate::registry::RegistryAuth::None,
        timeout,
    )
    .unwrap();
    assert_eq!(plain.register("orders-value", &record(&[A]), &[]).await.unwrap(), 1);
    let id = finance.register("orders-value", &record(&[B]), &[]).await.unwrap();
    assert_eq!(id, 1, "the context's own first id");
    assert_eq!(parsed(&finance.schema_by_id(id).await.unwrap().schema), parsed(&record(&[B])));
    assert_eq!(parsed(&plain.schema_by_id(id).await.unwrap().schema), parsed(&record(&[A])));
    assert_eq!(finance.latest("orders-value").await.unwrap().id, 1);
    assert_eq!(finance.lookup("orders-value", &record(&[B])).await.unwrap(), Some(1));
    let subjects: Value = reqwest::get(format!("{}/subjects", server.base)).await.unwrap().json().await.unwrap();
    assert_eq!(set(subjects), set(json!(["orders-value", ":.finance:orders-value"])));
    server.stop().await;
}

/// A PostgreSQL registry written before contexts existed (global ids, a primary key on `id`, a
/// foreign key from versions) upgrades in place at connect: its schemas keep their ids as the
/// default context's, new ids continue above them, and other contexts start at 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_from_before_contexts_upgrades_in_place() {
    const BEFORE: &str = "
        CREATE TABLE registry_schemas (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            schema_text TEXT NOT NULL, references_json TEXT NOT NULL);
        CREATE UNIQUE INDEX registry_schemas_identity ON registry_schemas (md5(schema_text), md5(references_json));
        CREATE TABLE registry_subject_versions (subject TEXT NOT NULL, version INTEGER NOT NULL,
            schema_id BIGINT NOT NULL REFERENCES registry_schemas (id), deleted BOOLEAN NOT NULL DEFAULT FALSE,
            PRIMARY KEY (subject, version));
        CREATE TABLE registry_config (subject TEXT PRIMARY KEY, compatibility TEXT NOT NULL);";
    let db = create_db().await;
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    conn.execute(BEFORE).await.unwrap();
    let old = record(&[A]);
    let normalized: Value = serde_json::from_str(&old).unwrap();
    sqlx::query("INSERT INTO registry_schemas (schema_text, references_json) VALUES ($1, '[]'), ($2, '[]')")
        .bind(normalized.to_string())
        .bind("{\"type\":\"string\"}")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO registry_subject_versions (subject, version, schema_id) VALUES ('s', 1, 1), ('u', 1, 2)")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);

    let server = start(PgStore::connect(&db.url).await.expect("upgrade at connect").into(), None).await;
    let api = Api::new(&server.base);
    let (_, v1) = api.get("/subjects/s/versions/1").await;
    assert_eq!((v1["id"].clone(), schema_of(&v1)), (json!(1), normalized), "old rows are the default context's");
    assert_eq!(api.register_ok("t", &record(&[B])).await, 3, "new ids continue above the old ones");
    assert_eq!(api.register_ok(":.finance:t", &record(&[B])).await, 1, "another context starts at 1");
    server.stop().await;
    // A second connect (every start runs the DDL) changes nothing.
    let again = start(PgStore::connect(&db.url).await.expect("connect again").into(), None).await;
    assert_eq!(Api::new(&again.base).get("/schemas/ids/3").await.0, 200);
    again.stop().await;
    drop_db(db).await;
}
