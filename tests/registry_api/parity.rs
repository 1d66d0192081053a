//! Behaviours where the embedded registry must answer as Confluent Schema Registry does:
//! `referencedby`, protected references, empty bodies, compatibility against nothing, modes
//! (READONLY, IMPORT with explicit ids), content negotiation and the body size cap.

use super::*;
use slate::registry::MAX_BODY_BYTES;

const PAYMENT_REFS: &str = r#"[{"name": "studio.finance.Money", "subject": "money", "version": 1}]"#;

async fn referenced_by_and_protected_deletes(api: Api) {
    api.register_ok("money", MONEY).await;
    let refs: Value = serde_json::from_str(PAYMENT_REFS).unwrap();
    let (status, body) = api.post("/subjects/payment/versions", json!({"schema": PAYMENT, "references": refs})).await;
    assert_eq!(status, 200, "{body}");
    let payment_id = body["id"].as_u64().unwrap();
    assert_eq!(api.get("/subjects/money/versions/1/referencedby").await, (200, json!([payment_id])));
    assert_eq!(api.get("/subjects/money/versions/latest/referencedby").await, (200, json!([payment_id])));
    assert_error(api.get("/subjects/nope/versions/1/referencedby").await, 40401);
    assert_error(api.get("/subjects/money/versions/9/referencedby").await, 40402);

    // A referenced version cannot go, softly or as part of its subject.
    assert_error(api.delete("/subjects/money/versions/1").await, 42206);
    assert_error(api.delete("/subjects/money").await, 42206);
    assert_eq!(api.get("/subjects/money/versions").await, (200, json!([1])), "nothing was deleted");

    // Once the referrer is gone, so is the protection.
    assert_eq!(api.delete("/subjects/payment/versions/1").await, (200, json!(1)));
    assert_eq!(api.get("/subjects/money/versions/1/referencedby").await, (200, json!([])));
    assert_eq!(api.delete("/subjects/money/versions/1").await, (200, json!(1)));
}

async fn empty_schema_bodies_are_invalid_schemas(api: Api) {
    for body in [json!({}), json!({"schema": ""}), json!({"schema": "  "}), json!({"schemaType": "AVRO"})] {
        assert_error(api.post("/subjects/s/versions", body.clone()).await, 42201);
        assert_error(api.post("/subjects/s", body.clone()).await, 42201);
        assert_error(api.post("/compatibility/subjects/s/versions/latest", body).await, 42201);
    }
    assert_error(api.call(Method::POST, "/subjects/s/versions", Some(json!(["not", "an", "object"]))).await, 400);
    assert_error(api.get("/subjects/s/versions").await, 40401);
}

async fn compatibility_with_no_versions_is_true(api: Api) {
    let body = json!({"schema": record(&[A])});
    assert_eq!(api.post("/compatibility/subjects/fresh/versions/latest", body.clone()).await, (200, json!({"is_compatible": true})));
    assert_eq!(api.post("/compatibility/subjects/fresh/versions", body.clone()).await, (200, json!({"is_compatible": true})));
    assert_error(api.post("/compatibility/subjects/fresh/versions/1", body).await, 40401);
}

async fn read_only_mode(api: Api) {
    assert_eq!(api.get("/mode").await, (200, json!({"mode": "READWRITE"})));
    assert_error(api.get("/mode/s").await, 40409);
    assert_eq!(api.get("/mode/s?defaultToGlobal=true").await, (200, json!({"mode": "READWRITE"})));
    api.register_ok("s", &record(&[A])).await;
    assert_eq!(api.put("/mode/s", json!({"mode": "READONLY"})).await, (200, json!({"mode": "READONLY"})));
    assert_eq!(api.get("/mode/s").await, (200, json!({"mode": "READONLY"})));
    assert_error(api.register("s", &record(&[A, B_DEFAULT])).await, 42205);
    assert_error(api.delete("/subjects/s/versions/1").await, 42205);
    assert_error(api.delete("/subjects/s").await, 42205);
    assert_eq!(api.get("/subjects/s/versions").await, (200, json!([1])), "reads still work");
    api.register_ok("t", &record(&[A])).await;
    assert_error(api.put("/mode", json!({"mode": "SIDEWAYS"})).await, 42204);
    assert_error(api.put("/mode/s", json!({"mode": "read-only"})).await, 42204);
    assert_eq!(api.delete("/mode/s").await, (200, json!({"mode": "READONLY"})));
    api.register_ok("s", &record(&[A, B_DEFAULT])).await;
    assert_error(api.delete("/mode/never-seen").await, 40401);
}

async fn import_mode_keeps_ids_and_versions(api: Api) {
    api.register_ok("existing", &record(&[A])).await;
    let explicit = json!({"schema": record(&[B]), "id": 100, "version": 5});
    assert_error(api.post("/subjects/imp/versions", explicit.clone()).await, 42205);
    assert_error(api.put("/mode", json!({"mode": "IMPORT"})).await, 42205);
    assert_eq!(api.put("/mode?force=true", json!({"mode": "IMPORT"})).await, (200, json!({"mode": "IMPORT"})));

    assert_eq!(api.post("/subjects/imp/versions", explicit.clone()).await, (200, json!({"id": 100})));
    assert_eq!(api.post("/subjects/imp/versions", explicit).await, (200, json!({"id": 100})), "an import is repeatable");
    assert_eq!(api.get("/subjects/imp/versions").await, (200, json!([5])));
    let (_, v5) = api.get("/subjects/imp/versions/5").await;
    assert_eq!((v5["id"].clone(), v5["version"].clone()), (json!(100), json!(5)));
    // Incompatible with version 5 (a new field without default): imports are not checked.
    let unchecked = json!({"schema": record(&[A, B]), "id": 101, "version": 6});
    assert_eq!(api.post("/subjects/imp/versions", unchecked).await, (200, json!({"id": 101})));
    assert_error(api.post("/subjects/imp/versions", json!({"schema": record(&[A, B_DEFAULT]), "id": 100, "version": 7})).await, 42207);
    assert_error(api.post("/subjects/other/versions", json!({"schema": record(&[B]), "id": 102, "version": 1})).await, 42207);

    assert_eq!(api.put("/mode", json!({"mode": "READWRITE"})).await, (200, json!({"mode": "READWRITE"})));
    let next = api.register_ok("fresh", &record(&[r#"{"name":"z","type":"string"}"#])).await;
    assert!(next > 101, "allocated ids continue above imported ones: {next}");
    let (status, body) = api.register("imp", &record(&[A, B, r#"{"name":"c","type":"int","default":1}"#])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(api.get("/subjects/imp/versions").await, (200, json!([5, 6, 7])));
}

async fn content_type_follows_accept(api: Api) {
    api.register_ok("s", &record(&[A])).await;
    let cases = [
        (None, "application/vnd.schemaregistry.v1+json"),
        (Some("*/*"), "application/vnd.schemaregistry.v1+json"),
        (
            Some("application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; q=0.9, application/json; q=0.5"),
            "application/vnd.schemaregistry.v1+json",
        ),
        (Some("application/json"), "application/json"),
    ];
    for (accept, expected) in cases {
        for path in ["/subjects/s/versions/1", "/subjects/nope/versions"] {
            let mut request = api.http.get(format!("{}{path}", api.base));
            if let Some(a) = accept {
                request = request.header("accept", a);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.headers()["content-type"], expected, "Accept {accept:?} on {path}");
            let body: Value = response.json().await.unwrap();
            assert!(body.is_object(), "{body}");
        }
    }
}

async fn oversized_bodies_are_refused_whole(api: Api) {
    let huge = format!(r#"{{"type":"record","name":"R","doc":"{}","fields":[]}}"#, "x".repeat(MAX_BODY_BYTES));
    assert_error(api.register("s", &huge).await, 413);
    assert_error(api.get("/subjects/s/versions").await, 40401);
}

on_both_stores!(
    referenced_by_and_protected_deletes,
    empty_schema_bodies_are_invalid_schemas,
    compatibility_with_no_versions_is_true,
    read_only_mode,
    import_mode_keeps_ids_and_versions,
    content_type_follows_accept,
    oversized_bodies_are_refused_whole,
);
