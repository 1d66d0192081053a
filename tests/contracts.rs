//! The contracts in `schemas/` hold together: every Avro schema parses, documents every field,
//! carries id/version/_meta, and names the same business fields the studio's GraphQL API
//! serves and the proto defines, so a response maps onto a record by name.

use apache_avro::Schema;
use apache_avro::schema::{RecordField, RecordSchema};
use slate::event::EntityName;
use std::collections::BTreeSet;

fn load(name: &str) -> (serde_json::Value, Schema) {
    let text = std::fs::read_to_string(format!("schemas/avro/{name}.avsc")).unwrap_or_else(|e| panic!("schemas/avro/{name}.avsc: {e}"));
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let schema = Schema::parse_str(&text).unwrap_or_else(|e| panic!("{name}.avsc is not valid Avro: {e}"));
    (json, schema)
}

/// Every record and field, at any depth, has a non-empty `doc`.
fn assert_documented(path: &str, v: &serde_json::Value) {
    match v {
        serde_json::Value::Object(o) => {
            let is_named = matches!(o.get("type").and_then(|t| t.as_str()), Some("record" | "enum"));
            let is_field = path.ends_with(']') && o.contains_key("name");
            if is_named || is_field {
                let doc = o.get("doc").and_then(|d| d.as_str()).unwrap_or("");
                assert!(!doc.trim().is_empty(), "{path} ({}) has no doc", o.get("name").and_then(|n| n.as_str()).unwrap_or("?"));
            }
            for (k, child) in o {
                assert_documented(&format!("{path}.{k}"), child);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                assert_documented(&format!("{path}[{i}]"), child);
            }
        }
        _ => {}
    }
}

fn record(schema: &Schema) -> &RecordSchema {
    match schema {
        Schema::Record(r) => r,
        other => panic!("expected a record, got {other:?}"),
    }
}

fn field_names(fields: &[RecordField]) -> BTreeSet<String> {
    fields.iter().map(|f| f.name.clone()).collect()
}

#[test]
fn change_event_schema_matches_the_rust_type() {
    let (json, schema) = load("ChangeEvent");
    assert_documented("ChangeEvent", &json);
    let r = record(&schema);
    assert_eq!(r.name.fullname(None), "studio.finance.ChangeEvent");
    let names = field_names(&r.fields);
    // The JSON encoding of slate's ChangeEvent uses the same names.
    let mut e = slate::event::ChangeEvent::new(slate::event::ChangeType::Create, slate::studio::kind::BUDGET, "b", 1);
    e.source = Some("s".into());
    e.version = Some(1);
    e.trace = Some("t".into());
    let rust: BTreeSet<String> = serde_json::to_value(&e).unwrap().as_object().unwrap().keys().cloned().collect();
    assert_eq!(names, rust);
}

#[test]
fn entity_schemas_are_documented_and_shaped_alike() {
    for kind in slate::studio::kind::ALL {
        let (json, schema) = load(&record_name(kind));
        assert_documented(&record_name(kind), &json);
        let r = record(&schema);
        assert_eq!(r.name.fullname(None), format!("studio.finance.{}", record_name(kind)));
        let names: Vec<_> = r.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(&names[..2], ["id", "version"], "{kind}");
        assert_eq!(names.last(), Some(&"_meta"), "{kind}");
        let Schema::Record(meta) = &r.fields.last().unwrap().schema else { panic!("{kind}: _meta is a record") };
        assert_eq!(
            field_names(&meta.fields),
            ["change_type", "coalesced_uuids", "event_ts", "event_uuid", "fetched_at"].map(String::from).into()
        );
        assert!(matches!(r.fields[1].schema, Schema::Long), "{kind}: version is a long");
    }
}

/// Business fields of an entity: all but id, version and _meta.
fn business_fields(kind: EntityName) -> BTreeSet<String> {
    let (_, schema) = load(&record_name(kind));
    record(&schema).fields.iter().map(|f| f.name.clone()).filter(|n| !["id", "version", "_meta"].contains(&n.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn graphql_fields_match_the_avro_records() {
    let cfg = slate::config::Config::load(
        None,
        &[
            slate::config::Override { key: "studio.publish".into(), value: "false".into(), origin: "test".into() },
            slate::config::Override { key: "studio.http_listen".into(), value: "\"127.0.0.1:0\"".into(), origin: "test".into() },
            slate::config::Override { key: "studio.grpc_listen".into(), value: "\"127.0.0.1:0\"".into(), origin: "test".into() },
        ],
    )
    .unwrap();
    let studio = slate::studio::server::start(&cfg, slate::metrics::Metrics::new()).await.unwrap();
    let http = reqwest::Client::new();
    for kind in slate::studio::kind::ALL {
        let q = format!(r#"{{ __type(name: "{}") {{ fields {{ name }} }} }}"#, record_name(kind));
        let r: serde_json::Value = http
            .post(format!("http://{}/graphql", studio.http_addr))
            .json(&serde_json::json!({ "query": q }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let gql: BTreeSet<String> = r["data"]["__type"]["fields"]
            .as_array()
            .unwrap_or_else(|| panic!("{r}"))
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .filter(|n| n != "id" && n != "version")
            .collect();
        assert_eq!(gql, business_fields(kind), "GraphQL type {} vs {}.avsc", record_name(kind), record_name(kind));
    }
    studio.shutdown().await;
}

#[test]
fn proto_messages_match_the_avro_records() {
    let proto = std::fs::read_to_string("schemas/proto/studio.proto").unwrap();
    for kind in slate::studio::kind::ALL {
        let start =
            proto.find(&format!("message {} {{", record_name(kind))).unwrap_or_else(|| panic!("no proto message {}", record_name(kind)));
        let body = &proto[start..start + proto[start..].find('}').unwrap()];
        let fields: BTreeSet<String> =
            body.lines().skip(1).filter_map(|l| l.split('=').next()?.split_whitespace().last().map(str::to_string)).collect();
        assert_eq!(fields, business_fields(kind), "proto message {}", record_name(kind));
    }
}

/// `Production` for `production`: the studio's record names are the Pascal-cased entity names.
fn record_name(kind: slate::event::EntityName) -> String {
    slate::catalogue::pascal_case(kind.as_str())
}

/// What the studio's GraphQL API answers to the query slate generates from each record converts
/// into that record (the example source and the example catalogue agree).
#[tokio::test]
async fn studio_graphql_results_convert_into_the_records() {
    use slate::catalogue::Catalogue;
    use slate::enrich::avro::{Meta, encode, to_record};
    use slate::enrich::fetch::Fetched;
    let studio = slate::studio::Studio::new(&Default::default(), None, slate::metrics::Metrics::new()).unwrap();
    let gql = slate::studio::graphql::schema(studio.clone());
    let meta = Meta {
        event_uuid: uuid::Uuid::from_u128(7),
        change_type: slate::event::ChangeType::Update,
        event_ts: 1_700_000_000_000,
        fetched_at: 1_700_000_000_050,
        coalesced_uuids: vec![uuid::Uuid::from_u128(7)],
    };
    for kind in slate::studio::kind::ALL {
        let entity = Catalogue::example(kind);
        let ids = studio.store.list_ids(kind, None, 5);
        assert!(!ids.is_empty(), "{kind}");
        let request = async_graphql::Request::new(slate::enrich::fetch::graphql::default_query(entity))
            .variables(async_graphql::Variables::from_json(serde_json::json!({ "ids": ids })));
        let response = serde_json::to_value(gql.execute(request).await).unwrap();
        let items = response.pointer("/data/items").and_then(serde_json::Value::as_array).unwrap_or_else(|| panic!("{response}"));
        assert_eq!(items.len(), ids.len());
        for item in items {
            let fetched =
                Fetched { id: item["id"].as_str().unwrap().into(), version: item["version"].as_i64().unwrap(), body: item.clone() };
            let record = to_record(&entity.schema, &fetched, &meta).unwrap_or_else(|e| panic!("{kind} {}: {e}", fetched.id));
            encode(&entity.schema, 1, record).unwrap_or_else(|e| panic!("{kind} {}: {e}", fetched.id));
        }
    }
}
