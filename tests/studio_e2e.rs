//! The studio end to end on the real broker: a mutation publishes ID-only events that both
//! rdkafka and Python confluent-kafka read back, and GraphQL (reqwest and curl) and gRPC
//! (tonic and grpcurl) then serve the new version.

mod common;

use common::*;
use slate::event::{ChangeEvent, ChangeType};
use slate::metrics::Metrics;
use slate::proto::{BatchGetRequest, entity::Body, studio_source_client::StudioSourceClient};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn launch_date_change_flows_to_kafka_and_both_apis() {
    let cfg = studio_config(&[]);
    let studio = slate::studio::server::start(&cfg, Metrics::new()).await.expect("studio starts");
    let http = reqwest::Client::new();

    let before = graphql(&http, studio.http_addr, r#"{ cash_flows(ids: ["cf-000001"]) { version months { month amount } } }"#).await;
    let resp = graphql(
        &http,
        studio.http_addr,
        r#"mutation { reschedule(schedule_id: "sch-000001", launch_date: "2031-03-01") { id changes { entity id type version } } }"#,
    )
    .await;
    assert!(resp.get("errors").is_none(), "{resp}");
    let changes = &resp["data"]["reschedule"]["changes"];
    assert_eq!(changes[0], serde_json::json!({"entity": "schedule", "id": "sch-000001", "type": "UPDATE", "version": 2}));
    assert_eq!(changes[1], serde_json::json!({"entity": "cash_flow", "id": "cf-000001", "type": "UPDATE", "version": 2}));

    // The events are on Kafka (acknowledged before the mutation returned), ID-only, keyed by id.
    for (kind, id) in [(slate::studio::kind::SCHEDULE, "sch-000001"), (slate::studio::kind::CASH_FLOW, "cf-000001")] {
        let topic = kind.changes_topic(&cfg.studio.topic_prefix);
        let msgs = read_n(&topic, 2, 1, WAIT);
        assert_eq!(msgs[0].0, id.as_bytes());
        let payload = msgs[0].1.as_deref().expect("a change event is not a tombstone");
        let event = ChangeEvent::decode_json(payload, Some(&msgs[0].0), None).expect("decodes");
        assert_eq!((event.change_type, event.entity, event.id.as_str(), event.version), (ChangeType::Update, kind, id, Some(2)));
        let raw: serde_json::Value = serde_json::from_slice(payload).unwrap();
        let mut keys: Vec<_> = raw.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["entity", "id", "source", "trace", "ts", "type", "uuid", "version"], "ID-only: no business fields");
    }

    // GraphQL serves the new state; the projection moved with the launch date.
    let after = graphql(&http, studio.http_addr, r#"{ schedules(ids: ["sch-000001", "sch-424242"]) { id version launch_date } cash_flows(ids: ["cf-000001"]) { version months { month amount } } }"#).await;
    assert_eq!(after["data"]["schedules"], serde_json::json!([{"id": "sch-000001", "version": 2, "launch_date": "2031-03-01"}]));
    assert_eq!(after["data"]["cash_flows"][0]["version"], 2);
    assert_ne!(after["data"]["cash_flows"][0]["months"], before["data"]["cash_flows"][0]["months"]);
    let months = after["data"]["cash_flows"][0]["months"].as_array().unwrap();
    assert_eq!(months.last().unwrap()["month"], "2031-03");

    // gRPC serves the same version; unknown ids are reported missing.
    let mut client = StudioSourceClient::connect(format!("http://{}", studio.grpc_addr)).await.expect("grpc connects");
    let reply = client
        .batch_get(BatchGetRequest { entity: "schedule".into(), ids: vec!["sch-000001".into(), "sch-424242".into()] })
        .await
        .expect("batch get")
        .into_inner();
    assert_eq!(reply.missing_ids, ["sch-424242"]);
    assert_eq!(reply.found.len(), 1);
    assert_eq!(reply.found[0].version, 2);
    let Some(Body::Schedule(s)) = &reply.found[0].body else { panic!("schedule body expected: {reply:?}") };
    assert_eq!(slate::time::format_date(s.launch_date), "2031-03-01");

    // Third-party clients: Python confluent-kafka reads the event; grpcurl and curl query the APIs.
    let topic = slate::studio::kind::SCHEDULE.changes_topic(&cfg.studio.topic_prefix);
    let (ok, out, err) = run_command(
        tokio::process::Command::new(env("TEST_PYTHON")).args(["tests/py/read_events.py", &kafka_bootstrap(), &topic, "1"]),
        WAIT,
    )
    .await;
    assert!(ok, "python reader failed:\n{out}\n{err}");
    let line: serde_json::Value = serde_json::from_str(out.lines().next().expect("one event")).expect("json line");
    assert_eq!(
        (line["key"].as_str(), line["value"]["type"].as_str(), line["value"]["version"].as_i64()),
        (Some("sch-000001"), Some("UPDATE"), Some(2))
    );

    let (ok, out, err) = run_command(
        tokio::process::Command::new(env("TEST_GRPCURL")).args([
            "-plaintext",
            "-import-path",
            "schemas/proto",
            "-proto",
            "studio.proto",
            "-d",
            r#"{"entity": "cash_flow", "ids": ["cf-000001"]}"#,
            &studio.grpc_addr.to_string(),
            "studio.finance.v1.StudioSource/BatchGet",
        ]),
        WAIT,
    )
    .await;
    assert!(ok, "grpcurl failed:\n{out}\n{err}");
    let reply: serde_json::Value = serde_json::from_str(&out).expect("grpcurl prints JSON");
    assert_eq!(reply["found"][0]["version"], "2", "{out}");
    assert_eq!(reply["found"][0]["cashFlow"]["productionId"], "prod-000001", "{out}");

    let (ok, out, err) = run_command(
        tokio::process::Command::new("curl").args([
            "-sS",
            "--fail-with-body",
            "-H",
            "content-type: application/json",
            "--data",
            r#"{"query": "{ productions(ids: [\"prod-000001\"]) { id version title } }"}"#,
            &format!("http://{}/graphql", studio.http_addr),
        ]),
        WAIT,
    )
    .await;
    assert!(ok, "curl failed:\n{out}\n{err}");
    let reply: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reply["data"]["productions"][0]["version"], 1, "{out}");
    studio.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_and_delete_publish_every_touched_entity() {
    let cfg = studio_config(&[]);
    let studio = slate::studio::server::start(&cfg, Metrics::new()).await.expect("studio starts");
    let http = reqwest::Client::new();
    let created = graphql(
        &http,
        studio.http_addr,
        r#"mutation { create_production(input: {title: "Glass Orchard", genre: "drama", currency: "EUR", start_date: "2028-02-01", launch_date: "2028-11-15", lines: [{category: "PRODUCTION", amount: 900000}]}) { id changes { entity type version } } }"#,
    )
    .await;
    assert!(created.get("errors").is_none(), "{created}");
    let id = created["data"]["create_production"]["id"].as_str().unwrap().to_string();
    assert_eq!(id, "prod-000006");
    let deleted = graphql(
        &http,
        studio.http_addr,
        &format!(r#"mutation {{ delete_production(id: "{id}") {{ changes {{ entity type version }} }} }}"#),
    )
    .await;
    let types: Vec<_> = deleted["data"]["delete_production"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["entity"].as_str().unwrap().to_string(), c["type"].as_str().unwrap().to_string(), c["version"].as_i64().unwrap()))
        .collect();
    assert_eq!(types.len(), 4, "{deleted}");
    assert!(types.iter().all(|(_, t, v)| t == "DELETE" && *v == 2), "{types:?}");

    // Each of the four topics got CREATE then DELETE for its entity, in order (same key, same partition).
    for kind in
        [slate::studio::kind::PRODUCTION, slate::studio::kind::BUDGET, slate::studio::kind::SCHEDULE, slate::studio::kind::CASH_FLOW]
    {
        let msgs = read_n(&kind.changes_topic(&cfg.studio.topic_prefix), 2, 2, WAIT);
        let events: Vec<_> = msgs.iter().map(|(k, v)| ChangeEvent::decode_json(v.as_deref().unwrap(), Some(k), None).unwrap()).collect();
        assert_eq!(
            events.iter().map(|e| (e.change_type, e.version)).collect::<Vec<_>>(),
            [(ChangeType::Create, Some(1)), (ChangeType::Delete, Some(2))],
            "{kind}"
        );
    }
    // Reads report the tombstone with the delete's version.
    let t = graphql(
        &http,
        studio.http_addr,
        &format!(r#"{{ productions(ids: ["{id}"]) {{ id }} tombstones(entity: production, ids: ["{id}"]) {{ id version }} }}"#),
    )
    .await;
    assert_eq!(t["data"]["productions"], serde_json::json!([]));
    assert_eq!(t["data"]["tombstones"], serde_json::json!([{"id": id, "version": 2}]));
    // Invalid input: a clear error, no event, no version bump.
    let bad = graphql(
        &http,
        studio.http_addr,
        r#"mutation { set_budget_line(budget_id: "bud-000001", category: "CATERING", amount: 5) { id } }"#,
    )
    .await;
    let msg = bad["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("category") && msg.contains("CATERING"), "{msg}");
    assert_eq!(bad["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    studio.shutdown().await;
}
