//! Safe schema evolution end to end, through the real broker (`TEST_KAFKA_BOOTSTRAP`) and the
//! embedded registry (in-process, memory store, BACKWARD_TRANSITIVE):
//! Production v1 is registered with `slate schema register`; v2 adds an optional field with a
//! default, passes `slate schema check` and is registered; a v1 and a v2 record go to the topic
//! with Confluent framing; then (a) a v1 reader decodes both, (b) a v2 reader decodes the v1
//! record with the default, and (c) an incompatible v3 is rejected by `slate schema check` and by
//! the registry with 409. Python confluent-kafka's AvroDeserializer reads the same topic.
//! Run through `tests/run`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use slate::config::Config;
use slate::registry::{CompatibilityLevel, MemoryStore, RegistryAuth, RegistryClient, RegistryState, serve};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const V1: &str = include_str!("../schemas/avro/Production.avsc");

/// `fields` of v1 plus `extra`, as schema text.
fn evolve(extra: &[serde_json::Value]) -> String {
    let mut schema: serde_json::Value = serde_json::from_str(V1).unwrap();
    schema["fields"].as_array_mut().unwrap().extend_from_slice(extra);
    serde_json::to_string_pretty(&schema).unwrap()
}

fn rating() -> serde_json::Value {
    json!({"name": "rating", "type": ["null", "int"], "default": null, "doc": "Audience rating out of 10, once known."})
}

/// A directory holding one `Production.avsc` with `text`.
fn schema_dir(root: &Path, name: &str, text: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Production.avsc"), text).unwrap();
    dir
}

/// Runs the built `slate` binary with `args`; (success, stdout, stderr).
async fn slate(prefix: &str, registry: &str, args: &[&str]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_slate"));
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("SLATE_")) {
        cmd.env_remove(key);
    }
    cmd.args(args).env("SLATE_ENRICHER__OUTPUT_TOPIC_PREFIX", prefix).env("SLATE_REGISTRY__URL", registry);
    common::run_command(&mut cmd, Duration::from_secs(60)).await
}

/// A Production record; `rating` set only for the v2 schema.
fn production(schema: &Schema, id: &str, rating: Option<i32>) -> Vec<u8> {
    let event = uuid::Uuid::new_v4();
    let meta = Value::Record(vec![
        ("event_uuid".into(), Value::Uuid(event)),
        ("change_type".into(), Value::Enum(1, "UPDATE".into())),
        ("event_ts".into(), Value::TimestampMillis(1_700_000_000_000)),
        ("fetched_at".into(), Value::TimestampMillis(1_700_000_000_100)),
        ("coalesced_uuids".into(), Value::Array(vec![Value::String(event.to_string())])),
    ]);
    let mut fields = vec![
        ("id".into(), Value::String(id.into())),
        ("version".into(), Value::Long(7)),
        ("title".into(), Value::String(format!("title of {id}"))),
        ("status".into(), Value::Enum(0, "DEVELOPMENT".into())),
        ("genre".into(), Value::String("drama".into())),
        ("currency".into(), Value::String("USD".into())),
        ("budget_id".into(), Value::Union(0, Box::new(Value::Null))),
        ("schedule_id".into(), Value::Union(1, Box::new(Value::String("sch-1".into())))),
        ("_meta".into(), meta),
    ];
    if let Some(rating) = rating {
        fields.push(("rating".into(), Value::Union(1, Box::new(Value::Int(rating)))));
    }
    let writer = GenericDatumWriter::builder(schema).build().expect("writer");
    writer.write_value_to_vec(Value::Record(fields)).expect("record matches its schema")
}

/// Confluent wire format: magic 0, 4-byte big-endian schema id, Avro datum.
fn framed(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

fn field<'a>(record: &'a Value, name: &str) -> Option<&'a Value> {
    let Value::Record(fields) = record else { panic!("not a record: {record:?}") };
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// "subject\tversion N\tid M\tfile" → (N, M).
fn registered(stdout: &str) -> (u32, u32) {
    let columns: Vec<&str> = stdout.lines().next().unwrap_or_default().split('\t').collect();
    let number = |column: Option<&&str>, word: &str| -> u32 {
        column
            .and_then(|c| c.strip_prefix(word))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("bad register output: {stdout}"))
    };
    (number(columns.get(1), "version"), number(columns.get(2), "id"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_field_evolves_safely_and_a_breaking_change_is_rejected() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = RegistryState::new(MemoryStore::new(), CompatibilityLevel::BackwardTransitive, None);
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state, async { stopped.await.unwrap_or(()) }));

    // The scenario runs in its own task so that a failure still stops the server.
    let outcome = tokio::spawn(scenario(url)).await;
    let _ = shutdown.send(());
    server.await.expect("server task").expect("server io");
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

async fn scenario(url: String) {
    let prefix = format!("{}.", common::unique("evo"));
    let topic = format!("{prefix}production.enriched");
    let subject = format!("{topic}-value");
    let root = std::env::temp_dir().join(common::unique("slate-schema-evo"));
    let v2_text = evolve(&[rating()]);
    let v3_text = evolve(&[rating(), json!({"name": "region", "type": "string", "doc": "Sales region."})]);
    let (v1_dir, v2_dir, v3_dir) = (schema_dir(&root, "v1", V1), schema_dir(&root, "v2", &v2_text), schema_dir(&root, "v3", &v3_text));

    // v1, then v2 (checked first), each registered; registering again changes nothing.
    let (ok, out, err) = slate(&prefix, &url, &["schema", "register", "--dir", v1_dir.to_str().unwrap()]).await;
    assert!(ok && out.starts_with(&subject), "register v1 failed:\n{out}\n{err}");
    let (v1_version, v1_id) = registered(&out);
    let (ok, out, err) = slate(&prefix, &url, &["schema", "check", "--dir", v2_dir.to_str().unwrap()]).await;
    assert!(ok, "v2 must pass the check:\n{out}\n{err}");
    assert!(out.contains(&format!("ok    Production.avsc → {subject} (BACKWARD_TRANSITIVE, against version 1)")), "{out}");
    let (ok, out, err) = slate(&prefix, &url, &["schema", "register", "--dir", v2_dir.to_str().unwrap()]).await;
    assert!(ok, "register v2 failed:\n{out}\n{err}");
    let (v2_version, v2_id) = registered(&out);
    assert_eq!((v1_version, v2_version), (1, 2));
    let (ok, out, _) = slate(&prefix, &url, &["schema", "register", "--dir", v2_dir.to_str().unwrap()]).await;
    assert!(ok && registered(&out) == (2, v2_id), "register is idempotent: {out}");
    let (ok, out, err) = slate(&prefix, &url, &["schema", "diff", &subject]).await;
    assert!(ok && out.contains("version 1 → 2, 1 change(s)") && out.contains("+ rating: added, null | int (default null)"), "{out}\n{err}");

    // One v1 and one v2 record on the real broker, framed with their registered ids.
    let mut config = Config::default();
    config.kafka.bootstrap_servers = common::kafka_bootstrap();
    slate::kafka::ensure_topics(&config.kafka, std::slice::from_ref(&topic), 1, 1).await.expect("create topic");
    let (v1, v2) = (Schema::parse_str(V1).unwrap(), Schema::parse_str(&v2_text).unwrap());
    let producer: FutureProducer = slate::kafka::producer_config(&config.kafka).create().expect("producer");
    for (key, payload) in
        [("prod-1", framed(v1_id, &production(&v1, "prod-1", None))), ("prod-2", framed(v2_id, &production(&v2, "prod-2", Some(8))))]
    {
        producer.send(FutureRecord::to(&topic).key(key).payload(&payload), Duration::from_secs(10)).await.expect("produce");
    }

    // Consumers resolve the writer schema by the id in the framing.
    let client = RegistryClient::try_new(&url, RegistryAuth::None, Duration::from_secs(5)).unwrap();
    let messages = tokio::task::spawn_blocking({
        let topic = topic.clone();
        move || common::read_n(&topic, 1, 2, Duration::from_secs(30))
    })
    .await
    .unwrap();
    let mut decoded = Vec::new();
    for (_, payload) in &messages {
        let payload = payload.as_deref().expect("no tombstones here");
        assert_eq!(payload[0], 0, "magic byte");
        let id = u32::from_be_bytes(payload[1..5].try_into().unwrap());
        let writer = Schema::parse_str(&client.schema_by_id(id).await.expect("writer schema by id").schema).unwrap();
        let read = |reader: &Schema| {
            let datum_reader = GenericDatumReader::builder(&writer).reader_schema(reader).build().expect("reader");
            datum_reader.read_value(&mut &payload[5..]).expect("decodes")
        };
        decoded.push((id, read(&v1), read(&v2)));
    }
    assert_eq!(decoded.iter().map(|(id, _, _)| *id).collect::<Vec<_>>(), [v1_id, v2_id]);
    // (a) the v1 reader decodes both records, and does not see the new field.
    for (index, (_, as_v1, _)) in decoded.iter().enumerate() {
        assert_eq!(field(as_v1, "title"), Some(&Value::String(format!("title of prod-{}", index + 1))));
        assert_eq!(field(as_v1, "rating"), None);
    }
    // (b) the v2 reader decodes the v1 record with the default, and the v2 record as written.
    assert_eq!(field(&decoded[0].2, "rating"), Some(&Value::Union(0, Box::new(Value::Null))));
    assert_eq!(field(&decoded[1].2, "rating"), Some(&Value::Union(1, Box::new(Value::Int(8)))));

    // (c) v3 adds a required field: `slate schema check` names it, the rule and the fix...
    let (ok, out, err) = slate(&prefix, &url, &["schema", "check", "--dir", v3_dir.to_str().unwrap()]).await;
    assert!(!ok, "v3 must fail the check:\n{out}");
    assert!(out.contains("FAIL  Production.avsc") && out.contains("field `region` [missing-default]"), "{out}");
    assert!(out.contains("version 1") && out.contains("version 2") && out.contains("add a default"), "{out}");
    assert!(out.contains("written with version 2, version 1"), "one finding naming both versions: {out}");
    assert!(err.contains("schema check failed: 1 finding(s)"), "{err}\n{out}");
    // ...and the registry refuses it with 409, as does `slate schema register`.
    let response = reqwest::Client::new()
        .post(format!("{url}/subjects/{subject}/versions"))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(json!({ "schema": v3_text }).to_string())
        .send()
        .await
        .expect("registry answers");
    assert_eq!(response.status().as_u16(), 409);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error_code"], 409, "{body}");
    let (ok, _, err) = slate(&prefix, &url, &["schema", "register", "--dir", v3_dir.to_str().unwrap()]).await;
    assert!(!ok && err.contains("409"), "{err}");

    // The level is the subject's own when it has one: under NONE the same v3 passes.
    let put = reqwest::Client::new()
        .put(format!("{url}/config/{subject}"))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(json!({"compatibility": "NONE"}).to_string())
        .send()
        .await
        .expect("registry answers");
    assert!(put.status().is_success());
    let (ok, out, err) = slate(&prefix, &url, &["schema", "check", "--dir", v3_dir.to_str().unwrap()]).await;
    assert!(ok && out.contains(&format!("ok    Production.avsc → {subject} (NONE, against version 2)")), "{out}\n{err}");

    // A client nobody here wrote: confluent-kafka's AvroDeserializer, by writer id and with the v1 reader.
    let python = common::env("TEST_PYTHON");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/schema_evolution_read.py");
    let v1_file = v1_dir.join("Production.avsc");
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(script).arg(common::kafka_bootstrap()).arg(&topic).arg(&url).arg(&v1_file).arg("2");
    let (ok, out, err) = common::run_command(&mut cmd, Duration::from_secs(60)).await;
    assert!(ok, "python reader failed:\n{out}\n{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0]["writer"].get("rating").is_none() && lines[1]["writer"]["rating"] == 8, "{out}");
    assert!(lines.iter().all(|line| line["v1"].get("rating").is_none() && line["v1"]["status"] == "DEVELOPMENT"), "{out}");
    assert_eq!(lines[1]["v1"]["title"], "title of prod-2");

    let _ = std::fs::remove_dir_all(&root);
}
