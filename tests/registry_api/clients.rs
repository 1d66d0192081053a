//! `RegistryClient` (basic, bearer, errors, id cache), server basic auth, and the third-party
//! `schema_registry_converter` encoder/decoder through the embedded server.

use std::time::Duration;

use apache_avro::types::Value as AvroValue;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema};

use slate::registry::{ClientError, RegistryAuth, RegistryClient, SchemaReference};

use super::*;

fn user_pass() -> Option<(String, String)> {
    Some(("alice".to_owned(), "s3cret".to_owned()))
}

fn client(base: &str, auth: RegistryAuth) -> RegistryClient {
    RegistryClient::try_new(base, auth, Duration::from_secs(5)).expect("client")
}

#[tokio::test]
async fn basic_auth_guards_every_route() {
    let server = start(MemoryStore::new().into(), user_pass()).await;
    let http = reqwest::Client::new();
    let url = format!("{}/subjects", server.base);
    let anonymous = http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["error_code"], json!(40101));
    let wrong = http.get(&url).basic_auth("alice", Some("nope")).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let right = http.get(&url).basic_auth("alice", Some("s3cret")).send().await.unwrap();
    assert_eq!(right.status(), 200);

    let authed = client(&server.base, RegistryAuth::Basic { user: "alice".into(), pass: "s3cret".into() });
    let id = authed.register("s", &record(&[A]), &[]).await.expect("register with basic auth");
    assert_eq!(authed.latest("s").await.unwrap().id, id);
    let err = client(&server.base, RegistryAuth::None).latest("s").await.unwrap_err();
    assert!(matches!(err, ClientError::Rejected { status: 401, error_code: 40101, .. }), "{err:?}");
    assert!(!err.is_transient());
    server.stop().await;
}

async fn require_bearer(request: Request, next: Next) -> Response {
    let authorized = request.headers().get("authorization").is_some_and(|value| value == "Bearer tok-123");
    if !authorized {
        return (StatusCode::UNAUTHORIZED, r#"{"error_code":40101,"message":"bearer required"}"#).into_response();
    }
    next.run(request).await
}

#[tokio::test]
async fn client_sends_bearer_token() {
    let state = RegistryState::new(MemoryStore::new(), CompatibilityLevel::Backward, None);
    let server = start_app(router(state).layer(middleware::from_fn(require_bearer))).await;
    let bearer = client(&server.base, RegistryAuth::Bearer("tok-123".into()));
    let id = bearer.register("s", &record(&[A]), &[]).await.expect("register with bearer");
    assert_eq!(bearer.lookup("s", &record(&[A])).await.unwrap(), Some(id));
    let err = client(&server.base, RegistryAuth::None).lookup("s", &record(&[A])).await.unwrap_err();
    assert_eq!(err.error_code(), Some(40101));
    server.stop().await;
}

#[tokio::test]
async fn client_round_trip_errors_and_cache() {
    let server = start(MemoryStore::new().into(), None).await;
    // A trailing slash and a subject needing percent-encoding must both survive.
    let registry = client(&format!("{}/", server.base), RegistryAuth::None);
    let subject = "studio.finance payments/value";
    let id = registry.register(subject, &record(&[A]), &[]).await.unwrap();
    assert_eq!(registry.register(subject, &record(&[A]), &[]).await.unwrap(), id);
    assert_eq!(registry.lookup(subject, &record(&[A])).await.unwrap(), Some(id));
    assert_eq!(registry.lookup(subject, &record(&[B])).await.unwrap(), None);
    assert_eq!(registry.lookup("unknown", &record(&[A])).await.unwrap(), None);
    let latest = registry.latest(subject).await.unwrap();
    assert_eq!((latest.subject.as_str(), latest.version, latest.id), (subject, 1, id));

    let incompatible = registry.register(subject, &record(&[A, B]), &[]).await.unwrap_err();
    assert!(matches!(incompatible, ClientError::Rejected { status: 409, error_code: 409, .. }), "{incompatible:?}");
    let invalid = registry.register(subject, "{}", &[]).await.unwrap_err();
    assert_eq!(invalid.error_code(), Some(42201));
    assert!(!invalid.is_transient());

    api_register_reference(&registry).await;
    let fetched = registry.schema_by_id(id).await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&fetched.schema).unwrap(), serde_json::from_str::<Value>(&record(&[A])).unwrap());
    let missing = registry.schema_by_id(9999).await.unwrap_err();
    assert_eq!(missing.error_code(), Some(40403));

    server.stop().await;
    // Ids are immutable: the cache answers without the server; anything else is transient.
    assert_eq!(registry.schema_by_id(id).await.unwrap(), fetched);
    let down = registry.latest(subject).await.unwrap_err();
    assert!(matches!(down, ClientError::Transport { .. }) && down.is_transient(), "{down:?}");
}

async fn api_register_reference(registry: &RegistryClient) {
    registry.register("money", MONEY, &[]).await.unwrap();
    let references = [SchemaReference { name: "studio.finance.Money".into(), subject: "money".into(), version: 1 }];
    let id = registry.register("payment", PAYMENT, &references).await.unwrap();
    let fetched = registry.schema_by_id(id).await.unwrap();
    assert_eq!(fetched.references, references);
    assert_eq!(registry.latest("payment").await.unwrap().references, references);
}

#[tokio::test]
async fn client_reports_server_errors_as_transient() {
    async fn failing() -> Response {
        (StatusCode::SERVICE_UNAVAILABLE, r#"{"error_code":50003,"message":"forwarding failed"}"#).into_response()
    }
    let server = start_app(axum::Router::new().fallback(failing)).await;
    let err = client(&server.base, RegistryAuth::None).latest("s").await.unwrap_err();
    assert!(matches!(err, ClientError::Unavailable { status: 503, .. }) && err.is_transient(), "{err:?}");
    server.stop().await;
}

const ORDER: &str = r#"{"type":"record","name":"Order","namespace":"studio.finance","fields":[{"name":"id","type":"string"},{"name":"cents","type":"long"}]}"#;

#[tokio::test]
async fn schema_registry_converter_encodes_and_decodes() {
    let server = start(MemoryStore::new().into(), user_pass()).await;
    let settings = || {
        SrSettings::new_builder(server.base.clone())
            .set_basic_authorization("alice", Some("s3cret"))
            .no_proxy()
            .build()
            .expect("sr settings")
    };
    let encoder = AvroEncoder::new(settings());
    let supplied = SuppliedSchema::new(Some("studio.finance.Order".into()), SchemaType::Avro, ORDER.into());
    let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema("orders".into(), false, supplied);
    let fields = vec![("id", AvroValue::String("o-1".into())), ("cents", AvroValue::Long(1250))];
    let bytes = encoder.encode(fields, strategy).await.expect("encode registers the schema");

    let api_client = client(&server.base, RegistryAuth::Basic { user: "alice".into(), pass: "s3cret".into() });
    let latest = api_client.latest("orders-value").await.expect("schema registered under orders-value");
    assert_eq!(bytes[0], 0, "magic byte");
    assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()), latest.id);

    let decoded = AvroDecoder::new(settings()).decode(Some(&bytes)).await.expect("decode");
    let expected = AvroValue::Record(vec![("id".into(), AvroValue::String("o-1".into())), ("cents".into(), AvroValue::Long(1250))]);
    assert_eq!(decoded.value, expected);
    server.stop().await;
}
